//! Configuration, read once from the environment at start-up.
//!
//! Every variable is checked here, before a socket is opened, so a bad deployment fails at once with a message
//! naming the variable, instead of failing on the first sign-in. Secrets are wrapped in [`Secret`], whose `Debug`
//! never prints the value, so a `{:?}` of the configuration is safe to log.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

/// A value that must never reach a log, an error message or a page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that needs it (signing, sealing, an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}

/// What `serve` cannot start without, whichever provider signs people in. The cookie password is required too,
/// under either of its names ([`COOKIE_PASSWORD`]).
const REQUIRED: [&str; 2] = ["INSFORGE_URL", "INSFORGE_JWT_SECRET"];
/// What WorkOS AuthKit needs (`IDENTITY_PROVIDER=workos`, the default).
const REQUIRED_FOR_WORKOS: [&str; 3] = ["WORKOS_API_KEY", "WORKOS_CLIENT_ID", "WORKOS_REDIRECT_URI"];
/// What an OpenID Connect provider needs (`IDENTITY_PROVIDER=oidc`).
const REQUIRED_FOR_OIDC: [&str; 4] = ["OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_REDIRECT_URI"];
/// Every `OIDC_*` variable, to notice a configuration meant for OIDC that forgot to say so.
const OIDC_VARIABLES: [&str; 9] = [
    "OIDC_ISSUER",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_REDIRECT_URI",
    "OIDC_SCOPES",
    "OIDC_AUDIENCE",
    "OIDC_POST_LOGOUT_REDIRECT_URI",
    "OIDC_CONNECT_TIMEOUT_MS",
    "OIDC_REQUEST_TIMEOUT_MS",
];

/// The session cookie's password, the same for both providers: `SESSION_COOKIE_PASSWORD`, or its older name
/// `WORKOS_COOKIE_PASSWORD`, which keeps working (from before there was a second provider).
pub const COOKIE_PASSWORD: (&str, &str) = ("SESSION_COOKIE_PASSWORD", "WORKOS_COOKIE_PASSWORD");
/// The previous password during a rotation, under the same two names.
pub const PREVIOUS_COOKIE_PASSWORD: (&str, &str) =
    ("SESSION_COOKIE_PASSWORD_PREVIOUS", "WORKOS_COOKIE_PASSWORD_PREVIOUS");
/// The scopes asked for when `OIDC_SCOPES` is not set: `offline_access` for a refresh token.
pub const DEFAULT_OIDC_SCOPES: &str = "openid profile email offline_access";

/// Minimum length of the InsForge JWT secret: HS256 with a shorter key is guessable offline.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Minimum length of the cookie password, as the WorkOS SDKs require.
pub const MIN_COOKIE_PASSWORD_CHARS: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub insforge: InsforgeConfig,
    /// Who signs people in (`IDENTITY_PROVIDER`).
    pub provider: ProviderConfig,
    pub session: SessionConfig,
    /// authbridge's own bookkeeping database (`DATABASE_URL`): `None` without it. What it gives each provider is
    /// decided in one place, `AppState::new`.
    pub database: Option<DatabaseConfig>,
    /// The WorkOS enterprise lifecycle (webhooks, the Events API, deprovisioning): `None` without `DATABASE_URL` or
    /// with an OpenID Connect provider, and then the app runs without it.
    pub lifecycle: Option<LifecycleConfig>,
}

/// The identity provider sessions are made with, and its settings. Only the chosen provider's variables are read
/// (and required).
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Workos(WorkosConfig),
    Oidc(OidcConfig),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind_addr: SocketAddr,
    /// The public origin of the app (`https://todos.example.com`), used for same-origin checks and the
    /// post-logout return address. No path, no trailing slash.
    pub app_url: Url,
    /// Longest time any request may take inside the app before it is answered with 504.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers (and longest an idle keep-alive connection stays).
    pub header_read_timeout: Duration,
    /// Most connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Most requests handled at once; more are answered 503 with `Retry-After` at once (load shedding).
    pub max_concurrent_requests: usize,
    /// Where `GET /metrics` (Prometheus) is served; `None` (the default) serves no metrics at all. Never the
    /// public listener.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// Whether an impersonated session (WorkOS support staff signed in as a user) may change anything
    /// (`IMPERSONATION_ALLOW_WRITES`, off by default: impersonation is for looking).
    pub impersonation_allow_writes: bool,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`; none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct InsforgeConfig {
    /// Base URL of the InsForge project, e.g. `https://abc123.us-east.insforge.app`.
    pub url: Url,
    /// The project's JWT secret: every token the bridge mints is signed with it.
    pub jwt_secret: Secret,
    pub token_ttl: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkosConfig {
    pub api_key: Secret,
    pub client_id: String,
    pub redirect_uri: Url,
    pub api_base_url: Url,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A generic OpenID Connect provider (Auth0, Okta, Entra ID, Keycloak, Google…), found through discovery.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as configured: the discovery document's `issuer` must be this string, character for character
    /// (Auth0's ends with `/`). Https, or plain http on a loopback host.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: Url,
    /// Always includes `openid`.
    pub scopes: Vec<String>,
    /// The API the access tokens are for (Auth0's `audience`, RFC 8707's `resource`); bearer tokens on `/api/*`
    /// must be issued for it. Without it, no bearer token is accepted.
    pub audience: Option<String>,
    /// Where the provider sends the browser after signing out; registered at the provider.
    pub post_logout_redirect_uri: Url,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Seals new cookies and opens existing ones.
    pub cookie_password: Secret,
    /// Opens cookies sealed before a key rotation; never used to seal.
    pub previous_cookie_password: Option<Secret>,
    /// `Secure` cookies, set when the app is served over https.
    pub secure_cookies: bool,
}

/// Connections in the bookkeeping pool by default (`DATABASE_MAX_CONNECTIONS`): the revocation check, webhooks, the
/// consumer and sign-in sync each hold one only for a few statements.
pub const DATABASE_MAX_CONNECTIONS: u32 = 5;
/// The most `DATABASE_MAX_CONNECTIONS` may ask of PostgreSQL (whose own default `max_connections` is 100, shared
/// with InsForge and every other replica).
const MAX_DATABASE_CONNECTIONS: u64 = 100;
/// The fewest: the Events API consumer may hold one for a whole poll and the Audit Log deliverer one for a batch,
/// and requests must still get one.
const MIN_DATABASE_CONNECTIONS: u64 = 3;
/// Longest a request waits for a database connection: well inside the request time limit, so an outage is answered
/// 503 (and retried by WorkOS) instead of running into a 504.
pub const DATABASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The Events API poll interval when `DATABASE_URL` is set and `WORKOS_EVENTS_POLL_SECONDS` is not.
pub const DEFAULT_EVENTS_POLL_SECONDS: u64 = 30;

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// A direct connection to the InsForge project's PostgreSQL, used only for the `authbridge` schema.
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// The WorkOS lifecycle's own settings; its database is [`Config::database`].
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Signs `POST /webhooks/workos` deliveries; without it the route does not exist.
    pub webhook_secret: Option<Secret>,
    /// Also accepted while a webhook secret is being rotated.
    pub previous_webhook_secret: Option<Secret>,
    /// How often the Events API is read; `None` (`WORKOS_EVENTS_POLL_SECONDS=0`) turns the consumer off.
    pub events_poll_interval: Option<Duration>,
    /// The Audit Log schema version each action's events name (`WORKOS_AUDIT_LOG_VERSIONS`); absent: 1.
    pub audit_log_versions: HashMap<String, u32>,
}

impl Config {
    /// Reads the configuration from the process environment (after loading `.env` when present).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can check it without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let kind = provider_kind(&vars)?;

        // All missing variables at once: a newcomer filling in `.env` should not need one restart per variable.
        let for_provider: &[&'static str] = match kind {
            ProviderKind::Workos => &REQUIRED_FOR_WORKOS,
            ProviderKind::Oidc => &REQUIRED_FOR_OIDC,
        };
        let mut missing: Vec<&'static str> =
            REQUIRED.iter().chain(for_provider).copied().filter(|name| vars.optional(name).is_none()).collect();
        if vars.either(COOKIE_PASSWORD).is_none() {
            missing.push(COOKIE_PASSWORD.0);
        }
        if let [first, rest @ ..] = missing.as_slice() {
            let mut problem = match rest {
                [] => "is not set (see .env.example)".to_owned(),
                [one] => format!("is not set, nor is {one} (see .env.example)"),
                _ => format!("is not set, nor are {} (see .env.example)", rest.join(", ")),
            };
            let oidc_meant =
                kind == ProviderKind::Workos && OIDC_VARIABLES.iter().any(|name| vars.optional(name).is_some());
            if oidc_meant && missing.iter().any(|name| REQUIRED_FOR_WORKOS.contains(name)) {
                problem
                    .push_str("; OIDC_* variables are set: for an OpenID Connect provider, set IDENTITY_PROVIDER=oidc");
            }
            return Err(ConfigError::new(first, problem));
        }

