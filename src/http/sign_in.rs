//! Signing in and out over HTTP: `/login`, `/callback`, `/logout`, and `/api/me`.
//!
//! The steps themselves (state, PKCE, code exchange, verification) belong to the session
//! (`session::sign_in`); these handlers only translate between HTTP and those calls.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::lifecycle::store::ActiveMembership;

use askama::Template;
use serde::Deserialize;

use crate::audit::{Actor, RequestContext, Target};
use crate::identity::Impersonator;
use crate::session::provider::ProviderError;
use crate::session::sign_in::{Callback, CallbackOutcome, PendingSignIn, SignInError, SignInRequest};
use crate::session::{CookieRead, Session};
use crate::workos::OrganizationChoice;

use super::AppState;
use super::audit_events::{self, RequestMeta};
use super::csrf;
use super::error::AppError;
use super::extractors::{ApiQuery, CurrentUser, checked_form};
use super::pages::{Banner, LogoutPage, render};
use super::spaces;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route(crate::config::CALLBACK_PATH, get(callback))
        .route("/login/organization", get(selection_page).post(select_organization))
        .route("/logout", get(logout_page).post(logout))
        .route("/api/me", get(me))
}

/// `GET /login`: binds a sign-in to this browser and sends it to the identity provider.
///
/// The organization choices left unfinished in this browser (`/login/organization`) are dropped here and at
/// sign-out, and another user's at every finished sign-in (every one at a finished impersonation): each is
/// someone's sign-in, and on a shared browser the next person must not be able to finish it.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(request): ApiQuery<SignInRequest>,
) -> Result<Response, AppError> {
    if let Some(problem) = request.too_long() {
        return Err(AppError::BadRequest(problem));
    }
    // Login CSRF: a link from elsewhere could send a browser here with an organization whose identity provider the
    // link's author runs (any customer's admin can set one up in the Admin Portal), which answers at once for the
    // author's own account, and the victim would go on signed in as the author, typing into the author's todos.
    // Such a sign-in goes on only from one of this app's own pages (its links to `/login?organization_id=…` are
    // same-origin), or once the person confirms it on one (OWASP CSRF Prevention Cheat Sheet, "Login CSRF"). Not
    // only other sites' pages: a link opened from a mail or chat application is `Sec-Fetch-Site: none`, as a typed
    // one is, and a browser without Fetch Metadata sends nothing on such a navigation.
    if request.routes_to_an_identity_provider() && !csrf::from_own_page(&headers, &state.origin) {
        return Ok(render(StatusCode::OK, &ConfirmSignInPage::of(&request)));
    }
    let start = state.sessions.begin_sign_in(&headers, &request)?;
    let mut response = found(start.authorization_url.as_str(), start.set_cookies);
    append_cookies(&mut response, state.sessions.drop_pending_sign_ins(&headers));
    Ok(response)
}

/// `GET /callback`: where the identity provider sends the browser back with a code (or an error).
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    RequestMeta(request_context): RequestMeta,
    callback: Result<ApiQuery<Callback>, AppError>,
) -> Response {
    // A callback answering one of this browser's sign-ins spends that sign-in's state cookie whatever happens next,
    // a malformed one included (its `state` read from the raw query, as the parse may have failed); the browser's
    // other sign-ins under way (other tabs) are left to their own callbacks.
    let query = query.unwrap_or_default();
    let returned_states: Vec<_> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "state")
        .map(|(_, value)| value)
        .collect();
    let clear_state = state.sessions.spent_sign_in_state(&headers, returned_states.iter().map(AsRef::as_ref));
    let outcome = match callback {
        Ok(ApiQuery(callback)) => state.sessions.finish_sign_in(&headers, callback).await.map_err(AppError::from),
        Err(malformed) => Err(malformed),
    };
    let mut response = match outcome {
        Ok(CallbackOutcome::SignedIn(signed_in)) => {
            audit_sign_in(&state, &signed_in.session, &request_context).await;
            let mut response = found(&signed_in.return_to, signed_in.set_cookies);
            let dropped = state.sessions.drop_pending_sign_ins_after_sign_in(&headers, &signed_in.session, None);
            append_cookies(&mut response, dropped);
            response
        }
        Ok(CallbackOutcome::ChooseOrganization { selection, set_cookies }) => {
            found(&selection_page_for(&selection), set_cookies)
        }
        Err(error) => error.into_response(),
    };
    append_cookies(&mut response, clear_state);
    response
}

