//! The WorkOS User Management calls authbridge makes, over one pooled HTTP client.
//!
//! Only a few calls are needed (build the authorize URL, exchange a code, refresh, fetch the JWKS, the logout
//! URL), so this is a thin typed client over reqwest rather than the official SDK, which pins other versions of
//! reqwest and jsonwebtoken. The contract it follows is written down in `docs/workos.md`.
//!
//! Every failure becomes one [`WorkosError`]; the important split is between "the user's session or code is no
//! good" ([`WorkosError::InvalidGrant`]) and everything else (WorkOS down, rate limiting, our own credentials
//! refused), because the first ends a session and the others must never do so.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{Secret, WorkosConfig};
use crate::identity::{Impersonator, UserProfile};
use crate::outbound::{self, Failure, Upstream};

/// Cloning is cheap: one shared connection pool and the endpoint URLs, formed once.
#[derive(Clone)]
pub struct WorkosClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    client_id: String,
    api_key: Secret,
    authorize_url: Url,
    authenticate_url: Url,
    logout_url: Url,
    revoke_url: Url,
    jwks_url: Url,
    /// `WORKOS_API_BASE_URL`, for the management calls (`management.rs`), which form their URLs per call.
    base_url: Url,
}

/// What the browser is sent to WorkOS with. `state` and `code_challenge` come from the login flow.
#[derive(Debug, Default)]
pub struct AuthorizeParams<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub code_challenge: &'a str,
    /// Routes an enterprise user straight to their organization's SSO; without it, AuthKit's hosted login.
    pub organization_id: Option<&'a str>,
    pub login_hint: Option<&'a str>,
    pub screen_hint: Option<&'a str>,
}

/// A successful `authenticate` answer, for both the code and the refresh grant.
#[derive(Clone, Deserialize)]
pub struct AuthResponse {
    pub user: UserProfile,
    #[serde(default)]
    pub organization_id: Option<String>,
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub impersonator: Option<Impersonator>,
}

// Tokens are credentials: keep them out of `{:?}`, which is what ends up in logs and panics.
impl fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthResponse")
            .field("user", &self.user)
            .field("organization_id", &self.organization_id)
            .field("impersonator", &self.impersonator)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkosError {
    /// The code or refresh token is invalid, expired or already used: the sign-in or the session is over.
    #[error("WorkOS refused the grant: {description}")]
    InvalidGrant { description: String },
    /// WorkOS refused the request for another reason (bad client credentials, a required extra step such as
    /// `email_verification_required`). Not transient: retrying the same request will not help.
    #[error("WorkOS refused the request ({status}, {code}): {message}")]
    Rejected { status: u16, code: String, message: String },
    #[error("WorkOS is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("WorkOS answered {status}")]
    Unavailable { status: u16 },
    /// The connection broke before WorkOS's whole answer came (a reset, a body cut short): like a 5xx for the
    /// caller, told apart in the logs, where "WorkOS answered 502" would send an on-call looking for a 502 that
    /// nobody sent.
    #[error("the connection to WorkOS broke before its answer: {0}")]
    Broken(String),
    #[error("WorkOS did not answer in time")]
    Timeout,
    /// With reqwest's reason and where it went (no path or query: [`outbound::message_without_url`]).
    #[error("could not connect to WorkOS: {0}")]
    Connect(String),
    #[error("WorkOS sent a response we could not read: {0}")]
    Malformed(String),
    /// The code exchange needs the user to pick one of several organizations first (403
    /// `organization_selection_required`, docs/workos.md §1.3), to be finished with the organization-selection
    /// grant and the pending token.
    #[error("WorkOS asks the user to choose an organization")]
    OrganizationSelectionRequired(Box<PendingSelection>),
    /// A sign-in step is needed first (`sso_required`, `mfa_challenge`, `email_verification_required`… or an answer
    /// carrying an `authkit_redirect_url`): the browser must go through the authorization URL (with
    /// `organization_id`, for an organization's own sign-in).
    #[error("WorkOS requires the user to sign in to the organization ({code})")]
    OrganizationAuthRequired { code: String, redirect_url: Option<String> },
}

