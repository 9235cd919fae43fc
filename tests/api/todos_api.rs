//! The JSON API, as `curl` and API clients use it: every operation with a session cookie and with a bearer token,
//! each user confined to their own todos by RLS, and every error status in the API's JSON shape.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::app::{ALICE, AppOptions, BOB, TestApp, spawn_app, spawn_app_with};
use crate::helpers::browser::{ApiClient, Browser, TestResponse};

/// One way of calling the API: a signed-in browser (cookie) or a bearer-token client.
enum Caller {
    Cookie(Browser),
    Bearer(ApiClient),
}

impl Caller {
    async fn cookie(app: &TestApp, email: &str) -> Self {
        Self::Cookie(app.signed_in(email).await)
    }

    fn bearer(app: &TestApp, email: &str) -> Self {
        Self::Bearer(app.bearer_client(app.workos.mint_access_token(&app.user_id(email), Duration::from_secs(300))))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        match self {
            Self::Cookie(browser) => browser.api(method, path, body).await,
            Self::Bearer(client) => client.send(method, path, body).await,
        }
    }
}

fn assert_todo_shape(todo: &Value) {
    let mut keys: Vec<&str> = todo.as_object().expect("a todo is an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "id", "is_complete", "organization_id", "title", "updated_at", "user_id"],
        "{todo}"
    );
}

async fn crud(app: &TestApp, me: &Caller) {
    let created = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Buy milk" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let todo = created.json();
    assert_todo_shape(&todo);
    assert_eq!(todo["title"], "Buy milk");
    assert_eq!(todo["is_complete"], false);
    let id = todo["id"].as_str().expect("id").to_owned();
    assert_eq!(created.location(), Some(format!("/api/todos/{id}")));

    let second = me.call(Method::POST, "/api/todos", Some(json!({ "title": "  Call mum  " }))).await;
    assert_eq!(second.json()["title"], "Call mum", "surrounding whitespace is trimmed");

    let fetched = me.call(Method::GET, &format!("/api/todos/{id}"), None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), todo);

    let list = me.call(Method::GET, "/api/todos", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let titles: Vec<&str> =
        list["todos"].as_array().expect("array").iter().map(|t| t["title"].as_str().unwrap_or("")).collect();
    assert_eq!(titles, ["Call mum", "Buy milk"], "newest first");
    assert_eq!(list["offset"], 0);
    assert!(list["limit"].as_u64().is_some());

    let done = me.call(Method::PATCH, &format!("/api/todos/{id}"), Some(json!({ "is_complete": true }))).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["is_complete"], true);
    assert_eq!(done.json()["title"], "Buy milk");

    let renamed = me.call(Method::PATCH, &format!("/api/todos/{id}"), Some(json!({ "title": "Buy oat milk" }))).await;
    assert_eq!(renamed.json()["title"], "Buy oat milk");
    assert_eq!(renamed.json()["is_complete"], true, "a rename keeps the completion");

    let deleted = me.call(Method::DELETE, &format!("/api/todos/{id}"), None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    assert_eq!(me.call(Method::GET, &format!("/api/todos/{id}"), None).await.status, 404);
    assert_eq!(app.all_todos().await.len(), 1, "only the other todo is left in the database");
}

#[tokio::test]
async fn every_operation_works_with_a_session_cookie() {
    let app = spawn_app().await;
    crud(&app, &Caller::cookie(&app, ALICE).await).await;
}

#[tokio::test]
async fn every_operation_works_with_a_bearer_token() {
    let app = spawn_app().await;
    crud(&app, &Caller::bearer(&app, ALICE)).await;
}

