//! Server-rendered pages shared by several features: the error page, the sign-out confirmation, and the one
//! stylesheet they all use.
//!
//! Templates live in `templates/` (askama, compiled into the binary, HTML-escaped by default). Rendering goes
//! through [`render`] so that a template error becomes a logged 500 page, never a panic.

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/assets/style.css", get(stylesheet))
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

/// Renders `template` with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, Html(FALLBACK_ERROR_PAGE)).into_response()
        }
    }
}

const FALLBACK_ERROR_PAGE: &str = "<!doctype html><title>Error</title><h1>Something went wrong</h1>\
<p>Please try again. <a href=\"/\">Back to the start page</a></p>";

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    heading: &'a str,
    message: &'a str,
    offer_sign_in: bool,
}

pub fn error_page(status: StatusCode, message: &str, offer_sign_in: bool) -> Response {
    let heading = match status {
        StatusCode::BAD_REQUEST => "That request didn't work",
        StatusCode::UNAUTHORIZED => "Sign-in didn't work",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            "Temporarily unavailable"
        }
        _ => "Something went wrong",
    };
    render(status, &ErrorPage { status: status.as_u16(), heading, message, offer_sign_in })
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub email: Option<String>,
    pub csrf_token: String,
}
