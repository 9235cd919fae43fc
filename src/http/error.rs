//! The one error type of the HTTP layer, and the one place that renders and logs it.
//!
//! Each [`AppError`] variant *is* a status code with a stable machine-readable `code`. Handlers and extractors
//! return it and convert lower layers' errors with `?`. Turning it into a response only leaves the error in the
//! response's extensions; the [`render_errors`] middleware (the shape of axum's `error-handling` example) then
//! decides, by the request's path, whether the client gets JSON (`{"error":{"code","message"}}` under `/api/` and
//! `/webhooks/`) or a page (or, for a page that needs a signed-in user, the way to sign in), and writes the one
//! log line about it.
//! Messages are written for the person reading them; internal details (upstream messages, SQL errors) go to the
//! log, never to the client.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use crate::db::DbError;
use crate::insforge::client::InsforgeError;
use crate::lifecycle::LifecycleError;
use crate::lifecycle::webhook::SignatureError;
use crate::session::provider::{CheckError, ProviderError};
use crate::session::sign_in::SignInError;
use crate::todo::TitleError;

use super::{answers_json, pages};

/// RFC 5789 §3.1 (http's `header` module has no constant for it).
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// Code `malformed_json`: the body is not JSON, or not JSON of the shape the route takes; the message says which.
    #[error("{0}")]
    MalformedJson(String),
    #[error("That is not a valid todo id.")]
    InvalidId,
    /// Nobody is signed in. A page is answered with the way to sign in (and back), the API with 401.
    #[error("Sign in to continue.")]
    Unauthorized,
    #[error("The access token is not valid.")]
    InvalidToken,
    /// A genuine bearer token past its `exp`: the same code as [`Self::InvalidToken`] (RFC 6750 §3.1 has one
    /// `invalid_token` for both), with words that tell the client to get a new one.
    #[error("The access token has expired.")]
    TokenExpired,
    #[error("{0}")]
    SignInFailed(String),
    // "Another address": a sign-in started at `127.0.0.1` comes back to the redirect URI's `localhost`, where the
    // state cookie (set for the other host) is not sent.
    #[error(
        "This sign-in link has expired, or was started in another browser or at another address of this app. Please \
         sign in again."
    )]
    SignInExpired,
    // Not "reload": reloading sends the same stale form again. The way out is a fresh page.
    #[error(
        "Nothing was changed: the form was out of date or did not come from this app's own pages (CSRF check \
         failed). Go back to the start page and try again."
    )]
    Csrf,
    /// A JSON API change with the session cookie that a browser sent from another site's page (its `Origin` or
    /// `Sec-Fetch-Site`): the same code as [`AppError::Csrf`], in words for an API client rather than a form.
    #[error(
        "Nothing was changed: a browser sent this change from another site's page (its Origin or Sec-Fetch-Site \
         header). With the session cookie, changes are taken only from this app's own origin; other clients send a \
         bearer token."
    )]
    CrossOrigin,
    /// A form from one of the app's own pages shown before the session it was made for ended (the user signed in
    /// again in another tab): nothing done, and the page shown again with what was typed. The same code as
    /// [`AppError::Csrf`].
    #[error(
        "Nothing was added: this page was out of date (you signed in again since it was shown). What you typed is \
         still here: add it again."
    )]
    StaleForm,
    #[error("Not found.")]
    NotFound,
    /// Listing, creating or switching in an organization the user is not an active member of (per the database).
    #[error("You are not an active member of that organization.")]
    NotAMember,
    /// Signed in and a member, but not allowed this (deleting another member's todo, the admin portal).
    #[error("{0}")]
    Forbidden(String),
    /// An impersonated session tried to change something while `IMPERSONATION_ALLOW_WRITES` is off.
    #[error(
        "You are impersonating this user: changes are not allowed (IMPERSONATION_ALLOW_WRITES is off). Stop impersonating to make changes as yourself."
    )]
    ImpersonationReadOnly,
    /// The organization asks the user to sign in to it (its SSO or MFA) before switching: go to `location`.
    #[error("This organization asks you to sign in to it first: continue at {location}.")]
    OrganizationSignInRequired { location: String },
    /// Organizations need WorkOS and `DATABASE_URL` (the enterprise lifecycle); without them everything is personal.
    #[error(
        "Organizations are not available here: they need WorkOS as the identity provider and DATABASE_URL. Your todos are personal."
    )]
    OrganizationsUnavailable,
    #[error("That method is not allowed here.")]
    MethodNotAllowed,
    #[error("The request body is larger than {}.", in_binary_units(*limit))]
    PayloadTooLarge { limit: usize },
    #[error("Send the request body as application/json.")]
    UnsupportedMediaType,
    /// A `PATCH` in another format (JSON Patch, `application/json-patch+json`, is a list of operations, not the
    /// fields to change): 415 with `Accept-Patch` (RFC 5789 §2.2).
    #[error("Send the changes as application/json or application/merge-patch+json.")]
    UnsupportedPatchType,
    #[error("Send the form as application/x-www-form-urlencoded (UTF-8), as a browser sends this page's forms.")]
    UnsupportedFormType,
    #[error("Send the request body without a Content-Encoding: compressed bodies are not accepted.")]
    UnsupportedContentEncoding,
    #[error("{0}")]
    InvalidTitle(#[from] TitleError),
    #[error("{0}")]
    Unprocessable(String),
    /// InsForge refused input that only the database checks; its wording (constraint names, SQL) is for the log.
    #[error("The todo service refused this input.")]
    InsforgeRefused(String),
    /// Our minted token or the RLS setup is wrong, or InsForge failed: a server-side failure, not the user's.
    #[error("The todo service failed. Please try again.")]
    InsforgeFailed(InsforgeError),
    #[error("The todo service did not answer in time. Please try again.")]
    InsforgeTimeout,
    /// A change InsForge did not confirm (it timed out, or the connection broke after the change was sent): it may
    /// have been saved, so trying again blindly could make it twice. Same status and code as the failure it is.
    #[error("The todo service did not confirm this change, but it may have been saved. Reload before trying again.")]
    InsforgeUnconfirmed { timed_out: bool },
    /// A create whose `id` is already another todo's. Nothing about that todo is told.
    #[error(
        "This id is taken by another todo (possibly one of yours with another title or in another space), so \
         nothing was created. Send a new id to add a todo."
    )]
    IdTaken,
    /// A change sent with `If-Match`: the API sends no entity tags, so none can match (RFC 9110 §13.1.1: the change
    /// must not be made). Acting on it anyway would let a client that relies on the header overwrite another's edit.
    #[error(
        "Nothing was changed: this API sends no ETags, so the If-Match condition cannot hold. Send the change \
         without If-Match (or with If-Match: *)."
    )]
    PreconditionFailed,
    /// The identity provider failed in a way the user cannot fix (the detail is for the log).
    #[error("The sign-in service returned an error. Please try again.")]
    AuthUpstreamFailed(String),
    #[error("Sign-in is temporarily unavailable. Please try again shortly.")]
    AuthUnavailable { retry_after: Duration },
    /// A webhook whose `WorkOS-Signature` is missing, malformed, stale or from another secret: nothing applied.
    #[error("The webhook signature is missing, invalid or too old.")]
    InvalidSignature(SignatureError),
    /// authbridge's own database cannot be reached: try again (WorkOS retries webhooks answered so).
    #[error("The service's database is temporarily unavailable. Please try again shortly.")]
    DatabaseUnavailable { retry_after: Duration },
    /// The body did not arrive in full within its deadline (at most half the request's time limit).
    #[error("The request body did not arrive within {} seconds.", deadline.as_secs_f64())]
    BodyTimeout { deadline: Duration },
    /// More webhook deliveries at once than the route takes: WorkOS retries later, with backoff.
    #[error("The service is busy. Please try again in a moment.")]
    WebhooksBusy,
    #[error("The request took too long.")]
    RequestTimeout,
    /// The time limit went off during a request that may change something (not GET, HEAD or OPTIONS): the change
    /// may have been made before it did.
    #[error("The request took too long, but what it changes may have been saved. Reload before trying again.")]
    RequestTimeoutUnconfirmed,
    #[error("Something went wrong on our side.")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MalformedJson(_) | Self::InvalidId | Self::SignInExpired => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::SignInFailed(_)
            | Self::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Self::IdTaken => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::Csrf
            | Self::CrossOrigin
            | Self::StaleForm
            | Self::NotAMember
            | Self::Forbidden(_)
            | Self::ImpersonationReadOnly
            | Self::OrganizationSignInRequired { .. } => StatusCode::FORBIDDEN,
            Self::NotFound | Self::OrganizationsUnavailable => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType
            | Self::UnsupportedPatchType
            | Self::UnsupportedFormType
            | Self::UnsupportedContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidTitle(_) | Self::Unprocessable(_) | Self::InsforgeRefused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::InsforgeFailed(_) | Self::AuthUpstreamFailed(_) | Self::InsforgeUnconfirmed { timed_out: false } => {
                StatusCode::BAD_GATEWAY
            }
            Self::AuthUnavailable { .. } | Self::DatabaseUnavailable { .. } | Self::WebhooksBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InsforgeTimeout
            | Self::InsforgeUnconfirmed { timed_out: true }
            | Self::RequestTimeout
            | Self::RequestTimeoutUnconfirmed => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable identifiers API clients can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidId => "invalid_id",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken | Self::TokenExpired => "invalid_token",
            Self::SignInFailed(_) => "sign_in_failed",
            Self::SignInExpired => "sign_in_expired",
            Self::Csrf | Self::CrossOrigin | Self::StaleForm => "csrf_failed",
            Self::NotFound => "not_found",
            Self::NotAMember => "not_a_member",
            Self::Forbidden(_) => "forbidden",
            Self::ImpersonationReadOnly => "impersonation_read_only",
            Self::OrganizationSignInRequired { .. } => "organization_sign_in_required",
            Self::OrganizationsUnavailable => "organizations_unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType
            | Self::UnsupportedPatchType
            | Self::UnsupportedFormType
            | Self::UnsupportedContentEncoding => "unsupported_media_type",
            Self::InvalidTitle(_) => "invalid_title",
            Self::Unprocessable(_) | Self::InsforgeRefused(_) => "unprocessable",
            Self::InsforgeFailed(_) | Self::InsforgeUnconfirmed { timed_out: false } => "upstream_failed",
            Self::IdTaken => "id_taken",
            Self::PreconditionFailed => "precondition_failed",
            Self::AuthUpstreamFailed(_) => "auth_upstream_failed",
            Self::AuthUnavailable { .. } => "auth_unavailable",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::DatabaseUnavailable { .. } => "database_unavailable",
            Self::InsforgeTimeout | Self::InsforgeUnconfirmed { timed_out: true } => "upstream_timeout",
            Self::RequestTimeout | Self::RequestTimeoutUnconfirmed => "timeout",
            Self::BodyTimeout { .. } => "body_timeout",
            // The same code as the server loop's load shedding: to a client, both are "busy, try again".
            Self::WebhooksBusy => "overloaded",
            Self::Internal(_) => "internal",
        }
    }

    /// The text shown to the client. Internal details stay in the log.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    /// One log line per error, at a level that matches whose problem it is.
    fn log(&self) {
        let code = self.code();
        match self {
            Self::Internal(detail) => tracing::error!(code, detail = %detail, "internal error"),
            Self::InsforgeFailed(error) => tracing::error!(code, %error, "InsForge request failed"),
            Self::AuthUpstreamFailed(detail) => tracing::error!(code, detail = %detail, "identity provider failed"),
            Self::InsforgeRefused(detail) => tracing::warn!(code, detail = %detail, "InsForge refused the input"),
            Self::InsforgeTimeout
            | Self::InsforgeUnconfirmed { .. }
            | Self::AuthUnavailable { .. }
            | Self::DatabaseUnavailable { .. }
            | Self::RequestTimeout
            | Self::RequestTimeoutUnconfirmed => tracing::warn!(code, "request failed upstream"),
            Self::BodyTimeout { .. } => tracing::warn!(code, "request body too slow"),
            Self::WebhooksBusy => tracing::warn!(code, "webhook refused: too many at once"),
            // Why, for the operator (a stream of these is a secret that does not match WorkOS's); one line a delivery.
            Self::InvalidSignature(why) => tracing::warn!(code, reason = %why, "webhook refused: bad signature"),
            _ => tracing::debug!(code, "request refused"),
        }
    }

    fn add_headers(&self, response: &mut Response) {
        let headers = response.headers_mut();
        match self {
            Self::AuthUnavailable { retry_after } | Self::DatabaseUnavailable { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Self::WebhooksBusy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::UnsupportedPatchType => {
                headers.insert(ACCEPT_PATCH, HeaderValue::from_static(super::extractors::PATCH_TYPES));
            }
            // RFC 9110 §15.5.16 (and RFC 7694 §3): a body refused for its coding names the codings accepted.
            Self::UnsupportedContentEncoding => {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            // RFC 9110 §15.5.2: a 401 carries at least one challenge. A webhook authenticates with WorkOS's
            // signature header, so the challenge's scheme is that header's name.
            Self::InvalidSignature(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("WorkOS-Signature"));
            }
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
            }
            // RFC 6750 §3's own example.
            Self::TokenExpired => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer error="invalid_token", error_description="The access token expired""#,
                    ),
                );
            }
            Self::OrganizationSignInRequired { location } => {
                if let Ok(value) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, value);
                }
            }
            _ => {}
        }
    }
}

