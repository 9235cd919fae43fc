//! The stand-in's HTTP surface: one handler per WorkOS endpoint authbridge uses, plus the sign-in page's two forms.
//!
//! Handlers translate between HTTP and the store, and decide how a refusal is delivered. Browser endpoints never
//! redirect to an address that is not registered (a page explains instead); once the redirect URI is trusted,
//! a bad request goes back to the app as `?error=…`, as OAuth prescribes. The API endpoints answer in WorkOS's two
//! error shapes: OAuth's `{"error","error_description"}` for `authenticate`, `{"code","message"}` elsewhere.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;
use uuid::Uuid;

use super::controls::GrantType;
use super::pages::{self, ImpersonationChoice, Link, SignInPage, UserChoice};
use super::store::{
    AuthenticationMethod, AuthorizationRequest, GrantError, Issued, Route, StandInImpersonator,
    StandInSignInRequirement, Store, UserObject, is_valid_s256_challenge, normalize_email,
};
use super::{Endpoint, WorkosStandInState, unix_seconds, whole_seconds};
use crate::lock;
use crate::web::{no_store, oauth_error, with_query};

pub fn router(inner: Arc<WorkosStandInState>) -> Router {
    Router::new()
        .route("/user_management/authorize", get(authorize))
        .route("/user_management/authorize/approve", post(approve))
        .route("/user_management/authorize/deny", post(deny))
        .route("/user_management/authenticate", post(authenticate))
        .route("/sso/jwks/{client_id}", get(jwks))
        .route("/user_management/sessions/logout", get(logout))
        .route("/user_management/sessions/revoke", post(revoke_session))
        .merge(super::management::router())
        .merge(super::enterprise::router())
        .fallback(unknown_endpoint)
        .layer(axum::middleware::map_response(with_request_id))
        .with_state(inner)
}

/// Every WorkOS answer carries `X-Request-ID` (docs `/reference/errors`; every SDK logs it), refusals included: a
/// client can tell WorkOS's own answers from a gateway's by it.
async fn with_request_id(mut response: Response) -> Response {
    if let Ok(id) = axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

// ---- authorize -------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct StandInAuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    provider: Option<String>,
    organization_id: Option<String>,
    connection_id: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    login_hint: Option<String>,
    screen_hint: Option<String>,
}

/// An authorization request refused with OAuth's `?error=…&error_description=…`.
type OAuthRedirectError = (&'static str, &'static str);

async fn authorize(
    State(inner): State<Arc<WorkosStandInState>>,
    params: Result<Query<StandInAuthorizeParams>, QueryRejection>,
) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::Authorize).await {
        return response;
    }
    let Ok(Query(params)) = params else {
        return pages::refusal(StatusCode::BAD_REQUEST, "The authorization request's query string is malformed.");
    };
    // Until the client and its redirect URI are trusted, a refusal is a page: never a redirect.
    let redirect_uri = match trusted_redirect_uri(&inner, &params) {
        Ok(redirect_uri) => redirect_uri,
        Err(message) => return pages::refusal(StatusCode::BAD_REQUEST, message),
    };
    let state = params.state.clone();
    let request = match validate_authorization(&inner, params, redirect_uri.clone()) {
        Ok(request) => request,
        Err((error, description)) => {
            let pairs = [("error", Some(error)), ("error_description", Some(description)), ("state", state.as_deref())];
            return redirect(StatusCode::FOUND, &with_query(&redirect_uri, &pairs));
        }
    };

    let mut store = lock(&inner.store);
    // A known login_hint skips the page, which is how tests sign in without a browser.
    let hinted_user =
        request.login_hint.as_deref().and_then(|hint| store.user_by_email(hint)).map(|u| u.seed.id.clone());
    if let Some(user_id) = hinted_user {
        let code = store.issue_code(&request, &user_id, AuthenticationMethod::Password);
        drop(store);
        return redirect(StatusCode::FOUND, &code_redirect(&request, &code));
    }
    let request_id = store.park(request.clone());
    let email = request.login_hint.clone().unwrap_or_default();
    let page = sign_in_page(&store, &inner.impersonations, request_id, &request, None, email);
    drop(store);
    pages::sign_in(StatusCode::OK, page)
}