        let redirect_variable = match kind {
            ProviderKind::Workos => "WORKOS_REDIRECT_URI",
            ProviderKind::Oidc => "OIDC_REDIRECT_URI",
        };
        let redirect_uri = vars.url(redirect_variable)?;
        // The provider sends the browser back there, so it must be the route the app serves: any other path would
        // be accepted here and end every sign-in on a 404. Nothing else either: OAuth forbids a fragment, a query
        // would come back beside the provider's answer, and credentials have no place in it (nor in this message,
        // which is why it is built from the origin alone).
        if redirect_uri.path() != CALLBACK_PATH
            || redirect_uri.query().is_some()
            || redirect_uri.fragment().is_some()
            || !redirect_uri.username().is_empty()
            || redirect_uri.password().is_some()
        {
            return Err(ConfigError::new(
                redirect_variable,
                format!(
                    "must be the app's {CALLBACK_PATH} route and nothing more, like {}{CALLBACK_PATH}",
                    redirect_uri.origin().ascii_serialization()
                ),
            ));
        }
        let app_url = match vars.optional("APP_URL") {
            Some(raw) => parse_origin("APP_URL", &raw)?,
            None => origin_of(&redirect_uri),
        };
        // The sign-in's cookies belong to the host that sets them: a callback on another origin than the app would
        // never see the sign-in state set by `/login` (and the app's same-origin checks would refuse its forms).
        if app_url.origin() != redirect_uri.origin() {
            return Err(ConfigError::new(
                "APP_URL",
                format!(
                    "must be the origin of {redirect_variable} ({}): the sign-in comes back there, and its cookies \
                     are that host's only",
                    redirect_uri.origin().ascii_serialization()
                ),
            ));
        }
        // One source of truth for "served over https": the public origin decides Secure cookies and HSTS alike.
        let secure_cookies = app_url.scheme() == "https";
        let cookie_password = vars
            .cookie_password(COOKIE_PASSWORD)?
            .ok_or_else(|| ConfigError::new(COOKIE_PASSWORD.0, "is not set (see .env.example)"))?;
        let previous = vars.named_cookie_password(PREVIOUS_COOKIE_PASSWORD)?;
        if let Some((name, previous)) = &previous
            && *previous == cookie_password
        {
            // A slip in a rotation's steps: the cookies sealed with the other password would stop opening.
            return Err(ConfigError::new(
                name,
                "is the same as the current cookie password: during a rotation it holds the other password, the \
                 one being replaced or the one coming (README: Several replicas)",
            ));
        }
        let previous_cookie_password = previous.map(|(_, password)| password);

        let jwt_secret = vars.required_secret("INSFORGE_JWT_SECRET")?;
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::new(
                "INSFORGE_JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes (it is {})", jwt_secret.len()),
            ));
        }

        let provider = match kind {
            ProviderKind::Workos => ProviderConfig::Workos(WorkosConfig {
                api_key: Secret::new(vars.required_secret("WORKOS_API_KEY")?),
                client_id: vars.required("WORKOS_CLIENT_ID")?.trim().to_owned(),
                redirect_uri,
                api_base_url: match vars.optional("WORKOS_API_BASE_URL") {
                    Some(raw) => workos_api_base_url(&raw)?,
                    None => Url::parse("https://api.workos.com")
                        .map_err(|e| ConfigError::new("WORKOS_API_BASE_URL", e.to_string()))?,
                },
                connect_timeout: Duration::from_millis(vars.limit(
                    "WORKOS_CONNECT_TIMEOUT_MS",
                    2000,
                    MAX_TIMEOUT_MS,
                )?),
                request_timeout: Duration::from_millis(vars.limit(
                    "WORKOS_REQUEST_TIMEOUT_MS",
                    10_000,
                    MAX_TIMEOUT_MS,
                )?),
            }),
            ProviderKind::Oidc => ProviderConfig::Oidc(oidc_config(&vars, redirect_uri, &app_url)?),
        };

        let bind_addr: SocketAddr = vars.parsed("BIND_ADDR", "127.0.0.1:3000")?;
        let metrics_bind_addr = vars
            .optional("METRICS_BIND_ADDR")
            .map(|raw| {
                raw.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| ConfigError::new("METRICS_BIND_ADDR", format!("cannot parse {raw:?}: {e}")))
            })
            .transpose()?;
        if metrics_bind_addr.is_some_and(|metrics| same_listener(metrics, bind_addr)) {
            // Said here, by name, rather than as "address already in use" from the second bind.
            return Err(ConfigError::new(
                "METRICS_BIND_ADDR",
                "is where BIND_ADDR listens: the metrics need an address of their own, never the public listener",
            ));
        }

        Ok(Config {
            server: ServerConfig {
                bind_addr,
                app_url,
                request_timeout: Duration::from_secs(vars.limit("REQUEST_TIMEOUT_SECONDS", 30, MAX_TIMEOUT_SECONDS)?),
                header_read_timeout: Duration::from_secs(vars.limit(
                    "HEADER_READ_TIMEOUT_SECONDS",
                    5,
                    MAX_TIMEOUT_SECONDS,
                )?),
                max_connections: vars.limit("MAX_CONNECTIONS", 1024, MAX_COUNT)? as usize,
                max_concurrent_requests: vars.limit("MAX_CONCURRENT_REQUESTS", 512, MAX_COUNT)? as usize,
                metrics_bind_addr,
                // Impersonation is WorkOS's: allowing its writes under another provider says the operator expects
                // something that can never happen. (`false`, as .env.example has it, is harmless.)
                impersonation_allow_writes: match boolean(&vars, "IMPERSONATION_ALLOW_WRITES", false)? {
                    true if kind == ProviderKind::Oidc => {
                        return Err(ConfigError::new(
                            "IMPERSONATION_ALLOW_WRITES",
                            "is about WorkOS impersonation, which needs IDENTITY_PROVIDER=workos",
                        ));
                    }
                    allowed => allowed,
                },
                trusted_proxies: parse_trusted_proxies(&vars.optional("TRUSTED_PROXIES").unwrap_or_default())
                    .map_err(|problem| ConfigError::new("TRUSTED_PROXIES", problem))?,
            },
            insforge: InsforgeConfig {
                url: insforge_url(&vars)?,
                jwt_secret: Secret::new(jwt_secret),
                token_ttl: Duration::from_secs(vars.limit(
                    "INSFORGE_TOKEN_TTL_SECONDS",
                    300,
                    MAX_INSFORGE_TOKEN_TTL_SECONDS,
                )?),
                connect_timeout: Duration::from_millis(vars.limit(
                    "INSFORGE_CONNECT_TIMEOUT_MS",
                    2000,
                    MAX_TIMEOUT_MS,
                )?),
                request_timeout: Duration::from_millis(vars.limit(
                    "INSFORGE_REQUEST_TIMEOUT_MS",
                    10_000,
                    MAX_TIMEOUT_MS,
                )?),
            },
            provider,
            session: SessionConfig { cookie_password, previous_cookie_password, secure_cookies },
            database: database(&vars)?,
            // Evaluated after `database`, which has checked the URL.
            lifecycle: lifecycle(&vars, kind, vars.optional("DATABASE_URL").is_some())?,
        })
    }

    /// The WorkOS settings, when WorkOS is the provider.
    pub fn workos(&self) -> Option<&WorkosConfig> {
        match &self.provider {
            ProviderConfig::Workos(workos) => Some(workos),
            ProviderConfig::Oidc(_) => None,
        }
    }

    /// The OpenID Connect settings, when an OIDC provider is the provider.
    pub fn oidc(&self) -> Option<&OidcConfig> {
        match &self.provider {
            ProviderConfig::Oidc(oidc) => Some(oidc),
            ProviderConfig::Workos(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderKind {
    Workos,
    Oidc,
}

/// `IDENTITY_PROVIDER`, defaulting to WorkOS. Left unset while only `OIDC_*` variables are present, it is an error
/// rather than a guess: starting with WorkOS would only fail later, on variables the operator never meant to set.
fn provider_kind(vars: &Vars<'_>) -> Result<ProviderKind, ConfigError> {
    const NAME: &str = "IDENTITY_PROVIDER";
    match vars.optional(NAME).map(|raw| raw.trim().to_ascii_lowercase()).as_deref() {
        Some("workos") => Ok(ProviderKind::Workos),
        Some("oidc") => Ok(ProviderKind::Oidc),
        Some(other) => Err(ConfigError::new(NAME, format!("must be `workos` or `oidc`, not {other:?}"))),
        None => {
            let oidc: Vec<&str> = OIDC_VARIABLES.iter().copied().filter(|name| vars.optional(name).is_some()).collect();
            // The redirect URI is not evidence: `.env.example` fills it in for WorkOS.
            let workos_set = ["WORKOS_API_KEY", "WORKOS_CLIENT_ID"].iter().any(|name| vars.optional(name).is_some());
            if oidc.is_empty() || workos_set {
                return Ok(ProviderKind::Workos);
            }
            Err(ConfigError::new(
                NAME,
                format!(
                    "is not set, and {} {} set but no WorkOS variable is: set IDENTITY_PROVIDER=oidc to sign in \
                     with that OpenID Connect provider (or IDENTITY_PROVIDER=workos for WorkOS)",
                    oidc.join(", "),
                    if oidc.len() == 1 { "is" } else { "are" },
                ),
            ))
        }
    }
}

fn oidc_config(vars: &Vars<'_>, redirect_uri: Url, app_url: &Url) -> Result<OidcConfig, ConfigError> {
    let client_id = vars.required("OIDC_CLIENT_ID")?.trim().to_owned();
    let scopes: Vec<String> = vars
        .optional("OIDC_SCOPES")
        .unwrap_or_else(|| DEFAULT_OIDC_SCOPES.to_owned())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|scope| scope == "openid") {
        return Err(ConfigError::new(
            "OIDC_SCOPES",
            "must include `openid` (it is what makes the sign-in OpenID Connect)",
        ));
    }
    let issuer = oidc_issuer(&vars.required("OIDC_ISSUER")?)?;
    let audience = vars.optional("OIDC_AUDIENCE").map(|audience| audience.trim().to_owned());
    // Microsoft Entra ID is the exception: an API exposed on the client's own app registration (the only way its
    // access tokens name the same `sub` as its ID tokens) gets v2.0 access tokens whose `aud` is that client id. Its
    // ID tokens still never pass: they carry no `scp`, which the bearer check requires of Entra's tokens, and
    // they carry our sign-in's `nonce`.
    if audience.as_deref() == Some(client_id.as_str()) && !crate::oidc::client::is_entra_issuer(&issuer) {
        return Err(ConfigError::new(
            "OIDC_AUDIENCE",
            "must be the identifier of an API, not the client id: ID tokens are issued for the client id and must \
             never pass as access tokens",
        ));
    }
    Ok(OidcConfig {
        issuer,
        client_id,
        client_secret: Secret::new(vars.required_secret("OIDC_CLIENT_SECRET")?),
        redirect_uri,
        scopes,
        audience,
        post_logout_redirect_uri: match vars.optional("OIDC_POST_LOGOUT_REDIRECT_URI") {
            Some(raw) => parse_url("OIDC_POST_LOGOUT_REDIRECT_URI", &raw)?,
            None => app_url.clone(),
        },
        // Discovery, keys, tokens, userinfo: as for WorkOS.
        connect_timeout: Duration::from_millis(vars.limit("OIDC_CONNECT_TIMEOUT_MS", 2000, MAX_TIMEOUT_MS)?),
        request_timeout: Duration::from_millis(vars.limit("OIDC_REQUEST_TIMEOUT_MS", 10_000, MAX_TIMEOUT_MS)?),
    })
}

/// The issuer as typed (trimmed), once it is known to be an https URL (or http on loopback, for local runs and
/// tests) with nothing but a path. Its trailing slash is left as it is: whether it is right is for discovery to
/// say, by comparing it with the `issuer` the provider publishes.
fn oidc_issuer(raw: &str) -> Result<String, ConfigError> {
    const NAME: &str = "OIDC_ISSUER";
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| ConfigError::new(NAME, format!("is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::new(NAME, "must be an https:// URL (plain http only on a loopback address)"));
        }
        _ => return Err(ConfigError::new(NAME, "must be an https:// URL")),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(NAME, "must have no query, fragment or credentials"));
    }
    if url.path().contains("//") {
        return Err(ConfigError::new(NAME, format!("has a doubled slash in its path: {raw}")));
    }
    Ok(raw.to_owned())
}

/// Whether `url` names this machine, the only place plain http may carry a credential.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `WORKOS_API_BASE_URL`: every call to it carries the API key, so plain http only on this machine (a stand-in).
fn workos_api_base_url(raw: &str) -> Result<Url, ConfigError> {
    const NAME: &str = "WORKOS_API_BASE_URL";
    let url = parse_url(NAME, raw)?;
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(ConfigError::new(
            NAME,
            "must be an https:// URL (plain http only on a loopback address): every call carries the API key",
        ));
    }
    Ok(url)
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, any case); `default` when unset.
fn boolean(vars: &Vars<'_>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match vars.optional(name) {
        None => Ok(default),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError::new(name, "must be true or false")),
        },
    }
}

