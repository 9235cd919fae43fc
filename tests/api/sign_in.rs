//! Signing in through WorkOS AuthKit (the stand-in), and every way the sign-in can go wrong.

use std::time::Duration;

use authbridge::session::{SESSION_COOKIE, SIGN_IN_STATE_COOKIE, sign_in_state_cookie};
use reqwest::Method;
use standins::workos_standin::Endpoint;
use url::Url;

use crate::helpers::app::{ALICE, AppOptions, BOB, spawn_app, spawn_app_with};
use crate::helpers::browser::extract_csrf_token;

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url).expect("absolute URL").query_pairs().into_owned().collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The `state` of an app-relative callback path.
fn state_in(callback: &str) -> String {
    param(&query(&format!("http://app.invalid{callback}")), "state").expect("a state")
}

#[tokio::test]
async fn a_user_signs_in_and_the_app_knows_who_they_are() {
    let app = spawn_app().await;
    let browser = app.browser();

    let callback = browser.sign_in_to(ALICE, "/?after=signin").await;
    assert_eq!(callback.status, 302);
    assert_eq!(callback.location().as_deref(), Some("/?after=signin"), "back where the user started");

    let session_line = callback
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie is set");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_line.contains(attribute), "{attribute} missing: {session_line}");
    }
    assert!(!session_line.contains("Secure"), "no Secure flag on a plain-http redirect URI");
    assert!(browser.sign_in_states().is_empty(), "the sign-in state cookie is cleared");

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["id"], app.user_id(ALICE));
    assert_eq!(me["email"], ALICE);
    assert_eq!(me["first_name"], "Alice");
    assert_eq!(me["last_name"], "Anderson");
    assert!(me["organization_id"].as_str().is_some_and(|org| org.starts_with("org_")), "{me}");
    assert!(me["impersonator"].is_null());

    let home = browser.get("/").await;
    assert!(home.body.contains("Alice Anderson") && home.body.contains(ALICE), "{}", home.body);
}

#[tokio::test]
async fn signed_out_api_requests_get_401_json() {
    let app = spawn_app().await;
    let me = app.browser().get("/api/me").await;
    assert_eq!(me.status, 401);
    assert_eq!(me.error_code(), "unauthorized");
}

#[tokio::test]
async fn login_sends_the_browser_to_authkit_with_pkce_and_a_sealed_state() {
    let app = spawn_app().await;
    let browser = app.browser();
    let login = browser.get("/login?screen_hint=sign-up&login_hint=new%40example.com").await;
    assert_eq!(login.status, 302);
    let location = login.location().expect("redirect");
    assert!(location.starts_with(app.workos.base_url().join("/user_management/authorize").expect("url").as_str()));

    let pairs = query(&location);
    assert_eq!(param(&pairs, "client_id").as_deref(), Some(app.workos.client_id()));
    assert_eq!(
        param(&pairs, "redirect_uri").as_deref(),
        app.config.workos().map(|workos| workos.redirect_uri.as_str())
    );
    assert_eq!(param(&pairs, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&pairs, "provider").as_deref(), Some("authkit"));
    assert_eq!(param(&pairs, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&pairs, "code_challenge").map(|c| c.len()), Some(43), "base64url SHA-256");
    assert_eq!(param(&pairs, "screen_hint").as_deref(), Some("sign-up"));
    assert_eq!(param(&pairs, "login_hint").as_deref(), Some("new@example.com"));
    let state = param(&pairs, "state").expect("state");
    assert!(state.len() >= 32, "an unguessable state");

    let state_cookie = login
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with(&format!("{}=", sign_in_state_cookie(&state))))
        .expect("the state is bound to the browser, in a cookie named for it");
    assert!(state_cookie.contains("HttpOnly") && state_cookie.contains("Max-Age=600"), "{state_cookie}");
    assert!(!state_cookie.contains(&state), "the cookie is sealed, and named by a hash, not the bare nonce");

    let org = browser.get("/login?organization_id=org_123").await;
    let pairs = query(&org.location().expect("redirect"));
    assert_eq!(param(&pairs, "organization_id").as_deref(), Some("org_123"));
    assert_eq!(param(&pairs, "provider").as_deref(), Some("authkit"), "AuthKit, scoped to the organization");

    let odd_hint = browser.get("/login?screen_hint=evil").await;
    assert_eq!(param(&query(&odd_hint.location().expect("redirect")), "screen_hint"), None);
}

