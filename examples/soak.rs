//! The soak run behind `scripts/soak`: the release binary under steady load for a minute while its upstreams
//! misbehave, checked for what must never happen. A tool run on demand, never deployed.
//!
//! `soak <authbridge binary> [seconds=60] [connections=32]` starts a throwaway PostgreSQL, the InsForge and WorkOS
//! stand-ins (access tokens of 20 s, so every session refreshes a few times) and the binary, signs in one browser
//! session per connection, then has each session list its todos and create one (a unique title) in turn until the
//! time is up. Meanwhile:
//! - every 10th InsForge request fails with 500, and every 100th hangs for 3 s, past the bridge's 1 s timeout;
//! - from the 20th second, WorkOS refuses every `authenticate` (so every refresh) with 503 for 5 s.
//!
//! It then checks, and prints: no panic in the binary's log; no 500 (only 200/201 and the documented 502, 503,
//! 504); no session lost (no 401 during the run, and every session still signed in afterwards); every todo
//! answered 201 stored exactly once, none stored twice, and those whose answer was lost stored at most once; the
//! binary's RSS sampled every 5 s. Exits non-zero when a check fails.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Client, StatusCode};
use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInOptions, RecurringFaults};
use standins::temp_postgres::{PostgresOptions, TempPostgres};
use standins::workos_standin::{Endpoint, WorkosStandIn, WorkosStandInOptions};
use tokio::sync::Mutex;
use url::Url;

const COOKIE_PASSWORD: &str = "soak-cookie-password-0123456789-abcdefghijkl";
const JWT_SECRET: &str = "soak-insforge-secret-0123456789-abcdefghijkl";
const USERS: [&str; 3] = ["alice@acme.test", "bob@acme.test", "carol@example.test"];

/// One browser: a cookie jar, and what it saw.
#[derive(Default)]
struct Session {
    cookies: BTreeMap<String, String>,
    statuses: BTreeMap<u16, u64>,
    created: Vec<String>,
    unknown: Vec<String>,
    refused: u64,
}

impl Session {
    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for line in response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let Some((pair, attributes)) = line.split_once(';').or(Some((line, ""))) else { continue };
            let Some((name, value)) = pair.split_once('=') else { continue };
            if attributes.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }
}

