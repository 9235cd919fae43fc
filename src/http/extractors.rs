//! "Who is this user?" as extractors, so no handler reads cookies or headers itself.
//!
//! A handler states what it needs in its signature: [`CurrentUser`] (signed in, or the request is refused: a
//! redirect to `/login` for pages, 401 JSON for the API), or [`MaybeUser`]. The other extractors here parse the
//! rest of a request (JSON bodies, query strings, todo ids, CSRF-checked forms) so that every refusal is an
//! [`AppError`], answered in the route's format. Resolution happens at most once per
//! request and only when a handler asks, so static files and health checks never touch WorkOS.
//!
//! Resolving a cookie session may refresh it, which means the *response* has to carry a new cookie. Extractors
//! cannot touch the response, so [`session_cookies`] (a middleware) leaves a [`SessionContext`] in the request
//! for the extractor to fill in, and writes the resulting `Set-Cookie` headers on the way out, whatever the
//! handler answered.
//!
//! Bearer tokens (`Authorization: Bearer <provider access token>`) are accepted on `/api/*` only, verified by the
//! identity provider, and never refreshed: refreshing is the client's job. An `Authorization` header of another
//! scheme (`Basic`, which browsers add by themselves behind HTTP Basic auth) is not a bearer attempt: the cookie
//! decides.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::audit::ImpersonatedRequest;
use crate::session::provider::CheckError;
use crate::session::{AuthSource, CookieChange, Outcome, Principal, Session};
use crate::sync::lock;

use super::error::AppError;
use super::{AppState, csrf, is_api_path};

/// The signed-in user of this request (derefs to the session layer's [`Principal`]). Shared, not copied: the
/// extractors of one request, and the middleware after them, all hold the same one.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Arc<Principal>);

impl std::ops::Deref for CurrentUser {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The outcome of looking at a request's credentials, computed once per request.
#[derive(Clone)]
enum Auth {
    User(CurrentUser),
    SignedOut,
    InvalidBearer,
    ExpiredBearer,
    Unavailable { retry_after: Duration },
    DatabaseUnavailable { retry_after: Duration },
}

/// Per-request scratch space shared by the extractors and [`session_cookies`].
#[derive(Clone, Default)]
pub struct SessionContext {
    auth: Arc<OnceCell<Auth>>,
    cookie: Arc<Mutex<Option<CookieChange>>>,
}

impl SessionContext {
    fn set_cookie_change(&self, change: CookieChange) {
        *lock(&self.cookie) = Some(change);
    }

    /// The session this request's response will store, when resolving it refreshed it.
    fn stored_session(&self) -> Option<Session> {
        match &*lock(&self.cookie) {
            Some(CookieChange::Store(session)) => Some(Session::clone(session)),
            _ => None,
        }
    }

    /// The signed-in user of this request, once an extractor resolved one.
    fn user(&self) -> Option<CurrentUser> {
        match self.auth.get() {
            Some(Auth::User(user)) => Some(user.clone()),
            _ => None,
        }
    }

    /// Whether an extractor looked at the request's credentials (whatever it concluded).
    fn looked(&self) -> bool {
        self.auth.initialized()
    }

    /// Whether this request's response clears the session cookie: the session it came with has ended.
    fn clears_cookie(&self) -> bool {
        matches!(*lock(&self.cookie), Some(CookieChange::Clear))
    }

