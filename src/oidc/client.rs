//! An OpenID Connect provider as discovery describes it, and the calls authbridge makes to it.
//!
//! [`OidcClient::discover`] reads the issuer's `/.well-known/openid-configuration` through the `openidconnect`
//! crate (which joins the path without doubling `/` and compares the published `issuer` with the configured one
//! exactly), then checks what the crate leaves open: https endpoints (plain http only on loopback), a token
//! endpoint, an asymmetric ID-token algorithm, PKCE S256, a client authentication method we can use. Everything
//! afterwards uses only what the document publishes: the authorization, token, userinfo, JWKS, revocation and
//! end-session endpoints, and the token endpoint's client authentication (`client_secret_basic` unless only
//! `client_secret_post` is offered). The one thing not published that is used is Auth0's own logout endpoint,
//! `/v2/logout`, for Auth0 tenants that do not publish an `end_session_endpoint` (Auth0's documented fallback).
//! Token revocation (RFC 7009) is made here rather than through the crate, which refuses plain-http endpoints
//! outright, loopback included (the stand-in's); it is one form post with the same client authentication.
//!
//! Token-endpoint failures become one [`TokenError`], split the way the session layer needs: `invalid_grant` (the
//! code or refresh token is dead; Auth0 answers it with 403) apart from everything else. The crate's parse errors
//! carry the raw answer, which may hold tokens: only the failing field's path is kept.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreErrorResponseType, CoreIdToken, CoreProviderMetadata,
    CoreResponseType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, LoginHint, Nonce, OAuth2TokenResponse, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, ResponseTypes, RevocationUrl, Scope,
    StandardErrorResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::access_token::{AccessClaims, AccessTokenError, AccessTokenVerifier};
use super::http::{HttpError, OidcHttp};
use super::id_token::{ALLOWED_ALGS, IdTokenClaims, IdTokenError, IdTokenVerifier, NonceRule};
use super::keys::{KeysError, SigningKeys, TokenSource, describe};
use crate::config::{OidcConfig, Secret};
use crate::outbound::{self, Upstream};

/// The discovery fields authbridge reads beyond the crate's core set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// OpenID Connect RP-Initiated Logout 1.0.
    #[serde(default)]
    pub end_session_endpoint: Option<EndSessionUrl>,
    /// RFC 7009 token revocation (RFC 8414 §2).
    #[serde(default)]
    pub revocation_endpoint: Option<RevocationUrl>,
    /// RFC 8414 §2 (PKCE methods).
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Published by Auth0 and nobody else: how an Auth0 tenant on a custom domain is recognised.
    #[serde(default)]
    pub mfa_challenge_endpoint: Option<String>,
    /// RFC 9207 §3: the provider names itself (`iss`) in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    openidconnect::core::CoreAuthDisplay,
    CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

// Keeps the alias honest: the core metadata type, plus our extra fields.
const _: fn(CoreProviderMetadata) = |_| {};

/// The crate's client after discovery: authorization URL set, token and userinfo endpoints "maybe" (checked).
type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Where signing out sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logout {
    /// RP-Initiated Logout: `end_session_endpoint` with `id_token_hint`, `post_logout_redirect_uri`, `client_id`.
    EndSession(Url),
    /// Auth0 without RP-initiated logout discovery: `/v2/logout?client_id=…&returnTo=…`.
    Auth0(Url),
    /// The provider offers neither: only the app's session ends.
    LocalOnly,
}

pub struct OidcClient {
    http: OidcHttp,
    client: Client,
    revocation_endpoint: Option<Url>,
    /// `client_secret_basic` (else `client_secret_post`), for the requests made without the crate.
    basic_auth: bool,
    /// The provider is an Auth0 tenant, whose revocation endpoint wants `client_id` in the body even beside Basic.
    auth0: bool,
    client_secret: Secret,
    client_id: ClientId,
    issuer: IssuerUrl,
    /// Every authorization response must carry `iss` (the provider said so in discovery, RFC 9207 §2.4).
    names_itself_in_answers: bool,
    scopes: Vec<String>,
    audience: Option<String>,
    userinfo_endpoint: Option<Url>,
    logout: Logout,
    keys: SigningKeys,
    id_tokens: IdTokenVerifier,
    access_tokens: Option<AccessTokenVerifier>,
    /// Origins the browser is sent to (sign-in, sign-out), for the Content-Security-Policy.
    browser_origins: Vec<String>,
    refresh_supported: bool,
}

/// Why discovery did not produce a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryFailure {
    /// The provider could not be reached or answered badly: try again later.
    #[error("{0}")]
    Transient(String),
    /// The provider and the configuration disagree: retrying cannot help.
    #[error("{0}")]
    Misconfigured(String),
}

