//! Configuration, read once from the environment at start-up.
//!
//! Every variable is checked here, before a socket is opened, so a bad deployment fails at once with a message
//! naming the variable, instead of failing on the first sign-in. Secrets are wrapped in [`Secret`], whose `Debug`
//! never prints the value, so a `{:?}` of the configuration is safe to log.

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

/// What `serve` cannot start without.
const REQUIRED: [&str; 6] = [
    "WORKOS_API_KEY",
    "WORKOS_CLIENT_ID",
    "WORKOS_REDIRECT_URI",
    "WORKOS_COOKIE_PASSWORD",
    "INSFORGE_URL",
    "INSFORGE_JWT_SECRET",
];

/// Minimum length of the InsForge JWT secret: HS256 with a shorter key is guessable offline.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Minimum length of the cookie password, as the WorkOS SDKs require.
pub const MIN_COOKIE_PASSWORD_CHARS: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub insforge: InsforgeConfig,
    pub workos: WorkosConfig,
    pub session: SessionConfig,
    /// The enterprise lifecycle (webhooks, the Events API, deprovisioning): `None` without `DATABASE_URL`, and then
    /// the app runs without it.
    pub lifecycle: Option<LifecycleConfig>,
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

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Seals new cookies and opens existing ones.
    pub cookie_password: Secret,
    /// Opens cookies sealed before a key rotation; never used to seal.
    pub previous_cookie_password: Option<Secret>,
    /// `Secure` cookies, set when the app is served over https.
    pub secure_cookies: bool,
}

/// Connections in the bookkeeping pool: the revocation check, webhooks, the consumer and sign-in sync each hold one
/// only for a few statements.
pub const DATABASE_MAX_CONNECTIONS: u32 = 5;
/// Longest a request waits for a database connection: well inside the request time limit, so an outage is answered
/// 503 (and retried by WorkOS) instead of running into a 504.
pub const DATABASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The Events API poll interval when `DATABASE_URL` is set and `WORKOS_EVENTS_POLL_SECONDS` is not.
pub const DEFAULT_EVENTS_POLL_SECONDS: u64 = 30;

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// A direct connection to the InsForge project's PostgreSQL, used only for the `authbridge` schema.
    pub database_url: Secret,
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    /// Signs `POST /webhooks/workos` deliveries; without it the route does not exist.
    pub webhook_secret: Option<Secret>,
    /// Also accepted while a webhook secret is being rotated.
    pub previous_webhook_secret: Option<Secret>,
    /// How often the Events API is read; `None` (`WORKOS_EVENTS_POLL_SECONDS=0`) turns the consumer off.
    pub events_poll_interval: Option<Duration>,
}

impl Config {
    /// Reads the configuration from the process environment (after loading `.env` when present).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can check it without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);

        // All missing variables at once: a newcomer filling in `.env` should not need one restart per variable.
        let missing: Vec<&'static str> =
            REQUIRED.iter().copied().filter(|name| vars.optional(name).is_none()).collect();
        if let [first, rest @ ..] = missing.as_slice() {
            let problem = match rest {
                [] => "is not set (see .env.example)".to_owned(),
                _ => format!("is not set, nor are {} (see .env.example)", rest.join(", ")),
            };
            return Err(ConfigError::new(first, problem));
        }

        let redirect_uri = vars.url("WORKOS_REDIRECT_URI")?;
        let app_url = match vars.optional("APP_URL") {
            Some(raw) => parse_origin("APP_URL", &raw)?,
            None => origin_of(&redirect_uri),
        };
        // One source of truth for "served over https": the public origin decides Secure cookies and HSTS alike.
        let secure_cookies = app_url.scheme() == "https";

