//! The JSON API for todos: `/api/todos` and `/api/todos/{id}`.
//!
//! Authenticated by the session cookie or `Authorization: Bearer <access token>` ([`CurrentUser`]). Every
//! call goes to InsForge with a token minted for this user, so RLS decides what exists: another user's todo is
//! simply not found (404), exactly like a todo that never existed. Lists and new todos belong to a space: the
//! user's personal todos or an organization's shared ones (`organization_id`, `spaces`); listing or creating in an
//! organization the user is not an active member of is refused (403) before anything reaches InsForge. Changes to
//! an organization's todos are sent to its Audit Logs (`audit_events`). A create may carry the new todo's `id`: sent again
//! with it after an answer that never came (a timeout), it is answered with the todo the first made, never a second.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::todo::{Page, Title, Todo, TodoPatch};

use super::AppState;
use super::audit_events::{RequestMeta, audit_create, audit_delete, audit_update, concerning};
use super::error::AppError;
use super::extractors::{ApiJson, ApiQuery, CurrentUser, TodoId};
use super::spaces::{self, Requested};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/todos", get(list).post(create))
        .route("/api/todos/{id}", get(show).patch(update).delete(remove))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default, deserialize_with = "blank_is_absent")]
    pub(super) limit: Option<u32>,
    #[serde(default, deserialize_with = "blank_is_absent")]
    pub(super) offset: Option<u32>,
    /// An organization's id, or `personal`; absent: the active space.
    pub(super) organization_id: Option<String>,
}

#[derive(Serialize)]
struct TodoList {
    todos: Vec<Todo>,
    /// The space listed: an organization's id, or `null` for personal todos.
    organization_id: Option<String>,
    limit: u32,
    offset: u32,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    let page = Page::new(query.limit, query.offset);
    let resolved = spaces::resolve(&state, &user, &Requested::from_param(query.organization_id.as_deref())).await?;
    let todos = state.insforge.list_todos(&user.identity(), &resolved.space, page).await?;
    let organization_id = resolved.space.organization_id().map(str::to_owned);
    let concerned = organization_id.clone();
    let list = TodoList { todos, organization_id, limit: page.limit(), offset: page.offset() };
    Ok(concerning(axum::Json(list).into_response(), concerned))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTodo {
    /// The new todo's id (a UUID), chosen by the caller so that sending the create again after a lost answer makes
    /// no second todo; absent or `null`: authbridge chooses. Text here, so that a malformed one is a 422 with its
    /// own message rather than a JSON error.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// Absent: the active space; `null` or `"personal"`: personal; else an organization's id.
    #[serde(default, deserialize_with = "present")]
    organization_id: Option<Option<String>>,
}

/// A number in a query string, where `limit=` (a form's empty field, the README's own template) means "not given",
/// as an empty `organization_id=` does. A number too large for the type is its largest value: `limit` is capped
/// anyway (the README says so for any larger value), and an `offset` past the end is an empty page.
fn blank_is_absent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match Option::<String>::deserialize(deserializer)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(number) if !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()) => {
            Ok(Some(number.parse().unwrap_or(u32::MAX)))
        }
        Some(number) => number.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    RawQuery(query): RawQuery,
    ApiJson(body): ApiJson<CreateTodo>,
) -> Result<Response, AppError> {
    // A list's space is in its query string, a new todo's in its body. A client building both URLs alike would put
    // a todo meant for one space in another (a private one where every member sees it): refused, not ignored.
    if url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(name, _)| name == "organization_id") {
        return Err(AppError::BadRequest(
            "A new todo's space goes in the JSON body (\"organization_id\"), not in the query string.".to_owned(),
        ));
    }
    let title = Title::parse(body.title.as_deref().unwrap_or_default())?;
    let id = match body.id.as_deref() {
        None => Uuid::new_v4(),
        Some(raw) => parse_new_id(raw)?,
    };
    let requested = match &body.organization_id {
        None => Requested::Active,
        Some(None) => Requested::Personal,
        Some(Some(raw)) if raw.trim().is_empty() => {
            return Err(AppError::Unprocessable("\"organization_id\" is empty.".to_owned()));
        }
        Some(Some(raw)) => Requested::from_param(Some(raw)),
    };
    let resolved = spaces::resolve(&state, &user, &requested).await?;
    // Sent again with the same id, a create that was made before is answered as made now (201, the same todo).
    let todo = match state.insforge.create_todo_with_id(&user.identity(), id, &title, &resolved.space).await {
        Ok(todo) => todo,
        Err(error) => return Err(spaces::create_failed(&state, &user, error, &resolved.space).await),
    };
    audit_create(&state, &user, &todo, &context).await;
    let location = HeaderValue::from_str(&format!("/api/todos/{}", todo.id))
        .map_err(|_| AppError::Internal("a todo id is not a valid header value".to_owned()))?;
    let concerned = todo.organization_id.clone();
    let response = (StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(todo)).into_response();
    Ok(concerning(response, concerned))
}

