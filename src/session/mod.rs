//! The browser session: the provider's tokens in a sealed cookie, checked on every request, refreshed before
//! they expire.
//!
//! [`SessionManager::resolve`] turns a request's cookies into "signed in as …", "signed out" or "can't tell right
//! now (the provider is unavailable)", together with what the response must do to the cookie (nothing, store a
//! refreshed or resealed session, or clear a dead one). The HTTP layer calls it lazily, only for routes that ask
//! who the user is. Signing in and out are steps of the session too (`sign_in`), so handlers only translate HTTP.
//!
//! Submodules: `seal` (encryption), `cookies` (chunking within browser limits, and a cookie per sign-in),
//! `refresh` (single-flight refresh), `sign_in` (PKCE, state, callback, sign-out), `provider` (the
//! identity-provider interface) and one module per provider (`workos`, `oidc`).

pub mod cookies;
pub mod oidc;
#[cfg(test)]
mod properties;
pub mod provider;
pub mod refresh;
pub mod repeated_choices;
pub mod revocations;
pub mod seal;
pub mod shared_refresh;
pub mod sign_in;
pub mod workos;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;
use crate::identity::{Impersonator, UserIdentity, UserProfile};
use cookies::{CookieFamily, CookieSpec, CookieTooLarge};
use provider::{CheckError, IdentityProvider, ProviderError};
use refresh::Refresher;
use revocations::Revocations;
use seal::{Purpose, SealError, Sealer};
pub use sign_in::{ORGANIZATION_SELECTION_TTL, PendingSignIn, SIGN_IN_STATE_TTL, SignInState};

pub const SESSION_COOKIE: &str = "wos-session";
/// The sign-in state cookies are `wos-auth-state.<key>`, one per sign-in under way, named for its `state` (see
/// [`sign_in_state_cookie`]); the previous version kept a browser's one sign-in in `wos-auth-state` itself.
pub const SIGN_IN_STATE_COOKIE: &str = "wos-auth-state";
/// The pending organization choices are `wos-org-selection.<key>`, one per sign-in at that step, named for its
/// selection id (see [`organization_selection_cookie`]); the previous version kept one in `wos-org-selection`.
pub const ORGANIZATION_SELECTION_COOKIE: &str = "wos-org-selection";
/// Over https the cookies carry the `__Host-` prefix, which browsers accept only from this exact host, `Secure`,
/// with `Path=/` and no `Domain`: a sibling subdomain cannot plant a session of its own choosing.
const SECURE_SESSION_COOKIE: &str = "__Host-wos-session";
const SECURE_SIGN_IN_STATE_COOKIE: &str = "__Host-wos-auth-state";
const SECURE_ORGANIZATION_SELECTION_COOKIE: &str = "__Host-wos-org-selection";
/// Browsers cap cookie lifetimes at 400 days; the provider's session (refresh token) is what really ends a session.
const SESSION_MAX_AGE: Duration = Duration::from_secs(400 * 24 * 3600);

/// The name of the cookie holding the sign-in whose `state` is `state`, over plain http (over https, the same with
/// `__Host-` before it).
pub fn sign_in_state_cookie(state: &str) -> String {
    cookies::keyed_name(SIGN_IN_STATE_COOKIE, state)
}

/// The name of the cookie holding the pending organization choice whose selection id is `selection`, over plain
/// http (over https, the same with `__Host-` before it).
pub fn organization_selection_cookie(selection: &str) -> String {
    cookies::keyed_name(ORGANIZATION_SELECTION_COOKIE, selection)
}

/// What the session cookie holds, and nothing more.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    /// Absent when the provider issued none (an OpenID Connect provider may ignore `offline_access`): the session
    /// then ends when its tokens expire. WorkOS always issues one.
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub user: UserProfile,
    pub organization_id: Option<String>,
    pub impersonator: Option<Impersonator>,
    /// The provider's session id (WorkOS `sid`), stable across refreshes: sign-out and CSRF tokens are tied to it.
    /// Absent from cookies sealed before it was kept; [`SessionManager::resolve`] fills it in.
    #[serde(default)]
    pub session_id: Option<String>,
    /// What an OpenID Connect sign-in keeps besides; absent for WorkOS sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcTokens>,
    /// The user chose their personal space ("Personal" in the switcher) over the session's organization: an
    /// app-side choice, no WorkOS call. A switch to an organization clears it; refreshes keep it.
    #[serde(default)]
    pub personal: bool,
}

