//! Building and running the application, the same way for the binary, the demo and the tests.
//!
//! [`Application::build`] binds the listener (port 0 picks a free port, which is what tests do) and wires every
//! part from the configuration; [`Application::run_until_stopped`] serves until the shutdown future completes,
//! letting in-flight requests finish. With `METRICS_BIND_ADDR` set, a second listener serves `GET /metrics` and
//! nothing else.

use std::future::Future;
use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState, StateError};
use crate::server::ServerLimits;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    metrics: Option<(TcpListener, PrometheusHandle)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("METRICS_BIND_ADDR: cannot listen on {addr}: {source}")]
    MetricsBind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot install the metrics recorder: another one is installed in this process")]
    MetricsRecorder,
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
        let metrics = match config.server.metrics_bind_addr {
            Some(addr) => {
                let handle = crate::metrics::install().ok_or(StartupError::MetricsRecorder)?;
                let bound = std::net::TcpListener::bind(addr)
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                    .and_then(TcpListener::from_std)
                    .map_err(|source| StartupError::MetricsBind { addr, source })?;
                Some((bound, handle))
            }
            None => None,
        };
        let state = AppState::new(config)?;
        // Warm the JWKS cache so the first sign-in does not wait for it; a failure here is retried on demand.
        let warm_up = state.clone();
        tokio::spawn(async move {
            if let Err(error) = warm_up.sessions.provider().warm_up().await {
                tracing::warn!(%error, "could not prefetch the WorkOS JWKS; will retry on the first request");
            }
        });
        Ok(Self { listener, state, metrics })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, when `METRICS_BIND_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let server = &self.state.config.server;
        let limits = ServerLimits {
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
            max_concurrent_requests: server.max_concurrent_requests,
        };
        let Some((metrics_listener, handle)) = self.metrics else {
            return crate::server::serve(self.listener, http::router(self.state), limits, shutdown).await;
        };
        // One shutdown signal for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let metrics_limits = ServerLimits { max_concurrent_requests: 16, max_connections: 16, ..limits };
        let metrics = crate::server::serve(
            metrics_listener,
            crate::metrics::router(handle),
            metrics_limits,
            wait(stopped.clone()),
        );
        let app = crate::server::serve(self.listener, http::router(self.state), limits, wait(stopped));
        let (app, metrics) = tokio::join!(app, metrics);
        app.and(metrics)
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