    fn take_cookie_change(&self) -> Option<CookieChange> {
        lock(&self.cookie).take()
    }
}

/// Around the handlers (a step of `middleware::around_handlers`): gives extractors a [`SessionContext`] and applies the cookie change they decided on. For a request of
/// an impersonated session it also writes the audit record (whatever the answer) and marks the response so that
/// an error page shows the impersonation banner too.
///
/// "Every request of an impersonated session" includes those no extractor looked at: the banner's "Stop
/// impersonating" and the sign-out page (`POST` and `GET /logout`, which open the session without checking its
/// tokens so that signing out always works), the stylesheet, `/login`. Their session is read from the sealed cookie itself, which only this app can
/// have written. A request an extractor found signed out (a session ended or expired) is no longer the session's,
/// nor is one of a session this replica already knew had ended when the request came (signed out here, revoked by
/// an event it applied).
/// Whether another replica ended it would take a database query, which a request nobody asked "who is this?" of
/// must not cost (a flood of them would hold the lifecycle's small pool), so such a request is still recorded.
///
/// Probes and WorkOS's webhooks are nobody's requests: they pass straight through, the cookie never opened.
pub async fn session_cookies<F, Fut>(state: &AppState, mut request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if without_session(request.uri().path()) {
        return inner(request).await;
    }
    // A session this request itself ends (the sign-out) is still its session: only an end known before counts.
    let started = std::time::Instant::now();
    let context = SessionContext::default();
    request.extensions_mut().insert(context.clone());
    let request_headers = cookie_headers(request.headers());
    // Kept for the audit record of an impersonated request; turned into text only when there is one to write
    // (these clones share the request's bytes rather than copying them).
    let method = request.method().clone();
    let uri = request.uri().clone();
    let origin = super::audit_events::RequestOrigin::of(request.headers(), request.extensions(), state);
    let mut response = inner(request).await;

    let impersonated = match context.user() {
        Some(user) if user.impersonator.is_some() => {
            response.extensions_mut().insert(super::pages::Banner::new(state, &user));
            Some(Arc::clone(&user.0))
        }
        Some(_) => None,
        // Opening the cookie costs a decryption: only worth it when there is an audit table to write to.
        None if state.audit.is_some() && !context.looked() => state
            .sessions
            .open(&request_headers)
            .filter(|(session, _)| session.impersonator.is_some())
            .map(|(session, _)| Arc::new(session.into_principal()))
            .filter(|principal| {
                !state.sessions.revocations().ended_here_before(
                    principal.id(),
                    principal.session_id.as_deref(),
                    started,
                )
            }),
        None => None,
    };
    if let (Some(principal), Some(audit)) = (impersonated, &state.audit)
        && let Some(impersonator) = &principal.impersonator
    {
        let concerned = match response.extensions().get::<super::audit_events::ConcernedOrganization>() {
            Some(concerned) => Some(concerned.0.clone()),
            // Boxed, as the insert below: rarely taken, and kilobytes of future.
            None => Box::pin(organization_of_named_todo(state, &principal, uri.path(), response.status())).await,
        };
        let record = ImpersonatedRequest {
            impersonator: impersonator.email.clone(),
            reason: impersonator.reason.clone(),
            user_id: principal.id().to_owned(),
            user_name: principal.user.display_name(),
            session_id: principal.session_id.clone(),
            organization_id: audited_organization(
                uri.path(),
                response.status(),
                concerned.as_deref(),
                principal.active_organization(),
            )
            .map(str::to_owned),
            method: method.to_string(),
            path: uri.path().to_owned(),
            status: response.status().as_u16(),
            context: origin.context(),
        };
        // Boxed: this middleware's future is built (and moved) on every request; the insert's is kilobytes.
        let insert = Box::pin(audit.record_impersonated_request(&record));
        match tokio::time::timeout(IMPERSONATION_AUDIT_LIMIT, insert).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "could not record a request of an impersonated session"),
            Err(_) => tracing::error!("recording a request of an impersonated session timed out"),
        }
    }

    let set_cookies = match context.take_cookie_change() {
        None | Some(CookieChange::Keep) => return response,
        Some(CookieChange::Clear) => state.sessions.clear(&request_headers),
        Some(CookieChange::Store(session)) => match state.sessions.store(&session, &request_headers) {
            Ok(values) => values,
            Err(error) => {
                // Keep the old cookie: the user stays signed in until the next refresh works.
                tracing::error!(%error, "could not store the refreshed session");
                return response;
            }
        },
    };
    for value in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The organization whose Audit Logs an impersonated request goes to: the one its path names
