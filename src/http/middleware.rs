//! Cross-cutting layers every route gets: request ids, access logs, security headers, a time limit, and (when
//! `METRICS_BIND_ADDR` is set) request metrics.
//!
//! Access logs record method, *path* (never the query string: `/callback?code=…` carries a credential), status,
//! latency, request id and, once an extractor has identified them, the user id. Nothing here logs a header, a
//! cookie or a body.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Response, Version, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use super::AppState;
use super::error::AppError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's own `x-request-id` is kept (so one id can follow a request across services) only when it looks like
/// an id: at most 64 characters of `[A-Za-z0-9._-]`. Anything else is dropped and replaced by a fresh UUID, so
/// nobody can write arbitrary text into our logs through it. (A plain request mapping, like
/// [`security_headers`]: unlike `from_fn` middleware, it boxes nothing per request.)
pub fn drop_odd_request_id(mut request: Request) -> Request {
    if request.headers().get(&REQUEST_ID).is_some_and(|value| !is_acceptable_request_id(value)) {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// At most 64 characters of `[A-Za-z0-9._-]`, and at least one.
pub fn is_acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn set_request_id() -> SetRequestIdLayer<MakeRequestUuid> {
    SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid)
}

pub fn propagate_request_id() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::new(REQUEST_ID)
}

type AccessLog = TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), LogResponse, (), (), ()>;

/// The access log: one line per request, written when the response starts (failures are logged by status there).
pub fn access_log() -> AccessLog {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(LogResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

#[derive(Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let request_id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
        tracing::info_span!(
            "request",
            request_id = request_id.unwrap_or("-"),
            method = %request.method(),
            path = request.uri().path(),
            user_id = tracing::field::Empty,
        )
    }
}

#[derive(Clone, Copy)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        // Whole microseconds, in milliseconds: `0.229`, not the float noise of `0.22909100000000002`.
        let latency_ms = latency.as_micros() as f64 / 1000.0;
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    }
}

/// Counts and times every request by route template (`/api/todos/{id}`, never the path itself: ids and paths are
/// unbounded and may be personal), method and final status. Only installed when metrics are served.
pub async fn record_metrics(request: Request, next: Next) -> axum::response::Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A fixed set of label values: a client inventing methods must not invent series.
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("authbridge_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    if let Some(super::error::AnsweredCode(code)) = response.extensions().get().copied() {
        metrics::counter!("authbridge_http_errors_total", "route" => route.clone(), "code" => code).increment(1);
    }
    metrics::counter!("authbridge_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// The one middleware around the handlers, whose steps each request takes in this order on the way in (and the
/// reverse on the way out):
/// 1. `error::render_errors`: every [`AppError`] that comes back is rendered as JSON or a page, and logged;
/// 2. `extractors::session_cookies`: the extractors' session context, and the cookie they decided on;
/// 3. [`time_limit`]: 504 past `REQUEST_TIMEOUT_SECONDS` (inside the session cookies: when a request times out
///    after its session was refreshed, the 504 must still carry the new cookie, or the rotated refresh token would
///    be lost with the response);
/// 4. [`refuse_bad_host`] and [`refuse_oversized_bodies`], then the router's handler.
///
/// One `from_fn` calling plain async functions rather than a layer each: every layer made with `from_fn` clones
/// the service stack and boxes two futures on every request (measured in docs/performance.md).
pub async fn around_handlers(State(state): State<AppState>, request: Request, next: Next) -> axum::response::Response {
    let limit = super::body_limit(request.uri().path());
    super::error::render_errors(request, |request| {
        super::extractors::session_cookies(&state, request, |request| {
            time_limit(&state, request, |request| async move {
                match refuse_bad_host(&request).or_else(|| refuse_oversized_bodies(&request, limit)) {
                    Some(refused) => refused,
                    None => next.run(request).await,
                }
            })
        })
    })
    .await
}

/// 400 for an HTTP/1.1 request without exactly one `Host`, or with one that is not `host[:port]`: a server MUST
/// refuse them (RFC 9112 §3.2), and hyper does not. HTTP/1.0 may leave it out, and HTTP/2 names the authority in
/// its `:authority` instead.
fn refuse_bad_host(request: &Request) -> Option<axum::response::Response> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let one_valid = match (hosts.next(), hosts.next()) {
        (Some(host), None) => is_host(host),
        _ => false,
    };
    let problem = "The request needs exactly one Host header, naming a host (and a port).";
    (!one_valid).then(|| AppError::BadRequest(problem.to_owned()).into_response())
}

/// `host[:port]`: an authority without user info.
fn is_host(value: &HeaderValue) -> bool {
    let authority = value.to_str().ok().and_then(|host| host.parse::<axum::http::uri::Authority>().ok());
    authority.is_some_and(|authority| !authority.as_str().contains('@'))
}

/// 413 for a request whose declared `Content-Length` is over its route's body limit, at once, before any of the
/// body is read: otherwise the connection would be held open while the client sends (or trickles) bytes that will
/// be thrown away. Bodies without a declared length are cut off at the limit while they are read
/// (`extractors::read_body`).
fn refuse_oversized_bodies(request: &Request, limit: usize) -> Option<axum::response::Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    declared.is_some_and(|length| length > limit as u64).then(|| AppError::PayloadTooLarge { limit }.into_response())
}

/// Answers with 504 (in the route's format) when `inner` takes longer than `REQUEST_TIMEOUT_SECONDS`. A request
/// that may change something is told that the change may have been made: the limit can go off after InsForge (or
/// the database) has applied it, and a blind retry could make it twice.
async fn time_limit<F, Fut>(state: &AppState, request: Request, inner: F) -> axum::response::Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = axum::response::Response>,
{
    let changes = !request.method().is_safe();
    match tokio::time::timeout(state.config.server.request_timeout, inner(request)).await {
        Ok(response) => response,
        Err(_) if changes => AppError::RequestTimeoutUnconfirmed.into_response(),
        Err(_) => AppError::RequestTimeout.into_response(),
    }
}

/// The security headers every answer carries whatever it is, those built outside the router included
/// (`server::PlainAnswer`): no content sniffing, no framing, no other site's window keeping a handle on ours (an
/// opener, a pop-up: cross-site leaks, reverse tabnabbing), and no other site loading our answers as a resource
/// (per-user pages and JSON; Spectre-class reads). OWASP Secure Headers Project.
pub(crate) fn insert_fixed_security_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    headers.insert(HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin"));
}

/// How many headers [`add_security_headers`] may add (a hint for the map's room: should it add more, the map only
/// grows again, as it did before).
const SECURITY_HEADERS: usize = 8;

/// Security headers on every response (the Content-Security-Policy itself is built in `AppState`), as a response
/// mapping for `ServiceBuilder::map_response`.
pub fn security_headers(
    state: AppState,
) -> impl Fn(axum::response::Response) -> axum::response::Response + Clone + Send + Sync + 'static {
    move |response| add_security_headers(&state, response)
}

fn add_security_headers(state: &AppState, mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    // Room for them all at once: grown one header at a time, the map rehashes several times per response.
    headers.reserve(SECURITY_HEADERS);
    headers.insert(header::CONTENT_SECURITY_POLICY, state.content_security_policy());
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    insert_fixed_security_headers(headers);
    if state.config.server.app_url.scheme() == "https" {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    }
    // Pages and API answers are per user: no shared cache may keep them. (The stylesheet says it is public.)
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
