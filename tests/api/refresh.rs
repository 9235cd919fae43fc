//! Refreshing WorkOS tokens: transparent when due, never a lost session because of a race or an outage, and the
//! end of the session when WorkOS says the refresh token is dead.

use std::time::{Duration, SystemTime};

use authbridge::session::SESSION_COOKIE;
use authbridge::session::refresh::FAILURE_BACKOFF;
use futures::future::join_all;
use reqwest::Method;
use standins::workos_standin::Endpoint;

use crate::helpers::app::{ALICE, AppOptions, COOKIE_PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::session::{read_session, write_session};

/// Rewrites the browser's session so its access token (a genuine one, five minutes long) has `left` seconds to
/// live; negative means it expired that long ago. Saves a test from sleeping through a token lifetime.
pub fn age_token(app: &TestApp, browser: &Browser, left: i64) {
    let mut session = read_session(browser);
    let now = SystemTime::now();
    let expires_at =
        if left >= 0 { now + Duration::from_secs(left as u64) } else { now - Duration::from_secs(left.unsigned_abs()) };
    let issued_at = expires_at - Duration::from_secs(300);
    session.access_token = app.workos.mint_access_token_with(&session.user.id, issued_at, expires_at);
    write_session(browser, &session, COOKIE_PASSWORD);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_transparently() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -120);

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(app.workos.refresh_calls(), 1);
    let after = read_session(&browser);
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");
    assert_ne!(after.access_token, before.access_token);

    // The new token is good for minutes: no further refresh.
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);
}

/// An unknown path under `/webhooks/` is an unknown page like any other, not the webhook route (whose requests never
/// open the cookie): when resolving its user for the 404 refreshes the session, the new cookie comes back with it.
/// Thrown away, the browser would be left with a spent refresh token, and signed out once the refresh's memo is gone.
#[tokio::test]
async fn a_refresh_made_for_a_404_under_webhooks_is_kept() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -120);

    assert_eq!(browser.get("/webhooks/no-such-route").await.status, 404);
    assert_eq!(app.workos.refresh_calls(), 1);
    assert_ne!(read_session(&browser).refresh_token, before.refresh_token, "the rotated refresh token is stored");
}

#[tokio::test]
async fn a_token_close_to_expiry_is_refreshed_before_it_expires() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, 20); // inside the 30 s margin of a five-minute token
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);

    let fresh = app.signed_in(ALICE).await;
    age_token(&app, &fresh, 200); // well outside it
    assert_eq!(fresh.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1, "no refresh while the token has time left");
}

#[tokio::test]
async fn invalid_grant_ends_the_session() {
    let app = spawn_app().await;
    let api_user = app.signed_in(ALICE).await;
    let page_user = app.browser();
    page_user.copy_cookies_from(&api_user);
    age_token(&app, &api_user, -60);
    page_user.copy_cookies_from(&api_user);
    app.workos.revoke_all_refresh_tokens();

    let me = api_user.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(api_user.cookie(SESSION_COOKIE).is_none(), "the dead session cookie is cleared");

    // A form posted with the dead session is answered with a page that links to the sign-in: a redirect there would
    // carry the form post's `form-action` check on to the AuthKit domain, which the policy cannot name.
    let form = page_user.post_form("/todos", &[("title", "x"), ("csrf_token", "whatever")]).await;
    assert_eq!(form.status, 401, "{}", form.body);
    assert!(form.location().is_none(), "{:?}", form.location());
    assert!(form.body.contains(r#"href="/login""#), "{}", form.body);
    assert!(page_user.cookie(SESSION_COOKIE).is_none());
    // A page fetched (GET) with it is sent to sign in, and back afterwards.
    let page = page_user.get("/organizations/org_1?x=1").await;
    assert!(matches!(page.status, 302 | 303), "{} {}", page.status, page.body);
    assert_eq!(page.location().as_deref(), Some("/login?return_to=%2Forganizations%2Forg_1%3Fx%3D1"));
}

#[tokio::test]
async fn workos_down_with_a_still_valid_token_serves_the_request_and_keeps_the_cookie() {
    let app = spawn_app().await;

    // Outages, rate limits, and refusals other than invalid_grant (a bad API key, a proxy's 403): none of them is
    // the user's fault, and none ends the session. (A session of its own for each: after a failure, its refresh
    // token is held back from WorkOS for a moment.)
    for status in [500, 502, 503, 429, 400, 401, 403, 404] {
        let browser = app.signed_in(ALICE).await;
        age_token(&app, &browser, 20);
        let cookie = browser.cookie(SESSION_COOKIE).expect("cookie");
        let calls = app.workos.refresh_calls();
        app.workos.fail_next(Endpoint::Authenticate, 1, status);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 200, "WorkOS {status} is not the user's fault: {}", me.body);
        assert_eq!(app.workos.refresh_calls(), calls + 1, "WorkOS {status}: it was asked");
        assert!(me.set_cookies().is_empty(), "the cookie is left alone");
        assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(cookie.as_str()));
    }
}