fn trusted_redirect_uri(inner: &WorkosStandInState, params: &StandInAuthorizeParams) -> Result<Url, &'static str> {
    if params.client_id.as_deref() != Some(inner.client_id.as_str()) {
        return Err("The client_id is missing or is not a client of this WorkOS stand-in.");
    }
    params
        .redirect_uri
        .as_deref()
        .and_then(|raw| Url::parse(raw).ok())
        .filter(|uri| inner.is_registered_redirect_uri(uri))
        .ok_or("The redirect_uri is missing or not registered for this client, so the stand-in will not go there.")
}

/// Everything but the client and redirect URI, which [`trusted_redirect_uri`] has checked.
fn validate_authorization(
    inner: &WorkosStandInState,
    params: StandInAuthorizeParams,
    redirect_uri: Url,
) -> Result<AuthorizationRequest, OAuthRedirectError> {
    if params.response_type.as_deref() != Some("code") {
        return Err(("unsupported_response_type", "response_type must be \"code\"."));
    }
    let authkit = params.provider.as_deref() == Some("authkit");
    let route = match (params.provider.as_deref(), params.organization_id, params.connection_id) {
        (Some("authkit"), None, None) => Route::AuthKit,
        (Some(_), None, None) => return Err(("invalid_request", "The only provider supported is \"authkit\".")),
        // `organization_id` alone starts the organization's SSO; beside `provider=authkit` it scopes the AuthKit
        // sign-in to the organization (how an app sends someone into an organization that requires its own
        // sign-in, as authkit-nextjs's switchToOrganization does). Both end in a session of that organization.
        (None | Some("authkit"), Some(org), None) if lock(&inner.store).is_known_organization(&org) => {
            Route::Organization(org)
        }
        (None | Some("authkit"), Some(_), None) => {
            return Err(("invalid_request", "The organization_id is not known."));
        }
        (None, None, Some(connection)) if connection.starts_with("conn_") => Route::Connection(connection),
        (None, None, Some(_)) => return Err(("invalid_request", "The connection_id is not a connection id.")),
        _ => {
            return Err(("invalid_request", "Exactly one of provider, organization_id or connection_id is required."));
        }
    };
    let code_challenge = match (params.code_challenge, params.code_challenge_method.as_deref()) {
        (None, None) => None,
        (None, Some(_)) => return Err(("invalid_request", "code_challenge_method was sent without a code_challenge.")),
        (Some(challenge), Some("S256")) if is_valid_s256_challenge(&challenge) => Some(challenge),
        (Some(_), Some("S256")) => {
            return Err(("invalid_request", "code_challenge is not a base64url SHA-256 digest."));
        }
        // RFC 7636 §4.4.1's wording; an absent method means "plain", which is refused as well.
        (Some(_), _) => return Err(("invalid_request", "Transform algorithm not supported: use S256.")),
    };
    let sign_up = match params.screen_hint.as_deref() {
        // The hint picks an AuthKit screen; WorkOS's SDKs refuse it with any other selector.
        Some(_) if !authkit => return Err(("invalid_request", "screen_hint requires provider=authkit.")),
        None | Some("sign-in") => false,
        Some("sign-up") => true,
        Some(_) => return Err(("invalid_request", "screen_hint must be \"sign-in\" or \"sign-up\".")),
    };

    Ok(AuthorizationRequest {
        redirect_uri,
        state: params.state,
        code_challenge,
        route,
        sign_up,
        login_hint: params.login_hint,
    })
}

