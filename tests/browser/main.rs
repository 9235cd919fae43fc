//! The browser end-to-end test: what a person sees when they run `authbridge demo` and use it in Chromium.
//!
//! It starts the real `authbridge demo` binary (PostgreSQL, the InsForge and WorkOS stand-ins, and the app, exactly
//! as a newcomer would), drives Debian's headless Chromium through chromedriver, and walks the issue's scenario:
//! sign in as Alice on the WorkOS sign-in page, add, complete, rename and delete todos, see that a title with markup
//! shows as text, keep working after the access token expired (the demo issues 10-second tokens), sign out, and
//! see that Bob, signing in next (choosing Acme among his two organizations), sees Alice's Acme todo but none of her
//! personal ones, and that once Alice removes him from Acme at the WorkOS stand-in, his next reload no longer shows
//! it. Finally it stops the demo with SIGTERM and starts a
//! second one on the same ports. A second, shorter scenario does the same with `authbridge demo --provider oidc`:
//! sign in on the OpenID Connect stand-in's page, sign out through its `end_session_endpoint`.
//!
//! The API tests (`tests/api`) prove the same behaviour over HTTP; this test catches what only a browser does:
//! following redirects across the two origins, applying the Content-Security-Policy (including `form-action` on
//! redirects), keeping or dropping cookies by their attributes, and rendering escaped text.
//!
//! Every step saves a screenshot to `target/e2e/NN-step.png`; a failed expectation names its screenshot and
//! quotes the page text. Chromium and chromedriver come from the Debian packages that `scripts/test` installs.

mod demo;
mod output;
mod webdriver;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use futures::FutureExt;
use url::Url;

use demo::{Demo, Ports};
use webdriver::{Browser, WebDriverError};

/// The lifetime of the demo's access tokens: short, so the scenario outlives one.
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(10);
/// How long a page may take to show what a step expects (it is normally there at once).
const PATIENCE: Duration = Duration::from_secs(10);
/// No step may take longer, however stuck the browser is: the test then fails, not CI. (A step is a few page loads
/// and waits of [`PATIENCE`]; it normally takes a second or two.)
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

const FIRST: &str = "Buy milk";
const RENAMED: &str = "Buy oat milk";
const SECOND: &str = "Write the report";
const MARKUP: &str = "<b>html</b>";
const AFTER_EXPIRY: &str = "Added after the access token expired";
const SHARED: &str = "Acme: plan the offsite";

/// One browser at a time: the machine has two cores, and each scenario runs a demo and a Chromium.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_demo_in_a_real_browser() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let ports = Ports::free();
    let demo = Demo::start(ports, ACCESS_TOKEN_TTL).await;
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(error) => {
            let _ = demo.stop().await;
            panic!("cannot start the browser: {error}");
        }
    };
    let shots = screenshot_dir().await;

    // The demo and the browser are stopped however the scenario ends, then its panic (if any) goes on.
    let welcome = demo.output();
    let outcome = AssertUnwindSafe(scenario(&browser, &demo.url, &welcome, ports, &shots)).catch_unwind().await;
    let closed = browser.quit().await;
    let printed = demo.output();
    let warnings = demo.warnings();
    let status = demo.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.expect("the browser closes");

    let app_url = format!("http://localhost:{}/", ports.app);
    assert!(printed.contains(&app_url), "the demo did not print the URL to open ({app_url}); it said:\n{printed}");
    assert!(status.success(), "after SIGTERM the demo exited with {status}, not 0; it said:\n{printed}");
    assert!(warnings.is_empty(), "the demo logged warnings or errors during the scenario:\n{}", warnings.join("\n"));

    // "A second `authbridge demo` right after works (no port or directory left behind)": `stop` has checked the
    // directory, and this start needs the very same ports.
    let again = Demo::start(ports, ACCESS_TOKEN_TTL).await;
    let printed = again.output();
    let status = again.stop().await;
    assert!(status.success(), "the second demo exited with {status}, not 0; it said:\n{printed}");
}

