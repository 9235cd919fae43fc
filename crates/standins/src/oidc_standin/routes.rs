//! The OIDC stand-in's HTTP surface, on Auth0's paths: discovery, JWKS, `/authorize` (and its sign-in page's two
//! forms), `/oauth/token`, `/userinfo`, `/oidc/logout`, `/v2/logout`, `/oauth/revoke`.
//!
//! Browser endpoints never redirect to an address that is not registered (a page explains instead); once the
//! redirect URI is trusted, a bad request goes back as `?error=…`, as OAuth prescribes. The token endpoint answers
//! errors the way Auth0 does: `invalid_grant` with 403, and a client that fails to authenticate (a wrong secret, or
//! not the method its application is set to) `access_denied` "Unauthorized" with 401.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use super::pages::{self, SignInPage, UserChoice};
use super::store::{AuthorizeRequest, is_s256_challenge};
use super::{
    ClientAuth, ClientAuthMethods, Endpoint, RefreshIdToken, State, profile_claims, unix_seconds, whole_seconds,
};
use crate::lock;
use crate::web::{no_store, oauth_error, with_query};

type Shared = AxumState<Arc<State>>;

pub fn router(inner: Arc<State>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/authorize", get(authorize))
        .route("/oauth2/v1/authorize", get(authorize))
        .route("/authorize/approve", post(approve))
        .route("/authorize/deny", post(deny))
        .route("/oauth/token", post(token))
        .route("/userinfo", get(userinfo))
        .route("/oidc/logout", get(end_session))
        .route("/v2/logout", get(auth0_logout))
        .route("/oauth/revoke", post(revoke))
        .fallback(unknown_endpoint)
        .with_state(inner)
}

// ---- discovery and keys ----------------------------------------------------------------------------------------

/// Auth0's document, field for field where authbridge could care (HS256 included among the algorithms, as Auth0
/// lists it), with the optional endpoints as the options say.
async fn discovery(AxumState(inner): Shared) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::Discovery).await {
        return response;
    }
    let auth_methods = match inner.options.client_auth_methods {
        ClientAuthMethods::BasicAndPost => json!(["client_secret_basic", "client_secret_post", "private_key_jwt"]),
        ClientAuthMethods::PostOnly => json!(["client_secret_post"]),
    };
    let mut document = json!({
        "issuer": inner.issuer.as_str(),
        "authorization_endpoint": inner.endpoint(if inner.options.okta_paths { "oauth2/v1/authorize" } else { "authorize" }),
        "token_endpoint": inner.endpoint("oauth/token"),
        "device_authorization_endpoint": inner.endpoint("oauth/device/code"),
        "userinfo_endpoint": inner.endpoint("userinfo"),
        "jwks_uri": inner.endpoint(".well-known/jwks.json"),
        "revocation_endpoint": inner.endpoint("oauth/revoke"),
        "scopes_supported": ["openid", "profile", "offline_access", "name", "given_name", "family_name",
                             "nickname", "email", "email_verified", "picture", "created_at"],
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token",
                                     "token id_token", "code token id_token"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "claims_supported": ["aud", "auth_time", "created_at", "email", "email_verified", "exp", "family_name",
                             "given_name", "iat", "iss", "name", "nickname", "picture", "sub"],
        "request_uri_parameter_supported": false,
        "request_parameter_supported": false,
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    });
    if !inner.options.offline_access_scope
        && let Some(scopes) = document["scopes_supported"].as_array_mut()
    {
        scopes.retain(|scope| scope != "offline_access");
    }
    if inner.options.authorization_response_iss {
        document["authorization_response_iss_parameter_supported"] = Value::from(true);
    }
    if inner.options.end_session_endpoint {
        document["end_session_endpoint"] = Value::from(inner.endpoint("oidc/logout"));
    }
    if inner.options.auth0_logout {
        document["mfa_challenge_endpoint"] = Value::from(inner.endpoint("mfa/challenge"));
    }
    Json(document).into_response()
}

async fn jwks(AxumState(inner): Shared) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::Jwks).await {
        return response;
    }
    Json(inner.jwks()).into_response()
}

