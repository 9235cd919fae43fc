//! WorkOS AuthKit as an identity provider: its answers turned into verified sessions.
//!
//! The one rule both the code exchange and the refresh follow lives in [`WorkosProvider::verified_session`]: a
//! session exists only once its access token verifies against WorkOS's keys and names the user WorkOS says signed
//! in. How a failure is answered differs by step: at sign-in an outage is shown to the user, while during a
//! refresh anything but `invalid_grant` keeps the session (the user did nothing wrong). One exception, for the
//! refresh only: when WorkOS answered but its keys cannot be fetched, the old refresh token is already spent, so
//! the new tokens are kept on the strength of the TLS answer to our own call and verified on the next request.
//!
//! With the enterprise lifecycle on, each new or refreshed session also reads the user's organization memberships
//! from WorkOS (`lifecycle::sync`), so the app knows them even where no webhook is configured. That step can only
//! log a failure, never fail the sign-in or the refresh.

use url::Url;

use super::provider::{AuthorizationRequest, CheckError, ProviderError, ScreenHint, TokenCheck};
use super::{AuthSource, Principal, Session};
use crate::identity::{Impersonator, UserProfile};
use crate::lifecycle::sync::MembershipSync;
use crate::workos::access_token::{
    AccessClaims, AccessTokenVerifier, TokenSource, VerifyError, claims_from_workos_unverified,
};
use crate::workos::objects::MembershipStatus;
use crate::workos::user_emails::UserEmails;
use crate::workos::{
    AuthResponse, AuthorizeParams, OrganizationChoice, PendingSelection, WorkosClient, WorkosError,
    is_organization_refusal,
};

/// Most pages of memberships read for the organization picker (100 each): a bound on the calls one page view
/// makes. Past it the picker shows what was read; WorkOS still judges any organization picked.
const MAX_MEMBERSHIP_PAGES: usize = 10;

/// Where an organization admin is sent for the Admin Portal (docs/workos.md §7.1): the browser is redirected there
/// after a form post, so the Content-Security-Policy's `form-action` must allow it.
pub const ADMIN_PORTAL_ORIGIN: &str = "https://setup.workos.com";

pub struct WorkosProvider {
    client: WorkosClient,
    verifier: AccessTokenVerifier,
    redirect_uri: String,
    origin: String,
    membership_sync: Option<MembershipSync>,
    emails: UserEmails,
    /// Where the start-up check of our API key stands. Refused, the server stops (see
    /// `IdentityProvider::misconfigured`); until it has settled, the replica is not ready.
    key_check: tokio::sync::watch::Sender<KeyCheck>,
}

/// The start-up check of `WORKOS_API_KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyCheck {
    /// Asking, or asking again after a refusal.
    Pending,
    /// WorkOS took the key, or has not said yet and is being asked again (see [`WorkosProvider::check_api_key`]).
    Settled,
    /// WorkOS refused it, three times: the reason, for the server to stop with.
    Refused(String),
}

/// Why an `authenticate` answer did not make a session.
#[derive(Debug, thiserror::Error)]
enum Unverified {
    #[error("the signing keys are unavailable: {0}")]
    KeysUnavailable(WorkosError),
    #[error("{0}")]
    Invalid(VerifyError),
    /// The token's `sub` is not the user WorkOS said signed in.
    #[error("the token names another user")]
    WrongUser,
}

impl WorkosProvider {
    pub fn new(client: WorkosClient, redirect_uri: &Url, api_base_url: &Url) -> Self {
        Self {
            verifier: AccessTokenVerifier::new(client.clone()),
            emails: UserEmails::new(client.clone()),
            client,
            redirect_uri: redirect_uri.to_string(),
            // The API's origin (sign-in, sign-out) and the Admin Portal's.
            origin: format!("{} {ADMIN_PORTAL_ORIGIN}", api_base_url.origin().ascii_serialization()),
            membership_sync: None,
            key_check: tokio::sync::watch::Sender::new(KeyCheck::Pending),
        }
    }

