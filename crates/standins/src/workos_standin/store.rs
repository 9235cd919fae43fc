//! The stand-in's memory: users, sign-in requests waiting on the picker page, authorization codes, sessions and
//! refresh tokens; and (in `organizations`) organizations, memberships, directory users and the event history.
//!
//! The rules authbridge depends on live here, apart from HTTP, so each one is in a single place: a code is spent by
//! its first exchange attempt and expires; PKCE is S256 only; a refresh token works once and only while its session
//! lasts; an organization switch needs an active membership; every change is recorded as a WorkOS event.
//! Everything is in memory: the stand-in is for one test or one demo run, and starts empty each time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::events::{StandInEventLog, timestamp};
use super::organizations::{StandInDirectoryUser, StandInMembership, StandInOrganization};
use super::{SeedOrganization, SeedUser};

/// How long a sign-in request may sit on the picker page before a click on it is refused.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Spent and expired codes are remembered this long (or the code TTL, if longer), so a replay is reported as a
/// replay rather than as an unknown code.
const CODE_RETENTION: Duration = Duration::from_secs(60 * 60);

/// A user as the stand-in keeps them: the seed and their timestamps (memberships are kept apart, in
/// `organizations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub seed: SeedUser,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The `user` object of an `authenticate` response and of `user.*` events, as WorkOS documents it
/// (<https://workos.com/docs/reference/authkit/user>).
#[derive(Debug, Serialize)]
pub struct UserObject {
    object: &'static str,
    id: String,
    email: String,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    profile_picture_url: Option<String>,
    created_at: String,
    updated_at: String,
}

impl UserRecord {
    pub fn to_object(&self) -> UserObject {
        UserObject {
            object: "user",
            id: self.seed.id.clone(),
            email: self.seed.email.clone(),
            email_verified: true,
            first_name: self.seed.first_name.clone(),
            last_name: self.seed.last_name.clone(),
            profile_picture_url: None,
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.to_object()).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandInImpersonator {
    pub email: String,
    pub reason: Option<String>,
}

/// The `authentication_method` WorkOS reports; the stand-in picks the one matching how the user signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthenticationMethod {
    Password,
    #[serde(rename = "SSO")]
    Sso,
    MagicAuth,
    Impersonation,
}

/// Where an authorization request sends the user: AuthKit, an organization's SSO, or a given connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    AuthKit,
    Organization(String),
    Connection(String),
}

/// An authorization request that passed validation, waiting for the user's choice or already answered.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub redirect_uri: Url,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub route: Route,
    pub sign_up: bool,
    pub login_hint: Option<String>,
}

#[derive(Debug)]
struct Pending {
    request: AuthorizationRequest,
    created: Instant,
}

#[derive(Debug)]
struct CodeGrant {
    user_id: String,
    organization_id: Option<String>,
    /// The user's organizations when they must choose one before the sign-in finishes (AuthKit sign-in of a member
    /// of several): the exchange then answers `organization_selection_required`.
    select_among: Vec<String>,
    impersonator: Option<StandInImpersonator>,
    code_challenge: Option<String>,
    method: AuthenticationMethod,
    issued: Instant,
    spent: bool,
}

/// A sign-in waiting for the organization-selection grant.
#[derive(Debug)]
struct PendingAuthentication {
    user_id: String,
    organizations: Vec<String>,
    impersonator: Option<StandInImpersonator>,
    method: AuthenticationMethod,
    created: Instant,
}

/// How long a pending authentication token can finish a sign-in.
const PENDING_AUTHENTICATION_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
pub struct StandInSession {
    pub id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    /// The organization the sign-in itself was in. A refresh that names no organization is scoped back to it,
    /// undoing a switch: the symptom WorkOS's own libraries fixed by sending the current organization on every
    /// refresh (authkit-remix #68, "users reverting to their default organization after token refresh").
    pub signed_in_organization_id: Option<String>,
    pub impersonator: Option<StandInImpersonator>,
    pub method: AuthenticationMethod,
    pub created_at: OffsetDateTime,
    pub(super) ended: bool,
}