/// The href of the confirmation page's "Continue to sign in" link, its HTML escapes undone.
fn continue_link(body: &str) -> String {
    let marker = r#"<a class="button" href=""#;
    let start = body.find(marker).expect("a continue link") + marker.len();
    let end = start + body[start..].find('"').expect("the href ends");
    body[start..end].replace("&#38;", "&").replace("&amp;", "&")
}

/// Login CSRF: another site's page sending a browser to `/login?organization_id=…` (or `login_hint=…`, which can
/// route by domain) could land the victim in an identity provider the attacker runs, which answers at once, signed
/// in as the attacker. Such a sign-in waits for the person to confirm it on the app's own page, whose form repeats
/// the request from the app's origin.
#[tokio::test]
async fn a_sign_in_through_an_organization_asked_for_by_another_site_waits_for_the_person_to_confirm_it() {
    let app = spawn_app().await;
    let browser = app.browser();
    let from = |site: &'static str| move |request: reqwest::RequestBuilder| request.header("sec-fetch-site", site);
    let asked = "/login?organization_id=org_attacker&login_hint=%3Cb%3Emallory%40evil.test&return_to=%2Ftodos";

    for site in ["cross-site", "same-site"] {
        let page = browser.request(Method::GET, asked, from(site)).await;
        assert_eq!(page.status, 200, "{site}: {}", page.body);
        assert_eq!(page.location(), None, "{site}: not sent to the identity provider");
        assert!(page.set_cookies().is_empty(), "{site}: no sign-in state is started: {:?}", page.set_cookies());
        assert!(page.body.contains("Continue to sign in?"), "{}", page.body);
        assert!(page.body.contains("&#60;b&#62;mallory@evil.test"), "the hint is shown, escaped: {}", page.body);
        assert!(page.body.contains("organization <code><bdi>org_attacker</bdi></code>"), "{}", page.body);
        // A link, not a form: browsers apply the CSP's `form-action` to the redirects after a form is sent, and the
        // provider's sign-in domain is not one it names.
        assert!(!page.body.contains("<form"), "{}", page.body);
        let continue_to = continue_link(&page.body);
        assert_eq!(
            continue_to, "/login?organization_id=org_attacker&login_hint=%3Cb%3Emallory%40evil.test&return_to=%2Ftodos",
            "the link repeats the request"
        );
        // Followed from the page (same-origin): on to the identity provider with the same parameters.
        let login = browser.request(Method::GET, &continue_to, from("same-origin")).await;
        assert_eq!(login.status, 302, "{}", login.body);
        let pairs = query(&login.location().expect("redirect"));
        assert_eq!(param(&pairs, "organization_id").as_deref(), Some("org_attacker"));
        assert_eq!(param(&pairs, "login_hint").as_deref(), Some("<b>mallory@evil.test"));
    }
    // A link opened from a mail or chat application (or typed): `none`; a browser without Fetch Metadata: nothing.
    let from_an_application = browser.request(Method::GET, asked, from("none")).await;
    assert_eq!(from_an_application.status, 200, "{}", from_an_application.body);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let bare = http.get(app.base_url.join(asked).expect("url")).send().await.expect("an answer");
    assert_eq!(bare.status(), 200, "no Fetch Metadata, no Origin: asked too");
    assert!(bare.headers().get("location").is_none());

    // The confirmation's own form, or any of the app's pages: same-origin, on to the identity provider.
    let login = browser.request(Method::GET, asked, from("same-origin")).await;
    assert_eq!(login.status, 302, "{}", login.body);
    let pairs = query(&login.location().expect("redirect"));
    assert_eq!(param(&pairs, "organization_id").as_deref(), Some("org_attacker"));
    let ours = browser.origin();
    let with_our_origin =
        browser.request(Method::GET, asked, |r| r.header("origin", ours).header("sec-fetch-site", "none")).await;
    assert_eq!(with_our_origin.status, 302, "{}", with_our_origin.body);
    // Longer than an email address or an organization id can be: refused, not copied into the redirect.
    for too_long in [format!("login_hint={}", "a".repeat(321)), format!("organization_id=org_{}", "x".repeat(253))] {
        let refused = browser.get(&format!("/login?{too_long}")).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.location(), None);
    }
    let longest = browser.get(&format!("/login?login_hint={}%40example.com", "a".repeat(308))).await;
    assert_eq!(longest.status, 302, "a 320-byte address is taken: {}", longest.body);
    // Nothing names an identity provider: the hosted sign-in, where the person types who they are.
    let plain = browser.request(Method::GET, "/login?return_to=%2Ftodos", from("cross-site")).await;
    assert_eq!(plain.status, 302, "{}", plain.body);
}

