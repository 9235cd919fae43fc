//! What the lifecycle tests share: WorkOS-shaped events made by hand (for the orders and faults the stand-in
//! would never produce on its own), signed deliveries to the app, the database as ground truth, and the
//! consumer built the way the app builds it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use authbridge::db::Database;
use authbridge::lifecycle::Lifecycle;
use authbridge::lifecycle::consumer::{ConsumerOptions, EventsConsumer};
use authbridge::lifecycle::webhook::sign;
use authbridge::workos::WorkosClient;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::app::{TestApp, WEBHOOK_SECRET};
use super::browser::TestResponse;

pub fn ts(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a formattable time")
}

/// A fixed moment plus `seconds`: versions in hand-made events, far enough from now not to depend on the clock.
pub fn at(seconds: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-01-15 12:00 UTC) + time::Duration::seconds(seconds)
}

pub fn event_id() -> String {
    format!("event_{}", uuid::Uuid::new_v4().simple())
}

/// An event envelope with a fresh id, created at `created_at`.
pub fn event(event_type: &str, data: Value, created_at: OffsetDateTime) -> Value {
    json!({ "object": "event", "id": event_id(), "event": event_type, "data": data, "created_at": ts(created_at) })
}

pub fn membership(id: &str, user_id: &str, organization_id: &str, status: &str, role: &str, updated: i64) -> Value {
    json!({
        "object": "organization_membership", "id": id, "user_id": user_id, "organization_id": organization_id,
        "status": status, "role": { "slug": role }, "custom_attributes": {}, "directory_managed": false,
        "created_at": ts(at(0)), "updated_at": ts(at(updated)),
    })
}

pub fn organization(id: &str, name: &str, updated: i64) -> Value {
    json!({ "object": "organization", "id": id, "name": name, "domains": [], "metadata": {}, "external_id": null,
            "created_at": ts(at(0)), "updated_at": ts(at(updated)) })
}

pub fn user(id: &str, email: &str, updated: i64) -> Value {
    json!({ "object": "user", "id": id, "email": email, "email_verified": true, "first_name": null,
            "last_name": null, "profile_picture_url": null, "created_at": ts(at(0)), "updated_at": ts(at(updated)) })
}

pub fn session(id: &str, user_id: &str) -> Value {
    json!({ "object": "session", "id": id, "user_id": user_id, "status": "revoked", "auth_method": "password",
            "created_at": ts(at(0)), "updated_at": ts(at(1)) })
}

