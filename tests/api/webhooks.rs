//! `POST /webhooks/workos`: signatures verified over the raw body with either secret, within 180 seconds either
//! way; every refusal is a 401 that applies and records nothing; its own 1 MiB body limit; no cookies, CSRF or
//! session involved. And since anyone can reach it: whatever needs no body (no secret configured, a bad header) is
//! answered before the body is sent, at most `MAX_CONCURRENT_WEBHOOKS` deliveries are received at once, and a body
//! has `BODY_DEADLINE` to arrive.

use std::time::{Duration, Instant, SystemTime};

use authbridge::http::{BODY_DEADLINE, MAX_CONCURRENT_WEBHOOKS};
use authbridge::lifecycle::webhook::sign;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::app::{
    ALICE, AppOptions, PREVIOUS_WEBHOOK_SECRET, TestApp, WEBHOOK_SECRET, spawn_app, spawn_app_with,
};
use crate::helpers::lifecycle::{at, event, membership};
use crate::helpers::logs::logged;

fn created(id: &str) -> Value {
    event("organization_membership.created", membership(id, "user_sig", "org_sig", "active", "admin", 1), at(1))
}

async fn assert_nothing_applied(app: &TestApp, membership_id: &str, why: &str) {
    assert_eq!(app.membership_row(membership_id).await, None, "{why}: the membership was written");
    assert!(app.ledger().await.is_empty(), "{why}: the event was recorded");
}

#[tokio::test]
async fn deliveries_signed_with_the_current_or_the_previous_secret_are_applied() {
    let app = spawn_app_with(
        AppOptions::default().lifecycle().var("WORKOS_WEBHOOK_SECRET_PREVIOUS", PREVIOUS_WEBHOOK_SECRET),
    )
    .await;
    for (secret, id) in [(WEBHOOK_SECRET, "om_current"), (PREVIOUS_WEBHOOK_SECRET, "om_previous")] {
        let body = serde_json::to_vec(&created(id)).expect("json");
        let response = app.post_webhook(&body, Some(sign(secret, SystemTime::now(), &body))).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json()["outcome"], "applied");
        assert_eq!(app.membership_row(id).await, Some(("active".into(), Some("admin".into()), false)));
    }
}

#[tokio::test]
async fn every_bad_signature_is_a_401_that_applies_and_records_nothing() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let event = created("om_refused");
    let body = serde_json::to_vec(&event).expect("json");
    let now = SystemTime::now();
    let good = sign(WEBHOOK_SECRET, now, &body);

    let mut tampered = body.clone();
    let position = tampered.iter().position(|byte| *byte == b'a').expect("an a in the body");
    tampered[position] = b'b';
    // The same JSON value, re-serialised with other whitespace and key order: different bytes, so the signature
    // over the original bytes does not match, exactly as it would not at WorkOS.
    let reserialised = serde_json::to_vec_pretty(&event).expect("json");
    assert_eq!(serde_json::from_slice::<Value>(&reserialised).expect("json"), event);
    let stale = sign(WEBHOOK_SECRET, now - Duration::from_secs(181), &body);
    // A minute beyond the three allowed, so that it is still in the future by the time its turn comes on a slow
    // machine (the exact boundary is `lifecycle::webhook`'s unit tests').
    let future = sign(WEBHOOK_SECRET, now + Duration::from_secs(240), &body);
    let wrong_secret = sign("whsec_someone_else_0123456789", now, &body);

    for (why, bytes, signature) in [
        ("tampered body", tampered.as_slice(), Some(good.clone())),
        ("re-serialised JSON", reserialised.as_slice(), Some(good.clone())),
        ("wrong secret", body.as_slice(), Some(wrong_secret)),
        ("missing header", body.as_slice(), None),
        ("empty header", body.as_slice(), Some(String::new())),
        ("stale timestamp", body.as_slice(), Some(stale)),
        ("future timestamp", body.as_slice(), Some(future)),
        ("malformed header", body.as_slice(), Some("sha256=deadbeef".to_owned())),
    ] {
        let response = app.post_webhook(bytes, signature).await;
        assert_eq!(response.status, 401, "{why}: {}", response.body);
        assert_eq!(response.error_code(), "invalid_signature", "{why}");
        // RFC 9110 §15.5.2: a 401 carries a challenge, here naming what the request lacked.
        assert_eq!(response.header("www-authenticate").as_deref(), Some("WorkOS-Signature"), "{why}");
        // A stream of these is how an operator notices a secret that does not match WorkOS's.
        let request_id = response.header("x-request-id").expect("every answer carries a request id");
        let line = logged(&request_id, "WARN", "webhook refused: bad signature").await;
        assert!(line.as_deref().is_some_and(|line| line.contains("reason=")), "{why}: logged with why: {line:?}");
        assert_eq!(logged(&request_id, "WARN", "refused a webhook delivery").await, None, "{why}: once");
        assert_nothing_applied(&app, "om_refused", why).await;
    }
    // And the genuine delivery still works afterwards.
    assert_eq!(app.post_webhook(&body, Some(good)).await.status, 200);
}

