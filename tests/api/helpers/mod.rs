//! Fixtures shared by every feature file: one throwaway PostgreSQL cluster per test binary, a fresh migrated
//! database per test, and the InsForge stand-in with a client and two users in front of it.
//!
//! The cluster lives in a `static`. Each `#[tokio::test]` has its own runtime that dies with the test, so the
//! cluster is started on a dedicated thread with a runtime of its own and holds nothing tied to any runtime
//! afterwards. Statics are never dropped: the cluster is stopped and its directory removed by its supervisor
//! when this process exits (see `standins::temp_postgres`).
//!
//! Configuration is read the way production reads it, through `Config::from_lookup` over a map of environment
//! variables, so the tests run with production's defaults and checks; a test that needs a shorter timeout sets the
//! variable for it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authbridge::config::{Config, InsforgeConfig};
use authbridge::identity::UserIdentity;
use authbridge::insforge::client::InsforgeClient;
use authbridge::insforge::minter::TokenMinter;
use reqwest::Method;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions};
use standins::temp_postgres::{PostgresOptions, TempPostgres, ThrowawayDatabase};
use url::Url;

pub mod app;
pub mod browser;
pub mod lifecycle;
pub mod logs;
pub mod oidc;
pub mod organizations;
pub mod proxy;
pub mod session;

/// The project JWT secret the stand-in verifies and the client signs with.
pub const JWT_SECRET: &str = "authbridge-test-secret-0123456789abcdef";

static CLUSTER: OnceLock<TempPostgres> = OnceLock::new();

/// The shared cluster, started on first use.
pub async fn cluster() -> &'static TempPostgres {
    tokio::task::spawn_blocking(|| {
        CLUSTER.get_or_init(|| {
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to start PostgreSQL on");
                runtime.block_on(TempPostgres::start(PostgresOptions::default()))
            })
            .join()
            .expect("the PostgreSQL starter thread does not panic")
            .unwrap_or_else(|error| panic!("cannot start the test PostgreSQL: {error}"))
        })
    })
    .await
    .expect("starting the shared cluster does not panic")
}

/// A fresh database of the shared cluster, named uniquely, migrated unless made with [`TestDb::empty`]. It is
/// dropped once the last clone of this value is gone, which is when its test ends (the test holds it, directly or in
/// its app, to the end).
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    _database: ThrowawayDatabase,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> TestDb {
        let db = TestDb::empty().await;
        authbridge::migrate::run(&db.url).await.expect("the migrations apply to a fresh database");
        db
    }

    /// A fresh database with nothing in it.
    pub async fn empty() -> TestDb {
        let database = cluster().await.create_throwaway_database().await.expect("a fresh test database");
        TestDb { name: database.name.clone(), url: database.url.clone(), _database: database }
    }

    /// A superuser connection (bypasses RLS: for arranging and inspecting, never for what is under test).
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("a superuser connection to the test database")
    }
}

/// User A: a WorkOS-style id.
pub fn user_a() -> UserIdentity {
    UserIdentity::new("user_01HAAAAAAAAAAAAAAAAAAAAAAA", Some("alice@example.com".to_owned()))
}

