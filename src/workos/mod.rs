//! WorkOS: the HTTP client for its User Management API and the verifier for its access tokens, plus the
//! management reads (events, organizations, memberships) of the enterprise lifecycle and the object shapes they
//! return.

pub mod access_token;
pub mod client;
pub mod management;
pub mod objects;
pub mod user_emails;

pub use access_token::{AccessClaims, AccessTokenVerifier, TokenSource, VerifyError};
pub use client::{
    AuthResponse, AuthorizeParams, OrganizationChoice, PendingSelection, WorkosClient, WorkosError,
    is_organization_refusal,
};
