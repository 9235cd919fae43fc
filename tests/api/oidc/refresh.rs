//! Refreshing an OpenID Connect session: before its tokens expire, with rotating refresh tokens, one refresh for
//! many racing requests, and the session ending only when the provider says `invalid_grant` (Auth0 answers a
//! reused refresh token with 403 `invalid_grant`), or when there was never a refresh token and the tokens expire.

use std::time::Duration;

use authbridge::session::SESSION_COOKIE;
use authbridge::session::refresh::FAILURE_BACKOFF;
use futures::future::join_all;
use reqwest::Method;
use standins::oidc_standin::{Endpoint, OidcStandInOptions};

use crate::helpers::app::ALICE;
use crate::helpers::browser::Browser;
use crate::helpers::logs::captured;
use crate::helpers::oidc::{OidcAppOptions, spawn_oidc_app, spawn_oidc_app_with};
use crate::helpers::session::read_session;

#[tokio::test]
async fn a_fresh_session_is_not_refreshed_and_an_expired_one_is() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    app.age_session(&browser, 200);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.oidc.refresh_calls(), 0, "outside the refresh margin");

    app.age_session(&browser, -120);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(app.oidc.refresh_calls(), 1);
}

#[tokio::test]
async fn refresh_token_reuse_signs_the_user_out_cleanly() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    let stolen = app.browser();
    stolen.copy_cookies_from(&browser);
    app.age_session(&browser, 10);
    app.age_session(&stolen, 10);

    // The browser refreshes: its refresh token is spent and replaced.
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.oidc.refresh_calls(), 1);

    // The copy, on another replica (no shared memo), presents the spent token: the provider sees reuse and
    // revokes the whole family. That replica answers as signed out, and clears the cookie.
    let replica = app.replica().await;
    let thief = replica.browser_like(&stolen);
    let response = thief.api(Method::GET, "/api/me", None).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.error_code(), "unauthorized");
    assert!(thief.cookie(SESSION_COOKIE).is_none(), "the cookie is cleared");
    assert_eq!(app.oidc.reuse_detections(), 1);

    // The genuine browser's (rotated) refresh token died with its family: at its next refresh it is signed out
    // too, cleanly: a page sends it to sign in again, the API says 401.
    app.age_session(&browser, 10);
    let page_user = app.browser();
    page_user.copy_cookies_from(&browser);
    let api = browser.api(Method::GET, "/api/todos", None).await;
    assert_eq!(api.status, 401, "{}", api.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    let page = page_user.get("/").await;
    assert_eq!(page.status, 200, "the signed-out start page: {}", page.body);
    assert!(page_user.cookie(SESSION_COOKIE).is_none());
    let form = page_user.post_form("/todos", &[("title", "x"), ("csrf_token", "whatever")]).await;
    assert!(matches!(form.status, 302 | 303 | 401), "{} {}", form.status, form.body);

    // And signs in again without trouble.
    assert_eq!(app.browser().sign_in(ALICE).await.status, 302);
}

#[tokio::test]
async fn only_invalid_grant_ends_the_session() {
    let app = spawn_oidc_app().await;

    // Outages and refusals other than invalid_grant, with a still-valid token: served, cookie untouched. (A session
    // of its own for each: after a failure, its refresh token is held back from the provider for a moment.)
    for (status, body) in [
        (500, r#"{"error":"server_error"}"#),
        (503, "<html>maintenance</html>"),
        (429, r#"{"error":"too_many_requests"}"#),
        (401, r#"{"error":"invalid_client","error_description":"Unauthorized"}"#),
        (403, r#"{"error":"unauthorized_client"}"#),
        // Auth0's answer to a wrong client secret (a rotated OIDC_CLIENT_SECRET): ours to fix, not the user's.
        (401, r#"{"error":"access_denied","error_description":"Unauthorized"}"#),
    ] {
        let browser = app.signed_in(ALICE).await;
        app.age_session(&browser, 20);
        let cookie = browser.cookie(SESSION_COOKIE).expect("cookie");
        let calls = app.oidc.calls(Endpoint::Token);
        app.oidc.answer_next(Endpoint::Token, status, "application/json", body);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 200, "{status} {body}: {}", me.body);
        assert_eq!(app.oidc.calls(Endpoint::Token), calls + 1, "{status}: the provider was asked");
        assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(cookie.as_str()), "{status}: kept");
    }

    // The same with an expired token: 503 with Retry-After, and the session survives it.
    let browser = app.signed_in(ALICE).await;
    app.age_session(&browser, -60);
    let expired = browser.cookie(SESSION_COOKIE).expect("cookie");
    app.oidc.fail_next(Endpoint::Token, 1, 503);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 503, "{}", me.body);
    assert!(me.header("retry-after").is_some());
    assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(expired.as_str()));
    // The log says what the provider answered, under the request that asked (and so its user).
    let request_id = me.header("x-request-id").expect("every answer carries a request id");
    let line = crate::helpers::logs::logged(&request_id, "WARN", "the provider could not answer a refresh").await;
    let line = line.expect("the refresh's failure is logged with the request");
    assert!(line.contains("answered 503") && line.contains("user_id="), "{line}");

    // The provider is back: once the backoff is over, the same cookie refreshes.
    tokio::time::sleep(FAILURE_BACKOFF).await;
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);

    // invalid_grant, as Auth0 sends it (403): the session is over.
    app.age_session(&browser, 10);
    app.oidc.answer_next(
        Endpoint::Token,
        403,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#,
    );
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
}