#[tokio::test]
async fn workos_down_with_an_expired_token_answers_503_and_keeps_the_cookie() {
    let app = spawn_app_with(AppOptions::default().var("WORKOS_REQUEST_TIMEOUT_MS", 500)).await;

    for status in [503, 401] {
        let browser = app.signed_in(ALICE).await;
        age_token(&app, &browser, -60);
        let cookie = browser.cookie(SESSION_COOKIE).expect("cookie");
        app.workos.fail_next(Endpoint::Authenticate, 1, status);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 503, "WorkOS {status}: {}", me.body);
        assert_eq!(me.error_code(), "auth_unavailable");
        assert!(me.header("retry-after").is_some());
        assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(cookie.as_str()), "the session survives");
        if status == 503 {
            // The log says what WorkOS answered, under the request that asked.
            let request_id = me.header("x-request-id").expect("every answer carries a request id");
            let line = crate::helpers::logs::logged(&request_id, "WARN", "WorkOS could not answer a refresh").await;
            assert!(line.is_some_and(|line| line.contains("503")), "WorkOS {status}");
        }
    }

    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, -60);
    let cookie = browser.cookie(SESSION_COOKIE).expect("cookie");
    app.workos.hang_next(Endpoint::Authenticate, 1);
    let page = browser.get("/").await;
    assert_eq!(page.status, 503, "a timeout is an outage too: {}", page.body);
    // However long it lasts, the person can still leave: the page offers signing out, which needs no WorkOS.
    assert!(page.body.contains(r#"href="/logout""#), "{}", page.body);
    let sign_out = browser.get("/logout").await;
    assert_eq!(sign_out.status, 200, "{}", sign_out.body);
    assert!(sign_out.body.contains(r#"action="/logout""#), "a sign-out form: {}", sign_out.body);
    assert!(page.header("retry-after").is_some());
    assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(cookie.as_str()));

    // WorkOS is back: once the backoff is over, the same cookie refreshes and the user never noticed a sign-out.
    tokio::time::sleep(FAILURE_BACKOFF).await;
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
}

/// WorkOS answers a refresh (spending the old refresh token) with a token signed by a key just rotated in, and the
/// keys cannot be fetched at that moment. Keeping the old session would sign the user out at the next refresh
/// (`invalid_grant`): the new tokens are kept, and verified as soon as the keys are back.
#[tokio::test]
async fn a_refresh_whose_new_token_cannot_be_verified_yet_keeps_the_new_tokens() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -60);
    app.workos.rotate_signing_key().await.expect("rotation");
    // Long enough to outlast the refresh and the request after it on a slow machine; shorter than the verifier's
    // 5 s backoff after a failed fetch, so the keys are back by its next try.
    app.workos.fail_for(Endpoint::Jwks, Duration::from_secs(4), 503);

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "WorkOS answered the refresh: {}", me.body);
    assert_eq!(app.workos.refresh_calls(), 1);
    let after = read_session(&browser);
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");
    assert_eq!(after.session_id, before.session_id, "the same session");

    // While the keys are still out of reach the new token cannot be checked: an outage, the session kept.
    let waiting = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    assert_eq!(read_session(&browser).refresh_token, after.refresh_token);

    // The keys are back (after the verifier's own backoff): the new token verifies, no second refresh.
    let mut status = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = browser.api(Method::GET, "/api/me", None).await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only ever an outage, never a sign-out");
    }
    assert_eq!(status, 200);
    assert_eq!(app.workos.refresh_calls(), 1, "the spent refresh token was never sent again");
}

