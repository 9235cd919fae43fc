//! `authbridge demo`, run as a newcomer runs it: the built binary, its printed instructions, Ctrl-C/SIGTERM, and
//! the clear refusals (non-loopback address, ports in use).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::browser::Browser;

struct Ports {
    app: u16,
    workos: u16,
    insforge: u16,
}

impl Ports {
    /// Three distinct free ports: all are held at once while choosing, so they cannot coincide.
    fn free() -> Self {
        let listeners: Vec<std::net::TcpListener> =
            (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
        let port = |i: usize| listeners[i].local_addr().expect("addr").port();
        Self { app: port(0), workos: port(1), insforge: port(2) }
    }
}

fn demo(ports: &Ports, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authbridge"));
    command.arg("demo");
    if !extra.contains(&"--bind") {
        command.args(["--bind", &format!("127.0.0.1:{}", ports.app)]);
    }
    command
        .args(["--workos-port", &ports.workos.to_string()])
        .args(["--insforge-port", &ports.insforge.to_string()])
        .args(extra)
        .env_remove("BIND_ADDR")
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs a demo that is expected to refuse to start; returns its stderr.
async fn refused(ports: &Ports, extra: &[&str]) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), demo(ports, extra).output())
        .await
        .expect("a refusal is quick")
        .expect("the demo runs");
    assert_eq!(output.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stdout.is_empty(), "nothing else is printed: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    stderr
}

/// Starts a demo and reads its stdout until the welcome block is complete.
async fn started(ports: &Ports) -> (Child, String) {
    started_with(ports, &[]).await
}

async fn started_with(ports: &Ports, extra: &[&str]) -> (Child, String) {
    let mut child = demo(ports, extra).spawn().expect("the demo starts");
    // Drained so the demo never blocks on a full pipe, and shown when a test fails.
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("demo: {line}");
            }
        });
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the demo did not finish starting; it printed: {printed}"))
            .expect("read stdout");
        let Some(line) = line else { panic!("the demo exited while starting; it printed: {printed}") };
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("Press Ctrl-C to stop") {
            break;
        }
    }
    (child, printed)
}

async fn stop(mut child: Child) {
    let pid = child.id().expect("a running demo").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops promptly on SIGTERM")
        .expect("wait");
    assert!(exit.success(), "a clean exit: {exit:?}");
}

/// Runs a printed command line in a shell, as a newcomer pasting it would.
async fn paste(line: &str) {
    let output = Command::new("sh")
        .args(["-c", &format!("{line} --silent --show-error --fail")])
        .output()
        .await
        .expect("sh runs");
    assert!(output.status.success(), "`{line}` failed: {}", String::from_utf8_lossy(&output.stderr));
}