/// What the token endpoint answered, for both grants.
pub struct TokenAnswer {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<CoreIdToken>,
    pub expires_in: Option<Duration>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The code or refresh token is invalid, expired, used or revoked (`invalid_grant`).
    #[error("the provider refused the grant: {0}")]
    InvalidGrant(String),
    /// Any other OAuth error (`invalid_client`, `unauthorized_client`, `access_denied`…).
    #[error("the provider refused the request ({error}): {description}")]
    Refused { error: String, description: String },
    #[error(transparent)]
    Unavailable(#[from] HttpError),
    #[error("the provider's answer cannot be read: {0}")]
    Malformed(String),
}

impl TokenError {
    /// The provider refused this app's client credentials (a wrong `OIDC_CLIENT_SECRET`, an authentication method
    /// the application does not allow): `invalid_client` or `unauthorized_client` (RFC 6749 §5.2), or Auth0's own
    /// way of saying it, `access_denied` with the description `Unauthorized` (its 401 for a wrong secret;
    /// auth0/node-auth0#682). Never the user's doing, so never a reason to end their session.
    pub fn is_client_refusal(&self) -> bool {
        match self {
            Self::Refused { error, description } => {
                matches!(error.as_str(), "invalid_client" | "unauthorized_client")
                    || (error == "access_denied" && description.eq_ignore_ascii_case("unauthorized"))
            }
            _ => false,
        }
    }
}

/// What an operator checks when the provider refuses the client credentials ([`TokenError::is_client_refusal`]).
pub const CLIENT_REFUSAL_FIX: &str = "check OIDC_CLIENT_ID and OIDC_CLIENT_SECRET, and the application's token \
    endpoint authentication method at the provider (authbridge sends HTTP Basic when the provider offers it, else the \
    secret in the form: Auth0's Credentials tab, Client Secret (Basic)), and that the application may use the \
    authorization_code and refresh_token grants";

/// OAuth and OpenID Connect error codes that are about the user rather than the request: the provider wants the user
/// to sign in again (`interaction_required`, `login_required`, `consent_required`, `account_selection_required`:
/// OpenID Connect Core §3.1.2.6; Microsoft Entra answers a refresh so when Conditional Access asks for MFA), or
/// refuses them (`access_denied`: Auth0 when an Action denies the sign-in or the refresh), or wants a second factor
/// first (`mfa_required`, `mfa_enrollment_required`: Auth0 answers every refresh so, with 403, while MFA is enforced;
/// only a new interactive sign-in can satisfy it).
pub fn is_refusal_of_the_user(error: &str) -> bool {
    matches!(
        error,
        "access_denied"
            | "interaction_required"
            | "login_required"
            | "consent_required"
            | "account_selection_required"
            | "mfa_required"
            | "mfa_enrollment_required"
    )
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UserInfoError {
    #[error(transparent)]
    Unavailable(#[from] HttpError),
    /// A 4xx: the access token is not one the endpoint takes (issued for another API).
    #[error("the userinfo endpoint refused the access token: {0}")]
    Refused(String),
    #[error("the userinfo endpoint failed: {0}")]
    Failed(String),
}

/// The userinfo claims authbridge reads, parsed leniently: providers disagree on types (Auth0's `updated_at` is a
/// string, Cognito's `email_verified` too), and nothing else here matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
}

/// What the browser is sent to the provider with.
pub struct Authorization<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    pub login_hint: Option<&'a str>,
    /// Asks for the sign-up page (Auth0's `screen_hint=signup`; other providers ignore it).
    pub sign_up: bool,
}

impl OidcClient {
    pub async fn discover(config: &OidcConfig, http: &OidcHttp) -> Result<Self, DiscoveryFailure> {
        use DiscoveryFailure::{Misconfigured, Transient};
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|error| Misconfigured(format!("OIDC_ISSUER is not a URL: {error}")))?;
        let metadata = Metadata::discover_async(issuer.clone(), http).await.map_err(|error| match error {
            openidconnect::DiscoveryError::Validation(message) => {
                Misconfigured(issuer_mismatch(&config.issuer, &message))
            }
            // Retried (a provider or a proxy may be down for a moment), with what to check should it last: a 404 or a
            // refused connection is as often a wrong OIDC_ISSUER (a path, http for https).
            other => Transient(format!(
                "discovery at {}.well-known/openid-configuration failed: {} (if this lasts, check OIDC_ISSUER: the \
                 issuer exactly as the provider publishes it)",
                with_slash(&config.issuer),
                describe(&other)
            )),
        })?;
        check_metadata(&metadata).map_err(Misconfigured)?;