/// What an `organization_selection_required` answer carries. The pending token is a credential (it finishes the
/// sign-in): it stays out of `{:?}` and never leaves the server (sealed in a cookie only).
#[derive(Clone)]
pub struct PendingSelection {
    pub pending_authentication_token: Secret,
    pub organizations: Vec<OrganizationChoice>,
    pub user: Option<UserProfile>,
}

impl fmt::Debug for PendingSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSelection")
            .field("organizations", &self.organizations)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One organization the user may pick at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationChoice {
    pub id: String,
    pub name: String,
}

impl OrganizationChoice {
    /// The picker's order: by name, as a person looks for one (WorkOS's order is by membership, newest first).
    pub fn by_name(mut choices: Vec<Self>) -> Vec<Self> {
        choices.sort_by_cached_key(|choice| choice.name.to_lowercase());
        choices
    }
}

/// The `organization_selection_required` body (docs/workos.md §1.3).
#[derive(Deserialize)]
struct SelectionBody {
    pending_authentication_token: String,
    #[serde(default)]
    organizations: Vec<OrganizationChoice>,
    #[serde(default)]
    user: Option<UserProfile>,
}

impl WorkosError {
    /// How long a client should wait before trying again, for `Retry-After`.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::RateLimited { retry_after: Some(after) } => *after,
            _ => outbound::ASSUMED_RETRY_AFTER,
        }
    }

    fn from_reqwest(error: reqwest::Error) -> Self {
        match Failure::of(&error) {
            Failure::Timeout => Self::Timeout,
            Failure::Connect => Self::Connect(outbound::message_without_url(&error)),
            Failure::Decode => Self::Malformed(outbound::message_without_url(&error)),
            // Body or protocol errors mid-response behave like an outage for the caller.
            Failure::Broken => Self::Broken(outbound::message_without_url(&error)),
        }
    }
}

/// Error bodies come in two shapes (docs/workos.md §1.3, §8.1): OAuth `{error, error_description}` and `{code, message}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    code: Option<String>,
    message: Option<String>,
    /// Not documented; the Next.js SDK follows it when a switch needs the user to sign in again (§1.3).
    authkit_redirect_url: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "grant_type", rename_all = "snake_case")]
enum Grant<'a> {
    AuthorizationCode {
        code: &'a str,
        code_verifier: &'a str,
    },
    RefreshToken {
        refresh_token: &'a str,
        /// Present: re-scope the session to this organization (switching, §1.5); absent: keep its organization.
        #[serde(skip_serializing_if = "Option::is_none")]
        organization_id: Option<&'a str>,
    },
    #[serde(rename = "urn:workos:oauth:grant-type:organization-selection")]
    OrganizationSelection {
        pending_authentication_token: &'a str,
        organization_id: &'a str,
    },
}

#[derive(Serialize)]
struct AuthenticateBody<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    #[serde(flatten)]
    grant: Grant<'a>,
}

