//! Audit Logs for the customer: organization todo changes, switches, sign-ins into an organization and impersonated
//! requests become WorkOS Audit Log events, written to an outbox in the same request and delivered in the
//! background with a stable `Idempotency-Key`. A WorkOS outage slows no request and loses no event: after it, each
//! event is delivered exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use standins::workos_standin::{ACME_ORGANIZATION_ID, Endpoint};

use crate::helpers::app::{AppOptions, TestApp, spawn_app_with};
use crate::helpers::browser::Browser;
use crate::helpers::lifecycle::eventually;
use crate::helpers::logs::captured;
use crate::helpers::organizations::{ADMIN, AUTHOR, cast, cast_app, create, id_of};

async fn outbox(app: &TestApp) -> Vec<(String, String, bool, bool)> {
    let mut conn = app.db.connect().await;
    sqlx::query_as(
        "SELECT idempotency_key::text, event->>'action', delivered_at IS NOT NULL, failed_at IS NOT NULL \
         FROM authbridge.audit_log_outbox ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox")
}

/// The cast's app, its author signed in, and the API path of a todo they just made in Acme, titled `title`.
async fn author_with_an_acme_todo(title: &str) -> (TestApp, Browser, String) {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let id = id_of(&create(&bob, title, Some(ACME_ORGANIZATION_ID)).await);
    (app, bob, format!("/api/todos/{id}"))
}

/// The actions of the todo events in the outbox, in the order they were written.
async fn todo_actions(app: &TestApp) -> Vec<String> {
    outbox(app).await.into_iter().map(|row| row.1).filter(|action| action.starts_with("todo.")).collect()
}

/// A create sent again with its id is one todo and one `todo.created` event. The id of another member's todo, which
/// the sender can see, is not answered as the sender's create.
#[tokio::test]
async fn a_create_sent_again_is_one_event_and_another_members_todo_id_is_taken() {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let alice = app.signed_in(ADMIN).await;
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({ "id": id, "title": "Plan the offsite", "organization_id": ACME_ORGANIZATION_ID });
    for _ in 0..2 {
        let created = bob.api(Method::POST, "/api/todos", Some(body.clone())).await;
        assert_eq!((created.status, created.json()["id"].as_str()), (201, Some(id.as_str())), "{}", created.body);
    }
    assert_eq!(alice.get(&format!("/api/todos/{id}")).await.status, 200, "Alice, an admin, sees Bob's todo");
    let taken = alice.api(Method::POST, "/api/todos", Some(body)).await;
    assert_eq!((taken.status, taken.error_code()), (409, "id_taken".to_owned()), "{}", taken.body);
    let created: Vec<String> =
        outbox(&app).await.into_iter().map(|row| row.1).filter(|action| action == "todo.created").collect();
    assert_eq!(created.len(), 1, "one todo, one event");

    // Deleted, then created again under the same id: a todo of its own, and an event of its own.
    assert_eq!(bob.api(Method::DELETE, &format!("/api/todos/{id}"), None).await.status, 204);
    let again = json!({ "id": id, "title": "Plan the offsite", "organization_id": ACME_ORGANIZATION_ID });
    assert_eq!(bob.api(Method::POST, "/api/todos", Some(again)).await.status, 201);
    let created = outbox(&app).await.into_iter().filter(|row| row.1 == "todo.created").count();
    assert_eq!(created, 2, "the second life of the id is audited too");
}

/// The outbox slow to take an event (here: locked) costs a saved create neither its answer nor its event: the
/// request answers 201 within its time limit, and the event is queued once the outbox is free.
#[tokio::test]
async fn a_slow_outbox_delays_neither_a_saved_creates_answer_nor_loses_its_event() {
    use sqlx::Connection;
    let options = AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle().var("REQUEST_TIMEOUT_SECONDS", 3);
    let app = spawn_app_with(options).await;
    let bob = app.signed_in(AUTHOR).await;

    let mut holder = app.db.connect().await;
    let mut lock = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE authbridge.audit_log_outbox IN EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock");
    let started = Instant::now();
    let created = create(&bob, "Saved in time", Some(ACME_ORGANIZATION_ID)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(started.elapsed() < Duration::from_secs(3), "answered within the time limit: {:?}", started.elapsed());
    // A sign-in (its user.signed_in event) is not held up either: WorkOS has already spent its code.
    let started = Instant::now();
    let signed_in = app.signed_in(AUTHOR).await;
    assert!(signed_in.cookie(authbridge::session::SESSION_COOKIE).is_some(), "signed in");
    assert!(started.elapsed() < Duration::from_secs(3), "signed in without waiting: {:?}", started.elapsed());
    lock.rollback().await.expect("unlock");

    let queued = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.iter().any(|(_, action, _, _)| action == "todo.created")
    })
    .await;
    assert!(queued, "the event was queued after the answer: {:?}", outbox(&app).await);
    let signed_in_events = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.iter().filter(|(_, action, _, _)| action == "user.signed_in").count() == 2
    })
    .await;
    assert!(signed_in_events, "both sign-ins' events were queued: {:?}", outbox(&app).await);
}

