//! WorkOS AuthKit: the HTTP client for its User Management API and the verifier for its access tokens.

pub mod access_token;
pub mod client;

pub use access_token::{AccessClaims, AccessTokenVerifier, TokenSource, VerifyError};
pub use client::{AuthResponse, AuthorizeParams, WorkosClient, WorkosError};
