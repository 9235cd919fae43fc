//! The HTTP face of authbridge: routes, middleware, extractors, errors.
//!
//! One router per feature (`sign_in`, `todos_pages`, `todos_api`, `organizations`, `webhooks`, `health`, and
//! `pages` for the stylesheet), merged in [`router`], under one stack of layers. Bodies are limited by path
//! ([`body_limit`]): 64 KiB for pages and the API, 1 MiB for WorkOS webhooks (which also take a bounded number at
//! once: `webhooks`); every body has [`BODY_DEADLINE`] to arrive (`extractors::read_body`). Read a request's path top
//! to bottom: `middleware` (request id, log, security headers, then `around_handlers`: errors, session cookies, time
//! limit, body size) → `extractors` (who is this?) → the feature's
//! handler → `insforge` → back out through `error`, which renders any error as JSON or a page. Submodules are
//! private: the binary, the demo and the tests need only [`router`] (through `startup`) and [`AppState`].

mod audit_events;
mod client_address;
mod csrf;
mod error;
mod extractors;
pub mod health;
pub(crate) mod middleware;
mod organizations;
mod pages;
#[cfg(test)]
mod properties;
mod sign_in;
mod spaces;
mod state;
mod todos_api;
mod todos_pages;
mod webhooks;

use axum::Router;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

pub use error::AppError;
pub use extractors::BODY_DEADLINE;
pub use state::{AppState, StateError};
pub use webhooks::MAX_CONCURRENT_WEBHOOKS;

/// Request bodies larger than this are refused with 413: a todo is a short title, not a document.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API: paths under `/api/`, where bearer tokens are accepted.
fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// JSON (not HTML) answers are for the API and for the webhook receivers, which no person reads. The one rule for
/// every error answer, the server loop's load shedding included.
pub(crate) fn answers_json(path: &str) -> bool {
    is_api_path(path) || path.starts_with("/webhooks/")
}

/// The body limit of a request to `path`: [`webhooks::MAX_WEBHOOK_BODY_BYTES`] for WorkOS's webhooks, else
/// [`MAX_BODY_BYTES`]. A declared `Content-Length` over it is answered 413 at once, and an undeclared body is cut off
/// there (`middleware::around_handlers`, `extractors::read_body`).
fn body_limit(path: &str) -> usize {
    if path.starts_with("/webhooks/") { webhooks::MAX_WEBHOOK_BODY_BYTES } else { MAX_BODY_BYTES }
}

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .merge(sign_in::router())
        .merge(todos_pages::router())
        .merge(todos_api::router())
        .merge(organizations::router())
        .merge(health::router())
        .merge(pages::router())
        .merge(webhooks::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(middleware::drop_odd_request_id)
                .layer(middleware::set_request_id())
                .layer(middleware::access_log())
                .layer(middleware::propagate_request_id())
                .map_response(middleware::security_headers(state.clone()))
                .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::around_handlers)),
        );
    // Outermost, so it sees the status the client gets; only when metrics are served, so it costs nothing otherwise.
    let app = if state.config.server.metrics_bind_addr.is_some() {
        app.layer(axum::middleware::from_fn(middleware::record_metrics))
    } else {
        app
    };
    app.with_state(state)
}

/// Unknown paths. The user is resolved (when there is a session) so that an impersonated session's banner is on
/// this page too; whatever resolving answers, the page is a 404.
async fn not_found(_user: Result<extractors::MaybeUser, AppError>) -> Response {
    AppError::NotFound.into_response()
}

async fn method_not_allowed() -> Response {
    AppError::MethodNotAllowed.into_response()
}
