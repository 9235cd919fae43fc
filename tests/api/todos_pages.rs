//! The server-rendered app, driven like a browser: forms with CSRF tokens, redirects after success, errors shown on
//! the page with the typed text kept, output escaped, and each user confined to their own todos.

use std::time::Duration;

use crate::helpers::app::{ALICE, AppOptions, BOB, TestApp, spawn_app, spawn_app_with};
use crate::helpers::browser::Browser;

/// The id of the todo titled `title` on the browser's start page.
async fn todo_id(browser: &Browser, title: &str) -> String {
    let page = browser.get("/").await;
    let marker = format!("data-title=\"{}\"", askama_escape(title));
    let at = page.body.find(&marker).unwrap_or_else(|| panic!("{title:?} is not on the page: {}", page.body));
    let before = &page.body[..at];
    let start = before.rfind("id=\"todo-").expect("todo id") + "id=\"todo-".len();
    page.body[start..start + 36].to_owned()
}

/// HTML escaping as the templates do it (numeric entities).
fn askama_escape(text: &str) -> String {
    text.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;").replace('\'', "&#39;")
}

async fn add(browser: &Browser, title: &str) {
    let response = browser.submit("/todos", &[("title", title)]).await;
    assert_eq!(response.status, 303, "adding {title:?}: {}", response.body);
    let to_the_new_todo = response.location().is_some_and(|to| to.starts_with("/#todo-"));
    assert!(to_the_new_todo, "redirect after POST, to the new todo: {:?}", response.location());
}

#[tokio::test]
async fn the_signed_out_page_invites_to_sign_in() {
    let app = spawn_app().await;
    let page = app.browser().get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("href=\"/login\""), "{}", page.body);
    assert!(!page.body.contains("csrf_token"), "no forms for strangers");
}

/// HEAD is GET without a body: a signed-out HEAD of a page that needs a user is sent to sign in as a GET is, not
/// told that something "was not saved".
#[tokio::test]
async fn a_signed_out_head_of_a_sign_in_only_page_is_sent_to_sign_in_like_a_get() {
    let app = spawn_app().await;
    let browser = app.browser();
    let get = browser.get("/organizations/org_1").await;
    let head = browser.request(reqwest::Method::HEAD, "/organizations/org_1", |r| r).await;
    assert_eq!(get.status, 303, "{}", get.body);
    assert_eq!(head.status, 303, "{:?}", head.location());
    assert!(head.location().is_some_and(|at| at.starts_with("/login?return_to=")), "{:?}", head.location());
    assert_eq!(head.location(), get.location());
}

