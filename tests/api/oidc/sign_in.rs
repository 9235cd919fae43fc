//! The whole path through the app with an OpenID Connect provider, and the ways a sign-in can go wrong.

use std::time::Duration;

use authbridge::session::{SESSION_COOKIE, sign_in_state_cookie};
use reqwest::Method;
use serde_json::json;
use standins::oidc_standin::{ClientAuth, ClientAuthMethods, Endpoint, OidcStandInOptions, OidcUser};

use super::{param, query};
use crate::helpers::app::{ALICE, BOB, COOKIE_PASSWORD};
use crate::helpers::logs::captured;
use crate::helpers::oidc::{OidcAppOptions, spawn_oidc_app, spawn_oidc_app_with};
use crate::helpers::session::read_session;

fn titles(list: &serde_json::Value) -> Vec<String> {
    list["todos"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sign_in_todos_refresh_and_sign_out_with_alice_and_bob_isolated_by_rls() {
    let app = spawn_oidc_app().await;

    // Sign in: the user is the provider's `sub`, named and mailed from the ID token.
    let alice = app.browser();
    let callback = alice.sign_in_to(ALICE, "/?from=oidc").await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(callback.location().as_deref(), Some("/?from=oidc"));
    assert!(alice.sign_in_states().is_empty(), "the sign-in state is spent");
    let me = alice.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["id"], "auth0|standin-alice");
    assert_eq!(me["email"], ALICE);
    assert_eq!((me["first_name"].as_str(), me["last_name"].as_str()), (Some("Alice"), Some("Anderson")));
    assert_eq!(app.oidc.calls(Endpoint::UserInfo), 0, "the ID token had the profile: no userinfo call");
    let home = alice.get("/").await;
    assert!(home.body.contains("Alice Anderson") && home.body.contains(ALICE), "{}", home.body);

    // Todos, through the JSON API and the page form.
    let created = alice.api(Method::POST, "/api/todos", Some(json!({ "title": "Alice's secret" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let alice_todo = format!("/api/todos/{}", created.json()["id"].as_str().expect("id"));
    assert_eq!(alice.submit("/todos", &[("title", "Alice's form todo")]).await.status, 303);

    // Bob, signed in at the same time, sees none of it, and cannot reach it by id.
    let bob = app.signed_in(BOB).await;
    assert_eq!(bob.api(Method::POST, "/api/todos", Some(json!({ "title": "Bob's" }))).await.status, 201);
    let bobs = bob.api(Method::GET, "/api/todos", None).await;
    assert_eq!(titles(&bobs.json()), ["Bob's"]);
    assert_eq!(bob.api(Method::GET, &alice_todo, None).await.status, 404);
    let hijack = bob.api(Method::PATCH, &alice_todo, Some(json!({ "title": "Bob was here" }))).await;
    assert_eq!(hijack.status, 404);
    assert_eq!(bob.api(Method::DELETE, &alice_todo, None).await.status, 404);
    let mut alices = titles(&alice.api(Method::GET, "/api/todos", None).await.json());
    alices.sort();
    assert_eq!(alices, ["Alice's form todo", "Alice's secret"]);
    // RLS compared the rows' text ids with the minted tokens' `sub`: the provider's ids, `|` and all.
    let mut owners: Vec<String> = app.all_todos().await.into_iter().map(|(owner, _)| owner).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners, ["auth0|standin-alice", "auth0|standin-bob"]);

    // Refresh: a session near its expiry is renewed with the rotated refresh token, transparently.
    let before = read_session(&alice);
    app.age_session(&alice, 10);
    let list = alice.api(Method::GET, "/api/todos", None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(app.oidc.refresh_calls(), 1);
    let after = read_session(&alice);
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");
    assert!(after.oidc.as_ref().expect("oidc").expires_at > authbridge::session::unix_now() + 60);
    assert_eq!(after.session_id, before.session_id, "still the same session");
    assert_eq!(alice.api(Method::GET, "/api/todos", None).await.status, 200);
    assert_eq!(app.oidc.refresh_calls(), 1, "no second refresh while the new tokens are fresh");

    // Sign out: the cookie goes, the refresh token is revoked, the browser is sent to the provider's
    // end_session_endpoint with the ID token as a hint, and comes back to the app.
    let copied = app.browser();
    copied.copy_cookies_from(&alice);
    let id_token = read_session(&alice).oidc.expect("oidc").id_token;
    let out = alice.submit("/logout", &[]).await;
    assert_eq!(out.status, 302, "{}", out.body);
    let location = out.location().expect("to the provider");
    assert!(location.starts_with(&format!("{}oidc/logout?", app.oidc.issuer())), "{location}");
    let pairs = query(&location);
    assert_eq!(param(&pairs, "id_token_hint"), Some(id_token));
    assert_eq!(param(&pairs, "post_logout_redirect_uri").as_deref(), Some(app.base_url.as_str()));
    assert_eq!(param(&pairs, "client_id").as_deref(), Some(app.oidc.client_id()));
    assert!(alice.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.oidc.revocations(), 1, "the refresh token was revoked at the provider");
    let followed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(&location)
        .send()
        .await
        .expect("the provider answers");
    assert_eq!(followed.status(), 302, "the provider accepts the hint and the return address");
    assert_eq!(
        followed.headers().get("location").and_then(|l| l.to_str().ok()),
        Some(app.base_url.as_str()),
        "and sends the browser back to the app"
    );
    assert_eq!(app.oidc.ended_sessions().len(), 1);
    assert_eq!(alice.get("/api/me").await.status, 401);
    assert_eq!(copied.get("/api/me").await.status, 401, "a copy of the signed-out cookie is refused too");
    assert_eq!(bob.api(Method::GET, "/api/me", None).await.status, 200, "Bob is still signed in");
}

#[tokio::test]
async fn login_sends_the_browser_to_the_provider_with_pkce_state_nonce_and_the_hints() {
    let app = spawn_oidc_app().await;
    let browser = app.browser();
    let login = browser.get("/login?login_hint=new%40example.com&screen_hint=sign-up").await;
    assert_eq!(login.status, 302);
    let location = login.location().expect("redirect");
    assert!(location.starts_with(&format!("{}authorize?", app.oidc.issuer())), "{location}");
    let pairs = query(&location);
    assert_eq!(param(&pairs, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&pairs, "client_id").as_deref(), Some(app.oidc.client_id()));
    assert_eq!(param(&pairs, "redirect_uri"), Some(app.base_url.join("/callback").expect("url").to_string()));
    assert_eq!(param(&pairs, "scope").as_deref(), Some("openid profile email offline_access"));
    assert_eq!(param(&pairs, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&pairs, "code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(param(&pairs, "login_hint").as_deref(), Some("new@example.com"));
    assert_eq!(param(&pairs, "screen_hint").as_deref(), Some("signup"), "Auth0's spelling");
    assert_eq!(param(&pairs, "audience").as_deref(), Some(app.oidc.audience()));
    assert_eq!(param(&pairs, "resource").as_deref(), Some(app.oidc.audience()));
    let state = param(&pairs, "state").expect("state");
    let nonce = param(&pairs, "nonce").expect("nonce");
    assert!(state.len() >= 32 && nonce.len() >= 32 && state != nonce, "unguessable and distinct");

    let (name, cookie) = browser.sign_in_state().expect("the sign-in is bound to the browser");
    assert_eq!(name, sign_in_state_cookie(&state), "in a cookie named for its state");
    assert!(!cookie.contains(&state) && !cookie.contains(&nonce), "sealed, not in the clear");
    assert!(!name.contains(&state) && !name.contains(&nonce), "named by a hash, not the state itself");
    // Sign-out posts to the app and is redirected to the provider: the policy lets forms go there.
    let policy = login.header("content-security-policy").expect("a CSP");
    let issuer_origin = app.oidc.issuer().origin().ascii_serialization();
    assert!(policy.contains(&format!("form-action 'self' {issuer_origin};")), "{policy}");

    let plain = browser.get("/login").await;
    let pairs = query(&plain.location().expect("redirect"));
    assert_eq!(param(&pairs, "screen_hint"), None);
    assert_eq!(param(&pairs, "login_hint"), None);

    // Without OIDC_AUDIENCE, neither audience parameter is sent.
    let app = spawn_oidc_app_with(OidcAppOptions::default().var("OIDC_AUDIENCE", "")).await;
    let login = app.browser().get("/login").await;
    let pairs = query(&login.location().expect("redirect"));
    assert_eq!((param(&pairs, "audience"), param(&pairs, "resource")), (None, None));
}

/// A provider that does not list `offline_access` among its scopes and refuses it (Google) still signs people in
/// with the default scopes: the scope is left out (and the session lasts as long as its tokens).
#[tokio::test]
async fn the_default_scopes_work_with_a_provider_that_refuses_offline_access() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { offline_access_scope: false, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.browser();
    let login = browser.get("/login").await;
    let scope = param(&query(&login.location().expect("redirect")), "scope").expect("a scope");
    assert_eq!(scope, "openid profile email");
    assert_eq!(browser.sign_in(ALICE).await.status, 302);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
}

/// Userinfo is asked when the ID token has no email, or no name at all; an email with part of a name is enough.
#[tokio::test]
async fn userinfo_is_asked_only_for_a_missing_email_or_a_missing_name() {
    let app = spawn_oidc_app().await;

    app.oidc.omit_from_next_id_token(&["email", "email_verified"]);
    let browser = app.signed_in(ALICE).await;
    let me = browser.api(Method::GET, "/api/me", None).await.json();
    assert_eq!((me["email"].as_str(), me["first_name"].as_str()), (Some(ALICE), Some("Alice")), "{me}");
    assert_eq!(app.oidc.calls(Endpoint::UserInfo), 1, "names but no email: the email comes from userinfo");

    app.oidc.omit_from_next_id_token(&["family_name"]);
    let browser = app.signed_in(BOB).await;
    let me = browser.api(Method::GET, "/api/me", None).await.json();
    assert_eq!((me["email"].as_str(), me["first_name"].as_str()), (Some(BOB), Some("Bob")), "{me}");
    assert!(me["last_name"].is_null(), "{me}");
    assert_eq!(app.oidc.calls(Endpoint::UserInfo), 1, "an email and a first name: userinfo is not asked");
}

/// Names come as a set from one source: userinfo's fill in only when the ID token had none, and its `name` only when
/// it has neither a given nor a family name.
#[tokio::test]
async fn names_come_from_one_source_and_a_full_name_only_when_there_are_no_parts() {
    let app = spawn_oidc_app().await;

    // No email and only a first name in the ID token: userinfo gives the email; the names stay the ID token's.
    app.oidc.omit_from_next_id_token(&["email", "email_verified", "family_name"]);
    let me = app.signed_in(ALICE).await.api(Method::GET, "/api/me", None).await.json();
    assert_eq!((me["email"].as_str(), me["first_name"].as_str()), (Some(ALICE), Some("Alice")), "{me}");
    assert!(me["last_name"].is_null(), "not mixed with userinfo's family name: {me}");

    // No names in the ID token, a given name but no family name from userinfo: the given name, not the full name.
    app.oidc.omit_from_next_id_token(&["name", "given_name", "family_name"]);
    let body = r#"{"sub":"auth0|standin-alice","given_name":"Alice","name":"Alice Anderson"}"#;
    app.oidc.answer_next(Endpoint::UserInfo, 200, "application/json", body);
    let me = app.signed_in(ALICE).await.api(Method::GET, "/api/me", None).await.json();
    assert_eq!((me["first_name"].as_str(), me["last_name"].as_str()), (Some("Alice"), None), "{me}");
}

#[tokio::test]
async fn profile_and_email_come_from_userinfo_when_the_id_token_lacks_them() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { profile_in_id_token: false, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(BOB).await;
    let me = browser.api(Method::GET, "/api/me", None).await.json();
    assert_eq!(me["id"], "auth0|standin-bob");
    assert_eq!(me["email"], BOB);
    assert_eq!((me["first_name"].as_str(), me["last_name"].as_str()), (Some("Bob"), Some("Brown")));
    assert_eq!(app.oidc.calls(Endpoint::UserInfo), 1);

    // A userinfo answer about someone else is refused (OIDC Core 5.3.4).
    app.oidc.answer_next(
        Endpoint::UserInfo,
        200,
        "application/json",
        r#"{"sub":"auth0|someone-else","email":"x@y.z"}"#,
    );
    let other = app.browser();
    let response = other.sign_in(ALICE).await;
    assert_eq!(response.status, 502, "{}", response.body);
    assert!(other.cookie(SESSION_COOKIE).is_none());

    // The userinfo endpoint refusing the access token (Microsoft Entra's, which is Microsoft Graph's, refuses a token
    // issued for another API): the profile is optional, the sign-in goes on without it.
    app.oidc.answer_next(Endpoint::UserInfo, 401, "application/json", r#"{"error":"invalid_token"}"#);
    let other = app.browser();
    let response = other.sign_in(ALICE).await;
    assert_eq!(response.status, 302, "{}", response.body);
    let me = other.api(Method::GET, "/api/me", None).await.json();
    assert_eq!((me["id"].as_str(), me["email"].as_str()), (Some("auth0|standin-alice"), None), "{me}");

    // The userinfo endpoint down at sign-in: try again later, no half-made session.
    app.oidc.fail_next(Endpoint::UserInfo, 1, 503);
    let other = app.browser();
    let response = other.sign_in(ALICE).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(other.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn an_email_the_provider_says_is_unverified_is_left_out() {
    let mut users = OidcUser::defaults();
    users.push(OidcUser {
        subject: "auth0|standin-dana".into(),
        email: "dana@example.test".into(),
        given_name: Some("Dana".into()),
        family_name: None,
        email_verified: false,
    });
    for profile_in_id_token in [true, false] {
        let options = OidcAppOptions {
            oidc: OidcStandInOptions { users: users.clone(), profile_in_id_token, ..OidcStandInOptions::default() },
            ..OidcAppOptions::default()
        };
        let app = spawn_oidc_app_with(options).await;
        let dana = app.signed_in("dana@example.test").await;
        let me = dana.api(Method::GET, "/api/me", None).await.json();
        assert_eq!(me["id"], "auth0|standin-dana");
        assert!(me["email"].is_null(), "profile in ID token: {profile_in_id_token}: {me}");
        assert_eq!(me["first_name"], "Dana");
    }

    // Some providers (Amazon Cognito) send `email_verified` from userinfo as a string: "false" is still a no.
    let app = spawn_oidc_app().await;
    app.oidc.omit_from_next_id_token(&["email", "email_verified"]);
    let body = r#"{"sub":"auth0|standin-alice","email":"alice@example.test","email_verified":"false"}"#;
    app.oidc.answer_next(Endpoint::UserInfo, 200, "application/json", body);
    let me = app.signed_in(ALICE).await.api(Method::GET, "/api/me", None).await.json();
    assert!(me["email"].is_null(), "{me}");
}

/// Answers from the provider are read up to `oidc::http::MAX_BODY` bytes: a token answer of exactly that size is read
/// (and refused for what it lacks, 502), one byte more is not read at all (503, as an outage).
#[tokio::test]
async fn provider_answers_are_read_up_to_the_size_limit_and_no_further() {
    use authbridge::oidc::http::MAX_BODY;
    let app = spawn_oidc_app().await;
    let answer_of = |size: usize| {
        let head = r#"{"access_token":"x","token_type":"Bearer","expires_in":60,"padding":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "a".repeat(size - head.len() - tail.len()))
    };
    for (size, expected) in [(MAX_BODY, 502), (MAX_BODY + 1, 503)] {
        let browser = app.browser();
        let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
        let callback = browser.authorize(&login.location().expect("authorize URL")).await;
        app.oidc.answer_next(Endpoint::Token, 200, "application/json", &answer_of(size));
        let response = browser.get(&callback).await;
        assert_eq!(response.status, expected, "{size} bytes: {}", response.body);
        assert!(browser.cookie(SESSION_COOKIE).is_none(), "{size} bytes: no session");
    }
}

/// RFC 9207: a sign-in answer that names another authorization server is refused and its code never exchanged; one
/// naming ours signs in.
#[tokio::test]
async fn an_answer_naming_another_authorization_server_is_refused() {
    use crate::helpers::browser::enc;
    let app = spawn_oidc_app().await;
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let mixed_up = browser.get(&format!("{callback}&iss={}", enc("https://attacker.example/"))).await;
    assert_eq!(mixed_up.status, 400, "{}", mixed_up.body);
    assert!(mixed_up.body.contains("another identity provider"), "{}", mixed_up.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.oidc.code_calls(), 0, "the code was never exchanged");

    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let ours = browser.get(&format!("{callback}&iss={}", enc(app.oidc.issuer().as_str()))).await;
    assert_eq!(ours.status, 302, "{}", ours.body);
    assert!(browser.cookie(SESSION_COOKIE).is_some());
}

/// RFC 9207 §2.4: a provider that promises `iss` in discovery (Keycloak, Okta) must send it. An answer without it is
/// refused and its code never exchanged; the answer as sent, with `iss`, signs in.
#[tokio::test]
async fn an_answer_without_the_promised_issuer_is_refused() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { authorization_response_iss: true, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let mut stripped = url::Url::parse(&format!("http://app.invalid{callback}")).expect("the callback is a URL path");
    let kept: Vec<(String, String)> = stripped
        .query_pairs()
        .filter(|(name, _)| name != "iss")
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    assert!(kept.len() < stripped.query_pairs().count(), "the stand-in sent iss: {callback}");
    stripped.query_pairs_mut().clear().extend_pairs(&kept);
    let without = browser.get(&format!("{}?{}", stripped.path(), stripped.query().unwrap_or_default())).await;
    assert_eq!(without.status, 400, "{}", without.body);
    assert!(without.body.contains("did not say which identity provider"), "{}", without.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.oidc.code_calls(), 0, "the code was never exchanged");

    let browser = app.browser();
    assert_eq!(browser.sign_in(ALICE).await.status, 302, "the answer as sent, with iss, signs in");
    assert!(browser.cookie(SESSION_COOKIE).is_some());
}

#[tokio::test]
async fn a_mismatched_or_missing_state_is_refused_and_the_code_never_exchanged() {
    let app = spawn_oidc_app().await;
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;

    let tampered = browser.get(&callback.replace("state=", "state=x")).await;
    assert_eq!(tampered.status, 400, "{}", tampered.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    // The genuine callback in a browser that did not start this sign-in (login CSRF).
    let stranger = app.browser();
    let response = stranger.get(&callback).await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("sign in again"), "{}", response.body);
    assert!(stranger.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.oidc.code_calls(), 0, "no code was ever exchanged");
}

/// Two sign-ins started in one browser at once (two tabs), both approved at the provider: each callback finishes
/// its own, with its own PKCE verifier and ID-token nonce, in either order, and spends only its own state cookie.
#[tokio::test]
async fn sign_ins_started_in_two_tabs_of_one_browser_both_finish_in_either_order() {
    let app = spawn_oidc_app().await;
    for order in [[0, 1], [1, 0]] {
        let browser = app.browser();
        let mut callbacks = Vec::new();
        for return_to in ["%2Fa", "%2Fb"] {
            let login = browser.get(&format!("/login?login_hint={ALICE}&return_to={return_to}")).await;
            callbacks.push(browser.authorize(&login.location().expect("authorize URL")).await);
        }
        let state_of = |callback: &str| param(&query(&format!("http://x{callback}")), "state").expect("state");
        assert_eq!(browser.sign_in_states().len(), 2, "one state cookie per sign-in");

        let [first, second] = order;
        let signed_in = browser.get(&callbacks[first]).await;
        assert_eq!(signed_in.status, 302, "{order:?}: {}", signed_in.body);
        assert_eq!(signed_in.location().as_deref(), Some(["/a", "/b"][first]));
        let left: Vec<String> = browser.sign_in_states().into_keys().collect();
        assert_eq!(left, [sign_in_state_cookie(&state_of(&callbacks[second]))], "the other tab's is kept");

        let signed_in = browser.get(&callbacks[second]).await;
        assert_eq!(signed_in.status, 302, "{order:?}: {}", signed_in.body);
        assert_eq!(signed_in.location().as_deref(), Some(["/a", "/b"][second]));
        assert!(browser.sign_in_states().is_empty());
    }
    assert_eq!(app.oidc.code_calls(), 4);
}

#[tokio::test]
async fn a_replayed_code_is_refused_with_no_session() {
    let app = spawn_oidc_app().await;
    let first = app.browser();
    let login = first.get(&format!("/login?login_hint={ALICE}")).await;
    let (state_name, state_cookie) = first.sign_in_state().expect("state cookie");
    let callback = first.authorize(&login.location().expect("authorize URL")).await;
    assert_eq!(first.get(&callback).await.status, 302, "the first use signs in");

    let replay = app.browser();
    replay.set_cookie(&state_name, &state_cookie);
    let response = replay.get(&callback).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert!(response.body.contains("already used"), "{}", response.body);
    assert!(replay.cookie(SESSION_COOKIE).is_none(), "no session from a replayed code");
}

#[tokio::test]
async fn a_provider_error_redirect_is_shown_as_a_page_escaped() {
    let app = spawn_oidc_app().await;
    let browser = app.browser();
    let login = browser.get("/login").await;
    let state = param(&query(&login.location().expect("authorize URL")), "state").expect("state");
    let response = browser
        .get(&format!("/callback?error=access_denied&error_description=%3Cb%3EUser%3C%2Fb%3E+is+blocked&state={state}"))
        .await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("&#60;b&#62;User&#60;/b&#62; is blocked"), "{}", response.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    // The operator reads the provider's reason too, not only `access_denied` (which a user declining also gives).
    let request_id = response.header("x-request-id").expect("a request id");
    let line =
        crate::helpers::logs::logged(&request_id, "INFO", "the identity provider returned a sign-in error").await;
    assert!(line.is_some_and(|line| line.contains("<b>User</b> is blocked")), "the description is logged");
}

#[tokio::test]
async fn the_token_endpoint_failing_answers_502_or_503_or_its_refusal_and_makes_no_session() {
    let app = spawn_oidc_app().await;
    type BreakIt = Box<dyn Fn(&standins::oidc_standin::OidcStandIn)>;
    let cases: [(BreakIt, u16); 8] = [
        (Box::new(|oidc| oidc.fail_next(Endpoint::Token, 1, 500)), 503),
        // Auth0 answers 500 when an Action denies the sign-in: a refusal all the same, shown as one.
        (
            Box::new(|oidc| {
                let body = r#"{"error":"access_denied","error_description":"Blocked by an Action"}"#;
                oidc.answer_next(Endpoint::Token, 500, "application/json", body)
            }),
            401,
        ),
        // The provider declining this sign-in, rather than our registration: a failed sign-in (401) with its reason.
        (
            Box::new(|oidc| {
                let body = r#"{"error":"access_denied","error_description":"Consent was withdrawn"}"#;
                oidc.answer_next(Endpoint::Token, 400, "application/json", body)
            }),
            401,
        ),
        (Box::new(|oidc| oidc.fail_next(Endpoint::Token, 1, 429)), 503),
        // Our client credentials refused: the operator's problem, not the user's.
        (
            Box::new(|oidc| {
                oidc.answer_next(Endpoint::Token, 401, "application/json", r#"{"error":"invalid_client"}"#)
            }),
            502,
        ),
        // The same as Auth0 says it for a wrong client secret.
        (
            Box::new(|oidc| {
                let body = r#"{"error":"access_denied","error_description":"Unauthorized"}"#;
                oidc.answer_next(Endpoint::Token, 401, "application/json", body)
            }),
            502,
        ),
        (Box::new(|oidc| oidc.answer_next(Endpoint::Token, 200, "text/html", "<html>not JSON</html>")), 502),
        (
            Box::new(|oidc| {
                let body = r#"{"access_token":"x","token_type":"Bearer","expires_in":60,"id_token":"not.a.jwt"}"#;
                oidc.answer_next(Endpoint::Token, 200, "application/json", body)
            }),
            502,
        ),
    ];
    for (break_it, expected) in cases {
        let browser = app.browser();
        let login = browser.get(&format!("/login?login_hint={BOB}")).await;
        let callback = browser.authorize(&login.location().expect("authorize URL")).await;
        break_it(&app.oidc);
        let response = browser.get(&callback).await;
        assert_eq!(response.status, expected, "{}", response.body);
        assert!(browser.cookie(SESSION_COOKIE).is_none(), "no half-made session");
        if expected == 503 {
            assert!(response.header("retry-after").is_some());
        }
    }
    // The refused client credentials tell the operator what to check.
    let logs = captured();
    assert!(
        logs.lines()
            .any(|line| line.contains("refused this app's client credentials") && line.contains("OIDC_CLIENT_SECRET")),
        "the fix is logged"
    );
}

#[tokio::test]
async fn the_client_authenticates_with_basic_unless_only_post_is_offered() {
    let app = spawn_oidc_app().await;
    app.signed_in(ALICE).await;
    assert_eq!(app.oidc.last_client_auth(), Some(ClientAuth::Basic));

    let options = OidcAppOptions {
        oidc: OidcStandInOptions {
            client_auth_methods: ClientAuthMethods::PostOnly,
            application_auth: ClientAuth::Post,
            ..OidcStandInOptions::default()
        },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    app.signed_in(ALICE).await;
    assert_eq!(app.oidc.last_client_auth(), Some(ClientAuth::Post));
}

/// Auth0 lists both methods in discovery but enforces the one the application is set to, `Client Secret (Post)`
/// for a new Regular Web Application: authbridge sends Basic, Auth0 answers 401 `access_denied` "Unauthorized", and
/// the sign-in fails with a page for the person and, for the operator, the setting to change (the README's Auth0
/// step sets the application to Basic).
#[tokio::test]
async fn an_auth0_application_left_on_client_secret_post_fails_sign_in_and_the_log_says_what_to_change() {
    crate::helpers::logs::capture();
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { application_auth: ClientAuth::Post, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.browser();
    let response = browser.sign_in(ALICE).await;
    assert_eq!(response.status, 502, "{}", response.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "no session");
    assert_eq!(app.oidc.last_client_auth(), None, "the stand-in took no client authentication");
    let logs = crate::helpers::logs::captured();
    let line = logs.lines().find(|line| line.contains("Client Secret (Basic)")).unwrap_or_default();
    assert!(line.contains("OIDC_CLIENT_SECRET"), "the fix is logged: {line:?}");
}

#[tokio::test]
async fn a_full_oidc_sign_in_leaves_no_secret_in_the_logs() {
    let app = spawn_oidc_app().await;
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let pairs = query(&login.location().expect("authorize URL"));
    let (state, nonce) = (param(&pairs, "state").expect("state"), param(&pairs, "nonce").expect("nonce"));
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let code = param(&query(&format!("http://x{callback}")), "code").expect("code");
    assert_eq!(browser.get(&callback).await.status, 302);
    app.age_session(&browser, 5);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200, "refreshed");
    let session = read_session(&browser);
    let bearer = app.oidc.mint_access_token(&app.subject(ALICE), Duration::from_secs(60));
    assert_eq!(app.bearer_client(bearer.clone()).get("/api/todos").await.status, 200);
    assert_eq!(browser.submit("/logout", &[]).await.status, 302);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let logs = captured();
    let oidc = session.oidc.expect("oidc");
    for (what, secret) in [
        ("authorization code", code.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("ID token", oidc.id_token.as_str()),
        ("access token", session.access_token.as_str()),
        ("refresh token", session.refresh_token.as_deref().expect("a refresh token")),
        ("bearer token", bearer.as_str()),
        ("client secret", app.oidc.client_secret().expose()),
        ("cookie password", COOKIE_PASSWORD),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}

#[tokio::test]
async fn a_session_made_by_the_other_provider_is_refused_and_cleared() {
    // Both apps seal with the same cookie password, as after switching IDENTITY_PROVIDER in place.
    let workos_app = crate::helpers::app::spawn_app().await;
    let oidc_app = spawn_oidc_app().await;

    let from_workos = workos_app.signed_in(ALICE).await;
    let presented = oidc_app.browser();
    presented.copy_cookies_from(&from_workos);
    let me = presented.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(presented.cookie(SESSION_COOKIE).is_none(), "the foreign session's cookie is cleared");

    let from_oidc = oidc_app.signed_in(ALICE).await;
    let presented = workos_app.browser();
    presented.copy_cookies_from(&from_oidc);
    let me = presented.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(presented.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_session_from_another_issuer_is_refused() {
    // Another tenant (another OIDC_ISSUER) with the same cookie password: its `sub`s mean other people here.
    let tenant_a = spawn_oidc_app().await;
    let tenant_b = spawn_oidc_app().await;
    let signed_in = tenant_a.signed_in(ALICE).await;
    let presented = tenant_b.browser();
    presented.copy_cookies_from(&signed_in);
    assert_eq!(presented.api(Method::GET, "/api/me", None).await.status, 401);
    assert!(presented.cookie(SESSION_COOKIE).is_none());
}
