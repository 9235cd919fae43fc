//! Everything a handler can reach, built once at start-up: one pooled client per upstream, the cached JWKS, the
//! derived keys. Cloning is cheap (reference counts), which is how axum hands it to every request.

use std::sync::Arc;

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
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StateError> {
        let workos = WorkosClient::new(&config.workos)?;
        let verifier = Arc::new(AccessTokenVerifier::new(workos.clone()));
        let sessions = SessionManager::new(&config.session, verifier, Refresher::new(workos.clone()))?;
        let insforge = InsforgeClient::new(&config.insforge)?;
        Ok(Self {
            csrf: Arc::new(CsrfKeys::new(&config.session)),
            readiness: Arc::new(Readiness::default()),
            sessions: Arc::new(sessions),
            config: Arc::new(config),
            workos,
            insforge,
        })
    }
}