async fn wait_until<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn the_demo_serves_the_app_prints_a_working_curl_line_and_stops_cleanly() {
    let ports = Ports::free();
    let (child, printed) = started_with(&ports, &["--access-token-ttl", "42"]).await;
    let url = format!("http://localhost:{}/", ports.app);
    assert!(printed.contains(&url), "{printed}");
    // The flags reach the stand-in: its port, and its tokens' lifetime.
    assert!(printed.contains(&format!("WorkOS stand-in     http://127.0.0.1:{}/", ports.workos)), "{printed}");
    assert!(printed.contains("Access tokens       last 42 s"), "{printed}");
    assert!(printed.contains("alice@acme.test") && printed.contains("bob@acme.test"), "{printed}");

    // The printed curl line works as printed.
    let curl = printed.lines().find(|l| l.trim_start().starts_with("curl ")).expect("a curl line");
    let token = curl.split("Bearer ").nth(1).and_then(|rest| rest.split('"').next()).expect("a bearer token");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{url}api/todos"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": "made with the printed token" }))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(created.status(), 201);

    // And a person can sign in through the stand-in's sign-in flow and see that todo (they are Alice).
    let browser = Browser::new(url.parse().expect("url"));
    assert_eq!(browser.sign_in("alice@acme.test").await.status, 302);
    assert!(browser.get("/").await.body.contains("made with the printed token"));

    // The two lifecycle commands work as printed, pasted into a shell: Bob loses Acme, Carol loses everything.
    let command = |marker: &str| {
        printed
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("curl -X DELETE") && line.contains(marker))
            .unwrap_or_else(|| panic!("a command with {marker}: {printed}"))
            .to_owned()
    };
    // Bob belongs to Acme and Globex: he picks Acme on the way in.
    let bob = Browser::new(url.parse().expect("url"));
    let callback = bob.sign_in("bob@acme.test").await;
    let address = callback.location().unwrap_or_default();
    assert!(address.starts_with("/login/organization?selection="), "{}", callback.body);
    let choice = bob.get(&address).await;
    assert!(choice.body.contains("Acme") && choice.body.contains("Globex"), "{}", choice.body);
    let token = crate::helpers::browser::extract_csrf_token(&choice.body).expect("a CSRF token");
    let picked = bob.post_form(&address, &[("csrf_token", &token), ("organization_id", "org_standin_acme")]).await;
    assert_eq!(picked.status, 303, "{}", picked.body);
    assert!(bob.get("/api/organizations").await.body.contains("\"Acme\""));
    assert!(bob.get("/").await.body.contains("Acme"), "the page header names Bob's organization");
    paste(&command("/organization_memberships/")).await;
    let removed = wait_until(|| async { !bob.get("/api/organizations").await.body.contains("Acme") }).await;
    assert!(removed, "Acme is gone from Bob's organizations");
    assert!(!bob.get("/").await.body.contains("Acme"), "and from his page, on the next reload");

    let carol = Browser::new(url.parse().expect("url"));
    assert_eq!(carol.sign_in("carol@example.test").await.status, 302);
    assert_eq!(carol.get("/api/me").await.status, 200);
    paste(&command("/users/")).await;
    let deleted = wait_until(|| async { carol.get("/api/me").await.status == 401 }).await;
    assert!(deleted, "Carol is signed out once deleted");

    let data_dir = printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("Data directory"))
        .map(|dir| std::path::PathBuf::from(dir.trim()))
        .expect("the data directory is printed");
    assert!(data_dir.join("PG_VERSION").exists(), "the throwaway cluster lives in {}", data_dir.display());
    stop(child).await;
    assert!(!data_dir.exists(), "SIGTERM removed the throwaway data in {}", data_dir.display());

    // Right after, the same ports are free again and a second demo starts.
    let (again, _) = started(&ports).await;
    let health = reqwest::get(format!("{url}healthz")).await.expect("the second demo answers");
    assert_eq!(health.status(), 200);
    stop(again).await;
}

