//! Sessions and users whose access has ended before their tokens have.
//!
//! Access tokens stay cryptographically valid until they expire (minutes), and a cookie or a bearer token can be
//! copied: so every signed-in request, cookie or bearer, asks here first whether its session or its user is still
//! allowed. Two sources feed the answer:
//!
//! - **this replica's own list**: sessions signed out here, and what this replica's webhook handler or Events API
//!   consumer has just applied (a `session.revoked`, a `user.deleted`). Refused at once.
//! - **the database** (with `DATABASE_URL`, with either provider), shared by every replica:
//!   `authbridge.revoked_sessions` (sign-outs anywhere; with WorkOS also `session.revoked` from either channel) and,
//!   with WorkOS only, deleted users ([`DeletedUsers`]). A "still allowed" answer is cached for at most
//!   [`SHARED_CACHE_TTL`], so another replica's sign-out or a webhook applied elsewhere is honoured within
//!   seconds. When the database cannot be asked and no fresh answer is cached, the request is answered 503 rather
//!   than let through: that database is InsForge's own, so nothing else would work either.
//!
//! Local entries are kept for [`KEEP`], longer than any access token lives (the database keeps ended sessions for as
//! long as a browser may keep a cookie: `lifecycle::store::prune_bookkeeping`), and
//! the lists are bounded: when the list of ended ids is full, the ids past `KEEP` go, then the oldest; the cache of
//! "still allowed" answers, which only saves a query, forgets whichever its cache chooses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::db::{Database, DbError};
use crate::lifecycle::events::Effect;
use crate::lifecycle::store::{self, AccessState, RevokedBy, Version};
use crate::sync::lock;

/// How long a revoked session id or deleted user id is remembered locally: past the expiry of any token issued
/// before.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// The most ids (or cached answers) remembered at once.
const CAPACITY: usize = 100_000;
/// How long "still allowed" from the database is trusted: the "few seconds" within which every replica honours a
/// revocation it did not see itself.
pub const SHARED_CACHE_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ended {
    Session(String),
    User(String),
}

/// The database could not be asked: try again after `retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct CheckUnavailable {
    pub retry_after: Duration,
}

#[derive(Default)]
pub struct Revocations {
    local: Mutex<HashMap<Ended, Instant>>,
    shared: Option<SharedCheck>,
    /// Sign-outs the database could not take when they were made, still being tried ([`SIGN_OUT_RETRY`]): the
    /// shutdown waits a little for them and says how many it leaves.
    sign_outs: tokio_util::task::TaskTracker,
    /// Cancelled when the shutdown starts waiting for [`Revocations::sign_outs`]: they then try again at once, and
    /// soon after each failure, rather than after their backoff (up to a minute).
    draining: CancellationToken,
}

/// Whether the database records deleted users, besides ended sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedUsers {
    /// The WorkOS lifecycle records them (`user.deleted`, from either channel): every session of theirs ends.
    Recorded,
    /// Nothing does (an OpenID Connect provider sends the app no events): only a session's own id is asked about,
    /// so a request without one (an OpenID Connect bearer token) never waits for the database.
    NotRecorded,
}

struct SharedCheck {
    db: Database,
    deleted_users: DeletedUsers,
    /// (user id, session id) → when the database last said "still allowed".
    allowed: quick_cache::sync::Cache<(String, Option<String>), Instant>,
}

/// Whether an answer given at `at` is still to be trusted at `now`.
fn allowed_recently(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < SHARED_CACHE_TTL
}

impl Revocations {
    /// Checks the database too, so every replica sees what any of them (or WorkOS) ended.
    pub fn shared(db: Database, deleted_users: DeletedUsers) -> Self {
        let allowed = quick_cache::sync::Cache::new(CAPACITY);
        Self {
            local: Mutex::default(),
            shared: Some(SharedCheck { db, deleted_users, allowed }),
            sign_outs: tokio_util::task::TaskTracker::new(),
            draining: CancellationToken::new(),
        }
    }

