//! The one error type of the HTTP layer, and its two renderings.
//!
//! Each [`AppError`] variant *is* a status code with a stable machine-readable `code`. Handlers of the JSON API
//! return [`ApiError`] (`{"error":{"code","message"}}`), page handlers return [`PageError`] (an HTML page); both
//! convert from the lower layers' errors with `?`. Messages are written for the person reading them; internal
//! details (upstream messages, SQL errors) go to the log, never to the client.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::insforge::client::InsforgeError;
use crate::todo::TitleError;

use super::pages;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("The request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("That is not a valid todo id.")]
    InvalidId,
    #[error("Sign in to continue.")]
    Unauthorized,
    #[error("The access token is invalid or has expired.")]
    InvalidToken,
    #[error("{0}")]
    SignInFailed(String),
    #[error("This sign-in link has expired or was started in another browser. Please sign in again.")]
    SignInExpired,
    #[error("This request did not come from the app's own pages (CSRF check failed). Reload the page and try again.")]
    Csrf,
    #[error("Not found.")]
    NotFound,
    #[error("That method is not allowed here.")]
    MethodNotAllowed,
    #[error("The request body is larger than 64 KiB.")]
    PayloadTooLarge,
    #[error("Send the request body as application/json.")]
    UnsupportedMediaType,
    #[error("{0}")]
    InvalidTitle(#[from] TitleError),
    #[error("{0}")]
    Unprocessable(String),
    #[error("The todo service failed; nothing was changed. Please try again.")]
    InsforgeFailed,
    #[error("WorkOS returned an error during sign-in. Please try again.")]
    WorkosFailed,
    #[error("Sign-in is temporarily unavailable. Please try again shortly.")]
    WorkosUnavailable { retry_after: Duration },
    #[error("The todo service did not answer in time. Please try again.")]
    InsforgeTimeout,
    #[error("The request took too long.")]
    RequestTimeout,
    #[error("Something went wrong on our side.")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MalformedJson(_) | Self::InvalidId | Self::SignInExpired => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized | Self::InvalidToken | Self::SignInFailed(_) => StatusCode::UNAUTHORIZED,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidTitle(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InsforgeFailed | Self::WorkosFailed => StatusCode::BAD_GATEWAY,
            Self::WorkosUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsforgeTimeout | Self::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
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
            Self::InvalidToken => "invalid_token",
            Self::SignInFailed(_) => "sign_in_failed",
            Self::SignInExpired => "sign_in_expired",
            Self::Csrf => "csrf_failed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidTitle(_) => "invalid_title",
            Self::Unprocessable(_) => "unprocessable",
            Self::InsforgeFailed => "upstream_failed",
            Self::WorkosFailed => "auth_upstream_failed",
            Self::WorkosUnavailable { .. } => "auth_unavailable",
            Self::InsforgeTimeout => "upstream_timeout",
            Self::RequestTimeout => "timeout",
            Self::Internal(_) => "internal",
        }
    }

    /// The text shown to the client. Internal errors keep their detail for the log only.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    fn log(&self) {
        match self {
            Self::Internal(detail) => tracing::error!(detail = %detail, "internal error"),
            Self::InsforgeFailed
            | Self::InsforgeTimeout
            | Self::WorkosFailed
            | Self::WorkosUnavailable { .. }
            | Self::RequestTimeout => {
                tracing::warn!(code = self.code(), "request failed upstream")
            }
            _ => tracing::debug!(code = self.code(), "request refused"),
        }
    }

    fn headers(&self, response: &mut Response) {
        match self {
            Self::WorkosUnavailable { retry_after } => {
                let seconds = retry_after.as_secs().max(1);
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            Self::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
            }
            _ => {}
        }
    }
}

impl From<InsforgeError> for AppError {
    fn from(error: InsforgeError) -> Self {
        match error {
            InsforgeError::NotFound => Self::NotFound,
            // Titles are validated before they are sent, so this is a rule only the database knows; its wording
            // (constraint names, SQL) stays in the log.
            InsforgeError::InvalidInput { message } => {
                tracing::warn!(%message, "InsForge refused the input");
                Self::Unprocessable("The todo service refused this input.".to_owned())
            }
            InsforgeError::Timeout => Self::InsforgeTimeout,
            // 401/403 from InsForge mean our minted token or the RLS setup is wrong, not that the user did
            // something: it is a server-side failure, logged with InsForge's message.
            other => {
                tracing::error!(error = %other, "InsForge request failed");
                Self::InsforgeFailed
            }
        }
    }
}

/// An [`AppError`] answered as JSON, for `/api/*`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        let body = json!({ "error": { "code": error.code(), "message": error.public_message() } });
        let mut response = (error.status(), Json(body)).into_response();
        error.headers(&mut response);
        response
    }
}

/// An [`AppError`] answered as an HTML page, for the browser routes.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        let offer_sign_in =
            matches!(error, AppError::SignInFailed(_) | AppError::SignInExpired | AppError::Unauthorized);
        let mut response = pages::error_page(error.status(), &error.public_message(), offer_sign_in);
        error.headers(&mut response);
        response
    }
}

/// Renders the error the way the request expects: JSON under `/api/`, a page elsewhere.
pub fn error_response(path: &str, error: AppError) -> Response {
    if super::is_api_path(path) { ApiError(error).into_response() } else { PageError(error).into_response() }
}
