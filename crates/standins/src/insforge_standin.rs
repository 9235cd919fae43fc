//! An InsForge stand-in: the records API over a real PostgreSQL, for the tests and `authbridge demo`.
//!
//! It reproduces what authbridge relies on, and only that: `/api/database/records/{table}` (GET, POST, PATCH,
//! DELETE with PostgREST filters, `select`, `order`, `limit`, `offset`, `Prefer: return=representation`),
//! `/api/health`, InsForge's authentication rules, and both error shapes with their statuses.
//!
//! Like InsForge, it never decides who may see a row. Each request runs in one transaction as PostgREST runs it
//! (READ ONLY for a read, `search_path` set to `public`) as the token's role (`SET LOCAL ROLE`) with
//! `request.jwt.claims` set as InsForge sets them (`{sub, email, role, iat, exp}` for a user, `{role}` alone for
//! the anon and admin keys), and PostgreSQL's row-level security does the rest. If RLS were missing, the stand-in would show every row to everybody, exactly as InsForge would:
//! that is what makes the tests built on it prove the policies, not the stand-in.

mod body;
mod errors;
mod query;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use crate::{StandInSecret, lock};
use errors::RecordsApiError;
use query::{Column, InsertBody, Operation, Param, QueryParams, Statement, Table, UpdateBody};

/// The three roles InsForge switches to; nothing else is ever passed to `SET ROLE`.
const ROLES: [&str; 3] = ["anon", "authenticated", "project_admin"];

#[derive(Debug, Clone)]
pub struct InsforgeStandInOptions {
    /// A superuser (or any role that may `SET ROLE` to the three API roles) URL of the database to serve.
    pub database_url: String,
    /// The project JWT secret user tokens are verified with.
    pub jwt_secret: StandInSecret,
    /// The opaque anon key (`anon_…`): requests bearing it run as `anon`.
    pub anon_key: String,
    /// The admin API key (`ik_…`): requests bearing it run as `project_admin`.
    pub admin_key: String,
    pub bind: SocketAddr,
}

impl InsforgeStandInOptions {
    /// Options with freshly generated `anon_…` and `ik_…` keys, bound to a free port on 127.0.0.1.
    pub fn new(database_url: impl Into<String>, jwt_secret: StandInSecret) -> Self {
        InsforgeStandInOptions {
            database_url: database_url.into(),
            jwt_secret,
            anon_key: format!("anon_{}", uuid::Uuid::new_v4().simple()),
            admin_key: format!("ik_{}", uuid::Uuid::new_v4().simple()),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InsforgeStandInError {
    #[error("the InsForge stand-in cannot connect to its database: {0}")]
    Database(String),
    #[error("the InsForge stand-in cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the InsForge stand-in's URL cannot be formed: {0}")]
    Url(String),
}

/// A running stand-in. Stops when dropped or on [`InsforgeStandIn::shutdown`].
#[derive(Debug)]
pub struct InsforgeStandIn {
    url: Url,
    state: Arc<InsforgeStandInState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct InsforgeStandInState {
    pool: PgPool,
    jwt_key: DecodingKey,
    anon_key: String,
    admin_key: String,
    controls: InsforgeFaultControls,
}

impl std::fmt::Debug for InsforgeStandInState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsforgeStandInState").field("controls", &self.controls).finish_non_exhaustive()
    }
}

/// Test controls, shared with the running server.
#[derive(Debug, Default)]
struct InsforgeFaultControls {
    /// How many more records requests to fail, and with which status.
    failures: Mutex<Option<(usize, StatusCode)>>,
    latency: Mutex<Duration>,
    /// How long a write waits for its answer *after* it was handled (and its transaction committed).
    response_latency: Mutex<Duration>,
    /// How long the next write waits *before* it is handled (once).
    next_write_delay: Mutex<Duration>,
    recurring: Mutex<RecurringFaults>,
    records_requests: AtomicUsize,
    /// The next write (POST, PATCH, DELETE) is handled twice and answered with the second outcome.
    send_next_write_twice: std::sync::atomic::AtomicBool,
    /// The next write is handled (and committed) and then answered as a connection lost on its way back.
    lose_next_write_answer: std::sync::atomic::AtomicBool,
    handled_twice: AtomicUsize,
}

/// Faults that recur for as long as they are set, for soak tests: a fixed share of records requests fails or
/// hangs, chosen by the request's number, so a run is the same every time. The two never hit the same request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecurringFaults {
    /// Every n-th records request (n, 2n, …) is answered with this status, touching nothing (10 → 10%).
    pub fail_every: Option<(usize, u16)>,
    /// Every n-th records request (1, n + 1, 2n + 1, …) is held this long before it is handled; a client that gave
    /// up by then has closed the connection, and the request is dropped unhandled (100 → 1%).
    pub hang_every: Option<(usize, Duration)>,
}

/// What [`RecurringFaults`] does to the records request numbered `n` (from 1).
enum Fault {
    Fail(StatusCode),
    Hang(Duration),
}

impl RecurringFaults {
    fn for_request(&self, n: usize) -> Option<Fault> {
        if let Some((every, hang)) = self.hang_every
            && every > 0
            && n % every == 1 % every
        {
            return Some(Fault::Hang(hang));
        }
        match self.fail_every {
            Some((every, status)) if every > 0 && n.is_multiple_of(every) => {
                Some(Fault::Fail(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)))
            }
            _ => None,
        }
    }
}