#[tokio::test]
async fn the_webhook_route_has_its_own_one_mebibyte_limit() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    // 200 KiB: over the 64 KiB every other route allows, well under the webhook's 1 MiB.
    let mut big = created("om_big");
    big["data"]["custom_attributes"] = json!({ "notes": "x".repeat(200 * 1024) });
    let response = app.deliver(&big).await;
    assert_eq!(response.status, 200, "{}", response.body);

    let mut huge = created("om_huge");
    huge["data"]["custom_attributes"] = json!({ "notes": "x".repeat(1024 * 1024) });
    let response = app.deliver(&huge).await;
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(response.error_code(), "payload_too_large");
    assert_eq!(app.membership_row("om_huge").await, None);

    // The other routes keep their 64 KiB.
    let browser = app.signed_in(ALICE).await;
    let todo = browser.api(Method::POST, "/api/todos", Some(json!({ "title": "x".repeat(100 * 1024) }))).await;
    assert_eq!(todo.status, 413);
}

#[tokio::test]
async fn no_cookie_csrf_or_session_is_involved() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let browser = app.signed_in(ALICE).await;
    // From a browser that is signed in, cross-site, with cookies: the cookies are ignored and never touched.
    let body = serde_json::to_vec(&created("om_browser")).expect("json");
    let signature = sign(WEBHOOK_SECRET, SystemTime::now(), &body);
    let response = browser
        .request(Method::POST, "/webhooks/workos", |request| {
            request
                .header("origin", "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/json")
                .header("WorkOS-Signature", signature)
                .body(body)
        })
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.set_cookies().is_empty(), "the webhook route never sets a cookie");
}

#[tokio::test]
async fn unknown_event_types_are_recorded_and_ignored_and_unreadable_ones_refused() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let unknown = event("connection.activated", json!({ "id": "conn_1" }), at(1));
    assert_eq!(app.deliver_ok(&unknown).await, "ignored");
    let ledger = app.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].1.as_str(), ledger[0].3.as_str()), ("connection.activated", "ignored"));

    let mut unreadable = event("organization_membership.updated", json!({ "id": "om_x" }), at(1));
    for delivery in ["first", "retry"] {
        let response = app.deliver(&unreadable).await;
        assert_eq!(response.status, 422, "{delivery}: every delivery is refused alike: {}", response.body);
    }
    assert_eq!(app.membership_row("om_x").await, None);
    assert_eq!(app.ledger().await.iter().filter(|entry| entry.3 == "rejected").count(), 1);
    // Rejected is not final: a delivery of the same event that can be read (as after a fix) is applied.
    unreadable["data"] = membership("om_x", "user_x", "org_x", "active", "member", 1);
    assert_eq!(app.deliver_ok(&unreadable).await, "applied");
    assert_eq!(app.membership_row("om_x").await, Some(("active".into(), Some("member".into()), false)));
    assert_eq!(app.deliver_ok(&unreadable).await, "duplicate", "and only once");

    let not_an_event = b"[1, 2, 3]";
    let response = app.post_webhook(not_an_event, Some(sign(WEBHOOK_SECRET, SystemTime::now(), not_an_event))).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.error_code(), "malformed_json");
}

#[tokio::test]
async fn without_a_webhook_secret_the_route_does_not_exist() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&created("om_none")).expect("json");
    let response = app.post_webhook(&body, Some(sign(WEBHOOK_SECRET, SystemTime::now(), &body))).await;
    assert_eq!(response.status, 404, "{}", response.body);
}

