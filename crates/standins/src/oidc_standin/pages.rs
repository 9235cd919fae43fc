//! The pages a person sees on the OIDC stand-in: the sign-in page and short messages (refusals, signed out).
//!
//! Askama templates (HTML-escaped: every value shown came from a query string or a form), self-contained, no
//! scripts, no framing. The buttons have stable ids for the browser test and the demo.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

pub struct UserChoice {
    pub subject: String,
    pub name: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "oidc_standin/sign_in.html")]
pub struct SignInPage {
    pub heading: &'static str,
    pub destination: String,
    pub error: Option<String>,
    pub request_id: String,
    pub users: Vec<UserChoice>,
    pub email: String,
}

#[derive(Template)]
#[template(path = "oidc_standin/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link: Option<&'a str>,
}

pub fn sign_in(status: StatusCode, page: &SignInPage) -> Response {
    render(status, page)
}

pub fn message(status: StatusCode, title: &str, message: &str, link: Option<&str>) -> Response {
    render(status, &MessagePage { title, message, link })
}

/// A refused browser request, shown instead of a redirect whose target cannot be trusted.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    self::message(status, "This sign-in request cannot be completed", message, None)
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    crate::web::render_page(status, template, "OIDC")
}
