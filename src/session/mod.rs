//! The browser session: WorkOS tokens in a sealed cookie, verified on every request, refreshed before they expire.
//!
//! [`SessionManager::resolve`] turns a request's cookies into "signed in as …", "signed out" or "can't tell right
//! now (WorkOS unavailable)", together with what the response must do to the cookie (nothing, store a refreshed or
//! resealed session, or clear a dead one). The HTTP layer calls it lazily, only for routes that ask who the user is.
//!
//! Submodules: `seal` (encryption), `cookies` (chunking within browser limits), `refresh` (single-flight refresh).

pub mod cookies;
pub mod refresh;
pub mod seal;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;
use crate::identity::UserIdentity;
use crate::workos::access_token::{self, AccessClaims, AccessTokenVerifier, TokenSource, VerifyError};
use crate::workos::{AuthResponse, Impersonator, WorkosError};
use cookies::{CookieSpec, CookieTooLarge};
use refresh::Refresher;
use seal::{Purpose, SealError, Sealer};

pub const SESSION_COOKIE: &str = "wos-session";
pub const SIGN_IN_STATE_COOKIE: &str = "wos-auth-state";
/// Over https the cookies carry the `__Host-` prefix, which browsers accept only from this exact host, `Secure`,
/// with `Path=/` and no `Domain`: a sibling subdomain cannot plant a session of its own choosing.
const SECURE_SESSION_COOKIE: &str = "__Host-wos-session";
const SECURE_SIGN_IN_STATE_COOKIE: &str = "__Host-wos-auth-state";
/// Browsers cap cookie lifetimes at 400 days; the WorkOS session (refresh token) is what really ends a session.
const SESSION_MAX_AGE: Duration = Duration::from_secs(400 * 24 * 3600);
/// How long a sign-in may take between `/login` and `/callback`.
pub const SIGN_IN_STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// What the session cookie holds, and nothing more.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub user: SessionUser,
    pub organization_id: Option<String>,
    pub impersonator: Option<Impersonator>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn from_auth(auth: &AuthResponse) -> Self {
        Self {
            access_token: auth.access_token.clone(),
            refresh_token: auth.refresh_token.clone(),
            user: SessionUser {
                id: auth.user.id.clone(),
                email: auth.user.email.clone(),
                first_name: auth.user.first_name.clone(),
                last_name: auth.user.last_name.clone(),
            },
            organization_id: auth.organization_id.clone(),
            impersonator: auth.impersonator.clone(),
        }
    }

    pub fn identity(&self) -> UserIdentity {
        UserIdentity::new(&self.user.id, Some(self.user.email.clone()))
    }
}

/// What `/login` keeps in the browser until `/callback`: it binds the WorkOS redirect to this browser.
#[derive(Serialize, Deserialize)]
pub struct SignInState {
    /// Echoed by WorkOS as `state`; must match, so a code cannot be injected from another browser's sign-in.
    pub nonce: String,
    pub code_verifier: String,
    pub return_to: String,
    /// Unix seconds. The cookie's Max-Age is not trusted alone: a cookie can be replayed after it is "expired".
    pub expires_at: u64,
}

/// Who the request is from, as far as the session cookie says.
pub enum Outcome {
    SignedIn(Box<SignedIn>),
    SignedOut,
    /// WorkOS could not be reached to refresh an expired token: the user is probably fine, just not right now.
    Unavailable {
        retry_after: Duration,
    },
}

pub struct SignedIn {
    pub session: Session,
    pub claims: AccessClaims,
}

/// What the response must do with the session cookie.
pub enum CookieChange {
    Keep,
    Store(Box<Session>),
    Clear,
}

pub struct Resolution {
    pub outcome: Outcome,
    pub cookie: CookieChange,
}

