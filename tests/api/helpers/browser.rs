//! Clients that behave like the app's users: a [`Browser`] (cookies, forms with CSRF tokens, the sign-in redirect
//! dance through the WorkOS stand-in) and an [`ApiClient`] (JSON with a bearer token, like `curl`).
//!
//! Cookies are kept by hand rather than by reqwest's jar so tests can read, tamper with and delete them, and see
//! every `Set-Cookie` line exactly as a browser would receive it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use authbridge::session::{ORGANIZATION_SELECTION_COOKIE, SIGN_IN_STATE_COOKIE};
use axum_extra::extract::cookie::Cookie;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, redirect};
use serde_json::Value;
use url::Url;

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn location(&self) -> Option<String> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `code` of an API error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {}", self.body)).to_owned()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        // Well before the app closes an idle connection (its header-read timeout, 5 s by default): a pooled
        // connection reused just as the app closes it fails the request, which would make tests depend on timing.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

async fn read(response: reqwest::Response) -> TestResponse {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("response body");
    TestResponse { status, headers, body }
}

pub struct Browser {
    base: Url,
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    pub fn new(base: Url) -> Self {
        Self { base, http: http_client(), cookies: Mutex::default() }
    }

    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("path joins the base URL")
    }

    pub fn cookie_header(&self) -> String {
        let cookies = self.cookies.lock().expect("cookie jar");
        cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookie jar").get(name).cloned()
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.cookies.lock().expect("cookie jar").keys().cloned().collect()
    }

    /// The sign-in state cookies this browser holds, by name: one per sign-in under way, named for its `state`
    /// (`wos-auth-state.<key>`), and the single `wos-auth-state` the previous version kept.
    pub fn sign_in_states(&self) -> BTreeMap<String, String> {
        self.cookie_family(SIGN_IN_STATE_COOKIE)
    }

    /// The pending organization choices this browser holds, by name: one per sign-in at that step, named for its
    /// selection id (`wos-org-selection.<key>`), and the single `wos-org-selection` the previous version kept.
    pub fn pending_choices(&self) -> BTreeMap<String, String> {
        self.cookie_family(ORGANIZATION_SELECTION_COOKIE)
    }

    /// The cookies named `base` or `base.<something>` this browser holds, by name.
    fn cookie_family(&self, base: &str) -> BTreeMap<String, String> {
        let cookies = self.cookies.lock().expect("cookie jar");
        let prefix = format!("{base}.");
        cookies
            .iter()
            .filter(|(name, _)| *name == base || name.starts_with(&prefix))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The one sign-in state cookie this browser holds, as (name, value); it must not hold several.
    pub fn sign_in_state(&self) -> Option<(String, String)> {
        let mut states = self.sign_in_states().into_iter();
        let state = states.next();
        assert!(states.next().is_none(), "one sign-in under way, not several: {:?}", self.sign_in_states());
        state
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.lock().expect("cookie jar").insert(name.to_owned(), value.to_owned());
    }

    pub fn remove_cookie(&self, name: &str) {
        self.cookies.lock().expect("cookie jar").remove(name);
    }

    /// Copies every cookie of `other` (a second tab of the same browser, or a stolen cookie).
    pub fn copy_cookies_from(&self, other: &Browser) {
        let theirs = other.cookies.lock().expect("cookie jar").clone();
        *self.cookies.lock().expect("cookie jar") = theirs;
    }

    fn store(&self, response: &TestResponse) {
        let mut cookies = self.cookies.lock().expect("cookie jar");
        for line in response.set_cookies() {
            let cookie = Cookie::parse(line.clone()).unwrap_or_else(|e| panic!("invalid Set-Cookie {line:?}: {e}"));
            let expired = cookie.max_age().is_some_and(|age| age.is_zero() || age.is_negative())
                || cookie.expires_datetime().is_some_and(|at| at < time::OffsetDateTime::now_utc());
            if expired {
                cookies.remove(cookie.name());
            } else {
                cookies.insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }

    /// Sends a request the way a browser page on the app's origin would.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> TestResponse {
        let mut request = self.http.request(method.clone(), self.url(path));
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            request = request.header(COOKIE, cookies);
        }
        if method != Method::GET && method != Method::HEAD {
            request = request.header("origin", self.origin()).header("sec-fetch-site", "same-origin");
        }
        let mut request = build(request).build().expect("a request");
        // A page's link or form on the app's origin, unless the test says where the request came from.
        if !request.headers().contains_key("sec-fetch-site") {
            request.headers_mut().insert("sec-fetch-site", reqwest::header::HeaderValue::from_static("same-origin"));
        }
        let response = read(self.http.execute(request).await.expect("request reaches the app")).await;
        self.store(&response);
        response
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, |r| r).await
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let body = serde_urlencoded::to_string(fields).expect("form encodes");
        self.request(Method::POST, path, |r| r.header("content-type", "application/x-www-form-urlencoded").body(body))
            .await
    }

    /// Posts a form from the app's start page, with the CSRF token the page carries.
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let token = self.csrf_token().await;
        let mut with_token = vec![("csrf_token", token.as_str())];
        with_token.extend_from_slice(fields);
        self.post_form(path, &with_token).await
    }

    /// The CSRF token from the start page's forms.
    pub async fn csrf_token(&self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, 200, "the start page renders: {}", page.body);
        extract_csrf_token(&page.body).expect("the signed-in page carries a CSRF token")
    }

    /// JSON to the API, authenticated by this browser's cookie, from the app's own origin.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.request(method, path, |r| match body {
            Some(body) => r.json(&body),
            None => r,
        })
        .await
    }

    /// The whole sign-in: `/login` → WorkOS stand-in (auto-approves `login_hint`) → `/callback`. Returns the
    /// callback's response (a 302 into the app on success).
    pub async fn sign_in(&self, email: &str) -> TestResponse {
        self.sign_in_to(email, "/").await
    }

    pub async fn sign_in_to(&self, email: &str, return_to: &str) -> TestResponse {
        let login = self.get(&format!("/login?login_hint={}&return_to={}", enc(email), enc(return_to))).await;
        assert_eq!(login.status, 302, "login redirects to WorkOS: {}", login.body);
        let callback = self.authorize(&login.location().expect("authorize URL")).await;
        self.get(&callback).await
    }

    /// Visits the WorkOS authorize URL (no app cookies go there) and returns the app-relative callback path.
    pub async fn authorize(&self, authorize_url: &str) -> String {
        let response = read(http_client().get(authorize_url).send().await.expect("WorkOS stand-in answers")).await;
        assert_eq!(response.status, 302, "the stand-in approves the login hint: {}", response.body);
        let callback = Url::parse(&response.location().expect("redirect to the app")).expect("absolute callback URL");
        assert_eq!(callback.origin(), self.base.origin(), "WorkOS sends the browser back to the app");
        match callback.query() {
            Some(query) => format!("{}?{query}", callback.path()),
            None => callback.path().to_owned(),
        }
    }
}

pub fn extract_csrf_token(html: &str) -> Option<String> {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Where a page's (first) form posts to, as the page gives it.
pub fn form_action(html: &str) -> Option<String> {
    let rest = html.split(r#"<form method="post" action=""#).nth(1)?;
    Some(rest.split('"').next()?.replace("&#38;", "&").replace("&amp;", "&"))
}

pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An API client authenticated by a bearer token, like `curl -H "Authorization: Bearer …"`.
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base: Url, token: Option<String>) -> Self {
        Self { base, http: http_client(), token }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let mut request = self.http.request(method, self.base.join(path).expect("path joins"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request reaches the app")).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None).await
    }

    /// A GET that may find nothing listening yet (a process still starting).
    pub async fn try_get(&self, path: &str) -> Option<TestResponse> {
        let response = self.http.get(self.base.join(path).ok()?).send().await.ok()?;
        Some(read(response).await)
    }
}
