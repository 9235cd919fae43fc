//! Property tests of every parser of what a browser sends the session layer: sealed values, the session cookie
//! and its chunks, the sign-in state cookies and `return_to`. Each property runs 10,000 generated inputs; none may
//! panic, and anything that is not a value the app itself sealed is refused.

use std::sync::LazyLock;

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::cookies::MAX_FAMILY_MEMBERS;
use super::seal::{Purpose, Sealer};
use super::sign_in::{SignInRequest, safe_return_path};
use super::{
    ORGANIZATION_SELECTION_COOKIE, SESSION_COOKIE, SIGN_IN_STATE_COOKIE, SessionManager, organization_selection_cookie,
    sign_in_state_cookie,
};
use crate::config::Secret;

const PASSWORD: &str = "property-test-cookie-password-0123456789";

/// Built once: key derivation and an HTTP client per case would dwarf what is being tested.
static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&Secret::new(PASSWORD), None).expect("keys derive"));
static MANAGER: LazyLock<SessionManager> =
    LazyLock::new(|| super::sign_in::tests::manager_with_password(PASSWORD, false));

fn sealer() -> &'static Sealer {
    &SEALER
}

fn manager() -> &'static SessionManager {
    &MANAGER
}

fn headers(cookie_line: &str) -> Option<HeaderMap> {
    let value = HeaderValue::from_str(cookie_line).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, value);
    Some(headers)
}

/// Cookie names a hostile request would try: ours, our chunk names and the sign-in states' (right and wrong
/// spellings), and others.
fn cookie_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(SESSION_COOKIE.to_owned()),
        Just(SIGN_IN_STATE_COOKIE.to_owned()),
        (0usize..40).prop_map(|i| format!("{SESSION_COOKIE}.{i}")),
        "[a-z0-9.+-]{0,4}".prop_map(|suffix| format!("{SESSION_COOKIE}.{suffix}")),
        "[ -~]{0,12}".prop_map(|state| sign_in_state_cookie(&state)),
        "[a-zA-Z0-9_-]{0,18}".prop_map(|key| format!("{SIGN_IN_STATE_COOKIE}.{key}")),
        Just(ORGANIZATION_SELECTION_COOKIE.to_owned()),
        (0usize..40).prop_map(|i| format!("{ORGANIZATION_SELECTION_COOKIE}.{i}")),
        "[ -~]{0,12}".prop_map(|selection| organization_selection_cookie(&selection)),
        "[ -~]{0,12}",
    ]
}

/// A `Cookie` header of up to 24 pairs with arbitrary printable values (and stray separators).
fn cookie_line() -> impl Strategy<Value = String> {
    prop::collection::vec((cookie_name(), "[ -~]{0,80}", prop::bool::ANY), 0..24).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value, with_equals)| if with_equals { format!("{name}={value}") } else { name })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

