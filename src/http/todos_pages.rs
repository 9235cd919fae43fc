//! The server-rendered todo app: `/` and the forms it posts.
//!
//! Plain HTML forms, no JavaScript. Every form carries a CSRF token ([`CsrfForm`]); a successful POST redirects
//! with 303 so reloading never submits twice; a failed one renders the page again with the message and the text
//! the user typed, and the status that describes the failure.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use crate::todo::{Page, Title, Todo, TodoPatch};

use super::AppState;
use super::error::{AppError, shown_in_page};
use super::extractors::{CsrfForm, CurrentUser, MaybeUser, TodoId};
use super::pages::render;

/// Todos per page on `/`.
const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/todos", post(create))
        .route("/todos/{id}/toggle", post(toggle))
        .route("/todos/{id}/rename", post(rename))
        .route("/todos/{id}/delete", post(delete))
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing;

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    user: UserView,
    csrf_token: String,
    todos: Vec<TodoView>,
    error: Option<String>,
    new_title: String,
    offset: u32,
    newer_offset: Option<u32>,
    older_offset: Option<u32>,
}

struct UserView {
    name: String,
    email: String,
    organization: Option<String>,
    impersonator: Option<String>,
}

struct TodoView {
    id: Uuid,
    title: String,
    is_complete: bool,
    rename_value: String,
    rename_error: Option<String>,
}

/// What to show again after a failed form: what went wrong, and the text the user typed where they typed it.
#[derive(Default)]
struct Retry {
    error: Option<AppError>,
    new_title: String,
    /// The todo whose rename failed, with the text typed for it.
    rename: Option<(Uuid, String)>,
}

#[derive(Deserialize)]
struct HomeQuery {
    offset: Option<u32>,
}

async fn home(State(state): State<AppState>, MaybeUser(user): MaybeUser, uri: Uri) -> Response {
    let Some(user) = user else { return render(StatusCode::OK, &Landing) };
    // A malformed `?offset=` is not worth an error page: show the first page.
    let query: Option<HomeQuery> = uri.query().and_then(|q| serde_urlencoded::from_str(q).ok());
    let offset = query.and_then(|q| q.offset).unwrap_or(0);
    home_page(&state, &user, offset, Retry::default()).await
}

/// Renders the todo list, with the failure of the form that led here (if any) shown on the page and answered with
/// its status. When listing fails the page still renders, with the error in place of the list.
async fn home_page(state: &AppState, user: &CurrentUser, offset: u32, retry: Retry) -> Response {
    // One more than a page, to know whether an "Older" link is needed.
    let page = Page::new(Some(PAGE_SIZE + 1), Some(offset));
    let (mut todos, failure) = match state.insforge.list_todos(&user.identity(), page).await {
        Ok(todos) => (todos, retry.error),
        // The form's own failure, when there was one, is what the user needs to read first.
        Err(listing) => (Vec::new(), Some(retry.error.unwrap_or_else(|| AppError::from(listing)))),
    };
    let status = failure.as_ref().map_or(StatusCode::OK, AppError::status);
    let mut error = failure.as_ref().map(AppError::public_message);
    let has_older = todos.len() > PAGE_SIZE as usize;
    todos.truncate(PAGE_SIZE as usize);

    let todos: Vec<TodoView> = todos
        .into_iter()
        .map(|todo: Todo| {
            // A rename error goes next to its todo; for a todo not on this page it stays at the top.
            let (rename_value, rename_error) = match &retry.rename {
                Some((id, typed)) if *id == todo.id => (typed.clone(), error.take()),
                _ => (todo.title.clone(), None),
            };
            TodoView { id: todo.id, title: todo.title, is_complete: todo.is_complete, rename_value, rename_error }
        })
        .collect();

    let page = Home {
        user: UserView {
            name: user.user.display_name(),
            email: user.user.email.clone().unwrap_or_default(),
            organization: organizations_shown(state, user).await,
            impersonator: user.impersonator.as_ref().map(|i| i.email.clone()),
        },
        csrf_token: state.csrf.token(user.csrf_binding()),
        todos,
        error,
        new_title: retry.new_title,
        offset,
        newer_offset: (offset > 0).then(|| offset.saturating_sub(PAGE_SIZE)),
        older_offset: has_older.then(|| offset + PAGE_SIZE),
    };
    let response = render(status, &page);
    match failure {
        Some(failure) => shown_in_page(response, failure),
        None => response,
    }
}

/// What the header says about the user's organizations: with the lifecycle on, the names of their active
/// memberships as the database has them (so a removal shows on the next reload); without it, the session's
/// organization id. Only a label: a failure to read it is logged and leaves it out.
async fn organizations_shown(state: &AppState, user: &CurrentUser) -> Option<String> {
    let Some(lifecycle) = &state.lifecycle else { return user.organization_id.clone() };
    match lifecycle.active_memberships(user.id()).await {
        Ok(memberships) => {
            let names: Vec<String> =
                memberships.into_iter().map(|membership| membership.name.unwrap_or(membership.id)).collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the user's organizations for the page header");
            None
        }
    }
}

fn see_home() -> Response {
    Redirect::to("/").into_response()
}

#[derive(Deserialize)]
struct TitleForm {
    #[serde(default)]
    title: String,
}

async fn create(State(state): State<AppState>, user: CurrentUser, CsrfForm(form): CsrfForm<TitleForm>) -> Response {
    let outcome = match Title::parse(&form.title) {
        Ok(title) => state.insforge.create_todo(&user.identity(), &title).await.map_err(AppError::from),
        Err(invalid) => Err(AppError::from(invalid)),
    };
    match outcome {
        Ok(_) => see_home(),
        Err(error) => {
            home_page(&state, &user, 0, Retry { error: Some(error), new_title: form.title, rename: None }).await
        }
    }
}

#[derive(Deserialize)]
struct ToggleForm {
    is_complete: bool,
}

async fn toggle(
    State(state): State<AppState>,
    user: CurrentUser,
    TodoId(id): TodoId,
    CsrfForm(form): CsrfForm<ToggleForm>,
) -> Response {
    let patch = TodoPatch { title: None, is_complete: Some(form.is_complete) };
    match state.insforge.update_todo(&user.identity(), id, &patch).await {
        Ok(_) => see_home(),
        Err(error) => failed(&state, &user, error.into()).await,
    }
}

async fn rename(
    State(state): State<AppState>,
    user: CurrentUser,
    TodoId(id): TodoId,
    CsrfForm(form): CsrfForm<TitleForm>,
) -> Response {
    let outcome = match Title::parse(&form.title) {
        Ok(title) => {
            let patch = TodoPatch { title: Some(title), is_complete: None };
            state.insforge.update_todo(&user.identity(), id, &patch).await.map_err(AppError::from)
        }
        Err(invalid) => Err(AppError::from(invalid)),
    };
    match outcome {
        Ok(_) => see_home(),
        Err(error) => {
            let retry = Retry { error: Some(error), rename: Some((id, form.title)), ..Retry::default() };
            home_page(&state, &user, 0, retry).await
        }
    }
}

#[derive(Deserialize)]
struct EmptyForm {}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    TodoId(id): TodoId,
    CsrfForm(_): CsrfForm<EmptyForm>,
) -> Response {
    match state.insforge.delete_todo(&user.identity(), id).await {
        Ok(()) => see_home(),
        Err(error) => failed(&state, &user, error.into()).await,
    }
}

/// The list again, with what went wrong and the matching status.
async fn failed(state: &AppState, user: &CurrentUser, error: AppError) -> Response {
    home_page(state, user, 0, Retry { error: Some(error), ..Retry::default() }).await
}