impl TestApp {
    /// `POST /webhooks/workos` with exactly these bytes and this `WorkOS-Signature` (none when `None`).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<String>) -> TestResponse {
        let mut request = reqwest::Client::new()
            .post(self.base_url.join("/webhooks/workos").expect("url"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("WorkOS-Signature", signature);
        }
        let response = request.send().await.expect("the app answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        TestResponse { status, headers, body: response.text().await.expect("a body") }
    }

    /// `event` delivered as WorkOS would: serialised once, signed now with the app's secret.
    pub async fn deliver(&self, event: &Value) -> TestResponse {
        let body = serde_json::to_vec(event).expect("json");
        let signature = sign(WEBHOOK_SECRET, SystemTime::now(), &body);
        self.post_webhook(&body, Some(signature)).await
    }

    /// Delivers and insists it was accepted, returning the outcome the app reports.
    pub async fn deliver_ok(&self, event: &Value) -> String {
        let response = self.deliver(event).await;
        assert_eq!(response.status, 200, "{}: {}", event["event"], response.body);
        response.json()["outcome"].as_str().expect("an outcome").to_owned()
    }

    pub async fn query_scalar_i64(&self, sql: &'static str, bind: &str) -> i64 {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar(sql).bind(bind).fetch_one(&mut conn).await.expect("query")
    }

    /// Rows in the idempotency ledger.
    pub async fn ledger(&self) -> Vec<(String, String, String, String)> {
        let mut conn = self.db.connect().await;
        sqlx::query_as("SELECT id, event_type, source, outcome FROM authbridge.applied_events ORDER BY applied_at, id")
            .fetch_all(&mut conn)
            .await
            .expect("ledger")
    }

    /// A membership row as stored: (status, role, deleted).
    pub async fn membership_row(&self, id: &str) -> Option<(String, Option<String>, bool)> {
        let mut conn = self.db.connect().await;
        sqlx::query_as(
            "SELECT status, role, deleted_at IS NOT NULL FROM authbridge.organization_memberships WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .expect("membership")
    }

    /// The lifecycle as the app builds it (its own pool, the same database and WorkOS), for driving the consumer.
    pub fn lifecycle(&self) -> Arc<Lifecycle> {
        let config = self.config.database.as_ref().expect("the app runs the lifecycle");
        let database = Database::connect_lazy(config).expect("a pool");
        Arc::new(Lifecycle::new(
            database,
            WorkosClient::new(self.config.workos().expect("WorkOS is the provider")).expect("a WorkOS client"),
        ))
    }

    /// An InsForge client as the app's, for calling InsForge the way the app would (as if the app skipped a check).
    pub fn insforge_client(&self) -> authbridge::insforge::client::InsforgeClient {
        authbridge::insforge::client::InsforgeClient::new(&self.config.insforge).expect("an InsForge client")
    }

    /// A consumer of the stand-in's Events API over the app's database, as a replica would run it.
    pub fn consumer(&self, options: ConsumerOptions) -> EventsConsumer {
        EventsConsumer::new(self.lifecycle(), None, options)
    }

    /// What `user_id` may do to the todos table, as InsForge would run it: role `authenticated`, the user's claims in
    /// `request.jwt.claims`, everything rolled back afterwards.
    pub async fn as_authenticated(&self, user_id: &str) -> SqlAccess {
        use sqlx::Connection;
        let mut conn = self.db.connect().await;
        let claims = json!({ "sub": user_id, "role": "authenticated" }).to_string();
        let mut tx = conn.begin().await.expect("transaction");
        sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await.expect("role");
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(&claims)
            .execute(&mut *tx)
            .await
            .expect("claims");
        let visible: i64 =
            sqlx::query_scalar("SELECT count(*) FROM public.todos").fetch_one(&mut *tx).await.expect("count");
        let updated = sqlx::query("UPDATE public.todos SET is_complete = NOT is_complete")
            .execute(&mut *tx)
            .await
            .expect("update")
            .rows_affected();
        let deleted = sqlx::query("DELETE FROM public.todos").execute(&mut *tx).await.expect("delete").rows_affected();
        let inserted = sqlx::query("INSERT INTO public.todos (title) VALUES ('written in SQL')")
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(|error| {
                error.as_database_error().and_then(|e| e.code()).map(|code| code.into_owned()).unwrap_or_default()
            });
        tx.rollback().await.expect("rollback");
        SqlAccess { visible, updated, deleted, inserted }
    }
}

/// What a user could do in SQL: rows seen, updated and deleted, and whether an insert was allowed (else its
/// SQLSTATE).
#[derive(Debug, PartialEq, Eq)]
pub struct SqlAccess {
    pub visible: i64,
    pub updated: u64,
    pub deleted: u64,
    pub inserted: Result<(), String>,
}

/// Waits until `check` holds, up to `limit`; `false` if it never did.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the app has recorded the stand-in's latest event of `event_type` (delivered by webhook).
pub async fn delivered(app: &TestApp, event_type: &str) {
    let event = app.workos.events().into_iter().rev().find(|event| event.event_type == event_type).expect("emitted");
    let arrived =
        eventually(Duration::from_secs(10), || async { app.ledger().await.iter().any(|(id, ..)| *id == event.id) })
            .await;
    assert!(arrived, "the {event_type} webhook was not applied");
}

/// The organization ids of a `GET /api/organizations` answer.
pub fn organization_ids(response: &TestResponse) -> Vec<String> {
    assert_eq!(response.status, 200, "{}", response.body);
    response
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|org| org["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub const ORGANIZATIONS: &str = "/api/organizations";