    /// Waits, at most `within`, for the sign-outs still being written to the database; `false` when some are left
    /// (their number is logged): copies of those cookies then still work on the other replicas, until their
    /// sessions' tokens expire.
    pub async fn drain_sign_outs(&self, within: Duration) -> bool {
        self.sign_outs.close();
        self.draining.cancel();
        if tokio::time::timeout(within, self.sign_outs.wait()).await.is_ok() {
            return true;
        }
        tracing::error!(
            sign_outs = self.sign_outs.len(),
            "stopped with sign-outs not yet recorded in the database: copies of those session cookies still work on \
             the other replicas until their tokens expire"
        );
        false
    }

    /// Refuses this session from now on, on this replica (sign-out writes the database separately).
    pub fn revoke(&self, session_id: &str) {
        self.remember(Ended::Session(session_id.to_owned()));
    }

    /// Hears what applying an event ended, so this replica refuses it without waiting for its cache.
    pub fn note(&self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::SessionRevoked { session_id } => self.remember(Ended::Session(session_id.clone())),
                Effect::UserDeleted { user_id } => self.remember(Ended::User(user_id.clone())),
                Effect::OrganizationMissing { .. } => {}
            }
        }
    }

    fn remember(&self, ended: Ended) {
        self.remember_at(ended, Instant::now());
    }

    /// Once the list is full, it first drops the ids past [`KEEP`] (no longer refused anyway), so that a
    /// long-running process pays for that scan once rather than on every id; if it is still full, it forgets its
    /// oldest id.
    fn remember_at(&self, ended: Ended, now: Instant) {
        let mut local = lock(&self.local);
        if local.len() >= CAPACITY {
            local.retain(|_, at| now.saturating_duration_since(*at) < KEEP);
        }
        if local.len() >= CAPACITY
            && let Some(oldest) = local.iter().min_by_key(|(_, at)| **at).map(|(id, _)| id.clone())
        {
            local.remove(&oldest);
        }
        // Ended again (a `session.revoked` after our own sign-out): it has been ended since the first time, which is
        // what `ended_here_before` asks, unless that is past `KEEP` and so no longer counts.
        let since = local.get(&ended).copied().filter(|at| now.saturating_duration_since(*at) < KEEP).unwrap_or(now);
        local.insert(ended, since);
    }

    /// Whether this replica's own list had this user or session as ended by `noted_by`, an end still within
    /// [`KEEP`] at `now`.
    fn ended_locally(&self, user_id: &str, session_id: Option<&str>, noted_by: Instant, now: Instant) -> bool {
        let local = lock(&self.local);
        let known = |ended: Ended| {
            local.get(&ended).is_some_and(|at| *at <= noted_by && now.saturating_duration_since(*at) < KEEP)
        };
        known(Ended::User(user_id.to_owned())) || session_id.is_some_and(|id| known(Ended::Session(id.to_owned())))
    }

    /// Whether this replica already knew at `moment` that this user's access, or this session, had ended: its own
    /// list only, never the database, so it costs a lookup in memory. "No" means "not known here", not "still
    /// allowed". An end noted after `moment` (the sign-out a request itself made) does not count.
    pub fn ended_here_before(&self, user_id: &str, session_id: Option<&str>, moment: Instant) -> bool {
        self.ended_locally(user_id, session_id, moment, Instant::now())
    }

    /// Whether this user's access, or this session, has ended.
    pub async fn has_ended(&self, user_id: &str, session_id: Option<&str>) -> Result<bool, CheckUnavailable> {
        let now = Instant::now();
        if self.ended_locally(user_id, session_id, now, now) {
            return Ok(true);
        }
        let Some(shared) = &self.shared else { return Ok(false) };
        let key = (user_id.to_owned(), session_id.map(str::to_owned));
        if shared.allowed.get(&key).is_some_and(|at| allowed_recently(at, now)) {
            return Ok(false);
        }
        // Boxed: the query's future is kilobytes, and every request's future would otherwise carry (and move) it
        // even when the answer comes from memory above.
        let state = Box::pin(shared.access_state(user_id, session_id)).await.map_err(|error| {
            warn_of_unchecked_access(format!("{error} (pool: {})", shared.db.pool_state()));
            CheckUnavailable { retry_after: crate::db::RETRY_AFTER }
        })?;
        if state.user_deleted {
            self.remember(Ended::User(user_id.to_owned()));
        }
        if let (true, Some(session_id)) = (state.session_revoked, session_id) {
            self.remember(Ended::Session(session_id.to_owned()));
        }
        if state.ended() {
            return Ok(true);
        }
        // Dated from before the query: a revocation committed while it ran must not be trusted away for longer than
        // SHARED_CACHE_TTL.
        shared.allowed.insert(key, now);
        Ok(false)
    }

    /// Records a sign-out: this replica refuses the session at once, and the database (every replica, and this one
    /// after a restart) is written now or, when it cannot be reached, again in the background until it is
    /// ([`SIGN_OUT_RETRY`]). Meanwhile the other replicas cannot let a copy of the cookie in either: without the
    /// database they answer 503 once their cached answer is older than [`SHARED_CACHE_TTL`]. What is lost is a
    /// sign-out still waiting when this process stops; the user keeps the result either way (their cookie is
    /// cleared and the provider asked to revoke the session), so a database outage never keeps anyone signed in.
    pub async fn record_sign_out(&self, session_id: &str, user_id: &str) {
        self.revoke(session_id);
        let Some(shared) = &self.shared else { return };
        let now = time::OffsetDateTime::now_utc();
        let write = SignOutWrite { session_id: session_id.to_owned(), user_id: user_id.to_owned(), at: now };
        match write.try_once(&shared.db).await {
            Ok(()) => {}
            Err(DbError::Unavailable(error)) => {
                tracing::error!(%error, %user_id, "could not record the sign-out in the database; retrying until it can");
                self.sign_outs.spawn(write.retry(shared.db.clone(), self.draining.clone()));
            }
            Err(error) => tracing::error!(%error, %user_id, "could not record the sign-out in the database"),
        }
    }
}