/// (`/organizations/{id}`, its settings and portal), when the request got in (so the user is a member of it); else
/// the one whose data the answer carried or changed (`concerned`: another organization's list or todo, which RLS let
/// the user reach, so they are a member); else the session's. A request refused at another organization is in no
/// organization's log (its admins would learn that organization's id, and the refused one never learns of it); the
/// local `impersonation_audit` keeps it.
fn audited_organization<'a>(
    path: &'a str,
    status: StatusCode,
    concerned: Option<&'a str>,
    active: Option<&'a str>,
) -> Option<&'a str> {
    let named = path.strip_prefix("/organizations/").and_then(|rest| rest.split('/').next());
    match named {
        Some(id) if !id.is_empty() && id != "switch" => (status.as_u16() < 400).then_some(id),
        _ => concerned.or(active),
    }
}

/// The organization of the todo that a refused or failed request named by id (`/api/todos/{id}`,
/// `/todos/{id}/…`), asked of InsForge as the user: the handlers mark the organization whose data they answered
/// with, but a refused request never got that far (a read-only impersonation's change is refused before its
/// handler), and its Audit Log event, which names the todo, belongs with that todo's organization. `None` for a
/// personal todo, one the user cannot see, or when InsForge cannot say in time.
async fn organization_of_named_todo(
    state: &AppState,
    principal: &Principal,
    path: &str,
    status: StatusCode,
) -> Option<String> {
    if status.as_u16() < 400 {
        return None;
    }
    let rest = path.strip_prefix("/api/todos/").or_else(|| path.strip_prefix("/todos/"))?;
    let id = Uuid::parse_str(rest.split('/').next()?).ok()?;
    let identity = principal.identity();
    let todo = tokio::time::timeout(IMPERSONATION_AUDIT_LIMIT, state.insforge.get_todo(&identity, id)).await;
    todo.ok()?.ok()?.organization_id
}

/// Requests no user makes: the orchestrator's probes (which `/healthz` answers even under load shedding) and WorkOS's
/// webhook deliveries. A browser's cookie may ride along; it is not theirs to open, refresh or audit.
///
/// Exactly these routes' paths, not a prefix: any other path (`/webhooks/other`) is an unknown page, whose 404 still
/// resolves the user for its banner. Without a context to fill, that resolution would refresh the session and
/// throw the new cookie away, leaving the browser a spent refresh token, and an impersonated request unaudited.
fn without_session(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | super::webhooks::PATH)
}

/// Longest the audit record of an impersonated request may hold its response.
const IMPERSONATION_AUDIT_LIMIT: Duration = Duration::from_secs(3);

/// Whether this user may change nothing: an impersonated session while `IMPERSONATION_ALLOW_WRITES` is off. The
/// extractor refuses such writes; the pages leave out their forms ([`super::pages::Banner`]).
pub fn writes_refused(state: &AppState, user: &Principal) -> bool {
    user.impersonator.is_some() && !state.config.server.impersonation_allow_writes
}

/// Paths an impersonated session may post to even when writes are refused: choosing which space to look at.
fn allowed_while_impersonating(path: &str) -> bool {
    matches!(path, "/organizations/switch" | "/api/organizations/switch")
}

/// Only the `Cookie` headers: all the middleware needs to know which cookie pieces to replace.
fn cookie_headers(headers: &HeaderMap) -> HeaderMap {
    let mut only = HeaderMap::new();
    for value in headers.get_all(header::COOKIE) {
        only.append(header::COOKIE, value.clone());
    }
    only
}

async fn resolve(parts: &mut Parts, state: &AppState) -> Auth {
    let context = parts.extensions.get::<SessionContext>().cloned().unwrap_or_default();
    let api = is_api_path(parts.uri.path());
    let first = || async {
        let auth = compute(&parts.headers, api, state, &context).await;
        // Once per request: a field recorded again is written again on every log line of the request.
        if let Auth::User(user) = &auth {
            tracing::Span::current().record("user_id", user.id());
        }
        auth
    };
    context.auth.get_or_init(first).await.clone()
}

