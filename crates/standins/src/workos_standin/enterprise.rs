//! The enterprise features an organization's admins and auditors meet: the Admin Portal (`POST
//! /portal/generate_link` and the page a link opens) and Audit Logs (`POST /audit_logs/events`), as
//! docs/workos.md §7 describes them.
//!
//! A portal link opens a page of the stand-in's own that says which setup (intent) and which organization it was
//! made for, with links back to the app's return and success URLs. Audit Log events are validated the way WorkOS
//! validates them (the required fields, `occurred_at` a date-time, the metadata limits, a known organization),
//! answered `200 {"success": true}`, and recorded once per `Idempotency-Key`: a later request with the same key,
//! whatever its body, gets the first answer and records nothing, as WorkOS's idempotency promises ("Each subsequent
//! request matching this unique string will return the same response"). Because that hides a client sending an
//! event twice,
//! the stand-in also counts, per `Idempotency-Key`, every send it answered with success, repeats included. Tests read
//! what was received and can make the endpoint fail (injected failures through the usual controls, or "down" until
//! told otherwise).
//!
//! WorkOS accepts an event only for an action configured in its dashboard, with the target types its schema lists
//! (400 `invalid_audit_log_event` otherwise). The stand-in starts with the schemas authbridge's README tells
//! operators to configure ([`CONFIGURED_AUDIT_LOG_SCHEMAS`]), so an event the app sends that an operator following
//! the README would not have configured is refused here too; tests can remove a schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use super::routes::{has_api_key, workos_error};
use super::{Endpoint, WorkosStandInState, pages};
use crate::lock;

/// How long a portal link works (WorkOS: five minutes).
const PORTAL_LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// The setups a portal link can be made for.
pub const PORTAL_INTENTS: [&str; 7] =
    ["sso", "dsync", "audit_logs", "log_streams", "domain_verification", "certificate_renewal", "bring_your_own_key"];

/// The Audit Log actions configured "in the dashboard" when the stand-in starts, with the target types of each:
/// what authbridge's README tells operators to configure.
pub const CONFIGURED_AUDIT_LOG_SCHEMAS: [(&str, &[&str]); 8] = [
    ("todo.created", &["todo"]),
    ("todo.renamed", &["todo"]),
    ("todo.completed", &["todo"]),
    ("todo.reopened", &["todo"]),
    ("todo.deleted", &["todo"]),
    ("organization.switched", &["organization"]),
    ("user.signed_in", &["organization"]),
    ("user.impersonated_request", &["request"]),
];

/// A portal link the stand-in issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInPortalLink {
    pub token: String,
    pub organization_id: String,
    pub intent: String,
    pub return_url: Option<String>,
    pub success_url: Option<String>,
    created: Instant,
}

/// An Audit Log event as the stand-in accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct StandInAuditEvent {
    pub idempotency_key: Option<String>,
    pub organization_id: String,
    pub event: Value,
}

#[derive(Default)]
pub struct Enterprise {
    links: Vec<StandInPortalLink>,
    audit_events: Vec<StandInAuditEvent>,
    /// Every `POST /audit_logs/events` that reached the handler (after injected failures), by key.
    audit_requests: Vec<Option<String>>,
    /// Sends answered `200 {"success": true}`, by `Idempotency-Key`, repeats included (keyless sends are never
    /// deduplicated, so `audit_events` shows each of them already).
    audit_accepted: HashMap<String, usize>,
    /// The first answer to each `Idempotency-Key` that got past the outage and the API key check, given again to
    /// every later request with that key.
    audit_answers: HashMap<String, (StatusCode, Value)>,
    audit_down: bool,
    /// Actions whose schema a test removed from the dashboard.
    audit_removed: Vec<String>,
    /// Actions whose schema versions a test set (each edit in the dashboard adds a version): the target types of
    /// version 1, 2, …; the others have only version 1, as configured.
    audit_versions: HashMap<String, Vec<Vec<String>>>,
    /// The Admin Portal's custom domain (WorkOS's *Custom domains*); `None`: links on the stand-in's own origin.
    pub(crate) portal_domain: Option<url::Url>,
}

impl Enterprise {
    pub fn links(&self) -> &[StandInPortalLink] {
        &self.links
    }

    pub fn audit_events(&self) -> &[StandInAuditEvent] {
        &self.audit_events
    }

    pub fn audit_requests(&self) -> &[Option<String>] {
        &self.audit_requests
    }

    pub fn audit_accepted(&self) -> &HashMap<String, usize> {
        &self.audit_accepted
    }

    pub fn set_audit_down(&mut self, down: bool) {
        self.audit_down = down;
    }

    pub fn remove_audit_schema(&mut self, action: &str) {
        self.audit_removed.push(action.to_owned());
    }

    pub fn set_audit_schema_versions(&mut self, action: &str, versions: Vec<Vec<String>>) {
        self.audit_versions.insert(action.to_owned(), versions);
    }

