//! Bearer tokens for API clients: a WorkOS access token in `Authorization` works like a session on `/api/*`,
//! and anything that is not a genuine, current, RS256 WorkOS token is refused with 401 `invalid_token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::app::{ALICE, TestApp, spawn_app};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

fn claims(app: &TestApp) -> Value {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
    json!({ "sub": app.user_id(ALICE), "sid": "session_forged", "iat": now, "exp": now + 300 })
}

/// A well-formed RS256 token signed by a key WorkOS never published.
fn signed_by_unknown_key(kid: &str, claims: &Value) -> String {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let signing_input = format!("{}.{}", b64(&json!({"alg": "RS256", "typ": "JWT", "kid": kid})), b64(claims));
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature).expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let response = app.bearer_client(token).get("/api/me").await;
    assert_eq!(response.status, 401, "{why}: {}", response.body);
    assert_eq!(response.error_code(), "invalid_token", "{why}");
    assert_eq!(response.header("www-authenticate").as_deref(), Some(r#"Bearer error="invalid_token""#), "{why}");
}

/// A genuine token past its `exp`: the same code, and RFC 6750's words telling the client to get a new one.
pub fn assert_expired(response: crate::helpers::browser::TestResponse) {
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.error_code(), "invalid_token");
    assert_eq!(response.json()["error"]["message"], "The access token has expired.");
    let challenge = response.header("www-authenticate");
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="The access token expired""#)
    );
}

#[tokio::test]
async fn a_valid_workos_access_token_authenticates_api_calls() {
    let app = spawn_app().await;
    let token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
    let me = app.bearer_client(token).get("/api/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["id"], app.user_id(ALICE));
    assert!(me.set_cookies().is_empty(), "bearer calls never set a session cookie");
}

#[tokio::test]
async fn expired_forged_and_malformed_bearer_tokens_are_refused() {
    crate::helpers::logs::capture();
    let app = spawn_app().await;
    let user = app.user_id(ALICE);
    let now = SystemTime::now();

    let expired =
        app.workos.mint_access_token_with(&user, now - Duration::from_secs(600), now - Duration::from_secs(60));
    assert_expired(app.bearer_client(&expired).get("/api/me").await);
    // Only a genuine token is called expired: a forged one is invalid, whatever its `exp` says.
    let mut expired_claims = claims(&app);
    expired_claims["exp"] = json!(now.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() - 60);
    assert_refused(&app, &signed_by_unknown_key(&app.workos.kid(), &expired_claims), "expired, wrong key").await;

    assert_refused(&app, &signed_by_unknown_key("kid_unknown", &claims(&app)), "unknown kid").await;
    assert_refused(&app, &signed_by_unknown_key(&app.workos.kid(), &claims(&app)), "known kid, wrong key").await;

    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(&app)));
    assert_refused(&app, &none, "alg none").await;

    // The classic confusion attack: HS256 keyed with the server's own public key.
    for public_key in [app.workos.public_key_pem().into_bytes(), app.workos.public_key_der()] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(app.workos.kid());
        let forged = jsonwebtoken::encode(&header, &claims(&app), &jsonwebtoken::EncodingKey::from_secret(&public_key))
            .expect("HS256 encodes");
        assert_refused(&app, &forged, "HS256 with the public key").await;
    }

    let genuine = app.workos.mint_access_token(&user, Duration::from_secs(300));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let tampered_claims = b64(&json!({ "sub": "user_someone_else", "exp": 9_999_999_999u64 }));
    parts[1] = &tampered_claims;
    assert_refused(&app, &parts.join("."), "tampered claims").await;

    assert_refused(&app, "not-a-jwt", "garbage").await;
    let basic = reqwest::Client::new()
        .get(app.base_url.join("/api/me").expect("url"))
        .header("authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 401, "another scheme is not a session");

    // `Authorization` is a single value: with two, a proxy in front may have read the other one, so neither counts,
    // in either order, and whatever the other one's scheme.
    let genuine = format!("Bearer {}", app.workos.mint_access_token(&user, Duration::from_secs(300)));
    let pairs =
        [(genuine.as_str(), "Bearer garbage"), ("Bearer garbage", genuine.as_str()), (genuine.as_str(), "Basic dTpw")];
    for (first, second) in pairs {
        let response = reqwest::Client::new()
            .get(app.base_url.join("/api/me").expect("url"))
            .header("authorization", first)
            .header("authorization", second)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "two Authorization headers, {second:?} second");
        let body: Value = response.json().await.expect("the API's error");
        assert_eq!(body["error"]["code"], "invalid_token", "{second:?} second");
    }
    // The client is told only that the token is invalid; the log says why, for whoever looks into it.
    assert!(crate::helpers::logs::captured().contains("more than one Authorization header"));
}