impl StandInSession {
    /// The session object of `session.*` events (docs/workos.md §2), as it is when revoked at `at`.
    pub fn revoked_object(&self, at: OffsetDateTime) -> Value {
        let auth_method = match self.method {
            AuthenticationMethod::Password => "password",
            AuthenticationMethod::Sso => "sso",
            AuthenticationMethod::MagicAuth => "magic_code",
            AuthenticationMethod::Impersonation => "impersonation",
        };
        let mut object = serde_json::json!({
            "object": "session", "id": self.id, "user_id": self.user_id, "status": "revoked",
            "auth_method": auth_method, "ip_address": null, "user_agent": null,
            "expires_at": timestamp(self.created_at + time::Duration::days(7)), "ended_at": timestamp(at),
            "created_at": timestamp(self.created_at), "updated_at": timestamp(at),
        });
        if let Some(organization_id) = &self.organization_id {
            object["organization_id"] = Value::String(organization_id.clone());
        }
        object
    }
}

/// Everything needed to answer a successful `authenticate` call, taken out of the store so signing happens
/// without holding its lock.
#[derive(Debug)]
pub struct Issued {
    pub user: UserRecord,
    pub session: StandInSession,
    pub refresh_token: String,
    pub access_token_ttl: Duration,
    pub extra_claims: Map<String, Value>,
    /// The session's organization membership's role slugs, for the token's `role` and `roles`.
    pub roles: Vec<String>,
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The OAuth `invalid_grant`: the code or refresh token cannot be used (again).
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("the user is not a member of organization {0}")]
    NotAMember(String),
    /// No organization has this id (WorkOS's code-less 404, docs/workos.md §1.3).
    #[error("Organization not found: '{0}'.")]
    UnknownOrganization(String),
    /// The user must pick one of their organizations (403 `organization_selection_required`).
    #[error("the user must choose an organization to finish their authentication")]
    SelectionRequired { pending_token: String, user: Box<UserRecord>, organizations: Vec<String> },
    /// The pending authentication token is unknown, spent or expired.
    #[error("the pending authentication token is invalid or expired")]
    InvalidPendingToken,
    /// The organization requires its own sign-in (`sso_required`, `mfa_challenge`,
    /// `organization_authentication_methods_required`), as an organization enforcing SSO or MFA does on a switch.
    #[error("the organization requires its own sign-in")]
    SignInRequired { email: String, requirement: StandInSignInRequirement },
    /// The organization-selection grant picked an organization that enforces SSO: WorkOS answers with a message
    /// alone (400 `{"message":"Must use SSO for selected organization"}`).
    #[error("Must use SSO for selected organization")]
    MustUseSso,
}

/// What an organization asks of a user before WorkOS issues tokens for it (docs/workos.md §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInSignInRequirement {
    /// 400 `sso_required`: its SSO is enforced.
    Sso,
    /// 403 `mfa_challenge`: the user has a factor and must use it.
    MfaChallenge,
    /// 400 `organization_authentication_methods_required`: its policy forbids the method the user signed in with.
    AuthenticationMethods,
}

#[derive(Debug, thiserror::Error)]
#[error("no session has this id")]
pub struct UnknownSession;

pub struct Store {
    pub(super) users: Vec<UserRecord>,
    pub(super) organizations: Vec<StandInOrganization>,
    pub(super) memberships: Vec<StandInMembership>,
    pub(super) directory_users: Vec<StandInDirectoryUser>,
    pub(super) events: StandInEventLog,
    pending: HashMap<String, Pending>,
    codes: HashMap<String, CodeGrant>,
    pending_authentications: HashMap<String, PendingAuthentication>,
    /// Organizations whose switch (and organization selection) asks for their own sign-in, and how.
    pub(super) switch_requirements: Vec<(String, StandInSignInRequirement)>,
    /// Organizations whose sessions' ordinary refreshes ask for their own sign-in (a policy that changed under
    /// them), and how.
    pub(super) refresh_requirements: Vec<(String, StandInSignInRequirement)>,
    /// Whether an AuthKit sign-in of a member of several organizations asks which one (WorkOS's
    /// `organization_selection_required`).
    pub organization_selection: bool,
    /// Whether the organizations' directories provision AuthKit users and memberships (WorkOS's "directory
    /// provisioning", docs/workos.md §5.3), so that deprovisioning a directory user also deactivates their
    /// membership; without it a directory only syncs, and its changes reach no membership.
    pub directory_provisioning: bool,
    pub(super) sessions: HashMap<String, StandInSession>,
    /// Refresh token → session id. Only live tokens are here: a rotated or revoked token is simply gone.
    refresh_tokens: HashMap<String, String>,
    pub access_token_ttl: Duration,
    pub code_ttl: Duration,
    pub extra_claims: Map<String, Value>,
    pub next_impersonation: Option<StandInImpersonator>,
    /// Refresh answers leave out `impersonator` (their tokens keep `act`): undocumented, for a test of how the app
    /// copes should WorkOS ever do so.
    pub refreshes_leave_out_impersonator: bool,
    /// The `organization_id` of every refresh request, in order (`None`: the request named none).
    pub refresh_organizations: Vec<Option<String>>,
}

