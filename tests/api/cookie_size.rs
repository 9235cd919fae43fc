//! Big WorkOS tokens (roles, permissions, custom claims) must never produce a cookie a browser drops: every
//! `Set-Cookie` stays within 4096 bytes, larger sessions are chunked, and stale chunks are cleared.

use authbridge::session::SESSION_COOKIE;
use authbridge::session::cookies::MAX_SET_COOKIE_BYTES;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::app::{ALICE, AppOptions, spawn_app_with};
use crate::helpers::session::read_session;

fn bulky_claims(bytes: usize) -> Map<String, Value> {
    let permissions: Vec<String> = (0..bytes / 24).map(|i| format!("todos:permission-{i:07}")).collect();
    match json!({ "permissions": permissions }) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn session_pieces(names: &[String]) -> Vec<&String> {
    names.iter().filter(|name| name.starts_with(SESSION_COOKIE)).collect()
}

#[tokio::test]
async fn large_access_tokens_are_stored_in_cookies_browsers_keep() {
    for (claim_bytes, min_token, chunked) in [(2_300, 3_000, false), (5_000, 6_000, true)] {
        let mut options = AppOptions::default();
        options.workos.extra_claims = bulky_claims(claim_bytes);
        let app = spawn_app_with(options).await;
        let browser = app.browser();
        let callback = browser.sign_in(ALICE).await;
        assert_eq!(callback.status, 302, "{}", callback.body);

        let token_len = read_session(&browser).access_token.len();
        assert!(token_len >= min_token, "the access token is {token_len} bytes, wanted at least {min_token}");
        for line in callback.set_cookies() {
            assert!(line.len() <= MAX_SET_COOKIE_BYTES, "a {}-byte Set-Cookie would be dropped", line.len());
        }
        let names = browser.cookie_names();
        let pieces = session_pieces(&names);
        if chunked {
            assert!(
                pieces.len() >= 2 && pieces.iter().all(|n| n.starts_with(&format!("{SESSION_COOKIE}."))),
                "{pieces:?}"
            );
        }

        let me = browser.api(Method::GET, "/api/me", None).await;
        assert_eq!(me.status, 200, "the chunked session reads back: {}", me.body);
        assert_eq!(me.json()["email"], ALICE);
    }
}

#[tokio::test]
async fn a_session_that_shrinks_clears_its_stale_chunks() {
    let mut options = AppOptions::default();
    options.workos.extra_claims = bulky_claims(8_000);
    let app = spawn_app_with(options).await;
    let browser = app.signed_in(ALICE).await;
    let names = browser.cookie_names();
    assert!(session_pieces(&names).len() >= 3, "{names:?}");

    // The organization drops the bulky claims; the next refresh yields a small token.
    app.workos.set_extra_claims(Map::new());
    let mut session = read_session(&browser);
    let now = std::time::SystemTime::now();
    session.access_token = app.workos.mint_access_token_with(
        &session.user.id,
        now - std::time::Duration::from_secs(400),
        now - std::time::Duration::from_secs(100),
    );
    // Write it back chunked the way the app would, so the browser still holds the stale pieces.
    let json = serde_json::to_vec(&session).expect("json");
    let sealed = crate::helpers::session::sealer(crate::helpers::app::COOKIE_PASSWORD)
        .seal(authbridge::session::seal::Purpose::Session, &json)
        .expect("seal");
    let piece_names: Vec<String> = session_pieces(&names).into_iter().cloned().collect();
    let chunk = sealed.len().div_ceil(piece_names.len());
    for (i, name) in piece_names.iter().enumerate() {
        let end = ((i + 1) * chunk).min(sealed.len());
        browser.set_cookie(name, &sealed[i * chunk..end]);
    }

    let me = browser.api(Method::GET, "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let names = browser.cookie_names();
    assert_eq!(session_pieces(&names), vec![&SESSION_COOKIE.to_owned()], "only the unchunked cookie is left");
    assert_eq!(browser.api(Method::GET, "/api/me", None).await.status, 200);
}
