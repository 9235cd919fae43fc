//! Running as a service: health and readiness probes, request ids, graceful shutdown.

use std::time::Duration;

use serde_json::json;
use standins::workos_standin::Endpoint;

use crate::helpers::app::{ALICE, AppOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_and_readyz_report_the_process_and_its_upstreams() {
    let app = spawn_app().await;
    let browser = app.browser();
    let health = browser.get("/healthz").await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));

    let ready = browser.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let report = ready.json();
    assert_eq!(report["status"], "ready");
    assert_eq!(report["insforge"]["ok"], true);
    assert_eq!(report["workos"]["ok"], true);

    // Probes are answered from a short cache: a burst reaches WorkOS and InsForge at most once more.
    let before = app.workos.calls(Endpoint::Jwks);
    let records_before = app.insforge.records_requests();
    for _ in 0..10 {
        assert_eq!(browser.get("/readyz").await.status, 200);
    }
    assert!(app.workos.calls(Endpoint::Jwks) - before <= 1, "probes must not flood upstreams");
    assert!(app.insforge.records_requests() - records_before <= 1, "nor InsForge");
}

#[tokio::test]
async fn readyz_fails_when_insforge_is_unreachable() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_URL", crate::helpers::closed_port_url())).await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["insforge"]["ok"], false);
    assert_eq!(app.browser().get("/healthz").await.status, 200, "alive, just not ready");
}

/// An `INSFORGE_URL` that answers 200 with something other than the records API's rows (a web front end serving its
/// `index.html` for every path) is not InsForge serving todos: not ready.
#[tokio::test]
async fn readyz_fails_when_insforge_answers_200_with_a_page() {
    let page = crate::helpers::CannedServer::text(200, "text/html", "<!doctype html><title>App</title>").await;
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_URL", page.url.as_str())).await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["insforge"]["ok"], false);
    assert!(page.hits() > 0, "it was asked");
}

/// The keys held decide: a probe does not fetch them again (every replica is probed every few seconds, and a
/// provider such as Auth0 counts those fetches against the tenant's rate limit), and the provider's JWKS failing
/// does not take the app out of service: every replica would go at once, though the keys they hold still verify
/// every session. Without any key, nothing can be verified: not ready.
#[tokio::test]
async fn readyz_stays_ready_on_the_keys_held_and_fails_without_any() {
    let app = spawn_app().await;
    assert_eq!(app.browser().get("/readyz").await.status, 200, "the keys were fetched at start");
    // The probe's answer is kept for five seconds: let it expire.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    app.workos.fail_for(Endpoint::Jwks, Duration::from_secs(60), 503);
    let fetches = app.workos.calls(Endpoint::Jwks);
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(app.workos.calls(Endpoint::Jwks), fetches, "the probe left the provider alone");
    let signed_in = app.signed_in(ALICE).await;
    assert_eq!(signed_in.api(reqwest::Method::GET, "/api/me", None).await.status, 200, "and they verify");

    let app = spawn_app_with(AppOptions::default().var("WORKOS_API_BASE_URL", crate::helpers::closed_port_url())).await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let report = ready.json();
    assert_eq!((report["status"].as_str(), &report["workos"]["ok"]), (Some("unavailable"), &json!(false)));
    assert_eq!(report["insforge"]["ok"], true, "only the failing upstream is reported");
    assert_eq!(app.browser().get("/healthz").await.status, 200, "alive, just not ready");
}

/// Each check of a probe is bounded: an upstream that hangs makes the probe answer within seconds (an
/// orchestrator's probe timeout is short), not after the upstream's own time limit. A hanging JWKS does not matter
/// while keys are held: the probe does not fetch them.
#[tokio::test]
async fn readyz_answers_within_seconds_when_an_upstream_hangs() {
    let app = spawn_app_with(AppOptions::default().var("INSFORGE_REQUEST_TIMEOUT_MS", 20_000)).await;
    let _signed_in = app.signed_in(ALICE).await; // the keys are held
    app.insforge.set_latency(Duration::from_secs(10));
    app.workos.set_latency(Endpoint::Jwks, Duration::from_secs(10));
    let started = std::time::Instant::now();
    let ready = app.browser().get("/readyz").await;
    let took = started.elapsed();
    assert_eq!(ready.status, 503, "{}", ready.body);
    let report = ready.json();
    assert_eq!((&report["insforge"]["ok"], &report["workos"]["ok"]), (&json!(false), &json!(true)), "{report}");
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    app.insforge.set_latency(Duration::ZERO);
    app.workos.set_latency(Endpoint::Jwks, Duration::ZERO);
}

