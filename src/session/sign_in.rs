//! Signing in and out: the steps between "send me to the provider" and "here is your session".
//!
//! [`SessionManager::begin_sign_in`] binds the sign-in to this browser before it leaves for the provider: a random
//! `state` nonce, a PKCE verifier and an ID-token nonce (OpenID Connect), sealed in a short-lived cookie together
//! with where to return. Each sign-in has a cookie of its own, named for its `state` (`wos-auth-state.<key>`), so
//! that sign-ins started in several tabs at once (every tab reloading after a session ended) all finish, in any
//! order; a browser keeps at most [`MAX_SIGN_INS`] of them. [`SessionManager::finish_sign_in`] accepts a code only
//! with the cookie named for the returned `state` and holding that `state`, exchanges it with the verifier, and
//! gets back a session whose tokens the provider module has verified (for OpenID Connect, an ID token carrying this
//! sign-in's nonce); only then is the session cookie written, so a failure at any step leaves no half-made session
//! behind. The steps are the same for every provider.
//! [`SessionManager::sign_out`] clears the cookie and says where the provider's own session ends.

use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use url::Url;

use super::cookies::MAX_FAMILY_MEMBERS;
use super::provider::{AuthorizationRequest, ProviderError, ScreenHint};
use super::repeated_choices::RecordOnce;
use super::seal::{Purpose, SealError};
use super::{Session, SessionError, SessionManager, unix_now, unix_now_micros};
use crate::config::Secret;
use crate::workos::{OrganizationChoice, PendingSelection};

/// How long a sign-in may take between `/login` and `/callback`.
pub const SIGN_IN_STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// What `/login` keeps in the browser until `/callback`: it binds the provider's redirect to this browser.
#[derive(Serialize, Deserialize)]
pub struct SignInState {
    /// Echoed by the provider as `state`; must match, so a code cannot be injected from another browser's sign-in.
    pub nonce: String,
    pub code_verifier: String,
    /// The OpenID Connect `nonce` the ID token must carry, so a token issued for another sign-in is refused.
    /// Absent from states sealed before it existed (WorkOS does not use it).
    #[serde(default)]
    pub id_token_nonce: String,
    pub return_to: String,
    /// Unix seconds. The cookie's Max-Age is not trusted alone: a cookie can be replayed after it is "expired".
    pub expires_at: u64,
    /// Unix microseconds at `/login`: which of a browser's sign-ins is the oldest, when several began within the
    /// second `expires_at` counts in. Absent (0) from states sealed before it existed.
    #[serde(default)]
    pub started_at_micros: u64,
}

impl SignInState {
    /// Whether a callback's `state` is this sign-in's (compared in constant time: it is a secret of this browser).
    fn answered_by(&self, returned_state: &str) -> bool {
        verify_slices_are_equal(returned_state.as_bytes(), self.nonce.as_bytes()).is_ok()
    }
}

/// What `/login` was asked for, as the browser sent it (nothing here is trusted yet).
#[derive(Debug, Default, Deserialize)]
pub struct SignInRequest {
    pub return_to: Option<String>,
    pub organization_id: Option<String>,
    pub login_hint: Option<String>,
    pub screen_hint: Option<String>,
}

/// The most sign-ins a browser keeps under way (each its own cookie): a new one past them drops the oldest. Tabs
/// reloading together after a session ended each start one; more than a handful at once is no person's doing, and
/// each cookie rides along on every request until it is spent or expires. (nextjs-auth0 keeps about as many.)
pub const MAX_SIGN_INS: usize = 5;

/// Where to send the browser, and the cookies to set on the way: the sign-in's state, and the expiry of the oldest
/// sign-ins under way when there is no room for it.
pub struct SignInStart {
    pub authorization_url: Url,
    pub set_cookies: Vec<HeaderValue>,
}

impl SignInRequest {
    /// What is wrong with a parameter longer than it can be, which would otherwise be copied into the redirect to
    /// the provider (a 60 KB `Location`): an email address is at most 320 characters (RFC 5321 §4.5.3.1: 64 + @ +
    /// 255), a WorkOS organization id a few dozen.
    pub fn too_long(&self) -> Option<String> {
        [
            ("login_hint", &self.login_hint, MAX_LOGIN_HINT),
            ("organization_id", &self.organization_id, MAX_ORGANIZATION_ID),
        ]
        .into_iter()
        .find(|(_, value, max)| value.as_ref().is_some_and(|value| value.len() > *max))
        .map(|(name, _, max)| format!("{name} is longer than it can be ({max} bytes at most)."))
    }

    /// Whether it names who signs in or where (`organization_id`, `login_hint`): either can route the sign-in to an
    /// organization's own identity provider, which may answer at once, with no one typing anything.
    pub fn routes_to_an_identity_provider(&self) -> bool {
        present(&self.organization_id).is_some() || present(&self.login_hint).is_some()
    }
}

/// The longest `login_hint` and `organization_id` taken ([`SignInRequest::too_long`]).
const MAX_LOGIN_HINT: usize = 320;
const MAX_ORGANIZATION_ID: usize = 256;

/// The provider's redirect back to `/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The authorization server's own name for itself (RFC 9207), when it sends one.
    pub iss: Option<String>,
}

/// A finished sign-in: where to go, the session cookie to set, and the session (for the audit trail).
pub struct SignedIn {
    pub return_to: String,
    pub set_cookies: Vec<HeaderValue>,
    pub session: Box<Session>,
    /// Whether this request records the sign-in (the Audit Logs): the requests of an organization choice sent
    /// twice (a double click) share one sign-in, recorded once.
    pub record: RecordOnce,
}

/// What `/callback` leads to: a session, or a page where the user picks one of their organizations first.
pub enum CallbackOutcome {
    SignedIn(SignedIn),
    /// The pending sign-in is sealed in `set_cookies`, in the cookie named for `selection`; the browser goes to
    /// the selection page for it.
    ChooseOrganization {
        selection: String,
        set_cookies: Vec<HeaderValue>,
    },
}

/// How long a user may take to pick an organization (WorkOS's pending tokens are short-lived too).
pub const ORGANIZATION_SELECTION_TTL: Duration = Duration::from_secs(10 * 60);
/// The most organization choices a browser keeps pending, each a cookie of its own: one per tab at that step (tabs
/// reloading together after a session ended each reach it); a fourth drops the oldest. Fewer than the sign-ins
/// under way ([`MAX_SIGN_INS`]), because each may be larger ([`MAX_KEPT_LIST_BYTES`]).
pub const MAX_PENDING_CHOICES: usize = 3;
/// The most a pending choice's sealed cookie value may take with the organizations offered kept in it (half a
/// dozen with ordinary names and an ordinary `return_to`); past that it keeps the user's id instead, and the page
/// reads their organizations from WorkOS. Then it is at most about 1.5 KB (the longest `return_to`, a name of
/// [`MAX_USER_NAME_CHARS`] four-byte characters): three of them beside a session cookie of 3 KB stay under the 8 KB
/// `Cookie` line that proxies such as nginx accept.
pub const MAX_KEPT_LIST_BYTES: usize = 1024;
/// The most characters of an organization's name the pending sign-in keeps: enough for any page, and a bound on
/// the cookie whatever WorkOS sends.
const MAX_ORGANIZATION_NAME_CHARS: usize = 100;
/// The most characters of the user's name it keeps, for the page's greeting ("Bob, you belong to…"): fewer, as it
/// is in the cookie whether the list is or not. Control characters are left out (JSON would write each as six
/// bytes), so the name takes at most 200 bytes.
const MAX_USER_NAME_CHARS: usize = 50;

