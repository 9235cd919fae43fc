//! The HTTP face of authbridge: routes, middleware, extractors, errors.
//!
//! One router per feature (`sign_in`, `todos_pages`, `todos_api`, `health`, and `pages` for the stylesheet),
//! merged in [`router`], under one stack of layers. Read a request's path top to bottom: `middleware` (request
//! id, log, security headers, time limit) → `extractors` (who is this?) → the feature's handler → `insforge` →
//! back out through `error`, which renders any error as JSON or a page. Submodules are private: the binary, the
//! demo and the tests need only [`router`] (through `startup`) and [`AppState`].

mod csrf;
mod error;
mod extractors;
mod health;
mod middleware;
mod pages;
#[cfg(test)]
mod properties;
mod sign_in;
mod state;
mod todos_api;
mod todos_pages;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

pub use error::AppError;
pub use state::{AppState, StateError};

/// Request bodies larger than this are refused with 413: a todo is a short title, not a document.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// JSON (not HTML) answers are for paths under `/api/`.
fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .merge(sign_in::router())
        .merge(todos_pages::router())
        .merge(todos_api::router())
        .merge(health::router())
        .merge(pages::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::drop_odd_request_id))
                .layer(middleware::set_request_id())
                .layer(middleware::access_log())
                .layer(middleware::propagate_request_id())
                .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::security_headers))
                .layer(axum::middleware::from_fn(error::render_errors))
                .layer(axum::middleware::from_fn(middleware::refuse_oversized_bodies))
                // Outside the time limit: when a request times out after its session was refreshed, the 504 must
                // still carry the new cookie, or the rotated refresh token would be lost with the response.
                .layer(axum::middleware::from_fn_with_state(state.clone(), extractors::session_cookies))
                .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::time_limit))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        );
    // Outermost, so it sees the status the client gets; only when metrics are served, so it costs nothing otherwise.
    let app = if state.config.server.metrics_bind_addr.is_some() {
        app.layer(axum::middleware::from_fn(middleware::record_metrics))
    } else {
        app
    };
    app.with_state(state)
}

async fn not_found() -> Response {
    AppError::NotFound.into_response()
}

async fn method_not_allowed() -> Response {
    AppError::MethodNotAllowed.into_response()
}
