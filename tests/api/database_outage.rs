//! authbridge's database going away: requests that need it answer 503 within seconds (never hang into a 504), a
//! webhook that arrives meanwhile is answered 503 and nothing is half-applied, and WorkOS's retry of it succeeds
//! once the database is back.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::ACME_ORGANIZATION_ID;

use crate::helpers::app::{AppOptions, BOB, LifecycleOptions, TestApp, spawn_app_with};
use crate::helpers::lifecycle::{ORGANIZATIONS, eventually};

async fn app_behind_a_cuttable_database() -> TestApp {
    spawn_app_with(
        AppOptions::default().lifecycle_with(LifecycleOptions { through_proxy: true, ..LifecycleOptions::default() }),
    )
    .await
}

#[tokio::test]
async fn an_outage_during_a_webhook_answers_503_and_the_retried_delivery_succeeds() {
    let app = app_behind_a_cuttable_database().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let bob = app.user_id(BOB);
    let browser = app.signed_in(BOB).await;
    let acme = app.workos.membership_of(&bob, ACME_ORGANIZATION_ID).expect("seeded");
    app.workos.set_webhook_retry_delays(vec![Duration::from_secs(1); 5]);

    proxy.cut();
    app.workos.delete_membership(&acme.id).expect("removed at WorkOS");
    let event = app.workos.events().last().cloned().expect("the deletion's event");
    let refused = eventually(Duration::from_secs(15), || async {
        app.workos.webhook_attempts().iter().any(|attempt| attempt.event_id == event.id && attempt.status == Some(503))
    })
    .await;
    assert!(refused, "the delivery during the outage was answered 503: {:?}", app.workos.webhook_attempts());
    proxy.restore();

    let delivered = eventually(Duration::from_secs(15), || async {
        app.workos.webhook_attempts().iter().any(|attempt| attempt.event_id == event.id && attempt.status == Some(200))
    })
    .await;
    assert!(delivered, "the retry succeeded: {:?}", app.workos.webhook_attempts());
    let attempts: Vec<_> =
        app.workos.webhook_attempts().into_iter().filter(|attempt| attempt.event_id == event.id).collect();
    assert!(attempts.iter().all(|attempt| attempt.signed_at_ms == attempts[0].signed_at_ms), "same body and signature");
    assert_eq!(app.membership_row(&acme.id).await.map(|row| row.2), Some(true));
    assert_eq!(browser.get(ORGANIZATIONS).await.json(), json!([]));
}

#[tokio::test]
async fn requests_that_need_the_database_answer_503_within_seconds_during_an_outage() {
    crate::helpers::logs::capture();
    let app = app_behind_a_cuttable_database().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let browser = app.signed_in(BOB).await;
    assert_eq!(browser.get(ORGANIZATIONS).await.status, 200);
    // Let the cached "still allowed" answer expire, so the next request must ask the database.
    tokio::time::sleep(authbridge::session::revocations::SHARED_CACHE_TTL + Duration::from_millis(200)).await;

    proxy.cut();
    let started = Instant::now();
    let response = browser.get(ORGANIZATIONS).await;
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.body);
    // Whether the session still stands cannot be checked: the outage is authbridge's own, and says so (not that
    // sign-in is unavailable).
    assert_eq!(response.error_code(), "database_unavailable");
    assert!(response.header("retry-after").is_some());
    assert!(took < Duration::from_secs(10), "503 within the acquire timeout, not a 504: {took:?}");
    assert!(response.set_cookies().is_empty(), "the cookie is kept: the user did nothing wrong");
    // A page says so too, and offers signing out, which the person can do however long the outage lasts.
    let page = browser.get("/").await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains(r#"href="/logout""#), "{}", page.body);
    // The same for an API client's bearer token, on a route that itself needs only InsForge.
    let token = app.workos.mint_access_token(&app.user_id(BOB), Duration::from_secs(300));
    let bearer = app.bearer_client(token).get("/api/todos?organization_id=personal").await;
    assert_eq!((bearer.status, bearer.error_code().as_str()), (503, "database_unavailable"), "{}", bearer.body);
    // The Audit Log deliverer says why its events wait (and then asks less and less often: audit.rs). Not a line
    // from another test's app whose database was dropped as that test ended: PostgreSQL answered those ("error
    // returned from database"), and nothing answers through the cut.
    let said = eventually(Duration::from_secs(5), || async {
        crate::helpers::logs::captured().lines().any(|line| {
            line.contains("could not read the audit log outbox; will try again")
                && !line.contains("error returned from database")
        })
    })
    .await;
    assert!(said, "the deliverer's warning");
    // The revocation check's warning says what the pool looked like, so an on-call can tell an unreachable
    // database from an exhausted pool (it is said at most every 10 s, process-wide: wait for this outage's).
    let pool_said = eventually(Duration::from_secs(12), || async {
        let logs = crate::helpers::logs::captured();
        logs.lines().any(|line| {
            line.contains("cannot check whether sessions were revoked") && line.contains("connections open")
        })
    })
    .await;
    assert!(pool_said, "the pool's state in the warning");

    proxy.restore();
    let back = eventually(Duration::from_secs(10), || async {
        browser.api(Method::GET, ORGANIZATIONS, None).await.status == 200
    })
    .await;
    assert!(back, "the pool reconnects by itself");
}

