//! Organizations over HTTP: the user's memberships, switching the active one, and an organization's settings page
//! with the Admin Portal.
//!
//! - `GET /api/organizations` (cookie or bearer): a bare JSON array of the user's **active** memberships as the
//!   database has them, `[{"id", "name", "role", "roles"}]` (`[]` when none; 404 `organizations_unavailable` without
//!   `DATABASE_URL`, like every other request for organizations then).
//! - `POST /organizations/switch` (form, CSRF) and `POST /api/organizations/switch` (JSON): switch the active
//!   space. `personal` is an app-side choice kept in the session; an organization needs an active membership in
//!   the database first (else 403 and nothing changes), then the session is refreshed at WorkOS with
//!   `organization_id` (as its `switchToOrganization` does). An organization that wants its own sign-in (SSO, MFA,
//!   or WorkOS naming a redirect URL) sends the browser through `/login?organization_id=…`.
//! - `GET /organizations/{id}`: the settings page, with the Admin Portal's four setups for the organization's
//!   admins (per the database, role slug `admin`); `POST /organizations/{id}/portal` (CSRF) makes a portal link
//!   at WorkOS and redirects there (303). The link is a credential: it is never logged or shown.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::audit::{RequestContext, Target};
use crate::lifecycle::store::ActiveMembership;
use crate::session::provider::ProviderError;
use crate::workos::WorkosError;
use crate::workos::management::PortalIntent;

use super::AppState;
use super::audit_events::{self, RequestMeta};
use super::error::AppError;
use super::extractors::{ApiJson, CsrfForm, CurrentSession, CurrentUser, OrganizationId};
use super::pages::{Banner, ContinuePage, render};
use super::spaces::{self, Requested};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/organizations", get(list))
        .route("/api/organizations/switch", post(switch_api))
        .route("/organizations/switch", get(super::todos_pages::to_the_list).post(switch_page))
        .route("/organizations/{id}", get(settings))
        .route("/organizations/{id}/portal", post(portal))
}

/// An organization id as one path segment.
pub fn path_segment(id: &str) -> String {
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');
    utf8_percent_encode(id, SEGMENT).to_string()
}

async fn list(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Vec<ActiveMembership>>, AppError> {
    let lifecycle = state.lifecycle.as_ref().ok_or(AppError::OrganizationsUnavailable)?;
    Ok(Json(lifecycle.active_memberships(user.id()).await?))
}

/// Switches `current`'s session to `requested`: the new session is stored by the response. Returns the membership
/// switched to (`None` for personal).
async fn switch(
    state: &AppState,
    current: &CurrentSession,
    requested: &Requested,
    context: &RequestContext,
) -> Result<Option<ActiveMembership>, AppError> {
    let user = &current.user;
    let organization_id = match requested {
        Requested::Personal => {
            let mut session = current.session.clone();
            session.personal = true;
            current.replace(session);
            return Ok(None);
        }
        Requested::Organization(id) => id,
        Requested::Active => {
            return Err(AppError::Unprocessable(
                "Name the organization to switch to (\"organization_id\"), or \"personal\".".to_owned(),
            ));
        }
    };
    // The database first: a member removed at WorkOS may still hold a token naming the organization.
    let membership = spaces::membership(state, user, organization_id).await?;
    let mut session = if current.session.organization_id.as_deref() == Some(organization_id.as_str()) {
        // Already the session's organization (the user had chosen Personal): no WorkOS call needed.
        current.session.clone()
    } else {
        state.sessions.switch_organization(&current.session, organization_id).await.map_err(|error| match error {
            ProviderError::OrganizationAuthRequired { .. } => {
                AppError::OrganizationSignInRequired { location: sign_in_location(organization_id, "/") }
            }
            // WorkOS does not count them a member (yet): the database was ahead of it.
            ProviderError::Declined(_) => AppError::NotAMember,
            ProviderError::GrantRejected(_) => AppError::Unauthorized,
            other => AppError::from(other),
        })?
    };
    session.personal = false;
    current.replace(session);
    let target = Target { kind: "organization", id: organization_id.clone(), name: membership.name.clone() };
    audit_events::audit(state, organization_id, "organization.switched", user, &[target], context).await;
    Ok(Some(membership))
}

/// Where the browser signs in to the organization: always the app's own sign-in with `organization_id`, so the
/// sign-in carries this browser's state and PKCE. (WorkOS may name an `authkit_redirect_url`; following it would
/// bring the browser back to `/callback` without a sign-in state of ours, which is refused.)
pub(super) fn sign_in_location(organization_id: &str, return_to: &str) -> String {
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!("/login?organization_id={}&return_to={}", encode(organization_id), encode(return_to))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    /// An organization's id, or `"personal"`/`null` for the personal space; absent is refused, so that an empty or
    /// mistaken body never changes the session's space.
    #[serde(default, deserialize_with = "super::todos_api::present")]
    organization_id: Option<Option<String>>,
}

#[derive(Serialize)]
struct Switched {
    organization: Option<ActiveMembership>,
}

async fn switch_api(
    State(state): State<AppState>,
    current: CurrentSession,
    RequestMeta(context): RequestMeta,
    ApiJson(body): ApiJson<SwitchBody>,
) -> Result<Json<Switched>, AppError> {
    let Some(organization_id) = body.organization_id else {
        return Err(AppError::Unprocessable(
            "Send \"organization_id\": an organization's id, or \"personal\" (or null) for your personal todos."
                .to_owned(),
        ));
    };
    let requested = match organization_id.as_deref().map(str::trim) {
        None | Some("personal") => Requested::Personal,
        Some("") => return Err(AppError::Unprocessable("\"organization_id\" is empty.".to_owned())),
        Some(id) => Requested::Organization(id.to_owned()),
    };
    let organization = switch(&state, &current, &requested, &context).await?;
    Ok(Json(Switched { organization }))
}

#[derive(Deserialize)]
struct SwitchForm {
    #[serde(default)]
    organization_id: String,
}

async fn switch_page(
    State(state): State<AppState>,
    current: CurrentSession,
    RequestMeta(context): RequestMeta,
    CsrfForm(form): CsrfForm<SwitchForm>,
) -> Result<Response, AppError> {
    let requested = Requested::from_param(Some(&form.organization_id));
    // An organization that wants its own sign-in is answered with a page linking to it (`error::render_page`).
    switch(&state, &current, &requested, &context).await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Template)]