/// A sign-in waiting for the user to pick an organization: sealed in its own short-lived cookie (its own seal
/// purpose), never in a URL or a log, because WorkOS's pending token finishes the sign-in.
///
/// Each pending choice has its own cookie, named for a random selection id that the selection page's address
/// carries (`/login/organization?selection=…`), so that choices reached in several tabs each finish their own.
///
/// The cookie must stay small, so it keeps the organizations WorkOS offered only when they fit in
/// [`MAX_KEPT_LIST_BYTES`]. When they do not (more than half a dozen organizations, long names), it keeps who is
/// signing in instead: the page then lists the user's active memberships from WorkOS, and WorkOS alone judges the
/// organization picked. (The user can always get that second form, with a long `return_to`, so the check against
/// the offered list is a courtesy that spares WorkOS a call; the boundary is WorkOS's own check of the pending
/// token and the organization.)
#[derive(Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The id its cookie is named for, checked against the one the page was asked for (a cookie copied under
    /// another member's name opens nothing). Empty in the previous version's one cookie. Not a secret: it is in
    /// the page's address.
    #[serde(default)]
    pub selection: String,
    pending_authentication_token: String,
    /// The organizations offered, when they fit in the cookie; `None` when they did not.
    #[serde(default)]
    pub organizations: Option<Vec<OrganizationChoice>>,
    /// Who is signing in (WorkOS's `user.id`), to list their organizations when `organizations` was not kept.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Who is signing in, for the page ("Choose an organization, Bob").
    pub user_name: Option<String>,
    pub return_to: String,
    /// The selection form's CSRF tokens are bound to this (there is no session yet).
    pub csrf_nonce: String,
    pub expires_at: u64,
    /// Unix microseconds when it began: which of a browser's pending choices is the oldest.
    #[serde(default)]
    pub started_at_micros: u64,
}

impl PendingSignIn {
    /// Whether this is the choice the page for `selection` asks for.
    fn is_for(&self, selection: &str) -> bool {
        self.selection == selection
    }

    /// Whether this choice, read from the previous version's one cookie (`legacy`) or from a cookie of its own, is
    /// the one the page for `selection` finishes: that version's pages name no selection, and read that cookie.
    fn read_by_page(&self, selection: &str, legacy: bool) -> bool {
        if selection.is_empty() { legacy } else { !legacy && self.is_for(selection) }
    }
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("organizations", &self.organizations)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Where a sign-out sends the browser, and the cookies that end the app's session.
pub struct SignOut {
    pub destination: String,
    pub set_cookies: Vec<HeaderValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No sign-in state, or one that does not open, has expired, or does not match the returned `state`.
    #[error("the sign-in state is missing, expired or does not match")]
    Expired,
    /// The provider sent the user back with an error (they cancelled, or were refused).
    #[error("the provider ended the sign-in: {0}")]
    Denied(String),
    #[error("the provider sent no sign-in code")]
    MissingCode,
    /// The organization picked is not one the sign-in offered.
    #[error("that organization was not offered for this sign-in")]
    NotOffered,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The provider signed in a user whose access has ended here (deleted, as the lifecycle recorded it).
    #[error("this user's access has ended")]
    AccessEnded,
    #[error("the system random generator failed")]
    Random,
    #[error("cannot store the sign-in: {0}")]
    Store(#[from] SessionError),
}

impl From<SealError> for SignInError {
    fn from(error: SealError) -> Self {
        Self::Store(error.into())
    }
}

impl SessionManager {
    /// Starts a sign-in in the browser that sent `headers` (whose other sign-ins under way it may make room among).
    pub fn begin_sign_in(&self, headers: &HeaderMap, request: &SignInRequest) -> Result<SignInStart, SignInError> {
        let random = |_| SignInError::Random;
        let state = SignInState {
            nonce: crate::random::token().map_err(random)?,
            code_verifier: crate::random::token().map_err(random)?,
            id_token_nonce: crate::random::token().map_err(random)?,
            return_to: safe_return_path(request.return_to.as_deref()),
            expires_at: unix_now() + SIGN_IN_STATE_TTL.as_secs(),
            started_at_micros: unix_now_micros(),
        };
        let code_challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, state.code_verifier.as_bytes()));
        let json = serde_json::to_vec(&state).map_err(|_| SealError)?;
        let sealed = self.sealer.seal(Purpose::SignInState, &json)?;
        // The room first, the new cookie last: whatever is expired, the browser keeps the new one. It is always one
        // small cookie, whatever `return_to` was: a sign-in link must not be able to plant kilobytes of cookies in
        // someone's browser.
        let mut set_cookies = self.make_room_for_a_sign_in(headers);
        set_cookies.push(self.state_cookies.write(&state.nonce, &sealed).map_err(SessionError::from)?);

        let authorization_url = self.provider.authorization_url(&AuthorizationRequest {
            state: &state.nonce,
            nonce: &state.id_token_nonce,
            code_challenge: &code_challenge,
            organization_id: present(&request.organization_id),
            login_hint: present(&request.login_hint),
            screen_hint: match request.screen_hint.as_deref() {
                Some("sign-in") => Some(ScreenHint::SignIn),
                Some("sign-up") => Some(ScreenHint::SignUp),
                _ => None,
            },
        })?;
        Ok(SignInStart { authorization_url, set_cookies })
    }

    /// `Set-Cookie` values expiring the sign-ins this browser holds beyond the newest `MAX_SIGN_INS - 1`, so that
    /// with the one starting it holds at most [`MAX_SIGN_INS`]: first those no callback can use (they do not open,
    /// or have expired), then the oldest. The tab whose sign-in is dropped is told at its callback that the sign-in
    /// expired, and signs in again.
    fn make_room_for_a_sign_in(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        // Every state lives `SIGN_IN_STATE_TTL`, so the one that expires first began first.
        self.state_cookies.make_room_for_one(request, MAX_SIGN_INS, |sealed| {
            self.open_sign_in_state(sealed).map(|state| (state.expires_at, state.started_at_micros))
        })
    }

    /// The sign-in a callback returning `returned_state` answers, if the browser holds it and it opens and has not
    /// expired: from the cookie named for that state, or else from the one cookie of the previous version, for a
    /// sign-in started before a rolling deploy (the fallback can go one release after this one). The caller still
    /// checks the state against it: the single cookie may hold another sign-in.
    pub(super) fn sign_in_state(&self, request: &HeaderMap, returned_state: &str) -> Option<SignInState> {
        match self.state_cookies.read(request, returned_state) {
            Some(member) => self.open_sign_in_state(member.value),
            None => self.open_sign_in_state(&self.legacy_state_cookie.read(request)?),
        }
    }

