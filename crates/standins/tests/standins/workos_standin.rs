//! The WorkOS stand-in honours WorkOS's documented API (<https://workos.com/docs/reference/authkit>), over real
//! HTTP: authorize (with and without the sign-in page), authenticate (codes with PKCE, rotating refresh tokens), the
//! JWKS, logout, and the test controls other suites rely on (injected failures, latency, hangs, call counters).

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::{Map, Value, json};
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint, SeedOrganization, WorkosStandIn, WorkosStandInOptions};
use url::Url;

const REDIRECT_URI: &str = "http://localhost:3000/callback";
const ALICE: &str = "alice@acme.test";
const ALICE_ID: &str = "user_standin_alice";

// ---- helpers ---------------------------------------------------------------------------------------------------

async fn start() -> WorkosStandIn {
    start_with(WorkosStandInOptions::default()).await
}

async fn start_with(options: WorkosStandInOptions) -> WorkosStandIn {
    let options =
        WorkosStandInOptions { redirect_uris: vec![Url::parse(REDIRECT_URI).expect("redirect URI")], ..options };
    WorkosStandIn::start(options).await.expect("the stand-in starts")
}

/// A client that, like a test of redirects, sees each 302 instead of following it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    Pkce { verifier, challenge }
}

fn url(workos: &WorkosStandIn, path: &str) -> Url {
    workos.base_url().join(path).expect("stand-in URL")
}

/// An authorize URL with everything authbridge sends, then `overrides` (an empty value removes a parameter).
fn authorize_url(workos: &WorkosStandIn, pkce: &Pkce, overrides: &[(&str, &str)]) -> Url {
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", workos.client_id()),
        ("redirect_uri", REDIRECT_URI),
        ("response_type", "code"),
        ("provider", "authkit"),
        ("state", "state-123"),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in overrides {
        params.retain(|(existing, _)| existing != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let mut url = url(workos, "user_management/authorize");
    url.query_pairs_mut().extend_pairs(params);
    url
}

fn location(response: &reqwest::Response) -> Url {
    let location = response.headers().get(LOCATION).expect("a Location header").to_str().expect("ASCII");
    Url::parse(location).expect("an absolute Location")
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// Signs `email` in through `login_hint` and returns the authorization code.
async fn code_for(workos: &WorkosStandIn, email: &str, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut overrides = vec![("login_hint", email)];
    overrides.extend_from_slice(extra);
    let response = client().get(authorize_url(workos, pkce, &overrides)).send().await.expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND, "login_hint signs in at once");
    query_param(&location(&response), "code").expect("a code")
}

async fn authenticate(workos: &WorkosStandIn, body: Value) -> (StatusCode, Value) {
    let response = client().post(url(workos, "user_management/authenticate")).json(&body).send().await.expect("send");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

fn code_grant(workos: &WorkosStandIn, code: &str, verifier: &str) -> Value {
    json!({
        "grant_type": "authorization_code",
        "client_id": workos.client_id(),
        "client_secret": workos.api_key().expose(),
        "code": code,
        "code_verifier": verifier,
    })
}

fn refresh_grant(workos: &WorkosStandIn, refresh_token: &str) -> Value {
    json!({
        "grant_type": "refresh_token",
        "client_id": workos.client_id(),
        "client_secret": workos.api_key().expose(),
        "refresh_token": refresh_token,
    })
}

/// Signs Alice in and returns the `authenticate` response.
async fn signed_in(workos: &WorkosStandIn, email: &str) -> Value {
    let pkce = pkce();
    let code = code_for(workos, email, &pkce, &[]).await;
    let (status, body) = authenticate(workos, code_grant(workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// Verifies `token` the way authbridge will: RS256 only, with the key the JWKS names by `kid`.
async fn verify(workos: &WorkosStandIn, token: &str) -> jsonwebtoken::errors::Result<TokenData<Map<String, Value>>> {
    let jwks: JwkSet = client()
        .get(url(workos, &format!("sso/jwks/{}", workos.client_id())))
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("a JWK set");
    let kid = jsonwebtoken::decode_header(token)?.kid.expect("a kid");
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    jsonwebtoken::decode(token, &DecodingKey::from_jwk(jwk)?, &Validation::new(Algorithm::RS256))
}

async fn claims(workos: &WorkosStandIn, token: &str) -> Map<String, Value> {
    verify(workos, token).await.expect("the token verifies").claims
}

/// The opaque id the sign-in page's forms carry.
fn request_id(page: &str) -> String {
    let marker = r#"name="request" value=""#;
    let start = page.find(marker).expect("a request field") + marker.len();
    page[start..].split('"').next().expect("a value").to_owned()
}

async fn sign_in_page(workos: &WorkosStandIn, pkce: &Pkce) -> String {
    let response = client().get(authorize_url(workos, pkce, &[])).send().await.expect("authorize");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get(CONTENT_TYPE).expect("content type").to_str().expect("ASCII");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    response.text().await.expect("page")
}

async fn post_form(workos: &WorkosStandIn, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(url(workos, path)).form(form).send().await.expect("form post")
}

// ---- authorize -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_known_login_hint_redirects_at_once_with_a_code_and_the_state() {
    let workos = start().await;
    let response = client()
        .get(authorize_url(&workos, &pkce(), &[("login_hint", "Alice@Acme.test")]))
        .send()
        .await
        .expect("authorize");

    assert_eq!(response.status(), StatusCode::FOUND);
    let location = location(&response);
    assert_eq!(&location[..url::Position::AfterPath], REDIRECT_URI);
    assert_eq!(query_param(&location, "state").as_deref(), Some("state-123"));
    assert!(query_param(&location, "code").is_some_and(|code| code.len() >= 20));
    assert_eq!(workos.calls(Endpoint::Authorize), 1);
}

#[tokio::test]
async fn authorize_never_redirects_to_an_unregistered_uri_or_for_an_unknown_client() {
    let workos = start().await;
    let pkce = pkce();
    let attempts: [&[(&str, &str)]; 8] = [
        &[("redirect_uri", "https://evil.example/callback")],
        &[("redirect_uri", "http://localhost:3000/callback/../evil")],
        &[("redirect_uri", "http://localhost:3000/callbackx")],
        &[("redirect_uri", "http://localhost:3001/callback")],
        &[("redirect_uri", "//evil.example/callback")],
        &[("redirect_uri", "")],
        &[("client_id", "client_other")],
        // A bad request for an unregistered URI is still not redirected, even though it has an error to report.
        &[("redirect_uri", "https://evil.example/callback"), ("code_challenge_method", "plain")],
    ];
    for overrides in attempts {
        let response = client().get(authorize_url(&workos, &pkce, overrides)).send().await.expect("authorize");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{overrides:?}");
        assert!(response.headers().get(LOCATION).is_none(), "{overrides:?} must not redirect");
        let page = response.text().await.expect("page");
        assert!(page.contains("cannot be completed"), "{overrides:?}: {page}");
    }
}

#[tokio::test]
async fn bad_requests_for_a_registered_uri_go_back_to_the_app_as_errors() {
    let workos = start().await;
    let pkce = pkce();
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("code_challenge", "too-short")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("provider", "")], "invalid_request"),
        (&[("provider", "GoogleOAuth")], "invalid_request"),
        (&[("provider", ""), ("organization_id", "org_unknown")], "invalid_request"),
        (&[("provider", ""), ("organization_id", ACME_ORGANIZATION_ID), ("screen_hint", "sign-up")], "invalid_request"),
    ];
    for (overrides, error) in cases {
        let response = client().get(authorize_url(&workos, &pkce, overrides)).send().await.expect("authorize");
        assert_eq!(response.status(), StatusCode::FOUND, "{overrides:?}");
        assert_error_redirect(&location(&response), error);
    }
}

/// An OAuth error sent back to the app: `error`, a description and the state, and no code.
fn assert_error_redirect(location: &Url, error: &str) {
    assert_eq!(&location[..url::Position::AfterPath], REDIRECT_URI);
    assert_eq!(query_param(location, "error").as_deref(), Some(error), "{location}");
    assert!(query_param(location, "error_description").is_some());
    assert_eq!(query_param(location, "state").as_deref(), Some("state-123"));
    assert_eq!(query_param(location, "code"), None);
}

// ---- the sign-in page ------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_sign_in_page_lists_the_seeded_users_and_signs_in_the_one_picked() {
    let workos = start().await;
    let pkce = pkce();
    let page = sign_in_page(&workos, &pkce).await;

    for expected in [
        "Alice Anderson",
        r#"data-user="alice@acme.test""#,
        r#"id="signin-user_standin_alice""#,
        "Bob Brown",
        r#"data-user="bob@acme.test""#,
        "Carol Clark",
        "Acme",
        r#"id="signin-email""#,
        r#"id="deny""#,
        "localhost:3000",
    ] {
        assert!(page.contains(expected), "the page lacks {expected:?}:\n{page}");
    }
    // The forms carry an opaque id, never the authorization parameters themselves.
    assert!(!page.contains("state-123") && !page.contains(&pkce.challenge));
    assert!(!page.contains("<script"), "the page needs no script");

    let request = request_id(&page);
    let response =
        post_form(&workos, "user_management/authorize/approve", &[("request", &request), ("user_id", ALICE_ID)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = location(&response);
    assert_eq!(query_param(&location, "state").as_deref(), Some("state-123"));
    let code = query_param(&location, "code").expect("a code");
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], ALICE);

    let again =
        post_form(&workos, "user_management/authorize/approve", &[("request", &request), ("user_id", ALICE_ID)]).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "a sign-in request is answered once");
    assert!(again.headers().get(LOCATION).is_none());
    assert_eq!(workos.calls(Endpoint::Authorize), 1);
    assert_eq!(workos.calls(Endpoint::SignInForm), 2);
}