#[tokio::test]
async fn a_callback_without_the_state_cookie_is_refused_and_creates_no_session() {
    let app = spawn_app().await;
    let victim = app.browser();
    let login = victim.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = victim.authorize(&login.location().expect("authorize URL")).await;

    // The callback URL lands in another browser (a login-CSRF attempt, or a link shared by mistake).
    let other = app.browser();
    let response = other.get(&callback).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.contains("sign in again"), "a clear page: {}", response.body);
    // The likely causes, including the one a person can fix: starting at `127.0.0.1` when the redirect URI says
    // `localhost`.
    assert!(response.body.contains("in another browser or at another address"), "{}", response.body);
    assert!(response.body.contains(r#"href="/login""#), "with a link to sign in again: {}", response.body);
    assert!(other.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.workos.code_calls(), 0, "the code is never even exchanged");
}

#[tokio::test]
async fn a_callback_with_a_mismatched_state_is_refused() {
    let app = spawn_app().await;
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    let tampered = callback.replace("state=", "state=x");
    let response = browser.get(&tampered).await;
    assert_eq!(response.status, 400);
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    let missing = browser.get("/callback?code=abc").await;
    assert_eq!(missing.status, 400);
}

/// Starts a sign-in in `browser` for Alice, coming back to `return_to`, and has the WorkOS stand-in approve it:
/// the callback path the provider sends the browser to.
async fn approved_sign_in(browser: &crate::helpers::browser::Browser, return_to: &str) -> String {
    let enc = crate::helpers::browser::enc;
    let login = browser.get(&format!("/login?login_hint={}&return_to={}", enc(ALICE), enc(return_to))).await;
    assert_eq!(login.status, 302, "{}", login.body);
    browser.authorize(&login.location().expect("authorize URL")).await
}

/// Two sign-ins started in one browser at once (two tabs, or every tab reloading after the session ended), both
/// approved at the provider: each callback finishes its own sign-in, in either order, and lands where its tab
/// started. With one state cookie per browser, the earlier tab's callback was refused as expired.
#[tokio::test]
async fn sign_ins_started_in_two_tabs_of_one_browser_both_finish_in_either_order() {
    let app = spawn_app().await;
    for order in [[0, 1], [1, 0]] {
        let browser = app.browser();
        let callbacks = [approved_sign_in(&browser, "/a").await, approved_sign_in(&browser, "/b").await];
        let held = browser.sign_in_states();
        let names = callbacks.each_ref().map(|callback| sign_in_state_cookie(&state_in(callback)));
        let mut expected = names.to_vec();
        expected.sort();
        assert_eq!(held.keys().cloned().collect::<Vec<_>>(), expected, "one cookie per sign-in, named for its state");

        let [first, second] = order;
        let signed_in = browser.get(&callbacks[first]).await;
        assert_eq!(signed_in.status, 302, "{order:?}: {}", signed_in.body);
        assert_eq!(signed_in.location().as_deref(), Some(["/a", "/b"][first]), "{order:?}");
        let other = (names[second].clone(), held[&names[second]].clone());
        assert_eq!(browser.sign_in_states().into_iter().collect::<Vec<_>>(), [other], "the other tab's is kept");

        let signed_in = browser.get(&callbacks[second]).await;
        assert_eq!(signed_in.status, 302, "{order:?}: {}", signed_in.body);
        assert_eq!(signed_in.location().as_deref(), Some(["/a", "/b"][second]), "{order:?}");
        assert!(browser.sign_in_states().is_empty(), "both spent");
        assert_eq!(browser.api(Method::GET, "/api/me", None).await.json()["email"], ALICE);
    }
    assert_eq!(app.workos.code_calls(), 4);
}

/// Each callback spends its own sign-in's state cookie and no other: one answering another sign-in (one already
/// finished, or another site's link) is refused, and the provider's error answer to one tab's sign-in ends that
/// sign-in only; the sign-in under way in the other tab is left alone, and finishes.
#[tokio::test]
async fn a_callback_spends_only_its_own_sign_ins_state_and_leaves_the_other_tabs() {
    let app = spawn_app().await;
    let browser = app.browser();
    let callback_a = approved_sign_in(&browser, "/").await;
    let callback_b = approved_sign_in(&browser, "/todos").await;
    let name_b = sign_in_state_cookie(&state_in(&callback_b));
    let state_b = browser.cookie(&name_b).expect("tab B's sign-in state");

    let denied = browser.get(&format!("/callback?error=access_denied&state={}", state_in(&callback_a))).await;
    assert_eq!(denied.status, 400, "{}", denied.body);
    assert!(denied.body.contains("access denied"), "the provider's answer to tab A's own sign-in: {}", denied.body);
    let left: Vec<String> = browser.sign_in_states().into_keys().collect();
    assert_eq!(left, std::slice::from_ref(&name_b), "tab A's alone is spent");

    let stale = browser.get(&callback_a).await;
    assert_eq!(stale.status, 400, "tab A's sign-in is over: {}", stale.body);
    assert!(stale.body.contains(r#"href="/login">Sign in again<"#), "the way on is offered: {}", stale.body);
    let foreign = browser.get("/callback?state=x").await;
    assert_eq!(foreign.status, 400, "{}", foreign.body);
    assert_eq!(browser.cookie(&name_b), Some(state_b), "tab B's sign-in state is kept");
    assert_eq!(browser.sign_in_states().len(), 1);
    assert_eq!(app.workos.code_calls(), 0);

    let signed_in = browser.get(&callback_b).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    assert_eq!(signed_in.location().as_deref(), Some("/todos"));
    assert!(browser.cookie(SESSION_COOKIE).is_some());
    assert!(browser.sign_in_states().is_empty(), "spent by its own callback");
}

/// A browser keeps at most five sign-ins under way: the sixth started at once drops the oldest, whose callback is
/// then refused as expired, and the others still finish.
#[tokio::test]
async fn a_sixth_sign_in_at_once_drops_the_oldest() {
    let app = spawn_app().await;
    let browser = app.browser();
    let mut callbacks = Vec::new();
    for tab in 0..5 {
        callbacks.push(approved_sign_in(&browser, &format!("/{tab}")).await);
    }
    assert_eq!(browser.sign_in_states().len(), 5);
    let sixth = browser.get(&format!("/login?login_hint={ALICE}&return_to=%2F5")).await;
    assert_eq!(sixth.status, 302, "{}", sixth.body);
    let oldest = sign_in_state_cookie(&state_in(&callbacks[0]));
    let expired: Vec<String> = sixth.set_cookies().into_iter().filter(|line| line.contains("Max-Age=0")).collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].starts_with(&format!("{oldest}=;")), "the oldest is the one expired: {expired:?}");
    callbacks.push(browser.authorize(&sixth.location().expect("authorize URL")).await);
    let held = browser.sign_in_states();
    assert_eq!(held.len(), 5, "{held:?}");
    assert!(!held.contains_key(&oldest));

    let dropped = browser.get(&callbacks[0]).await;
    assert_eq!(dropped.status, 400, "{}", dropped.body);
    assert!(dropped.body.contains("sign in again"), "{}", dropped.body);
    for tab in [1, 5] {
        let signed_in = browser.get(&callbacks[tab]).await;
        assert_eq!(signed_in.status, 302, "tab {tab}: {}", signed_in.body);
        assert_eq!(signed_in.location(), Some(format!("/{tab}")));
    }
    assert_eq!(browser.sign_in_states().len(), 3, "the two finished are spent, the rest wait");
}

/// A sign-in started on the previous version, which kept a browser's one sign-in in the single `wos-auth-state`
/// cookie, still finishes after a rolling deploy, and its cookie is spent; a sign-in started since, beside it,
/// finishes too.
#[tokio::test]
async fn a_sign_in_started_in_the_previous_versions_single_cookie_still_finishes() {
    let app = spawn_app().await;
    let browser = app.browser();
    let before = approved_sign_in(&browser, "/before").await;
    // Moved to the single cookie, sealed as the previous version sealed it (without `started_at_micros`).
    let (name, sealed) = browser.sign_in_state().expect("a state cookie");
    browser.remove_cookie(&name);
    let sealer = crate::helpers::session::sealer(crate::helpers::app::COOKIE_PASSWORD);
    let purpose = authbridge::session::seal::Purpose::SignInState;
    let mut state: serde_json::Value =
        serde_json::from_slice(&sealer.open(purpose, &sealed).expect("opens").plaintext).expect("json");
    state.as_object_mut().expect("an object").remove("started_at_micros");
    browser.set_cookie(SIGN_IN_STATE_COOKIE, &sealer.seal(purpose, state.to_string().as_bytes()).expect("seal"));
    let after = approved_sign_in(&browser, "/after").await;

    let foreign = browser.get("/callback?state=x").await;
    assert_eq!(foreign.status, 400);
    assert_eq!(browser.sign_in_states().len(), 2, "another sign-in's callback leaves the single cookie");
    let signed_in = browser.get(&before).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    assert_eq!(signed_in.location().as_deref(), Some("/before"));
    let left = browser.sign_in_states();
    assert_eq!(left.into_keys().collect::<Vec<_>>(), [sign_in_state_cookie(&state_in(&after))], "spent");
    let signed_in = browser.get(&after).await;
    assert_eq!(signed_in.location().as_deref(), Some("/after"), "{}", signed_in.body);
    assert!(browser.sign_in_states().is_empty());
}

#[tokio::test]
async fn a_replayed_code_is_refused_with_401_and_no_session() {
    let app = spawn_app().await;
    let first = app.browser();
    let login = first.get(&format!("/login?login_hint={ALICE}")).await;
    let (state_name, state_cookie) = first.sign_in_state().expect("state cookie");
    let callback = first.authorize(&login.location().expect("authorize URL")).await;
    assert_eq!(first.get(&callback).await.status, 302, "the first use signs in");

    // Someone replays the same callback, with the same state cookie.
    let replay = app.browser();
    replay.set_cookie(&state_name, &state_cookie);
    let response = replay.get(&callback).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert!(response.body.contains("already used"), "{}", response.body);
    assert!(replay.cookie(SESSION_COOKIE).is_none(), "no session from a replayed code");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let app = spawn_app().await;
    app.workos.set_code_ttl(Duration::from_millis(1));
    let browser = app.browser();
    let login = browser.get(&format!("/login?login_hint={ALICE}")).await;
    let callback = browser.authorize(&login.location().expect("authorize URL")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = browser.get(&callback).await;
    assert_eq!(response.status, 401);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn an_error_from_workos_is_shown_escaped_with_400() {
    let app = spawn_app().await;
    let browser = app.browser();
    let login = browser.get("/login").await;
    let state = param(&query(&login.location().expect("authorize URL")), "state").expect("state");
    let response = browser
        .get(&format!(
            "/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E+denied&state={state}"
        ))
        .await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("&#60;script&#62;alert(1)&#60;/script&#62; denied"), "{}", response.body);
    assert!(!response.body.contains("<script>"));
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    assert!(browser.sign_in_states().is_empty(), "the spent state is cleared");
}

#[tokio::test]
async fn a_crafted_error_link_cannot_put_its_words_on_the_page() {
    let app = spawn_app().await;
    let victim = app.browser();
    victim.get("/login").await;
    // A link from someone else: it cannot know this browser's state.
    let response =
        victim.get("/callback?error=access_denied&error_description=Call+0800+SCAM+to+unlock&state=guess").await;
    assert_eq!(response.status, 400);
    assert!(!response.body.contains("SCAM"), "{}", response.body);
    assert!(response.body.contains("sign in again"));
}

#[tokio::test]
async fn workos_failing_during_the_code_exchange_gives_502_or_503_and_no_session() {
    let app = spawn_app_with(AppOptions::default().var("WORKOS_REQUEST_TIMEOUT_MS", 500)).await;

    for (break_it, expected) in [
        (
            Box::new(|w: &standins::workos_standin::WorkosStandIn| w.fail_next(Endpoint::Authenticate, 1, 500))
                as Box<dyn Fn(&standins::workos_standin::WorkosStandIn)>,
            502,
        ),
        (Box::new(|w| w.fail_next(Endpoint::Authenticate, 1, 429)), 503),
        (Box::new(|w| w.hang_next(Endpoint::Authenticate, 1)), 503),
    ] {
        let browser = app.browser();
        let login = browser.get(&format!("/login?login_hint={BOB}")).await;
        let callback = browser.authorize(&login.location().expect("authorize URL")).await;
        break_it(&app.workos);
        let response = browser.get(&callback).await;
        assert_eq!(response.status, expected, "{}", response.body);
        assert!(browser.cookie(SESSION_COOKIE).is_none(), "no half-made session");
        assert!(response.body.contains("try again"), "{}", response.body);
        if expected == 503 {
            assert!(response.header("retry-after").is_some());
        }
    }
}

#[tokio::test]
async fn return_to_never_leaves_the_site() {
    let app = spawn_app().await;
    let attempts = [
        "//evil.example",
        "//evil.example/path",
        "https://evil.example/",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "/..//evil.example",
        "/.//evil.example",
        "/%2e%2e//evil.example",
        "/x/../..//evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        " //evil.example",
        "evil.example",
        "",
    ];
    for attempt in attempts {
        let browser = app.browser();
        let response = browser.sign_in_to(ALICE, attempt).await;
        assert_eq!(response.status, 302);
        assert_eq!(response.location().as_deref(), Some("/"), "return_to={attempt:?} must fall back to /");
    }

    let browser = app.browser();
    let response = browser.sign_in_to(ALICE, "/todos?page=2").await;
    assert_eq!(response.location().as_deref(), Some("/todos?page=2"), "a same-site path is kept");
}

/// A `return_to` short enough as sent that the URL parser's percent-encoding makes three times longer (`{` →
/// `%7B`): judged by what it becomes, it is too long and falls back to `/`, where it used to overflow the sign-in
/// state cookie and answer 500.
#[tokio::test]
async fn a_return_to_that_grows_when_normalised_falls_back_home() {
    let app = spawn_app().await;
    let browser = app.browser();
    let raw = format!("/{}", "{".repeat(authbridge::session::sign_in::MAX_RETURN_PATH_BYTES - 1));
    let login = browser.get(&format!("/login?return_to={}", crate::helpers::browser::enc(&raw))).await;
    assert_eq!(login.status, 302, "{}", login.body);
    assert_eq!(login.set_cookies().len(), 1, "one state cookie");
    let response = browser.sign_in_to(ALICE, &raw).await;
    assert_eq!(response.status, 302, "{}", response.body);
    assert_eq!(response.location().as_deref(), Some("/"));
}

#[tokio::test]
async fn sign_out_needs_a_post_with_csrf_and_ends_the_workos_session() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;

    let confirm = browser.get("/logout").await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Sign out") && confirm.body.contains(ALICE));

    let forged = browser.post_form("/logout", &[("csrf_token", "forged")]).await;
    assert_eq!(forged.status, 403);
    assert!(browser.cookie(SESSION_COOKIE).is_some(), "a forged sign-out changes nothing");

    let session_id = crate::helpers::session::session_id(&browser);
    let copy = app.browser();
    copy.copy_cookies_from(&browser);
    let out = browser.submit("/logout", &[]).await;
    assert_eq!(out.status, 302);
    let location = out.location().expect("redirect to WorkOS");
    assert!(
        location.starts_with(app.workos.base_url().join("/user_management/sessions/logout").expect("url").as_str())
    );
    let pairs = query(&location);
    assert_eq!(param(&pairs, "session_id"), Some(session_id));
    assert_eq!(param(&pairs, "return_to").as_deref(), Some(app.base_url.as_str()));
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "the session cookie is cleared");
    assert_eq!(browser.get("/api/me").await.status, 401);
    // A copy of the cookie (another tab's, or a stolen one) gets the page of someone signed out, not a sign-out
    // button for a session already ended; and the cookie is cleared.
    let ended = copy.get("/logout").await;
    assert_eq!(ended.status, 200);
    assert!(!ended.body.contains(ALICE) && !ended.body.contains("csrf_token"), "{}", ended.body);
    assert!(copy.cookie(SESSION_COOKIE).is_none(), "the ended session's cookie is cleared");

    // Following the redirect ends the WorkOS session: its refresh token is dead.
    let followed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(&location)
        .send()
        .await
        .expect("WorkOS stand-in answers");
    assert_eq!(followed.status(), 302);
    assert_eq!(app.workos.calls(Endpoint::Logout), 1);

    let nobody = app.browser().post_form("/logout", &[]).await;
    assert_eq!(nobody.status, 302);
    assert_eq!(nobody.location().as_deref(), Some("/"), "signing out while signed out just goes home");
    // A request without the cookie (as another site's form posts it: a SameSite=Lax cookie stays home) deletes
    // nothing: browsers apply a cross-site response's Set-Cookie, and it would sign the user out.
    let deletions: Vec<String> =
        nobody.set_cookies().into_iter().filter(|line| line.starts_with(SESSION_COOKIE)).collect();
    assert!(deletions.is_empty(), "{deletions:?}");
}