        let auth_type = choose_auth_type(metadata.token_endpoint_auth_methods_supported());
        let basic_auth = matches!(auth_type, AuthType::BasicAuth);
        let client_id = ClientId::new(config.client_id.clone());
        let redirect_uri = RedirectUrl::from_url(config.redirect_uri.clone());
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            client_id.clone(),
            Some(ClientSecret::new(config.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect_uri)
        .set_auth_type(auth_type);
        let extra = metadata.additional_metadata();
        let revocation_endpoint = extra.revocation_endpoint.as_ref().map(|url| url.url().clone());
        let auth0 = is_auth0(&metadata);
        let logout = match (&extra.end_session_endpoint, auth0) {
            (Some(endpoint), _) => Logout::EndSession(endpoint.url().clone()),
            (None, true) => {
                crate::outbound::endpoint(issuer.url(), &["v2", "logout"]).map_or(Logout::LocalOnly, Logout::Auth0)
            }
            (None, false) => Logout::LocalOnly,
        };
        let mut browser_origins = vec![issuer.url().origin().ascii_serialization()];
        let logout_origin = match &logout {
            Logout::EndSession(url) | Logout::Auth0(url) => Some(url.origin().ascii_serialization()),
            Logout::LocalOnly => None,
        };
        for origin in [Some(metadata.authorization_endpoint().url().origin().ascii_serialization()), logout_origin]
            .into_iter()
            .flatten()
        {
            if !browser_origins.contains(&origin) {
                browser_origins.push(origin);
            }
        }
        let refresh_supported = metadata
            .grant_types_supported()
            .is_none_or(|grants| grants.iter().any(|grant| grant == &openidconnect::core::CoreGrantType::RefreshToken));

        Ok(Self {
            http: http.clone(),
            keys: SigningKeys::new(http.clone(), metadata.jwks_uri().clone(), metadata.jwks().clone()),
            id_tokens: IdTokenVerifier::new(client_id.clone(), issuer.clone()),
            access_tokens: config.audience.as_deref().map(|audience| {
                AccessTokenVerifier::new(&config.issuer, audience, &config.client_id, is_okta(&metadata))
            }),
            userinfo_endpoint: metadata.userinfo_endpoint().map(|url| url.url().clone()),
            client,
            revocation_endpoint,
            basic_auth,
            auth0,
            client_secret: config.client_secret.clone(),
            client_id,
            issuer,
            names_itself_in_answers: extra.authorization_response_iss_parameter_supported == Some(true),
            scopes: scopes_to_ask(&config.scopes, metadata.scopes_supported().map(Vec::as_slice)),
            audience: config.audience.clone(),
            logout,
            browser_origins,
            refresh_supported,
        })
    }

    pub fn logout(&self) -> &Logout {
        &self.logout
    }

    pub fn browser_origins(&self) -> &[String] {
        &self.browser_origins
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// Whether the provider promised `iss` in its authorization responses (RFC 9207), so one without it is refused.
    pub fn names_itself_in_answers(&self) -> bool {
        self.names_itself_in_answers
    }

    /// Whether the provider says it grants refresh tokens at all (absent from discovery: assume it does).
    pub fn refresh_supported(&self) -> bool {
        self.refresh_supported
    }

    pub fn revocation_supported(&self) -> bool {
        self.revocation_endpoint.is_some()
    }

    /// The authorization-code request with PKCE S256, `state` and `nonce` (all three from the sign-in state).
    pub fn authorization_url(&self, request: &Authorization<'_>) -> Url {
        let (state, nonce) = (request.state.to_owned(), request.nonce.to_owned());
        let mut authorize = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            // The crate adds `openid` itself.
            .add_scopes(self.scopes.iter().filter(|scope| *scope != "openid").map(|scope| Scope::new(scope.clone())))
            .add_extra_param("code_challenge", request.code_challenge)
            .add_extra_param("code_challenge_method", "S256");
        if let Some(audience) = &self.audience {
            // Auth0 knows `audience`, RFC 8707 providers `resource`; most ignore the one they do not know.
            authorize = authorize.add_extra_param("audience", audience);
            if sends_resource(self.issuer.url(), audience) {
                authorize = authorize.add_extra_param("resource", audience);
            }
        }
        if let Some(hint) = request.login_hint {
            authorize = authorize.set_login_hint(LoginHint::new(hint.to_owned()));
        }
        if request.sign_up {
            authorize = authorize.add_extra_param("screen_hint", "signup");
        }
        authorize.url().0
    }

    pub async fn exchange_code(&self, code: &str, code_verifier: &str) -> Result<TokenAnswer, TokenError> {
        let request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| TokenError::Malformed(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(code_verifier.to_owned()));
        request.request_async(&self.http).await.map(TokenAnswer::from).map_err(token_error)
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenAnswer, TokenError> {
        let refresh_token = RefreshToken::new(refresh_token.to_owned());
        let request = self
            .client
            .exchange_refresh_token(&refresh_token)
            .map_err(|error| TokenError::Malformed(error.to_string()))?;
        request.request_async(&self.http).await.map(TokenAnswer::from).map_err(token_error)
    }

    /// Revokes a refresh token (RFC 7009), when the provider publishes a revocation endpoint.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), TokenError> {
        let Some(endpoint) = &self.revocation_endpoint else { return Ok(()) };
        let mut form = vec![("token", refresh_token), ("token_type_hint", "refresh_token")];
        // `client_id` in the body beside Basic only for Auth0, which lists it as required there whichever way the
        // client authenticates (https://auth0.com/docs/api/authentication#revoke-refresh-token). Others take Basic
        // alone, and Okta refuses a request naming the client both ways ("Cannot supply multiple client
        // credentials"), as the crate's own token requests never do.
        if !self.basic_auth || self.auth0 {
            form.push(("client_id", self.client_id.as_str()));
        }
        let mut request = self.http.client().post(endpoint.clone());
        if self.basic_auth {
            // RFC 6749 §2.3.1: both parts form-encoded, then Basic.
            let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(self.client_id.as_str()), Some(encode(self.client_secret.expose())));
        } else {
            form.push(("client_secret", self.client_secret.expose()));
        }
        let response = outbound::observed(Upstream::Oidc, request.form(&form).send()).await;
        let mut response = response.map_err(|error| HttpError::of(&error))?;
        if let Some(error) = HttpError::from_status(response.status(), response.headers()) {
            return Err(error.into());
        }
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = super::http::read_capped(&mut response).await?;
        match serde_json::from_slice::<super::http::OAuthError>(&body) {
            Ok(body) => Err(TokenError::Refused {
                error: short(&body.error),
                description: body.error_description.as_deref().map(short).unwrap_or_default(),
            }),
            Err(_) => Err(TokenError::Malformed(format!("the revocation endpoint answered {status}"))),
        }
    }