        let jwt_secret = vars.required("INSFORGE_JWT_SECRET")?;
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::new(
                "INSFORGE_JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes (it is {})", jwt_secret.len()),
            ));
        }

        Ok(Config {
            server: ServerConfig {
                bind_addr: vars.parsed("BIND_ADDR", "127.0.0.1:3000")?,
                app_url,
                request_timeout: Duration::from_secs(vars.parsed("REQUEST_TIMEOUT_SECONDS", "30")?),
                header_read_timeout: Duration::from_secs(positive(
                    "HEADER_READ_TIMEOUT_SECONDS",
                    vars.parsed("HEADER_READ_TIMEOUT_SECONDS", "5")?,
                )?),
                max_connections: positive("MAX_CONNECTIONS", vars.parsed("MAX_CONNECTIONS", "1024")?)? as usize,
            },
            insforge: InsforgeConfig {
                url: vars.url("INSFORGE_URL")?,
                jwt_secret: Secret::new(jwt_secret),
                token_ttl: Duration::from_secs(positive(
                    "INSFORGE_TOKEN_TTL_SECONDS",
                    vars.parsed("INSFORGE_TOKEN_TTL_SECONDS", "300")?,
                )?),
                connect_timeout: Duration::from_millis(vars.parsed("INSFORGE_CONNECT_TIMEOUT_MS", "2000")?),
                request_timeout: Duration::from_millis(vars.parsed("INSFORGE_REQUEST_TIMEOUT_MS", "10000")?),
            },
            workos: WorkosConfig {
                api_key: Secret::new(vars.required("WORKOS_API_KEY")?),
                client_id: vars.required("WORKOS_CLIENT_ID")?,
                redirect_uri,
                api_base_url: match vars.optional("WORKOS_API_BASE_URL") {
                    Some(raw) => parse_url("WORKOS_API_BASE_URL", &raw)?,
                    None => Url::parse("https://api.workos.com")
                        .map_err(|e| ConfigError::new("WORKOS_API_BASE_URL", e.to_string()))?,
                },
                connect_timeout: Duration::from_millis(vars.parsed("WORKOS_CONNECT_TIMEOUT_MS", "2000")?),
                request_timeout: Duration::from_millis(vars.parsed("WORKOS_REQUEST_TIMEOUT_MS", "10000")?),
            },
            session: SessionConfig {
                cookie_password: cookie_password("WORKOS_COOKIE_PASSWORD", vars.required("WORKOS_COOKIE_PASSWORD")?)?,
                previous_cookie_password: vars
                    .optional("WORKOS_COOKIE_PASSWORD_PREVIOUS")
                    .map(|p| cookie_password("WORKOS_COOKIE_PASSWORD_PREVIOUS", p))
                    .transpose()?,
                secure_cookies,
            },
            lifecycle: lifecycle(&vars)?,
        })
    }
}

/// `DATABASE_URL` turns the lifecycle on; the other lifecycle variables mean nothing without it, so setting one of
/// them alone is a mistake worth stopping for.
fn lifecycle(vars: &Vars<'_>) -> Result<Option<LifecycleConfig>, ConfigError> {
    let webhook_secret = vars.optional("WORKOS_WEBHOOK_SECRET").map(Secret::new);
    let previous_webhook_secret = vars.optional("WORKOS_WEBHOOK_SECRET_PREVIOUS").map(Secret::new);
    if previous_webhook_secret.is_some() && webhook_secret.is_none() {
        return Err(ConfigError::new(
            "WORKOS_WEBHOOK_SECRET_PREVIOUS",
            "is only read during a rotation, next to WORKOS_WEBHOOK_SECRET, which is not set",
        ));
    }
    let poll_seconds: Option<u64> = match vars.optional("WORKOS_EVENTS_POLL_SECONDS") {
        Some(_) => Some(vars.parsed("WORKOS_EVENTS_POLL_SECONDS", "0")?),
        None => None,
    };
    let Some(database_url) = vars.optional("DATABASE_URL") else {
        if webhook_secret.is_some() {
            return Err(ConfigError::new("WORKOS_WEBHOOK_SECRET", "needs DATABASE_URL, where webhooks are recorded"));
        }
        if poll_seconds.is_some_and(|seconds| seconds > 0) {
            return Err(ConfigError::new(
                "WORKOS_EVENTS_POLL_SECONDS",
                "needs DATABASE_URL, where events are recorded",
            ));
        }
        return Ok(None);
    };
    // Checked here so a typo stops the start; the message never repeats the value, which holds a password.
    let is_postgres =
        Url::parse(database_url.trim()).is_ok_and(|url| matches!(url.scheme(), "postgres" | "postgresql"));
    if !is_postgres {
        return Err(ConfigError::new("DATABASE_URL", "must be a postgres:// connection URL"));
    }
    let poll_seconds = poll_seconds.unwrap_or(DEFAULT_EVENTS_POLL_SECONDS);
    Ok(Some(LifecycleConfig {
        database_url: Secret::new(database_url),
        database_max_connections: DATABASE_MAX_CONNECTIONS,
        database_acquire_timeout: DATABASE_ACQUIRE_TIMEOUT,
        webhook_secret,
        previous_webhook_secret,
        events_poll_interval: (poll_seconds > 0).then(|| Duration::from_secs(poll_seconds)),
    }))
}

/// Only the variables the `migrate` subcommand needs, so it runs without the WorkOS settings.
pub fn database_url_from_env() -> Result<Secret, ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    Vars(&lookup).required("DATABASE_URL").map(Secret::new)
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

    fn url(&self, name: &'static str) -> Result<Url, ConfigError> {
        parse_url(name, &self.required(name)?)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let raw = self.optional(name).unwrap_or_else(|| default.to_owned());
        raw.trim().parse().map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))
    }
}

fn positive(name: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 { Err(ConfigError::new(name, "must be greater than zero")) } else { Ok(value) }
}