    /// Checks the API key at start-up: WorkOS itself refusing it (a 401 with WorkOS's request id, three times two
    /// seconds apart) is a configuration that can never work, and stops the server with the reason. Anything else
    /// (WorkOS unreachable, a gateway's 401, a key without permission to list organizations) does not stop it: the
    /// key may still be good, and stopping every replica that starts during a blip would take the service down. The
    /// replica is ready meanwhile, and asks again (after 2 s, doubling up to a minute) until WorkOS gives its
    /// verdict: a replica started during a WorkOS outage with a wrong key must not serve on, failing every sign-in
    /// and refresh, once WorkOS is back.
    pub async fn check_api_key(&self) {
        const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
        const LONGEST_RETRY: std::time::Duration = std::time::Duration::from_secs(60);
        let mut retry = FIRST_RETRY;
        loop {
            match self.api_key_verdict().await {
                Ok(()) => break,
                Err(Some(reason)) => {
                    self.key_check.send_replace(KeyCheck::Refused(reason.to_owned()));
                    return;
                }
                Err(None) => {
                    self.key_check.send_if_modified(|check| {
                        let pending = *check == KeyCheck::Pending;
                        *check = KeyCheck::Settled;
                        pending
                    });
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LONGEST_RETRY);
                }
            }
        }
        if retry > FIRST_RETRY {
            tracing::info!("WorkOS took WORKOS_API_KEY, asked again after it could not say at start-up");
        }
        self.key_check.send_replace(KeyCheck::Settled);
    }

    /// One round of the API key's check: `Ok` when WorkOS takes it, `Err(Some(reason))` when WorkOS itself refused
    /// it three times two seconds apart, `Err(None)` when WorkOS gave no verdict (logged as a warning the first
    /// time, then at debug level).
    async fn api_key_verdict(&self) -> Result<(), Option<&'static str>> {
        const ATTEMPTS: u32 = 3;
        const APART: std::time::Duration = std::time::Duration::from_secs(2);
        for attempt in 1..=ATTEMPTS {
            match self.client.check_api_key().await {
                Ok(true) => return Ok(()),
                Ok(false) if attempt < ATTEMPTS => tokio::time::sleep(APART).await,
                Ok(false) => break,
                Err(error) if *self.key_check.borrow() == KeyCheck::Pending => {
                    tracing::warn!(%error, "could not check WORKOS_API_KEY with WorkOS at start-up; will ask again");
                    return Err(None);
                }
                Err(error) => {
                    tracing::debug!(%error, "could not check WORKOS_API_KEY with WorkOS yet");
                    return Err(None);
                }
            }
        }
        Err(Some(
            "WorkOS refused WORKOS_API_KEY (401): it is wrong, revoked, or from another environment (a staging key \
             with a production client id). Copy the secret key of the environment WORKOS_CLIENT_ID belongs to from \
             the WorkOS dashboard (API Keys)",
        ))
    }

    /// Completes, with the reason, once WorkOS has refused our API key.
    pub async fn misconfigured(&self) -> String {
        let mut receiver = self.key_check.subscribe();
        match receiver.wait_for(|check| matches!(check, KeyCheck::Refused(_))).await.map(|check| check.clone()) {
            Ok(KeyCheck::Refused(reason)) => reason,
            // The sender lives as long as the provider: never reached while anyone waits.
            _ => std::future::pending().await,
        }
    }

    /// Waits (at most `within`) for the start-up check of the API key to settle: `Err` with why the replica is not
    /// ready while it has not (a refusal being asked again, or stopping the server).
    pub async fn key_checked(&self, within: std::time::Duration) -> Result<(), &'static str> {
        let mut receiver = self.key_check.subscribe();
        let settled = receiver.wait_for(|check| *check != KeyCheck::Pending);
        match tokio::time::timeout(within, settled).await.map(|check| check.map(|check| check.clone())) {
            Ok(Ok(KeyCheck::Settled)) => Ok(()),
            Ok(Ok(_)) => Err("WorkOS refused WORKOS_API_KEY"),
            Ok(Err(_)) | Err(_) => Err("the start-up check of WORKOS_API_KEY has not finished"),
        }
    }

    pub fn client(&self) -> &WorkosClient {
        &self.client
    }

    /// Reads the user's memberships after every sign-in and refresh from now on.
    pub fn attach_membership_sync(&mut self, sync: MembershipSync) {
        self.membership_sync = Some(sync);
    }

    /// After a session is made or renewed: record the user's memberships (never fails; see the module notes).
    async fn sync_memberships(&self, session: &Session) {
        if let Some(sync) = &self.membership_sync {
            sync.after_sign_in(&session.user).await;
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Url {
        self.client.authorization_url(&AuthorizeParams {
            redirect_uri: &self.redirect_uri,
            state: request.state,
            code_challenge: request.code_challenge,
            organization_id: request.organization_id,
            login_hint: request.login_hint,
            screen_hint: request.screen_hint.map(|hint| match hint {
                ScreenHint::SignIn => "sign-in",
                ScreenHint::SignUp => "sign-up",
            }),
        })
    }

    pub async fn exchange_code(&self, code: &str, code_verifier: &str) -> Result<Session, ProviderError> {
        let auth = self.client.authenticate_with_code(code, code_verifier).await.map_err(sign_in_error)?;
        self.signed_in(&auth).await
    }

    /// The organization-selection grant: the sign-in that answered `organization_selection_required`, finished in
    /// the organization the user picked.
    pub async fn complete_organization_selection(
        &self,
        pending: &PendingSelection,
        organization_id: &str,
    ) -> Result<Session, ProviderError> {
        let auth = self
            .client
            .authenticate_with_organization_selection(&pending.pending_authentication_token, organization_id)
            .await
            .map_err(|error| match error {
                // WorkOS judges the pick (the offered list may not have been kept): "not a member", "no such
                // organization" or a malformed id all mean this organization cannot be chosen (docs/workos.md §1.3).
                WorkosError::Rejected { status, code, message }
                    if is_organization_refusal(status, &code, &message) || code == "invalid_organization_id" =>
                {
                    tracing::info!(%code, %message, "WorkOS refused the organization picked at sign-in");
                    ProviderError::OrganizationRefused(message)
                }
                other => sign_in_error(other),
            })?;
        self.signed_in(&auth).await
    }

    /// The organizations `user_id` is an active member of, named as WorkOS names them, following `after` from page
    /// to page (as WorkOS's SDKs' auto-pagination does) for at most [`MAX_MEMBERSHIP_PAGES`] pages.
    pub async fn selectable_organizations(&self, user_id: &str) -> Result<Vec<OrganizationChoice>, ProviderError> {
        let mut organizations: Vec<OrganizationChoice> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MEMBERSHIP_PAGES {
            let page = self.client.list_active_memberships(user_id, after.as_deref()).await.map_err(|error| {
                tracing::warn!(%error, "could not list the organizations of a user choosing one at sign-in");
                match error {
                    WorkosError::Timeout
                    | WorkosError::Connect(_)
                    | WorkosError::RateLimited { .. }
                    | WorkosError::Unavailable { .. }
                    | WorkosError::Broken(_) => ProviderError::Unavailable { retry_after: error.retry_after() },
                    other => ProviderError::Failed(other.to_string()),
                }
            })?;
            // Asked for this user's active memberships only; anything else would be WorkOS's bug, and is not offered.
            let active = page.data.iter().filter(|m| m.user_id == user_id && m.status == MembershipStatus::Active);
            for membership in active {
                let name = membership.organization_name.as_deref().map(str::trim).filter(|name| !name.is_empty());
                organizations.push(OrganizationChoice {
                    id: membership.organization_id.clone(),
                    name: name.unwrap_or(&membership.organization_id).to_owned(),
                });
            }
            match page.list_metadata.after {
                Some(next) if !page.data.is_empty() => after = Some(next),
                _ => return Ok(OrganizationChoice::by_name(organizations)),
            }
        }
        tracing::warn!(%user_id, shown = organizations.len(), "the user has more organizations than the picker reads");
        Ok(OrganizationChoice::by_name(organizations))
    }

    /// The session an `authenticate` answer of a sign-in stands for, verified, with the memberships recorded.
    async fn signed_in(&self, auth: &AuthResponse) -> Result<Session, ProviderError> {
        let session = self.verified_session(auth, None).await.map_err(|unverified| match unverified {
            Unverified::KeysUnavailable(error) => ProviderError::Unavailable { retry_after: error.retry_after() },
            Unverified::Invalid(error) => {
                ProviderError::Failed(format!("WorkOS issued an access token that does not verify: {error}"))
            }
            Unverified::WrongUser => {
                ProviderError::Failed("the access token's subject is not the signed-in user".to_owned())
            }
        })?;
        self.sync_memberships(&session).await;
        Ok(session)
    }

    /// An ordinary refresh. It names the session's organization, as WorkOS's own libraries do on every refresh
    /// (workos-node `CookieSession.refresh`, authkit-nextjs `refreshSession`): without it WorkOS may scope the new
    /// session to the user's default organization, quietly undoing a switch (authkit-remix #68, authkit-nextjs #73).
    pub async fn refresh(&self, session: &Session) -> Result<Session, ProviderError> {
        self.refresh_in(session, session.organization_id.as_deref(), Refresh::Ordinary).await
    }

    /// A refresh scoped to `organization_id`: WorkOS's way of switching organizations (docs/workos.md §1.5).
    pub async fn switch_organization(
        &self,
        session: &Session,
        organization_id: &str,
    ) -> Result<Session, ProviderError> {
        self.refresh_in(session, Some(organization_id), Refresh::Switch).await
    }

    async fn refresh_in(
        &self,
        session: &Session,
        organization_id: Option<&str>,
        kind: Refresh,
    ) -> Result<Session, ProviderError> {
        let Some(refresh_token) = session.refresh_token.as_deref() else {
            return Err(ProviderError::GrantRejected("the session has no refresh token".to_owned()));
        };
        let auth = self
            .client
            .authenticate_with_refresh_token(refresh_token, organization_id)
            .await
            .map_err(|error| refresh_error(error, kind, organization_id))?;
        let verified = match self.verified_session(&auth, Some(session)).await {
            // WorkOS has already spent the old refresh token: answering "unavailable" now would keep the session on
            // it, and the next refresh would be refused (`invalid_grant`), signing the user out. The answer came
            // from WorkOS itself, to our own call over TLS, so its tokens are kept (as WorkOS's own libraries keep
            // refreshed tokens, unverified); the next request verifies the new access token as usual, waiting with a
            // 503 while the keys are out of reach, and ending the session if it never verifies.
            // (Also a key rotated in before the JWKS lists it, or clocks apart.)
            Err(unverified @ (Unverified::KeysUnavailable(_) | Unverified::Invalid(_))) => {
                tracing::warn!(reason = %unverified, "kept a refreshed session whose token does not verify yet; the next request checks it");
                claims_from_workos_unverified(&auth.access_token)
                    .map_err(Unverified::Invalid)
                    .and_then(|claims| session_from(&auth, &claims, Some(session)))
            }
            other => other,
        };
        let session = verified.map_err(|unverified| match unverified {
            Unverified::WrongUser => ProviderError::GrantRejected("refresh returned another user's tokens".to_owned()),
            Unverified::KeysUnavailable(error) => ProviderError::Unavailable { retry_after: error.retry_after() },
            Unverified::Invalid(error) => {
                tracing::warn!(%error, "WorkOS returned a refreshed token that does not verify");
                ProviderError::Unavailable { retry_after: std::time::Duration::from_secs(5) }
            }
        })?;
        self.sync_memberships(&session).await;
        Ok(session)
    }

    /// The session an `authenticate` answer stands for, once its access token has been verified; `refreshed` is the
    /// session a refresh started from (`None` at sign-in).
    async fn verified_session(&self, auth: &AuthResponse, refreshed: Option<&Session>) -> Result<Session, Unverified> {
        let claims =
            self.verifier.verify(&auth.access_token, TokenSource::Trusted).await.map_err(|error| match error {
                VerifyError::KeysUnavailable(error) => Unverified::KeysUnavailable(error),
                other => Unverified::Invalid(other),
            })?;
        session_from(auth, &claims, refreshed)
    }

    pub async fn check(&self, session: &Session) -> Result<TokenCheck, CheckError> {
        if session.oidc.is_some() {
            return Err(CheckError::Invalid("the session was made by an OpenID Connect provider".to_owned()));
        }
        // Signature only: an expired but genuine token is what a refresh is for.
        let claims =
            self.verifier.verify_signature(&session.access_token, TokenSource::Trusted).await.map_err(check_error)?;
        if claims.sub != session.user.id {
            return Err(CheckError::Invalid("the session's token belongs to another user".to_owned()));
        }
        Ok(TokenCheck { expires_at: claims.exp, lifetime: claims.lifetime(), session_id: claims.sid.clone() })
    }

    pub async fn verify_bearer(&self, token: &str) -> Result<Principal, CheckError> {
        let claims = self.verifier.verify(token, TokenSource::Untrusted).await.map_err(check_error)?;
        let claims: &AccessClaims = &claims;
        if claims.is_connect_token() {
            return Err(CheckError::Invalid(
                "a WorkOS Connect token (it names a client_id): issued to another application, not a session of \
                 this app"
                    .to_owned(),
            ));
        }
        // Plain access tokens carry no email: a JWT template's claim when there is one, else WorkOS's answer for
        // the user (cached; `None` when it cannot be had, which never fails the request). The minted InsForge
        // token carries whatever is found.
        let email = match claims.email.as_ref().or(claims.user_email.as_ref()).filter(|email| !email.trim().is_empty())
        {
            Some(email) => Some(email.clone()),
            None => self.emails.email_of(&claims.sub).await,
        };
        // A directory's denial finds a person by the addresses recorded for them: record this one, which the
        // sign-in's sync would have, for a user who may only ever come with bearer tokens.
        // Tried once per lifetime of the email cache, whether it worked or not: a failing database must not hold up
        // every request of the user (the failure is logged).
        if let (Some(sync), Some(email)) = (&self.membership_sync, email.as_deref())
            && self.emails.needs_recording(&claims.sub, email)
        {
            self.emails.recorded(&claims.sub, email);
            // Boxed: rarely reached, and a database call's future would make every bearer request's larger.
            Box::pin(sync.note_email(&claims.sub, email)).await;
        }
        let mut user = UserProfile::id_only(claims.sub.clone());
        user.email = email;
        Ok(Principal {
            user,
            organization_id: claims.org_id.clone(),
            personal: false,
            impersonator: impersonator_in(claims),
            session_id: claims.sid.clone(),
            source: AuthSource::Bearer,
        })
    }

    pub fn logout_url(&self, session: &Session, return_to: &Url) -> Option<Url> {
        session.session_id.as_deref().map(|sid| self.client.logout_url(sid, return_to))
    }

    pub async fn revoke(&self, session: &Session) -> Result<(), ProviderError> {
        let Some(session_id) = session.session_id.as_deref() else { return Ok(()) };
        match self.client.revoke_session(session_id).await {
            Ok(()) => Ok(()),
            // Unknown or already ended: what sign-out wanted.
            Err(WorkosError::Rejected { status: 400 | 404, .. }) => Ok(()),
            Err(error) => Err(ProviderError::Failed(error.to_string())),
        }
    }

    /// Fetches the signing keys now.
    pub async fn fetch_keys(&self) -> Result<(), CheckError> {
        self.verifier.fetch_keys().await.map_err(check_error)
    }

    /// Whether any signing key is held (fetched now or before).
    pub async fn has_keys(&self) -> bool {
        self.verifier.has_keys().await
    }
}

/// The session an `authenticate` answer stands for, given its access token's claims (verified, or read as they are
/// after a refresh while the keys are unavailable: see [`claims_from_workos_unverified`]), and for a refresh the
/// session it started from.
fn session_from(
    auth: &AuthResponse,
    claims: &AccessClaims,
    refreshed: Option<&Session>,
) -> Result<Session, Unverified> {
    if claims.sub != auth.user.id {
        tracing::error!("WorkOS access token subject does not match the signed-in user");
        return Err(Unverified::WrongUser);
    }
    Ok(Session {
        access_token: auth.access_token.clone(),
        refresh_token: Some(auth.refresh_token.clone()),
        user: auth.user.clone(),
        // The answer's, else the token's `org_id` (what workos-node's and workos-go's session helpers read): an
        // answer that ever left it out must not drop the session to no organization, which the next refresh would
        // then ask WorkOS for.
        organization_id: auth.organization_id.clone().or_else(|| claims.org_id.clone()),
        // WorkOS's answer names the impersonator, with the reason, at sign-in and on every refresh. Should an answer
        // ever leave it out, the session stays impersonated, so its writes are still refused
        // (`IMPERSONATION_ALLOW_WRITES`), its requests audited and the banner shown: a refresh of the same WorkOS
        // session keeps what its sign-in said (reason included; an impersonation lasts as long as its session, and
        // workos-node's `Session.refresh` likewise reports the sealed session's impersonator), else the token's
        // `act` claim says who is acting.
        impersonator: auth
            .impersonator
            .clone()
            .or_else(|| impersonator_kept(refreshed, claims))
            .or_else(|| impersonator_in(claims)),
        session_id: claims.sid.clone(),
        oidc: None,
        personal: false,
    })
}

/// The impersonator of the session a refresh started from, when the refreshed tokens are still that WorkOS session
/// (the same `sid`): a session of the user's own has another id, and never inherits it.
fn impersonator_kept(refreshed: Option<&Session>, claims: &AccessClaims) -> Option<Impersonator> {
    let refreshed = refreshed?;
    let same_session = claims.sid.is_some() && refreshed.session_id == claims.sid;
    if same_session { refreshed.impersonator.clone() } else { None }
}

/// Who is impersonating the token's user, as its `act` claim says (RFC 8693 §4.1: the acting party; WorkOS puts
/// the impersonator's email in its `sub`). The claim carries no reason.
fn impersonator_in(claims: &AccessClaims) -> Option<Impersonator> {
    claims.act.as_ref().map(|actor| Impersonator { email: actor.sub.clone(), reason: None })
}

/// Whether a refresh is the session's ordinary one or a switch to another organization: they fail differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Ordinary,
    Switch,
}

