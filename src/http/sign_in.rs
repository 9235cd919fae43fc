//! Signing in and out with WorkOS AuthKit: `/login`, `/callback`, `/logout`, and `/api/me`.
//!
//! `/login` binds the sign-in to this browser before sending it to WorkOS: a random `state` nonce and a PKCE
//! verifier, sealed in a short-lived cookie together with where to return. `/callback` accepts a code only with
//! that cookie and a matching `state`, exchanges it with the verifier, verifies the access token, and only then
//! creates the session, so a failure at any step leaves no half-made session behind.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::session::{SIGN_IN_STATE_TTL, Session, SignInState};
use crate::workos::{AuthorizeParams, Impersonator, TokenSource, WorkosError, access_token};

use super::AppState;
use super::error::{AppError, PageError};
use super::extractors::{CurrentUser, MaybeUser, checked_form};
use super::pages::{LogoutPage, render};

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    organization_id: Option<String>,
    login_hint: Option<String>,
    screen_hint: Option<String>,
}

pub async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Result<Response, PageError> {
    let random = |_| AppError::Internal("the system random generator failed".to_owned());
    let nonce = crate::random::token().map_err(random)?;
    let code_verifier = crate::random::token().map_err(random)?;
    let code_challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, code_verifier.as_bytes()));
    let sign_in = SignInState {
        return_to: safe_return_path(query.return_to.as_deref()),
        expires_at: access_token::now() + SIGN_IN_STATE_TTL.as_secs(),
        nonce,
        code_verifier,
    };
    let set_cookies = state
        .sessions
        .store_sign_in_state(&sign_in)
        .map_err(|error| AppError::Internal(format!("cannot seal the sign-in state: {error}")))?;

    let screen_hint = query.screen_hint.as_deref().filter(|hint| matches!(*hint, "sign-in" | "sign-up"));
    let url = state.workos.authorization_url(&AuthorizeParams {
        redirect_uri: state.config.workos.redirect_uri.as_str(),
        state: &sign_in.nonce,
        code_challenge: &code_challenge,
        organization_id: query.organization_id.as_deref().filter(|id| !id.trim().is_empty()),
        login_hint: query.login_hint.as_deref().filter(|hint| !hint.trim().is_empty()),
        screen_hint,
    });

    let mut response = Redirect::to(url.as_str()).into_response();
    *response.status_mut() = StatusCode::FOUND;
    for value in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `return_to` accepted only as a path on this site; anything else (other hosts, `//host`, `/\\host`, schemes,
/// dot segments, control characters, or encoded forms of those) falls back to `/`.
pub fn safe_return_path(raw: Option<&str>) -> String {
    const HOME: &str = "/";
    let Some(raw) = raw else { return HOME.to_owned() };
    // Decode repeatedly so `%2F%2Fevil` and `%252F%252Fevil` are judged by what they become.
    let mut decoded = raw.to_owned();
    for _ in 0..3 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    // `/..//evil` normalises to `//evil`: no legitimate return path needs dot segments, so refuse them outright.
    let has_dot_segment = |path: &str| {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        path.split('/').any(|segment| segment == "." || segment == "..")
    };
    let unsafe_path = |path: &str| {
        !path.starts_with('/')
            || path.starts_with("//")
            || path.contains('\\')
            || path.chars().any(|c| c.is_control() || c.is_whitespace())
            || has_dot_segment(path)
    };
    if unsafe_path(raw) || unsafe_path(&decoded) {
        return HOME.to_owned();
    }
    // Final check by the same parser browsers use: resolved against a placeholder origin, it must stay there, and
    // what it resolved to must pass the same checks.
    let Ok(base) = url::Url::parse("http://authbridge.invalid/") else { return HOME.to_owned() };
    match base.join(raw) {
        Ok(url) if url.origin() == base.origin() => {
            let mut path = url.path().to_owned();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            if unsafe_path(&path) { HOME.to_owned() } else { path }
        }
        _ => HOME.to_owned(),
    }
}

fn percent_decode(input: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", input.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    // Whatever happens next, the sign-in state is spent: clear it on every answer.
    let clear_state = state.sessions.clear_sign_in_state(&headers);
    let mut response = match complete_sign_in(&state, &headers, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    for value in clear_state {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn complete_sign_in(state: &AppState, headers: &HeaderMap, query: CallbackQuery) -> Result<Response, PageError> {
    // The state comes first, even for errors: only a redirect that answers this browser's own sign-in may put
    // WorkOS's words on our page (anyone can craft a `/callback?error=…` link).
    let sign_in = state.sessions.sign_in_state(headers).ok_or(AppError::SignInExpired)?;
    let returned_state = query.state.unwrap_or_default();
    if verify_slices_are_equal(returned_state.as_bytes(), sign_in.nonce.as_bytes()).is_err() {
        return Err(AppError::SignInExpired.into());
    }
    if let Some(error) = query.error {
        tracing::info!(error = %error, "WorkOS returned a sign-in error");
        let detail = query.error_description.unwrap_or_else(|| error.replace('_', " "));
        return Err(AppError::BadRequest(format!("Sign-in was not completed: {detail}")).into());
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or_else(|| AppError::BadRequest("WorkOS sent no sign-in code.".to_owned()))?;

    let auth = state.workos.authenticate_with_code(&code, &sign_in.code_verifier).await.map_err(code_exchange_error)?;
    let claims = state.sessions.verifier().verify(&auth.access_token, TokenSource::Trusted).await.map_err(|error| {
        tracing::error!(%error, "WorkOS issued an access token that does not verify");
        match error {
            access_token::VerifyError::KeysUnavailable(error) => {
                AppError::WorkosUnavailable { retry_after: error.retry_after() }
            }
            _ => AppError::WorkosFailed,
        }
    })?;
    if claims.sub != auth.user.id {
        tracing::error!("WorkOS access token subject does not match the signed-in user");
        return Err(AppError::WorkosFailed.into());
    }

    let session = Session::from_auth(&auth);
    let set_cookies = state
        .sessions
        .store(&session, headers)
        .map_err(|error| AppError::Internal(format!("cannot store the session: {error}")))?;
    tracing::info!(user_id = %session.user.id, "signed in");
    let mut response = Redirect::to(&sign_in.return_to).into_response();
    *response.status_mut() = StatusCode::FOUND;
    for value in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn code_exchange_error(error: WorkosError) -> PageError {
    tracing::warn!(%error, "WorkOS code exchange failed");
    let error = match error {
        WorkosError::InvalidGrant { .. } => AppError::SignInFailed(
            "This sign-in code has expired or was already used. Please sign in again.".to_owned(),
        ),
        // WorkOS refusing *our* credentials (a wrong API key or client id) is a server problem, not the user's.
        WorkosError::Rejected { status: 401 | 403, .. } => AppError::WorkosFailed,
        WorkosError::Rejected { message, .. } => {
            AppError::SignInFailed(format!("WorkOS did not accept this sign-in: {message}"))
        }
        WorkosError::Timeout | WorkosError::Connect => AppError::WorkosUnavailable { retry_after: error.retry_after() },
        WorkosError::RateLimited { .. } => AppError::WorkosUnavailable { retry_after: error.retry_after() },
        WorkosError::Unavailable { .. } | WorkosError::Malformed(_) => AppError::WorkosFailed,
    };
    PageError(error)
}

/// `GET /logout`: a confirmation page, because signing out must be a POST (a link or an `<img>` on another site
/// must not be able to sign anyone out).
pub async fn logout_page(State(state): State<AppState>, user: MaybeUser) -> Response {
    let (email, csrf_token) = match &user.0 {
        Some(user) => (
            Some(user.identity.email.clone().unwrap_or_else(|| user.id().to_owned())),
            state.csrf.token(user.csrf_binding()),
        ),
        None => (None, String::new()),
    };
    render(StatusCode::OK, &LogoutPage { email, csrf_token })
}

/// `POST /logout`: clears the session cookie and ends the WorkOS session too, so the next sign-in asks again.
///
/// The session is opened without verifying or refreshing its tokens: signing out must work when the access token
/// has long expired or WorkOS is down. The CSRF check still needs a session to tie the token to.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let Some((session, _)) = state.sessions.open(&headers) else {
        let mut response = Redirect::to("/").into_response();
        *response.status_mut() = StatusCode::FOUND;
        for value in state.sessions.clear(&headers) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    };
    // The WorkOS session id, read from the sealed (hence trusted) token; signature checks would need WorkOS.
    let session_id = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedSid>(&session.access_token)
        .ok()
        .and_then(|claims| claims.sid);

    let binding = session_id.clone().unwrap_or_else(|| session.user.id.clone());
    if let Err(error) = checked_form(request, &state, &binding).await {
        return PageError(error).into_response();
    }

    let destination = match &session_id {
        Some(sid) => state.workos.logout_url(sid, &state.config.server.app_url).to_string(),
        None => "/".to_owned(),
    };
    tracing::info!(user_id = %session.user.id, "signed out");
    let mut response = Redirect::to(&destination).into_response();
    *response.status_mut() = StatusCode::FOUND;
    for value in state.sessions.clear(&headers) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct UnverifiedSid {
    sid: Option<String>,
}

/// `GET /api/me`: who the API thinks you are.
#[derive(Serialize)]
pub struct Me {
    id: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    organization_id: Option<String>,
    impersonator: Option<Impersonator>,
}

pub async fn me(user: CurrentUser) -> Json<Me> {
    Json(Me {
        id: user.identity.id,
        email: user.identity.email,
        first_name: user.first_name,
        last_name: user.last_name,
        organization_id: user.organization_id,
        impersonator: user.impersonator,
    })
}