/// A deploy stopping the server just after a change must not lose its event: the server, once it has stopped
/// serving, waits for the events still being queued (here: held up by a locked outbox, freed after the stop began).
#[tokio::test]
async fn a_stopping_server_waits_for_the_events_still_being_queued() {
    let options = AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle();
    let mut app = spawn_app_with(options).await;
    let bob = app.signed_in(AUTHOR).await;
    let signed_in = eventually(Duration::from_secs(10), || async { !outbox(&app).await.is_empty() }).await;
    assert!(signed_in, "the sign-in's event was queued");

    let mut holder = app.db.connect().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE authbridge.audit_log_outbox IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .expect("lock the outbox");
    let created = create(&bob, "Saved just before a deploy", Some(ACME_ORGANIZATION_ID)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let unlock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("unlock the outbox");
    });

    app.shutdown().await.expect("the server stops cleanly");
    let actions: Vec<String> = outbox(&app).await.into_iter().map(|row| row.1).collect();
    assert!(
        actions.iter().any(|action| action == "todo.created"),
        "the event was written before the stop: {actions:?}"
    );
    unlock.await.expect("unlock task");
}

#[tokio::test]
async fn an_outage_then_recovery_delivers_each_event_exactly_once_and_slows_no_request() {
    let app = cast_app().await;
    app.workos.set_audit_logs_down(true);
    let bob = app.signed_in(AUTHOR).await;

    let started = Instant::now();
    let first = id_of(&create(&bob, "Plan the offsite", Some(ACME_ORGANIZATION_ID)).await);
    let second = id_of(&create(&bob, "Book the venue", Some(ACME_ORGANIZATION_ID)).await);
    let path = format!("/api/todos/{first}");
    let renamed = bob.api(Method::PATCH, &path, Some(json!({ "title": "Plan the offsite (Q3)" }))).await;
    assert_eq!(renamed.status, 200);
    assert_eq!(bob.api(Method::PATCH, &path, Some(json!({ "is_complete": true }))).await.status, 200);
    assert_eq!(bob.api(Method::DELETE, &format!("/api/todos/{second}"), None).await.status, 204);
    create(&bob, "Personal, not audited", None).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "WorkOS being down slowed the requests: {:?}",
        started.elapsed()
    );

    let expected = ["user.signed_in", "todo.created", "todo.created", "todo.renamed", "todo.completed", "todo.deleted"];
    let written: Vec<String> = outbox(&app).await.into_iter().map(|row| row.1).collect();
    assert_eq!(written, expected, "written in the requests, in order");
    let tried = eventually(Duration::from_secs(10), || async { app.workos.audit_log_requests().len() >= 6 }).await;
    assert!(tried, "the deliverer tried during the outage");
    assert!(app.workos.audit_log_events().is_empty(), "nothing accepted while down");

    app.workos.set_audit_logs_down(false);
    let delivered = eventually(Duration::from_secs(20), || async {
        outbox(&app).await.iter().all(|(_, _, delivered, _)| *delivered)
    })
    .await;
    assert!(delivered, "{:?}", outbox(&app).await);
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let accepted = app.workos.audit_log_events();
    let mut actions: Vec<String> =
        accepted.iter().map(|event| event.event["action"].as_str().unwrap_or_default().to_owned()).collect();
    let mut wanted: Vec<String> = expected.iter().map(|action| (*action).to_owned()).collect();
    actions.sort();
    wanted.sort();
    assert_eq!(actions, wanted, "each event exactly once");
    let keys: HashMap<String, String> = outbox(&app).await.into_iter().map(|(key, action, ..)| (key, action)).collect();
    assert_eq!(keys.len(), expected.len(), "one key per event");
    // The stand-in records a repeated key once, as WorkOS does, which would hide an event sent again after it
    // had gone through: count the sends it answered with success instead. Each key exactly one, none other.
    let successful_sends = app.workos.audit_log_accepted_sends();
    for (key, action) in &keys {
        assert_eq!(successful_sends.get(key), Some(&1), "{action} ({key}): {successful_sends:?}");
    }
    assert_eq!(successful_sends.len(), keys.len(), "no send under another key: {successful_sends:?}");
    for event in &accepted {
        let key = event.idempotency_key.clone().expect("an Idempotency-Key");
        assert!(keys.contains_key(&key), "the outbox row's own key: {key}");
        assert_eq!(event.organization_id, ACME_ORGANIZATION_ID);
        assert_eq!(event.event["actor"]["id"], app.user_id(AUTHOR));
    }
    // The retries sent the same key again.
    let requests = app.workos.audit_log_requests();
    let retried =
        keys.keys().filter(|key| requests.iter().filter(|sent| sent.as_deref() == Some(key.as_str())).count() > 1);
    assert!(retried.count() > 0, "retried with the same key: {requests:?}");
    let created = accepted.iter().find(|event| event.event["action"] == "todo.created").expect("created");
    assert_eq!(created.event["targets"][0]["type"], "todo");
    assert!(created.event["context"]["location"].as_str().is_some_and(|ip| ip.starts_with("127.")));
}

