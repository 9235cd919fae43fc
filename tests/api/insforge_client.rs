//! The InsForge client: typed todo operations against the stand-in, and one typed error for every way a call
//! can end — including servers that answer oddly, refuse connections, or never answer.

use authbridge::insforge::client::{InsforgeClient, InsforgeError};
use authbridge::insforge::minter::TokenMinter;
use authbridge::todo::{MAX_PAGE_LIMIT, Page, Title, TodoPatch};
use reqwest::Method;
use serde_json::json;
use url::Url;

use crate::helpers::{CannedServer, TestInsforge, closed_port_url, insforge_config, user_a};

fn title(text: &str) -> Title {
    Title::parse(text).expect("a valid title")
}

/// What a canned answer must become.
type Expectation = fn(&InsforgeError) -> bool;

fn client_for(url: Url) -> InsforgeClient {
    let config =
        insforge_config(&url, &[("INSFORGE_CONNECT_TIMEOUT_MS", "1000"), ("INSFORGE_REQUEST_TIMEOUT_MS", "2000")]);
    InsforgeClient::new(&config).expect("client")
}

#[tokio::test]
async fn todos_are_created_read_listed_newest_first_updated_and_deleted() {
    let app = TestInsforge::start().await;
    let user = user_a();
    let first =
        app.client.create_todo(&user, &title("first"), &authbridge::todo::Space::Personal).await.expect("create");
    let second =
        app.client.create_todo(&user, &title("second"), &authbridge::todo::Space::Personal).await.expect("create");
    let third =
        app.client.create_todo(&user, &title("third"), &authbridge::todo::Space::Personal).await.expect("create");
    assert!(!first.is_complete);
    assert_eq!(first.created_at, first.updated_at);

    assert_eq!(app.client.get_todo(&user, second.id).await.expect("get"), second);

    let all = app.client.list_todos(&user, &authbridge::todo::Space::Personal, Page::default()).await.expect("list");
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [third.id, second.id, first.id]);
    let page = app
        .client
        .list_todos(&user, &authbridge::todo::Space::Personal, Page::new(Some(1), Some(1)))
        .await
        .expect("page");
    assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [second.id]);

    let done = app
        .client
        .update_todo(&user, second.id, &TodoPatch { title: None, is_complete: Some(true) })
        .await
        .expect("complete");
    assert!(done.todo.is_complete);
    assert_eq!(done.todo.title, "second", "untouched fields stay");
    assert!(done.todo.updated_at > second.updated_at, "updated_at moved");
    assert_eq!(done.changed, TodoPatch { title: None, is_complete: Some(true) });
    let renamed = app
        .client
        .update_todo(&user, second.id, &TodoPatch { title: Some(title("second, renamed")), is_complete: None })
        .await
        .expect("rename");
    assert_eq!((renamed.todo.title.as_str(), renamed.todo.is_complete), ("second, renamed", true));

    // What already is changes nothing: not the row (its updated_at stays), and the answer says nothing changed. With
    // both fields, only the one that differs is sent.
    for (patch, changed) in [
        (TodoPatch { title: None, is_complete: Some(true) }, TodoPatch::default()),
        (TodoPatch { title: Some(title("second, renamed")), is_complete: None }, TodoPatch::default()),
        (TodoPatch { title: Some(title("second, renamed")), is_complete: Some(true) }, TodoPatch::default()),
        (
            TodoPatch { title: Some(title("second, renamed")), is_complete: Some(false) },
            TodoPatch { title: None, is_complete: Some(false) },
        ),
    ] {
        let before = app.client.get_todo(&user, second.id).await.expect("read");
        let again = app.client.update_todo(&user, second.id, &patch).await.expect("update");
        assert_eq!(again.changed, changed, "{patch:?}");
        if changed.is_empty() {
            assert_eq!(again.todo.updated_at, before.updated_at, "{patch:?}: untouched");
        } else {
            assert!(again.todo.updated_at > before.updated_at && !again.todo.is_complete, "{patch:?}");
        }
    }

    app.client.delete_todo(&user, second.id).await.expect("delete");
    assert!(matches!(app.client.get_todo(&user, second.id).await, Err(InsforgeError::NotFound)));
    assert!(matches!(app.client.delete_todo(&user, second.id).await, Err(InsforgeError::NotFound)));
    let patch = TodoPatch { title: None, is_complete: Some(false) };
    assert!(matches!(app.client.update_todo(&user, second.id, &patch).await, Err(InsforgeError::NotFound)));
}

#[tokio::test]
async fn an_empty_patch_is_invalid_input_and_sends_nothing() {
    let app = TestInsforge::start().await;
    let todo =
        app.client.create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal).await.expect("create");
    let before = app.standin.records_requests();
    let result = app.client.update_todo(&user_a(), todo.id, &TodoPatch::default()).await;
    assert!(matches!(result, Err(InsforgeError::InvalidInput { .. })), "{result:?}");
    assert_eq!(app.standin.records_requests(), before);
}

