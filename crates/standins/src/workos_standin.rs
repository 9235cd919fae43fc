//! A stand-in for WorkOS User Management, speaking the part of its HTTP API that authbridge uses (WorkOS's AuthKit
//! API reference, <https://workos.com/docs/reference/authkit>): `authorize`, `authenticate`, the per-client JWKS,
//! session logout and revocation; and for the enterprise lifecycle, organizations, memberships, user deletion,
//! Directory Sync users, the Events API (`GET /events`) and signed webhook delivery to registered endpoints.
//!
//! It exists so that sign-in, refresh and sign-out run through authbridge's real code paths without a WorkOS
//! account: the integration tests point `WORKOS_API_BASE_URL` at it, the browser test clicks through its sign-in
//! page, and `authbridge demo` runs it for newcomers. It is strict where WorkOS is (registered redirect URIs only,
//! PKCE S256 only, single-use expiring codes, rotating refresh tokens, real RS256 signatures), because a lenient
//! stand-in would let bugs through that production would then find. Tests can also make it misbehave on purpose
//! (fail, hang, slow down) and count the calls it received; deliver webhooks out of order or twice; have the Events
//! API ignore its type filter or forget cursors.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use standins::workos_standin::{WorkosStandIn, WorkosStandInOptions};
//!
//! let options = WorkosStandInOptions {
//!     redirect_uris: vec!["http://127.0.0.1:3000/callback".parse()?],
//!     ..WorkosStandInOptions::default()
//! };
//! let workos = WorkosStandIn::start(options).await?;
//! // WORKOS_API_BASE_URL = workos.base_url(), WORKOS_CLIENT_ID = workos.client_id(), …
//! workos.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod controls;
mod enterprise;
mod events;
mod management;
mod organizations;
mod pages;
mod routes;
mod store;
mod token;
mod webhooks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::lock;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::web::{base_url_for, unix_seconds, whole_seconds};

use crate::StandInSecret;
use crate::jwt::{self, KeyError, SigningKey};
use controls::{GrantType, WorkosFaultControls};
pub use enterprise::{
    CONFIGURED_AUDIT_LOG_SCHEMAS, PORTAL_INTENTS, StandInAuditEvent, StandInPortalLink, audit_metadata_fault,
};
pub use events::{StandInEvent, StandInEventsQuery, UnknownCursor};
pub use organizations::{
    StandInDirectoryUser, StandInMembership, StandInMembershipStatus, StandInOrganization, StandInRefusal,
};
pub use store::StandInSignInRequirement;
use store::{StandInImpersonator, StandInSession, Store};
use token::StandInAccessClaims;
use webhooks::StandInWebhooks;
pub use webhooks::{StandInWebhookAttempt, StandInWebhookOrder, signature_header};

pub const DEFAULT_CLIENT_ID: &str = "client_standin";
pub const DEFAULT_API_KEY: &str = "sk_test_standin";
/// Key ids shaped like WorkOS's own, so logs from the stand-in read like logs from production.
const KID_PREFIX: &str = "sso_oidc_key_pair_";
/// The redirect URI registered by default: the one `.env.example` uses.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:3000/callback";
/// The organization Alice and Bob belong to in the default seed.
pub const ACME_ORGANIZATION_ID: &str = "org_standin_acme";
/// The demo's second organization, which Bob belongs to as well.
pub const GLOBEX_ORGANIZATION_ID: &str = "org_standin_globex";
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// How long an authorization code stays valid, as with WorkOS.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// How long [`WorkosStandIn::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to start a stand-in. `Default` gives a loopback server on a free port with Alice, Bob and Carol.
#[derive(Debug, Clone)]
pub struct WorkosStandInOptions {
    /// Loopback by default: the stand-in signs anyone in without a password.
    pub bind: SocketAddr,
    pub client_id: String,
    /// The API key, which `authenticate` also requires as `client_secret`.
    pub api_key: StandInSecret,
    /// The only URIs `authorize` redirects to (exact match).
    pub redirect_uris: Vec<Url>,
    /// The dashboard's *Sign-out redirects*: logout's `return_to` must be one of them, exactly (WorkOS: "Allowed
    /// values are configured in the WorkOS Dashboard under Sign-out redirects"). Empty: each redirect URI's origin
    /// with the path `/`, what an app sends as its home page.
    pub sign_out_redirects: Vec<Url>,
    pub access_token_ttl: Duration,
    pub code_ttl: Duration,
    /// Merged into every access token: roles, permissions, or bulk to test large cookies.
    pub extra_claims: Map<String, Value>,
    pub users: Vec<SeedUser>,
    /// Display names for organizations, shown on the sign-in page.
    pub organizations: Vec<SeedOrganization>,
    /// Memberships besides each user's `organization_id` (several organizations, roles): created, or given these
    /// roles when the user is a member already.
    pub memberships: Vec<SeedMembership>,
    /// Impersonated sign-ins offered on the sign-in page (support staff signing in as a user).
    pub impersonations: Vec<SeedImpersonation>,
    /// Whether an AuthKit sign-in of a member of several organizations answers `organization_selection_required`
    /// (as WorkOS does); on by default.
    pub organization_selection: bool,
}

