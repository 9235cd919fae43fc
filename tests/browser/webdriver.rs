//! A small W3C WebDriver client (<https://www.w3.org/TR/webdriver2/>): just the commands the browser test uses,
//! over reqwest, driving Debian's `chromium` through Debian's `chromedriver`.
//!
//! Why not fantoccini or thirtyfour: the dozen commands needed fit on a page, reqwest is already in the crate with
//! aws-lc-rs, and those clients bring their own TLS stacks (fantoccini's rustls feature pulls in `ring`, which must
//! not share a process with aws-lc-rs) or download a driver at run time (thirtyfour's default), which this machine
//! cannot do. The browser and the driver always come from the system packages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::output::Output;

/// The key under which WebDriver sends a web element's reference (fixed by the specification).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to answer `/status` after it starts.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// No single command (page loads included) should take longer; a stuck browser then fails the test, not CI.
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
    #[error("the WebDriver request {command} got no answer: {source}")]
    Http { command: String, source: reqwest::Error },
    #[error("WebDriver {command} failed ({error}): {message}")]
    Command { command: String, error: String, message: String },
    #[error("WebDriver {command} answered with something unexpected: {body}")]
    Malformed { command: String, body: String },
}

type Result<T, E = WebDriverError> = std::result::Result<T, E>;