/// Behind a proxy the operator trusts, an event's `context.location` is the client the proxy names in
/// `X-Forwarded-For`, not the proxy; from a peer nobody listed, the same header is the client's own word and ignored.
#[tokio::test]
async fn the_location_is_the_client_a_trusted_proxy_names_and_never_what_a_client_claims() {
    async fn location_of(app: &TestApp, title: &str) -> String {
        let bob = app.signed_in(AUTHOR).await;
        let body = json!({ "title": title, "organization_id": ACME_ORGANIZATION_ID });
        let created = bob
            .request(Method::POST, "/api/todos", |r| {
                r.json(&body).header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
            })
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let mut conn = app.db.connect().await;
        sqlx::query_scalar(
            "SELECT event->'context'->>'location' FROM authbridge.audit_log_outbox \
             WHERE event->>'action' = 'todo.created' AND event->'targets'->0->>'name' = $1",
        )
        .bind(title)
        .fetch_one(&mut conn)
        .await
        .expect("the create's event")
    }
    let behind_proxy = spawn_app_with(
        AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle().var("TRUSTED_PROXIES", "127.0.0.0/8"),
    )
    .await;
    assert_eq!(location_of(&behind_proxy, "Through the load balancer").await, "203.0.113.7");

    let direct = spawn_app_with(AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle()).await;
    assert_eq!(location_of(&direct, "Straight in").await, "127.0.0.1", "the header is ignored");
}

#[tokio::test]
async fn an_event_workos_refuses_for_good_is_kept_as_failed_and_not_retried() {
    let app = cast_app().await;
    // The operator has not configured the sign-in's action in the dashboard: WorkOS answers 400
    // `invalid_audit_log_event` for it.
    app.workos.remove_audit_log_schema("user.signed_in");
    let alice = app.signed_in(ADMIN).await;
    let failed = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.first().is_some_and(|(_, _, _, failed)| *failed)
    })
    .await;
    assert!(failed, "{:?}", outbox(&app).await);
    create(&alice, "After the refusal", Some(ACME_ORGANIZATION_ID)).await;
    let later = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.get(1).is_some_and(|(_, _, delivered, _)| *delivered)
    })
    .await;
    assert!(later, "later events still go");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.workos.calls(Endpoint::AuditLogs), 2, "the refused one was sent once");
}

/// An operator who edited an action's schema in the dashboard (a new version: here, version 1 named the target type
/// wrongly and version 2 fixed it) names the version in `WORKOS_AUDIT_LOG_VERSIONS`, and the events use it; without
/// it they are sent as version 1, which WorkOS refuses for good.
#[tokio::test]
async fn events_name_the_schema_version_the_operator_configured() {
    async fn fate_of_a_create(app: &TestApp) -> (bool, bool) {
        app.workos.set_audit_log_schema_versions("todo.created", &[&["Todo"], &["todo"]]);
        let bob = app.signed_in(AUTHOR).await;
        assert_eq!(create(&bob, "Versioned", Some(ACME_ORGANIZATION_ID)).await.status, 201);
        let settled =
            || async { outbox(app).await.into_iter().find(|row| row.1 == "todo.created").filter(|row| row.2 || row.3) };
        assert!(eventually(Duration::from_secs(10), || async { settled().await.is_some() }).await, "settled");
        settled().await.map(|(_, _, delivered, failed)| (delivered, failed)).unwrap_or_default()
    }
    let options = AppOptions { workos: cast(), ..AppOptions::default() }.lifecycle();
    let configured = spawn_app_with(options.var("WORKOS_AUDIT_LOG_VERSIONS", "todo.created=2")).await;
    assert_eq!(fate_of_a_create(&configured).await, (true, false), "delivered as version 2");
    let event = configured.workos.audit_log_events().into_iter().find(|e| e.event["action"] == "todo.created");
    assert_eq!(event.map(|e| e.event["version"].clone()), Some(json!(2)));

    assert_eq!(fate_of_a_create(&cast_app().await).await, (false, true), "version 1 is refused for good");
}