#[template(path = "organization.html")]
struct SettingsPage {
    banner: Option<Banner>,
    name: String,
    id_segment: String,
    /// The membership's role slugs, the main one first ("member", or "admin, billing").
    roles: String,
    /// More than one role: the page says "roles".
    several_roles: bool,
    is_admin: bool,
    /// An impersonated session that may not change anything: the Admin Portal buttons are left out.
    read_only: bool,
    intents: Vec<IntentButton>,
    setup_done: bool,
    csrf_token: String,
}

struct IntentButton {
    value: &'static str,
    label: &'static str,
}

#[derive(Deserialize)]
struct SettingsQuery {
    setup: Option<String>,
}

/// The main role, then the others, as the settings page lists them; "member" when WorkOS named none.
fn role_list(membership: &ActiveMembership) -> Vec<&str> {
    let mut roles: Vec<&str> = membership.role.iter().map(String::as_str).collect();
    roles.extend(membership.roles.iter().map(String::as_str).filter(|role| Some(*role) != membership.role.as_deref()));
    if roles.is_empty() { vec!["member"] } else { roles }
}

/// `GET /organizations/{id}`: for the organization's active members; its admins get the Admin Portal buttons.
async fn settings(
    State(state): State<AppState>,
    user: CurrentUser,
    OrganizationId(id): OrganizationId,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    // A malformed query is not worth an error page.
    let query: Option<SettingsQuery> = uri.query().and_then(|q| serde_urlencoded::from_str(q).ok());
    let membership = spaces::membership(&state, &user, &id).await?;
    let banner = Banner::of(&state, &user);
    let roles = role_list(&membership);
    let page = SettingsPage {
        read_only: banner.as_ref().is_some_and(|banner| banner.read_only),
        banner,
        name: spaces::display_name(&membership),
        id_segment: path_segment(&id),
        roles: roles.join(", "),
        several_roles: roles.len() > 1,
        is_admin: membership.is_admin(),
        intents: PortalIntent::ALL
            .into_iter()
            .map(|intent| IntentButton { value: intent.as_str(), label: intent.label() })
            .collect(),
        setup_done: query.is_some_and(|q| q.setup.as_deref() == Some("done")),
        csrf_token: state.csrf.token(user.csrf_binding()),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct PortalForm {
    #[serde(default)]
    intent: String,
}

/// `POST /organizations/{id}/portal`: an Admin Portal link for one of the four setups, for admins only.
async fn portal(
    State(state): State<AppState>,
    user: CurrentUser,
    OrganizationId(id): OrganizationId,
    CsrfForm(form): CsrfForm<PortalForm>,
) -> Result<Response, AppError> {
    let intent = PortalIntent::parse(form.intent.trim()).ok_or_else(|| {
        AppError::Unprocessable("Choose SSO, directory sync, audit logs or domain verification.".to_owned())
    })?;
    let membership = spaces::membership(&state, &user, &id).await?;
    if !membership.is_admin() {
        return Err(AppError::Forbidden(format!(
            "Only admins of {} can open the Admin Portal.",
            spaces::display_name(&membership)
        )));
    }
    let lifecycle = state.lifecycle.as_ref().ok_or(AppError::OrganizationsUnavailable)?;
    let back = state
        .config
        .server
        .app_url
        .join(&format!("/organizations/{}", path_segment(&id)))
        .map_err(|error| AppError::Internal(format!("the settings page's address: {error}")))?;
    let mut done = back.clone();
    done.set_query(Some("setup=done"));
    let link =
        lifecycle.workos().generate_portal_link(&id, intent, &back, &done).await.map_err(|error| match error {
            WorkosError::Timeout
            | WorkosError::Connect(_)
            | WorkosError::RateLimited { .. }
            | WorkosError::Unavailable { .. }
            | WorkosError::Broken(_) => AppError::AuthUnavailable { retry_after: error.retry_after() },
            // The message never holds the link (there is none on failure), only WorkOS's reason.
            other => AppError::AuthUpstreamFailed(format!("the Admin Portal link could not be made: {other}")),
        })?;
    tracing::info!(organization_id = %id, intent = intent.as_str(), "opening the Admin Portal");
    // WorkOS's own portal domain is one the Content-Security-Policy lets forms lead to. A portal on the customer's
    // custom domain is not (browsers apply `form-action` to the redirect after this post): a page with the link.
    let link_origin = link.origin().ascii_serialization();
    if !state.sessions.provider().browser_origins().split_whitespace().any(|origin| origin == link_origin) {
        let page = ContinuePage {
            banner: Banner::of(&state, &user),
            heading: "Open the Admin Portal",
            message: "The Admin Portal is on your own domain. The link works for a few minutes.",
            href: link.as_str(),
            label: "Open the Admin Portal",
            back: back.path(),
        };
        return Ok(render(StatusCode::OK, &page));
    }
    let location = HeaderValue::from_str(link.as_str())
        .map_err(|_| AppError::Internal("the Admin Portal link is not a valid header value".to_owned()))?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}
