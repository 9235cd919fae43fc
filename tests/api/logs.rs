//! Logs are for operators: they must hold what happened (requests, statuses, user ids) and never a credential.

use std::time::Duration;

use authbridge::session::{SESSION_COOKIE, SIGN_IN_STATE_COOKIE};
use reqwest::Method;
use serde_json::json;

use crate::helpers::app::{ALICE, COOKIE_PASSWORD, spawn_app};
use crate::helpers::logs::captured;
use crate::helpers::session::read_session;

#[tokio::test]
async fn a_full_sign_in_leaves_no_secret_in_the_logs() {
    let app = spawn_app().await;
    let browser = app.browser();

    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let state_cookie = browser.cookie(SIGN_IN_STATE_COOKIE).expect("state cookie");
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