/// With `DATABASE_URL`, a replica is not ready until its database has answered once: one that has never reached it
/// (a wrong host, a network policy) is misconfigured, and a rollout should stop there. Once reached, an outage of
/// the database (every replica's at once) no longer takes it out of service.
#[tokio::test]
async fn readyz_waits_for_the_database_to_answer_once() {
    let app = spawn_app_with(AppOptions::default().lifecycle_with(crate::helpers::app::LifecycleOptions {
        through_proxy: true,
        ..crate::helpers::app::LifecycleOptions::default()
    }))
    .await;
    let proxy = app.db_proxy.as_ref().expect("a proxy");
    proxy.cut();
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["database"]["ok"], false, "{}", ready.body);
    proxy.restore();
    let reached = crate::helpers::lifecycle::eventually(Duration::from_secs(15), || async {
        app.browser().get("/readyz").await.status == 200
    })
    .await;
    assert!(reached, "ready once the database answers");
    proxy.cut();
    tokio::time::sleep(authbridge::http::health::READINESS_TTL + Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let ready = app.browser().get("/readyz").await;
    // Still ready, and the answer says what an on-call needs to know, without holding the probe up: an
    // orchestrator's probe timeout can be a second.
    assert_eq!((ready.status, &ready.json()["database"]["ok"]), (200, &json!(false)), "{}", ready.body);
    assert!(started.elapsed() < Duration::from_millis(1500), "answered in {:?}", started.elapsed());
    proxy.restore();
    tokio::time::sleep(authbridge::http::health::READINESS_TTL + Duration::from_millis(100)).await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!((ready.status, &ready.json()["database"]["ok"]), (200, &json!(true)), "{}", ready.body);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let browser = app.browser();
    let one = browser.get("/healthz").await.header("x-request-id").expect("request id");
    let two = browser.get("/healthz").await.header("x-request-id").expect("request id");
    assert_ne!(one, two);
    assert_eq!(browser.get("/missing").await.status, 404);
    let given = reqwest::Client::new()
        .get(app.base_url.join("/healthz").expect("url"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("request");
    assert_eq!(given.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-123"));
    let odd = reqwest::Client::new()
        .get(app.base_url.join("/healthz").expect("url"))
        .header("x-request-id", "forged log line\\n user_id=admin")
        .send()
        .await
        .expect("request");
    let replaced = odd.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "an id that is not an id is replaced: {replaced}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut app = spawn_app().await;
    let token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
    app.insforge.set_latency(Duration::from_millis(800));
    let client = app.bearer_client(token);
    let in_flight = tokio::spawn(async move {
        client.send(reqwest::Method::POST, "/api/todos", Some(json!({"title": "finishing"}))).await
    });
    // Shut down only once the request is in flight (it has reached InsForge), however slow the machine is.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.insforge.records_requests() == 0 {
        assert!(std::time::Instant::now() < deadline, "the request never reached InsForge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    app.shutdown().await.expect("clean shutdown");
    let response = in_flight.await.expect("request task");
    assert_eq!(response.status, 201, "the in-flight request completed: {}", response.body);
    assert_eq!(app.all_todos().await.len(), 1);
    assert!(
        reqwest::get(app.base_url.join("/healthz").expect("url")).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn a_request_that_takes_too_long_gets_504() {
    let app = spawn_app_with(
        AppOptions::default().var("REQUEST_TIMEOUT_SECONDS", 1).var("INSFORGE_REQUEST_TIMEOUT_MS", 5000),
    )
    .await;
    let token = app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(300));
    // Longer than the app's own limit (a whole second, the smallest it takes) and shorter than InsForge's.
    app.insforge.set_latency(Duration::from_secs(2));
    let client = app.bearer_client(token);
    let response = client.get("/api/todos").await;
    assert_eq!((response.status, response.error_code()), (504, "timeout".to_owned()));
    assert!(!response.body.contains("may have been saved"), "a read changes nothing: {}", response.body);
    // A change cut off by the limit may have been made before it went off: the answer says so.
    let write = client.send(reqwest::Method::POST, "/api/todos", Some(serde_json::json!({ "title": "late" }))).await;
    assert_eq!((write.status, write.error_code()), (504, "timeout".to_owned()));
    assert!(write.body.contains("may have been saved"), "{}", write.body);
}

/// A WorkOS API key WorkOS refuses can never work (every sign-in and refresh would fail), and every other check of
/// the configuration is public: the start-up check finds it, and the server stops with the reason, without the key.
/// Meanwhile (the check asks three times, seconds apart) the replica is not ready, so it takes no traffic.
#[tokio::test]
async fn a_workos_api_key_workos_refuses_stops_the_server_with_the_reason() {
    let mut app = spawn_app_with(AppOptions::default().var("WORKOS_API_KEY", "sk_test_wrong_key_of_another_env")).await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["workos"]["ok"], false, "{}", ready.body);
    assert_eq!(ready.json()["insforge"]["ok"], true, "only the key is wrong: {}", ready.body);
    let stopped = app.stopped_within(Duration::from_secs(10)).await.expect("the server stops by itself");
    let message = stopped.expect_err("with an error").to_string();
    assert!(message.contains("WORKOS_API_KEY") && message.contains("401"), "{message}");
    assert!(!message.contains("sk_test_wrong_key_of_another_env"), "{message}");
}

/// A replica started while WorkOS cannot say whether it takes the key (an outage) serves meanwhile, and keeps asking:
/// once WorkOS is back and refuses the key, the server stops with the reason, as it would have at start-up.
#[tokio::test]
async fn a_key_workos_refuses_after_an_outage_at_start_up_still_stops_the_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let workos = format!("http://{}", listener.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    // Down for its first three seconds, then WorkOS's own refusal (with its request id) of every call.
    let answering = axum::Router::new().fallback(move || async move {
        if started.elapsed() < Duration::from_secs(3) {
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("x-request-id", "req_down")], "down");
        }
        (axum::http::StatusCode::UNAUTHORIZED, [("x-request-id", "req_123")], r#"{"message":"Unauthorized"}"#)
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, answering).await;
    });
    let mut app = spawn_app_with(AppOptions::default().var("WORKOS_API_BASE_URL", workos)).await;
    let stopped = app.stopped_within(Duration::from_secs(20)).await.expect("the server stops by itself");
    let message = stopped.expect_err("with an error").to_string();
    assert!(message.contains("WORKOS_API_KEY") && message.contains("401"), "{message}");
    assert!(started.elapsed() > Duration::from_secs(3), "only once WorkOS could say");
}

/// WorkOS's own 403 to the key check (a key WorkOS knows, without read access to organizations) is its verdict that
/// the key is good: the check is not asked again.
#[tokio::test]
async fn workos_s_own_403_to_the_key_check_settles_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let workos = format!("http://{}", listener.local_addr().expect("addr"));
    let listings = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&listings);
    let answering = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counted = Arc::clone(&counted);
        async move {
            if uri.path() == "/organizations" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            (axum::http::StatusCode::FORBIDDEN, [("x-request-id", "req_403")], r#"{"message":"Forbidden"}"#)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, answering).await;
    });
    let mut app = spawn_app_with(AppOptions::default().var("WORKOS_API_BASE_URL", workos)).await;
    assert!(app.stopped_within(Duration::from_secs(7)).await.is_none(), "still serving");
    assert_eq!(listings.load(Ordering::SeqCst), 1, "asked once: WorkOS said the key is good");
}

