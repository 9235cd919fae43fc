//! The few HTML pages a person sees on the stand-in: the sign-in picker, and short messages (refusals, signed out).
//!
//! They are what a newcomer meets in `authbridge demo` and what the browser test clicks, so the buttons have stable
//! ids and readable names. Templates are askama (HTML-escaped by default: every value shown here came from a query
//! string or a form). Pages are self-contained, with inline CSS and no scripts, and forbid framing.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

/// One button on the picker.
pub struct UserChoice {
    pub id: String,
    pub name: String,
    pub email: String,
    pub organization: Option<String>,
}

/// An impersonated sign-in on the picker.
pub struct ImpersonationChoice {
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub impersonator: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "workos_standin/sign_in.html")]
pub struct SignInPage {
    pub heading: &'static str,
    /// Where the user goes next (`localhost:3000`), so they know which app asked.
    pub destination: String,
    pub organization: Option<String>,
    pub error: Option<String>,
    /// The parked request's opaque id: the forms carry it instead of the authorization parameters.
    pub request_id: String,
    pub users: Vec<UserChoice>,
    pub impersonations: Vec<ImpersonationChoice>,
    /// The email typed before a refusal, so the user can correct it rather than retype it.
    pub email: String,
}

pub struct Link {
    pub href: String,
    pub text: &'static str,
}

#[derive(Template)]
#[template(path = "workos_standin/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link: Option<Link>,
}

#[derive(Template)]
#[template(path = "workos_standin/portal.html")]
struct PortalPage<'a> {
    intent: &'a str,
    organization: &'a str,
    return_url: Option<&'a str>,
    success_url: Option<&'a str>,
}

/// The page an Admin Portal link opens: which setup, for which organization.
pub fn portal(link: &super::StandInPortalLink, organization: &str) -> Response {
    render(
        StatusCode::OK,
        &PortalPage {
            intent: &link.intent,
            organization,
            return_url: link.return_url.as_deref(),
            success_url: link.success_url.as_deref(),
        },
    )
}

pub fn sign_in(status: StatusCode, page: SignInPage) -> Response {
    render(status, &page)
}

pub fn message(status: StatusCode, title: &str, message: &str, link: Option<Link>) -> Response {
    render(status, &MessagePage { title, message, link })
}

/// A refused browser request. It is shown instead of redirecting whenever the redirect target cannot be trusted.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    self::message(status, "This sign-in request cannot be completed", message, None)
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    crate::web::render_page(status, template, "WorkOS")
}
