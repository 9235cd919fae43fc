//! Starting with and without the lifecycle: without `DATABASE_URL` the app says once that the lifecycle is off and
//! otherwise runs as before; with it, `serve` refuses a database `authbridge migrate` has not brought up to date,
//! with either provider, and one that refuses its check (a wrong password, a role without rights); it starts anyway
//! (answering 503 where the database is needed) when the database is down.

use std::collections::HashMap;

use authbridge::config::Config;
use authbridge::startup::{Application, StartupError};

use crate::helpers::TestDb;
use crate::helpers::app::{ALICE, spawn_app};
use crate::helpers::logs;

fn config(database_url: &str) -> Config {
    let env = HashMap::from([
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("WORKOS_API_KEY", "sk_test_unused".to_owned()),
        ("WORKOS_CLIENT_ID", "client_unused".to_owned()),
        ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
        ("WORKOS_API_BASE_URL", crate::helpers::closed_port_url().to_string()),
        ("WORKOS_COOKIE_PASSWORD", "unused-cookie-password-0123456789-abcdef".to_owned()),
        ("INSFORGE_URL", crate::helpers::closed_port_url().to_string()),
        ("INSFORGE_JWT_SECRET", "unused-insforge-secret-0123456789abcdef".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned()),
    ]);
    Config::from_lookup(|name| env.get(name).cloned()).expect("a valid configuration")
}