/// A delivery's headers, announcing `declared` bytes of body, followed by `sent` of them (the rest never comes),
/// over a connection of its own.
async fn start_delivery(app: &TestApp, signature: Option<&str>, declared: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("the app accepts connections");
    let signature = signature.map(|value| format!("WorkOS-Signature: {value}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /webhooks/workos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{signature}\
         Content-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write the headers");
    stream.write_all(sent).await.expect("write the start of the body");
    stream
}

/// The `x-request-id` of a raw HTTP answer.
fn request_id_of(answer: &str) -> String {
    let line = answer.lines().find(|line| line.to_ascii_lowercase().starts_with("x-request-id:"));
    line.and_then(|line| line.split_once(':')).map(|(_, id)| id.trim().to_owned()).expect("an x-request-id header")
}

/// The start of the answer on `stream`, if one comes within `limit`.
async fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = vec![0u8; 4096];
    match tokio::time::timeout(limit, stream.read(&mut answer)).await {
        Ok(Ok(read)) if read > 0 => Some(String::from_utf8_lossy(&answer[..read]).into_owned()),
        _ => None,
    }
}

/// A header as WorkOS would send it now, for a body that will never arrive.
fn plausible_signature() -> String {
    sign("whsec_not_the_apps_secret_0123456789", SystemTime::now(), b"{}")
}

#[tokio::test]
async fn without_a_webhook_secret_a_delivery_is_answered_without_waiting_for_its_body() {
    let app = spawn_app().await;
    // Under the route's body limit, so only the missing secret can refuse it; the body is never sent.
    let mut stream = start_delivery(&app, Some(&plausible_signature()), 1_000_000, b"").await;
    let answer = answer_within(&mut stream, Duration::from_secs(2)).await.expect("answered without the body");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("not_found"), "in the API's error shape: {answer}");
}

#[tokio::test]
async fn a_missing_malformed_or_stale_signature_is_refused_before_the_body_is_sent() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let stale = sign(WEBHOOK_SECRET, SystemTime::now() - Duration::from_secs(181), b"{}");
    for (why, signature) in [("missing", None), ("malformed", Some("sha256=deadbeef")), ("stale", Some(stale.as_str()))]
    {
        let mut stream = start_delivery(&app, signature, 500_000, b"").await;
        let answer = answer_within(&mut stream, Duration::from_secs(2)).await;
        let answer = answer.unwrap_or_else(|| panic!("{why}: not answered without the body"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{why}: {answer}");
        assert!(answer.contains("invalid_signature"), "{why}: {answer}");
    }
    assert!(app.ledger().await.is_empty());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_deadline_is_answered_408() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let started = Instant::now();
    let mut stream = start_delivery(&app, Some(&plausible_signature()), 1000, b"{\"id\":").await;
    // Well before the request time limit (30 s), which would answer 504.
    let answer = answer_within(&mut stream, BODY_DEADLINE + Duration::from_secs(5)).await;
    let answer = answer.expect("answered when the deadline passed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    let logged = logged(&request_id_of(&answer), "WARN", "request body too slow").await;
    assert!(logged.is_some(), "the operator is told");
    assert!(started.elapsed() >= BODY_DEADLINE - Duration::from_millis(500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn past_the_webhook_limit_deliveries_are_refused_at_once_and_other_requests_go_through() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let alice = app.signed_in(ALICE).await;
    let signature = plausible_signature();
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_WEBHOOKS {
        held.push(start_delivery(&app, Some(&signature), 1000, b"{").await);
    }
    // Let every held delivery reach the point where it waits for its body.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut extra = start_delivery(&app, Some(&signature), 1000, b"{").await;
    let answer = answer_within(&mut extra, Duration::from_secs(2)).await.expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("\"overloaded\""), "in the API's error shape: {answer}");
    let logged = logged(&request_id_of(&answer), "WARN", "webhook refused: too many at once").await;
    assert!(logged.is_some(), "the operator is told");
    // Only the webhook route is full: the rest of the app is served.
    let started = Instant::now();
    assert_eq!(app.browser().get("/healthz").await.status, 200);
    assert_eq!(alice.get("/api/todos").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // The held deliveries give their slots back when their senders go away.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.deliver_ok(&created("om_after_the_flood")).await, "applied");
}

/// A delivery without a declared length (chunked) is cut off at the route's 1 MiB while it is read, and answered 413
/// like a declared one, not as an unreadable body.
#[tokio::test]
async fn an_undeclared_body_over_the_webhook_limit_is_answered_413() {
    let app = spawn_app_with(AppOptions::default().lifecycle()).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("the app accepts connections");
    let head = format!(
        "POST /webhooks/workos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nWorkOS-Signature: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        plausible_signature()
    );
    stream.write_all(head.as_bytes()).await.expect("write the headers");
    // 17 chunks of 64 KiB: past the limit. The app may answer and stop reading before all of it is sent.
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
    for _ in 0..17 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "in the API's error shape: {answer}");
    assert!(app.ledger().await.is_empty());
}