impl Store {
    /// A store holding the seeds, with their creation recorded as events (the history a real environment has).
    pub fn new(
        users: Vec<SeedUser>,
        organizations: Vec<SeedOrganization>,
        access_token_ttl: Duration,
        code_ttl: Duration,
        extra_claims: Map<String, Value>,
    ) -> Self {
        let mut store = Self {
            users: Vec::new(),
            organizations: Vec::new(),
            memberships: Vec::new(),
            directory_users: Vec::new(),
            events: StandInEventLog::default(),
            pending: HashMap::new(),
            codes: HashMap::new(),
            pending_authentications: HashMap::new(),
            switch_requirements: Vec::new(),
            refresh_requirements: Vec::new(),
            organization_selection: true,
            directory_provisioning: true,
            sessions: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_token_ttl,
            code_ttl,
            extra_claims,
            next_impersonation: None,
            refreshes_leave_out_impersonator: false,
            refresh_organizations: Vec::new(),
        };
        for organization in organizations {
            store.create_organization_with_id(&organization.id, &organization.name);
        }
        for seed in users {
            let organization_id = seed.organization_id.clone();
            let user_id = seed.id.clone();
            store.add_user(seed);
            if let Some(organization_id) = organization_id {
                if !store.is_known_organization(&organization_id) {
                    store.create_organization_with_id(&organization_id, &organization_id);
                }
                // Both ids exist: this cannot fail.
                let _ = store.add_membership(&user_id, &organization_id, &[]);
            }
        }
        store
    }

    fn add_user(&mut self, seed: SeedUser) -> UserRecord {
        let now = self.events.tick();
        let user = UserRecord { seed, created_at: now, updated_at: now };
        self.users.push(user.clone());
        self.events.emit("user.created", user.to_value());
        user
    }

    pub fn users(&self) -> impl Iterator<Item = &UserRecord> {
        self.users.iter()
    }

    pub fn user(&self, id: &str) -> Option<&UserRecord> {
        self.users.iter().find(|user| user.seed.id == id)
    }

    /// Emails are compared without regard to case, as WorkOS does.
    pub fn user_by_email(&self, email: &str) -> Option<&UserRecord> {
        self.users.iter().find(|user| user.seed.email.eq_ignore_ascii_case(email.trim()))
    }

    /// The user with this (already normalised) email, created on the spot when there is none: the picker page's
    /// "sign in as any email".
    pub fn user_for_email(&mut self, email: &str) -> UserRecord {
        if let Some(user) = self.user_by_email(email) {
            return user.clone();
        }
        let (first_name, last_name) = names_from_email(email);
        self.add_user(SeedUser {
            id: format!("user_{}", Uuid::new_v4().simple()),
            email: email.to_owned(),
            first_name,
            last_name,
            organization_id: None,
        })
    }

    /// Parks a validated request for the picker page and returns the opaque id its forms carry.
    pub fn park(&mut self, request: AuthorizationRequest) -> String {
        self.pending.retain(|_, pending| pending.created.elapsed() < PENDING_TTL);
        let id = Uuid::new_v4().simple().to_string();
        self.pending.insert(id.clone(), Pending { request, created: Instant::now() });
        id
    }

    pub fn parked(&self, id: &str) -> Option<&AuthorizationRequest> {
        self.pending.get(id).filter(|pending| pending.created.elapsed() < PENDING_TTL).map(|pending| &pending.request)
    }