fn sign_in_page(
    store: &Store,
    impersonations: &[super::SeedImpersonation],
    request_id: String,
    request: &AuthorizationRequest,
    error: Option<String>,
    email: String,
) -> SignInPage {
    let organization_name = |id: &str| store.organization_name(id).unwrap_or(id).to_owned();
    let organizations_of = |user_id: &str| {
        let described: Vec<String> = store
            .memberships()
            .iter()
            .filter(|m| m.user_id == user_id && m.status == super::StandInMembershipStatus::Active)
            .map(|m| match m.roles.first().map(String::as_str) {
                Some("admin") => format!("{} (admin)", organization_name(&m.organization_id)),
                _ => organization_name(&m.organization_id),
            })
            .collect();
        (!described.is_empty()).then(|| described.join(", "))
    };
    let users = store
        .users()
        .map(|user| UserChoice {
            id: user.seed.id.clone(),
            name: user.seed.display_name(),
            email: user.seed.email.clone(),
            organization: organizations_of(&user.seed.id),
        })
        .collect();
    let impersonations = impersonations
        .iter()
        .filter_map(|seed| {
            let user = store.user(&seed.user_id)?;
            Some(ImpersonationChoice {
                user_id: seed.user_id.clone(),
                user_name: user.seed.display_name(),
                user_email: user.seed.email.clone(),
                impersonator: seed.impersonator_email.clone(),
                reason: seed.reason.clone().unwrap_or_default(),
            })
        })
        .collect();
    let organization = match &request.route {
        Route::Organization(org) => Some(organization_name(org)),
        Route::AuthKit | Route::Connection(_) => None,
    };
    let destination = match (request.redirect_uri.host_str(), request.redirect_uri.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => request.redirect_uri.to_string(),
    };
    SignInPage {
        heading: if request.sign_up { "Create your account" } else { "Sign in" },
        destination,
        organization,
        error,
        request_id,
        users,
        impersonations,
        email,
    }
}

// ---- the sign-in page's forms --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct DecisionForm {
    /// The parked request's id.
    request: String,
    user_id: Option<String>,
    email: Option<String>,
    /// An impersonated sign-in (one of those the page lists): the support staff member's email.
    impersonator: Option<String>,
}

const STALE_REQUEST: &str =
    "This sign-in request has expired or was already answered. Go back to the application and sign in again.";

async fn approve(
    State(inner): State<Arc<WorkosStandInState>>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::SignInForm).await {
        return response;
    }
    let Ok(Form(form)) = form else {
        return pages::refusal(StatusCode::BAD_REQUEST, "The sign-in form arrived incomplete.");
    };
    let mut store = lock(&inner.store);
    let Some(request) = store.parked(&form.request).cloned() else {
        return pages::refusal(StatusCode::BAD_REQUEST, STALE_REQUEST);
    };
    let (user_id, method) = match (form.email, form.user_id) {
        (Some(typed), _) => match normalize_email(&typed) {
            Some(email) => (store.user_for_email(&email).seed.id, AuthenticationMethod::MagicAuth),
            None => {
                // The request stays parked, so the corrected email can be sent from the same page.
                let error = "That is not an email address. Try one like dana@example.test.".to_owned();
                let page = sign_in_page(&store, &inner.impersonations, form.request, &request, Some(error), typed);
                drop(store);
                return pages::sign_in(StatusCode::BAD_REQUEST, page);
            }
        },
        (None, Some(user_id)) if store.user(&user_id).is_some() => (user_id, AuthenticationMethod::Password),
        (None, _) => return pages::refusal(StatusCode::BAD_REQUEST, "Pick one of the listed users, or type an email."),
    };
    // Only the impersonations the page offers can be started from it.
    let impersonator = match form.impersonator {
        None => None,
        Some(email) => {
            match inner.impersonations.iter().find(|s| s.user_id == user_id && s.impersonator_email == email) {
                Some(seed) => {
                    Some(StandInImpersonator { email: seed.impersonator_email.clone(), reason: seed.reason.clone() })
                }
                None => return pages::refusal(StatusCode::BAD_REQUEST, "That impersonation is not offered here."),
            }
        }
    };
    if store.unpark(&form.request).is_none() {
        return pages::refusal(StatusCode::BAD_REQUEST, STALE_REQUEST);
    }
    let code = store.issue_code_as(&request, &user_id, method, impersonator);
    drop(store);
    // 303: the browser follows a form post with a GET.
    redirect(StatusCode::SEE_OTHER, &code_redirect(&request, &code))
}

async fn deny(
    State(inner): State<Arc<WorkosStandInState>>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::SignInForm).await {
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
    redirect(StatusCode::SEE_OTHER, &with_query(&request.redirect_uri, &pairs))
}

