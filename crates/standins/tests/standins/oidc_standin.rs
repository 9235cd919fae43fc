//! The OIDC stand-in behaves like a strict OpenID Connect provider shaped like an Auth0 tenant, over real HTTP:
//! discovery, JWKS and rotation, authorize (refusals, the sign-in page), the token endpoint (client
//! authentication, single-use codes with PKCE, rotating refresh tokens with reuse detection), userinfo, logout,
//! revocation, and the rule-breaking ID tokens other suites rely on.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use standins::oidc_standin::{
    ClientAuth, ClientAuthMethods, Endpoint, IdTokenFault, OidcStandIn, OidcStandInOptions, RefreshIdToken,
};
use url::Url;

const REDIRECT_URI: &str = "http://localhost:3000/callback";
const ALICE: &str = "alice@acme.test";

async fn start() -> OidcStandIn {
    start_with(OidcStandInOptions::default()).await
}

async fn start_with(options: OidcStandInOptions) -> OidcStandIn {
    let options = OidcStandInOptions { redirect_uris: vec![Url::parse(REDIRECT_URI).expect("url")], ..options };
    OidcStandIn::start(options).await.expect("the stand-in starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn url(oidc: &OidcStandIn, path: &str) -> Url {
    oidc.issuer().join(path).expect("url")
}

const VERIFIER: &str = "a-pkce-code-verifier-of-enough-length-0123456789";

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, VERIFIER.as_bytes()))
}

/// The authorize URL a relying party sends, then `overrides` (an empty value removes a parameter).
fn authorize_url(oidc: &OidcStandIn, overrides: &[(&str, &str)]) -> Url {
    let challenge = challenge();
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", oidc.client_id()),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile email offline_access"),
        ("state", "the-state"),
        ("nonce", "the-nonce"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("login_hint", ALICE),
    ];
    for (name, value) in overrides {
        params.retain(|(existing, _)| existing != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let mut url = url(oidc, "authorize");
    url.query_pairs_mut().extend_pairs(params);
    url
}

fn query(location: &str) -> HashMap<String, String> {
    Url::parse(location).expect("url").query_pairs().into_owned().collect()
}

/// A code for Alice (the login hint skips the page).
async fn code(oidc: &OidcStandIn, overrides: &[(&str, &str)]) -> String {
    let response = client().get(authorize_url(oidc, overrides)).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().expect("ascii").to_owned();
    let params = query(&location);
    assert_eq!(params.get("state").map(String::as_str), Some("the-state"));
    params.get("code").cloned().unwrap_or_else(|| panic!("a code: {location}"))
}

async fn token(oidc: &OidcStandIn, form: &[(&str, &str)], basic: bool) -> (StatusCode, Value) {
    let mut request = client().post(url(oidc, "oauth/token"));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    if basic {
        request = request.basic_auth(oidc.client_id(), Some(oidc.client_secret().expose()));
    } else {
        form.push(("client_id", oidc.client_id()));
        form.push(("client_secret", oidc.client_secret().expose()));
    }
    let response = request.form(&form).send().await.expect("answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(oidc: &OidcStandIn, code: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    token(oidc, &form, true).await
}

async fn refresh(oidc: &OidcStandIn, refresh_token: &str) -> (StatusCode, Value) {
    token(oidc, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)], true).await
}