    /// Removes a parked request: each one is answered once, by approval or denial.
    pub fn unpark(&mut self, id: &str) -> Option<AuthorizationRequest> {
        let pending = self.pending.remove(id)?;
        (pending.created.elapsed() < PENDING_TTL).then_some(pending.request)
    }

    /// Issues an authorization code for `user_id` answering `request`.
    pub fn issue_code(
        &mut self,
        request: &AuthorizationRequest,
        user_id: &str,
        method: AuthenticationMethod,
    ) -> String {
        self.issue_code_as(request, user_id, method, None)
    }

    /// Like [`Store::issue_code`], for a session that `impersonator` starts as the user (WorkOS's impersonation:
    /// the staff member picks the organization, so there is no selection).
    pub fn issue_code_as(
        &mut self,
        request: &AuthorizationRequest,
        user_id: &str,
        method: AuthenticationMethod,
        impersonator: Option<StandInImpersonator>,
    ) -> String {
        let retention = self.code_ttl.max(CODE_RETENTION);
        self.codes.retain(|_, code| code.issued.elapsed() < retention);

        let mut select_among = Vec::new();
        let organization_id = match &request.route {
            // A member signs in to that organization. Anyone else is signed in without one, as WorkOS answers a
            // sign-in with `organization_id` for a user who is not a member: membership comes from an invitation or from
            // just-in-time provisioning (a verified domain, the organization's own IdP), which the stand-in does
            // not model, so a sign-in link can never make anyone a member (nor bring back a removed one).
            Route::Organization(org) => self.active_organizations(user_id).contains(org).then(|| org.clone()),
            Route::AuthKit | Route::Connection(_) => {
                let organizations = self.active_organizations(user_id);
                if self.organization_selection && impersonator.is_none() && organizations.len() > 1 {
                    select_among.clone_from(&organizations);
                }
                organizations.into_iter().next()
            }
        };
        let method = match (&request.route, method) {
            // Through the organization's (or the connection's) identity provider; a non-member was not.
            (Route::Organization(_), AuthenticationMethod::Password) if organization_id.is_some() => {
                AuthenticationMethod::Sso
            }
            (Route::Connection(_), AuthenticationMethod::Password) => AuthenticationMethod::Sso,
            (_, method) => method,
        };
        let code = Uuid::new_v4().simple().to_string();
        self.codes.insert(
            code.clone(),
            CodeGrant {
                user_id: user_id.to_owned(),
                organization_id,
                select_among,
                impersonator,
                code_challenge: request.code_challenge.clone(),
                method,
                issued: Instant::now(),
                spent: false,
            },
        );
        code
    }

    /// The `authorization_code` grant. The code is spent by this attempt whatever its outcome, so a stolen code
    /// cannot be tried against many verifiers.
    pub fn exchange_code(&mut self, code: &str, code_verifier: Option<&str>) -> Result<Issued, GrantError> {
        let code_ttl = self.code_ttl;
        let grant = self.codes.get_mut(code).ok_or(GrantError::InvalidGrant("The code is invalid."))?;
        if grant.spent {
            return Err(GrantError::InvalidGrant("The code has already been used."));
        }
        grant.spent = true;
        if grant.issued.elapsed() >= code_ttl {
            return Err(GrantError::InvalidGrant("The code has expired."));
        }
        match (grant.code_challenge.as_deref(), code_verifier) {
            (Some(challenge), Some(verifier)) if pkce_s256_matches(challenge, verifier) => {}
            (Some(_), Some(_)) => {
                return Err(GrantError::InvalidGrant("The code_verifier does not match the code_challenge."));
            }
            (Some(_), None) => return Err(GrantError::InvalidGrant("A code_verifier is required for this code.")),
            // Refusing a verifier nobody asked for catches a client that lost its challenge on the way out.
            (None, Some(_)) => {
                return Err(GrantError::InvalidGrant(
                    "A code_verifier was sent, but the code was issued without a code_challenge.",
                ));
            }
            (None, None) => {}
        }
        let (user_id, organization_id, mut method) =
            (grant.user_id.clone(), grant.organization_id.clone(), grant.method);
        let select_among = grant.select_among.clone();
        let granted_impersonator = grant.impersonator.clone();

        let user = self.user(&user_id).cloned().ok_or(GrantError::InvalidGrant("The code's user no longer exists."))?;
        let impersonator = granted_impersonator.or_else(|| self.next_impersonation.take());
        if impersonator.is_some() {
            method = AuthenticationMethod::Impersonation;
        }
        if !select_among.is_empty() {
            self.pending_authentications.retain(|_, pending| pending.created.elapsed() < PENDING_AUTHENTICATION_TTL);
            let pending_token = Uuid::new_v4().simple().to_string();
            self.pending_authentications.insert(
                pending_token.clone(),
                PendingAuthentication {
                    user_id,
                    organizations: select_among.clone(),
                    impersonator,
                    method,
                    created: Instant::now(),
                },
            );
            return Err(GrantError::SelectionRequired {
                pending_token,
                user: Box::new(user),
                organizations: select_among,
            });
        }
        self.open_signed_in_session(user, organization_id, impersonator, method)
    }

