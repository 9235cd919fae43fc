//! A stand-in for an OpenID Connect provider, shaped like an Auth0 tenant: discovery, JWKS (with rotation), an
//! authorize endpoint with a sign-in page, the token endpoint (code + PKCE, rotating refresh tokens with reuse
//! detection), userinfo, RP-initiated logout (and Auth0's `/v2/logout`), token revocation.
//!
//! It exists so that authbridge's OpenID Connect path runs for real in the tests and in `authbridge demo --provider
//! oidc`, without an Auth0 account. It is strict where a real provider is, and stricter where Auth0's leniency
//! would hide a bug: exact redirect URIs, `openid` required, PKCE S256 required, single-use codes bound to their
//! redirect URI, client authentication only by the methods discovery lists, refresh tokens that rotate and detect
//! reuse (answered 403 `invalid_grant`, as Auth0 does), real RS256 signatures. Tests can make it misbehave on
//! purpose: fail, hang or slow down any endpoint, and issue an ID token that breaks one rule (wrong `iss`, `aud`,
//! `azp` or nonce, expired, `alg: none`, HS256, an unpublished key).
//!
//! Its users are the WorkOS stand-in's (Alice and Bob of Acme, Carol), with provider-style subjects:
//! `auth0|standin-alice`, `auth0|standin-bob`, `google-oauth2|standin-carol`.

mod faults;
mod pages;
mod routes;
mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::web::{base_url_for, unix_seconds, whole_seconds};

use crate::jwt::{self as keys, SigningKey};
use crate::{StandInSecret, lock};
use faults::{Faults, Scripted};
use store::{Grant, Store};

pub use faults::failure;

pub const DEFAULT_CLIENT_ID: &str = "standin_oidc_client";
pub const DEFAULT_CLIENT_SECRET: &str = "standin-oidc-client-secret";
/// The API identifier access tokens are issued for (an Auth0 API's "audience").
pub const DEFAULT_AUDIENCE: &str = "https://api.authbridge.test/";
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:3000/callback";
/// Short by default, so refreshing happens within a test or a demo session.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_ID_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How the stand-in's key ids begin.
const KID_PREFIX: &str = "standin-";

/// A user of the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    /// The `sub` claim: provider-style, with the `|` real ones have.
    pub subject: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// `email_verified`, as the provider reports it.
    pub email_verified: bool,
}

impl OidcUser {
    /// Alice and Bob of Acme, and Carol (who signed up with Google): the WorkOS stand-in's users.
    pub fn defaults() -> Vec<OidcUser> {
        let user = |subject: &str, email: &str, given: &str, family: &str| OidcUser {
            subject: subject.to_owned(),
            email: email.to_owned(),
            given_name: Some(given.to_owned()),
            family_name: Some(family.to_owned()),
            email_verified: true,
        };
        vec![
            user("auth0|standin-alice", "alice@acme.test", "Alice", "Anderson"),
            user("auth0|standin-bob", "bob@acme.test", "Bob", "Brown"),
            user("google-oauth2|standin-carol", "carol@example.test", "Carol", "Clark"),
        ]
    }

    /// "Alice Anderson", or the email.
    pub fn display_name(&self) -> String {
        let name: Vec<&str> = [self.given_name.as_deref(), self.family_name.as_deref()].into_iter().flatten().collect();
        if name.is_empty() { self.email.clone() } else { name.join(" ") }
    }
}

/// How the token endpoint lets clients authenticate, as discovery lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethods {
    /// `client_secret_basic` and `client_secret_post`, as Auth0 publishes.
    BasicAndPost,
    /// `client_secret_post` only.
    PostOnly,
}

/// How a client authenticated a token-endpoint request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

/// What a refreshed token answer carries as its ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshIdToken {
    /// A new ID token with the sign-in's nonce.
    WithNonce,
    /// A new ID token without a nonce.
    WithoutNonce,
    /// No ID token.
    Absent,
}