/// Alice, signed in, and the path of a todo of hers titled "Buy milk".
async fn alice_with_a_todo(app: &TestApp) -> (Browser, String) {
    let alice = app.signed_in(ALICE).await;
    let created = alice.api(Method::POST, "/api/todos", Some(json!({ "title": "Buy milk" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!("/api/todos/{}", created.json()["id"].as_str().expect("id"));
    (alice, path)
}

/// This API sends no entity tags, so a change conditioned on one (`If-Match: "…"`, RFC 9110 §13.1.1) cannot hold:
/// 412 and nothing changed, rather than the change made over whatever the client thought it was changing.
#[tokio::test]
async fn a_change_sent_with_an_if_match_that_cannot_hold_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let (alice, path) = alice_with_a_todo(&app).await;
    let rename = serde_json::to_vec(&json!({ "title": "Buy oat milk" })).expect("json");
    let with_if_match = |tag: &'static str, body: Option<Vec<u8>>| {
        move |request: reqwest::RequestBuilder| {
            let request = request.header("if-match", tag);
            match body {
                Some(body) => request.header("content-type", "application/json").body(body),
                None => request,
            }
        }
    };

    for tag in ["\"stale-etag\"", "W/\"x\"", "*, \"x\""] {
        let patched = alice.request(Method::PATCH, &path, with_if_match(tag, Some(rename.clone()))).await;
        assert_eq!(
            (patched.status, patched.error_code().as_str()),
            (412, "precondition_failed"),
            "{tag}: {}",
            patched.body
        );
        let deleted = alice.request(Method::DELETE, &path, with_if_match(tag, None)).await;
        assert_eq!(deleted.status, 412, "{tag}: {}", deleted.body);
    }
    let unchanged = alice.api(Method::GET, &path, None).await;
    assert_eq!(unchanged.json()["title"], "Buy milk", "nothing was changed");

    let patched = alice.request(Method::PATCH, &path, with_if_match("*", Some(rename.clone()))).await;
    assert_eq!(patched.status, 200, "If-Match: * holds for a todo there is: {}", patched.body);
    assert_eq!(patched.json()["title"], "Buy oat milk");
    assert_eq!(alice.request(Method::DELETE, &path, with_if_match("*", None)).await.status, 204);

    // A todo that is not there (or not Alice's to see) is 404 whatever the condition says.
    let gone = alice.request(Method::DELETE, &path, with_if_match("\"x\"", None)).await;
    assert_eq!((gone.status, gone.error_code().as_str()), (404, "not_found"), "{}", gone.body);
    let bob = app.signed_in(BOB).await;
    let bobs =
        bob.api(Method::POST, "/api/todos", Some(json!({ "title": "Bob's", "organization_id": "personal" }))).await;
    let bobs = format!("/api/todos/{}", bobs.json()["id"].as_str().expect("id"));
    assert_eq!(alice.request(Method::PATCH, &bobs, with_if_match("\"x\"", Some(rename.clone()))).await.status, 404);
}

/// A PATCH field that is `null` is refused, not read as "leave it" (a merge patch's `null` means "remove it", which
/// neither field can be), and nothing is changed, not even the other field.
#[tokio::test]
async fn a_patch_with_a_null_field_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let (alice, path) = alice_with_a_todo(&app).await;
    for (body, field) in [
        (json!({ "title": "Renamed", "is_complete": null }), "is_complete"),
        (json!({ "title": null, "is_complete": true }), "title"),
        (json!({ "title": null }), "title"),
    ] {
        let patched = alice.api(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!((patched.status, patched.error_code().as_str()), (422, "unprocessable"), "{body}: {}", patched.body);
        let message = patched.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(&format!("\"{field}\" cannot be null")), "{body}: {message}");
    }
    let unchanged = alice.api(Method::GET, &path, None).await.json();
    assert_eq!((unchanged["title"].as_str(), unchanged["is_complete"].as_bool()), (Some("Buy milk"), Some(false)));
}

/// A list takes its space from the query string, a create from its body: a create with `?organization_id=` would
/// otherwise land in the active space whatever the query said.
#[tokio::test]
async fn a_create_naming_its_space_in_the_query_string_is_refused() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    for query in ["organization_id=personal", "organization_id=", "limit=5&organization_id=org_x"] {
        let created =
            alice.api(Method::POST, &format!("/api/todos?{query}"), Some(json!({ "title": "where am I" }))).await;
        assert_eq!((created.status, created.error_code().as_str()), (400, "bad_request"), "{query}: {}", created.body);
        assert!(
            created.json()["error"]["message"].as_str().is_some_and(|m| m.contains("JSON body")),
            "{}",
            created.body
        );
    }
    assert!(app.all_todos().await.is_empty(), "nothing was created");
    let other_query = alice.api(Method::POST, "/api/todos?source=cli", Some(json!({ "title": "fine" }))).await;
    assert_eq!(other_query.status, 201, "other query parameters are still ignored: {}", other_query.body);
}