fn cookie_password(name: &'static str, value: String) -> Result<Secret, ConfigError> {
    let chars = value.chars().count();
    if chars < MIN_COOKIE_PASSWORD_CHARS {
        return Err(ConfigError::new(
            name,
            format!("must be at least {MIN_COOKIE_PASSWORD_CHARS} characters (it is {chars})"),
        ));
    }
    Ok(Secret::new(value))
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
            ("WORKOS_COOKIE_PASSWORD", "p".repeat(32)),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_local() {
        let config = load(&base()).expect("valid configuration");
        assert_eq!(config.server.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.server.origin(), "http://localhost:3000");
        assert_eq!(config.workos.api_base_url.as_str(), "https://api.workos.com/");
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
        for name in REQUIRED {
            assert!(message.contains(name), "{name} missing from {message}");
        }
    }

    #[test]
    fn short_secrets_are_refused_by_name() {
        let mut vars = base();
        vars.insert("INSFORGE_JWT_SECRET", "x".repeat(31));
        assert_eq!(load(&vars).expect_err("short").variable, "INSFORGE_JWT_SECRET");

        let mut vars = base();
        vars.insert("WORKOS_COOKIE_PASSWORD", "p".repeat(31));
        assert_eq!(load(&vars).expect_err("short").variable, "WORKOS_COOKIE_PASSWORD");

        let mut vars = base();
        vars.insert("WORKOS_COOKIE_PASSWORD_PREVIOUS", "short".to_owned());
        assert_eq!(load(&vars).expect_err("short").variable, "WORKOS_COOKIE_PASSWORD_PREVIOUS");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = load(&base()).expect("valid configuration");
        let debug = format!("{config:?}");
        assert!(!debug.contains(&"x".repeat(32)), "JWT secret leaked: {debug}");
        assert!(!debug.contains(&"p".repeat(32)), "cookie password leaked");
        assert!(!debug.contains("sk_test_123"), "API key leaked");
    }

    #[test]
    fn app_url_follows_an_https_redirect_uri_and_can_be_overridden() {
        let mut vars = base();
        vars.insert("WORKOS_REDIRECT_URI", "https://todos.example.com/callback".to_owned());
        let config = load(&vars).expect("valid");
        assert_eq!(config.server.origin(), "https://todos.example.com");
        assert!(config.session.secure_cookies);

        vars.insert("APP_URL", "https://app.example.com/".to_owned());
        assert_eq!(load(&vars).expect("valid").server.origin(), "https://app.example.com");

        vars.insert("APP_URL", "https://app.example.com/sub".to_owned());
        assert_eq!(load(&vars).expect_err("path").variable, "APP_URL");
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
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned());
        assert!(load(&vars).expect("off is fine without a database").lifecycle.is_none());
    }

    #[test]
    fn with_a_database_the_consumer_polls_every_30_seconds_unless_told_otherwise() {
        let mut vars = base();
        vars.insert("DATABASE_URL", "postgres://authbridge:pw@db.example.com/insforge".to_owned());
        let lifecycle = load(&vars).expect("valid").lifecycle.expect("on");
        assert_eq!(lifecycle.events_poll_interval, Some(Duration::from_secs(30)));
        assert!(lifecycle.webhook_secret.is_none());
        assert!(lifecycle.database_acquire_timeout < Duration::from_secs(30), "inside the request time limit");

        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "0".to_owned());
        assert_eq!(load(&vars).expect("valid").lifecycle.expect("on").events_poll_interval, None);

        let mut typo = vars.clone();
        typo.insert("DATABASE_URL", "mysql://u:hunter2@x/db".to_owned());
        let error = load(&typo).expect_err("not PostgreSQL");
        assert_eq!(error.variable, "DATABASE_URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "soon".to_owned());
        assert_eq!(load(&vars).expect_err("nan").variable, "WORKOS_EVENTS_POLL_SECONDS");

        vars.insert("WORKOS_EVENTS_POLL_SECONDS", "5".to_owned());
        vars.insert("WORKOS_WEBHOOK_SECRET_PREVIOUS", "old".to_owned());
        assert_eq!(load(&vars).expect_err("previous alone").variable, "WORKOS_WEBHOOK_SECRET_PREVIOUS");
        vars.insert("WORKOS_WEBHOOK_SECRET", "new".to_owned());
        let lifecycle = load(&vars).expect("valid").lifecycle.expect("on");
        assert_eq!(lifecycle.webhook_secret.as_ref().map(Secret::expose), Some("new"));
        assert_eq!(lifecycle.events_poll_interval, Some(Duration::from_secs(5)));
        let debug = format!("{lifecycle:?}");
        assert!(!debug.contains("pw@") && !debug.contains("\"new\""), "secrets leaked: {debug}");
    }

    #[test]
    fn every_variable_read_is_documented_in_env_example_and_the_readme() {
        let read = std::sync::Mutex::new(Vec::<String>::new());
        let vars = base();
        let _ = Config::from_lookup(|name| {
            crate::sync::lock(&read).push(name.to_owned());
            vars.get(name).cloned()
        });
        let read = read.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(read.iter().any(|name| name == "WORKOS_EVENTS_POLL_SECONDS"), "{read:?}");
        let env_example = include_str!("../.env.example");
        let readme = include_str!("../README.md");
        for name in read {
            assert!(env_example.contains(&format!("{name}=")), "{name} is missing from .env.example");
            assert!(readme.contains(&format!("`{name}`")), "{name} is missing from the README's table");
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
    }
}