// ---- authorize -------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    login_hint: Option<String>,
    screen_hint: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
}

async fn authorize(AxumState(inner): Shared, params: Result<Query<AuthorizeParams>, QueryRejection>) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::Authorize).await {
        return response;
    }
    let Ok(Query(params)) = params else {
        return pages::refusal(StatusCode::BAD_REQUEST, "The authorization request's query string is malformed.");
    };
    if params.client_id.as_deref() != Some(inner.options.client_id.as_str()) {
        return pages::refusal(StatusCode::BAD_REQUEST, "Unknown client: the client_id is missing or not registered.");
    }
    let Some(redirect_uri) = params
        .redirect_uri
        .as_deref()
        .and_then(|raw| Url::parse(raw).ok())
        .filter(|uri| inner.is_registered_redirect_uri(uri))
    else {
        return pages::refusal(
            StatusCode::BAD_REQUEST,
            "Callback URL mismatch: the redirect_uri is not in the application's Allowed Callback URLs.",
        );
    };
    let state = params.state.clone();
    let request = match validate(&inner, params, redirect_uri.clone()) {
        Ok(request) => request,
        Err((error, description)) => {
            let pairs = [("error", Some(error)), ("error_description", Some(description)), ("state", state.as_deref())];
            return redirect(StatusCode::FOUND, &authorization_response(&inner, &redirect_uri, &pairs));
        }
    };

    let mut store = lock(&inner.store);
    // A known login_hint skips the page: how tests sign in without a browser.
    if let Some(user) = request.login_hint.as_deref().and_then(|hint| store.user_by_email(hint)).cloned() {
        let code = store.issue_code(&request, user, unix_seconds(SystemTime::now()));
        drop(store);
        return redirect(StatusCode::FOUND, &code_redirect(&inner, &request, &code));
    }
    let request_id = store.park(request.clone());
    let page = sign_in_page(store.users(), request_id, &request, None, request.login_hint.clone().unwrap_or_default());
    drop(store);
    pages::sign_in(StatusCode::OK, &page)
}

type RedirectError = (&'static str, &'static str);

fn validate(inner: &State, params: AuthorizeParams, redirect_uri: Url) -> Result<AuthorizeRequest, RedirectError> {
    if params.response_type.as_deref() != Some("code") {
        return Err(("unsupported_response_type", "Unsupported response_type: only \"code\" is allowed here."));
    }
    let scopes: Vec<String> = params.scope.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    if !scopes.iter().any(|scope| scope == "openid") {
        return Err(("invalid_scope", "The scope must include openid."));
    }
    if !inner.options.offline_access_scope && scopes.iter().any(|scope| scope == "offline_access") {
        return Err(("invalid_scope", "Some requested scopes were invalid. {invalid=[offline_access]}"));
    }
    let code_challenge = match (params.code_challenge, params.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) if is_s256_challenge(&challenge) => challenge,
        (Some(_), Some("S256")) => return Err(("invalid_request", "The code_challenge is not a SHA-256 digest.")),
        (Some(_), _) => return Err(("invalid_request", "Only the S256 code_challenge_method is allowed.")),
        (None, _) => return Err(("invalid_request", "A code_challenge (PKCE) is required.")),
    };
    let audience = match (params.audience, params.resource) {
        (Some(audience), Some(resource)) if audience != resource => {
            return Err(("invalid_request", "audience and resource name different APIs."));
        }
        (Some(audience), _) | (None, Some(audience)) if audience != inner.options.audience => {
            return Err(("access_denied", "Service not found: the audience is not an API of this tenant."));
        }
        (audience, resource) => audience.or(resource),
    };
    Ok(AuthorizeRequest {
        redirect_uri,
        state: params.state,
        nonce: params.nonce,
        code_challenge,
        scopes,
        audience,
        login_hint: params.login_hint,
        sign_up: params.screen_hint.as_deref() == Some("signup"),
    })
}