/// WorkOS forgets an `Idempotency-Key` after 24 hours, so an event still undelivered 23 hours after an attempt that
/// may have reached WorkOS (here: answered 503) is given up (kept, marked failed, logged) rather than sent again,
/// where a send that went through unseen would be recorded twice.
#[tokio::test]
async fn an_event_undelivered_23_hours_after_an_unclear_attempt_is_given_up_not_sent_again() {
    let app = cast_app().await;
    app.workos.set_audit_logs_down(true);
    let _bob = app.signed_in(AUTHOR).await;
    let mut conn = app.db.connect().await;
    let unclear = eventually(Duration::from_secs(10), || async {
        let mut conn = app.db.connect().await;
        sqlx::query_scalar::<_, bool>("SELECT maybe_sent_at IS NOT NULL FROM authbridge.audit_log_outbox")
            .fetch_optional(&mut conn)
            .await
            .expect("maybe_sent_at")
            .unwrap_or(false)
    })
    .await;
    assert!(unclear, "the 503 is recorded as an attempt that may have reached WorkOS: {:?}", outbox(&app).await);
    // A minute short of the limit, it is still sent again.
    sqlx::query(
        "UPDATE authbridge.audit_log_outbox SET created_at = now() - interval '23 hours', \
             maybe_sent_at = now() - interval '22 hours 59 minutes', next_attempt_at = now()",
    )
    .execute(&mut conn)
    .await
    .expect("age the event to just short of the limit");
    let sent_before = app.workos.audit_log_requests().len();
    let sent_again =
        eventually(Duration::from_secs(10), || async { app.workos.audit_log_requests().len() > sent_before }).await;
    assert!(sent_again, "sent again before the limit: {:?}", outbox(&app).await);
    assert!(outbox(&app).await.first().is_some_and(|(_, _, _, failed)| !*failed), "not given up before the limit");

    sqlx::query(
        "UPDATE authbridge.audit_log_outbox \
         SET created_at = now() - interval '23 hours 2 minutes', maybe_sent_at = now() - interval '23 hours 1 minute'",
    )
    .execute(&mut conn)
    .await
    .expect("age the event");
    let given_up = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.first().is_some_and(|(_, _, delivered, failed)| *failed && !*delivered)
    })
    .await;
    assert!(given_up, "{:?}", outbox(&app).await);
    let last_error: Option<String> = sqlx::query_scalar("SELECT last_error FROM authbridge.audit_log_outbox")
        .fetch_one(&mut conn)
        .await
        .expect("last_error");
    assert!(last_error.is_some_and(|error| error.contains("Idempotency-Key")));

    let tried = app.workos.audit_log_requests().len();
    app.workos.set_audit_logs_down(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.workos.audit_log_requests().len(), tried, "never sent again");
    assert!(app.workos.audit_log_events().is_empty());
}

/// A wrong or rotated API key refuses every send (401) before WorkOS records anything, for as long as it takes to
/// fix it: a day of that must not lose the day's events. The event is kept trying and, once the key works again,
/// delivered exactly once.
#[tokio::test]
async fn an_event_workos_only_refused_for_a_day_is_still_delivered_once() {
    let app = cast_app().await;
    app.workos.fail_for(Endpoint::AuditLogs, Duration::from_secs(3600), 401);
    let _bob = app.signed_in(AUTHOR).await;
    let refused = eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::AuditLogs) >= 2 }).await;
    assert!(refused, "the event was sent and refused");
    let mut conn = app.db.connect().await;
    sqlx::query("UPDATE authbridge.audit_log_outbox SET created_at = now() - interval '24 hours'")
        .execute(&mut conn)
        .await
        .expect("age the event");
    // Another refused attempt with the row a day old: the operator is told, at error level, why events are late.
    let alarmed = eventually(Duration::from_secs(10), || async {
        captured()
            .lines()
            .any(|line| line.contains("ERROR") && line.contains("undelivered for over an hour") && line.contains("401"))
    })
    .await;
    assert!(alarmed, "an error names the stuck events and the refusal");
    let rows = outbox(&app).await;
    assert!(rows.first().is_some_and(|(_, _, delivered, failed)| !delivered && !failed), "still queued: {rows:?}");

    app.workos.fail_for(Endpoint::AuditLogs, Duration::ZERO, 401);
    let delivered = eventually(Duration::from_secs(20), || async {
        outbox(&app).await.iter().all(|(_, _, delivered, _)| *delivered)
    })
    .await;
    assert!(delivered, "{:?}", outbox(&app).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (key, ..) = outbox(&app).await.into_iter().next().expect("the row");
    let sends = app.workos.audit_log_accepted_sends();
    assert_eq!((sends.get(&key), sends.len()), (Some(&1), 1), "exactly once: {sends:?}");
    assert_eq!(app.workos.audit_log_events().len(), 1);
}