#[tokio::test]
async fn each_user_sees_and_changes_only_their_own_todos() {
    let app = spawn_app().await;
    let alice = Caller::cookie(&app, ALICE).await;
    let bob_cookie = Caller::cookie(&app, BOB).await;
    let bob_bearer = Caller::bearer(&app, BOB);

    let todo = alice.call(Method::POST, "/api/todos", Some(json!({ "title": "Alice's secret" }))).await.json();
    let path = format!("/api/todos/{}", todo["id"].as_str().expect("id"));
    bob_cookie.call(Method::POST, "/api/todos", Some(json!({ "title": "Bob's" }))).await;

    for bob in [&bob_cookie, &bob_bearer] {
        let list = bob.call(Method::GET, "/api/todos", None).await.json();
        let titles: Vec<&str> =
            list["todos"].as_array().expect("array").iter().map(|t| t["title"].as_str().unwrap_or("")).collect();
        assert_eq!(titles, ["Bob's"], "Bob sees only his own");

        for (method, body) in [
            (Method::GET, None),
            (Method::PATCH, Some(json!({ "title": "pwned", "is_complete": true }))),
            (Method::DELETE, None),
        ] {
            let response = bob.call(method.clone(), &path, body).await;
            assert_eq!(response.status, 404, "{method} of another user's todo: {}", response.body);
            assert_eq!(response.error_code(), "not_found");
        }
    }

    let still = alice.call(Method::GET, &path, None).await.json();
    assert_eq!(still, todo, "Alice's todo is untouched");
    let mut rows = app.all_todos().await;
    rows.sort();
    assert_eq!(rows, vec![(app.user_id(ALICE), "Alice's secret".to_owned()), (app.user_id(BOB), "Bob's".to_owned())]);
}

#[tokio::test]
async fn pagination_uses_limit_and_offset_and_caps_the_limit() {
    let app = spawn_app().await;
    let me = Caller::bearer(&app, ALICE);
    for i in 0..5 {
        me.call(Method::POST, "/api/todos", Some(json!({ "title": format!("todo {i}") }))).await;
    }
    let page = me.call(Method::GET, "/api/todos?limit=2&offset=1", None).await.json();
    let titles: Vec<&str> =
        page["todos"].as_array().expect("array").iter().map(|t| t["title"].as_str().unwrap_or("")).collect();
    assert_eq!(titles, ["todo 3", "todo 2"]);
    assert_eq!((page["limit"].as_u64(), page["offset"].as_u64()), (Some(2), Some(1)));

    for limit in ["100000", "4294967296", "99999999999999999999999999"] {
        let capped = me.call(Method::GET, &format!("/api/todos?limit={limit}"), None).await;
        assert_eq!((capped.status, &capped.json()["limit"]), (200, &json!(100)), "{limit}: {}", capped.body);
    }
    let past_the_end = me.call(Method::GET, "/api/todos?offset=99999999999999999999", None).await.json();
    assert_eq!(past_the_end["todos"], json!([]), "an offset past the end is an empty page");
    let least = me.call(Method::GET, "/api/todos?limit=0", None).await.json();
    assert_eq!((&least["limit"], least["todos"].as_array().map(Vec::len)), (&json!(1), Some(1)));

    // The refusal names the parameter, never echoing its value.
    for (query, parameter) in [("limit=many", "limit"), ("offset=-1", "offset"), ("limit=5&offset=1e3", "offset")] {
        let bad = me.call(Method::GET, &format!("/api/todos?{query}"), None).await;
        assert_eq!((bad.status, bad.error_code().as_str()), (400, "bad_request"), "{query}");
        let message = bad.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.starts_with(&format!("Invalid query parameter `{parameter}`: ")), "{query}: {message}");
        assert!(!message.contains("many") && !message.contains("1e3"), "{query}: {message}");
        assert!(message.ends_with(": expected a whole number, 0 or more."), "{query}: {message}");
    }
    // Blank is not given (the README's own template, a form's empty field): the defaults.
    let blank = me.call(Method::GET, "/api/todos?limit=&offset=&organization_id=", None).await;
    assert_eq!(blank.status, 200, "{}", blank.body);
    assert_eq!((blank.json()["limit"].as_u64(), blank.json()["offset"].as_u64()), (Some(50), Some(0)));
    // A parameter given twice is the query's fault as a whole, not one parameter's.
    let twice = me.call(Method::GET, "/api/todos?limit=1&limit=2", None).await;
    assert_eq!((twice.status, twice.error_code().as_str()), (400, "bad_request"));
    let message = twice.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("Invalid query parameters: ") && message.contains("limit"), "{message}");
}