fn sign_in_page(
    users: &[super::OidcUser],
    request_id: String,
    request: &AuthorizeRequest,
    error: Option<String>,
    email: String,
) -> SignInPage {
    let destination = match (request.redirect_uri.host_str(), request.redirect_uri.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => request.redirect_uri.to_string(),
    };
    SignInPage {
        heading: if request.sign_up { "Sign up" } else { "Log in" },
        destination,
        error,
        request_id,
        users: users
            .iter()
            .map(|user| UserChoice {
                subject: user.subject.clone(),
                name: user.display_name(),
                email: user.email.clone(),
            })
            .collect(),
        email,
    }
}

#[derive(Debug, Deserialize)]
struct DecisionForm {
    request: String,
    subject: Option<String>,
    email: Option<String>,
}

const STALE_REQUEST: &str =
    "This sign-in request has expired or was already answered. Go back to the application and sign in again.";

async fn approve(AxumState(inner): Shared, form: Result<Form<DecisionForm>, FormRejection>) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::SignInForm).await {
        return response;
    }
    let Ok(Form(form)) = form else {
        return pages::refusal(StatusCode::BAD_REQUEST, "The sign-in form arrived incomplete.");
    };
    let mut store = lock(&inner.store);
    let Some(request) = store.parked(&form.request).cloned() else {
        return pages::refusal(StatusCode::BAD_REQUEST, STALE_REQUEST);
    };
    let user = match (form.email, form.subject) {
        (Some(typed), _) => {
            let typed = typed.trim().to_owned();
            let plausible =
                typed.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !plausible {
                let error = "That is not an email address. Try one like dana@example.test.".to_owned();
                let page = sign_in_page(store.users(), form.request, &request, Some(error), typed);
                drop(store);
                return pages::sign_in(StatusCode::BAD_REQUEST, &page);
            }
            store.user_for_email(&typed)
        }
        (None, Some(subject)) => match store.user(&subject) {
            Some(user) => user.clone(),
            None => return pages::refusal(StatusCode::BAD_REQUEST, "Pick one of the listed users, or type an email."),
        },
        (None, None) => {
            return pages::refusal(StatusCode::BAD_REQUEST, "Pick one of the listed users, or type an email.");
        }
    };
    if store.unpark(&form.request).is_none() {
        return pages::refusal(StatusCode::BAD_REQUEST, STALE_REQUEST);
    }
    let code = store.issue_code(&request, user, unix_seconds(SystemTime::now()));
    drop(store);
    redirect(StatusCode::SEE_OTHER, &code_redirect(&inner, &request, &code))
}

async fn deny(AxumState(inner): Shared, form: Result<Form<DecisionForm>, FormRejection>) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::SignInForm).await {
        return response;
    }
    let Ok(Form(form)) = form else {
        return pages::refusal(StatusCode::BAD_REQUEST, "The sign-in form arrived incomplete.");
    };
    let Some(request) = lock(&inner.store).unpark(&form.request) else {
        return pages::refusal(StatusCode::BAD_REQUEST, STALE_REQUEST);
    };
    let pairs = [
        ("error", Some("access_denied")),
        ("error_description", Some("The user denied the sign-in request.")),
        ("state", request.state.as_deref()),
    ];
    redirect(StatusCode::SEE_OTHER, &authorization_response(&inner, &request.redirect_uri, &pairs))
}

fn code_redirect(inner: &State, request: &AuthorizeRequest, code: &str) -> Url {
    authorization_response(inner, &request.redirect_uri, &[("code", Some(code)), ("state", request.state.as_deref())])
}

/// The redirect back to the client, success or error, with RFC 9207's `iss` when the provider publishes it.
fn authorization_response(inner: &State, redirect_uri: &Url, pairs: &[(&str, Option<&str>)]) -> Url {
    let mut to = with_query(redirect_uri, pairs);
    if inner.options.authorization_response_iss {
        to.query_pairs_mut().append_pair("iss", inner.issuer.as_str());
    }
    to
}

// ---- token -----------------------------------------------------------------------------------------------------