fn code_redirect(request: &AuthorizationRequest, code: &str) -> Url {
    with_query(&request.redirect_uri, &[("code", Some(code)), ("state", request.state.as_deref())])
}

// ---- authenticate ----------------------------------------------------------------------------------------------

/// Both grants' fields; which are required depends on `grant_type`. `ip_address` and `user_agent` are accepted
/// and ignored, as unknown fields are.
#[derive(Debug, Deserialize)]
struct StandInAuthenticateBody {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    organization_id: Option<String>,
    pending_authentication_token: Option<String>,
}

#[derive(Debug, Serialize)]
struct AuthenticateResponse {
    user: UserObject,
    organization_id: Option<String>,
    access_token: String,
    refresh_token: String,
    authentication_method: AuthenticationMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonator: Option<StandInImpersonator>,
}

async fn authenticate(State(inner): State<Arc<WorkosStandInState>>, headers: HeaderMap, body: Bytes) -> Response {
    // Counted before any injected failure, per grant too: tests assert how many refreshes reached WorkOS.
    inner.controls.count(Endpoint::Authenticate);
    let body = parse_authenticate_body(&headers, &body);
    if let Ok(body) = &body {
        match body.grant_type.as_deref() {
            Some("authorization_code") => inner.controls.count_grant(GrantType::AuthorizationCode),
            Some("refresh_token") => inner.controls.count_grant(GrantType::RefreshToken),
            _ => {}
        }
    }
    if let Some(response) = inner.controls.intercept(Endpoint::Authenticate).await {
        return response;
    }

    let body = match body {
        Ok(body) => body,
        Err(problem) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &problem),
    };
    if !client_is_authenticated(&inner, &body) {
        let description = "The client_id and client_secret (the API key) do not identify a client.";
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    }

    let mut answer_names_impersonator = true;
    let outcome = match body.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = body.code else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The code is missing.");
            };
            lock(&inner.store).exchange_code(&code, body.code_verifier.as_deref())
        }
        Some("refresh_token") => {
            let Some(refresh_token) = body.refresh_token else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The refresh_token is missing.");
            };
            let mut store = lock(&inner.store);
            let issued = store.refresh(&refresh_token, body.organization_id.as_deref());
            answer_names_impersonator = !store.refreshes_leave_out_impersonator;
            issued
        }
        Some(ORGANIZATION_SELECTION_GRANT) => {
            let (Some(pending), Some(organization_id)) = (body.pending_authentication_token, body.organization_id)
            else {
                let description = "The pending_authentication_token and organization_id are required.";
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
            };
            lock(&inner.store).select_organization(&pending, &organization_id)
        }
        Some(_) => {
            let description =
                "grant_type must be \"authorization_code\", \"refresh_token\" or the organization-selection grant.";
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", description);
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The grant_type is missing."),
    };
    match outcome {
        Ok(issued) => authenticated(&inner, issued, answer_names_impersonator),
        Err(GrantError::InvalidGrant(description)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
        }
        Err(error @ GrantError::NotAMember(_)) => {
            workos_error(StatusCode::BAD_REQUEST, "organization_membership_not_found", &error.to_string())
        }
        Err(error @ GrantError::UnknownOrganization(_)) => {
            (StatusCode::NOT_FOUND, Json(json!({ "message": error.to_string() }))).into_response()
        }
        Err(GrantError::SelectionRequired { pending_token, user, organizations }) => {
            let organizations: Vec<Value> = {
                let store = lock(&inner.store);
                organizations
                    .iter()
                    .map(|id| json!({ "id": id, "name": store.organization_name(id).unwrap_or(id) }))
                    .collect()
            };
            let body = json!({
                "code": "organization_selection_required",
                "message": "The user must choose an organization to finish their authentication.",
                "pending_authentication_token": pending_token,
                "organizations": organizations,
                "user": user.to_value(),
            });
            no_store((StatusCode::FORBIDDEN, Json(body)).into_response())
        }
        Err(error @ GrantError::InvalidPendingToken) => {
            workos_error(StatusCode::BAD_REQUEST, "invalid_pending_authentication_token", &error.to_string())
        }
        Err(GrantError::SignInRequired { email, requirement }) => {
            // The bodies of docs/workos.md §1.3: the `error` style for SSO and authentication methods, the `code`
            // style (403) for an MFA challenge.
            let (status, body) = match requirement {
                StandInSignInRequirement::Sso => (
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "sso_required",
                        "error_description": "User must authenticate using one of the matching connections.",
                        "email": email, "connection_ids": ["conn_standin_sso"],
                    }),
                ),
                StandInSignInRequirement::MfaChallenge => (
                    StatusCode::FORBIDDEN,
                    json!({
                        "code": "mfa_challenge",
                        "message": "The user must complete an MFA challenge to finish authenticating.",
                        "pending_authentication_token": Uuid::new_v4().simple().to_string(),
                        "authentication_factors": [{ "id": "auth_factor_standin", "type": "totp" }],
                    }),
                ),
                StandInSignInRequirement::AuthenticationMethods => (
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "organization_authentication_methods_required",
                        "error_description": "The organization does not allow the authentication method used.",
                        "email": email, "sso_connection_ids": ["conn_standin_sso"],
                        "auth_methods": { "sso": true, "password": false, "magic_auth": false },
                    }),
                ),
            };
            no_store((status, Json(body)).into_response())
        }
        Err(error @ GrantError::MustUseSso) => {
            no_store((StatusCode::BAD_REQUEST, Json(json!({ "message": error.to_string() }))).into_response())
        }
    }
}

