//! `GET /metrics`: Prometheus text on its own listener (`METRICS_BIND_ADDR`), never on the public one, with the
//! series operators need and nothing that identifies a user or carries a credential.
//!
//! The recorder is one per process (the `metrics` facade), and the tests of this binary run in parallel, so
//! counts are checked as "at least what this test caused", never as exact totals.

use reqwest::Method;

use crate::helpers::app::{ALICE, AppOptions, TestApp, spawn_app, spawn_app_with};
use crate::helpers::session::{read_session, session_id};

async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("metrics are served");
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(content_type.is_some_and(|t| t.starts_with("text/plain")), "Prometheus text format");
    response.text().await.expect("a body")
}

/// The value of the series whose line starts with `name{` and contains every one of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How much the series `name` with `labels` grew from the scrape `before` to the scrape `after`.
fn increase(before: &str, after: &str, name: &str, labels: &[&str]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// Checks that each of `events` of `authbridge_session_refreshes_total` was counted at least once between the
/// scrapes.
fn assert_refresh_events_counted(before: &str, after: &str, events: &[&str]) {
    for event in events {
        let label = format!(r#"event="{event}""#);
        let delta = increase(before, after, "authbridge_session_refreshes_total", &[&label]);
        assert!(delta >= 1.0, "{event}: {after}");
    }
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_public_listener() {
    let app = spawn_app().await;
    assert_eq!(app.metrics_addr, None);
    let response = app.browser().get("/metrics").await;
    assert_eq!(response.status, 404);

    let app = spawn_app_with(AppOptions::default().var("METRICS_BIND_ADDR", "127.0.0.1:0")).await;
    assert!(app.metrics_addr.is_some_and(|addr| addr != app.addr));
    assert_eq!(app.browser().get("/metrics").await.status, 404, "the public listener serves no metrics");
    assert!(scrape(&app).await.contains("authbridge_http_requests_shed_total"));
}

#[tokio::test]
async fn requests_upstream_calls_refreshes_and_the_token_cache_are_counted_without_personal_data() {
    let app = spawn_app_with(AppOptions::default().var("METRICS_BIND_ADDR", "127.0.0.1:0")).await;
    let before = scrape(&app).await;
    let browser = app.signed_in(ALICE).await;
    for _ in 0..3 {
        assert_eq!(browser.api(Method::GET, "/api/todos", None).await.status, 200);
    }
    assert_eq!(browser.api(Method::GET, "/api/todos/not-a-uuid", None).await.status, 400);
    assert_eq!(browser.get("/no/such/page").await.status, 404);
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[&str]| increase(&before, &after, name, labels);
    let todos = [r#"route="/api/todos""#, r#"method="GET""#, r#"status="200""#];
    assert!(delta("authbridge_http_requests_total", &todos) >= 3.0, "{after}");
    let invalid = [r#"route="/api/todos/{id}""#, r#"status="400""#];
    assert!(delta("authbridge_http_requests_total", &invalid) >= 1.0);
    // Error answers by their code too: which dependency a 503 was, which refusal a 400.
    let invalid_id = [r#"route="/api/todos/{id}""#, r#"code="invalid_id""#];
    assert!(delta("authbridge_http_errors_total", &invalid_id) >= 1.0, "{after}");
    assert!(delta("authbridge_http_requests_total", &[r#"route="unmatched""#, r#"status="404""#]) >= 1.0);
    assert!(delta("authbridge_http_request_duration_seconds_count", &[r#"route="/api/todos""#]) >= 3.0);
    // Each method under its own label (a fixed set: one a client invents is "other").
    for method in ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"] {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        browser.request(method, "/api/todos/not-a-uuid", |request| request).await;
    }
    let labelled = scrape(&app).await;
    for method in ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"] {
        let label = format!(r#"method="{method}""#);
        assert!(
            value(&labelled, "authbridge_http_requests_total", &[r#"route="/api/todos/{id}""#, &label]) >= 1.0,
            "{method}: {labelled}"
        );
    }
    assert!(!labelled.contains(r#"method="BREW""#));
    // Past the upstream (10 s) and request (30 s) time limits: a call cut by one is told apart from a slow one.
    for le in ["10", "30", "60"] {
        let bucket = format!(r#"authbridge_http_request_duration_seconds_bucket{{route="/api/todos",le="{le}"}}"#);
        assert!(after.contains(&bucket), "{bucket}: {after}");
    }
    // Each upstream answer under its own class: a 5xx and a 4xx from InsForge (each a 502 here).
    for (status, class) in [(500, "5xx"), (400, "4xx")] {
        app.insforge.fail_next(1, status);
        assert_eq!(browser.api(Method::GET, "/api/todos", None).await.status, 502);
        let now = scrape(&app).await;
        let outcome = format!(r#"outcome="{class}""#);
        let labels = [r#"upstream="insforge""#, outcome.as_str()];
        assert_eq!(increase(&after, &now, "authbridge_upstream_requests_total", &labels), 1.0, "{class}: {now}");
        let failed = [r#"route="/api/todos""#, r#"code="upstream_failed""#];
        assert!(value(&now, "authbridge_http_errors_total", &failed) >= 1.0, "{now}");
    }
    // A session cookie that does not open with the app's keys is counted (and answered as signed out).
    let stranger = app.browser();
    let foreign = crate::helpers::session::sealer("the-password-of-another-replica-0123456789")
        .seal(authbridge::session::seal::Purpose::Session, b"{}")
        .expect("seal");
    stranger.set_cookie(authbridge::session::SESSION_COOKIE, &foreign);
    assert_eq!(stranger.api(Method::GET, "/api/me", None).await.status, 401);
    let later = scrape(&app).await;
    assert!(increase(&after, &later, "authbridge_session_cookies_unreadable_total", &[]) >= 1.0, "{later}");
    let insforge = [r#"upstream="insforge""#, r#"outcome="2xx""#];
    assert!(delta("authbridge_upstream_requests_total", &insforge) >= 3.0);
    assert!(delta("authbridge_upstream_request_duration_seconds_count", &insforge) >= 3.0);
    assert!(delta("authbridge_upstream_requests_total", &[r#"upstream="workos""#]) >= 1.0, "the code exchange");
    // The same cookie three times: its token is verified once, then found in the cache.
    assert!(delta("authbridge_token_cache_total", &[r#"result="hit""#]) >= 2.0);
    // (The recorder is the process's, installed by the first app of the test run with that app's features: only
    // the series every configuration has are certain here. `metrics::tests` checks which features write which.)
    for series in ["authbridge_session_refreshes_total", "authbridge_http_requests_shed_total"] {
        assert!(after.contains(series), "{series} is exported from the start");
    }

    // No user, session, token or cookie in any label.
    let session = read_session(&browser);
    let refresh_token = session.refresh_token.expect("WorkOS issues refresh tokens");
    for secret in [app.user_id(ALICE), session_id(&browser), session.access_token, refresh_token] {
        assert!(!after.contains(&secret), "the metrics leak {secret:.12}…");
    }
    assert!(!after.contains("not-a-uuid") && !after.contains("/no/such/page"), "paths are never labels");
}

#[tokio::test]
async fn a_refresh_is_counted_as_started_and_succeeded() {
    let app = spawn_app_with(AppOptions::default().var("METRICS_BIND_ADDR", "127.0.0.1:0")).await;
    let browser = app.signed_in(ALICE).await;
    let before = scrape(&app).await;
    crate::refresh::age_token(&app, &browser, -60);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);
    let after = scrape(&app).await;
    assert_refresh_events_counted(&before, &after, &["started", "succeeded"]);
}

#[tokio::test]
async fn a_failed_refresh_is_counted_and_so_are_the_requests_it_holds_back() {
    let app = spawn_app_with(AppOptions::default().var("METRICS_BIND_ADDR", "127.0.0.1:0")).await;
    let browser = app.signed_in(ALICE).await;
    let before = scrape(&app).await;
    crate::refresh::age_token(&app, &browser, -60);
    app.workos.fail_next(standins::workos_standin::Endpoint::Authenticate, 1, 503);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 503);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 503);
    assert_eq!(app.workos.refresh_calls(), 1, "the second request was held back");
    let after = scrape(&app).await;
    assert_refresh_events_counted(&before, &after, &["failed", "held_back"]);
}

#[tokio::test]
async fn webhook_events_are_counted_by_channel_and_outcome_with_their_lag() {
    use crate::helpers::lifecycle::{event, membership};
    let app = spawn_app_with(AppOptions::default().lifecycle().var("METRICS_BIND_ADDR", "127.0.0.1:0")).await;
    let before = scrape(&app).await;
    let created = event(
        "organization_membership.created",
        membership("om_metrics", "user_metrics", "org_metrics", "active", "member", 1),
        time::OffsetDateTime::now_utc(),
    );
    app.deliver_ok(&created).await;
    app.deliver_ok(&created).await; // WorkOS retries: the same event again
    let after = scrape(&app).await;
    let delta = |name: &str, labels: &[&str]| increase(&before, &after, name, labels);
    let webhook = r#"source="webhook""#;
    assert!(delta("authbridge_webhook_events_total", &[webhook, r#"outcome="applied""#]) >= 1.0, "{after}");
    assert!(delta("authbridge_webhook_events_total", &[webhook, r#"outcome="duplicate""#]) >= 1.0, "{after}");
    assert!(delta("authbridge_webhook_event_lag_seconds_count", &[webhook]) >= 1.0, "{after}");
    // Buckets for lag (a poll every 30 s, a consumer catching up over hours), not for request latency.
    assert!(after.contains(r#"authbridge_webhook_event_lag_seconds_bucket{source="webhook",le="3600"}"#), "{after}");
    assert!(!after.contains(r#"authbridge_webhook_event_lag_seconds_bucket{source="webhook",le="0.0001"}"#));
    assert!(!after.contains("om_metrics") && !after.contains("user_metrics"), "no ids in labels");
}

/// The lifecycle's background work is visible: when the Events API consumer last polled WorkOS (an alert on its age
/// catches a consumer that stopped, and deprovisioning with it), and what came of each Audit Log event's sending.
#[tokio::test]
async fn the_consumers_last_poll_and_audit_log_deliveries_are_exported() {
    use crate::helpers::lifecycle::eventually;
    use crate::helpers::organizations::{AUTHOR, cast, create, id_of};
    let app = spawn_app_with(
        AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle().var("METRICS_BIND_ADDR", "127.0.0.1:0"),
    )
    .await;
    let before = scrape(&app).await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let started = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let running = tokio::spawn(
        app.consumer(authbridge::lifecycle::consumer::ConsumerOptions::every(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5),
        ))
        .run(stopping),
    );
    let polled = eventually(std::time::Duration::from_secs(10), || async {
        value(&scrape(&app).await, "authbridge_events_consumer_last_poll_timestamp_seconds", &[]) >= started
    })
    .await;
    stop.send_replace(true);
    running.await.expect("the consumer stops when told");
    assert!(polled, "the last poll's time is exported");

    let bob = app.signed_in(AUTHOR).await;
    id_of(&create(&bob, "Audited", Some(standins::workos_standin::ACME_ORGANIZATION_ID)).await);
    let delivered = eventually(std::time::Duration::from_secs(10), || async {
        increase(&before, &scrape(&app).await, "authbridge_audit_log_events_total", &[r#"outcome="delivered""#]) >= 1.0
    })
    .await;
    assert!(delivered, "{}", scrape(&app).await);
}

/// The database pool at each scrape: its size limit and how many connections are in use and idle, so an on-call can
/// tell an unreachable database (none open) from an exhausted pool (all in use) on a dashboard, not only in a log.
#[tokio::test]
async fn the_database_pools_connections_are_exported_at_each_scrape() {
    let app = spawn_app_with(
        AppOptions::default().lifecycle().var("METRICS_BIND_ADDR", "127.0.0.1:0").var("DATABASE_MAX_CONNECTIONS", 3),
    )
    .await;
    let browser = app.signed_in(ALICE).await;
    // A signed-in request asks the database whether its session was ended: the pool has opened a connection.
    assert_eq!(browser.api(Method::GET, "/api/todos", None).await.status, 200);
    let text = scrape(&app).await;
    assert_eq!(value(&text, "authbridge_database_pool_max_connections", &[]), 3.0, "{text}");
    let in_use = value(&text, "authbridge_database_pool_connections", &[r#"state="in_use""#]);
    let idle = value(&text, "authbridge_database_pool_connections", &[r#"state="idle""#]);
    assert!(idle >= 1.0 && in_use + idle <= 3.0, "{text}");
}