    /// The pending authentication tokens not yet spent (for tests that check none leaks).
    pub fn pending_authentication_tokens(&self) -> Vec<String> {
        self.pending_authentications.keys().cloned().collect()
    }

    /// The organization-selection grant: a pending sign-in finished in `organization_id`, one of the user's active
    /// organizations. The pending token is spent by this attempt whatever its outcome.
    pub fn select_organization(&mut self, pending_token: &str, organization_id: &str) -> Result<Issued, GrantError> {
        let pending = self.pending_authentications.remove(pending_token).ok_or(GrantError::InvalidPendingToken)?;
        if pending.created.elapsed() >= PENDING_AUTHENTICATION_TTL {
            return Err(GrantError::InvalidPendingToken);
        }
        let offered = pending.organizations.iter().any(|org| org == organization_id);
        if !offered || !self.active_organizations(&pending.user_id).iter().any(|org| org == organization_id) {
            return Err(GrantError::NotAMember(organization_id.to_owned()));
        }
        if requirement_of(&self.switch_requirements, organization_id) == Some(StandInSignInRequirement::Sso) {
            return Err(GrantError::MustUseSso);
        }
        let user = self.user(&pending.user_id).cloned().ok_or(GrantError::InvalidPendingToken)?;
        self.open_signed_in_session(user, Some(organization_id.to_owned()), pending.impersonator, pending.method)
    }

    fn open_signed_in_session(
        &mut self,
        user: UserRecord,
        organization_id: Option<String>,
        impersonator: Option<StandInImpersonator>,
        method: AuthenticationMethod,
    ) -> Result<Issued, GrantError> {
        let user_id = user.seed.id.clone();
        let session = StandInSession {
            id: format!("session_{}", Uuid::new_v4().simple()),
            user_id,
            signed_in_organization_id: organization_id.clone(),
            organization_id,
            impersonator,
            method,
            created_at: self.events.tick(),
            ended: false,
        };
        self.sessions.insert(session.id.clone(), session.clone());
        let refresh_token = self.new_refresh_token(&session.id);
        Ok(self.issued(user, session, refresh_token))
    }

    /// The `refresh_token` grant: the token is replaced by a new one, and the old one stops working. The new
    /// session is scoped to `organization_id` when it is given (a switch, or the current organization kept, as
    /// WorkOS's libraries send it on every refresh), and otherwise to the organization the sign-in was in.
    pub fn refresh(&mut self, refresh_token: &str, organization_id: Option<&str>) -> Result<Issued, GrantError> {
        const REFUSED: GrantError = GrantError::InvalidGrant("The refresh token is invalid, already used, or revoked.");
        self.refresh_organizations.push(organization_id.map(str::to_owned));
        let session_id = self.refresh_tokens.get(refresh_token).ok_or(REFUSED)?.clone();
        let session = self.sessions.get(&session_id).filter(|session| !session.ended).ok_or(REFUSED)?;
        let user = self.user(&session.user_id).cloned().ok_or(REFUSED)?;
        let target = organization_id.map(str::to_owned).or_else(|| session.signed_in_organization_id.clone());
        // Checked before rotating, so a refused refresh leaves the session and its token as they were.
        if let Some(org) = organization_id {
            if self.organization(org).is_none() {
                return Err(GrantError::UnknownOrganization(org.to_owned()));
            }
            if !self.active_organizations(&user.seed.id).iter().any(|m| m == org) {
                return Err(GrantError::NotAMember(org.to_owned()));
            }
        }
        // Staying in the session's organization meets that organization's refresh policy; moving meets the policy of
        // the organization moved to.
        let requirements =
            if target == session.organization_id { &self.refresh_requirements } else { &self.switch_requirements };
        if let Some(requirement) = target.as_deref().and_then(|org| requirement_of(requirements, org)) {
            return Err(GrantError::SignInRequired { email: user.seed.email.clone(), requirement });
        }

        self.refresh_tokens.remove(refresh_token);
        let session = self.sessions.get_mut(&session_id).ok_or(REFUSED)?;
        session.organization_id = target;
        let session = session.clone();
        let refresh_token = self.new_refresh_token(&session_id);
        Ok(self.issued(user, session, refresh_token))
    }