/// A deliverer that stopped in the middle of a send never recorded the attempt's outcome: it may have reached
/// WorkOS, so 23 hours after it began the event is given up like one whose attempt timed out.
#[tokio::test]
async fn an_attempt_whose_outcome_was_never_recorded_counts_as_maybe_sent() {
    let app = cast_app().await;
    let _bob = app.signed_in(AUTHOR).await;
    let delivered =
        eventually(Duration::from_secs(10), || async { outbox(&app).await.first().is_some_and(|row| row.2) }).await;
    assert!(delivered, "{:?}", outbox(&app).await);
    let mut conn = app.db.connect().await;
    // A copy of the sign-in's event under a key of its own, tried once a day ago by a deliverer that died mid-send.
    let key: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO authbridge.audit_log_outbox \
             (idempotency_key, organization_id, event, created_at, attempts, sending_at) \
         SELECT gen_random_uuid(), organization_id, event, now() - interval '24 hours', 1, \
                now() - interval '23 hours 1 minute' \
         FROM authbridge.audit_log_outbox ORDER BY id LIMIT 1 \
         RETURNING idempotency_key",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the interrupted row");
    let given_up =
        eventually(Duration::from_secs(10), || async { outbox(&app).await.get(1).is_some_and(|row| row.3) }).await;
    assert!(given_up, "{:?}", outbox(&app).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let key = key.to_string();
    assert!(!app.workos.audit_log_requests().iter().any(|sent| sent.as_deref() == Some(key.as_str())), "not sent");
}

/// An app whose first Audit Log event (a sign-in into Acme) has been delivered.
async fn one_event_delivered() -> TestApp {
    let app = cast_app().await;
    let _author = app.signed_in(AUTHOR).await;
    let delivered =
        eventually(Duration::from_secs(10), || async { outbox(&app).await.first().is_some_and(|row| row.2) }).await;
    assert!(delivered, "{:?}", outbox(&app).await);
    app
}

/// Queues `copies` events like the first one, due at once, and waits until WorkOS has more than `before` sends.
async fn queue_copies_until_sending(app: &TestApp, copies: i32, before: usize) {
    let mut conn = app.db.connect().await;
    sqlx::query(
        "INSERT INTO authbridge.audit_log_outbox (idempotency_key, organization_id, event) \
         SELECT gen_random_uuid(), organization_id, event FROM authbridge.audit_log_outbox, generate_series(1, $1) \
         WHERE id = (SELECT min(id) FROM authbridge.audit_log_outbox)",
    )
    .bind(copies)
    .execute(&mut conn)
    .await
    .expect("due events");
    let sending =
        eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::AuditLogs) > before }).await;
    assert!(sending, "a send is under way");
}

/// A row is marked in flight when its own send starts, not when its batch is claimed: were the deliverer stopped
/// while the first send hangs, the rows it never sent must not count as maybe sent (they would be given up 23 hours
/// later although WorkOS never saw them).
#[tokio::test]
async fn only_the_row_being_sent_is_marked_in_flight() {
    let app = one_event_delivered().await;
    let before = app.workos.calls(Endpoint::AuditLogs);
    app.workos.hang_next(Endpoint::AuditLogs, 1);
    let mut conn = app.db.connect().await;
    queue_copies_until_sending(&app, 5, before).await;
    let (claimed, in_flight): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE attempts > 0), count(*) FILTER (WHERE sending_at IS NOT NULL) \
         FROM authbridge.audit_log_outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the outbox");
    assert_eq!((claimed, in_flight), (5, 1), "five claimed, one of them being sent");
}

/// Only WorkOS saying the organization does not exist makes a 404 final. A 404 from anything else (a proxy, a wrong
/// `WORKOS_API_BASE_URL` path) never reached the endpoint: the event is sent again.
#[tokio::test]
async fn a_404_is_final_only_when_workos_does_not_know_the_organization() {
    let app = cast_app().await;
    app.workos.fail_next(Endpoint::AuditLogs, 1, 404);
    let _bob = app.signed_in(AUTHOR).await;
    let delivered =
        eventually(Duration::from_secs(10), || async { outbox(&app).await.first().is_some_and(|row| row.2) }).await;
    assert!(delivered, "delivered after a 404 that was not WorkOS's: {:?}", outbox(&app).await);
    assert_eq!(app.workos.calls(Endpoint::AuditLogs), 2, "sent again after the 404");

    let mut conn = app.db.connect().await;
    sqlx::query(
        "INSERT INTO authbridge.audit_log_outbox (idempotency_key, organization_id, event) \
         SELECT gen_random_uuid(), 'org_nobody_knows', event FROM authbridge.audit_log_outbox ORDER BY id LIMIT 1",
    )
    .execute(&mut conn)
    .await
    .expect("an event for an organization WorkOS does not know");
    let failed =
        eventually(Duration::from_secs(10), || async { outbox(&app).await.get(1).is_some_and(|row| row.3) }).await;
    assert!(failed, "{:?}", outbox(&app).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.workos.calls(Endpoint::AuditLogs), 3, "WorkOS's own 404 is not retried");
}