impl InsforgeStandIn {
    pub async fn start(options: InsforgeStandInOptions) -> Result<InsforgeStandIn, InsforgeStandInError> {
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&options.database_url)
            .await
            .map_err(|e| InsforgeStandInError::Database(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| InsforgeStandInError::Bind { addr: options.bind, source })?;
        let addr = listener.local_addr().map_err(|source| InsforgeStandInError::Bind { addr: options.bind, source })?;
        let url = Url::parse(&format!("http://{addr}/")).map_err(|e| InsforgeStandInError::Url(e.to_string()))?;

        let state = Arc::new(InsforgeStandInState {
            pool,
            jwt_key: DecodingKey::from_secret(options.jwt_secret.expose().as_bytes()),
            anon_key: options.anon_key,
            admin_key: options.admin_key,
            controls: InsforgeFaultControls::default(),
        });
        let app = Router::new()
            .route("/api/health", get(health))
            .route("/api/database/records/{table}", any(records))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), latency))
            .with_state(state.clone());

        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::error!(%error, "the InsForge stand-in stopped with an error");
            }
        });
        Ok(InsforgeStandIn { url, state, shutdown: Some(shutdown), task: Some(task) })
    }

    /// The base URL to use as `INSFORGE_URL`, e.g. `http://127.0.0.1:41234/`.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    pub fn anon_key(&self) -> &str {
        &self.state.anon_key
    }

    pub fn admin_key(&self) -> &str {
        &self.state.admin_key
    }

    /// Answers the next `n` records requests with `status` and an InsForge-shaped error body, touching nothing. The
    /// body's message is a refused connection to PostgREST, what InsForge says when nothing reached the database.
    /// A status that is not a valid HTTP status becomes 500.
    pub fn fail_next(&self, n: usize, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        *lock(&self.state.controls.failures) = (n > 0).then_some((n, status));
    }

    /// Makes a share of all records requests fail or hang from now on (see [`RecurringFaults`]); the default value
    /// turns it off.
    pub fn set_recurring_faults(&self, faults: RecurringFaults) {
        *lock(&self.state.controls.recurring) = faults;
    }

    /// Sleeps this long before handling each request (to make clients time out). `Duration::ZERO` turns it off.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.state.controls.latency) = latency;
    }

    /// Handles each write (POST, PATCH, DELETE), commits it, and only then waits this long before answering: InsForge
    /// slow to answer but not to write. Reads answer at once, so a client that reads before it writes gets to the write. A client that gives up meanwhile does not undo the write, just as InsForge (Node) and
    /// PostgREST go on with a request whose client has gone. `Duration::ZERO` turns it off.
    pub fn set_response_latency(&self, latency: Duration) {
        *lock(&self.state.controls.response_latency) = latency;
    }

    /// Holds the next write (POST, PATCH, DELETE) this long, then handles it: a write that reaches PostgreSQL after
    /// its client has given up waiting, and still happens. Once.
    pub fn delay_next_write(&self, delay: Duration) {
        *lock(&self.state.controls.next_write_delay) = delay;
    }

    /// Handles the next write twice and answers with the second outcome, as InsForge does when its reused
    /// connection to PostgREST was reset after the first attempt went through (`isStaleSocketReset`, any method).
    pub fn send_next_write_twice(&self) {
        self.state.controls.send_next_write_twice.store(true, Ordering::SeqCst);
    }

    /// Handles the next write, commits it, and then answers InsForge's 500 for a connection to PostgREST that broke
    /// (`{"error":"INTERNAL_ERROR","message":"socket hang up","statusCode":500}`): the write happened, but its
    /// answer was lost between PostgREST and InsForge, which does not retry a write then (`postgrest-proxy.service.ts`;
    /// a reset on a reused connection is [`Self::send_next_write_twice`]).
    pub fn lose_next_write_answer(&self) {
        self.state.controls.lose_next_write_answer.store(true, Ordering::SeqCst);
    }

    /// How many writes were handled twice ([`Self::send_next_write_twice`]).
    pub fn records_requests_handled_twice(&self) -> usize {
        self.state.controls.handled_twice.load(Ordering::SeqCst)
    }

    /// How many requests reached the records API so far (including refused and failed ones).
    pub fn records_requests(&self) -> usize {
        self.state.controls.records_requests.load(Ordering::SeqCst)
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.pool.close().await;
    }
}