const SELECTION_PAGE: &str = "/login/organization";

/// The address of the selection page for the pending sign-in `selection`.
fn selection_page_for(selection: &str) -> String {
    let selection = url::form_urlencoded::byte_serialize(selection.as_bytes()).collect::<String>();
    format!("{SELECTION_PAGE}?selection={selection}")
}

/// "Continue to sign in?": a sign-in through an organization's identity provider (or with an email filled in) that a
/// link from outside the app asked for, repeated as a link on this app's own page (see [`login`]). A link, not a
/// form: browsers apply the Content-Security-Policy's `form-action` to the redirects after a form is sent, and
/// `/login` redirects to the provider's sign-in domain, which it cannot name (AuthKit's, an organization's IdP).
#[derive(Template)]
#[template(path = "confirm_sign_in.html")]
struct ConfirmSignInPage<'a> {
    banner: Option<Banner>,
    organization_id: Option<&'a str>,
    login_hint: Option<&'a str>,
    /// `/login` with the request's parameters again.
    continue_to: String,
}

impl<'a> ConfirmSignInPage<'a> {
    fn of(request: &'a SignInRequest) -> Self {
        let fields = [
            ("organization_id", &request.organization_id),
            ("login_hint", &request.login_hint),
            ("screen_hint", &request.screen_hint),
            ("return_to", &request.return_to),
        ];
        Self {
            banner: None,
            organization_id: crate::session::sign_in::present(&request.organization_id),
            login_hint: crate::session::sign_in::present(&request.login_hint),
            continue_to: format!(
                "/login?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields.into_iter().filter_map(|(name, value)| Some((name, value.as_deref()?))))
                    .finish()
            ),
        }
    }
}

/// `user.signed_in` for the organization a sign-in lands in, queued as every request's events are (bounded: a slow
/// outbox must not hold up a sign-in whose code WorkOS has already spent).
async fn audit_sign_in(state: &AppState, session: &Session, context: &RequestContext) {
    let Some(organization_id) = session.organization_id.as_deref() else { return };
    let actor = Actor {
        id: session.user.id.clone(),
        name: session.user.display_name(),
        impersonator: session.impersonator.as_ref().map(|impersonator| impersonator.email.clone()),
    };
    let target = Target { kind: "organization", id: organization_id.to_owned(), name: None };
    audit_events::queue_audit(state, None, organization_id, "user.signed_in", actor, &[target], context).await;
}

#[derive(Template)]
#[template(path = "select_organization.html")]
struct SelectionPage {
    banner: Option<Banner>,
    /// Where the form goes: this page's own address, naming its pending sign-in.
    action: String,
    user_name: Option<String>,
    organizations: Vec<OrganizationChoice>,
    csrf_token: String,
}

impl SelectionPage {
    /// Each choice's name as the pages show organizations ([`super::spaces::organization_label`]).
    fn labelled(organizations: Vec<OrganizationChoice>) -> Vec<OrganizationChoice> {
        organizations
            .into_iter()
            .map(|choice| OrganizationChoice { name: super::spaces::organization_label(Some(&choice.name)), ..choice })
            .collect()
    }
}

/// The selection page's query: which of the browser's pending sign-ins it is for (`callback` sends the browser to
/// it). Pages of the previous version name none; their one pending sign-in is read then.
#[derive(Debug, Default, Deserialize)]
struct SelectionQuery {
    selection: Option<String>,
}

impl SelectionQuery {
    /// The selection id, empty for the previous version's pages (see [`SessionManager::pending_sign_in`]).
    ///
    /// [`SessionManager::pending_sign_in`]: crate::session::SessionManager::pending_sign_in
    fn id(&self) -> &str {
        self.selection.as_deref().unwrap_or_default()
    }

    /// The page's own address, for its form.
    fn page(&self) -> String {
        match self.id() {
            "" => SELECTION_PAGE.to_owned(),
            id => selection_page_for(id),
        }
    }

    fn pending_sign_in(&self, state: &AppState, headers: &HeaderMap) -> Option<PendingSignIn> {
        state.sessions.pending_sign_in(headers, self.id())
    }
}

