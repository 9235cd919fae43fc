//! `spawn_app()`: the real application on a free port, wired to the WorkOS and InsForge stand-ins over a fresh,
//! migrated PostgreSQL database. Each test gets its own app, stand-ins and database.
//!
//! The app is configured as an operator would configure it: environment variables, read by
//! `Config::from_lookup`. A test changes the configuration by setting variables ([`AppOptions::var`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use authbridge::config::Config;
use authbridge::session::Session;
use authbridge::startup::Application;
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions};
use standins::workos_standin::{WorkosStandIn, WorkosStandInOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::TestDb;
use super::browser::{ApiClient, Browser};
use super::proxy::TcpProxy;

pub const COOKIE_PASSWORD: &str = "test-cookie-password-0123456789-abcdefghij";
pub const PREVIOUS_COOKIE_PASSWORD: &str = "old-cookie-password-0123456789-abcdefghijk";
pub const ALICE: &str = "alice@acme.test";
pub const BOB: &str = "bob@acme.test";

/// Variables every test app starts with, beyond those naming the stand-ins: upstream and request time limits
/// shorter than production's, so a test that hangs by mistake fails sooner.
const TEST_DEFAULTS: [(&str, &str); 4] = [
    ("WORKOS_COOKIE_PASSWORD", COOKIE_PASSWORD),
    ("WORKOS_REQUEST_TIMEOUT_MS", "5000"),
    ("INSFORGE_REQUEST_TIMEOUT_MS", "5000"),
    ("REQUEST_TIMEOUT_SECONDS", "20"),
];

/// The webhook secret of test apps with the lifecycle on.
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
pub const PREVIOUS_WEBHOOK_SECRET: &str = "whsec_previous_0123456789abcdef";

/// Knobs a test may turn before the app starts.
#[derive(Default)]
pub struct AppOptions {
    pub workos: WorkosStandInOptions,
    /// Environment variables set after the ones `spawn_app` derives, so they win: shorter timeouts,
    /// `WORKOS_COOKIE_PASSWORD_PREVIOUS`, an `INSFORGE_URL` where nothing listens, an https `APP_URL`…
    pub env: Vec<(&'static str, String)>,
    /// The enterprise lifecycle, when the test wants it (off by default: without `DATABASE_URL` the app must run
    /// exactly as it did before the lifecycle existed, and every other test proves it).
    pub lifecycle: Option<LifecycleOptions>,
}

/// How a test app runs the lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleOptions {
    /// Register the app's `/webhooks/workos` with the WorkOS stand-in, so its changes are pushed.
    pub webhooks_from_standin: bool,
    /// `WORKOS_EVENTS_POLL_SECONDS`: 0 (the default here) leaves the consumer to the test.
    pub poll_seconds: u64,
    /// Reach the database through a proxy the test can cut, to stage an outage.
    pub through_proxy: bool,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self { webhooks_from_standin: true, poll_seconds: 0, through_proxy: false }
    }
}

