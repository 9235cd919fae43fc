//! Debian's headless `chromium`, driven through Debian's `chromedriver` with fantoccini, a maintained W3C WebDriver
//! client (<https://www.w3.org/TR/webdriver2/>).
//!
//! fantoccini is built without a TLS feature and given a plain-HTTP connector: chromedriver listens on loopback, so
//! the test process gets no TLS stack from it, and in particular no second rustls crypto provider beside the
//! aws-lc-rs one the rest of the crate uses. The browser and the driver always come from the system packages; this
//! module starts chromedriver itself and never downloads either.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::elements::Element;
use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use url::Url;

use crate::output::Output;

/// How long chromedriver may take to accept connections after it starts.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// No single command of [`Browser`] (page loads included) should take longer; a stuck browser then fails the test,
/// not CI. Commands on an [`Element`] are bounded by the test's per-step limit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "run scripts/test, which installs chromium and chromium-driver \
                            (or: apt-get install chromium chromium-driver)";

#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("{program} is not installed (looked on PATH and in /usr/bin): {INSTALL_HINT}")]
    Missing { program: &'static str },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("could not create the browser profile directory {path}: {source}")]
    Profile { path: String, source: std::io::Error },
    #[error("chromedriver did not become ready within {timeout:?}; its output:\n{output}")]
    DriverNotReady { timeout: Duration, output: String },
    #[error("chromedriver did not open a browser session: {source}; its output:\n{output}")]
    Session { source: NewSessionError, output: String },
    #[error("WebDriver: {0}")]
    Command(#[from] CmdError),
    #[error("a WebDriver command got no answer within {COMMAND_TIMEOUT:?}")]
    TimedOut,
    #[error("WebDriver {command} answered with something unexpected: {body}")]
    Malformed { command: &'static str, body: String },
}

type Result<T, E = WebDriverError> = std::result::Result<T, E>;

/// A headless Chromium, its chromedriver, and the WebDriver session joining them. Call [`Browser::quit`] at the
/// end; dropping it without that kills chromedriver and Chromium outright.
pub struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
    /// Set by `quit`, after which `Drop` has nothing left to do.
    stopped: bool,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session with a fresh Chromium profile.
    pub async fn start() -> Result<Self> {
        let chromium = find_program(&["chromium", "chromium-browser"])
            .await
            .ok_or(WebDriverError::Missing { program: "Chromium (the `chromium` package)" })?;
        let chromedriver = find_program(&["chromedriver"])
            .await
            .ok_or(WebDriverError::Missing { program: "ChromeDriver (the `chromium-driver` package)" })?;
        let profile = std::env::temp_dir().join(format!("authbridge-e2e-chromium-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&profile)
            .await
            .map_err(|source| WebDriverError::Profile { path: profile.display().to_string(), source })?;

        let port = free_port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Chromium inherits this group, so one signal can stop the driver and every browser process.
            .process_group(0)
            // The safety net when the test is torn down without `quit`.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| WebDriverError::Spawn { program: chromedriver.display().to_string(), source })?;
        let output = Output::capture(&mut driver);
        let started = async {
            wait_for_driver(&mut driver, port, &output).await?;
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities(&chromium, &profile));
            let driver_url = format!("http://127.0.0.1:{port}");
            match tokio::time::timeout(COMMAND_TIMEOUT, builder.connect(&driver_url)).await {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(source)) => Err(WebDriverError::Session { source, output: output.tail(30) }),
                Err(_) => Err(WebDriverError::TimedOut),
            }
        };
        match started.await {
            Ok(client) => Ok(Self { client, driver, profile, stopped: false }),
            Err(error) => {
                kill_group(&driver).await;
                let _ = tokio::fs::remove_dir_all(&profile).await;
                Err(error)
            }
        }
    }

    /// One command, bounded by [`COMMAND_TIMEOUT`].
    async fn bounded<T>(&self, command: impl Future<Output = Result<T, CmdError>>) -> Result<T> {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(WebDriverError::TimedOut),
        }
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.bounded(self.client.goto(url)).await
    }

    pub async fn current_url(&self) -> Result<String> {
        self.bounded(self.client.current_url()).await.map(String::from)
    }

    /// The browser's reload button.
    pub async fn refresh(&self) -> Result<()> {
        self.bounded(self.client.refresh()).await
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element> {
        self.bounded(self.client.find(Locator::Css(css))).await
    }

    /// Every element matching a CSS selector (none is not an error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        self.bounded(self.client.find_all(Locator::Css(css))).await
    }

    /// What a person reads on the page: the rendered text of `body` (hidden elements excluded).
    pub async fn page_text(&self) -> Result<String> {
        self.bounded(async { self.client.find(Locator::Css("body")).await?.text().await }).await
    }

    /// The visible part of the page, as PNG bytes.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        self.bounded(self.client.screenshot()).await
    }

    /// The cookies the browser holds for the current page, `HttpOnly` ones included, as (name, value) pairs.
    pub async fn cookies(&self) -> Result<Vec<(String, String)>> {
        let cookies = self.bounded(self.client.get_all_cookies()).await?;
        Ok(cookies.iter().map(|cookie| (cookie.name().to_owned(), cookie.value().to_owned())).collect())
    }

    /// The pages (not images, styles…) the browser requested since the last call, redirects included, in order.
    /// WebDriver itself only shows where navigation ended; this is chromedriver's performance log.
    pub async fn document_requests(&self) -> Result<Vec<String>> {
        let value = self.bounded(self.client.issue_cmd(PerformanceLog)).await?;
        let entries = value
            .as_array()
            .ok_or_else(|| WebDriverError::Malformed { command: "performance log", body: value.to_string() })?;
        let urls = entries
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|event| {
                event["message"]["method"] == "Network.requestWillBeSent"
                    && event["message"]["params"]["type"] == "Document"
            })
            .filter_map(|event| event["message"]["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect();
        Ok(urls)
    }

    /// Closes the browser (ending the session makes chromedriver stop Chromium), then stops chromedriver.
    pub async fn quit(mut self) -> Result<()> {
        let closed = self.bounded(self.client.clone().close()).await;
        if closed.is_err() {
            // Chromium did not close: stop it with its driver, or it outlives the test.
            kill_group(&self.driver).await;
        }
        let _ = self.driver.kill().await;
        let _ = tokio::fs::remove_dir_all(&self.profile).await;
        self.stopped = true;
        closed
    }
}