/// A form sent while the database is out fails, and the page it is shown again on cannot check which space the
/// session works in. Its add form keeps that space (never personal by default: the todo added again from there
/// would be filed away from where its author looks for it), and the page says the list could not be loaded rather
/// than that there is nothing in it.
#[tokio::test]
async fn a_page_shown_during_an_outage_keeps_the_session_s_space_in_its_add_form() {
    let app = app_behind_a_cuttable_database().await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    let browser = app.signed_in(BOB).await;
    assert_eq!(browser.get("/api/me").await.json()["organization_id"], ACME_ORGANIZATION_ID, "Bob works in Acme");
    // The page (and with it the cached "still allowed" answer, for 2 s) just read: the session passes, the form's
    // space cannot be checked. On a machine slow enough to let those 2 s pass first, the session check itself
    // answers (an error page without the form): then again.
    let mut failed = None;
    for _ in 0..3 {
        let token = browser.csrf_token().await;
        proxy.cut();
        let answer =
            browser.post_form("/todos", &[("csrf_token", token.as_str()), ("title", "Typed during the outage")]).await;
        proxy.restore();
        if answer.body.contains(r#"name="title""#) {
            failed = Some(answer);
            break;
        }
    }
    let failed = failed.expect("the page with its form, within three tries");
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert!(failed.body.contains(r#"value="Typed during the outage""#), "the typed text is kept: {}", failed.body);
    let space = format!(r#"name="organization_id" value="{ACME_ORGANIZATION_ID}""#);
    assert!(failed.body.contains(&space), "the add form keeps Acme: {}", failed.body);
    assert!(!failed.body.contains(r#"name="organization_id" value="personal""#), "{}", failed.body);
    assert!(
        failed.body.contains("could not be loaded") && !failed.body.contains("Nothing to do yet"),
        "{}",
        failed.body
    );
    assert!(failed.body.contains("<title>Error: "), "the page's title says so too: {}", failed.body);
}

/// What PostgreSQL answers is sorted into "try again later" (503 `database_unavailable`, and a webhook WorkOS
/// retries) and "a statement failed" (500, logged as a bug) by its SQLSTATE, raised here for real: connection
/// exceptions (08…), our credentials refused (28…: a password changed at the database before DATABASE_URL),
/// insufficient resources such as too many connections (53…), a server shutting down or
/// restarting (57P0…) and our own statement timeout (57014) are the first; anything else (an unknown table, a
/// violated constraint, a cancel by an administrator: 57014's neighbour 57000) is the second.
#[tokio::test]
async fn database_errors_are_told_apart_by_their_sqlstate() {
    use authbridge::db::DbError;
    let db = crate::helpers::TestDb::empty().await;
    let mut conn = db.connect().await;
    let mut raised = async |code: &str| {
        let statement = format!("DO $$ BEGIN RAISE EXCEPTION 'raised by the test' USING ERRCODE = '{code}'; END $$");
        // The codes are this test's own constants.
        let statement = sqlx::AssertSqlSafe(statement);
        let error = sqlx::raw_sql(statement).execute(&mut conn).await.expect_err("PostgreSQL raises it");
        DbError::from(error)
    };
    for code in ["08006", "08003", "28P01", "28000", "53300", "53100", "57P01", "57P03", "57014"] {
        let error = raised(code).await;
        assert!(matches!(error, DbError::Unavailable(_)), "{code}: {error:?}");
        assert!(error.to_string().contains(&format!("SQLSTATE {code}")), "{code}: said as PostgreSQL says it: {error}");
    }
    for code in ["42P01", "23505", "57000", "P0001", "XX000"] {
        let error = raised(code).await;
        assert!(matches!(error, DbError::Failed(_)), "{code}: {error:?}");
    }
}

/// `/readyz`'s database check (`Database::ping`) tells the two causes of "every request waits for the database"
/// apart: an exhausted pool, whose database still answers (raise `DATABASE_MAX_CONNECTIONS`), and a database that
/// does not answer (said with its error).
#[tokio::test]
async fn the_database_check_tells_an_exhausted_pool_from_a_database_that_does_not_answer() {
    use authbridge::config::{DatabaseConfig, Secret};
    use authbridge::db::{Database, DbError};

    let db = crate::helpers::TestDb::empty().await;
    let config = DatabaseConfig {
        url: Secret::new(db.url.clone()),
        max_connections: 3,
        acquire_timeout: Duration::from_secs(1),
    };
    let database = Database::connect_lazy(&config).expect("a pool");
    database.ping().await.expect("the database answers");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(database.pool().acquire().await.expect("a pooled connection"));
    }
    let exhausted = database.ping().await.expect_err("no pooled connection is free");
    assert!(matches!(exhausted, DbError::Unavailable(_)), "{exhausted:?}");
    assert!(
        exhausted.to_string().contains("the database answers, but no pooled connection came free within 200 ms"),
        "{exhausted}"
    );
    // Merely busy: a connection comes free while the check waits for one.
    let one = held.pop().expect("a held connection");
    let (busy, ()) = tokio::join!(database.ping(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(one);
    });
    assert!(busy.is_ok(), "a busy pool is not an exhausted one: {busy:?}");
    drop(held);
    // A connection goes back to the pool in a task of its own, a moment after it is dropped.
    let free = eventually(Duration::from_secs(5), || async { database.ping().await.is_ok() }).await;
    assert!(free, "a connection is free again: {:?}", database.ping().await);

    let port = crate::helpers::closed_port_url().port().expect("a port");
    let unreachable = DatabaseConfig { url: Secret::new(format!("postgres://app:x@127.0.0.1:{port}/app")), ..config };
    let down = Database::connect_lazy(&unreachable).expect("a pool").ping().await.expect_err("nothing listens");
    assert!(matches!(down, DbError::Unavailable(_)), "{down:?}");
    assert!(down.to_string().contains("Connection refused"), "why, not only that it waited: {down}");
}

/// A sign-out the database could not take (the record that lets every replica refuse the session) is tried again
/// in the background, waiting longer each time; once the app stops, its drain tries it again at once instead of
/// sleeping out the wait, so a database that is back by then gets it, and the stop is quick.
#[tokio::test]
async fn a_sign_out_waiting_for_the_database_is_recorded_at_once_when_the_app_stops() {
    let mut app = app_behind_a_cuttable_database().await;
    let browser = app.signed_in(BOB).await;
    let session = crate::helpers::session::session_id(&browser);
    let token = browser.csrf_token().await;
    {
        let proxy = app.db_proxy.as_ref().expect("a proxy");
        proxy.cut();
        let out = browser.post_form("/logout", &[("csrf_token", token.as_str())]).await;
        assert!(matches!(out.status, 302 | 303), "signed out whatever the database: {} {}", out.status, out.body);
        // Tried again after 1, 2, 4 and 8 s (each try taking up to the pool's 3 s): 20 s on, the next try is
        // still seconds away.
        tokio::time::sleep(Duration::from_secs(20)).await;
        proxy.restore();
    }
    let started = Instant::now();
    app.shutdown().await.expect("stops");
    let took = started.elapsed();
    let recorded = app.query_scalar_i64("SELECT count(*) FROM authbridge.revoked_sessions WHERE id = $1", &session);
    assert_eq!(recorded.await, 1, "the sign-out is recorded for every replica");
    assert!(took < Duration::from_secs(3), "tried at once, not after its wait: {took:?}");
}
