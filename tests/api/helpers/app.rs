//! `spawn_app()`: the real application on a free port, wired to the WorkOS and InsForge stand-ins over a fresh,
//! migrated PostgreSQL database. Each test gets its own app, stand-ins and database.

use std::net::SocketAddr;
use std::time::Duration;

use authbridge::config::{Config, Secret};
use authbridge::local::insforge::{InsforgeStandIn, InsforgeStandInOptions};
use authbridge::local::workos::{WorkosStandIn, WorkosStandInOptions};
use authbridge::startup::Application;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::TestDb;
use super::browser::{ApiClient, Browser};

pub const COOKIE_PASSWORD: &str = "test-cookie-password-0123456789-abcdefghij";
pub const PREVIOUS_COOKIE_PASSWORD: &str = "old-cookie-password-0123456789-abcdefghijk";
pub const ALICE: &str = "alice@acme.test";
pub const BOB: &str = "bob@acme.test";

/// Knobs a test may turn before the app starts.
pub struct AppOptions {
    pub workos: WorkosStandInOptions,
    pub cookie_password: String,
    pub previous_cookie_password: Option<String>,
    pub insforge_request_timeout: Duration,
    pub workos_request_timeout: Duration,
    pub request_timeout: Duration,
    /// Points the app at this InsForge URL instead of the stand-in (e.g. a closed port).
    pub insforge_url: Option<Url>,
    /// The app's public origin, when it differs from where the test reaches it (to test https behaviour).
    pub app_url: Option<Url>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            workos: WorkosStandInOptions::default(),
            cookie_password: COOKIE_PASSWORD.to_owned(),
            previous_cookie_password: None,
            insforge_request_timeout: Duration::from_secs(5),
            workos_request_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            insforge_url: None,
            app_url: None,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: Url,
    pub config: Config,
    pub workos: WorkosStandIn,
    pub insforge: InsforgeStandIn,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    super::logs::capture();
    let db = TestDb::new().await;
    let jwt_secret = Secret::new(format!("test-insforge-secret-{}", uuid::Uuid::new_v4()));
    let insforge = InsforgeStandIn::start(InsforgeStandInOptions::new(db.url.clone(), jwt_secret.clone()))
        .await
        .expect("InsForge stand-in starts");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    let base_url = Url::parse(&format!("http://{addr}/")).expect("base url");
    let redirect_uri = base_url.join("/callback").expect("redirect uri");

    let mut workos_options = options.workos;
    workos_options.redirect_uris = vec![redirect_uri.clone()];
    let workos = WorkosStandIn::start(workos_options).await.expect("WorkOS stand-in starts");

    let mut config = authbridge::local::app_config(
        addr,
        options.app_url.unwrap_or_else(|| base_url.clone()),
        &insforge,
        jwt_secret,
        &workos,
        Secret::new(options.cookie_password),
    )
    .expect("a local configuration");
    // The public origin may differ from where the test reaches the app; the callback stays on the test's address.
    config.workos.redirect_uri = redirect_uri;
    config.server.request_timeout = options.request_timeout;
    config.insforge.request_timeout = options.insforge_request_timeout;
    config.workos.request_timeout = options.workos_request_timeout;
    config.session.previous_cookie_password = options.previous_cookie_password.map(Secret::new);
    if let Some(url) = options.insforge_url {
        config.insforge.url = url;
    }

    let app = Application::build_with_listener(config.clone(), listener).expect("application builds");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    TestApp { addr, base_url, config, workos, insforge, db, shutdown: Some(shutdown), server: Some(server) }
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

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