/// `DATABASE_URL`, with either provider: every replica refuses a session signed out on any of them (and after a
/// restart), and replicas share one refresh of a single-use refresh token instead of racing to spend it.
fn database(vars: &Vars<'_>) -> Result<Option<DatabaseConfig>, ConfigError> {
    let Some(url) = vars.optional("DATABASE_URL") else {
        if vars.optional("DATABASE_MAX_CONNECTIONS").is_some() {
            return Err(ConfigError::new("DATABASE_MAX_CONNECTIONS", "needs DATABASE_URL, whose pool it sizes"));
        }
        return Ok(None);
    };
    let max_connections =
        vars.limit("DATABASE_MAX_CONNECTIONS", u64::from(DATABASE_MAX_CONNECTIONS), MAX_DATABASE_CONNECTIONS)?;
    if max_connections < MIN_DATABASE_CONNECTIONS {
        return Err(ConfigError::new(
            "DATABASE_MAX_CONNECTIONS",
            format!(
                "must be at least {MIN_DATABASE_CONNECTIONS}: the Events API consumer and the Audit Log deliverer may \
                 each hold one while requests need another"
            ),
        ));
    }
    Ok(Some(DatabaseConfig {
        url: postgres_url(url)?,
        max_connections: u32::try_from(max_connections).unwrap_or(DATABASE_MAX_CONNECTIONS),
        acquire_timeout: DATABASE_ACQUIRE_TIMEOUT,
    }))
}

/// With WorkOS, a database (`has_database`: `DATABASE_URL` is set) also turns the enterprise lifecycle on; the other
/// lifecycle variables mean nothing without it, so setting one of them alone is a mistake worth stopping for. The
/// lifecycle follows WorkOS (its webhooks, its Events API, its memberships): with an OpenID Connect provider it is
/// off, and asking for its parts is refused; `DATABASE_URL` then gives shared sign-outs and refreshes only (see
/// [`database`]).
fn lifecycle(vars: &Vars<'_>, kind: ProviderKind, has_database: bool) -> Result<Option<LifecycleConfig>, ConfigError> {
    if kind == ProviderKind::Oidc {
        for name in ["WORKOS_WEBHOOK_SECRET", "WORKOS_WEBHOOK_SECRET_PREVIOUS", AUDIT_LOG_VERSIONS] {
            if vars.optional(name).is_some() {
                return Err(ConfigError::new(
                    name,
                    "belongs to the WorkOS lifecycle, which needs IDENTITY_PROVIDER=workos",
                ));
            }
        }
        if vars.optional("WORKOS_EVENTS_POLL_SECONDS").is_some()
            && vars.parsed::<u64>("WORKOS_EVENTS_POLL_SECONDS", "0")? > 0
        {
            return Err(ConfigError::new(
                "WORKOS_EVENTS_POLL_SECONDS",
                "belongs to the WorkOS lifecycle, which needs IDENTITY_PROVIDER=workos",
            ));
        }
        return Ok(None);
    }
    let webhook_secret = vars.secret("WORKOS_WEBHOOK_SECRET")?.map(Secret::new);
    let previous_webhook_secret = vars.secret("WORKOS_WEBHOOK_SECRET_PREVIOUS")?.map(Secret::new);
    if previous_webhook_secret.is_some() && webhook_secret.is_none() {
        return Err(ConfigError::new(
            "WORKOS_WEBHOOK_SECRET_PREVIOUS",
            "is only read during a rotation, next to WORKOS_WEBHOOK_SECRET, which is not set",
        ));
    }
    let poll_seconds: Option<u64> = match vars.optional("WORKOS_EVENTS_POLL_SECONDS") {
        Some(_) => Some(at_most(
            "WORKOS_EVENTS_POLL_SECONDS",
            vars.parsed("WORKOS_EVENTS_POLL_SECONDS", "0")?,
            MAX_EVENTS_POLL_SECONDS,
        )?),
        None => None,
    };
    if !has_database {
        if webhook_secret.is_some() {
            return Err(ConfigError::new("WORKOS_WEBHOOK_SECRET", "needs DATABASE_URL, where webhooks are recorded"));
        }
        if vars.optional(AUDIT_LOG_VERSIONS).is_some() {
            return Err(ConfigError::new(AUDIT_LOG_VERSIONS, "needs DATABASE_URL, where Audit Log events are queued"));
        }
        if poll_seconds.is_some_and(|seconds| seconds > 0) {
            return Err(ConfigError::new(
                "WORKOS_EVENTS_POLL_SECONDS",
                "needs DATABASE_URL, where events are recorded",
            ));
        }
        return Ok(None);
    }
    let poll_seconds = poll_seconds.unwrap_or(DEFAULT_EVENTS_POLL_SECONDS);
    Ok(Some(LifecycleConfig {
        webhook_secret,
        previous_webhook_secret,
        events_poll_interval: (poll_seconds > 0).then(|| Duration::from_secs(poll_seconds)),
        audit_log_versions: audit_log_versions(&vars.optional(AUDIT_LOG_VERSIONS).unwrap_or_default())
            .map_err(|problem| ConfigError::new(AUDIT_LOG_VERSIONS, problem))?,
    }))
}

const AUDIT_LOG_VERSIONS: &str = "WORKOS_AUDIT_LOG_VERSIONS";

/// `WORKOS_AUDIT_LOG_VERSIONS`: `action=version` pairs, comma-separated (`todo.created=2, user.signed_in=3`). Editing
/// an action's schema in the WorkOS dashboard creates a new version, which WorkOS applies only to events that name
/// it; an action left out is sent as version 1. Only actions authbridge records may be named (a typo would
/// otherwise be silently ignored).
fn audit_log_versions(raw: &str) -> Result<HashMap<String, u32>, String> {
    let mut versions = HashMap::new();
    for pair in raw.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (action, version) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not action=version"))?;
        let action = action.trim();
        if !crate::audit::ACTIONS.contains(&action) {
            return Err(format!(
                "{action:?} is not an action authbridge records ({})",
                crate::audit::ACTIONS.join(", ")
            ));
        }
        let version = version.trim().parse::<u32>().ok().filter(|version| *version > 0);
        let version = version.ok_or_else(|| format!("the version of {action} must be a whole number from 1"))?;
        if versions.insert(action.to_owned(), version).is_some() {
            return Err(format!("{action} is named twice"));
        }
    }
    Ok(versions)
}

