//! The session cookie: what breaks it (tampering, truncation, foreign keys) signs the user out cleanly, without
//! deleting a cookie another replica may be able to read, and a cookie-password rotation keeps everyone signed in.

use authbridge::session::SESSION_COOKIE;
use reqwest::Method;

use crate::helpers::app::{ALICE, AppOptions, COOKIE_PASSWORD, PREVIOUS_COOKIE_PASSWORD, spawn_app, spawn_app_with};
use crate::helpers::session::{read_session, sealer, write_session};

/// Whether `response` deletes the session cookie.
fn clears_the_cookie(response: &crate::helpers::browser::TestResponse) -> bool {
    response.set_cookies().iter().any(|line| line.starts_with(&format!("{SESSION_COOKIE}=;")))
}

/// What a damaged cookie is to the app: a well-formed seal that does not open with its keys may be another
/// replica's (sealed with a password this one lacks: deleting it would sign its user out of every replica), so it is
/// kept; anything else is useless to every replica, and deleted.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Damaged {
    Kept,
    Deleted,
}

/// Every damaged cookie must read as "signed out": 401 for the API, the public page for `/`, never a 500; kept or
/// deleted as `fate` says, and replaced by the next sign-in.
async fn assert_signed_out(app: &crate::helpers::app::TestApp, cookie: &str, fate: Damaged) {
    let browser = app.browser();
    browser.set_cookie(SESSION_COOKIE, cookie);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "cookie {cookie:.40}…: {}", me.body);
    assert_eq!(clears_the_cookie(&me), fate == Damaged::Deleted, "{cookie:.40}…: {:?}", me.set_cookies());

    browser.set_cookie(SESSION_COOKIE, cookie);
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Sign in"), "the signed-out page");

    // A form posted with it (a tab left open across the damage): refused, and nothing saved.
    browser.set_cookie(SESSION_COOKIE, cookie);
    let form = browser.post_form("/todos", &[("csrf_token", "x"), ("title", "a")]).await;
    assert_eq!(form.status, 401, "{}", form.body);
    assert_eq!(clears_the_cookie(&form), fate == Damaged::Deleted, "{:?}", form.set_cookies());
    assert!(app.all_todos().await.is_empty());

    // Signing out with it deletes it, whatever it is: it lives only in this browser, so the browser is signed out
    // everywhere (only the provider's session, which needs the tokens inside, cannot be ended from here).
    browser.set_cookie(SESSION_COOKIE, cookie);
    let page = browser.get("/logout").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(clears_the_cookie(&page), "{:?}", page.set_cookies());
    browser.set_cookie(SESSION_COOKIE, cookie);
    let out = browser.post_form("/logout", &[("csrf_token", "x")]).await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert!(clears_the_cookie(&out), "{:?}", out.set_cookies());

    // Signing in replaces it.
    let signed_in = browser.sign_in(ALICE).await;
    assert!(signed_in.set_cookies().iter().any(|line| line.starts_with(&format!("{SESSION_COOKIE}="))));
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
}

/// A cookie sealed with the app's own keys that holds no session (or chunks without a first) is useless to every
/// replica: it is deleted.
#[tokio::test]
async fn a_cookie_of_ours_that_holds_no_session_is_deleted() {
    let app = spawn_app().await;
    let browser = app.browser();
    let not_a_session = sealer(COOKIE_PASSWORD).seal(authbridge::session::seal::Purpose::Session, b"{}").expect("seal");
    browser.set_cookie(SESSION_COOKIE, &not_a_session);
    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(clears_the_cookie(&me), "{:?}", me.set_cookies());

    let orphan = app.browser();
    orphan.set_cookie(&format!("{SESSION_COOKIE}.1"), "a-second-chunk-without-a-first");
    let me = orphan.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert!(
        me.set_cookies().iter().any(|line| line.starts_with(&format!("{SESSION_COOKIE}.1=;"))),
        "{:?}",
        me.set_cookies()
    );
}

