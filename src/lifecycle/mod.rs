//! The enterprise lifecycle: what WorkOS says about people and organizations, kept in authbridge's private schema so
//! that access ends when WorkOS says so, not when a token or a cookie happens to expire.
//!
//! WorkOS tells the app in two ways, and both end in the same [`events::apply`]: signed webhooks, pushed to
//! `POST /webhooks/workos` (`webhook` verifies them, `http::webhooks` receives them), and the Events API, pulled
//! with a cursor by one replica at a time (`consumer`). Sign-in and every refresh read the user's memberships from
//! the REST API too (`sync`), so the app is right even where no webhook is configured. All SQL is in `store`.
//!
//! Applying is idempotent (a ledger of event ids), order-independent (versioned writes, permanent tombstones) and
//! atomic (one transaction per event). What it changes is enforced twice: by the app (`session::revocations`
//! refuses a revoked session or a deleted user on the next request; `GET /api/organizations` lists active
//! memberships only) and by PostgreSQL itself (the `todos` policies refuse a deleted user's queries, whatever the
//! app does).
//!
//! Without `DATABASE_URL`, or with an OpenID Connect provider, none of this runs (the database then serves only the
//! sign-outs and refreshes the replicas share: `http::state`).

pub mod consumer;
pub mod events;
#[cfg(test)]
mod properties;
pub mod store;
pub mod sync;
pub mod webhook;

use crate::db::{Database, DbError};
use crate::workos::{WorkosClient, WorkosError};
use events::{Applied, Effect};
use store::{ActiveMembership, Deleted, Source, Version};

use crate::workos::objects::EventEnvelope;

/// The most objects left out of one listing that are checked one by one and ended ([`Lifecycle::gone_at_workos`]).
pub const MAX_CONFIRMED_GONE: usize = 50;

/// The lifecycle's database and WorkOS client. Shared (in an `Arc`) by the HTTP handlers, the consumer and
/// sign-in.
pub struct Lifecycle {
    db: Database,
    workos: WorkosClient,
}

/// One error type for the lifecycle layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("WorkOS: {0}")]
    Workos(#[from] WorkosError),
}

impl From<sqlx::Error> for LifecycleError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl LifecycleError {
    /// The database or WorkOS is unreachable: worth retrying, not a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(DbError::Unavailable(_)) => true,
            Self::Database(DbError::Failed(_)) => false,
            Self::Workos(error) => matches!(
                error,
                WorkosError::Timeout
                    | WorkosError::Connect(_)
                    | WorkosError::RateLimited { .. }
                    | WorkosError::Unavailable { .. }
                    | WorkosError::Broken(_)
            ),
        }
    }
}

impl Lifecycle {
    pub fn new(db: Database, workos: WorkosClient) -> Self {
        Self { db, workos }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn workos(&self) -> &WorkosClient {
        &self.workos
    }

    /// Ends for good what a complete `listing` from WorkOS (`listed`) left out and that last changed before
    /// `changed_before`, once WorkOS confirms each is gone ([`Self::gone_at_workos`]): deleted there, its deletion
    /// event lost. Returns how many were ended.
    pub async fn end_left_out(
        &self,
        conn: &mut sqlx::PgConnection,
        listing: store::Listing<'_>,
        listed: &[String],
        changed_before: time::OffsetDateTime,
    ) -> Result<u64, LifecycleError> {
        let candidates = store::not_listed(&mut *conn, listing, listed, changed_before).await?;
        let gone = self.gone_at_workos(&mut *conn, listing, candidates).await?;
        Ok(store::end_for_good(conn, listing, &gone, changed_before).await?)
    }

    /// Which of `candidates` (objects of `listing` a complete listing from WorkOS left out: `store::not_listed`)
    /// WorkOS confirms are gone, one `GET` each (404), before they are ended for good: a listing may leave out what
    /// still exists (one that lags, or whose cursor skipped an object while the list changed), and a tombstone is
    /// never undone. One found after all is written as WorkOS has it. More than [`MAX_CONFIRMED_GONE`] at once is not
    /// a lost event or two but a listing gone wrong: nothing is ended, and the operator is told.
    async fn gone_at_workos(
        &self,
        conn: &mut sqlx::PgConnection,
        listing: store::Listing<'_>,
        candidates: Vec<String>,
    ) -> Result<Vec<String>, LifecycleError> {
        if candidates.len() > MAX_CONFIRMED_GONE {
            tracing::warn!(
                left_out = candidates.len(),
                ?listing,
                "WorkOS's listing left out more known objects than deletions could explain; ending none of them"
            );
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for id in candidates {
            let found = match listing {
                store::Listing::Organizations => match self.workos.get_organization(&id).await? {
                    Some(organization) => {
                        store::upsert_organization(conn, &organization, &Version::of_object(organization.updated_at))
                            .await?;
                        true
                    }
                    None => false,
                },
                store::Listing::Memberships | store::Listing::MembershipsOf(_) => {
                    match self.workos.get_membership(&id).await? {
                        Some(membership) => {
                            let version = Version::of_object(membership.updated_at);
                            store::upsert_membership(conn, &membership, &version).await?;
                            true
                        }
                        None => false,
                    }
                }
            };
            if found {
                tracing::warn!(%id, ?listing, "WorkOS's listing left out an object that still exists; it is kept");
            } else {
                gone.push(id);
            }
        }
        Ok(gone)
    }

    /// Applies one event (from a webhook; the consumer applies on its own locked connection).
    pub async fn apply(&self, envelope: &EventEnvelope, source: Source) -> Result<Applied, LifecycleError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(events::apply(&mut conn, envelope, source, false).await?)
    }

    /// Fetches, for their names, the organizations that `effects` found missing. A failure is the caller's to log:
    /// the membership itself is already recorded.
    pub async fn fetch_missing_organizations(&self, effects: &[Effect]) -> Result<(), LifecycleError> {
        for effect in effects {
            if let Effect::OrganizationMissing { organization_id } = effect {
                self.fetch_organization(organization_id).await?;
            }
        }
        Ok(())
    }

    /// `GET /organizations/{id}`, recorded at the version WorkOS gives it (an event about it wins a tie).
    async fn fetch_organization(&self, id: &str) -> Result<(), LifecycleError> {
        let Some(organization) = self.workos.get_organization(id).await? else {
            tracing::info!(organization_id = %id, "WorkOS does not know an organization a membership names");
            return Ok(());
        };
        let mut conn = self.db.pool().acquire().await?;
        store::upsert_organization(&mut conn, &organization, &Version::of_object(organization.updated_at)).await?;
        Ok(())
    }

    /// The user's active memberships, as `GET /api/organizations` shows them.
    pub async fn active_memberships(&self, user_id: &str) -> Result<Vec<ActiveMembership>, LifecycleError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::active_memberships(&mut conn, user_id).await?)
    }

    /// The users and organizations recorded as deleted at WorkOS.
    pub async fn deleted(&self) -> Result<Deleted, LifecycleError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::deleted(&mut conn).await?)
    }

    /// The emails known for these users (authors of shared todos), by id.
    pub async fn user_emails(&self, ids: &[String]) -> Result<Vec<(String, String)>, LifecycleError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::user_emails(&mut conn, ids).await?)
    }
}