/// `DATABASE_URL`, checked so a typo stops the start; the message never repeats the value, which holds a password.
fn postgres_url(url: String) -> Result<Secret, ConfigError> {
    let refused = |problem: &str| Err(ConfigError::new("DATABASE_URL", problem));
    let encode = "percent-encode any `@ # ? / :` in the user name and password (`#` is %23)";
    let Ok(parsed) = Url::parse(url.trim()) else {
        return refused(&format!("must be a postgres:// connection URL; {encode}"));
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return refused("must be a postgres:// connection URL");
    }
    // A `#` in a password ends the URL there (a fragment): the rest of the password and the host would be lost, and
    // the app would look for a host named after part of the password.
    if parsed.fragment().is_some() {
        return refused(&format!("has a `#`, which ends a URL; {encode}"));
    }
    // Likewise a `?` in a password starts the query, and a `/` the path: the rest of the password and the host would
    // be read as parameters or as the database's name (and the host as something else). An `@` there, unencoded,
    // is the sign (`%40` is how one is written in a value).
    if parsed.query().is_some_and(|query| query.contains('@')) {
        return refused(&format!("has a `?` before its host; {encode}"));
    }
    if parsed.path().contains('@') {
        return refused(&format!("has a `/` before its host; {encode}"));
    }
    // What the driver refuses (an `sslmode` it does not know, a port that is no number), refused now with its reason
    // rather than at the first query. Its messages name the parameter, not the password.
    if let Err(error) = crate::db::driver_options(url.trim()) {
        // sqlx nests its configuration errors ("error with configuration: error with configuration: …").
        let reason = error.to_string().replace("error with configuration: ", "");
        return refused(&format!("is not a usable PostgreSQL URL: {reason}"));
    }
    Ok(Secret::new(url))
}

/// Only the variables the `migrate` subcommand needs, so it runs without the WorkOS settings.
pub fn database_url_from_env() -> Result<Secret, ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    postgres_url(Vars(&lookup).required("DATABASE_URL")?)
}

struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// A set, non-blank value; blank counts as unset so `FOO=` in a `.env` file does not pass as configured.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::new(name, "is not set (see .env.example)"))
    }

    /// A secret, exactly as set: unlike other values it is never trimmed, so white space around it is refused
    /// rather than silently made part of the key.
    fn secret(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        self.optional(name).map(|value| untrimmed_secret(name, value)).transpose()
    }

    fn required_secret(&self, name: &'static str) -> Result<String, ConfigError> {
        self.secret(name)?.ok_or_else(|| ConfigError::new(name, "is not set (see .env.example)"))
    }

    /// Whichever of two names for the same setting is set, with its value; both set to different values is
    /// refused (which one would win is not obvious to whoever reads the configuration).
    fn either(
        &self,
        (name, old_name): (&'static str, &'static str),
    ) -> Option<Result<(&'static str, String), ConfigError>> {
        match (self.optional(name), self.optional(old_name)) {
            (Some(value), Some(old)) if value != old => Some(Err(ConfigError::new(
                name,
                format!("and {old_name} are both set, to different values: set only {name}"),
            ))),
            (Some(value), _) => Some(Ok((name, value))),
            (None, Some(value)) => Some(Ok((old_name, value))),
            (None, None) => None,
        }
    }

    fn cookie_password(&self, names: (&'static str, &'static str)) -> Result<Option<Secret>, ConfigError> {
        Ok(self.named_cookie_password(names)?.map(|(_, password)| password))
    }

    /// [`Vars::cookie_password`], with the name it was read from (either of `names`).
    fn named_cookie_password(
        &self,
        names: (&'static str, &'static str),
    ) -> Result<Option<(&'static str, Secret)>, ConfigError> {
        self.either(names)
            .transpose()?
            .map(|(name, password)| cookie_password(name, password).map(|password| (name, password)))
            .transpose()
    }

    fn url(&self, name: &'static str) -> Result<Url, ConfigError> {
        parse_url(name, &self.required(name)?)
    }

    /// A timeout or a limit: a whole number from 1 to `max`, `default` when unset. Out of range is refused by name
    /// here rather than failing at run time (a zero timeout answers every request 504; a count past what a
    /// semaphore holds panics; a timeout past what an `Instant` holds overflows).
    fn limit(&self, name: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
        at_most(name, positive(name, self.parsed(name, &default.to_string())?)?, max)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let raw = self.optional(name).unwrap_or_else(|| default.to_owned());
        raw.trim().parse().map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))
    }
}

/// Whether two listening addresses would take the same port: the same (fixed: 0 is any free one) port on the same
/// address, or on every address of a family and one of it (`::` takes IPv4 as well, as Linux binds it by default).
/// An IPv4 address written as IPv6 (`[::ffff:127.0.0.1]`) is the IPv4 address it maps.
fn same_listener(a: SocketAddr, b: SocketAddr) -> bool {
    let (a_ip, b_ip) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |every: std::net::IpAddr, other: std::net::IpAddr| {
        every.is_unspecified() && (every.is_ipv6() || every.is_ipv4() == other.is_ipv4())
    };
    a.port() != 0 && a.port() == b.port() && (a_ip == b_ip || covers(a_ip, b_ip) || covers(b_ip, a_ip))
}

/// `TRUSTED_PROXIES` (read by `http::client_address`): addresses (`10.0.0.5`) and networks (`10.0.0.0/8`, `fd00::/8`), separated by commas.
pub(crate) fn parse_trusted_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .map(|network| network.trunc())
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(as_ipv4_when_mapped)
                .map_err(|_| format!("{entry:?} is neither an IP address nor a network such as 10.0.0.0/8"))
        })
        .collect()
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`: peers and `X-Forwarded-For` entries are compared in their canonical form
/// (a dual-stack listener's `::ffff:a.b.c.d` is `a.b.c.d`), which an IPv4-mapped network would never contain.
fn as_ipv4_when_mapped(network: ipnet::IpNet) -> ipnet::IpNet {
    match network {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(network, ipnet::IpNet::V4),
        network => network,
    }
}

fn positive(name: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 { Err(ConfigError::new(name, "must be greater than zero")) } else { Ok(value) }
}

/// Where the identity provider sends the browser back after sign-in: the route `http::sign_in` serves, which
/// `WORKOS_REDIRECT_URI` or `OIDC_REDIRECT_URI` must name.
pub const CALLBACK_PATH: &str = "/callback";

/// The longest timeout in seconds (an hour) and in milliseconds (ten minutes), the most connections or requests at
/// once, and the longest wait between two polls of the Events API (a day: WorkOS keeps events for 30).
const MAX_TIMEOUT_SECONDS: u64 = 3600;
const MAX_TIMEOUT_MS: u64 = 600_000;
const MAX_COUNT: u64 = 1_000_000;
const MAX_EVENTS_POLL_SECONDS: u64 = 86_400;

/// A minted InsForge token is a bearer credential PostgreSQL honours until its `exp`, whatever becomes of the
/// session it was minted for (a signed-out or revoked session is refused by the app, not by the database): it must
/// stay short-lived.
const MAX_INSFORGE_TOKEN_TTL_SECONDS: u64 = 3600;

/// A secret with white space at either end is a copying mistake (a line break from a file, as a Kubernetes secret
/// made with `--from-file` has), and the provider would refuse it only at the first sign-in.
fn untrimmed_secret(name: &'static str, value: String) -> Result<String, ConfigError> {
    if value.trim() != value {
        return Err(ConfigError::new(
            name,
            "starts or ends with white space (a line break copied from a file?): remove it, secrets are used exactly as set",
        ));
    }
    Ok(value)
}

fn at_most(name: &'static str, value: u64, max: u64) -> Result<u64, ConfigError> {
    if value > max { Err(ConfigError::new(name, format!("must be at most {max} (it is {value})"))) } else { Ok(value) }
}

fn cookie_password(name: &'static str, value: String) -> Result<Secret, ConfigError> {
    let value = untrimmed_secret(name, value)?;
    let chars = value.chars().count();
    if chars < MIN_COOKIE_PASSWORD_CHARS {
        return Err(ConfigError::new(
            name,
            format!("must be at least {MIN_COOKIE_PASSWORD_CHARS} characters (it is {chars})"),
        ));
    }
    Ok(Secret::new(value))
}

/// `INSFORGE_URL`: no credentials in it (every call carries a minted token; a user and password there would go to
/// InsForge as Basic authentication, and into every log that prints the URL).
fn insforge_url(vars: &Vars<'_>) -> Result<Url, ConfigError> {
    let url = vars.url("INSFORGE_URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            "INSFORGE_URL",
            "must not carry a user or password: authbridge signs in with minted tokens",
        ));
    }
    Ok(url)
}

fn parse_url(name: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(name, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(name, "must be an http:// or https:// URL with a host"));
    }
    Ok(url)
}

fn parse_origin(name: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = parse_url(name, raw)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(name, "must be an origin only, like https://todos.example.com"));
    }
    Ok(url)
}

/// `https://app.example.com:8443/callback` → `https://app.example.com:8443/`.
fn origin_of(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    origin
}