/// WorkOS signs a refreshed token with a key its JWKS does not list yet (a rotation published late): the refresh
/// spent the old refresh token, so the new tokens are kept, and verified once the key is published.
#[tokio::test]
async fn a_refreshed_token_signed_with_a_key_not_yet_published_keeps_the_new_tokens() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -60);
    app.workos.rotate_signing_key().await.expect("rotation");
    app.workos.set_signing_key_unpublished(true);

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "WorkOS answered the refresh: {}", me.body);
    let after = read_session(&browser);
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");

    app.workos.set_signing_key_unpublished(false);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "the new token verifies once its key is published: {}", me.body);
    assert_eq!(app.workos.refresh_calls(), 1, "the spent refresh token was never sent again");
}

/// During an outage a session asks WorkOS at most once per backoff, not on every request (which would multiply the
/// load on a struggling WorkOS by the request rate); meanwhile a valid token keeps working, an expired one gets 503
/// with `Retry-After`, and the first request after the backoff refreshes.
#[tokio::test]
async fn after_a_failed_refresh_a_session_waits_out_the_backoff_before_asking_workos_again() {
    let app = spawn_app().await;
    let valid = app.signed_in(ALICE).await;
    age_token(&app, &valid, 20);
    let expired = app.signed_in(ALICE).await;
    age_token(&app, &expired, -60);
    app.workos.fail_next(Endpoint::Authenticate, 2, 503);
    assert_eq!(valid.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(expired.api(Method::GET, "/api/me", None).await.status, 503);
    assert_eq!(app.workos.refresh_calls(), 2);

    for _ in 0..5 {
        assert_eq!(valid.api(Method::GET, "/api/todos", None).await.status, 200, "the valid token still serves");
        let me = expired.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 503, "{}", me.body);
        assert_eq!(me.error_code(), "auth_unavailable");
        assert!(me.header("retry-after").is_some());
    }
    assert_eq!(app.workos.refresh_calls(), 2, "neither session asked WorkOS again during the backoff");
    assert!(expired.cookie(SESSION_COOKIE).is_some(), "the session survives");

    tokio::time::sleep(FAILURE_BACKOFF).await;
    let before = read_session(&valid);
    assert_eq!(valid.api(Method::GET, "/api/me", None).await.status, 200);
    assert_ne!(read_session(&valid).refresh_token, before.refresh_token, "refreshed after the backoff");
    assert_eq!(expired.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 4);
}

/// WorkOS rate limiting a refresh (429 with `Retry-After`): the token is held back for as long as asked, and each
/// request meanwhile is told what is left of the wait, not the whole wait again.
#[tokio::test]
async fn a_rate_limited_refresh_tells_each_request_what_is_left_of_the_wait() {
    let app = spawn_app().await;
    let expired = app.signed_in(ALICE).await;
    age_token(&app, &expired, -60);
    app.workos.set_rate_limit_retry_after(Duration::from_secs(30));
    app.workos.fail_next(Endpoint::Authenticate, 1, 429);
    let retry_after = |me: &crate::helpers::browser::TestResponse| {
        me.header("retry-after").and_then(|value| value.parse::<u64>().ok()).expect("a Retry-After in seconds")
    };

    let first = expired.api(Method::GET, "/api/me", None).await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert!((29..=30).contains(&retry_after(&first)), "the wait WorkOS asked for: {:?}", first.header("retry-after"));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let later = expired.api(Method::GET, "/api/me", None).await;
    assert_eq!(later.status, 503, "{}", later.body);
    assert!(retry_after(&later) <= 28, "what is left of it: {:?}", later.header("retry-after"));
    assert_eq!(app.workos.refresh_calls(), 1, "WorkOS was not asked again meanwhile");
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_near_expiry_cookie_cause_one_refresh_and_all_succeed() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, 10);
    // Slow WorkOS down so all twenty requests are in flight while the refresh is.
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(300));

    let tabs: Vec<Browser> = (0..20)
        .map(|_| {
            let tab = app.browser();
            tab.copy_cookies_from(&browser);
            tab
        })
        .collect();
    let responses = join_all(tabs.iter().map(|tab| tab.api(Method::GET, "/api/me", None))).await;

    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    assert_eq!(app.workos.refresh_calls(), 1, "exactly one refresh reached WorkOS");
    let tokens: std::collections::HashSet<Option<String>> =
        tabs.iter().map(|tab| read_session(tab).refresh_token).collect();
    assert_eq!(tokens.len(), 1, "every tab holds the winner's refresh token");

    // A latecomer with the old cookie, after the refresh finished, gets the same result (memo), not invalid_grant.
    app.workos.set_latency(Endpoint::Authenticate, Duration::ZERO);
    let late = app.browser();
    late.copy_cookies_from(&browser);
    assert_eq!(late.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);
    assert_eq!(read_session(&late).refresh_token, read_session(&tabs[0]).refresh_token);
}

