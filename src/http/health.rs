//! Probes for orchestrators: `/healthz` says the process is alive, `/readyz` that it can do its job (InsForge
//! answers a real records call, and the identity provider's signing keys are held — fetched again by the probe,
//! whose failure alone does not make the app unready while the keys held still verify; an OpenID Connect provider
//! must have been discovered first).
//!
//! Readiness answers come from a short cache, and concurrent probes share one check, so however often a load
//! balancer asks, the upstreams see at most one probe per [`READINESS_TTL`]. Until an OpenID Connect provider is
//! discovered the answer is "not ready" at once, without a probe and without caching, so the first probe after
//! discovery sees the truth.

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

#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Report)>>,
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
            return Report::new(Check { ok: false }, kind, Check { ok: false });
        }
        // The provider check refreshes the verifier's own key cache: one JWKS path, and a probe that keeps it warm.
        let (insforge, keys) = tokio::join!(state.insforge.health(), provider.warm_up());
        let report = Report::new(Check::from("InsForge", insforge), kind, Check::from("identity provider JWKS", keys));
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

impl Report {
    fn new(insforge: Check, provider_kind: &str, provider: Check) -> Self {
        let status = if insforge.ok && provider.ok { "ready" } else { "unavailable" };
        let (workos, oidc) = if provider_kind == "oidc" { (None, Some(provider)) } else { (Some(provider), None) };
        Self { status, insforge, workos, oidc }
    }
}