/// A membership to seed: `roles` empty means `member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedMembership {
    pub user_id: String,
    pub organization_id: String,
    pub roles: Vec<String>,
}

/// An impersonated sign-in listed on the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedImpersonation {
    pub user_id: String,
    pub impersonator_email: String,
    pub reason: Option<String>,
}

impl Default for WorkosStandInOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            api_key: StandInSecret::new(DEFAULT_API_KEY),
            redirect_uris: Url::parse(DEFAULT_REDIRECT_URI).into_iter().collect(),
            sign_out_redirects: Vec::new(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            code_ttl: DEFAULT_CODE_TTL,
            extra_claims: Map::new(),
            users: SeedUser::defaults(),
            organizations: vec![SeedOrganization { id: ACME_ORGANIZATION_ID.to_owned(), name: "Acme".to_owned() }],
            memberships: Vec::new(),
            impersonations: Vec::new(),
            organization_selection: true,
        }
    }
}

impl WorkosStandInOptions {
    /// What `authbridge demo` seeds: Alice (admin of Acme), Bob (member of Acme and of Globex), Carol (no
    /// organization), and an impersonated sign-in of Bob by a support user, all on the sign-in page.
    pub fn demo() -> Self {
        let defaults = Self::default();
        Self {
            organizations: vec![
                SeedOrganization { id: ACME_ORGANIZATION_ID.to_owned(), name: "Acme".to_owned() },
                SeedOrganization { id: GLOBEX_ORGANIZATION_ID.to_owned(), name: "Globex".to_owned() },
            ],
            memberships: vec![
                SeedMembership {
                    user_id: "user_standin_alice".to_owned(),
                    organization_id: ACME_ORGANIZATION_ID.to_owned(),
                    roles: vec!["admin".to_owned()],
                },
                SeedMembership {
                    user_id: "user_standin_bob".to_owned(),
                    organization_id: GLOBEX_ORGANIZATION_ID.to_owned(),
                    roles: vec!["member".to_owned()],
                },
            ],
            impersonations: vec![SeedImpersonation {
                user_id: "user_standin_bob".to_owned(),
                impersonator_email: "support@authbridge.test".to_owned(),
                reason: Some("Ticket #4821: Bob cannot find an Acme todo".to_owned()),
            }],
            ..defaults
        }
    }
}

impl WorkosStandInOptions {
    fn validate(&self) -> Result<(), WorkosStandInError> {
        let invalid = |problem: String| Err(WorkosStandInError::InvalidOptions(problem));
        if self.client_id.trim().is_empty() {
            return invalid("client_id is empty".into());
        }
        if self.api_key.expose().trim().is_empty() {
            return invalid("api_key is empty".into());
        }
        for uri in self.redirect_uris.iter().chain(&self.sign_out_redirects) {
            if !matches!(uri.scheme(), "http" | "https") || uri.host().is_none() {
                return invalid(format!("redirect URI {uri} is not an http(s) URL with a host"));
            }
        }
        for (i, user) in self.users.iter().enumerate() {
            if user.id.trim().is_empty() || store::normalize_email(&user.email).is_none() {
                return invalid(format!("seed user {i} needs an id and a plausible email"));
            }
            let duplicate = self.users[..i]
                .iter()
                .any(|earlier| earlier.id == user.id || earlier.email.eq_ignore_ascii_case(&user.email));
            if duplicate {
                return invalid(format!("seed user {} ({}) repeats an earlier id or email", user.id, user.email));
            }
        }
        Ok(())
    }
}

/// A user the stand-in knows from the start (or created on its sign-in page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedUser {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The organization a sign-in lands in unless the request names another.
    pub organization_id: Option<String>,
}

