//! Building and running the application, the same way for the binary, the demo and the tests.
//!
//! [`Application::build`] binds the listener (port 0 picks a free port, which is what tests do) and wires every
//! part from the configuration; [`Application::run_until_stopped`] serves until the shutdown future completes,
//! letting in-flight requests finish. With `METRICS_BIND_ADDR` set, a second listener serves `GET /metrics` and
//! nothing else.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ProviderConfig};
use crate::http::{self, AppState, StateError};
use crate::lifecycle::consumer::{ConsumerOptions, EventsConsumer};
use crate::server::ServerLimits;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    metrics: Option<(TcpListener, PrometheusHandle)>,
    /// Stops the background tasks (the Events API consumer) when the server stops, or when this is dropped. They
    /// are tracked in `state.background`, and waited for once stopped.
    stop_background: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("BIND_ADDR: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("METRICS_BIND_ADDR: cannot listen on {addr}: {source}")]
    MetricsBind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot install the metrics recorder: another one is installed in this process")]
    MetricsRecorder,
    #[error("the database at DATABASE_URL lacks authbridge's latest migration: run `authbridge migrate` first")]
    NotMigrated,
    /// The database answered, and refused: a wrong password, a role without rights. Unlike an outage this does not
    /// mend itself, and a replica started anyway would look ready while answering every signed-in request 503.
    #[error(
        "the database at DATABASE_URL refused authbridge's start-up check: {0} (check its user, password and rights)"
    )]
    DatabaseRefused(String),
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let addr = config.server.bind_addr;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
        let app = Self::assemble(config, listener)?;
        // Before anything runs in the background: a database that will stop the start must not first fill the log
        // with the lifecycle's warnings about it.
        if let Some(database) = &app.state.database {
            // Every statement (the revocation check on each request among them) would fail against an older schema:
            // better to say so now than answer 500s.
            match database.is_migrated().await {
                Ok(true) => app.state.readiness.database_reached(),
                Ok(false) => return Err(StartupError::NotMigrated),
                Err(error @ crate::db::DbError::Unavailable(_)) => {
                    tracing::warn!(%error, "cannot reach the database at start-up; signed-in requests answer 503 until it is back");
                }
                // Not "not migrated": the check itself was refused (the role's rights, say), which `migrate` would
                // not mend.
                Err(crate::db::DbError::Failed(reason)) => return Err(StartupError::DatabaseRefused(reason)),
            }
        }
        app.start_background();
        Ok(app)
    }

    /// For callers that must know the port before the configuration is complete (the redirect URI contains it):
    /// the tests and the demo bind first, then configure.
    pub fn build_with_listener(config: Config, listener: TcpListener) -> Result<Self, StartupError> {
        let app = Self::assemble(config, listener)?;
        app.start_background();
        Ok(app)
    }

    /// The server and its state, with nothing started yet.
    fn assemble(config: Config, listener: TcpListener) -> Result<Self, StartupError> {
        let metrics = match config.server.metrics_bind_addr {
            Some(addr) => {
                let lifecycle = config.lifecycle.as_ref();
                let features = crate::metrics::Features {
                    webhooks: lifecycle.is_some_and(|lifecycle| lifecycle.webhook_secret.is_some()),
                    events_api: lifecycle.is_some_and(|lifecycle| lifecycle.events_poll_interval.is_some()),
                    audit_logs: lifecycle.is_some(),
                };
                let handle = crate::metrics::install(features).ok_or(StartupError::MetricsRecorder)?;
                let bound = std::net::TcpListener::bind(addr)
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                    .and_then(TcpListener::from_std)
                    .map_err(|source| StartupError::MetricsBind { addr, source })?;
                Some((bound, handle))
            }
            None => None,
        };
        let insforge = &config.insforge.url;
        if insforge.scheme() == "http" && !crate::config::is_loopback(insforge) {
            tracing::warn!(
                host = insforge.host_str().unwrap_or_default(),
                "INSFORGE_URL is plain http to another host: every minted token (a user's identity to row-level \
                 security for minutes) crosses the network unencrypted; use https unless that network is yours alone"
            );
        }
        let state = AppState::new(config)?;
        let (stop_background, _) = watch::channel(false);
        Ok(Self { listener, state, metrics, stop_background })
    }

    /// What runs beside the server until it stops.
    fn start_background(&self) {
        // In the background, so the server answers (`/healthz`, and `/readyz` saying "not ready") meanwhile: warm
        // the WorkOS JWKS cache, or discover the OpenID Connect provider (retried until it succeeds).
        let prepare = self.state.clone();
        let background = &self.state.background;
        let mut stopping = self.stop_background.subscribe();
        background.spawn(async move {
            // A server stopped while WorkOS is still being asked (or discovery retried) stops asking.
            tokio::select! {
                _ = stopping.wait_for(|stopped| *stopped) => {}
                () = prepare.sessions.provider().prepare() => {}
            }
        });
        let stopping = self.stop_background.subscribe();
        background.spawn(refresh_signing_keys(self.state.clone(), stopping.clone()));
        start_lifecycle(&self.state, stopping);
    }

    /// Waits (at most `within`) until the identity provider can serve: at once for WorkOS, after discovery for
    /// an OpenID Connect provider. `false` when it is not ready in time.
    pub async fn wait_for_identity_provider(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.state.sessions.provider().is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, when `METRICS_BIND_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, or until the identity provider proves unusable with this configuration
    /// (an OpenID Connect issuer that does not match its discovery document): then the server stops and the reason
    /// is the error, for the operator to read. The metrics listener, when there is one, stops with it.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let server = &self.state.config.server;
        let limits = ServerLimits {
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
            max_concurrent_requests: server.max_concurrent_requests,
        };
        let (misconfigured_tx, misconfigured_rx) = tokio::sync::oneshot::channel::<String>();
        let sessions = std::sync::Arc::clone(&self.state.sessions);
        let refreshing = std::sync::Arc::clone(&sessions);
        let audit = self.state.audit.clone();
        let background = self.state.background.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                reason = sessions.provider().misconfigured() => {
                    let _ = misconfigured_tx.send(reason);
                }
            }
        };
        let served = match self.metrics {
            None => crate::server::serve(self.listener, http::router(self.state), limits, stop).await,
            Some((metrics_listener, handle)) => {
                // One stop signal for both listeners.
                let (stop_tx, stopped) = tokio::sync::watch::channel(false);
                let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                tokio::spawn(async move {
                    stop.await;
                    let _ = stop_tx.send(true);
                });
                let metrics_limits = ServerLimits { max_concurrent_requests: 16, max_connections: 16, ..limits };
                let metrics = crate::server::serve(
                    metrics_listener,
                    crate::metrics::router(handle, self.state.database.clone()),
                    metrics_limits,
                    wait(stopped.clone()),
                );
                let app = crate::server::serve(self.listener, http::router(self.state), limits, wait(stopped));
                let (app, metrics) = tokio::join!(app, metrics);
                app.and(metrics)
            }
        };
        self.stop_background.send_replace(true);
        let audited = async {
            match audit {
                Some(audit) => audit.drain(AUDIT_DRAIN).await,
                None => true,
            }
        };
        background.close();
        let (audited, refreshed, _signed_out, background_stopped) = tokio::join!(
            audited,
            refreshing.drain_refreshes(REFRESH_DRAIN),
            refreshing.revocations().drain_sign_outs(SIGN_OUT_DRAIN),
            tokio::time::timeout(BACKGROUND_DRAIN, background.wait())
        );
        if !audited {
            tracing::error!("stopped with Audit Log events still unwritten: the database did not take them in time");
        }
        if background_stopped.is_err() {
            // An Events API poll, say, that had begun: it ends within its time limit, and its lines may follow.
            tracing::warn!("stopped while a background task was still finishing what it had begun");
        }
        if !refreshed {
            tracing::error!(
                "stopped with a session refresh still under way: if the provider spent its refresh token, that user \
                 is signed out"
            );
        }
        served?;
        match misconfigured_rx.await {
            Ok(reason) => Err(std::io::Error::other(reason)),
            Err(_) => Ok(()),
        }
    }
}

/// Longest the server waits, once it has stopped, for Audit Log events still being queued (each is bounded by the
/// database pool's acquire timeout and statement timeout anyway): well within an orchestrator's grace period.
const AUDIT_DRAIN: Duration = Duration::from_secs(10);

/// Longest the server waits, once it has stopped, for its background tasks to end: they stop at once when idle, and
/// an Events API poll or Audit Log delivery under way finishes first (each bounded by its own time limit).
const BACKGROUND_DRAIN: Duration = Duration::from_secs(10);

/// Longest the server waits, once it has stopped, for sign-outs the database could not take when they were made
/// (retried after 1 s, then twice as long each time; from the drain on, at once and every 250 ms): those left are
/// logged. Waited for with the other drains.
const SIGN_OUT_DRAIN: Duration = Duration::from_secs(10);

/// Longest the server waits, once it has stopped, for session refreshes still under way (a browser that gave up
/// does not stop its refresh) and their results still being written for the other replicas: a provider call is
/// bounded by its time limit (10 s by default). Waited for at the same time as [`AUDIT_DRAIN`].
const REFRESH_DRAIN: Duration = Duration::from_secs(15);

/// How often each replica removes what the bookkeeping tables no longer need (every replica may: the deletes are
/// idempotent and cheap).
const PRUNE_EVERY: Duration = Duration::from_secs(6 * 3600);

/// How often each replica removes the shared refresh results no replica can read any more: they hold sealed
/// sessions with live refresh tokens, kept no longer than their use.
const REFRESH_RESULTS_TIDY_EVERY: Duration = Duration::from_secs(60);

/// Keeps the bookkeeping tables bounded (`lifecycle::store::prune_bookkeeping`; with either provider, since
/// sign-outs are recorded with either): soon after start, then every [`PRUNE_EVERY`]; and the shared refresh
/// results every [`REFRESH_RESULTS_TIDY_EVERY`]; until the app stops.
async fn prune_bookkeeping(database: crate::db::Database, mut stopping: watch::Receiver<bool>) {
    let mut next_prune = tokio::time::Instant::now() + REFRESH_RESULTS_TIDY_EVERY;
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(REFRESH_RESULTS_TIDY_EVERY) => {}
        }
        match crate::session::shared_refresh::remove_old_results(database.pool()).await {
            Ok(removed) => tracing::debug!(removed, "removed old shared refresh results"),
            Err(error) => tracing::warn!(%error, "could not remove old shared refresh results; will try again"),
        }
        if tokio::time::Instant::now() < next_prune {
            continue;
        }
        next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        let pruned = match database.pool().acquire().await {
            Ok(mut conn) => crate::lifecycle::store::prune_bookkeeping(&mut conn).await,
            Err(error) => Err(error),
        };
        match pruned {
            Ok(removed) => tracing::debug!(removed, "pruned the bookkeeping tables"),
            Err(error) => tracing::warn!(%error, "could not prune the bookkeeping tables; will try again"),
        }
    }
}

/// How often the identity provider's signing keys are fetched again: a key the provider withdraws (a rotation, or
/// one it believes compromised) stops verifying, and the tokens it signed are forgotten, within this long. Once a
/// minute per replica is nothing to a provider's rate limit (the readiness probe, every few seconds, no longer
/// fetches them).
const KEY_REFRESH_EVERY: Duration = Duration::from_secs(60);

async fn refresh_signing_keys(state: AppState, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(KEY_REFRESH_EVERY) => {}
        }
        let provider = state.sessions.provider();
        if provider.is_ready()
            && let Err(error) = provider.warm_up().await
        {
            tracing::warn!(%error, "could not fetch the identity provider's signing keys; will try again");
        }
    }
}

/// Starts the bookkeeping pruner whenever there is a database, the Events API consumer when the lifecycle is on and
/// polling, and the Audit Log deliverer whenever it is on; or says once why the lifecycle is off.
fn start_lifecycle(state: &AppState, stopping: watch::Receiver<bool>) {
    let background = &state.background;
    if let Some(database) = &state.database {
        background.spawn(prune_bookkeeping(database.clone(), stopping.clone()));
    }
    if let Some(audit) = &state.audit {
        let options = crate::audit::DelivererOptions::default();
        // A claimed row must outlive its send, which WORKOS_REQUEST_TIMEOUT_MS bounds (up to 10 minutes).
        let send_timeout = state.config.workos().map(|workos| workos.request_timeout).unwrap_or_default();
        let deliverer =
            audit.deliverer(crate::audit::DelivererOptions { lease: options.lease_for(send_timeout), ..options });
        let mut stop = stopping.clone();
        background.spawn(deliverer.run(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }));
    }
    let poll = state.config.lifecycle.as_ref().and_then(|lifecycle| lifecycle.events_poll_interval);
    match (&state.lifecycle, poll) {
        (Some(lifecycle), Some(interval)) => {
            let revocations = Some(Arc::clone(state.sessions.revocations()));
            let request_timeout = state.config.workos().map(|workos| workos.request_timeout).unwrap_or_default();
            let options = ConsumerOptions::every(interval, request_timeout);
            let consumer = EventsConsumer::new(Arc::clone(lifecycle), revocations, options);
            background.spawn(consumer.run(stopping.clone()));
        }
        (Some(_), None) => tracing::info!("the WorkOS Events API consumer is off (WORKOS_EVENTS_POLL_SECONDS=0)"),
        (None, _) if matches!(state.config.provider, ProviderConfig::Oidc(_)) => match &state.database {
            Some(_) => tracing::info!(
                "the enterprise lifecycle is off: it follows WorkOS, and IDENTITY_PROVIDER=oidc; DATABASE_URL shares \
                 sign-outs and refreshes between replicas"
            ),
            None => tracing::info!(
                "the enterprise lifecycle is off: it follows WorkOS, and IDENTITY_PROVIDER=oidc; no DATABASE_URL, so \
                 replicas share no sign-outs or refreshes (see README, \"Several replicas\")"
            ),
        },
        (None, _) => tracing::info!(
            "the enterprise lifecycle is off: no DATABASE_URL, so no webhooks, Events API, organizations or \
             deprovisioning, and replicas share no sign-outs or refreshes (see README, \"Enterprise lifecycle\" and \
             \"Several replicas\")"
        ),
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
///
/// The handlers are installed when this is called, not when the future is first polled: a signal that arrives in
/// between (a service manager stopping a process that has just answered its health check) is then kept for the
/// future instead of killing the process the default way, which would skip the shutdown and leave the demo's
/// throwaway database behind. Call it from within the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let signal = stop_signal();
    async move {
        signal.await;
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// Completes on Ctrl-C or SIGTERM, without a word: [`shutdown_signal`]'s signal alone, for a second signal.
pub fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    let interrupt = listen_for(Stop::Interrupt);
    let terminate = listen_for(Stop::Terminate);
    async move {
        tokio::select! {
            () = interrupt => {},
            () = terminate => {},
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Interrupt,
    Terminate,
}

#[cfg(unix)]
fn listen_for(stop: Stop) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let kind = match stop {
        Stop::Interrupt => SignalKind::interrupt(),
        Stop::Terminate => SignalKind::terminate(),
    };
    let installed = signal(kind);
    async move {
        match installed {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, signal = ?stop, "cannot listen for this signal");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Elsewhere only Ctrl-C, which tokio can only listen for once polled.
#[cfg(not(unix))]
fn listen_for(stop: Stop) -> impl Future<Output = ()> + Send + 'static {
    async move {
        match stop {
            Stop::Interrupt => {
                if let Err(error) = tokio::signal::ctrl_c().await {
                    tracing::error!(%error, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
            Stop::Terminate => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator is told which variable to change, as for the metrics listener.
    #[test]
    fn a_busy_address_names_the_variable() {
        let source = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let error = StartupError::Bind { addr: SocketAddr::from(([127, 0, 0, 1], 3000)), source };
        assert!(error.to_string().starts_with("BIND_ADDR: cannot listen on 127.0.0.1:3000: "), "{error}");
    }
}