/// `GET /login/organization?selection=…`: the organizations the sign-in may continue in, to pick one. When the
/// pending sign-in could not keep WorkOS's list, they are read from WorkOS now; if that fails, the error page says
/// so and the pending sign-in stays, so reloading the page tries again.
///
/// A choice already made (the page reloaded, or reached again with Back, once it signed the browser in) leads home:
/// "sign in again" would be wrong for someone signed in, and `/login` would drop their other tabs' choices.
async fn selection_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SelectionQuery>,
) -> Result<Response, AppError> {
    let Some(pending) = query.pending_sign_in(&state, &headers) else {
        return if signed_in(&state, &headers) { Ok(found("/", Vec::new())) } else { Err(AppError::SignInExpired) };
    };
    let organizations = state.sessions.selectable_organizations(&pending).await?;
    let page = SelectionPage {
        banner: None,
        action: query.page(),
        user_name: pending.user_name.clone(),
        csrf_token: state.csrf.token(&pending.csrf_nonce),
        organizations: SelectionPage::labelled(organizations),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct SelectionForm {
    #[serde(default)]
    organization_id: String,
}

/// `POST /login/organization?selection=…`: finishes the sign-in in the organization picked (the
/// organization-selection grant). The form's CSRF token is bound to the pending sign-in, since there is no session
/// yet. Only that pending sign-in is spent: the browser's others (other tabs) stay for their own pages.
async fn select_organization(
    State(state): State<AppState>,
    headers: HeaderMap,
    RequestMeta(context): RequestMeta,
    ApiQuery(query): ApiQuery<SelectionQuery>,
    request: axum::extract::Request,
) -> Response {
    // Sent again once it signed the browser in (Back, then the form again): home, as the page does.
    let Some(pending) = query.pending_sign_in(&state, &headers) else {
        return if signed_in(&state, &headers) {
            see_other("/", Vec::new())
        } else {
            AppError::SignInExpired.into_response()
        };
    };
    let body = match checked_form(request, &state, &pending.csrf_nonce).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SelectionForm>(&body) else {
        return AppError::BadRequest("The form is incomplete.".to_owned()).into_response();
    };
    let spent = || state.sessions.spent_pending_sign_in(&headers, query.id());
    match state.sessions.finish_organization_selection(&headers, &pending, &form.organization_id).await {
        Ok(signed_in) => {
            // A double click signs in once: the first of its requests to get here records it.
            if signed_in.record.claim() {
                audit_sign_in(&state, &signed_in.session, &context).await;
            }
            let mut cookies = signed_in.set_cookies;
            cookies.extend(state.sessions.drop_pending_sign_ins_after_sign_in(
                &headers,
                &signed_in.session,
                Some(query.id()),
            ));
            see_other(&signed_in.return_to, cookies)
        }
        // Picking again may work: the pending sign-in stays.
        Err(error @ (SignInError::NotOffered | SignInError::Provider(ProviderError::Unavailable { .. }))) => {
            AppError::from(error).into_response()
        }
        // The organization picked wants its own sign-in (it enforces SSO or MFA): a fresh sign-in into it, which
        // the hosted AuthKit takes through that step; signing in again the ordinary way would only bring the same
        // choice back. A link, not a redirect after this form post (see `error::render_page`).
        Err(SignInError::Provider(ProviderError::OrganizationAuthRequired { .. })) => {
            let location = super::organizations::sign_in_location(&form.organization_id, &pending.return_to);
            let mut response = AppError::OrganizationSignInRequired { location }.into_response();
            append_cookies(&mut response, spent());
            response
        }
        // Anything else spent or broke the pending sign-in: start over. That includes WorkOS refusing the
        // organization (not a member, no such organization; `ProviderError::OrganizationRefused`, which says so):
        // WorkOS does not document whether a refused pick spends the pending token, so none is relied on.
        Err(error) => {
            let mut response = AppError::from(error).into_response();
            append_cookies(&mut response, spent());
            response
        }
    }
}

/// Whether the browser holds a session cookie (opened, not checked: the page it is sent to checks it).
fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    state.sessions.open(headers).is_some()
}

/// A 303 (after a form post) to `location` carrying `set_cookies`.
fn see_other(location: &str, set_cookies: Vec<HeaderValue>) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    append_cookies(&mut response, set_cookies);
    response
}