async fn compute(headers: &HeaderMap, api: bool, state: &AppState, context: &SessionContext) -> Auth {
    let authorizations = headers.get_all(header::AUTHORIZATION);
    if api && authorizations.iter().any(is_bearer_attempt) {
        // `Authorization` is a single value (RFC 9110 §11.6.2): with two, a proxy in front may have read the other
        // one, so neither counts.
        let mut values = authorizations.iter();
        let token = match (values.next(), values.next()) {
            (Some(only), None) => only.to_str().ok().and_then(bearer_token),
            _ => {
                tracing::info!(reason = "more than one Authorization header", "bearer token refused");
                None
            }
        };
        let Some(token) = token else { return Auth::InvalidBearer };
        return match state.sessions.authenticate_bearer(token).await {
            Ok(principal) => Auth::User(CurrentUser(Arc::new(principal))),
            Err(CheckError::Unavailable { retry_after }) => Auth::Unavailable { retry_after },
            Err(CheckError::DatabaseUnavailable { retry_after }) => Auth::DatabaseUnavailable { retry_after },
            Err(CheckError::Invalid(reason)) => {
                // At info, with the request: an operator setting up an API client against a real tenant sees why (the
                // client is only told that the token is invalid). The reason never quotes the token.
                tracing::info!(%reason, "bearer token refused");
                Auth::InvalidBearer
            }
            Err(CheckError::Expired) => {
                tracing::info!(reason = "it has expired", "bearer token refused");
                Auth::ExpiredBearer
            }
        };
    }

    let resolution = state.sessions.resolve(headers).await;
    context.set_cookie_change(resolution.cookie);
    match resolution.outcome {
        Outcome::SignedIn(principal) => Auth::User(CurrentUser(Arc::new(*principal))),
        Outcome::SignedOut => Auth::SignedOut,
        Outcome::Unavailable { retry_after } => Auth::Unavailable { retry_after },
        Outcome::DatabaseUnavailable { retry_after } => Auth::DatabaseUnavailable { retry_after },
    }
}

/// Whether an `Authorization` header is meant for us: its scheme is `Bearer` (case-insensitive, RFC 6750), with or
/// without a usable token. Other schemes are not ours and are ignored: browsers send `Basic` credentials by
/// themselves on every request to a site behind HTTP Basic auth (a staging proxy), and treating them as a failed
/// bearer token would hide the session cookie from every same-origin fetch.
fn is_bearer_attempt(value: &HeaderValue) -> bool {
    let scheme = value.as_bytes().trim_ascii_start().split(u8::is_ascii_whitespace).next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"bearer")
}

/// `Bearer <token>`, scheme case-insensitive as RFC 6750 allows.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match resolve(parts, state).await {
            Auth::User(user) => {
                // A cookie rides along on cross-site requests; an unsafe API call must prove it is same-origin.
                if is_api_path(parts.uri.path()) && user.source == AuthSource::Cookie && !parts.method.is_safe() {
                    csrf::require_same_origin(&parts.headers, &state.origin)?;
                }
                // Support staff signed in as the user look, they do not change things (unless the operator allows).
                if writes_refused(state, &user)
                    && !parts.method.is_safe()
                    && !allowed_while_impersonating(parts.uri.path())
                {
                    return Err(AppError::ImpersonationReadOnly);
                }
                Ok(CurrentUser::clone(&user))
            }
            // Pages are sent to sign in, the API gets 401: `error::render_errors` decides by path.
            Auth::SignedOut => Err(AppError::Unauthorized),
            Auth::InvalidBearer => Err(AppError::InvalidToken),
            Auth::ExpiredBearer => Err(AppError::TokenExpired),
            Auth::Unavailable { retry_after } => Err(AppError::AuthUnavailable { retry_after }),
            Auth::DatabaseUnavailable { retry_after } => Err(AppError::DatabaseUnavailable { retry_after }),
        }
    }
}

/// The signed-in user's session itself (cookie sessions only), for the handlers that change it (switching the
/// active organization). The response stores whatever [`CurrentSession::replace`] is given.
pub struct CurrentSession {
    pub user: CurrentUser,
    pub session: Session,
    context: SessionContext,
}