    pub async fn verify_id_token(
        &self,
        token: &CoreIdToken,
        nonce: NonceRule<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        self.id_tokens.verify(&self.keys, token, nonce, TokenSource::Trusted).await
    }

    /// A bearer token sent to the API; `None` when no `OIDC_AUDIENCE` is configured (nothing can be accepted).
    pub async fn verify_access_token(&self, token: &str) -> Option<Result<Arc<AccessClaims>, AccessTokenError>> {
        let verifier = self.access_tokens.as_ref()?;
        Some(verifier.verify(&self.keys, token).await)
    }

    pub async fn fetch_keys(&self) -> Result<(), KeysError> {
        self.keys.fetch().await
    }

    pub fn has_keys(&self) -> bool {
        self.keys.has_keys()
    }

    /// The userinfo claims for the user the access token was issued to; `sub` must be `subject` (OIDC Core 5.3.4).
    /// `Ok(None)` when the provider has no userinfo endpoint.
    pub async fn userinfo(&self, access_token: &str, subject: &str) -> Result<Option<UserInfo>, UserInfoError> {
        let Some(endpoint) = &self.userinfo_endpoint else { return Ok(None) };
        let request = self
            .http
            .client()
            .get(endpoint.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        let response = outbound::observed(Upstream::Oidc, request.send()).await;
        let mut response = response.map_err(|error| HttpError::of(&error))?;
        if let Some(error) = HttpError::from_status(response.status(), response.headers()) {
            return Err(error.into());
        }
        if response.status().is_client_error() {
            return Err(UserInfoError::Refused(format!("it answered {}", response.status())));
        }
        if !response.status().is_success() {
            return Err(UserInfoError::Failed(format!("it answered {}", response.status())));
        }
        let body = super::http::read_capped(&mut response).await?;
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body).map_err(|_| {
            UserInfoError::Failed("its answer is not a JSON object (signed userinfo is not supported)".into())
        })?;
        if claims.get("sub").and_then(|sub| sub.as_str()) != Some(subject) {
            return Err(UserInfoError::Failed("its `sub` is not the signed-in user".to_owned()));
        }
        let text = |name: &str| claims.get(name).and_then(|value| value.as_str()).map(str::to_owned);
        Ok(Some(UserInfo {
            email: text("email"),
            email_verified: match claims.get("email_verified") {
                Some(serde_json::Value::Bool(verified)) => Some(*verified),
                Some(serde_json::Value::String(verified)) => verified.parse().ok(),
                _ => None,
            },
            given_name: text("given_name"),
            family_name: text("family_name"),
            name: text("name"),
        }))
    }

