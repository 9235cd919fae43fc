//! The stand-in's management API: the Events API, organizations, organization memberships and user deletion, as
//! docs/workos.md §4 and §6 describe them. Every call needs the API key; every change is recorded as an event and
//! woken up for webhook delivery.
//!
//! Lists page the WorkOS way (`limit` 1–100, default 10; `order` default `desc`; `after` = an object id;
//! `{"object":"list","data":[…],"list_metadata":{"before":null,"after":…}}`). Membership lists default to active
//! memberships only unless `statuses` says otherwise, and take `statuses` as a comma list or repeated keys, as the
//! SDKs differ.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::StandInEventsQuery;
use super::organizations::{StandInMembership, StandInMembershipStatus, StandInRefusal};
use super::routes::{has_api_key, workos_error};
use super::store::Store;
use super::{Endpoint, WorkosStandInState};
use crate::lock;

pub fn router() -> Router<Arc<WorkosStandInState>> {
    Router::new()
        .route("/events", get(list_events))
        .route("/organizations", get(list_organizations).post(create_organization))
        .route("/organizations/{id}", get(get_organization).put(update_organization).delete(delete_organization))
        .route("/user_management/organization_memberships", get(list_memberships).post(create_membership))
        .route(
            "/user_management/organization_memberships/{id}",
            get(get_membership).put(update_membership).delete(delete_membership),
        )
        .route("/user_management/organization_memberships/{id}/deactivate", put(deactivate_membership))
        .route("/user_management/organization_memberships/{id}/reactivate", put(reactivate_membership))
        .route("/user_management/users/{id}", get(get_user).delete(delete_user))
}

/// Counts the call, applies injected faults, and checks the API key. `Some(response)` ends the request.
async fn admit(inner: &WorkosStandInState, endpoint: Endpoint, headers: &HeaderMap) -> Option<Response> {
    if let Some(response) = inner.controls.gate(endpoint).await {
        return Some(response);
    }
    (!has_api_key(inner, headers)).then(|| workos_error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key."))
}

/// Every value of `name` in a raw query string, comma lists split: `a=x,y&a=z` → x, y, z.
fn values(query: &Option<String>, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == name || key.strip_suffix("[]") == Some(name))
        .flat_map(|(_, value)| value.split(',').map(|part| part.trim().to_owned()).collect::<Vec<_>>())
        .filter(|value| !value.is_empty())
        .collect()
}

fn value(query: &Option<String>, name: &str) -> Option<String> {
    values(query, name).into_iter().next()
}

/// A 422 `invalid_request_parameters`, WorkOS's answer to a malformed request.
fn invalid(message: &str) -> StandInRefusal {
    StandInRefusal { status: 422, code: "invalid_request_parameters", message: message.to_owned() }
}

fn refusal(refusal: StandInRefusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    workos_error(status, refusal.code, &refusal.message)
}

fn changed(inner: &WorkosStandInState, response: Response) -> Response {
    inner.webhooks.wake();
    response
}

/// One page of `items` (oldest first), WorkOS style.
fn page(
    inner: &WorkosStandInState,
    items: Vec<(String, Value)>,
    query: &Option<String>,
) -> Result<Value, StandInRefusal> {
    let limit = match value(query, "limit") {
        None => 10,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=100).contains(&limit) => limit,
            _ => return Err(invalid("limit must be between 1 and 100.")),
        },
    };
    let limit = inner.controls.page_size(limit);
    let mut items: Vec<(String, Value)> =
        items.into_iter().filter(|(id, _)| !inner.controls.is_left_out_of_lists(id)).collect();
    match value(query, "order").as_deref() {
        Some("asc") => {}
        // WorkOS's `normal` is descending with its cursors reversed; no client here sends it, so it is refused
        // rather than imitated wrongly.
        Some("normal") => return Err(invalid("order=normal is not imitated by the stand-in.")),
        _ => items.reverse(),
    }
    let start = match value(query, "after") {
        Some(after) => items.iter().position(|(id, _)| *id == after).map_or(items.len(), |index| index + 1),
        None => 0,
    };
    let rest = items.get(start..).unwrap_or_default();
    let data: Vec<Value> = rest.iter().take(limit).map(|(_, item)| item.clone()).collect();
    let after = (rest.len() > limit).then(|| rest.get(limit - 1).map(|(id, _)| id.clone())).flatten();
    Ok(json!({ "object": "list", "data": data, "list_metadata": { "before": null, "after": after } }))
}