    /// The sign-in state sealed in `sealed`, if it opens and has not expired.
    fn open_sign_in_state(&self, sealed: &str) -> Option<SignInState> {
        let opened = self.sealer.open(Purpose::SignInState, sealed).ok()?;
        let state: SignInState = serde_json::from_slice(&opened.plaintext).ok()?;
        (state.expires_at > unix_now()).then_some(state)
    }

    /// `Set-Cookie` values deleting the sign-in states that a `/callback` carrying `returned_states` (its `state`
    /// parameters: one, or none or several in a malformed one) spends: the cookie named for one of them, when it
    /// holds that state (the sign-in is over, whatever the outcome) or does not open or has expired (no callback
    /// can use it). A callback answering another sign-in, an older tab's or another site's link to
    /// `/callback?state=x`, leaves the sign-ins under way alone; each is spent by its own callback only.
    pub fn spent_sign_in_state<'a>(
        &self,
        request: &HeaderMap,
        returned_states: impl IntoIterator<Item = &'a str>,
    ) -> Vec<HeaderValue> {
        let returned: Vec<&str> = returned_states.into_iter().collect();
        let mut spent = Vec::new();
        // A malformed callback may repeat `state` any number of times: only as many are looked up as a browser
        // can hold cookies for, so the answer expires no more than that.
        for returned_state in returned.iter().take(MAX_FAMILY_MEMBERS) {
            let Some(member) = self.state_cookies.read(request, returned_state) else { continue };
            let over = self.open_sign_in_state(member.value).is_none_or(|state| state.answered_by(returned_state));
            if over && !spent.contains(&member.name) {
                spent.push(member.name);
            }
        }
        let mut set_cookies = self.state_cookies.expire(spent);
        set_cookies.extend(self.spent_legacy_sign_in_state(request, &returned));
        set_cookies
    }

    /// [`Self::spent_sign_in_state`] for the one state cookie of the previous version, under its rule then: spent
    /// when one of `returned` is its sign-in's, or when it does not open or has expired. It can go with
    /// `legacy_state_cookie`, one release after this one.
    fn spent_legacy_sign_in_state(&self, request: &HeaderMap, returned: &[&str]) -> Vec<HeaderValue> {
        let present = self.legacy_state_cookie.present(request);
        if present.is_empty() {
            return Vec::new();
        }
        let spent = match self.legacy_state_cookie.read(request).and_then(|sealed| self.open_sign_in_state(&sealed)) {
            Some(state) => returned.iter().any(|returned| state.answered_by(returned)),
            None => true,
        };
        if spent { self.legacy_state_cookie.clear(&present) } else { Vec::new() }
    }

    pub async fn finish_sign_in(
        &self,
        headers: &HeaderMap,
        callback: Callback,
    ) -> Result<CallbackOutcome, SignInError> {
        // The state comes first, even for errors: only a redirect that answers this browser's own sign-in may put
        // the provider's words on our page (anyone can craft a `/callback?error=…` link).
        let returned_state = callback.state.as_deref().unwrap_or_default();
        let state = self.sign_in_state(headers, returned_state).ok_or(SignInError::Expired)?;
        if !state.answered_by(returned_state) {
            return Err(SignInError::Expired);
        }
        // RFC 9207, a mix-up defence: the answer must name our authorization server, or name none where that is
        // allowed (WorkOS sends none; an OpenID Connect provider that promised `iss` must send it).
        if !self.provider.accepts_answer_from(callback.iss.as_deref()) {
            tracing::warn!(iss = ?callback.iss, "a sign-in answer did not name this app's authorization server; refused");
            return Err(SignInError::Denied(
                if callback.iss.is_some() {
                    "The sign-in answer came from another identity provider."
                } else {
                    "The sign-in answer did not say which identity provider sent it, although this one always does."
                }
                .to_owned(),
            ));
        }
        if let Some(error) = callback.error {
            // Debug formatting: the text is the sender's, and a newline in it must not start a line of its own in the log.
            // The description is the provider's reason ("Service not found: …" for a wrong audience at Auth0, "user
            // is blocked"), which `access_denied` alone would hide from the operator: a user declining looks the same.
            let short = crate::oidc::client::short;
            let (error_code, description) = (short(&error), callback.error_description.as_deref().map(short));
            tracing::info!(error = ?error_code, description = ?description, "the identity provider returned a sign-in error");
            return Err(SignInError::Denied(callback.error_description.unwrap_or_else(|| error.replace('_', " "))));
        }
        let code = callback.code.filter(|code| !code.is_empty()).ok_or(SignInError::MissingCode)?;

        let session = match self.provider.exchange_code(&code, &state.code_verifier, &state.id_token_nonce).await {
            Ok(session) => session,
            Err(ProviderError::OrganizationSelectionRequired(pending)) => {
                return self.begin_organization_selection(headers, &pending, state.return_to);
            }
            Err(error) => return Err(error.into()),
        };
        self.refuse_if_ended(&session).await?;
        let set_cookies = self.store(&session, headers)?;
        tracing::info!(user_id = %session.user.id, "signed in");
        let signed_in = SignedIn {
            return_to: state.return_to,
            set_cookies,
            session: Box::new(session),
            record: RecordOnce::default(),
        };
        Ok(CallbackOutcome::SignedIn(signed_in))
    }

    /// Refuses a new session that every request would refuse: its user's access has ended here (deleted, as the
    /// lifecycle recorded it). WorkOS itself no longer signs a deleted user in, but a stand-in started afresh over a
    /// kept database does, and the user would be given a cookie only to be signed out without a word at the next
    /// request. When the database cannot say, the sign-in goes on: the next request asks again.
    async fn refuse_if_ended(&self, session: &Session) -> Result<(), SignInError> {
        match self.revocations.has_ended(&session.user.id, session.session_id.as_deref()).await {
            Ok(true) => {
                tracing::warn!(user_id = %session.user.id, "the provider signed in a user whose access has ended; refused");
                Err(SignInError::AccessEnded)
            }
            Ok(false) | Err(_) => Ok(()),
        }
    }

    /// Seals the pending sign-in into a cookie of its own: with the organizations offered when they fit, else with
    /// the user's id only (see [`PendingSignIn`]). Makes room for it among the browser's other pending choices.
    fn begin_organization_selection(
        &self,
        headers: &HeaderMap,
        pending: &PendingSelection,
        return_to: String,
    ) -> Result<CallbackOutcome, SignInError> {
        let organizations = OrganizationChoice::by_name(
            pending
                .organizations
                .iter()
                .map(|choice| OrganizationChoice {
                    id: choice.id.clone(),
                    name: choice.name.chars().take(MAX_ORGANIZATION_NAME_CHARS).collect(),
                })
                .collect(),
        );
        if organizations.is_empty() {
            return Err(SignInError::Provider(ProviderError::Failed(
                "WorkOS asked for an organization to be chosen but offered none".to_owned(),
            )));
        }
        let offered = organizations.len();
        let random = |_| SignInError::Random;
        let mut pending = PendingSignIn {
            selection: crate::random::token().map_err(random)?,
            pending_authentication_token: pending.pending_authentication_token.expose().to_owned(),
            organizations: Some(organizations),
            user_id: pending.user.as_ref().map(|user| user.id.clone()),
            user_name: pending
                .user
                .as_ref()
                .map(|user| greeting_name(&user.display_name()))
                .filter(|name| !name.is_empty()),
            return_to,
            csrf_nonce: crate::random::token().map_err(random)?,
            expires_at: unix_now() + ORGANIZATION_SELECTION_TTL.as_secs(),
            started_at_micros: unix_now_micros(),
        };
        let mut set_cookies = self.selection_cookies.make_room_for_one(headers, MAX_PENDING_CHOICES, |sealed| {
            self.open_pending_sign_in(sealed).map(|pending| (pending.expires_at, pending.started_at_micros))
        });
        let mut sealed = self.seal_pending_sign_in(&pending)?;
        // Too many organizations, or names too long, to keep small: WorkOS is asked for them again on the page. That
        // needs the user's id; without it the list is kept whole, as long as it fits in one cookie at all.
        if sealed.len() > MAX_KEPT_LIST_BYTES && pending.user_id.is_some() {
            pending.organizations = None;
            sealed = self.seal_pending_sign_in(&pending)?;
        }
        let cookie = self.selection_cookies.write(&pending.selection, &sealed).map_err(|_| {
            SignInError::Provider(ProviderError::Failed(format!(
                "WorkOS offered {offered} organizations, too many to keep, and did not say who is signing in"
            )))
        })?;
        let kept = pending.organizations.is_some();
        tracing::info!(offered, kept, "sign-in waits for the user to choose an organization");
        set_cookies.push(cookie);
        Ok(CallbackOutcome::ChooseOrganization { selection: pending.selection, set_cookies })
    }

    /// The pending sign-in sealed for its cookie.
    fn seal_pending_sign_in(&self, pending: &PendingSignIn) -> Result<String, SignInError> {
        let json = serde_json::to_vec(pending).map_err(|_| SealError)?;
        Ok(self.sealer.seal(Purpose::OrganizationSelection, &json)?)
    }

    /// The organizations the pending sign-in may be finished in: those offered, when the cookie kept them; else
    /// the user's active memberships, read from the provider now.
    pub async fn selectable_organizations(
        &self,
        pending: &PendingSignIn,
    ) -> Result<Vec<OrganizationChoice>, SignInError> {
        match (&pending.organizations, &pending.user_id) {
            (Some(offered), _) => Ok(offered.clone()),
            (None, Some(user_id)) => Ok(self.provider.selectable_organizations(user_id).await?),
            // Never sealed so (see `begin_organization_selection`).
            (None, None) => Err(SignInError::Expired),
        }
    }

    /// The sign-in waiting for an organization to be picked on the page for `selection`, if the browser holds it
    /// and it opens and has not expired: from the cookie named for it; with an empty selection id (the previous
    /// version's pages name none), from that version's one cookie.
    pub fn pending_sign_in(&self, headers: &HeaderMap, selection: &str) -> Option<PendingSignIn> {
        if selection.is_empty() {
            // Only as that version sealed it: without a selection id of its own.
            let legacy = self.open_pending_sign_in(&self.legacy_selection_cookie.read(headers)?)?;
            return legacy.selection.is_empty().then_some(legacy);
        }
        let member = self.selection_cookies.read(headers, selection)?;
        self.open_pending_sign_in(member.value).filter(|pending| pending.is_for(selection))
    }

    /// The pending sign-in sealed in `sealed`, if it opens and has not expired.
    fn open_pending_sign_in(&self, sealed: &str) -> Option<PendingSignIn> {
        let opened = self.sealer.open(Purpose::OrganizationSelection, sealed).ok()?;
        let pending: PendingSignIn = serde_json::from_slice(&opened.plaintext).ok()?;
        (pending.expires_at > unix_now()).then_some(pending)
    }

    /// `Set-Cookie` values deleting every pending organization choice the browser holds: at `/login` and at
    /// sign-out. Each is someone's sign-in, and on a shared computer the next person must not be able to finish
    /// it and become them.
    pub fn drop_pending_sign_ins(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        self.drop_pending_sign_ins_where(request, |_, _| true)
    }

    /// `Set-Cookie` values deleting the pending choice of the page for `selection` (empty: the previous version's
    /// one cookie), when it is over: spent or broken at WorkOS.
    pub fn spent_pending_sign_in(&self, request: &HeaderMap, selection: &str) -> Vec<HeaderValue> {
        self.drop_pending_sign_ins_where(request, |pending, legacy| pending.read_by_page(selection, legacy))
    }

    /// `Set-Cookie` values deleting, once `session` has signed in, the pending choices that are not its user's (the
    /// shared-computer rule of [`Self::drop_pending_sign_ins`]), every one when it is an impersonation (support
    /// staff signed in as the user are not the user, and must not be left able to finish the user's own choice),
    /// and the one of the page for `finished` when a choice was what signed them in (empty: the previous version's
    /// one cookie). The user's other choices stay, so that each tab where they reached that step can still finish
    /// its own.
    pub fn drop_pending_sign_ins_after_sign_in(
        &self,
        request: &HeaderMap,
        session: &Session,
        finished: Option<&str>,
    ) -> Vec<HeaderValue> {
        let impersonation = session.impersonator.is_some();
        self.drop_pending_sign_ins_where(request, |pending, legacy| {
            impersonation
                || pending.user_id.as_deref() != Some(session.user.id.as_str())
                || finished.is_some_and(|selection| pending.read_by_page(selection, legacy))
        })
    }

    /// `Set-Cookie` values deleting the browser's pending choices for which `should_drop` holds (told whether it is
    /// the previous version's one cookie), and those nobody can finish (they do not open, or have expired).
    fn drop_pending_sign_ins_where(
        &self,
        request: &HeaderMap,
        should_drop: impl Fn(&PendingSignIn, bool) -> bool,
    ) -> Vec<HeaderValue> {
        let over = |sealed: &str, legacy| {
            self.open_pending_sign_in(sealed).is_none_or(|pending| should_drop(&pending, legacy))
        };
        let held = self.selection_cookies.held(request);
        let mut set_cookies = self
            .selection_cookies
            .expire(held.iter().filter(|member| over(member.value, false)).map(|member| member.name));
        let legacy = self.legacy_selection_cookie.present(request);
        if !legacy.is_empty() && self.legacy_selection_cookie.read(request).is_none_or(|sealed| over(&sealed, true)) {
            set_cookies.extend(self.legacy_selection_cookie.clear(&legacy));
        }
        set_cookies
    }

    /// Finishes the pending sign-in in `organization_id` (the caller checked the form's CSRF token against the
    /// pending sign-in): one of those offered, when the cookie kept them; else whichever WorkOS accepts.
    pub async fn finish_organization_selection(
        &self,
        headers: &HeaderMap,
        pending: &PendingSignIn,
        organization_id: &str,
    ) -> Result<SignedIn, SignInError> {
        let offered = match &pending.organizations {
            Some(offered) => offered.iter().any(|choice| choice.id == organization_id),
            None => !organization_id.trim().is_empty(),
        };
        if !offered {
            return Err(SignInError::NotOffered);
        }
        let selection = PendingSelection {
            pending_authentication_token: Secret::new(pending.pending_authentication_token.clone()),
            organizations: pending.organizations.clone().unwrap_or_default(),
            user: None,
        };
        let exchange = || self.provider.complete_organization_selection(&selection, organization_id);
        let (session, repeated, record) =
            self.repeated_choices.finish_once(&pending.pending_authentication_token, organization_id, exchange).await?;
        self.refuse_if_ended(&session).await?;
        let set_cookies = self.store(&session, headers)?;
        if repeated {
            // A double click, most likely; or a copy of the pending sign-in's cookie sent within seconds of it. The
            // request's own line (its address, its client) tells them apart.
            tracing::info!(user_id = %session.user.id, "signed in with the session of the same organization choice sent just before");
        } else {
            tracing::info!(user_id = %session.user.id, "signed in after choosing an organization");
        }
        Ok(SignedIn { return_to: pending.return_to.clone(), set_cookies, session: Box::new(session), record })
    }

    /// Ends the session everywhere: refused by this app from now on (whatever copy of the cookie or token is
    /// presented), revoked at the provider (so it can never be refreshed), and the cookie cleared. A provider
    /// failure is logged and does not stop the sign-out. The caller has already checked the request (CSRF).
    pub async fn sign_out(&self, session: &Session, headers: &HeaderMap, return_to: &Url) -> SignOut {
        if let Some(session_id) = session.session_id.as_deref() {
            // Never refused for want of the database: the browser is signed out whatever happens, and the record
            // every replica reads is retried until it is written (see `Revocations::record_sign_out`).
            self.revocations.record_sign_out(session_id, &session.user.id).await;
        }
        if let Err(error) = self.provider.revoke(session).await {
            tracing::error!(%error, user_id = %session.user.id, "could not revoke the session at the provider");
        }
        let destination =
            self.provider.logout_url(session, return_to).map_or_else(|| "/".to_owned(), |url| url.to_string());
        tracing::info!(user_id = %session.user.id, "signed out");
        SignOut { destination, set_cookies: self.clear(headers) }
    }
}