/// One rule the next ID token breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    WrongIssuer,
    WrongAudience,
    /// `aud` is `[client_id, "another-client"]`, without `azp`.
    UntrustedExtraAudience,
    /// `azp` names another client.
    WrongAuthorizedParty,
    /// `aud` is `[client_id, client_id]`, without `azp`: several audiences must come with an `azp`.
    RepeatedAudience,
    /// `azp` is the client's own id (as Google's ID tokens have it): not a fault.
    AuthorizedPartyIsTheClient,
    MissingNonce,
    WrongNonce,
    /// Expired ten minutes ago.
    Expired,
    /// Issued an hour from now.
    IssuedInTheFuture,
    /// Expired 30 s ago: not a fault for a relying party that allows for clock skew (authbridge: a minute).
    ExpiredWithinSkew,
    /// Issued 30 s from now (the provider's clock ahead): likewise within the skew allowed.
    IssuedWithinSkew,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the published RSA public key (PEM) as the secret, naming the current `kid`.
    Hs256WithPublicKey,
    /// HS256 with the client secret (what Auth0 issues for an application set to HS256).
    Hs256WithClientSecret,
    /// RS256 with a key the JWKS never lists.
    UnknownKey,
    /// Header `typ: at+jwt`: an access token passed off as an ID token.
    AccessTokenType,
    /// Valid in every other way, but about another user (`sub`).
    AnotherSubject,
    /// `sub` present but empty: names no one.
    EmptySubject,
    /// `sub` of white space only: names no one either.
    BlankSubject,
    /// `email_verified` and `phone_number_verified` as the strings `"true"` and `"false"`, as ADFS and gov.br send
    /// them: not a fault for a relying party that reads the claims leniently.
    BooleansAsStrings,
}

/// How to start a stand-in. `Default`: loopback, a free port, Alice, Bob and Carol, Auth0-like behaviour.
#[derive(Debug, Clone)]
pub struct OidcStandInOptions {
    pub bind: SocketAddr,
    pub client_id: String,
    pub client_secret: StandInSecret,
    /// The only URIs `authorize` redirects to (exact match).
    pub redirect_uris: Vec<Url>,
    /// The only URIs sign-out returns to (exact match). Empty: the origins (`scheme://host:port/`) of the
    /// redirect URIs.
    pub post_logout_redirect_uris: Vec<Url>,
    /// The API it issues JWT access tokens for; other `audience` values are refused.
    pub audience: String,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    pub code_ttl: Duration,
    pub users: Vec<OidcUser>,
    /// Name and email in the ID token (Auth0), or only at the userinfo endpoint (strict providers).
    pub profile_in_id_token: bool,
    /// Publishes `end_session_endpoint` (Auth0 does when RP-initiated logout discovery is on).
    pub end_session_endpoint: bool,
    /// Looks like Auth0 to a client (publishes `mfa_challenge_endpoint`), serves `/v2/logout`, and wants `client_id`
    /// in a revocation's body whichever way the client authenticates.
    pub auth0_logout: bool,
    pub client_auth_methods: ClientAuthMethods,
    /// The one method the application is set to, which the token and revocation endpoints enforce whatever
    /// discovery lists: Auth0 lists both, and refuses the other one (Application > Credentials > Authentication
    /// Method; `Client Secret (Post)` for a new Regular Web Application, `Basic` as authbridge's README sets it).
    pub application_auth: ClientAuth,
    /// Refresh tokens for `offline_access`; off, the scope is ignored (OIDC Core §11 allows it).
    pub issue_refresh_tokens: bool,
    /// Rotating refresh tokens with reuse detection; off, a refresh token stays valid and none is reissued.
    pub rotate_refresh_tokens: bool,
    /// The JWT `typ` of access tokens: `JWT` (Auth0's default profile) or `at+jwt` (RFC 9068 profile).
    pub access_token_typ: &'static str,
    /// Knows the `offline_access` scope (publishes it in `scopes_supported`). Off, like Google: it is left out of
    /// the discovery document and an authorization request asking for it is refused with `invalid_scope`.
    pub offline_access_scope: bool,
    /// Names itself in every authorization response (`iss`, RFC 9207) and says so in discovery
    /// (`authorization_response_iss_parameter_supported`), as Keycloak and Okta do. Off, like Auth0: neither.
    pub authorization_response_iss: bool,
    /// Publishes its authorization endpoint on Okta's path (`/oauth2/v1/authorize`, an Okta org authorization
    /// server's), which is how a relying party tells Okta on a custom domain; `/authorize` still answers. Off: Auth0's.
    pub okta_paths: bool,
}