impl CurrentSession {
    /// Makes the response store `session` as the new session cookie.
    pub fn replace(&self, session: Session) {
        self.context.set_cookie_change(CookieChange::Store(Box::new(session)));
    }
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.source != AuthSource::Cookie {
            return Err(AppError::BadRequest(
                "This route switches the organization of a browser session, not a bearer token's. (With WorkOS, a \
                 token's organization is chosen when it is issued: refresh it at WorkOS with organization_id.)"
                    .to_owned(),
            ));
        }
        let context = parts.extensions.get::<SessionContext>().cloned().unwrap_or_default();
        // The session as this request resolved it: refreshed just now, or the cookie as it came.
        let session = match context.stored_session() {
            Some(session) => session,
            None => state.sessions.open(&parts.headers).map(|(session, _)| session).ok_or(AppError::Unauthorized)?,
        };
        if session.user.id != user.id() {
            return Err(AppError::Unauthorized);
        }
        Ok(Self { user, session, context })
    }
}

/// The user, when there is one. The provider being unreachable for an expired session is still an error (503):
/// showing the signed-out page would look like a logout.
pub struct MaybeUser {
    pub user: Option<CurrentUser>,
    /// No user because the session the request came with has just ended (the provider refused its refresh, it was
    /// revoked or signed out elsewhere, its user deleted): the signed-out page says so, rather than looking as if
    /// nothing had happened.
    pub session_ended: bool,
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(Self { user: Some(user), session_ended: false }),
            Err(AppError::Unauthorized) => {
                let ended = parts.extensions.get::<SessionContext>().is_some_and(SessionContext::clears_cookie);
                Ok(Self { user: None, session_ended: ended })
            }
            Err(other) => Err(other),
        }
    }
}

/// How long a client may take to send a request's whole body once the app starts reading it: 408 `body_timeout`
/// after that. Bodies here are a few hundred bytes (a webhook's a few KiB), so this only ever stops a sender
/// trickling bytes, who would otherwise hold one of the server's request slots until the request's time limit, and
/// then be told that the change "may have been saved" when nothing was even received. Never more than half the
/// request's time limit (`REQUEST_TIMEOUT_SECONDS`), so that it always goes off first.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The request's whole body, read within [`BODY_DEADLINE`] and cut off (413) past `limit`, the route's body limit
/// ([`super::body_limit`]; a declared `Content-Length` over it was refused before anything ran). A body in a content coding (`gzip`…) is refused with 415 before it is read: nothing
/// here decodes one, and reading it as it is would only produce a misleading parse error.
pub async fn read_body(request: Request, state: &AppState, limit: usize) -> Result<Bytes, AppError> {
    if is_coded(request.headers()) {
        return Err(AppError::UnsupportedContentEncoding);
    }
    let deadline = BODY_DEADLINE.min(state.config.server.request_timeout / 2);
    match tokio::time::timeout(deadline, axum::body::to_bytes(request.into_body(), limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error))
            if std::error::Error::source(&error)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>()) =>
        {
            Err(AppError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(AppError::BadRequest("The request body could not be read.".to_owned())),
        Err(_) => Err(AppError::BodyTimeout { deadline }),
    }
}

/// A content coding other than `identity` in any `Content-Encoding` header (a list, case-insensitive: RFC 9110
/// §8.4).
fn is_coded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|value| {
        let Ok(value) = value.to_str() else { return true };
        value.split(',').map(str::trim).any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
    })
}

/// A JSON object body whose every failure is answered in the API's error shape (400, 408, 413, 415), not axum's
/// plain text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(if request.method() == Method::PATCH {
                AppError::UnsupportedPatchType
            } else {
                AppError::UnsupportedMediaType
            });
        }
        let bytes = read_body(request, state, super::MAX_BODY_BYTES).await?;
        // RFC 8259 §8.1: a parser may ignore a byte-order mark, which some Windows tools write before JSON; serde
        // does not.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        // serde reads a struct from a JSON array as well, field by field in order (`["title", true]`); every body
        // of this API is an object, and an array is as wrong as any other type.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(AppError::MalformedJson("The request body must be a JSON object.".to_owned()));
        }
        match axum::Json::<T>::from_bytes(body) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The body types a `PATCH` takes, as its 415 states them (`Accept-Patch`, RFC 5789 §3.1).