    /// Where to send the browser so the provider's session ends too; `None` when the provider offers no way.
    pub fn logout_url(&self, id_token_hint: Option<&str>, post_logout_redirect_uri: &Url) -> Option<Url> {
        match &self.logout {
            Logout::EndSession(endpoint) => {
                let mut url = endpoint.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(hint) = id_token_hint {
                        query.append_pair("id_token_hint", hint);
                    }
                    query
                        .append_pair("post_logout_redirect_uri", post_logout_redirect_uri.as_str())
                        .append_pair("client_id", self.client_id.as_str());
                }
                Some(url)
            }
            Logout::Auth0(endpoint) => {
                let mut url = endpoint.clone();
                url.query_pairs_mut()
                    .append_pair("client_id", self.client_id.as_str())
                    .append_pair("returnTo", post_logout_redirect_uri.as_str());
                Some(url)
            }
            Logout::LocalOnly => None,
        }
    }
}

impl From<CoreTokenResponse> for TokenAnswer {
    fn from(response: CoreTokenResponse) -> Self {
        Self {
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|token| token.secret().clone()),
            id_token: response.id_token().cloned(),
            expires_in: response.expires_in(),
        }
    }
}

/// Why discovery refused the document, in the operator's terms. The crate words it from its own side ("unexpected
/// issuer URI `<published>` (expected `<OIDC_ISSUER>`)"), which reads as if the configured value were the right
/// one: the published issuer is named as the value to set.
fn issuer_mismatch(configured: &str, message: &str) -> String {
    let published = message
        .strip_prefix("unexpected issuer URI `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(published, _)| published);
    let document = format!("{}.well-known/openid-configuration", with_slash(configured));
    match published {
        // Microsoft Entra's multi-tenant endpoints (`/common/v2.0`, `/organizations/v2.0`) publish a template
        // (`https://login.microsoftonline.com/{tenantid}/v2.0`), which no token's `iss` ever is.
        Some(published) if published.contains('{') => format!(
            "the provider publishes the issuer template `{published}` at {document}: a multi-tenant endpoint, whose \
             tokens each name their own tenant, is not supported; set OIDC_ISSUER to your tenant's issuer (with \
             Microsoft Entra ID, `https://login.microsoftonline.com/<tenant id>/v2.0`)"
        ),
        Some(published) => format!(
            "the provider publishes the issuer `{published}` at {document}, and OIDC_ISSUER is `{configured}`: set \
             OIDC_ISSUER to exactly `{published}` (trailing slash included or left out as published)"
        ),
        None => format!(
            "OIDC_ISSUER (`{configured}`) does not match the issuer the provider publishes at {document} ({message}): \
             set OIDC_ISSUER to exactly the published issuer, trailing slash included"
        ),
    }
}

/// The configured issuer with one trailing slash, as the crate forms the discovery URL.
fn with_slash(issuer: &str) -> String {
    if issuer.ends_with('/') { issuer.to_owned() } else { format!("{issuer}/") }
}

/// What the crate accepts but authbridge cannot work with. Each is a configuration to fix, not an outage.
fn check_metadata(metadata: &Metadata) -> Result<(), String> {
    let extra = metadata.additional_metadata();
    let mut endpoints = vec![
        ("authorization_endpoint", Some(metadata.authorization_endpoint().url())),
        ("token_endpoint", metadata.token_endpoint().map(|url| url.url())),
        ("userinfo_endpoint", metadata.userinfo_endpoint().map(|url| url.url())),
        ("jwks_uri", Some(metadata.jwks_uri().url())),
        ("end_session_endpoint", extra.end_session_endpoint.as_ref().map(|url| url.url())),
        ("revocation_endpoint", extra.revocation_endpoint.as_ref().map(|url| url.url())),
    ];
    if metadata.token_endpoint().is_none() {
        return Err("the provider's discovery document has no token_endpoint".to_owned());
    }
    for (name, url) in endpoints.drain(..) {
        if let Some(url) = url
            && !is_secure(url)
        {
            return Err(format!("the provider's {name} ({url}) is not https (plain http is allowed only on loopback)"));
        }
    }
    let code = ResponseTypes::new(vec![CoreResponseType::Code]);
    if !metadata.response_types_supported().contains(&code) {
        return Err("the provider does not support the authorization code flow (response_type=code)".to_owned());
    }
    if !metadata.id_token_signing_alg_values_supported().iter().any(|alg| ALLOWED_ALGS.contains(alg)) {
        return Err("the provider signs ID tokens with no asymmetric algorithm (an Auth0 application set to HS256 \
                    must be switched to RS256 under Advanced Settings → OAuth)"
            .to_owned());
    }
    if let Some(methods) = &extra.code_challenge_methods_supported
        && !methods.iter().any(|method| method == "S256")
    {
        return Err("the provider does not support PKCE with S256".to_owned());
    }
    if let Some(methods) = metadata.token_endpoint_auth_methods_supported()
        && !methods.iter().any(|method| {
            matches!(method, CoreClientAuthMethod::ClientSecretBasic | CoreClientAuthMethod::ClientSecretPost)
        })
    {
        return Err(
            "the provider's token endpoint accepts neither client_secret_basic nor client_secret_post".to_owned()
        );
    }
    Ok(())
}

/// Https, or http on a loopback host (local runs and tests).
fn is_secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// `client_secret_basic` unless only `client_secret_post` is offered; an absent list means basic (Discovery §3).
fn choose_auth_type(supported: Option<&Vec<CoreClientAuthMethod>>) -> AuthType {
    match supported {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

/// Whether `audience` also goes out as RFC 8707's `resource`: only as the absolute URI that RFC requires (§2: a
/// provider may answer anything else with `invalid_target`, and Auth0 API identifiers need not be URIs), and never
/// to Microsoft Entra ID, whose v2.0 endpoint refuses any `resource` parameter (AADSTS901002) and takes the API
/// from the scopes instead (`api://…/.default` in `OIDC_SCOPES`).
fn sends_resource(issuer: &Url, audience: &str) -> bool {
    !is_entra(issuer) && Url::parse(audience).is_ok_and(|uri| uri.has_host() || uri.scheme() == "urn")
}

/// A Microsoft Entra ID issuer: the global cloud, the national clouds (`.us`, `.partner.microsoftonline.cn`, `.de`),
/// and External ID tenants (`<tenant>.ciamlogin.com`).
pub(crate) fn is_entra(issuer: &Url) -> bool {
    let host = issuer.host_str().unwrap_or_default().to_ascii_lowercase();
    host.starts_with("login.microsoftonline.")
        || host.starts_with("login.partner.microsoftonline.")
        || host.ends_with(".ciamlogin.com")
}

/// [`is_entra`] for an issuer as configured (a string that may not parse: then not Entra's).
pub(crate) fn is_entra_issuer(issuer: &str) -> bool {
    Url::parse(issuer).is_ok_and(|url| is_entra(&url))
}

/// An Okta authorization server: its issuer on one of Okta's domains, or, on a custom domain, Okta's layout of the
/// issuer and its authorization endpoint together (Okta, "Authorization servers"): the org authorization server's
/// issuer is the bare origin and its endpoint `/oauth2/v1/authorize`; a custom one's issuer is `/oauth2/<server id>`
/// and its endpoint `/oauth2/<server id>/v1/authorize`. The endpoint alone is not enough: other providers use that
/// path too (Descope's is `/oauth2/v1/authorize`, under an issuer of `/<project id>`). Only Okta's access tokens
/// name the user in `uid`.
fn is_okta(metadata: &Metadata) -> bool {
    let issuer = metadata.issuer().url();
    let host = issuer.host_str().unwrap_or_default().to_ascii_lowercase();
    let okta_domains = [".okta.com", ".oktapreview.com", ".okta-emea.com", ".okta-gov.com", ".okta.mil"];
    let segments = |url: &Url| -> Vec<String> {
        url.path().split('/').filter(|segment| !segment.is_empty()).map(str::to_owned).collect()
    };
    let endpoint = metadata.authorization_endpoint().url();
    let same_origin = endpoint.origin() == issuer.origin();
    let layout = match (segments(issuer).as_slice(), segments(endpoint).as_slice()) {
        ([], [oauth2, v1, authorize]) => oauth2 == "oauth2" && v1 == "v1" && authorize == "authorize",
        ([oauth2, server], [oauth2_again, server_again, v1, authorize]) => {
            oauth2 == "oauth2"
                && oauth2_again == "oauth2"
                && server == server_again
                && v1 == "v1"
                && authorize == "authorize"
        }
        _ => false,
    };
    okta_domains.iter().any(|domain| host.ends_with(domain)) || (same_origin && layout)
}

/// An Auth0 tenant: its issuer host (`*.auth0.com`), or, on a custom domain, the discovery field only Auth0 publishes.
fn is_auth0(metadata: &Metadata) -> bool {
    let host = metadata.issuer().url().host_str().unwrap_or_default().to_ascii_lowercase();
    host.ends_with(".auth0.com") || metadata.additional_metadata().mfa_challenge_endpoint.is_some()
}

type CoreTokenError = RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>;

fn token_error(error: CoreTokenError) -> TokenError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let description = response.error_description().map(|text| short(text)).unwrap_or_default();
            match response.error() {
                CoreErrorResponseType::InvalidGrant => TokenError::InvalidGrant(description),
                other => TokenError::Refused { error: short(other.as_ref()), description },
            }
        }
        RequestTokenError::Request(error) => TokenError::Unavailable(error),
        // The body may hold tokens: only where parsing failed is kept.
        RequestTokenError::Parse(error, _body) => {
            TokenError::Malformed(format!("it does not parse at `{}`", error.path()))
        }
        RequestTokenError::Other(message) => TokenError::Malformed(short(&message)),
    }
}

