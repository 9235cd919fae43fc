//! `authbridge demo`: the whole system on one machine, with one command and no accounts.
//!
//! It starts a PostgreSQL from the machine's binaries, applies the migrations, runs the InsForge stand-in and an
//! identity provider's (WorkOS by default, or an OpenID Connect provider shaped like Auth0 with `--provider oidc`;
//! both from the `authbridge-standins` crate), and serves authbridge in front of them, wired with freshly generated
//! secrets. With WorkOS the enterprise lifecycle is on, as an operator would turn it on: `DATABASE_URL`, a webhook
//! secret, the app's `/webhooks/workos` registered with the WorkOS stand-in, and the Events API consumer; the demo
//! prints two commands that change things at the stand-in (remove Bob from Acme, delete Carol), so the effect can
//! be watched on the next reload. The app is configured and built exactly as in production: the demo hands
//! [`Config::from_lookup`] the environment variables an operator would set, so every default and every check is
//! production's, and only the upstream URLs differ. Everything listens on loopback only: the stand-ins sign anyone
//! in without a password.
//!
//! This module exists only with the `demo` feature (on by default), so a production build can leave the stand-ins
//! out entirely.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use standins::StandInSecret;
use standins::insforge_standin::{InsforgeStandIn, InsforgeStandInError, InsforgeStandInOptions};
use standins::oidc_standin::{OidcStandIn, OidcStandInError, OidcStandInOptions};
use standins::temp_postgres::{PostgresError, PostgresOptions, TempPostgres};
use standins::workos_standin::{
    ACME_ORGANIZATION_ID, StandInMembershipStatus, WorkosStandIn, WorkosStandInError, WorkosStandInOptions,
};
use tokio::net::TcpListener;
use url::Url;

use crate::config::{Config, ConfigError};
use crate::startup::Application;

/// The demo's database inside its PostgreSQL cluster.
const DATABASE: &str = "authbridge";
/// The user the WorkOS stand-in's demo seed lets support staff impersonate (Bob).
const IMPERSONATED_USER_ID: &str = "user_standin_bob";
/// Lifetime of the bearer token printed for `curl`.
const CURL_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long the app may take to discover the OpenID Connect stand-in before the demo gives up.
const DISCOVERY_WAIT: Duration = Duration::from_secs(10);