impl Default for OidcStandInOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: StandInSecret::new(DEFAULT_CLIENT_SECRET),
            redirect_uris: Url::parse(DEFAULT_REDIRECT_URI).into_iter().collect(),
            post_logout_redirect_uris: Vec::new(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            id_token_ttl: DEFAULT_ID_TOKEN_TTL,
            code_ttl: DEFAULT_CODE_TTL,
            users: OidcUser::defaults(),
            profile_in_id_token: true,
            end_session_endpoint: true,
            auth0_logout: false,
            client_auth_methods: ClientAuthMethods::BasicAndPost,
            application_auth: ClientAuth::Basic,
            issue_refresh_tokens: true,
            rotate_refresh_tokens: true,
            access_token_typ: "JWT",
            offline_access_scope: true,
            authorization_response_iss: false,
            okta_paths: false,
        }
    }
}

/// The stand-in's endpoints, as controls and counters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration`.
    Discovery,
    /// `GET /.well-known/jwks.json`.
    Jwks,
    /// `GET /authorize`.
    Authorize,
    /// The sign-in page's form posts.
    SignInForm,
    /// `POST /oauth/token`, both grants.
    Token,
    /// `GET /userinfo`.
    UserInfo,
    /// `GET /oidc/logout` (RP-initiated logout).
    EndSession,
    /// `GET /v2/logout` (Auth0's own logout).
    Auth0Logout,
    /// `POST /oauth/revoke`.
    Revoke,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::Authorize,
        Endpoint::SignInForm,
        Endpoint::Token,
        Endpoint::UserInfo,
        Endpoint::EndSession,
        Endpoint::Auth0Logout,
        Endpoint::Revoke,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|endpoint| *endpoint == self).unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcStandInError {
    #[error("the OIDC stand-in's options are invalid: {0}")]
    InvalidOptions(String),
    #[error("the OIDC stand-in cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the OIDC stand-in could not create its RSA signing key")]
    SigningKey,
}

/// A running stand-in. Dropping it stops the server; [`OidcStandIn::shutdown`] also waits.
pub struct OidcStandIn {
    inner: Arc<State>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// What the handlers share with the test controls.
struct State {
    options: OidcStandInOptions,
    issuer: Url,
    keys: Mutex<KeySet>,
    store: Mutex<Store>,
    faults: Faults,
    controls: Mutex<Controls>,
}

#[derive(Clone)]
struct KeySet {
    current: Arc<SigningKey>,
    previous: Option<Arc<SigningKey>>,
}

struct Controls {
    next_id_token_fault: Option<IdTokenFault>,
    /// Profile claims the next ID token leaves out (as a provider that keeps some of them for userinfo does).
    next_id_token_omits: Vec<&'static str>,
    refresh_id_token: RefreshIdToken,
    access_token_ttl: Duration,
    code_calls: usize,
    refresh_calls: usize,
    last_client_auth: Option<ClientAuth>,
    /// `sid`s ended through the end-session endpoint.
    ended_sessions: Vec<String>,
    revocations: usize,
}

impl OidcStandIn {
    pub async fn start(options: OidcStandInOptions) -> Result<OidcStandIn, OidcStandInError> {
        validate(&options)?;
        let key = keys::generate_key(KID_PREFIX).await.ok_or(OidcStandInError::SigningKey)?;
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|source| OidcStandInError::Bind { addr: options.bind, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| OidcStandInError::Bind { addr: options.bind, source })?;
        let (stop, stopping) = watch::channel(false);
        let inner = Arc::new(State {
            issuer: base_url_for(local_addr),
            keys: Mutex::new(KeySet { current: Arc::new(key), previous: None }),
            store: Mutex::new(Store::new(options.users.clone(), options.code_ttl)),
            faults: Faults::new(stopping),
            controls: Mutex::new(Controls {
                next_id_token_fault: None,
                next_id_token_omits: Vec::new(),
                refresh_id_token: RefreshIdToken::WithNonce,
                access_token_ttl: options.access_token_ttl,
                code_calls: 0,
                refresh_calls: 0,
                last_client_auth: None,
                ended_sessions: Vec::new(),
                revocations: 0,
            }),
            options,
        });
        let app = routes::router(Arc::clone(&inner));
        let mut stopped = stop.subscribe();
        let server = tokio::spawn(async move {
            let until_stopped = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(until_stopped).await {
                tracing::error!(%error, "the OIDC stand-in stopped serving");
            }
        });
        tracing::info!(issuer = %inner.issuer, "OIDC stand-in listening");
        Ok(OidcStandIn { inner, stop, server: Some(server) })
    }

