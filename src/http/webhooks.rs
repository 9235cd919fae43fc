//! `POST /webhooks/workos`: WorkOS pushing events.
//!
//! No cookies, no CSRF, no session: WorkOS is not a browser, and the signature is the only credential. The route is
//! reachable by anyone, so everything that can be refused without the body is refused before a byte of it is read:
//! a deployment without a webhook secret answers 404, and a `WorkOS-Signature` header that is missing, malformed
//! or stale answers 401, at once. Only a fresh, well-formed header gets to send a body, and then only
//! [`MAX_CONCURRENT_WEBHOOKS`] deliveries at once (more are answered 503 `overloaded` with `Retry-After`, like the
//! server's own load shedding: WorkOS retries failed deliveries with backoff, docs `/events/data-syncing/webhooks`),
//! each with [`BODY_DEADLINE`](super::BODY_DEADLINE) to send its body (408 `body_timeout` after that) of at most
//! [`MAX_WEBHOOK_BODY_BYTES`]. Without these, someone with no secret at all could hold every request slot of the
//! server, and a megabyte of memory with each, by trickling bodies behind a plausible header.
//!
//! The body is then verified as it arrived, before anything is parsed. The answers are what WorkOS's retry logic
//! needs (any non-2xx is retried for days):
//!
//! - 401 for a missing, malformed, stale or foreign signature: nothing is applied (and nothing is recorded);
//! - 200 for an event applied now, applied before (a retry, or the Events API got there first) or ignored;
//! - 503 when authbridge's database is unavailable, or too many deliveries arrive at once, so WorkOS retries later,
//!   and nothing is half-applied;
//! - 400 for a signed body that is not an event, 422 for an event whose payload cannot be read, on every delivery
//!   of it (recorded as rejected, which is not final: once a deployed fix can read a retry, it is applied).

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::lifecycle::events::Outcome;
use crate::lifecycle::store::Source;
use crate::lifecycle::webhook::{SIGNATURE_HEADER, Signature};
use crate::workos::objects::EventEnvelope;

use super::AppState;
use super::error::AppError;
use super::extractors::read_body;

/// WorkOS documents no maximum event size. Events carry one object each (a few KiB), but a directory user's
/// `raw_attributes` and `custom_attributes` are whatever the customer's directory holds, so 1 MiB leaves room for
/// large ones; with [`MAX_CONCURRENT_WEBHOOKS`], bodies in flight take at most 32 MiB.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;

/// Deliveries received at once. As many as the throughput benchmark's concurrent senders (`benches/webhooks.rs`),
/// so a burst from WorkOS goes at full speed (the database pool, 5 connections, is the narrower part anyway),
/// while a flood of unsigned bodies can hold no more than these of the server's request slots.
pub const MAX_CONCURRENT_WEBHOOKS: usize = 32;

/// The route's path: the only one under `/webhooks/` (any other is an unknown page).
pub const PATH: &str = "/webhooks/workos";

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(receive))
}

/// Takes the request whole, so that nothing reads the body before the checks that need only the headers.
async fn receive(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    // Without a secret there is no way to trust a delivery: the route does not exist.
    let (Some(secrets), Some(lifecycle)) = (&state.webhook_secrets, &state.lifecycle) else {
        return Err(AppError::NotFound);
    };
    let header = request.headers().get(SIGNATURE_HEADER).cloned();
    let signature = Signature::check(header.as_ref().and_then(|value| value.to_str().ok()), SystemTime::now())
        .map_err(AppError::InvalidSignature)?;
    // Held until the answer is ready; a delivery over the limit has sent nothing yet but its headers.
    let _slot = state.webhook_slots.try_acquire().map_err(|_| AppError::WebhooksBusy)?;
    let body = read_body(request, &state, MAX_WEBHOOK_BODY_BYTES).await?;
    secrets.verify_body(&signature, &body).map_err(AppError::InvalidSignature)?;
    let envelope: EventEnvelope = crate::workos::objects::from_json(&body).map_err(|error| {
        AppError::MalformedJson(format!("The request body is not a WorkOS event envelope: {error}"))
    })?;

    let applied = lifecycle.apply(&envelope, Source::Webhook).await?;
    state.sessions.revocations().note(&applied.effects);
    if !applied.effects.is_empty() {
        // After answering: WorkOS wants a quick 200, and a missing organization name is only cosmetic for a moment.
        let lifecycle = std::sync::Arc::clone(lifecycle);
        let effects = applied.effects.clone();
        state.background.spawn(async move {
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
