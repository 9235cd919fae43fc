//! Reading a user's memberships from WorkOS at sign-in and on every refresh, so the app is right even where no
//! webhook or consumer is configured (the demo without a tunnel, a webhook that failed for days).
//!
//! The memberships are applied the same versioned way events are (`store::upsert_membership`, at the version of
//! the object read), so a newer event already recorded is never overwritten by an older REST read, and a tombstone
//! is never touched. Every status is asked for: WorkOS lists only active memberships by default, which would hide
//! a deactivation. Absence from the list is not taken as deletion (a membership created while the list was being
//! read would be wrongly tombstoned for ever); deletions arrive as events.
//!
//! This must never fail a sign-in or a refresh: [`MembershipSync::after_sign_in`] runs within a time limit and logs
//! what went wrong.

use std::sync::Arc;
use std::time::Duration;

use super::events::Effect;
use super::store::{self, Version};
use super::{Lifecycle, LifecycleError};
use crate::identity::UserProfile;
use crate::workos::management::MembershipsOf;

/// Longest a sign-in or refresh waits for the memberships: the user is waiting.
pub const SYNC_TIME_LIMIT: Duration = Duration::from_secs(3);
/// More pages than any person's memberships fill: a bound in case a server never stops paging.
const MAX_PAGES: usize = 10;

/// The sync as the session layer holds it.
#[derive(Clone)]
pub struct MembershipSync {
    lifecycle: Arc<Lifecycle>,
}

impl MembershipSync {
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        Self { lifecycle }
    }

    /// Reads and records `user`'s memberships. Never fails: a failure or a timeout is logged, and the sign-in or
    /// refresh goes on with what the database already has.
    pub async fn after_sign_in(&self, user: &UserProfile) {
        match tokio::time::timeout(SYNC_TIME_LIMIT, self.lifecycle.sync_memberships(user)).await {
            Ok(Ok(count)) => tracing::debug!(user_id = %user.id, memberships = count, "memberships read from WorkOS"),
            Ok(Err(error)) => {
                tracing::warn!(user_id = %user.id, %error, "could not read the user's memberships from WorkOS");
            }
            Err(_) => tracing::warn!(user_id = %user.id, "reading the user's memberships from WorkOS timed out"),
        }
    }
}

impl Lifecycle {
    /// Records the user (when unknown) and every membership WorkOS lists for them; fetches organizations the
    /// database does not know yet, for their names. Returns how many memberships were read.
    pub async fn sync_memberships(&self, user: &UserProfile) -> Result<usize, LifecycleError> {
        {
            let mut conn = self.database().pool().acquire().await?;
            store::note_signed_in_user(&mut conn, &user.id, user.email.as_deref()).await?;
        }
        let mut after: Option<String> = None;
        let mut count = 0;
        for _ in 0..MAX_PAGES {
            let page = self.workos().list_memberships(MembershipsOf::User(&user.id), after.as_deref()).await?;
            let mut missing = Vec::new();
            {
                let mut conn = self.database().pool().acquire().await?;
                for membership in &page.data {
                    // WorkOS answered for this user only; anything else would be its bug, and not ours to record.
                    if membership.user_id != user.id {
                        continue;
                    }
                    store::upsert_membership(&mut conn, membership, &Version::of_object(membership.updated_at)).await?;
                    if !store::organization_is_known(&mut conn, &membership.organization_id).await? {
                        missing
                            .push(Effect::OrganizationMissing { organization_id: membership.organization_id.clone() });
                    }
                    count += 1;
                }
            }
            self.fetch_missing_organizations(&missing).await?;
            match page.list_metadata.after {
                Some(next) if !page.data.is_empty() => after = Some(next),
                _ => return Ok(count),
            }
        }
        tracing::warn!(user_id = %user.id, "WorkOS listed more membership pages than expected; stopped reading");
        Ok(count)
    }
}
