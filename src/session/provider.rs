//! The identity provider sessions are made with, behind the one interface the session layer uses.
//!
//! Sign-in, refresh, sign-out and bearer tokens all go through [`IdentityProvider`], so the session cookie, the
//! CSRF binding, the refresh rules and the HTTP handlers exist once, whichever provider signs people in. Each
//! provider lives in a module of its own (`session::workos` for WorkOS AuthKit) and answers in the neutral types
//! below. An enum rather than a trait object: the set of providers is closed and known at compile time, and the
//! per-request token check stays a plain (allocation-free) call.

use std::time::Duration;

use url::Url;

use super::workos::WorkosProvider;
use super::{Principal, Session};
use crate::config::Config;
use crate::workos::access_token::EXPIRY_LEEWAY;
use crate::workos::{WorkosClient, WorkosError};

pub enum IdentityProvider {
    Workos(WorkosProvider),
}

/// What the browser is sent to the provider with. `state` and `code_challenge` come from the sign-in state.
pub struct AuthorizationRequest<'a> {
    pub state: &'a str,
    pub code_challenge: &'a str,
    /// Routes an enterprise user straight to their organization's SSO.
    pub organization_id: Option<&'a str>,
    pub login_hint: Option<&'a str>,
    pub screen_hint: Option<ScreenHint>,
}

/// Which page of the hosted sign-in to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenHint {
    SignIn,
    SignUp,
}

/// A session's tokens checked on a request: genuine, for the session's user, and good until `expires_at`.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    /// Unix seconds.
    pub expires_at: u64,
    /// The lifetime the provider gave the token, when it says.
    pub lifetime: Option<Duration>,
    /// The provider's session id, when the token names one.
    pub session_id: Option<String>,
}

impl TokenCheck {
    /// Seconds until `expires_at`, negative once expired.
    pub fn seconds_left(&self, now: u64) -> i64 {
        self.expires_at as i64 - now as i64
    }

    /// Expired, allowing for a few seconds of clock skew.
    pub fn is_expired(&self, now: u64) -> bool {
        self.seconds_left(now) + (EXPIRY_LEEWAY.as_secs() as i64) <= 0
    }
}

/// How a call to the provider failed, in the terms the session layer acts on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The code or refresh token is dead (invalid, expired, already used): the sign-in or the session is over.
    /// The only failure that ends a session.
    #[error("the provider refused the grant: {0}")]
    GrantRejected(String),
    /// The provider declined the sign-in for a reason the user should read (e.g. an extra step it requires).
    #[error("the provider declined: {0}")]
    Declined(String),
    /// Our side of the contract failed: our credentials refused, an answer we cannot read, a token that does not
    /// verify. The user can do nothing about it; it is logged and answered 502.
    #[error("the provider call failed: {0}")]
    Failed(String),
    /// The provider could not be reached or is rate limiting: try again after `retry_after`.
    #[error("the provider is unavailable")]
    Unavailable { retry_after: Duration },
}

/// Why a token could not be accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// Forged, damaged, expired (for bearer tokens), or for another user: refuse it.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The keys to check it with could not be fetched: an outage, not a bad token.
    #[error("the provider's signing keys are unavailable")]
    Unavailable { retry_after: Duration },
}

impl IdentityProvider {
    /// The provider the configuration names, with its clients built (no network calls yet).
    pub fn from_config(config: &Config) -> Result<Self, WorkosError> {
        let client = WorkosClient::new(&config.workos)?;
        Ok(Self::Workos(WorkosProvider::new(client, &config.workos.redirect_uri, &config.workos.api_base_url)))
    }

    pub fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Url {
        match self {
            Self::Workos(workos) => workos.authorization_url(request),
        }
    }

    /// Exchanges a sign-in code for a session whose tokens have been verified.
    pub async fn exchange_code(&self, code: &str, code_verifier: &str) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.exchange_code(code, code_verifier).await,
        }
    }

    /// New tokens for a session, verified. Single-use refresh tokens make this dangerous to call twice: callers
    /// go through `session::refresh::Refresher`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.refresh(refresh_token).await,
        }
    }

    /// Checks the tokens of a session read from our own (sealed) cookie.
    pub async fn check(&self, session: &Session) -> Result<TokenCheck, CheckError> {
        match self {
            Self::Workos(workos) => workos.check(session).await,
        }
    }

    /// Checks a bearer token sent by an API client (anyone can send one).
    pub async fn verify_bearer(&self, token: &str) -> Result<Principal, CheckError> {
        match self {
            Self::Workos(workos) => workos.verify_bearer(token).await,
        }
    }

    /// Where to send the browser after the app's own session is cleared, so the provider's session ends too.
    pub fn logout_url(&self, session: &Session, return_to: &Url) -> Option<Url> {
        match self {
            Self::Workos(workos) => workos.logout_url(session, return_to),
        }
    }

    /// Ends the provider's session server-side, so its refresh token can never be used again.
    pub async fn revoke(&self, session: &Session) -> Result<(), ProviderError> {
        match self {
            Self::Workos(workos) => workos.revoke(session).await,
        }
    }

    /// Fetches what verification needs (signing keys) now: at start-up and from the readiness probe.
    pub async fn warm_up(&self) -> Result<(), CheckError> {
        match self {
            Self::Workos(workos) => workos.warm_up().await,
        }
    }

    /// Records the user's organization memberships after every sign-in and refresh (the enterprise lifecycle).
    pub fn attach_membership_sync(&mut self, sync: crate::lifecycle::sync::MembershipSync) {
        match self {
            Self::Workos(workos) => workos.attach_membership_sync(sync),
        }
    }

    /// The origin the browser is sent to for sign-in and sign-out, for the Content-Security-Policy.
    pub fn origin(&self) -> String {
        match self {
            Self::Workos(workos) => workos.origin(),
        }
    }
}
