//! Everything a handler can reach, built once at start-up: one pooled client per upstream, the cached JWKS, the
//! derived keys. Cloning is cheap (reference counts), which is how axum hands it to every request.

use std::sync::Arc;

use axum::http::HeaderValue;

use crate::config::Config;
use crate::db::{Database, DbError};
use crate::insforge::client::{InsforgeClient, InsforgeError};
use crate::lifecycle::Lifecycle;
use crate::lifecycle::sync::MembershipSync;
use crate::lifecycle::webhook::WebhookSecrets;
use crate::session::SessionManager;
use crate::session::provider::IdentityProvider;
use crate::session::revocations::Revocations;
use crate::session::seal::SealError;
use crate::workos::{WorkosClient, WorkosError};

use super::csrf::CsrfKeys;
use super::health::Readiness;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The app's origin as browsers send it in `Origin` (`https://todos.example.com`), for same-origin checks.
    pub origin: Arc<str>,
    /// The Content-Security-Policy header, built once.
    pub content_security_policy: HeaderValue,
    pub sessions: Arc<SessionManager>,
    pub csrf: Arc<CsrfKeys>,
    pub insforge: InsforgeClient,
    pub readiness: Arc<Readiness>,
    /// The enterprise lifecycle; `None` without `DATABASE_URL`.
    pub lifecycle: Option<Arc<Lifecycle>>,
    /// What `POST /webhooks/workos` verifies deliveries with; `None` without `WORKOS_WEBHOOK_SECRET`.
    pub webhook_secrets: Option<Arc<WebhookSecrets>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot set up the WorkOS client: {0}")]
    Workos(#[from] WorkosError),
    #[error("cannot set up the InsForge client: {0}")]
    Insforge(#[from] InsforgeError),
    #[error("cannot derive the cookie keys from WORKOS_COOKIE_PASSWORD")]
    Keys(#[from] SealError),
    #[error("WORKOS_API_BASE_URL cannot be written into a Content-Security-Policy header")]
    Policy,
    #[error("cannot set up the database pool: {0}")]
    Database(#[from] DbError),
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StateError> {
        let lifecycle = match &config.lifecycle {
            Some(lifecycle) => {
                let database = Database::connect_lazy(lifecycle)?;
                Some(Arc::new(Lifecycle::new(database, WorkosClient::new(&config.workos)?)))
            }
            None => None,
        };
        let mut provider = IdentityProvider::from_config(&config)?;
        if let Some(lifecycle) = &lifecycle {
            provider.attach_membership_sync(MembershipSync::new(Arc::clone(lifecycle)));
        }
        // No script at all, styles only from the app, and form submissions only to the app and to the identity
        // provider: sign-out posts here and is redirected there, and browsers apply `form-action` to redirects.
        let provider_origin = provider.origin();
        let content_security_policy = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {provider_origin}; \
             frame-ancestors 'none'; base-uri 'none'"
        ))
        .map_err(|_| StateError::Policy)?;
        let mut sessions = SessionManager::new(&config.session, provider)?;
        if let Some(lifecycle) = &lifecycle {
            sessions = sessions.with_revocations(Arc::new(Revocations::shared(Arc::clone(lifecycle))));
        }
        let webhook_secrets = config.lifecycle.as_ref().and_then(|lifecycle| {
            let current = lifecycle.webhook_secret.as_ref()?;
            Some(Arc::new(WebhookSecrets::new(current, lifecycle.previous_webhook_secret.as_ref())))
        });
        let insforge = InsforgeClient::new(&config.insforge)?;
        Ok(Self {
            origin: config.server.origin().into(),
            content_security_policy,
            csrf: Arc::new(CsrfKeys::new(&config.session)),
            readiness: Arc::new(Readiness::default()),
            sessions: Arc::new(sessions),
            config: Arc::new(config),
            insforge,
            lifecycle,
            webhook_secrets,
        })
    }
}