pub(super) const PATCH_TYPES: &str = "application/json, application/merge-patch+json";

/// `application/json`, or `application/merge-patch+json` (RFC 7396: the fields to change, which is what a `PATCH`
/// here sends), whatever its parameters: JSON is UTF-8, and a `charset` on it "has no effect on compliant
/// recipients" (RFC 8259 §11). Not every `+json` type, as axum's `Json` takes them: those are formats of their own
/// written in JSON (JSON Patch's list of operations, `ld+json`, `problem+json`), and reading one as a todo would
/// misread it.
fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers)
        .is_some_and(|(essence, _)| matches!(essence.as_str(), "application/json" | "application/merge-patch+json"))
}

/// A form as browsers post one without an `enctype` (the pages' forms), in UTF-8 (which the pages declare):
/// `multipart/form-data` or `text/plain` would be read as something it is not, and so would a form in another
/// charset.
fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    let utf8 = |charset: &str| ["utf-8", "utf8", "us-ascii"].iter().any(|name| charset.eq_ignore_ascii_case(name));
    media_type(headers).is_some_and(|(essence, charset)| {
        essence == "application/x-www-form-urlencoded" && charset.as_deref().is_none_or(utf8)
    })
}

/// The body's media type, lower case, and its `charset` parameter if it has one; `None` without a `Content-Type`.
fn media_type(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut pieces = content_type.split(';');
    let essence = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = pieces
        .filter_map(|parameter| parameter.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned());
    Some((essence, charset))
}

/// Query parameters whose parse errors answer in the route's error format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes());
        serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map(ApiQuery).map_err(|error| {
            // The parameter's name, never its value (which may be anything a client put in the address).
            let parameter = error.path().to_string();
            let mut reason = error.into_inner().to_string();
            // Rust's integer parser speaks of "digits found in string": say what was expected instead.
            if reason.contains("invalid digit") {
                reason = "expected a whole number, 0 or more".to_owned();
            }
            AppError::BadRequest(match parameter.as_str() {
                "." => format!("Invalid query parameters: {reason}."),
                _ => format!("Invalid query parameter `{parameter}`: {reason}."),
            })
        })
    }
}

/// The `{id}` of an organization route. An id that is not text (`/organizations/%FF`) is a 400 in the route's
/// format, like every other refusal, not axum's plain-text one.
pub struct OrganizationId(pub String);

impl FromRequestParts<AppState> for OrganizationId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::BadRequest("The organization id in the address is not valid.".to_owned()))?;
        Ok(Self(id))
    }
}

/// The `{id}` of a todo route, refused with 400 when it is not a UUID (before anything reaches InsForge).
pub struct TodoId(pub Uuid);

impl FromRequestParts<AppState> for TodoId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| AppError::InvalidId)?;
        Uuid::parse_str(&raw).map(TodoId).map_err(|_| AppError::InvalidId)
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    // serde's own words (where the syntax breaks, or which field has the wrong type), without axum's prefix
    // ("Failed to parse the request body as JSON: …"), which would say the same as ours a second time.
    let detail = |error: &dyn std::error::Error| error.source().map_or_else(|| error.to_string(), ToString::to_string);
    match rejection {
        JsonRejection::JsonSyntaxError(error) => {
            AppError::MalformedJson(format!("The request body is not valid JSON: {}.", detail(&error)))
        }
        // Valid JSON of the wrong shape (a field of the wrong type): saying "not valid JSON" would send the client
        // looking for a syntax error that is not there.
        JsonRejection::JsonDataError(error) => AppError::MalformedJson(format!(
            "The request body is JSON, but not what this route takes: {}.",
            detail(&error)
        )),
        other => AppError::BadRequest(other.body_text()),
    }
}