/// WorkOS's organization-selection grant type (docs/workos.md §1.2).
const ORGANIZATION_SELECTION_GRANT: &str = "urn:workos:oauth:grant-type:organization-selection";

/// WorkOS takes JSON; form encoding is accepted too, as OAuth token endpoints traditionally do.
fn parse_authenticate_body(headers: &HeaderMap, body: &[u8]) -> Result<StandInAuthenticateBody, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if is_form {
        let fields: Map<String, Value> = url::form_urlencoded::parse(body)
            .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
            .collect();
        serde_json::from_value(Value::Object(fields)).map_err(|error| format!("The form body is malformed: {error}."))
    } else {
        serde_json::from_slice(body).map_err(|error| format!("The body is not the expected JSON object: {error}."))
    }
}

fn client_is_authenticated(inner: &WorkosStandInState, body: &StandInAuthenticateBody) -> bool {
    let client_matches = body.client_id.as_deref() == Some(inner.client_id.as_str());
    let secret_matches = body.client_secret.as_deref().is_some_and(|secret| {
        aws_lc_rs::constant_time::verify_slices_are_equal(secret.as_bytes(), inner.api_key.expose().as_bytes()).is_ok()
    });
    client_matches && secret_matches
}

/// The answer to a grant; `names_impersonator` false leaves `impersonator` out of it (the token keeps `act`).
fn authenticated(inner: &WorkosStandInState, issued: Issued, names_impersonator: bool) -> Response {
    let issued_at = unix_seconds(SystemTime::now());
    let expires_at = issued_at.saturating_add(whole_seconds(issued.access_token_ttl));
    let access_token =
        match inner.access_token(&issued.session, &issued.roles, issued_at, expires_at, &issued.extra_claims) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "the WorkOS stand-in could not sign an access token");
                let message = "The stand-in could not sign the access token.";
                return workos_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message);
            }
        };
    let response = AuthenticateResponse {
        user: issued.user.to_object(),
        organization_id: issued.session.organization_id,
        access_token,
        refresh_token: issued.refresh_token,
        authentication_method: issued.session.method,
        impersonator: issued.session.impersonator.filter(|_| names_impersonator),
    };
    no_store((StatusCode::OK, Json(response)).into_response())
}

// ---- JWKS and logout -------------------------------------------------------------------------------------------

async fn jwks(State(inner): State<Arc<WorkosStandInState>>, Path(client_id): Path<String>) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::Jwks).await {
        return response;
    }
    if client_id != inner.client_id {
        return workos_error(StatusCode::NOT_FOUND, "entity_not_found", "There is no JWKS for this client_id.");
    }
    Json(inner.jwks()).into_response()
}