    /// A session for a token minted outside any sign-in (bearer-token tests, the demo's `curl` line), so its `sid`
    /// is real and can be signed out like any other.
    pub fn open_session(&mut self, user_id: &str) -> (StandInSession, Map<String, Value>) {
        let organization_id = self.active_organizations(user_id).into_iter().next();
        let session = StandInSession {
            id: format!("session_{}", Uuid::new_v4().simple()),
            user_id: user_id.to_owned(),
            signed_in_organization_id: organization_id.clone(),
            organization_id,
            impersonator: None,
            method: AuthenticationMethod::Password,
            created_at: self.events.tick(),
            ended: false,
        };
        self.sessions.insert(session.id.clone(), session.clone());
        (session, self.extra_claims.clone())
    }

    /// Ends a session: its refresh tokens stop working at once, and `session.revoked` is emitted. Ending an ended
    /// session is not an error, and emits nothing.
    pub fn end_session(&mut self, session_id: &str) -> Result<(), UnknownSession> {
        let session = self.sessions.get_mut(session_id).ok_or(UnknownSession)?;
        let was_active = !session.ended;
        session.ended = true;
        let session = session.clone();
        self.refresh_tokens.retain(|_, owner| owner != session_id);
        if was_active {
            let at = self.events.tick();
            self.events.emit("session.revoked", session.revoked_object(at));
        }
        Ok(())
    }

    pub fn revoke_all_refresh_tokens(&mut self) {
        self.refresh_tokens.clear();
    }

    fn new_refresh_token(&mut self, session_id: &str) -> String {
        let token = Uuid::new_v4().simple().to_string();
        self.refresh_tokens.insert(token.clone(), session_id.to_owned());
        token
    }

    /// The role slugs of the session's active membership in its organization (none without one).
    pub fn session_roles(&self, session: &StandInSession) -> Vec<String> {
        session
            .organization_id
            .as_deref()
            .and_then(|org| {
                self.memberships.iter().find(|m| {
                    m.user_id == session.user_id
                        && m.organization_id == org
                        && m.status == super::organizations::StandInMembershipStatus::Active
                })
            })
            .map(|membership| membership.roles.clone())
            .unwrap_or_default()
    }

    fn issued(&self, user: UserRecord, session: StandInSession, refresh_token: String) -> Issued {
        let roles = self.session_roles(&session);
        Issued {
            user,
            session,
            refresh_token,
            access_token_ttl: self.access_token_ttl,
            extra_claims: self.extra_claims.clone(),
            roles,
        }
    }
}

/// A PKCE S256 challenge is the base64url (no padding) SHA-256 of the verifier: always 43 characters.
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub fn pkce_s256_matches(challenge: &str, verifier: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

/// Lower-cases and sanity-checks an email typed on the picker page. The check is deliberately loose (one `@`,
/// something either side, no spaces): it is there to keep nonsense out of the demo, not to validate mail routing.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && email.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '(' | ')' | ',' | ';' | '\\'));
    plausible.then_some(email)
}

