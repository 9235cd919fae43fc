//! The WorkOS stand-in's enterprise lifecycle, over real HTTP, as docs/workos.md §3–§6 describe WorkOS: the Events
//! API with cursors, organizations and memberships with their statuses and events, user deletion's event sequence,
//! and signed webhook delivery with retries, holding, reordering and duplicates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use standins::StandInSecret;
use standins::workos_standin::{
    ACME_ORGANIZATION_ID, Endpoint, StandInWebhookOrder, UnknownCursor, WorkosStandIn, WorkosStandInOptions,
};
use url::Url;

const SECRET: &str = "whsec_standin_test";

async fn start() -> WorkosStandIn {
    WorkosStandIn::start(WorkosStandInOptions::default()).await.expect("the stand-in starts")
}

async fn call(workos: &WorkosStandIn, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, workos.base_url().join(path).expect("url"))
        .bearer_auth(workos.api_key().expose());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the stand-in answers");
    let status = response.status();
    let text = response.text().await.expect("body");
    (StatusCode::from_u16(status.as_u16()).expect("status"), serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().expect("data").iter().map(|item| item["id"].as_str().expect("id").to_owned()).collect()
}

/// What a receiver got: the `WorkOS-Signature` header and the raw body.
type Delivered = (String, Vec<u8>);

/// A webhook endpoint that records what it receives and answers each delivery with the next status planned.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Delivered>>>,
    plan: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(&self) -> Url {
        let this = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let this = this.clone();
            async move {
                let signature =
                    headers.get("workos-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                this.received.lock().expect("lock").push((signature, body.to_vec()));
                let mut plan = this.plan.lock().expect("lock");
                let status = if plan.is_empty() { 200 } else { plan.remove(0) };
                StatusCode::from_u16(status).expect("status")
            }
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().expect("addr"))).expect("url");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }

    fn events(&self) -> Vec<(String, Value)> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .map(|(signature, body)| (signature.clone(), serde_json::from_slice(body).expect("a JSON event")))
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.received.lock().expect("lock").len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.events()
    }
}

/// Checks `t=<ms>, v1=<hex>` independently: HMAC-SHA256 over `<t>.<body>` with the secret.
fn verify(signature: &str, body: &[u8]) -> u128 {
    let (t, v1) = signature.split_once(", ").expect("t=…, v1=…");
    let t = t.strip_prefix("t=").expect("t=");
    let v1 = v1.strip_prefix("v1=").expect("v1=");
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, &[t.as_bytes(), b".", body].concat());
    let expected: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(v1, expected, "the signature is over <t>.<raw body>");
    t.parse().expect("milliseconds")
}