/// The scopes an authorization request asks for. The default scopes ask for a refresh token with `offline_access`
/// (core §11); a provider that publishes the scopes it supports without that one refuses the whole sign-in over it
/// (Google: `invalid_scope`), so there the default leaves it out. Scopes an operator chose are sent as they are.
fn scopes_to_ask(configured: &[String], supported: Option<&[Scope]>) -> Vec<String> {
    let default = configured.iter().map(String::as_str).eq(crate::config::DEFAULT_OIDC_SCOPES.split_whitespace());
    let unsupported = |scope: &String| {
        scope == "offline_access" && supported.is_some_and(|supported| !supported.iter().any(|s| s.as_str() == scope))
    };
    configured.iter().filter(|scope| !(default && unsupported(scope))).cloned().collect()
}

/// Provider-written text, bounded (it ends up in logs and, for refusals, on a page).
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_mismatch_names_the_value_to_set_or_says_a_template_is_not_one() {
        let message = issuer_mismatch(
            "https://tenant.auth0.com",
            "unexpected issuer URI `https://tenant.auth0.com/` (expected `https://tenant.auth0.com`)",
        );
        assert!(message.contains("set OIDC_ISSUER to exactly `https://tenant.auth0.com/`"), "{message}");
        let entra = issuer_mismatch(
            "https://login.microsoftonline.com/common/v2.0",
            "unexpected issuer URI `https://login.microsoftonline.com/{tenantid}/v2.0` (expected `https://login.microsoftonline.com/common/v2.0`)",
        );
        assert!(entra.contains("multi-tenant") && !entra.contains("set OIDC_ISSUER to exactly"), "{entra}");
        let other = issuer_mismatch("https://issuer.example", "something else");
        assert!(other.contains("something else") && other.contains("OIDC_ISSUER"), "{other}");
    }

    #[test]
    fn the_default_scopes_leave_out_offline_access_where_the_provider_does_not_list_it() {
        let owned = |text: &str| text.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let default = owned(crate::config::DEFAULT_OIDC_SCOPES);
        let google = [Scope::new("openid".into()), Scope::new("email".into()), Scope::new("profile".into())];
        let auth0 = [Scope::new("openid".into()), Scope::new("offline_access".into())];
        assert_eq!(scopes_to_ask(&default, Some(&google)), owned("openid profile email"));
        assert_eq!(scopes_to_ask(&default, Some(&auth0)), default, "listed: asked for");
        assert_eq!(scopes_to_ask(&default, None), default, "nothing published: asked for");
        let chosen = owned("openid email offline_access");
        assert_eq!(scopes_to_ask(&chosen, Some(&google)), chosen, "the operator's choice is sent as it is");
    }

    #[test]
    fn basic_unless_only_post_is_offered() {
        use CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost, PrivateKeyJwt};
        let basic = |auth: AuthType| matches!(auth, AuthType::BasicAuth);
        assert!(basic(choose_auth_type(None)));
        assert!(basic(choose_auth_type(Some(&vec![ClientSecretPost, ClientSecretBasic]))));
        assert!(matches!(choose_auth_type(Some(&vec![ClientSecretPost, PrivateKeyJwt])), AuthType::RequestBody));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for (url, secure) in [
            ("https://tenant.auth0.com/authorize", true),
            ("http://127.0.0.1:4000/authorize", true),
            ("http://localhost:4000/authorize", true),
            ("http://[::1]:4000/authorize", true),
            ("http://tenant.auth0.com/authorize", false),
            ("http://10.0.0.1/authorize", false),
        ] {
            assert_eq!(is_secure(&Url::parse(url).expect("url")), secure, "{url}");
        }
    }

    #[test]
    fn provider_text_is_bounded() {
        assert_eq!(short("fine"), "fine");
        let long = "é".repeat(1000);
        assert_eq!(short(&long).chars().count(), 301);
    }
}

