//! Webhook throughput: signed WorkOS events applied per second by `POST /webhooks/workos`, one at a time and with 32
//! concurrent senders, against a throwaway PostgreSQL (`scripts/bench-webhooks`, or `cargo bench --bench webhooks`).
//!
//! Everything is real but the network: the app is built from its configuration exactly as `serve` builds it, its
//! database is a fresh migrated one on a throwaway cluster, and the WorkOS and InsForge it is configured with are
//! the stand-ins (webhooks call neither). Each event is a distinct `organization_membership.created` (a ledger insert
//! and a versioned upsert, one transaction), signed as WorkOS signs, so every request does the full work: verify,
//! parse, apply, commit. It is a measurement, not a test: it asserts only that every event was applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use authbridge::config::Config;
use authbridge::lifecycle::webhook::sign;
use authbridge::startup::Application;
use serde_json::json;
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions};
use standins::temp_postgres::{PostgresOptions, TempPostgres};
use standins::workos_standin::{WorkosStandIn, WorkosStandInOptions};
use tokio::net::TcpListener;
use url::Url;

const SECRET: &str = "whsec_bench_0123456789abcdef";
const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 6_400;
const SENDERS: usize = 32;

#[tokio::main]
async fn main() {
    let postgres = TempPostgres::start(PostgresOptions::default()).await.expect("a throwaway PostgreSQL");
    let database_url = postgres.create_database("bench").await.expect("a database");
    authbridge::migrate::run(&database_url).await.expect("migrations");
    let jwt_secret = "bench-insforge-secret-0123456789abcdef".to_owned();
    let insforge = InsforgeStandIn::start(InsforgeStandInOptions::new(
        database_url.clone(),
        StandInSecret::new(jwt_secret.clone()),
    ))
    .await
    .expect("InsForge stand-in");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let redirect_uri = Url::parse(&format!("http://{addr}/callback")).expect("url");
    let workos = WorkosStandIn::start(WorkosStandInOptions {
        redirect_uris: vec![redirect_uri.clone()],
        ..WorkosStandInOptions::default()
    })
    .await
    .expect("WorkOS stand-in");
    let environment = HashMap::from([
        ("BIND_ADDR", addr.to_string()),
        ("WORKOS_API_KEY", workos.api_key().expose().to_owned()),
        ("WORKOS_CLIENT_ID", workos.client_id().to_owned()),
        ("WORKOS_REDIRECT_URI", redirect_uri.to_string()),
        ("WORKOS_API_BASE_URL", workos.base_url().to_string()),
        ("WORKOS_COOKIE_PASSWORD", "bench-cookie-password-0123456789-abcdefgh".to_owned()),
        ("INSFORGE_URL", insforge.url().to_string()),
        ("INSFORGE_JWT_SECRET", jwt_secret),
        ("DATABASE_URL", database_url.clone()),
        ("WORKOS_WEBHOOK_SECRET", SECRET.to_owned()),
        ("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned()),
    ]);
    let config = Config::from_lookup(|name| environment.get(name).cloned()).expect("configuration");
    let app = Application::build_with_listener(config, listener).expect("the app builds");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let endpoint = Arc::new(Url::parse(&format!("http://{addr}/webhooks/workos")).expect("url"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(SENDERS).build().expect("client");

    // Warm up: connections, the pool, PostgreSQL's caches.
    run(&http, &endpoint, "warmup", 200, 8).await;
    let sequential = run(&http, &endpoint, "sequential", SEQUENTIAL, 1).await;
    let concurrent = run(&http, &endpoint, "concurrent", CONCURRENT, SENDERS).await;
    println!("webhook throughput (signed events applied per second, PostgreSQL on this machine)");
    println!("{sequential}");
    println!("{concurrent}");

    let _ = stop.send(());
    let _ = server.await;
    insforge.shutdown().await;
    workos.shutdown().await;
    postgres.stop().await;
}

struct Report {
    label: &'static str,
    events: usize,
    senders: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
        write!(
            f,
            "  {:<10} {:>5} events, {:>2} sender(s): {:>7.0} events/s   latency p50 {:>6.2} ms, p99 {:>6.2} ms",
            self.label,
            self.events,
            self.senders,
            self.events as f64 / self.elapsed.as_secs_f64(),
            at(0.5).as_secs_f64() * 1000.0,
            at(0.99).as_secs_f64() * 1000.0,
        )
    }
}

async fn run(
    http: &reqwest::Client,
    endpoint: &Arc<Url>,
    label: &'static str,
    events: usize,
    senders: usize,
) -> Report {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (http, endpoint) = (http.clone(), Arc::clone(endpoint));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in (sender..events).step_by(senders) {
                latencies.push(deliver(&http, &endpoint, label, n).await);
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for task in tasks {
        latencies.extend(task.await.expect("a sender"));
    }
    Report { label, events, senders, elapsed: started.elapsed(), latencies }
}

async fn deliver(http: &reqwest::Client, endpoint: &Url, label: &str, n: usize) -> Duration {
    let now = time::OffsetDateTime::now_utc();
    let at = now.format(&time::format_description::well_known::Rfc3339).expect("time");
    let event = json!({
        "object": "event",
        "id": format!("event_{label}_{n}"),
        "event": "organization_membership.created",
        "data": {
            "object": "organization_membership", "id": format!("om_{label}_{n}"), "user_id": format!("user_{n}"),
            "organization_id": "org_bench", "status": "active", "role": { "slug": "member" },
            "custom_attributes": {}, "directory_managed": false, "created_at": at, "updated_at": at,
        },
        "created_at": at,
    });
    let body = serde_json::to_vec(&event).expect("json");
    let signature = sign(SECRET, SystemTime::now(), &body);
    let started = Instant::now();
    let response = http
        .post(endpoint.clone())
        .header("content-type", "application/json")
        .header("workos-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the app answers");
    assert_eq!(response.status().as_u16(), 200, "event {n} was not applied");
    started.elapsed()
}