/// Tokens WorkOS Connect issues to other applications (a third-party OAuth or MCP client, scoped to what the user
/// granted it; a machine's), which name the application in `client_id`, are not sessions of this app: refused, while
/// the same user's session token works, a JWT template's own `scope` claim or not.
#[tokio::test]
async fn workos_connect_tokens_for_other_applications_are_refused() {
    let app = spawn_app().await;
    let connect_claims = [
        json!({ "client_id": "client_third_party", "scope": "openid profile todos:read" }),
        json!({ "client_id": "client_third_party" }),
    ];
    for extra in connect_claims {
        app.workos.set_extra_claims(extra.as_object().cloned().expect("object"));
        let token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
        assert_refused(&app, &token, &format!("a Connect token with {extra}")).await;
    }
    // A session token whose JWT template adds a `scope` claim of its own (for an API gateway) is still a session's.
    for extra in [json!({ "scope": "todos:read" }), json!({})] {
        app.workos.set_extra_claims(extra.as_object().cloned().expect("object"));
        let session_token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
        let me = app.bearer_client(session_token).get("/api/me").await;
        assert_eq!(me.status, 200, "a session's token with {extra}: {}", me.body);
    }
    app.workos.set_extra_claims(serde_json::Map::new());
}

/// Browsers add `Authorization: Basic …` by themselves to every request to a site behind HTTP Basic auth (a staging
/// proxy). Only the `Bearer` scheme is a bearer attempt: with any other, the session cookie decides; a `Bearer`
/// header without a token is still refused, cookie or not.
#[tokio::test]
async fn another_authorization_scheme_leaves_the_session_cookie_in_charge() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let with_authorization =
        |value: &'static str| move |request: reqwest::RequestBuilder| request.header("authorization", value);

    let me = browser.request(Method::GET, "/api/me", with_authorization("Basic dTpw")).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["id"], app.user_id(ALICE));

    for malformed in ["Bearer", "bearer  "] {
        let refused = browser.request(Method::GET, "/api/me", with_authorization(malformed)).await;
        assert_eq!(refused.status, 401, "{malformed:?}: {}", refused.body);
        assert_eq!(refused.error_code(), "invalid_token", "{malformed:?}");
    }
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_but_unknown_keys_cannot_flood_workos() {
    let app = spawn_app().await;
    let user = app.user_id(ALICE);
    let before = app.bearer_client(app.workos.mint_access_token(&user, Duration::from_secs(300))).get("/api/me").await;
    assert_eq!(before.status, 200);

    // WorkOS rotates its key: the first token with the new `kid` makes the app refetch the JWKS, and it verifies.
    app.workos.rotate_signing_key().await.expect("rotation");
    let fetches = app.workos.calls(standins::workos_standin::Endpoint::Jwks);
    let rotated = app.bearer_client(app.workos.mint_access_token(&user, Duration::from_secs(300))).get("/api/me").await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(app.workos.calls(standins::workos_standin::Endpoint::Jwks), fetches + 1);

    // Forged tokens with ever-new `kid`s do not each cost a JWKS fetch: at most one a minute.
    for i in 0..10 {
        assert_refused(&app, &signed_by_unknown_key(&format!("kid_random_{i}"), &claims(&app)), "random kid").await;
    }
    assert_eq!(app.workos.calls(standins::workos_standin::Endpoint::Jwks), fetches + 1, "no refetch within the minute");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_does_not_lock_out_sessions_after_a_key_rotation() {
    let app = spawn_app().await;
    // Forged bearer tokens use up the refetch allowance for untrusted tokens...
    for i in 0..3 {
        assert_refused(&app, &signed_by_unknown_key(&format!("kid_flood_{i}"), &claims(&app)), "flood").await;
    }
    // ...then WorkOS rotates its key, and a real sign-in brings a token with the new kid. It must still verify.
    app.workos.rotate_signing_key().await.expect("rotation");
    let browser = app.signed_in(ALICE).await;
    let me = browser.api(reqwest::Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
}

/// Records the email of the InsForge token each todo insert runs with (what PostgreSQL sees in
/// `request.jwt.claims`), in a table of the test's own.
async fn record_token_emails(app: &TestApp) {
    let mut conn = app.db.connect().await;
    for statement in [
        "CREATE SCHEMA probe",
        "CREATE TABLE probe.token_emails (email text)",
        "CREATE FUNCTION probe.record_email() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
         SET search_path = pg_catalog AS $$ BEGIN \
           INSERT INTO probe.token_emails VALUES (current_setting('request.jwt.claims', true)::json ->> 'email'); \
           RETURN NEW; END $$",
        "CREATE TRIGGER record_email BEFORE INSERT ON public.todos FOR EACH ROW EXECUTE FUNCTION probe.record_email()",
    ] {
        sqlx::query(statement).execute(&mut conn).await.expect(statement);
    }
}

async fn token_emails(app: &TestApp) -> Vec<Option<String>> {
    let mut conn = app.db.connect().await;
    sqlx::query_scalar("SELECT email FROM probe.token_emails").fetch_all(&mut conn).await.expect("emails")
}

#[tokio::test]
async fn a_bearer_tokens_email_comes_from_its_claim_else_from_workos_cached_and_reaches_the_database() {
    use standins::workos_standin::Endpoint;
    let app = spawn_app().await;
    record_token_emails(&app).await;
    let alice = app.user_id(ALICE);

    // A JWT template's `user_email` claim (InsForge's WorkOS guide): no lookup.
    let template = json!({ "user_email": "alice.template@acme.test" });
    app.workos.set_extra_claims(template.as_object().cloned().expect("object"));
    let client = app.bearer_client(app.workos.mint_access_token(&alice, Duration::from_secs(300)));
    assert_eq!(client.get("/api/me").await.json()["email"], "alice.template@acme.test");
    assert_eq!(app.workos.calls(Endpoint::Users), 0);
    let created = client.send(reqwest::Method::POST, "/api/todos", Some(json!({ "title": "from a template" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);

    // No claim: WorkOS's user, looked up once and remembered.
    app.workos.set_extra_claims(serde_json::Map::new());
    let plain = app.bearer_client(app.workos.mint_access_token(&alice, Duration::from_secs(300)));
    assert_eq!(plain.get("/api/me").await.json()["email"], ALICE);
    assert_eq!(plain.get("/api/me").await.json()["email"], ALICE);
    assert_eq!(app.workos.calls(Endpoint::Users), 1, "cached");
    let created = plain.send(reqwest::Method::POST, "/api/todos", Some(json!({ "title": "looked up" }))).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        token_emails(&app).await,
        [Some("alice.template@acme.test".to_owned()), Some(ALICE.to_owned())],
        "the minted InsForge tokens carried the email"
    );
}

#[tokio::test]
async fn a_failing_email_lookup_leaves_it_null_and_never_fails_the_request() {
    use standins::workos_standin::Endpoint;
    let app = spawn_app().await;
    let bob = app.user_id(crate::helpers::app::BOB);
    app.workos.fail_next(Endpoint::Users, 1, 500);
    let client = app.bearer_client(app.workos.mint_access_token(&bob, Duration::from_secs(300)));
    let me = client.get("/api/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["email"], Value::Null);
    // Not remembered: the next request asks again, and gets it.
    assert_eq!(client.get("/api/me").await.json()["email"], crate::helpers::app::BOB);
    app.workos.hang_next(Endpoint::Users, 1);
    let stranger =
        app.bearer_client(app.workos.mint_access_token("user_unknown_to_the_cache", Duration::from_secs(300)));
    let started = std::time::Instant::now();
    assert_eq!(stranger.get("/api/me").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(4), "a hanging WorkOS holds the request for seconds at most");
}

#[tokio::test]
async fn the_email_cache_is_bounded_and_forgets_after_its_lifetime() {
    use authbridge::workos::WorkosClient;
    use authbridge::workos::user_emails::UserEmails;
    use standins::workos_standin::Endpoint;
    let app = spawn_app().await;
    let client = WorkosClient::new(app.config.workos().expect("WorkOS")).expect("client");
    let emails = UserEmails::with_limits(client, Duration::from_millis(300), 2);
    let users: Vec<String> = app.workos.users().into_iter().map(|user| user.id).collect();
    assert_eq!(users.len(), 3);
    for id in &users {
        assert!(emails.email_of(id).await.is_some());
    }
    assert_eq!(emails.cached(), 2, "never more than its capacity");
    let calls = app.workos.calls(Endpoint::Users);
    emails.email_of(&users[2]).await;
    assert_eq!(app.workos.calls(Endpoint::Users), calls, "the newest is remembered");
    tokio::time::sleep(Duration::from_millis(400)).await;
    emails.email_of(&users[2]).await;
    assert_eq!(app.workos.calls(Endpoint::Users), calls + 1, "asked again once the lifetime is over");
    assert_eq!(emails.email_of("user_nobody_knows").await, None, "an unknown user has no email");

    // What was recorded in the database is not written again within the lifetime, unless the address changed.
    assert!(emails.needs_recording("user_a", "a@example.test"));
    emails.recorded("user_a", "a@example.test");
    assert!(!emails.needs_recording("user_a", "a@example.test"), "recorded lately");
    assert!(emails.needs_recording("user_a", "new@example.test"), "a new address is recorded at once");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(emails.needs_recording("user_a", "a@example.test"), "and again once the lifetime is over");
    // Bounded (two here): a full memory drops its expired entries first, and starts afresh only when that is not
    // enough.
    emails.recorded("user_b", "b@example.test");
    emails.recorded("user_c", "c@example.test");
    assert!(!emails.needs_recording("user_b", "b@example.test"), "a live entry outlives an expired one");
    assert!(!emails.needs_recording("user_c", "c@example.test"));
    emails.recorded("user_d", "d@example.test");
    assert!(emails.needs_recording("user_b", "b@example.test"), "full of live entries: started afresh");
    assert!(!emails.needs_recording("user_d", "d@example.test"));
}