/// User B: an id full of characters that need care in URLs, JSON and SQL, and no email.
pub fn user_b() -> UserIdentity {
    UserIdentity::new(r#"auth0|b'o"b),(&%\ 🦀"#, None)
}

/// The InsForge part of a configuration read as production reads it: `INSFORGE_URL` is `url`,
/// `INSFORGE_JWT_SECRET` is [`JWT_SECRET`], and `overrides` sets or replaces any other variable (timeouts, another
/// secret). The WorkOS variables are placeholders: `Config` requires them, and nothing here uses them.
pub fn insforge_config(url: &Url, overrides: &[(&'static str, &str)]) -> InsforgeConfig {
    let mut env: HashMap<&str, String> = HashMap::from([
        ("INSFORGE_URL", url.to_string()),
        ("INSFORGE_JWT_SECRET", JWT_SECRET.to_owned()),
        ("WORKOS_API_KEY", "sk_test_unused".to_owned()),
        ("WORKOS_CLIENT_ID", "client_unused".to_owned()),
        ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
        ("WORKOS_COOKIE_PASSWORD", "unused-cookie-password-0123456789-abcdef".to_owned()),
    ]);
    env.extend(overrides.iter().map(|(name, value)| (*name, (*value).to_owned())));
    Config::from_lookup(|name| env.get(name).cloned()).expect("the test's InsForge configuration is valid").insforge
}

/// A migrated database, the stand-in serving it, and a client + minter pointed at the stand-in.
pub struct TestInsforge {
    pub db: TestDb,
    pub standin: InsforgeStandIn,
    pub config: InsforgeConfig,
    pub client: InsforgeClient,
    pub minter: TokenMinter,
    /// For requests the typed client cannot make (no token, other keys, hostile raw values).
    pub http: reqwest::Client,
}

/// A raw answer: status, headers, and the body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl RawResponse {
    pub fn rows(&self) -> &Vec<Value> {
        self.body.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestInsforge {
    pub async fn start() -> TestInsforge {
        let db = TestDb::new().await;
        let standin = InsforgeStandIn::start(InsforgeStandInOptions::new(&db.url, StandInSecret::new(JWT_SECRET)))
            .await
            .expect("the InsForge stand-in starts");
        let config = insforge_config(&standin.url(), &[]);
        let client = InsforgeClient::new(&config).expect("a client for the stand-in");
        let minter = TokenMinter::new(&config).expect("a minter with the test secret");
        TestInsforge { db, standin, config, client, minter, http: reqwest::Client::new() }
    }

    /// A client for the same stand-in configured with further variables (another secret, shorter timeouts).
    pub fn client_with(&self, overrides: &[(&'static str, &str)]) -> InsforgeClient {
        let config = insforge_config(&self.standin.url(), overrides);
        InsforgeClient::new(&config).expect("a client with the changed configuration")
    }

    pub fn token_for(&self, user: &UserIdentity) -> String {
        self.minter.mint(user).expect("a token for the test user")
    }

    pub fn admin_key(&self) -> String {
        self.standin.admin_key().to_owned()
    }

    pub fn anon_key(&self) -> String {
        self.standin.anon_key().to_owned()
    }

    pub fn records_url(&self, table: &str) -> Url {
        self.standin.url().join(&format!("api/database/records/{table}")).expect("records URL")
    }

    /// A request to the records API exactly as given: query pairs are percent-encoded, nothing else is checked.
    pub async fn raw(
        &self,
        method: Method,
        table: &str,
        query: &[(&str, &str)],
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> RawResponse {
        let mut request = self.http.request(method, self.records_url(table)).query(query);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("Prefer", "return=representation").json(&body);
        }
        let response = request.send().await.expect("the stand-in answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        RawResponse { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    /// Every todo row, whoever owns it, read through the admin key.
    pub async fn all_rows(&self) -> Vec<Value> {
        let admin = self.admin_key();
        let response = self.raw(Method::GET, "todos", &[("order", "created_at.asc")], Some(&admin), None).await;
        assert_eq!(response.status, 200, "the admin key reads the table: {response:?}");
        response.rows().clone()
    }
}

/// What the server at `addr` answers to `request`, sent as raw bytes on a connection of its own (HTTP the client
/// libraries would not send: no `Host`, headers past the limits), read until it closes or for 5 s.
pub async fn raw_answer(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the app accepts connections");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An address where nothing listens, and nothing will while the tests run: the port is bound but never listened
/// on, so a connection to it is refused at once, and it is kept bound until the test process exits. (A port
/// bound and then released could be handed straight to a stand-in or an app that another test starts.)
pub fn closed_port_url() -> Url {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a free port");
    let addr = socket.local_addr().expect("local addr");
    std::mem::forget(socket);
    Url::parse(&format!("http://{addr}/")).expect("url")
}

/// A tiny HTTP server that answers every request with the same canned response and counts them, for the
/// outcomes the stand-in cannot produce (odd bodies, 422, HTML error pages, a server that never answers).
pub struct CannedServer {
    pub url: Url,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
enum Canned {
    Fixed {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Puts the request's `Authorization` header into the error message (a badly behaved server).
    EchoAuthorization {
        status: u16,
    },
    Hang,
}

impl CannedServer {
    pub async fn json(status: u16, body: &str) -> CannedServer {
        Self::start(Canned::Fixed { status, content_type: "application/json", body: body.to_owned() }).await
    }

    pub async fn text(status: u16, content_type: &'static str, body: &str) -> CannedServer {
        Self::start(Canned::Fixed { status, content_type, body: body.to_owned() }).await
    }

    pub async fn echo_authorization(status: u16) -> CannedServer {
        Self::start(Canned::EchoAuthorization { status }).await
    }

    /// Accepts the connection and never answers.
    pub async fn hanging() -> CannedServer {
        Self::start(Canned::Hang).await
    }

    async fn start(canned: Canned) -> CannedServer {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let canned = canned.clone();
            let counter = counter.clone();
            async move {
                use axum::response::IntoResponse;
                counter.fetch_add(1, Ordering::SeqCst);
                let status = |code: u16| axum::http::StatusCode::from_u16(code).expect("a valid status");
                match canned {
                    Canned::Fixed { status: code, content_type, body } => {
                        (status(code), [(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
                    }
                    Canned::EchoAuthorization { status: code } => {
                        let auth = headers
                            .get(axum::http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = serde_json::json!({
                            "error": "AUTH_UNAUTHORIZED",
                            "message": format!("Invalid token: {auth}"),
                            "statusCode": code,
                        });
                        (status(code), axum::Json(body)).into_response()
                    }
                    Canned::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        status(200).into_response()
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
        let url = Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CannedServer { url, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits, at most `within`, for the server task in `server` to end by itself, and takes its result.
pub async fn stopped_within(
    server: &mut Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    within: std::time::Duration,
) -> Option<std::io::Result<()>> {
    let running = server.as_mut()?;
    match tokio::time::timeout(within, running).await {
        Ok(result) => {
            *server = None;
            Some(result.expect("the server task does not panic"))
        }
        Err(_) => None,
    }
}
