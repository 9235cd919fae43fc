//! The server-rendered todo app: `/` and the forms it posts.
//!
//! Plain HTML forms, no JavaScript. Every form carries a CSRF token ([`CsrfForm`]); a successful POST redirects
//! with 303 so reloading never submits twice; a failed one renders the page again with the message and the text
//! the user typed, and the status that describes the failure.
//!
//! The page shows one space: the active organization's shared todos (each with its author) or the user's personal
//! ones, with a switcher in the header (`organizations`). When the session's organization is no longer one the
//! user is an active member of (removed at WorkOS while signed in), the page says so and shows their personal todos
//! instead: the shared list is gone on the next reload, as the database decides. The add form names the space it
//! was shown for, and adding there is checked again. It also carries the new todo's id, chosen when the page is
//! rendered (and kept when the page is rendered again after a failed add): the same form sent twice (a double click,
//! or again after a timeout that came after the todo was saved) adds one todo.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use crate::lifecycle::store::ActiveMembership;
use crate::todo::{Page, Space, Title, Todo, TodoPatch};

use super::AppState;
use super::audit_events::{RequestMeta, audit_create, audit_delete, audit_update, concerning};
use super::error::{AppError, shown_in_page};
use super::extractors::{CsrfForm, CurrentUser, FormFrom, MaybeUser, TodoId};
use super::pages::{Banner, render};
use super::spaces::{self, Requested, Resolved};
use super::todos_api::parse_new_id;

/// Todos per page on `/`.
const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        // A form's address opened as a page (Enter in the address bar, or Back, after a form that failed and left
        // the browser there) leads to the list rather than to "method not allowed".
        .route("/todos", get(to_the_list).post(create))
        .route("/todos/{id}/toggle", get(to_the_list).post(toggle))
        .route("/todos/{id}/rename", get(to_the_list).post(rename))
        .route("/todos/{id}/delete", get(to_the_list).post(delete))
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    banner: Option<Banner>,
    /// The session the browser came with has just ended: say so.
    session_ended: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    banner: Option<Banner>,
    user: UserView,
    header: SpaceHeader,
    csrf_token: String,
    /// An impersonated session that may not change anything: no forms but the space switcher.
    read_only: bool,
    todos: Vec<TodoView>,
    /// The list could not be read: say so rather than that there is nothing in it.
    list_failed: bool,
    /// Any error on the page (at the top or next to a todo), for the page's title.
    has_error: bool,
    /// The error at the top refuses the add form's title: the field is marked invalid and described by it.
    title_refused: bool,
    error: Option<String>,
    notice: Option<String>,
    new_title: String,
    /// The id the add form gives its todo.
    new_id: Uuid,
    offset: u32,
    newer_offset: Option<u32>,
    older_offset: Option<u32>,
}

struct UserView {
    name: String,
    email: String,
}

/// The header's space: its name, the switcher, and the organization's settings link.
pub struct SpaceHeader {
    /// "Personal", or the organization's name (never its id).
    pub name: String,
    pub is_organization: bool,
    /// What the add form posts as `organization_id`: the organization's id, or `personal`.
    pub form_value: String,
    /// `/organizations/{id}` for the active organization.
    pub settings_href: Option<String>,
    /// Every space the user can switch to; empty without organizations.
    pub switcher: Vec<SwitchOption>,
}

pub struct SwitchOption {
    pub value: String,
    pub label: String,
    pub current: bool,
}

impl SpaceHeader {
    pub fn new(resolved: &Resolved, memberships: &[ActiveMembership]) -> Self {
        let current = resolved.space.organization_id();
        let mut switcher = Vec::new();
        if !memberships.is_empty() {
            switcher.push(SwitchOption {
                value: "personal".into(),
                label: "Personal".into(),
                current: current.is_none(),
            });
            switcher.extend(memberships.iter().map(|membership| SwitchOption {
                value: membership.id.clone(),
                label: spaces::display_name(membership),
                current: current == Some(membership.id.as_str()),
            }));
        }
        let name = match (current, resolved.organization_name()) {
            (_, Some(name)) => name,
            // An organization whose membership could not be read (the page's fallback when the database is out).
            (Some(_), None) => "Your organization".to_owned(),
            (None, None) => "Personal".to_owned(),
        };
        Self {
            name,
            is_organization: current.is_some(),
            form_value: current.unwrap_or("personal").to_owned(),
            settings_href: current.map(|id| format!("/organizations/{}", super::organizations::path_segment(id))),
            switcher,
        }
    }
}