#[cfg(test)]
mod metadata_tests {
    use super::*;

    #[test]
    fn the_audience_goes_out_as_a_resource_only_where_that_cannot_break_the_sign_in() {
        let url = |text: &str| Url::parse(text).expect("a URL");
        let auth0 = url("https://tenant.us.auth0.com/");
        assert!(sends_resource(&auth0, "https://api.example.com/"));
        assert!(sends_resource(&auth0, "urn:example:api"));
        assert!(!sends_resource(&auth0, "my-api"), "RFC 8707 wants an absolute URI; Auth0 identifiers need not be");
        let entra = url("https://login.microsoftonline.com/tenant-id/v2.0");
        assert!(!sends_resource(&entra, "api://5d7e4c1a-0000-4000-8000-000000000000"), "Entra refuses `resource`");
        assert!(!sends_resource(&entra, "https://api.example.com/"));
        for issuer in ["https://login.microsoftonline.us/t/v2.0", "https://contoso.ciamlogin.com/t/v2.0"] {
            assert!(!sends_resource(&url(issuer), "https://api.example.com/"), "{issuer}");
        }
    }

    #[test]
    fn the_extra_discovery_fields_are_read() {
        let document = serde_json::json!({
            "issuer": "https://tenant.auth0.com/",
            "authorization_endpoint": "https://tenant.auth0.com/authorize",
            "token_endpoint": "https://tenant.auth0.com/oauth/token",
            "jwks_uri": "https://tenant.auth0.com/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256", "RS256"],
            "end_session_endpoint": "https://tenant.auth0.com/oidc/logout",
            "revocation_endpoint": "https://tenant.auth0.com/oauth/revoke",
            "code_challenge_methods_supported": ["S256", "plain"],
            "mfa_challenge_endpoint": "https://tenant.auth0.com/mfa/challenge",
        });
        let metadata: Metadata = serde_json::from_value(document).expect("metadata");
        let extra = metadata.additional_metadata();
        assert!(extra.end_session_endpoint.is_some());
        assert!(extra.revocation_endpoint.is_some());
        assert_eq!(
            extra.code_challenge_methods_supported.as_deref(),
            Some(&["S256".to_owned(), "plain".to_owned()][..])
        );
        assert!(is_auth0(&metadata));
        assert!(!is_okta(&metadata));
        assert_eq!(check_metadata(&metadata), Ok(()));
    }

    /// Okta's own domains, or Okta's layout of the authorization endpoint on a custom domain; nobody else's.
    #[test]
    fn okta_is_told_by_its_domains_or_its_endpoint_layout() {
        let metadata = |issuer: &str, authorize: &str| -> Metadata {
            serde_json::from_value(serde_json::json!({
                "issuer": issuer,
                "authorization_endpoint": authorize,
                "jwks_uri": format!("{issuer}/keys"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }))
            .expect("metadata")
        };
        let okta = [
            ("https://acme.okta.com/oauth2/default", "https://acme.okta.com/oauth2/default/v1/authorize"),
            ("https://acme.oktapreview.com", "https://acme.oktapreview.com/oauth2/v1/authorize"),
            ("https://login.acme.example/oauth2/aus1a2b3c", "https://login.acme.example/oauth2/aus1a2b3c/v1/authorize"),
            ("https://login.acme.example", "https://login.acme.example/oauth2/v1/authorize"),
        ];
        for (issuer, authorize) in okta {
            assert!(is_okta(&metadata(issuer, authorize)), "{issuer}");
        }
        let others = [
            ("https://tenant.us.auth0.com/", "https://tenant.us.auth0.com/authorize"),
            ("https://login.microsoftonline.com/t/v2.0", "https://login.microsoftonline.com/t/oauth2/v2.0/authorize"),
            ("https://sso.example/realms/acme", "https://sso.example/realms/acme/protocol/openid-connect/auth"),
            ("https://accounts.google.com", "https://accounts.google.com/o/oauth2/v2/auth"),
            ("https://okta.com.evil.example", "https://okta.com.evil.example/authorize"),
            ("https://api.descope.com/P2abc", "https://api.descope.com/oauth2/v1/authorize"),
            ("https://login.acme.example/oauth2/aus1", "https://login.acme.example/oauth2/aus2/v1/authorize"),
            ("https://login.acme.example", "https://elsewhere.example/oauth2/v1/authorize"),
            // One segment off Okta's layout, each in turn.
            ("https://id.example", "https://id.example/connect/v1/authorize"),
            ("https://id.example", "https://id.example/oauth2/v2/authorize"),
            ("https://id.example", "https://id.example/oauth2/v1/auth"),
            ("https://id.example/tenants/aus1", "https://id.example/oauth2/aus1/v1/authorize"),
            ("https://id.example/oauth2/aus1", "https://id.example/connect/aus1/v1/authorize"),
            ("https://id.example/oauth2/aus1", "https://id.example/oauth2/aus1/v2/authorize"),
            ("https://id.example/oauth2/aus1", "https://id.example/oauth2/aus1/v1/auth"),
        ];
        for (issuer, authorize) in others {
            assert!(!is_okta(&metadata(issuer, authorize)), "{issuer}");
        }
    }
}