/// The OpenID Connect part of a session.
#[derive(Clone, Serialize, Deserialize)]
pub struct OidcTokens {
    /// The issuer that signed the user in: a session of another issuer (a changed configuration) is refused.
    pub issuer: String,
    /// The latest ID token, sent back as sign-out's `id_token_hint`.
    pub id_token: String,
    /// The sign-in's nonce, which a refreshed ID token may repeat (or leave out).
    pub nonce: String,
    /// Unix seconds: when the tokens were issued, and when the first of them (access or ID token) expires. The
    /// session is refreshed before then, or ends then when there is no refresh token.
    pub issued_at: u64,
    pub expires_at: u64,
}

impl fmt::Debug for OidcTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcTokens")
            .field("issuer", &self.issuer)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
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
    pub fn identity(&self) -> UserIdentity {
        self.user.identity()
    }

    /// What CSRF tokens are bound to: the provider's session, or the user when the provider names no session.
    pub fn csrf_binding(&self) -> &str {
        csrf_binding(self.session_id.as_deref(), &self.user.id)
    }

    /// Who the session says the user is, as the cookie holds it (nothing checked with the provider).
    pub fn principal(&self) -> Principal {
        Principal {
            user: self.user.clone(),
            organization_id: self.organization_id.clone(),
            personal: self.personal,
            impersonator: self.impersonator.clone(),
            session_id: self.session_id.clone(),
            source: AuthSource::Cookie,
        }
    }

    /// [`Session::principal`], moving what it needs out of the session rather than copying it.
    pub fn into_principal(self) -> Principal {
        Principal {
            user: self.user,
            organization_id: self.organization_id,
            personal: self.personal,
            impersonator: self.impersonator,
            session_id: self.session_id,
            source: AuthSource::Cookie,
        }
    }
}

/// The provider's session id, or the user's id when the provider names no session (an OpenID Connect provider
/// without `sid`): a form's CSRF token is valid for that session only.
fn csrf_binding<'a>(session_id: Option<&'a str>, user_id: &'a str) -> &'a str {
    session_id.unwrap_or(user_id)
}

/// Who a request is from, whichever way they proved it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserProfile,
    /// The organization the provider's session is scoped to (WorkOS `org_id`).
    pub organization_id: Option<String>,
    /// The user chose their personal space over that organization (cookie sessions only).
    pub personal: bool,
    pub impersonator: Option<Impersonator>,
    /// The provider's session id: form CSRF tokens and sign-out are tied to it.
    pub session_id: Option<String>,
    pub source: AuthSource,
}

/// How a request proved who it is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    /// The sealed session cookie: a browser, which sends it on cross-site requests too.
    Cookie,
    /// An `Authorization: Bearer` token, which a browser never attaches on its own.
    Bearer,
}

impl Principal {
    pub fn id(&self) -> &str {
        &self.user.id
    }

    /// Who the data path acts for.
    pub fn identity(&self) -> UserIdentity {
        self.user.identity()
    }

    /// What CSRF tokens are bound to; the same rule as [`Session::csrf_binding`].
    pub fn csrf_binding(&self) -> &str {
        csrf_binding(self.session_id.as_deref(), &self.user.id)
    }

    /// The organization the user is working in, unless they chose their personal space. Whether they are still an
    /// active member of it is the database's to say (`organizations`).
    pub fn active_organization(&self) -> Option<&str> {
        if self.personal { None } else { self.organization_id.as_deref() }
    }
}

/// Who the request is from, as far as the session cookie says.
pub enum Outcome {
    SignedIn(Box<Principal>),
    SignedOut,
    /// The provider could not be reached to check or refresh the tokens: the user is probably fine, just not
    /// right now.
    Unavailable {
        retry_after: Duration,
    },
    /// authbridge's database could not say whether the session has ended (signed out elsewhere, revoked): likewise,
    /// but the outage is ours, not the provider's.
    DatabaseUnavailable {
        retry_after: Duration,
    },
}