// ---- events ------------------------------------------------------------------------------------------------------

async fn list_events(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Events, &headers).await {
        return response;
    }
    let parsed = StandInEventsQuery {
        types: values(&query, "events"),
        after: value(&query, "after"),
        range_start: value(&query, "range_start"),
        range_end: value(&query, "range_end"),
        order: value(&query, "order"),
        limit: value(&query, "limit"),
        organization_id: value(&query, "organization_id"),
    };
    // Required by the SDKs (node and python refuse a call without it), and WorkOS's spec answers its absence with
    // this 422.
    if parsed.types.is_empty() {
        let error = json!({ "message": "Validation failed", "errors": [{ "field": "events", "code": "required" }] });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
    }
    let (honour_types, unknown_cursor) = {
        let mut controls = lock(&inner.events_controls);
        controls.queries.push(parsed.clone());
        (controls.honour_types, controls.unknown_cursor)
    };
    let page = lock(&inner.store).events.page(&parsed, honour_types, unknown_cursor);
    match page {
        Ok(page) => Json(json!({ "object": "list", "data": page.data, "list_metadata": { "after": page.after } }))
            .into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "message": error.0 }))).into_response(),
    }
}

// ---- organizations -----------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct OrganizationBody {
    name: Option<String>,
}

async fn list_organizations(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Organizations, &headers).await {
        return response;
    }
    let items = lock(&inner.store).organizations().iter().map(|org| (org.id.clone(), org.to_value())).collect();
    page(&inner, items, &query).map_or_else(refusal, |list| Json(list).into_response())
}

async fn get_organization(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Organizations, &headers).await {
        return response;
    }
    match lock(&inner.store).organization(&id) {
        Some(organization) => Json(organization.to_value()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "message": format!("Organization not found: '{id}'.") })))
            .into_response(),
    }
}

fn organization_name(body: &Bytes) -> Result<String, StandInRefusal> {
    match serde_json::from_slice::<OrganizationBody>(body) {
        Ok(OrganizationBody { name: Some(name) }) if !name.trim().is_empty() => Ok(name.trim().to_owned()),
        _ => Err(invalid("The body must be {\"name\": \"…\"}.")),
    }
}

async fn create_organization(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Organizations, &headers).await {
        return response;
    }
    let name = match organization_name(&body) {
        Ok(name) => name,
        Err(error) => return refusal(error),
    };
    let organization = lock(&inner.store).create_organization(&name);
    changed(&inner, (StatusCode::CREATED, Json(organization.to_value())).into_response())
}

async fn update_organization(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Organizations, &headers).await {
        return response;
    }
    let name = match organization_name(&body) {
        Ok(name) => name,
        Err(error) => return refusal(error),
    };
    let renamed = lock(&inner.store).rename_organization(&id, &name);
    match renamed {
        Ok(organization) => changed(&inner, Json(organization.to_value()).into_response()),
        Err(error) => refusal(error),
    }
}

async fn delete_organization(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Organizations, &headers).await {
        return response;
    }
    let deleted = lock(&inner.store).delete_organization(&id);
    match deleted {
        Ok(()) => changed(&inner, StatusCode::OK.into_response()),
        Err(error) => refusal(error),
    }
}

// ---- memberships -------------------------------------------------------------------------------------------------

/// The REST membership object: the event payload plus `organization_name`.
fn membership_object(store: &Store, membership: &StandInMembership) -> Value {
    let mut object = membership.to_value();
    if let Some(name) = store.organization_name(&membership.organization_id) {
        object["organization_name"] = Value::String(name.to_owned());
    }
    object
}