    /// The target types version `version` of `action`'s schema allows, when that version exists.
    fn audit_schema(&self, action: &str, version: u64) -> Option<Vec<&str>> {
        if self.audit_removed.iter().any(|removed| removed == action) {
            return None;
        }
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        if let Some(versions) = self.audit_versions.get(action) {
            return versions.get(index).map(|targets| targets.iter().map(String::as_str).collect());
        }
        let configured = CONFIGURED_AUDIT_LOG_SCHEMAS.iter().find(|(configured, _)| *configured == action);
        configured.filter(|_| index == 0).map(|(_, targets)| targets.to_vec())
    }
}

pub fn router() -> Router<Arc<WorkosStandInState>> {
    Router::new()
        .route("/portal/generate_link", post(generate_link))
        .route("/portal/{token}", get(portal_page))
        .route("/audit_logs/events", post(create_audit_event))
}

async fn generate_link(State(inner): State<Arc<WorkosStandInState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::Portal).await {
        return response;
    }
    if !has_api_key(&inner, &headers) {
        return workos_error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key.");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "The body must be a JSON object.");
    };
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let Some(organization_id) = text("organization") else {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "organization is required.");
    };
    let intent = text("intent").unwrap_or_default();
    if !PORTAL_INTENTS.contains(&intent.as_str()) {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "intent must be one of the Admin Portal's intents.");
    }
    for name in ["return_url", "success_url"] {
        if let Some(url) = text(name)
            && !url::Url::parse(&url).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            return message(StatusCode::UNPROCESSABLE_ENTITY, &format!("{name} must be an http(s) URL."));
        }
    }
    if !lock(&inner.store).is_known_organization(&organization_id) {
        return message(StatusCode::NOT_FOUND, &format!("Organization not found: '{organization_id}'."));
    }
    let token = Uuid::new_v4().simple().to_string();
    let link = StandInPortalLink {
        token: token.clone(),
        organization_id,
        intent,
        return_url: text("return_url"),
        success_url: text("success_url"),
        created: Instant::now(),
    };
    let mut enterprise = lock(&inner.enterprise);
    enterprise.links.push(link);
    let base = enterprise.portal_domain.clone().unwrap_or_else(|| inner.base_url.clone());
    drop(enterprise);
    let url = base.join(&format!("portal/{token}")).map(|url| url.to_string()).unwrap_or_default();
    (StatusCode::CREATED, Json(json!({ "link": url }))).into_response()
}

async fn portal_page(State(inner): State<Arc<WorkosStandInState>>, Path(token): Path<String>) -> Response {
    let link = lock(&inner.enterprise).links.iter().find(|link| link.token == token).cloned();
    let Some(link) = link.filter(|link| link.created.elapsed() < PORTAL_LINK_TTL) else {
        return pages::message(
            StatusCode::NOT_FOUND,
            "This Admin Portal link has expired",
            "Portal links work for five minutes. Go back to the application and open the portal again.",
            None,
        );
    };
    let organization = lock(&inner.store).organization_name(&link.organization_id).map(str::to_owned);
    let organization = organization.unwrap_or_else(|| link.organization_id.clone());
    pages::portal(&link, &organization)
}

async fn create_audit_event(State(inner): State<Arc<WorkosStandInState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::AuditLogs).await {
        return response;
    }
    if !has_api_key(&inner, &headers) {
        return workos_error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key.");
    }
    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let mut enterprise = lock(&inner.enterprise);
    enterprise.audit_requests.push(key.clone());
    if enterprise.audit_down {
        return workos_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service Unavailable");
    }
    // A key already answered gets that answer again, whatever the body ("Each subsequent request matching this
    // unique string will return the same response", WorkOS's API reference): the key alone identifies the event.
    let remembered = key.as_ref().and_then(|key| enterprise.audit_answers.get(key).cloned());
    let (status, answer) = match remembered {
        Some(answer) => answer,
        None => {
            let answer = judge_audit_event(&inner, &mut enterprise, &body, key.clone());
            if let Some(key) = &key {
                enterprise.audit_answers.insert(key.clone(), answer.clone());
            }
            answer
        }
    };
    if let Some(key) = &key
        && status == StatusCode::OK
    {
        *enterprise.audit_accepted.entry(key.clone()).or_default() += 1;
    }
    (status, Json(answer)).into_response()
}

/// WorkOS's answer to an event it has not seen under this key, recording it when it is accepted.
fn judge_audit_event(
    inner: &WorkosStandInState,
    enterprise: &mut Enterprise,
    body: &[u8],
    key: Option<String>,
) -> (StatusCode, Value) {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return validation_failed("body", "required");
    };
    if let Some(field) = missing_field(&body) {
        return validation_failed(field, "required");
    }
    let event = &body["event"];
    if event["occurred_at"].as_str().and_then(super::sdk_time).is_none() {
        return validation_failed("event.occurred_at", "invalid_date");
    }
    if let Some(field) = audit_metadata_fault(event) {
        return validation_failed(&field, "invalid_metadata");
    }
    let organization_id = body["organization_id"].as_str().unwrap_or_default().to_owned();
    if !lock(&inner.store).is_known_organization(&organization_id) {
        return (StatusCode::NOT_FOUND, json!({ "message": format!("Organization not found: '{organization_id}'.") }));
    }
    if let Some(path) = schema_mismatch(enterprise, event) {
        let body = json!({
            "message": "Invalid Audit Log event.",
            "code": "invalid_audit_log_event",
            "errors": [{ "instancePath": path }],
        });
        return (StatusCode::BAD_REQUEST, body);
    }
    enterprise.audit_events.push(StandInAuditEvent { idempotency_key: key, organization_id, event: event.clone() });
    (StatusCode::OK, json!({ "success": true }))
}