impl Drop for InsforgeStandIn {
    fn drop(&mut self) {
        // Dropping means "gone now": no graceful wait for requests that may be sleeping on purpose.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn latency(State(state): State<Arc<InsforgeStandInState>>, request: Request, next: Next) -> Response {
    let delay = *lock(&state.controls.latency);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

/// InsForge's `GET /api/health`: a constant answer from the Node process, which touches neither PostgREST nor the
/// database (InsForge `backend/src/server.ts`), so a client cannot learn from it whether records can be served.
async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok", "version": "2.3.1", "service": "Insforge OSS Backend" })).into_response()
}

async fn not_found() -> Response {
    RecordsApiError::insforge(StatusCode::NOT_FOUND, "NOT_FOUND", "Route not found", "Check the API path.")
        .into_response()
}

/// Who the request runs as, and the claims PostgreSQL sees.
struct Caller {
    role: &'static str,
    claims: String,
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: Option<serde_json::Value>,
    email: Option<String>,
    role: Option<String>,
    /// `Some` whenever the claim is present, even as `null` (which Node's `jsonwebtoken` refuses).
    #[serde(default, deserialize_with = "present")]
    exp: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// `exp` and `nbf` as Node's `jsonwebtoken` 9 checks them in `jwt.verify` (`verify.js`), with no
/// `clockTolerance` (InsForge passes none, InsForge v2.3.1 `backend/src/infra/security/token.manager.ts`): each
/// is optional, but when present it must be a number; the token is refused from the second `exp` names
/// (`now >= exp`) and before the second `nbf` names (`nbf > now`). `now` is whole seconds, as
/// `Math.floor(Date.now() / 1000)`.
fn token_times_are_valid(claims: &TokenClaims, now: u64) -> bool {
    let now = now as f64;
    // `None`: absent; `Some(None)`: present but not a number.
    let number = |claim: &Option<serde_json::Value>| claim.as_ref().map(serde_json::Value::as_f64);
    let exp_ok = match number(&claims.exp) {
        None => true,
        Some(exp) => exp.is_some_and(|exp| now < exp),
    };
    let nbf_ok = match number(&claims.nbf) {
        None => true,
        Some(nbf) => nbf.is_some_and(|nbf| nbf <= now),
    };
    exp_ok && nbf_ok
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// InsForge's rules: the anon key → anon; an `ik_` key → project_admin if it is the admin key; anything else
/// must be an HS256 JWT signed with the project secret, with a `sub`, and a `role` (default authenticated) among
/// the three. `aud` and `iss` are not checked.
fn authenticate(state: &InsforgeStandInState, headers: &HeaderMap) -> Result<Caller, RecordsApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        // Exactly `Bearer <token>`, as InsForge's `auth.ts` reads it: no other spelling, nothing trimmed.
        .and_then(|value| value.strip_prefix("Bearer "))
        .filter(|token| !token.is_empty())
        .ok_or_else(RecordsApiError::no_token)?;

    if constant_time_eq(token, &state.anon_key) {
        return Ok(Caller { role: "anon", claims: serde_json::json!({ "role": "anon" }).to_string() });
    }
    if token.starts_with("ik_") {
        if constant_time_eq(token, &state.admin_key) {
            return Ok(Caller {
                role: "project_admin",
                claims: serde_json::json!({ "role": "project_admin" }).to_string(),
            });
        }
        return Err(RecordsApiError::invalid_api_key());
    }

    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    // The Rust crate accepts a token during the second its `exp` names and ignores `nbf` by default; both are
    // checked below as InsForge's Node `jsonwebtoken` checks them.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<TokenClaims>(token, &state.jwt_key, &validation)
        .map_err(|_| RecordsApiError::invalid_token("Invalid token"))?
        .claims;
    if !token_times_are_valid(&claims, unix_now()) {
        return Err(RecordsApiError::invalid_token("Invalid token"));
    }
    let sub = match claims.sub {
        Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub,
        _ => return Err(RecordsApiError::invalid_token("Invalid token subject")),
    };
    let requested = claims.role.unwrap_or_else(|| "authenticated".to_owned());
    let role = ROLES.into_iter().find(|r| *r == requested).ok_or_else(RecordsApiError::invalid_role)?;
    if role != "authenticated" {
        // InsForge forwards an `anon` or `project_admin` token down its anon or admin path, whose internal token
        // carries the role alone: no `sub`, no `email`.
        return Ok(Caller { role, claims: serde_json::json!({ "role": role }).to_string() });
    }
    // A user's request reaches PostgREST under a token InsForge signs itself, valid five minutes: PostgreSQL sees
    // its `sub`, `email` and `role`, and the `iat` and `exp` it was signed with.
    let iat = unix_now();
    let mut jwt_claims = serde_json::Map::new();
    jwt_claims.insert("sub".to_owned(), sub.into());
    if let Some(email) = claims.email {
        jwt_claims.insert("email".to_owned(), email.into());
    }
    jwt_claims.insert("role".to_owned(), role.into());
    jwt_claims.insert("iat".to_owned(), iat.into());
    jwt_claims.insert("exp".to_owned(), (iat + 300).into());
    Ok(Caller { role, claims: serde_json::Value::Object(jwt_claims).to_string() })
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// How much of the affected rows the client wants back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Return {
    Representation,
    Minimal,
}

fn return_preference(headers: &HeaderMap) -> Return {
    let representation = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "return=representation");
    if representation { Return::Representation } else { Return::Minimal }
}

async fn records(
    State(state): State<Arc<InsforgeStandInState>>,
    Path(table): Path<String>,
    method: Method,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let number = state.controls.records_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let recurring = lock(&state.controls.recurring).for_request(number);
    match recurring {
        Some(Fault::Fail(status)) => return RecordsApiError::injected(status).into_response(),
        // Held before it is handled: a client that gives up meanwhile leaves it never handled.
        Some(Fault::Hang(hang)) => tokio::time::sleep(hang).await,
        None => {}
    }
    {
        let mut failures = lock(&state.controls.failures);
        if let Some((remaining, status)) = *failures {
            *failures = (remaining > 1).then_some((remaining - 1, status));
            return RecordsApiError::injected(status).into_response();
        }
    }
    // Once handling starts, it finishes: InsForge (Node) and PostgREST go on with a request whose client has gone
    // (PostgREST issues #699 and #2352: the query of a cancelled request runs on and commits; docs/insforge.md §3.2).
    // hyper drops a handler's future when its client disconnects, which would roll back a write still in progress
    // (on a slow machine, one a patient test expected to land), so the rest runs on a task of its own.
    tokio::spawn(handle_and_answer(state, table, method, raw_query, headers, body))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn handle_and_answer(
    state: Arc<InsforgeStandInState>,
    table: String,
    method: Method,
    raw_query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET {
        let delay = std::mem::take(&mut *lock(&state.controls.next_write_delay));
        tokio::time::sleep(delay).await;
    }
    let handled = handle_records(&state, &table, &method, raw_query.as_deref(), &headers, &body).await;
    let handled = if method != Method::GET && state.controls.send_next_write_twice.swap(false, Ordering::SeqCst) {
        // InsForge's proxy (`postgrest-proxy.service.ts`) sends a request again, whatever its method, when the
        // kept-alive connection to PostgREST was reset: the first attempt may have been applied, and the caller
        // only ever hears the second.
        state.controls.handled_twice.fetch_add(1, Ordering::SeqCst);
        handle_records(&state, &table, &method, raw_query.as_deref(), &headers, &body).await
    } else {
        handled
    };
    let delay = *lock(&state.controls.response_latency);
    if method != Method::GET && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if method != Method::GET && state.controls.lose_next_write_answer.swap(false, Ordering::SeqCst) {
        return RecordsApiError::connection_lost().into_response();
    }
    match handled {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle_records(
    state: &InsforgeStandInState,
    table_name: &str,
    method: &Method,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, RecordsApiError> {
    // Express parses the body before any route runs, so a malformed one is refused even without a token.
    let body = body::parse(headers, body)?;
    let caller = authenticate(state, headers)?;
    // InsForge's own check (`IDENTIFIER_REGEX`), after authentication and before PostgREST sees the name.
    if table_name.chars().any(|c| c == '"' || c.is_control()) {
        return Err(RecordsApiError::invalid_table_name());
    }
    let operation = match *method {
        Method::GET => Operation::Read,
        Method::POST => Operation::Insert,
        Method::PATCH => Operation::Update,
        Method::DELETE => Operation::Delete,
        _ => {
            return Err(RecordsApiError::postgrest(
                StatusCode::METHOD_NOT_ALLOWED,
                "PGRST117",
                format!("Unsupported HTTP method: {method}"),
                None,
            ));
        }
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let anon = caller.role == "anon";
    let db_error = |e: sqlx::Error| RecordsApiError::database(&e, anon);

    // PostgREST runs a read in a READ ONLY transaction and a write in a READ WRITE one, both READ COMMITTED
    // (PostgREST v12.2.12 `src/PostgREST/Plan.hs`: `SQL.Read` for a read plan, `SQL.Write` for a mutation; hasql
    // begins with `BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY`). A policy, view or function that writes during
    // a GET therefore fails with 25006, answered as 405.
    let begin = match operation {
        Operation::Read => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        _ => "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE",
    };
    let mut tx = state.pool.begin_with(begin).await.map_err(db_error)?;
    // PostgREST's first statement in every request's transaction sets `search_path` to the request's schema
    // followed by `db-extra-search-path` (default `public`): `"public", "public"` here (PostgREST v12.2.12
    // `src/PostgREST/Query.hs`, `setPgLocals`), so unqualified names resolve as in production, whatever the
    // connection's default (`"$user", public`, where `$user` would become the API role).
    sqlx::query("SELECT set_config('search_path', '\"public\", \"public\"', true)")
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let table = load_table(&mut tx, table_name).await.map_err(db_error)?.ok_or_else(RecordsApiError::unknown_table)?;
    let params = QueryParams::parse(&table, &pairs, operation)?;
    let statement = match operation {
        Operation::Read => Some(query::select_statement(&table, &params)?),
        Operation::Insert => {
            let body = InsertBody::parse(&table, &body)?;
            (!body.is_empty()).then(|| query::insert_statement(&table, &body, &params))
        }
        Operation::Update => {
            let body = UpdateBody::parse(&table, &body)?;
            if body.is_empty() { None } else { Some(query::update_statement(&table, &body, &params)?) }
        }
        Operation::Delete => Some(query::delete_statement(&table, &params)?),
    };

    // The role is one of ROLES (a constant), so formatting it is safe; `SET ROLE` cannot take a parameter.
    let set_role = format!("SET LOCAL ROLE {}", query::quote_ident(caller.role));
    sqlx::query(sqlx::AssertSqlSafe(set_role)).execute(&mut *tx).await.map_err(db_error)?;
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(&caller.claims)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;

    let rows = match statement {
        Some(statement) => run(&mut tx, statement).await.map_err(db_error)?,
        None => Vec::new(),
    };
    tx.commit().await.map_err(db_error)?;

    // PostgREST's Content-Range: a read's rows from its offset; an update's from 0; an insert's or a delete's never a
    // range (`*/*`: it builds theirs from an empty range, `contentRangeH 1 0`, Response.hs).
    let offset = match operation {
        Operation::Read => pairs.iter().rev().find(|(k, _)| k == "offset").and_then(|(_, v)| v.parse().ok()),
        Operation::Update => Some(0),
        Operation::Insert | Operation::Delete => None,
    };
    Ok(respond(operation, return_preference(headers), &rows, offset))
}

/// Reads the table's columns from the catalog; `None` when `public` has no such table or view.
async fn load_table(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<Option<Table>, sqlx::Error> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(name)
    .fetch_all(&mut **tx)
    .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    Ok(Some(Table {
        name: name.to_owned(),
        columns: columns.into_iter().map(|(name, sql_type)| Column { name, sql_type }).collect(),
    }))
}

async fn run(tx: &mut Transaction<'_, Postgres>, statement: Statement) -> Result<Vec<String>, sqlx::Error> {
    // The SQL names only catalog-checked identifiers (quoted) and placeholders; see `query`.
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(statement.sql));
    for param in statement.params {
        query = match param {
            Param::Text(text) => query.bind(text),
            Param::TextArray(items) => query.bind(items),
            Param::Int(n) => query.bind(n),
        };
    }
    query.fetch_all(&mut **tx).await
}

fn respond(operation: Operation, preference: Return, rows: &[String], offset: Option<u64>) -> Response {
    let body = format!("[{}]", rows.join(","));
    let range = match (rows.len(), offset) {
        (0, _) | (_, None) => "*/*".to_owned(),
        (n, Some(first)) => format!("{first}-{}/*", first + n as u64 - 1),
    };
    let (status, body, applied) = match (operation, preference) {
        (Operation::Read, _) => (StatusCode::OK, Some(body), false),
        (Operation::Insert, Return::Representation) => (StatusCode::CREATED, Some(body), true),
        // InsForge turns PostgREST's empty 201 into `[]`.
        (Operation::Insert, Return::Minimal) => (StatusCode::CREATED, Some("[]".to_owned()), false),
        (_, Return::Representation) => (StatusCode::OK, Some(body), true),
        (_, Return::Minimal) => (StatusCode::NO_CONTENT, None, false),
    };
    let mut response = match body {
        Some(body) => (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response(),
        None => status.into_response(),
    };
    if let Ok(range) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(header::CONTENT_RANGE, range);
    }
    if applied {
        response.headers_mut().insert("preference-applied", HeaderValue::from_static("return=representation"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: serde_json::Value) -> TokenClaims {
        serde_json::from_value(value).expect("claims")
    }

    #[test]
    fn exp_and_nbf_are_checked_as_node_jsonwebtoken_checks_them() {
        let now = 1_800_000_000;
        for (token, valid) in [
            (serde_json::json!({}), true),
            (serde_json::json!({ "exp": now + 1 }), true),
            // No leeway: refused from the very second `exp` names.
            (serde_json::json!({ "exp": now }), false),
            (serde_json::json!({ "exp": now - 1 }), false),
            (serde_json::json!({ "exp": now as f64 + 0.5 }), true),
            (serde_json::json!({ "nbf": now }), true),
            (serde_json::json!({ "nbf": now - 1, "exp": now + 1 }), true),
            (serde_json::json!({ "nbf": now + 1 }), false),
            (serde_json::json!({ "nbf": now as f64 + 0.5 }), false),
            // Present, but not numbers.
            (serde_json::json!({ "exp": null }), false),
            (serde_json::json!({ "exp": (now + 60).to_string() }), false),
            (serde_json::json!({ "nbf": null }), false),
            (serde_json::json!({ "nbf": "yesterday" }), false),
        ] {
            assert_eq!(token_times_are_valid(&claims(token.clone()), now), valid, "{token}");
        }
    }
}