#[tokio::test]
async fn the_oidc_demo_signs_in_through_the_oidc_stand_in_and_its_curl_line_works() {
    let ports = Ports::free();
    let oidc_port = ports.workos.to_string();
    let (child, printed) =
        started_with(&ports, &["--provider", "oidc", "--oidc-port", &oidc_port, "--access-token-ttl", "43"]).await;
    let url = format!("http://localhost:{}/", ports.app);
    assert!(printed.contains(&url), "{printed}");
    assert!(printed.contains("alice@acme.test") && printed.contains("bob@acme.test"), "{printed}");
    assert!(printed.contains(&format!("OIDC stand-in       http://127.0.0.1:{oidc_port}/")), "{printed}");
    assert!(printed.contains("Access tokens       last 43 s"), "{printed}");

    let curl = printed.lines().find(|l| l.trim_start().starts_with("curl ")).expect("a curl line");
    let token = curl.split("Bearer ").nth(1).and_then(|rest| rest.split('"').next()).expect("a bearer token");
    let created = reqwest::Client::new()
        .post(format!("{url}api/todos"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": "made through Auth0-shaped OIDC" }))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(created.status(), 201);

    // Signing in on the stand-in as Alice gives the same user as the printed token: RLS shows her the todo.
    let browser = Browser::new(url.parse().expect("url"));
    assert_eq!(browser.sign_in("alice@acme.test").await.status, 302);
    let home = browser.get("/").await;
    assert!(
        home.body.contains("made through Auth0-shaped OIDC") && home.body.contains("Alice Anderson"),
        "{}",
        home.body
    );
    stop(child).await;
}

/// With `--data-dir`, the database outlives the stand-in, which starts from its seed again: a user deleted in one
/// run is not offered in the next (WorkOS never brings a deleted user back, and the app would refuse her), nor a
/// deleted organization.
#[tokio::test]
async fn a_kept_data_directory_does_not_offer_what_was_deleted_in_an_earlier_run() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("authbridge-demo-kept-{}-{nanos}", std::process::id()));
    let dir_arg = dir.to_str().expect("a UTF-8 temporary directory").to_owned();
    let ports = Ports::free();
    let url = format!("http://localhost:{}/", ports.app);

    let (child, printed) = started_with(&ports, &["--data-dir", &dir_arg]).await;
    assert!(printed.contains("kept between runs"), "{printed}");
    assert!(printed.contains("carol@example.test"), "{printed}");
    let carol = Browser::new(url.parse().expect("url"));
    assert_eq!(carol.sign_in("carol@example.test").await.status, 302);
    let delete = printed
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("curl -X DELETE") && line.contains("/users/"))
        .unwrap_or_else(|| panic!("a command deleting Carol: {printed}"))
        .to_owned();
    paste(&delete).await;
    let deleted = wait_until(|| async { carol.get("/api/me").await.status == 401 }).await;
    assert!(deleted, "Carol is signed out once deleted");
    // And Bob, whom support staff may impersonate in the demo.
    assert!(printed.contains("impersonating Bob"), "{printed}");
    let bob = Browser::new(url.parse().expect("url"));
    assert_eq!(bob.sign_in("bob@acme.test").await.status, 302);
    paste(&delete.replace("user_standin_carol", "user_standin_bob")).await;
    assert!(wait_until(|| async { bob.get("/api/me").await.status == 401 }).await, "Bob is signed out once deleted");
    // And an organization, through the same API (the printed command, aimed at it).
    let alice = Browser::new(url.parse().expect("url"));
    assert_eq!(alice.sign_in("alice@acme.test").await.status, 302);
    assert!(alice.get("/api/organizations").await.body.contains("\"Acme\""));
    paste(&delete.replace("user_management/users/user_standin_carol", "organizations/org_standin_acme")).await;
    let gone = wait_until(|| async { !alice.get("/api/organizations").await.body.contains("Acme") }).await;
    assert!(gone, "Acme is gone once deleted");
    stop(child).await;

    let (again, printed) = started_with(&ports, &["--data-dir", &dir_arg]).await;
    assert!(printed.contains("alice@acme.test"), "{printed}");
    assert!(!printed.contains("carol@example.test"), "the deleted user is not offered again: {printed}");
    assert!(!printed.contains("bob@acme.test"), "{printed}");
    assert!(!printed.contains("impersonating Bob"), "nor impersonating a deleted user: {printed}");
    assert!(!printed.contains("/users/"), "nor a command to delete her again: {printed}");
    assert!(!printed.contains("Acme"), "nor the deleted organization: {printed}");
    let alice = Browser::new(url.parse().expect("url"));
    assert_eq!(alice.sign_in("alice@acme.test").await.status, 302, "the others sign in as before");
    stop(again).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_refuses_to_listen_beyond_loopback() {
    let stderr = refused(&Ports::free(), &["--bind", "0.0.0.0:3000"]).await;
    assert!(stderr.contains("loopback") && stderr.contains("0.0.0.0"), "{stderr}");

    // The same through BIND_ADDR, as a `.env` written for production would set it.
    let output = Command::new(env!("CARGO_BIN_EXE_authbridge"))
        .arg("demo")
        .env("BIND_ADDR", "0.0.0.0:3000")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("the demo runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn a_port_in_use_is_named_with_the_flag_that_moves_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();

    let ports = Ports { app: port, ..Ports::free() };
    let stderr = refused(&ports, &[]).await;
    assert!(stderr.contains(&format!("port {port}")) && stderr.contains("--port"), "{stderr}");

    let ports = Ports { workos: port, ..Ports::free() };
    let stderr = refused(&ports, &[]).await;
    assert!(stderr.contains(&format!("port {port}")) && stderr.contains("--workos-port"), "{stderr}");
}

#[tokio::test]
async fn without_postgresql_the_demo_names_the_package_to_install_and_nothing_else() {
    let empty = std::env::temp_dir().join(format!("authbridge-no-postgres-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&empty).expect("an empty directory");
    let mut command = demo(&Ports::free(), &[]);
    command.env("PG_BINDIR", &empty);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output()).await.expect("quick").expect("runs");
    std::fs::remove_dir_all(&empty).expect("cleanup");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing else is printed: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
}