/// With an OpenID Connect provider, whose `DATABASE_URL` shares sign-outs and refreshes only.
fn oidc_config(database_url: &str) -> Config {
    let unused = crate::helpers::closed_port_url();
    let env = HashMap::from([
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_PROVIDER", "oidc".to_owned()),
        ("OIDC_ISSUER", unused.to_string()),
        ("OIDC_CLIENT_ID", "client_unused".to_owned()),
        ("OIDC_CLIENT_SECRET", "unused-client-secret".to_owned()),
        ("OIDC_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
        ("SESSION_COOKIE_PASSWORD", "unused-cookie-password-0123456789-abcdef".to_owned()),
        ("INSFORGE_URL", unused.to_string()),
        ("INSFORGE_JWT_SECRET", "unused-insforge-secret-0123456789abcdef".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
    ]);
    Config::from_lookup(|name| env.get(name).cloned()).expect("a valid configuration")
}

#[tokio::test]
async fn without_a_database_the_app_says_the_lifecycle_is_off_and_works_as_before() {
    let app = spawn_app().await;
    assert!(app.config.lifecycle.is_none());
    assert!(logs::captured().contains("the enterprise lifecycle is off: no DATABASE_URL"));
    let browser = app.signed_in(ALICE).await;
    assert_eq!(browser.get("/api/me").await.status, 200);
}

/// `serve` with `config` refuses an empty database, naming the way out, and starts once it is migrated.
async fn assert_serve_refuses_until_migrated(config: fn(&str) -> Config) {
    logs::capture();
    let db = TestDb::empty().await;
    let refused = Application::build(config(&db.url)).await;
    assert!(matches!(refused, Err(StartupError::NotMigrated)), "{:?}", refused.err());
    let message = StartupError::NotMigrated.to_string();
    assert!(message.contains("authbridge migrate"), "the way out is named: {message}");
    // Nothing ran in the background before the refusal: the Audit Log deliverer would have found no outbox.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let captured = logs::captured();
    let premature = captured
        .lines()
        // Its table missing, that is: other tests' apps, whose databases are dropped as those tests end, may log
        // that their database does not exist.
        .find(|line| line.contains("could not read the audit log outbox") && line.contains("relation"));
    assert!(premature.is_none(), "a background task ran before the refusal: {premature:?}");

    authbridge::migrate::run(&db.url).await.expect("migrated");
    let started = Application::build(config(&db.url)).await;
    assert!(started.is_ok(), "and starts once migrated: {:?}", started.err());
}

#[tokio::test]
async fn serve_refuses_a_database_that_is_not_migrated() {
    assert_serve_refuses_until_migrated(config).await;
}

#[tokio::test]
async fn serve_refuses_a_database_that_is_not_migrated_with_an_oidc_provider_too() {
    assert_serve_refuses_until_migrated(oidc_config).await;
    // And once started it says what the database is for without the lifecycle.
    let said = "IDENTITY_PROVIDER=oidc; DATABASE_URL shares sign-outs and refreshes between replicas";
    assert!(logs::captured().contains(said), "{}", logs::captured());
}

#[tokio::test]
async fn serve_starts_while_the_database_is_down() {
    logs::capture();
    let port = crate::helpers::closed_port_url().port().expect("a port");
    let started = Application::build(config(&format!("postgres://authbridge@127.0.0.1:{port}/nowhere"))).await;
    assert!(started.is_ok(), "{:?}", started.err());
    let captured = logs::captured();
    let line = captured.lines().find(|line| line.contains("cannot reach the database at start-up"));
    // Why, not only that the pool waited in vain.
    assert!(line.is_some_and(|line| line.contains("Connection refused")), "{captured}");
}

/// A database that answers the check with an error of its own (here: a role without rights on authbridge's schema)
/// is not taken for one that lacks the migrations: `serve` stops and says why, instead of sending the operator to
/// run `authbridge migrate` on a database that has every migration, or starting a replica that looks ready while
/// every signed-in request would be answered 503.
#[tokio::test]
async fn a_check_the_database_refuses_is_not_taken_for_a_missing_migration() {
    logs::capture();
    let db = TestDb::new().await;
    let role = format!("{}_stranger", db.name);
    let mut conn = db.connect().await;
    let mut url = url::Url::parse(&db.url).expect("the test database's URL");
    let password = url.password().unwrap_or_default().to_owned();
    // The name is the test database's own (letters, digits, underscores) and the password the cluster's test one.
    let create = sqlx::AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"));
    sqlx::query(create).execute(&mut conn).await.expect("a role");
    url.set_username(&role).expect("a user name");
    let started = Application::build(config(url.as_str())).await;
    let Err(StartupError::DatabaseRefused(reason)) = started else {
        panic!("a database that refuses the check stops the start: {:?}", started.err());
    };
    assert!(reason.contains("permission denied for schema authbridge"), "says why: {reason}");
    let message = StartupError::DatabaseRefused(reason).to_string();
    assert!(!message.contains("authbridge migrate") && message.contains("password and rights"), "{message}");
    assert!(!message.contains(&password) || password.is_empty(), "no password: {message}");
}

/// A wrong password is refused at once, not found at the first signed-in request.
#[tokio::test]
async fn a_wrong_password_stops_the_start() {
    let db = TestDb::new().await;
    let mut url = url::Url::parse(&db.url).expect("the test database's URL");
    url.set_password(Some("not-the-password")).expect("a password");
    let started = Application::build(config(url.as_str())).await;
    let Err(error @ StartupError::DatabaseRefused(_)) = started else {
        panic!("a wrong password stops the start: {:?}", started.err());
    };
    let message = error.to_string();
    assert!(message.contains("password authentication failed") && message.contains("28P01"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
}

/// The URL that reaches `db` through a proxy the test can cut or hold, and the proxy.
async fn behind_a_proxy(db: &TestDb) -> (String, crate::helpers::proxy::TcpProxy) {
    let (url, proxy) = crate::helpers::proxy::TcpProxy::database_url(&db.url, true).await;
    (url, proxy.expect("a proxy"))
}

/// A database that answers only after the pool has given up waiting (one slow to come up) is still checked: the
/// start-up's own connection, made to say why the pool failed, asks it instead, and an unmigrated database is
/// refused rather than taken for one that is down.
#[tokio::test]
async fn a_database_that_answers_after_the_pool_gave_up_is_still_checked() {
    logs::capture();
    let db = TestDb::empty().await;
    let (url, proxy) = behind_a_proxy(&db).await;
    let mut config = config(&url);
    let pool_gives_up = std::time::Duration::from_secs(1);
    config.database.as_mut().expect("DATABASE_URL").acquire_timeout = pool_gives_up;
    proxy.hold();
    let started = Application::build(config);
    let release = async {
        // After the pool's wait, well within the start-up connection's 5 seconds.
        tokio::time::sleep(pool_gives_up + std::time::Duration::from_millis(1500)).await;
        proxy.release();
    };
    let (started, ()) = tokio::join!(started, release);
    assert!(matches!(started, Err(StartupError::NotMigrated)), "{:?}", started.err());
}

/// A replica whose start-up check reached the database counts it as reached: a later outage (every replica's at
/// once) no longer takes it out of service, even when no probe ran before it.
#[tokio::test]
async fn a_database_reached_at_start_up_no_longer_counts_for_readiness() {
    logs::capture();
    let db = TestDb::new().await;
    let (url, proxy) = behind_a_proxy(&db).await;
    let app = Application::build(config(&url)).await.expect("the start-up check passes");
    let addr = app.local_addr().expect("an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    proxy.cut();
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.expect("an answer");
    let request_id = ready.headers().get("x-request-id").and_then(|id| id.to_str().ok()).expect("an id").to_owned();
    let report: serde_json::Value = ready.json().await.expect("a JSON report");
    assert_eq!(report["database"]["ok"], false, "{report}");
    let marker = format!("request_id=\"{request_id}\"");
    let captured = logs::captured();
    let line = captured.lines().find(|line| {
        line.contains(&marker) && line.contains("readiness check failed") && line.contains("DATABASE_URL")
    });
    let line = line.expect("the database's check is logged with the request");
    assert!(!line.contains("not reached since the start"), "reached at start-up: {line}");
    let _ = stop.send(());
    let _ = server.await;
}