/// The first metadata rule `event` breaks, as the field at fault (`event.actor.metadata.<key>`…), or `None`.
/// WorkOS: "Metadata objects have a limit of 50 keys. Key names can be up to 40 characters long, and values can be up
/// to 500 characters long" (docs `/audit-logs/metadata-schema`), for the event's, the actor's and each target's
/// `metadata`; the values are flat, `Record<string, string | number | boolean>` (workos-node
/// `src/audit-logs/interfaces/audit-log-event.interface.ts`), so an object, array or null value is refused. Keys
/// are held to `^[a-zA-Z0-9_-]{0,40}$`, the pattern the Audit Logs review read in WorkOS's API reference (the docs
/// above give the length only). Public so that authbridge's own tests hold its events to the same rules.
pub fn audit_metadata_fault(event: &Value) -> Option<String> {
    const MAX_KEYS: usize = 50;
    const MAX_KEY_CHARS: usize = 40;
    const MAX_VALUE_CHARS: usize = 500;
    let mut objects = vec![("event.metadata".to_owned(), &event["metadata"])];
    objects.push(("event.actor.metadata".to_owned(), &event["actor"]["metadata"]));
    for (index, target) in event["targets"].as_array().into_iter().flatten().enumerate() {
        objects.push((format!("event.targets.{index}.metadata"), &target["metadata"]));
    }
    for (field, metadata) in objects {
        // Absent (indexing a missing field gives null): nothing to check.
        if metadata.is_null() {
            continue;
        }
        let Some(metadata) = metadata.as_object() else {
            return Some(field);
        };
        if metadata.len() > MAX_KEYS {
            return Some(field);
        }
        for (key, value) in metadata {
            let key_ok = key.chars().count() <= MAX_KEY_CHARS
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let value_ok = match value {
                Value::String(text) => text.chars().count() <= MAX_VALUE_CHARS,
                Value::Number(_) | Value::Bool(_) => true,
                Value::Null | Value::Array(_) | Value::Object(_) => false,
            };
            if !key_ok || !value_ok {
                return Some(format!("{field}.{key}"));
            }
        }
    }
    None
}

/// The first required field the body lacks (docs/workos.md §7.2).
fn missing_field(body: &Value) -> Option<&'static str> {
    let text = |value: &Value| value.as_str().is_some_and(|text| !text.is_empty());
    let event = &body["event"];
    if !text(&body["organization_id"]) {
        return Some("organization_id");
    }
    for (field, value) in [
        ("event.action", &event["action"]),
        ("event.occurred_at", &event["occurred_at"]),
        ("event.actor.id", &event["actor"]["id"]),
        ("event.actor.type", &event["actor"]["type"]),
        ("event.context.location", &event["context"]["location"]),
    ] {
        if !text(value) {
            return Some(field);
        }
    }
    let targets_ok = event["targets"]
        .as_array()
        .is_some_and(|targets| targets.iter().all(|target| text(&target["id"]) && text(&target["type"])));
    (!targets_ok).then_some("event.targets")
}

/// Where `event` departs from the schema configured for its action: no schema at all, or a target type the schema
/// does not list.
/// WorkOS validates an event against the version of its action's schema that the event names (`version`;
/// WorkOS docs, *Editing events*: an edit in the dashboard creates a new version, and events must name it to use
/// it). An event that names none is read as version 1.
fn schema_mismatch(enterprise: &Enterprise, event: &Value) -> Option<&'static str> {
    let action = event["action"].as_str().unwrap_or_default();
    let version = match &event["version"] {
        Value::Null => 1,
        version => match version.as_u64() {
            Some(version) => version,
            None => return Some("/version"),
        },
    };
    let Some(target_types) = enterprise.audit_schema(action, version) else {
        let action_known = enterprise.audit_schema(action, 1).is_some();
        return Some(if action_known { "/version" } else { "/action" });
    };
    let targets = event["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let unknown = targets.iter().any(|target| !target_types.contains(&target["type"].as_str().unwrap_or_default()));
    unknown.then_some("/targets")
}

/// WorkOS's 422 (docs/workos.md §7.2): `code` says what is wrong with `field`.
fn validation_failed(field: &str, code: &str) -> (StatusCode, Value) {
    let body = json!({ "message": "Validation failed.", "errors": [{ "code": code, "field": field }] });
    (StatusCode::UNPROCESSABLE_ENTITY, body)
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}
