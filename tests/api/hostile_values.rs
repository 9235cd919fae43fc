//! Hostile values: characters that break naive URL building, PostgREST filter syntax, JSON or SQL must travel
//! through every layer exactly, and malformed ones must be refused cleanly (400, never 500, never executed).

use authbridge::todo::{Page, Title, TitleError, TodoPatch};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestInsforge, user_a};

fn hostile_titles() -> Vec<String> {
    vec![
        "comma, and more".to_owned(),
        "close) paren".to_owned(),
        "open ( paren".to_owned(),
        "a & b = c".to_owned(),
        "100% sure %27 %00 %%".to_owned(),
        r#"double "quoted" word"#.to_owned(),
        "it's o'clock".to_owned(),
        r"back\slash \\ \n \u0000".to_owned(),
        "inner   spaces\tand\ttabs".to_owned(),
        "emoji 🦀🔥 and ünïcödé 中文".to_owned(),
        "eq.not.in.(a,b)".to_owned(),
        "'); DROP TABLE todos; --".to_owned(),
        "?select=*&id=eq.1#frag".to_owned(),
        "line one\nline two".to_owned(),
        "x".repeat(500),
        "🦀".repeat(500),
    ]
}

#[tokio::test]
async fn hostile_titles_round_trip_exactly() {
    let app = TestInsforge::start().await;
    let user = user_a();
    let mut created = Vec::new();
    for raw in hostile_titles() {
        let title = Title::parse(&raw).expect("a valid, if hostile, title");
        assert_eq!(title.as_str(), raw, "nothing to trim in these");
        let todo = app
            .client
            .create_todo(&user, &title, &authbridge::todo::Space::Personal)
            .await
            .unwrap_or_else(|e| panic!("create {raw:?}: {e}"));
        assert_eq!(todo.title, raw);
        let fetched = app.client.get_todo(&user, todo.id).await.expect("get");
        assert_eq!(fetched.title, raw);
        created.push(todo);
    }

    let listed = app
        .client
        .list_todos(&user, &authbridge::todo::Space::Personal, Page::new(Some(100), None))
        .await
        .expect("list");
    let mut listed_titles: Vec<String> = listed.into_iter().map(|t| t.title).collect();
    let mut expected = hostile_titles();
    listed_titles.sort();
    expected.sort();
    assert_eq!(listed_titles, expected);

    // And back again through an update.
    let first = &created[0];
    for raw in hostile_titles() {
        let patch = TodoPatch { title: Some(Title::parse(&raw).expect("valid")), is_complete: None };
        let updated = app.client.update_todo(&user, first.id, &patch).await.expect("update");
        assert_eq!(updated.todo.title, raw);
    }
}

#[tokio::test]
async fn hostile_values_in_filters_match_exactly_and_only_as_values() {
    let app = TestInsforge::start().await;
    let user = user_a();
    for raw in hostile_titles() {
        app.client
            .create_todo(&user, &Title::parse(&raw).expect("valid"), &authbridge::todo::Space::Personal)
            .await
            .expect("create");
    }
    let token = app.token_for(&user);
    for raw in hostile_titles() {
        let filter = format!("eq.{raw}");
        let response =
            app.raw(Method::GET, "todos", &[("select", "title"), ("title", &filter)], Some(&token), None).await;
        assert_eq!(response.status, 200, "{raw:?}: {response:?}");
        assert_eq!(response.body, json!([{ "title": raw }]), "{raw:?}");
    }
    // PostgREST's quoted `in` list: commas and parentheses inside quotes belong to the values.
    let response = app
        .raw(
            Method::GET,
            "todos",
            &[
                ("select", "title"),
                ("title", r#"in.("comma, and more","close) paren","open ( paren")"#),
                ("order", "title.asc"),
            ],
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.body,
        json!([{ "title": "close) paren" }, { "title": "comma, and more" }, { "title": "open ( paren" }])
    );
}

#[tokio::test]
async fn hostile_ids_get_a_clean_400_and_touch_nothing() {
    let app = TestInsforge::start().await;
    let todo = app
        .client
        .create_todo(&user_a(), &Title::parse("survivor").expect("valid"), &authbridge::todo::Space::Personal)
        .await
        .expect("create");
    let token = app.token_for(&user_a());
    let hostile_ids = [
        "'; DROP TABLE todos; --",
        "1) OR (1=1",
        "a,b,c",
        r#""quoted""#,
        r"back\slash",
        "%27%20OR%201=1",
        "(select 1)",
        "🦀",
        " ",
        "",
        "00000000-0000-0000-0000-00000000000g",
    ];
    for id in hostile_ids {
        let filter = format!("eq.{id}");
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let body = (method == Method::PATCH).then(|| json!({ "title": "hijacked" }));
            let response = app.raw(method.clone(), "todos", &[("id", &filter)], Some(&token), body).await;
            assert_eq!(response.status, 400, "{method} id={id:?}: {response:?}");
            assert_eq!(response.body["code"], "22P02", "{method} id={id:?}: {response:?}");
            assert!(response.body["message"].is_string());
        }
    }
    // Hostile column names and orderings are refused before any SQL exists.
    for (key, value) in
        [("id;drop", "eq.1"), ("\"id\"", "eq.1"), ("order", "id;DROP TABLE todos"), ("select", "*,pg_sleep(10)")]
    {
        let response = app.raw(Method::GET, "todos", &[(key, value)], Some(&token), None).await;
        assert_eq!(response.status, 400, "{key}={value}: {response:?}");
    }

    let rows = app.all_rows().await;
    assert_eq!(rows.len(), 1, "the table and its one row survived");
    assert_eq!(rows[0]["id"], todo.id.to_string());
    assert_eq!(rows[0]["title"], "survivor");
}

#[tokio::test]
async fn blank_and_501_character_titles_are_refused_and_nothing_is_written() {
    let app = TestInsforge::start().await;

    // At the edge: the type refuses them with a sentence for the user.
    assert_eq!(Title::parse("   \t "), Err(TitleError::Blank));
    let too_long = "x".repeat(501);
    assert_eq!(Title::parse(&too_long), Err(TitleError::TooLong { chars: 501 }));
    assert_eq!(
        Title::parse(&"🦀".repeat(501)).expect_err("501 emoji").to_string(),
        "Title is too long (501 characters, 500 at most)."
    );

    // Underneath: the database refuses them too, for anyone who bypasses the type.
    let token = app.token_for(&user_a());
    for bad in ["   ".to_owned(), String::new(), too_long.clone(), "🦀".repeat(501)] {
        let response = app.raw(Method::POST, "todos", &[], Some(&token), Some(json!({ "title": bad }))).await;
        assert_eq!(response.status, 400, "{response:?}");
        assert_eq!(response.body["code"], "23514", "the title check refused it: {response:?}");
    }
    assert!(app.all_rows().await.is_empty(), "nothing was written");

    // An update to a bad title leaves the row as it was.
    let todo = app
        .client
        .create_todo(&user_a(), &Title::parse("fine").expect("valid"), &authbridge::todo::Space::Personal)
        .await
        .expect("create");
    let filter = format!("eq.{}", todo.id);
    let response =
        app.raw(Method::PATCH, "todos", &[("id", &filter)], Some(&token), Some(json!({ "title": too_long }))).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(app.client.get_todo(&user_a(), todo.id).await.expect("get").title, "fine");
}
