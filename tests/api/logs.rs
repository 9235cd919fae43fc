//! Logs are for operators: they must hold what happened (requests, statuses, user ids) and never a credential.

use std::time::Duration;

use authbridge::session::SESSION_COOKIE;
use reqwest::Method;
use serde_json::json;
use standins::workos_standin::Endpoint;

use crate::helpers::app::{ALICE, AppOptions, COOKIE_PASSWORD, spawn_app, spawn_app_with};
use crate::helpers::logs::{captured, logged};
use crate::helpers::session::read_session;

#[tokio::test]
async fn a_full_sign_in_leaves_no_secret_in_the_logs() {
    let app = spawn_app().await;
    let browser = app.browser();

    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let (_, state_cookie) = browser.sign_in_state().expect("state cookie");
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let pairs: Vec<(String, String)> =
        url::Url::parse(&format!("http://x{callback}")).expect("url").query_pairs().into_owned().collect();
    let code = pairs.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).expect("code");
    let state = pairs.iter().find(|(k, _)| k == "state").map(|(_, v)| v.clone()).expect("state");
    assert_eq!(browser.get(&callback).await.status, 302);

    let session = read_session(&browser);
    let refresh_token = session.refresh_token.clone().expect("WorkOS sessions have a refresh token");
    let workos_api_key = app.config.workos().expect("WorkOS is the provider").api_key.expose().to_owned();
    let session_cookie = browser.cookie(SESSION_COOKIE).expect("session cookie");
    assert_eq!(browser.api(Method::POST, "/api/todos", Some(json!({"title": "logged?"}))).await.status, 201);
    assert_eq!(browser.submit("/todos", &[("title", "form todo")]).await.status, 303);
    // A tampered cookie is logged as rejected, without its value.
    let tampered = format!("{}x", &session_cookie[..session_cookie.len() - 1]);
    let other = app.browser();
    other.set_cookie(SESSION_COOKIE, &tampered);
    assert_eq!(other.get("/api/me").await.status, 401);
    let bearer = app.workos.mint_access_token(&session.user.id, Duration::from_secs(300));
    assert_eq!(app.bearer_client(bearer.clone()).get("/api/todos").await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let logs = captured();
    assert!(logs.contains("request finished"), "the access log is captured");
    let attributed = logs.lines().any(|line| {
        line.contains("request finished") && line.contains("/api/todos") && line.contains(&session.user.id)
    });
    assert!(attributed, "access-log lines carry the user id");
    assert!(!logs.contains("eyJ"), "no JWT of any kind (WorkOS or minted InsForge tokens) is ever logged");
    for (what, secret) in [
        ("authorization code", code.as_str()),
        ("state nonce", state.as_str()),
        ("state cookie", state_cookie.as_str()),
        ("session cookie", session_cookie.as_str()),
        ("tampered cookie", tampered.as_str()),
        ("access token", session.access_token.as_str()),
        ("refresh token", refresh_token.as_str()),
        ("bearer token", bearer.as_str()),
        ("WorkOS API key", workos_api_key.as_str()),
        ("cookie password", COOKIE_PASSWORD),
        ("InsForge JWT secret", app.config.insforge.jwt_secret.expose()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}

/// Whatever fails, the operator finds why in the log under the request's id, at the level that says whose problem
/// it is: an upstream that failed is an error; one that was too slow, or refused the input, a warning. The client
/// gets the public message only.
#[tokio::test]
async fn a_failure_is_logged_under_the_request_id_at_the_level_that_says_whose_problem_it_is() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 1000)).await;
    let alice = app.signed_in(ALICE).await;
    let id = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
    let with_id = |id: &str| {
        let id = id.to_owned();
        move |request: reqwest::RequestBuilder| request.header("x-request-id", id)
    };

    let failed = id("insforge-failed");
    app.insforge.fail_next(1, 500);
    let response = alice.request(Method::GET, "/api/todos", with_id(&failed)).await;
    assert_eq!(response.status, 502, "{}", response.body);
    let line = logged(&failed, "ERROR", "InsForge request failed").await.expect("the failure is logged as an error");
    assert!(
        line.contains("InsForge answered HTTP 500") && line.contains("injected failure"),
        "with its detail: {line}"
    );
    assert!(!response.body.contains("injected failure"), "the detail is the operator's only: {}", response.body);

    let refused = id("insforge-refused");
    app.insforge.fail_next(1, 422);
    let response =
        alice.request(Method::POST, "/api/todos", |r| with_id(&refused)(r.json(&json!({"title": "t"})))).await;
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(logged(&refused, "WARN", "InsForge refused the input").await.is_some(), "refused input is a warning");

    let slow = id("insforge-slow");
    app.insforge.set_latency(Duration::from_secs(3));
    let response = alice.request(Method::GET, "/api/todos", with_id(&slow)).await;
    app.insforge.set_latency(Duration::ZERO);
    assert_eq!(response.status, 504, "{}", response.body);
    assert!(logged(&slow, "WARN", "request failed upstream").await.is_some(), "a slow upstream is a warning");

    // WorkOS refusing the app's own credentials at sign-in: the deployment's problem, not the user's.
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let provider = id("workos-refused");
    app.workos.fail_next(Endpoint::Authenticate, 1, 401);
    let response = browser.request(Method::GET, &callback, with_id(&provider)).await;
    assert_eq!(response.status, 502, "{}", response.body);
    let line = logged(&provider, "ERROR", "identity provider failed").await.expect("logged as an error");
    assert!(line.contains("WorkOS refused the request (401"), "with WorkOS's answer: {line}");
}