impl WorkosClient {
    pub fn new(config: &WorkosConfig) -> Result<Self, WorkosError> {
        let http = outbound::client(config.connect_timeout, config.request_timeout)
            .map_err(|e| WorkosError::Malformed(format!("cannot build the HTTP client: {e}")))?;
        let endpoint = |segments: &[&str]| {
            outbound::endpoint(&config.api_base_url, segments)
                .ok_or_else(|| WorkosError::Malformed("WORKOS_API_BASE_URL cannot be a base URL".to_owned()))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                authorize_url: endpoint(&["user_management", "authorize"])?,
                authenticate_url: endpoint(&["user_management", "authenticate"])?,
                logout_url: endpoint(&["user_management", "sessions", "logout"])?,
                revoke_url: endpoint(&["user_management", "sessions", "revoke"])?,
                jwks_url: endpoint(&["sso", "jwks", &config.client_id])?,
                base_url: config.api_base_url.clone(),
                http,
                client_id: config.client_id.clone(),
                api_key: config.api_key.clone(),
            }),
        })
    }

    pub fn authorization_url(&self, params: &AuthorizeParams<'_>) -> Url {
        let mut url = self.inner.authorize_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.inner.client_id)
                .append_pair("redirect_uri", params.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("state", params.state)
                .append_pair("code_challenge", params.code_challenge)
                .append_pair("code_challenge_method", "S256")
                // Always AuthKit, even into one organization: `organization_id` alone would select that
                // organization's SSO connection, which fails for an organization that requires MFA but has no SSO
                // (or has several connections). AuthKit with the organization handles every case, as
                // authkit-nextjs's switchToOrganization sends it (docs/workos.md §1.1).
                .append_pair("provider", "authkit");
            if let Some(organization_id) = params.organization_id {
                query.append_pair("organization_id", organization_id);
            }
            if let Some(hint) = params.login_hint {
                query.append_pair("login_hint", hint);
            }
            if let Some(hint) = params.screen_hint {
                query.append_pair("screen_hint", hint);
            }
        }
        url
    }

    pub fn logout_url(&self, session_id: &str, return_to: &Url) -> Url {
        let mut url = self.inner.logout_url.clone();
        url.query_pairs_mut().append_pair("session_id", session_id).append_pair("return_to", return_to.as_str());
        url
    }

    /// Ends a WorkOS session server-side (docs/workos.md §2.1): its refresh token is refused from then on, so a
    /// copy of the session cookie can never be refreshed again. Any 2xx is success (the body is not documented).
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), WorkosError> {
        #[derive(Serialize)]
        struct RevokeBody<'a> {
            session_id: &'a str,
        }
        let inner = &self.inner;
        let revoke = inner
            .http
            .post(inner.revoke_url.clone())
            .bearer_auth(inner.api_key.expose())
            .json(&RevokeBody { session_id });
        let response = outbound::observed(Upstream::Workos, revoke.send()).await.map_err(WorkosError::from_reqwest)?;
        if response.status().is_success() {
            return Ok(());
        }
        read_json::<serde::de::IgnoredAny>(response).await.map(|_| ())
    }

    #[cfg(test)]
    pub fn jwks_url(&self) -> &Url {
        &self.inner.jwks_url
    }

    pub async fn authenticate_with_code(&self, code: &str, code_verifier: &str) -> Result<AuthResponse, WorkosError> {
        self.authenticate(Grant::AuthorizationCode { code, code_verifier }).await
    }

    /// The refresh grant; with `organization_id`, the session is switched to that organization.
    pub async fn authenticate_with_refresh_token(
        &self,
        refresh_token: &str,
        organization_id: Option<&str>,
    ) -> Result<AuthResponse, WorkosError> {
        self.authenticate(Grant::RefreshToken { refresh_token, organization_id }).await
    }

    /// Finishes a sign-in that answered `organization_selection_required`, in the organization the user picked.
    pub async fn authenticate_with_organization_selection(
        &self,
        pending_authentication_token: &Secret,
        organization_id: &str,
    ) -> Result<AuthResponse, WorkosError> {
        let pending_authentication_token = pending_authentication_token.expose();
        self.authenticate(Grant::OrganizationSelection { pending_authentication_token, organization_id }).await
    }

    /// Never retried: codes and refresh tokens are single-use, so a blind retry after a lost response would
    /// turn a network blip into `invalid_grant`.
    async fn authenticate(&self, grant: Grant<'_>) -> Result<AuthResponse, WorkosError> {
        let inner = &self.inner;
        let body = AuthenticateBody { client_id: &inner.client_id, client_secret: inner.api_key.expose(), grant };
        let authenticate = inner.http.post(inner.authenticate_url.clone()).json(&body).send();
        let response = outbound::observed(Upstream::Workos, authenticate).await.map_err(WorkosError::from_reqwest)?;
        read_json(response).await
    }

    /// `GET {base}/<segments>?<query>` with the API key, its JSON answer read as `T`. Each segment is
    /// percent-encoded, so an id can never add path components. For the management calls in `management.rs`.
    pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, WorkosError> {
        self.get_json_with_headers(segments, query).await.map_err(|(error, _)| error)
    }

    /// `GET` of a single object by `segments`; `None` when WorkOS does not know it (404).
    pub(super) async fn get_found<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<Option<T>, WorkosError> {
        match self.get_json(segments, &[]).await {
            Ok(found) => Ok(Some(found)),
            Err(WorkosError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// [`WorkosClient::get_json`], with the headers of a refusal (empty otherwise): to tell WorkOS's own answers
    /// (with its request id) from a gateway's.
    pub(super) async fn get_json_with_headers<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, (WorkosError, reqwest::header::HeaderMap)> {
        let inner = &self.inner;
        let no_headers = reqwest::header::HeaderMap::new;
        let url = outbound::endpoint(&inner.base_url, segments).ok_or_else(|| {
            (WorkosError::Malformed("WORKOS_API_BASE_URL cannot be a base URL".to_owned()), no_headers())
        })?;
        let request = inner.http.get(url).bearer_auth(inner.api_key.expose()).query(query);
        let response = outbound::observed(Upstream::Workos, request.send())
            .await
            .map_err(|error| (WorkosError::from_reqwest(error), no_headers()))?;
        let headers = if response.status().is_success() { no_headers() } else { response.headers().clone() };
        read_json(response).await.map_err(|error| (error, headers))
    }

    /// `POST {base}/<segments>` with the API key and a JSON body (and an `Idempotency-Key` when given), its JSON
    /// answer read as `T`. For the management calls in `management.rs`; never retried here.
    pub(super) async fn post_json<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
        idempotency_key: Option<&str>,
    ) -> Result<T, WorkosError> {
        let inner = &self.inner;
        let url = outbound::endpoint(&inner.base_url, segments)
            .ok_or_else(|| WorkosError::Malformed("WORKOS_API_BASE_URL cannot be a base URL".to_owned()))?;
        let mut request = inner.http.post(url).bearer_auth(inner.api_key.expose()).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = outbound::observed(Upstream::Workos, request.send()).await.map_err(WorkosError::from_reqwest)?;
        read_json(response).await
    }

    pub async fn fetch_jwks(&self) -> Result<JwkSet, WorkosError> {
        let jwks = self.inner.http.get(self.inner.jwks_url.clone()).send();
        let response = outbound::observed(Upstream::Workos, jwks).await.map_err(WorkosError::from_reqwest)?;
        read_json(response).await
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, WorkosError> {
    let status = response.status();
    if status.is_success() {
        let bytes = response.bytes().await.map_err(WorkosError::from_reqwest)?;
        return super::objects::from_json(&bytes).map_err(|error| WorkosError::Malformed(error.to_string()));
    }
    let retry_after = outbound::retry_after(response.headers());
    // A body that is not JSON (a proxy's HTML error page) still yields a useful status-based error.
    let bytes = response.bytes().await.unwrap_or_default();
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    if body.code.as_deref() == Some("organization_selection_required") {
        return Err(match super::objects::from_json::<SelectionBody>(&bytes) {
            Ok(selection) => WorkosError::OrganizationSelectionRequired(Box::new(PendingSelection {
                pending_authentication_token: Secret::new(selection.pending_authentication_token),
                organizations: selection.organizations,
                user: selection.user,
            })),
            Err(error) => WorkosError::Malformed(format!("an organization_selection_required answer: {error}")),
        });
    }
    Err(classify(status, body, retry_after))
}

/// WorkOS refusing the organization a request named (docs/workos.md §1.3): `organization_membership_not_found`,
/// `organization_not_found`, or the code-less 404 "Organization not found: …" (whatever code the client filled in
/// for it). Any other 404 (a wrong `WORKOS_API_BASE_URL`, a proxy) is not about the organization. Shared by the
/// sign-in and refresh (`session::workos`) and the Audit Log deliverer, which must read WorkOS's answers alike.
pub fn is_organization_refusal(status: u16, code: &str, message: &str) -> bool {
    matches!(code, "organization_membership_not_found" | "organization_not_found")
        || (status == 404 && message.starts_with("Organization not found"))
}

/// The codes with which WorkOS asks the user to go through a sign-in step before it issues tokens (docs
/// `/reference/authkit/authentication-errors`; node `authentication.exception.ts`): the hosted AuthKit handles each
/// of them, so the browser is sent through the authorization URL (with the organization's id, for a switch).
fn is_sign_in_step(code: &str) -> bool {
    matches!(
        code,
        "sso_required"
            | "mfa_enrollment"
            | "mfa_challenge"
            | "mfa_verification"
            | "email_verification_required"
            | "organization_authentication_methods_required"
            | "authentication_method_not_allowed"
            | "radar_challenge"
            | "radar_email_challenge"
            | "radar_sms_challenge"
    )
}

fn classify(status: StatusCode, body: ErrorBody, retry_after: Option<Duration>) -> WorkosError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return WorkosError::RateLimited { retry_after };
    }
    if status.is_server_error() {
        return WorkosError::Unavailable { status: status.as_u16() };
    }
    let code = body.code.as_deref().or(body.error.as_deref()).unwrap_or_default();
    // The one documented answer without a code: the organization picked at selection enforces SSO.
    let must_use_sso = code.is_empty() && body.message.as_deref().is_some_and(|m| m.starts_with("Must use SSO"));
    if is_sign_in_step(code) || must_use_sso || body.authkit_redirect_url.is_some() {
        return WorkosError::OrganizationAuthRequired {
            code: if must_use_sso { "sso_required".to_owned() } else { code.to_owned() },
            redirect_url: body.authkit_redirect_url,
        };
    }
    // The Node SDK's tests see invalid_grant as 400, the Rust SDK's as 401: both mean the grant is dead.
    if body.error.as_deref() == Some("invalid_grant") {
        return WorkosError::InvalidGrant {
            description: body.error_description.unwrap_or_else(|| "the grant is invalid or expired".to_owned()),
        };
    }
    WorkosError::Rejected {
        status: status.as_u16(),
        code: body.code.or(body.error).unwrap_or_else(|| "unknown".to_owned()),
        message: body.message.or(body.error_description).unwrap_or_else(|| status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> WorkosClient {
        WorkosClient::new(&WorkosConfig {
            api_key: Secret::new("sk_test_x"),
            client_id: "client_1/../x".to_owned(),
            redirect_uri: Url::parse("http://localhost:3000/callback").expect("url"),
            api_base_url: Url::parse(base).expect("url"),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        })
        .expect("client")
    }

    /// A connection that breaks before any answer (WorkOS, or something in between, resetting it) is told apart from
    /// an answer: "WorkOS answered 502" in the log would send an on-call looking for a 502 nobody sent.
    #[tokio::test]
    async fn a_connection_broken_before_the_answer_is_not_called_an_answer() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                // Dropped unanswered: the connection closes under the request.
            }
        });
        let error = client(&base).check_api_key().await.expect_err("no answer");
        assert!(matches!(error, WorkosError::Broken(_)), "{error:?}");
        assert!(!error.to_string().contains("answered"), "{error}");
    }

    /// The management calls (the Events API, memberships, users, the Admin Portal, Audit Logs) are WorkOS calls in
    /// `/metrics` like the sign-in's.
    #[test]
    fn management_calls_are_counted_as_calls_to_workos() {
        let counted = crate::outbound::counting::calls_recorded(Upstream::Workos, |base| async move {
            let workos = client(&base);
            let read: Result<serde_json::Value, _> = workos.get_json(&["organizations"], &[]).await;
            assert!(read.is_ok(), "{read:?}");
            let sent: Result<serde_json::Value, _> =
                workos.post_json(&["audit_logs", "events"], &serde_json::json!({}), Some("key")).await;
            assert!(sent.is_ok(), "{sent:?}");
        });
        assert_eq!(counted, 2.0);
    }

    #[test]
    fn authorization_url_carries_every_parameter_encoded() {
        let url = client("https://api.workos.com").authorization_url(&AuthorizeParams {
            redirect_uri: "http://localhost:3000/callback",
            state: "st&ate",
            code_challenge: "abc",
            login_hint: Some("a+b@example.com"),
            ..Default::default()
        });
        assert_eq!(url.path(), "/user_management/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("provider"), Some("authkit"));
        assert_eq!(get("state"), Some("st&ate"));
        assert_eq!(get("login_hint"), Some("a+b@example.com"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("organization_id"), None);
    }

    #[test]
    fn an_organization_scopes_the_authkit_sign_in_rather_than_replacing_it() {
        let url = client("https://api.workos.com/").authorization_url(&AuthorizeParams {
            organization_id: Some("org_1"),
            screen_hint: Some("sign-up"),
            ..Default::default()
        });
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!((get("provider"), get("organization_id")), (Some("authkit"), Some("org_1")));
        assert_eq!(get("screen_hint"), Some("sign-up"), "a screen hint needs provider=authkit, which is there");
    }

    #[test]
    fn client_id_cannot_escape_the_jwks_path() {
        let url = client("http://127.0.0.1:9/prefix/").jwks_url().clone();
        assert_eq!(url.path(), "/prefix/sso/jwks/client_1%2F..%2Fx");
    }

    #[test]
    fn errors_are_classified_by_meaning() {
        let body = |error: &str| ErrorBody { error: Some(error.to_owned()), ..Default::default() };
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, body("invalid_grant"), None),
            WorkosError::InvalidGrant { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, body("invalid_grant"), None),
            WorkosError::InvalidGrant { .. }
        ));
        let rejected = classify(StatusCode::UNAUTHORIZED, body("invalid_client"), None);
        assert!(matches!(rejected, WorkosError::Rejected { status: 401, .. }));
        let limited = classify(StatusCode::TOO_MANY_REQUESTS, ErrorBody::default(), Some(Duration::from_secs(7)));
        assert!(matches!(limited, WorkosError::RateLimited { .. }));
        assert_eq!(limited.retry_after(), Duration::from_secs(7));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, ErrorBody::default(), None),
            WorkosError::Unavailable { status: 502 }
        ));
        // A switch the organization wants its own sign-in for, however WorkOS says it.
        let code = |code: &str| ErrorBody { code: Some(code.to_owned()), ..Default::default() };
        for body in [
            body("sso_required"),
            code("mfa_enrollment"),
            code("mfa_challenge"),
            code("email_verification_required"),
            body("organization_authentication_methods_required"),
            code("radar_challenge"),
            ErrorBody { message: Some("Must use SSO for selected organization".into()), ..Default::default() },
            ErrorBody { authkit_redirect_url: Some("https://auth.example.com/x".into()), ..Default::default() },
        ] {
            assert!(matches!(
                classify(StatusCode::BAD_REQUEST, body, None),
                WorkosError::OrganizationAuthRequired { .. }
            ));
        }
        // Other refusals stay what they are.
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, code("organization_membership_not_found"), None),
            WorkosError::Rejected { .. }
        ));
        let message = ErrorBody { message: Some("Organization not found".into()), ..Default::default() };
        assert!(matches!(classify(StatusCode::NOT_FOUND, message, None), WorkosError::Rejected { status: 404, .. }));
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let response = AuthResponse {
            user: UserProfile::id_only("user_1"),
            organization_id: None,
            access_token: "ACCESS-SECRET".into(),
            refresh_token: "REFRESH-SECRET".into(),
            impersonator: None,
        };
        let debug = format!("{response:?}");
        assert!(!debug.contains("ACCESS-SECRET") && !debug.contains("REFRESH-SECRET"), "{debug}");
    }
}