async fn token(AxumState(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::Token).await {
        return response;
    }
    let form = match form_body(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = authenticate_client(&inner, &headers, &form) {
        return refused.into_response();
    }
    let field = |name: &str| form.get(name).map(String::as_str);
    let rotate = inner.options.rotate_refresh_tokens;
    let (outcome, refreshed) = match field("grant_type") {
        Some("authorization_code") => {
            lock(&inner.controls).code_calls += 1;
            let Some(code) = field("code") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: code");
            };
            let exchanged = lock(&inner.store).exchange_code(
                code,
                field("redirect_uri"),
                field("code_verifier"),
                inner.options.issue_refresh_tokens,
            );
            (exchanged, false)
        }
        Some("refresh_token") => {
            lock(&inner.controls).refresh_calls += 1;
            let Some(refresh_token) = field("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            (lock(&inner.store).refresh(refresh_token, rotate), true)
        }
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant type"),
        None => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type");
        }
    };
    let (grant, refresh_token) = match outcome {
        Ok(issued) => issued,
        // Auth0 answers every refused code or refresh token with 403.
        Err(invalid) => return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", invalid.0),
    };

    let now = unix_seconds(SystemTime::now());
    let ttl = lock(&inner.controls).access_token_ttl;
    let scope = grant.scopes.join(" ");
    let access_token = match &grant.audience {
        Some(audience) => {
            let claims =
                inner.access_token_claims(&grant.user.subject, audience, &scope, now, now + whole_seconds(ttl));
            match inner.keys().current.sign(inner.options.access_token_typ, &claims) {
                Ok(token) => token,
                Err(error) => return server_error(&error.to_string()),
            }
        }
        None => {
            let token = format!("opaque.{}", Uuid::new_v4().simple());
            lock(&inner.store).remember_opaque_access_token(&token, &grant.user.subject, now + whole_seconds(ttl));
            token
        }
    };
    let id_token = match (refreshed, lock(&inner.controls).refresh_id_token) {
        (false, _) => Some(true),
        (true, RefreshIdToken::WithNonce) => Some(true),
        (true, RefreshIdToken::WithoutNonce) => Some(false),
        (true, RefreshIdToken::Absent) => None,
    };
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": whole_seconds(ttl),
        "scope": scope,
    });
    if let Some(include_nonce) = id_token {
        match inner.id_token(&grant, include_nonce) {
            Ok(token) => answer["id_token"] = Value::from(token),
            Err(error) => return server_error(&error.to_string()),
        }
    }
    if let Some(refresh_token) = refresh_token {
        answer["refresh_token"] = Value::from(refresh_token);
    }
    no_store(Json(answer).into_response())
}

/// An OAuth error answer, built where the handler returns it.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        oauth_error(self.status, self.error, self.description)
    }
}

fn refusal(status: StatusCode, error: &'static str, description: &'static str) -> Refusal {
    Refusal { status, error, description }
}

/// `application/x-www-form-urlencoded` only, as RFC 6749 requires; a repeated parameter is refused.
fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refusal(StatusCode::BAD_REQUEST, "invalid_request", "The body must be form-encoded."));
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if form.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(refusal(StatusCode::BAD_REQUEST, "invalid_request", "A parameter is repeated."));
        }
    }
    Ok(form)
}

/// RFC 6749 §2.3.1: HTTP Basic (id and secret form-encoded first) or the body, one of them: the one the
/// application is set to (`application_auth`), as Auth0 enforces it. Refused as Auth0 refuses a wrong secret or
/// method: 401 `access_denied` "Unauthorized" (auth0/node-auth0#682, auth0/express-openid-connect#363).
fn authenticate_client(inner: &State, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<(), Refusal> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .map(|encoded| {
            let decoded = STANDARD.decode(encoded.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok());
            decoded.and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                Some((form_decode(id), form_decode(secret)))
            })
        });
    let posted =
        form.get("client_secret").map(|secret| (form.get("client_id").cloned().unwrap_or_default(), secret.clone()));
    let unauthorized = || refusal(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    let (method, (id, secret)) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return Err(refusal(StatusCode::BAD_REQUEST, "invalid_request", "Use one client authentication method."));
        }
        (Some(Some(credentials)), None) => (ClientAuth::Basic, credentials),
        (Some(None), None) => return Err(unauthorized()),
        (None, Some(credentials)) => (ClientAuth::Post, credentials),
        (None, None) => return Err(unauthorized()),
    };
    if method != inner.options.application_auth {
        return Err(unauthorized());
    }
    let id_ok = id == inner.options.client_id;
    let secret_ok = aws_lc_rs::constant_time::verify_slices_are_equal(
        secret.as_bytes(),
        inner.options.client_secret.expose().as_bytes(),
    )
    .is_ok();
    if !(id_ok && secret_ok) {
        return Err(unauthorized());
    }
    lock(&inner.controls).last_client_auth = Some(method);
    Ok(())
}