#[tokio::test]
async fn any_email_signs_in_a_user_created_on_the_spot() {
    let workos = start().await;
    let pkce = pkce();
    let page = sign_in_page(&workos, &pkce).await;
    let request = request_id(&page);

    let refused =
        post_form(&workos, "user_management/authorize/approve", &[("request", &request), ("email", "not an email")])
            .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused_page = refused.text().await.expect("page");
    assert!(refused_page.contains("not an email address"), "{refused_page}");
    assert!(refused_page.contains(r#"value="not an email""#), "the typed value is kept for correction");

    let response = post_form(
        &workos,
        "user_management/authorize/approve",
        &[("request", &request), ("email", " Dana.Scully@FBI.test ")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the request survived the refusal");
    let code = query_param(&location(&response), "code").expect("a code");
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = &body["user"];
    assert_eq!(user["email"], "dana.scully@fbi.test");
    assert_eq!(user["first_name"], "Dana");
    assert_eq!(user["last_name"], "Scully");
    assert!(text(&user["id"]).starts_with("user_"));
    assert_eq!(body["organization_id"], Value::Null);
    assert_eq!(body["authentication_method"], "MagicAuth");

    let known = workos.users().into_iter().find(|u| u.email == "dana.scully@fbi.test").expect("Dana is now known");
    assert_eq!(known.id, text(&user["id"]));
    // Known from now on: a login_hint finds her, and she keeps her id.
    let pkce = self::pkce();
    let code = code_for(&workos, "dana.scully@fbi.test", &pkce, &[]).await;
    let (_, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(body["user"]["id"], known.id.as_str());
}

#[tokio::test]
async fn deny_goes_back_to_the_app_with_access_denied_and_the_state() {
    let workos = start().await;
    let page = sign_in_page(&workos, &pkce()).await;

    let response = post_form(&workos, "user_management/authorize/deny", &[("request", &request_id(&page))]).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_error_redirect(&location(&response), "access_denied");
}

// ---- authenticate: codes ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_exchange_answers_as_workos_documents() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;

    let response = client()
        .post(url(&workos, "user_management/authenticate"))
        .json(&code_grant(&workos, &code, &pkce.verifier))
        .send()
        .await
        .expect("authenticate");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get(CACHE_CONTROL).expect("Cache-Control"), "no-store");
    let body: Value = response.json().await.expect("JSON");

    let user = body["user"].as_object().expect("a user object");
    let mut fields: Vec<&str> = user.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "email",
            "email_verified",
            "first_name",
            "id",
            "last_name",
            "object",
            "profile_picture_url",
            "updated_at"
        ]
    );
    assert_eq!(user["object"], "user");
    assert_eq!(user["id"], ALICE_ID);
    assert_eq!(user["email"], ALICE);
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["first_name"], "Alice");
    assert_eq!(user["last_name"], "Anderson");
    assert_eq!(user["profile_picture_url"], Value::Null);
    for stamp in ["created_at", "updated_at"] {
        time::OffsetDateTime::parse(text(&user[stamp]), &time::format_description::well_known::Rfc3339)
            .expect("an RFC 3339 timestamp");
    }
    assert_eq!(body["organization_id"], ACME_ORGANIZATION_ID);
    assert_eq!(body["authentication_method"], "Password");
    assert!(text(&body["refresh_token"]).len() >= 20);
    assert!(body.get("impersonator").is_none(), "impersonator appears only when impersonating");
    assert_eq!(workos.code_calls(), 1);
    assert_eq!(workos.refresh_calls(), 0);

    let claims = claims(&workos, text(&body["access_token"])).await;
    assert_eq!(claims["sub"], ALICE_ID);
    assert_eq!(claims["org_id"], ACME_ORGANIZATION_ID);
}

