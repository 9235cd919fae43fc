//! Start-up with an OpenID Connect provider: discovery in the background, retried with backoff, `/readyz` not ready
//! until it succeeds; a discovery document that contradicts the configuration stops the server with a clear reason.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use standins::oidc_standin::Endpoint;

use crate::helpers::app::ALICE;
use crate::helpers::oidc::{OidcAppOptions, spawn_oidc_app_with};

#[tokio::test]
async fn not_ready_until_discovery_succeeds_which_is_retried_with_backoff() {
    let options = OidcAppOptions { wait_until_ready: false, discovery_failures: 3, ..OidcAppOptions::default() };
    let app = spawn_oidc_app_with(options).await;

    let ready = reqwest::get(app.base_url.join("/readyz").expect("url")).await.expect("answers");
    assert_eq!(ready.status(), 503);
    let report: Value = ready.json().await.expect("json");
    // InsForge is checked all the same: an on-call reading this must not be sent to a healthy InsForge.
    assert_eq!(report, json!({ "status": "unavailable", "insforge": { "ok": true }, "oidc": { "ok": false } }));
    assert_eq!(reqwest::get(app.base_url.join("/healthz").expect("url")).await.expect("answers").status(), 200);

    let login = app.browser().get("/login").await;
    assert_eq!(login.status, 503, "{}", login.body);
    assert!(login.header("retry-after").is_some());
    let bearer = app.bearer_client("eyJhbGciOiJSUzI1NiJ9.e30.c2ln").get("/api/me").await;
    assert_eq!(bearer.status, 503, "an outage, not a bad token: {}", bearer.body);

    app.wait_until_ready(Duration::from_secs(10)).await;
    assert_eq!(app.oidc.calls(Endpoint::Discovery), 4, "three failures, then success");
    // One line tells the operator what was found (this test's issuer is on its own port: the line is this app's).
    let issuer = app.oidc.issuer().to_string();
    let logs = crate::helpers::logs::captured();
    let announced =
        logs.lines().find(|line| line.contains("OpenID Connect provider discovered") && line.contains(&issuer));
    let announced = announced.unwrap_or_else(|| panic!("no discovery line for {issuer}"));
    assert!(announced.contains("logout=") && announced.contains("refresh_tokens=true"), "{announced}");
    assert!(announced.contains("revocation=true"), "the stand-in publishes a revocation_endpoint: {announced}");
    let report: Value =
        reqwest::get(app.base_url.join("/readyz").expect("url")).await.expect("ok").json().await.expect("json");
    assert_eq!(report, json!({ "status": "ready", "insforge": { "ok": true }, "oidc": { "ok": true } }));
    assert_eq!(app.browser().sign_in(ALICE).await.status, 302);
}

/// Once discovered, the provider's keys are held: the probe does not fetch them again (no load on the provider's
/// rate limit), and the provider's JWKS failing does not make the app unready (every replica would leave the load
/// balancer at once, though the keys they hold still verify).
#[tokio::test]
async fn once_discovered_readyz_stays_ready_on_the_keys_held_while_the_jwks_fails() {
    let app = spawn_oidc_app_with(OidcAppOptions::default()).await;
    // The probe's answer is kept for five seconds (so a burst of probes reaches the provider once): let it expire.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    app.oidc.fail_next(Endpoint::Jwks, 100, 503);
    let fetches = app.oidc.calls(Endpoint::Jwks);
    let ready = reqwest::get(app.base_url.join("/readyz").expect("url")).await.expect("answers");
    assert_eq!(ready.status(), 200);
    let report: Value = ready.json().await.expect("json");
    assert_eq!(report, json!({ "status": "ready", "insforge": { "ok": true }, "oidc": { "ok": true } }));
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches, "the probe left the provider alone");
}