#[tokio::test]
async fn every_client_error_has_its_status_and_a_json_body() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let bearer = Caller::bearer(&app, ALICE);
    let url = |path: &str| app.base_url.join(path).expect("url");
    let raw = reqwest::Client::new();
    let cookie = alice.cookie_header();
    // A create whose body and headers are sent exactly as given, with the cookie, from the app's own origin.
    let post_raw = |headers: &[(&'static str, &'static str)], body: &'static [u8]| {
        let mut request = raw
            .post(url("/api/todos"))
            .header("cookie", &cookie)
            .header("origin", alice.origin())
            .header("sec-fetch-site", "same-origin");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.body(body).send().await.expect("request") }
    };

    let malformed = post_raw(&[("content-type", "application/json")], b"{\"title\": ").await;
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "malformed_json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    // Where it breaks, said once (not axum's "Failed to parse the request body as JSON" after ours).
    assert_eq!(message, "The request body is not valid JSON: title: EOF while parsing a value at line 1 column 10.");

    // Valid JSON of the wrong shape: the same code, and a message that does not call it invalid JSON.
    let wrong_type = bearer.call(Method::POST, "/api/todos", Some(json!({ "title": 5 }))).await;
    assert_eq!((wrong_type.status, wrong_type.error_code()), (400, "malformed_json".to_owned()));
    let message = wrong_type.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("The request body is JSON, but not what this route takes: "), "{message}");
    assert_eq!(
        message,
        "The request body is JSON, but not what this route takes: title: invalid type: integer `5`, expected a \
         string at line 1 column 10.",
        "names the field, once"
    );

    // serde would read `["title", true]` as the fields in order; a body of the API is an object or nothing.
    for body in [json!(["Array title"]), json!("a string"), json!(null)] {
        let response = bearer.call(Method::POST, "/api/todos", Some(body.clone())).await;
        assert_eq!((response.status, response.error_code()), (400, "malformed_json".to_owned()), "{body}");
        assert!(response.body.contains("must be a JSON object"), "{}", response.body);
    }

    let todo = bearer.call(Method::POST, "/api/todos", Some(json!({ "title": "Not by position" }))).await.json();
    let path = format!("/api/todos/{}", todo["id"].as_str().expect("an id"));
    let by_position = bearer.call(Method::PATCH, &path, Some(json!(["renamed by position", true]))).await;
    assert_eq!((by_position.status, by_position.error_code()), (400, "malformed_json".to_owned()));
    assert_eq!(bearer.call(Method::GET, &path, None).await.json()["title"], "Not by position", "unchanged");
    // A JSON Patch (RFC 6902) is a list of operations, not the fields to change: 415 naming the types a PATCH takes
    // (RFC 5789 §2.2), nothing changed. A JSON Merge Patch (RFC 7396) is what this API's PATCH is.
    let patch_raw = |content_type: &'static str, body: &'static str| {
        let request = raw
            .patch(url(&path))
            .header("cookie", &cookie)
            .header("origin", alice.origin())
            .header("sec-fetch-site", "same-origin")
            .header("content-type", content_type);
        async move { request.body(body).send().await.expect("request") }
    };
    let json_patch =
        patch_raw("application/json-patch+json", r#"[{"op":"replace","path":"/title","value":"by op"}]"#).await;
    assert_eq!(json_patch.status(), 415);
    let accepted = json_patch.headers().get("accept-patch").and_then(|value| value.to_str().ok());
    assert_eq!(accepted, Some("application/json, application/merge-patch+json"));
    let body: Value = json_patch.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert_eq!(bearer.call(Method::GET, &path, None).await.json()["title"], "Not by position", "unchanged");
    let merge_patch = patch_raw("application/merge-patch+json", r#"{"title":"Merged"}"#).await;
    assert_eq!(merge_patch.status(), 200);
    assert_eq!(bearer.call(Method::GET, &path, None).await.json()["title"], "Merged");

    // A compressed body is refused as such (415), not read as bytes and called malformed; `identity` is no coding,
    // and an object may start after white space.
    let plain = post_raw(
        &[("content-type", "application/json; charset=utf-8"), ("content-encoding", "Identity")],
        b"\n  {\"title\":\"Plain\"}",
    )
    .await;
    assert_eq!(plain.status(), 201);
    // A byte-order mark before the object, as some Windows tools write it, is no reason to refuse it.
    let marked = post_raw(&[("content-type", "application/json")], "\u{feff}{\"title\":\"Marked\"}".as_bytes()).await;
    assert_eq!(marked.status(), 201);
    let marked: Value = marked.json().await.expect("the todo");
    assert_eq!(marked["title"], "Marked");
    let gzipped =
        post_raw(&[("content-type", "application/json"), ("content-encoding", "gzip")], &[0x1f, 0x8b, 0x08]).await;
    assert_eq!(gzipped.status(), 415);
    let accepted = gzipped.headers().get("accept-encoding").and_then(|value| value.to_str().ok());
    assert_eq!(accepted, Some("identity"), "the 415 names the coding accepted");
    let body: Value = gzipped.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("Content-Encoding")), "{body}");

    let not_uuid = bearer.call(Method::GET, "/api/todos/not-a-uuid", None).await;
    assert_eq!((not_uuid.status, not_uuid.error_code()), (400, "invalid_id".to_owned()));
    let hostile = bearer.call(Method::PATCH, "/api/todos/1,2)or(1=1", Some(json!({ "is_complete": true }))).await;
    assert_eq!(hostile.status, 400);

    let anonymous =
        ApiClient::new(app.base_url.clone(), None).send(Method::POST, "/api/todos", Some(json!({"title": "x"}))).await;
    assert_eq!((anonymous.status, anonymous.error_code()), (401, "unauthorized".to_owned()));
    // RFC 6750: a 401 without credentials names the scheme, and no error (none was sent to be wrong).
    assert_eq!(anonymous.header("www-authenticate").as_deref(), Some("Bearer"));

    let missing = bearer.call(Method::GET, &format!("/api/todos/{}", uuid::Uuid::new_v4()), None).await;
    assert_eq!((missing.status, missing.error_code()), (404, "not_found".to_owned()));

    let huge = json!({ "title": "x".repeat(70 * 1024) });
    let too_large = bearer.call(Method::POST, "/api/todos", Some(huge)).await;
    assert_eq!((too_large.status, too_large.error_code()), (413, "payload_too_large".to_owned()));

    let text = post_raw(&[("content-type", "text/plain")], b"{\"title\":\"x\"}").await;
    assert_eq!(text.status(), 415);
    let body: Value = text.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // JSON is UTF-8, and a charset on it has no effect (RFC 8259 §11): read as UTF-8 whatever it says.
    let latin1 = post_raw(&[("content-type", "application/json; charset=ISO-8859-1")], b"{\"title\":\"x\"}").await;
    assert_eq!(latin1.status(), 201);

    // Blank, invisible (a zero-width space, a byte-order mark and a joiner), too long.
    for title in [json!(""), json!("   "), json!("\u{200B} \u{FEFF}\u{200D}"), json!("x".repeat(501))] {
        let invalid = bearer.call(Method::POST, "/api/todos", Some(json!({ "title": title }))).await;
        assert_eq!((invalid.status, invalid.error_code()), (422, "invalid_title".to_owned()), "{}", invalid.body);
    }
    // A real NUL (serde_json writes it as the escape `\u0000`) and a BEL: refused before InsForge is asked.
    let asked = app.insforge.records_requests();
    for title in ["a\u{0}b", "\u{7}"] {
        let body = json!({ "title": title });
        assert!(body.to_string().contains(r"\u00"), "sent as a JSON escape: {body}");
        let control = bearer.call(Method::POST, "/api/todos", Some(body)).await;
        assert_eq!((control.status, control.error_code()), (422, "invalid_title".to_owned()), "{}", control.body);
        assert!(control.json()["error"]["message"].as_str().is_some_and(|m| m.contains("control characters")));
    }
    assert_eq!(app.insforge.records_requests(), asked, "InsForge saw no write");
    let nothing = bearer.call(Method::POST, "/api/todos", Some(json!({}))).await;
    assert_eq!(nothing.status, 422);
    let ok = bearer.call(Method::POST, "/api/todos", Some(json!({ "title": "x".repeat(500) }))).await;
    assert_eq!(ok.status, 201, "500 characters is the limit, inclusive");
    let id = ok.json()["id"].as_str().expect("id").to_owned();
    let empty_patch = bearer.call(Method::PATCH, &format!("/api/todos/{id}"), Some(json!({}))).await;
    assert_eq!(empty_patch.status, 422);
    let unknown_field = bearer.call(Method::PATCH, &format!("/api/todos/{id}"), Some(json!({ "titel": "typo" }))).await;
    assert_eq!(unknown_field.status, 400, "a misspelt field is not silently ignored");

    let wrong_method = bearer.call(Method::PUT, "/api/todos", Some(json!({ "title": "x" }))).await;
    assert_eq!((wrong_method.status, wrong_method.error_code()), (405, "method_not_allowed".to_owned()));

    assert_eq!(app.all_todos().await.len(), 5, "none of the refused requests wrote anything (five were accepted)");
}