/// Once the sign-in's event is delivered: WorkOS will answer the next Audit Log request 429 with `retry_after`, and
/// `copies` of that event fall due at the same moment; waits until the pass has sent something. Returns how many
/// Audit Log requests WorkOS had seen before.
async fn rate_limited_with_due_events(app: &TestApp, retry_after: Duration, copies: i32) -> usize {
    let _bob = app.signed_in(AUTHOR).await;
    let delivered =
        eventually(Duration::from_secs(10), || async { outbox(app).await.first().is_some_and(|row| row.2) }).await;
    assert!(delivered, "{:?}", outbox(app).await);
    let before = app.workos.calls(Endpoint::AuditLogs);
    app.workos.set_rate_limit_retry_after(retry_after);
    app.workos.fail_next(Endpoint::AuditLogs, 1, 429);
    sqlx::query(
        "INSERT INTO authbridge.audit_log_outbox (idempotency_key, organization_id, event, next_attempt_at) \
         SELECT gen_random_uuid(), organization_id, event, now() + interval '500 milliseconds' \
         FROM authbridge.audit_log_outbox, generate_series(1, $1) \
         WHERE id = (SELECT min(id) FROM authbridge.audit_log_outbox)",
    )
    .bind(copies)
    .execute(&mut app.db.connect().await)
    .await
    .expect("due events");
    let limited =
        eventually(Duration::from_secs(10), || async { app.workos.calls(Endpoint::AuditLogs) > before }).await;
    assert!(limited, "the pass sent something");
    before
}

/// A 429 applies to every request with the API key: the pass stops at it, and the rest of the due events wait for
/// its `Retry-After` instead of each spending a request on another refusal.
#[tokio::test]
async fn a_rate_limit_stops_the_pass_and_the_rest_wait_for_retry_after() {
    let app = cast_app().await;
    // A Retry-After long enough that no later pass can be mistaken for this one; five events due at the same
    // moment, so one pass claims them all.
    let before = rate_limited_with_due_events(&app, Duration::from_secs(6), 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.workos.calls(Endpoint::AuditLogs), before + 1, "one request, then the pass stopped");

    let all = eventually(Duration::from_secs(15), || async {
        let rows = outbox(&app).await;
        rows.len() == 6 && rows.iter().all(|row| row.2)
    })
    .await;
    assert!(all, "{:?}", outbox(&app).await);
    let sends = app.workos.audit_log_accepted_sends();
    assert!(sends.values().all(|sends| *sends == 1) && sends.len() == 6, "each once: {sends:?}");
}

/// One 429 with a huge `Retry-After` does not park the outbox for a day (past the 23 hours after which an event that
/// may have gone through is given up): the wait is capped like the backoff, at 5 minutes.
#[tokio::test]
async fn a_rate_limits_retry_after_is_capped_like_the_backoff() {
    let app = cast_app().await;
    app.workos.set_rate_limit_retry_after(Duration::from_secs(86_400));
    app.workos.fail_next(Endpoint::AuditLogs, 1, 429);
    let _bob = app.signed_in(AUTHOR).await;
    let wait = || async {
        sqlx::query_scalar::<_, Option<f64>>(
            "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM authbridge.audit_log_outbox \
             WHERE last_error IS NOT NULL",
        )
        .fetch_optional(&mut app.db.connect().await)
        .await
        .expect("the outbox")
        .flatten()
    };
    assert!(eventually(Duration::from_secs(10), || async { wait().await.is_some() }).await, "refused once");
    let seconds = wait().await.unwrap_or_default();
    assert!(seconds <= 300.0, "waits {seconds} s");
}

/// The rate limit is the API key's, not the batch's: the due events a pass did not claim (more than a batch) wait
/// for `Retry-After` too, or the next pass would spend another request on another refusal.
#[tokio::test]
async fn after_a_rate_limit_due_events_beyond_the_batch_wait_for_retry_after_too() {
    let app = cast_app().await;
    // 25 events due at once: a pass claims 20 (the default batch), the other 5 wait for the next.
    let before = rate_limited_with_due_events(&app, Duration::from_secs(8), 25).await;
    // Two more passes (every second) come and go within the Retry-After.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.workos.calls(Endpoint::AuditLogs), before + 1, "nothing more within the Retry-After");

    let all = eventually(Duration::from_secs(20), || async {
        let rows = outbox(&app).await;
        rows.len() == 26 && rows.iter().all(|row| row.2)
    })
    .await;
    assert!(all, "{:?}", outbox(&app).await);
}