#[tokio::test]
async fn a_wrong_or_missing_code_verifier_is_refused_and_spends_the_code() {
    let workos = start().await;
    let pkce = pkce();

    let code = code_for(&workos, ALICE, &pkce, &[]).await;
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &self::pkce().verifier)).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");

    let code = code_for(&workos, ALICE, &pkce, &[]).await;
    let mut grant = code_grant(&workos, &code, &pkce.verifier);
    grant.as_object_mut().expect("object").remove("code_verifier");
    let (status, body) = authenticate(&workos, grant).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");
}

#[tokio::test]
async fn a_code_works_once() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;

    let (first, _) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    let (second, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;

    assert_eq!(first, StatusCode::OK);
    assert_eq!(second, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(text(&body["error_description"]).contains("already been used"), "{body}");
    assert_eq!(workos.code_calls(), 2);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;

    workos.set_code_ttl(Duration::ZERO);
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(text(&body["error_description"]).contains("expired"), "{body}");
}

#[tokio::test]
async fn the_client_must_authenticate_with_its_api_key() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;
    let good = code_grant(&workos, &code, &pkce.verifier);

    for (field, value) in [
        ("client_secret", json!("sk_test_wrong")),
        ("client_secret", Value::Null),
        ("client_id", json!("client_other")),
    ] {
        let mut grant = good.clone();
        grant[field] = value.clone();
        let (status, body) = authenticate(&workos, grant).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{field} = {value}");
        assert_eq!(body["error"], "invalid_client");
        assert!(!body.to_string().contains(workos.api_key().expose()), "the API key never appears in errors");
    }
    let (status, _) = authenticate(&workos, good).await;
    assert_eq!(status, StatusCode::OK, "refused client authentication does not spend the code");
}