#[tokio::test]
async fn a_cookie_cannot_be_used_to_write_from_another_site() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let raw = reqwest::Client::new();
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut request = raw
            .post(app.base_url.join("/api/todos").expect("url"))
            .header("cookie", alice.cookie_header())
            .json(&json!({ "title": "forged" }));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };

    for (origin, site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (Some("https://evil.example"), Some("cross-site")),
    ] {
        let response = post(origin, site).await.expect("request");
        assert_eq!(response.status(), 403, "origin {origin:?}, sec-fetch-site {site:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "csrf_failed");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("another site") && message.contains("bearer token"), "words for an API: {message}");
    }
    let delete = raw
        .delete(app.base_url.join(&format!("/api/todos/{}", uuid::Uuid::new_v4())).expect("url"))
        .header("cookie", alice.cookie_header())
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(delete.status(), 403, "a body-less DELETE is checked too");
    assert!(app.all_todos().await.is_empty(), "nothing was written");

    let own = alice.api(Method::POST, "/api/todos", Some(json!({ "title": "mine" }))).await;
    assert_eq!(own.status, 201, "the app's own origin may write");

    // Only cookie *writes* are checked: another site may make the browser read (CORS keeps the answer from it), and
    // a bearer token is never sent by a browser on its own, so its origin says nothing.
    let read = raw
        .get(app.base_url.join("/api/todos").expect("url"))
        .header("cookie", alice.cookie_header())
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("request");
    assert_eq!(read.status(), 200, "a cross-site read with the cookie is not a forgery");
    let token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
    let bearer_write = raw
        .post(app.base_url.join("/api/todos").expect("url"))
        .bearer_auth(token)
        .header("origin", "https://tools.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "title": "from a script" }))
        .send()
        .await
        .expect("request");
    assert_eq!(bearer_write.status(), 201, "a bearer write from anywhere is the token holder's");
}

#[tokio::test]
async fn insforge_failures_become_502_and_504_and_nothing_is_written_twice() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 400)).await;
    let me = Caller::bearer(&app, ALICE);

    app.insforge.fail_next(1, 500);
    let failed = me.call(Method::POST, "/api/todos", Some(json!({ "title": "during an outage" }))).await;
    assert_eq!((failed.status, failed.error_code()), (502, "upstream_failed".to_owned()));
    assert!(
        !failed.body.contains("stand-in") && !failed.body.to_lowercase().contains("sql"),
        "no internals: {}",
        failed.body
    );
    assert!(app.all_todos().await.is_empty(), "nothing was written");

    app.insforge.set_latency(Duration::from_millis(1_500));
    let slow = me.call(Method::POST, "/api/todos", Some(json!({ "title": "slow" }))).await;
    assert_eq!((slow.status, slow.error_code()), (504, "upstream_timeout".to_owned()));
    let slow_read = me.call(Method::GET, "/api/todos", None).await;
    assert_eq!(slow_read.status, 504);
    app.insforge.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(app.all_todos().await.len() <= 1, "a timed-out write is never retried into a duplicate");

    let down = spawn_app_with(AppOptions::default().var("INSFORGE_URL", crate::helpers::closed_port_url())).await;
    let refused = Caller::bearer(&down, ALICE).call(Method::GET, "/api/todos", None).await;
    assert_eq!((refused.status, refused.error_code()), (502, "upstream_failed".to_owned()));
}

