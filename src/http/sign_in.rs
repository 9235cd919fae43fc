//! Signing in and out over HTTP: `/login`, `/callback`, `/logout`, and `/api/me`.
//!
//! The steps themselves (state, PKCE, code exchange, verification) belong to the session
//! (`session::sign_in`); these handlers only translate between HTTP and those calls.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::identity::Impersonator;
use crate::session::sign_in::{Callback, SignInRequest};

use super::AppState;
use super::error::AppError;
use super::extractors::{CurrentUser, MaybeUser, checked_form};
use super::pages::{LogoutPage, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout_page).post(logout))
        .route("/api/me", get(me))
}

/// `GET /login`: binds a sign-in to this browser and sends it to the identity provider.
async fn login(State(state): State<AppState>, Query(request): Query<SignInRequest>) -> Result<Response, AppError> {
    let start = state.sessions.begin_sign_in(&request)?;
    Ok(found(start.authorization_url.as_str(), start.set_cookies))
}

/// `GET /callback`: where the identity provider sends the browser back with a code (or an error).
async fn callback(State(state): State<AppState>, headers: HeaderMap, Query(callback): Query<Callback>) -> Response {
    // Whatever happens next, the sign-in state is spent: clear it on every answer.
    let clear_state = state.sessions.clear_sign_in_state(&headers);
    let mut response = match state.sessions.finish_sign_in(&headers, callback).await {
        Ok(signed_in) => found(&signed_in.return_to, signed_in.set_cookies),
        Err(error) => AppError::from(error).into_response(),
    };
    append_cookies(&mut response, clear_state);
    response
}

/// `GET /logout`: a confirmation page, because signing out must be a POST (a link or an `<img>` on another site
/// must not be able to sign anyone out).
async fn logout_page(State(state): State<AppState>, MaybeUser(user): MaybeUser) -> Response {
    let (email, csrf_token) = match &user {
        Some(user) => (
            Some(user.user.email.clone().unwrap_or_else(|| user.id().to_owned())),
            state.csrf.token(user.csrf_binding()),
        ),
        None => (None, String::new()),
    };
    render(StatusCode::OK, &LogoutPage { email, csrf_token })
}

/// `POST /logout`: clears the session cookie and ends the provider's session too, so the next sign-in asks again.
///
/// The session is opened without checking or refreshing its tokens: signing out must work when the access token
/// has long expired or the provider is down. The CSRF check still needs a session to tie the token to.
async fn logout(State(state): State<AppState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let Some((session, _)) = state.sessions.open(&headers) else {
        return found("/", state.sessions.clear(&headers));
    };
    if let Err(error) = checked_form(request, &state, session.csrf_binding()).await {
        return error.into_response();
    }
    let sign_out = state.sessions.sign_out(&session, &headers, &state.config.server.app_url).await;
    found(&sign_out.destination, sign_out.set_cookies)
}

/// A 302 to `location` carrying `set_cookies` (the status RFC 6749's examples use for these redirects; browsers
/// follow it with a GET).
fn found(location: &str, set_cookies: Vec<HeaderValue>) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::FOUND;
    append_cookies(&mut response, set_cookies);
    response
}

fn append_cookies(response: &mut Response, set_cookies: Vec<HeaderValue>) {
    for value in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `GET /api/me`: who the API thinks you are.
#[derive(Serialize)]
struct Me {
    id: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    organization_id: Option<String>,
    impersonator: Option<Impersonator>,
}

async fn me(CurrentUser(principal): CurrentUser) -> Json<Me> {
    Json(Me {
        id: principal.user.id,
        email: principal.user.email,
        first_name: principal.user.first_name,
        last_name: principal.user.last_name,
        organization_id: principal.organization_id,
        impersonator: principal.impersonator,
    })
}