/// What a refused refresh means for the session (`organization_id`: the organization the refresh named).
fn refresh_error(error: WorkosError, kind: Refresh, organization_id: Option<&str>) -> ProviderError {
    let switching = kind == Refresh::Switch;
    match error {
        WorkosError::InvalidGrant { description } => ProviderError::GrantRejected(description),
        // The organization wants its own sign-in (SSO, MFA): for a switch, the browser goes there; for an
        // ordinary refresh it ends the session, as WorkOS's SDKs treat it.
        WorkosError::OrganizationAuthRequired { redirect_url, .. } if switching => {
            ProviderError::OrganizationAuthRequired { redirect_url }
        }
        WorkosError::OrganizationAuthRequired { code, .. } => ProviderError::GrantRejected(code),
        // A switch WorkOS refuses (not a member there, no such organization): the session stays as it is. Whatever
        // the status of an organization refusal: WorkOS has not spent the refresh token, and taking it for a dead
        // one would end the session, and the next refresh's too (it is remembered as the token's outcome).
        WorkosError::Rejected { status, code, message }
            if switching && (matches!(status, 400 | 404 | 422) || is_organization_refusal(status, &code, &message)) =>
        {
            ProviderError::Declined(message)
        }
        // The session's own organization refused it: the user left it, or it is gone. The session ends
        // (they sign in again, into what they still belong to), as the libraries end it on any refusal.
        WorkosError::Rejected { status, code, message }
            if is_organization_refusal(status, &code, &message) && organization_id.is_some() =>
        {
            ProviderError::GrantRejected(format!("the session's organization refused the refresh ({code})"))
        }
        // Any other refusal (a bad API key, a proxy's 403) is our problem, not the user's: keep the session.
        rejected @ (WorkosError::Rejected { .. }
        | WorkosError::OrganizationSelectionRequired(_)
        | WorkosError::Malformed(_)) => {
            tracing::error!(error = %rejected, "WorkOS refused a refresh for a reason other than invalid_grant");
            ProviderError::Unavailable { retry_after: rejected.retry_after() }
        }
        transient => {
            // What WorkOS answered (rate limited, 5xx, no answer), which "unavailable" alone would not say.
            tracing::warn!(error = %transient, "WorkOS could not answer a refresh");
            ProviderError::Unavailable { retry_after: transient.retry_after() }
        }
    }
}