impl From<InsforgeError> for AppError {
    fn from(error: InsforgeError) -> Self {
        match error {
            InsforgeError::NotFound => Self::NotFound,
            InsforgeError::NotDeletable => {
                Self::Forbidden("Only its author or an admin of the organization can delete this todo.".to_owned())
            }
            // Titles are validated before they are sent, so this is a rule only the database knows.
            InsforgeError::InvalidInput { message } => Self::InsforgeRefused(message),
            InsforgeError::Timeout => Self::InsforgeTimeout,
            InsforgeError::WriteUnconfirmed { timed_out } => Self::InsforgeUnconfirmed { timed_out },
            InsforgeError::IdTaken => Self::IdTaken,
            other => Self::InsforgeFailed(other),
        }
    }
}

impl From<LifecycleError> for AppError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::Database(error) => error.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<DbError> for AppError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => Self::DatabaseUnavailable { retry_after: crate::db::RETRY_AFTER },
            failed @ DbError::Failed(_) => Self::Internal(failed.to_string()),
        }
    }
}

impl From<ProviderError> for AppError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::GrantRejected(_) => {
                Self::SignInFailed("This sign-in code has expired or was already used. Please sign in again.".into())
            }
            ProviderError::Declined(message) => {
                Self::SignInFailed(format!("The identity provider did not accept this sign-in: {message}"))
            }
            ProviderError::Failed(detail) => Self::AuthUpstreamFailed(detail),
            ProviderError::Unavailable { retry_after } => Self::AuthUnavailable { retry_after },
            // The sign-in and switch handlers act on these before they get here.
            ProviderError::OrganizationSelectionRequired(_) => {
                Self::SignInFailed("Choose an organization to finish signing in. Please sign in again.".into())
            }
            ProviderError::OrganizationAuthRequired { .. } => {
                Self::SignInFailed("This organization asks you to sign in to it. Please sign in again.".into())
            }
            ProviderError::OrganizationRefused(_) => Self::SignInFailed(
                "That organization cannot be chosen: you are not an active member of it. Please sign in again.".into(),
            ),
        }
    }
}

