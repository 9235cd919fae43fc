//! The identity provider sessions are made with, behind the one interface the session layer uses.
//!
//! Sign-in, refresh, sign-out and bearer tokens all go through [`IdentityProvider`], so the session cookie, the
//! CSRF binding, the refresh rules and the HTTP handlers exist once, whichever provider signs people in. Each
//! provider lives in a module of its own (`session::workos` for WorkOS AuthKit, `session::oidc` for any OpenID
//! Connect provider) and answers in the neutral types below. An enum rather than a trait object: the set of providers is closed and known at compile time, and the
//! per-request token check stays a plain (allocation-free) call.

use std::time::Duration;

use url::Url;

use super::oidc::OidcProvider;
use super::workos::WorkosProvider;
use super::{Principal, Session};
use crate::config::{Config, ProviderConfig};
use crate::workos::access_token::EXPIRY_LEEWAY;
use crate::workos::{OrganizationChoice, PendingSelection, WorkosClient, WorkosError};

pub enum IdentityProvider {
    Workos(WorkosProvider),
    Oidc(OidcProvider),
}

/// Why a provider could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot set up the WorkOS client: {0}")]
    Workos(#[from] WorkosError),
    #[error("cannot set up the OpenID Connect client: {0}")]
    Oidc(String),
}

/// What the browser is sent to the provider with. `state`, `nonce` and `code_challenge` come from the sign-in
/// state.
pub struct AuthorizationRequest<'a> {
    pub state: &'a str,
    /// Bound into the ID token (OpenID Connect), so a token issued for another sign-in is refused.
    pub nonce: &'a str,
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
    /// The sign-in needs the user to choose one of several organizations first (WorkOS
    /// `organization_selection_required`).
    #[error("the user must choose an organization to finish signing in")]
    OrganizationSelectionRequired(Box<PendingSelection>),
    /// The organization picked at sign-in cannot be chosen: the user is not a member of it, it does not exist, or
    /// its id is malformed (WorkOS `organization_membership_not_found`, `organization_not_found`, the 404
    /// "Organization not found", `invalid_organization_id`). The provider's words are for the log.
    #[error("the provider refused the organization picked: {0}")]
    OrganizationRefused(String),
    /// Switching to the organization needs the user to sign in to it (its SSO or MFA): send the browser through the
    /// sign-in with `organization_id`, or to `redirect_url` when the provider named one.
    #[error("the organization requires its own sign-in")]
    OrganizationAuthRequired { redirect_url: Option<String> },
}

/// Why a token could not be accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// Forged, damaged, or for another user: refuse it.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// Genuine, but past its `exp` (bearer tokens only: a session's token is refreshed instead). Told apart so the
    /// client can be told to get a new one (RFC 6750 §3.1's `error_description`).
    #[error("the token has expired")]
    Expired,
    /// The keys to check it with could not be fetched: an outage, not a bad token.
    #[error("the provider's signing keys are unavailable")]
    Unavailable { retry_after: Duration },
    /// The database that knows which sessions have ended could not be asked (a bearer token's check): an outage of
    /// authbridge's own, answered as such (503 `database_unavailable`), not the provider's.
    #[error("the database of ended sessions is unavailable")]
    DatabaseUnavailable { retry_after: Duration },
}