impl Drop for Browser {
    /// Only when `quit` was not reached (a test torn down half-way). Killing chromedriver alone (its
    /// `kill_on_drop`) would leave Chromium running, so the whole process group goes. These are short blocking
    /// calls, acceptable in a test's teardown; every ordinary path has done this asynchronously in `quit`.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Some(group) = self.driver.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the session asks of chromedriver: Debian's Chromium, headless, with a fresh profile and no calls home.
fn capabilities(chromium: &Path, profile: &Path) -> serde_json::Map<String, Value> {
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        // Elements are waited for explicitly, so a check that something is absent is instant.
        "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 30_000 },
        // Chromium's network events, to see the redirects a click went through.
        "goog:loggingPrefs": { "performance": "ALL" },
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "perfLoggingPrefs": { "enableNetwork": true, "enablePage": false },
            "args": [
                "--headless=new",
                // Needed as root (CI) and in containers, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // No calls home: this machine reaches package registries only.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        },
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("the capabilities are a JSON object literal"),
    }
}

/// chromedriver's log of Chromium's DevTools events (`POST /session/{id}/se/log`), which the W3C commands do not
/// cover. Reading it empties it.
#[derive(Debug)]
struct PerformanceLog;

impl WebDriverCompatibleCommand for PerformanceLog {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({ "type": "performance" }).to_string()))
    }
}

/// Waits until chromedriver accepts connections on `port` (it answers commands as soon as it does).
async fn wait_for_driver(driver: &mut Child, port: u16, output: &Output) -> Result<()> {
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        let exited = matches!(driver.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            return Err(WebDriverError::DriverNotReady { timeout: DRIVER_START_TIMEOUT, output: output.tail(30) });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops chromedriver and every Chromium process it started (they share its process group).
async fn kill_group(driver: &Child) {
    if let Some(group) = driver.id() {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status().await;
    }
}

/// The first of `names` found on `PATH`, then in `/usr/bin` (where Debian puts them, in case PATH is minimal).
async fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/bin"));
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if is_executable(&candidate).await {
                return Some(candidate);
            }
        }
    }
    None
}

async fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::metadata(path).await.is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A port nobody listens on right now (the OS picks it; it is released at once for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("the OS hands out a free loopback port")
}