impl From<SignInError> for AppError {
    fn from(error: SignInError) -> Self {
        match error {
            SignInError::Expired => Self::SignInExpired,
            SignInError::Denied(detail) => Self::BadRequest(format!("Sign-in was not completed: {detail}")),
            SignInError::MissingCode => Self::BadRequest("The identity provider sent no sign-in code.".to_owned()),
            SignInError::NotOffered => {
                Self::BadRequest("Choose one of the organizations listed on the page.".to_owned())
            }
            SignInError::Provider(error) => error.into(),
            SignInError::AccessEnded => Self::Forbidden(
                "Your access to this app has ended. If that is a mistake, ask your administrator.".to_owned(),
            ),
            other @ (SignInError::Random | SignInError::Store(_)) => Self::Internal(other.to_string()),
        }
    }
}

impl From<CheckError> for AppError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::Invalid(_) => Self::InvalidToken,
            CheckError::Expired => Self::TokenExpired,
            CheckError::Unavailable { retry_after } => Self::AuthUnavailable { retry_after },
            CheckError::DatabaseUnavailable { retry_after } => Self::DatabaseUnavailable { retry_after },
        }
    }
}

/// A size in bytes as the README states limits: whole MiB when it is some (the webhooks' 1 MiB), else KiB (64 KiB).
fn in_binary_units(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// An error travelling in a response's extensions to [`render_errors`].
#[derive(Clone)]
struct ErrorReport {
    error: Arc<AppError>,
    /// The handler already showed the error in its own page (a form with the message next to what was typed):
    /// only log it.
    shown: bool,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(ErrorReport { error: Arc::new(self), shown: false });
        response
    }
}

