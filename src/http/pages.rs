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
use super::extractors::CurrentUser;

/// The banner every page shows while support staff impersonate the user: who, by whom, why, and a way to stop
/// (signing out ends the impersonated session).
#[derive(Debug, Clone)]
pub struct Banner {
    /// The impersonated user, as people name them.
    pub user: String,
    pub impersonator: String,
    pub reason: Option<String>,
    /// Changes are refused (`IMPERSONATION_ALLOW_WRITES` off): the banner says so, and pages leave out their forms.
    pub read_only: bool,
    /// For the "Stop impersonating" (sign-out) form.
    pub csrf_token: String,
}

impl Banner {
    pub fn new(state: &AppState, user: &CurrentUser) -> Self {
        let (impersonator, reason) = match &user.impersonator {
            Some(impersonator) => (impersonator.email.clone(), impersonator.reason.clone()),
            None => (String::new(), None),
        };
        Self {
            user: user.user.display_name(),
            impersonator,
            reason: reason.filter(|reason| !reason.trim().is_empty()),
            read_only: super::extractors::writes_refused(state, user),
            csrf_token: state.csrf.token(user.csrf_binding()),
        }
    }

    /// The banner, when the session is impersonated.
    pub fn of(state: &AppState, user: &CurrentUser) -> Option<Self> {
        user.impersonator.is_some().then(|| Self::new(state, user))
    }
}

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

const FALLBACK_ERROR_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Error · authbridge</title></head>\
<body><h1>Something went wrong</h1><p>Please try again. <a href=\"/\">Back to the start page</a></p></body></html>";

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    banner: Option<Banner>,
    status: u16,
    heading: &'a str,
    message: &'a str,
    sign_in: Option<SignInLink>,
}

/// The way on from an error page to a sign-in: where the button goes, and what it says.
pub struct SignInLink {
    pub href: String,
    pub label: &'static str,
}

/// An error page; `heading` `None`: the usual heading for `status`.
pub fn error_page(
    status: StatusCode,
    heading: Option<&str>,
    message: &str,
    sign_in: Option<SignInLink>,
    banner: Option<Banner>,
) -> Response {
    let heading = heading.unwrap_or(match status {
        StatusCode::UNAUTHORIZED => "Sign-in didn't work",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            "Temporarily unavailable"
        }
        // 400, 405, 408, 409, 413, 415, 422, …: the request's fault, which the message names.
        status if status.is_client_error() => "That request didn't work",
        _ => "Something went wrong",
    });
    render(status, &ErrorPage { banner, status: status.as_u16(), heading, message, sign_in })
}

/// A page whose way on is a link to another site: where a redirect after a form post would be blocked by the
/// Content-Security-Policy's `form-action` (which browsers apply to redirects), a link the person follows is not.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct ContinuePage<'a> {
    pub banner: Option<Banner>,
    pub heading: &'a str,
    pub message: &'a str,
    pub href: &'a str,
    pub label: &'a str,
    pub back: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub banner: Option<Banner>,
    pub email: Option<String>,
    pub csrf_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each status's usual heading: the person reading the page learns first whose problem it is.
    #[tokio::test]
    async fn error_pages_are_headed_by_whose_problem_it_is() {
        for (status, heading) in [
            (StatusCode::BAD_REQUEST, "That request didn&#39;t work"),
            (StatusCode::UNAUTHORIZED, "Sign-in didn&#39;t work"),
            (StatusCode::FORBIDDEN, "Not allowed"),
            (StatusCode::NOT_FOUND, "Not found"),
            (StatusCode::METHOD_NOT_ALLOWED, "That request didn&#39;t work"),
            (StatusCode::UNPROCESSABLE_ENTITY, "That request didn&#39;t work"),
            (StatusCode::BAD_GATEWAY, "Temporarily unavailable"),
            (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable"),
            (StatusCode::GATEWAY_TIMEOUT, "Temporarily unavailable"),
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        ] {
            let page = error_page(status, None, "The message.", None, None);
            assert_eq!(page.status(), status);
            let body = axum::body::to_bytes(page.into_body(), usize::MAX).await.expect("the page");
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(&format!("<h1>{heading}</h1>")), "{status}: {body}");
        }
        let page = error_page(StatusCode::NOT_FOUND, Some("Gone fishing"), "The message.", None, None);
        let body = axum::body::to_bytes(page.into_body(), usize::MAX).await.expect("the page");
        assert!(String::from_utf8_lossy(&body).contains("<h1>Gone fishing</h1>"), "a heading given wins");
    }
}