async fn sign_in(http: &Client, base: &Url, email: &str) -> Result<Session, String> {
    let mut session = Session::default();
    let login = base.join(&format!("/login?login_hint={email}")).map_err(|e| e.to_string())?;
    // As the app's own sign-in link sends it: a `login_hint` from anywhere else first asks the person to confirm.
    let response = http.get(login).header("sec-fetch-site", "same-origin").send().await.map_err(|e| e.to_string())?;
    session.keep(&response);
    let location = |response: &reqwest::Response| {
        response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or("no redirect")
    };
    let authorize = location(&response)?;
    let response = http.get(&authorize).send().await.map_err(|e| e.to_string())?;
    let callback = location(&response)?;
    let response =
        http.get(&callback).header(COOKIE, session.cookie_header()).send().await.map_err(|e| e.to_string())?;
    session.keep(&response);
    if !session.cookies.contains_key("wos-session") {
        return Err(format!("sign-in of {email} set no session: {}", response.status()));
    }
    Ok(session)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let binary = args.next().ok_or("usage: soak <authbridge binary> [seconds] [connections]")?;
    let seconds: u64 = args.next().map_or(Ok(60), |s| s.parse()).map_err(|e| format!("seconds: {e}"))?;
    let connections: usize = args.next().map_or(Ok(32), |s| s.parse()).map_err(|e| format!("connections: {e}"))?;

    let postgres = TempPostgres::start(PostgresOptions::default()).await.map_err(|e| e.to_string())?;
    let database = postgres.create_database("soak").await.map_err(|e| e.to_string())?;
    authbridge::migrate::run(&database).await.map_err(|e| e.to_string())?;
    let insforge = InsforgeStandIn::start(InsforgeStandInOptions::new(&database, StandInSecret::new(JWT_SECRET)))
        .await
        .map_err(|e| e.to_string())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let base = Url::parse(&format!("http://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let workos = WorkosStandIn::start(WorkosStandInOptions {
        redirect_uris: vec![base.join("/callback").map_err(|e| e.to_string())?],
        access_token_ttl: Duration::from_secs(20),
        ..WorkosStandInOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;

    let log = std::env::temp_dir().join(format!("authbridge-soak-{port}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&binary)
        .arg("serve")
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKOS_API_KEY", workos.api_key().expose())
        .env("WORKOS_CLIENT_ID", workos.client_id())
        .env("WORKOS_REDIRECT_URI", base.join("/callback").map_err(|e| e.to_string())?.as_str())
        .env("WORKOS_API_BASE_URL", workos.base_url().as_str())
        .env("WORKOS_COOKIE_PASSWORD", COOKIE_PASSWORD)
        .env("INSFORGE_URL", insforge.url().as_str())
        .env("INSFORGE_JWT_SECRET", JWT_SECRET)
        .env("INSFORGE_REQUEST_TIMEOUT_MS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{binary}: {e}"))?;
    let pid = child.id().ok_or("the binary exited at once")?;

    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if http.get(base.join("/healthz").map_err(|e| e.to_string())?).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sessions = Vec::new();
    for i in 0..connections {
        sessions.push(Arc::new(Mutex::new(sign_in(&http, &base, USERS[i % USERS.len()]).await?)));
    }

    insforge.set_recurring_faults(RecurringFaults {
        fail_every: Some((10, 500)),
        hang_every: Some((100, Duration::from_secs(3))),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push((started.elapsed().as_secs(), rss_kib(pid)));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            samples
        })
    };
    let outage = {
        let workos_outage = Duration::from_secs(5);
        let at = Duration::from_secs(seconds.min(20));
        async move {
            tokio::time::sleep(at).await;
            workos_outage
        }
    };
    let origin = base.origin().ascii_serialization();
    let workers = sessions.iter().enumerate().map(|(i, session)| {
        let (http, base, origin, session) = (http.clone(), base.clone(), origin.clone(), Arc::clone(session));
        async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let mut session = session.lock().await;
                let create = n.is_multiple_of(4);
                let title = format!("soak {i} {n}");
                let request = if create {
                    http.post(base.join("/api/todos").expect("url"))
                        .header(ORIGIN, &origin)
                        .json(&serde_json::json!({ "title": title }))
                } else {
                    http.get(base.join("/api/todos?limit=20").expect("url"))
                };
                let response = request.header(COOKIE, session.cookie_header()).send().await;
                let Ok(response) = response else {
                    *session.statuses.entry(0).or_default() += 1;
                    continue;
                };
                session.keep(&response);
                let status = response.status();
                *session.statuses.entry(status.as_u16()).or_default() += 1;
                match status {
                    StatusCode::CREATED => session.created.push(title),
                    StatusCode::UNAUTHORIZED => session.refused += 1,
                    _ if create && status.is_server_error() => session.unknown.push(title),
                    _ => {}
                }
                let _ = response.bytes().await;
            }
        }
    });
    tokio::join!(futures::future::join_all(workers), async {
        let duration = outage.await;
        workos.fail_for(Endpoint::Authenticate, duration, 503);
    });
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    insforge.set_recurring_faults(RecurringFaults::default());
    let samples = sampler.await.map_err(|e| e.to_string())?;

    // Afterwards, every session must still be signed in.
    let mut lost = 0;
    for session in &sessions {
        let mut session = session.lock().await;
        let response = http
            .get(base.join("/api/me").map_err(|e| e.to_string())?)
            .header(COOKIE, session.cookie_header())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        session.keep(&response);
        if response.status() != StatusCode::OK || session.refused > 0 {
            lost += 1;
        }
    }

    let pool = sqlx::PgPool::connect(&database).await.map_err(|e| e.to_string())?;
    let stored: Vec<(String, i64)> = sqlx::query_as("select title, count(*) from public.todos group by title")
        .fetch_all(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let stored: HashMap<String, i64> = stored.into_iter().collect();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut created, mut missing, mut unknown, mut unknown_stored) = (0, 0, 0, 0);
    for session in &sessions {
        let session = session.lock().await;
        for (status, count) in &session.statuses {
            *statuses.entry(*status).or_default() += count;
        }
        created += session.created.len();
        missing += session.created.iter().filter(|title| stored.get(*title) != Some(&1)).count();
        unknown += session.unknown.len();
        unknown_stored += session.unknown.iter().filter(|title| stored.contains_key(*title)).count();
    }
    let doubled = stored.values().filter(|count| **count > 1).count();

    child.start_kill().map_err(|e| e.to_string())?;
    let _ = child.wait().await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let panics = log_text.matches("panicked").count();
    let _ = std::fs::remove_file(&log);

    let total: u64 = statuses.values().sum();
    let rss: Vec<String> = samples.iter().map(|(at, kib)| format!("{at}s {:.1} MB", *kib as f64 / 1024.0)).collect();
    println!(
        "soak: {:.0} s, {connections} connections, {total} requests ({:.0}/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("statuses: {}", statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", "));
    println!(
        "InsForge records requests: {}; WorkOS refreshes: {}",
        insforge.records_requests(),
        workos.refresh_calls()
    );
    println!(
        "panics: {panics}; 500s: {}; sessions lost: {lost} of {connections}",
        statuses.get(&500).copied().unwrap_or(0)
    );
    println!(
        "todos: {created} created (201), {missing} of them not stored exactly once, {doubled} stored twice; {unknown} answers lost (502/504), {unknown_stored} of those stored"
    );
    println!("RSS: {}", rss.join(", "));

    let undocumented = statuses.keys().filter(|status| !matches!(**status, 200 | 201 | 502 | 503 | 504)).count();
    let rss_values: Vec<u64> = samples.iter().map(|(_, kib)| *kib).filter(|kib| *kib > 0).collect();
    let settled = rss_values.get(2).copied().unwrap_or_default();
    let last = rss_values.last().copied().unwrap_or_default();
    let flat = last <= settled + settled / 5 + 2048;
    let ok = panics == 0 && undocumented == 0 && lost == 0 && missing == 0 && doubled == 0 && flat;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    postgres.stop().await;
    if ok { Ok(()) } else { Err("a soak check failed".to_owned()) }
}
