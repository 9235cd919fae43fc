//! Every ID-token rule, broken once by the provider: each sign-in is refused and leaves no session. A refreshed ID
//! token that breaks one is not taken either (the session keeps its old tokens).

use authbridge::session::SESSION_COOKIE;
use reqwest::Method;
use standins::oidc_standin::{Endpoint, IdTokenFault, RefreshIdToken};

use crate::helpers::app::ALICE;
use crate::helpers::oidc::{OidcApp, spawn_oidc_app};
use crate::helpers::session::read_session;

/// Signs in with the provider's next ID token broken by `fault`; returns the callback's status and body.
async fn sign_in_with(app: &OidcApp, fault: IdTokenFault) -> (u16, String, bool) {
    app.oidc.tamper_next_id_token(fault);
    let browser = app.browser();
    let response = browser.sign_in(ALICE).await;
    (response.status, response.body, browser.cookie(SESSION_COOKIE).is_some())
}

#[tokio::test]
async fn an_id_token_breaking_any_rule_is_refused_with_no_session() {
    let app = spawn_oidc_app().await;
    for fault in [
        IdTokenFault::WrongIssuer,
        IdTokenFault::WrongAudience,
        IdTokenFault::UntrustedExtraAudience,
        IdTokenFault::WrongAuthorizedParty,
        IdTokenFault::RepeatedAudience,
        IdTokenFault::MissingNonce,
        IdTokenFault::WrongNonce,
        IdTokenFault::Expired,
        IdTokenFault::IssuedInTheFuture,
        IdTokenFault::AlgNone,
        IdTokenFault::Hs256WithPublicKey,
        IdTokenFault::Hs256WithClientSecret,
        IdTokenFault::AccessTokenType,
        IdTokenFault::EmptySubject,
        IdTokenFault::BlankSubject,
    ] {
        let (status, body, has_session) = sign_in_with(&app, fault).await;
        assert_eq!(status, 502, "{fault:?}: {body}");
        assert!(body.contains("try again"), "{fault:?}: a readable page: {body}");
        assert!(!has_session, "{fault:?} made a session");
    }
    // And the provider itself is fine: the next honest token signs in.
    assert_eq!(app.browser().sign_in(ALICE).await.status, 302);
    assert!(app.all_todos().await.is_empty());
}

/// Tokens that keep every rule in ways less usual than the stand-in's own sign in: expired or issued less than the
/// minute of clock skew allowed (`LEEWAY`) ago or ahead, with an `azp` that is this client, and with the standard
/// booleans written as strings (ADFS's `"email_verified": "true"`), which the crate would refuse as a whole token.
#[tokio::test]
async fn an_id_token_keeping_every_rule_in_a_less_usual_way_signs_in() {
    let app = spawn_oidc_app().await;
    for unusual in [
        IdTokenFault::ExpiredWithinSkew,
        IdTokenFault::IssuedWithinSkew,
        IdTokenFault::AuthorizedPartyIsTheClient,
        IdTokenFault::BooleansAsStrings,
    ] {
        let browser = app.browser();
        app.oidc.tamper_next_id_token(unusual);
        let response = browser.sign_in(ALICE).await;
        assert_eq!(response.status, 302, "{unusual:?}: {}", response.body);
        let session = read_session(&browser);
        assert_eq!(session.user.email.as_deref(), Some(ALICE), "{unusual:?}: the ID token's email, verified");
        assert_eq!(app.oidc.calls(Endpoint::UserInfo), 0, "{unusual:?}: no need to ask userinfo");
    }
}

/// Auth0's discovery document lists HS256 beside RS256 for every application, so an application set to HS256 is
/// only found at its first sign-in: the log says what to change.
#[tokio::test]
async fn an_hs256_id_token_is_logged_as_what_to_change_at_the_provider() {
    crate::helpers::logs::capture();
    let app = spawn_oidc_app().await;
    let (status, body, has_session) = sign_in_with(&app, IdTokenFault::Hs256WithClientSecret).await;
    assert_eq!(status, 502, "{body}");
    assert!(!has_session);
    let logs = crate::helpers::logs::captured();
    let line = logs.lines().find(|line| line.contains("algorithm `HS256` is not one of")).unwrap_or_default();
    assert!(line.contains("must be switched to RS256 under Advanced Settings"), "logged: {line:?}");
    assert!(!body.contains("HS256"), "the page tells the person nothing about the configuration: {body}");
}