/// Only WorkOS's own refusal (with its request id) stops the server: a 401 from something in between (a gateway
/// in front of `WORKOS_API_BASE_URL`) may be a blip, and stopping every replica that starts during one would take
/// the service down. It is logged, and the server keeps serving.
#[tokio::test]
async fn a_401_that_is_not_workos_s_own_answer_does_not_stop_the_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gateway = format!("http://{}", listener.local_addr().expect("addr"));
    // As API gateways answer (AWS API Gateway's and Kong's default), without WorkOS's X-Request-ID.
    let refusing = axum::Router::new().fallback(|| async {
        (axum::http::StatusCode::UNAUTHORIZED, [("content-type", "application/json")], r#"{"message":"Unauthorized"}"#)
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, refusing).await;
    });
    let mut app = spawn_app_with(AppOptions::default().var("WORKOS_API_BASE_URL", gateway)).await;
    assert!(app.stopped_within(Duration::from_secs(6)).await.is_none(), "still serving");
    assert_eq!(app.browser().get("/healthz").await.status, 200);
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a `Host`, with two, or with one that is no `host[:port]` is answered
/// 400 (a server MUST; hyper leaves it to us); HTTP/1.0 may go without one.
#[tokio::test]
async fn an_http_1_1_request_needs_exactly_one_valid_host() {
    let app = spawn_app().await;
    let status_of = |head: &'static str| async move {
        let answer = crate::helpers::raw_answer(app.addr, head.as_bytes()).await;
        let status = answer.split(' ').nth(1).unwrap_or_default().to_owned();
        (status, answer)
    };
    for (why, head) in [
        ("no Host", "GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n"),
        ("two Hosts", "GET /healthz HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n"),
        ("an empty Host", "GET /healthz HTTP/1.1\r\nhost:\r\nconnection: close\r\n\r\n"),
        ("a Host with a space", "GET /healthz HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n"),
        ("a Host with user info", "GET /healthz HTTP/1.1\r\nhost: me@a.example\r\nconnection: close\r\n\r\n"),
    ] {
        let (status, answer) = status_of(head).await;
        assert_eq!(status, "400", "{why}: {answer}");
        assert!(answer.contains("Host header"), "{why}: says what is wrong: {answer}");
    }
    for (why, head) in [
        ("a host and port", "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: close\r\n\r\n"),
        ("an IPv6 host", "GET /healthz HTTP/1.1\r\nhost: [::1]:8080\r\nconnection: close\r\n\r\n"),
        ("HTTP/1.0 without one", "GET /healthz HTTP/1.0\r\n\r\n"),
    ] {
        let (status, answer) = status_of(head).await;
        assert_eq!(status, "200", "{why}: {answer}");
    }
}