#[tokio::test]
async fn an_issuer_without_its_trailing_slash_stops_the_server_naming_both_values() {
    // The stand-in's issuer ends with `/`, as Auth0's does; the configuration leaves it out.
    let options = OidcAppOptions {
        wait_until_ready: false,
        env_from_standin: Some(|oidc| vec![("OIDC_ISSUER", oidc.issuer().as_str().trim_end_matches('/').to_owned())]),
        ..OidcAppOptions::default()
    };
    let mut app = spawn_oidc_app_with(options).await;
    let published = app.oidc.issuer().to_string();
    let configured = published.trim_end_matches('/');
    let stopped = app.stopped_within(Duration::from_secs(10)).await.expect("the server stops by itself");
    let message = stopped.expect_err("with an error").to_string();
    assert!(message.contains("OIDC_ISSUER"), "{message}");
    assert!(message.contains(&format!("`{published}`")) && message.contains(&format!("`{configured}`")), "{message}");
    assert!(message.contains("trailing slash"), "{message}");
    assert!(message.contains(&format!("{published}.well-known/openid-configuration")), "where it looked: {message}");
    // The value to set is the published one, said so in as many words (not only as the crate's "unexpected").
    assert!(message.contains(&format!("set OIDC_ISSUER to exactly `{published}`")), "{message}");
}

