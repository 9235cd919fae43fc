//! The `openidconnect` crate's HTTP client trait over the app's own reqwest client.
//!
//! The crate's built-in client is reqwest 0.12 with its own TLS stack; this newtype lets it use the one pooled
//! reqwest 0.13 client authbridge builds for the provider (`outbound::client`: no redirects, timeouts, rustls with
//! aws-lc-rs), so there is one TLS stack and one connection pool per upstream.
//!
//! Two things are decided here, once for every call (discovery, keys, tokens; userinfo and revocation, which the
//! crate does not make, read their answers through [`read_capped`] too): answers are capped at [`MAX_BODY`], and an overloaded or failing provider (429, any 5xx) becomes [`HttpError::Status`] before the crate
//! parses anything, so callers see "unavailable, retry" rather than a parse error about an HTML error page. One
//! exception: a 5xx whose body is an OAuth error about the grant or the user (`invalid_grant`, `access_denied`,
//! `login_required`…) is the refusal it says, whatever its status — Auth0 answers 500 when an Action denies a
//! sign-in or a refresh — and goes to the crate, which reads it as one.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

use crate::outbound::{self, Failure, Upstream};

/// Discovery documents, key sets and token answers are a few KiB; anything near this is not one of them.
pub const MAX_BODY: usize = 1024 * 1024;

/// The provider's HTTP client (cloning shares the pool).
#[derive(Clone)]
pub struct OidcHttp(reqwest::Client);

impl OidcHttp {
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> reqwest::Result<Self> {
        outbound::client(connect_timeout, request_timeout).map(Self)
    }

    /// The client itself, for the calls the crate does not make (userinfo).
    pub fn client(&self) -> &reqwest::Client {
        &self.0
    }
}

/// Why a call to the provider got no answer the crate could read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("the identity provider did not answer in time")]
    Timeout,
    #[error("could not connect to the identity provider")]
    Connect,
    /// 429 or 5xx: the provider is overloaded or failing.
    #[error("the identity provider answered {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("the identity provider's answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the request to the identity provider failed: {0}")]
    Broken(String),
}

impl HttpError {
    /// How long to wait before asking again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Status { retry_after: Some(after), .. } => *after,
            _ => outbound::ASSUMED_RETRY_AFTER,
        }
    }

    pub fn of(error: &reqwest::Error) -> Self {
        match Failure::of(error) {
            Failure::Timeout => Self::Timeout,
            Failure::Connect => Self::Connect,
            Failure::Decode | Failure::Broken => Self::Broken(outbound::message_without_url(error)),
        }
    }

    /// A 429 or 5xx answer, with how long it asks us to wait (at most [`crate::outbound::MAX_RETRY_AFTER`]) when it
    /// says: its `Retry-After`, else, on a 429, `X-RateLimit-Reset`.
    pub fn from_status(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let too_many = status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        (too_many || status.is_server_error()).then(|| Self::Status {
            status: status.as_u16(),
            retry_after: crate::outbound::retry_after(headers)
                .or_else(|| too_many.then(|| rate_limit_reset(headers, SystemTime::now())).flatten()),
        })
    }
}

/// Auth0's `X-RateLimit-Reset`, the Unix time in seconds when the rate limit's bucket fills again (Auth0, "Rate
/// limit policy"; auth0-python reads only this header on a 429), as the time left until then, at most
/// [`crate::outbound::MAX_RETRY_AFTER`]. `None` when absent or unreadable.
fn rate_limit_reset(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(crate::outbound::MAX_RETRY_AFTER))
}