/// A create InsForge saved but answered too late (it goes on writing after authbridge stops waiting): the caller
/// hears that it may have been saved, and sending it again with the id it chose is answered with that todo, never
/// a second one.
#[tokio::test]
async fn a_create_saved_after_its_answer_was_lost_is_sent_again_with_its_id_and_makes_one_todo() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 400)).await;
    let me = Caller::bearer(&app, ALICE);
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({ "id": id, "title": "pay rent" });

    app.insforge.set_response_latency(Duration::from_millis(1_000));
    let lost = me.call(Method::POST, "/api/todos", Some(body.clone())).await;
    assert_eq!((lost.status, lost.error_code()), (504, "upstream_timeout".to_owned()), "{}", lost.body);
    let message = lost.json()["error"]["message"].as_str().expect("a message").to_owned();
    assert!(message.contains("may have been saved") && message.contains("Reload before trying again"), "{message}");
    assert!(!message.contains("Please try again"), "{message}");
    app.insforge.set_response_latency(Duration::ZERO);
    assert_eq!(app.all_todos().await, [(app.user_id(ALICE), "pay rent".to_owned())], "InsForge saved it anyway");

    for _ in 0..2 {
        let again = me.call(Method::POST, "/api/todos", Some(body.clone())).await;
        assert_eq!(again.status, 201, "answered as the create it is: {}", again.body);
        assert_eq!(
            (again.json()["id"].as_str(), again.json()["title"].as_str()),
            (Some(id.as_str()), Some("pay rent"))
        );
        assert_eq!(again.location(), Some(format!("/api/todos/{id}")));
    }
    assert_eq!(app.all_todos().await.len(), 1, "exactly one todo");

    // The id of a todo the caller cannot see: 409, and nothing about that todo.
    let bob = Caller::bearer(&app, BOB);
    let taken = bob.call(Method::POST, "/api/todos", Some(body.clone())).await;
    assert_eq!((taken.status, taken.error_code()), (409, "id_taken".to_owned()), "{}", taken.body);
    assert!(!taken.body.contains(&app.user_id(ALICE)) && !taken.body.contains("pay rent"), "{}", taken.body);
    // The caller's own todo, but another create (another title): not answered as this one.
    let other = me.call(Method::POST, "/api/todos", Some(json!({ "id": id, "title": "pay the rent" }))).await;
    assert_eq!((other.status, other.error_code()), (409, "id_taken".to_owned()), "{}", other.body);
    // The message says it is taken, without calling the caller's own todo someone else's.
    let message = other.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("possibly one of yours"), "{message}");
    // An id that is no UUID, or the nil UUID (an id left at its default), in any of its spellings.
    let nil = [
        "00000000-0000-0000-0000-000000000000",
        "{00000000-0000-0000-0000-000000000000}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    ];
    for bad in [json!("not-a-uuid"), json!("")].into_iter().chain(nil.map(|id| json!(id))) {
        let malformed = me.call(Method::POST, "/api/todos", Some(json!({ "id": bad, "title": "x" }))).await;
        assert_eq!((malformed.status, malformed.error_code()), (422, "unprocessable".to_owned()), "{}", malformed.body);
        assert!(malformed.json()["error"]["message"].as_str().is_some_and(|m| m.contains("\"id\"")));
    }
    assert_eq!(app.all_todos().await.len(), 1, "none of them made a todo");
    // `null`: authbridge chooses, as when it is absent.
    let chosen = me.call(Method::POST, "/api/todos", Some(json!({ "id": null, "title": "any id" }))).await;
    assert_eq!(chosen.status, 201, "{}", chosen.body);
    assert_eq!(app.all_todos().await.len(), 2);
}