fn form_decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("v={part}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

// ---- userinfo --------------------------------------------------------------------------------------------------

async fn userinfo(AxumState(inner): Shared, headers: HeaderMap) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::UserInfo).await {
        return response;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let now = unix_seconds(SystemTime::now());
    let subject = token.and_then(|token| {
        let store = lock(&inner.store);
        if let Some(subject) = store.opaque_access_token(token, now) {
            return Some(subject.to_owned());
        }
        drop(store);
        let keys = inner.keys();
        let claims = std::iter::once(&keys.current).chain(&keys.previous).find_map(|key| key.verify(token))?;
        let userinfo = inner.endpoint("userinfo");
        let for_userinfo = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|aud| aud.iter().any(|a| a == &Value::from(userinfo.as_str())));
        let live = claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp > now);
        (for_userinfo && live).then(|| claims.get("sub").and_then(Value::as_str).map(str::to_owned)).flatten()
    });
    let user = subject.and_then(|subject| lock(&inner.store).user(&subject).cloned());
    let Some(user) = user else {
        let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
        return response;
    };
    let mut claims = profile_claims(&user, &["profile".to_owned(), "email".to_owned()]);
    claims.insert("sub".into(), Value::from(user.subject.as_str()));
    Json(Value::Object(claims)).into_response()
}

// ---- logout and revocation ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct EndSessionParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
}

/// OpenID Connect RP-Initiated Logout 1.0: the hint must be an ID token this provider issued to this client
/// (expired is fine), and the return address must be registered exactly.
async fn end_session(AxumState(inner): Shared, params: Result<Query<EndSessionParams>, QueryRejection>) -> Response {
    if !inner.options.end_session_endpoint {
        return unknown_endpoint(Method::GET, Uri::from_static("/oidc/logout")).await;
    }
    if let Some(response) = inner.faults.gate(Endpoint::EndSession).await {
        return response;
    }
    const REFUSED: &str = "Sign-out request refused";
    let Ok(Query(params)) = params else {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The query string is malformed.", None);
    };
    if params.client_id.as_deref().is_some_and(|id| id != inner.options.client_id) {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The client_id is not a client of this tenant.", None);
    }
    let mut session_id = None;
    if let Some(hint) = &params.id_token_hint {
        let keys = inner.keys();
        let claims = std::iter::once(&keys.current).chain(&keys.previous).find_map(|key| key.verify(hint));
        let ours = claims
            .as_ref()
            .is_some_and(|claims| claims.get("aud") == Some(&Value::from(inner.options.client_id.as_str())));
        if !ours {
            return pages::message(
                StatusCode::BAD_REQUEST,
                REFUSED,
                "The id_token_hint is not an ID token of this client.",
                None,
            );
        }
        session_id = claims.and_then(|claims| claims.get("sid").and_then(Value::as_str).map(str::to_owned));
    }
    let return_to = match params.post_logout_redirect_uri.as_deref().map(Url::parse) {
        None => None,
        Some(Ok(url))
            if inner.is_allowed_logout_uri(&url) && (params.id_token_hint.is_some() || params.client_id.is_some()) =>
        {
            Some(url)
        }
        Some(_) => {
            let message = "The post_logout_redirect_uri is not in the application's Allowed Logout URLs.";
            return pages::message(StatusCode::BAD_REQUEST, REFUSED, message, None);
        }
    };
    if let Some(session_id) = session_id {
        lock(&inner.controls).ended_sessions.push(session_id);
    }
    match return_to {
        Some(url) => redirect(StatusCode::FOUND, &with_query(&url, &[("state", params.state.as_deref())])),
        None => pages::message(StatusCode::OK, "You are signed out", "Your session has ended.", None),
    }
}