/// A deliverer that stalled past its lease (a stopped process) writes nothing about a row another replica has
/// claimed since, when it resumes: here the other replica delivered it, and the stalled send's refusal must not mark
/// the delivered event failed.
#[tokio::test]
async fn a_deliverer_resuming_after_its_lease_writes_nothing_over_another_replicas_claim() {
    let app = one_event_delivered().await;
    let before = app.workos.calls(Endpoint::AuditLogs);
    app.workos.set_latency(Endpoint::AuditLogs, Duration::from_millis(1_500));
    app.workos.fail_next(Endpoint::AuditLogs, 1, 400);
    let mut conn = app.db.connect().await;
    queue_copies_until_sending(&app, 1, before).await;
    // Meanwhile, as if the lease had run out: another replica claims the row again and delivers it.
    sqlx::query(
        "UPDATE authbridge.audit_log_outbox SET attempts = attempts + 1, delivered_at = now(), sending_at = NULL \
         WHERE delivered_at IS NULL",
    )
    .execute(&mut conn)
    .await
    .expect("another replica's delivery");
    // The stalled send ends, refused (1.5 s after it began), and its outcome is handled: wait well past that.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    app.workos.set_latency(Endpoint::AuditLogs, Duration::ZERO);
    let rows: Vec<(bool, bool, Option<String>)> = sqlx::query_as(
        "SELECT delivered_at IS NOT NULL, failed_at IS NOT NULL, last_error FROM authbridge.audit_log_outbox ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the outbox");
    assert_eq!(rows, [(true, false, None), (true, false, None)], "the delivered event stays delivered, no error");
}