/// A new todo's id as a caller sent it: a UUID, or 422.
pub(super) fn parse_new_id(raw: &str) -> Result<Uuid, AppError> {
    match Uuid::parse_str(raw.trim()) {
        // Ids are one namespace for everyone: the nil and max UUIDs (all zeros, all ones) are what a client sends by
        // mistake (an id left at a placeholder), and whoever sent one first would hold it against every other.
        Ok(id) if id.is_nil() || id.is_max() => Err(AppError::Unprocessable(
            "\"id\" must not be the nil or max UUID (all zeros or all ones): generate a random one.".into(),
        )),
        Ok(id) => Ok(id),
        Err(_) => {
            Err(AppError::Unprocessable("\"id\" must be a UUID, such as 0b6f3a9e-4c1d-4e7a-9f2b-8d5c6e7f8a9b.".into()))
        }
    }
}

/// 412 for a change sent with `If-Match` naming entity tags: this API sends none, so none can match, and RFC 9110
/// §13.1.1 forbids making the change (a client relying on it must not overwrite another's edit unknowingly).
/// `If-Match: *` holds for any todo there is, and the change goes on (an absent todo is then 404). A condition is
/// only weighed for a todo the user can see (§13.2.1: one whose answer without it would not be a success is
/// answered as if it were not there), so a todo that is not there, or not theirs to see, is 404 either way.
async fn refuse_conditions_that_cannot_hold(
    state: &AppState,
    user: &CurrentUser,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let mut conditions = headers.get_all(header::IF_MATCH).iter().peekable();
    if conditions.peek().is_none() || conditions.all(|value| value.as_bytes().trim_ascii() == b"*") {
        return Ok(());
    }
    state.insforge.get_todo(&user.identity(), id).await?;
    Err(AppError::PreconditionFailed)
}

async fn show(State(state): State<AppState>, user: CurrentUser, TodoId(id): TodoId) -> Result<Response, AppError> {
    let todo = state.insforge.get_todo(&user.identity(), id).await?;
    let concerned = todo.organization_id.clone();
    Ok(concerning(axum::Json(todo).into_response(), concerned))
}

/// A field absent is left as it is; `null` is refused (422), since neither can be removed: read as "leave it", a
/// merge patch's `null` ("remove it", RFC 7396) would be silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTodo {
    #[serde(default, deserialize_with = "present")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    is_complete: Option<Option<bool>>,
}

async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    TodoId(id): TodoId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateTodo>,
) -> Result<Response, AppError> {
    refuse_conditions_that_cannot_hold(&state, &user, id, &headers).await?;
    if body.title.is_none() && body.is_complete.is_none() {
        return Err(AppError::Unprocessable("Send a new \"title\", \"is_complete\", or both.".to_owned()));
    }
    for (field, null) in [("title", body.title == Some(None)), ("is_complete", body.is_complete == Some(None))] {
        if null {
            return Err(AppError::Unprocessable(format!(
                "\"{field}\" cannot be null: leave it out to keep it as it is."
            )));
        }
    }
    let patch = TodoPatch {
        title: body.title.flatten().as_deref().map(Title::parse).transpose()?,
        is_complete: body.is_complete.flatten(),
    };
    let updated = state.insforge.update_todo(&user.identity(), id, &patch).await?;
    audit_update(&state, &user, &updated.todo, &updated.changed, &context).await;
    let concerned = updated.todo.organization_id.clone();
    Ok(concerning(axum::Json(updated.todo).into_response(), concerned))
}

async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    TodoId(id): TodoId,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    refuse_conditions_that_cannot_hold(&state, &user, id, &headers).await?;
    let todo = state.insforge.delete_todo(&user.identity(), id).await?;
    audit_delete(&state, &user, &todo, &context).await;
    Ok(concerning(StatusCode::NO_CONTENT.into_response(), todo.organization_id))
}
