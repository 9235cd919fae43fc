//! Everything a handler can reach, built once at start-up: one pooled client per upstream, the cached JWKS, the
//! derived keys. Cloning is one reference count (every layer and extractor of every request clones it), and it
//! derefs to [`AppParts`], whose fields are what handlers use.

use std::sync::{Arc, RwLock};

use axum::http::HeaderValue;

use crate::audit::AuditTrail;
use crate::config::Config;
use crate::db::{Database, DbError};
use crate::insforge::client::{InsforgeClient, InsforgeError};
use crate::lifecycle::Lifecycle;
use crate::lifecycle::sync::MembershipSync;
use crate::lifecycle::webhook::WebhookSecrets;
use crate::session::SessionManager;
use crate::session::provider::{IdentityProvider, SetupError};
use crate::session::revocations::{DeletedUsers, Revocations};
use crate::session::seal::{SealError, Sealer};
use crate::session::shared_refresh::SharedRefreshes;
use crate::sync::{read, write};

use super::csrf::CsrfKeys;
use super::health::Readiness;

#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub config: Arc<Config>,
    /// The app's origin as browsers send it in `Origin` (`https://todos.example.com`), for same-origin checks.
    pub origin: Arc<str>,
    /// The Content-Security-Policy header, built again only when the provider's origins change (once, when an
    /// OpenID Connect provider is discovered).
    content_security_policy: Arc<RwLock<(String, HeaderValue)>>,
    pub sessions: Arc<SessionManager>,
    pub csrf: Arc<CsrfKeys>,
    pub insforge: InsforgeClient,
    pub readiness: Arc<Readiness>,
    /// authbridge's bookkeeping database; `None` without `DATABASE_URL`.
    pub database: Option<Database>,
    /// The WorkOS enterprise lifecycle; `None` without `DATABASE_URL` or with an OpenID Connect provider.
    pub lifecycle: Option<Arc<Lifecycle>>,
    /// What `POST /webhooks/workos` verifies deliveries with; `None` without `WORKOS_WEBHOOK_SECRET`.
    pub webhook_secrets: Option<Arc<WebhookSecrets>>,
    /// Webhook deliveries being received at once, at most [`super::webhooks::MAX_CONCURRENT_WEBHOOKS`].
    pub webhook_slots: tokio::sync::Semaphore,
    /// Audit Log events and impersonation records; with the lifecycle only.
    pub audit: Option<Arc<AuditTrail>>,
    /// Tasks that run beside the server or outlive the request that started them: a stop waits for them (up to a
    /// limit, `startup.rs`), so that nothing they log follows the line that says the server stopped.
    pub background: tokio_util::task::TaskTracker,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Provider(#[from] SetupError),
    #[error("cannot set up the InsForge client: {0}")]
    Insforge(#[from] InsforgeError),
    #[error("cannot derive the cookie keys from the session cookie password")]
    Keys(#[from] SealError),
    #[error("the identity provider's address cannot be written into a Content-Security-Policy header")]
    Policy,
    #[error("cannot set up the database pool: {0}")]
    Database(#[from] DbError),
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StateError> {
        // What the database gives each provider, decided here only. With either one: sign-outs every replica
        // refuses (also after a restart), and one refresh of a single-use refresh token shared by every replica.
        // With WorkOS also the lifecycle (configuration only enables it with the WorkOS provider): its events end
        // sessions and deleted users' access, and it keeps memberships, webhooks and Audit Logs.
        let database = config.database.as_ref().map(Database::connect_lazy).transpose()?;
        let mut provider = IdentityProvider::from_config(&config)?;
        // The lifecycle calls WorkOS through the provider's client: one connection pool per upstream.
        let lifecycle = match (&database, &config.lifecycle, provider.workos_client()) {
            (Some(database), Some(_), Some(client)) => Some(Arc::new(Lifecycle::new(database.clone(), client.clone()))),
            _ => None,
        };
        if let Some(lifecycle) = &lifecycle {
            provider.attach_membership_sync(MembershipSync::new(Arc::clone(lifecycle)));
        }
        let origins = provider.browser_origins().to_owned();
        let content_security_policy =
            Arc::new(RwLock::new((origins.clone(), content_security_policy(&origins).ok_or(StateError::Policy)?)));
        let mut sessions = SessionManager::new(&config.session, provider)?;
        if let Some(database) = &database {
            let deleted_users = if lifecycle.is_some() { DeletedUsers::Recorded } else { DeletedUsers::NotRecorded };
            sessions = sessions.with_revocations(Arc::new(Revocations::shared(database.clone(), deleted_users)));
            let sealer =
                Sealer::new(&config.session.cookie_password, config.session.previous_cookie_password.as_ref())?;
            let shared_refreshes =
                SharedRefreshes::new(database.clone(), sealer).within_request_timeout(config.server.request_timeout);
            sessions = sessions.with_shared_refreshes(shared_refreshes);
        }
        let webhook_secrets = config.lifecycle.as_ref().and_then(|lifecycle| {
            let current = lifecycle.webhook_secret.as_ref()?;
            Some(Arc::new(WebhookSecrets::new(current, lifecycle.previous_webhook_secret.as_ref())))
        });
        let insforge = InsforgeClient::new(&config.insforge)?;
        let audit = lifecycle.as_ref().zip(config.lifecycle.as_ref()).map(|(lifecycle, settings)| {
            Arc::new(AuditTrail::new(Arc::clone(lifecycle), settings.audit_log_versions.clone()))
        });
        Ok(Self(Arc::new(AppParts {
            audit,
            origin: config.server.origin().into(),
            content_security_policy,
            csrf: Arc::new(CsrfKeys::new(&config.session)),
            readiness: Arc::new(Readiness::default()),
            sessions: Arc::new(sessions),
            config: Arc::new(config),
            insforge,
            database,
            lifecycle,
            webhook_secrets,
            webhook_slots: tokio::sync::Semaphore::new(super::webhooks::MAX_CONCURRENT_WEBHOOKS),
            background: tokio_util::task::TaskTracker::new(),
        })))
    }
}

impl AppParts {
    /// The Content-Security-Policy for the provider's current origins.
    pub fn content_security_policy(&self) -> HeaderValue {
        let origins = self.sessions.provider().browser_origins();
        {
            let cached = read(&self.content_security_policy);
            if cached.0 == origins {
                return cached.1.clone();
            }
        }
        let Some(policy) = content_security_policy(origins) else {
            // Discovery published an origin that cannot be a header (it was checked to be a URL): keep the old one.
            tracing::error!("the identity provider's origins cannot be written into a Content-Security-Policy");
            return read(&self.content_security_policy).1.clone();
        };
        *write(&self.content_security_policy) = (origins.to_owned(), policy.clone());
        policy
    }
}

/// No script at all, styles only from the app, and form submissions only to the app and to the identity provider:
/// sign-out posts here and is redirected there, and browsers apply `form-action` to redirects.
fn content_security_policy(provider_origins: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {provider_origins}; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .ok()
}
