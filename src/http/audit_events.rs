//! The Audit Log events the app's routes record for an organization: who did it ([`actor`]), from where
//! ([`RequestMeta`]), and how an event is queued without holding up the answer ([`queue_audit`]); and the events of
//! a change to an organization's todo, which the JSON API and the pages record alike. The queue itself (the outbox,
//! its deliverer) is `crate::audit`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use uuid::Uuid;

use crate::audit::{Actor, RequestContext, Target};
use crate::todo::{Todo, TodoPatch};

use super::AppState;
use super::client_address::client_address;
use super::extractors::CurrentUser;

/// The organization whose data an answer carried or changed (an organization's list, one of its todos), put in the
/// response's extensions by the handler: an impersonated request's Audit Log event goes to that organization's log
/// rather than to the session's (`extractors::audited_organization`).
#[derive(Debug, Clone)]
pub struct ConcernedOrganization(pub String);

/// `response`, marked as concerning the data of `organization_id` when there is one (personal data concerns none).
pub fn concerning(mut response: axum::response::Response, organization_id: Option<String>) -> axum::response::Response {
    if let Some(organization_id) = organization_id {
        response.extensions_mut().insert(ConcernedOrganization(organization_id));
    }
    response
}

/// Where a request came from (an extractor that never refuses), for audit events.
pub struct RequestMeta(pub RequestContext);

impl axum::extract::FromRequestParts<AppState> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(RequestOrigin::of(&parts.headers, &parts.extensions, state).context()))
    }
}

/// Where a request came from, as it arrived: cheap to keep (no text is made) until an audit record needs it.
pub struct RequestOrigin {
    client: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
}

impl RequestOrigin {
    pub fn of(headers: &HeaderMap, extensions: &Extensions, state: &AppState) -> Self {
        let trusted = &state.config.server.trusted_proxies;
        let client = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| client_address(peer.ip(), headers, trusted));
        Self { client, user_agent: headers.get(header::USER_AGENT).cloned() }
    }

    /// An audit event's `context`: the client's address (see `client_address`) and the user agent (when it is
    /// text).
    pub fn context(&self) -> RequestContext {
        RequestContext {
            location: self.client.map_or_else(|| "unknown".to_owned(), |client| client.to_string()),
            user_agent: self.user_agent.as_ref().and_then(|value| value.to_str().ok()).map(str::to_owned),
        }
    }
}

/// The user as an audit event's actor.
pub fn actor(user: &CurrentUser) -> Actor {
    Actor {
        id: user.id().to_owned(),
        name: user.user.display_name(),
        impersonator: user.impersonator.as_ref().map(|impersonator| impersonator.email.clone()),
    }
}

/// Longest a request waits for its Audit Log event to be queued. The event is queued by a task of its own, which
/// goes on after this wait (and after the request's time limit): what it records has happened, and a slow database
/// (the pool's acquire timeout, then the statement timeout) must not turn the answer to a saved change into a 504.
const AUDIT_WAIT: Duration = Duration::from_secs(1);

/// Queues an Audit Log event for an organization; a failure is logged, never shown: what it records happened.
pub async fn audit(
    state: &AppState,
    organization_id: &str,
    action: &str,
    user: &CurrentUser,
    targets: &[Target],
    context: &RequestContext,
) {
    queue_audit(state, None, organization_id, action, actor(user), targets, context).await;
}

/// [`audit`] for an event that happens once to its target (a todo is created once): however often it is recorded
/// (a create its caller sent again, and was answered with the same todo), it is one event. `occurrence` tells
/// apart two lives of one target id (see [`crate::audit::once_key`]).
pub async fn audit_once(
    state: &AppState,
    organization_id: &str,
    action: &str,
    user: &CurrentUser,
    target: Target,
    occurrence: &str,
    context: &RequestContext,
) {
    let key = crate::audit::once_key(organization_id, action, &target.id, occurrence);
    queue_audit(state, Some(key), organization_id, action, actor(user), &[target], context).await;
}

/// Queues an event by a task of its own, waiting for it at most [`AUDIT_WAIT`] (see there); `key` `None`: a fresh
/// one. For requests that have no [`CurrentUser`] yet (a sign-in) as for those that do.
pub async fn queue_audit(
    state: &AppState,
    key: Option<Uuid>,
    organization_id: &str,
    action: &str,
    actor: Actor,
    targets: &[Target],
    context: &RequestContext,
) {
    let Some(audit) = &state.audit else { return };
    let key = key.unwrap_or_else(Uuid::new_v4);
    let queued =
        audit.queue(key, organization_id.to_owned(), action.to_owned(), actor, targets.to_vec(), context.clone());
    match tokio::time::timeout(AUDIT_WAIT, queued).await {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => tracing::error!(error = %failed, action, "the task queueing an audit log event failed"),
        Err(_) => tracing::warn!(action, "an audit log event is slow to queue; answering without waiting for it"),
    }
}

fn todo_target(todo: &Todo) -> Target {
    Target { kind: "todo", id: todo.id.to_string(), name: Some(todo.title.clone()) }
}

/// The Audit Log events of a change to an organization's todo: renamed, completed or reopened. One per change of
/// the row, however many requests report it: the event is keyed by the row's `updated_at` after the change, so a
/// change whose answer was lost and looked at again (and found as asked, perhaps by another request at the same
/// moment, which records the same change) is not a second event.
pub async fn audit_update(
    state: &AppState,
    user: &CurrentUser,
    todo: &Todo,
    patch: &TodoPatch,
    context: &RequestContext,
) {
    let Some(organization_id) = todo.organization_id.as_deref() else { return };
    let version = todo.updated_at.unix_timestamp_nanos().to_string();
    if patch.title.is_some() {
        audit_once(state, organization_id, "todo.renamed", user, todo_target(todo), &version, context).await;
    }
    if let Some(done) = patch.is_complete {
        let action = if done { "todo.completed" } else { "todo.reopened" };
        audit_once(state, organization_id, action, user, todo_target(todo), &version, context).await;
    }
}

/// The Audit Log event of a deleted organization todo: one per todo (its life told by its `created_at`), however
/// many deletes at once report it (a double click; two members; InsForge's repeat of the delete).
pub async fn audit_delete(state: &AppState, user: &CurrentUser, todo: &Todo, context: &RequestContext) {
    if let Some(organization_id) = todo.organization_id.as_deref() {
        let created_at = todo.created_at.unix_timestamp_nanos().to_string();
        audit_once(state, organization_id, "todo.deleted", user, todo_target(todo), &created_at, context).await;
    }
}

/// The Audit Log event of a created organization todo: one per todo, however often its create was sent.
pub async fn audit_create(state: &AppState, user: &CurrentUser, todo: &Todo, context: &RequestContext) {
    if let Some(organization_id) = todo.organization_id.as_deref() {
        // A resend is answered with the same row, so the same `created_at`; a new todo under a reused id is not.
        let created_at = todo.created_at.unix_timestamp_nanos().to_string();
        let target = todo_target(todo);
        audit_once(state, organization_id, "todo.created", user, target, &created_at, context).await;
    }
}