#[tokio::test]
async fn a_user_manages_todos_through_the_pages() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;

    let empty = alice.get("/").await;
    assert!(empty.body.contains("Alice Anderson") && empty.body.contains(ALICE));
    assert!(empty.body.contains("Nothing to do yet"));
    assert!(empty.body.contains("Sign out"));
    // The add field's name is the words it shows, so voice control ("click What needs doing") finds it.
    assert!(empty.body.contains(r#"<label for="new-title" class="visually-hidden">What needs doing?</label>"#));
    assert!(empty.body.contains(r#"placeholder="What needs doing?""#));

    add(&alice, "Buy milk").await;
    add(&alice, "Water the plants").await;
    let page = alice.get("/").await;
    let milk = page.body.find("Buy milk").expect("first todo shown");
    let plants = page.body.find("Water the plants").expect("second todo shown");
    assert!(plants < milk, "newest first");

    let id = todo_id(&alice, "Buy milk").await;
    let done = alice.submit(&format!("/todos/{id}/toggle"), &[("is_complete", "true")]).await;
    assert_eq!((done.status, done.location()), (303, Some(format!("/#todo-{id}"))), "back to the todo");
    let page = alice.get("/").await;
    assert!(page.body.contains(&format!("class=\"todo done\" id=\"todo-{id}\"")), "marked done: {}", page.body);

    let undone = alice.submit(&format!("/todos/{id}/toggle"), &[("is_complete", "false")]).await;
    assert_eq!(undone.status, 303);
    assert!(alice.get("/").await.body.contains(&format!("class=\"todo\" id=\"todo-{id}\"")));

    let renamed = alice.submit(&format!("/todos/{id}/rename"), &[("title", "Buy oat milk")]).await;
    assert_eq!((renamed.status, renamed.location()), (303, Some(format!("/#todo-{id}"))));
    let page = alice.get("/").await;
    assert!(page.body.contains("Buy oat milk") && !page.body.contains(">Buy milk<"));
    // Each row's Rename names its todo for a screen reader, not just "Rename" on every row.
    assert!(page.body.contains(r#"<summary>Rename<span class="visually-hidden"> “Buy oat milk”</span></summary>"#));
    // A delete, which cannot be undone, is asked once more: its form opens from a closed <details> of its own.
    let form = page.body.find(&format!(r#"action="/todos/{id}/delete""#)).expect("the delete form");
    let asks = page.body[..form].rfind(r#"<details class="deleting">"#).expect("the delete's own disclosure");
    let closed = page.body[asks..].find("</details>").map(|end| asks + end).expect("closed");
    assert!(form < closed, "the form inside it: {}", page.body);
    assert!(page.body[asks..form].contains("<summary"), "opened by its summary");

    let deleted = alice.submit(&format!("/todos/{id}/delete"), &[]).await;
    assert_eq!(deleted.status, 303);
    let page = alice.get("/").await;
    assert!(!page.body.contains("Buy oat milk") && page.body.contains("Water the plants"));
    assert_eq!(app.all_todos().await, vec![(app.user_id(ALICE), "Water the plants".to_owned())]);
}

#[tokio::test]
async fn another_users_todo_is_not_found_through_the_pages() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let bob = app.signed_in(BOB).await;
    add(&alice, "Alice only").await;
    let id = todo_id(&alice, "Alice only").await;

    assert!(!bob.get("/").await.body.contains("Alice only"), "Bob's list does not show it");
    for (action, fields) in
        [("toggle", vec![("is_complete", "true")]), ("rename", vec![("title", "Bob was here")]), ("delete", vec![])]
    {
        let response = bob.submit(&format!("/todos/{id}/{action}"), &fields).await;
        assert_eq!(response.status, 404, "Bob's {action}: {}", response.body);
    }
    assert_eq!(app.all_todos().await, vec![(app.user_id(ALICE), "Alice only".to_owned())], "untouched");
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_change_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let bob = app.signed_in(BOB).await;
    let bobs_token = bob.csrf_token().await;

    for token in [None, Some(""), Some("forged"), Some(bobs_token.as_str())] {
        let mut fields = vec![("title", "forged todo")];
        if let Some(token) = token {
            fields.push(("csrf_token", token));
        }
        let response = alice.post_form("/todos", &fields).await;
        assert_eq!(response.status, 403, "token {token:?}: {}", response.body);
        // From the app's own page (the browser says so): the list again, with what was typed, and why.
        assert!(response.body.contains("this page was out of date"), "token {token:?}: {}", response.body);
        assert!(response.body.contains(r#"value="forged todo""#), "token {token:?}");
        assert!(!response.body.contains("reload"), "not \"reload\" (which sends the form again)");
    }

    // A valid token does not help a request another site sends.
    let token = alice.csrf_token().await;
    let cross_site = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(app.base_url.join("/todos").expect("url"))
        .header("cookie", alice.cookie_header())
        .header("origin", "https://evil.example")
        .form(&[("title", "forged"), ("csrf_token", token.as_str())])
        .send()
        .await
        .expect("request");
    assert_eq!(cross_site.status(), 403);
    assert!(app.all_todos().await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn invalid_titles_are_explained_on_the_page_with_the_text_kept() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;

    let blank = alice.submit("/todos", &[("title", "   ")]).await;
    assert_eq!(blank.status, 422);
    assert!(blank.body.contains(&askama_escape("Title can't be blank or invisible.")), "{}", blank.body);

    let long = "y".repeat(501);
    let too_long = alice.submit("/todos", &[("title", &long)]).await;
    assert_eq!(too_long.status, 422);
    assert!(too_long.body.contains("too long"), "{}", too_long.body);
    assert!(too_long.body.contains(&format!("value=\"{long}\"")), "the typed text is kept in the form");
    let field = r#"aria-invalid="true" aria-describedby="form-error" autofocus"#;
    assert!(too_long.body.contains(field) && too_long.body.contains(r#"id="form-error""#), "{}", too_long.body);
    assert!(too_long.body.contains("<title>Error: Your todos"), "{}", too_long.body);

    let token = alice.csrf_token().await;
    let asked = app.insforge.records_requests();
    // `title=a%00b`: a real NUL in the form.
    let nul = alice.post_form("/todos", &[("csrf_token", token.as_str()), ("title", "a\u{0}b")]).await;
    assert_eq!(nul.status, 422, "{}", nul.body);
    assert!(nul.body.contains("control characters"), "{}", nul.body);
    // Shown again where it was typed, each refused character as U+FFFD (as a browser shows a NUL), not as raw
    // bytes that make the page invalid HTML.
    assert!(nul.body.contains("value=\"a\u{FFFD}b\""), "{}", nul.body);
    assert!(!nul.body.contains('\u{0}'), "no NUL in the page");
    assert_eq!(app.insforge.records_requests(), asked + 1, "only the page's own list was read: no write");

    let huge = "z".repeat(70 * 1024);
    let too_large = alice.submit("/todos", &[("title", &huge)]).await;
    assert_eq!(too_large.status, 413, "a form body over 64 KiB");
    assert!(too_large.body.contains("That request didn&#39;t work"), "a client error's heading: {}", too_large.body);

    // The browser's own limit counts UTF-16 units: it must let through the longest valid title in any script.
    let page = alice.get("/").await;
    let limits: Vec<usize> = page
        .body
        .split(r#"maxlength=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().and_then(|n| n.parse().ok()).expect("a number"))
        .collect();
    let longest_valid = "😀".repeat(authbridge::todo::MAX_TITLE_CHARS).encode_utf16().count();
    assert!(!limits.is_empty() && limits.iter().all(|limit| *limit >= longest_valid), "{limits:?}");

    add(&alice, "Keep me").await;
    add(&alice, "Shown first").await;
    let id = todo_id(&alice, "Keep me").await;
    let other = todo_id(&alice, "Shown first").await;
    let rename = alice.submit(&format!("/todos/{id}/rename"), &[("title", &long)]).await;
    assert_eq!(rename.status, 422);
    // The error and the typed text go with the todo being renamed, not with the first one on the page.
    let item = |todo: &str| {
        let start = rename.body.find(&format!(r#"id="todo-{todo}""#)).expect("the todo is listed");
        let end = rename.body[start..].find("</li>").expect("its end") + start;
        rename.body[start..end].to_owned()
    };
    let renamed = item(&id);
    assert!(renamed.contains(&format!("value=\"{long}\"")), "the rename text is kept: {renamed}");
    assert!(renamed.contains("too long") && renamed.contains(" open>"), "explained there, opened: {renamed}");
    let untouched = item(&other);
    assert!(untouched.contains(r#"value="Shown first""#) && !untouched.contains("too long"), "{untouched}");
    // Tied to its field for assistive technology (WCAG 3.3.1), which the focus is put in.
    let described = format!(r#"aria-invalid="true" aria-describedby="rename-error-{id}" autofocus"#);
    assert!(renamed.contains(&described) && renamed.contains(&format!(r#"id="rename-error-{id}""#)), "{renamed}");
    assert!(!untouched.contains("aria-invalid"), "{untouched}");
    assert!(rename.body.contains("<title>Error: Your todos"), "the page's title says so");
    let titles: Vec<(String, String)> =
        ["Keep me", "Shown first"].map(|title| (app.user_id(ALICE), title.to_owned())).into();
    assert_eq!(app.all_todos().await, titles, "nothing else written");
}

/// A form whose bytes are not UTF-8 (only a hand-made client sends one) is refused, not stored with U+FFFD in
/// place of what was sent, as the JSON API refuses such a body.
#[tokio::test]
async fn a_form_that_is_not_utf8_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let token = alice.csrf_token().await;
    let body = format!("csrf_token={token}&title=%FF%FE");
    let sent = alice
        .request(reqwest::Method::POST, "/todos", |r| {
            r.header("content-type", "application/x-www-form-urlencoded").body(body)
        })
        .await;
    assert_eq!(sent.status, 400, "{}", sent.body);
    assert!(sent.body.contains("not valid UTF-8"), "{}", sent.body);
    assert!(app.all_todos().await.is_empty(), "nothing stored");
    add(&alice, "caf\u{e9} \u{1f600}").await;
    assert_eq!(app.all_todos().await.len(), 1, "UTF-8 in a form is fine");
}

#[tokio::test]
async fn titles_are_shown_as_text_never_as_html() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    add(&alice, "<script>alert(1)</script>").await;
    add(&alice, "\"><img src=x onerror=alert(2)>").await;
    let page = alice.get("/").await;
    assert!(page.body.contains(&askama_escape("<script>alert(1)</script>")), "{}", page.body);
    assert!(!page.body.contains("<script>alert(1)</script>"));
    assert!(!page.body.contains("<img src=x"));
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("default-src 'none'") && !policy.contains("unsafe-inline"), "{policy}");
}

#[tokio::test]
async fn an_insforge_outage_is_shown_on_the_page_with_the_text_kept() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 400)).await;
    let alice = app.signed_in(ALICE).await;
    let token = alice.csrf_token().await;

    app.insforge.fail_next(1, 500);
    let failed = alice.post_form("/todos", &[("csrf_token", token.as_str()), ("title", "Remember this")]).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(failed.body.contains("try again"));
    assert!(failed.body.contains("value=\"Remember this\""), "the typed text survives the outage");

    app.insforge.set_latency(Duration::from_millis(1_000));
    let slow = alice.get("/").await;
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert!(slow.body.contains("did not answer in time"));
    app.insforge.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(app.all_todos().await.is_empty());
}

/// The add form's hidden id, as the page renders it.
fn form_id(html: &str) -> String {
    let marker = r#"name="id" value=""#;
    let start = html.find(marker).unwrap_or_else(|| panic!("the add form carries an id: {html}")) + marker.len();
    html[start..start + 36].to_owned()
}

/// An add form from a page shown before the user signed in again (in another tab) is out of date: nothing is added,
/// and the page comes back with what was typed and the form's own id, saying why; added again from there, it is
/// added once. The same form posted without a browser's word that it came from this app's page (no `Origin`, no
/// `Sec-Fetch-Site`) is refused as any forged form is, with nothing filled in.
#[tokio::test]
async fn an_add_form_from_a_page_out_of_date_keeps_what_was_typed() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let old_page = alice.get("/").await.body;
    let fields = hidden_fields(&old_page, "/todos");
    assert_eq!(alice.sign_in(ALICE).await.status, 302, "signed in again: a new session");
    let mut typed = fields.clone();
    typed.push(("title", "Call the plumber"));

    let stale = alice.post_form("/todos", &typed).await;
    assert_eq!(stale.status, 403, "{}", stale.body);
    assert!(stale.body.contains("this page was out of date"), "{}", stale.body);
    assert!(stale.body.contains(r#"value="Call the plumber""#), "what was typed is kept: {}", stale.body);
    assert_eq!(form_id(&stale.body), form_id(&old_page), "with the form's own id");
    assert!(app.all_todos().await.is_empty(), "nothing added");

    let mut retyped = hidden_fields(&stale.body, "/todos");
    retyped.push(("title", "Call the plumber"));
    let again = alice.post_form("/todos", &retyped).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(app.all_todos().await, [(app.user_id(ALICE), "Call the plumber".to_owned())]);

    // Not from the app's own page, as far as the browser says: refused, nothing shown back.
    let raw = reqwest::Client::new()
        .post(app.base_url.join("/todos").expect("url"))
        .header("cookie", alice.cookie_header())
        .form(&typed)
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), 403);
    let body = raw.text().await.expect("body");
    assert!(!body.contains("Call the plumber") && body.contains("CSRF check failed"), "{body}");
}

/// The add form carries the new todo's id: sent twice (a double click, or again after a timeout that came after
/// InsForge saved it), it adds one todo.
#[tokio::test]
async fn the_add_form_carries_an_id_so_sending_it_twice_adds_one_todo() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 400)).await;
    let alice = app.signed_in(ALICE).await;
    let page = alice.get("/").await;
    let id = form_id(&page.body);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_ne!(form_id(&alice.get("/").await.body), id, "each page gets its own");
    let token = alice.csrf_token().await;
    let fields =
        [("csrf_token", token.as_str()), ("organization_id", "personal"), ("id", id.as_str()), ("title", "Pay rent")];

    app.insforge.set_response_latency(Duration::from_millis(1_000));
    let lost = alice.post_form("/todos", &fields).await;
    assert_eq!(lost.status, 504, "{}", lost.body);
    assert!(lost.body.contains("may have been saved"), "{}", lost.body);
    assert_eq!(form_id(&lost.body), id, "shown again with the same id");
    app.insforge.set_response_latency(Duration::ZERO);

    for _ in 0..2 {
        let sent = alice.post_form("/todos", &fields).await;
        let to_the_todo = format!("/#todo-{id}");
        assert_eq!((sent.status, sent.location()), (303, Some(to_the_todo)), "{}", sent.body);
    }
    assert_eq!(app.all_todos().await, [(app.user_id(ALICE), "Pay rent".to_owned())], "one todo");

    // The same form, edited: its id is taken, so the page says so and offers a fresh one.
    let edited = [fields[0], fields[1], fields[2], ("title", "Pay the rent")];
    let taken = alice.post_form("/todos", &edited).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("already added a todo"), "{}", taken.body);
    assert_ne!(form_id(&taken.body), id);
    let malformed = alice.post_form("/todos", &[fields[0], fields[1], ("id", "nope"), ("title", "x")]).await;
    assert_eq!(malformed.status, 422, "{}", malformed.body);
    assert_eq!(app.all_todos().await.len(), 1);
}

#[tokio::test]
async fn an_impersonated_session_says_so() {
    let app = spawn_app().await;
    app.workos.impersonate_next_login("admin@acme.test", Some("Support ticket 42"));
    let alice = app.signed_in(ALICE).await;
    let page = alice.get("/").await;
    let banner = "You are impersonating <strong><bdi>Alice Anderson</bdi></strong> (by <strong><bdi>admin@acme.test</bdi></strong>: <bdi>Support ticket 42</bdi>)";
    assert!(page.body.contains(banner), "{}", page.body);
    let me = alice.api(reqwest::Method::GET, "/api/me", None).await.json();
    assert_eq!(me["impersonator"]["email"], "admin@acme.test");
    assert_eq!(me["impersonator"]["reason"], "Support ticket 42");
}

#[tokio::test]
async fn pages_carry_security_headers_and_the_stylesheet_is_served() {
    let app = spawn_app().await;
    let browser = app.browser();
    let page = browser.get("/").await;
    assert_eq!(page.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(page.header("referrer-policy").is_some());
    assert_eq!(page.header("cross-origin-opener-policy").as_deref(), Some("same-origin"));
    assert_eq!(page.header("cross-origin-resource-policy").as_deref(), Some("same-origin"));
    let policy = page.header("content-security-policy").expect("CSP");
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("default-src 'none'"), "{policy}");
    // Forms post to the app and to WorkOS only (sign-out is redirected there, and browsers check redirects too).
    let workos = app.workos.base_url().origin().ascii_serialization();
    assert!(policy.contains(&format!("form-action 'self' {workos} ")), "{policy}");
    assert!(page.header("strict-transport-security").is_none(), "no HSTS over plain http");
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));

    let css = browser.get("/assets/style.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").is_some_and(|t| t.starts_with("text/css")));
    assert_eq!(css.header("cache-control").as_deref(), Some("public, max-age=3600"), "the stylesheet is not per user");
    assert!(css.body.contains("@media"), "readable on a phone");

    let missing = browser.get("/nope").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Not found"));
}

#[tokio::test]
async fn hsts_is_sent_when_the_app_is_served_over_https() {
    let options = AppOptions::default()
        .var("APP_URL", "https://todos.example.com")
        .var("WORKOS_REDIRECT_URI", "https://todos.example.com/callback");
    let app: TestApp = spawn_app_with(options).await;
    let page = app.browser().get("/").await;
    assert!(page.header("strict-transport-security").is_some_and(|v| v.contains("max-age=")));
}

#[tokio::test]
async fn an_unreachable_insforge_gives_a_502_page() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_URL", crate::helpers::closed_port_url())).await;
    let alice = app.signed_in(ALICE).await;
    let page = alice.get("/").await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("try again"), "{}", page.body);
    assert!(page.body.contains("Sign out"), "the page still works around the failure");
}

/// The start page shows fifty todos, newest first, with links to the older and newer ones; a page past the end says
/// so, and an offset that is not a number shows the first page.
#[tokio::test]
async fn the_start_page_shows_fifty_todos_at_a_time_with_links_between_pages() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let add_todos = |numbers: std::ops::RangeInclusive<u32>| {
        let alice = &alice;
        async move {
            for n in numbers {
                let body = serde_json::json!({ "title": format!("Todo {n:02}") });
                assert_eq!(alice.api(reqwest::Method::POST, "/api/todos", Some(body)).await.status, 201);
            }
        }
    };
    let titles = |body: &str| -> Vec<String> {
        body.split("data-title=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').expect("closing quote")].to_owned())
            .collect()
    };

    add_todos(1..=50).await;
    let exactly_one_page = alice.get("/").await;
    assert_eq!(titles(&exactly_one_page.body).len(), 50);
    assert!(!exactly_one_page.body.contains("Older"), "fifty todos are one page: {}", exactly_one_page.body);

    add_todos(51..=53).await;
    let newest: Vec<String> = (4..=53).rev().map(|n| format!("Todo {n:02}")).collect();
    let oldest: Vec<String> = (1..=3).rev().map(|n| format!("Todo {n:02}")).collect();

    let first = alice.get("/").await;
    assert_eq!(titles(&first.body), newest, "the newest fifty");
    assert!(first.body.contains(r#"href="/?offset=50">Older →"#), "{}", first.body);
    assert!(!first.body.contains("Newer"), "nothing newer than the first page");

    let second = alice.get("/?offset=50").await;
    assert_eq!(titles(&second.body), oldest, "the rest");
    assert!(second.body.contains(r#"href="/?offset=0">← Newer"#), "{}", second.body);
    assert!(!second.body.contains("Older"), "nothing older than the last");

    let past = alice.get("/?offset=100").await;
    assert_eq!(past.status, 200);
    assert!(titles(&past.body).is_empty() && past.body.contains("No older todos."), "{}", past.body);
    assert!(past.body.contains(r#"href="/?offset=50">← Newer"#), "{}", past.body);

    let junk = alice.get("/?offset=lots").await;
    assert_eq!((junk.status, titles(&junk.body)), (200, newest), "a malformed offset shows the first page");

    // A todo's forms on the second page bring the user back to it, as a browser sends them (their hidden fields).
    let id = {
        let at = second.body.find(r#"data-title="Todo 02""#).expect("on the second page");
        let start = second.body[..at].rfind("id=\"todo-").expect("its id") + "id=\"todo-".len();
        second.body[start..start + 36].to_owned()
    };
    let toggle = format!("/todos/{id}/toggle");
    let done = alice.post_form(&toggle, &hidden_fields(&second.body, &toggle)).await;
    let back_to_it = format!("/?offset=50#todo-{id}");
    assert_eq!((done.status, done.location()), (303, Some(back_to_it)), "back to the todo: {}", done.body);
    let rename = format!("/todos/{id}/rename");
    let mut blank = hidden_fields(&second.body, &rename);
    blank.push(("title", "   "));
    let refused = alice.post_form(&rename, &blank).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(titles(&refused.body), oldest, "the page it was on, with the error next to the todo");
    let delete = format!("/todos/{id}/delete");
    let deleted = alice.post_form(&delete, &hidden_fields(&second.body, &delete)).await;
    assert_eq!((deleted.status, deleted.location().as_deref()), (303, Some("/?offset=50")), "{}", deleted.body);
    assert_eq!(titles(&alice.get("/?offset=50").await.body), ["Todo 03", "Todo 01"]);
}

/// The hidden fields of the form posting to `action` on `page`, as a browser sends them.
fn hidden_fields<'a>(page: &'a str, action: &str) -> Vec<(&'a str, &'a str)> {
    let start = page.find(&format!(r#"action="{action}""#)).unwrap_or_else(|| panic!("no form for {action}"));
    let form = &page[start..start + page[start..].find("</form>").expect("the form's end")];
    form.split(r#"<input type="hidden" name=""#)
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').expect("name");
            let value = rest.split_once(r#"value=""#).and_then(|(_, v)| v.split_once('"')).expect("value").0;
            (name, value)
        })
        .collect()
}

/// A form's address opened as a page (Enter in the address bar, or Back, after a form that failed and left the
/// browser there) leads to the list, and does nothing.
#[tokio::test]
async fn a_form_s_address_opened_as_a_page_leads_to_the_list_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    add(&alice, "Stays as it is").await;
    let id = todo_id(&alice, "Stays as it is").await;
    for path in [
        "/todos".to_owned(),
        format!("/todos/{id}/toggle"),
        format!("/todos/{id}/rename"),
        format!("/todos/{id}/delete"),
        "/organizations/switch".to_owned(),
    ] {
        let opened = alice.get(&path).await;
        assert_eq!((opened.status, opened.location().as_deref()), (303, Some("/")), "{path}: {}", opened.body);
    }
    let page = alice.get("/").await;
    assert!(page.body.contains("Stays as it is") && !page.body.contains("class=\"todo done\""), "{}", page.body);
    assert_eq!(app.all_todos().await.len(), 1);
    // One page of todos: no empty "Pages" navigation for a screen reader to list.
    assert!(!page.body.contains(r#"aria-label="Pages""#), "{}", page.body);
    // A button's accessible name starts with its visible label (WCAG 2.5.3).
    assert!(page.body.contains(r#"aria-label="Done: mark “Stays as it is” done">Done<"#), "{}", page.body);
    assert!(page.body.contains(r#"<label for="new-title""#), "the add field is labelled: {}", page.body);
}

/// The pages' forms are URL-encoded, as browsers post a form without an `enctype`: a body of another type (a
/// multipart upload, `text/plain`, none at all, or a charset other than UTF-8) is refused as such, 415, rather than
/// read as something it is not (a multipart body's token unread, and the user told their page was out of date).
#[tokio::test]
async fn a_form_body_of_another_type_is_refused_as_such() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let token = alice.csrf_token().await;
    let body = serde_urlencoded::to_string([("csrf_token", token.as_str()), ("title", "Typed")]).expect("encodes");
    for content_type in [
        Some("multipart/form-data; boundary=x"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded; charset=windows-1252"),
        None,
    ] {
        let body = body.clone();
        let refused = alice
            .request(reqwest::Method::POST, "/todos", |request| match content_type {
                Some(content_type) => request.header("content-type", content_type).body(body),
                None => request.body(body),
            })
            .await;
        assert_eq!(refused.status, 415, "{content_type:?}: {}", refused.body);
        assert!(refused.body.contains("application/x-www-form-urlencoded"), "{}", refused.body);
    }
    assert!(!alice.get("/").await.body.contains("Typed"), "nothing was added");
    let utf8 = alice
        .request(reqwest::Method::POST, "/todos", |request| {
            request.header("content-type", "application/x-www-form-urlencoded; charset=UTF-8").body(body)
        })
        .await;
    assert_eq!(utf8.status, 303, "{}", utf8.body);
}

/// A title with line breaks (the API takes them) is renamed in a `<textarea>`: a one-line box drops the breaks from
/// its value, so saving a fixed typo would join the lines without the user seeing it. The textarea posts each break
/// as CRLF (HTML's form encoding); the title keeps the breaks it had.
#[tokio::test]
async fn a_title_with_line_breaks_keeps_them_through_a_rename_on_the_page() {
    let app = spawn_app().await;
    let alice = app.signed_in(ALICE).await;
    let created = alice
        .api(reqwest::Method::POST, "/api/todos", Some(serde_json::json!({ "title": "first line\nsecnd line" })))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("an id").to_owned();
    let page = alice.get("/").await;
    assert!(page.body.contains(">first line\nsecnd line</textarea>"), "{}", page.body);
    let renamed = alice.submit(&format!("/todos/{id}/rename"), &[("title", "first line\r\nsecond line")]).await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    let stored = alice.get(&format!("/api/todos/{id}")).await;
    assert_eq!(stored.json()["title"], "first line\nsecond line");
    // A one-line title keeps its one-line box.
    add(&alice, "One line").await;
    assert!(alice.get("/").await.body.contains("value=\"One line\""));
}
