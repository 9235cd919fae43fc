//! What every upstream client (WorkOS, InsForge) shares: how its HTTP client is built, how its URLs are formed,
//! and how a failed request is classified.
//!
//! Each upstream gets exactly one pooled client, built here at start-up, so connections are reused across
//! requests. Redirects are never followed: every request carries a credential (the WorkOS API key, a user's
//! InsForge token), and a redirect must not carry it to another host. Every call goes through [`observed`], which
//! counts it and times it for `/metrics`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use url::Url;

/// How long an idle kept-alive connection is kept for reuse: less than the servers' own idle limits, so we close
/// it before they do. A request written on a connection the server is closing at that moment fails after it was
/// sent (a read answered 502, a write "may have been saved"), and hyper retries only requests it had not begun to
/// write. Self-hosted InsForge closes after 65 s (Node's `server.keepAliveTimeout`, its `KEEP_ALIVE_TIMEOUT_MS`),
/// AWS load balancers after 60 s; reqwest's default would keep them 90 s.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn client(connect_timeout: Duration, request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authbridge/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `base` with `segments` appended as path segments, each percent-encoded, so a value (a client id, a table name)
/// can never add path components. Appending (instead of `Url::join`) keeps a path prefix such as
/// `https://host/insforge`. `None` for a base that cannot have a path (`mailto:`…), which configuration refuses.
pub fn endpoint(base: &Url, segments: &[&str]) -> Option<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().ok()?.pop_if_empty().extend(segments);
    Some(url)
}

/// How long to wait before asking an upstream again when its failure named no wait (no `Retry-After`).
pub const ASSUMED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The longest `Retry-After` taken from an upstream. It is waited out (the Events API consumer) and passed on to our
/// own clients, so a wrong one (a day, from a misconfigured proxy) must not stop either for longer than this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// An answer's `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, read as the time left until it
/// (none left for a date already past), at most [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The services authbridge calls, as the metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Workos,
    Insforge,
    /// An OpenID Connect provider (Auth0, …): discovery, JWKS, token, userinfo and revocation endpoints.
    Oidc,
}

impl Upstream {
    pub fn label(self) -> &'static str {
        match self {
            Self::Workos => "workos",
            Self::Insforge => "insforge",
            Self::Oidc => "oidc",
        }
    }
}

/// Awaits one call to `upstream` and records it: `authbridge_upstream_requests_total` and
/// `authbridge_upstream_request_duration_seconds`, by upstream and outcome (`2xx`, `4xx`, `5xx`, or why no answer
/// came). The answer itself passes through untouched.
pub async fn observed(
    upstream: Upstream,
    call: impl Future<Output = reqwest::Result<reqwest::Response>>,
) -> reqwest::Result<reqwest::Response> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(response) if response.status().is_success() => "2xx",
        Ok(response) if response.status().is_client_error() => "4xx",
        Ok(response) if response.status().is_server_error() => "5xx",
        Ok(_) => "other",
        Err(error) => match Failure::of(error) {
            Failure::Timeout => "timeout",
            Failure::Connect => "connect",
            Failure::Decode | Failure::Broken => "broken",
        },
    };
    let upstream = upstream.label();
    metrics::counter!("authbridge_upstream_requests_total", "upstream" => upstream, "outcome" => outcome).increment(1);
    metrics::histogram!("authbridge_upstream_request_duration_seconds", "upstream" => upstream, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Why a request got no usable answer, as both clients need to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the connect or request timeout.
    Timeout,
    /// Nothing reached the upstream: refused, DNS or TLS failure. Safe to retry, even a write.
    Connect,
    /// The answer arrived but its body is not what was expected.
    Decode,
    /// The connection broke after the request was sent: a write may or may not have been applied.
    Broken,
}

impl Failure {
    pub fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else if error.is_decode() {
            Self::Decode
        } else {
            Self::Broken
        }
    }
}

/// reqwest's message with its causes (reqwest's own says only "error sending request for url (…)"; the reason,
/// such as "Connection refused", is a cause). The URL's path and query can carry a code or a filter value, so logs
/// get only where the request went (`https://api.workos.com/…`), which is what an operator checks against the
/// configuration.
pub fn message_without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(reason) = cause {
        message.push_str(&format!(": {reason}"));
        cause = reason.source();
    }
    if let Some(url) = error.url() {
        message = message.replace(url.as_str(), &format!("{}/…", url.origin().ascii_serialization()));
    }
    message
}

/// For tests of the clients: how many calls to an upstream they record.
#[cfg(test)]
pub(crate) mod counting {
    use std::future::Future;

    use super::Upstream;

    /// Runs `calls`, given the base URL of a local server that answers every request with `{}`, under a metrics
    /// recorder of its own (the process-wide one is shared by tests running in parallel), and returns how many
    /// calls to `upstream` were counted.
    pub fn calls_recorded<Fut: Future<Output = ()>>(upstream: Upstream, calls: impl FnOnce(String) -> Fut) -> f64 {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let base = format!("http://{}/", listener.local_addr().expect("an address"));
                let answer = axum::Router::new().fallback(|| async { axum::Json(serde_json::json!({})) });
                tokio::spawn(async move { axum::serve(listener, answer).await });
                calls(base).await;
            });
        });
        let label = format!("upstream=\"{}\"", upstream.label());
        handle
            .render()
            .lines()
            .filter(|line| line.starts_with("authbridge_upstream_requests_total{") && line.contains(&label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_encode_each_segment() {
        let base = Url::parse("https://host/prefix/?q=1#f").expect("url");
        let url = endpoint(&base, &["sso", "jwks", "client_1/../x"]).expect("a path base");
        assert_eq!(url.as_str(), "https://host/prefix/sso/jwks/client_1%2F..%2Fx");
        let bare = Url::parse("https://host").expect("url");
        assert_eq!(endpoint(&bare, &["api", "health"]).expect("path").as_str(), "https://host/api/health");
    }

    /// A failed request's message names where it went, for the operator to check the configuration, but not its
    /// path or query, where codes and filter values travel.
    #[tokio::test]
    async fn a_failure_is_logged_with_the_upstreams_origin_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("an address").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/user_management/authenticate?code=secret-code");
        let error = reqwest::get(&url).await.expect_err("nothing listens there");
        let message = message_without_url(&error);
        assert!(message.contains(&format!("http://127.0.0.1:{port}/…")), "{message}");
        assert!(message.contains("Connection refused"), "and why: {message}");
        assert!(!message.contains("secret-code") && !message.contains("authenticate"), "{message}");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let answer = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::RETRY_AFTER, value.parse().expect("a header value"));
            retry_after(&headers)
        };
        assert_eq!(answer("7"), Some(Duration::from_secs(7)));
        assert_eq!(answer(" 120 "), Some(Duration::from_secs(120)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let wait = answer(&in_a_minute).expect("an HTTP-date");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(answer("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date already past: no wait");
        assert_eq!(answer("300"), Some(MAX_RETRY_AFTER));
        assert_eq!(answer("86400"), Some(MAX_RETRY_AFTER), "a day is not waited out");
        assert_eq!(
            answer(&httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(answer("soon"), None);
        assert_eq!(answer("-5"), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }
}