impl SeedUser {
    /// Alice and Bob of Acme, and Carol who belongs to no organization.
    pub fn defaults() -> Vec<SeedUser> {
        let user = |id: &str, email: &str, first: &str, last: &str, org: Option<&str>| SeedUser {
            id: id.to_owned(),
            email: email.to_owned(),
            first_name: Some(first.to_owned()),
            last_name: Some(last.to_owned()),
            organization_id: org.map(str::to_owned),
        };
        vec![
            user("user_standin_alice", "alice@acme.test", "Alice", "Anderson", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_bob", "bob@acme.test", "Bob", "Brown", Some(ACME_ORGANIZATION_ID)),
            user("user_standin_carol", "carol@example.test", "Carol", "Clark", None),
        ]
    }

    /// "Alice Anderson", or the email when the user has no name.
    pub fn display_name(&self) -> String {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>();
        if name.is_empty() { self.email.clone() } else { name.join(" ") }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOrganization {
    pub id: String,
    pub name: String,
}

/// The stand-in's endpoints, as test controls and counters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /user_management/authorize`.
    Authorize,
    /// The sign-in page's own form posts (`/user_management/authorize/approve` and `…/deny`), counted apart so
    /// `calls(Authorize)` stays one per sign-in attempt.
    SignInForm,
    /// `POST /user_management/authenticate`, both grants.
    Authenticate,
    /// `GET /sso/jwks/{client_id}`.
    Jwks,
    /// `GET /user_management/sessions/logout`.
    Logout,
    /// `POST /user_management/sessions/revoke`.
    RevokeSession,
    /// `GET /events`.
    Events,
    /// `/organizations` and `/organizations/{id}`.
    Organizations,
    /// `/user_management/organization_memberships…`.
    Memberships,
    /// `/user_management/users/{id}`.
    Users,
    /// `POST /portal/generate_link`.
    Portal,
    /// `POST /audit_logs/events`.
    AuditLogs,
}

impl Endpoint {
    pub const ALL: [Endpoint; 12] = [
        Endpoint::Authorize,
        Endpoint::SignInForm,
        Endpoint::Authenticate,
        Endpoint::Jwks,
        Endpoint::Logout,
        Endpoint::RevokeSession,
        Endpoint::Events,
        Endpoint::Organizations,
        Endpoint::Memberships,
        Endpoint::Users,
        Endpoint::Portal,
        Endpoint::AuditLogs,
    ];

    fn index(self) -> usize {
        match self {
            Endpoint::Authorize => 0,
            Endpoint::SignInForm => 1,
            Endpoint::Authenticate => 2,
            Endpoint::Jwks => 3,
            Endpoint::Logout => 4,
            Endpoint::RevokeSession => 5,
            Endpoint::Events => 6,
            Endpoint::Organizations => 7,
            Endpoint::Memberships => 8,
            Endpoint::Users => 9,
            Endpoint::Portal => 10,
            Endpoint::AuditLogs => 11,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkosStandInError {
    #[error("the WorkOS stand-in's options are invalid: {0}")]
    InvalidOptions(String),
    #[error("the WorkOS stand-in cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the WorkOS stand-in could not create its RSA signing key")]
    SigningKey,
}

/// A running stand-in. Dropping it stops the server (in the background); [`WorkosStandIn::shutdown`] also waits.
pub struct WorkosStandIn {
    inner: Arc<WorkosStandInState>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// What the request handlers share with the test controls.
struct WorkosStandInState {
    client_id: String,
    api_key: StandInSecret,
    redirect_uris: Vec<Url>,
    sign_out_redirects: Vec<Url>,
    base_url: Url,
    keys: Mutex<KeySet>,
    store: Mutex<Store>,
    controls: WorkosFaultControls,
    webhooks: StandInWebhooks,
    events_controls: Mutex<EventsControls>,
    enterprise: Mutex<enterprise::Enterprise>,
    impersonations: Vec<SeedImpersonation>,
}

/// How `GET /events` misbehaves on request, and what it was asked.
struct EventsControls {
    honour_types: bool,
    unknown_cursor: UnknownCursor,
    queries: Vec<StandInEventsQuery>,
}

/// The key that signs, and the one before it, which stays in the JWKS so tokens signed before a rotation still
/// verify (as during a real key rotation).
#[derive(Clone)]
struct KeySet {
    current: Arc<SigningKey>,
    previous: Option<Arc<SigningKey>>,
    /// The JWKS leaves the signing key out (published late): tokens name a `kid` nobody can fetch yet.
    current_unpublished: bool,
}

impl WorkosStandIn {
    /// Generates the signing key, binds, and serves until shut down or dropped.
    pub async fn start(options: WorkosStandInOptions) -> Result<WorkosStandIn, WorkosStandInError> {
        options.validate()?;
        let key = jwt::generate_key(KID_PREFIX).await.ok_or(WorkosStandInError::SigningKey)?;
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|source| WorkosStandInError::Bind { addr: options.bind, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| WorkosStandInError::Bind { addr: options.bind, source })?;
        if !local_addr.ip().is_loopback() {
            tracing::warn!(%local_addr, "the WorkOS stand-in signs anyone in without a password and is reachable beyond this machine");
        }

        let (stop, stopping) = watch::channel(false);
        let inner = Arc::new(WorkosStandInState {
            client_id: options.client_id,
            api_key: options.api_key,
            sign_out_redirects: if options.sign_out_redirects.is_empty() {
                options.redirect_uris.iter().filter_map(|uri| uri.join("/").ok()).collect()
            } else {
                options.sign_out_redirects
            },
            redirect_uris: options.redirect_uris,
            base_url: base_url_for(local_addr),
            keys: Mutex::new(KeySet { current: Arc::new(key), previous: None, current_unpublished: false }),
            store: Mutex::new(seeded_store(
                Store::new(
                    options.users,
                    options.organizations,
                    options.access_token_ttl,
                    options.code_ttl,
                    options.extra_claims,
                ),
                &options.memberships,
                options.organization_selection,
            )?),
            enterprise: Mutex::default(),
            impersonations: options.impersonations,
            controls: WorkosFaultControls::new(stopping.clone()),
            webhooks: StandInWebhooks::new(),
            events_controls: Mutex::new(EventsControls {
                honour_types: true,
                unknown_cursor: UnknownCursor::default(),
                queries: Vec::new(),
            }),
        });

        tokio::spawn(webhooks::run_deliveries(Arc::clone(&inner), stopping));
        let app = routes::router(Arc::clone(&inner));
        let mut stopped = stop.subscribe();
        let server = tokio::spawn(async move {
            let until_stopped = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(until_stopped).await {
                tracing::error!(%error, "the WorkOS stand-in stopped serving");
            }
        });
        tracing::info!(base_url = %inner.base_url, "WorkOS stand-in listening");
        Ok(WorkosStandIn { inner, stop, server: Some(server) })
    }

    /// `http://127.0.0.1:PORT/`: the value for `WORKOS_API_BASE_URL`.
    pub fn base_url(&self) -> Url {
        self.inner.base_url.clone()
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn api_key(&self) -> &StandInSecret {
        &self.inner.api_key
    }

    /// The seeded users, followed by any created on the sign-in page (deleted users are gone).
    pub fn users(&self) -> Vec<SeedUser> {
        lock(&self.inner.store).users().map(|user| user.seed.clone()).collect()
    }

    /// The next `n` requests to `endpoint` are answered with `status` and a WorkOS-shaped error body, before any
    /// processing (so no code or refresh token is spent). Calls add up: `fail_next(e, 1, 429)` then
    /// `fail_next(e, 1, 503)` fails once with each, in that order.
    ///
    /// # Panics
    /// When `status` is not a 4xx or 5xx status: that is a mistake in the calling test.
    pub fn fail_next(&self, endpoint: Endpoint, n: usize, status: u16) {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or_else(|| panic!("fail_next needs a 4xx or 5xx status, not {status}"));
        self.inner.controls.fail_next(endpoint, n, status);
    }

    /// Every request to `endpoint` is answered with `status` for the next `duration` (an outage), before any
    /// processing, like [`WorkosStandIn::fail_next`].
    ///
    /// # Panics
    /// When `status` is not a 4xx or 5xx status: that is a mistake in the calling test.
    pub fn fail_for(&self, endpoint: Endpoint, duration: Duration, status: u16) {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or_else(|| panic!("fail_for needs a 4xx or 5xx status, not {status}"));
        self.inner.controls.fail_for(endpoint, duration, status);
    }

    /// Lists (organizations, memberships) leave out the object `id` from now on, although it exists and `GET` finds
    /// it: a listing that lags behind, or one whose cursor skipped it while the list changed.
    pub fn leave_out_of_lists(&self, id: &str) {
        self.inner.controls.leave_out_of_lists(id);
    }

    /// Lists (organizations, memberships) answer at most `cap` items a page from now on, whatever `limit` asked for,
    /// as a server may; 0 lifts the cap. For tests that need a listing of several pages.
    pub fn set_page_cap(&self, cap: usize) {
        self.inner.controls.set_page_cap(cap);
    }

    /// The `Retry-After` of the 429s injected from now on (by [`WorkosStandIn::fail_next`] or
    /// [`WorkosStandIn::fail_for`]), in whole seconds; 1 until set.
    pub fn set_rate_limit_retry_after(&self, after: Duration) {
        self.inner.controls.set_retry_after(after);
    }

    /// The next `n` requests to `endpoint` are held without an answer until the stand-in stops, so callers' timeouts
    /// fire. They take precedence over injected failures and do not consume them.
    pub fn hang_next(&self, endpoint: Endpoint, n: usize) {
        self.inner.controls.hang_next(endpoint, n);
    }

    /// Every later request to `endpoint` waits `latency` before being handled; `Duration::ZERO` turns it off.
    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.inner.controls.set_latency(endpoint, latency);
    }

    /// Requests received by `endpoint`, counted on arrival, including those failed, delayed or held on purpose.
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.inner.controls.calls(endpoint)
    }

    /// `authenticate` requests with `grant_type=refresh_token`, counted on arrival like [`WorkosStandIn::calls`].
    pub fn refresh_calls(&self) -> usize {
        self.inner.controls.grant_calls(GrantType::RefreshToken)
    }

    /// The `organization_id` each refresh request named (`None`: none), in order; failed refreshes included.
    pub fn refresh_organizations(&self) -> Vec<Option<String>> {
        lock(&self.inner.store).refresh_organizations.clone()
    }

    /// `authenticate` requests with `grant_type=authorization_code`, counted on arrival.
    pub fn code_calls(&self) -> usize {
        self.inner.controls.grant_calls(GrantType::AuthorizationCode)
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        lock(&self.inner.store).access_token_ttl = ttl;
    }

    /// How long the access tokens issued from now on last.
    pub fn access_token_ttl(&self) -> Duration {
        lock(&self.inner.store).access_token_ttl
    }

    /// Lifetime of authorization codes. It is checked when a code is exchanged, so shortening it also expires
    /// codes already issued: `set_code_ttl(Duration::ZERO)` makes every outstanding code expired.
    pub fn set_code_ttl(&self, ttl: Duration) {
        lock(&self.inner.store).code_ttl = ttl;
    }

    /// Replaces the claims merged into access tokens issued from now on. They may add claims or replace the
    /// optional ones (`role`, `permissions`, …), but not `iss`, `sub`, `sid`, `jti`, `iat` or `exp`.
    pub fn set_extra_claims(&self, claims: Map<String, Value>) {
        lock(&self.inner.store).extra_claims = claims;
    }

    /// From now on refresh answers leave out `impersonator`, while their access tokens keep `act`. WorkOS documents
    /// no such answer; it is for showing how the app copes should one ever come.
    pub fn leave_impersonator_out_of_refreshes(&self) {
        lock(&self.inner.store).refreshes_leave_out_impersonator = true;
    }

    /// The next successful code exchange starts an impersonated session: the response carries `impersonator`,
    /// and its access tokens (refreshes included) carry `act: {sub: impersonator_email}`.
    pub fn impersonate_next_login(&self, impersonator_email: &str, reason: Option<&str>) {
        lock(&self.inner.store).next_impersonation =
            Some(StandInImpersonator { email: impersonator_email.to_owned(), reason: reason.map(str::to_owned) });
    }

    /// An access token for `user_id`, valid from now for `ttl`, in its own new session: exactly what
    /// `authenticate` would issue, for bearer-token tests and the demo's `curl` line. The user need not exist, so
    /// tests can also mint tokens for strangers.
    ///
    /// # Panics
    /// Only if the crypto library fails to sign, which does not happen with a key it generated.
    pub fn mint_access_token(&self, user_id: &str, ttl: Duration) -> String {
        let issued_at = unix_seconds(SystemTime::now());
        self.mint(user_id, issued_at, issued_at.saturating_add(whole_seconds(ttl)))
    }

    /// Like [`WorkosStandIn::mint_access_token`], with explicit `iat` and `exp`: an `expires_at` in the past gives
    /// an expired token that is otherwise perfectly valid.
    ///
    /// # Panics
    /// Only if the crypto library fails to sign.
    pub fn mint_access_token_with(&self, user_id: &str, issued_at: SystemTime, expires_at: SystemTime) -> String {
        self.mint(user_id, unix_seconds(issued_at), unix_seconds(expires_at))
    }

    fn mint(&self, user_id: &str, issued_at: i64, expires_at: i64) -> String {
        let (session, extra_claims, roles) = {
            let mut store = lock(&self.inner.store);
            let (session, extra_claims) = store.open_session(user_id);
            let roles = store.session_roles(&session);
            (session, extra_claims, roles)
        };
        self.inner
            .access_token(&session, &roles, issued_at, expires_at, &extra_claims)
            .unwrap_or_else(|error| panic!("the WorkOS stand-in could not sign an access token: {error}"))
    }

    /// The `kid` of the key signing new tokens.
    pub fn kid(&self) -> String {
        self.inner.keys().current.kid().to_owned()
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block, to forge "HS256 signed with the public
    /// key" tokens.
    pub fn public_key_pem(&self) -> String {
        self.inner.keys().current.public_key_pem()
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.inner.keys().current.public_key_der().to_vec()
    }

    /// The JWKS document `GET /sso/jwks/{client_id}` serves.
    pub fn jwks(&self) -> Value {
        self.inner.jwks()
    }

    /// Signs new tokens with a freshly generated key. The JWKS lists the new key and the one before it, so a
    /// verifier that cached the old JWKS sees an unknown `kid` and must refetch.
    pub async fn rotate_signing_key(&self) -> Result<(), WorkosStandInError> {
        let key = Arc::new(jwt::generate_key(KID_PREFIX).await.ok_or(WorkosStandInError::SigningKey)?);
        let mut keys = lock(&self.inner.keys);
        let previous = Arc::clone(&keys.current);
        *keys = KeySet { current: key, previous: Some(previous), current_unpublished: false };
        Ok(())
    }

    /// Signs new tokens with a freshly generated key published under the *same* `kid` as the current one, which is
    /// no longer published: what a careless key rotation does. A verifier that remembers tokens by `kid` alone
    /// would keep trusting those the replaced key signed.
    pub async fn replace_signing_key_keeping_kid(&self) -> Result<(), WorkosStandInError> {
        let kid = self.kid();
        let key = Arc::new(jwt::generate_key_named(kid).await.ok_or(WorkosStandInError::SigningKey)?);
        let mut keys = lock(&self.inner.keys);
        *keys = KeySet { current: key, previous: None, current_unpublished: false };
        Ok(())
    }

    /// While `unpublished`, the JWKS lists only the key before the signing one: a rotation whose new key is not in the
    /// JWKS yet, so tokens signed now cannot be verified until it is.
    pub fn set_signing_key_unpublished(&self, unpublished: bool) {
        lock(&self.inner.keys).current_unpublished = unpublished;
    }

    /// Switching a session to `organization_id` answers `sso_required` from now on (its SSO is enforced), so the
    /// app must send the browser through the organization's sign-in. Choosing it at organization selection is
    /// answered "Must use SSO for selected organization".
    pub fn require_sso_for_switch(&self, organization_id: &str) {
        self.require_for_switch(organization_id, StandInSignInRequirement::Sso);
    }

    /// Switching a session to `organization_id` asks for its own sign-in from now on, as `requirement` says.
    pub fn require_for_switch(&self, organization_id: &str, requirement: StandInSignInRequirement) {
        lock(&self.inner.store).switch_requirements.push((organization_id.to_owned(), requirement));
    }

    /// Ordinary refreshes of sessions in `organization_id` answer `sso_required` from now on (the organization began
    /// enforcing SSO after these sessions signed in).
    pub fn require_sso_on_refresh(&self, organization_id: &str) {
        self.require_on_refresh(organization_id, StandInSignInRequirement::Sso);
    }

    /// Ordinary refreshes of sessions in `organization_id` ask for its own sign-in from now on, as `requirement`
    /// says.
    pub fn require_on_refresh(&self, organization_id: &str, requirement: StandInSignInRequirement) {
        lock(&self.inner.store).refresh_requirements.push((organization_id.to_owned(), requirement));
    }

    /// Pending authentication tokens issued by `organization_selection_required` and not yet spent.
    pub fn pending_authentication_tokens(&self) -> Vec<String> {
        lock(&self.inner.store).pending_authentication_tokens()
    }

    /// Turns `organization_selection_required` at sign-in on or off.
    pub fn set_organization_selection(&self, on: bool) {
        lock(&self.inner.store).organization_selection = on;
    }

    /// Issues Admin Portal links on a custom domain from now on (`None`: on the stand-in's own origin again), as a
    /// production environment with WorkOS's *Custom domains* does. The stand-in does not serve that domain.
    pub fn set_portal_domain(&self, domain: Option<Url>) {
        lock(&self.inner.enterprise).portal_domain = domain;
    }

    /// Every Admin Portal link issued so far.
    pub fn portal_links(&self) -> Vec<StandInPortalLink> {
        lock(&self.inner.enterprise).links().to_vec()
    }

    /// The Audit Log events accepted so far (once per idempotency key), oldest first.
    pub fn audit_log_events(&self) -> Vec<StandInAuditEvent> {
        lock(&self.inner.enterprise).audit_events().to_vec()
    }

    /// The `Idempotency-Key` of every `POST /audit_logs/events` that reached the endpoint, failed or not (injected
    /// failures through [`WorkosStandIn::fail_next`] are counted by [`WorkosStandIn::calls`] only).
    pub fn audit_log_requests(&self) -> Vec<Option<String>> {
        lock(&self.inner.enterprise).audit_requests().to_vec()
    }

    /// How many sends of each `Idempotency-Key` `POST /audit_logs/events` answered with success, repeats included:
    /// the stand-in records a repeated event once (as WorkOS does), so this is where a client sending the same event
    /// twice shows. Refused, failed and injected-failure sends are not counted.
    pub fn audit_log_accepted_sends(&self) -> std::collections::HashMap<String, usize> {
        lock(&self.inner.enterprise).audit_accepted().clone()
    }

    /// While `down`, `POST /audit_logs/events` answers 503 (an outage), recording nothing.
    pub fn set_audit_logs_down(&self, down: bool) {
        lock(&self.inner.enterprise).set_audit_down(down);
    }

    /// `action` has no Audit Log schema from now on (removed from the dashboard): its events are refused with 400
    /// `invalid_audit_log_event`.
    pub fn remove_audit_log_schema(&self, action: &str) {
        lock(&self.inner.enterprise).remove_audit_schema(action);
    }

    /// `action`'s schema has the versions given, each by its target types (version 1 first): as after editing it
    /// in the dashboard, which keeps the old versions and adds a new one. An event naming another version (or none,
    /// read as 1, when version 1 does not fit it) is refused with 400 `invalid_audit_log_event`.
    pub fn set_audit_log_schema_versions(&self, action: &str, versions: &[&[&str]]) {
        let versions = versions.iter().map(|targets| targets.iter().map(|t| (*t).to_owned()).collect()).collect();
        lock(&self.inner.enterprise).set_audit_schema_versions(action, versions);
    }

    /// Every refresh token issued so far stops working (sessions stay, so logout still succeeds).
    pub fn revoke_all_refresh_tokens(&self) {
        lock(&self.inner.store).revoke_all_refresh_tokens();
    }

    // ---- the enterprise lifecycle: organizations, memberships, users, directories ---------------------------

    /// Runs a change on the store, then wakes webhook delivery for the events it recorded.
    fn change<T>(&self, change: impl FnOnce(&mut Store) -> T) -> T {
        let outcome = change(&mut lock(&self.inner.store));
        self.inner.webhooks.wake();
        outcome
    }

    /// The organizations, as `GET /organizations` lists them.
    pub fn organizations(&self) -> Vec<StandInOrganization> {
        lock(&self.inner.store).organizations().to_vec()
    }

    /// Every membership, whatever its status.
    pub fn memberships(&self) -> Vec<StandInMembership> {
        lock(&self.inner.store).memberships().to_vec()
    }

    /// The membership of `user_id` in `organization_id`, whatever its status.
    pub fn membership_of(&self, user_id: &str, organization_id: &str) -> Option<StandInMembership> {
        self.memberships().into_iter().find(|m| m.user_id == user_id && m.organization_id == organization_id)
    }

    pub fn create_organization(&self, name: &str) -> StandInOrganization {
        self.change(|store| store.create_organization(name))
    }

    pub fn rename_organization(&self, id: &str, name: &str) -> Result<StandInOrganization, StandInRefusal> {
        self.change(|store| store.rename_organization(id, name))
    }

    pub fn delete_organization(&self, id: &str) -> Result<(), StandInRefusal> {
        self.change(|store| store.delete_organization(id))
    }

    /// A new active membership (or the user's inactive one reactivated); no roles means `member`.
    pub fn add_membership(
        &self,
        user_id: &str,
        organization_id: &str,
        roles: &[&str],
    ) -> Result<StandInMembership, StandInRefusal> {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        self.change(|store| store.add_membership(user_id, organization_id, &roles))
    }

    pub fn set_membership_roles(&self, id: &str, roles: &[&str]) -> Result<StandInMembership, StandInRefusal> {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        self.change(|store| store.set_membership_roles(id, &roles))
    }

    /// `inactive`, and every active session of the user revoked (as WorkOS does).
    pub fn deactivate_membership(&self, id: &str) -> Result<StandInMembership, StandInRefusal> {
        self.change(|store| store.deactivate_membership(id))
    }

    pub fn reactivate_membership(&self, id: &str) -> Result<StandInMembership, StandInRefusal> {
        self.change(|store| store.reactivate_membership(id))
    }

    pub fn delete_membership(&self, id: &str) -> Result<(), StandInRefusal> {
        self.change(|store| store.delete_membership(id))
    }

    /// Revokes the user's sessions, deletes their memberships, then the user, with the events of each.
    pub fn delete_user(&self, id: &str) -> Result<(), StandInRefusal> {
        self.change(|store| store.delete_user(id))
    }

    /// Ends a session as `POST /user_management/sessions/revoke` does (`session.revoked`).
    pub fn revoke_session(&self, session_id: &str) -> bool {
        self.change(|store| store.end_session(session_id).is_ok())
    }

    /// A person provisioned into the organization's directory by its identity provider.
    pub fn provision_directory_user(
        &self,
        organization_id: &str,
        email: &str,
    ) -> Result<StandInDirectoryUser, StandInRefusal> {
        self.change(|store| store.provision_directory_user(organization_id, email))
    }

    /// Turns WorkOS's directory provisioning off (`false`) or on (the default): off, the directories only sync, and
    /// deprovisioning a directory user leaves their membership as it is, as for an environment where WorkOS has not
    /// enabled it (docs/workos.md §5.3, §5.5).
    pub fn set_directory_provisioning(&self, on: bool) {
        lock(&self.inner.store).directory_provisioning = on;
    }

    /// The identity provider sets the person's state (`inactive` or `suspended` deprovisions; with directory
    /// provisioning, their membership too).
    pub fn set_directory_user_state(&self, id: &str, state: &str) -> Result<StandInDirectoryUser, StandInRefusal> {
        self.change(|store| store.set_directory_user_state(id, state))
    }

    pub fn remove_directory_user(&self, id: &str) -> Result<(), StandInRefusal> {
        self.change(|store| store.remove_directory_user(id))
    }

    /// Deletes the organization's directory connection (`dsync.deleted`); returns the directory's id.
    pub fn delete_directory(&self, organization_id: &str) -> Result<String, StandInRefusal> {
        self.change(|store| store.delete_directory(organization_id))
    }

    /// Adds the directory user to `group` (`member`) or removes them from it.
    pub fn set_directory_group_member(
        &self,
        id: &str,
        group: &str,
        member: bool,
    ) -> Result<StandInDirectoryUser, StandInRefusal> {
        self.change(|store| store.set_directory_group_member(id, group, member))
    }

    /// Records an arbitrary event (a type authbridge does not handle, a malformed payload): delivered and listed like
    /// any other. Returns its id.
    pub fn emit_event(&self, event_type: &str, data: Value) -> String {
        self.change(|store| store.events.emit(event_type, data))
    }

    /// The whole event history, oldest first.
    pub fn events(&self) -> Vec<StandInEvent> {
        lock(&self.inner.store).events.all().to_vec()
    }

    // ---- the Events API's misbehaviour -------------------------------------------------------------------------

    /// With `false`, `GET /events` ignores its `events` filter and returns every type, as some servers do.
    pub fn honour_events_type_filter(&self, honour: bool) {
        lock(&self.inner.events_controls).honour_types = honour;
    }

    /// How an `after` the stand-in does not know is answered (restart from the beginning, or 400).
    pub fn set_unknown_event_cursor(&self, behaviour: UnknownCursor) {
        lock(&self.inner.events_controls).unknown_cursor = behaviour;
    }

    /// Every event id issued so far stops working as a cursor, as if past retention.
    pub fn forget_event_cursors(&self) {
        lock(&self.inner.store).events.forget_cursors();
    }

    /// Every event emitted so far is past retention: `GET /events` neither lists them nor knows their ids as
    /// cursors.
    pub fn expire_events(&self) {
        lock(&self.inner.store).events.expire_all();
    }

    /// Every `GET /events` request so far, as understood.
    pub fn events_queries(&self) -> Vec<StandInEventsQuery> {
        lock(&self.inner.events_controls).queries.clone()
    }

    // ---- webhooks -----------------------------------------------------------------------------------------------

    /// Delivers every event emitted from now on to `url`, signed with `secret`, as an endpoint set up in the
    /// WorkOS dashboard.
    pub fn register_webhook_endpoint(&self, url: Url, secret: StandInSecret) {
        let next_event = lock(&self.inner.store).events.len();
        self.inner.webhooks.register(url, secret, next_event);
    }

    /// Holds deliveries (first attempts) until [`WorkosStandIn::release_held_webhooks`].
    pub fn hold_webhooks(&self) {
        self.inner.webhooks.hold(true);
    }

    /// Deliveries waiting to be released.
    pub fn held_webhooks(&self) -> usize {
        self.inner.webhooks.held()
    }

    /// Sends the held deliveries in `order` (waiting for each first attempt), and stops holding.
    pub async fn release_held_webhooks(&self, order: StandInWebhookOrder) {
        self.inner.webhooks.release(order).await;
    }

    /// Each of the next `deliveries` deliveries is sent twice.
    pub fn duplicate_next_webhooks(&self, deliveries: usize) {
        self.inner.webhooks.duplicate_next(deliveries);
    }

    /// The waits between attempts of a failed delivery (their number + 1 is the number of attempts).
    pub fn set_webhook_retry_delays(&self, delays: Vec<Duration>) {
        self.inner.webhooks.set_retry_delays(delays);
    }

    /// Every delivery attempt so far.
    pub fn webhook_attempts(&self) -> Vec<StandInWebhookAttempt> {
        self.inner.webhooks.attempts()
    }

    /// Stops accepting connections, releases held requests, and waits (a few seconds at most) for open ones.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err()
        {
            tracing::warn!("the WorkOS stand-in did not stop in time; closing its connections");
            server.abort();
        }
    }
}

impl Drop for WorkosStandIn {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl std::fmt::Debug for WorkosStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkosStandIn")
            .field("base_url", &self.inner.base_url.as_str())
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

impl WorkosStandInState {
    fn keys(&self) -> KeySet {
        lock(&self.keys).clone()
    }

    /// The issuer WorkOS puts in its tokens is its base URL with a trailing slash; the stand-in does the same.
    fn issuer(&self) -> &str {
        self.base_url.as_str()
    }

    fn access_token(
        &self,
        session: &StandInSession,
        roles: &[String],
        issued_at: i64,
        expires_at: i64,
        extra_claims: &Map<String, Value>,
    ) -> Result<String, KeyError> {
        let claims = StandInAccessClaims {
            issuer: self.issuer(),
            user_id: &session.user_id,
            session_id: &session.id,
            organization_id: session.organization_id.as_deref(),
            impersonator_email: session.impersonator.as_ref().map(|impersonator| impersonator.email.as_str()),
            roles,
            issued_at,
            expires_at,
        }
        .into_map(extra_claims);
        self.keys().current.sign("JWT", &claims)
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        let current = (!keys.current_unpublished).then_some(&keys.current);
        let jwks: Vec<&Value> = current.into_iter().chain(&keys.previous).map(|key| key.jwk()).collect();
        json!({ "keys": jwks })
    }

    /// Exact match, as OAuth requires: no prefix or pattern matching an attacker could stretch.
    fn is_registered_redirect_uri(&self, uri: &Url) -> bool {
        self.redirect_uris.iter().any(|registered| registered == uri)
    }

    /// Logout may only send the browser to one of the sign-out redirects, exactly.
    fn is_allowed_return_to(&self, url: &Url) -> bool {
        self.sign_out_redirects.iter().any(|registered| registered == url)
    }
}

/// A time sent to WorkOS (`occurred_at`, `range_start`), read only in the form the official SDKs send
/// (`Date.toISOString()`: UTC, exactly three fraction digits, `Z`). WorkOS documents no other, so the stand-in takes
/// no other: a client that sends nanoseconds or an offset is caught here rather than by WorkOS.
fn sdk_time(raw: &str) -> Option<time::OffsetDateTime> {
    let bytes = raw.as_bytes();
    let shaped = bytes.len() == 24 && bytes.get(19) == Some(&b'.') && raw.ends_with('Z');
    shaped.then(|| time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).ok()).flatten()
}

/// The store with the extra memberships seeded.
fn seeded_store(
    mut store: Store,
    memberships: &[SeedMembership],
    organization_selection: bool,
) -> Result<Store, WorkosStandInError> {
    store.organization_selection = organization_selection;
    for seed in memberships {
        let refused = |refusal: StandInRefusal| {
            WorkosStandInError::InvalidOptions(format!(
                "seed membership of {} in {}: {}",
                seed.user_id, seed.organization_id, refusal.message
            ))
        };
        let membership = store.add_membership(&seed.user_id, &seed.organization_id, &seed.roles).map_err(refused)?;
        if !seed.roles.is_empty() && membership.roles != seed.roles {
            store.set_membership_roles(&membership.id, &seed.roles).map_err(refused)?;
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid_and_bad_seeds_are_refused() {
        WorkosStandInOptions::default().validate().expect("defaults are valid");
        let mut options = WorkosStandInOptions::default();
        options.users.push(SeedUser { id: "user_x".into(), ..SeedUser::defaults()[0].clone() });
        assert!(options.validate().is_err(), "a repeated email is refused");
        let options = WorkosStandInOptions {
            redirect_uris: vec![Url::parse("javascript:alert(1)").expect("url")],
            ..WorkosStandInOptions::default()
        };
        assert!(options.validate().is_err(), "a non-http redirect URI is refused");
    }

    #[test]
    fn the_handle_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<WorkosStandIn>();
    }
}
