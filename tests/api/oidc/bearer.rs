//! Bearer tokens on `/api/*` with an OpenID Connect provider: JWT access tokens issued for `OIDC_AUDIENCE`, checked
//! against the provider's keys, `iss` and `aud`; anything else is 401 with `WWW-Authenticate`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use standins::oidc_standin::{Endpoint, OidcStandInOptions};

use crate::helpers::app::{ALICE, BOB};
use crate::helpers::oidc::{OidcApp, OidcAppOptions, spawn_oidc_app, spawn_oidc_app_with};
use crate::helpers::session::read_session;

fn now() -> i64 {
    authbridge::session::unix_now() as i64
}

/// Access-token claims as Auth0 issues them, for `subject`.
fn claims(app: &OidcApp, subject: &str) -> Value {
    json!({
        "iss": app.oidc.issuer().as_str(),
        "sub": subject,
        "aud": [app.oidc.audience(), format!("{}userinfo", app.oidc.issuer())],
        "azp": app.oidc.client_id(),
        "scope": "openid profile email",
        "iat": now(),
        "exp": now() + 300,
    })
}

async fn assert_refused(app: &OidcApp, token: &str, what: &str) {
    let response = app.bearer_client(token).get("/api/todos").await;
    assert_eq!(response.status, 401, "{what}: {}", response.body);
    assert_eq!(response.error_code(), "invalid_token", "{what}");
    assert_eq!(response.header("www-authenticate").as_deref(), Some(r#"Bearer error="invalid_token""#), "{what}");
}

#[tokio::test]
async fn access_tokens_for_the_api_work_and_each_user_sees_only_their_own_todos() {
    let app = spawn_oidc_app().await;
    let alice = app.bearer_client(app.oidc.mint_access_token(&app.subject(ALICE), Duration::from_secs(300)));
    let bob = app.bearer_client(app.oidc.mint_access_token(&app.subject(BOB), Duration::from_secs(300)));

    let created = alice.send(Method::POST, "/api/todos", Some(json!({ "title": "Alice's, by curl" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!("/api/todos/{}", created.json()["id"].as_str().expect("id"));
    assert_eq!(alice.get(&path).await.status, 200);
    assert_eq!(bob.get(&path).await.status, 404, "RLS hides Alice's todo from Bob");
    assert_eq!(bob.get("/api/todos").await.json()["todos"], json!([]));
    let me = alice.get("/api/me").await.json();
    assert_eq!(me["id"], "auth0|standin-alice");
    assert!(me["email"].is_null(), "access tokens carry no email");
}

/// A machine-to-machine token (the client-credentials grant) names a client, not a person: it never becomes a
/// database user, however it is marked.
#[tokio::test]
async fn tokens_a_client_got_for_itself_are_refused() {
    let app = spawn_oidc_app().await;
    let client_id = app.oidc.client_id().to_owned();
    // Auth0's: `sub` is `<client id>@clients`, `gty` says how it was granted.
    let mut auth0 = claims(&app, &format!("{client_id}@clients"));
    auth0["gty"] = Value::from("client-credentials");
    // Okta's: `sub` and `cid` are the client id.
    let mut okta = claims(&app, &client_id);
    okta["cid"] = Value::from(client_id.as_str());
    okta.as_object_mut().expect("object").remove("azp");
    // RFC 9068 §2.2: `sub` is the client, `client_id` too (no `azp`, so only that check can refuse it).
    let mut rfc = claims(&app, &client_id);
    rfc["client_id"] = Value::from(client_id.as_str());
    rfc.as_object_mut().expect("object").remove("azp");
    // Auth0's RFC 9068 profile: the same `sub`, the client id in `client_id`, and no `gty`.
    let mut auth0_rfc = claims(&app, &format!("{client_id}@clients"));
    auth0_rfc["client_id"] = Value::from(client_id.as_str());
    auth0_rfc.as_object_mut().expect("object").remove("azp");
    // Microsoft Entra's app-only tokens, when the API asks for `idtyp`.
    let mut entra = claims(&app, "9f2c1c0e-app-object-id");
    entra["idtyp"] = Value::from("app");
    for (what, claims) in [("Auth0", auth0), ("Okta", okta), ("RFC 9068", rfc), ("Entra", entra)] {
        assert_refused(&app, &app.oidc.sign("JWT", claims), what).await;
    }
    assert_refused(&app, &app.oidc.sign("at+jwt", auth0_rfc), "Auth0, RFC 9068 profile").await;
    // A person's token from the same client passes (its `sub` is the user, `azp` the client).
    let person = app.oidc.sign("JWT", claims(&app, &app.subject(ALICE)));
    assert_eq!(app.bearer_client(person).get("/api/me").await.status, 200);
}

/// Okta puts the user's login in an access token's `sub` and their id, the ID token's `sub`, in `uid`: the bearer
/// token is the same user as the cookie session, so they see the same todos. An empty `sub` names no one.
#[tokio::test]
async fn an_okta_token_is_its_uid_and_an_empty_sub_is_refused() {
    let options =
        OidcAppOptions { oidc: OidcStandInOptions { okta_paths: true, ..Default::default() }, ..Default::default() };
    let app = spawn_oidc_app_with(options).await;
    let alice = app.subject(ALICE);
    let browser = app.browser();
    assert_eq!(browser.sign_in(ALICE).await.status, 302);
    let created = browser.api(Method::POST, "/api/todos", Some(json!({ "title": "From the browser" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);

    let mut okta = claims(&app, "alice@example.test");
    okta["cid"] = Value::from(app.oidc.client_id());
    okta["uid"] = Value::from(alice.as_str());
    okta.as_object_mut().expect("object").remove("azp");
    let client = app.bearer_client(app.oidc.sign("JWT", okta));
    assert_eq!(client.get("/api/me").await.json()["id"], alice.as_str());
    let listed = client.get("/api/todos").await.json();
    assert_eq!(listed["todos"][0]["title"], "From the browser", "{listed}");

    // `uid` means Okta's user id only beside Okta's `cid`.
    let mut other = claims(&app, &alice);
    other["uid"] = Value::from("someone-else");
    assert_eq!(app.bearer_client(app.oidc.sign("JWT", other)).get("/api/me").await.json()["id"], alice.as_str());

    assert_refused(&app, &app.oidc.sign("JWT", claims(&app, "")), "an empty sub").await;
    let mut no_sub = claims(&app, "");
    no_sub["cid"] = Value::from("spa-client");
    no_sub["uid"] = Value::from(alice.as_str());
    assert_refused(&app, &app.oidc.sign("JWT", no_sub), "an empty sub beside a uid").await;
}

/// To any provider but Okta, `cid` and `uid` are custom claims like any other (a tenant may add a customer id and
/// a legacy user id, even from data its users edit): the user is `sub`, whatever they say.
#[tokio::test]
async fn outside_okta_uid_never_names_the_user() {
    let app = spawn_oidc_app().await;
    let mut custom = claims(&app, &app.subject(BOB));
    custom["cid"] = Value::from("acme-corp");
    custom["uid"] = Value::from(app.subject(ALICE));
    let me = app.bearer_client(app.oidc.sign("JWT", custom)).get("/api/me").await;
    assert_eq!(me.json()["id"], app.subject(BOB).as_str(), "{}", me.body);
}

/// Keycloak before version 25 puts the sign-in's `nonce` in access tokens too: with the API's audience (not the
/// client id) such a token is a person's access token. A `nonce` beside our client id in `aud` is an ID token.
#[tokio::test]
async fn a_nonce_marks_an_id_token_only_beside_the_client_id() {
    let app = spawn_oidc_app().await;
    let mut keycloak = claims(&app, &app.subject(ALICE));
    keycloak["nonce"] = Value::from("n-0S6_WzA2Mj");
    let accepted = app.bearer_client(app.oidc.sign("JWT", keycloak.clone())).get("/api/me").await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    keycloak["aud"] = json!([app.oidc.audience(), app.oidc.client_id()]);
    assert_refused(&app, &app.oidc.sign("JWT", keycloak), "a nonce, for the API and the client").await;
}

/// Why a bearer token was refused is logged with the request, at the default level, so an operator can tell a
/// wrong audience from an expired token; the client is told only that it is invalid.
#[tokio::test]
async fn why_a_bearer_token_was_refused_is_logged_with_the_request() {
    crate::helpers::logs::capture();
    let app = spawn_oidc_app().await;
    let mut other_api = claims(&app, &app.subject(ALICE));
    other_api["aud"] = Value::from("https://another.example/api");
    let response = app.bearer_client(app.oidc.sign("JWT", other_api)).get("/api/me").await;
    assert_eq!(response.status, 401);
    let request_id = response.header("x-request-id").expect("every answer carries a request id");
    let line = crate::helpers::logs::logged(&request_id, "INFO", "bearer token refused").await;
    let line = line.expect("the refusal is logged at info");
    assert!(line.contains("it is not for this API (aud)"), "{line}");
    assert!(!response.body.contains("aud"), "the client is not told: {}", response.body);
}

#[tokio::test]
async fn aud_may_be_a_string_or_an_array_and_typ_jwt_at_jwt_or_absent() {
    let app = spawn_oidc_app().await;
    let subject = app.subject(ALICE);
    let mut as_string = claims(&app, &subject);
    as_string["aud"] = Value::from(app.oidc.audience());
    for (typ, claims) in [("JWT", claims(&app, &subject)), ("JWT", as_string), ("at+jwt", claims(&app, &subject))] {
        let token = app.oidc.sign(typ, claims.clone());
        let response = app.bearer_client(token).get("/api/me").await;
        assert_eq!(response.status, 200, "typ {typ}, aud {}: {}", claims["aud"], response.body);
    }
    // No `typ` at all, as Okta's authorization servers issue them (a JWS may leave it out).
    let untyped = app.oidc.sign_with_header(json!({ "alg": "RS256", "kid": app.oidc.kid() }), claims(&app, &subject));
    let response = app.bearer_client(untyped).get("/api/me").await;
    assert_eq!(response.status, 200, "no typ: {}", response.body);

    // The RFC 9068 profile end to end: the provider issues `at+jwt` access tokens.
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { access_token_typ: "at+jwt", ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let token = app.oidc.mint_access_token(&app.subject(ALICE), Duration::from_secs(60));
    assert_eq!(app.bearer_client(token).get("/api/me").await.status, 200);
}

#[tokio::test]
async fn wrong_audience_id_tokens_opaque_and_forged_tokens_are_refused_with_401() {
    let app = spawn_oidc_app().await;
    let subject = app.subject(ALICE);

    let other_api = app.oidc.mint_access_token_for(&subject, "https://another-api.example/", Duration::from_secs(60));
    assert_refused(&app, &other_api, "another API's access token").await;

    let browser = app.signed_in(ALICE).await;
    let session = read_session(&browser);
    assert_refused(&app, &session.oidc.expect("oidc").id_token, "an ID token").await;

    // The access token of a sign-in without an audience is opaque: only the provider's userinfo takes it.
    let no_audience = spawn_oidc_app_with(OidcAppOptions::default().var("OIDC_AUDIENCE", "")).await;
    let opaque_holder = no_audience.signed_in(ALICE).await;
    let opaque = read_session(&opaque_holder).access_token;
    assert!(opaque.starts_with("opaque."), "{opaque}");
    assert_refused(&app, &opaque, "an opaque access token").await;
    assert_refused(&no_audience, &opaque, "an opaque access token, no OIDC_AUDIENCE").await;
    let jwt = no_audience.oidc.mint_access_token(&subject, Duration::from_secs(60));
    assert_refused(&no_audience, &jwt, "any JWT when no OIDC_AUDIENCE is configured").await;

    let mut wrong_issuer = claims(&app, &subject);
    wrong_issuer["iss"] = Value::from("https://someone-else.example/");
    assert_refused(&app, &app.oidc.sign("JWT", wrong_issuer), "another issuer").await;

    let mut expired = claims(&app, &subject);
    expired["exp"] = Value::from(now() - 60);
    let expired = app.oidc.sign("JWT", expired);
    crate::bearer::assert_expired(app.bearer_client(&expired).get("/api/todos").await);
    // Only a genuine token is called expired: with another token's signature, it is invalid.
    let other_signature = app.oidc.sign("JWT", claims(&app, &subject));
    let (signed, _) = expired.rsplit_once('.').expect("a JWS");
    let (_, signature) = other_signature.rsplit_once('.').expect("a JWS");
    assert_refused(&app, &format!("{signed}.{signature}"), "expired, with a signature that does not match").await;
    // Nor one that would be refused anyway: a new token would not help.
    let mut expired_elsewhere = claims(&app, &subject);
    expired_elsewhere["exp"] = Value::from(now() - 60);
    expired_elsewhere["aud"] = Value::from("https://another-api.example/");
    assert_refused(&app, &app.oidc.sign("JWT", expired_elsewhere), "expired, and for another API").await;

    let mut not_yet = claims(&app, &subject);
    not_yet["nbf"] = Value::from(now() + 3600);
    assert_refused(&app, &app.oidc.sign("JWT", not_yet), "not valid before an hour from now (nbf)").await;
    let mut valid_since = claims(&app, &subject);
    valid_since["nbf"] = Value::from(now() - 10);
    let accepted = app.bearer_client(app.oidc.sign("JWT", valid_since)).get("/api/todos").await;
    assert_eq!(accepted.status, 200, "an nbf in the past: {}", accepted.body);

    let mut no_aud = claims(&app, &subject);
    no_aud.as_object_mut().expect("object").remove("aud");
    assert_refused(&app, &app.oidc.sign("JWT", no_aud), "no aud").await;

    // (A `nonce` alone is no ID token: `a_nonce_marks_an_id_token_only_beside_the_client_id`.)

    assert_refused(&app, &app.oidc.sign("id_token+jwt", claims(&app, &subject)), "typ not JWT/at+jwt").await;

    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"));
    let payload = encode(&claims(&app, &subject));
    let none = format!("{}.{payload}.", encode(&json!({ "alg": "none", "typ": "JWT" })));
    assert_refused(&app, &none, "alg none").await;

    let header = encode(&json!({ "alg": "HS256", "typ": "JWT", "kid": app.oidc.kid() }));
    let input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, app.oidc.public_key_pem().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let hs256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_refused(&app, &hs256, "HS256 signed with the public key").await;

    let genuine = app.oidc.mint_access_token(&subject, Duration::from_secs(60));
    let tampered = format!("{}x", &genuine[..genuine.len() - 1]);
    assert_refused(&app, &tampered, "a tampered signature").await;
    assert_refused(&app, "not-a-jwt", "garbage").await;
}

#[tokio::test]
async fn unknown_kids_in_bearer_tokens_refetch_the_keys_at_most_once_a_minute() {
    let app = spawn_oidc_app().await;
    let subject = app.subject(ALICE);
    let fetches = app.oidc.calls(Endpoint::Jwks);
    app.oidc.rotate_signing_key().await.expect("a new key");

    // A genuine token with the new key: one fetch, accepted.
    let rotated = app.oidc.mint_access_token(&subject, Duration::from_secs(60));
    assert_eq!(app.bearer_client(rotated).get("/api/me").await.status, 200);
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1);

    // Forged kids right after: no more fetches, just 401.
    for i in 0..5 {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": format!("forged-{i}") });
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&app, &subject)).expect("json"));
        let token = format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json")));
        assert_refused(&app, &token, "an unknown kid").await;
    }
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1, "forged kids cost the provider nothing");
}

/// Verify once: a bearer token is remembered after its first full check, but only while the key that signed it is
/// published unchanged. When the provider withdraws that key, or publishes another under the same `kid`, the next
/// fetch of its keys (here, caused by a genuine token signed with a newer key) forgets the token: it is refused from
/// then on, not answered from memory.
#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_is_withdrawn_or_replaced() {
    let app = spawn_oidc_app().await;
    let subject = app.subject(ALICE);

    // Withdrawn: two rotations, and the key that signed the token is no longer published.
    let token = app.oidc.mint_access_token(&subject, Duration::from_secs(300));
    assert_eq!(app.bearer_client(&token).get("/api/me").await.status, 200, "verified, and remembered");
    assert_eq!(app.bearer_client(&token).get("/api/me").await.status, 200, "answered from memory");
    app.oidc.rotate_signing_key().await.expect("a new key");
    app.oidc.rotate_signing_key().await.expect("another new key");
    let fresh = app.oidc.mint_access_token(&subject, Duration::from_secs(300));
    let fetches = app.oidc.calls(Endpoint::Jwks);
    assert_eq!(app.bearer_client(&fresh).get("/api/me").await.status, 200, "the newest key is fetched");
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1);
    assert_refused(&app, &token, "a remembered token whose key was withdrawn").await;

    // Replaced: the same `kid` now names another key.
    let app = spawn_oidc_app().await;
    let subject = app.subject(ALICE);
    let token = app.oidc.mint_access_token(&subject, Duration::from_secs(300));
    assert_eq!(app.bearer_client(&token).get("/api/me").await.status, 200, "verified, and remembered");
    app.oidc.replace_signing_key_keeping_kid().await.expect("replaced");
    app.oidc.rotate_signing_key().await.expect("a new key");
    let fresh = app.oidc.mint_access_token(&subject, Duration::from_secs(300));
    assert_eq!(app.bearer_client(&fresh).get("/api/me").await.status, 200, "the newest key is fetched");
    assert_refused(&app, &token, "a remembered token whose key was replaced under its kid").await;
}