impl AppOptions {
    /// Sets the environment variable `name` for the app.
    pub fn var(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    /// The lifecycle on: `DATABASE_URL` (the test's database), `WORKOS_WEBHOOK_SECRET`, webhooks from the
    /// stand-in, no consumer.
    pub fn lifecycle(self) -> Self {
        self.lifecycle_with(LifecycleOptions::default())
    }

    pub fn lifecycle_with(mut self, lifecycle: LifecycleOptions) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when the test set `METRICS_BIND_ADDR`.
    pub metrics_addr: Option<SocketAddr>,
    pub base_url: Url,
    pub config: Config,
    pub workos: WorkosStandIn,
    pub insforge: InsforgeStandIn,
    pub db: TestDb,
    /// The proxy between the app and its database, when the test asked for one.
    pub db_proxy: Option<TcpProxy>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    super::logs::capture();
    let db = TestDb::new().await;
    let jwt_secret = format!("test-insforge-secret-{}", uuid::Uuid::new_v4());
    let insforge =
        InsforgeStandIn::start(InsforgeStandInOptions::new(db.url.clone(), StandInSecret::new(jwt_secret.clone())))
            .await
            .expect("InsForge stand-in starts");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    let base_url = Url::parse(&format!("http://{addr}/")).expect("base url");
    // The callback is on the test's address even when a test sets another public origin (APP_URL).
    let redirect_uri = base_url.join("/callback").expect("redirect uri");

    let mut workos_options = options.workos;
    workos_options.redirect_uris = vec![redirect_uri.clone()];
    let workos = WorkosStandIn::start(workos_options).await.expect("WorkOS stand-in starts");

    let mut env: HashMap<&str, String> = HashMap::from([
        ("BIND_ADDR", addr.to_string()),
        ("WORKOS_API_KEY", workos.api_key().expose().to_owned()),
        ("WORKOS_CLIENT_ID", workos.client_id().to_owned()),
        ("WORKOS_REDIRECT_URI", redirect_uri.to_string()),
        ("WORKOS_API_BASE_URL", workos.base_url().to_string()),
        ("INSFORGE_URL", insforge.url().to_string()),
        ("INSFORGE_JWT_SECRET", jwt_secret),
    ]);
    env.extend(TEST_DEFAULTS.map(|(name, value)| (name, value.to_owned())));
    let mut db_proxy = None;
    if let Some(lifecycle) = options.lifecycle {
        let (database_url, proxy) = TcpProxy::database_url(&db.url, lifecycle.through_proxy).await;
        db_proxy = proxy;
        env.insert("DATABASE_URL", database_url);
        env.insert("WORKOS_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned());
        env.insert("WORKOS_EVENTS_POLL_SECONDS", lifecycle.poll_seconds.to_string());
        if lifecycle.webhooks_from_standin {
            let endpoint = base_url.join("/webhooks/workos").expect("webhook URL");
            workos.register_webhook_endpoint(endpoint, StandInSecret::new(WEBHOOK_SECRET));
        }
    }
    env.extend(options.env);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("the test app's configuration is valid");

    let app = Application::build_with_listener(config.clone(), listener).expect("application builds");
    let metrics_addr = app.metrics_addr();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    TestApp {
        addr,
        metrics_addr,
        base_url,
        config,
        workos,
        insforge,
        db,
        db_proxy,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// A browser with its own cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(self.base_url.clone())
    }

    /// A signed-in browser.
    pub async fn signed_in(&self, email: &str) -> Browser {
        let browser = self.browser();
        let response = browser.sign_in(email).await;
        assert_eq!(response.status, 302, "sign-in ends with a redirect into the app: {}", response.body);
        browser
    }

    /// An API client holding a bearer token for `email`'s user, as a SPA or CLI would after signing in.
    pub fn bearer_client(&self, token: impl Into<String>) -> ApiClient {
        ApiClient::new(self.base_url.clone(), Some(token.into()))
    }

    pub fn user_id(&self, email: &str) -> String {
        self.workos.users().into_iter().find(|user| user.email == email).map(|user| user.id).expect("seeded user")
    }

    /// Another replica of the app: the same configuration (cookie passwords, upstreams) on its own port, as a
    /// second process behind a load balancer would be. It stops when the returned handle is dropped.
    pub async fn replica(&self) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let app = Application::build_with_listener(self.config.clone(), listener).expect("the replica builds");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Replica { base_url: Url::parse(&format!("http://{addr}/")).expect("base url"), _shutdown: shutdown }
    }

    /// Waits for the server to stop by itself (a misconfiguration it found), at most `within`.
    pub async fn stopped_within(&mut self, within: std::time::Duration) -> Option<std::io::Result<()>> {
        super::stopped_within(&mut self.server, within).await
    }

    /// Stops accepting connections and waits for in-flight requests, as SIGTERM does.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task does not panic"),
            None => Ok(()),
        }
    }

    /// Rows in `todos`, read as the database owner (bypassing RLS): the ground truth of what was written.
    pub async fn all_todos(&self) -> Vec<(String, String)> {
        let pool = sqlx::PgPool::connect(&self.db.url).await.expect("connect as owner");
        let rows: Vec<(String, String)> =
            sqlx::query_as("select user_id, title from public.todos order by created_at, title")
                .fetch_all(&pool)
                .await
                .expect("read todos");
        pool.close().await;
        rows
    }
}

/// `requests` parallel `GET /api/me` with copies of `browser`'s cookies, spread evenly over the app at `app_url` and
/// `replicas`: every one must be answered 200 (nobody signed out). The sessions they end up with, in no order.
pub async fn me_everywhere(app_url: &Url, replicas: &[Replica], browser: &Browser, requests: usize) -> Vec<Session> {
    let mut running = tokio::task::JoinSet::new();
    for i in 0..requests {
        let copy = match i % (replicas.len() + 1) {
            0 => {
                let copy = Browser::new(app_url.clone());
                copy.copy_cookies_from(browser);
                copy
            }
            n => replicas[n - 1].browser_like(browser),
        };
        running.spawn(async move {
            let me = copy.api(reqwest::Method::GET, "/api/me", None).await;
            (me.status, me.body.clone(), copy)
        });
    }
    let mut sessions = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (status, body, copy) = joined.expect("the request task");
        assert_eq!(status, 200, "nobody is signed out: {body}");
        sessions.push(super::session::read_session(&copy));
    }
    sessions
}

pub struct Replica {
    pub base_url: Url,
    _shutdown: oneshot::Sender<()>,
}

impl Replica {
    pub fn new(base_url: Url, shutdown: oneshot::Sender<()>) -> Self {
        Self { base_url, _shutdown: shutdown }
    }

    /// A browser talking to this replica, holding a copy of `other`'s cookies.
    pub fn browser_like(&self, other: &Browser) -> Browser {
        let browser = Browser::new(self.base_url.clone());
        browser.copy_cookies_from(other);
        browser
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