/// A change to a todo InsForge did not confirm in time is looked at again: made, it is answered as done; not made
/// (yet), it is not announced as failed either: it may have been saved.
#[tokio::test]
async fn changes_insforge_did_not_confirm_say_they_may_have_been_saved() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 400)).await;
    let me = Caller::bearer(&app, ALICE);
    let created = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Water plants" }))).await;
    let path = format!("/api/todos/{}", created.json()["id"].as_str().expect("id"));
    let scratch = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Scratch" }))).await;
    let scratch = format!("/api/todos/{}", scratch.json()["id"].as_str().expect("id"));

    // Made at once, answered too late: the todo is as asked, so that is the answer.
    app.insforge.set_response_latency(Duration::from_millis(1_000));
    let patched = me.call(Method::PATCH, &path, Some(json!({ "is_complete": true }))).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["is_complete"], true);
    let deleted = me.call(Method::DELETE, &scratch, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    app.insforge.set_response_latency(Duration::ZERO);

    // Made after the client gave up: when looked at, nothing has happened yet.
    app.insforge.delay_next_write(Duration::from_millis(1_000));
    let patched = me.call(Method::PATCH, &path, Some(json!({ "title": "Water the plants" }))).await;
    app.insforge.delay_next_write(Duration::from_millis(1_000));
    let deleted = me.call(Method::DELETE, &path, None).await;
    for (what, answer) in [("patch", patched), ("delete", deleted)] {
        assert_eq!(
            (answer.status, answer.error_code()),
            (504, "upstream_timeout".to_owned()),
            "{what}: {}",
            answer.body
        );
        let message = answer.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("may have been saved"), "{what}: {message}");
    }
    // A read that timed out changed nothing, and says so as before.
    app.insforge.set_latency(Duration::from_millis(1_000));
    let read = me.call(Method::GET, &path, None).await;
    assert_eq!((read.status, read.error_code()), (504, "upstream_timeout".to_owned()));
    assert!(read.json()["error"]["message"].as_str().is_some_and(|m| m.contains("did not answer in time")));
    app.insforge.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(app.all_todos().await.is_empty(), "the delete went through after all");
}

