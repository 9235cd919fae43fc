//! Server-rendered pages shared by several features: the error page and the sign-out confirmation.
//!
//! Templates live in `templates/` (askama, compiled into the binary, HTML-escaped by default). Rendering goes
//! through [`render`] so that a template error becomes a logged 500 page, never a panic.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

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