impl ServerConfig {
    /// The origin as browsers send it in an `Origin` header: `scheme://host[:port]`, no trailing slash.
    pub fn origin(&self) -> String {
        self.app_url.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("INSFORGE_URL", "http://127.0.0.1:7130".to_owned()),
            ("INSFORGE_JWT_SECRET", "x".repeat(32)),
            ("WORKOS_API_KEY", "sk_test_123".to_owned()),
            ("WORKOS_CLIENT_ID", "client_123".to_owned()),
            ("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned()),
            ("SESSION_COOKIE_PASSWORD", "p".repeat(32)),
        ])
    }

    /// An OIDC configuration with nothing of WorkOS in it.
    fn oidc_base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("IDENTITY_PROVIDER", "oidc".to_owned()),
            ("INSFORGE_URL", "http://127.0.0.1:7130".to_owned()),
            ("INSFORGE_JWT_SECRET", "x".repeat(32)),
            ("OIDC_ISSUER", "https://tenant.us.auth0.com/".to_owned()),
            ("OIDC_CLIENT_ID", "abcClientId".to_owned()),
            ("OIDC_CLIENT_SECRET", "oidc-secret-do-not-log".to_owned()),
            ("OIDC_REDIRECT_URI", "https://todos.example.com/callback".to_owned()),
            ("SESSION_COOKIE_PASSWORD", "p".repeat(32)),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    /// Each value of `name`, set over `base`, accepted or refused as listed; a refusal names `name`.
    fn assert_accepts(base: fn() -> HashMap<&'static str, String>, name: &'static str, cases: &[(&str, bool)]) {
        for &(value, accepted) in cases {
            let mut vars = base();
            vars.insert(name, value.to_owned());
            match load(&vars) {
                Ok(_) => assert!(accepted, "{name}={value} was accepted"),
                Err(error) => {
                    assert!(!accepted, "{name}={value} was refused: {error}");
                    assert_eq!(error.variable, name);
                }
            }
        }
    }

    #[test]
    fn defaults_are_local() {
        let config = load(&base()).expect("valid configuration");
        assert_eq!(config.server.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.server.origin(), "http://localhost:3000");
        let workos = config.workos().expect("WorkOS is the default provider");
        assert_eq!(workos.api_base_url.as_str(), "https://api.workos.com/");
        assert_eq!(config.insforge.token_ttl, Duration::from_secs(300));
        assert!(!config.session.secure_cookies);
    }

    #[test]
    fn every_required_variable_is_named_when_missing() {
        for name in base().keys() {
            let mut vars = base();
            vars.insert(name, "  ".to_owned());
            let error = load(&vars).expect_err("a blank required variable must be refused");
            assert_eq!(error.variable, *name);
        }
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let error = load(&HashMap::new()).expect_err("nothing is set");
        let message = error.to_string();
        for name in REQUIRED.iter().chain(&REQUIRED_FOR_WORKOS).chain([&COOKIE_PASSWORD.0]) {
            assert!(message.contains(name), "{name} missing from {message}");
        }
        assert!(!message.contains("OIDC_"), "no OIDC variable is set: no hint about one: {message}");

        let mut vars = base();
        vars.remove("WORKOS_API_KEY");
        let only = load(&vars).expect_err("one missing").to_string();
        assert_eq!(only, "WORKOS_API_KEY: is not set (see .env.example)");
        vars.remove("WORKOS_CLIENT_ID");
        let two = load(&vars).expect_err("two missing").to_string();
        assert!(two.ends_with(": is not set, nor is WORKOS_CLIENT_ID (see .env.example)"), "{two}");
    }

    /// The hint about `IDENTITY_PROVIDER=oidc` is for WorkOS variables missing beside OIDC ones, nothing else.
    #[test]
    fn a_missing_cookie_password_beside_oidc_variables_gets_no_provider_hint() {
        let mut vars = base();
        vars.insert("OIDC_ISSUER", "https://tenant.us.auth0.com/".to_owned());
        vars.remove("SESSION_COOKIE_PASSWORD");
        let message = load(&vars).expect_err("no cookie password").to_string();
        assert_eq!(message, "SESSION_COOKIE_PASSWORD: is not set (see .env.example)");
    }

    #[test]
    fn short_secrets_are_refused_by_name() {
        let mut vars = base();
        vars.insert("INSFORGE_JWT_SECRET", "x".repeat(31));
        assert_eq!(load(&vars).expect_err("short").variable, "INSFORGE_JWT_SECRET");

        let mut vars = base();
        vars.insert("SESSION_COOKIE_PASSWORD", "p".repeat(31));
        assert_eq!(load(&vars).expect_err("short").variable, "SESSION_COOKIE_PASSWORD");

        let mut vars = base();
        vars.remove("SESSION_COOKIE_PASSWORD");
        vars.insert("WORKOS_COOKIE_PASSWORD", "p".repeat(31));
        assert_eq!(load(&vars).expect_err("short").variable, "WORKOS_COOKIE_PASSWORD");

        let mut vars = base();
        vars.insert("WORKOS_COOKIE_PASSWORD_PREVIOUS", "short".to_owned());
        assert_eq!(load(&vars).expect_err("short").variable, "WORKOS_COOKIE_PASSWORD_PREVIOUS");

        let mut vars = base();
        let current = vars.get("SESSION_COOKIE_PASSWORD").or(vars.get("WORKOS_COOKIE_PASSWORD")).cloned();
        vars.insert("SESSION_COOKIE_PASSWORD_PREVIOUS", current.expect("a cookie password in the base"));
        let same = load(&vars).expect_err("the same password twice");
        assert_eq!(same.variable, "SESSION_COOKIE_PASSWORD_PREVIOUS");
        assert!(same.to_string().contains("is the same as the current cookie password"), "{same}");
        let mut vars = base();
        let current = vars.get("SESSION_COOKIE_PASSWORD").or(vars.get("WORKOS_COOKIE_PASSWORD")).cloned();
        vars.insert("WORKOS_COOKIE_PASSWORD_PREVIOUS", current.expect("a cookie password in the base"));
        assert_eq!(load(&vars).expect_err("the same, by its other name").variable, "WORKOS_COOKIE_PASSWORD_PREVIOUS");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = load(&base()).expect("valid configuration");
        let debug = format!("{config:?}");
        assert!(!debug.contains(&"x".repeat(32)), "JWT secret leaked: {debug}");
        assert!(!debug.contains(&"p".repeat(32)), "cookie password leaked");
        assert!(!debug.contains("sk_test_123"), "API key leaked");
        assert!(debug.contains(r#"Secret("***")"#), "a secret shows that it is there: {debug}");
    }

    #[test]
    fn app_url_follows_the_redirect_uri_and_must_be_its_origin() {
        let mut vars = base();
        vars.insert("WORKOS_REDIRECT_URI", "https://todos.example.com/callback".to_owned());
        let config = load(&vars).expect("valid");
        assert_eq!(config.server.origin(), "https://todos.example.com");
        assert!(config.session.secure_cookies);

        vars.insert("APP_URL", "https://todos.example.com/".to_owned());
        assert_eq!(load(&vars).expect("valid").server.origin(), "https://todos.example.com");

        for not_an_origin in
            ["https://todos.example.com/sub", "https://todos.example.com/?x=1", "https://todos.example.com/#top"]
        {
            vars.insert("APP_URL", not_an_origin.to_owned());
            assert_eq!(load(&vars).expect_err("not an origin").variable, "APP_URL", "{not_an_origin}");
        }

        // Another origin than the callback's: the sign-in state cookie set by `/login` would never reach it.
        for other in ["https://app.example.com", "http://todos.example.com", "https://todos.example.com:8443"] {
            vars.insert("APP_URL", other.to_owned());
            let refused = load(&vars).expect_err("another origin");
            assert_eq!(refused.variable, "APP_URL", "{other}");
            assert!(refused.to_string().contains("WORKOS_REDIRECT_URI"), "{refused}");
        }
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_and_the_request_limit_is_positive() {
        let config = load(&base()).expect("valid configuration");
        assert_eq!(config.server.metrics_bind_addr, None);
        assert_eq!(config.server.max_concurrent_requests, 512);

        let mut vars = base();
        vars.insert("METRICS_BIND_ADDR", "127.0.0.1:9464".to_owned());
        vars.insert("MAX_CONCURRENT_REQUESTS", "64".to_owned());
        let config = load(&vars).expect("valid configuration");
        assert_eq!(config.server.metrics_bind_addr.map(|addr| addr.to_string()).as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(config.server.max_concurrent_requests, 64);

        vars.insert("METRICS_BIND_ADDR", "localhost".to_owned());
        assert_eq!(load(&vars).expect_err("no port").variable, "METRICS_BIND_ADDR");
        vars.insert("BIND_ADDR", "127.0.0.1:3000".to_owned());
        for public in ["127.0.0.1:3000", "0.0.0.0:3000"] {
            vars.insert("METRICS_BIND_ADDR", public.to_owned());
            let refused = load(&vars).expect_err("the public listener's address");
            assert_eq!(refused.variable, "METRICS_BIND_ADDR", "{public}");
            assert!(refused.to_string().contains("never the public listener"), "{refused}");
        }
        vars.insert("METRICS_BIND_ADDR", "127.0.0.1:3001".to_owned());
        assert!(load(&vars).is_ok(), "another port");
        vars.insert("METRICS_BIND_ADDR", "[::]:3000".to_owned());
        assert!(load(&vars).is_err(), "every address, IPv4's too");
        vars.insert("METRICS_BIND_ADDR", "[::ffff:127.0.0.1]:3000".to_owned());
        assert!(load(&vars).is_err(), "the same IPv4 address, written as IPv6");
        vars.insert("BIND_ADDR", "127.0.0.1:0".to_owned());
        vars.insert("METRICS_BIND_ADDR", "127.0.0.1:0".to_owned());
        assert!(load(&vars).is_ok(), "port 0 is any free port, a different one for each");
        vars.insert("BIND_ADDR", "0.0.0.0:3000".to_owned());
        vars.insert("METRICS_BIND_ADDR", "[::1]:3000".to_owned());
        assert!(load(&vars).is_ok(), "another family");
        let mut vars = base();
        vars.insert("MAX_CONCURRENT_REQUESTS", "0".to_owned());
        assert_eq!(load(&vars).expect_err("zero").variable, "MAX_CONCURRENT_REQUESTS");
    }

    #[test]
    fn without_a_database_the_lifecycle_is_off_and_its_variables_are_refused() {
        let config = load(&base()).expect("valid");
        assert!(config.lifecycle.is_none(), "no DATABASE_URL, no lifecycle");

        let mut vars = base();
        vars.insert("WORKOS_WEBHOOK_SECRET", "whsec".to_owned());
        assert_eq!(load(&vars).expect_err("needs a database").variable, "WORKOS_WEBHOOK_SECRET");

        let mut vars = base();
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "10".to_owned());
        assert_eq!(load(&vars).expect_err("needs a database").variable, "WORKOS_EVENTS_POLL_SECONDS");

        let mut vars = base();
        vars.insert("WORKOS_AUDIT_LOG_VERSIONS", "todo.created=2".to_owned());
        assert_eq!(load(&vars).expect_err("needs a database").variable, "WORKOS_AUDIT_LOG_VERSIONS");

        let mut vars = base();
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned());
        assert!(load(&vars).expect("off is fine without a database").lifecycle.is_none());
    }

    #[test]
    fn with_a_database_the_consumer_polls_every_30_seconds_unless_told_otherwise() {
        let mut vars = base();
        vars.insert("DATABASE_URL", "postgres://authbridge:pw@db.example.com/insforge".to_owned());
        let config = load(&vars).expect("valid");
        let lifecycle = config.lifecycle.expect("on");
        assert_eq!(lifecycle.events_poll_interval, Some(Duration::from_secs(30)));
        assert!(lifecycle.webhook_secret.is_none());
        let database = config.database.expect("a database");
        assert!(database.acquire_timeout < Duration::from_secs(30), "inside the request time limit");
        let debug = format!("{database:?}");
        assert!(!debug.contains("pw@"), "the password leaked: {debug}");

        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned());
        assert_eq!(load(&vars).expect("valid").lifecycle.expect("on").events_poll_interval, None);

        let mut typo = vars.clone();
        typo.insert("DATABASE_URL", "mysql://u:hunter2@x/db".to_owned());
        let error = load(&typo).expect_err("not PostgreSQL");
        assert_eq!(error.variable, "DATABASE_URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        // A `#` in the password, unencoded: the host would be part of the password.
        typo.insert("DATABASE_URL", "postgres://app:p@ss#s3cret@db.example.com/app".to_owned());
        let error = load(&typo).expect_err("a fragment").to_string();
        assert!(error.contains("has a `#`") && !error.contains("s3cret"), "{error}");
        // A `?`: the rest of the password would be a parameter's name, or its value.
        for url in ["postgres://app:p@ss?w0rd@db.example.com/app", "postgres://app:12?w0rd=@db.example.com/app"] {
            typo.insert("DATABASE_URL", url.to_owned());
            let error = load(&typo).expect_err("a query before the host").to_string();
            assert!(error.contains("has a `?`") && !error.contains("w0rd"), "{url}: {error}");
        }
        // A `/` (one base64 password in 64 starts with one): the rest would be the database's name.
        for url in ["postgres://admin:/Z8kLq0w0rd+Q=@db.example.com/app", "postgres://u:80/w0rd@db.example.com/app"] {
            typo.insert("DATABASE_URL", url.to_owned());
            let error = load(&typo).expect_err("a path before the host").to_string();
            assert!(error.contains("has a `/`") && !error.contains("w0rd"), "{url}: {error}");
        }
        // Encoded, they are fine.
        typo.insert(
            "DATABASE_URL",
            "postgres://app:%2Fp%40ss%3Fw%23rd@db.example.com/app?application_name=a%40b".into(),
        );
        assert!(load(&typo).is_ok());
        // What the driver would refuse at the first query, refused now with its reason.
        typo.insert("DATABASE_URL", "postgres://u:hunter2@db.example.com/app?sslmode=bogus".to_owned());
        let error = load(&typo).expect_err("no such sslmode").to_string();
        assert!(error.contains("bogus") && error.contains("ssl") && !error.contains("hunter2"), "{error}");
        assert_eq!(error.matches("error with configuration").count(), 0, "said once, plainly: {error}");
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "soon".to_owned());
        assert_eq!(load(&vars).expect_err("nan").variable, "WORKOS_EVENTS_POLL_SECONDS");

        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "5".to_owned());
        vars.insert("WORKOS_AUDIT_LOG_VERSIONS", "todo.creatd=2".to_owned());
        assert_eq!(load(&vars).expect_err("a typo").variable, "WORKOS_AUDIT_LOG_VERSIONS");
        vars.insert("WORKOS_AUDIT_LOG_VERSIONS", "todo.created=2".to_owned());
        assert_eq!(load(&vars).expect("valid").lifecycle.expect("on").audit_log_versions.get("todo.created"), Some(&2));
        vars.insert("WORKOS_WEBHOOK_SECRET_PREVIOUS", "old".to_owned());
        assert_eq!(load(&vars).expect_err("previous alone").variable, "WORKOS_WEBHOOK_SECRET_PREVIOUS");
        vars.insert("WORKOS_WEBHOOK_SECRET", "new".to_owned());
        let lifecycle = load(&vars).expect("valid").lifecycle.expect("on");
        assert_eq!(lifecycle.webhook_secret.as_ref().map(Secret::expose), Some("new"));
        assert_eq!(lifecycle.events_poll_interval, Some(Duration::from_secs(5)));
        let debug = format!("{lifecycle:?}");
        assert!(!debug.contains("\"new\""), "the webhook secret leaked: {debug}");
    }

    #[test]
    fn with_an_oidc_provider_the_database_is_shared_and_the_workos_lifecycle_is_refused() {
        let mut vars = oidc_base();
        assert!(load(&vars).expect("valid").database.is_none(), "no DATABASE_URL, nothing shared");
        vars.insert("DATABASE_URL", "postgres://authbridge:pw@db.example.com/insforge".to_owned());
        let config = load(&vars).expect("DATABASE_URL alone: shared sign-outs and refreshes");
        assert!(config.database.is_some(), "sign-outs and refreshes go through the database");
        assert!(config.lifecycle.is_none(), "the lifecycle follows WorkOS");
        let mut typo = vars.clone();
        typo.insert("DATABASE_URL", "mysql://u:pw@x/db".to_owned());
        assert_eq!(load(&typo).expect_err("not PostgreSQL").variable, "DATABASE_URL");
        for (name, value) in [
            ("WORKOS_WEBHOOK_SECRET", "whsec"),
            ("WORKOS_WEBHOOK_SECRET_PREVIOUS", "old"),
            ("WORKOS_EVENTS_POLL_SECONDS", "5"),
            ("WORKOS_AUDIT_LOG_VERSIONS", "todo.created=2"),
        ] {
            let mut vars = vars.clone();
            vars.insert(name, value.to_owned());
            let error = load(&vars).expect_err("a WorkOS lifecycle variable with OIDC");
            assert_eq!(error.variable, name);
            assert!(error.problem.contains("IDENTITY_PROVIDER=workos"), "{error}");
        }
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned());
        assert!(load(&vars).is_ok(), "off is fine");
    }

    #[test]
    fn every_lifecycle_variable_is_read_and_documented_in_env_example_and_the_readme() {
        const LIFECYCLE_VARIABLES: [&str; 5] = [
            "DATABASE_URL",
            "WORKOS_WEBHOOK_SECRET",
            "WORKOS_WEBHOOK_SECRET_PREVIOUS",
            "WORKOS_EVENTS_POLL_SECONDS",
            "WORKOS_AUDIT_LOG_VERSIONS",
        ];
        let read = std::sync::Mutex::new(Vec::<String>::new());
        let vars = base();
        let _ = Config::from_lookup(|name| {
            crate::sync::lock(&read).push(name.to_owned());
            vars.get(name).cloned()
        });
        let read = read.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        let env_example = include_str!("../.env.example");
        let readme = include_str!("../README.md");
        for name in LIFECYCLE_VARIABLES {
            assert!(read.iter().any(|read| read == name), "{name} is not read by the configuration: {read:?}");
            assert!(env_example.contains(&format!("{name}=")), "{name} is missing from .env.example");
            assert!(readme.contains(&format!("| `{name}` |")), "{name} is missing from the README's table");
        }
    }

    #[test]
    fn impersonation_writes_are_off_unless_said_and_the_variable_is_documented() {
        assert!(!load(&base()).expect("valid").server.impersonation_allow_writes, "off by default");
        for (raw, expected) in [("true", true), ("TRUE", true), ("1", true), ("false", false), ("no", false)] {
            let mut vars = base();
            vars.insert("IMPERSONATION_ALLOW_WRITES", raw.to_owned());
            assert_eq!(load(&vars).expect("valid").server.impersonation_allow_writes, expected, "{raw}");
        }
        let mut vars = base();
        vars.insert("IMPERSONATION_ALLOW_WRITES", "sometimes".to_owned());
        assert_eq!(load(&vars).expect_err("not a boolean").variable, "IMPERSONATION_ALLOW_WRITES");
        // WorkOS's impersonation only: allowing its writes with another provider is a mistake; the default is not.
        let mut vars = oidc_base();
        vars.insert("IMPERSONATION_ALLOW_WRITES", "false".to_owned());
        assert!(load(&vars).is_ok(), "as .env.example has it");
        vars.insert("IMPERSONATION_ALLOW_WRITES", "true".to_owned());
        assert_eq!(load(&vars).expect_err("oidc").variable, "IMPERSONATION_ALLOW_WRITES");
        assert!(include_str!("../.env.example").contains("IMPERSONATION_ALLOW_WRITES="));
        assert!(include_str!("../README.md").contains("| `IMPERSONATION_ALLOW_WRITES` |"));
    }

    /// Timeouts and limits from 1 to their maximum: zero (a timeout that answers everything 504) and values past
    /// what the server can hold (a semaphore's permits, an `Instant`) are refused by name, not met at run time.
    #[test]
    fn timeouts_and_limits_are_refused_out_of_range() {
        for (name, max) in [
            ("REQUEST_TIMEOUT_SECONDS", MAX_TIMEOUT_SECONDS),
            ("HEADER_READ_TIMEOUT_SECONDS", MAX_TIMEOUT_SECONDS),
            ("MAX_CONNECTIONS", MAX_COUNT),
            ("MAX_CONCURRENT_REQUESTS", MAX_COUNT),
            ("WORKOS_CONNECT_TIMEOUT_MS", MAX_TIMEOUT_MS),
            ("WORKOS_REQUEST_TIMEOUT_MS", MAX_TIMEOUT_MS),
            ("INSFORGE_CONNECT_TIMEOUT_MS", MAX_TIMEOUT_MS),
            ("INSFORGE_REQUEST_TIMEOUT_MS", MAX_TIMEOUT_MS),
        ] {
            for (value, accepted) in [
                ("0".to_owned(), false),
                ("1".to_owned(), true),
                (max.to_string(), true),
                ((max + 1).to_string(), false),
            ]
            .into_iter()
            .chain([(u64::MAX.to_string(), false)])
            {
                let mut vars = base();
                vars.insert(name, value.clone());
                match load(&vars) {
                    Ok(_) => assert!(accepted, "{name}={value} was accepted"),
                    Err(error) => {
                        assert!(!accepted, "{name}={value} was refused: {error}");
                        assert_eq!(error.variable, name);
                    }
                }
            }
        }
        // The OpenID Connect provider's, read with that provider only.
        for name in ["OIDC_CONNECT_TIMEOUT_MS", "OIDC_REQUEST_TIMEOUT_MS"] {
            let (max, over) = (MAX_TIMEOUT_MS.to_string(), (MAX_TIMEOUT_MS + 1).to_string());
            for (value, accepted) in [("0", false), ("1", true), (max.as_str(), true), (over.as_str(), false)] {
                let mut vars = oidc_base();
                vars.insert(name, value.to_owned());
                assert_eq!(
                    load(&vars).map_err(|error| error.variable).err(),
                    (!accepted).then_some(name),
                    "{name}={value}"
                );
            }
        }
        let mut vars = oidc_base();
        vars.insert("OIDC_CONNECT_TIMEOUT_MS", "1500".to_owned());
        vars.insert("OIDC_REQUEST_TIMEOUT_MS", "4000".to_owned());
        let ProviderConfig::Oidc(oidc) = load(&vars).expect("valid").provider else { panic!("an OIDC configuration") };
        assert_eq!((oidc.connect_timeout, oidc.request_timeout), (Duration::from_millis(1500), Duration::from_secs(4)));
        let ProviderConfig::Oidc(oidc) = load(&oidc_base()).expect("valid").provider else { panic!("OIDC") };
        assert_eq!((oidc.connect_timeout, oidc.request_timeout), (Duration::from_secs(2), Duration::from_secs(10)));
        let mut vars = base();
        vars.insert("DATABASE_MAX_CONNECTIONS", "10".to_owned());
        assert_eq!(load(&vars).map_err(|error| error.variable).err(), Some("DATABASE_MAX_CONNECTIONS"), "alone");
        vars.insert("DATABASE_URL", "postgres://localhost/db".to_owned());
        for (value, accepted) in [("0", false), ("2", false), ("3", true), ("100", true), ("101", false)] {
            vars.insert("DATABASE_MAX_CONNECTIONS", value.to_owned());
            assert_eq!(load(&vars).is_ok(), accepted, "DATABASE_MAX_CONNECTIONS={value}");
        }
        vars.insert("DATABASE_MAX_CONNECTIONS", "12".to_owned());
        let sized = load(&vars).expect("a pool of 12").database.map(|database| database.max_connections);
        assert_eq!(sized, Some(12));
        vars.remove("DATABASE_MAX_CONNECTIONS");
        let default = load(&vars).expect("the default").database.map(|database| database.max_connections);
        assert_eq!(default, Some(DATABASE_MAX_CONNECTIONS));
        for (value, accepted) in [("0", true), ("86400", true), ("86401", false), ("18446744073709551615", false)] {
            vars.insert("WORKOS_EVENTS_POLL_SECONDS", value.to_owned());
            assert_eq!(load(&vars).is_ok(), accepted, "WORKOS_EVENTS_POLL_SECONDS={value}");
        }
    }

    /// The provider sends the browser back to the redirect URI, so it must be the route the app serves.
    #[test]
    fn the_redirect_uri_must_be_the_callback_route() {
        for (mut vars, name) in [(base(), "WORKOS_REDIRECT_URI"), (oidc_base(), "OIDC_REDIRECT_URI")] {
            let origin = vars[name].trim_end_matches("/callback").to_owned();
            for path in ["/auth/callback", "/callback/", "/", "/callback?x=1", "/callback#top"] {
                vars.insert(name, format!("{origin}{path}"));
                let error = load(&vars).expect_err("another path");
                assert_eq!(error.variable, name, "{path}");
                assert!(error.to_string().contains(&format!("like {origin}/callback")), "{error}");
            }
            let with_credentials = origin.replacen("://", "://user:hunter2-secret@", 1);
            vars.insert(name, format!("{with_credentials}/callback"));
            let error = load(&vars).expect_err("credentials").to_string();
            assert!(error.contains(&format!("like {origin}/callback")) && !error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn malformed_numbers_and_urls_are_named() {
        let mut vars = base();
        vars.insert("INSFORGE_TOKEN_TTL_SECONDS", "five".to_owned());
        assert_eq!(load(&vars).expect_err("nan").variable, "INSFORGE_TOKEN_TTL_SECONDS");

        let mut vars = base();
        vars.insert("INSFORGE_URL", "ftp://x".to_owned());
        assert_eq!(load(&vars).expect_err("scheme").variable, "INSFORGE_URL");

        vars.insert("INSFORGE_URL", "https://admin:hunter2@insforge.example".to_owned());
        let error = load(&vars).expect_err("credentials");
        assert_eq!(error.variable, "INSFORGE_URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn the_insforge_token_stays_short_lived() {
        for (ttl, accepted) in [("1", true), ("3600", true), ("3601", false), ("0", false)] {
            let mut vars = base();
            vars.insert("INSFORGE_TOKEN_TTL_SECONDS", ttl.to_owned());
            match load(&vars) {
                Ok(config) => {
                    assert!(accepted, "{ttl} was accepted");
                    assert_eq!(config.insforge.token_ttl.as_secs().to_string(), ttl);
                }
                Err(error) => {
                    assert!(!accepted, "{ttl} was refused: {error}");
                    assert_eq!(error.variable, "INSFORGE_TOKEN_TTL_SECONDS");
                }
            }
        }
    }

    #[test]
    fn the_cookie_password_keeps_its_workos_name_for_either_provider() {
        for mut vars in [base(), oidc_base()] {
            vars.remove("SESSION_COOKIE_PASSWORD");
            vars.insert("WORKOS_COOKIE_PASSWORD", "w".repeat(32));
            vars.insert("WORKOS_COOKIE_PASSWORD_PREVIOUS", "o".repeat(32));
            let config = load(&vars).expect("the old names still work");
            assert_eq!(config.session.cookie_password.expose(), "w".repeat(32));
            assert_eq!(config.session.previous_cookie_password.map(|p| p.expose().to_owned()), Some("o".repeat(32)));

            vars.insert("SESSION_COOKIE_PASSWORD", "w".repeat(32));
            assert!(load(&vars).is_ok(), "both names with the same value are fine");
            vars.insert("SESSION_COOKIE_PASSWORD", "s".repeat(32));
            let error = load(&vars).expect_err("two different passwords");
            assert_eq!(error.variable, "SESSION_COOKIE_PASSWORD");
            assert!(error.to_string().contains("WORKOS_COOKIE_PASSWORD"), "{error}");
            assert!(!error.to_string().contains(&"s".repeat(32)), "no password in the message: {error}");
        }
    }

    #[test]
    fn oidc_needs_no_workos_variable_and_takes_the_issue_defaults() {
        let config = load(&oidc_base()).expect("valid OIDC configuration");
        assert!(config.workos().is_none());
        let oidc = config.oidc().expect("OIDC is the provider");
        assert_eq!(oidc.issuer, "https://tenant.us.auth0.com/", "kept exactly as typed");
        assert_eq!(oidc.client_id, "abcClientId");
        assert_eq!(oidc.scopes, ["openid", "profile", "email", "offline_access"]);
        assert_eq!(oidc.audience, None);
        assert_eq!(config.server.origin(), "https://todos.example.com", "APP_URL follows OIDC_REDIRECT_URI");
        assert_eq!(oidc.post_logout_redirect_uri.as_str(), "https://todos.example.com/", "defaults to APP_URL");
        assert!(config.session.secure_cookies);

        let mut vars = oidc_base();
        vars.insert("OIDC_SCOPES", "openid email".to_owned());
        vars.insert("OIDC_AUDIENCE", "https://api.example.com".to_owned());
        vars.insert("OIDC_POST_LOGOUT_REDIRECT_URI", "https://todos.example.com/bye".to_owned());
        vars.insert("IDENTITY_PROVIDER", " OIDC ".to_owned());
        let config = load(&vars).expect("valid");
        let oidc = config.oidc().expect("oidc");
        assert_eq!(oidc.scopes, ["openid", "email"]);
        assert_eq!(oidc.audience.as_deref(), Some("https://api.example.com"));
        assert_eq!(oidc.post_logout_redirect_uri.as_str(), "https://todos.example.com/bye");

        let mut vars = oidc_base();
        vars.insert("OIDC_ISSUER", "https://tenant.us.auth0.com".to_owned());
        let issuer = load(&vars).expect("valid").oidc().expect("oidc").issuer.clone();
        assert_eq!(issuer, "https://tenant.us.auth0.com", "no slash is added: discovery judges it");
    }

    #[test]
    fn every_missing_oidc_variable_is_named_and_no_workos_one() {
        let mut vars = oidc_base();
        for name in REQUIRED_FOR_OIDC {
            vars.remove(name);
        }
        let message = load(&vars).expect_err("nothing of OIDC is set").to_string();
        for name in REQUIRED_FOR_OIDC {
            assert!(message.contains(name), "{name} missing from {message}");
        }
        assert!(!message.contains("WORKOS"), "{message}");
    }

    #[test]
    fn only_oidc_variables_without_identity_provider_is_an_error_not_a_guess() {
        let mut vars = oidc_base();
        vars.remove("IDENTITY_PROVIDER");
        let error = load(&vars).expect_err("ambiguous");
        assert_eq!(error.variable, "IDENTITY_PROVIDER");
        let message = error.to_string();
        assert!(message.contains("OIDC_ISSUER") && message.contains("IDENTITY_PROVIDER=oidc"), "{message}");

        // With WorkOS configured too, the default (WorkOS) stands.
        let mut vars = base();
        vars.insert("OIDC_ISSUER", "https://tenant.us.auth0.com/".to_owned());
        assert!(load(&vars).expect("WorkOS by default").workos().is_some());

        // `.env.example`'s WorkOS redirect URI left in place is no reason to pick WorkOS.
        let mut vars = oidc_base();
        vars.remove("IDENTITY_PROVIDER");
        vars.insert("WORKOS_REDIRECT_URI", "http://localhost:3000/callback".to_owned());
        assert_eq!(load(&vars).expect_err("ambiguous").variable, "IDENTITY_PROVIDER");

        // Saying `workos` with only OIDC settings names the WorkOS variables, and says what was probably meant.
        let mut vars = oidc_base();
        vars.insert("IDENTITY_PROVIDER", "workos".to_owned());
        let message = load(&vars).expect_err("no WorkOS settings").to_string();
        assert!(message.contains("WORKOS_API_KEY") && message.contains("IDENTITY_PROVIDER=oidc"), "{message}");

        let mut vars = oidc_base();
        vars.insert("IDENTITY_PROVIDER", "auth0".to_owned());
        let error = load(&vars).expect_err("unknown provider");
        assert_eq!(error.variable, "IDENTITY_PROVIDER");
        assert!(error.to_string().contains("`workos` or `oidc`"), "{error}");
    }

    #[test]
    fn the_issuer_is_https_or_loopback_http_and_a_plain_url() {
        let issuers = [
            ("https://tenant.us.auth0.com/", true),
            ("https://login.example.com/realms/acme", true),
            ("http://127.0.0.1:4000/", true),
            ("http://localhost:4000", true),
            ("http://[::1]:4000/", true),
            ("http://tenant.us.auth0.com/", false),
            ("ftp://tenant.us.auth0.com/", false),
            ("https://tenant.us.auth0.com//", false),
            ("https://tenant.us.auth0.com/?x=1", false),
            ("https://user:pw@tenant.us.auth0.com/", false),
            ("https://tenant.us.auth0.com/#x", false),
            ("https://user@tenant.us.auth0.com/", false),
            ("https://:pw@tenant.us.auth0.com/", false),
            ("tenant.us.auth0.com", false),
        ];
        assert_accepts(oidc_base, "OIDC_ISSUER", &issuers);
        let mut vars = oidc_base();
        vars.insert("OIDC_ISSUER", "http://tenant.us.auth0.com/".to_owned());
        let message = load(&vars).expect_err("plain http").to_string();
        assert!(message.contains("plain http only on a loopback address"), "says where http is allowed: {message}");
    }

    #[test]
    fn oidc_scopes_need_openid_and_the_audience_is_not_the_client() {
        let mut vars = oidc_base();
        vars.insert("OIDC_SCOPES", "profile email".to_owned());
        assert_eq!(load(&vars).expect_err("no openid").variable, "OIDC_SCOPES");

        let mut vars = oidc_base();
        vars.insert("OIDC_AUDIENCE", "abcClientId".to_owned());
        assert_eq!(load(&vars).expect_err("audience = client id").variable, "OIDC_AUDIENCE");
    }

    /// An id is not a secret: trimmed like a URL, as `OIDC_CLIENT_ID` is, rather than sent to WorkOS with a space.
    #[test]
    fn the_workos_client_id_is_trimmed() {
        let mut vars = base();
        vars.insert("WORKOS_CLIENT_ID", " client_123\n".to_owned());
        let config = load(&vars).expect("valid");
        assert_eq!(config.workos().map(|workos| workos.client_id.as_str()), Some("client_123"));
    }

    #[test]
    fn the_workos_api_is_reached_over_https_except_on_this_machine() {
        let urls = [
            ("http://api.workos.com", false),
            ("http://10.0.0.7:8080/", false),
            ("https://api.workos.com", true),
            ("http://127.0.0.1:4001", true),
            ("http://localhost:4001/", true),
            ("http://[::1]:4001", true),
        ];
        assert_accepts(base, "WORKOS_API_BASE_URL", &urls);
    }

    /// A secret is used exactly as set, so white space around one (a line break from a file) stops the start, naming
    /// the variable, where it would otherwise fail only at the first sign-in, or never match the provider's.
    #[test]
    fn a_secret_with_white_space_around_it_is_refused() {
        for name in ["WORKOS_API_KEY", "INSFORGE_JWT_SECRET", "SESSION_COOKIE_PASSWORD", "WORKOS_WEBHOOK_SECRET"] {
            let mut vars = base();
            vars.insert("DATABASE_URL", "postgres://localhost/db".to_owned());
            let value = vars.get(name).cloned().unwrap_or_else(|| "w".repeat(32));
            vars.insert(name, format!("{value}\n"));
            let error = load(&vars).expect_err("a trailing line break");
            assert_eq!(error.variable, name);
            assert!(error.to_string().contains("white space"), "{error}");
            assert!(!error.to_string().contains(&value), "the secret is not shown: {error}");
            vars.insert(name, value);
            load(&vars).expect("the same secret without it");
        }
        let mut vars = oidc_base();
        vars.insert("OIDC_CLIENT_SECRET", " oidc-secret".to_owned());
        assert_eq!(load(&vars).expect_err("a leading space").variable, "OIDC_CLIENT_SECRET");
    }

    /// Microsoft Entra ID's v2.0 access tokens for an API on the client's own registration have the client id as
    /// `aud`, and the README's Entra set-up depends on it (the bearer check tells its ID tokens apart instead).
    #[test]
    fn with_microsoft_entra_the_audience_may_be_the_client_id() {
        let mut vars = oidc_base();
        vars.insert(
            "OIDC_ISSUER",
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0".into(),
        );
        vars.insert("OIDC_AUDIENCE", "abcClientId".to_owned());
        let config = load(&vars).expect("Entra: the client id is the API's audience");
        let Some(oidc) = config.oidc() else { panic!("configured for OpenID Connect") };
        assert_eq!(oidc.audience.as_deref(), Some("abcClientId"));
    }

    #[test]
    fn the_oidc_client_secret_never_shows_in_debug_output() {
        let config = load(&oidc_base()).expect("valid");
        assert!(!format!("{config:?}").contains("oidc-secret-do-not-log"));
    }

    #[test]
    fn every_provider_variable_is_documented_in_env_example_and_the_readme() {
        const ENV_EXAMPLE: &str = include_str!("../.env.example");
        const README: &str = include_str!("../README.md");
        let names = OIDC_VARIABLES.iter().chain(&REQUIRED_FOR_WORKOS).chain(&REQUIRED).copied().chain([
            "IDENTITY_PROVIDER",
            COOKIE_PASSWORD.0,
            COOKIE_PASSWORD.1,
            PREVIOUS_COOKIE_PASSWORD.0,
        ]);
        for name in names {
            assert!(ENV_EXAMPLE.contains(name), "{name} is missing from .env.example");
            assert!(README.contains(&format!("`{name}`")), "{name} is missing from the README");
        }
    }

    fn addr(text: &str) -> std::net::IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_networks_and_name_a_bad_entry() {
        let parsed = parse_trusted_proxies(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,").expect("parsed");
        assert_eq!(parsed.len(), 3);
        assert!(parsed[1].contains(&addr("192.168.1.7")) && !parsed[1].contains(&addr("192.168.1.8")));
        // Host bits set in a network are dropped rather than refused (10.1.2.3/8 is 10.0.0.0/8).
        assert!(parse_trusted_proxies("10.1.2.3/8").expect("parsed")[0].contains(&addr("10.200.0.1")));
        let error = parse_trusted_proxies("10.0.0.0/8, proxy.internal").expect_err("a name");
        assert!(error.contains("proxy.internal"), "{error}");
        assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
        // IPv4-mapped entries are the IPv4 networks they name, as peers are compared.
        let mapped = parse_trusted_proxies("::ffff:10.0.0.0/104, ::ffff:192.168.1.7").expect("parsed");
        let expected: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().expect("net"), "192.168.1.7/32".parse().expect("net")];
        assert_eq!(mapped, expected);
        // Wider than the mapped range (/96): not an IPv4 network, kept as it is.
        let wide = parse_trusted_proxies("::ffff:0.0.0.0/90").expect("parsed");
        assert_eq!(wide, vec!["::ffff:0.0.0.0/90".parse::<ipnet::IpNet>().expect("net").trunc()]);
        assert_eq!(parse_trusted_proxies("").expect("empty"), Vec::<ipnet::IpNet>::new());
    }

    #[test]
    fn audit_log_versions_name_recorded_actions_once_each_from_version_1() {
        let parsed = audit_log_versions(" todo.created=2 ,user.signed_in = 3,").expect("valid");
        assert_eq!(parsed.get("todo.created"), Some(&2));
        assert_eq!(parsed.get("user.signed_in"), Some(&3));
        assert_eq!(parsed.len(), 2);
        assert!(audit_log_versions("").expect("empty").is_empty());
        for (bad, names) in [
            ("todo.creatd=2", "todo.creatd"),
            ("todo.created", "action=version"),
            ("todo.created=0", "from 1"),
            ("todo.created=two", "from 1"),
            ("todo.created=2,todo.created=3", "twice"),
        ] {
            let problem = audit_log_versions(bad).expect_err(bad);
            assert!(problem.contains(names), "{bad}: {problem}");
        }
    }
}