#[tokio::test]
async fn unknown_grants_and_malformed_bodies_are_refused() {
    let workos = start().await;
    let mut grant = refresh_grant(&workos, "irrelevant");
    grant["grant_type"] = json!("password");
    let (status, body) = authenticate(&workos, grant).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type")));

    let response = client()
        .post(url(&workos, "user_management/authenticate"))
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .expect("authenticate");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn a_form_encoded_exchange_is_accepted_too() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;

    let response = client()
        .post(url(&workos, "user_management/authenticate"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", workos.client_id()),
            ("client_secret", workos.api_key().expose()),
            ("code", &code),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .expect("authenticate");

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["user"]["id"], ALICE_ID);
}

// ---- authenticate: refresh -------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_refuses_the_old_one() {
    let workos = start().await;
    let first = signed_in(&workos, ALICE).await;
    let first_claims = claims(&workos, text(&first["access_token"])).await;

    let (status, second) = authenticate(&workos, refresh_grant(&workos, text(&first["refresh_token"]))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["user"]["id"], ALICE_ID);
    assert_eq!(second["organization_id"], ACME_ORGANIZATION_ID);
    let second_claims = claims(&workos, text(&second["access_token"])).await;
    assert_eq!(second_claims["sid"], first_claims["sid"], "a refresh continues the same session");
    assert_ne!(second_claims["jti"], first_claims["jti"]);

    let (status, body) = authenticate(&workos, refresh_grant(&workos, text(&first["refresh_token"]))).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");
    let (status, _) = authenticate(&workos, refresh_grant(&workos, text(&second["refresh_token"]))).await;
    assert_eq!(status, StatusCode::OK, "the newest token still works");
    assert_eq!(workos.refresh_calls(), 3);
    assert_eq!(workos.code_calls(), 1);
    assert_eq!(workos.calls(Endpoint::Authenticate), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_twenty_racing_refreshes_with_one_token_exactly_one_wins() {
    let workos = start().await;
    let session = signed_in(&workos, ALICE).await;
    let endpoint = url(&workos, "user_management/authenticate");
    let grant = refresh_grant(&workos, text(&session["refresh_token"]));

    let mut races = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (endpoint, grant) = (endpoint.clone(), grant.clone());
        races.spawn(async move {
            let response = client().post(endpoint).json(&grant).send().await.expect("refresh");
            let status = response.status();
            (status, response.json::<Value>().await.expect("JSON"))
        });
    }
    let outcomes = races.join_all().await;

    let winners = outcomes.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    let refused = outcomes.iter().filter(|(_, body)| body["error"] == "invalid_grant").count();
    assert_eq!((winners, refused), (1, 19));
    assert_eq!(workos.refresh_calls(), 20);
}

#[tokio::test]
async fn refresh_can_switch_to_another_organization_of_the_user() {
    let options = WorkosStandInOptions {
        organizations: vec![
            SeedOrganization { id: ACME_ORGANIZATION_ID.into(), name: "Acme".into() },
            SeedOrganization { id: "org_globex".into(), name: "Globex".into() },
            SeedOrganization { id: "org_initech".into(), name: "Initech".into() },
        ],
        ..WorkosStandInOptions::default()
    };
    let workos = start_with(options).await;
    let pkce = pkce();
    // Signing in through an organization's route makes nobody a member of it, as at WorkOS (members come by
    // invitation, or just in time through the organization's verified domains): Alice, not in Globex, is signed in
    // without an organization and stays out of Globex.
    let code = code_for(&workos, ALICE, &pkce, &[("provider", ""), ("organization_id", "org_globex")]).await;
    let (status, outsider) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{outsider}");
    assert!(outsider["organization_id"].is_null(), "{outsider}");
    assert_eq!(outsider["authentication_method"], "Password", "not through Globex's identity provider");
    assert!(workos.membership_of(ALICE_ID, "org_globex").is_none(), "no membership made");

    // A member signs in to it, through its single sign-on.
    workos.add_membership(ALICE_ID, "org_globex", &[]).expect("a member of Globex");
    let code = code_for(&workos, ALICE, &pkce, &[("provider", ""), ("organization_id", "org_globex")]).await;
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["organization_id"], "org_globex");
    assert_eq!(body["authentication_method"], "SSO");
    assert_eq!(claims(&workos, text(&body["access_token"])).await["org_id"], "org_globex");

    // The sign-in page scoped to an organization says who gets in to it; the plain one does not.
    let page = |extra: &'static [(&'static str, &'static str)]| {
        let url = authorize_url(&workos, &pkce, extra);
        async move { client().get(url).send().await.expect("authorize").text().await.expect("page") }
    };
    assert!(page(&[("organization_id", "org_globex")]).await.contains(r#"id="organization-note""#));
    assert!(!page(&[]).await.contains(r#"id="organization-note""#));

    // AuthKit scoped to the organization (`provider=authkit` kept beside it) ends the same way.
    let scoped = code_for(&workos, ALICE, &pkce, &[("organization_id", "org_globex")]).await;
    let (status, scoped) = authenticate(&workos, code_grant(&workos, &scoped, &pkce.verifier)).await;
    assert_eq!((status, &scoped["organization_id"]), (StatusCode::OK, &json!("org_globex")), "{scoped}");

    let mut switch = refresh_grant(&workos, text(&body["refresh_token"]));
    switch["organization_id"] = json!("org_initech");
    let (status, refused) = authenticate(&workos, switch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], "organization_membership_not_found");
    // An organization that does not exist: WorkOS's code-less 404.
    let mut switch = refresh_grant(&workos, text(&body["refresh_token"]));
    switch["organization_id"] = json!("org_nonexistent");
    let (status, refused) = authenticate(&workos, switch).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(refused, json!({ "message": "Organization not found: 'org_nonexistent'." }));

    let mut switch = refresh_grant(&workos, text(&body["refresh_token"]));
    switch["organization_id"] = json!(ACME_ORGANIZATION_ID);
    let (status, switched) = authenticate(&workos, switch).await;
    assert_eq!(status, StatusCode::OK, "a refused switch left the refresh token usable: {switched}");
    assert_eq!(switched["organization_id"], ACME_ORGANIZATION_ID);
    let claims = claims(&workos, text(&switched["access_token"])).await;
    assert_eq!(claims["org_id"], ACME_ORGANIZATION_ID);
    assert_eq!(claims["role"], "member");
}

#[tokio::test]
async fn an_impersonated_sign_in_says_so_in_the_response_and_every_token() {
    let workos = start().await;
    workos.impersonate_next_login("admin@acme.test", Some("Investigating a bug report"));
    let session = signed_in(&workos, ALICE).await;

    assert_eq!(session["impersonator"], json!({ "email": "admin@acme.test", "reason": "Investigating a bug report" }));
    assert_eq!(session["authentication_method"], "Impersonation");
    assert_eq!(claims(&workos, text(&session["access_token"])).await["act"], json!({ "sub": "admin@acme.test" }));

    let (_, refreshed) = authenticate(&workos, refresh_grant(&workos, text(&session["refresh_token"]))).await;
    assert_eq!(refreshed["impersonator"]["email"], "admin@acme.test");
    assert_eq!(claims(&workos, text(&refreshed["access_token"])).await["act"]["sub"], "admin@acme.test");

    let next = signed_in(&workos, ALICE).await;
    assert!(next.get("impersonator").is_none(), "only the next sign-in is impersonated");
}

#[tokio::test]
async fn revoking_refresh_tokens_ends_every_session() {
    let workos = start().await;
    let alice = signed_in(&workos, ALICE).await;
    let bob = signed_in(&workos, "bob@acme.test").await;

    workos.revoke_all_refresh_tokens();

    for session in [alice, bob] {
        let (status, body) = authenticate(&workos, refresh_grant(&workos, text(&session["refresh_token"]))).await;
        assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    }
}

// ---- tokens and the JWKS ---------------------------------------------------------------------------------------

#[tokio::test]
async fn access_tokens_verify_against_the_jwks_with_the_documented_claims() {
    let workos = start().await;
    let session = signed_in(&workos, ALICE).await;
    let token = text(&session["access_token"]);

    let verified = verify(&workos, token).await.expect("verifies");
    assert_eq!(verified.header.alg, Algorithm::RS256);
    assert_eq!(verified.header.kid.as_deref(), Some(workos.kid().as_str()));
    let claims = verified.claims;
    assert_eq!(claims["iss"], workos.base_url().as_str());
    assert!(workos.base_url().as_str().ends_with('/'));
    assert_eq!(claims["sub"], ALICE_ID);
    assert!(text(&claims["sid"]).starts_with("session_"));
    assert_eq!(claims["org_id"], ACME_ORGANIZATION_ID);
    assert_eq!(claims["role"], "member");
    assert_eq!(claims["permissions"], json!([]));
    assert!(!text(&claims["jti"]).is_empty());
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 300, "five minutes by default");
    assert!(claims.get("act").is_none());

    let carol = signed_in(&workos, "carol@example.test").await;
    let carol = self::claims(&workos, text(&carol["access_token"])).await;
    assert!(carol.get("org_id").is_none() && carol.get("role").is_none(), "no organization, no role: {carol:?}");

    let jwks: Value = client()
        .get(url(&workos, &format!("sso/jwks/{}", workos.client_id())))
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JSON");
    let key = &jwks["keys"][0];
    assert_eq!((&key["kty"], &key["use"], &key["alg"]), (&json!("RSA"), &json!("sig"), &json!("RS256")));
    assert!(!text(&key["n"]).contains('=') && text(&key["e"]) == "AQAB", "base64url without padding");

    let unknown = client().get(url(&workos, "sso/jwks/client_other")).send().await.expect("JWKS");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(workos.calls(Endpoint::Jwks), 4);
}

#[tokio::test]
async fn extra_claims_and_token_lifetime_apply_to_tokens_issued_afterwards() {
    let workos = start().await;
    let bulk = "x".repeat(6000);
    workos.set_extra_claims(
        json!({ "role": "admin", "permissions": ["todos:delete"], "bulk": bulk, "sub": "user_impostor" })
            .as_object()
            .expect("object")
            .clone(),
    );
    workos.set_access_token_ttl(Duration::from_secs(10));

    let session = signed_in(&workos, ALICE).await;
    let token = text(&session["access_token"]);
    let claims = claims(&workos, token).await;

    assert!(token.len() > 6000);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["permissions"], json!(["todos:delete"]));
    assert_eq!(claims["bulk"], bulk.as_str());
    assert_eq!(claims["sub"], ALICE_ID, "extra claims cannot change who the token is for");
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 10);
}

#[tokio::test]
async fn minted_tokens_match_issued_ones_and_can_be_born_expired() {
    let workos = start().await;

    let acme = workos.membership_of(ALICE_ID, ACME_ORGANIZATION_ID).expect("seeded");
    workos.set_membership_roles(&acme.id, &["admin", "billing"]).expect("roles set");
    let token = workos.mint_access_token(ALICE_ID, Duration::from_secs(60));
    let claims = claims(&workos, &token).await;
    assert_eq!(claims["sub"], ALICE_ID);
    assert_eq!(claims["org_id"], ACME_ORGANIZATION_ID);
    assert_eq!(
        (&claims["role"], &claims["roles"]),
        (&json!("admin"), &json!(["admin", "billing"])),
        "the membership's"
    );
    assert_eq!(claims["iss"], workos.base_url().as_str());
    // The minted token's session is real: it can be signed out.
    let logout = client()
        .get(url(&workos, "user_management/sessions/logout"))
        .query(&[("session_id", text(&claims["sid"]))])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);

    let now = SystemTime::now();
    let expired =
        workos.mint_access_token_with(ALICE_ID, now - Duration::from_secs(3600), now - Duration::from_secs(600));
    let error = verify(&workos, &expired).await.expect_err("an expired token is refused");
    assert_eq!(error.kind(), &jsonwebtoken::errors::ErrorKind::ExpiredSignature);

    let pem = workos.public_key_pem();
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    assert_eq!(STANDARD.decode(body).expect("base64"), workos.public_key_der());
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_while_the_old_one_stays_published() {
    let workos = start().await;
    let old_kid = workos.kid();
    let old_token = workos.mint_access_token(ALICE_ID, Duration::from_secs(60));

    workos.rotate_signing_key().await.expect("rotation");
    let new_token = workos.mint_access_token(ALICE_ID, Duration::from_secs(60));

    assert_ne!(workos.kid(), old_kid);
    let new_header = jsonwebtoken::decode_header(&new_token).expect("header");
    assert_eq!(new_header.kid.as_deref(), Some(workos.kid().as_str()));
    let kids: Vec<String> =
        workos.jwks()["keys"].as_array().expect("keys").iter().map(|key| text(&key["kid"]).to_owned()).collect();
    assert_eq!(kids, [workos.kid(), old_kid]);
    verify(&workos, &old_token).await.expect("the old token still verifies");
    verify(&workos, &new_token).await.expect("the new token verifies");
}

