//! `POST /webhooks/workos`: signatures verified over the raw body with either secret, within 180 seconds either
//! way; every refusal is a 401 that applies and records nothing; its own 1 MiB body limit; no cookies, CSRF or
//! session involved.

use std::time::{Duration, SystemTime};

use authbridge::lifecycle::webhook::sign;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::app::{
    ALICE, AppOptions, PREVIOUS_WEBHOOK_SECRET, TestApp, WEBHOOK_SECRET, spawn_app, spawn_app_with,
};
use crate::helpers::lifecycle::{at, event, membership};

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
    let future = sign(WEBHOOK_SECRET, now + Duration::from_secs(181), &body);
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