/// `GET /logout`: a confirmation page, because signing out must be a POST (a link or an `<img>` on another site
/// must not be able to sign anyone out).
///
/// Built from the sealed cookie as `POST /logout` opens it, without checking or refreshing the tokens: with an
/// expired access token and the provider down, resolving the session answers 503, and the user could not get the
/// CSRF token that signing out needs just when they may want out. The token is bound to the session the cookie
/// holds, which is the binding `POST /logout` checks.
///
/// It does ask whether the session has already ended (signed out in another tab, revoked, its user deleted):
/// then there is nothing left to sign out of, and the page says so. When the database cannot tell (after the
/// pool's wait for a connection, 3 s), the page offers the sign-out all the same.
async fn logout_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_out = || {
        let mut response = render(StatusCode::OK, &LogoutPage { banner: None, email: None, csrf_token: String::new() });
        // A cookie that holds no session, or whose session has ended, is of no use to anyone: delete it, as
        // resolving it would have.
        append_cookies(&mut response, state.sessions.clear(&headers));
        response
    };
    let session = match state.sessions.read(&headers) {
        CookieRead::Session(session, _) => session,
        CookieRead::Unreadable => {
            unreadable_signed_out();
            return signed_out();
        }
        CookieRead::Absent | CookieRead::NotASession => return signed_out(),
    };
    let revocations = state.sessions.revocations();
    if let Ok(true) = revocations.has_ended(&session.user.id, session.session_id.as_deref()).await {
        return signed_out();
    }
    let user = CurrentUser(std::sync::Arc::new(session.principal()));
    let page = LogoutPage {
        banner: Banner::of(&state, &user),
        email: Some(user.user.email.clone().unwrap_or_else(|| user.id().to_owned())),
        csrf_token: state.csrf.token(session.csrf_binding()),
    };
    render(StatusCode::OK, &page)
}

/// `POST /logout`: clears the session cookie and ends the provider's session too, so the next sign-in asks again.
///
/// The session is opened without checking or refreshing its tokens: signing out must work when the access token
/// has long expired or the provider is down. The CSRF check still needs a session to tie the token to.
async fn logout(State(state): State<AppState>, headers: HeaderMap, request: axum::extract::Request) -> Response {
    let signed_out = |destination: &str, mut cookies: Vec<HeaderValue>| {
        cookies.extend(state.sessions.drop_pending_sign_ins(&headers));
        found(destination, cookies)
    };
    let session = match state.sessions.read(&headers) {
        CookieRead::Session(session, _) => session,
        CookieRead::Unreadable => {
            unreadable_signed_out();
            return signed_out("/", state.sessions.clear(&headers));
        }
        CookieRead::Absent | CookieRead::NotASession => return signed_out("/", state.sessions.clear(&headers)),
    };
    if let Err(error) = checked_form(request, &state, session.csrf_binding()).await {
        return error.into_response();
    }
    let sign_out = state.sessions.sign_out(&session, &headers, &state.config.server.app_url).await;
    signed_out(&sign_out.destination, sign_out.set_cookies)
}

/// A sign-out with a session cookie this replica cannot open (sealed with a cookie password it lacks, or forged)
/// still deletes it: the cookie lives only in this browser, so that signs the browser out everywhere. What it cannot
/// do is end the provider's session, which needs the tokens inside: said in the log, as it may be a replica
/// configured with another password.
fn unreadable_signed_out() {
    tracing::info!(
        "signed out with a session cookie this app's keys do not open: the cookie is deleted, but the provider's \
         session could not be ended"
    );
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
    /// From the session, or for a bearer token from its `email`/`user_email` claim or WorkOS (null when unknown).
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    /// The active organization's id (null when personal).
    organization_id: Option<String>,
    /// The active organization as the database has it (null when personal, or no longer a member).
    organization: Option<ActiveMembership>,
    /// Set while support staff impersonate the user.
    impersonator: Option<Impersonator>,
}

async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Me>, AppError> {
    let organization = match (state.lifecycle.is_some(), user.active_organization()) {
        (true, Some(id)) => spaces::memberships(&state, &user).await?.into_iter().find(|m| m.id == id),
        _ => None,
    };
    let principal = std::sync::Arc::unwrap_or_clone(user.0);
    let organization_id = principal.active_organization().map(str::to_owned);
    Ok(Json(Me {
        id: principal.user.id,
        email: principal.user.email,
        first_name: principal.user.first_name,
        last_name: principal.user.last_name,
        organization_id,
        organization,
        impersonator: principal.impersonator,
    }))
}
