//! Row-level security, end to end: client → InsForge stand-in → PostgreSQL. Users A and B share one table and
//! each sees and changes only their own rows; callers without a user token see nothing; the admin key sees all,
//! which proves the filtering happens in the database and not in the stand-in.

use authbridge::insforge::client::InsforgeError;
use authbridge::todo::{Page, Title, TodoPatch};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{JWT_SECRET, TestInsforge, user_a, user_b};

fn title(text: &str) -> Title {
    Title::parse(text).expect("a valid title")
}

#[tokio::test]
async fn each_user_lists_only_their_own_todos() {
    let app = TestInsforge::start().await;
    let a1 = app
        .client
        .create_todo(&user_a(), &title("A's first"), &authbridge::todo::Space::Personal)
        .await
        .expect("A creates");
    let a2 = app
        .client
        .create_todo(&user_a(), &title("A's second"), &authbridge::todo::Space::Personal)
        .await
        .expect("A creates");
    let b1 = app
        .client
        .create_todo(&user_b(), &title("B's only"), &authbridge::todo::Space::Personal)
        .await
        .expect("B creates");

    let a_list =
        app.client.list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::default()).await.expect("A lists");
    let a_ids: Vec<_> = a_list.iter().map(|t| t.id).collect();
    assert_eq!(a_ids, [a2.id, a1.id], "A sees exactly A's todos, newest first");

    let b_list =
        app.client.list_todos(&user_b(), &authbridge::todo::Space::Personal, Page::default()).await.expect("B lists");
    assert_eq!(b_list, [b1], "B sees exactly B's todo");
}

#[tokio::test]
async fn another_users_todo_is_not_found_for_get_update_and_delete() {
    let app = TestInsforge::start().await;
    let a_todo = app
        .client
        .create_todo(&user_a(), &title("private to A"), &authbridge::todo::Space::Personal)
        .await
        .expect("A creates");

    let get = app.client.get_todo(&user_b(), a_todo.id).await;
    assert!(matches!(get, Err(InsforgeError::NotFound)), "B's get: {get:?}");

    let patch = TodoPatch { title: Some(title("taken over by B")), is_complete: Some(true) };
    let update = app.client.update_todo(&user_b(), a_todo.id, &patch).await;
    assert!(matches!(update, Err(InsforgeError::NotFound)), "B's update: {update:?}");

    let delete = app.client.delete_todo(&user_b(), a_todo.id).await;
    assert!(matches!(delete, Err(InsforgeError::NotFound)), "B's delete: {delete:?}");

    let still = app.client.get_todo(&user_a(), a_todo.id).await.expect("A still has it");
    assert_eq!(still, a_todo, "nothing B did changed A's todo");
}

#[tokio::test]
async fn nobody_can_create_a_todo_owned_by_someone_else() {
    let app = TestInsforge::start().await;
    let b_token = app.token_for(&user_b());
    let response = app
        .raw(
            Method::POST,
            "todos",
            &[],
            Some(&b_token),
            Some(json!([{ "title": "planted by B", "user_id": user_a().id }])),
        )
        .await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.body["code"], "42501");
    assert!(app.all_rows().await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn nobody_can_hand_their_todo_over_to_someone_else() {
    let app = TestInsforge::start().await;
    let a_todo =
        app.client.create_todo(&user_a(), &title("mine"), &authbridge::todo::Space::Personal).await.expect("A creates");
    let a_token = app.token_for(&user_a());
    let filter = format!("eq.{}", a_todo.id);
    let response = app
        .raw(Method::PATCH, "todos", &[("id", &filter)], Some(&a_token), Some(json!({ "user_id": user_b().id })))
        .await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.body["code"], "42501");
    let rows = app.all_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user_id"], user_a().id.as_str(), "the row still belongs to A");
}

#[tokio::test]
async fn no_token_and_the_anon_key_can_neither_read_nor_write() {
    let app = TestInsforge::start().await;
    app.client.create_todo(&user_a(), &title("exists"), &authbridge::todo::Space::Personal).await.expect("A creates");
    let anon = app.anon_key();

    for bearer in [None, Some(anon.as_str())] {
        let read = app.raw(Method::GET, "todos", &[("select", "*")], bearer, None).await;
        assert_eq!(read.status, 401, "read with {bearer:?}: {read:?}");

        let write = app.raw(Method::POST, "todos", &[], bearer, Some(json!({ "title": "anonymous" }))).await;
        assert_eq!(write.status, 401, "write with {bearer:?}: {write:?}");

        let delete = app.raw(Method::DELETE, "todos", &[], bearer, None).await;
        assert_eq!(delete.status, 401, "delete with {bearer:?}: {delete:?}");
    }
    // No token at all: InsForge's own shape. The anon key: PostgreSQL's refusal, as PostgREST reports it.
    let none = app.raw(Method::GET, "todos", &[], None, None).await;
    assert_eq!(none.body["error"], "AUTH_INVALID_CREDENTIALS");
    let anonymous = app.raw(Method::GET, "todos", &[], Some(&anon), None).await;
    assert_eq!(anonymous.body["code"], "42501");

    let rows = app.all_rows().await;
    assert_eq!(rows.len(), 1, "only A's todo exists: {rows:?}");
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let app = TestInsforge::start().await;
    app.client.create_todo(&user_a(), &title("exists"), &authbridge::todo::Space::Personal).await.expect("A creates");
    let forger = app.client_with(&[("INSFORGE_JWT_SECRET", "another-secret-entirely-0123456789abcdef")]);
    assert_ne!(JWT_SECRET, "another-secret-entirely-0123456789abcdef");

    let read = forger.list_todos(&user_a(), &authbridge::todo::Space::Personal, Page::default()).await;
    assert!(matches!(read, Err(InsforgeError::Unauthorized { .. })), "{read:?}");
    let write = forger.create_todo(&user_a(), &title("forged"), &authbridge::todo::Space::Personal).await;
    assert!(matches!(write, Err(InsforgeError::Unauthorized { .. })), "{write:?}");
    assert_eq!(app.all_rows().await.len(), 1, "the forged write did not happen");
}

#[tokio::test]
async fn the_admin_key_sees_every_users_rows_so_filtering_is_the_databases() {
    let app = TestInsforge::start().await;
    let a_todo =
        app.client.create_todo(&user_a(), &title("A's"), &authbridge::todo::Space::Personal).await.expect("A creates");
    let b_todo =
        app.client.create_todo(&user_b(), &title("B's"), &authbridge::todo::Space::Personal).await.expect("B creates");

    // The very same request the client makes for a user, with the admin key instead of a user token.
    let admin = app.admin_key();
    let response = app
        .raw(Method::GET, "todos", &[("select", "*"), ("order", "created_at.desc,id.desc")], Some(&admin), None)
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let mut owners: Vec<(String, String)> = response
        .rows()
        .iter()
        .map(|row| (row["id"].as_str().expect("id").to_owned(), row["user_id"].as_str().expect("user_id").to_owned()))
        .collect();
    owners.sort();
    let mut expected = vec![(a_todo.id.to_string(), user_a().id), (b_todo.id.to_string(), user_b().id)];
    expected.sort();
    assert_eq!(owners, expected);
}