/// What the response must do with the session cookie.
pub enum CookieChange {
    Keep,
    Store(Box<Session>),
    Clear,
}

/// What the request's session cookie held.
// Moved once, on every request: a box would cost an allocation each time for nothing.
#[allow(clippy::large_enum_variant)]
pub enum CookieRead {
    Absent,
    /// The session, and whether it was sealed with the previous cookie password (to be sealed again).
    Session(Session, bool),
    /// A well-formed seal that did not open with this app's keys: sealed with another cookie password (a replica
    /// configured differently, or one this replica no longer has), or forged. Another replica may read it.
    Unreadable,
    /// Useless to any replica: not a seal at all, chunks that do not add up, or a seal of ours that holds no session.
    NotASession,
}

/// Says (at most once a minute, however many arrive) that session cookies do not open with this app's keys: a
/// tampering client, or replicas with different cookie passwords, whose users this replica answers as signed out.
fn warn_of_unreadable_cookies() {
    static THROTTLE: crate::sync::Throttle = crate::sync::Throttle::every(Duration::from_secs(60));
    THROTTLE.note(|cookies| {
        tracing::warn!(
            cookies,
            "session cookies did not open with this app's keys (tampered with, or sealed by a replica with another \
             SESSION_COOKIE_PASSWORD); answered as signed out, the cookies left as they are. Said at most once a \
             minute, with the count since; authbridge_session_cookies_unreadable_total counts them"
        );
    });
}

pub struct Resolution {
    pub outcome: Outcome,
    pub cookie: CookieChange,
}

impl Resolution {
    fn signed_out(cookie: CookieChange) -> Self {
        Self { outcome: Outcome::SignedOut, cookie }
    }

    fn unavailable(retry_after: Duration) -> Self {
        Self { outcome: Outcome::Unavailable { retry_after }, cookie: CookieChange::Keep }
    }

    fn signed_in(session: Session, store: bool) -> Self {
        if store {
            let outcome = Outcome::SignedIn(Box::new(session.principal()));
            return Self { outcome, cookie: CookieChange::Store(Box::new(session)) };
        }
        // Most requests: nothing to store, so the session's fields move into the principal.
        Self { outcome: Outcome::SignedIn(Box::new(session.into_principal())), cookie: CookieChange::Keep }
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
    /// One cookie per sign-in under way, named for its `state`, so that sign-ins started in several tabs at once
    /// each find their own at `/callback`.
    state_cookies: CookieFamily,
    /// The one sign-in state cookie the previous version kept, still read so that a sign-in started before a
    /// rolling deploy can finish after it (it lives `SIGN_IN_STATE_TTL`). It can go one release after this one.
    legacy_state_cookie: CookieSpec,
    /// One cookie per sign-in waiting for an organization to be chosen, named for its selection id (in the
    /// selection page's address), so that several tabs at that step each finish their own.
    selection_cookies: CookieFamily,
    /// The one pending-choice cookie the previous version kept, still read (for the selection page without a
    /// selection id, as that version's pages ask for it) so that a choice pending across a rolling deploy can be
    /// finished (it lives `ORGANIZATION_SELECTION_TTL`). It can go one release after this one.
    legacy_selection_cookie: CookieSpec,
    provider: Arc<IdentityProvider>,
    refresher: Refresher,
    revocations: Arc<Revocations>,
    /// Organization choices just finished, for the same form sent twice (a double click).
    repeated_choices: repeated_choices::RepeatedChoices,
}

impl SessionManager {
    pub fn new(config: &SessionConfig, provider: IdentityProvider) -> Result<Self, SealError> {
        let provider = Arc::new(provider);
        let state_cookie = CookieSpec {
            name: if config.secure_cookies { SECURE_SIGN_IN_STATE_COOKIE } else { SIGN_IN_STATE_COOKIE },
            secure: config.secure_cookies,
            max_age: Some(SIGN_IN_STATE_TTL),
        };
        let selection_cookie = CookieSpec {
            name: if config.secure_cookies {
                SECURE_ORGANIZATION_SELECTION_COOKIE
            } else {
                ORGANIZATION_SELECTION_COOKIE
            },
            secure: config.secure_cookies,
            max_age: Some(ORGANIZATION_SELECTION_TTL),
        };
        Ok(Self {
            sealer: Sealer::new(&config.cookie_password, config.previous_cookie_password.as_ref())?,
            session_cookie: CookieSpec {
                name: if config.secure_cookies { SECURE_SESSION_COOKIE } else { SESSION_COOKIE },
                secure: config.secure_cookies,
                max_age: Some(SESSION_MAX_AGE),
            },
            state_cookies: CookieFamily::new(state_cookie.clone()),
            legacy_state_cookie: state_cookie,
            selection_cookies: CookieFamily::new(selection_cookie.clone()),
            legacy_selection_cookie: selection_cookie,
            refresher: Refresher::new(Arc::clone(&provider)),
            provider,
            revocations: Arc::default(),
            repeated_choices: repeated_choices::RepeatedChoices::default(),
        })
    }