/// Which identity provider the demo signs people in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoProvider {
    Workos,
    /// A generic OpenID Connect provider (the stand-in is shaped like an Auth0 tenant).
    Oidc,
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where authbridge listens; must be a loopback address.
    pub bind: SocketAddr,
    pub provider: DemoProvider,
    pub workos_port: u16,
    pub oidc_port: u16,
    pub insforge_port: u16,
    /// `None` picks a free port.
    pub postgres_port: Option<u16>,
    /// Keep the database here between runs; `None` uses a throwaway one.
    pub data_dir: Option<PathBuf>,
    /// Lifetime of the identity provider stand-in's access tokens (short values exercise refresh).
    pub access_token_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo only listens on loopback, but {0} is not a loopback address (unset BIND_ADDR or use 127.0.0.1)")]
    NotLoopback(IpAddr),
    #[error("port {port} ({what}) is already in use: stop what uses it or choose another with {flag}")]
    PortInUse { port: u16, what: &'static str, flag: &'static str },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("applying the migrations failed: {0}")]
    Migrate(#[from] crate::migrate::MigrateError),
    #[error("the InsForge stand-in did not start: {0}")]
    Insforge(#[from] InsforgeStandInError),
    #[error("the WorkOS stand-in did not start: {0}")]
    Workos(#[from] WorkosStandInError),
    #[error("the OpenID Connect stand-in did not start: {0}")]
    Oidc(#[from] OidcStandInError),
    #[error("authbridge could not discover the OpenID Connect stand-in within {0:?}")]
    Discovery(Duration),
    #[error("the demo's configuration was refused: {0}")]
    Config(#[from] ConfigError),
    #[error("authbridge did not start: {0}")]
    App(#[from] crate::startup::StartupError),
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
    #[error("cannot form the demo's URLs: {0}")]
    Url(#[from] url::ParseError),
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// Runs the demo until `shutdown` completes, then stops everything and removes the throwaway data.
pub async fn run(options: DemoOptions, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), DemoError> {
    if !options.bind.ip().is_loopback() {
        return Err(DemoError::NotLoopback(options.bind.ip()));
    }
    // Claim every port before starting anything slow, so a clash is reported at once and by name.
    let app_listener = listen(options.bind, "authbridge", "--port").await?;
    let loopback = |port| SocketAddr::new(options.bind.ip(), port);
    let provider_listener = match options.provider {
        DemoProvider::Workos => listen(loopback(options.workos_port), "WorkOS stand-in", "--workos-port").await?,
        DemoProvider::Oidc => listen(loopback(options.oidc_port), "OpenID Connect stand-in", "--oidc-port").await?,
    };
    let insforge_listener = listen(loopback(options.insforge_port), "InsForge stand-in", "--insforge-port").await?;

    let postgres =
        TempPostgres::start(PostgresOptions { port: options.postgres_port, data_dir: options.data_dir.clone() })
            .await?;
    let served = serve(
        &options,
        &postgres,
        Listeners { app: app_listener, provider: provider_listener, insforge: insforge_listener },
        shutdown,
    )
    .await;
    // Stopped here on every path, success or not, so the throwaway directory never outlives the demo.
    postgres.stop().await;
    if served.is_ok() {
        say(if options.data_dir.is_some() {
            "authbridge demo stopped."
        } else {
            "authbridge demo stopped; the throwaway database is gone."
        });
    }
    served
}

struct Listeners {
    app: TcpListener,
    /// The identity provider stand-in's.
    provider: TcpListener,
    insforge: TcpListener,
}

/// A user the welcome offers to sign in as.
struct DemoUser {
    name: String,
    email: String,
    /// "Acme (admin), Globex", or nothing.
    organizations: Option<String>,
}

/// The identity provider stand-in the demo runs.
enum ProviderStandIn {
    Workos(WorkosStandIn),
    Oidc(OidcStandIn),
}

impl ProviderStandIn {
    async fn start(options: &DemoOptions, listener: TcpListener, redirect_uri: &Url) -> Result<Self, DemoError> {
        Ok(match options.provider {
            DemoProvider::Workos => Self::Workos(
                WorkosStandIn::start(WorkosStandInOptions {
                    bind: free_for_reuse(listener),
                    redirect_uris: vec![redirect_uri.clone()],
                    access_token_ttl: options.access_token_ttl,
                    ..WorkosStandInOptions::demo()
                })
                .await?,
            ),
            DemoProvider::Oidc => Self::Oidc(
                OidcStandIn::start(OidcStandInOptions {
                    bind: free_for_reuse(listener),
                    redirect_uris: vec![redirect_uri.clone()],
                    access_token_ttl: options.access_token_ttl,
                    ..OidcStandInOptions::default()
                })
                .await?,
            ),
        })
    }

    /// What an operator would put in `.env` for this provider.
    fn environment(&self, redirect_uri: &Url) -> Vec<(&'static str, String)> {
        match self {
            Self::Workos(workos) => vec![
                ("WORKOS_API_KEY", workos.api_key().expose().to_owned()),
                ("WORKOS_CLIENT_ID", workos.client_id().to_owned()),
                ("WORKOS_REDIRECT_URI", redirect_uri.to_string()),
                ("WORKOS_API_BASE_URL", workos.base_url().to_string()),
            ],
            Self::Oidc(oidc) => vec![
                ("IDENTITY_PROVIDER", "oidc".to_owned()),
                ("OIDC_ISSUER", oidc.issuer().to_string()),
                ("OIDC_CLIENT_ID", oidc.client_id().to_owned()),
                ("OIDC_CLIENT_SECRET", oidc.client_secret().expose().to_owned()),
                ("OIDC_REDIRECT_URI", redirect_uri.to_string()),
                ("OIDC_AUDIENCE", oidc.audience().to_owned()),
            ],
        }
    }

    /// The users to sign in as, and a bearer token for the first.
    fn users_and_token(&self) -> (Vec<DemoUser>, Option<String>) {
        match self {
            Self::Workos(workos) => {
                let users = workos.users();
                let token = users.first().map(|user| workos.mint_access_token(&user.id, CURL_TOKEN_TTL));
                let organizations = workos.organizations();
                let memberships = workos.memberships();
                let listed = users
                    .iter()
                    .map(|user| {
                        let described: Vec<String> = memberships
                            .iter()
                            .filter(|m| m.user_id == user.id && m.status == StandInMembershipStatus::Active)
                            .map(|m| {
                                let name = organizations
                                    .iter()
                                    .find(|org| org.id == m.organization_id)
                                    .map_or(m.organization_id.as_str(), |org| org.name.as_str());
                                match m.roles.first().map(String::as_str) {
                                    Some("admin") => format!("{name} (admin)"),
                                    _ => name.to_owned(),
                                }
                            })
                            .collect();
                        DemoUser {
                            name: user.display_name(),
                            email: user.email.clone(),
                            organizations: (!described.is_empty()).then(|| described.join(", ")),
                        }
                    })
                    .collect();
                (listed, token)
            }
            Self::Oidc(oidc) => {
                let users = oidc.users();
                let token = users.first().map(|user| oidc.mint_access_token(&user.subject, CURL_TOKEN_TTL));
                let listed = users
                    .iter()
                    .map(|user| DemoUser { name: user.display_name(), email: user.email.clone(), organizations: None })
                    .collect();
                (listed, token)
            }
        }
    }

    /// The enterprise lifecycle's settings, which follow WorkOS: as an operator sets up the webhook in the WorkOS
    /// dashboard (the endpoint, and the secret WorkOS signs with), plus `DATABASE_URL`. Nothing for OIDC.
    fn lifecycle_environment(
        &self,
        options: &DemoOptions,
        database_url: &str,
    ) -> Result<Vec<(&'static str, String)>, DemoError> {
        let Self::Workos(workos) = self else { return Ok(Vec::new()) };
        let webhook_secret = crate::random::token()?;
        let webhook_url = Url::parse(&format!("http://{}/webhooks/workos", options.bind))?;
        workos.register_webhook_endpoint(webhook_url, StandInSecret::new(webhook_secret.clone()));
        Ok(vec![("DATABASE_URL", database_url.to_owned()), ("WORKOS_WEBHOOK_SECRET", webhook_secret)])
    }

    fn describe(&self) -> String {
        let (stand_in, ttl) = match self {
            Self::Workos(workos) => {
                (format!("  WorkOS stand-in     {}\n", workos.base_url()), workos.access_token_ttl())
            }
            Self::Oidc(oidc) => (
                format!("  OIDC stand-in       {} (issuer; shaped like Auth0)\n", oidc.issuer()),
                oidc.access_token_ttl(),
            ),
        };
        let ttl = ttl.as_secs();
        format!("{stand_in}  Access tokens       last {ttl} s (--access-token-ttl); sessions refresh before then\n")
    }

    async fn shutdown(self) {
        match self {
            Self::Workos(workos) => workos.shutdown().await,
            Self::Oidc(oidc) => oidc.shutdown().await,
        }
    }
}

/// Everything that runs on top of PostgreSQL: migrations, stand-ins, the app, until `shutdown`.
async fn serve(
    options: &DemoOptions,
    postgres: &TempPostgres,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let app_port = listeners.app.local_addr().map_err(|source| DemoError::Bind { addr: options.bind, source })?.port();
    let app_url = Url::parse(&format!("http://localhost:{app_port}/"))?;

    let database_url = match postgres.create_database(DATABASE).await {
        Ok(url) => url,
        // A kept data directory already has the database from the last run.
        Err(_) if !postgres.is_temporary() => postgres.url_for(DATABASE),
        Err(error) => return Err(error.into()),
    };
    crate::migrate::run(&database_url).await?;

    let jwt_secret = crate::random::token()?;
    let mut insforge_options =
        InsforgeStandInOptions::new(database_url.clone(), StandInSecret::new(jwt_secret.clone()));
    insforge_options.bind = free_for_reuse(listeners.insforge);
    let insforge = InsforgeStandIn::start(insforge_options).await?;

    let redirect_uri = app_url.join("/callback")?;
    let provider = ProviderStandIn::start(options, listeners.provider, &redirect_uri).await?;

    // What an operator would put in `.env`; everything not named here takes its production default.
    let mut environment = HashMap::from([
        ("BIND_ADDR", options.bind.to_string()),
        ("APP_URL", app_url.to_string()),
        ("SESSION_COOKIE_PASSWORD", crate::random::token()?),
        ("INSFORGE_URL", insforge.url().to_string()),
        ("INSFORGE_JWT_SECRET", jwt_secret),
    ]);
    environment.extend(provider.environment(&redirect_uri));
    environment.extend(provider.lifecycle_environment(options, &database_url)?);
    let config = Config::from_lookup(|name| environment.get(name).cloned())?;
    if let ProviderStandIn::Workos(workos) = &provider {
        align_with_database(&config, workos).await;
    }
    let app = Application::build_with_listener(config, listeners.app)?;
    // The welcome promises a working sign-in: an OpenID Connect provider must have been discovered first.
    if !app.wait_for_identity_provider(DISCOVERY_WAIT).await {
        insforge.shutdown().await;
        provider.shutdown().await;
        return Err(DemoError::Discovery(DISCOVERY_WAIT));
    }

    print_welcome(&app_url, &provider, &insforge, postgres);
    let served = app.run_until_stopped(shutdown).await;
    insforge.shutdown().await;
    provider.shutdown().await;
    served.map_err(DemoError::Serve)
}

/// Brings the database and the WorkOS stand-in, which starts from its seed on every run, into agreement. With a
/// kept data directory the database remembers the users and organizations deleted in earlier runs, and their
/// tombstones are forever (a sign-in as such a user is refused): WorkOS never brings a deleted object back, so the
/// stand-in deletes them again rather than offering them. Then each remaining user's memberships are read into the
/// database, the way a sign-in does, so that the welcome's curl line works at once (the Events API consumer would
/// record them too, moments later).
async fn align_with_database(config: &Config, workos: &WorkosStandIn) {
    let (Some(database), Some(workos_config)) = (&config.database, config.workos()) else { return };
    let lifecycle = match (crate::db::Database::connect_lazy(database), crate::workos::WorkosClient::new(workos_config))
    {
        (Ok(database), Ok(client)) => crate::lifecycle::Lifecycle::new(database, client),
        _ => return,
    };
    match lifecycle.deleted().await {
        Ok(deleted) => {
            // Refused only for ids the seed does not have (created on an earlier run's sign-in page): nothing to do.
            for id in &deleted.users {
                let _ = workos.delete_user(id);
            }
            for id in &deleted.organizations {
                let _ = workos.delete_organization(id);
            }
        }
        Err(error) => tracing::warn!(%error, "could not read which users and organizations were deleted earlier"),
    }
    for user in workos.users() {
        let profile = crate::identity::UserProfile {
            id: user.id.clone(),
            email: Some(user.email.clone()),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
        };
        if let Err(error) = lifecycle.sync_memberships(&profile).await {
            tracing::warn!(%error, user = %user.email, "could not record a seeded user's memberships");
        }
    }
}

async fn listen(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => DemoError::PortInUse { port: addr.port(), what, flag },
        _ => DemoError::Bind { addr, source },
    })
}

/// The stand-ins bind their own sockets: release the probe listener and hand them its address.
fn free_for_reuse(listener: TcpListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    drop(listener);
    addr
}

fn print_welcome(app_url: &Url, provider: &ProviderStandIn, insforge: &InsforgeStandIn, postgres: &TempPostgres) {
    let (users, token) = provider.users_and_token();
    let todos = app_url.join("/api/todos").map(|u| u.to_string()).unwrap_or_default();

    let mut out = String::new();
    out.push_str("\n  authbridge demo is running: everything is local, nothing leaves this machine.\n\n");
    out.push_str(&format!("  Open        {app_url}\n"));
    for (i, user) in users.iter().enumerate() {
        let label = if i == 0 { "Sign in as" } else { "" };
        let org = user.organizations.as_ref().map(|org| format!("  ({org})")).unwrap_or_default();
        out.push_str(&format!("  {label:<10}  {} <{}>{org}\n", user.name, user.email));
    }
    out.push_str("              ...or any email address, on the sign-in page\n");
    // The stand-in offers the impersonation while Bob exists (a `--data-dir` keeps his deletion from an earlier run).
    if let ProviderStandIn::Workos(workos) = provider
        && workos.users().iter().any(|user| user.id == IMPERSONATED_USER_ID)
    {
        out.push_str("              ...or support@authbridge.test impersonating Bob (read-only, audited)\n");
    }
    out.push('\n');
    if let (Some(first), Some(token)) = (users.first(), token) {
        out.push_str(&format!("  JSON API    (a bearer token for {}, valid for an hour)\n", first.email));
        out.push_str(&format!("  curl -H \"Authorization: Bearer {token}\" {todos}\n\n"));
    }
    if let ProviderStandIn::Workos(workos) = provider {
        out.push_str(&lifecycle_commands(workos));
    }
    out.push_str(&provider.describe());
    out.push_str(&format!("  InsForge stand-in   {}\n", insforge.url()));
    let kept = if postgres.is_temporary() { "throwaway, removed on exit" } else { "kept between runs" };
    out.push_str(&format!("  PostgreSQL          127.0.0.1:{} ({kept})\n", postgres.port()));
    out.push_str(&format!("  Data directory      {}\n\n", postgres.data_dir().display()));
    out.push_str("  Press Ctrl-C to stop.\n");
    say(&out);
}

/// The two ready-to-paste commands that change things at WorkOS (the stand-in's real API, with its API key), and
/// what to watch afterwards.
fn lifecycle_commands(workos: &WorkosStandIn) -> String {
    let users = workos.users();
    let find = |email: &str| users.iter().find(|user| user.email == email);
    let api = workos.base_url();
    let key = workos.api_key().expose();
    let mut out = String::from(
        "  Lifecycle   WorkOS tells the app about changes by webhook; paste one, then reload the signed-in page:\n",
    );
    if let Some(bob) = find("bob@acme.test")
        && let Some(membership) = workos.membership_of(&bob.id, ACME_ORGANIZATION_ID)
        && let Ok(url) = api.join(&format!("user_management/organization_memberships/{}", membership.id))
    {
        out.push_str("  Remove Bob from Acme (Acme disappears from his page and /api/organizations):\n");
        out.push_str(&format!("  curl -X DELETE -H \"Authorization: Bearer {key}\" {url}\n"));
    }
    if let Some(carol) = find("carol@example.test")
        && let Ok(url) = api.join(&format!("user_management/users/{}", carol.id))
    {
        out.push_str("  Delete Carol (she is signed out at once, and the database refuses her queries):\n");
        out.push_str(&format!("  curl -X DELETE -H \"Authorization: Bearer {key}\" {url}\n"));
    }
    out.push('\n');
    out
}

/// Prints to stdout, ignoring a closed stdout (`authbridge demo | head`): the demo must keep serving regardless.
fn say(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}
