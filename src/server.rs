//! The HTTP server loop: hyper, configured so that slow or idle clients cannot hold the process hostage.
//!
//! `axum::serve` runs hyper without a timer, so hyper's header-read timeout never fires: a client that opens a
//! connection and never finishes its headers (slowloris), or keeps an idle keep-alive connection open, holds a
//! socket and its buffers forever. This loop serves the same router with
//! - a **header-read timeout**: a request's headers must arrive in full within [`ServerLimits::header_read_timeout`]
//!   of hyper starting to wait for them. hyper starts that wait as soon as a connection is idle, so the same
//!   timeout also closes idle keep-alive connections;
//! - a **cap on concurrent connections**: beyond [`ServerLimits::max_connections`], new connections wait in the
//!   kernel's accept queue until one closes, so memory and file descriptors stay bounded whatever clients do;
//! - a **bound on header size**, so one connection cannot grow its read buffer without limit;
//! - **load shedding**: beyond [`ServerLimits::max_concurrent_requests`] requests in flight, a request is answered
//!   503 with `Retry-After` at once, before the router sees it. Nothing queues: under a flood, memory stays what
//!   the limit allows, the requests let in keep their latency, and the process recovers the moment the flood stops
//!   (`/healthz` is always answered, so an orchestrator does not restart a process that is merely busy);
//! - **a change runs to its end**: a request that may change something (any method but GET, HEAD, OPTIONS) is
//!   handled in a task of its own, so a client that hangs up does not cut its handler off at the next `.await`
//!   (hyper drops a connection's future when its client goes). What such a request does after its last upstream
//!   answer (recording a sign-out for every replica, queueing the Audit Log event of a todo InsForge has saved,
//!   its impersonation audit) is done whether or not anyone is still listening, and only the request's time limit
//!   (`REQUEST_TIMEOUT_SECONDS`) ends it. A read whose client has gone is dropped there and then: nobody is left to
//!   read its answer, and its slot is free for the next request at once;
//! - graceful shutdown: on the shutdown signal, stop accepting, let in-flight requests finish (changes whose client
//!   has gone too), close idle connections.
//!
//! Request bodies are bounded by the router (a declared `Content-Length` over the limit is refused before any of
//! the body is read), and whole requests by its time limit; the webhook route, which anyone can reach, also bounds
//! how many bodies it waits for at once and for how long (`http::webhooks`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::middleware::{REQUEST_ID, is_acceptable_request_id};

/// Request headers larger than this are refused with 431 (browsers send a few KB; a chunked session cookie fits).
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Requests handled at once; more are answered 503 at once.
    pub max_concurrent_requests: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Both: `max_buf_size` is checked only while the headers are incomplete, and the read buffer grows by
        // doubling, so headers sent in one burst were parsed in full up to about twice the limit;
        // `max_header_size` checks the size of the parsed headers themselves (431 beyond).
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let requests = Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1)));
    let graceful = GracefulShutdown::new();
    let handlers = TaskTracker::new();
    tokio::pin!(shutdown);

    loop {
        // A permit first: at the cap, stop accepting rather than accept and queue without bound.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a connection reset before accept: not fatal, and retrying at once
                    // would spin, so pause a moment.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses should leave at once rather than wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);

        let router = router.clone();
        let requests = Arc::clone(&requests);
        let handlers = handlers.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let router = router.clone();
            // Who is at the other end, for the audit trail's `location`.
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            // Decided now, not queued: a request either gets a slot at once or is shed.
            let slot =
                if request.uri().path() == "/healthz" { None } else { Some(Arc::clone(&requests).try_acquire_owned()) };
            let handling = match slot.transpose() {
                Err(_) => Handling::Shed(overloaded(&request)),
                // The slot is held until the handler ends (bodies here are small and built before the head): for a
                // change, whether or not its client is still there, since the work goes on.
                Ok(slot) if request.method().is_safe() => Handling::Read(router.oneshot(request), slot),
                Ok(slot) => {
                    let answer = PlainAnswer::for_request(&request);
                    let handler = handlers.spawn(async move {
                        let Ok(response) = router.oneshot(request).await;
                        drop(slot);
                        response
                    });
                    Handling::Change(handler, answer)
                }
            };
            async move {
                let response = match handling {
                    Handling::Shed(response) => response,
                    Handling::Read(handler, _slot) => {
                        let Ok(response) = handler.await;
                        response
                    }
                    Handling::Change(handler, answer) => handler.await.unwrap_or_else(|error| {
                        // A bug: nothing from outside should make a handler panic. Said in the log's own format
                        // (the panic's message went to stderr), and answered rather than cut off without a word.
                        tracing::error!(%error, "a request's handler panicked");
                        answer.respond(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "Something went wrong on our side.",
                        )
                    }),
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that vanished or timed out is routine, not worth more than a debug line.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    graceful.shutdown().await;
    // Changes whose clients hung up have no connection left to wait for: their handlers are waited for here.
    handlers.close();
    handlers.wait().await;
    Ok(())
}

/// How a request is being handled: shed at once, read within its connection, or changed in a task of its own.
enum Handling<R> {
    Shed(Response<Body>),
    Read(R, Option<tokio::sync::OwnedSemaphorePermit>),
    Change(tokio::task::JoinHandle<Response<Body>>, PlainAnswer),
}

/// What an answer built outside the router needs of its request: its format (the API's error JSON under `/api/`
/// and `/webhooks/`, as every other error there) and the client's own request id when acceptable (else a fresh
/// one, made only if the answer is), so traces do not break there.
struct PlainAnswer {
    json: bool,
    request_id: Option<HeaderValue>,
}

impl PlainAnswer {
    fn for_request(request: &Request<Incoming>) -> Self {
        Self {
            json: crate::http::answers_json(request.uri().path()),
            request_id: request.headers().get(&REQUEST_ID).filter(|id| is_acceptable_request_id(id)).cloned(),
        }
    }

    fn respond(self, status: StatusCode, code: &str, message: &str) -> Response<Body> {
        let (content_type, body) = if self.json {
            ("application/json", serde_json::json!({ "error": { "code": code, "message": message } }).to_string())
        } else {
            ("text/plain; charset=utf-8", format!("{message}\n"))
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The router's security headers, with a policy for an answer that loads nothing.
        crate::http::middleware::insert_fixed_security_headers(headers);
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        let fresh = || HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok();
        if let Some(id) = self.request_id.or_else(fresh) {
            headers.insert(REQUEST_ID, id);
        }
        response
    }
}

/// The answer to a request over the concurrency limit: 503, `Retry-After: 1`, in the route's format, built without
/// touching the router or anything it holds.
fn overloaded(request: &Request<Incoming>) -> Response<Body> {
    metrics::counter!("authbridge_http_requests_shed_total").increment(1);
    // Not an access-log line each (a flood would become a flood of lines), but said: with metrics off by default,
    // shedding would otherwise leave no trace.
    static THROTTLE: crate::sync::Throttle = crate::sync::Throttle::every(Duration::from_secs(10));
    THROTTLE.note(|requests| {
        tracing::warn!(
            requests,
            "shedding load: requests over MAX_CONCURRENT_REQUESTS answered 503 (the count since the last such \
             line, said at most every 10 s)"
        );
    });
    let mut response = PlainAnswer::for_request(request).respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "The service is busy. Please try again in a moment.",
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