    /// Checks sessions against `revocations` (the shared, database-backed list with `DATABASE_URL`) instead
    /// of a list of this replica's own.
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = revocations;
        self
    }

    /// Shares refreshes with the other replicas through the database, so a refresh token that reaches several
    /// replicas at once is spent once (`shared_refresh`).
    pub fn with_shared_refreshes(mut self, shared: shared_refresh::SharedRefreshes) -> Self {
        self.refresher = self.refresher.with_shared(shared);
        self
    }

    pub fn provider(&self) -> &IdentityProvider {
        &self.provider
    }

    /// Waits, at most `within`, for the refreshes still under way (see [`Refresher::drain`]).
    pub async fn drain_refreshes(&self, within: Duration) -> bool {
        self.refresher.drain(within).await
    }

    /// The list every request is checked against: the webhook handler and the consumer tell it what they ended.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Opens the session cookie without checking or refreshing the tokens inside. For sign-out, which must work
    /// even when the provider is down or the token has long expired. The seal already proves the app wrote it.
    pub fn open(&self, headers: &HeaderMap) -> Option<(Session, bool)> {
        match self.read(headers) {
            CookieRead::Session(session, needs_reseal) => Some((session, needs_reseal)),
            CookieRead::Absent | CookieRead::Unreadable | CookieRead::NotASession => None,
        }
    }

    /// What the session cookie holds, told apart as the response must treat it (see [`CookieRead`]).
    pub fn read(&self, headers: &HeaderMap) -> CookieRead {
        let Some(sealed) = self.session_cookie.read(headers) else {
            // No cookie, or chunks that do not add up to one.
            let present = self.session_cookie.present(headers);
            return if present.is_empty() { CookieRead::Absent } else { CookieRead::NotASession };
        };
        match self.sealer.open(Purpose::Session, &sealed) {
            Ok(opened) => match serde_json::from_slice::<Session>(&opened.plaintext) {
                Ok(session) => CookieRead::Session(session, opened.needs_reseal),
                Err(_) => {
                    tracing::debug!("session cookie opened but does not hold a session; treating as signed out");
                    CookieRead::NotASession
                }
            },
            // Never the value in the log: it may be a real (if unreadable to us) credential.
            Err(_) if seal::Sealer::is_well_formed(&sealed) && self.session_cookie.is_whole(headers) => {
                tracing::debug!("session cookie did not open with this app's keys; treating as signed out");
                CookieRead::Unreadable
            }
            Err(_) => {
                tracing::debug!("session cookie is not a seal, or its chunks do not add up; treating as signed out");
                CookieRead::NotASession
            }
        }
    }