#[derive(Debug, Deserialize)]
struct LogoutParams {
    session_id: Option<String>,
    return_to: Option<String>,
}

async fn logout(
    State(inner): State<Arc<WorkosStandInState>>,
    params: Result<Query<LogoutParams>, QueryRejection>,
) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::Logout).await {
        return response;
    }
    const REFUSED: &str = "Sign-out request refused";
    let Ok(Query(params)) = params else {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The query string is malformed.", None);
    };
    let return_to = params.return_to.as_deref().and_then(|raw| Url::parse(raw).ok());
    let return_to = return_to.filter(|url| inner.is_allowed_return_to(url));
    let back_link = |url: &Url| Link { href: url.to_string(), text: "Return to the application" };

    let Some(session_id) = params.session_id.filter(|id| !id.is_empty()) else {
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, "The request has no session_id.", None);
    };
    let ended = lock(&inner.store).end_session(&session_id);
    inner.webhooks.wake();
    if ended.is_err() {
        let message = "No session has this id, so there was nothing to sign out of.";
        return pages::message(StatusCode::BAD_REQUEST, REFUSED, message, return_to.as_ref().map(back_link));
    }

    match (return_to, params.return_to) {
        (Some(url), _) => redirect(StatusCode::FOUND, &url),
        (None, None) => pages::message(StatusCode::OK, "You are signed out", "Your session has ended.", None),
        // No open redirect, even here: the session is over, but the browser stays put.
        (None, Some(_)) => pages::message(
            StatusCode::BAD_REQUEST,
            "You are signed out",
            "Your session has ended. The return address does not belong to a registered application, so the \
             stand-in does not send you there.",
            None,
        ),
    }
}

#[derive(Deserialize)]
struct RevokeSessionBody {
    session_id: Option<String>,
}

/// `POST /user_management/sessions/revoke` `{session_id}` with the API key: the session ends at once, so its refresh
/// tokens get `invalid_grant` from then on (docs/workos.md §2.1). WorkOS answers 200 with no documented body.
async fn revoke_session(State(inner): State<Arc<WorkosStandInState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = inner.controls.gate(Endpoint::RevokeSession).await {
        return response;
    }
    if !has_api_key(&inner, &headers) {
        return workos_error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key.");
    }
    let Ok(RevokeSessionBody { session_id: Some(session_id) }) = serde_json::from_slice(&body) else {
        return workos_error(StatusCode::BAD_REQUEST, "invalid_request", "The body must be {\"session_id\": \"…\"}.");
    };
    let ended = lock(&inner.store).end_session(&session_id);
    inner.webhooks.wake();
    match ended {
        Ok(()) => (StatusCode::OK, Json(json!({}))).into_response(),
        Err(_) => workos_error(StatusCode::NOT_FOUND, "entity_not_found", "No session has this id."),
    }
}

/// `Authorization: Bearer <API key>`, compared in constant time.
pub(super) fn has_api_key(inner: &WorkosStandInState, headers: &HeaderMap) -> bool {
    let sent = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    sent.and_then(|value| value.strip_prefix("Bearer ")).is_some_and(|key| {
        aws_lc_rs::constant_time::verify_slices_are_equal(key.as_bytes(), inner.api_key.expose().as_bytes()).is_ok()
    })
}

/// A wrong path is most often a base-URL join gone wrong (`//user_management/…`): name it, so the mistake shows.
async fn unknown_endpoint(method: Method, uri: Uri) -> Response {
    tracing::warn!(%method, path = uri.path(), "request to an endpoint the WorkOS stand-in does not have");
    let message = format!("The WorkOS stand-in has no endpoint {method} {}.", uri.path());
    workos_error(StatusCode::NOT_FOUND, "entity_not_found", &message)
}

// ---- response helpers ------------------------------------------------------------------------------------------

fn redirect(status: StatusCode, to: &Url) -> Response {
    match HeaderValue::from_str(to.as_str()) {
        Ok(location) => no_store((status, [(header::LOCATION, location)]).into_response()),
        Err(_) => pages::refusal(StatusCode::INTERNAL_SERVER_ERROR, "The redirect address could not be encoded."),
    }
}

pub(super) fn workos_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}