#[tokio::test]
async fn the_events_api_pages_with_cursors_in_either_order_and_filters_types_given_either_way() {
    let workos = start().await;
    let first = workos.create_organization("One");
    workos.create_organization("Two");
    workos.create_organization("Three");

    let (status, page) = call(&workos, Method::GET, "events?events=organization.created&order=asc&limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"][0]["data"]["id"], json!(ACME_ORGANIZATION_ID), "the seed's history comes first");
    assert_eq!(page["data"][1]["data"]["id"], json!(first.id));
    let after = page["list_metadata"]["after"].as_str().expect("more to come").to_owned();
    assert_eq!(after, page["data"][1]["id"].as_str().expect("id"));
    let (_, next) = call(
        &workos,
        Method::GET,
        &format!("events?events=organization.created&order=asc&limit=2&after={after}"),
        None,
    )
    .await;
    assert_eq!(next["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(next["list_metadata"]["after"], Value::Null, "the end");

    // Repeated keys, as node and go send them, mean the same as a comma list.
    let (_, repeated) =
        call(&workos, Method::GET, "events?events=organization.created&events=user.created&order=asc&limit=100", None)
            .await;
    let (_, comma) =
        call(&workos, Method::GET, "events?events=organization.created,user.created&order=asc&limit=100", None).await;
    assert_eq!(ids(&repeated), ids(&comma));
    assert_eq!(ids(&repeated).len(), 4 + 3, "four organizations, three users");

    // Newest first unless asked otherwise, as WorkOS.
    let (_, default) = call(&workos, Method::GET, "events?events=organization.created", None).await;
    assert_eq!(default["data"][0]["data"]["name"], "Three");

    // Event ids are opaque: nothing about them sorts.
    assert!(ids(&comma).iter().all(|id| id.starts_with("event_")));

    let (status, _) = call(&workos, Method::GET, "events?events=organization.created&limit=500", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The type filter is required, as the SDKs and WorkOS's spec have it.
    for unfiltered in ["events?order=asc&limit=10", "events?events=&order=asc"] {
        let (status, refusal) = call(&workos, Method::GET, unfiltered, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{unfiltered}");
        assert_eq!(refusal["errors"][0]["field"], "events", "{unfiltered}");
    }
    let both = format!("events?events=organization.created&after={after}&range_start=2026-01-01T00:00:00.000Z");
    let (status, _) = call(&workos, Method::GET, &both, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a cursor or a time range, never both");
    let unauthenticated = reqwest::get(workos.base_url().join("events").expect("url")).await.expect("answer");
    assert_eq!(unauthenticated.status().as_u16(), 401);
}

#[tokio::test]
async fn the_events_api_misbehaves_on_request() {
    let workos = start().await;
    workos.honour_events_type_filter(false);
    let (_, page) = call(&workos, Method::GET, "events?events=organization.deleted&order=asc&limit=100", None).await;
    assert!(!ids(&page).is_empty(), "the filter is ignored");

    workos.honour_events_type_filter(true);
    let (_, page) = call(&workos, Method::GET, "events?events=organization.created&order=asc&limit=1", None).await;
    let cursor = page["data"][0]["id"].as_str().expect("id").to_owned();
    workos.forget_event_cursors();
    let (_, restarted) = call(
        &workos,
        Method::GET,
        &format!("events?events=organization.created&order=asc&limit=1&after={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&restarted), std::slice::from_ref(&cursor), "an unknown cursor starts from the beginning");
    workos.set_unknown_event_cursor(UnknownCursor::Refuse);
    let (status, body) =
        call(&workos, Method::GET, &format!("events?events=organization.created&after={cursor}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn memberships_list_active_ones_unless_asked_and_change_as_documented() {
    let workos = start().await;
    let alice = "user_standin_alice";
    let (status, list) =
        call(&workos, Method::GET, &format!("user_management/organization_memberships?user_id={alice}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let membership = list["data"][0].clone();
    assert_eq!(
        (membership["status"].as_str(), membership["organization_name"].as_str()),
        (Some("active"), Some("Acme"))
    );
    let id = membership["id"].as_str().expect("id").to_owned();

    let (status, deactivated) =
        call(&workos, Method::PUT, &format!("user_management/organization_memberships/{id}/deactivate"), None).await;
    assert_eq!((status, deactivated["status"].as_str()), (StatusCode::OK, Some("inactive")));
    assert!(deactivated["updated_at"].as_str() > membership["updated_at"].as_str(), "updated_at moves");
    let (_, active_only) =
        call(&workos, Method::GET, &format!("user_management/organization_memberships?user_id={alice}"), None).await;
    assert!(ids(&active_only).is_empty(), "by default only active memberships are listed");
    for statuses in ["statuses=active,inactive,pending", "statuses=active&statuses=inactive"] {
        let (_, all) = call(
            &workos,
            Method::GET,
            &format!("user_management/organization_memberships?user_id={alice}&{statuses}"),
            None,
        )
        .await;
        assert_eq!(ids(&all), std::slice::from_ref(&id), "{statuses}");
    }

    let (status, again) = call(
        &workos,
        Method::POST,
        "user_management/organization_memberships",
        Some(json!({ "user_id": alice, "organization_id": ACME_ORGANIZATION_ID, "role_slug": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (again["id"].as_str(), again["status"].as_str()),
        (Some(id.as_str()), Some("active")),
        "reactivated, same id"
    );
    let (status, _) = call(
        &workos,
        Method::PUT,
        &format!("user_management/organization_memberships/{id}"),
        Some(json!({ "role_slug": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        call(&workos, Method::DELETE, &format!("user_management/organization_memberships/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&workos, Method::GET, &format!("user_management/organization_memberships/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&workos, Method::GET, "user_management/organization_memberships", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("missing_user_id_or_organization_id")));

    // Deactivated, reactivated, role changed, deleted (no session of Alice's was active to revoke).
    let types: Vec<String> = workos.events().iter().rev().take(4).map(|event| event.event_type.clone()).rev().collect();
    assert_eq!(
        types,
        [
            "organization_membership.updated",
            "organization_membership.updated",
            "organization_membership.updated",
            "organization_membership.deleted"
        ]
    );
}

#[tokio::test]
async fn organizations_can_be_read_created_renamed_and_deleted() {
    let workos = start().await;
    let (status, created) = call(&workos, Method::POST, "organizations", Some(json!({ "name": "Globex" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, renamed) =
        call(&workos, Method::PUT, &format!("organizations/{id}"), Some(json!({ "name": "Globex Corp" }))).await;
    assert_eq!(renamed["name"], "Globex Corp");
    let (_, fetched) = call(&workos, Method::GET, &format!("organizations/{id}"), None).await;
    assert_eq!(fetched["name"], "Globex Corp");
    let (_, list) = call(&workos, Method::GET, "organizations?limit=1&order=asc", None).await;
    assert_eq!(ids(&list), [ACME_ORGANIZATION_ID]);
    assert!(list["list_metadata"]["after"].is_string());
    assert_eq!(call(&workos, Method::DELETE, &format!("organizations/{id}"), None).await.0, StatusCode::OK);
    let (status, missing) = call(&workos, Method::GET, &format!("organizations/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing["message"].as_str().is_some_and(|m| m.contains("Organization not found")));
    let types: Vec<String> = workos.events().iter().rev().take(3).map(|event| event.event_type.clone()).collect();
    assert_eq!(types, ["organization.deleted", "organization.updated", "organization.created"]);
}

#[tokio::test]
async fn deleting_a_user_revokes_sessions_then_deletes_memberships_then_the_user() {
    let workos = start().await;
    let bob = "user_standin_bob";
    workos.mint_access_token(bob, Duration::from_secs(60));
    let before = workos.events().len();
    let (status, _) = call(&workos, Method::DELETE, &format!("user_management/users/{bob}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<String> = workos.events()[before..].iter().map(|event| event.event_type.clone()).collect();
    assert_eq!(types, ["session.revoked", "organization_membership.deleted", "user.deleted"]);
    assert_eq!(
        call(&workos, Method::GET, &format!("user_management/users/{bob}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(workos.calls(Endpoint::Users), 2);
}

#[tokio::test]
async fn webhooks_are_signed_over_the_raw_body_and_only_events_after_registration_are_sent() {
    let workos = start().await;
    let receiver = Receiver::default();
    workos.register_webhook_endpoint(receiver.start().await, StandInSecret::new(SECRET));
    let organization = workos.create_organization("Initech");
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1, "the seed history is not sent: {received:?}");
    let (signature, event) = &received[0];
    let raw = receiver.received.lock().expect("lock")[0].1.clone();
    let t = verify(signature, &raw);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
    assert!(now.abs_diff(t) < 10_000, "t is the time of signing, in milliseconds");
    assert_eq!(event["object"], "event");
    assert_eq!(event["event"], "organization.created");
    assert_eq!(event["data"]["id"], json!(organization.id));
    assert_eq!(event["id"], json!(workos.events().last().map(|e| e.id.clone())));
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_body_and_signature() {
    let workos = start().await;
    let receiver = Receiver::default();
    *receiver.plan.lock().expect("lock") = vec![503, 500];
    workos.set_webhook_retry_delays(vec![Duration::from_millis(100); 3]);
    workos.register_webhook_endpoint(receiver.start().await, StandInSecret::new(SECRET));
    workos.create_organization("Retried");
    let received = receiver.wait_for(3).await;
    assert_eq!(received.len(), 3, "two failures, then success");
    assert!(received.windows(2).all(|pair| pair[0] == pair[1]), "identical each time");
    let attempts = workos.webhook_attempts();
    assert_eq!(
        attempts.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(),
        [(1, Some(503)), (2, Some(500)), (3, Some(200))]
    );
}

#[tokio::test]
async fn held_deliveries_are_released_out_of_order_and_duplicated_on_request() {
    let workos = start().await;
    let receiver = Receiver::default();
    workos.register_webhook_endpoint(receiver.start().await, StandInSecret::new(SECRET));
    workos.hold_webhooks();
    let first = workos.create_organization("First");
    workos.rename_organization(&first.id, "Second").expect("renamed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while workos.held_webhooks() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(receiver.events().is_empty(), "nothing sent while held");
    workos.duplicate_next_webhooks(1);
    workos.release_held_webhooks(StandInWebhookOrder::Reversed).await;
    let received = receiver.wait_for(3).await;
    let types: Vec<&str> = received.iter().map(|(_, event)| event["event"].as_str().expect("type")).collect();
    assert_eq!(types, ["organization.updated", "organization.updated", "organization.created"]);
}