/// How a sign-out the database could not record is tried again: after 1 s, then twice as long each time up to a
/// minute, for as long as a session could outlive it (a day: [`KEEP`]).
const SIGN_OUT_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The waits before each new try of a sign-out's record: [`SIGN_OUT_RETRY`].
fn sign_out_retry_waits() -> impl Iterator<Item = Duration> {
    let (first, longest) = SIGN_OUT_RETRY;
    std::iter::successors(Some(first), move |wait| Some((*wait * 2).min(longest)))
}

/// A sign-out to write to `authbridge.revoked_sessions`, as of the moment it was made.
struct SignOutWrite {
    session_id: String,
    user_id: String,
    at: time::OffsetDateTime,
}

impl SignOutWrite {
    async fn try_once(&self, db: &Database) -> Result<(), DbError> {
        let version = Version { updated_at: self.at, event_at: self.at, event_id: String::new() };
        let mut conn = db.pool().acquire().await?;
        store::revoke_session(&mut conn, &self.session_id, Some(&self.user_id), RevokedBy::SignOut, &version).await?;
        Ok(())
    }

    /// Tries again until the database takes it; sooner once `draining` (the process is stopping).
    async fn retry(self, db: Database, draining: CancellationToken) {
        let waits = sign_out_retry_waits();
        match crate::db::retry_while_unavailable(waits, KEEP, Some(&draining), || self.try_once(&db)).await {
            Ok(()) => tracing::info!(user_id = %self.user_id, "recorded the sign-out in the database"),
            Err(DbError::Unavailable(_)) => {
                tracing::error!(user_id = %self.user_id, "gave up recording the sign-out in the database");
            }
            Err(error) => {
                tracing::error!(%error, user_id = %self.user_id, "could not record the sign-out in the database");
            }
        }
    }
}