/// Signing out works in an outage: the confirmation page is built from the cookie as `POST /logout` opens it, so
/// an expired token that WorkOS cannot refresh right now does not keep the user from the sign-out's CSRF token.
#[tokio::test]
async fn the_sign_out_page_works_while_an_expired_session_cannot_be_refreshed() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    crate::refresh::age_token(&app, &browser, -60);
    app.workos.fail_for(Endpoint::Authenticate, Duration::from_secs(60), 503);
    assert_eq!(browser.get("/api/me").await.status, 503, "the session cannot be resolved during the outage");

    let confirm = browser.get("/logout").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains(ALICE), "{}", confirm.body);
    let token = extract_csrf_token(&confirm.body).expect("the page carries the sign-out's CSRF token");
    let out = browser.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 302, "the token is the one the sign-out accepts: {}", out.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "the session cookie is cleared");
}

#[tokio::test]
async fn a_sign_in_state_is_refused_from_the_second_it_expires() {
    let app = spawn_app().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let state = authbridge::session::SignInState {
        nonce: "nonce-at-its-last-second".to_owned(),
        code_verifier: "verifier".to_owned(),
        id_token_nonce: String::new(),
        return_to: "/".to_owned(),
        expires_at: now,
        started_at_micros: 0,
    };
    let sealed = crate::helpers::session::sealer(crate::helpers::app::COOKIE_PASSWORD)
        .seal(authbridge::session::seal::Purpose::SignInState, &serde_json::to_vec(&state).expect("json"))
        .expect("seal");
    // In the cookie named for its state, and in the previous version's single cookie.
    for name in [sign_in_state_cookie(&state.nonce), SIGN_IN_STATE_COOKIE.to_owned()] {
        let browser = app.browser();
        browser.set_cookie(&name, &sealed);
        let callback = browser.get("/callback?code=any-code&state=nonce-at-its-last-second").await;
        assert_eq!(callback.status, 400, "{name}: an expired state, not an attempted code exchange: {}", callback.body);
        assert_eq!(app.workos.code_calls(), 0, "{name}: the code never reached WorkOS");
        assert!(browser.cookie(SESSION_COOKIE).is_none());
        assert!(browser.sign_in_states().is_empty(), "{name}: an expired state is of no use to any callback");
    }

    // Nor is one that does not open: the one named for the callback's state, and the single cookie whatever state
    // the callback carries.
    let browser = app.browser();
    for name in [sign_in_state_cookie("other"), SIGN_IN_STATE_COOKIE.to_owned()] {
        browser.set_cookie(&name, "not-a-sealed-value");
        assert_eq!(browser.get("/callback?code=any-code&state=other").await.status, 400);
        assert!(browser.sign_in_states().is_empty(), "{name}");
    }
}
