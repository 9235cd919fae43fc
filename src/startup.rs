//! Building and running the application, the same way for the binary, the demo and the tests.
//!
//! [`Application::build`] binds the listener (port 0 picks a free port, which is what tests do) and wires every
//! part from the configuration; [`Application::run_until_stopped`] serves until the shutdown future completes,
//! letting in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState, StateError};
use crate::server::ServerLimits;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let addr = config.server.bind_addr;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
        Self::build_with_listener(config, listener)
    }

    /// For callers that must know the port before the configuration is complete (the redirect URI contains it):
    /// the tests and the demo bind first, then configure.
    pub fn build_with_listener(config: Config, listener: TcpListener) -> Result<Self, StartupError> {
        let state = AppState::new(config)?;
        // Warm the JWKS cache so the first sign-in does not wait for it; a failure here is retried on demand.
        let warm_up = state.clone();
        tokio::spawn(async move {
            if let Err(error) = warm_up.sessions.provider().warm_up().await {
                tracing::warn!(%error, "could not prefetch the WorkOS JWKS; will retry on the first request");
            }
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let server = &self.state.config.server;
        let limits =
            ServerLimits { header_read_timeout: server.header_read_timeout, max_connections: server.max_connections };
        crate::server::serve(self.listener, http::router(self.state), limits, shutdown).await
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