#[tokio::test]
async fn a_page_never_holds_more_than_the_maximum() {
    let app = TestInsforge::start().await;
    let rows: Vec<_> =
        (0..MAX_PAGE_LIMIT + 5).map(|i| json!({ "title": format!("todo {i}"), "user_id": user_a().id })).collect();
    let admin = app.admin_key();
    let created = app.raw(Method::POST, "todos", &[], Some(&admin), Some(json!(rows))).await;
    assert_eq!(created.status, 201, "{created:?}");

    let page = app
        .client
        .list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::new(Some(10_000), None))
        .await
        .expect("list");
    assert_eq!(page.len(), MAX_PAGE_LIMIT as usize);
    let rest = app
        .client
        .list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::new(Some(100), Some(100)))
        .await
        .expect("list");
    assert_eq!(rest.len(), 5);
}

#[tokio::test]
async fn http_statuses_map_to_typed_errors_in_both_shapes() {
    let insforge_401 = r#"{"error":"AUTH_UNAUTHORIZED","message":"Invalid token","statusCode":401,"nextActions":"x"}"#;
    let postgrest_403 = r#"{"code":"42501","details":null,"hint":null,"message":"permission denied for table todos"}"#;
    // PostgREST 12's answer for an unknown table, which InsForge passes through.
    let postgrest_404 = "{}";
    let postgrest_400 = r#"{"code":"22P02","details":null,"hint":null,"message":"invalid input syntax for type uuid"}"#;
    let insforge_422 = r#"{"error":"INVALID_INPUT","message":"title is required","statusCode":422}"#;
    let postgrest_500 = r#"{"code":"XX000","details":"disk on fire","hint":null,"message":"internal error"}"#;
    let postgrest_409 = r#"{"code":"23505","details":"Key exists","hint":null,"message":"duplicate key value"}"#;
    // A column the table does not have (or a stale schema cache): not the input's fault.
    let postgrest_400_drift = r#"{"code":"PGRST204","details":null,"hint":null,"message":"Could not find the 'titel' column of 'todos' in the schema cache"}"#;

    let cases: Vec<(CannedServer, Expectation)> = vec![
        (
            CannedServer::json(401, insforge_401).await,
            |e| matches!(e, InsforgeError::Unauthorized { message } if message == "AUTH_UNAUTHORIZED: Invalid token"),
        ),
        (CannedServer::json(403, postgrest_403).await, |e| {
            matches!(e, InsforgeError::Forbidden { code: Some(code), message }
                    if code == "42501" && message == "permission denied for table todos")
        }),
        (
            CannedServer::json(404, postgrest_404).await,
            |e| matches!(e, InsforgeError::Upstream { status: 404, message } if message.contains("migrations")),
        ),
        (
            CannedServer::json(400, postgrest_400).await,
            |e| matches!(e, InsforgeError::InvalidInput { message } if message.starts_with("22P02: ")),
        ),
        (
            CannedServer::json(400, postgrest_400_drift).await,
            |e| matches!(e, InsforgeError::Upstream { status: 400, message } if message.starts_with("PGRST204: ")),
        ),
        (
            CannedServer::json(422, insforge_422).await,
            |e| matches!(e, InsforgeError::InvalidInput { message } if message == "INVALID_INPUT: title is required"),
        ),
        (
            CannedServer::json(500, postgrest_500).await,
            |e| matches!(e, InsforgeError::Upstream { status: 500, message } if message == "XX000: internal error"),
        ),
        (CannedServer::json(409, postgrest_409).await, |e| matches!(e, InsforgeError::Upstream { status: 409, .. })),
        (
            CannedServer::text(502, "text/html", "<html><body>Bad Gateway</body></html>").await,
            |e| matches!(e, InsforgeError::Upstream { status: 502, message } if message.contains("Bad Gateway")),
        ),
        (
            CannedServer::text(503, "text/plain", "").await,
            |e| matches!(e, InsforgeError::Upstream { status: 503, message } if message == "(empty body)"),
        ),
        // A success whose body is not what was asked for is the upstream's fault too.
        (
            CannedServer::json(200, r#"{"not":"a list"}"#).await,
            |e| matches!(e, InsforgeError::Upstream { status: 200, message } if message.starts_with("malformed response")),
        ),
        (CannedServer::json(200, "[]").await, |e| matches!(e, InsforgeError::NotFound)),
    ];
    for (server, expected) in cases {
        let client = client_for(server.url.clone());
        let error = client.get_todo(&user_a(), uuid::Uuid::new_v4()).await.expect_err("an error");
        assert!(expected(&error), "{} answered, client said {error:?}", server.url);
    }
}

#[tokio::test]
async fn writes_map_errors_the_same_way_and_are_never_retried() {
    let server = CannedServer::json(503, r#"{"code":"PGRST001","details":null,"hint":null,"message":"db down"}"#).await;
    let client = client_for(server.url.clone());
    let id = uuid::Uuid::new_v4();

    let create = client.create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal).await;
    assert!(matches!(&create, Err(InsforgeError::Upstream { status: 503, .. })), "{create:?}");
    assert_eq!(server.hits(), 1, "a failed create is not repeated");

    let update = client.update_todo(&user_a(), id, &TodoPatch { title: None, is_complete: Some(true) }).await;
    assert!(matches!(update, Err(InsforgeError::Upstream { status: 503, .. })), "{update:?}");
    assert_eq!(server.hits(), 2);

    let delete = client.delete_todo(&user_a(), id).await;
    assert!(matches!(delete, Err(InsforgeError::Upstream { status: 503, .. })), "{delete:?}");
    assert_eq!(server.hits(), 3);

    // A read that got an answer, even a failing one, is not retried either: only a failed connection is.
    let read = client.list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::default()).await;
    assert!(matches!(read, Err(InsforgeError::Upstream { status: 503, .. })), "{read:?}");
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connection_error() {
    let client = client_for(closed_port_url());
    let read = client.list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::default()).await;
    assert!(matches!(read, Err(InsforgeError::Connect)), "{read:?}");
    let write = client.create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal).await;
    assert!(matches!(write, Err(InsforgeError::Connect)), "{write:?}");
    let health = client.health().await;
    assert!(matches!(health, Err(InsforgeError::Connect)), "{health:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let server = CannedServer::hanging().await;
    let config = insforge_config(&server.url, &[("INSFORGE_REQUEST_TIMEOUT_MS", "300")]);
    let client = InsforgeClient::new(&config).expect("client");

    let read = client.get_todo(&user_a(), uuid::Uuid::new_v4()).await;
    assert!(matches!(read, Err(InsforgeError::Timeout)), "{read:?}");
    // A write that timed out may have been applied: it says so.
    let write = client.create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal).await;
    assert!(matches!(write, Err(InsforgeError::WriteUnconfirmed { timed_out: true })), "{write:?}");
    assert_eq!(server.hits(), 2, "a timed-out read is not retried");
    let health = client.health().await;
    assert!(matches!(health, Err(InsforgeError::Timeout)), "{health:?}");
}