/// How a failed sign-in step (code exchange, organization selection) is answered.
fn sign_in_error(error: WorkosError) -> ProviderError {
    match &error {
        // A step of the sign-in, not a failure.
        WorkosError::OrganizationSelectionRequired(_) => {
            tracing::info!("WorkOS asks the user to choose an organization")
        }
        _ => tracing::warn!(%error, "WorkOS sign-in failed"),
    }
    match error {
        WorkosError::InvalidGrant { description } => ProviderError::GrantRejected(description),
        WorkosError::OrganizationSelectionRequired(pending) => ProviderError::OrganizationSelectionRequired(pending),
        // WorkOS refusing *our* credentials (a wrong API key or client id) is a server problem. (WorkOS says so with
        // 401; its 403s on this endpoint are steps of the user's sign-in.)
        WorkosError::Rejected { status: 401, .. } => ProviderError::Failed(error.to_string()),
        WorkosError::Rejected { message, .. } => ProviderError::Declined(message),
        WorkosError::OrganizationAuthRequired { redirect_url, .. } => {
            ProviderError::OrganizationAuthRequired { redirect_url }
        }
        WorkosError::Timeout | WorkosError::Connect(_) | WorkosError::RateLimited { .. } => {
            ProviderError::Unavailable { retry_after: error.retry_after() }
        }
        WorkosError::Unavailable { .. } | WorkosError::Broken(_) | WorkosError::Malformed(_) => {
            ProviderError::Failed(error.to_string())
        }
    }
}

