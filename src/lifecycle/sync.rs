//! Reading a user's memberships from WorkOS at sign-in and on every refresh, so the app is right even where no
//! webhook or consumer is configured (the demo without a tunnel, a webhook that failed for days).
//!
//! The memberships are applied the same versioned way events are (`store::upsert_membership`, at the version of
//! the object read), so a newer event already recorded is never overwritten by an older REST read, and a tombstone
//! is never touched. Every status is asked for: WorkOS lists only active memberships by default, which would hide
//! a deactivation.
//!
//! Deletions normally arrive as events. One that never arrives (webhooks given up after days of failures, a consumer
//! down for longer than the Events API keeps events) would leave a removed member in the organization for good, so
//! a complete listing also ends what it no longer contains: a membership the database holds for the user that none
//! of the pages listed has been deleted at WorkOS. Only rows last changed [`SWEEP_MARGIN`] before the listing
//! started are ended, so a membership created while the list was being read (and recorded from its event
//! meanwhile) is never mistaken for a deleted one, even with the clocks a little apart. An incomplete listing (a
//! failure, too many pages) ends nothing.
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
/// How long before a complete listing started a membership must have last changed for its absence to end it.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(60);

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
            Ok(Err(error @ LifecycleError::Database(_))) => {
                tracing::warn!(user_id = %user.id, %error, "could not record the user's memberships in the database");
            }
            Ok(Err(error)) => {
                tracing::warn!(user_id = %user.id, %error, "could not read the user's memberships from WorkOS");
            }
            Err(_) => tracing::warn!(user_id = %user.id, "reading the user's memberships from WorkOS timed out"),
        }
    }

    /// Records `email` as an address of `user_id` (and the user, when unknown), what the sign-in's sync does first.
    /// For a bearer token's user, who may never sign in here: a directory's denial finds a person only by the
    /// addresses recorded for them, so without this a directory that deactivated them would deny nothing. Never
    /// fails the request: a failure is logged.
    pub async fn note_email(&self, user_id: &str, email: &str) {
        let noted = async {
            let mut conn = self.lifecycle.database().pool().acquire().await?;
            store::note_signed_in_user(&mut conn, user_id, Some(email)).await
        };
        match tokio::time::timeout(SYNC_TIME_LIMIT, noted).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%user_id, %error, "could not record a bearer token's user's email"),
            Err(_) => tracing::warn!(%user_id, "recording a bearer token's user's email timed out"),
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
        let started = time::OffsetDateTime::now_utc();
        let mut after: Option<String> = None;
        let mut listed: Vec<String> = Vec::new();
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
                    listed.push(membership.id.clone());
                }
            }
            self.fetch_missing_organizations(&missing).await?;
            match page.list_metadata.after {
                Some(next) if !page.data.is_empty() => after = Some(next),
                _ => {
                    let mut conn = self.database().pool().acquire().await?;
                    let listing = store::Listing::MembershipsOf(&user.id);
                    let ended = self.end_left_out(&mut conn, listing, &listed, started - SWEEP_MARGIN).await?;
                    if ended > 0 {
                        tracing::warn!(
                            user_id = %user.id,
                            ended,
                            "memberships deleted at WorkOS without a deletion event reaching us were ended"
                        );
                    }
                    return Ok(listed.len());
                }
            }
        }
        tracing::warn!(user_id = %user.id, "WorkOS listed more membership pages than expected; stopped reading");
        Ok(listed.len())
    }
}
