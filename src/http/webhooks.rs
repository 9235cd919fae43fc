//! `POST /webhooks/workos`: WorkOS pushing events.
//!
//! No cookies, no CSRF, no session: WorkOS is not a browser, and the signature is the only credential. The body is
//! read raw (up to [`MAX_WEBHOOK_BODY_BYTES`], this route's own limit) and verified before anything is parsed.
//! The answers are what WorkOS's retry logic needs (any non-2xx is retried for days):
//!
//! - 401 for a missing, malformed, stale or foreign signature: nothing is applied (and nothing is recorded);
//! - 200 for an event applied now, applied before (a retry, or the Events API got there first) or ignored;
//! - 503 when authbridge's database is unavailable, so WorkOS retries later, and nothing is half-applied;
//! - 400 for a signed body that is not an event, 422 for an event whose payload cannot be read, on every delivery
//!   of it (recorded as rejected, which is not final: once a deployed fix can read a retry, it is applied).

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::lifecycle::events::Outcome;
use crate::lifecycle::store::Source;
use crate::lifecycle::webhook::SIGNATURE_HEADER;
use crate::workos::objects::EventEnvelope;

use super::AppState;
use super::error::AppError;

/// WorkOS events are small (one object each); 1 MiB leaves room for large directory attributes.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/workos", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    // Without a secret there is no way to trust a delivery: the route does not exist.
    let (Some(secrets), Some(lifecycle)) = (&state.webhook_secrets, &state.lifecycle) else {
        return Err(AppError::NotFound);
    };
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge { limit: MAX_WEBHOOK_BODY_BYTES },
        _ => AppError::BadRequest("The request body could not be read.".to_owned()),
    })?;
    let signature = headers.get(SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    if let Err(error) = secrets.verify(signature, &body, SystemTime::now()) {
        tracing::warn!(%error, "refused a webhook delivery");
        return Err(AppError::InvalidSignature);
    }
    let envelope: EventEnvelope = serde_json::from_slice(&body)
        .map_err(|error| AppError::MalformedJson(format!("not a WorkOS event envelope: {error}")))?;

    let applied = lifecycle.apply(&envelope, Source::Webhook).await?;
    state.sessions.revocations().note(&applied.effects);
    if !applied.effects.is_empty() {
        // After answering: WorkOS wants a quick 200, and a missing organization name is only cosmetic for a moment.
        let lifecycle = std::sync::Arc::clone(lifecycle);
        let effects = applied.effects.clone();
        tokio::spawn(async move {
            if let Err(error) = lifecycle.fetch_missing_organizations(&effects).await {
                tracing::warn!(%error, "could not fetch an organization named by a membership; its name shows later");
            }
        });
    }
    tracing::info!(event_id = %envelope.id, event_type = %envelope.event_type, outcome = applied.outcome.as_str(), "webhook received");
    match applied.outcome {
        Outcome::Rejected(why) => {
            tracing::error!(event_id = %envelope.id, event_type = %envelope.event_type, %why, "a WorkOS event could not be read");
            Err(AppError::Unprocessable(format!("The {} event's data could not be read.", envelope.event_type)))
        }
        outcome => Ok((StatusCode::OK, axum::Json(json!({ "outcome": outcome.as_str() }))).into_response()),
    }
}
