//! The JSON API for todos: `/api/todos` and `/api/todos/{id}`.
//!
//! Authenticated by the session cookie or `Authorization: Bearer <access token>` ([`CurrentUser`]). Every
//! call goes to InsForge with a token minted for this user, so RLS decides what exists: another user's todo is
//! simply not found (404), exactly like a todo that never existed.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::todo::{Page, Title, Todo, TodoPatch};

use super::AppState;
use super::error::AppError;
use super::extractors::{ApiJson, ApiQuery, CurrentUser, TodoId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/todos", get(list).post(create))
        .route("/api/todos/{id}", get(show).patch(update).delete(remove))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    pub(super) limit: Option<u32>,
    pub(super) offset: Option<u32>,
}

#[derive(Serialize)]
struct TodoList {
    todos: Vec<Todo>,
    limit: u32,
    offset: u32,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    let page = Page::new(query.limit, query.offset);
    let todos = state.insforge.list_todos(&user.identity(), page).await?;
    Ok(axum::Json(TodoList { todos, limit: page.limit(), offset: page.offset() }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTodo {
    #[serde(default)]
    title: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CreateTodo>,
) -> Result<Response, AppError> {
    let title = Title::parse(body.title.as_deref().unwrap_or_default())?;
    let todo = state.insforge.create_todo(&user.identity(), &title).await?;
    let location = HeaderValue::from_str(&format!("/api/todos/{}", todo.id))
        .map_err(|_| AppError::Internal("a todo id is not a valid header value".to_owned()))?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(todo)).into_response())
}

async fn show(State(state): State<AppState>, user: CurrentUser, TodoId(id): TodoId) -> Result<Response, AppError> {
    let todo = state.insforge.get_todo(&user.identity(), id).await?;
    Ok(axum::Json(todo).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTodo {
    title: Option<String>,
    is_complete: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    TodoId(id): TodoId,
    ApiJson(body): ApiJson<UpdateTodo>,
) -> Result<Response, AppError> {
    if body.title.is_none() && body.is_complete.is_none() {
        return Err(AppError::Unprocessable("Send a new \"title\", \"is_complete\", or both.".to_owned()));
    }
    let patch =
        TodoPatch { title: body.title.as_deref().map(Title::parse).transpose()?, is_complete: body.is_complete };
    let todo = state.insforge.update_todo(&user.identity(), id, &patch).await?;
    Ok(axum::Json(todo).into_response())
}

async fn remove(State(state): State<AppState>, user: CurrentUser, TodoId(id): TodoId) -> Result<StatusCode, AppError> {
    state.insforge.delete_todo(&user.identity(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