struct TodoView {
    id: Uuid,
    title: String,
    is_complete: bool,
    /// Who wrote it, for an organization's todos.
    author: Option<String>,
    /// Whether the delete policy lets this user delete it (their own, or as an admin of its organization): no
    /// button that can only be refused. The database still decides.
    deletable: bool,
    rename_value: String,
    /// The rename box is a `<textarea>` for a title with line breaks: a one-line box drops them from its value, so
    /// saving another change would join the lines without the user seeing it.
    rename_multiline: bool,
    rename_error: Option<String>,
}

/// What to show again after a failed form: what went wrong, and the text the user typed where they typed it.
#[derive(Default)]
struct Retry {
    error: Option<AppError>,
    new_title: String,
    /// The id the failed add form carried, to carry again: sent again, the form still makes that one todo.
    new_id: Option<Uuid>,
    /// The todo whose rename failed, with the text typed for it.
    rename: Option<(Uuid, String)>,
}

#[derive(Deserialize)]
struct HomeQuery {
    offset: Option<u32>,
}

async fn home(State(state): State<AppState>, maybe: MaybeUser, uri: Uri) -> Response {
    let Some(user) = maybe.user else {
        return render(StatusCode::OK, &Landing { banner: None, session_ended: maybe.session_ended });
    };
    // A malformed `?offset=` is not worth an error page: show the first page.
    let query: Option<HomeQuery> = uri.query().and_then(|q| serde_urlencoded::from_str(q).ok());
    let offset = query.and_then(|q| q.offset).unwrap_or(0);
    home_page(&state, &user, offset, Retry::default()).await
}

/// The space the page shows: the active organization while the user is an active member of it, else their
/// personal todos, with a notice saying why.
async fn page_space(
    state: &AppState,
    user: &CurrentUser,
) -> Result<(Resolved, Vec<ActiveMembership>, Option<String>), AppError> {
    let memberships = spaces::memberships(state, user).await?;
    let personal = Resolved { space: Space::Personal, membership: None };
    match (state.lifecycle.is_some(), user.active_organization()) {
        (true, Some(id)) => match memberships.iter().find(|membership| membership.id == id) {
            Some(membership) => {
                let resolved =
                    Resolved { space: Space::Organization(id.to_owned()), membership: Some(membership.clone()) };
                Ok((resolved, memberships, None))
            }
            None => Ok((
                personal,
                memberships,
                Some(
                    "You are no longer a member of the organization you were working in, so its todos are gone \
                     from here. These are your personal todos (you may be asked to sign in again shortly)."
                        .to_owned(),
                ),
            )),
        },
        _ => Ok((personal, memberships, None)),
    }
}