fn check_error(error: VerifyError) -> CheckError {
    match error {
        VerifyError::KeysUnavailable(error) => CheckError::Unavailable { retry_after: error.retry_after() },
        VerifyError::Expired => CheckError::Expired,
        other => CheckError::Invalid(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(impersonator: Option<Impersonator>) -> AuthResponse {
        AuthResponse {
            user: UserProfile::id_only("user_1"),
            organization_id: None,
            access_token: "token".into(),
            refresh_token: "refresh".into(),
            impersonator,
        }
    }

    fn claims(act: Option<&str>) -> AccessClaims {
        let mut claims = json!({ "sub": "user_1", "sid": "session_1", "exp": 2_000_000_000u64 });
        if let Some(impersonator) = act {
            claims["act"] = json!({ "sub": impersonator });
        }
        serde_json::from_value(claims).expect("claims")
    }

    /// A switch WorkOS refuses leaves the session as it is, whatever the status of the refusal; only the session's
    /// own organization refusing an ordinary refresh ends it.
    #[test]
    fn an_organization_refusing_a_switch_never_ends_the_session() {
        let refusal = |status: u16, code: &str| WorkosError::Rejected {
            status,
            code: code.to_owned(),
            message: "Organization membership not found".to_owned(),
        };
        for status in [400, 403, 404, 409, 422] {
            for code in ["organization_membership_not_found", "organization_not_found"] {
                let switch = refresh_error(refusal(status, code), Refresh::Switch, Some("org_globex"));
                assert!(matches!(switch, ProviderError::Declined(_)), "a switch refused {status} {code}: {switch:?}");
                let ordinary = refresh_error(refusal(status, code), Refresh::Ordinary, Some("org_acme"));
                assert!(
                    matches!(ordinary, ProviderError::GrantRejected(_)),
                    "the session's organization refused {status} {code}: {ordinary:?}"
                );
            }
        }
        // A refusal that is not about the organization (a bad API key) keeps the session either way.
        for kind in [Refresh::Switch, Refresh::Ordinary] {
            let error = refresh_error(refusal(401, "unauthorized"), kind, Some("org_acme"));
            assert!(matches!(error, ProviderError::Unavailable { .. }), "{kind:?}: {error:?}");
        }
        // A dead refresh token ends the session, a switch's too.
        let dead = WorkosError::InvalidGrant { description: "used".to_owned() };
        assert!(matches!(refresh_error(dead, Refresh::Switch, Some("org_globex")), ProviderError::GrantRejected(_)));
    }

    #[test]
    fn a_session_is_impersonated_when_the_answer_or_the_token_says_so() {
        let support = Impersonator { email: "support@example.com".into(), reason: Some("ticket 42".into()) };
        // WorkOS's answer, with its reason, wins.
        let session = session_from(&answer(Some(support.clone())), &claims(Some("support@example.com")), None);
        assert_eq!(session.map(|s| s.impersonator).ok().flatten(), Some(support));
        // An answer without it: the token's `act` still marks the session.
        let session = session_from(&answer(None), &claims(Some("support@example.com")), None);
        let expected = Impersonator { email: "support@example.com".into(), reason: None };
        assert_eq!(session.map(|s| s.impersonator).ok().flatten(), Some(expected));
        // Neither: an ordinary session.
        assert_eq!(session_from(&answer(None), &claims(None), None).map(|s| s.impersonator).ok().flatten(), None);
    }

    #[test]
    fn the_organization_is_the_answers_else_the_tokens() {
        let mut in_acme: AccessClaims = serde_json::from_value(
            json!({ "sub": "user_1", "sid": "session_1", "org_id": "org_acme", "exp": 2_000_000_000u64 }),
        )
        .expect("claims");
        let organization = |auth: &AuthResponse, claims: &AccessClaims| {
            session_from(auth, claims, None).ok().and_then(|session| session.organization_id)
        };
        assert_eq!(organization(&answer(None), &in_acme).as_deref(), Some("org_acme"), "the token's");
        let mut named = answer(None);
        named.organization_id = Some("org_named".into());
        assert_eq!(organization(&named, &in_acme).as_deref(), Some("org_named"), "the answer's first");
        in_acme.org_id = None;
        assert_eq!(organization(&answer(None), &in_acme), None, "neither: none");
    }

    #[test]
    fn a_refresh_whose_answer_leaves_the_impersonator_out_keeps_the_sessions_own_reason_included() {
        let support = Impersonator { email: "support@example.com".into(), reason: Some("ticket 42".into()) };
        let impersonated = session_from(&answer(Some(support.clone())), &claims(Some("support@example.com")), None)
            .expect("the impersonated session");
        // The same WorkOS session, with `act` in its new token or without: still impersonated, for the same reason.
        for act in [Some("support@example.com"), None] {
            let refreshed = session_from(&answer(None), &claims(act), Some(&impersonated));
            assert_eq!(refreshed.map(|s| s.impersonator).ok().flatten(), Some(support.clone()), "act: {act:?}");
        }
        // Another WorkOS session (the user's own) never inherits it.
        let mut other = impersonated.clone();
        other.session_id = Some("session_0".into());
        let refreshed = session_from(&answer(None), &claims(None), Some(&other));
        assert_eq!(refreshed.map(|s| s.impersonator).ok().flatten(), None);
    }
}