proptest! {
    #![proptest_config(crate::proptest_cases())]

    #[test]
    fn no_string_opens_as_a_sealed_value(value in "\\PC{0,400}") {
        prop_assert!(sealer().open(Purpose::Session, &value).is_err());
        prop_assert!(sealer().open(Purpose::SignInState, &value).is_err());
    }

    #[test]
    fn well_formed_but_forged_sealed_values_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let forged = format!("v1.{}", URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert!(sealer().open(Purpose::Session, &forged).is_err());
    }

    #[test]
    fn a_sealed_value_with_one_character_changed_is_refused(
        index in any::<prop::sample::Index>(),
        replacement in prop::char::range('!', '~'),
    ) {
        let sealer = sealer();
        let genuine = sealer.seal(Purpose::Session, br#"{"a":"session"}"#).expect("seal");
        let mut changed: Vec<char> = genuine.chars().collect();
        let at = index.index(changed.len());
        changed[at] = replacement;
        let changed: String = changed.into_iter().collect();
        // Only an unchanged value may open (the replacement was the same character).
        if let Ok(opened) = sealer.open(Purpose::Session, &changed) {
            prop_assert_eq!(changed, genuine, "opened to {:?}", opened.plaintext);
        }
    }

    #[test]
    fn any_cookie_header_is_a_clean_signed_out(line in cookie_line()) {
        let Some(headers) = headers(&line) else { return Ok(()) };
        let manager = manager();
        prop_assert!(manager.open(&headers).is_none());
        // Only names the app writes are ever expired: the plain name and at most 16 chunks.
        prop_assert!(manager.clear(&headers).len() <= 17);
        // And of the sign-in states, a bounded few: at `/login`, room among the first 16 and the new one; at
        // `/callback`, the cookies named for the first 16 `state`s, and the previous version's plain one and chunks.
        let start = manager.begin_sign_in(&headers, &SignInRequest::default());
        prop_assert!(start.is_ok_and(|start| start.set_cookies.len() <= 1 + MAX_FAMILY_MEMBERS));
        let states: Vec<String> = (0..40).map(|i| i.to_string()).chain(["".to_owned()]).collect();
        let spent = manager.spent_sign_in_state(&headers, states.iter().map(String::as_str));
        prop_assert!(spent.len() <= MAX_FAMILY_MEMBERS + 17);
        // The same for the pending organization choices, dropped all at once at `/login` and sign-out.
        prop_assert!(manager.drop_pending_sign_ins(&headers).len() <= MAX_FAMILY_MEMBERS + 17);
        prop_assert!(manager.pending_sign_in(&headers, "").is_none());
    }

    #[test]
    fn a_session_split_into_any_chunks_reads_back_only_whole_and_in_order(
        cuts in prop::collection::btree_set(1usize..3_000, 0..6),
        drop_one in any::<prop::sample::Index>(),
        damage in prop::bool::ANY,
    ) {
        let manager = manager();
        let sealed = manager.sealer.seal(Purpose::Session, &serde_json::to_vec(&session()).expect("json")).expect("seal");
        let mut bounds: Vec<usize> = cuts.into_iter().filter(|cut| *cut < sealed.len()).collect();
        bounds.insert(0, 0);
        bounds.push(sealed.len());
        let chunks: Vec<&str> = bounds.windows(2).map(|w| &sealed[w[0]..w[1]]).collect();
        let line = |chunks: &[&str]| {
            chunks.iter().enumerate().map(|(i, c)| format!("{SESSION_COOKIE}.{i}={c}")).collect::<Vec<_>>().join("; ")
        };
        let whole = headers(&line(&chunks)).expect("ascii");
        prop_assert!(manager.open(&whole).is_some(), "the chunks of a genuine session join back");

        if chunks.len() > 1 {
            let mut missing = chunks.clone();
            missing.remove(drop_one.index(chunks.len()));
            let broken = if damage { missing.reverse(); missing } else { missing };
            prop_assert!(manager.open(&headers(&line(&broken)).expect("ascii")).is_none());
        }
    }

    #[test]
    fn any_sign_in_state_cookie_is_refused(value in "[ -~]{0,600}", state in "[ -~]{0,50}") {
        // Named for the state the callback returns, or the previous version's single cookie.
        for name in [sign_in_state_cookie(&state), SIGN_IN_STATE_COOKIE.to_owned()] {
            let Some(headers) = headers(&format!("{name}={value}")) else { continue };
            prop_assert!(manager().sign_in_state(&headers, &state).is_none());
        }
    }

    #[test]
    fn any_pending_choice_cookie_is_refused(value in "[ -~]{0,600}", selection in "[ -~]{0,50}") {
        // Named for the selection the page names, or the previous version's single cookie (read without one).
        let cases = [(organization_selection_cookie(&selection), selection.as_str()), (ORGANIZATION_SELECTION_COOKIE.to_owned(), "")];
        for (name, page) in cases {
            let Some(headers) = headers(&format!("{name}={value}")) else { continue };
            prop_assert!(manager().pending_sign_in(&headers, page).is_none());
        }
    }

    #[test]
    fn return_to_is_always_a_path_on_this_site(raw in prop_oneof![
        "\\PC{0,120}",
        "[/\\\\%.:a-z0-9?#@]{0,40}",
        // Long paths around the length limit, full of what the URL parser percent-encodes (so they grow).
        "/[a-z0-9/?=&{}<>\"`^|é€]{0,2100}",
    ]) {
        let path = safe_return_path(Some(&raw));
        prop_assert!(path.starts_with('/'), "{path:?}");
        prop_assert!(path.len() <= super::sign_in::MAX_RETURN_PATH_BYTES, "{} bytes", path.len());
        prop_assert!(!path.starts_with("//") && !path.contains('\\'), "{path:?}");
        prop_assert!(!path.chars().any(|c| c.is_control() || c.is_whitespace()), "{path:?}");
        // And the sign-in state it travels in is always one small cookie.
        let request = SignInRequest { return_to: Some(raw), ..SignInRequest::default() };
        let start = manager().begin_sign_in(&HeaderMap::new(), &request);
        prop_assert!(start.is_ok_and(|start| start.set_cookies.len() == 1));
    }
}

fn session() -> super::Session {
    super::Session {
        access_token: "a".repeat(5_000),
        refresh_token: Some("refresh".to_owned()),
        user: crate::identity::UserProfile::id_only("user_1"),
        organization_id: None,
        impersonator: None,
        session_id: Some("session_1".to_owned()),
        oidc: None,
        personal: false,
    }
}