async fn list_memberships(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    let (user_id, organization_id) = (value(&query, "user_id"), value(&query, "organization_id"));
    if user_id.is_none() && organization_id.is_none() {
        let message = "Either user_id or organization_id is required.";
        return workos_error(StatusCode::BAD_REQUEST, "missing_user_id_or_organization_id", message);
    }
    let mut statuses = Vec::new();
    for raw in values(&query, "statuses") {
        match StandInMembershipStatus::parse(&raw) {
            Some(status) => statuses.push(status),
            None => {
                return workos_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_parameters", "Unknown status.");
            }
        }
    }
    // "By default only active memberships are returned" (§6.2).
    if statuses.is_empty() {
        statuses.push(StandInMembershipStatus::Active);
    }
    let items = {
        let store = lock(&inner.store);
        store
            .memberships()
            .iter()
            .filter(|m| user_id.as_deref().is_none_or(|id| m.user_id == id))
            .filter(|m| organization_id.as_deref().is_none_or(|id| m.organization_id == id))
            .filter(|m| statuses.contains(&m.status))
            .map(|m| (m.id.clone(), membership_object(&store, m)))
            .collect()
    };
    page(&inner, items, &query).map_or_else(refusal, |list| Json(list).into_response())
}

async fn get_membership(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    let store = lock(&inner.store);
    match store.membership(&id) {
        Some(membership) => Json(membership_object(&store, membership)).into_response(),
        None => workos_error(StatusCode::NOT_FOUND, "entity_not_found", "Organization membership not found."),
    }
}

#[derive(Deserialize)]
struct MembershipBody {
    user_id: Option<String>,
    organization_id: Option<String>,
    role_slug: Option<String>,
    role_slugs: Option<Vec<String>>,
}

impl MembershipBody {
    fn roles(&self) -> Result<Vec<String>, StandInRefusal> {
        match (&self.role_slug, &self.role_slugs) {
            (Some(_), Some(_)) => Err(invalid("role_slug and role_slugs are mutually exclusive.")),
            (Some(slug), None) => Ok(vec![slug.clone()]),
            (None, Some(slugs)) => Ok(slugs.clone()),
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn membership_body(body: &Bytes) -> Result<MembershipBody, StandInRefusal> {
    serde_json::from_slice(body).map_err(|_| invalid("The body is not a JSON object."))
}

async fn create_membership(State(inner): State<Arc<WorkosStandInState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    let body = match membership_body(&body) {
        Ok(body) => body,
        Err(error) => return refusal(error),
    };
    let (roles, Some(user_id), Some(organization_id)) = (body.roles(), &body.user_id, &body.organization_id) else {
        return workos_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_parameters",
            "user_id and organization_id are required.",
        );
    };
    let roles = match roles {
        Ok(roles) => roles,
        Err(error) => return refusal(error),
    };
    let mut store = lock(&inner.store);
    match store.add_membership(user_id, organization_id, &roles) {
        Ok(membership) => {
            let object = membership_object(&store, &membership);
            drop(store);
            changed(&inner, (StatusCode::CREATED, Json(object)).into_response())
        }
        Err(error) => refusal(error),
    }
}

async fn update_membership(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    let roles = match membership_body(&body).and_then(|body| body.roles()) {
        Ok(roles) => roles,
        Err(error) => return refusal(error),
    };
    membership_change(&inner, |store| store.set_membership_roles(&id, &roles))
}

async fn deactivate_membership(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    membership_change(&inner, |store| store.deactivate_membership(&id))
}

async fn reactivate_membership(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    membership_change(&inner, |store| store.reactivate_membership(&id))
}

fn membership_change(
    inner: &WorkosStandInState,
    change: impl FnOnce(&mut Store) -> Result<StandInMembership, StandInRefusal>,
) -> Response {
    let mut store = lock(&inner.store);
    match change(&mut store) {
        Ok(membership) => {
            let object = membership_object(&store, &membership);
            drop(store);
            changed(inner, Json(object).into_response())
        }
        Err(error) => refusal(error),
    }
}

async fn delete_membership(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Memberships, &headers).await {
        return response;
    }
    let deleted = lock(&inner.store).delete_membership(&id);
    match deleted {
        Ok(()) => changed(&inner, StatusCode::OK.into_response()),
        Err(error) => refusal(error),
    }
}

// ---- users -------------------------------------------------------------------------------------------------------

async fn get_user(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Users, &headers).await {
        return response;
    }
    match lock(&inner.store).user(&id) {
        Some(user) => Json(user.to_value()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "message": format!("User not found: '{id}'.") }))).into_response(),
    }
}

async fn delete_user(
    State(inner): State<Arc<WorkosStandInState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = admit(&inner, Endpoint::Users, &headers).await {
        return response;
    }
    let deleted = lock(&inner.store).delete_user(&id);
    match deleted {
        Ok(()) => changed(&inner, StatusCode::OK.into_response()),
        Err(error) => refusal(error),
    }
}