#[tokio::test]
async fn a_key_nobody_publishes_is_refused_after_one_fetch_of_the_keys() {
    let app = spawn_oidc_app().await;
    let fetches = app.oidc.calls(Endpoint::Jwks);
    let (status, body, has_session) = sign_in_with(&app, IdTokenFault::UnknownKey).await;
    assert_eq!(status, 502, "{body}");
    assert!(!has_session);
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1, "the keys were fetched again, once");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_and_accepted() {
    let app = spawn_oidc_app().await;
    let fetches = app.oidc.calls(Endpoint::Jwks);
    app.oidc.rotate_signing_key().await.expect("a new key");
    let browser = app.browser();
    let response = browser.sign_in(ALICE).await;
    assert_eq!(response.status, 302, "{}", response.body);
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1, "one fetch for the new kid");
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    // The next sign-in finds the new key cached.
    assert_eq!(app.browser().sign_in(ALICE).await.status, 302);
    assert_eq!(app.oidc.calls(Endpoint::Jwks), fetches + 1);
}

#[tokio::test]
async fn a_refreshed_id_token_may_repeat_the_nonce_or_have_none() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    for (round, refresh_id_token) in
        [RefreshIdToken::WithNonce, RefreshIdToken::WithoutNonce, RefreshIdToken::Absent].into_iter().enumerate()
    {
        app.oidc.set_refresh_id_token(refresh_id_token);
        let before = read_session(&browser);
        app.age_session(&browser, 10);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 200, "{refresh_id_token:?}: {}", me.body);
        assert_eq!(me.json()["email"], ALICE, "{refresh_id_token:?}: the profile stays");
        assert_eq!(app.oidc.refresh_calls(), round + 1);
        let after = read_session(&browser);
        assert_ne!(after.refresh_token, before.refresh_token, "{refresh_id_token:?}");
        let (old, new) = (before.oidc.expect("oidc"), after.oidc.expect("oidc"));
        assert_eq!(new.id_token != old.id_token, refresh_id_token != RefreshIdToken::Absent, "{refresh_id_token:?}");
    }
}

/// OIDC Core §12.2: a refreshed ID token must be about the same user. One about someone else ends the session
/// (it is not merely ignored like a token breaking another rule).
#[tokio::test]
async fn a_refreshed_id_token_about_another_user_ends_the_session() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    app.age_session(&browser, 20);
    app.oidc.tamper_next_id_token(IdTokenFault::AnotherSubject);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert_eq!(app.oidc.refresh_calls(), 1);
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "the session cookie is cleared");
}

#[tokio::test]
async fn a_refreshed_id_token_breaking_a_rule_is_not_taken_but_the_session_and_its_new_refresh_token_are() {
    let app = spawn_oidc_app().await;
    let browser = app.signed_in(ALICE).await;
    let signed_in = read_session(&browser);
    let id_token = signed_in.oidc.as_ref().expect("oidc").id_token.clone();
    for fault in [IdTokenFault::WrongNonce, IdTokenFault::WrongAudience, IdTokenFault::AlgNone, IdTokenFault::Expired] {
        let before = read_session(&browser);
        app.age_session(&browser, 20);
        app.oidc.tamper_next_id_token(fault);
        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 200, "{fault:?}: only invalid_grant ends a session: {}", me.body);
        assert_eq!(me.json()["id"], signed_in.user.id.as_str(), "{fault:?}");
        let after = read_session(&browser);
        assert_eq!(after.oidc.as_ref().expect("oidc").id_token, id_token, "{fault:?}: the bad ID token is not kept");
        assert_ne!(after.refresh_token, before.refresh_token, "{fault:?}: the rotated refresh token is kept");
    }
    // So the next refresh works (a lost rotated refresh token would have been detected as reuse).
    app.age_session(&browser, 20);
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
    assert_eq!(app.oidc.reuse_detections(), 0);
    assert_ne!(read_session(&browser).oidc.expect("oidc").id_token, id_token, "an honest one is taken");
}