// ---- logout ----------------------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_ends_the_session_and_returns_to_the_app() {
    let workos = start().await;
    let session = signed_in(&workos, ALICE).await;
    let sid = claims(&workos, text(&session["access_token"])).await["sid"].clone();

    let response = client()
        .get(url(&workos, "user_management/sessions/logout"))
        .query(&[("session_id", text(&sid)), ("return_to", "http://localhost:3000/")])
        .send()
        .await
        .expect("logout");

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_str(), "http://localhost:3000/");
    let (status, body) = authenticate(&workos, refresh_grant(&workos, text(&session["refresh_token"]))).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    assert_eq!(workos.calls(Endpoint::Logout), 1);

    let without_return = client()
        .get(url(&workos, "user_management/sessions/logout"))
        .query(&[("session_id", text(&sid))])
        .send()
        .await
        .expect("logout");
    assert_eq!(without_return.status(), StatusCode::OK, "signing out twice is harmless");
    assert!(without_return.text().await.expect("page").contains("signed out"));
}

#[tokio::test]
async fn revoking_a_session_needs_the_api_key_and_kills_its_refresh_token() {
    let workos = start().await;
    let session = signed_in(&workos, ALICE).await;
    let sid = claims(&workos, text(&session["access_token"])).await["sid"].clone();
    let revoke = |key: &str| {
        client()
            .post(url(&workos, "user_management/sessions/revoke"))
            .bearer_auth(key)
            .json(&json!({ "session_id": text(&sid) }))
            .send()
    };

    let refused = revoke("sk_test_wrong").await.expect("revoke");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = authenticate(&workos, refresh_grant(&workos, text(&session["refresh_token"]))).await;
    assert_eq!(status, StatusCode::OK, "a refused revoke changes nothing");

    let session = signed_in(&workos, ALICE).await;
    let sid = claims(&workos, text(&session["access_token"])).await["sid"].clone();
    let revoked = client()
        .post(url(&workos, "user_management/sessions/revoke"))
        .bearer_auth(workos.api_key().expose())
        .json(&json!({ "session_id": text(&sid) }))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, body) = authenticate(&workos, refresh_grant(&workos, text(&session["refresh_token"]))).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    assert_eq!(workos.calls(Endpoint::RevokeSession), 2);

    let unknown = client()
        .post(url(&workos, "user_management/sessions/revoke"))
        .bearer_auth(workos.api_key().expose())
        .json(&json!({ "session_id": "session_unknown" }))
        .send()
        .await
        .expect("revoke");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// `return_to` must be one of the sign-out redirects (WorkOS's dashboard list), exactly: by default the app's home
/// page, so not any other path on its origin either.
#[tokio::test]
async fn logout_never_redirects_outside_the_sign_out_redirects() {
    let workos = start().await;
    for return_to in [
        "https://evil.example/",
        "http://localhost:3001/",
        "https://localhost:3000/",
        "http://localhost:3000.evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "/relative",
        "http://localhost:3000/anything",
    ] {
        let session = signed_in(&workos, ALICE).await;
        let sid = claims(&workos, text(&session["access_token"])).await["sid"].clone();
        let response = client()
            .get(url(&workos, "user_management/sessions/logout"))
            .query(&[("session_id", text(&sid)), ("return_to", return_to)])
            .send()
            .await
            .expect("logout");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{return_to}");
        assert!(response.headers().get(LOCATION).is_none(), "{return_to} must not be followed");
        assert!(response.text().await.expect("page").contains("signed out"), "the session still ends");
    }

    let unknown = client()
        .get(url(&workos, "user_management/sessions/logout"))
        .query(&[("session_id", "session_unknown"), ("return_to", "http://localhost:3000/")])
        .send()
        .await
        .expect("logout");
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.headers().get(LOCATION).is_none());
}

// ---- test controls ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn injected_failures_come_first_are_counted_and_spend_nothing() {
    let workos = start().await;
    let pkce = pkce();
    let code = code_for(&workos, ALICE, &pkce, &[]).await;
    workos.fail_next(Endpoint::Authenticate, 2, 503);
    workos.fail_next(Endpoint::Authenticate, 1, 429);

    for expected in [StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, StatusCode::TOO_MANY_REQUESTS] {
        let response = client()
            .post(url(&workos, "user_management/authenticate"))
            .json(&code_grant(&workos, &code, &pkce.verifier))
            .send()
            .await
            .expect("authenticate");
        assert_eq!(response.status(), expected);
        let retry_after = response.headers().get(RETRY_AFTER).map(|value| value.to_str().expect("ASCII").to_owned());
        let body: Value = response.json().await.expect("JSON");
        assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
        if expected == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(retry_after.as_deref(), Some("1"));
            assert_eq!(body["code"], "rate_limit_exceeded");
        }
    }

    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "the code survived the injected failures: {body}");
    assert_eq!(workos.calls(Endpoint::Authenticate), 4);
    assert_eq!(workos.code_calls(), 4);

    workos.fail_next(Endpoint::Authorize, 1, 500);
    let response = client().get(authorize_url(&workos, &pkce, &[("login_hint", ALICE)])).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(workos.calls(Endpoint::Authorize), 2);
}