#[tokio::test]
async fn an_injected_outage_is_an_upstream_error_and_then_passes() {
    let app = TestInsforge::start().await;
    app.standin.fail_next(1, 500);
    let during = app.client.create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal).await;
    assert!(matches!(&during, Err(InsforgeError::Upstream { status: 500, .. })), "{during:?}");
    let after = app
        .client
        .create_todo(&user_a(), &title("x"), &authbridge::todo::Space::Personal)
        .await
        .expect("the outage is over");
    assert_eq!(app.all_rows().await.len(), 1, "only the second create wrote a row");
    assert_eq!(after.title, "x");
}

/// Readiness is a records call made as a user, not InsForge's `/api/health` (a constant answer that touches neither
/// PostgREST nor the database): a failing database or a token InsForge cannot verify makes it fail, and the user
/// it asks as sees nobody's todos.
#[tokio::test]
async fn readiness_is_a_records_call_that_a_failing_database_or_a_wrong_secret_fails() {
    let app = TestInsforge::start().await;
    app.client.create_todo(&user_a(), &title("private"), &authbridge::todo::Space::Personal).await.expect("a todo");
    app.client.health().await.expect("ready");
    let probe_user = authbridge::identity::UserIdentity::new(authbridge::insforge::client::READINESS_PROBE_USER, None);
    let seen = app.client.list_todos(&probe_user, &authbridge::todo::Space::Personal, Page::default()).await;
    assert_eq!(seen.expect("a list").len(), 0, "the probe's user sees nobody's todos");

    app.standin.fail_next(1, 500);
    let failing = app.client.health().await;
    assert!(matches!(failing, Err(InsforgeError::Upstream { status: 500, .. })), "{failing:?}");
    app.client.health().await.expect("ready again");

    let wrong_secret = app.client_with(&[("INSFORGE_JWT_SECRET", "a-secret-insforge-does-not-have-0123456789")]);
    let refused = wrong_secret.health().await;
    assert!(matches!(refused, Err(InsforgeError::Unauthorized { .. })), "{refused:?}");
}

#[tokio::test]
async fn health_reports_an_unhealthy_insforge() {
    let server = CannedServer::json(503, r#"{"error":"INTERNAL_ERROR","message":"starting","statusCode":503}"#).await;
    let health = client_for(server.url.clone()).health().await;
    assert!(matches!(health, Err(InsforgeError::Upstream { status: 503, .. })), "{health:?}");
}

#[tokio::test]
async fn errors_never_show_the_token_even_when_the_server_echoes_it() {
    let server = CannedServer::echo_authorization(401).await;
    let client = client_for(server.url.clone());
    let minter = TokenMinter::new(&insforge_config(&server.url, &[])).expect("minter");
    let token = minter.mint(&user_a()).expect("a token like the one the client sends");
    let error =
        client.list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::default()).await.expect_err("401");
    let InsforgeError::Unauthorized { message } = &error else { panic!("expected Unauthorized, got {error:?}") };
    assert!(message.contains("Invalid token: Bearer [token]"), "{message}");
    // The token minted above differs (iat) at most by a second; check the shape, not just this one value.
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("eyJ"), "a JWT leaked into {shown}");
        assert!(!shown.contains(&token));
    }
}
