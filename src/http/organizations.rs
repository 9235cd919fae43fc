//! `GET /api/organizations`: the organizations the user is an active member of, as authbridge's database has them
//! (cookie or bearer).
//!
//! A bare JSON array, `[{"id": "org_…", "name": "Acme Corp", "role": "admin"}]`, `[]` when there are none. A
//! membership removed, deactivated or deprovisioned by the directory is gone from it on the next request: the
//! query runs every time (`lifecycle::store::active_memberships`). Without `DATABASE_URL` there is nothing to ask,
//! and the route answers 404.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::lifecycle::store::ActiveMembership;

use super::AppState;
use super::error::AppError;
use super::extractors::CurrentUser;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/organizations", get(list))
}

async fn list(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Vec<ActiveMembership>>, AppError> {
    let lifecycle = state.lifecycle.as_ref().ok_or(AppError::NotFound)?;
    Ok(Json(lifecycle.active_memberships(user.id()).await?))
}