/// The user's name as a pending choice keeps it (see [`MAX_USER_NAME_CHARS`]).
fn greeting_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(MAX_USER_NAME_CHARS).collect()
}

/// A parameter that was sent and is not blank.
pub fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// The longest `return_to` kept; a longer one falls back to `/`. It travels in the sign-in state cookie, which
/// must stay small: tabs reloading at the same moment each start a sign-in before any of them can see the others'
/// cookies (so they may briefly hold more than [`MAX_SIGN_INS`]), and a `Cookie` header past 8 KB is refused by
/// proxies such as nginx (`large_client_header_buffers`), every request failing until the cookies expire. At 512
/// bytes a state cookie is at most about 1.1 KB (450 bytes with an ordinary path): six tabs at once with the
/// longest paths stay under that, or over a dozen ordinary ones.
pub const MAX_RETURN_PATH_BYTES: usize = 512;

/// `return_to` accepted only as a path on this site; anything else (other hosts, `//host`, `/\\host`, schemes,
/// dot segments, control characters, encoded forms of those, or more than [`MAX_RETURN_PATH_BYTES`] as sent or as
/// kept) falls back to `/`.
pub fn safe_return_path(raw: Option<&str>) -> String {
    const HOME: &str = "/";
    let Some(raw) = raw.filter(|raw| raw.len() <= MAX_RETURN_PATH_BYTES) else { return HOME.to_owned() };
    // Decode repeatedly so `%2F%2Fevil` and `%252F%252Fevil` are judged by what they become.
    let mut decoded = raw.to_owned();
    for _ in 0..3 {
        let next = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    // `/..//evil` normalises to `//evil`: no legitimate return path needs dot segments, so refuse them outright.
    let has_dot_segment = |path: &str| {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        path.split('/').any(|segment| segment == "." || segment == "..")
    };
    let unsafe_path = |path: &str| {
        !path.starts_with('/')
            || path.starts_with("//")
            || path.contains('\\')
            || path.chars().any(|c| c.is_control() || c.is_whitespace())
            || has_dot_segment(path)
    };
    if unsafe_path(raw) || unsafe_path(&decoded) {
        return HOME.to_owned();
    }
    // Final check by the same parser browsers use: resolved against a placeholder origin, it must stay there, and
    // what it resolved to must pass the same checks.
    let Ok(base) = Url::parse("http://authbridge.invalid/") else { return HOME.to_owned() };
    match base.join(raw) {
        Ok(url) if url.origin() == base.origin() => {
            let mut path = url.path().to_owned();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            // The parser percent-encodes `{`, `"`, `<`, non-ASCII…, so the path kept can be three times the one
            // sent: the limit is checked again on what travels in the state cookie.
            if unsafe_path(&path) || path.len() > MAX_RETURN_PATH_BYTES { HOME.to_owned() } else { path }
        }
        _ => HOME.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Secret, SessionConfig, WorkosConfig};
    use crate::session::provider::IdentityProvider;
    use crate::session::workos::WorkosProvider;
    use crate::session::{SIGN_IN_STATE_COOKIE, sign_in_state_cookie};
    use crate::workos::WorkosClient;

    fn manager(secure_cookies: bool) -> SessionManager {
        manager_with_password(&"p".repeat(32), secure_cookies)
    }

    /// WorkOS at an address nothing here calls.
    pub(crate) fn provider() -> IdentityProvider {
        let config = WorkosConfig {
            api_key: Secret::new("sk_test"),
            client_id: "client_test".to_owned(),
            redirect_uri: Url::parse("https://todos.example.com/callback").expect("url"),
            api_base_url: Url::parse("https://api.workos.com").expect("url"),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        let client = WorkosClient::new(&config).expect("client");
        IdentityProvider::Workos(WorkosProvider::new(client, &config.redirect_uri, &config.api_base_url))
    }

    /// A session manager whose provider is [`provider`].
    pub(crate) fn manager_with_password(password: &str, secure_cookies: bool) -> SessionManager {
        let session =
            SessionConfig { cookie_password: Secret::new(password), previous_cookie_password: None, secure_cookies };
        SessionManager::new(&session, provider()).expect("manager")
    }

    /// The `state` a sign-in sends the provider.
    fn state_of(start: &SignInStart) -> String {
        let state = start.authorization_url.query_pairs().find(|(name, _)| name == "state").map(|(_, v)| v);
        state.expect("a state").into_owned()
    }

    /// A fresh browser's sign-in, and its state as the callback answering it finds it.
    fn started(manager: &SessionManager, request: &SignInRequest) -> (SignInStart, SignInState) {
        let start = manager.begin_sign_in(&HeaderMap::new(), request).expect("sealed");
        assert_eq!(start.set_cookies.len(), 1, "a fresh browser: nothing to make room among");
        let state = manager.sign_in_state(&holding(&start.set_cookies[0]), &state_of(&start)).expect("opens");
        (start, state)
    }

    #[test]
    fn over_https_cookies_are_secure_and_host_only() {
        for (secure, prefix) in [(true, "__Host-wos-auth-state."), (false, "wos-auth-state.")] {
            let start = manager(secure).begin_sign_in(&HeaderMap::new(), &SignInRequest::default()).expect("sealed");
            let line = start.set_cookies[0].to_str().expect("ascii");
            assert!(line.starts_with(prefix), "{line}");
            let name = format!("{}{}", if secure { "__Host-" } else { "" }, sign_in_state_cookie(&state_of(&start)));
            assert!(line.starts_with(&format!("{name}=")), "named for its state: {line}");
            assert_eq!(line.contains("; Secure"), secure, "{line}");
            assert!(line.contains("Path=/") && !line.contains("Domain"), "{line}");
        }
    }

    #[test]
    fn the_authorization_url_carries_a_pkce_challenge_of_the_sealed_verifier() {
        let manager = manager(false);
        let (start, state) = started(
            &manager,
            &SignInRequest {
                return_to: Some("/todos?x=1".into()),
                login_hint: Some("  ".into()),
                screen_hint: Some("sign-up".into()),
                ..SignInRequest::default()
            },
        );
        assert_eq!(state.return_to, "/todos?x=1");

        let query: Vec<(String, String)> = start.authorization_url.query_pairs().into_owned().collect();
        let get = |key: &str| query.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
        assert_eq!(get("state"), Some(state.nonce.clone()));
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, state.code_verifier.as_bytes()));
        assert_eq!(get("code_challenge"), Some(challenge));
        assert_eq!(get("screen_hint").as_deref(), Some("sign-up"));
        assert_eq!(get("login_hint"), None, "a blank hint is not sent");
    }

    #[test]
    fn long_return_paths_fall_back_home_and_the_state_stays_one_cookie() {
        let manager = manager(false);
        let kept = format!("/{}", "a".repeat(MAX_RETURN_PATH_BYTES - 1));
        assert_eq!(safe_return_path(Some(&kept)), kept);
        for length in [MAX_RETURN_PATH_BYTES + 1, 20_000, 50_000] {
            let raw = format!("/{}", "a".repeat(length - 1));
            assert_eq!(safe_return_path(Some(&raw)), "/");
            let start = manager
                .begin_sign_in(&HeaderMap::new(), &SignInRequest { return_to: Some(raw), ..SignInRequest::default() })
                .expect("a long return_to is not an error");
            assert_eq!(start.set_cookies.len(), 1);
            assert!(start.set_cookies[0].len() < 1_000, "{} bytes", start.set_cookies[0].len());
        }
        let start = manager
            .begin_sign_in(&HeaderMap::new(), &SignInRequest { return_to: Some(kept), ..SignInRequest::default() })
            .expect("the longest kept return_to still fits one cookie");
        assert_eq!(start.set_cookies.len(), 1);
    }

    /// The length limit holds for the path as kept, not only as sent: the URL parser percent-encodes `{`, `"`, `<`,
    /// non-ASCII…, so a `return_to` of 2048 bytes can come out three times longer, and the state cookie must still
    /// be one cookie (it was a 500 at `/login`).
    #[test]
    fn a_return_path_that_grows_past_the_limit_when_normalised_falls_back_home() {
        let manager = manager(false);
        let raw = format!("/{}", "{".repeat(MAX_RETURN_PATH_BYTES - 1));
        assert_eq!(safe_return_path(Some(&raw)), "/");
        let request = SignInRequest { return_to: Some(raw), ..SignInRequest::default() };
        let (start, state) = started(&manager, &request);
        let line = &start.set_cookies[0];
        assert!(line.len() < super::super::cookies::MAX_SET_COOKIE_BYTES, "{} bytes", line.len());
        assert_eq!(state.return_to, "/");

        // One that still fits once encoded is kept, encoded.
        let fits = format!("/{}", "{".repeat((MAX_RETURN_PATH_BYTES - 1) / 3));
        let kept = safe_return_path(Some(&fits));
        assert_eq!(kept, format!("/{}", "%7B".repeat((MAX_RETURN_PATH_BYTES - 1) / 3)));
        assert!(kept.len() <= MAX_RETURN_PATH_BYTES);
    }

    #[test]
    fn return_paths_stay_on_this_site() {
        for (raw, expected) in [
            (None, "/"),
            (Some("/todos?page=2"), "/todos?page=2"),
            (Some("https://evil.example/"), "/"),
            (Some("//evil.example"), "/"),
            (Some("/%2F%2Fevil.example"), "/"),
            (Some("/%252F%252Fevil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("/..//evil.example"), "/"),
            (Some("/%2e%2e//evil.example"), "/"),
            (Some("/a\nb"), "/"),
            (Some("relative"), "/"),
            // Each check on its own, where the browser's parser alone would have made something harmless of it:
            (Some("/todos/../admin"), "/"),
            (Some("/./todos"), "/"),
            (Some("/a b"), "/"),
            (Some("/a\u{7f}b"), "/"),
        ] {
            assert_eq!(safe_return_path(raw), expected, "{raw:?}");
        }
    }

    /// The request headers of a browser holding the cookie a `Set-Cookie` value sets.
    fn holding(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, HeaderValue::from_str(&pair).expect("header"));
        headers
    }

    #[test]
    fn the_sign_in_state_lasts_ten_minutes_and_is_refused_from_the_second_it_expires() {
        let manager = manager(false);
        let request = SignInRequest { screen_hint: Some("sign-in".into()), ..SignInRequest::default() };
        let (start, state) = started(&manager, &request);
        let left = state.expires_at.saturating_sub(unix_now());
        assert!((598..=600).contains(&left), "{left} s left of the state's ten minutes");
        let hint = start.authorization_url.query_pairs().find(|(name, _)| name == "screen_hint").map(|(_, v)| v);
        assert_eq!(hint.as_deref(), Some("sign-in"), "the hosted page opens on signing in");

        for (expires_at, opens) in [(unix_now() + 60, true), (unix_now(), false)] {
            let sealed = resealed(&manager, Purpose::SignInState, &state, expires_at);
            let cookie = holding(&manager.state_cookies.write(&state.nonce, &sealed).expect("one cookie"));
            assert_eq!(manager.sign_in_state(&cookie, &state.nonce).is_some(), opens, "expires at {expires_at}");
        }
    }

    /// `value` sealed for `purpose`, with its `expires_at` replaced.
    fn resealed(manager: &SessionManager, purpose: Purpose, value: &impl Serialize, expires_at: u64) -> String {
        let mut json = serde_json::to_value(value).expect("json");
        json["expires_at"] = expires_at.into();
        manager.sealer.seal(purpose, &serde_json::to_vec(&json).expect("json")).expect("sealed")
    }

    /// A browser's cookie jar: what it sends back after the `Set-Cookie` lines it was given.
    #[derive(Default)]
    struct Jar(Vec<(String, String)>);

    impl Jar {
        fn apply(&mut self, set_cookies: &[HeaderValue]) {
            for line in set_cookies {
                let cookie = axum_extra::extract::cookie::Cookie::parse(line.to_str().expect("ascii")).expect("valid");
                self.0.retain(|(name, _)| name != cookie.name());
                if !cookie.max_age().is_some_and(|age| age.is_zero()) {
                    self.0.push((cookie.name().to_owned(), cookie.value().to_owned()));
                }
            }
        }

        fn headers(&self) -> HeaderMap {
            let line = self.0.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::COOKIE, HeaderValue::from_str(&line).expect("ascii"));
            headers
        }

        fn names(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| name.as_str()).collect()
        }

        /// Starts a sign-in in this browser, returning its `state`.
        fn sign_in(&mut self, manager: &SessionManager, return_to: &str) -> String {
            let request = SignInRequest { return_to: Some(return_to.to_owned()), ..SignInRequest::default() };
            let start = manager.begin_sign_in(&self.headers(), &request).expect("sealed");
            self.apply(&start.set_cookies);
            state_of(&start)
        }
    }

    #[test]
    fn each_sign_in_of_a_browser_is_found_by_its_own_state_in_any_order() {
        let manager = manager(false);
        let mut browser = Jar::default();
        let (first, second) = (browser.sign_in(&manager, "/a"), browser.sign_in(&manager, "/b"));
        let names = sign_in_state_cookie;
        assert_eq!(browser.names(), [names(&first), names(&second)], "one cookie each, named for its state");
        for (state, return_to) in [(&second, "/b"), (&first, "/a")] {
            let held = manager.sign_in_state(&browser.headers(), state).expect("held");
            assert!(held.answered_by(state));
            assert_eq!(held.return_to, return_to);
        }
        assert!(manager.sign_in_state(&browser.headers(), "another").is_none());

        // A cookie under one sign-in's name holding another's state (or a name that merely collides) answers no
        // callback but its own state's, which `finish_sign_in` checks.
        let swapped = Jar(vec![(names(&first), browser.0[1].1.clone())]);
        let held = manager.sign_in_state(&swapped.headers(), &first).expect("opens");
        assert!(!held.answered_by(&first));
    }

    #[test]
    fn a_callback_spends_only_the_cookie_named_for_its_state() {
        let manager = manager(false);
        let mut browser = Jar::default();
        let (first, second) = (browser.sign_in(&manager, "/a"), browser.sign_in(&manager, "/b"));
        let headers = browser.headers();
        let expired = |states: &[&str]| -> Vec<String> {
            let set_cookies = manager.spent_sign_in_state(&headers, states.iter().copied());
            set_cookies
                .iter()
                .map(|line| line.to_str().expect("ascii").split('=').next().expect("a name").to_owned())
                .collect()
        };
        let name = sign_in_state_cookie;
        assert_eq!(expired(&[&first]), [name(&first)]);
        assert_eq!(expired(&[&second]), [name(&second)]);
        assert!(expired(&["x"]).is_empty(), "another site's `state=x` leaves the sign-ins alone");
        assert!(expired(&[]).is_empty());
        // A malformed callback repeating `state`: each sign-in it answers, each once.
        assert_eq!(expired(&[&first, "x", &second, &first]), [name(&first), name(&second)]);

        // The cookie named for the state, when no callback can use it (expired, or not opening), goes too; a cookie
        // under that name holding another sign-in's state is that sign-in's, and stays.
        let state = manager.sign_in_state(&headers, &first).expect("held");
        for (value, spent) in [
            (resealed(&manager, Purpose::SignInState, &state, unix_now()), true),
            ("not-a-sealed-value".to_owned(), true),
            (browser.0[1].1.clone(), false),
        ] {
            let held = Jar(vec![(name(&first), value)]).headers();
            assert_eq!(manager.spent_sign_in_state(&held, [first.as_str()]).len(), usize::from(spent));
        }
    }

    #[test]
    fn a_sign_in_past_the_most_a_browser_keeps_drops_the_oldest() {
        let manager = manager(false);
        // Browser after browser: their cookies' names (hashes of random states) sort in any order, and their age
        // alone decides (all of them begin within the same second or two).
        let mut browser = Jar::default();
        let mut states = Vec::new();
        for _ in 0..20 {
            browser = Jar::default();
            states = (0..MAX_SIGN_INS).map(|i| browser.sign_in(&manager, &format!("/{i}"))).collect();
            assert_eq!(browser.0.len(), MAX_SIGN_INS, "room for all of them");
            // The cookies in another order than their age (a jar sends them as it likes).
            browser.0.reverse();

            let newest = browser.sign_in(&manager, "/new");
            assert_eq!(browser.0.len(), MAX_SIGN_INS);
            assert!(manager.sign_in_state(&browser.headers(), &states[0]).is_none(), "the oldest is dropped");
            for state in states.iter().skip(1).chain([&newest]) {
                assert!(manager.sign_in_state(&browser.headers(), state).is_some(), "the others stay");
            }
        }

        // One that no callback can use goes before any that can.
        let name = sign_in_state_cookie;
        browser.0.retain(|(cookie, _)| *cookie != name(&states[3]));
        browser.0.push((name(&states[3]), "not-a-sealed-value".to_owned()));
        browser.sign_in(&manager, "/newer");
        assert!(!browser.names().contains(&name(&states[3]).as_str()), "{:?}", browser.names());
        assert!(manager.sign_in_state(&browser.headers(), &states[1]).is_some(), "the oldest that works stays");
    }

    #[test]
    fn made_up_sign_in_state_names_are_not_each_expired() {
        let manager = manager(false);
        let name = sign_in_state_cookie;
        let made_up: Vec<String> =
            (0..500).map(|i| format!("{}=x; wos-auth-state.junk{i}=x", name(&i.to_string()))).collect();
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, HeaderValue::from_str(&made_up.join("; ")).expect("ascii"));
        let start = manager.begin_sign_in(&headers, &SignInRequest::default()).expect("sealed");
        // The new cookie, and room made among the first 16 names of the shape the app writes only.
        assert_eq!(start.set_cookies.len(), 1 + MAX_FAMILY_MEMBERS + 1 - MAX_SIGN_INS);
        assert!(start.set_cookies.iter().all(|line| !line.to_str().expect("ascii").contains("junk")));
        let states: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        let spent = manager.spent_sign_in_state(&headers, states.iter().map(String::as_str));
        assert_eq!(spent.len(), MAX_FAMILY_MEMBERS, "as many states looked up as a browser holds cookies");
    }

    #[test]
    fn a_sign_in_kept_in_the_previous_versions_single_cookie_still_finishes_and_is_spent() {
        let manager = manager(false);
        let (_, state) = started(&manager, &SignInRequest::default());
        // Sealed as the previous version sealed it: without `started_at_micros`.
        let mut json = serde_json::to_value(&state).expect("json");
        json.as_object_mut().expect("an object").remove("started_at_micros");
        let sealed =
            manager.sealer.seal(Purpose::SignInState, &serde_json::to_vec(&json).expect("json")).expect("sealed");
        let mut browser = Jar(vec![(SIGN_IN_STATE_COOKIE.to_owned(), sealed)]);
        let newer = browser.sign_in(&manager, "/newer");
        let headers = browser.headers();

        let held = manager.sign_in_state(&headers, &state.nonce).expect("read from the single cookie");
        assert!(held.answered_by(&state.nonce));
        assert!(manager.sign_in_state(&headers, &newer).is_some_and(|held| held.answered_by(&newer)));
        let spent = manager.spent_sign_in_state(&headers, [state.nonce.as_str()]);
        assert_eq!(spent.len(), 1);
        assert!(spent[0].to_str().expect("ascii").starts_with("wos-auth-state=;"), "{:?}", spent[0]);
        assert!(manager.spent_sign_in_state(&headers, ["x"]).is_empty(), "another sign-in's callback leaves it");
        let spent_newer = manager.spent_sign_in_state(&headers, [newer.as_str()]);
        assert_eq!(spent_newer.len(), 1, "the newer sign-in's callback spends its own cookie only");

        // One that does not open is of no use to any callback, as before.
        let broken = Jar(vec![(SIGN_IN_STATE_COOKIE.to_owned(), "not-a-sealed-value".to_owned())]).headers();
        assert_eq!(manager.spent_sign_in_state(&broken, ["x"]).len(), 1);
    }

    fn offering(count: usize, name: &str, user: Option<crate::identity::UserProfile>) -> PendingSelection {
        PendingSelection {
            pending_authentication_token: Secret::new("pending_token_0123456789abcdef"),
            organizations: (0..count)
                .map(|index| OrganizationChoice { id: format!("org_01{index:0>24}"), name: name.to_owned() })
                .collect(),
            user,
        }
    }

    /// The pending choice `begin_organization_selection` makes in a browser holding none: its selection id and
    /// its cookie.
    fn pending_choice(
        manager: &SessionManager,
        offered: &PendingSelection,
        return_to: String,
    ) -> Result<(String, HeaderValue), SignInError> {
        match manager.begin_organization_selection(&HeaderMap::new(), offered, return_to)? {
            CallbackOutcome::ChooseOrganization { selection, mut set_cookies } => {
                assert_eq!(set_cookies.len(), 1, "one cookie, nothing to make room among");
                Ok((selection, set_cookies.remove(0)))
            }
            CallbackOutcome::SignedIn(_) => panic!("a choice, not a session"),
        }
    }

    #[test]
    fn offered_organizations_that_fit_are_all_kept() {
        let manager = manager(true);
        let bob = crate::identity::UserProfile::id_only("user_bob");
        let (selection, cookie) =
            pending_choice(&manager, &offering(6, "Globex", Some(bob)), "/".into()).expect("sealed");
        let pending = manager.pending_sign_in(&holding(&cookie), &selection).expect("opens");
        assert_eq!(pending.organizations.map(|offered| offered.len()), Some(6), "none dropped");
        assert_eq!(pending.user_id.as_deref(), Some("user_bob"));
        assert!(manager.pending_sign_in(&holding(&cookie), "another").is_none(), "its own page's only");
        assert!(manager.pending_sign_in(&holding(&cookie), "").is_none(), "not the previous version's cookie");
    }

    #[test]
    fn organizations_too_many_for_one_cookie_leave_the_users_id_instead() {
        let manager = manager(true);
        let mut bob = crate::identity::UserProfile::id_only("user_bob");
        let name = "é".repeat(100);
        for (count, name) in [(25, name.as_str()), (30, "Globex")] {
            let (selection, cookie) =
                pending_choice(&manager, &offering(count, name, Some(bob.clone())), "/".into()).expect("sealed");
            let pending = manager.pending_sign_in(&holding(&cookie), &selection).expect("opens");
            assert!(pending.organizations.is_none(), "{count}: the list is read again on the page");
            assert_eq!(pending.user_id.as_deref(), Some("user_bob"));
        }

        // The most the pending sign-in can then hold still makes a small cookie: the longest return path and a
        // user whose name is all four-byte characters, or control characters and quotes (which JSON escapes), with
        // the 1,000 organizations (whose names JSON escapes six times over) not kept.
        let return_to = format!("/{}", "a".repeat(MAX_RETURN_PATH_BYTES - 1));
        for (name, greeting) in [
            ("😀".repeat(5_000), Some("😀".repeat(MAX_USER_NAME_CHARS))),
            (format!("{}{}", "\u{1}".repeat(5_000), "😀".repeat(5_000)), Some("😀".repeat(MAX_USER_NAME_CHARS))),
            ("\"".repeat(5_000), Some("\"".repeat(MAX_USER_NAME_CHARS))),
            ("\u{1}".repeat(5_000), None),
        ] {
            bob.first_name = Some(name);
            let offered = offering(1_000, &"\u{1}".repeat(100), Some(bob.clone()));
            let (selection, line) = pending_choice(&manager, &offered, return_to.clone()).expect("still one cookie");
            // About 1.5 KB (the README's figure), so that three of them beside a 3 KB session stay under a proxy's
            // 8 KB `Cookie` line.
            assert!(line.len() <= 1_550, "{} bytes", line.len());
            let pending = manager.pending_sign_in(&holding(&line), &selection).expect("opens");
            assert_eq!(pending.return_to, return_to);
            assert_eq!(pending.user_name, greeting);
        }

        // Without the user's id there is nothing to read the list again with: it is kept whole while it fits in one
        // cookie (seven organizations and more used to fail there once the list was kept small).
        let (selection, cookie) = pending_choice(&manager, &offering(20, "Globex", None), "/".into()).expect("kept");
        let pending = manager.pending_sign_in(&holding(&cookie), &selection).expect("opens");
        assert_eq!(pending.organizations.map(|offered| offered.len()), Some(20));

        // Without the user's id there is no list to read again: a provider failure (502), not a cookie error (500).
        let refused = pending_choice(&manager, &offering(25, &name, None), "/".into());
        assert!(matches!(refused, Err(SignInError::Provider(ProviderError::Failed(_)))), "{refused:?}");
    }

    #[test]
    fn a_pending_organization_choice_lasts_ten_minutes_and_is_refused_from_the_second_it_expires() {
        let manager = manager(false);
        let choice = OrganizationChoice { id: "org_1".into(), name: "Acme".into() };
        let selection = PendingSelection {
            pending_authentication_token: Secret::new("pending_token"),
            organizations: vec![choice],
            user: None,
        };
        let (id, cookie) = pending_choice(&manager, &selection, "/".into()).expect("sealed");
        let pending = manager.pending_sign_in(&holding(&cookie), &id).expect("the pending sign-in opens");
        let left = pending.expires_at.saturating_sub(unix_now());
        assert!((598..=600).contains(&left), "{left} s left of the choice's ten minutes");

        for (expires_at, opens) in [(unix_now() + 60, true), (unix_now(), false)] {
            let sealed = resealed(&manager, Purpose::OrganizationSelection, &pending, expires_at);
            let cookie = holding(&manager.selection_cookies.write(&id, &sealed).expect("one cookie"));
            assert_eq!(manager.pending_sign_in(&cookie, &id).is_some(), opens, "expires at {expires_at}");
        }
    }
}
