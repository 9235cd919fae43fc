//! `spawn_oidc_app()`: the real application configured for an OpenID Connect provider (`IDENTITY_PROVIDER=oidc`),
//! wired to the OIDC stand-in (shaped like an Auth0 tenant) and the InsForge stand-in over a fresh, migrated
//! PostgreSQL database. No WorkOS variable is set: with `oidc`, none is needed.
//!
//! By default the helper waits until `/readyz` says ready (discovery done), as an orchestrator would before sending
//! traffic; tests of start-up itself ask it not to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authbridge::config::Config;
use authbridge::session::Session;
use authbridge::startup::Application;
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions};
use standins::oidc_standin::{OidcStandIn, OidcStandInOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::TestDb;
use super::app::{COOKIE_PASSWORD, Replica};
use super::browser::{ApiClient, Browser};
use super::proxy::TcpProxy;
use super::session::{read_session, write_session};

/// Variables computed from the running stand-in.
pub type EnvFromStandIn = fn(&OidcStandIn) -> Vec<(&'static str, String)>;

pub struct OidcAppOptions {
    pub oidc: OidcStandInOptions,
    /// Set after the derived variables, so they win (or blank one out with "").
    pub env: Vec<(&'static str, String)>,
    pub wait_until_ready: bool,
    /// Discovery requests the stand-in fails (503) before the app starts.
    pub discovery_failures: usize,
    /// Variables that depend on the running stand-in (its issuer, say), set last.
    pub env_from_standin: Option<EnvFromStandIn>,
    /// `DATABASE_URL` set to the test's (migrated) database: sign-outs and refreshes shared between replicas.
    pub database: bool,
    /// The database reached through a proxy the test can cut ([`OidcApp::db_proxy`]).
    pub database_through_proxy: bool,
}

impl Default for OidcAppOptions {
    fn default() -> Self {
        Self {
            oidc: OidcStandInOptions::default(),
            env: Vec::new(),
            wait_until_ready: true,
            discovery_failures: 0,
            env_from_standin: None,
            database: false,
            database_through_proxy: false,
        }
    }
}

impl OidcAppOptions {
    pub fn var(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    /// With `DATABASE_URL`: the test's database.
    pub fn database(mut self) -> Self {
        self.database = true;
        self
    }

    /// With `DATABASE_URL`: the test's database, through a proxy the test can cut (an outage).
    pub fn database_through_proxy(mut self) -> Self {
        self.database = true;
        self.database_through_proxy = true;
        self
    }
}

pub struct OidcApp {
    pub base_url: Url,
    pub config: Config,
    pub oidc: OidcStandIn,
    pub insforge: InsforgeStandIn,
    pub db: TestDb,
    /// With [`OidcAppOptions::database_through_proxy`]: what stands between the app (and its replicas) and the
    /// database.
    pub db_proxy: Option<TcpProxy>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_oidc_app() -> OidcApp {
    spawn_oidc_app_with(OidcAppOptions::default()).await
}

pub async fn spawn_oidc_app_with(options: OidcAppOptions) -> OidcApp {
    super::logs::capture();
    let db = TestDb::new().await;
    let jwt_secret = format!("test-insforge-secret-{}", uuid::Uuid::new_v4());
    let insforge =
        InsforgeStandIn::start(InsforgeStandInOptions::new(db.url.clone(), StandInSecret::new(jwt_secret.clone())))
            .await
            .expect("InsForge stand-in starts");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let addr: SocketAddr = listener.local_addr().expect("local address");
    let base_url = Url::parse(&format!("http://{addr}/")).expect("base url");
    let redirect_uri = base_url.join("/callback").expect("redirect uri");

    let mut oidc_options = options.oidc;
    oidc_options.redirect_uris = vec![redirect_uri.clone()];
    let oidc = OidcStandIn::start(oidc_options).await.expect("OIDC stand-in starts");
    if options.discovery_failures > 0 {
        oidc.fail_next(standins::oidc_standin::Endpoint::Discovery, options.discovery_failures, 503);
    }

    let mut env: HashMap<&str, String> = HashMap::from([
        ("BIND_ADDR", addr.to_string()),
        ("IDENTITY_PROVIDER", "oidc".to_owned()),
        ("OIDC_ISSUER", oidc.issuer().to_string()),
        ("OIDC_CLIENT_ID", oidc.client_id().to_owned()),
        ("OIDC_CLIENT_SECRET", oidc.client_secret().expose().to_owned()),
        ("OIDC_REDIRECT_URI", redirect_uri.to_string()),
        ("OIDC_AUDIENCE", oidc.audience().to_owned()),
        ("SESSION_COOKIE_PASSWORD", COOKIE_PASSWORD.to_owned()),
        ("INSFORGE_URL", insforge.url().to_string()),
        ("INSFORGE_JWT_SECRET", jwt_secret),
        ("INSFORGE_REQUEST_TIMEOUT_MS", "5000".to_owned()),
        ("REQUEST_TIMEOUT_SECONDS", "20".to_owned()),
    ]);
    let mut db_proxy = None;
    if options.database {
        let (database_url, proxy) = TcpProxy::database_url(&db.url, options.database_through_proxy).await;
        db_proxy = proxy;
        env.insert("DATABASE_URL", database_url);
    }
    env.extend(options.env);
    if let Some(env_from_standin) = options.env_from_standin {
        env.extend(env_from_standin(&oidc));
    }
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("the test app's configuration is valid");

    let app = Application::build_with_listener(config.clone(), listener).expect("application builds");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let app =
        OidcApp { base_url, config, oidc, insforge, db, db_proxy, shutdown: Some(shutdown), server: Some(server) };
    if options.wait_until_ready {
        app.wait_until_ready(Duration::from_secs(10)).await;
    }
    app
}

impl OidcApp {
    pub fn browser(&self) -> Browser {
        Browser::new(self.base_url.clone())
    }

    pub async fn signed_in(&self, email: &str) -> Browser {
        let browser = self.browser();
        let response = browser.sign_in(email).await;
        assert_eq!(response.status, 302, "sign-in ends with a redirect into the app: {}", response.body);
        browser
    }

    pub fn bearer_client(&self, token: impl Into<String>) -> ApiClient {
        ApiClient::new(self.base_url.clone(), Some(token.into()))
    }

    /// The provider's `sub` for a seeded user.
    pub fn subject(&self, email: &str) -> String {
        self.oidc.users().into_iter().find(|user| user.email == email).map(|user| user.subject).expect("seeded user")
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_until_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let url = self.base_url.join("/readyz").expect("url");
        loop {
            let status = reqwest::get(url.clone()).await.map(|response| response.status().as_u16()).unwrap_or(0);
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "the app did not become ready within {within:?} (last status {status})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rewrites the browser's session so its tokens have `left` seconds to live (negative: expired that long ago),
    /// as five-minute tokens would: a test need not sleep through a token lifetime.
    pub fn age_session(&self, browser: &Browser, left: i64) {
        let mut session: Session = read_session(browser);
        let oidc = session.oidc.as_mut().expect("an OIDC session");
        let now = authbridge::session::unix_now() as i64;
        oidc.expires_at = (now + left).max(0) as u64;
        oidc.issued_at = (now + left - 300).max(0) as u64;
        write_session(browser, &session, COOKIE_PASSWORD);
    }

    /// Another replica of the app: the same configuration on its own port (ready when returned).
    pub async fn replica(&self) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let app = Application::build_with_listener(self.config.clone(), listener).expect("the replica builds");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let replica = Replica::new(Url::parse(&format!("http://{addr}/")).expect("base url"), shutdown);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = replica.base_url.join("/readyz").expect("url");
        while reqwest::get(ready.clone()).await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            assert!(Instant::now() < deadline, "the replica did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        replica
    }

    /// Waits for the server to stop by itself (a misconfigured provider), at most `within`.
    pub async fn stopped_within(&mut self, within: Duration) -> Option<std::io::Result<()>> {
        super::stopped_within(&mut self.server, within).await
    }

    /// Rows in `todos` as the database owner (bypassing RLS): what was really written, and for whom.
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

impl Drop for OidcApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