#[tokio::test]
async fn a_request_that_times_out_after_refreshing_still_hands_over_the_new_session() {
    // The smallest whole-second limit; InsForge's 2 s latency below still outlasts it.
    let app = spawn_app_with(AppOptions::default().var("REQUEST_TIMEOUT_SECONDS", 1)).await;
    let browser = app.signed_in(ALICE).await;
    let before = read_session(&browser);
    age_token(&app, &browser, -60);
    app.insforge.set_latency(Duration::from_secs(2));

    let slow = browser.api(Method::GET, "/api/todos", None).await;
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert_eq!(app.workos.refresh_calls(), 1);
    let after = read_session(&browser);
    assert_ne!(after.refresh_token, before.refresh_token, "the 504 carried the rotated tokens");

    // The old refresh token is spent; the browser holds the new one, so the session lives on.
    app.insforge.set_latency(Duration::ZERO);
    assert_eq!(browser.api(Method::GET, "/api/todos", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);
}

#[tokio::test]
async fn two_users_refreshing_at_the_same_moment_each_keep_their_own_session() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let bob = app.signed_in(crate::helpers::app::BOB).await;
    age_token(&app, &alice, 10);
    age_token(&app, &bob, 10);
    // Both refreshes are in flight together.
    app.workos.set_latency(Endpoint::Authenticate, Duration::from_millis(300));

    let tabs = |browser: &Browser| -> Vec<Browser> {
        (0..5)
            .map(|_| {
                let tab = app.browser();
                tab.copy_cookies_from(browser);
                tab
            })
            .collect()
    };
    let (alice_tabs, bob_tabs) = (tabs(&alice), tabs(&bob));
    let all: Vec<&Browser> = alice_tabs.iter().zip(&bob_tabs).flat_map(|(a, b)| [a, b]).collect();
    let responses = join_all(all.iter().map(|tab| tab.api(Method::GET, "/api/me", None))).await;

    assert_eq!(app.workos.refresh_calls(), 2, "one refresh per session, not one for both");
    for (tab, response) in all.iter().zip(&responses) {
        assert_eq!(response.status, 200, "{}", response.body);
        let me = response.json();
        let holder = read_session(tab).user;
        assert_eq!(me["id"], holder.id.as_str(), "each tab is still its own user");
        assert_eq!(me["email"], holder.email.as_deref().unwrap_or_default());
    }
    let alice_id = app.user_id(ALICE);
    assert!(alice_tabs.iter().all(|tab| read_session(tab).user.id == alice_id));
    assert!(bob_tabs.iter().all(|tab| read_session(tab).user.id != alice_id));
}

#[tokio::test]
async fn a_refresh_answered_with_another_users_tokens_ends_the_session() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut session = read_session(&alice);
    // Alice's cookie, but the refresh token is Bob's: WorkOS will answer with Bob's tokens.
    let bob = app.signed_in(crate::helpers::app::BOB).await;
    session.refresh_token = read_session(&bob).refresh_token;
    write_session(&alice, &session, COOKIE_PASSWORD);
    age_token(&app, &alice, -60);

    let me = alice.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "never Bob's session in Alice's cookie: {}", me.body);
    assert!(alice.cookie(SESSION_COOKIE).is_none(), "the session is cleared");
}

#[tokio::test]
async fn a_token_with_exactly_the_margin_left_is_refreshed() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    age_token(&app, &browser, 30); // a five-minute token's margin is 30 s: at 30 s left, refresh
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.workos.refresh_calls(), 1);
}