impl IdentityProvider {
    /// The provider the configuration names, with its clients built (no network calls yet).
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        match &config.provider {
            ProviderConfig::Workos(workos) => {
                let client = WorkosClient::new(workos)?;
                Ok(Self::Workos(WorkosProvider::new(client, &workos.redirect_uri, &workos.api_base_url)))
            }
            ProviderConfig::Oidc(oidc) => {
                OidcProvider::new(oidc).map(Self::Oidc).map_err(|error| SetupError::Oidc(error.to_string()))
            }
        }
    }

    /// The WorkOS API client, when the provider is WorkOS: the one client (and connection pool) every caller of
    /// WorkOS shares.
    pub fn workos_client(&self) -> Option<&WorkosClient> {
        match self {
            Self::Workos(workos) => Some(workos.client()),
            Self::Oidc(_) => None,
        }
    }

    /// What the provider is called in logs and the readiness report (`workos`, `oidc`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Workos(_) => "workos",
            Self::Oidc(_) => "oidc",
        }
    }

    /// Gets the provider ready to serve, in the background of a starting server: WorkOS prefetches its keys,
    /// an OpenID Connect provider is discovered (retried with backoff until it succeeds or proves misconfigured).
    pub async fn prepare(&self) {
        match self {
            Self::Workos(workos) => {
                // Side by side: the key check may go on asking for as long as WorkOS cannot say, and the keys'
                // failure is worth saying at once.
                let keys = async {
                    if let Err(error) = workos.fetch_keys().await {
                        tracing::warn!(%error, "could not prefetch the WorkOS JWKS; will retry on the first request");
                    }
                };
                tokio::join!(keys, workos.check_api_key());
            }
            Self::Oidc(oidc) => oidc.discover_until_ready().await,
        }
    }

    /// Completes, with the reason, when the provider has proved it can never work with this configuration (an
    /// OIDC issuer that does not match its discovery document, a WorkOS API key WorkOS refuses): the server stops
    /// rather than serve nobody.
    pub async fn misconfigured(&self) -> String {
        match self {
            Self::Workos(workos) => workos.misconfigured().await,
            Self::Oidc(oidc) => oidc.misconfigured().await,
        }
    }

    /// Whether an authorization answer's `iss` (RFC 9207), or its absence, is acceptable from this provider: an
    /// answer naming another server never is, nor one without `iss` from an OpenID Connect provider that promised to
    /// send it. WorkOS documents no `iss` in its answer, so none is held against it.
    pub fn accepts_answer_from(&self, iss: Option<&str>) -> bool {
        match self {
            Self::Workos(_) => true,
            Self::Oidc(oidc) => oidc.accepts_answer_from(iss),
        }
    }

    /// Whether the provider can serve requests: always for WorkOS, once discovered for OpenID Connect.
    pub fn is_ready(&self) -> bool {
        match self {
            Self::Workos(_) => true,
            Self::Oidc(oidc) => oidc.is_discovered(),
        }
    }

    /// Where to send the browser to sign in; unavailable while an OIDC provider has not been discovered yet.
    pub fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Result<Url, ProviderError> {
        match self {
            Self::Workos(workos) => Ok(workos.authorization_url(request)),
            Self::Oidc(oidc) => oidc.authorization_url(request),
        }
    }

    /// Exchanges a sign-in code for a session whose tokens have been verified; `nonce` is the sign-in's.
    pub async fn exchange_code(&self, code: &str, code_verifier: &str, nonce: &str) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.exchange_code(code, code_verifier).await,
            Self::Oidc(oidc) => oidc.exchange_code(code, code_verifier, nonce).await,
        }
    }

    /// New tokens for a session (which has a refresh token), verified. Single-use refresh tokens make this
    /// dangerous to call twice: callers go through `session::refresh::Refresher`.
    pub async fn refresh(&self, session: &Session) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.refresh(session).await,
            Self::Oidc(oidc) => oidc.refresh(session).await,
        }
    }

    /// The session switched to `organization_id` (a refresh scoped to it, as WorkOS's `switchToOrganization`
    /// does). Like [`IdentityProvider::refresh`], callers go through `session::refresh::Refresher`. Only WorkOS has
    /// organizations.
    pub async fn switch_organization(
        &self,
        session: &Session,
        organization_id: &str,
    ) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.switch_organization(session, organization_id).await,
            Self::Oidc(_) => Err(ProviderError::Declined("this identity provider has no organizations".to_owned())),
        }
    }

    /// Finishes a sign-in that needed an organization chosen, in the one the user picked.
    pub async fn complete_organization_selection(
        &self,
        pending: &PendingSelection,
        organization_id: &str,
    ) -> Result<Session, ProviderError> {
        match self {
            Self::Workos(workos) => workos.complete_organization_selection(pending, organization_id).await,
            Self::Oidc(_) => Err(ProviderError::Declined("this identity provider has no organizations".to_owned())),
        }
    }

    /// The organizations the user may finish a pending sign-in in, when the list the provider offered was too
    /// long to keep: their active memberships, as the provider has them now. Only WorkOS asks for a selection.
    pub async fn selectable_organizations(&self, user_id: &str) -> Result<Vec<OrganizationChoice>, ProviderError> {
        match self {
            Self::Workos(workos) => workos.selectable_organizations(user_id).await,
            Self::Oidc(_) => Err(ProviderError::Declined("this identity provider has no organizations".to_owned())),
        }
    }

    /// Checks the tokens of a session read from our own (sealed) cookie.
    pub async fn check(&self, session: &Session) -> Result<TokenCheck, CheckError> {
        match self {
            Self::Workos(workos) => workos.check(session).await,
            Self::Oidc(oidc) => oidc.check(session),
        }
    }

    /// Checks a bearer token sent by an API client (anyone can send one).
    pub async fn verify_bearer(&self, token: &str) -> Result<Principal, CheckError> {
        match self {
            Self::Workos(workos) => workos.verify_bearer(token).await,
            Self::Oidc(oidc) => oidc.verify_bearer(token).await,
        }
    }

    /// Where to send the browser after the app's own session is cleared, so the provider's session ends too.
    pub fn logout_url(&self, session: &Session, return_to: &Url) -> Option<Url> {
        match self {
            Self::Workos(workos) => workos.logout_url(session, return_to),
            Self::Oidc(oidc) => oidc.logout_url(session),
        }
    }

    /// Ends the provider's session server-side, so its refresh token can never be used again.
    pub async fn revoke(&self, session: &Session) -> Result<(), ProviderError> {
        match self {
            Self::Workos(workos) => workos.revoke(session).await,
            Self::Oidc(oidc) => oidc.revoke(session).await,
        }
    }

    /// Fetches what verification needs (signing keys) now: every minute, and from a readiness probe while none are
    /// held. A failed fetch is an error only when no keys are held from before: with them, every
    /// replica can still verify, and declaring them all unready over a blip at the provider would be an outage.
    pub async fn warm_up(&self) -> Result<(), CheckError> {
        let fetched = match self {
            Self::Workos(workos) => workos.fetch_keys().await,
            Self::Oidc(oidc) => oidc.fetch_keys().await,
        };
        match fetched {
            Err(error) if self.has_keys().await => {
                // (The fetch's own failure is logged where it happened.)
                tracing::warn!(%error, "could not fetch the signing keys again; verifying with the keys held");
                Ok(())
            }
            fetched => fetched,
        }
    }

    /// The readiness probe's check of the keys: ready while keys are held (they are fetched again every few
    /// minutes in the background, and at once for a token naming a key they lack), so probes cost the provider
    /// nothing (Auth0 counts JWKS fetches against the tenant's rate limit, and every replica is probed every few
    /// seconds); with none held, [`IdentityProvider::warm_up`] within `within`.
    pub async fn probe_keys(&self, within: Duration) -> Result<(), CheckError> {
        if self.has_keys().await {
            return Ok(());
        }
        match tokio::time::timeout(within, self.warm_up()).await {
            Ok(result) => result,
            Err(_) if self.has_keys().await => {
                tracing::warn!(?within, "fetching the signing keys again took too long; verifying with the keys held");
                Ok(())
            }
            Err(_) => Err(CheckError::Unavailable { retry_after: Duration::from_secs(1) }),
        }
    }

    /// Waits (at most `within`) for the start-up checks that must pass before the replica counts as ready but do
    /// not keep it from serving meanwhile: WorkOS's check of the API key (an OpenID Connect provider's discovery is
    /// [`IdentityProvider::is_ready`]). `Err` with what is missing.
    pub async fn checked_at_start(&self, within: Duration) -> Result<(), &'static str> {
        match self {
            Self::Workos(workos) => workos.key_checked(within).await,
            Self::Oidc(_) => Ok(()),
        }
    }

    async fn has_keys(&self) -> bool {
        match self {
            Self::Workos(workos) => workos.has_keys().await,
            Self::Oidc(oidc) => oidc.has_keys(),
        }
    }

    /// Records the user's organization memberships after every sign-in and refresh (the enterprise lifecycle, which
    /// follows WorkOS: an OpenID Connect provider has no WorkOS memberships to read).
    pub fn attach_membership_sync(&mut self, sync: crate::lifecycle::sync::MembershipSync) {
        match self {
            Self::Workos(workos) => workos.attach_membership_sync(sync),
            Self::Oidc(_) => {}
        }
    }

    /// The origins (space-separated) the browser is sent to for sign-in and sign-out, for the
    /// Content-Security-Policy. An OIDC provider's are known once it is discovered (its issuer's until then).
    pub fn browser_origins(&self) -> &str {
        match self {
            Self::Workos(workos) => workos.origin(),
            Self::Oidc(oidc) => oidc.browser_origins(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_at(expires_at: u64) -> TokenCheck {
        TokenCheck { expires_at, lifetime: None, session_id: None }
    }

    /// A token is still good for a few seconds past its `exp` (clock skew between WorkOS and us), and expired from
    /// the moment the leeway runs out.
    #[test]
    fn a_token_is_expired_only_once_the_leeway_past_its_exp_has_run_out() {
        let now = 1_000_000;
        let leeway = EXPIRY_LEEWAY.as_secs();
        assert!(leeway > 1, "a leeway of a few seconds");
        assert!(!expiring_at(now + 1).is_expired(now), "not yet at its exp");
        assert!(!expiring_at(now).is_expired(now), "at its exp, within the leeway");
        assert!(!expiring_at(now - (leeway - 1)).is_expired(now), "a second before the leeway runs out");
        assert!(expiring_at(now - leeway).is_expired(now), "the leeway has run out");
        assert_eq!(expiring_at(now - 5).seconds_left(now), -5);
    }
}