impl<'c> AsyncHttpClient<'c> for OidcHttp {
    type Error = HttpError;
    // `Send`, so the crate's futures can run in axum handlers and spawned tasks.
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|error| HttpError::of(&error))?;
            let response = outbound::observed(Upstream::Oidc, self.0.execute(request)).await;
            let mut response = response.map_err(|error| HttpError::of(&error))?;
            let failing = HttpError::from_status(response.status(), response.headers());
            if let Some(error) = &failing
                && response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                return Err(error.clone());
            }
            let mut builder =
                openidconnect::http::Response::builder().status(response.status()).version(response.version());
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = read_capped(&mut response).await?;
            if let Some(error) = failing
                && !refuses_the_grant_or_user(&body)
            {
                return Err(error);
            }
            builder.body(body).map_err(|error| HttpError::Broken(error.to_string()))
        })
    }
}

/// The body of `response`, refused once it grows past [`MAX_BODY`] (the crate's calls, userinfo, revocation).
pub(super) async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| HttpError::of(&error))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(serde::Deserialize)]
pub(super) struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Whether `body` is an OAuth error object whose `error` is about the grant or the user.
fn refuses_the_grant_or_user(body: &[u8]) -> bool {
    serde_json::from_slice::<OAuthError>(body)
        .is_ok_and(|body| body.error == "invalid_grant" || super::client::is_refusal_of_the_user(&body.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discovery, JWKS and token calls (through the `openidconnect` crate) are provider calls in `/metrics`.
    #[test]
    fn the_crates_calls_are_counted_as_calls_to_the_provider() {
        let counted = outbound::counting::calls_recorded(Upstream::Oidc, |base| async move {
            let http = OidcHttp::new(Duration::from_secs(1), Duration::from_secs(1)).expect("a client");
            let request = openidconnect::http::Request::builder()
                .uri(format!("{base}.well-known/openid-configuration"))
                .body(Vec::new())
                .expect("a request");
            let answered = http.call(request).await;
            assert!(answered.is_ok(), "{answered:?}");
        });
        assert_eq!(counted, 1.0);
    }

    /// A 429 says how long to wait by `Retry-After` or, as Auth0 does, by `X-RateLimit-Reset` (a Unix time).
    #[test]
    fn a_rate_limit_is_waited_out_as_the_provider_says() {
        use reqwest::StatusCode;
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = SystemTime::now();
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        let mut auth0 = HeaderMap::new();
        auth0.insert("x-ratelimit-reset", HeaderValue::from(unix + 20));
        let wait = rate_limit_reset(&auth0, now).expect("read");
        assert!((Duration::from_secs(19)..=Duration::from_secs(20)).contains(&wait), "{wait:?}");
        let limited = HttpError::from_status(StatusCode::TOO_MANY_REQUESTS, &auth0).expect("an error");
        assert!(limited.retry_after() > Duration::from_secs(15), "{limited:?}");

        auth0.insert("x-ratelimit-reset", HeaderValue::from(unix - 5));
        assert_eq!(rate_limit_reset(&auth0, now), Some(Duration::ZERO), "a reset already past: ask again");
        auth0.insert("x-ratelimit-reset", HeaderValue::from(unix + 86_400));
        assert_eq!(rate_limit_reset(&auth0, now), Some(outbound::MAX_RETRY_AFTER), "capped");
        auth0.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
        assert_eq!(rate_limit_reset(&auth0, now), None);

        let mut both = HeaderMap::new();
        both.insert("retry-after", HeaderValue::from_static("3"));
        both.insert("x-ratelimit-reset", HeaderValue::from(unix + 60));
        let limited = HttpError::from_status(StatusCode::TOO_MANY_REQUESTS, &both).expect("an error");
        assert_eq!(limited.retry_after(), Duration::from_secs(3), "Retry-After comes first");
        let mut reset_only = HeaderMap::new();
        reset_only.insert("x-ratelimit-reset", HeaderValue::from(unix + 60));
        let failing = HttpError::from_status(StatusCode::BAD_GATEWAY, &reset_only).expect("an error");
        assert_eq!(failing.retry_after(), outbound::ASSUMED_RETRY_AFTER, "a rate limit's header counts on a 429 only");
    }
}
