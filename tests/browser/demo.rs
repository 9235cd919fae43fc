//! `authbridge demo` as a child process: the binary a newcomer runs, started and stopped the way they would.
//!
//! Each demo gets its own `TMPDIR`, so the test can tell that stopping it left no throwaway directory behind.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use url::Url;

use crate::output::Output;

/// A cold start runs initdb and the migrations; on a busy 2-core machine that can take a while.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM must stop everything promptly: the issue promises a second demo right after.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The demo's three ports, fixed for the test so a second demo can be started on the very same ones.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub app: u16,
    pub workos: u16,
    pub insforge: u16,
}

impl Ports {
    pub fn free() -> Self {
        // Held together while choosing, so the three differ.
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("the OS hands out a free loopback port"))
            .collect();
        let port = |i: usize| listeners[i].local_addr().expect("a bound listener has an address").port();
        Self { app: port(0), workos: port(1), insforge: port(2) }
    }
}

pub struct Demo {
    child: Child,
    output: Output,
    tmpdir: PathBuf,
    /// `http://localhost:<port>/`: the URL the demo prints, and the host its cookies belong to.
    pub url: Url,
}

impl Demo {
    /// Starts `authbridge demo` and returns once `/healthz` answers.
    pub async fn start(ports: Ports, access_token_ttl: Duration) -> Self {
        Self::start_with(ports, access_token_ttl, &[]).await
    }

    /// The same, with more command-line arguments (`--provider oidc`).
    pub async fn start_with(ports: Ports, access_token_ttl: Duration, extra: &[&str]) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let tmpdir = std::env::temp_dir().join(format!("ab-e2e-{}", &unique[..12]));
        tokio::fs::create_dir_all(&tmpdir).await.expect("create the demo's TMPDIR");
        // PostgreSQL runs as the `postgres` user when the test runs as root: it must reach its directory in here.
        tokio::fs::set_permissions(&tmpdir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .await
            .expect("make the demo's TMPDIR traversable");

        let mut child = Command::new(env!("CARGO_BIN_EXE_authbridge"))
            .arg("demo")
            .args(["--bind", &format!("127.0.0.1:{}", ports.app)])
            .args(["--workos-port", &ports.workos.to_string()])
            .args(["--insforge-port", &ports.insforge.to_string()])
            .args(["--access-token-ttl", &access_token_ttl.as_secs().to_string()])
            .args(extra)
            .env("TMPDIR", &tmpdir)
            .env("RUST_LOG", "info,sqlx=warn")
            // Plain log lines, so the test can read their levels.
            .env("NO_COLOR", "1")
            .env_remove("BIND_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Only when the test itself dies half-way; `stop` is the ordinary path.
            .kill_on_drop(true)
            .spawn()
            .expect("start `authbridge demo`");
        let output = Output::capture(&mut child);
        let url = Url::parse(&format!("http://localhost:{}/", ports.app)).expect("a valid URL");
        let mut demo = Self { child, output, tmpdir, url };
        demo.wait_until_healthy(ports.app).await;
        demo
    }

    async fn wait_until_healthy(&mut self, port: u16) {
        let http =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("an HTTP client");
        let healthz = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = http.get(&healthz).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let _ = tokio::fs::remove_dir_all(&self.tmpdir).await;
                panic!(
                    "`authbridge demo` exited ({status}) before answering /healthz; it said:\n{}",
                    self.output.text()
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill().await;
                let _ = tokio::fs::remove_dir_all(&self.tmpdir).await;
                panic!(
                    "`authbridge demo` did not answer {healthz} within {START_TIMEOUT:?}; it said:\n{}",
                    self.output.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the demo printed so far (its welcome block and its logs).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// The log lines at WARN or ERROR level: signs of trouble a browser does not show.
    pub fn warnings(&self) -> Vec<String> {
        let text = self.output.text();
        text.lines()
            .filter(|line| matches!(line.split_whitespace().nth(1), Some("WARN" | "ERROR")))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the demo as a service manager would (SIGTERM), waits for it, and checks it left no directory behind.
    /// Returns how it exited.
    pub async fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().expect("the demo is still running before it is stopped");
        let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await.expect("run kill");
        assert!(sent.success(), "could not send SIGTERM to the demo (pid {pid})");
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the demo"),
            Err(_) => panic!(
                "`authbridge demo` was still running {STOP_TIMEOUT:?} after SIGTERM; it said:\n{}",
                self.output.tail(40)
            ),
        };
        let left = leftovers(&self.tmpdir).await;
        assert!(
            left.is_empty(),
            "the stopped demo left {left:?} behind in its TMPDIR {}; it said:\n{}",
            self.tmpdir.display(),
            self.output.tail(40)
        );
        let _ = tokio::fs::remove_dir(&self.tmpdir).await;
        status
    }
}

async fn leftovers(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}