#[derive(Debug, Deserialize)]
struct Auth0LogoutParams {
    client_id: Option<String>,
    #[serde(rename = "returnTo")]
    return_to: Option<String>,
}

/// Auth0's `/v2/logout?client_id=…&returnTo=…`, for tenants without RP-initiated logout discovery.
async fn auth0_logout(AxumState(inner): Shared, params: Result<Query<Auth0LogoutParams>, QueryRejection>) -> Response {
    if !inner.options.auth0_logout {
        return unknown_endpoint(Method::GET, Uri::from_static("/v2/logout")).await;
    }
    if let Some(response) = inner.faults.gate(Endpoint::Auth0Logout).await {
        return response;
    }
    const REFUSED: &str = "Sign-out request refused";
    let Ok(Query(params)) = params else {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The query string is malformed.", None);
    };
    if params.client_id.as_deref() != Some(inner.options.client_id.as_str()) {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The client_id is not a client of this tenant.", None);
    }
    match params.return_to.as_deref().map(Url::parse) {
        None => pages::message(StatusCode::OK, "You are signed out", "Your session has ended.", None),
        Some(Ok(url)) if inner.is_allowed_logout_uri(&url) => redirect(StatusCode::FOUND, &url),
        Some(_) => {
            pages::message(StatusCode::BAD_REQUEST, REFUSED, "The returnTo URL is not an Allowed Logout URL.", None)
        }
    }
}

/// RFC 7009: revokes a refresh token (and its family); an unknown token is not an error.
async fn revoke(AxumState(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = inner.faults.gate(Endpoint::Revoke).await {
        return response;
    }
    let form = match form_body(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = authenticate_client(&inner, &headers, &form) {
        return refused.into_response();
    }
    // As an Auth0 tenant (`auth0_logout`), `client_id` is a required body parameter of `/oauth/revoke`, whichever way
    // the client authenticates (https://auth0.com/docs/api/authentication#revoke-refresh-token). As Okta
    // (`okta_paths`), a client named both in Basic and in the body is refused.
    let named_in_body = form.get("client_id").map(String::as_str);
    let basic = headers.get(header::AUTHORIZATION).is_some_and(|value| value.as_bytes().starts_with(b"Basic "));
    if inner.options.auth0_logout && named_in_body != Some(inner.options.client_id.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: client_id");
    }
    if inner.options.okta_paths && basic && named_in_body.is_some() {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Cannot supply multiple client credentials.");
    }
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: token");
    };
    lock(&inner.store).revoke(token);
    lock(&inner.controls).revocations += 1;
    (StatusCode::OK, Json(json!({}))).into_response()
}

async fn unknown_endpoint(method: Method, uri: Uri) -> Response {
    tracing::warn!(%method, path = uri.path(), "request to an endpoint the OIDC stand-in does not have");
    let description = format!("The OIDC stand-in has no endpoint {method} {}.", uri.path());
    oauth_error(StatusCode::NOT_FOUND, "not_found", &description)
}

// ---- response helpers ------------------------------------------------------------------------------------------

fn redirect(status: StatusCode, to: &Url) -> Response {
    match HeaderValue::from_str(to.as_str()) {
        Ok(location) => no_store((status, [(header::LOCATION, location)]).into_response()),
        Err(_) => pages::refusal(StatusCode::INTERNAL_SERVER_ERROR, "The redirect address could not be encoded."),
    }
}

fn server_error(detail: &str) -> Response {
    tracing::error!(detail, "the OIDC stand-in could not sign a token");
    oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The stand-in could not sign the token.")
}
