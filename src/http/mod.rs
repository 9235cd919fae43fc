//! The HTTP face of authbridge: routes, middleware, extractors, errors.
//!
//! One router per feature (`sign_in`, `todos_pages`, `todos_api`, `health`), merged in [`router`], under one
//! stack of layers. Read a request's path top to bottom: `middleware` (request id, log, security headers,
//! time limit) → `extractors` (who is this?) → the feature's handler → `insforge` → back out through `error`.

pub mod csrf;
pub mod error;
pub mod extractors;
pub mod health;
pub mod middleware;
pub mod pages;
pub mod sign_in;
pub mod state;
pub mod todos_api;
pub mod todos_pages;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceBuilder;

pub use state::AppState;

/// Request bodies larger than this are refused with 413: a todo is a short title, not a document.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// JSON (not HTML) answers are for paths under `/api/`.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/login", get(sign_in::login))
        .route("/callback", get(sign_in::callback))
        .route("/logout", get(sign_in::logout_page).post(sign_in::logout))
        .route("/api/me", get(sign_in::me))
        .merge(todos_pages::router())
        .merge(todos_api::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/assets/style.css", get(stylesheet))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::drop_odd_request_id))
                .layer(middleware::set_request_id())
                .layer(middleware::access_log())
                .layer(middleware::propagate_request_id())
                .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::security_headers))
                // Outside the time limit: when a request times out after its session was refreshed, the 504 must
                // still carry the new cookie, or the rotated refresh token would be lost with the response.
                .layer(axum::middleware::from_fn_with_state(state.clone(), extractors::session_cookies))
                .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::time_limit))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        );
    app.with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../../assets/style.css"),
    )
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    error::error_response(uri.path(), error::AppError::NotFound)
}

async fn method_not_allowed(uri: axum::http::Uri) -> axum::response::Response {
    error::error_response(uri.path(), error::AppError::MethodNotAllowed)
}
