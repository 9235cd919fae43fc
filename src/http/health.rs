//! Probes for orchestrators: `/healthz` says the process is alive, `/readyz` that it can do its job (InsForge
//! answers a real records call, and the identity provider's signing keys are held — fetched by the probe only when
//! none are, so probes put no load on the provider; an OpenID Connect provider
//! must have been discovered first, and WorkOS must not have refused `WORKOS_API_KEY` at start-up; with
//! `DATABASE_URL`, the database has answered once since the start).
//!
//! Each check has [`CHECK_TIME_LIMIT`]: an upstream that hangs makes the probe answer "unavailable" in seconds, not
//! after the upstream's own time limit (10 s by default, past any orchestrator's probe timeout).
//!
//! The database counts for readiness only until it first answers: its outage is every replica's at once, and taking
//! them all out of service would turn the requests that need no database into errors too. But a replica that has
//! never reached it (a wrong host, a network policy) is misconfigured, and a rollout should stop there. Its
//! `"database"` in the answer is asked on every (uncached) probe all the same, so that an on-call reading `/readyz`
//! during an outage sees it.
//!
//! Readiness answers come from a short cache, and concurrent probes share one check, so however often a load
//! balancer asks, the upstreams see at most one probe per [`READINESS_TTL`]. Until an OpenID Connect provider is
//! discovered the answer is "not ready", with InsForge and the database checked all the same (an on-call reading it
//! must not be sent to a healthy InsForge), and the first probe after discovery makes a new report.

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
/// Longest the database's check may take once it no longer counts for readiness (reported, not decisive).
const INFORMATIONAL_CHECK_LIMIT: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<LastReport>>,
    /// The database has answered since the start: its outages no longer count for readiness.
    database_reached: AtomicBool,
}

impl Readiness {
    /// The database answered, outside the probe (the start-up's check of its migrations): from now on its outages,
    /// which every replica shares, take none out of service.
    pub fn database_reached(&self) {
        self.database_reached.store(true, Ordering::Relaxed);
    }
}

/// The last report, when it was made, and whether the identity provider had been discovered then.
struct LastReport {
    at: Instant,
    discovered: bool,
    report: Report,
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
    /// With `DATABASE_URL`: whether the database answers (it counts for readiness only until it first has).
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
        let provider = state.sessions.provider();
        let discovered = provider.is_ready();
        // A report made before discovery is not kept past it: the first probe after discovery sees the truth.
        if let Some(last) = last.as_ref()
            && last.at.elapsed() < READINESS_TTL
            && last.discovered == discovered
        {
            return last.report.clone();
        }
        let kind = provider.kind();
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
            if !discovered {
                // The discovery's own retries say why, at warning level: not once more per probe.
                tracing::debug!(provider = kind, "not ready: the identity provider has not been discovered yet");
                return Check { ok: false };
            }
            let (keys, checked) =
                tokio::join!(provider.probe_keys(CHECK_TIME_LIMIT), provider.checked_at_start(CHECK_TIME_LIMIT));
            let checked = keys.map_err(|error| error.to_string()).and_then(|()| checked.map_err(str::to_owned));
            Check::from("identity provider", checked)
        };
        let (insforge, provider_check, database) = tokio::join!(insforge, provider_check, self.database(state));
        let report = Report::new(Check::from("InsForge", insforge), kind, provider_check, database);
        *last = Some(LastReport { at: Instant::now(), discovered, report: report.clone() });
        report
    }

    /// The database's check: `None` without `DATABASE_URL`; else whether it answers now, and whether that counts for
    /// readiness (only until it has first answered: see the module's documentation).
    async fn database(&self, state: &AppState) -> Option<(Check, bool)> {
        let database = state.database.as_ref()?;
        let counts = !self.database_reached.load(Ordering::Relaxed);
        // Once it no longer counts, the answer is for the reader only: it must not hold the probe up (an
        // orchestrator's probe timeout can be a second), whatever the database's outage.
        let limit = if counts { CHECK_TIME_LIMIT } else { INFORMATIONAL_CHECK_LIMIT };
        let answer = match tokio::time::timeout(limit, database.ping()).await {
            Ok(answer) => answer.map_err(|error| error.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        if answer.is_ok() {
            self.database_reached();
        }
        let upstream = if counts { "DATABASE_URL (not reached since the start)" } else { "DATABASE_URL" };
        Some((Check::from(upstream, answer), counts))
    }
}

impl Report {
    /// `database`: its check, and whether it counts for readiness.
    fn new(insforge: Check, provider_kind: &str, provider: Check, database: Option<(Check, bool)>) -> Self {
        let database_ok = database.as_ref().is_none_or(|(check, counts)| check.ok || !counts);
        let status = if insforge.ok && provider.ok && database_ok { "ready" } else { "unavailable" };
        let (workos, oidc) = if provider_kind == "oidc" { (None, Some(provider)) } else { (Some(provider), None) };
        Self { status, insforge, workos, oidc, database: database.map(|(check, _)| check) }
    }
}