    /// Who the request is from, refreshing the tokens when they are about to expire.
    pub async fn resolve(&self, headers: &HeaderMap) -> Resolution {
        let (mut session, needs_reseal) = match self.read(headers) {
            CookieRead::Session(session, needs_reseal) => (session, needs_reseal),
            CookieRead::Absent => return Resolution::signed_out(CookieChange::Keep),
            // Sealed with a key this replica does not have, or forged (the two look alike): signed out here, but
            // the cookie is left as it is. A replica started with another cookie password (or one that missed a
            // rotation's first step) would otherwise delete every session that reached it, and so sign its users
            // out of every replica. The browser replaces it at the next sign-in.
            CookieRead::Unreadable => {
                metrics::counter!("authbridge_session_cookies_unreadable_total").increment(1);
                warn_of_unreadable_cookies();
                return Resolution::signed_out(CookieChange::Keep);
            }
            CookieRead::NotASession => return Resolution::signed_out(CookieChange::Clear),
        };

        let check = match self.provider.check(&session).await {
            Ok(check) => check,
            Err(CheckError::Unavailable { retry_after } | CheckError::DatabaseUnavailable { retry_after }) => {
                return Resolution::unavailable(retry_after);
            }
            Err(reason @ (CheckError::Invalid(_) | CheckError::Expired)) => {
                tracing::debug!(%reason, "session token failed verification; ending the session");
                return Resolution::signed_out(CookieChange::Clear);
            }
        };
        let mut store = needs_reseal;
        if session.session_id.is_none() && check.session_id.is_some() {
            session.session_id = check.session_id.clone();
            store = true;
        }
        match self.revocations.has_ended(&session.user.id, session.session_id.as_deref()).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(user_id = %session.user.id, "the session was ended (signed out, revoked or the user deleted); clearing its cookie");
                return Resolution::signed_out(CookieChange::Clear);
            }
            Err(unavailable) => {
                let outcome = Outcome::DatabaseUnavailable { retry_after: unavailable.retry_after };
                return Resolution { outcome, cookie: CookieChange::Keep };
            }
        }

        let now = unix_now();
        if check.seconds_left(now) > refresh_margin(check.lifetime).as_secs() as i64 {
            return Resolution::signed_in(session, store);
        }
        match self.refresh(&session).await {
            Ok(fresh) => Resolution::signed_in(fresh, true),
            Err(RefreshFailure::SessionOver) => Resolution::signed_out(CookieChange::Clear),
            // Nothing to refresh with: the session lasts as long as its tokens.
            Err(RefreshFailure::NoRefreshToken) if !check.is_expired(now) => Resolution::signed_in(session, store),
            Err(RefreshFailure::NoRefreshToken) => {
                tracing::debug!("the session's tokens expired and there is no refresh token; ending the session");
                Resolution::signed_out(CookieChange::Clear)
            }
            // Not the user's fault: carry on with the token we have while it is still good.
            Err(RefreshFailure::Transient { .. }) if !check.is_expired(now) => Resolution::signed_in(session, store),
            Err(RefreshFailure::Transient { retry_after }) => Resolution::unavailable(retry_after),
        }
    }

    async fn refresh(&self, session: &Session) -> Result<Session, RefreshFailure> {
        let Some(refresh_token) = session.refresh_token.as_deref() else { return Err(RefreshFailure::NoRefreshToken) };
        let fresh = self.refresher.refresh(refresh_token, session).await.map_err(|error| match error {
            // Only the provider saying the refresh token is dead ends a session.
            ProviderError::GrantRejected(_) => RefreshFailure::SessionOver,
            ProviderError::Unavailable { retry_after } => RefreshFailure::Transient { retry_after },
            ProviderError::Declined(_)
            | ProviderError::Failed(_)
            | ProviderError::OrganizationRefused(_)
            | ProviderError::OrganizationSelectionRequired(_)
            | ProviderError::OrganizationAuthRequired { .. } => {
                RefreshFailure::Transient { retry_after: Duration::from_secs(5) }
            }
        })?;
        if fresh.user.id != session.user.id {
            tracing::warn!("refresh returned another user's tokens; ending the session");
            return Err(RefreshFailure::SessionOver);
        }
        // An ordinary refresh keeps the space the user is in (WorkOS keeps the organization; "Personal" is ours).
        Ok(continued(&fresh, session, session.personal))
    }

    /// `session` switched to `organization_id` at the provider (a refresh scoped to it), sharing the refresher's
    /// single flight so a switch and an ordinary refresh never spend one refresh token twice. The caller has checked
    /// the membership in the database first.
    pub async fn switch_organization(
        &self,
        session: &Session,
        organization_id: &str,
    ) -> Result<Session, ProviderError> {
        let fresh = self.refresher.switch(session, organization_id).await?;
        if fresh.user.id != session.user.id {
            tracing::warn!("a switch returned another user's tokens; refusing it");
            return Err(ProviderError::Failed("the switch returned another user's tokens".to_owned()));
        }
        Ok(continued(&fresh, session, false))
    }

    /// Who a bearer token is for (API clients; never refreshed: that is the client's job).
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, CheckError> {
        let principal = self.provider.verify_bearer(token).await?;
        match self.revocations.has_ended(&principal.user.id, principal.session_id.as_deref()).await {
            Ok(false) => Ok(principal),
            Ok(true) => Err(CheckError::Invalid("the token's session or user has ended".to_owned())),
            Err(unavailable) => Err(CheckError::DatabaseUnavailable { retry_after: unavailable.retry_after }),
        }
    }

    /// `Set-Cookie` values storing `session`, replacing whatever pieces the request carried.
    pub fn store(&self, session: &Session, request: &HeaderMap) -> Result<Vec<HeaderValue>, SessionError> {
        // Never a session whose refresh token a switch here has spent meanwhile: its successor instead, which keeps
        // "Personal" only if it is no switch (the organization unchanged).
        let newest = self.refresher.newest(session).map(|next| {
            let personal = session.personal && next.organization_id == session.organization_id;
            continued(&next, session, personal)
        });
        let session = newest.as_ref().unwrap_or(session);
        let json = serde_json::to_vec(session).map_err(|_| SealError)?;
        let sealed = self.sealer.seal(Purpose::Session, &json)?;
        Ok(self.session_cookie.write(&sealed, &self.session_cookie.present(request))?)
    }

    /// `Set-Cookie` values deleting the session cookie and all its chunks, as far as the request carried them. A
    /// request without any (another site's form posting to `/logout`, which a `SameSite=Lax` cookie does not ride
    /// along with) deletes nothing: browsers apply the `Set-Cookie` of a cross-site navigation's response, so
    /// another site could otherwise sign anyone out.
    pub fn clear(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        self.session_cookie.clear_sent(request)
    }
}