/// A form submitted from one of the app's pages: the body must carry a valid [`csrf::FIELD`] for the signed-in
/// user's session, or nothing happens (403). Used together with [`CurrentUser`], which runs first.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match form_from_page(request, state).await? {
            (bytes, Freshness::Fresh) => parse_form(&bytes).map(CsrfForm),
            (_, Freshness::StalePage) => Err(AppError::Csrf),
        }
    }
}

/// The body of a form posted from the app's own pages with a valid CSRF token for `binding` (the WorkOS session),
/// or why not. The one CSRF check for every form, including sign-out.
pub async fn checked_form(request: Request, state: &AppState, binding: &str) -> Result<Bytes, AppError> {
    let bytes = same_origin_form(request, state).await?;
    verify_form_token(state, binding, &bytes)?;
    Ok(bytes)
}

/// A form's body, refused when a browser says it was posted from another site or it is not UTF-8 text; its CSRF
/// token not checked yet ([`verify_form_token`]).
async fn same_origin_form(request: Request, state: &AppState) -> Result<Bytes, AppError> {
    // A form's refusal speaks of the form, whichever check refused it.
    csrf::require_same_origin(request.headers(), &state.origin).map_err(|_| AppError::Csrf)?;
    if !is_urlencoded_form(request.headers()) {
        return Err(AppError::UnsupportedFormType);
    }
    let bytes = read_body(request, state, super::MAX_BODY_BYTES).await?;
    // Form decoding replaces bytes that are not UTF-8 with U+FFFD, which would store a title nobody typed. Browsers
    // always send UTF-8 (the pages declare it); what is not is refused, as the JSON API refuses it.
    if percent_encoding::percent_decode(&bytes).decode_utf8().is_err() {
        return Err(AppError::BadRequest("The form is not valid UTF-8 text.".to_owned()));
    }
    Ok(bytes)
}

fn verify_form_token(state: &AppState, binding: &str, bytes: &[u8]) -> Result<(), AppError> {
    let token = url::form_urlencoded::parse(bytes)
        .find(|(name, _)| name == csrf::FIELD)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    state.csrf.verify(binding, &token)
}

/// A form that may be out of date: as [`CsrfForm`], except that one whose CSRF token no longer fits the session
/// (the user signed in again, in another tab, since the page was shown) is handed over as [`FormFrom::StalePage`]
/// when the browser says it was posted from this app's own page ([`csrf::from_own_page`]): the page can then show
/// what was typed again, with nothing done, instead of losing it. Without that word from the browser it is refused
/// as any other form, so another site cannot have a page filled in for the user.
pub enum FormFrom<T> {
    Page(T),
    StalePage(T),
}

impl<T: DeserializeOwned> FromRequest<AppState> for FormFrom<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (bytes, freshness) = form_from_page(request, state).await?;
        let form = parse_form(&bytes)?;
        Ok(match freshness {
            Freshness::Fresh => Self::Page(form),
            Freshness::StalePage => Self::StalePage(form),
        })
    }
}

/// Whether a form's CSRF token fits the session, or it is out of date but from this app's own page.
enum Freshness {
    Fresh,
    StalePage,
}

/// The signed-in user's form body, with its CSRF token checked: refused unless it fits the session or the browser
/// says the form came from this app's own page ([`Freshness::StalePage`]).
async fn form_from_page(request: Request, state: &AppState) -> Result<(Bytes, Freshness), AppError> {
    let (mut parts, body) = request.into_parts();
    let user = CurrentUser::from_request_parts(&mut parts, state).await?;
    let own_page = csrf::from_own_page(&parts.headers, &state.origin);
    let bytes = same_origin_form(Request::from_parts(parts, body), state).await?;
    match verify_form_token(state, user.csrf_binding(), &bytes) {
        Ok(()) => Ok((bytes, Freshness::Fresh)),
        Err(AppError::Csrf) if own_page => Ok((bytes, Freshness::StalePage)),
        Err(error) => Err(error),
    }
}

fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|error| AppError::BadRequest(format!("The form is incomplete or malformed: {error}.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn only_the_bearer_scheme_is_a_bearer_attempt() {
        let attempt = |value: &'static str| is_bearer_attempt(&HeaderValue::from_static(value));
        for value in ["Bearer abc", "bearer abc", " BEARER\tabc", "Bearer", "Bearer "] {
            assert!(attempt(value), "{value:?}");
        }
        for value in ["Basic dTpw", "Digest username=\"u\"", "Bearerabc", "", "Token abc"] {
            assert!(!attempt(value), "{value:?}");
        }
    }

    fn headers(name: header::HeaderName, values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn json_is_application_json_or_a_merge_patch_with_any_parameters() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            // RFC 8259 §11: a charset on JSON has no effect; the body is read as UTF-8 whatever it says.
            "application/json; charset=ISO-8859-1",
            "Application/JSON",
            "application/merge-patch+json; charset=utf-8",
        ] {
            assert!(is_json(&headers(header::CONTENT_TYPE, &[accepted])), "{accepted}");
        }
        for refused in [
            "text/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "",
            // Formats of their own, written in JSON.
            "application/json-patch+json",
            "application/ld+json",
            "application/problem+json",
            "application/cloudevents+json",
        ] {
            assert!(!is_json(&headers(header::CONTENT_TYPE, &[refused])), "{refused}");
        }
        assert!(!is_json(&HeaderMap::new()), "no content type");
    }

    #[test]
    fn an_impersonated_requests_audit_log_is_the_organization_it_got_into() {
        let ok = StatusCode::OK;
        assert_eq!(audited_organization("/", ok, None, Some("org_a")), Some("org_a"));
        assert_eq!(audited_organization("/api/todos", ok, None, None), None);
        assert_eq!(audited_organization("/organizations/org_b", ok, None, Some("org_a")), Some("org_b"));
        assert_eq!(
            audited_organization("/organizations/org_b/portal", StatusCode::SEE_OTHER, None, None),
            Some("org_b")
        );
        assert_eq!(audited_organization("/organizations/org_b", StatusCode::NOT_FOUND, None, Some("org_a")), None);
        assert_eq!(audited_organization("/organizations/org_b", StatusCode::BAD_REQUEST, None, Some("org_a")), None);
        assert_eq!(
            audited_organization("/organizations/org_b/portal", StatusCode::FORBIDDEN, None, Some("org_a")),
            None
        );
        assert_eq!(audited_organization("/organizations/switch", ok, None, Some("org_a")), Some("org_a"));
        // Another organization's data, reached: its log, not the session's.
        assert_eq!(audited_organization("/api/todos", ok, Some("org_b"), Some("org_a")), Some("org_b"));
        assert_eq!(audited_organization("/api/todos/x", ok, Some("org_b"), None), Some("org_b"));
    }

    #[test]
    fn a_form_is_urlencoded_in_utf_8() {
        for accepted in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            "application/x-www-form-urlencoded; charset=\"utf8\"",
            "application/x-www-form-urlencoded;charset=us-ascii",
        ] {
            assert!(is_urlencoded_form(&headers(header::CONTENT_TYPE, &[accepted])), "{accepted}");
        }
        for refused in [
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json",
            "application/x-www-form-urlencoded; charset=windows-1252",
            "",
        ] {
            assert!(!is_urlencoded_form(&headers(header::CONTENT_TYPE, &[refused])), "{refused}");
        }
        assert!(!is_urlencoded_form(&HeaderMap::new()), "no content type");
    }

    #[test]
    fn any_coding_but_identity_in_any_content_encoding_header_is_coded() {
        for plain in [&[][..], &["identity"], &["Identity"], &["IDENTITY, identity"]] {
            assert!(!is_coded(&headers(header::CONTENT_ENCODING, plain)), "{plain:?}");
        }
        for coded in [&["gzip"][..], &["GZIP"], &["identity, gzip"], &["identity", "br"], &["deflate"]] {
            assert!(is_coded(&headers(header::CONTENT_ENCODING, coded)), "{coded:?}");
        }
    }
}