/// `dana.scully+work@fbi.test` → ("Dana", "Scully"); `dana@fbi.test` → ("Dana", none).
pub fn names_from_email(email: &str) -> (Option<String>, Option<String>) {
    let local = email.split('@').next().unwrap_or_default();
    let local = local.split('+').next().unwrap_or_default();
    let mut words = local.split(['.', '_', '-']).filter(|word| !word.is_empty()).map(capitalize);
    let first = words.next();
    let rest: Vec<String> = words.collect();
    (first, (!rest.is_empty()).then(|| rest.join(" ")))
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What `requirements` ask of `organization_id`, if anything.
fn requirement_of(
    requirements: &[(String, StandInSignInRequirement)],
    organization_id: &str,
) -> Option<StandInSignInRequirement> {
    requirements.iter().find(|(org, _)| org == organization_id).map(|(_, requirement)| *requirement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let alice = SeedUser {
            id: "user_alice".into(),
            email: "alice@acme.test".into(),
            first_name: Some("Alice".into()),
            last_name: None,
            organization_id: Some("org_acme".into()),
        };
        Store::new(vec![alice], Vec::new(), Duration::from_secs(300), Duration::from_secs(600), Map::new())
    }

    fn request(challenge: Option<&str>) -> AuthorizationRequest {
        AuthorizationRequest {
            redirect_uri: Url::parse("http://localhost:3000/callback").expect("url"),
            state: None,
            code_challenge: challenge.map(str::to_owned),
            route: Route::AuthKit,
            sign_up: false,
            login_hint: None,
        }
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // The worked example of RFC 7636 appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_follows_the_rfc_example() {
        assert!(is_valid_s256_challenge(CHALLENGE));
        assert!(pkce_s256_matches(CHALLENGE, VERIFIER));
        assert!(!pkce_s256_matches(CHALLENGE, &VERIFIER.replace('d', "e")));
        assert!(!pkce_s256_matches(CHALLENGE, "short"));
    }

    #[test]
    fn a_code_is_spent_by_a_failed_attempt_too() {
        let mut store = store();
        let code = store.issue_code(&request(Some(CHALLENGE)), "user_alice", AuthenticationMethod::Password);
        assert!(matches!(store.exchange_code(&code, Some("x".repeat(43).as_str())), Err(GrantError::InvalidGrant(_))));
        assert_eq!(
            store.exchange_code(&code, Some(VERIFIER)).map(|_| ()),
            Err(GrantError::InvalidGrant("The code has already been used."))
        );
    }

    #[test]
    fn refresh_rotates_and_ending_the_session_stops_it() {
        let mut store = store();
        let code = store.issue_code(&request(None), "user_alice", AuthenticationMethod::Password);
        let first = store.exchange_code(&code, None).expect("exchange");
        assert_eq!(first.session.organization_id.as_deref(), Some("org_acme"));
        let second = store.refresh(&first.refresh_token, None).expect("refresh");
        assert_eq!(second.session.id, first.session.id);
        assert_eq!(second.session.organization_id.as_deref(), Some("org_acme"));
        assert!(store.refresh(&first.refresh_token, None).is_err(), "the old token is refused");
        assert_eq!(
            store.refresh(&second.refresh_token, Some("org_other")).map(|_| ()),
            Err(GrantError::UnknownOrganization("org_other".into()))
        );
        store.end_session(&second.session.id).expect("known session");
        assert!(store.refresh(&second.refresh_token, None).is_err(), "an ended session cannot refresh");
    }

    #[test]
    fn emails_are_normalised_and_named() {
        assert_eq!(normalize_email("  Dana.Scully@FBI.test "), Some("dana.scully@fbi.test".into()));
        for bad in ["", "dana", "@fbi.test", "dana@", "da na@fbi.test", "a@b@c", "dana@.test", "<x>@y.z"] {
            assert_eq!(normalize_email(bad), None, "{bad:?} should be refused");
        }
        assert_eq!(names_from_email("dana.scully+work@fbi.test"), (Some("Dana".into()), Some("Scully".into())));
        assert_eq!(names_from_email("dana@fbi.test"), (Some("Dana".into()), None));
        assert_eq!(names_from_email("jean_luc-picard@x.test"), (Some("Jean".into()), Some("Luc Picard".into())));
        assert_eq!(names_from_email("+@x.test"), (None, None));
    }
}
