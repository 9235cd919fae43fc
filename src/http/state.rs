//! Everything a handler can reach, built once at start-up: one pooled client per upstream, the cached JWKS, the
//! derived keys. Cloning is cheap (reference counts), which is how axum hands it to every request.

use std::sync::Arc;

use axum::http::HeaderValue;

use crate::config::Config;
use crate::insforge::client::{InsforgeClient, InsforgeError};
use crate::session::SessionManager;
use crate::session::refresh::Refresher;
use crate::session::seal::SealError;
use crate::workos::{AccessTokenVerifier, WorkosClient, WorkosError};

use super::csrf::CsrfKeys;
use super::health::Readiness;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The app's origin as browsers send it in `Origin` (`https://todos.example.com`), for same-origin checks.
    pub origin: Arc<str>,
    /// The Content-Security-Policy header, built once.
    pub content_security_policy: HeaderValue,
    pub workos: WorkosClient,
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
        let workos = WorkosClient::new(&config.workos)?;
        let verifier = Arc::new(AccessTokenVerifier::new(workos.clone()));
        let sessions = SessionManager::new(&config.session, verifier, Refresher::new(workos.clone()))?;
        let insforge = InsforgeClient::new(&config.insforge)?;
        // No script at all, styles only from the app, and form submissions only to the app and to WorkOS: sign-out
        // posts here and is redirected there, and browsers apply `form-action` to redirects.
        let workos_origin = config.workos.api_base_url.origin().ascii_serialization();
        let content_security_policy = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {workos_origin}; \
             frame-ancestors 'none'; base-uri 'none'"
        ))
        .map_err(|_| StateError::Policy)?;
        Ok(Self {
            origin: config.server.origin().into(),
            content_security_policy,
            csrf: Arc::new(CsrfKeys::new(&config.session)),
            readiness: Arc::new(Readiness::default()),
            sessions: Arc::new(sessions),
            config: Arc::new(config),
            workos,
            insforge,
        })
    }
}