/// A provider that publishes `document` (with `{base}` replaced by its own address) at `discovery_path`, and an
/// empty JWKS at `/jwks`: for documents the stand-in would never publish.
async fn provider_publishing(discovery_path: &'static str, document: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let body = document.replace("{base}", &base);
    let app = axum::Router::new()
        .route(
            discovery_path,
            axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
        )
        .route("/jwks", axum::routing::get(|| async { axum::Json(json!({ "keys": [] })) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

const DOCUMENT: &str = r#"{
    "issuer": "{base}/realms/acme",
    "authorization_endpoint": "{base}/authorize",
    "token_endpoint": "{base}/token",
    "jwks_uri": "{base}/jwks",
    "response_types_supported": ["code"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"]
}"#;

#[tokio::test]
async fn an_issuer_with_an_extra_trailing_slash_stops_the_server_too() {
    let base = provider_publishing("/realms/acme/.well-known/openid-configuration", DOCUMENT).await;
    let configured = format!("{base}/realms/acme/");
    let options =
        OidcAppOptions { wait_until_ready: false, ..OidcAppOptions::default() }.var("OIDC_ISSUER", &configured);
    let mut app = spawn_oidc_app_with(options).await;
    let stopped = app.stopped_within(Duration::from_secs(10)).await.expect("the server stops by itself");
    let message = stopped.expect_err("with an error").to_string();
    assert!(
        message.contains(&format!("`{base}/realms/acme`")) && message.contains(&format!("`{configured}`")),
        "{message}"
    );
}

/// The discovery line tells the operator what the provider does not offer: no `refresh_token` among the grant
/// types it lists (sessions end with their access token), no `revocation_endpoint` (sign-out cannot revoke).
#[tokio::test]
async fn the_discovery_line_says_when_the_provider_offers_no_refresh_tokens_or_revocation() {
    crate::helpers::logs::capture();
    let document = r#"{"issuer": "{base}/", "authorization_endpoint": "{base}/authorize", "token_endpoint": "{base}/token",
        "jwks_uri": "{base}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "grant_types_supported": ["authorization_code", "implicit"]}"#;
    let base = provider_publishing("/.well-known/openid-configuration", document).await;
    let issuer = format!("{base}/");
    let options = OidcAppOptions { wait_until_ready: false, ..OidcAppOptions::default() }.var("OIDC_ISSUER", &issuer);
    let _app = spawn_oidc_app_with(options).await;
    let line = || {
        crate::helpers::logs::captured()
            .lines()
            .find(|line| line.contains("OpenID Connect provider discovered") && line.contains(&issuer))
            .map(str::to_owned)
    };
    let announced = crate::helpers::lifecycle::eventually(Duration::from_secs(10), || async { line().is_some() }).await;
    assert!(announced, "no discovery line for {issuer}");
    let line = line().unwrap_or_default();
    assert!(line.contains("refresh_tokens=false") && line.contains("revocation=false"), "{line}");
}

#[tokio::test]
async fn a_document_authbridge_cannot_work_with_stops_the_server_with_the_reason() {
    for (document, reason) in [
        (
            r#"{"issuer": "{base}/", "authorization_endpoint": "{base}/authorize", "token_endpoint": "http://auth.example.com/token",
                "jwks_uri": "{base}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}"#,
            "token_endpoint",
        ),
        (
            r#"{"issuer": "{base}/", "authorization_endpoint": "{base}/authorize", "token_endpoint": "{base}/token",
                "jwks_uri": "{base}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"]}"#,
            "HS256",
        ),
        (
            r#"{"issuer": "{base}/", "authorization_endpoint": "{base}/authorize", "token_endpoint": "{base}/token",
                "jwks_uri": "{base}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["plain"]}"#,
            "S256",
        ),
    ] {
        let base = provider_publishing("/.well-known/openid-configuration", document).await;
        let options = OidcAppOptions { wait_until_ready: false, ..OidcAppOptions::default() }
            .var("OIDC_ISSUER", format!("{base}/"));
        let mut app = spawn_oidc_app_with(options).await;
        let stopped = app.stopped_within(Duration::from_secs(10)).await.expect("the server stops by itself");
        let message = stopped.expect_err("with an error").to_string();
        assert!(message.contains(reason), "{reason}: {message}");
    }
}

#[tokio::test]
async fn a_misconfigured_oidc_issuer_fails_the_serve_command_with_one_line() {
    // The binary as an operator runs it, with only OIDC and InsForge variables (no WorkOS one).
    let base = provider_publishing("/.well-known/openid-configuration", DOCUMENT).await;
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_authbridge"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("IDENTITY_PROVIDER", "oidc")
            .env("OIDC_ISSUER", format!("{base}/"))
            .env("OIDC_CLIENT_ID", "client")
            .env("OIDC_CLIENT_SECRET", "a-secret-that-must-not-be-printed")
            .env("OIDC_REDIRECT_URI", "http://localhost:3000/callback")
            .env("SESSION_COOKIE_PASSWORD", "p".repeat(32))
            .env("INSFORGE_URL", "http://127.0.0.1:9")
            .env("INSFORGE_JWT_SECRET", "x".repeat(32))
            .env("RUST_LOG", "off")
            .current_dir(std::env::temp_dir())
            .output(),
    )
    .await
    .expect("it stops by itself")
    .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OIDC_ISSUER") && stderr.contains(&format!("`{base}/realms/acme`")), "{stderr}");
    assert!(!stderr.contains("a-secret-that-must-not-be-printed"));
}

#[tokio::test]
async fn the_app_serves_requests_while_discovery_is_retried() {
    let options = OidcAppOptions { wait_until_ready: false, discovery_failures: 1000, ..OidcAppOptions::default() };
    let app = spawn_oidc_app_with(options).await;
    let retried = crate::helpers::lifecycle::eventually(Duration::from_secs(5), || async {
        app.oidc.calls(Endpoint::Discovery) >= 2
    })
    .await;
    assert!(retried, "retried");
    let logs = crate::helpers::logs::captured();
    assert!(
        logs.lines().any(|line| line.contains("discovery failed; retrying") && line.contains("check OIDC_ISSUER")),
        "what to check, should it last"
    );
    let page = app.browser().get("/").await;
    assert_eq!(page.status, 200, "the signed-out start page still renders: {}", page.body);
    let api = app.browser().api(Method::GET, "/api/me", None).await;
    assert_eq!(api.status, 401);
}

/// Scopes without `email` are allowed (a provider may put it in the ID token anyway), but said at start-up: with a
/// strict provider the users would have no email address.
#[tokio::test]
async fn scopes_without_email_are_warned_about_once_discovered() {
    let options = OidcAppOptions {
        env: vec![("OIDC_SCOPES", "openid profile offline_access".to_owned())],
        ..OidcAppOptions::default()
    };
    let _app = spawn_oidc_app_with(options).await;
    let warned = crate::helpers::lifecycle::eventually(Duration::from_secs(5), || async {
        crate::helpers::logs::captured()
            .lines()
            .any(|line| line.contains("OIDC_SCOPES has no `email`") && line.contains("openid profile offline_access"))
    })
    .await;
    assert!(warned, "the warning names the scopes");
}