/// Renders the todo list, with the failure of the form that led here (if any) shown on the page and answered with
/// its status. When listing fails the page still renders, with the error in place of the list.
async fn home_page(state: &AppState, user: &CurrentUser, offset: u32, retry: Retry) -> Response {
    // One more than a page, to know whether an "Older" link is needed.
    let page = Page::new(Some(PAGE_SIZE + 1), Some(offset));
    let (resolved, memberships, notice, listed) = match page_space(state, user).await {
        Ok((resolved, memberships, notice)) => {
            let listed = state.insforge.list_todos(&user.identity(), &resolved.space, page).await;
            (resolved, memberships, notice, listed.map_err(AppError::from))
        }
        // Which space the page shows cannot be checked (the database is out): the add form keeps the one the session
        // is working in, never personal by default, or a todo added again from this page would be filed away from
        // where its author looks for it. Sending the form checks the membership again.
        Err(error) => (unchecked_space(state, user), Vec::new(), None, Err(error)),
    };
    let list_failed = listed.is_err();
    let (mut todos, failure) = match listed {
        Ok(todos) => (todos, retry.error),
        // The form's own failure, when there was one, is what the user needs to read first.
        Err(listing) => (Vec::new(), Some(retry.error.unwrap_or(listing))),
    };
    let status = failure.as_ref().map_or(StatusCode::OK, AppError::status);
    let mut error = failure.as_ref().map(page_message);
    let has_error = error.is_some();
    // The add form's own error (its title refused) is tied to its field; any other is about the page.
    let title_refused = retry.rename.is_none() && failure.as_ref().is_some_and(is_title_refusal);
    let has_older = todos.len() > PAGE_SIZE as usize;
    todos.truncate(PAGE_SIZE as usize);
    let authors = authors(state, user, &todos).await;
    let is_admin = resolved.membership.as_ref().is_some_and(ActiveMembership::is_admin);

    let todos: Vec<TodoView> = todos
        .into_iter()
        .map(|todo: Todo| {
            // A rename error goes next to its todo; for a todo not on this page it stays at the top.
            let (rename_value, rename_error) = match &retry.rename {
                Some((id, typed)) if *id == todo.id => (as_typed(typed), error.take()),
                _ => (todo.title.clone(), None),
            };
            let rename_multiline = rename_value.contains(['\n', '\r']);
            let author = todo
                .organization_id
                .as_ref()
                .map(|_| authors.get(&todo.user_id).cloned().unwrap_or_else(|| "another member".to_owned()));
            TodoView {
                deletable: todo.user_id == user.id() || is_admin,
                id: todo.id,
                title: todo.title,
                is_complete: todo.is_complete,
                author,
                rename_value,
                rename_multiline,
                rename_error,
            }
        })
        .collect();

    let banner = Banner::of(state, user);
    let page = Home {
        read_only: banner.as_ref().is_some_and(|banner| banner.read_only),
        banner,
        user: UserView { name: user.user.display_name(), email: user.user.email.clone().unwrap_or_default() },
        header: SpaceHeader::new(&resolved, &memberships),
        csrf_token: state.csrf.token(user.csrf_binding()),
        todos,
        list_failed,
        has_error,
        title_refused,
        error,
        notice,
        new_title: as_typed(&retry.new_title),
        new_id: retry.new_id.unwrap_or_else(Uuid::new_v4),
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

/// The space the session works in, as the page shows it when the memberships that would confirm it cannot be read.
fn unchecked_space(state: &AppState, user: &CurrentUser) -> Resolved {
    let space = match (&state.lifecycle, user.active_organization()) {
        (Some(_), Some(id)) => Space::Organization(id.to_owned()),
        _ => Space::Personal,
    };
    Resolved { space, membership: None }
}

/// Text typed into a field, as the field shows it again after a refusal: the control characters a title may not
/// hold (NUL, ESC, DEL…) as U+FFFD, which is what a browser makes of some of them anyway, so that the page stays
/// valid HTML and shows where they were.
fn as_typed(text: &str) -> String {
    text.chars().map(|c| if crate::todo::is_refused_control(c) { '\u{FFFD}' } else { c }).collect()
}

/// Whether `error` refuses the title the user typed (as opposed to the page, the session or an upstream).
fn is_title_refusal(error: &AppError) -> bool {
    matches!(error, AppError::InvalidTitle(_))
}

/// What the page says about a failure: the API's words, except where they name what a person never sees.
fn page_message(error: &AppError) -> String {
    match error {
        AppError::IdTaken => {
            "This form had already added a todo (it may have been changed or deleted since). Add again to make \
             another."
                .to_owned()
        }
        other => other.public_message(),
    }
}

/// Names for the authors of an organization's todos: "you", their email as the database knows it, or (for someone
/// it has not heard of) nothing, which the page shows as "another member".
async fn authors(state: &AppState, user: &CurrentUser, todos: &[Todo]) -> HashMap<String, String> {
    let mut names = HashMap::from([(user.id().to_owned(), "you".to_owned())]);
    let others: Vec<String> = todos
        .iter()
        .filter(|todo| todo.organization_id.is_some() && todo.user_id != user.id())
        .map(|todo| todo.user_id.clone())
        .collect();
    if let (Some(lifecycle), false) = (&state.lifecycle, others.is_empty()) {
        match lifecycle.user_emails(&others).await {
            Ok(emails) => names.extend(emails),
            Err(error) => tracing::warn!(%error, "could not read the authors of the organization's todos"),
        }
    }
    names
}

/// `GET` of a form's address: nothing to show there, and nothing is done.
pub async fn to_the_list() -> Response {
    see_home()
}

fn see_home() -> Response {
    Redirect::to("/").into_response()
}

/// Back to the page of the list the form was on, so that acting on an older todo does not lose the user's place.
fn see_page(offset: u32) -> Response {
    if offset == 0 { see_home() } else { Redirect::to(&format!("/?offset={offset}")).into_response() }
}

/// Back to the todo just changed, on the page it was on: the browser scrolls to it and a keyboard or screen-reader
/// user carries on from there (its item takes the focus), instead of from the top of a long list.
fn see_todo(offset: u32, id: Uuid) -> Response {
    let page = if offset == 0 { "/".to_owned() } else { format!("/?offset={offset}") };
    Redirect::to(&format!("{page}#todo-{id}")).into_response()
}

/// The `offset` a todo's form carries: the page it was on. Malformed or absent (a page from before the field
/// existed): the first page, as for `GET /?offset=`.
fn form_offset(raw: Option<&str>) -> u32 {
    raw.and_then(|raw| raw.parse().ok()).unwrap_or(0)
}

#[derive(Deserialize)]
struct NewTodoForm {
    /// The todo's id, chosen when the page was rendered; absent (a page from before the field existed): a new one.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: String,
    /// The space the page was showing (`personal` or an organization's id); absent: the active space.
    #[serde(default)]
    organization_id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    form: FormFrom<NewTodoForm>,
) -> Response {
    let form = match form {
        FormFrom::Page(form) => form,
        // Nothing added; what was typed is shown again, under a fresh token, with the form's own id.
        FormFrom::StalePage(form) => {
            let new_id = form.id.as_deref().and_then(|raw| parse_new_id(raw).ok());
            let retry = Retry { error: Some(AppError::StaleForm), new_title: form.title, new_id, rename: None };
            return home_page(&state, &user, 0, retry).await;
        }
    };
    let id = match form.id.as_deref().filter(|raw| !raw.trim().is_empty()) {
        None => Ok(Uuid::new_v4()),
        Some(raw) => parse_new_id(raw),
    };
    // The id the form is shown with again if this fails: none when it is the trouble (malformed), so that the next
    // add gets a fresh one.
    let (outcome, form_id) = match (Title::parse(&form.title), id) {
        (Err(invalid), id) => (Err(AppError::from(invalid)), id.ok()),
        (Ok(_), Err(invalid)) => (Err(invalid), None),
        (Ok(title), Ok(id)) => {
            let created =
                match spaces::resolve(&state, &user, &Requested::from_param(form.organization_id.as_deref())).await {
                    Ok(resolved) => {
                        match state.insforge.create_todo_with_id(&user.identity(), id, &title, &resolved.space).await {
                            Ok(todo) => Ok(todo),
                            Err(error) => Err(spaces::create_failed(&state, &user, error, &resolved.space).await),
                        }
                    }
                    Err(error) => Err(error),
                };
            (created, Some(id))
        }
    };
    match outcome {
        Ok(todo) => {
            audit_create(&state, &user, &todo, &context).await;
            // To the new todo, as after any other change: focus lands on it, which is what tells a screen reader's
            // user that it was added.
            concerning(see_todo(0, todo.id), todo.organization_id)
        }
        Err(error) => {
            // Shown again with its id, the form sent again cannot add a second todo; an id another todo has is no
            // use to it any more.
            let new_id = form_id.filter(|_| !matches!(error, AppError::IdTaken));
            let retry = Retry { error: Some(error), new_title: form.title, new_id, rename: None };
            home_page(&state, &user, 0, retry).await
        }
    }
}

#[derive(Deserialize)]
struct ToggleForm {
    is_complete: bool,
    #[serde(default)]
    offset: Option<String>,
}

async fn toggle(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    TodoId(id): TodoId,
    CsrfForm(form): CsrfForm<ToggleForm>,
) -> Response {
    let offset = form_offset(form.offset.as_deref());
    let patch = TodoPatch { title: None, is_complete: Some(form.is_complete) };
    match state.insforge.update_todo(&user.identity(), id, &patch).await {
        Ok(updated) => {
            audit_update(&state, &user, &updated.todo, &updated.changed, &context).await;
            concerning(see_todo(offset, id), updated.todo.organization_id)
        }
        Err(error) => failed(&state, &user, offset, error.into()).await,
    }
}

#[derive(Deserialize)]
struct TitleForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    offset: Option<String>,
}

async fn rename(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    TodoId(id): TodoId,
    CsrfForm(mut form): CsrfForm<TitleForm>,
) -> Response {
    // A `<textarea>` (a title with line breaks) is posted with CRLF for each break (HTML's form encoding): the
    // title keeps the breaks it had.
    form.title = form.title.replace("\r\n", "\n");
    let outcome = match Title::parse(&form.title) {
        Ok(title) => {
            let patch = TodoPatch { title: Some(title), is_complete: None };
            match state.insforge.update_todo(&user.identity(), id, &patch).await {
                Ok(updated) => {
                    audit_update(&state, &user, &updated.todo, &updated.changed, &context).await;
                    Ok(updated.todo.organization_id)
                }
                Err(error) => Err(AppError::from(error)),
            }
        }
        Err(invalid) => Err(AppError::from(invalid)),
    };
    let offset = form_offset(form.offset.as_deref());
    match outcome {
        Ok(organization_id) => concerning(see_todo(offset, id), organization_id),
        Err(error) => {
            let retry = Retry { error: Some(error), rename: Some((id, form.title)), ..Retry::default() };
            home_page(&state, &user, offset, retry).await
        }
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    offset: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    RequestMeta(context): RequestMeta,
    TodoId(id): TodoId,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Response {
    let offset = form_offset(form.offset.as_deref());
    match state.insforge.delete_todo(&user.identity(), id).await {
        Ok(todo) => {
            audit_delete(&state, &user, &todo, &context).await;
            concerning(see_page(offset), todo.organization_id)
        }
        Err(error) => failed(&state, &user, offset, error.into()).await,
    }
}

/// The page of the list the form was on again, with what went wrong and the matching status.
async fn failed(state: &AppState, user: &CurrentUser, offset: u32, error: AppError) -> Response {
    home_page(state, user, offset, Retry { error: Some(error), ..Retry::default() }).await
}