/// `response`, a page the handler rendered around `error`, marked so that the error is logged like any other.
pub fn shown_in_page(mut response: Response, error: AppError) -> Response {
    response.extensions_mut().insert(ErrorReport { error: Arc::new(error), shown: true });
    response
}

/// Around the handlers (the first step of `middleware::around_handlers`): renders (and logs) every [`AppError`]
/// that comes back from `inner`, in the format the request's path expects. Headers the inner steps added to the
/// error response (a cleared cookie, a refreshed one) are kept.
pub async fn render_errors<F, Fut>(request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let api = answers_json(request.uri().path());
    // Where a signed-out GET comes back to after signing in (a clone of the URI shares its bytes: most requests
    // never need it). HEAD is a GET without the body (axum answers it with the GET handler), so it is answered the
    // same way: nothing was posted, so there is nothing to say "not saved" about.
    let get_uri = matches!(*request.method(), Method::GET | Method::HEAD).then(|| request.uri().clone());
    let mut response = inner(request).await;
    let Some(report) = response.extensions_mut().remove::<ErrorReport>() else { return response };
    let error = report.error;
    error.log();
    if report.shown {
        response.extensions_mut().insert(AnsweredCode(error.code()));
        return response;
    }

    let banner = response.extensions_mut().remove::<pages::Banner>();
    let rendered = if api {
        render_json(&error)
    } else if let (AppError::Unauthorized, Some(uri)) = (&*error, &get_uri) {
        sign_in_redirect(uri.path_and_query().map_or("/", |pq| pq.as_str()))
    } else {
        render_page(&error, banner)
    };
    let (mut parts, _) = response.into_parts();
    let (rendered_parts, body) = rendered.into_parts();
    parts.status = rendered_parts.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &rendered_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.extensions.insert(AnsweredCode(error.code()));
    Response::from_parts(parts, body)
}