fn header(jwt: &str) -> Value {
    let part = jwt.split('.').next().expect("a header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

/// Verifies `jwt` against the published JWKS, as a relying party would.
async fn verify(oidc: &OidcStandIn, jwt: &str, audience: &str) -> Value {
    let jwks: JwkSet =
        client().get(url(oidc, ".well-known/jwks.json")).send().await.expect("jwks").json().await.expect("json");
    let kid = header(jwt)["kid"].as_str().expect("kid").to_owned();
    let jwk = jwks.find(&kid).expect("the kid is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[oidc.issuer().as_str()]);
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).expect("key"), &validation).expect("verifies").claims
}

#[tokio::test]
async fn discovery_publishes_an_auth0_shaped_document() {
    let oidc = start().await;
    let document: Value = client()
        .get(url(&oidc, ".well-known/openid-configuration"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(document["issuer"], oidc.issuer().as_str());
    assert!(oidc.issuer().as_str().ends_with('/'), "Auth0's issuers end with a slash");
    assert_eq!(document["token_endpoint"], url(&oidc, "oauth/token").as_str());
    assert_eq!(document["end_session_endpoint"], url(&oidc, "oidc/logout").as_str());
    assert_eq!(document["revocation_endpoint"], url(&oidc, "oauth/revoke").as_str());
    assert_eq!(document["id_token_signing_alg_values_supported"], serde_json::json!(["HS256", "RS256", "PS256"]));
    assert!(document.get("mfa_challenge_endpoint").is_none());
    assert_eq!(client().get(url(&oidc, "v2/logout")).send().await.expect("answers").status(), StatusCode::NOT_FOUND);

    let auth0 = start_with(OidcStandInOptions {
        end_session_endpoint: false,
        auth0_logout: true,
        client_auth_methods: ClientAuthMethods::PostOnly,
        application_auth: ClientAuth::Post,
        ..OidcStandInOptions::default()
    })
    .await;
    let document: Value = client()
        .get(url(&auth0, ".well-known/openid-configuration"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert!(document.get("end_session_endpoint").is_none());
    assert!(document["mfa_challenge_endpoint"].is_string());
    assert_eq!(document["token_endpoint_auth_methods_supported"], serde_json::json!(["client_secret_post"]));
}

#[tokio::test]
async fn the_code_flow_issues_verifiable_tokens_with_the_nonce() {
    let oidc = start().await;
    let first = code(&oidc, &[]).await;
    let (status, answer) = exchange(&oidc, &first).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 300);

    let id_token = answer["id_token"].as_str().expect("an ID token");
    let claims = verify(&oidc, id_token, oidc.client_id()).await;
    assert_eq!(claims["sub"], "auth0|standin-alice");
    assert_eq!(claims["nonce"], "the-nonce");
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["updated_at"], "2024-01-01T00:00:00.000Z", "a string, as Auth0 sends it");
    assert!(claims["sid"].is_string());

    // With an audience, the access token is a JWT for the API (and userinfo); without, it is opaque.
    let api_code = code_for_audience(&oidc).await;
    let (_, answer) = exchange(&oidc, &api_code).await;
    let access = answer["access_token"].as_str().expect("access token");
    let claims = verify(&oidc, access, oidc.audience()).await;
    assert_eq!(claims["aud"][1], url(&oidc, "userinfo").as_str());
    assert_eq!(header(access)["typ"], "JWT");
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    assert!(answer["access_token"].as_str().expect("access token").starts_with("opaque."));
}

async fn code_for_audience(oidc: &OidcStandIn) -> String {
    let audience = oidc.audience().to_owned();
    code(oidc, &[("audience", &audience), ("resource", &audience)]).await
}

#[tokio::test]
async fn authorize_refuses_what_a_strict_provider_refuses() {
    let oidc = start().await;
    for (overrides, expected) in [
        (vec![("scope", "profile email")], "invalid_scope"),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("audience", "https://unknown.example/")], "access_denied"),
    ] {
        let response = client().get(authorize_url(&oidc, &overrides)).send().await.expect("answers");
        assert_eq!(response.status(), StatusCode::FOUND, "{overrides:?}");
        let params = query(response.headers()[LOCATION].to_str().expect("ascii"));
        assert_eq!(params.get("error").map(String::as_str), Some(expected), "{overrides:?}");
        assert_eq!(params.get("state").map(String::as_str), Some("the-state"));
    }
    // Until the client and redirect URI are trusted, a page, never a redirect.
    for overrides in [vec![("client_id", "someone-else")], vec![("redirect_uri", "http://localhost:3000/other")]] {
        let response = client().get(authorize_url(&oidc, &overrides)).send().await.expect("answers");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{overrides:?}");
        assert!(response.headers().get(LOCATION).is_none());
    }
    // An unknown hint shows the sign-in page (sign-up flavoured with Auth0's screen_hint).
    let page = client()
        .get(authorize_url(&oidc, &[("login_hint", ""), ("screen_hint", "signup")]))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.expect("html");
    assert!(body.contains("Sign up") && body.contains("Alice Anderson") && body.contains("bob@acme.test"), "{body}");
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_their_redirect_uri_and_verifier() {
    let oidc = start().await;
    let first = code(&oidc, &[]).await;
    assert_eq!(exchange(&oidc, &first).await.0, StatusCode::OK);
    let (status, body) = exchange(&oidc, &first).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Auth0 answers invalid_grant with 403");
    assert_eq!(body["error"], "invalid_grant");

    let second = code(&oidc, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", second.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", "wrong"),
    ];
    assert_eq!(token(&oidc, &form, true).await.1["error"], "invalid_grant");
    let third = code(&oidc, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", third.as_str()),
        ("redirect_uri", "http://localhost:3000/elsewhere"),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(token(&oidc, &form, true).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn the_client_authenticates_by_the_method_its_application_is_set_to() {
    // Auth0 lists both methods and enforces the application's: Basic here (the default), Post on `post`.
    let oidc = start().await;
    let post =
        start_with(OidcStandInOptions { application_auth: ClientAuth::Post, ..OidcStandInOptions::default() }).await;
    for (stand_in, basic, expected) in [
        (&oidc, true, StatusCode::OK),
        (&oidc, false, StatusCode::UNAUTHORIZED),
        (&post, false, StatusCode::OK),
        (&post, true, StatusCode::UNAUTHORIZED),
    ] {
        let code = code(stand_in, &[]).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ];
        let (status, body) = token(stand_in, &form, basic).await;
        assert_eq!(status, expected, "Basic: {basic}, {body}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!((&body["error"], &body["error_description"]), (&json!("access_denied"), &json!("Unauthorized")));
        }
    }

    let wrong = client()
        .post(url(&oidc, "oauth/token"))
        .basic_auth(oidc.client_id(), Some("not-the-secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json::<Value>().await.expect("json")["error"], "access_denied", "as Auth0 answers a wrong secret");

    let both = client()
        .post(url(&oidc, "oauth/token"))
        .basic_auth(oidc.client_id(), Some(oidc.client_secret().expose()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", oidc.client_id()),
            ("client_secret", oidc.client_secret().expose()),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(both.status(), StatusCode::BAD_REQUEST, "one method at a time");

    // RFC 6749 §2.3.1: the Basic credentials are form-encoded first, so odd characters survive.
    let odd = start_with(OidcStandInOptions {
        client_secret: standins::StandInSecret::new("s3cr3t/with+odd:chars"),
        ..OidcStandInOptions::default()
    })
    .await;
    let odd_code = code(&odd, &[]).await;
    let encoded = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encoded(odd.client_id()), encoded("s3cr3t/with+odd:chars")));
    let response = client()
        .post(url(&odd, "oauth/token"))
        .header("authorization", format!("Basic {credentials}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", odd_code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);

    let post_only = start_with(OidcStandInOptions {
        client_auth_methods: ClientAuthMethods::PostOnly,
        application_auth: ClientAuth::Post,
        ..OidcStandInOptions::default()
    })
    .await;
    let post_code = code(&post_only, &[]).await;
    assert_eq!(exchange(&post_only, &post_code).await.0, StatusCode::UNAUTHORIZED, "Basic is not listed, so refused");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let oidc = start().await;
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let first = answer["refresh_token"].as_str().expect("offline_access gives a refresh token").to_owned();
    let (status, answer) = refresh(&oidc, &first).await;
    assert_eq!(status, StatusCode::OK);
    let second = answer["refresh_token"].as_str().expect("a new one").to_owned();
    assert_ne!(first, second);
    assert_eq!(payload(answer["id_token"].as_str().expect("an ID token"))["nonce"], "the-nonce");

    let (status, body) = refresh(&oidc, &first).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        serde_json::json!({ "error": "invalid_grant", "error_description": "Unknown or invalid refresh token." })
    );
    assert_eq!(oidc.reuse_detections(), 1);
    assert_eq!(refresh(&oidc, &second).await.0, StatusCode::FORBIDDEN, "the whole family is revoked");

    oidc.set_refresh_id_token(RefreshIdToken::WithoutNonce);
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let (_, answer) = refresh(&oidc, answer["refresh_token"].as_str().expect("rt")).await;
    assert!(payload(answer["id_token"].as_str().expect("an ID token")).get("nonce").is_none());
    oidc.set_refresh_id_token(RefreshIdToken::Absent);
    let (_, answer) = refresh(&oidc, answer["refresh_token"].as_str().expect("rt")).await;
    assert!(answer.get("id_token").is_none());

    // No offline_access, or refresh tokens off: none is issued.
    let (_, answer) = exchange(&oidc, &code(&oidc, &[("scope", "openid profile email")]).await).await;
    assert!(answer.get("refresh_token").is_none());
}

#[tokio::test]
async fn revocation_ends_the_refresh_token() {
    // As an Auth0 tenant, `client_id` is required in the body, Basic authentication or not.
    let oidc = start_with(OidcStandInOptions { auth0_logout: true, ..OidcStandInOptions::default() }).await;
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let refresh_token = answer["refresh_token"].as_str().expect("rt").to_owned();
    assert_eq!(revoke(&oidc, &refresh_token, None).await, StatusCode::BAD_REQUEST);
    assert_eq!(oidc.revocations(), 0);
    assert_eq!(revoke(&oidc, &refresh_token, Some(oidc.client_id())).await, StatusCode::OK);
    assert_eq!(refresh(&oidc, &refresh_token).await.0, StatusCode::FORBIDDEN);
    assert_eq!(oidc.revocations(), 1);

    // As Okta, naming the client twice (Basic and the body) is refused; Basic alone works.
    let oidc = start_with(OidcStandInOptions { okta_paths: true, ..OidcStandInOptions::default() }).await;
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let refresh_token = answer["refresh_token"].as_str().expect("rt").to_owned();
    assert_eq!(revoke(&oidc, &refresh_token, Some(oidc.client_id())).await, StatusCode::UNAUTHORIZED);
    assert_eq!(revoke(&oidc, &refresh_token, None).await, StatusCode::OK);
    assert_eq!(oidc.revocations(), 1);
}

/// `POST /oauth/revoke` for `token` with Basic client authentication, `client_id` in the body when given.
async fn revoke(oidc: &OidcStandIn, token: &str, client_id: Option<&str>) -> StatusCode {
    let mut form = vec![("token", token), ("token_type_hint", "refresh_token")];
    form.extend(client_id.map(|id| ("client_id", id)));
    let request =
        client().post(url(oidc, "oauth/revoke")).basic_auth(oidc.client_id(), Some(oidc.client_secret().expose()));
    request.form(&form).send().await.expect("answers").status()
}

#[tokio::test]
async fn userinfo_answers_for_a_live_access_token_only() {
    let oidc = start().await;
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let opaque = answer["access_token"].as_str().expect("at");
    let info: Value = client()
        .get(url(&oidc, "userinfo"))
        .bearer_auth(opaque)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(info["sub"], "auth0|standin-alice");
    assert_eq!(info["email"], ALICE);
    let jwt = oidc.mint_access_token("auth0|standin-bob", Duration::from_secs(60));
    let info: Value = client()
        .get(url(&oidc, "userinfo"))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(info["given_name"], "Bob");

    let refused = client().get(url(&oidc, "userinfo")).bearer_auth("opaque.forged").send().await.expect("answers");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key(WWW_AUTHENTICATE));
}

#[tokio::test]
async fn end_session_needs_a_genuine_hint_and_a_registered_return_address() {
    let oidc = start().await;
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    let id_token = answer["id_token"].as_str().expect("id token");
    let logout = |hint: &str, back: &str| {
        let mut url = url(&oidc, "oidc/logout");
        url.query_pairs_mut().append_pair("id_token_hint", hint).append_pair("post_logout_redirect_uri", back);
        url
    };
    let response = client().get(logout(id_token, "http://localhost:3000/")).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], "http://localhost:3000/");
    assert_eq!(oidc.ended_sessions(), [payload(id_token)["sid"].as_str().expect("sid").to_owned()]);

    let elsewhere = client().get(logout(id_token, "https://evil.example/")).send().await.expect("answers");
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert!(elsewhere.headers().get(LOCATION).is_none());
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    assert_eq!(
        client().get(logout(&forged, "http://localhost:3000/")).send().await.expect("answers").status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn rule_breaking_id_tokens_break_exactly_their_rule() {
    let oidc = start().await;
    let mut issued = HashMap::new();
    for fault in [
        IdTokenFault::WrongIssuer,
        IdTokenFault::WrongAudience,
        IdTokenFault::RepeatedAudience,
        IdTokenFault::WrongAuthorizedParty,
        IdTokenFault::AuthorizedPartyIsTheClient,
        IdTokenFault::MissingNonce,
        IdTokenFault::WrongNonce,
        IdTokenFault::Expired,
        IdTokenFault::ExpiredWithinSkew,
        IdTokenFault::IssuedWithinSkew,
        IdTokenFault::AlgNone,
        IdTokenFault::Hs256WithPublicKey,
        IdTokenFault::UnknownKey,
        IdTokenFault::AccessTokenType,
    ] {
        oidc.tamper_next_id_token(fault);
        let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
        issued.insert(format!("{fault:?}"), answer["id_token"].as_str().expect("an ID token").to_owned());
    }
    let claims = |fault: &str| payload(&issued[fault]);
    assert_ne!(claims("WrongIssuer")["iss"], oidc.issuer().as_str());
    assert_eq!(claims("WrongAudience")["aud"], "another-client");
    assert_eq!(claims("RepeatedAudience")["aud"], json!([oidc.client_id(), oidc.client_id()]));
    assert!(claims("RepeatedAudience").get("azp").is_none());
    assert_eq!(claims("WrongAuthorizedParty")["azp"], "another-client");
    assert_eq!(claims("AuthorizedPartyIsTheClient")["azp"], oidc.client_id());
    assert!(claims("WrongNonce").get("azp").is_none(), "no azp unless asked for");
    assert!(claims("MissingNonce").get("nonce").is_none());
    assert_eq!(claims("WrongNonce")["nonce"], "not-the-nonce-of-this-sign-in");
    assert!(claims("Expired")["exp"].as_i64().expect("exp") < claims("WrongNonce")["iat"].as_i64().expect("iat"));
    let seconds = |fault: &str, claim: &str| claims(fault)[claim].as_i64().expect("a time");
    let now = seconds("WrongNonce", "iat");
    assert!((25..=35).contains(&(now - seconds("ExpiredWithinSkew", "exp"))), "expired half a minute ago");
    assert!((25..=35).contains(&(seconds("IssuedWithinSkew", "iat") - now)), "issued half a minute ahead");
    assert_eq!(header(&issued["AlgNone"])["alg"], "none");
    assert!(issued["AlgNone"].ends_with('.'), "no signature");
    assert_eq!(header(&issued["Hs256WithPublicKey"])["alg"], "HS256");
    assert_eq!(header(&issued["Hs256WithPublicKey"])["kid"], oidc.kid().as_str());
    assert_ne!(header(&issued["UnknownKey"])["kid"], oidc.kid().as_str());
    assert_eq!(header(&issued["AccessTokenType"])["typ"], "at+jwt");
    // Only the next token is broken.
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    verify(&oidc, answer["id_token"].as_str().expect("id token"), oidc.client_id()).await;
}

#[tokio::test]
async fn rotation_publishes_the_new_key_and_the_previous_one() {
    let oidc = start().await;
    let before = oidc.kid();
    oidc.rotate_signing_key().await.expect("rotates");
    let jwks: JwkSet =
        client().get(url(&oidc, ".well-known/jwks.json")).send().await.expect("jwks").json().await.expect("json");
    let kids: Vec<String> = jwks.keys.iter().filter_map(|key| key.common.key_id.clone()).collect();
    assert_eq!(kids, [oidc.kid(), before]);
    let (_, answer) = exchange(&oidc, &code(&oidc, &[]).await).await;
    assert_eq!(header(answer["id_token"].as_str().expect("id token"))["kid"], oidc.kid().as_str());
}

#[tokio::test]
async fn injected_failures_come_before_any_processing() {
    let oidc = start().await;
    let spared = code(&oidc, &[]).await;
    oidc.fail_next(Endpoint::Token, 1, 429);
    let response = client()
        .post(url(&oidc, "oauth/token"))
        .form(&[("grant_type", "authorization_code"), ("code", spared.as_str())])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Auth0's rate-limit headers: no Retry-After, the reset as a Unix time.
    assert!(response.headers().get(RETRY_AFTER).is_none());
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    assert!(response.headers().contains_key("x-ratelimit-reset"));
    assert_eq!(exchange(&oidc, &spared).await.0, StatusCode::OK, "the code was not spent by the failure");
    assert_eq!(oidc.calls(Endpoint::Token), 2);
    assert_eq!(oidc.code_calls(), 1);
}

/// The parked request's id from the sign-in page's forms.
fn request_id(page: &str) -> String {
    let marker = r#"name="request" value=""#;
    let start = page.find(marker).expect("a sign-in form") + marker.len();
    page[start..start + page[start..].find('"').expect("the value ends")].to_owned()
}

#[tokio::test]
async fn the_sign_in_page_approves_a_listed_user_or_any_email_and_can_deny() {
    let oidc = start().await;
    let page = |overrides: &'static [(&'static str, &'static str)]| {
        let url = authorize_url(&oidc, overrides);
        async move { client().get(url).send().await.expect("page").text().await.expect("html") }
    };
    let approve = |fields: Vec<(&'static str, String)>| {
        let url = url(&oidc, "authorize/approve");
        async move { client().post(url).form(&fields).send().await.expect("answers") }
    };

    let listed = page(&[("login_hint", "")]).await;
    let response = approve(vec![("request", request_id(&listed)), ("subject", "auth0|standin-bob".to_owned())]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let code = query(response.headers()[LOCATION].to_str().expect("ascii"))["code"].clone();
    let (_, answer) = exchange(&oidc, &code).await;
    assert_eq!(payload(answer["id_token"].as_str().expect("id token"))["sub"], "auth0|standin-bob");

    // The same request cannot be answered twice.
    let again = approve(vec![("request", request_id(&listed)), ("subject", "auth0|standin-bob".to_owned())]).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);

    let typed = page(&[("login_hint", "")]).await;
    let bad = approve(vec![("request", request_id(&typed)), ("email", "not an email".to_owned())]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "the page again, with the error");
    let response = approve(vec![("request", request_id(&typed)), ("email", "dana@example.test".to_owned())]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(oidc.users().iter().any(|user| user.email == "dana@example.test" && user.subject.starts_with("auth0|")));

    let denied = page(&[("login_hint", "")]).await;
    let response = client()
        .post(url(&oidc, "authorize/deny"))
        .form(&[("request", request_id(&denied))])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let params = query(response.headers()[LOCATION].to_str().expect("ascii"));
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "the-state");
}