/// A headless Chromium, its chromedriver, and the WebDriver session joining them. Call [`Browser::quit`] at the
/// end; dropping it without that kills chromedriver and Chromium outright.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`: every command's URL starts with it.
    session: String,
    driver: Child,
    driver_output: Output,
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
        let driver_output = Output::capture(&mut driver);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .map_err(|source| WebDriverError::Http { command: "building the client".into(), source })?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self { http, session: String::new(), driver, driver_output, profile, stopped: false };
        browser.wait_for_driver(&base).await?;

        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
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
                            format!("--user-data-dir={}", browser.profile.display()),
                            "--window-size=1280,900",
                        ],
                    },
                },
            },
        });
        let created = browser.send(Method::POST, &format!("{base}/session"), Some(capabilities)).await?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Malformed { command: "new session".into(), body: created.to_string() })?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn wait_for_driver(&mut self, base: &str) -> Result<()> {
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if let Ok(status) = self.send(Method::GET, &format!("{base}/status"), None).await
                && status["ready"].as_bool() == Some(true)
            {
                return Ok(());
            }
            let exited = matches!(self.driver.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                return Err(WebDriverError::DriverNotReady {
                    timeout: DRIVER_START_TIMEOUT,
                    output: self.driver_output.tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One WebDriver command: the answer's `value`, or its error as a [`WebDriverError::Command`].
    async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Result<Value> {
        let command = format!("{method} {}", url.strip_prefix(&self.session).unwrap_or(url));
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.map_err(|source| WebDriverError::Http { command: command.clone(), source })?;
        let ok = response.status().is_success();
        let text = response.text().await.map_err(|source| WebDriverError::Http { command: command.clone(), source })?;
        let mut answer: Value = serde_json::from_str(&text)
            .map_err(|_| WebDriverError::Malformed { command: command.clone(), body: text.clone() })?;
        let value = answer["value"].take();
        if ok {
            return Ok(value);
        }
        Err(WebDriverError::Command {
            command,
            error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
            message: value["message"].as_str().unwrap_or(&text).to_owned(),
        })
    }

    /// A command of this session; POSTs without parameters still send `{}`, as the specification requires.
    async fn session_command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let body = if method == Method::POST { Some(body.unwrap_or_else(|| json!({}))) } else { body };
        self.send(method, &format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.session_command(Method::POST, "/url", Some(json!({ "url": url }))).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<String> {
        let value = self.session_command(Method::GET, "/url", None).await?;
        value.as_str().map(str::to_owned).ok_or_else(|| malformed("current URL", &value))
    }

    /// The browser's reload button.
    pub async fn refresh(&self) -> Result<()> {
        self.session_command(Method::POST, "/refresh", None).await.map(drop)
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element<'_>> {
        let value = self
            .session_command(Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })))
            .await?;
        self.element(&value)
    }

    /// Every element matching a CSS selector (none is not an error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let value = self
            .session_command(Method::POST, "/elements", Some(json!({ "using": "css selector", "value": css })))
            .await?;
        let list = value.as_array().ok_or_else(|| malformed("find elements", &value))?;
        list.iter().map(|item| self.element(item)).collect()
    }

    fn element(&self, value: &Value) -> Result<Element<'_>> {
        let id = value[ELEMENT_KEY].as_str().ok_or_else(|| malformed("find element", value))?;
        Ok(Element { browser: self, id: id.to_owned() })
    }

    /// What a person reads on the page: the rendered text of `body` (hidden elements excluded).
    pub async fn page_text(&self) -> Result<String> {
        self.find("body").await?.text().await
    }

    /// The visible part of the page, as PNG bytes.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self.session_command(Method::GET, "/screenshot", None).await?;
        let encoded = value.as_str().ok_or_else(|| malformed("screenshot", &value))?;
        STANDARD.decode(encoded).map_err(|_| malformed("screenshot", &Value::String("(not base64)".into())))
    }

    /// The cookies the browser holds for the current page, `HttpOnly` ones included, as (name, value) pairs.
    pub async fn cookies(&self) -> Result<Vec<(String, String)>> {
        let value = self.session_command(Method::GET, "/cookie", None).await?;
        let list = value.as_array().ok_or_else(|| malformed("cookies", &value))?;
        Ok(list
            .iter()
            .filter_map(|cookie| Some((cookie["name"].as_str()?.to_owned(), cookie["value"].as_str()?.to_owned())))
            .collect())
    }

    /// The pages (not images, styles…) the browser requested since the last call, redirects included, in order.
    /// WebDriver itself only shows where navigation ended; this is chromedriver's performance log.
    pub async fn document_requests(&self) -> Result<Vec<String>> {
        let value = self.session_command(Method::POST, "/se/log", Some(json!({ "type": "performance" }))).await?;
        let entries = value.as_array().ok_or_else(|| malformed("performance log", &value))?;
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
        let closed = if self.session.is_empty() {
            Ok(())
        } else {
            self.session_command(Method::DELETE, "", None).await.map(drop)
        };
        if closed.is_err()
            && let Some(group) = self.driver.id()
        {
            // Chromium did not close: stop it with its driver, or it outlives the test.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status().await;
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

/// A reference to one element of the current page (stale once the page changes).
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    async fn command(&self, method: Method, what: &str, body: Option<Value>) -> Result<Value> {
        self.browser.session_command(method, &format!("/element/{}{what}", self.id), body).await
    }

    /// A real click: scrolled into view, and refused when something covers the element.
    pub async fn click(&self) -> Result<()> {
        self.command(Method::POST, "/click", None).await.map(drop)
    }

    /// Types into the element, key by key.
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.command(Method::POST, "/value", Some(json!({ "text": text }))).await.map(drop)
    }

    pub async fn clear(&self) -> Result<()> {
        self.command(Method::POST, "/clear", None).await.map(drop)
    }

    /// The rendered text, as a person reads it.
    pub async fn text(&self) -> Result<String> {
        let value = self.command(Method::GET, "/text", None).await?;
        value.as_str().map(str::to_owned).ok_or_else(|| malformed("element text", &value))
    }

    /// An HTML attribute as written in the page, `None` when absent.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>> {
        let value = self.command(Method::GET, &format!("/attribute/{name}"), None).await?;
        Ok(value.as_str().map(str::to_owned))
    }
}

fn malformed(command: &str, value: &Value) -> WebDriverError {
    WebDriverError::Malformed { command: command.to_owned(), body: value.to_string() }
}

/// The first of `names` found on `PATH`, then in `/usr/bin` (where Debian puts them, in case PATH is minimal).
pub async fn find_program(names: &[&str]) -> Option<PathBuf> {
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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("the OS hands out a free loopback port")
}
