//! Probes for orchestrators: `/healthz` says the process is alive, `/readyz` that it can do its job (InsForge
//! answers a real records call, and the identity provider's signing keys are held — fetched by the probe only when
//! none are, so probes put no load on the provider; an OpenID Connect provider
//! must have been discovered first, and WorkOS must not have refused `WORKOS_API_KEY` at start-up; with
//! `DATABASE_URL`, the database has answered once since the start).
//!
//! Each check has [`CHECK_TIME_LIMIT`]: an upstream that hangs makes the probe answer "unavailable" in seconds, not
//! after the upstream's own time limit (10 s by default, past any orchestrator's probe timeout).
//!
//! The database is checked only until it first answers: its outage is every replica's at once, and taking them all
//! out of service would turn the requests that need no database into errors too. But a replica that has never
//! reached it (a wrong host, a network policy) is misconfigured, and a rollout should stop there.
//!
//! Readiness answers come from a short cache, and concurrent probes share one check, so however often a load
//! balancer asks, the upstreams see at most one probe per [`READINESS_TTL`]. Until an OpenID Connect provider is
//! discovered the answer is "not ready" at once, without a probe and without caching, so the first probe after
//! discovery sees the truth.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Mutex;

use super::AppState;

pub const READINESS_TTL: Duration = Duration::from_secs(5);
/// Longest each check of a probe may take.
pub const CHECK_TIME_LIMIT: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Report)>>,
    /// The database has answered since the start: it is not checked again.
    database_reached: AtomicBool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    status: &'static str,
    insforge: Check,
    /// The identity provider's check, named after it (`workos` or `oidc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    workos: Option<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<Check>,
    /// With `DATABASE_URL`: whether the database has answered since the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<Check>,
}

/// Only up or down: the probe is unauthenticated, so what went wrong goes to the log, not to whoever asks.
#[derive(Debug, Clone, Serialize)]
struct Check {
    ok: bool,
}

impl Check {
    fn from<E: std::fmt::Display>(upstream: &str, result: Result<(), E>) -> Self {
        if let Err(error) = &result {
            tracing::warn!(upstream, %error, "readiness check failed");
        }
        Self { ok: result.is_ok() }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness.report(&state).await;
    let status = if report.status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

impl Readiness {
    async fn report(&self, state: &AppState) -> Report {
        // Holding the lock during the check is the point: concurrent probes wait for this one instead of
        // starting their own.
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < READINESS_TTL
        {
            return report.clone();
        }
        let provider = state.sessions.provider();
        let kind = provider.kind();
        if !provider.is_ready() {
            tracing::debug!(provider = kind, "not ready: the identity provider has not been discovered yet");
            // The database is not asked yet, so not reported either.
            return Report::new(Check { ok: false }, kind, Check { ok: false }, None);
        }
        let insforge = async {
            match tokio::time::timeout(CHECK_TIME_LIMIT, state.insforge.health()).await {
                Ok(answer) => answer.map_err(|error| error.to_string()),
                Err(_) => Err(format!("no answer within {CHECK_TIME_LIMIT:?}")),
            }
        };
        // The provider check fetches the keys only when none are held (through the verifier's own key cache). It
        // also waits for the start-up check of WorkOS's API key: a replica whose key WorkOS refuses would
        // otherwise take traffic (and fail every sign-in) for the seconds before it stops.
        let provider_check = async {
            let (keys, checked) =
                tokio::join!(provider.probe_keys(CHECK_TIME_LIMIT), provider.checked_at_start(CHECK_TIME_LIMIT));
            keys.map_err(|error| error.to_string())?;
            checked.map_err(str::to_owned)
        };
        let (insforge, provider_check, database) = tokio::join!(insforge, provider_check, self.database(state));
        let report = Report::new(
            Check::from("InsForge", insforge),
            kind,
            Check::from("identity provider", provider_check),
            database,
        );
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// The database's check: `None` without `DATABASE_URL`; asked until it first answers, then taken as reached.
    async fn database(&self, state: &AppState) -> Option<Check> {
        let database = state.database.as_ref()?;
        if self.database_reached.load(Ordering::Relaxed) {
            return Some(Check { ok: true });
        }
        let answer = match tokio::time::timeout(CHECK_TIME_LIMIT, database.ping()).await {
            Ok(answer) => answer.map_err(|error| error.to_string()),
            Err(_) => Err(format!("no answer within {CHECK_TIME_LIMIT:?}")),
        };
        if answer.is_ok() {
            self.database_reached.store(true, Ordering::Relaxed);
        }
        Some(Check::from("DATABASE_URL (not reached since the start)", answer))
    }
}

impl Report {
    fn new(insforge: Check, provider_kind: &str, provider: Check, database: Option<Check>) -> Self {
        let all_ok = insforge.ok && provider.ok && database.as_ref().is_none_or(|check| check.ok);
        let status = if all_ok { "ready" } else { "unavailable" };
        let (workos, oidc) = if provider_kind == "oidc" { (None, Some(provider)) } else { (Some(provider), None) };
        Self { status, insforge, workos, oidc, database }
    }
}