/// `fresh`, the provider's new tokens for `from`'s session, as that session goes on: under the same session id (sign-out
/// and CSRF tokens are tied to it), in the space `personal` says.
fn continued(fresh: &Session, from: &Session, personal: bool) -> Session {
    let mut fresh = fresh.clone();
    if fresh.session_id.is_none() {
        fresh.session_id = from.session_id.clone();
    }
    fresh.personal = personal;
    fresh
}

enum RefreshFailure {
    SessionOver,
    NoRefreshToken,
    Transient { retry_after: Duration },
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// Microseconds since the Unix epoch (a `u64` holds them for another half a million years).
pub fn unix_now_micros() -> u64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
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

    #[test]
    fn refresh_margin_follows_the_token_lifetime() {
        assert_eq!(refresh_margin(Some(Duration::from_secs(3600))), Duration::from_secs(60));
        assert_eq!(refresh_margin(Some(Duration::from_secs(300))), Duration::from_secs(30));
        assert_eq!(refresh_margin(Some(Duration::from_secs(10))), Duration::from_secs(5));
        assert_eq!(refresh_margin(None), Duration::from_secs(60));
    }

    /// Every request builds (and moves) the future of its session check: the database query and the key fetch it
    /// may need are boxed, so that it stays small (it was 15 KB when they were not).
    #[test]
    fn the_session_check_future_stays_small() {
        let manager = crate::session::sign_in::tests::manager_with_password(&"p".repeat(32), false);
        let headers = HeaderMap::new();
        let size = std::mem::size_of_val(&manager.resolve(&headers));
        assert!(size <= 2048, "resolving a session is a {size}-byte future");
        let has_ended = std::mem::size_of_val(&manager.revocations.has_ended("user_1", Some("session_1")));
        assert!(has_ended <= 512, "the revocation check is a {has_ended}-byte future");
    }
}