/// A PATCH sent again (a client's retry, a double click) or asking for what already is changes nothing: one event
/// for the one change, none for the repeats, and `updated_at` stays where the change left it.
#[tokio::test]
async fn an_update_that_changes_nothing_is_not_audited() {
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    let created = create(&bob, "Book the venue", Some(ACME_ORGANIZATION_ID)).await;
    let id = id_of(&created);
    let path = format!("/api/todos/{id}");
    let mut stamps = Vec::new();
    for body in [
        json!({ "is_complete": true }),
        json!({ "is_complete": true }),
        json!({ "title": "Book the venue" }),
        json!({ "title": "  Book the venue ", "is_complete": true }),
    ] {
        let answer = bob.api(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(answer.status, 200, "{body}: {}", answer.body);
        stamps.push(answer.json()["updated_at"].clone());
    }
    assert!(stamps.windows(2).all(|pair| pair[0] == pair[1]), "only the first changed the row: {stamps:?}");
    let actions = todo_actions(&app).await;
    assert_eq!(actions, ["todo.created", "todo.completed"], "one event for the one change");
}

/// InsForge's proxy sends a write again when its reused connection to PostgREST was reset, and the caller hears only
/// the repeat. A rename's repeat sets the same title, a delete's finds the todo gone: each is answered, and audited,
/// as done. A toggle's repeat finds nothing to change, as a second click does: 200 as asked, but (the price of not
/// auditing double clicks) no event.
#[tokio::test]
async fn writes_insforge_sends_twice_are_answered_as_done() {
    let (app, bob, path) = author_with_an_acme_todo("Print the programme").await;
    app.insforge.send_next_write_twice();
    let renamed = bob.api(Method::PATCH, &path, Some(json!({ "title": "Print the programmes" }))).await;
    assert_eq!((renamed.status, renamed.json()["title"].as_str()), (200, Some("Print the programmes")));
    app.insforge.send_next_write_twice();
    let done = bob.api(Method::PATCH, &path, Some(json!({ "is_complete": true }))).await;
    assert_eq!((done.status, done.json()["is_complete"].as_bool()), (200, Some(true)), "{}", done.body);
    app.insforge.send_next_write_twice();
    let deleted = bob.api(Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, 204, "the delete happened: {}", deleted.body);
    assert_eq!(app.insforge.records_requests_handled_twice(), 3, "the stand-in did send each twice");
    assert_eq!(bob.api(Method::GET, &path, None).await.status, 404);
    let actions = todo_actions(&app).await;
    assert_eq!(actions, ["todo.created", "todo.renamed", "todo.deleted"]);
}

/// Two toggles to the same state at once (a double click, a client retrying while the first is under way): one
/// changes the todo, the other finds nothing to change, and one event says it happened.
#[tokio::test]
async fn two_toggles_at_once_make_one_change_and_one_event() {
    let (app, bob, path) = author_with_an_acme_todo("Book the bus").await;
    let body = || Some(json!({ "is_complete": true }));
    // The first is held before InsForge handles it, so the second overtakes it: whichever way they interleave,
    // one change.
    app.insforge.delay_next_write(Duration::from_millis(500));
    let (first, second) = tokio::join!(bob.api(Method::PATCH, &path, body()), bob.api(Method::PATCH, &path, body()));
    assert_eq!((first.status, second.status), (200, 200), "{} / {}", first.body, second.body);
    // The same from a client that sends the whole todo (its title unchanged).
    let whole = || Some(json!({ "title": "Book the bus", "is_complete": false }));
    app.insforge.delay_next_write(Duration::from_millis(500));
    let (first, second) = tokio::join!(bob.api(Method::PATCH, &path, whole()), bob.api(Method::PATCH, &path, whole()));
    assert_eq!((first.status, second.status), (200, 200), "{} / {}", first.body, second.body);
    // Two deletes at once: the todo is deleted once.
    app.insforge.delay_next_write(Duration::from_millis(500));
    let (first, second) = tokio::join!(bob.api(Method::DELETE, &path, None), bob.api(Method::DELETE, &path, None));
    assert!(first.status == 204 || second.status == 204, "{} / {}", first.body, second.body);
    let actions = todo_actions(&app).await;
    assert_eq!(
        actions,
        ["todo.created", "todo.completed", "todo.reopened", "todo.deleted"],
        "one event for each change"
    );
}

/// A toggle asking for what already is, whose answer InsForge lost: looked at again, the todo is as asked, but the
/// change it finds is the earlier one, already recorded: no second event.
#[tokio::test]
async fn a_no_op_toggle_whose_answer_was_lost_is_not_a_second_event() {
    let (app, bob, path) = author_with_an_acme_todo("Hire the hall").await;
    assert_eq!(bob.api(Method::PATCH, &path, Some(json!({ "is_complete": true }))).await.status, 200);
    app.insforge.lose_next_write_answer();
    let again = bob.api(Method::PATCH, &path, Some(json!({ "is_complete": true }))).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let actions = todo_actions(&app).await;
    assert_eq!(actions, ["todo.created", "todo.completed"]);
}

/// A PATCH whose answer InsForge lost after committing it (its own 500) is looked at again: the todo is as asked,
/// so that is the answer, and its event is written. A retry would find nothing left to change, and no event would
/// ever say it happened.
#[tokio::test]
async fn an_update_whose_answer_was_lost_is_audited_once() {
    let (app, bob, path) = author_with_an_acme_todo("Order the badges").await;
    for body in [json!({ "is_complete": true }), json!({ "title": "Order the name badges" })] {
        app.insforge.lose_next_write_answer();
        let answer = bob.api(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(answer.status, 200, "{body}: it was saved, and is as asked: {}", answer.body);
        let again = bob.api(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(again.status, 200, "{body}: the retry changes nothing: {}", again.body);
    }
    let actions = todo_actions(&app).await;
    assert_eq!(actions, ["todo.created", "todo.completed", "todo.renamed"], "each change once");
}

/// A client that hangs up before the answer does not cut its request short: InsForge saved the todo, so its Audit
/// Log event is queued all the same, and a sign-out whose browser gave up is still recorded for every replica (the
/// server handles each request in a task of its own; only the request's time limit ends a handler).
#[tokio::test]
async fn a_client_that_hangs_up_mid_request_loses_neither_the_event_nor_the_sign_out() {
    use sqlx::Connection;
    let app = cast_app().await;
    let bob = app.signed_in(AUTHOR).await;
    app.insforge.set_response_latency(Duration::from_secs(1));
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        create(&bob, "Saved while nobody waited", Some(ACME_ORGANIZATION_ID)),
    )
    .await;
    assert!(gave_up.is_err(), "the client hung up before InsForge answered");
    app.insforge.set_response_latency(Duration::ZERO);
    let queued = eventually(Duration::from_secs(10), || async {
        outbox(&app).await.iter().any(|(_, action, _, _)| action == "todo.created")
    })
    .await;
    assert!(queued, "the saved todo's event was queued: {:?}", outbox(&app).await);

    // The sign-out's record held up (its table locked) until after the browser has gone.
    let sid = crate::helpers::session::session_id(&bob);
    let token = bob.csrf_token().await;
    let mut holder = app.db.connect().await;
    let mut lock = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE authbridge.revoked_sessions IN EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock");
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), bob.post_form("/logout", &[("csrf_token", token.as_str())]))
            .await;
    assert!(gave_up.is_err(), "the browser gave up while the sign-out waited for the database");
    lock.rollback().await.expect("unlock");
    let recorded = eventually(Duration::from_secs(10), || async {
        app.query_scalar_i64("SELECT count(*) FROM authbridge.revoked_sessions WHERE id = $1", &sid).await == 1
    })
    .await;
    assert!(recorded, "the sign-out was recorded for every replica");
}