#[tokio::test]
async fn tampered_truncated_and_garbage_cookies_mean_signed_out() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let sealed = browser.cookie(SESSION_COOKIE).expect("a single session cookie");

    let mut tampered = sealed.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    // Forged (a seal's shape, not opening): told apart from another key's by nothing, so kept as one.
    assert_signed_out(&app, &String::from_utf8(tampered).expect("ascii"), Damaged::Kept).await;
    // Not a seal at all.
    assert_signed_out(&app, &sealed[..12], Damaged::Deleted).await;
    assert_signed_out(&app, "v1.", Damaged::Deleted).await;
    assert_signed_out(&app, "not-a-session", Damaged::Deleted).await;
    assert_signed_out(&app, "%00%ff\"quoted\"", Damaged::Deleted).await;
}

#[tokio::test]
async fn a_cookie_sealed_with_another_key_means_signed_out_here_and_is_kept_for_the_replicas_that_can_read_it() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    let session = read_session(&browser);
    let foreign = app.browser();
    write_session(&foreign, &session, "a-completely-different-password-of-enough-length");
    assert_signed_out(&app, &foreign.cookie(SESSION_COOKIE).expect("cookie"), Damaged::Kept).await;
}

#[tokio::test]
async fn a_cookie_sealed_with_the_previous_password_still_works_and_is_resealed() {
    let app =
        spawn_app_with(AppOptions::default().var("WORKOS_COOKIE_PASSWORD_PREVIOUS", PREVIOUS_COOKIE_PASSWORD)).await;
    let browser = app.signed_in(ALICE).await;

    // The same session, as a replica still on the old password would have sealed it.
    let session = read_session(&browser);
    write_session(&browser, &session, PREVIOUS_COOKIE_PASSWORD);
    assert!(
        sealer(COOKIE_PASSWORD)
            .open(authbridge::session::seal::Purpose::Session, &browser.cookie(SESSION_COOKIE).expect("cookie"))
            .is_err()
    );

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["email"], ALICE);

    let resealed = browser.cookie(SESSION_COOKIE).expect("resealed cookie");
    let opened = sealer(COOKIE_PASSWORD)
        .open(authbridge::session::seal::Purpose::Session, &resealed)
        .expect("resealed with the current password");
    assert!(!opened.needs_reseal);
    assert!(
        sealer(PREVIOUS_COOKIE_PASSWORD).open(authbridge::session::seal::Purpose::Session, &resealed).is_err(),
        "the previous password never seals"
    );
}

#[tokio::test]
async fn a_session_for_one_user_cannot_carry_another_users_token() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let mut session = read_session(&alice);
    // Bob's genuine token in Alice's session: the signature is fine, the subject is not.
    session.access_token =
        app.workos.mint_access_token(&app.user_id(crate::helpers::app::BOB), std::time::Duration::from_secs(300));
    write_session(&alice, &session, COOKIE_PASSWORD);
    assert_eq!(alice.api(Method::GET, "/api/me", None).await.status, 401);
}

#[tokio::test]
async fn the_session_cookie_lives_as_long_as_browsers_allow_and_debug_output_names_only_the_user() {
    let app = spawn_app().await;
    let browser = app.browser();
    let signed_in = browser.sign_in(ALICE).await;
    let line = signed_in
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("the session cookie is set");
    // 400 days, the longest a browser keeps a cookie: the provider's session is what really ends it.
    assert!(line.contains("Max-Age=34560000"), "{line}");

    let mut session = read_session(&browser);
    session.oidc = Some(authbridge::session::OidcTokens {
        issuer: "https://issuer.example".to_owned(),
        id_token: "ID-TOKEN-SECRET".to_owned(),
        nonce: "NONCE-SECRET".to_owned(),
        issued_at: 1,
        expires_at: 2,
    });
    let debug = format!("{session:?}");
    assert!(debug.contains(&session.user.id), "{debug}");
    let refresh_token = session.refresh_token.clone().expect("WorkOS issues refresh tokens");
    for secret in [session.access_token.as_str(), refresh_token.as_str(), "ID-TOKEN-SECRET", "NONCE-SECRET"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}