#[tokio::test]
async fn latency_and_held_requests_trip_client_timeouts_and_shutdown_still_completes() {
    let workos = start().await;
    let impatient =
        reqwest::Client::builder().timeout(Duration::from_millis(300)).build().expect("client with a timeout");
    let jwks = url(&workos, &format!("sso/jwks/{}", workos.client_id()));

    workos.set_latency(Endpoint::Jwks, Duration::from_secs(5));
    let slow = impatient.get(jwks.clone()).send().await.expect_err("slower than the client waits");
    assert!(slow.is_timeout(), "{slow}");
    workos.set_latency(Endpoint::Jwks, Duration::ZERO);
    assert_eq!(impatient.get(jwks.clone()).send().await.expect("prompt again").status(), StatusCode::OK);

    workos.hang_next(Endpoint::Jwks, 1);
    let held = impatient.get(jwks.clone()).send().await.expect_err("never answered");
    assert!(held.is_timeout(), "{held}");
    assert_eq!(impatient.get(jwks.clone()).send().await.expect("only one was held").status(), StatusCode::OK);
    assert_eq!(workos.calls(Endpoint::Jwks), 4);

    // One more held request, still open while the stand-in stops: shutdown must not wait for it forever.
    workos.hang_next(Endpoint::Jwks, 1);
    let patient = client();
    let open = tokio::spawn({
        let jwks = jwks.clone();
        async move { patient.get(jwks).send().await.map(|response| response.status()) }
    });
    while workos.calls(Endpoint::Jwks) < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), workos.shutdown()).await.expect("shutdown completes");
    let released = open.await.expect("task").expect("the held request is answered before the server stops");
    assert_eq!(released, StatusCode::SERVICE_UNAVAILABLE);
    assert!(client().get(jwks).send().await.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn a_wrong_path_gets_a_workos_shaped_404_naming_it() {
    let workos = start().await;
    let response = client().post(url(&workos, "/user_management/authenticate/")).send().await.expect("post");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "entity_not_found");
    assert!(text(&body["message"]).contains("/user_management/authenticate/"), "{body}");
}

#[tokio::test]
async fn a_port_in_use_is_reported_clearly() {
    let workos = start().await;
    let taken = workos.base_url().port().expect("a port");
    let options = WorkosStandInOptions {
        bind: format!("127.0.0.1:{taken}").parse().expect("address"),
        ..WorkosStandInOptions::default()
    };
    let error = WorkosStandIn::start(options).await.expect_err("the port is taken");
    assert!(error.to_string().contains(&format!("cannot listen on 127.0.0.1:{taken}")), "{error}");
}

// ---- organizations: selection, switching, roles, impersonation, the portal, Audit Logs ---------------------------

fn selection_grant(workos: &WorkosStandIn, pending: &str, organization_id: &str) -> Value {
    json!({
        "grant_type": "urn:workos:oauth:grant-type:organization-selection",
        "client_id": workos.client_id(),
        "client_secret": workos.api_key().expose(),
        "pending_authentication_token": pending,
        "organization_id": organization_id,
    })
}

