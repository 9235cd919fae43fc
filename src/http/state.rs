//! Everything a handler can reach, built once at start-up: one pooled client per upstream, the cached JWKS, the
//! derived keys. Cloning is cheap (reference counts), which is how axum hands it to every request.

use std::sync::Arc;

use axum::http::HeaderValue;

use crate::config::Config;
use crate::insforge::client::{InsforgeClient, InsforgeError};
use crate::session::SessionManager;
use crate::session::provider::IdentityProvider;
use crate::session::seal::SealError;
use crate::workos::WorkosError;

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
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StateError> {
        let provider = IdentityProvider::from_config(&config)?;
        // No script at all, styles only from the app, and form submissions only to the app and to the identity
        // provider: sign-out posts here and is redirected there, and browsers apply `form-action` to redirects.
        let provider_origin = provider.origin();
        let content_security_policy = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {provider_origin}; \
             frame-ancestors 'none'; base-uri 'none'"
        ))
        .map_err(|_| StateError::Policy)?;
        let sessions = SessionManager::new(&config.session, provider)?;
        let insforge = InsforgeClient::new(&config.insforge)?;
        Ok(Self {
            origin: config.server.origin().into(),
            content_security_policy,
            csrf: Arc::new(CsrfKeys::new(&config.session)),
            readiness: Arc::new(Readiness::default()),
            sessions: Arc::new(sessions),
            config: Arc::new(config),
            insforge,
        })
    }
}
