//! Any OpenID Connect provider (Auth0 the documented example) as an identity provider: its answers turned into
//! verified sessions.
//!
//! The provider is known only after discovery, which runs in the background of a starting server
//! ([`OidcProvider::discover_until_ready`]) and is retried with backoff until it succeeds; until then sign-in and
//! bearer tokens are answered "unavailable" (503) and `/readyz` says not ready. A discovery document that
//! contradicts the configuration (another issuer) is not retried: it is reported through
//! [`OidcProvider::misconfigured`], which stops the server with the reason.
//!
//! A session exists only once the ID token from the code exchange verifies in full (`oidc::id_token`) with this
//! sign-in's nonce. Its user is the token's `sub` (Auth0's `auth0|…`, `google-oauth2|…`), which becomes `sub` in
//! the InsForge token; name and email come from the ID token when it has them, else from the userinfo endpoint
//! (strict providers put them only there, OIDC Core §5.4), and the email only when `email_verified` is not false.
//! The session lasts until the earlier of its access token's and ID token's expiry, and is refreshed before then
//! when there is a refresh token. As with WorkOS, only the provider's word about the token or the user ends a session
//! during a refresh (`invalid_grant`, which Auth0 answers a reused rotating refresh token with, or a refusal of the
//! user such as `access_denied`: [`is_refusal_of_the_user`]); anything else keeps it.
//!
//! The cookie is sealed by the app, so a session read from it is not verified again on each request: its expiry
//! and issuer are enough. (WorkOS sessions re-verify their access token because `check` also reads its `sid`.)

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;

use super::provider::{AuthorizationRequest, CheckError, ProviderError, ScreenHint, TokenCheck};
use super::{AuthSource, OidcTokens, Principal, Session, unix_now};
use crate::config::OidcConfig;
use crate::identity::UserProfile;
use crate::oidc::access_token::AccessTokenError;
use crate::oidc::client::is_entra_issuer;
use crate::oidc::{
    Authorization, CLIENT_REFUSAL_FIX, DiscoveryFailure, IdTokenClaims, IdTokenError, NonceRule, OidcClient, OidcHttp,
    TokenAnswer, TokenError, UserInfo, UserInfoError, is_refusal_of_the_user,
};