/// A refresh the provider refuses because of the user — Microsoft Entra asking for MFA under Conditional Access
/// (`interaction_required`), an Auth0 Action denying it (`access_denied`, sent with a 500) — ends the session, so
/// the user is sent to sign in again rather than answered 503 for as long as the cookie lives.
#[tokio::test]
async fn a_refresh_refused_because_of_the_user_ends_the_session() {
    let app = spawn_oidc_app().await;
    for (status, body) in [
        (400, r#"{"error":"interaction_required","error_description":"AADSTS50076: use multi-factor authentication"}"#),
        (500, r#"{"error":"access_denied","error_description":"Blocked by an Action"}"#),
        (400, r#"{"error":"login_required"}"#),
        // Auth0 when MFA is enforced on refresh (a policy of "Always", or an Action asking for it).
        (403, r#"{"error":"mfa_required","error_description":"Multifactor authentication required"}"#),
    ] {
        let browser = app.signed_in(ALICE).await;
        app.age_session(&browser, -60);
        app.oidc.answer_next(Endpoint::Token, status, "application/json", body);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 401, "{status} {body}: {}", me.body);
        assert!(browser.cookie(SESSION_COOKIE).is_none(), "{status} {body}: the cookie is cleared");
    }
}

#[tokio::test]
async fn concurrent_requests_near_expiry_share_one_refresh() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    app.age_session(&browser, 10);
    app.oidc.set_latency(Endpoint::Token, Duration::from_millis(300));
    let tabs: Vec<Browser> = (0..10)
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
    assert_eq!(app.oidc.refresh_calls(), 1, "one refresh reached the provider");
    assert_eq!(app.oidc.reuse_detections(), 0);
}

#[tokio::test]
async fn without_a_refresh_token_the_session_lasts_until_its_tokens_expire() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { issue_refresh_tokens: false, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    assert!(read_session(&browser).refresh_token.is_none());
    let user_id = app.subject(ALICE);
    let said =
        captured().lines().filter(|line| line.contains("issued no refresh token") && line.contains(&user_id)).count();
    assert!(said >= 1, "the sign-in says so in the logs");

    app.age_session(&browser, 10);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200, "still valid: served");
    app.age_session(&browser, -10);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    assert_eq!(app.oidc.refresh_calls(), 0, "nothing to refresh with");
    assert_eq!(app.browser().sign_in(ALICE).await.status, 302, "the user signs in again");
}

#[tokio::test]
async fn a_provider_that_does_not_rotate_keeps_the_same_refresh_token() {
    let options = OidcAppOptions {
        oidc: OidcStandInOptions { rotate_refresh_tokens: false, ..OidcStandInOptions::default() },
        ..OidcAppOptions::default()
    };
    let app = spawn_oidc_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    let refresh_token = read_session(&browser).refresh_token;
    app.age_session(&browser, 10);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.oidc.refresh_calls(), 1);
    assert_eq!(read_session(&browser).refresh_token, refresh_token, "no new refresh token: the old one is kept");

    // It works again (on a replica, which has no memo of the first refresh): nothing was rotated or revoked.
    let replica = app.replica().await;
    let other = replica.browser_like(&browser);
    app.age_session(&other, 10);
    assert_eq!(other.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.oidc.refresh_calls(), 2);
    assert_eq!(read_session(&other).refresh_token, refresh_token);
}

/// Auth0's 429 names no Retry-After but when its rate limit's bucket fills again (`X-RateLimit-Reset`, Unix
/// seconds): the refresh is held back until then and each request meanwhile is told so, with the session kept.
#[tokio::test]
async fn an_auth0_rate_limit_holds_the_refresh_back_until_its_reset() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    app.age_session(&browser, -60);
    let expired = browser.cookie(SESSION_COOKIE).expect("cookie");
    app.oidc.rate_limit_next(Endpoint::Token, Duration::from_secs(40));
    let calls = app.oidc.calls(Endpoint::Token);

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 503, "{}", me.body);
    let retry_after = me.header("retry-after").and_then(|value| value.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|after| (38..=41).contains(&after)), "until the reset: {retry_after:?}");
    assert_eq!(browser.cookie(SESSION_COOKIE).as_deref(), Some(expired.as_str()), "kept");
    // Well past the usual backoff after a failure, the reset is still ahead: the provider is not asked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 503);
    assert_eq!(app.oidc.calls(Endpoint::Token), calls + 1, "asked once");
}