/// The [`AppError::code`] a response answered with, for the metrics (`middleware::record_metrics`): a 503 from the
/// database is not one from the identity provider.
#[derive(Clone, Copy)]
pub struct AnsweredCode(pub &'static str);

fn render_json(error: &AppError) -> Response {
    let body = json!({ "error": { "code": error.code(), "message": error.public_message() } });
    let mut response = (error.status(), Json(body)).into_response();
    error.add_headers(&mut response);
    response
}

/// An error as a page. Where the way on is a sign-in, it is a link the person follows, never a redirect from a form
/// post: browsers apply the Content-Security-Policy's `form-action` to every redirect after a form post, and a
/// sign-in's redirects go on to origins the policy cannot name (the AuthKit domain, an organization's own identity
/// provider), so such a chain would end on a blocked page.
fn render_page(error: &AppError, banner: Option<pages::Banner>) -> Response {
    let link = |href: &str, label| Some(pages::SignInLink { href: href.to_owned(), label });
    let (heading, message, sign_in) = match error {
        AppError::SignInFailed(_) | AppError::SignInExpired => {
            (None, error.public_message(), link("/login", "Sign in again"))
        }
        // A form posted after the session ended (signed out in another tab, revoked): nothing was saved.
        AppError::Unauthorized => (
            Some("You are signed out"),
            "Your session has ended, so this was not saved. Sign in again to continue.".to_owned(),
            link("/login", "Sign in again"),
        ),
        AppError::OrganizationSignInRequired { location } => (
            Some("Sign in to the organization"),
            "This organization asks you to sign in to it first.".to_owned(),
            link(location, "Continue to its sign-in"),
        ),
        // The session could not be checked or renewed (the provider, or our database of ended sessions, could not
        // be asked): usually a moment's outage, but when it lasts (the provider refusing the app's own credentials)
        // the person must still be able to leave. Signing out never needs the
        // provider (`GET /logout` asks, the form it shows signs out).
        AppError::AuthUnavailable { .. } | AppError::DatabaseUnavailable { .. } => {
            (None, error.public_message(), link("/logout", "Sign out"))
        }
        _ => (None, error.public_message(), None),
    };
    let mut response = pages::error_page(error.status(), heading, &message, sign_in, banner);
    error.add_headers(&mut response);
    response
}

/// A page that needs a signed-in user sends the browser to sign in, and back here afterwards.
fn sign_in_redirect(return_to: &str) -> Response {
    let return_to: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    Redirect::to(&format!("/login?return_to={return_to}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of each variant.
    fn one_of_each() -> Vec<AppError> {
        let none = Duration::ZERO;
        let all = vec![
            AppError::BadRequest(String::new()),
            AppError::MalformedJson(String::new()),
            AppError::InvalidId,
            AppError::Unauthorized,
            AppError::InvalidToken,
            AppError::TokenExpired,
            AppError::SignInFailed(String::new()),
            AppError::SignInExpired,
            AppError::Csrf,
            AppError::CrossOrigin,
            AppError::StaleForm,
            AppError::NotFound,
            AppError::NotAMember,
            AppError::Forbidden(String::new()),
            AppError::ImpersonationReadOnly,
            AppError::OrganizationSignInRequired { location: String::new() },
            AppError::OrganizationsUnavailable,
            AppError::MethodNotAllowed,
            AppError::PayloadTooLarge { limit: 0 },
            AppError::UnsupportedMediaType,
            AppError::UnsupportedPatchType,
            AppError::UnsupportedFormType,
            AppError::UnsupportedContentEncoding,
            AppError::InvalidTitle(TitleError::Blank),
            AppError::Unprocessable(String::new()),
            AppError::InsforgeRefused(String::new()),
            AppError::InsforgeFailed(InsforgeError::NotDeletable),
            AppError::InsforgeTimeout,
            AppError::InsforgeUnconfirmed { timed_out: true },
            AppError::InsforgeUnconfirmed { timed_out: false },
            AppError::IdTaken,
            AppError::PreconditionFailed,
            AppError::AuthUpstreamFailed(String::new()),
            AppError::AuthUnavailable { retry_after: none },
            AppError::InvalidSignature(SignatureError::Missing),
            AppError::DatabaseUnavailable { retry_after: none },
            AppError::BodyTimeout { deadline: none },
            AppError::WebhooksBusy,
            AppError::RequestTimeout,
            AppError::RequestTimeoutUnconfirmed,
            AppError::Internal(String::new()),
        ];
        // Exhaustive on purpose: a new variant does not compile here until it is named, with a sample above.
        for error in &all {
            match error {
                AppError::BadRequest(_)
                | AppError::MalformedJson(_)
                | AppError::InvalidId
                | AppError::Unauthorized
                | AppError::InvalidToken
                | AppError::TokenExpired
                | AppError::SignInFailed(_)
                | AppError::SignInExpired
                | AppError::Csrf
                | AppError::CrossOrigin
                | AppError::StaleForm
                | AppError::NotFound
                | AppError::NotAMember
                | AppError::Forbidden(_)
                | AppError::ImpersonationReadOnly
                | AppError::OrganizationSignInRequired { .. }
                | AppError::OrganizationsUnavailable
                | AppError::MethodNotAllowed
                | AppError::PayloadTooLarge { .. }
                | AppError::UnsupportedMediaType
                | AppError::UnsupportedPatchType
                | AppError::UnsupportedFormType
                | AppError::UnsupportedContentEncoding
                | AppError::InvalidTitle(_)
                | AppError::Unprocessable(_)
                | AppError::InsforgeRefused(_)
                | AppError::InsforgeFailed(_)
                | AppError::InsforgeTimeout
                | AppError::InsforgeUnconfirmed { .. }
                | AppError::IdTaken
                | AppError::PreconditionFailed
                | AppError::AuthUpstreamFailed(_)
                | AppError::AuthUnavailable { .. }
                | AppError::InvalidSignature(_)
                | AppError::DatabaseUnavailable { .. }
                | AppError::BodyTimeout { .. }
                | AppError::WebhooksBusy
                | AppError::RequestTimeout
                | AppError::RequestTimeoutUnconfirmed
                | AppError::Internal(_) => {}
            }
        }
        all
    }

    /// A change whose outcome is unknown keeps the status and code of the failure it is, but never invites a blind
    /// retry: it says the change may have been saved.
    #[test]
    fn a_change_that_may_have_been_saved_says_so_and_keeps_its_public_code() {
        let unconfirmed = [
            (AppError::from(InsforgeError::WriteUnconfirmed { timed_out: true }), 504, "upstream_timeout"),
            (AppError::from(InsforgeError::WriteUnconfirmed { timed_out: false }), 502, "upstream_failed"),
            (AppError::RequestTimeoutUnconfirmed, 504, "timeout"),
        ];
        for (error, status, code) in unconfirmed {
            assert_eq!((error.status().as_u16(), error.code()), (status, code));
            let message = error.public_message();
            assert!(
                message.contains("may have been saved") && message.contains("Reload before trying again"),
                "{message}"
            );
            assert!(!message.contains("Please try again"), "{message}");
        }
        assert_eq!(
            AppError::PayloadTooLarge { limit: 1024 * 1024 }.to_string(),
            "The request body is larger than 1 MiB.",
            "as the README states the webhooks' limit"
        );
        assert_eq!(
            AppError::PayloadTooLarge { limit: 64 * 1024 }.to_string(),
            "The request body is larger than 64 KiB."
        );
        let taken = AppError::from(InsforgeError::IdTaken);
        assert_eq!((taken.status().as_u16(), taken.code()), (409, "id_taken"));
    }

    /// The README's list of the API's errors ("Errors are always …") as (status, code): every code written
    /// (backquoted, in snake case) after a status.
    fn readme_errors() -> Vec<(u16, String)> {
        const README: &str = include_str!("../../README.md");
        let start = README.find("- Errors are always").expect("the README lists the API's errors");
        let list = &README[start..];
        let list = &list[..list.find("\n\n").unwrap_or(list.len())];
        let mut status = None;
        let mut listed = Vec::new();
        for (index, piece) in list.split('`').enumerate() {
            if index % 2 == 0 {
                let mut numbers = piece.split(|c: char| !c.is_ascii_digit()).filter(|word| word.len() == 3);
                status = numbers.next_back().and_then(|word| word.parse().ok()).or(status);
            } else if let Some(status) = status
                && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                listed.push((status, piece.to_owned()));
            }
        }
        listed
    }

    #[test]
    fn a_body_deadline_under_a_second_is_not_called_zero_seconds() {
        // REQUEST_TIMEOUT_SECONDS=1 makes the deadline half a second.
        let short = AppError::BodyTimeout { deadline: Duration::from_millis(500) };
        assert_eq!(short.to_string(), "The request body did not arrive within 0.5 seconds.");
        let usual = AppError::BodyTimeout { deadline: Duration::from_secs(10) };
        assert_eq!(usual.to_string(), "The request body did not arrive within 10 seconds.");
    }

    /// Every code the API and the webhook route can answer is in the README's list with its status, and the list
    /// names no code (or status) the app does not answer. The sign-in's own errors are answered on its pages
    /// (`/callback`, the organization picker), never as JSON; `overloaded` is the server loop's, answered before
    /// the router (`server::overloaded`).
    #[test]
    fn the_readme_lists_every_api_error_with_its_status() {
        let mut answered: Vec<(u16, &str)> = one_of_each()
            .iter()
            .filter(|error| !matches!(error, AppError::SignInFailed(_) | AppError::SignInExpired))
            .map(|error| (error.status().as_u16(), error.code()))
            .collect();
        answered.push((503, "overloaded"));
        let listed = readme_errors();
        for (status, code) in &answered {
            assert!(
                listed.iter().any(|(s, c)| s == status && c == code),
                "README, \"Errors are always\": {status} `{code}` is missing (listed: {listed:?})"
            );
        }
        for (status, code) in &listed {
            assert!(
                answered.iter().any(|(s, c)| s == status && c == code),
                "README, \"Errors are always\": {status} `{code}` is not an error the app answers"
            );
        }
    }
}
