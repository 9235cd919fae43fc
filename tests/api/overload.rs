//! Overload: past `MAX_CONCURRENT_REQUESTS` requests in flight, the rest are answered 503 with `Retry-After` at
//! once (never queued), memory stays bounded however long the flood lasts, and the app serves normally the moment
//! it ends.

use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;

use crate::helpers::app::{ALICE, AppOptions, TestApp, spawn_app_with};
use crate::helpers::browser::{ApiClient, TestResponse};

const LIMIT: usize = 8;
const FLOOD: usize = 20 * LIMIT;

fn bearer(app: &TestApp) -> String {
    app.workos.mint_access_token(&app.user_id(ALICE), Duration::from_secs(600))
}

/// `FLOOD` requests at once, each on its own connection, in the order they completed.
async fn flood(client: &ApiClient) -> Vec<TestResponse> {
    let order = std::sync::Mutex::new(Vec::new());
    join_all((0..FLOOD).map(|_| async {
        let response = client.get("/api/todos").await;
        order.lock().expect("not poisoned").push(response);
    }))
    .await;
    order.into_inner().expect("not poisoned")
}

fn assert_shed(responses: &[TestResponse]) {
    let served = responses.iter().filter(|r| r.status == 200).count();
    let shed: Vec<&TestResponse> = responses.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        served + shed.len(),
        FLOOD,
        "only 200 or 503: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The slow upstream holds every admitted request for seconds, so hardly more than LIMIT can get in.
    assert!((1..=2 * LIMIT).contains(&served), "{served} of {FLOOD} served with a limit of {LIMIT}");
    for response in &shed {
        assert_eq!(response.header("retry-after").as_deref(), Some("1"));
        assert_eq!(response.error_code(), "overloaded");
    }
    // Shed at once, not queued: every refusal came back before the first admitted request finished.
    let first_served = responses.iter().position(|r| r.status == 200).expect("some were served");
    assert!(first_served >= shed.len() - LIMIT, "refusals waited behind admitted requests");
}

#[tokio::test]
async fn at_twenty_times_the_limit_the_excess_is_refused_at_once_and_the_app_recovers() {
    let app = spawn_app_with(AppOptions::default().var("MAX_CONCURRENT_REQUESTS", LIMIT)).await;
    let client = app.bearer_client(bearer(&app));
    app.insforge.set_latency(Duration::from_secs(2));

    let (responses, health) = tokio::join!(flood(&client), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.browser().get("/healthz").await
    });
    assert_shed(&responses);
    assert_eq!(health.status, 200, "liveness is answered even at the limit");

    app.insforge.set_latency(Duration::ZERO);
    for _ in 0..3 * LIMIT {
        assert_eq!(client.get("/api/todos").await.status, 200, "the flood is over: everything is served");
    }
}

/// While every slot is taken, a request is refused in its route's format: the error JSON under `/api/` and under
/// `/webhooks/` (whose answers WorkOS reads, like every other error there), plain text for the pages.
#[tokio::test]
async fn a_shed_request_is_refused_in_its_routes_format() {
    const SLOTS: usize = 2;
    let app = spawn_app_with(AppOptions::default().var("MAX_CONCURRENT_REQUESTS", SLOTS)).await;
    let client = app.bearer_client(bearer(&app));
    app.insforge.set_latency(Duration::from_secs(2));

    let traced = async {
        let url = app.base_url.join("/healthz/not").expect("url");
        let response = reqwest::Client::new().get(url).header("x-request-id", "trace-4711").send().await;
        let response = response.expect("an answer");
        let id = response.headers().get("x-request-id").map(|id| id.to_str().unwrap_or("?").to_owned());
        (response.status().as_u16(), id)
    };
    let (held, (api, webhook, page, traced)) =
        tokio::join!(join_all((0..SLOTS).map(|_| client.get("/api/todos"))), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let anonymous = ApiClient::new(app.base_url.clone(), None);
            (
                client.get("/api/todos").await,
                anonymous.send(Method::POST, "/webhooks/workos", Some(serde_json::json!({}))).await,
                anonymous.get("/").await,
                traced.await,
            )
        });
    // A shed answer carries a request id as every other does: the client's own, or one of its own.
    assert_eq!((traced.0, traced.1.as_deref()), (503, Some("trace-4711")));
    assert!(page.header("x-request-id").is_some_and(|id| id.len() == 36), "{:?}", page.headers);
    assert!(held.iter().all(|r| r.status == 200), "{:?}", held.iter().map(|r| r.status).collect::<Vec<_>>());
    for (what, response) in [("the API", &api), ("the webhook", &webhook)] {
        assert_eq!(response.status, 503, "{what}: {}", response.body);
        assert_eq!(response.header("content-type").as_deref(), Some("application/json"), "{what}");
        assert_eq!(response.error_code(), "overloaded", "{what}");
        assert_eq!(response.header("retry-after").as_deref(), Some("1"), "{what}");
    }
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/plain")), "{:?}", page.headers);
    // Built outside the router, with the security headers all the same.
    for response in [&api, &webhook, &page] {
        for (name, value) in [
            ("x-frame-options", "DENY"),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("x-content-type-options", "nosniff"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(response.header(name).as_deref(), Some(value), "{name}: {:?}", response.headers);
        }
        assert!(response.header("content-security-policy").is_some_and(|csp| csp.contains("frame-ancestors 'none'")));
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

#[tokio::test]
async fn memory_stays_bounded_through_waves_of_overload() {
    // The real binary in its own process, so its memory is measured alone, against this test's stand-ins.
    let app = spawn_app_with(AppOptions::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let config = &app.config;
    let workos = config.workos().expect("the test app signs in with WorkOS");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authbridge"))
        .arg("serve")
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKOS_API_KEY", workos.api_key.expose())
        .env("WORKOS_CLIENT_ID", &workos.client_id)
        .env("WORKOS_REDIRECT_URI", workos.redirect_uri.as_str())
        .env("WORKOS_API_BASE_URL", workos.api_base_url.as_str())
        .env("WORKOS_COOKIE_PASSWORD", config.session.cookie_password.expose())
        .env("INSFORGE_URL", config.insforge.url.as_str())
        .env("INSFORGE_JWT_SECRET", config.insforge.jwt_secret.expose())
        .env("MAX_CONCURRENT_REQUESTS", LIMIT.to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the authbridge binary starts");
    let pid = child.id().expect("a pid");
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
    let client = ApiClient::new(base.clone(), Some(bearer(&app)));
    let probe = ApiClient::new(base, None);
    let mut ready = false;
    for _ in 0..100 {
        if probe.try_get("/healthz").await.is_some_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the binary answers /healthz");
    for _ in 0..LIMIT {
        assert_eq!(client.get("/api/todos").await.status, 200);
    }

    app.insforge.set_latency(Duration::from_secs(2));
    let mut rss = Vec::new();
    for _ in 0..5 {
        assert_shed(&flood(&client).await);
        rss.push(rss_kib(pid));
    }
    let first = rss[0];
    let peak = rss.iter().copied().max().unwrap_or_default();
    assert!(peak <= first + 10 * 1024, "RSS grew from {first} KiB to {peak} KiB over five waves: {rss:?}");
    assert!(peak < 200 * 1024, "RSS {peak} KiB");

    app.insforge.set_latency(Duration::ZERO);
    for _ in 0..3 * LIMIT {
        assert_eq!(client.get("/api/todos").await.status, 200, "recovered");
    }
    child.start_kill().expect("stop the binary");
    let output = child.wait_with_output().await.expect("the binary exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