/// InsForge answers its own 500 ("socket hang up") when its connection to PostgREST broke during a write, and the
/// write may have committed first: the caller, who sent no id, must hear that it may have been saved, or it makes
/// a second todo by trying again. A connection to PostgREST that was refused wrote nothing: "try again" is right.
#[tokio::test]
async fn a_create_whose_answer_insforge_lost_says_it_may_have_been_saved() {
    let app = spawn_app().await;
    let me = Caller::bearer(&app, ALICE);
    app.insforge.lose_next_write_answer();
    let lost = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Call the plumber" }))).await;
    assert_eq!((lost.status, lost.error_code()), (502, "upstream_failed".to_owned()), "{}", lost.body);
    let message = lost.json()["error"]["message"].as_str().expect("a message").to_owned();
    assert!(message.contains("may have been saved") && message.contains("Reload before trying again"), "{message}");
    assert!(!message.contains("Please try again"), "{message}");
    assert_eq!(app.all_todos().await, [(app.user_id(ALICE), "Call the plumber".to_owned())], "it was saved");

    app.insforge.fail_next(1, 500);
    let refused = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Never sent" }))).await;
    assert_eq!((refused.status, refused.error_code()), (502, "upstream_failed".to_owned()), "{}", refused.body);
    let message = refused.json()["error"]["message"].as_str().expect("a message").to_owned();
    assert!(message.contains("Please try again") && !message.contains("may have been saved"), "{message}");
    assert_eq!(app.all_todos().await.len(), 1, "the refused create wrote nothing");
}

/// PostgREST answers 400 for its own request errors too: a `todos` table that drifted from what authbridge sends
/// (here a renamed column, as a stale schema cache would make it: `PGRST204` on every create) is the deployment's
/// failure, 502, not input of the caller's that the service refused.
#[tokio::test]
async fn a_todos_table_that_drifted_from_the_app_is_an_upstream_failure_not_refused_input() {
    let app = spawn_app().await;
    let me = Caller::bearer(&app, ALICE);
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect as owner");
    sqlx::query("ALTER TABLE public.todos RENAME COLUMN organization_id TO org_id")
        .execute(&pool)
        .await
        .expect("rename a column");
    pool.close().await;
    let created = me.call(Method::POST, "/api/todos", Some(json!({ "title": "Water plants" }))).await;
    assert_eq!((created.status, created.error_code()), (502, "upstream_failed".to_owned()), "{}", created.body);
    assert!(app.all_todos().await.is_empty());
}

/// InsForge's proxy sends a request again when its kept-alive connection to PostgREST was reset, so a create that
/// went through the first time arrives twice: one todo, and the caller hears it created.
#[tokio::test]
async fn a_create_insforge_sends_twice_makes_one_todo() {
    let app = spawn_app().await;
    let browser = app.signed_in(ALICE).await;
    app.insforge.send_next_write_twice();
    let created = browser.api(Method::POST, "/api/todos", Some(json!({ "title": "Only once" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(app.insforge.records_requests_handled_twice(), 1, "the stand-in did send it twice");
    let id = created.json()["id"].clone();
    let listed = browser.api(Method::GET, "/api/todos", None).await.json();
    let ids: Vec<&Value> = listed["todos"]
        .as_array()
        .expect("todos")
        .iter()
        .filter(|t| t["title"] == "Only once")
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, [&id], "one todo, the one the caller was given");
}
