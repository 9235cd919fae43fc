//! Property tests of what the HTTP layer parses from any client, through the real router: request ids, the query
//! strings of `/login`, `/callback` and the todo list. 10,000 generated inputs each; never a panic, never a 5xx,
//! always a clean answer.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

use super::extractors::ApiQuery;
use super::middleware::{REQUEST_ID, is_acceptable_request_id};
use super::{AppState, router};
use crate::config::Config;

/// The app, configured with upstreams where nothing listens: none of these requests may need one.
fn state() -> AppState {
    let env: HashMap<&str, String> = HashMap::from([
        ("WORKOS_API_KEY", "sk_test_properties".to_owned()),
        ("WORKOS_CLIENT_ID", "client_properties".to_owned()),
        ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
        ("WORKOS_API_BASE_URL", "http://127.0.0.1:9".to_owned()),
        ("WORKOS_COOKIE_PASSWORD", "property-test-cookie-password-0123456789".to_owned()),
        ("INSFORGE_URL", "http://127.0.0.1:9".to_owned()),
        ("INSFORGE_JWT_SECRET", "property-test-insforge-secret-0123456789".to_owned()),
    ]);
    AppState::new(Config::from_lookup(|name| env.get(name).cloned()).expect("valid")).expect("state builds")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Query strings as clients (and attackers) write them: known keys, arbitrary keys, percent escapes (valid and
/// not), `+`, empty pairs, repeated keys.
fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("return_to".to_owned()),
        Just("code".to_owned()),
        Just("state".to_owned()),
        Just("error".to_owned()),
        Just("limit".to_owned()),
        Just("offset".to_owned()),
        Just("screen_hint".to_owned()),
        "[a-z_%0-9]{0,8}",
    ];
    let value =
        prop_oneof!["[A-Za-z0-9._~+/:@!$'()*,;-]{0,40}", "(%[0-9A-Fa-f]{2}|%[g-z]|[a-z/]){0,20}", "-?[0-9]{1,12}"];
    prop::collection::vec((key, value, prop::bool::ANY), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value, with_equals)| if with_equals { format!("{key}={value}") } else { key })
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A GET as a client sends one over HTTP/1.1: with a `Host` (without one the app answers 400, RFC 9112 §3.2).
fn get(path_and_query: &str) -> Option<Request<Body>> {
    Request::get(path_and_query).header(axum::http::header::HOST, "localhost").body(Body::empty()).ok()
}

proptest! {
    #![proptest_config(crate::proptest_cases())]

    #[test]
    fn any_request_id_is_kept_only_when_it_looks_like_an_id(raw in prop::collection::vec(any::<u8>(), 0..100)) {
        let Ok(sent) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let app = router(STATE.with(Clone::clone));
        let Some(mut request) = get("/healthz") else { return Err(TestCaseError::fail("a request")) };
        request.headers_mut().insert(REQUEST_ID, sent.clone());
        let response = RUNTIME.with(|runtime| runtime.block_on(app.oneshot(request))).expect("infallible");
        prop_assert_eq!(response.status(), StatusCode::OK);
        let echoed = response.headers().get(REQUEST_ID).expect("every answer carries a request id");
        if is_acceptable_request_id(&sent) {
            prop_assert_eq!(echoed, &sent);
        } else {
            let echoed = echoed.to_str().expect("ascii");
            prop_assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed:?} replaced {sent:?}");
        }
    }

    #[test]
    fn any_login_query_starts_a_sign_in_or_is_refused(query in query_string()) {
        let Some(request) = get(&format!("/login?{query}")) else { return Ok(()) };
        let app = router(STATE.with(Clone::clone));
        let response = RUNTIME.with(|runtime| runtime.block_on(app.oneshot(request))).expect("infallible");
        prop_assert!(matches!(response.status().as_u16(), 302 | 400), "{} for {query:?}", response.status());
    }

    #[test]
    fn any_callback_query_without_this_browsers_sign_in_is_refused(query in query_string()) {
        let Some(request) = get(&format!("/callback?{query}")) else { return Ok(()) };
        let app = router(STATE.with(Clone::clone));
        let response = RUNTIME.with(|runtime| runtime.block_on(app.oneshot(request))).expect("infallible");
        prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST, "for {:?}", query);
    }

    #[test]
    fn any_todo_list_query_parses_to_a_valid_page_or_a_bad_request(query in query_string()) {
        let Some(request) = get(&format!("/api/todos?{query}")) else { return Ok(()) };
        let (mut parts, _) = request.into_parts();
        let parsed = RUNTIME.with(|runtime| {
            runtime.block_on(ApiQuery::<super::todos_api::ListQuery>::from_request_parts(&mut parts, &STATE.with(Clone::clone)))
        });
        match parsed {
            Ok(ApiQuery(query)) => {
                let page = crate::todo::Page::new(query.limit, query.offset);
                prop_assert!((1..=crate::todo::MAX_PAGE_LIMIT).contains(&page.limit()));
            }
            Err(error) => prop_assert_eq!(error.status(), StatusCode::BAD_REQUEST),
        }
    }
}

thread_local! {
    static STATE: AppState = state();
    static RUNTIME: tokio::runtime::Runtime = runtime();
}