#[tokio::test]
async fn a_member_of_several_organizations_chooses_one_with_the_selection_grant() {
    use standins::workos_standin::{ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID};
    let workos = start_with(WorkosStandInOptions::demo()).await;
    let pkce = pkce();
    let code = code_for(&workos, "bob@acme.test", &pkce, &[]).await;
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "organization_selection_required");
    assert_eq!(body["user"]["email"], "bob@acme.test");
    let names: Vec<&str> = body["organizations"].as_array().expect("list").iter().map(|o| text(&o["name"])).collect();
    assert_eq!(names, ["Acme", "Globex"]);
    let pending = text(&body["pending_authentication_token"]).to_owned();

    let (status, refused) = authenticate(&workos, selection_grant(&workos, &pending, "org_nobody")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "organization_membership_not_found");
    let (status, _) = authenticate(&workos, selection_grant(&workos, &pending, GLOBEX_ORGANIZATION_ID)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the pending token was spent by the refused attempt");

    let code = code_for(&workos, "bob@acme.test", &pkce, &[]).await;
    let (_, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    let pending = text(&body["pending_authentication_token"]).to_owned();
    let (status, chosen) = authenticate(&workos, selection_grant(&workos, &pending, GLOBEX_ORGANIZATION_ID)).await;
    assert_eq!(status, StatusCode::OK, "{chosen}");
    assert_eq!(chosen["organization_id"], GLOBEX_ORGANIZATION_ID);
    assert_eq!(claims(&workos, text(&chosen["access_token"])).await["org_id"], GLOBEX_ORGANIZATION_ID);

    // One organization, or a sign-in through an organization: no selection. Alice is Acme's admin.
    let alice = signed_in(&workos, "alice@acme.test").await;
    let token = claims(&workos, text(&alice["access_token"])).await;
    assert_eq!((token["org_id"].clone(), token["role"].clone()), (json!(ACME_ORGANIZATION_ID), json!("admin")));
    assert_eq!(token["roles"], json!(["admin"]));
    let code =
        code_for(&workos, "bob@acme.test", &pkce, &[("provider", ""), ("organization_id", ACME_ORGANIZATION_ID)]).await;
    let (status, _) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_switch_to_an_organization_that_enforces_sso_answers_sso_required_and_changes_nothing() {
    use standins::workos_standin::{ACME_ORGANIZATION_ID, GLOBEX_ORGANIZATION_ID};
    let workos =
        start_with(WorkosStandInOptions { organization_selection: false, ..WorkosStandInOptions::demo() }).await;
    let bob = signed_in(&workos, "bob@acme.test").await;
    assert_eq!(bob["organization_id"], ACME_ORGANIZATION_ID, "no selection: the first organization");
    workos.require_sso_for_switch(GLOBEX_ORGANIZATION_ID);
    let mut grant = refresh_grant(&workos, text(&bob["refresh_token"]));
    grant["organization_id"] = json!(GLOBEX_ORGANIZATION_ID);
    let (status, body) = authenticate(&workos, grant).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "sso_required");
    // The refresh token still works, in the old organization.
    let (status, body) = authenticate(&workos, refresh_grant(&workos, text(&bob["refresh_token"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["organization_id"], ACME_ORGANIZATION_ID);
}

#[tokio::test]
async fn the_sign_in_page_offers_the_seeded_impersonation_and_only_that_one() {
    let workos = start_with(WorkosStandInOptions::demo()).await;
    let pkce = pkce();
    let page = sign_in_page(&workos, &pkce).await;
    assert!(page.contains("support@authbridge.test as Bob Brown"), "{page}");
    assert!(page.contains("Acme (admin)") && page.contains("Acme, Globex"), "organizations and roles: {page}");
    let forged = post_form(
        &workos,
        "user_management/authorize/approve",
        &[("request", &request_id(&page)), ("user_id", ALICE_ID), ("impersonator", "support@authbridge.test")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST, "not offered for Alice");
    let approved = post_form(
        &workos,
        "user_management/authorize/approve",
        &[
            ("request", &request_id(&page)),
            ("user_id", "user_standin_bob"),
            ("impersonator", "support@authbridge.test"),
        ],
    )
    .await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let code = query_param(&location(&approved), "code").expect("a code");
    let (status, body) = authenticate(&workos, code_grant(&workos, &code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::OK, "impersonation skips the selection: {body}");
    assert_eq!(body["impersonator"]["email"], "support@authbridge.test");
    assert_eq!(body["authentication_method"], "Impersonation");
    assert_eq!(claims(&workos, text(&body["access_token"])).await["act"], json!({ "sub": "support@authbridge.test" }));
}

async fn api_post(workos: &WorkosStandIn, path: &str, body: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().post(url(workos, path)).bearer_auth(workos.api_key().expose()).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn portal_links_open_a_page_naming_the_intent_and_organization() {
    use standins::workos_standin::ACME_ORGANIZATION_ID;
    let workos = start().await;
    let body = json!({ "organization": ACME_ORGANIZATION_ID, "intent": "sso",
                       "return_url": "http://localhost:3000/organizations/x", "success_url": "http://localhost:3000/" });
    let (status, answer) = api_post(&workos, "portal/generate_link", body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let page = client().get(text(&answer["link"])).send().await.expect("page").text().await.expect("html");
    assert!(
        page.contains(r#"id="portal-intent">sso<"#) && page.contains(r#"id="portal-organization">Acme<"#),
        "{page}"
    );
    assert!(page.contains("http://localhost:3000/organizations/x"));
    for (body, expected) in [
        (json!({ "organization": "org_unknown", "intent": "sso" }), StatusCode::NOT_FOUND),
        (json!({ "organization": ACME_ORGANIZATION_ID, "intent": "everything" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "intent": "sso" }), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        assert_eq!(api_post(&workos, "portal/generate_link", body, None).await.0, expected);
    }
}

#[tokio::test]
async fn audit_log_events_are_validated_recorded_once_per_key_and_can_be_made_to_fail() {
    use standins::workos_standin::ACME_ORGANIZATION_ID;
    let workos = start().await;
    let event = json!({ "organization_id": ACME_ORGANIZATION_ID, "event": {
        "action": "todo.created", "occurred_at": "2026-01-15T12:00:00.000Z",
        "actor": { "type": "user", "id": "user_1" }, "targets": [{ "type": "todo", "id": "t1" }],
        "context": { "location": "127.0.0.1" } } });
    for _ in 0..3 {
        let (status, body) = api_post(&workos, "audit_logs/events", event.clone(), Some("key-1")).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "success": true })));
    }
    assert_eq!(workos.audit_log_events().len(), 1, "the same key (and body): one event");
    let mut missing = event.clone();
    missing["event"]["context"] = json!({});
    let (status, body) = api_post(&workos, "audit_logs/events", missing, Some("key-2")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "event.context.location");
    workos.set_audit_logs_down(true);
    assert_eq!(
        api_post(&workos, "audit_logs/events", event.clone(), Some("key-3")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    workos.set_audit_logs_down(false);
    assert_eq!(api_post(&workos, "audit_logs/events", event, Some("key-3")).await.0, StatusCode::OK);
    assert_eq!(workos.audit_log_events().len(), 2);
    assert_eq!(workos.audit_log_requests().len(), 6, "every request that reached the endpoint");
}

/// WorkOS takes events only for actions configured in its dashboard, with the target types of their schema.
#[tokio::test]
async fn audit_log_events_must_match_a_configured_schema() {
    use standins::workos_standin::ACME_ORGANIZATION_ID;
    let workos = start().await;
    let event = |action: &str, target_type: &str| {
        json!({ "organization_id": ACME_ORGANIZATION_ID, "event": {
            "action": action, "occurred_at": "2026-01-15T12:00:00.000Z",
            "actor": { "type": "user", "id": "user_1" }, "targets": [{ "type": target_type, "id": "t1" }],
            "context": { "location": "127.0.0.1" } } })
    };
    assert_eq!(api_post(&workos, "audit_logs/events", event("todo.created", "todo"), None).await.0, StatusCode::OK);
    for (body, path) in [(event("todo.exploded", "todo"), "/action"), (event("todo.created", "user"), "/targets")] {
        let (status, answer) = api_post(&workos, "audit_logs/events", body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["code"], "invalid_audit_log_event");
        assert_eq!(answer["errors"][0]["instancePath"], path);
    }
    workos.remove_audit_log_schema("todo.created");
    let (status, answer) = api_post(&workos, "audit_logs/events", event("todo.created", "todo"), None).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_audit_log_event")));
    assert_eq!(workos.audit_log_events().len(), 1, "only the first was recorded");
}

#[tokio::test]
async fn audit_log_sends_answered_with_success_are_counted_per_key_repeats_included() {
    let workos = start().await;
    let event = json!({ "organization_id": ACME_ORGANIZATION_ID, "event": {
        "action": "todo.created", "occurred_at": "2026-01-15T12:00:00.000Z",
        "actor": { "type": "user", "id": "user_1" }, "targets": [{ "type": "todo", "id": "t1" }],
        "context": { "location": "127.0.0.1" } } });
    // A repeat is recorded once, but each successful send is counted: a client resending shows here.
    for _ in 0..2 {
        assert_eq!(api_post(&workos, "audit_logs/events", event.clone(), Some("twice")).await.0, StatusCode::OK);
    }
    // Sends that did not succeed are not counted: down, an injected failure, a refusal.
    workos.set_audit_logs_down(true);
    assert_eq!(
        api_post(&workos, "audit_logs/events", event.clone(), Some("once")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    workos.set_audit_logs_down(false);
    workos.fail_next(Endpoint::AuditLogs, 1, 500);
    assert_eq!(
        api_post(&workos, "audit_logs/events", event.clone(), Some("once")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(api_post(&workos, "audit_logs/events", event.clone(), Some("once")).await.0, StatusCode::OK);
    let mut invalid = event.clone();
    invalid["event"]["actor"] = json!({});
    assert_eq!(
        api_post(&workos, "audit_logs/events", invalid, Some("refused")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Without a key nothing is deduplicated, and nothing counted here.
    assert_eq!(api_post(&workos, "audit_logs/events", event, None).await.0, StatusCode::OK);

    let accepted = workos.audit_log_accepted_sends();
    assert_eq!(accepted.get("twice"), Some(&2));
    assert_eq!(accepted.get("once"), Some(&1));
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(workos.audit_log_events().len(), 3, "twice (once), once, and the keyless one");
}

fn audit_event_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut body = json!({ "organization_id": ACME_ORGANIZATION_ID, "event": {
        "action": "todo.created", "occurred_at": "2026-01-15T12:00:00.000Z",
        "actor": { "type": "user", "id": "user_1" }, "targets": [{ "type": "todo", "id": "t1" }],
        "context": { "location": "127.0.0.1" } } });
    change(&mut body["event"]);
    body
}

/// An edited schema is a new version beside the old ones, and WorkOS validates each event against the version it
/// names (`version`, version 1 when it names none): WorkOS docs, *Editing events*.
#[tokio::test]
async fn audit_log_events_are_validated_against_the_schema_version_they_name() {
    let workos = start().await;
    // Version 1 named the target type wrongly; version 2, the edit, fixed it.
    workos.set_audit_log_schema_versions("todo.created", &[&["Todo"], &["todo"]]);
    let refused_as = |answer: &Value| answer["errors"][0]["instancePath"].as_str().map(str::to_owned);
    for version in [None, Some(1)] {
        let body = audit_event_with(|event| {
            if let Some(version) = version {
                event["version"] = json!(version);
            }
        });
        let (status, answer) = api_post(&workos, "audit_logs/events", body, None).await;
        assert_eq!(
            (status, refused_as(&answer)),
            (StatusCode::BAD_REQUEST, Some("/targets".to_owned())),
            "{version:?}"
        );
    }
    let body = audit_event_with(|event| event["version"] = json!(2));
    assert_eq!(api_post(&workos, "audit_logs/events", body, None).await.0, StatusCode::OK);
    let body = audit_event_with(|event| event["version"] = json!(3));
    let (status, answer) = api_post(&workos, "audit_logs/events", body, None).await;
    assert_eq!((status, refused_as(&answer)), (StatusCode::BAD_REQUEST, Some("/version".to_owned())));
    assert_eq!(workos.audit_log_events().len(), 1, "only version 2's");
}

/// WorkOS takes `occurred_at` as an ISO-8601 date-time only (workos-node `audit-log-event.interface.ts`), and the
/// stand-in only in the form the SDKs send (`toISOString()`): WorkOS documents no other.
#[tokio::test]
async fn audit_log_events_need_an_iso_8601_occurred_at() {
    let workos = start().await;
    let not_as_the_sdks_send =
        ["2026-01-15T12:00:00Z", "2026-01-15T12:00:00.123456789Z", "2026-01-15T12:00:00.000+02:00"];
    for bad in ["yesterday", "2026-13-01T12:00:00.000Z", "1768478400", "15 Jan 2026 12:00"]
        .into_iter()
        .chain(not_as_the_sdks_send)
    {
        let body = audit_event_with(|event| event["occurred_at"] = json!(bad));
        let (status, answer) = api_post(&workos, "audit_logs/events", body, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {answer}");
        assert_eq!(answer["errors"][0]["field"], "event.occurred_at", "{bad}");
    }
    let body = audit_event_with(|event| event["occurred_at"] = json!("2026-01-15T12:00:00.120Z"));
    assert_eq!(api_post(&workos, "audit_logs/events", body, None).await.0, StatusCode::OK);
    assert_eq!(workos.audit_log_events().len(), 1);
}

/// WorkOS's metadata limits (docs `/audit-logs/metadata-schema`: 50 keys, keys up to 40 characters, values up to
/// 500) for the event's, the actor's and each target's `metadata`, whose values are strings, numbers or booleans
/// only.
#[tokio::test]
async fn audit_log_metadata_is_held_to_workos_limits() {
    let workos = start().await;
    // 50 keys, one of 40 characters, a string of 500 characters (not bytes), a number and a boolean.
    let mut at_the_limits = Map::new();
    at_the_limits.insert("k".repeat(40), json!("é".repeat(500)));
    at_the_limits.insert("flag".to_owned(), json!(true));
    for i in 0..48 {
        at_the_limits.insert(format!("n_{i}"), json!(i));
    }
    assert_eq!(at_the_limits.len(), 50);
    let mut too_many = at_the_limits.clone();
    too_many.insert("one-more".to_owned(), json!(1));
    let mut long_key = Map::new();
    long_key.insert("k".repeat(41), json!("v"));
    let fine = [
        json!({ "metadata": at_the_limits }),
        json!({ "actor_metadata": { "impersonator": "support@example.com", "level-2_ok": 1.5 } }),
        json!({ "target_metadata": { "note": "x".repeat(500) } }),
    ];
    let bad = [
        (json!({ "metadata": too_many }), "event.metadata".to_owned()),
        (json!({ "metadata": long_key }), format!("event.metadata.{}", "k".repeat(41))),
        (json!({ "metadata": { "has space": "v" } }), "event.metadata.has space".to_owned()),
        (json!({ "metadata": { "dotted.key": "v" } }), "event.metadata.dotted.key".to_owned()),
        (json!({ "actor_metadata": { "note": "x".repeat(501) } }), "event.actor.metadata.note".to_owned()),
        (json!({ "actor_metadata": { "nested": { "a": 1 } } }), "event.actor.metadata.nested".to_owned()),
        (json!({ "target_metadata": { "list": [1, 2] } }), "event.targets.0.metadata.list".to_owned()),
        (json!({ "target_metadata": { "nothing": null } }), "event.targets.0.metadata.nothing".to_owned()),
        (json!({ "metadata": "not an object" }), "event.metadata".to_owned()),
    ];
    let apply = |spec: &Value| {
        let spec = spec.clone();
        audit_event_with(move |event| {
            if let Some(metadata) = spec.get("metadata") {
                event["metadata"] = metadata.clone();
            }
            if let Some(metadata) = spec.get("actor_metadata") {
                event["actor"]["metadata"] = metadata.clone();
            }
            if let Some(metadata) = spec.get("target_metadata") {
                event["targets"][0]["metadata"] = metadata.clone();
            }
        })
    };
    for spec in &fine {
        let (status, answer) = api_post(&workos, "audit_logs/events", apply(spec), None).await;
        assert_eq!(status, StatusCode::OK, "{spec}: {answer}");
    }
    for (spec, field) in &bad {
        let (status, answer) = api_post(&workos, "audit_logs/events", apply(spec), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field.as_str(), "{answer}");
    }
    assert_eq!(workos.audit_log_events().len(), fine.len(), "only the events within the limits were recorded");
}

/// WorkOS identifies a repeat by its `Idempotency-Key` alone: "Each subsequent request matching this unique string
/// will return the same response". A second request with the key gets the first answer and records nothing, even
/// with another body, and a key first answered with a refusal keeps that answer.
#[tokio::test]
async fn an_audit_log_idempotency_key_gets_its_first_answer_whatever_the_body() {
    let workos = start().await;
    let first = audit_event_with(|_| {});
    let other = audit_event_with(|event| event["targets"][0]["id"] = json!("t2"));
    assert_eq!(api_post(&workos, "audit_logs/events", first, Some("key-1")).await.0, StatusCode::OK);
    let (status, answer) = api_post(&workos, "audit_logs/events", other.clone(), Some("key-1")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "success": true })));
    let events = workos.audit_log_events();
    assert_eq!(events.len(), 1, "one event for the key: {events:?}");
    assert_eq!(events[0].event["targets"][0]["id"], "t1", "the first body is the event");
    assert_eq!(workos.audit_log_accepted_sends().get("key-1"), Some(&2), "both sends answered with success");

    let refused = audit_event_with(|event| event["occurred_at"] = json!("yesterday"));
    let (status, first_answer) = api_post(&workos, "audit_logs/events", refused, Some("key-2")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, again) = api_post(&workos, "audit_logs/events", other, Some("key-2")).await;
    assert_eq!((status, again), (StatusCode::UNPROCESSABLE_ENTITY, first_answer), "the first answer again");
    assert_eq!(workos.audit_log_events().len(), 1);
}