    /// `http://127.0.0.1:PORT/`, with the trailing slash Auth0's issuers have: the value for `OIDC_ISSUER`.
    pub fn issuer(&self) -> Url {
        self.inner.issuer.clone()
    }

    pub fn client_id(&self) -> &str {
        &self.inner.options.client_id
    }

    pub fn client_secret(&self) -> &StandInSecret {
        &self.inner.options.client_secret
    }

    /// The API identifier (`OIDC_AUDIENCE`).
    pub fn audience(&self) -> &str {
        &self.inner.options.audience
    }

    /// The seeded users, then any created on the sign-in page.
    pub fn users(&self) -> Vec<OidcUser> {
        lock(&self.inner.store).users().to_vec()
    }

    /// The next request to `endpoint` is rate limited as Auth0 does it (429, `X-RateLimit-Reset` `reset_in` from now).
    pub fn rate_limit_next(&self, endpoint: Endpoint, reset_in: Duration) {
        let answer = Scripted { rate_limit_reset: reset_in, ..failure(StatusCode::TOO_MANY_REQUESTS) };
        self.inner.faults.answer_next(endpoint, 1, answer);
    }

    /// The next `n` requests to `endpoint` are answered with `status` and an OAuth error body, before any
    /// processing.
    ///
    /// # Panics
    /// When `status` is not a 4xx or 5xx status: a mistake in the calling test.
    pub fn fail_next(&self, endpoint: Endpoint, n: usize, status: u16) {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or_else(|| panic!("fail_next needs a 4xx or 5xx status, not {status}"));
        self.inner.faults.answer_next(endpoint, n, failure(status));
    }

    /// The next request to `endpoint` gets exactly this answer, before any processing.
    ///
    /// # Panics
    /// When `status` is not a valid HTTP status.
    pub fn answer_next(&self, endpoint: Endpoint, status: u16, content_type: &'static str, body: &str) {
        let status = StatusCode::from_u16(status).unwrap_or_else(|_| panic!("{status} is not an HTTP status"));
        let answer = Scripted { status, content_type, body: body.to_owned(), rate_limit_reset: Duration::from_secs(1) };
        self.inner.faults.answer_next(endpoint, 1, answer);
    }

    /// The next `n` requests to `endpoint` are held until the stand-in stops.
    pub fn hang_next(&self, endpoint: Endpoint, n: usize) {
        self.inner.faults.hang_next(endpoint, n);
    }

    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.inner.faults.set_latency(endpoint, latency);
    }