async fn scenario(browser: &Browser, app: &Url, printed: &str, ports: Ports, shots: &std::path::Path) {
    let mut journey = Journey { browser, shots: shots.to_owned(), count: 0 };
    let app_origin = app.origin().ascii_serialization();
    let workos_logout = format!("http://127.0.0.1:{}/user_management/sessions/logout?", ports.workos);

    journey
        .step("landing", async |b| {
            b.goto(app.as_str()).await?;
            wait_for_text(b, "Your todos, behind enterprise sign-in").await?;
            expect_url(b, app.as_str()).await
        })
        .await;

    journey
        .step("workos-sign-in-page", async |b| {
            b.find("header a.button").await?.click().await?;
            wait_for_text(b, "alice@acme.test").await?;
            // The stand-in's page names the app the person is signing in to.
            wait_for_text(b, &format!("to continue to {}", app.authority())).await?;
            let url = b.current_url().await?;
            if url.starts_with(&app_origin) || !url.contains("/user_management/authorize") {
                return Err(Failure(format!(
                    "expected the WorkOS stand-in's sign-in page, but the browser is at {url}"
                )));
            }
            Ok(())
        })
        .await;

    journey
        .step("alice-signed-in", async |b| {
            b.find(r#"button[data-user="alice@acme.test"]"#).await?.click().await?;
            wait_for_text(b, "Nothing to do yet").await?;
            expect_url(b, app.as_str()).await?;
            expect_header(b, "Alice Anderson").await
        })
        .await;

    journey
        .step("alice-in-acme-switches-to-personal", async |b| {
            // Her sign-in lands in her organization; her own todos are under "Personal".
            expect_space(b, "Acme").await?;
            switch_space(b, "personal").await?;
            expect_space(b, "Personal").await
        })
        .await;

    journey
        .step("two-todos-added", async |b| {
            add_todo(b, FIRST).await?;
            add_todo(b, SECOND).await?;
            expect_titles(b, &[FIRST, SECOND]).await
        })
        .await;

    journey
        .step("one-marked-done", async |b| {
            b.find(&format!("{} form[action$='/toggle'] button", todo(FIRST))).await?.click().await?;
            wait_for_element(b, &format!("{}.done", todo(FIRST))).await?;
            expect_done(b, FIRST, true).await?;
            expect_done(b, SECOND, false).await
        })
        .await;

    journey
        .step("one-renamed", async |b| {
            // The rename form sits in a closed <details>, as a person finds it.
            b.find(&format!("{} details.renaming summary", todo(FIRST))).await?.click().await?;
            let input = b.find(&format!("{} form.rename input[name='title']", todo(FIRST))).await?;
            input.clear().await?;
            input.send_keys(RENAMED).await?;
            b.find(&format!("{} form.rename button", todo(FIRST))).await?.click().await?;
            wait_for_element(b, &todo(RENAMED)).await?;
            expect_titles(b, &[RENAMED, SECOND]).await?;
            expect_done(b, RENAMED, true).await
        })
        .await;

    journey
        .step("one-deleted", async |b| {
            // Asked once more: the Delete in a closed <details>, then "Yes, delete it".
            b.find(&format!("{} details.deleting summary", todo(SECOND))).await?.click().await?;
            b.find(&format!("{} form[action$='/delete'] button", todo(SECOND))).await?.click().await?;
            wait_for_absence(b, &todo(SECOND)).await?;
            expect_titles(b, &[RENAMED]).await
        })
        .await;

    journey
        .step("markup-shown-as-text", async |b| {
            add_todo(b, MARKUP).await?;
            expect_titles(b, &[RENAMED, MARKUP]).await?;
            wait_for_text(b, MARKUP).await?;
            let bold = b.find_all("ul.todos b").await?;
            if !bold.is_empty() {
                return Err(Failure(format!("the title {MARKUP:?} became markup: the todo list has a <b> element")));
            }
            Ok(())
        })
        .await;

    let mut cookie_before = String::new();
    journey
        .step("state-kept-after-reload", async |b| {
            b.refresh().await?;
            wait_for_element(b, &todo(MARKUP)).await?;
            expect_titles(b, &[RENAMED, MARKUP]).await?;
            expect_done(b, RENAMED, true).await?;
            expect_done(b, MARKUP, false).await?;
            cookie_before = session_cookie(b).await?;
            if cookie_before.is_empty() {
                return Err(Failure("Alice's browser holds no session cookie".into()));
            }
            Ok(())
        })
        .await;

    // The access token in the cookie read above was issued before this instant: a TTL later, it has expired.
    let expired_at = Instant::now() + ACCESS_TOKEN_TTL + Duration::from_secs(1);
    tokio::time::sleep_until(expired_at.into()).await;

    journey
        .step("still-signed-in-after-the-access-token-expired", async |b| {
            add_todo(b, AFTER_EXPIRY).await?;
            b.refresh().await?;
            wait_for_element(b, &todo(AFTER_EXPIRY)).await?;
            expect_titles(b, &[RENAMED, MARKUP, AFTER_EXPIRY]).await?;
            expect_header(b, "Alice Anderson").await?;
            // The app refreshed the WorkOS session: the browser holds a newly sealed session cookie.
            let cookie_after = session_cookie(b).await?;
            if cookie_after == cookie_before {
                return Err(Failure(
                    "the session cookie was not renewed after the access token expired (the app did not refresh it)"
                        .into(),
                ));
            }
            Ok(())
        })
        .await;

    journey
        .step("alice-adds-an-acme-todo", async |b| {
            switch_space(b, "org_standin_acme").await?;
            expect_space(b, "Acme").await?;
            expect_titles(b, &[]).await?;
            add_todo(b, SHARED).await?;
            expect_titles(b, &[SHARED]).await?;
            wait_for_text(b, "by you").await
        })
        .await;

    journey
        .step("signed-out", async |b| {
            b.document_requests().await?;
            b.find("header form[action='/logout'] button").await?.click().await?;
            wait_for_text(b, "Your todos, behind enterprise sign-in").await?;
            expect_url(b, app.as_str()).await?;
            // The app ended the WorkOS session too: it sent the browser through the stand-in's logout endpoint,
            // which sent it back (the CSP's `form-action` has to allow both hops of that redirect).
            let went = b.document_requests().await?;
            let through_workos = went.iter().position(|url| url.starts_with(&workos_logout));
            let back_home = went.iter().rposition(|url| url == app.as_str());
            if !matches!((through_workos, back_home), (Some(out), Some(back)) if out < back) {
                return Err(Failure(format!(
                    "signing out should go through {workos_logout}… and back to {app}, but the browser went {went:?}"
                )));
            }
            if !session_cookie(b).await?.is_empty() {
                return Err(Failure("the session cookie is still in the browser after signing out".into()));
            }
            Ok(())
        })
        .await;

    journey
        .step("workos-sign-in-page-again", async |b| {
            b.find("header a.button").await?.click().await?;
            wait_for_text(b, "bob@acme.test").await
        })
        .await;

    journey
        .step("bob-chooses-acme", async |b| {
            // Bob belongs to Acme and Globex: WorkOS asks which, and the app shows the choice.
            b.find(r#"button[data-user="bob@acme.test"]"#).await?.click().await?;
            wait_for_text(b, "Choose an organization").await?;
            wait_for_text(b, "Globex").await?;
            b.find(r#"button[data-organization="Acme"]"#).await?.click().await?;
            // The selection page has no header space: seeing one means the app's page has loaded.
            wait_for_element(b, "#active-space").await?;
            expect_url(b, app.as_str()).await?;
            expect_header(b, "Bob Brown").await?;
            expect_space(b, "Acme").await
        })
        .await;

    journey
        .step("bob-sees-the-acme-todo-and-none-of-alices-own", async |b| {
            wait_for_element(b, &todo(SHARED)).await?;
            expect_titles(b, &[SHARED]).await?;
            wait_for_text(b, "by alice@acme.test").await?;
            let text = b.page_text().await?;
            for title in [RENAMED, MARKUP, AFTER_EXPIRY] {
                if text.contains(title) {
                    return Err(Failure(format!("Bob's page shows {title:?}, a personal todo of Alice's")));
                }
            }
            Ok(())
        })
        .await;

    // Alice removes Bob from Acme at (the stand-in of) WorkOS, with the command the demo printed for it.
    remove_bob_from_acme(printed).await;

    journey
        .step("bob-reloads-and-the-acme-todo-is-gone", async |b| {
            // The webhook arrives within moments; each reload asks the database again. (A reload made while the
            // webhook is being applied may see the list already empty but the membership not yet gone.)
            let deadline = Instant::now() + PATIENCE;
            loop {
                b.refresh().await?;
                let gone = b.find_all(&todo(SHARED)).await?.is_empty();
                if gone && b.page_text().await?.contains("no longer a member") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Failure(format!("Bob still sees {SHARED:?} or Acme after his removal from Acme")));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            expect_space(b, "Personal").await
        })
        .await;
}

/// Runs the demo's printed "remove Bob from Acme" command (`curl -X DELETE -H "Authorization: Bearer …" URL`), as a
/// person pasting it would.
async fn remove_bob_from_acme(printed: &str) {
    let line = printed
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("curl -X DELETE") && line.contains("/organization_memberships/"))
        .unwrap_or_else(|| panic!("the demo printed no command removing Bob from Acme:\n{printed}"));
    let key = line.split("Bearer ").nth(1).and_then(|rest| rest.split('"').next()).expect("the API key");
    let url = line.rsplit(' ').next().expect("the URL");
    let response = reqwest::Client::new().delete(url).bearer_auth(key).send().await.expect("the stand-in answers");
    assert!(response.status().is_success(), "removing Bob from Acme: {}", response.status());
}

/// Picks `value` (an organization's id, or `personal`) in the header's switcher.
async fn switch_space(b: &Browser, value: &str) -> Check {
    b.find("#switch-space").await?.select_by_value(value).await?;
    b.find("#switch-space-button").await?.click().await?;
    wait_for_element(b, "#active-space").await
}

/// The header names the active space.
async fn expect_space(b: &Browser, name: &str) -> Check {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // During a navigation the element may be missing or stale: look again.
        let shown = match b.find("#active-space").await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if shown == name {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure(format!("the header names the space {shown:?}, not {name:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same app with an OpenID Connect provider (`authbridge demo --provider oidc`, its stand-in shaped like Auth0):
/// sign in on the provider's page, use the app, sign out through the provider's `end_session_endpoint` (which the
/// Content-Security-Policy must let the sign-out form's redirect reach), and Bob sees none of Alice's todos.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_an_openid_connect_provider_in_a_real_browser() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let ports = Ports::free();
    let oidc_port = ports.workos.to_string();
    let demo = Demo::start_with(ports, ACCESS_TOKEN_TTL, &["--provider", "oidc", "--oidc-port", &oidc_port]).await;
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(error) => {
            let _ = demo.stop().await;
            panic!("cannot start the browser: {error}");
        }
    };
    let shots = screenshot_dir().await.join("oidc");
    let _ = tokio::fs::create_dir_all(&shots).await;
    let outcome = AssertUnwindSafe(oidc_scenario(&browser, &demo.url, ports, &shots)).catch_unwind().await;
    let closed = browser.quit().await;
    let warnings = demo.warnings();
    let printed = demo.output();
    let status = demo.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.expect("the browser closes");
    assert!(status.success(), "after SIGTERM the demo exited with {status}, not 0; it said:\n{printed}");
    assert!(warnings.is_empty(), "the demo logged warnings or errors during the scenario:\n{}", warnings.join("\n"));
}

async fn oidc_scenario(browser: &Browser, app: &Url, ports: Ports, shots: &std::path::Path) {
    let mut journey = Journey { browser, shots: shots.to_owned(), count: 0 };
    let issuer = format!("http://127.0.0.1:{}/", ports.workos);
    let end_session = format!("{issuer}oidc/logout?");
    const TITLE: &str = "Signed in with OpenID Connect";

    journey
        .step("oidc-sign-in-page", async |b| {
            b.goto(app.as_str()).await?;
            b.find("header a.button").await?.click().await?;
            wait_for_text(b, "alice@acme.test").await?;
            wait_for_text(b, &format!("to continue to {}", app.authority())).await?;
            let url = b.current_url().await?;
            if !url.starts_with(&format!("{issuer}authorize?")) {
                return Err(Failure(format!("expected the OIDC stand-in's sign-in page, but the browser is at {url}")));
            }
            Ok(())
        })
        .await;

    journey
        .step("oidc-alice-signed-in", async |b| {
            b.find(r#"button[data-user="alice@acme.test"]"#).await?.click().await?;
            wait_for_text(b, "Nothing to do yet").await?;
            expect_url(b, app.as_str()).await?;
            expect_header(b, "Alice Anderson").await?;
            add_todo(b, TITLE).await?;
            expect_titles(b, &[TITLE]).await
        })
        .await;

    journey
        .step("oidc-signed-out-through-the-provider", async |b| {
            b.document_requests().await?;
            b.find("header form[action='/logout'] button").await?.click().await?;
            wait_for_text(b, "Your todos, behind enterprise sign-in").await?;
            expect_url(b, app.as_str()).await?;
            let went = b.document_requests().await?;
            let through_provider = went.iter().position(|url| url.starts_with(&end_session));
            let back_home = went.iter().rposition(|url| url == app.as_str());
            if !matches!((through_provider, back_home), (Some(out), Some(back)) if out < back) {
                return Err(Failure(format!(
                    "signing out should go through {end_session}… and back to {app}, but the browser went {went:?}"
                )));
            }
            if !session_cookie(b).await?.is_empty() {
                return Err(Failure("the session cookie is still in the browser after signing out".into()));
            }
            Ok(())
        })
        .await;

    journey
        .step("oidc-bob-sees-none-of-alices-todos", async |b| {
            b.find("header a.button").await?.click().await?;
            wait_for_text(b, "bob@acme.test").await?;
            b.find(r#"button[data-user="bob@acme.test"]"#).await?.click().await?;
            wait_for_text(b, "Nothing to do yet").await?;
            expect_header(b, "Bob Brown").await?;
            expect_titles(b, &[]).await?;
            if b.page_text().await?.contains(TITLE) {
                return Err(Failure("Bob's page shows Alice's todo".into()));
            }
            Ok(())
        })
        .await;
}

/// The scenario's steps, numbered, each ending with a screenshot.
struct Journey<'b> {
    browser: &'b Browser,
    shots: PathBuf,
    count: usize,
}

/// Why a step failed, as a sentence. WebDriver errors convert into it, so steps use `?` throughout.
struct Failure(String);

impl From<WebDriverError> for Failure {
    fn from(error: WebDriverError) -> Self {
        Self(error.to_string())
    }
}

/// An element's command failed.
impl From<CmdError> for Failure {
    fn from(error: CmdError) -> Self {
        Self(format!("WebDriver: {error}"))
    }
}

type Check = Result<(), Failure>;

impl Journey<'_> {
    /// Runs one step and saves `NN-name.png`. A failure panics with the screenshot's path, the URL and the page
    /// text: what a person would have seen at that moment.
    async fn step(&mut self, name: &str, body: impl AsyncFnOnce(&Browser) -> Check) {
        self.count += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.count));
        let outcome = tokio::time::timeout(STEP_TIMEOUT, body(self.browser))
            .await
            .unwrap_or_else(|_| Err(Failure(format!("the step took longer than {STEP_TIMEOUT:?}"))));
        let saved = match self.browser.screenshot().await {
            Ok(png) => tokio::fs::write(&path, png).await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let screenshot = match &saved {
            Ok(()) => path.display().to_string(),
            Err(error) => format!("(none: {error})"),
        };
        if let Err(Failure(why)) = outcome {
            let url = self.browser.current_url().await.unwrap_or_else(|e| format!("(unknown: {e})"));
            let text = self.browser.page_text().await.unwrap_or_else(|e| format!("(unreadable: {e})"));
            panic!(
                "step {:02} \"{name}\" failed: {why}\n  screenshot: {screenshot}\n  page: {url}\n  page text:\n{}",
                self.count,
                indent(&text)
            );
        }
        if let Err(error) = saved {
            panic!("step {:02} \"{name}\": the screenshot {} could not be saved: {error}", self.count, path.display());
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    | {line}")).collect::<Vec<_>>().join("\n")
}

/// `target/e2e/`, emptied, so every screenshot in it is from this run.
async fn screenshot_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => manifest.join(dir),
        _ => manifest.join("target"),
    };
    let dir = target.join("e2e");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir).await.unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

// ---- what a person does --------------------------------------------------------------------------------------

async fn add_todo(b: &Browser, title: &str) -> Check {
    let input = b.find("#new-title").await?;
    input.clear().await?;
    input.send_keys(title).await?;
    b.find("form.add button[type='submit']").await?.click().await?;
    wait_for_element(b, &todo(title)).await?;
    if !b.find_all(".flash.error").await?.is_empty() {
        return Err(Failure(format!("adding {title:?} showed an error")));
    }
    Ok(())
}

/// The list item of the todo with this title (the page writes the title into `data-title`).
fn todo(title: &str) -> String {
    format!("ul.todos li.todo[data-title=\"{}\"]", title.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---- what a person sees --------------------------------------------------------------------------------------

/// Waits until the page says `needle` (rendered text, not HTML source).
async fn wait_for_text(b: &Browser, needle: &str) -> Check {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match b.page_text().await {
            Ok(text) if text.contains(needle) => return Ok(()),
            // A page being replaced by the next one: try again.
            Ok(_) | Err(WebDriverError::Command(CmdError::Standard(_))) if Instant::now() < deadline => {}
            Ok(_) => return Err(Failure(format!("the page does not say {needle:?}"))),
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_element(b: &Browser, css: &str) -> Check {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match b.find_all(css).await {
            Ok(found) if !found.is_empty() => return Ok(()),
            Ok(_) | Err(WebDriverError::Command(CmdError::Standard(_))) if Instant::now() < deadline => {}
            Ok(_) => return Err(Failure(format!("the page has no {css}"))),
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_absence(b: &Browser, css: &str) -> Check {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match b.find_all(css).await {
            Ok(found) if found.is_empty() => return Ok(()),
            Ok(_) | Err(WebDriverError::Command(CmdError::Standard(_))) if Instant::now() < deadline => {}
            Ok(_) => return Err(Failure(format!("the page still has {css}"))),
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn expect_url(b: &Browser, expected: &str) -> Check {
    let url = b.current_url().await?;
    if url != expected {
        return Err(Failure(format!("expected the browser at {expected}, but it is at {url}")));
    }
    Ok(())
}

/// The header names who is signed in.
async fn expect_header(b: &Browser, name: &str) -> Check {
    let header = b.find("header").await?.text().await?;
    if !header.contains(name) {
        return Err(Failure(format!("the header should name {name:?} but reads {header:?}")));
    }
    Ok(())
}

/// The todo list shows exactly these titles (in any order), as rendered text.
async fn expect_titles(b: &Browser, expected: &[&str]) -> Check {
    let mut shown = Vec::new();
    for title in b.find_all("ul.todos li.todo .title").await? {
        shown.push(title.text().await?);
    }
    let mut sorted_shown = shown.clone();
    sorted_shown.sort();
    let mut sorted_expected: Vec<String> = expected.iter().map(|t| (*t).to_owned()).collect();
    sorted_expected.sort();
    if sorted_shown != sorted_expected {
        return Err(Failure(format!("the todo list shows {shown:?}, expected {expected:?}")));
    }
    Ok(())
}

async fn expect_done(b: &Browser, title: &str, done: bool) -> Check {
    let class = b.find(&todo(title)).await?.attr("class").await?.unwrap_or_default();
    let is_done = class.split_whitespace().any(|c| c == "done");
    let button = b.find(&format!("{} form[action$='/toggle'] button", todo(title))).await?.text().await?;
    let expected_button = if done { "Undo" } else { "Done" };
    if is_done != done || button != expected_button {
        return Err(Failure(format!(
            "{title:?} should be {}: its class is {class:?} and its button reads {button:?}",
            if done { "done" } else { "not done" }
        )));
    }
    Ok(())
}

/// The session cookie as the browser holds it (all its chunks, in order), or "" when there is none.
async fn session_cookie(b: &Browser) -> Result<String, Failure> {
    let mut pieces: Vec<(String, String)> = b
        .cookies()
        .await?
        .into_iter()
        .filter(|(name, _)| name == "wos-session" || name.starts_with("wos-session."))
        .collect();
    pieces.sort();
    Ok(pieces.into_iter().map(|(_, value)| value).collect::<Vec<_>>().join(""))
}