impl Resolution {
    fn signed_out(cookie: CookieChange) -> Self {
        Self { outcome: Outcome::SignedOut, cookie }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot seal the session: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    TooLarge(#[from] CookieTooLarge),
}

pub struct SessionManager {
    sealer: Sealer,
    session_cookie: CookieSpec,
    state_cookie: CookieSpec,
    verifier: Arc<AccessTokenVerifier>,
    refresher: Refresher,
}

impl SessionManager {
    pub fn new(
        config: &SessionConfig,
        verifier: Arc<AccessTokenVerifier>,
        refresher: Refresher,
    ) -> Result<Self, SealError> {
        Ok(Self {
            sealer: Sealer::new(&config.cookie_password, config.previous_cookie_password.as_ref())?,
            session_cookie: CookieSpec {
                name: if config.secure_cookies { SECURE_SESSION_COOKIE } else { SESSION_COOKIE },
                secure: config.secure_cookies,
                max_age: Some(SESSION_MAX_AGE),
            },
            state_cookie: CookieSpec {
                name: if config.secure_cookies { SECURE_SIGN_IN_STATE_COOKIE } else { SIGN_IN_STATE_COOKIE },
                secure: config.secure_cookies,
                max_age: Some(SIGN_IN_STATE_TTL),
            },
            verifier,
            refresher,
        })
    }

    pub fn verifier(&self) -> &AccessTokenVerifier {
        &self.verifier
    }

    /// Opens the session cookie without verifying or refreshing the tokens inside. For sign-out, which must work
    /// even when WorkOS is down or the token has long expired. The seal already proves the app wrote it.
    pub fn open(&self, headers: &HeaderMap) -> Option<(Session, bool)> {
        let sealed = self.session_cookie.read(headers)?;
        match self.sealer.open(Purpose::Session, &sealed) {
            Ok(opened) => match serde_json::from_slice::<Session>(&opened.plaintext) {
                Ok(session) => Some((session, opened.needs_reseal)),
                Err(_) => {
                    tracing::debug!("session cookie opened but does not hold a session; treating as signed out");
                    None
                }
            },
            Err(error) => {
                // Never the value: it may be a real (if unreadable to us) credential.
                tracing::debug!(%error, "session cookie rejected; treating as signed out");
                None
            }
        }
    }

    /// Who the request is from, refreshing the WorkOS tokens when they are about to expire.
    pub async fn resolve(&self, headers: &HeaderMap) -> Resolution {
        let Some((session, needs_reseal)) = self.open(headers) else {
            let garbage = !self.session_cookie.present(headers).is_empty();
            return Resolution::signed_out(if garbage { CookieChange::Clear } else { CookieChange::Keep });
        };

        let claims = match self.verifier.verify_signature(&session.access_token, TokenSource::Trusted).await {
            Ok(claims) if claims.sub == session.user.id => claims,
            Ok(_) => {
                tracing::warn!("session token belongs to another user than the session; ending the session");
                return Resolution::signed_out(CookieChange::Clear);
            }
            Err(VerifyError::KeysUnavailable(error)) => {
                return Resolution {
                    outcome: Outcome::Unavailable { retry_after: error.retry_after() },
                    cookie: CookieChange::Keep,
                };
            }
            Err(error) => {
                tracing::debug!(%error, "session token failed verification; ending the session");
                return Resolution::signed_out(CookieChange::Clear);
            }
        };

        let now = access_token::now();
        if claims.seconds_left(now) > refresh_margin(claims.lifetime()).as_secs() as i64 {
            let cookie = if needs_reseal { CookieChange::Store(Box::new(session.clone())) } else { CookieChange::Keep };
            return Resolution { outcome: Outcome::SignedIn(Box::new(SignedIn { session, claims })), cookie };
        }

        match self.refresh(&session).await {
            Ok(signed_in) => Resolution {
                cookie: CookieChange::Store(Box::new(signed_in.session.clone())),
                outcome: Outcome::SignedIn(Box::new(signed_in)),
            },
            Err(RefreshFailure::SessionOver) => Resolution::signed_out(CookieChange::Clear),
            // Not the user's fault: carry on with the token we have while it is still good.
            Err(RefreshFailure::Transient { .. }) if !claims.is_expired(now) => {
                let cookie =
                    if needs_reseal { CookieChange::Store(Box::new(session.clone())) } else { CookieChange::Keep };
                Resolution { outcome: Outcome::SignedIn(Box::new(SignedIn { session, claims })), cookie }
            }
            Err(RefreshFailure::Transient { retry_after }) => {
                Resolution { outcome: Outcome::Unavailable { retry_after }, cookie: CookieChange::Keep }
            }
        }
    }

    async fn refresh(&self, session: &Session) -> Result<SignedIn, RefreshFailure> {
        let auth = self.refresher.refresh(&session.refresh_token).await.map_err(|error| match error {
            // Only WorkOS saying the refresh token is dead ends a session.
            WorkosError::InvalidGrant { .. } => RefreshFailure::SessionOver,
            // Any other refusal (a bad API key, a proxy's 403) is our problem, not the user's: keep the session.
            rejected @ WorkosError::Rejected { .. } => {
                tracing::error!(error = %rejected, "WorkOS refused a refresh for a reason other than invalid_grant");
                RefreshFailure::Transient { retry_after: rejected.retry_after() }
            }
            transient => RefreshFailure::Transient { retry_after: transient.retry_after() },
        })?;
        let claims = self.verifier.verify(&auth.access_token, TokenSource::Trusted).await.map_err(|error| {
            tracing::warn!(%error, "WorkOS returned a refreshed token that does not verify");
            RefreshFailure::Transient { retry_after: Duration::from_secs(5) }
        })?;
        if claims.sub != session.user.id || auth.user.id != session.user.id {
            tracing::warn!("refresh returned another user's tokens; ending the session");
            return Err(RefreshFailure::SessionOver);
        }
        Ok(SignedIn { session: Session::from_auth(&auth), claims })
    }

    /// `Set-Cookie` values storing `session`, replacing whatever pieces the request carried.
    pub fn store(&self, session: &Session, request: &HeaderMap) -> Result<Vec<HeaderValue>, SessionError> {
        let json = serde_json::to_vec(session).map_err(|_| SealError)?;
        let sealed = self.sealer.seal(Purpose::Session, &json)?;
        Ok(self.session_cookie.write(&sealed, &self.session_cookie.present(request))?)
    }

    /// `Set-Cookie` values deleting the session cookie and all its chunks.
    pub fn clear(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        self.session_cookie.clear(&self.session_cookie.present(request))
    }

    pub fn store_sign_in_state(&self, state: &SignInState) -> Result<Vec<HeaderValue>, SessionError> {
        let json = serde_json::to_vec(state).map_err(|_| SealError)?;
        let sealed = self.sealer.seal(Purpose::SignInState, &json)?;
        Ok(self.state_cookie.write(&sealed, &[])?)
    }

    /// The sign-in state, if the browser holds one that opens and has not expired.
    pub fn sign_in_state(&self, request: &HeaderMap) -> Option<SignInState> {
        let sealed = self.state_cookie.read(request)?;
        let opened = self.sealer.open(Purpose::SignInState, &sealed).ok()?;
        let state: SignInState = serde_json::from_slice(&opened.plaintext).ok()?;
        (state.expires_at > access_token::now()).then_some(state)
    }

    pub fn clear_sign_in_state(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        self.state_cookie.clear(&self.state_cookie.present(request))
    }
}

enum RefreshFailure {
    SessionOver,
    Transient { retry_after: Duration },
}

/// How long before expiry a token is refreshed: 60 s, or 30 s for tokens of five minutes or less (as WorkOS's
/// Next.js library does), and never more than half the token's lifetime, so very short tokens are not refreshed
/// on every single request.
pub fn refresh_margin(lifetime: Option<Duration>) -> Duration {
    const SHORT_TOKEN: Duration = Duration::from_secs(300);
    match lifetime {
        Some(lifetime) if lifetime <= SHORT_TOKEN => Duration::from_secs(30).min(lifetime / 2),
        _ => Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(secure_cookies: bool) -> SessionManager {
        let workos = crate::workos::WorkosClient::new(&crate::config::WorkosConfig {
            api_key: crate::config::Secret::new("sk_test"),
            client_id: "client_test".to_owned(),
            redirect_uri: url::Url::parse("https://todos.example.com/callback").expect("url"),
            api_base_url: url::Url::parse("https://api.workos.com").expect("url"),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        })
        .expect("client");
        let config = SessionConfig {
            cookie_password: crate::config::Secret::new("p".repeat(32)),
            previous_cookie_password: None,
            secure_cookies,
        };
        SessionManager::new(&config, Arc::new(AccessTokenVerifier::new(workos.clone())), Refresher::new(workos))
            .expect("manager")
    }

    #[test]
    fn over_https_cookies_are_secure_and_host_only() {
        let state = SignInState { nonce: "n".into(), code_verifier: "v".into(), return_to: "/".into(), expires_at: 0 };
        for (secure, prefix) in [(true, "__Host-wos-auth-state="), (false, "wos-auth-state=")] {
            let lines = manager(secure).store_sign_in_state(&state).expect("sealed");
            let line = lines[0].to_str().expect("ascii");
            assert!(line.starts_with(prefix), "{line}");
            assert_eq!(line.contains("; Secure"), secure, "{line}");
            assert!(line.contains("Path=/") && !line.contains("Domain"), "{line}");
        }
    }

    #[test]
    fn refresh_margin_follows_the_token_lifetime() {
        assert_eq!(refresh_margin(Some(Duration::from_secs(3600))), Duration::from_secs(60));
        assert_eq!(refresh_margin(Some(Duration::from_secs(300))), Duration::from_secs(30));
        assert_eq!(refresh_margin(Some(Duration::from_secs(10))), Duration::from_secs(5));
        assert_eq!(refresh_margin(None), Duration::from_secs(60));
    }
}