    /// Requests received by `endpoint`, counted on arrival.
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.inner.faults.calls(endpoint)
    }

    /// Token requests with `grant_type=authorization_code` that reached the grant logic.
    pub fn code_calls(&self) -> usize {
        lock(&self.inner.controls).code_calls
    }

    /// Token requests with `grant_type=refresh_token` that reached the grant logic.
    pub fn refresh_calls(&self) -> usize {
        lock(&self.inner.controls).refresh_calls
    }

    /// Times a spent refresh token was presented again (and its family revoked).
    pub fn reuse_detections(&self) -> usize {
        lock(&self.inner.store).reuse_detections
    }

    /// Refresh tokens revoked through `/oauth/revoke`.
    pub fn revocations(&self) -> usize {
        lock(&self.inner.controls).revocations
    }

    /// How the last token request authenticated the client.
    pub fn last_client_auth(&self) -> Option<ClientAuth> {
        lock(&self.inner.controls).last_client_auth
    }

    /// The `sid`s signed out through the end-session endpoint.
    pub fn ended_sessions(&self) -> Vec<String> {
        lock(&self.inner.controls).ended_sessions.clone()
    }

    /// The next ID token leaves these claims out (`email`, `family_name`, …); the userinfo endpoint still has them.
    pub fn omit_from_next_id_token(&self, claims: &[&'static str]) {
        lock(&self.inner.controls).next_id_token_omits = claims.to_vec();
    }

    /// The next ID token issued (by either grant) breaks `fault`'s rule.
    pub fn tamper_next_id_token(&self, fault: IdTokenFault) {
        lock(&self.inner.controls).next_id_token_fault = Some(fault);
    }

    /// What refresh answers carry as their ID token from now on.
    pub fn set_refresh_id_token(&self, refresh_id_token: RefreshIdToken) {
        lock(&self.inner.controls).refresh_id_token = refresh_id_token;
    }

    /// Lifetime of access tokens (and `expires_in`) issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        lock(&self.inner.controls).access_token_ttl = ttl;
    }

    /// How long the access tokens issued from now on last.
    pub fn access_token_ttl(&self) -> Duration {
        lock(&self.inner.controls).access_token_ttl
    }

    /// Lifetime of codes, checked at exchange (so shortening it expires codes already issued).
    pub fn set_code_ttl(&self, ttl: Duration) {
        lock(&self.inner.store).code_ttl = ttl;
    }

    /// Every refresh token issued so far stops working.
    pub fn revoke_all_refresh_tokens(&self) {
        lock(&self.inner.store).revoke_all_refresh_tokens();
    }

    /// Signs new tokens with a fresh key; the JWKS lists it and the one before it.
    pub async fn rotate_signing_key(&self) -> Result<(), OidcStandInError> {
        let key = Arc::new(keys::generate_key(KID_PREFIX).await.ok_or(OidcStandInError::SigningKey)?);
        let mut keys = lock(&self.inner.keys);
        let previous = Arc::clone(&keys.current);
        *keys = KeySet { current: key, previous: Some(previous) };
        Ok(())
    }

    /// Replaces the key signing new tokens with a fresh one published under the same `kid` (a provider that reuses
    /// key ids, or a key set served wrong): the old key is no longer published, so tokens it signed no longer verify.
    pub async fn replace_signing_key_keeping_kid(&self) -> Result<(), OidcStandInError> {
        let kid = self.kid();
        let key = Arc::new(keys::generate_key_named(kid).await.ok_or(OidcStandInError::SigningKey)?);
        lock(&self.inner.keys).current = key;
        Ok(())
    }

    /// The `kid` of the key signing new tokens.
    pub fn kid(&self) -> String {
        self.inner.keys().current.kid().to_owned()
    }

    pub fn public_key_pem(&self) -> String {
        self.inner.keys().current.public_key_pem()
    }

    /// A JWT access token for `subject`, for the API audience, valid for `ttl`: what a SPA holds after signing in.
    ///
    /// # Panics
    /// Only if signing fails, which it does not with a key the stand-in generated.
    pub fn mint_access_token(&self, subject: &str, ttl: Duration) -> String {
        self.mint_access_token_for(subject, &self.inner.options.audience, ttl)
    }

    /// Like [`OidcStandIn::mint_access_token`], for any audience.
    ///
    /// # Panics
    /// Only if signing fails.
    pub fn mint_access_token_for(&self, subject: &str, audience: &str, ttl: Duration) -> String {
        let now = unix_seconds(SystemTime::now());
        let claims =
            self.inner.access_token_claims(subject, audience, "openid profile email", now, now + whole_seconds(ttl));
        self.inner
            .keys()
            .current
            .sign(self.inner.options.access_token_typ, &claims)
            .unwrap_or_else(|error| panic!("the OIDC stand-in could not sign: {error}"))
    }

    /// `claims` signed RS256 with the current key under header `typ`: for tests that forge tokens to order.
    ///
    /// # Panics
    /// Only if signing fails.
    pub fn sign(&self, typ: &str, claims: Value) -> String {
        let claims = match claims {
            Value::Object(claims) => claims,
            other => panic!("claims must be a JSON object, not {other}"),
        };
        self.inner.keys().current.sign(typ, &claims).unwrap_or_else(|error| panic!("signing failed: {error}"))
    }

    /// `claims` signed with the current key under a header of the caller's own (to leave out `typ`, as Okta does).
    pub fn sign_with_header(&self, header: Value, claims: Value) -> String {
        let Value::Object(claims) = claims else { panic!("claims must be a JSON object") };
        self.inner.keys().current.sign_with_header(&header, &claims).unwrap_or_else(|error| panic!("signing: {error}"))
    }

    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err()
        {
            tracing::warn!("the OIDC stand-in did not stop in time; closing its connections");
            server.abort();
        }
    }
}

impl Drop for OidcStandIn {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl std::fmt::Debug for OidcStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcStandIn").field("issuer", &self.inner.issuer.as_str()).finish_non_exhaustive()
    }
}