/// A form post resolves its user twice (the handler's `CurrentUser` and the form's CSRF check) but names them once
/// on each of its log lines.
#[tokio::test]
async fn a_request_names_its_user_once_per_log_line() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let posted = alice.submit("/todos", &[("title", "named once")]).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let request_id = posted.header("x-request-id").expect("every answer carries a request id");
    let line = logged(&request_id, "INFO", "request finished").await.expect("the access log line");
    assert_eq!(line.matches("user_id=").count(), 1, "{line}");
}

/// A fault of the app's own (here its database refusing a statement, as a schema gone wrong would) is a 500 whose
/// body says nothing of it, and an error line with the detail for the operator.
#[tokio::test]
async fn an_internal_fault_is_a_plain_500_and_an_error_line_with_its_detail() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let alice = app.signed_in(ALICE).await;
    sqlx::query("ALTER TABLE authbridge.organization_memberships RENAME TO organization_memberships_gone")
        .execute(&mut app.db.connect().await)
        .await
        .expect("rename");
    let response = alice.api(Method::GET, "/api/organizations", None).await;
    assert_eq!((response.status, response.error_code()), (500, "internal".to_owned()), "{}", response.body);
    assert!(!response.body.contains("organization_memberships"), "no detail for the client: {}", response.body);
    let request_id = response.header("x-request-id").expect("every answer carries a request id");
    let line = logged(&request_id, "ERROR", "internal error").await.expect("logged as an error");
    assert!(line.contains("organization_memberships") && line.contains("does not exist"), "with its detail: {line}");
}

/// Each access-log line says how long its request took, in milliseconds to the microsecond.
#[tokio::test]
async fn the_access_log_times_each_request_in_milliseconds() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    app.insforge.set_latency(Duration::from_millis(200));
    let id = format!("latency-{}", uuid::Uuid::new_v4());
    let listed = browser.request(Method::GET, "/api/todos", |request| request.header("x-request-id", &id)).await;
    app.insforge.set_latency(Duration::ZERO);
    assert_eq!(listed.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let logs = captured();
    let line = logs
        .lines()
        .find(|line| line.contains(&id) && line.contains("request finished"))
        .unwrap_or_else(|| panic!("the request's line: {logs}"));
    let value = line.split("latency_ms=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("latency_ms");
    let latency: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
    assert!((200.0..2_000.0).contains(&latency), "{line}");
    assert!(value.split('.').nth(1).is_none_or(|decimals| decimals.len() <= 3), "to the microsecond: {line}");
}