/// First wait after a failed discovery; doubled after each failure up to [`DISCOVERY_MAX_BACKOFF`].
const DISCOVERY_FIRST_BACKOFF: Duration = Duration::from_millis(250);
const DISCOVERY_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a session lives when the provider states no expiry for the tokens it refreshed (no `expires_in`, no
/// ID token): short, so the provider is asked again soon.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

pub struct OidcProvider {
    config: OidcConfig,
    http: OidcHttp,
    /// Boxed: the discovered provider (endpoints, keys, the crate's client) is large, and absent until discovery.
    client: OnceLock<Box<OidcClient>>,
    /// The issuer's origin, for the Content-Security-Policy until discovery names the others.
    issuer_origin: String,
    browser_origins: OnceLock<String>,
    misconfigured: watch::Sender<Option<String>>,
}

impl OidcProvider {
    pub fn new(config: &OidcConfig) -> reqwest::Result<Self> {
        let issuer_origin =
            url::Url::parse(&config.issuer).map(|url| url.origin().ascii_serialization()).unwrap_or_default();
        Ok(Self {
            http: OidcHttp::new(config.connect_timeout, config.request_timeout)?,
            config: config.clone(),
            client: OnceLock::new(),
            issuer_origin,
            browser_origins: OnceLock::new(),
            misconfigured: watch::Sender::new(None),
        })
    }

    /// Discovers the provider, retrying with backoff until it succeeds, or until the document proves the
    /// configuration wrong (then [`Self::misconfigured`] completes).
    pub async fn discover_until_ready(&self) {
        let mut backoff = DISCOVERY_FIRST_BACKOFF;
        loop {
            match OidcClient::discover(&self.config, &self.http).await {
                Ok(client) => {
                    self.announce(&client);
                    let _ = self.browser_origins.set(client.browser_origins().join(" "));
                    let _ = self.client.set(Box::new(client));
                    return;
                }
                Err(DiscoveryFailure::Misconfigured(reason)) => {
                    tracing::error!(%reason, "the OpenID Connect provider cannot be used with this configuration");
                    self.misconfigured.send_replace(Some(reason));
                    return;
                }
                Err(DiscoveryFailure::Transient(reason)) => {
                    tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "OpenID Connect discovery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = next_discovery_backoff(backoff);
                }
            }
        }
    }

    /// One line about what discovery found, so an operator sees which features the provider offers.
    fn announce(&self, client: &OidcClient) {
        let logout = match client.logout() {
            crate::oidc::Logout::EndSession(_) => "end_session_endpoint",
            crate::oidc::Logout::Auth0(_) => "Auth0 /v2/logout (no end_session_endpoint published)",
            crate::oidc::Logout::LocalOnly => "none: sign-out ends only the app's session",
        };
        tracing::info!(
            issuer = client.issuer(),
            logout,
            revocation = client.revocation_supported(),
            refresh_tokens = client.refresh_supported(),
            bearer_audience = self.config.audience.as_deref().unwrap_or("none (bearer tokens are refused)"),
            "OpenID Connect provider discovered"
        );
        // Not refused (a provider may put the email in the ID token whatever the scopes), but a strict one (Auth0)
        // then gives none: the app, its Audit of who did what, and InsForge's `email` claim would go without.
        if !self.config.scopes.iter().any(|scope| scope == "email") {
            tracing::warn!(
                scopes = %self.config.scopes.join(" "),
                "OIDC_SCOPES has no `email`: most providers then give no email address; add `email` unless that is meant"
            );
        }
    }

    pub async fn misconfigured(&self) -> String {
        let mut receiver = self.misconfigured.subscribe();
        let reason = receiver.wait_for(Option::is_some).await.map(|reason| reason.clone());
        match reason {
            Ok(reason) => reason.unwrap_or_default(),
            // The sender lives as long as the provider: never reached while anyone waits.
            Err(_) => std::future::pending().await,
        }
    }

    pub fn is_discovered(&self) -> bool {
        self.client.get().is_some()
    }

    fn client(&self) -> Result<&OidcClient, ProviderError> {
        self.client.get().map(AsRef::as_ref).ok_or(ProviderError::Unavailable { retry_after: Duration::from_secs(2) })
    }

    pub fn browser_origins(&self) -> &str {
        self.browser_origins.get().map_or(self.issuer_origin.as_str(), String::as_str)
    }

    pub fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Result<url::Url, ProviderError> {
        Ok(self.client()?.authorization_url(&Authorization {
            state: request.state,
            nonce: request.nonce,
            code_challenge: request.code_challenge,
            login_hint: request.login_hint,
            sign_up: request.screen_hint == Some(ScreenHint::SignUp),
        }))
    }

    pub async fn exchange_code(&self, code: &str, code_verifier: &str, nonce: &str) -> Result<Session, ProviderError> {
        let client = self.client()?;
        let answer = client.exchange_code(code, code_verifier).await.map_err(|error| {
            if error.is_client_refusal() {
                // Every sign-in fails the same way until the operator fixes it; nothing at start-up can tell.
                tracing::error!(
                    %error,
                    fix = CLIENT_REFUSAL_FIX,
                    "the provider refused this app's client credentials at the code exchange"
                );
            } else {
                tracing::warn!(%error, "OpenID Connect code exchange failed");
            }
            match error {
                TokenError::InvalidGrant(description) => ProviderError::GrantRejected(description),
                // Our client credentials or registration refused: a server problem, not the user's.
                refused @ TokenError::Refused { .. } if refused.is_client_refusal() => {
                    ProviderError::Failed(refused.to_string())
                }
                TokenError::Refused { ref error, .. }
                    if matches!(error.as_str(), "invalid_request" | "unsupported_grant_type" | "invalid_scope") =>
                {
                    ProviderError::Failed(error.to_string())
                }
                TokenError::Refused { description, error } => {
                    ProviderError::Declined(if description.is_empty() { error.replace('_', " ") } else { description })
                }
                TokenError::Unavailable(error) => ProviderError::Unavailable { retry_after: error.retry_after() },
                TokenError::Malformed(detail) => ProviderError::Failed(format!("the token answer: {detail}")),
            }
        })?;
        let Some(id_token) = &answer.id_token else {
            return Err(ProviderError::Failed(
                "the token answer has no id_token (is `openid` a granted scope?)".into(),
            ));
        };
        let claims =
            client.verify_id_token(id_token, NonceRule::Required(nonce)).await.map_err(|error| match error {
                IdTokenError::Keys(error) => {
                    tracing::warn!(%error, "the ID token cannot be checked: no signing keys");
                    ProviderError::Unavailable { retry_after: Duration::from_secs(5) }
                }
                IdTokenError::Invalid(reason) => {
                    ProviderError::Failed(format!("the provider's ID token was refused: {reason}"))
                }
            })?;
        let entra = is_entra_issuer(&self.config.issuer);
        let mut user = profile(&claims, entra);
        if user.email.is_none() || (user.first_name.is_none() && user.last_name.is_none()) {
            // Strict providers put profile and email only behind the userinfo endpoint.
            match client.userinfo(&answer.access_token, &claims.subject).await {
                Ok(Some(info)) => merge(&mut user, &info, entra),
                Ok(None) => {}
                Err(UserInfoError::Unavailable(error)) => {
                    tracing::warn!(%error, "the userinfo endpoint is unavailable");
                    return Err(ProviderError::Unavailable { retry_after: error.retry_after() });
                }
                // The profile is optional; the sign-in is not. (Microsoft Entra's userinfo is Microsoft Graph's,
                // which refuses an access token issued for another API: `OIDC_AUDIENCE` or an `api://` scope.)
                Err(UserInfoError::Refused(reason)) => {
                    tracing::warn!(%reason, "the userinfo endpoint refused the access token; signing in without its profile");
                }
                Err(UserInfoError::Failed(reason)) => {
                    return Err(ProviderError::Failed(format!("the userinfo endpoint: {reason}")));
                }
            }
        }
        if answer.refresh_token.is_none() {
            tracing::info!(
                user_id = %user.id,
                "the provider issued no refresh token (offline_access not granted, or refresh tokens off): this \
                 session ends when its tokens expire, and the user then signs in again"
            );
        }
        // The app's own id for this session, not the provider's `sid`: sign-out refuses the session by its id from
        // then on, and a provider's single-sign-on session can outlive a sign-out here (a browser that never reached
        // the provider's logout page), so its `sid` may come back with the next sign-in, which must not be refused.
        let session_id = crate::random::token()
            .map_err(|_| ProviderError::Failed("the system random generator failed".to_owned()))?;
        let oidc = tokens(client, &answer, id_token.to_string(), nonce.to_owned(), Some(&claims));
        Ok(Session {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            user,
            organization_id: None,
            impersonator: None,
            session_id: Some(session_id),
            personal: false,
            oidc: Some(oidc),
        })
    }

    pub async fn refresh(&self, session: &Session) -> Result<Session, ProviderError> {
        let (Some(refresh_token), Some(previous)) = (session.refresh_token.as_deref(), &session.oidc) else {
            return Err(ProviderError::GrantRejected("the session cannot be refreshed".to_owned()));
        };
        let client = self.client()?;
        let answer = client.refresh(refresh_token).await.map_err(|error| match error {
            TokenError::InvalidGrant(description) => ProviderError::GrantRejected(description),
            // Our credentials refused (a rotated OIDC_CLIENT_SECRET): every session would end at once were this taken
            // for a refusal of the user, which Auth0's `access_denied` for it looks like.
            refused @ TokenError::Refused { .. } if refused.is_client_refusal() => {
                tracing::error!(error = %refused, fix = CLIENT_REFUSAL_FIX, "the provider refused this app's client credentials at a refresh");
                ProviderError::Unavailable { retry_after: Duration::from_secs(5) }
            }
            // The provider wants the user to sign in again (Entra's Conditional Access asking for MFA), or refuses
            // them (an Auth0 Action denying the refresh): keeping the session would answer 503 forever.
            TokenError::Refused { error, description } if is_refusal_of_the_user(&error) => {
                tracing::info!(%error, %description, "the provider refused to refresh the session; the user signs in again");
                ProviderError::GrantRejected(error)
            }
            // Any other refusal (our credentials, a proxy) is our problem, not the user's: keep the session.
            refused @ TokenError::Refused { .. } => {
                tracing::error!(error = %refused, "the provider refused a refresh for a reason other than invalid_grant");
                ProviderError::Unavailable { retry_after: Duration::from_secs(5) }
            }
            TokenError::Unavailable(error) => {
                // What the provider answered (a 429 is not an outage), which "unavailable" alone would not say.
                tracing::warn!(%error, "the provider could not answer a refresh");
                ProviderError::Unavailable { retry_after: error.retry_after() }
            }
            TokenError::Malformed(detail) => {
                tracing::error!(%detail, "the provider's refresh answer cannot be read");
                ProviderError::Unavailable { retry_after: Duration::from_secs(5) }
            }
        })?;

        let mut user = session.user.clone();
        let mut claims = None;
        if let Some(id_token) = &answer.id_token {
            match client.verify_id_token(id_token, NonceRule::AbsentOrEqual(&previous.nonce)).await {
                Ok(verified) if verified.subject != session.user.id => {
                    // OIDC Core §12.2: same `iss`, `sub`, `aud` as the original.
                    return Err(ProviderError::GrantRejected("the refreshed ID token is another user's".to_owned()));
                }
                Ok(verified) => {
                    let entra = is_entra_issuer(&self.config.issuer);
                    let fresh = profile(&verified, entra);
                    // From Entra, only a verified address counts: one a session kept from before that rule goes.
                    user.email = if entra { fresh.email } else { fresh.email.or(user.email) };
                    user.first_name = fresh.first_name.or(user.first_name);
                    user.last_name = fresh.last_name.or(user.last_name);
                    claims = Some(verified);
                }
                // The refresh itself succeeded and its refresh token has already replaced ours (rotation): dropping
                // the answer would lose the session at the next refresh. Keep the new tokens, but none of this ID
                // token's claims: the user stays who the sign-in's verified ID token said.
                Err(error) => tracing::warn!(%error, "ignored a refreshed ID token that does not verify"),
            }
        }
        let id_token = match (&answer.id_token, &claims) {
            (Some(id_token), Some(_)) => id_token.to_string(),
            _ => previous.id_token.clone(),
        };
        let oidc = tokens(client, &answer, id_token, previous.nonce.clone(), claims.as_ref());
        Ok(Session {
            access_token: answer.access_token,
            // A provider that does not rotate refresh tokens sends none back: the old one stays good.
            refresh_token: answer.refresh_token.or_else(|| session.refresh_token.clone()),
            user,
            organization_id: session.organization_id.clone(),
            impersonator: None,
            session_id: session.session_id.clone(),
            personal: false,
            oidc: Some(oidc),
        })
    }

    /// RFC 9207 §2.4: `iss` must name the configured issuer when present, and must be present when discovery said
    /// it would be. (Before discovery nothing is known; such a callback cannot exchange its code anyway.)
    pub fn accepts_answer_from(&self, iss: Option<&str>) -> bool {
        match iss {
            Some(iss) => iss == self.config.issuer,
            None => self.client().map_or(true, |client| !client.names_itself_in_answers()),
        }
    }

    pub fn check(&self, session: &Session) -> Result<TokenCheck, CheckError> {
        let Some(oidc) = &session.oidc else {
            return Err(CheckError::Invalid("the session was not made by an OpenID Connect provider".to_owned()));
        };
        if oidc.issuer != self.config.issuer {
            return Err(CheckError::Invalid("the session was made by another OpenID Connect issuer".to_owned()));
        }
        Ok(TokenCheck {
            expires_at: oidc.expires_at,
            lifetime: oidc.expires_at.checked_sub(oidc.issued_at).map(Duration::from_secs),
            session_id: session.session_id.clone(),
        })
    }

    pub async fn verify_bearer(&self, token: &str) -> Result<Principal, CheckError> {
        let client = self.client().map_err(|_| CheckError::Unavailable { retry_after: Duration::from_secs(2) })?;
        let Some(verified) = client.verify_access_token(token).await else {
            return Err(CheckError::Invalid("no OIDC_AUDIENCE is configured, so no bearer token is accepted".into()));
        };
        let claims = verified.map_err(|error| match error {
            AccessTokenError::Keys(_) => CheckError::Unavailable { retry_after: Duration::from_secs(5) },
            AccessTokenError::Invalid(reason) => CheckError::Invalid(reason.to_owned()),
            AccessTokenError::Expired => CheckError::Expired,
        })?;
        Ok(Principal {
            personal: false,
            // Access tokens carry no email; the minter leaves it out of the InsForge token then.
            user: UserProfile::id_only(claims.user_id().to_owned()),
            organization_id: None,
            impersonator: None,
            // Bearer tokens belong to the client that holds them, not to a session of this app.
            session_id: None,
            source: AuthSource::Bearer,
        })
    }

    /// The provider's sign-out page with `id_token_hint`, or Auth0's fallback; `None` when there is neither (or the
    /// provider has not been discovered: then only the app's session ends).
    pub fn logout_url(&self, session: &Session) -> Option<url::Url> {
        let client = self.client.get()?;
        let hint = session.oidc.as_ref().map(|oidc| oidc.id_token.as_str());
        client.logout_url(hint, &self.config.post_logout_redirect_uri)
    }

    /// Revokes the session's refresh token (RFC 7009) when the provider publishes a revocation endpoint, so no
    /// copy of the cookie can ever refresh again, on any replica.
    pub async fn revoke(&self, session: &Session) -> Result<(), ProviderError> {
        let Some(refresh_token) = session.refresh_token.as_deref() else { return Ok(()) };
        let client = self.client()?;
        client.revoke(refresh_token).await.map_err(|error| ProviderError::Failed(error.to_string()))
    }

    /// Fetches the signing keys now (once discovered).
    pub async fn fetch_keys(&self) -> Result<(), CheckError> {
        let client = self.client().map_err(|_| CheckError::Unavailable { retry_after: Duration::from_secs(2) })?;
        client.fetch_keys().await.map_err(|_| CheckError::Unavailable { retry_after: Duration::from_secs(5) })
    }

    /// Whether any signing key is held (from discovery or a fetch since).
    pub fn has_keys(&self) -> bool {
        self.client().is_ok_and(|client| client.has_keys())
    }
}

/// The OpenID Connect part of a session from a token answer. `claims` are the answer's verified ID token's.
fn tokens(
    client: &OidcClient,
    answer: &TokenAnswer,
    id_token: String,
    nonce: String,
    claims: Option<&IdTokenClaims>,
) -> OidcTokens {
    let issued_at = unix_now();
    let access_expiry = answer.expires_in.map(|lifetime| issued_at.saturating_add(lifetime.as_secs()));
    let id_expiry = claims.map(|claims| claims.expires_at);
    let expires_at = match (access_expiry, id_expiry) {
        (Some(access), Some(id)) => access.min(id),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => issued_at.saturating_add(DEFAULT_TOKEN_LIFETIME.as_secs()),
    };
    OidcTokens { issuer: client.issuer().to_owned(), id_token, nonce, issued_at, expires_at }
}

/// The user an ID token describes. Names: `given_name`/`family_name`, else the whole `name` as the first name.
/// `entra`: the provider is Microsoft Entra ID (see [`verified_email`]).
fn profile(claims: &IdTokenClaims, entra: bool) -> UserProfile {
    let mut user = UserProfile::id_only(claims.subject.clone());
    let verified = claims.email_verified.or(claims.email_domain_verified);
    user.email = verified_email(claims.email.clone(), verified, entra);
    user.first_name = claims.given_name.clone();
    user.last_name = claims.family_name.clone();
    if user.first_name.is_none() && user.last_name.is_none() {
        user.first_name = claims.name.clone();
    }
    user
}

/// Fills what the ID token left out from the userinfo answer.
fn merge(user: &mut UserProfile, info: &UserInfo, entra: bool) {
    if user.email.is_none() {
        user.email = verified_email(info.email.clone(), info.email_verified, entra);
    }
    if user.first_name.is_none() && user.last_name.is_none() {
        user.first_name = info.given_name.clone();
        user.last_name = info.family_name.clone();
        if user.first_name.is_none() && user.last_name.is_none() {
            user.first_name = info.name.clone();
        }
    }
}

/// An email the provider has not said is unverified (`email_verified` absent counts as not false); from Microsoft
/// Entra ID, only one it says is verified: Entra sends no `email_verified`, and its `email` is a directory attribute
/// that is not checked (a guest's comes from another tenant). Its optional `xms_edov` claim (the email's domain is
/// verified as the tenant's), added in the app registration's token configuration, is what says so.
fn verified_email(email: Option<String>, verified: Option<bool>, entra: bool) -> Option<String> {
    let trusted = if entra { verified == Some(true) } else { verified != Some(false) };
    email.filter(|email| !email.trim().is_empty() && trusted)
}

/// The wait after the next failed discovery: twice this one, at most [`DISCOVERY_MAX_BACKOFF`].
fn next_discovery_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(DISCOVERY_MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_waits_twice_as_long_after_each_failure_up_to_thirty_seconds() {
        assert_eq!(next_discovery_backoff(DISCOVERY_FIRST_BACKOFF), Duration::from_millis(500));
        assert_eq!(next_discovery_backoff(Duration::from_secs(10)), Duration::from_secs(20));
        assert_eq!(next_discovery_backoff(Duration::from_secs(20)), DISCOVERY_MAX_BACKOFF);
        assert_eq!(next_discovery_backoff(DISCOVERY_MAX_BACKOFF), DISCOVERY_MAX_BACKOFF);
    }

    fn claims() -> IdTokenClaims {
        IdTokenClaims {
            subject: "auth0|alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            email_domain_verified: None,
            given_name: None,
            family_name: None,
            name: None,
            expires_at: 0,
            issued_at: 0,
        }
    }

    #[test]
    fn an_email_said_to_be_unverified_is_left_out() {
        assert_eq!(profile(&claims(), false).email.as_deref(), Some("alice@example.com"));
        let unverified = IdTokenClaims { email_verified: Some(false), ..claims() };
        assert_eq!(profile(&unverified, false).email, None);
        let unsaid = IdTokenClaims { email_verified: None, ..claims() };
        assert_eq!(profile(&unsaid, false).email.as_deref(), Some("alice@example.com"));
    }

    /// Microsoft Entra never sends `email_verified`: its email counts only with `xms_edov: true`, from the ID token
    /// or userinfo alike.
    #[test]
    fn from_entra_an_email_counts_only_when_its_domain_is_verified() {
        let unsaid = IdTokenClaims { email_verified: None, ..claims() };
        assert_eq!(profile(&unsaid, true).email, None);
        let domain_verified = IdTokenClaims { email_domain_verified: Some(true), ..unsaid.clone() };
        assert_eq!(profile(&domain_verified, true).email.as_deref(), Some("alice@example.com"));
        let domain_unverified = IdTokenClaims { email_domain_verified: Some(false), ..unsaid.clone() };
        assert_eq!(profile(&domain_unverified, true).email, None);
        let mut user = profile(&unsaid, true);
        merge(&mut user, &UserInfo { email: Some("alice@example.com".into()), ..UserInfo::default() }, true);
        assert_eq!(user.email, None, "Microsoft Graph's userinfo says nothing of verification either");
    }

    #[test]
    fn names_come_from_given_and_family_name_else_name() {
        let named = IdTokenClaims { name: Some("Alice Anderson".into()), ..claims() };
        assert_eq!(profile(&named, false).display_name(), "Alice Anderson");
        let split = IdTokenClaims {
            given_name: Some("Alice".into()),
            family_name: Some("Anderson".into()),
            name: Some("ignored".into()),
            ..claims()
        };
        let user = profile(&split, false);
        assert_eq!((user.first_name.as_deref(), user.last_name.as_deref()), (Some("Alice"), Some("Anderson")));
    }

    #[test]
    fn userinfo_fills_only_what_is_missing() {
        let mut user = UserProfile::id_only("auth0|alice");
        merge(
            &mut user,
            &UserInfo {
                email: Some("alice@example.com".into()),
                email_verified: Some(true),
                given_name: Some("Alice".into()),
                family_name: Some("Anderson".into()),
                name: None,
            },
            false,
        );
        assert_eq!(user.display_name(), "Alice Anderson");
        assert_eq!(user.email.as_deref(), Some("alice@example.com"));

        let mut user = profile(&claims(), false);
        merge(&mut user, &UserInfo { email: Some("other@example.com".into()), ..UserInfo::default() }, false);
        assert_eq!(user.email.as_deref(), Some("alice@example.com"), "the ID token's email stays");

        let mut user = UserProfile::id_only("auth0|bob");
        merge(
            &mut user,
            &UserInfo { email: Some("bob@example.com".into()), email_verified: Some(false), ..UserInfo::default() },
            false,
        );
        assert_eq!(user.email, None, "an unverified email is left out");
    }
}
