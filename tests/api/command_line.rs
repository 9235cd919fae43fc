//! The `authbridge` command's own start-up, before any subcommand's work: `.env` and the logging variables are
//! checked like every other variable (a bad one stops the start with one line naming it), and `--help` and
//! `--version` work whatever state `.env` is in.

use std::process::{Command, Output};

use crate::migrate_command::{empty_dir, text};

/// `authbridge` with `args` in `dir`, with `vars` set and nothing of the developer's own configuration.
async fn authbridge(dir: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authbridge"));
    command.args(args).current_dir(dir);
    for name in ["DATABASE_URL", "RUST_LOG", "LOG_FORMAT"] {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("run authbridge")).await.expect("join")
}

#[tokio::test]
async fn a_malformed_dotenv_is_named_by_line_and_never_hides_help_or_version() {
    let dir = empty_dir();
    let secret = "hunter2-do-not-print";
    std::fs::write(dir.join(".env"), format!("# comment\nBIND_ADDR=127.0.0.1:3000\noops {secret}\n")).expect(".env");

    let refused = authbridge(&dir, &["migrate"], &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    let line = text(&refused.stderr);
    assert!(line.starts_with("authbridge: .env has a malformed line (line 3, "), "{line}");
    assert!(!line.contains(secret), "the line itself may hold a secret: {line}");

    let help = authbridge(&dir, &["--help"], &[]).await;
    assert!(help.status.success() && text(&help.stdout).contains("Usage: authbridge"), "{}", text(&help.stderr));
    let version = authbridge(&dir, &["--version"], &[]).await;
    assert!(version.status.success() && text(&version.stdout).starts_with("authbridge "), "{:?}", version);
    let migrate_help = authbridge(&dir, &["migrate", "--help"], &[]).await;
    assert!(migrate_help.status.success(), "{}", text(&migrate_help.stderr));

    // One that cannot be read at all (not UTF-8) is refused too, not taken for a missing one.
    std::fs::write(dir.join(".env"), b"A=1\nB=\xff\xfe\n").expect(".env");
    let unreadable = authbridge(&dir, &["migrate"], &[]).await;
    assert_eq!(unreadable.status.code(), Some(1));
    assert_eq!(text(&unreadable.stderr), "authbridge: .env could not be read: invalid data\n");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_log_format_or_filter_that_does_not_parse_stops_the_start_by_name() {
    let dir = empty_dir();
    for (vars, named) in [
        (&[("LOG_FORMAT", "jsno")][..], "configuration error: LOG_FORMAT: must be `pretty` or `json` (it is \"jsno\")"),
        (&[("RUST_LOG", "debug,foo=notalevel")][..], "configuration error: RUST_LOG: cannot parse"),
    ] {
        let output = authbridge(&dir, &["migrate"], vars).await;
        assert_eq!(output.status.code(), Some(1), "{vars:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("authbridge: {named}")), "{stderr}");
    }
    // Accepted: the documented values, in any case, and the default.
    for vars in [&[("LOG_FORMAT", "JSON")][..], &[("LOG_FORMAT", "pretty"), ("RUST_LOG", "warn,sqlx=error")], &[]] {
        let output = authbridge(&dir, &["migrate"], vars).await;
        let stderr = text(&output.stderr);
        assert!(stderr.contains("DATABASE_URL"), "on to the subcommand, which misses its database: {stderr}");
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// With `LOG_FORMAT=json`, the reason a command stops is a JSON line like every other, which a log shipper can read.
#[tokio::test]
async fn with_json_logs_the_reason_for_stopping_is_a_json_line() {
    let dir = empty_dir();
    let output = authbridge(&dir, &["migrate"], &[("LOG_FORMAT", "json")]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    for line in stderr.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not JSON: {line:?}");
    }
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert_eq!(last["fields"]["message"], "authbridge stopped", "{stderr}");
    assert!(last["fields"]["error"].as_str().is_some_and(|error| error.contains("DATABASE_URL")), "{stderr}");
    // For a person at a terminal it stays one plain line.
    let pretty = authbridge(&dir, &["migrate"], &[]).await;
    let stderr = text(&pretty.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("authbridge: ") && stderr.contains("DATABASE_URL"), "{stderr}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// `serve` stops gracefully at SIGTERM, finishing the requests under way; a second signal, a second or more later,
/// stops it at once (here a request is held by an upstream that never answers, for up to a minute), and says so in
/// the log's format.
#[cfg(unix)]
#[tokio::test]
async fn a_second_signal_stops_serve_without_waiting_for_requests_under_way() {
    for format in ["pretty", "json"] {
        second_signal_stops_serve(format).await;
    }
}

#[cfg(unix)]
async fn second_signal_stops_serve(format: &str) {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = format!("http://{}/", silent.local_addr().expect("an address"));
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            kept.push(connection);
        }
    });
    let dir = empty_dir();
    let (mut child, mut lines, addr) = start_serve(&dir, &silent_url, format).await;
    let under_way = tokio::spawn(reqwest::get(format!("http://{addr}/readyz")));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let pid = child.id().expect("running").to_string();
    let term = || async { tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill") };
    assert!(term().await.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Within a second of the first: the same Ctrl-C reaching the process twice, not the operator's second.
    assert!(term().await.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(child.try_wait().expect("wait").is_none(), "the first signal waits for the request under way");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(child.try_wait().expect("wait").is_none(), "still waiting");
    // Signalled again until it stops (a loaded machine may take a moment to listen for the second signal), for up
    // to 10 s: far less than the request's minute.
    let mut status = None;
    for _ in 0..20 {
        assert!(term().await.success());
        if let Ok(exited) = tokio::time::timeout(std::time::Duration::from_millis(500), child.wait()).await {
            status = Some(exited.expect("exit status"));
            break;
        }
    }
    let status = status.expect("stopped at a second signal, not after the request's minute");
    assert_eq!(status.code(), Some(1));
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    if format == "json" {
        // A log shipper gets the reason as one of its JSON lines.
        let stopped = rest
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["fields"]["message"].as_str().is_some_and(|m| m.contains("stopped at a second signal")));
        assert!(stopped.is_some_and(|line| line["level"] == "ERROR"), "{rest}");
    } else {
        assert!(rest.contains("authbridge: stopped at a second signal"), "{rest}");
    }
    under_way.abort();
    held.abort();
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// A clean stop says so last: the log of a process stopped by SIGKILL at the end of a grace period ends without it.
#[cfg(unix)]
#[tokio::test]
async fn a_clean_stop_is_the_logs_last_line() {
    let dir = empty_dir();
    let (mut child, mut lines, _addr) = start_serve(&dir, crate::helpers::closed_port_url().as_str(), "pretty").await;
    let pid = child.id().expect("running").to_string();
    let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await.expect("stops");
    assert_eq!(status.expect("exit status").code(), Some(0));
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    let last = rest.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("authbridge stopped: every request under way finished"), "{rest:?}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// Starts `authbridge serve` in `dir` with both upstreams at `upstream_url` and logs in `format`; returns it, its log
/// lines, and the address it says it listens on.
#[cfg(unix)]
async fn start_serve(
    dir: &std::path::Path,
    upstream_url: &str,
    format: &str,
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>, String) {
    start_serve_with(dir, upstream_url, format, &[]).await
}

/// [`start_serve`] with further variables.
async fn start_serve_with(
    dir: &std::path::Path,
    upstream_url: &str,
    format: &str,
    more: &[(&str, &str)],
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authbridge"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .envs([
            ("INSFORGE_URL", upstream_url),
            ("INSFORGE_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("INSFORGE_REQUEST_TIMEOUT_MS", "60000"),
            ("REQUEST_TIMEOUT_SECONDS", "60"),
            ("WORKOS_API_KEY", "sk_test_unused"),
            ("WORKOS_CLIENT_ID", "client_unused"),
            ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback"),
            ("WORKOS_API_BASE_URL", upstream_url),
            ("WORKOS_REQUEST_TIMEOUT_MS", "60000"),
            ("SESSION_COOKIE_PASSWORD", "a-cookie-password-of-32-characters-at-least"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", format),
        ])
        .envs(more.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start authbridge serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = address_said(&mut lines, "listening").await;
    (child, lines, addr)
}

/// The loopback address in the next line that contains `what`: `… addr=127.0.0.1:…`, or `"addr":"127.0.0.1:…"` in
/// JSON.
async fn address_said(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    what: &str,
) -> String {
    loop {
        let line = lines.next_line().await.expect("read stderr").unwrap_or_else(|| panic!("serve says: {what}"));
        if line.contains(what)
            && let Some((_, rest)) = line.split_once("127.0.0.1:")
        {
            return format!("127.0.0.1:{}", rest.chars().take_while(char::is_ascii_digit).collect::<String>());
        }
    }
}

/// The counters of the lifecycle's features are there from the first scrape, at zero, only when the feature is on:
/// a deployment without webhooks has no webhook series to alert on. In processes of their own, since the metrics
/// recorder belongs to the process (the API tests' apps all share the first one's).
#[cfg(unix)]
#[tokio::test]
async fn only_the_features_that_are_on_have_their_counters_at_zero() {
    let dir = empty_dir();
    let db = crate::helpers::TestDb::new().await;
    let closed = crate::helpers::closed_port_url();
    let metrics_on = [("METRICS_BIND_ADDR", "127.0.0.1:0")];
    let with_webhooks = [
        ("METRICS_BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", db.url.as_str()),
        ("WORKOS_WEBHOOK_SECRET", "whsec_only_the_features_that_are_on"),
        ("WORKOS_EVENTS_POLL_SECONDS", "0"),
    ];
    let mut scraped = Vec::new();
    for more in [&metrics_on[..], &with_webhooks[..]] {
        let (mut child, mut lines, _addr) = start_serve_with(&dir, closed.as_str(), "pretty", more).await;
        let metrics = address_said(&mut lines, "metrics are served").await;
        let body = reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("a body");
        child.kill().await.expect("stop serve");
        scraped.push(body);
    }
    let counter = |body: &str, series: &str| body.lines().any(|line| line.starts_with(series));
    let (without, with) = (&scraped[0], &scraped[1]);
    assert!(counter(without, "authbridge_token_cache_total{"), "always there: {without}");
    for series in ["authbridge_webhook_events_total{", "authbridge_audit_log_events_total{"] {
        assert!(!counter(without, series), "no lifecycle, no {series}: {without}");
    }
    assert!(counter(with, "authbridge_webhook_events_total{source=\"webhook\""), "{with}");
    assert!(!counter(with, "authbridge_webhook_events_total{source=\"events_api\""), "the consumer is off: {with}");
    assert!(counter(with, "authbridge_audit_log_events_total{"), "{with}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
