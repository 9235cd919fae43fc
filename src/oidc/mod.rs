//! A generic OpenID Connect provider (Auth0, Okta, Entra ID, Keycloak, Google…): discovery, the calls authbridge
//! makes, and the verification of what comes back.
//!
//! Discovery and ID-token validation go through the maintained `openidconnect` crate, driven by the app's own
//! reqwest client (`http`). What the crate leaves to its caller is here, each rule in one module: key rotation
//! (`keys`), the ID-token rules it does not apply by default (`id_token`), and bearer access tokens, which it does
//! not verify at all (`access_token`). `client` is the provider as discovery describes it. Turning its answers
//! into sessions is the session layer's job (`session::oidc`), as for WorkOS. The contract followed, with its public
//! sources, is `docs/oidc.md`.

pub mod access_token;
pub mod client;
pub mod http;
pub mod id_token;
pub mod keys;

pub use client::{
    Authorization, CLIENT_REFUSAL_FIX, DiscoveryFailure, Logout, OidcClient, TokenAnswer, TokenError, UserInfo,
    UserInfoError, is_refusal_of_the_user,
};
pub use http::{HttpError, OidcHttp};
pub use id_token::{IdTokenClaims, IdTokenError, NonceRule};