impl State {
    fn keys(&self) -> KeySet {
        lock(&self.keys).clone()
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        let jwks: Vec<&Value> = std::iter::once(&keys.current).chain(&keys.previous).map(|key| key.jwk()).collect();
        json!({ "keys": jwks })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn is_registered_redirect_uri(&self, uri: &Url) -> bool {
        self.options.redirect_uris.iter().any(|registered| registered == uri)
    }

    fn is_allowed_logout_uri(&self, uri: &Url) -> bool {
        if self.options.post_logout_redirect_uris.is_empty() {
            return self
                .options
                .redirect_uris
                .iter()
                .any(|registered| registered.origin() == uri.origin() && uri.path() == "/" && uri.query().is_none());
        }
        self.options.post_logout_redirect_uris.iter().any(|registered| registered == uri)
    }

    fn access_token_claims(
        &self,
        subject: &str,
        audience: &str,
        scope: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(self.issuer.as_str()));
        claims.insert("sub".into(), Value::from(subject));
        // As Auth0's: the API, and the userinfo endpoint when `openid` was asked for.
        claims.insert("aud".into(), json!([audience, self.endpoint("userinfo")]));
        claims.insert("azp".into(), Value::from(self.options.client_id.as_str()));
        claims.insert("scope".into(), Value::from(scope));
        claims.insert("iat".into(), Value::from(issued_at));
        claims.insert("exp".into(), Value::from(expires_at));
        claims
    }

    /// The ID token for `grant`, honest unless a test asked for the next one to break a rule.
    fn id_token(&self, grant: &Grant, include_nonce: bool) -> Result<String, keys::KeyError> {
        let fault = lock(&self.controls).next_id_token_fault.take();
        let now = unix_seconds(SystemTime::now());
        let (issued_at, expires_at) = match fault {
            Some(IdTokenFault::Expired) => (now - 3600, now - 600),
            Some(IdTokenFault::IssuedInTheFuture) => (now + 3600, now + 7200),
            Some(IdTokenFault::ExpiredWithinSkew) => (now - 3630, now - 30),
            Some(IdTokenFault::IssuedWithinSkew) => (now + 30, now + 30 + whole_seconds(self.options.id_token_ttl)),
            _ => (now, now + whole_seconds(self.options.id_token_ttl)),
        };
        let mut claims = Map::new();
        let issuer = match fault {
            Some(IdTokenFault::WrongIssuer) => "https://someone-else.example/".to_owned(),
            _ => self.issuer.to_string(),
        };
        claims.insert("iss".into(), Value::from(issuer));
        let subject = match fault {
            Some(IdTokenFault::AnotherSubject) => "another-user",
            Some(IdTokenFault::EmptySubject) => "",
            Some(IdTokenFault::BlankSubject) => " \t ",
            _ => grant.user.subject.as_str(),
        };
        claims.insert("sub".into(), Value::from(subject));
        let client_id = self.options.client_id.as_str();
        let audience = match fault {
            Some(IdTokenFault::WrongAudience) => json!("another-client"),
            Some(IdTokenFault::UntrustedExtraAudience) => json!([client_id, "another-client"]),
            Some(IdTokenFault::RepeatedAudience) => json!([client_id, client_id]),
            _ => json!(client_id),
        };
        claims.insert("aud".into(), audience);
        match fault {
            Some(IdTokenFault::WrongAuthorizedParty) => {
                claims.insert("azp".into(), Value::from("another-client"));
            }
            Some(IdTokenFault::AuthorizedPartyIsTheClient) => {
                claims.insert("azp".into(), Value::from(client_id));
            }
            _ => {}
        }
        claims.insert("iat".into(), Value::from(issued_at));
        claims.insert("exp".into(), Value::from(expires_at));
        claims.insert("auth_time".into(), Value::from(grant.auth_time));
        claims.insert("sid".into(), Value::from(grant.session_id.as_str()));
        claims.insert("jti".into(), Value::from(uuid::Uuid::new_v4().simple().to_string()));
        let nonce = match fault {
            Some(IdTokenFault::MissingNonce) => None,
            Some(IdTokenFault::WrongNonce) => Some("not-the-nonce-of-this-sign-in".to_owned()),
            _ if include_nonce => grant.nonce.clone(),
            _ => None,
        };
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), Value::from(nonce));
        }
        if self.options.profile_in_id_token {
            claims.extend(profile_claims(&grant.user, &grant.scopes));
        }
        if fault == Some(IdTokenFault::BooleansAsStrings) {
            claims.insert("email_verified".into(), Value::from(grant.user.email_verified.to_string()));
            claims.insert("phone_number_verified".into(), Value::from("false"));
        }
        for omitted in std::mem::take(&mut lock(&self.controls).next_id_token_omits) {
            claims.remove(omitted);
        }

        let keys = self.keys();
        match fault {
            Some(IdTokenFault::AlgNone) => keys::unsigned(&claims),
            Some(IdTokenFault::Hs256WithPublicKey) => {
                keys::hs256(keys.current.public_key_pem().as_bytes(), keys.current.kid(), &claims)
            }
            Some(IdTokenFault::Hs256WithClientSecret) => {
                keys::hs256(self.options.client_secret.expose().as_bytes(), keys.current.kid(), &claims)
            }
            Some(IdTokenFault::UnknownKey) => SigningKey::generate(KID_PREFIX)?.sign("JWT", &claims),
            Some(IdTokenFault::AccessTokenType) => keys.current.sign("at+jwt", &claims),
            _ => keys.current.sign("JWT", &claims),
        }
    }
}