impl SharedCheck {
    /// What the database says about this user and session: only what it records for this provider is asked.
    async fn access_state(&self, user_id: &str, session_id: Option<&str>) -> Result<AccessState, DbError> {
        match (self.deleted_users, session_id) {
            (DeletedUsers::Recorded, _) => {
                let mut conn = self.db.pool().acquire().await?;
                Ok(store::access_state(&mut conn, user_id, session_id).await?)
            }
            (DeletedUsers::NotRecorded, Some(session_id)) => {
                let mut conn = self.db.pool().acquire().await?;
                let session_revoked = store::session_revoked(&mut conn, session_id).await?;
                Ok(AccessState { user_deleted: false, session_revoked })
            }
            (DeletedUsers::NotRecorded, None) => Ok(AccessState { user_deleted: false, session_revoked: false }),
        }
    }
}

/// Says (at most every 10 s, with the count since and the latest error) that requests could not be checked against
/// the ended sessions and deleted users: during a database outage every signed-in request fails this way, and each
/// is already in the log as its 503 `database_unavailable`.
fn warn_of_unchecked_access(error: String) {
    static THROTTLE: crate::sync::Throttle = crate::sync::Throttle::every(Duration::from_secs(10));
    THROTTLE.note_detail(error, |requests, error| {
        tracing::warn!(
            requests,
            error,
            "cannot check whether sessions were revoked or users deleted: the database did not answer (the count \
             since the last such line, said at most every 10 s)"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sign-out the database could not take is tried again in the background; a shutdown waits for it only so
    /// long, and says it is left.
    #[tokio::test]
    async fn a_sign_out_still_being_written_holds_the_shutdown_only_so_long() {
        let config = crate::config::DatabaseConfig {
            // Nothing listens on port 1.
            url: crate::config::Secret::new("postgres://app:x@127.0.0.1:1/app"),
            max_connections: 3,
            acquire_timeout: Duration::from_millis(100),
        };
        let db = Database::connect_lazy(&config).expect("a pool");
        let revocations = Revocations::shared(db, DeletedUsers::NotRecorded);
        assert!(revocations.drain_sign_outs(Duration::from_millis(10)).await, "nothing to wait for");

        let revocations =
            Revocations::shared(Database::connect_lazy(&config).expect("a pool"), DeletedUsers::NotRecorded);
        revocations.record_sign_out("session_1", "user_1").await;
        assert!(
            revocations.has_ended("user_1", Some("session_1")).await.is_ok_and(|ended| ended),
            "refused here at once"
        );
        let started = Instant::now();
        assert!(!revocations.drain_sign_outs(Duration::from_millis(200)).await, "still being tried");
        assert!(started.elapsed() < Duration::from_secs(2), "given up within the wait");
    }

    #[tokio::test]
    async fn revoked_sessions_and_deleted_users_are_refused_and_others_are_not() {
        let revocations = Revocations::default();
        assert!(!revocations.has_ended("user_1", Some("session_1")).await.expect("local only"));
        revocations.revoke("session_1");
        assert!(revocations.has_ended("user_1", Some("session_1")).await.expect("local only"));
        assert!(!revocations.has_ended("user_1", Some("session_2")).await.expect("local only"));
        revocations.note(&[Effect::UserDeleted { user_id: "user_2".into() }]);
        assert!(revocations.has_ended("user_2", None).await.expect("local only"), "every session of the user");
        assert!(revocations.has_ended("user_2", Some("session_9")).await.expect("local only"));
    }

    #[tokio::test]
    async fn the_local_list_keeps_every_id_until_full_then_forgets_only_the_oldest() {
        let revocations = Revocations::default();
        let ended = |id: &str| {
            let id = id.to_owned();
            let revocations = &revocations;
            async move { revocations.has_ended("user_1", Some(&id)).await.expect("local only") }
        };
        revocations.revoke("first");
        revocations.revoke("second");
        assert!(ended("first").await && ended("second").await, "a new id never pushes out another below the bound");
        for i in 0..CAPACITY {
            revocations.revoke(&format!("session_{i}"));
        }
        assert!(!ended("first").await, "full: the oldest is forgotten first");
        assert!(ended("session_0").await && ended(&format!("session_{}", CAPACITY - 1)).await, "the rest are kept");
    }

    #[test]
    fn a_full_list_drops_the_ids_past_keep_first_and_only_then() {
        let revocations = Revocations::default();
        let start = Instant::now();
        let size = || lock(&revocations.local).len();
        revocations.remember_at(Ended::Session("old_1".into()), start);
        revocations.remember_at(Ended::Session("old_2".into()), start);
        revocations.remember_at(Ended::Session("late".into()), start + KEEP);
        assert_eq!(size(), 3, "below the bound nothing is tidied away");
        {
            let mut local = lock(&revocations.local);
            for i in 3..CAPACITY {
                local.insert(Ended::Session(format!("old_{i}")), start);
            }
        }
        assert_eq!(size(), CAPACITY);
        revocations.remember_at(Ended::Session("new".into()), start + KEEP);
        assert_eq!(size(), 2, "full: every id a day old is dropped at once (`late` and `new` stay)");
        assert!(revocations.ended_locally("user", Some("late"), start + KEEP, start + KEEP));
    }

    #[test]
    fn an_ended_id_is_refused_for_a_day_and_then_forgotten() {
        let revocations = Revocations::default();
        revocations.revoke("session_1");
        revocations.note(&[Effect::UserDeleted { user_id: "user_2".into() }]);
        let at = |id: Ended| *lock(&revocations.local).get(&id).expect("remembered");
        let revoked = at(Ended::Session("session_1".into()));
        let deleted = at(Ended::User("user_2".into()));
        for (user, session, since) in [("user_1", Some("session_1"), revoked), ("user_2", None, deleted)] {
            assert!(revocations.ended_locally(user, session, since, since), "at once");
            assert!(
                revocations.ended_locally(
                    user,
                    session,
                    since + Duration::from_secs(2 * 3600),
                    since + Duration::from_secs(2 * 3600)
                ),
                "hours later"
            );
            assert!(
                revocations.ended_locally(
                    user,
                    session,
                    since + KEEP - Duration::from_nanos(1),
                    since + KEEP - Duration::from_nanos(1)
                ),
                "to the end"
            );
            assert!(
                !revocations.ended_locally(user, session, since + KEEP, since + KEEP),
                "forgotten once the day is over"
            );
        }
    }

    #[test]
    fn a_sign_out_is_tried_again_after_1_s_then_twice_as_long_each_time_up_to_a_minute() {
        let waits: Vec<u64> = sign_out_retry_waits().take(8).map(|wait| wait.as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn only_an_end_noted_before_a_moment_was_known_at_it() {
        let revocations = Revocations::default();
        let before = Instant::now();
        revocations.revoke("session_1");
        let after = Instant::now();
        assert!(!revocations.ended_here_before("user_1", Some("session_1"), before), "the request that ended it");
        assert!(revocations.ended_here_before("user_1", Some("session_1"), after), "a later request");
        assert!(!revocations.ended_here_before("user_1", Some("session_2"), after), "another session");

        // Ended once more (WorkOS's `session.revoked` for a sign-out made here): still ended since the first time.
        revocations.note(&[Effect::SessionRevoked { session_id: "session_1".into() }]);
        assert!(revocations.ended_here_before("user_1", Some("session_1"), after), "known since the sign-out");
    }

    #[test]
    fn an_end_past_keep_noted_again_counts_from_the_new_time() {
        let revocations = Revocations::default();
        let long_ago = Instant::now();
        let now = long_ago + KEEP + Duration::from_secs(1);
        revocations.remember_at(Ended::Session("session_1".into()), long_ago);
        revocations.remember_at(Ended::Session("session_1".into()), now);
        assert!(revocations.ended_locally("user_1", Some("session_1"), now, now), "ended again, and refused");
    }

    #[test]
    fn a_still_allowed_answer_is_trusted_for_two_seconds_only() {
        let at = Instant::now();
        assert!(allowed_recently(at, at));
        assert!(allowed_recently(at, at + SHARED_CACHE_TTL - Duration::from_nanos(1)));
        assert!(!allowed_recently(at, at + SHARED_CACHE_TTL), "from the second it runs out, the database is asked");
        assert!(allowed_recently(at + Duration::from_secs(1), at), "a clock read earlier is not a reason to ask");
    }
}