/// The profile and email claims `scopes` grant, shaped as Auth0 sends them (`updated_at` an ISO string).
fn profile_claims(user: &OidcUser, scopes: &[String]) -> Map<String, Value> {
    let mut claims = Map::new();
    let granted = |scope: &str| scopes.iter().any(|granted| granted == scope);
    if granted("profile") {
        claims.insert("name".into(), Value::from(user.display_name()));
        claims.insert("nickname".into(), Value::from(user.email.split('@').next().unwrap_or_default()));
        if let Some(given) = &user.given_name {
            claims.insert("given_name".into(), Value::from(given.as_str()));
        }
        if let Some(family) = &user.family_name {
            claims.insert("family_name".into(), Value::from(family.as_str()));
        }
        claims.insert("updated_at".into(), Value::from("2024-01-01T00:00:00.000Z"));
    }
    if granted("email") {
        claims.insert("email".into(), Value::from(user.email.as_str()));
        claims.insert("email_verified".into(), Value::from(user.email_verified));
    }
    claims
}

fn validate(options: &OidcStandInOptions) -> Result<(), OidcStandInError> {
    let invalid = |problem: String| Err(OidcStandInError::InvalidOptions(problem));
    if options.client_id.trim().is_empty() || options.client_secret.expose().trim().is_empty() {
        return invalid("the client id and secret must not be empty".into());
    }
    if options.client_auth_methods == ClientAuthMethods::PostOnly && options.application_auth == ClientAuth::Basic {
        return invalid("discovery lists only client_secret_post, so the application cannot be set to Basic".into());
    }
    for uri in options.redirect_uris.iter().chain(&options.post_logout_redirect_uris) {
        if !matches!(uri.scheme(), "http" | "https") || uri.host().is_none() {
            return invalid(format!("{uri} is not an http(s) URL with a host"));
        }
    }
    for (i, user) in options.users.iter().enumerate() {
        if user.subject.trim().is_empty() || !user.email.contains('@') {
            return invalid(format!("user {i} needs a subject and an email"));
        }
        if options.users[..i].iter().any(|earlier| earlier.subject == user.subject || earlier.email == user.email) {
            return invalid(format!("user {} repeats an earlier subject or email", user.subject));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid_and_bad_ones_are_refused() {
        validate(&OidcStandInOptions::default()).expect("defaults are valid");
        let mut options = OidcStandInOptions::default();
        options.users.push(OidcUser { subject: "auth0|x".into(), ..OidcUser::defaults()[0].clone() });
        assert!(validate(&options).is_err(), "a repeated email");
        let options = OidcStandInOptions {
            redirect_uris: vec![Url::parse("javascript:alert(1)").expect("url")],
            ..OidcStandInOptions::default()
        };
        assert!(validate(&options).is_err());
    }

    #[test]
    fn the_issuer_ends_with_a_slash_like_auth0s() {
        assert_eq!(base_url_for("0.0.0.0:4321".parse().expect("addr")).as_str(), "http://127.0.0.1:4321/");
    }

    #[test]
    fn profile_claims_follow_the_scopes() {
        let alice = &OidcUser::defaults()[0];
        let none = profile_claims(alice, &["openid".to_owned()]);
        assert!(none.is_empty());
        let all = profile_claims(alice, &["openid".to_owned(), "profile".to_owned(), "email".to_owned()]);
        assert_eq!(all["name"], "Alice Anderson");
        assert_eq!(all["email"], "alice@acme.test");
        assert_eq!(all["email_verified"], true);
    }
}
