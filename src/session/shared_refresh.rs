//! One refresh per refresh token across every replica, through PostgreSQL (`authbridge.refresh_results`,
//! `migrations/0006_shared_refreshes.sql`).
//!
//! Within one process, [`super::refresh::Refresher`] already makes concurrent requests share one refresh. Behind a
//! load balancer the same cookie reaches several replicas at once, and each would spend the single-use refresh
//! token: the provider answers the second one `invalid_grant`, and the user is signed out. With `DATABASE_URL` the
//! replicas coordinate here:
//!
//! 1. **claim**: `INSERT … ON CONFLICT DO NOTHING` on the SHA-256 of the refresh token. Whoever inserts the row
//!    calls the provider.
//! 2. **record**: the claimant writes what came out — the new session sealed with the cookie keys (a purpose of its
//!    own, so a row can never be replayed as a cookie), or the provider's refusal. A failure that says nothing
//!    about the token (the provider down) deletes the claim, so the next request anywhere tries again. What the
//!    database cannot take at once is written in the background as soon as it can (every [`RECORD_RETRY`], for
//!    [`KEEP`]).
//! 3. **reuse**: everyone else polls the row until it has an outcome and uses it instead of calling the provider.
//!
//! While its call is under way the claimant renews the claim every third of [`CLAIM_TIMEOUT`], so a slow call
//! (a refresh may take a provider request, a key fetch and the membership sync, each with its own timeout, longer
//! together than the claim timeout) is never mistaken for a dead replica. A claim left unrenewed for
//! [`CLAIM_TIMEOUT`] (its replica died mid-call) is taken over, once the replica taking it has seen it stay so for
//! [`TAKEOVER_GRACE`] more: a claimant that was only cut off from the database (its renewals, or the record of a
//! refresh it made, failing meanwhile) tries again every [`RECORD_RETRY`], so it renews or records within that
//! grace of reaching the database again. Taken over at once, its claim would have a spent refresh token sent again,
//! which signs the user out.
//!
//! Rows are deleted once twice [`KEEP`] old ([`remove_old_results`]). When the database cannot be reached, the refresh is not made: the request
//! carries on with the token it has while that is still good, and is answered 503 once it has expired (as it is
//! anyway once the revocation check finds the database down). Refreshing alone instead would race the other
//! replicas that receive the same cookie meanwhile to spend one single-use refresh token: the loser's `invalid_grant`
//! signs the user out, and Auth0's reuse detection revokes the whole token family, the winner's new session included
//! (<https://auth0.com/docs/secure/tokens/refresh-tokens/configure-refresh-token-rotation>; docs/oidc.md §4).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::Session;
use super::provider::ProviderError;
use super::seal::{Purpose, Sealer};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::db::{Database, DbError};
use crate::sync::lock;

/// How long a claim nobody renews is honoured: its claimant renews it three times as often while it is alive.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a result stays readable for replicas still holding the old cookie: as long as the in-process memo.
pub const KEEP: Duration = super::refresh::MEMO_TTL;
/// How long a replica watches a claim that looks abandoned, unchanged, before taking it over: for a claimant that
/// was cut off from the database, not dead, to renew or record it first. One try may wait for a pooled connection
/// (`DATABASE_ACQUIRE_TIMEOUT`, 3 s) or be cut at [`RECORD_ATTEMPT_LIMIT`]; then comes the next, [`RECORD_RETRY`]
/// later.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);
/// How long one try of a late record may take: a statement sent over a connection the network dropped without a
/// word would otherwise wait for TCP to give up, minutes. (Writing the same record twice is harmless.)
const RECORD_ATTEMPT_LIMIT: Duration = Duration::from_secs(1);
/// How often a waiting replica looks for the claimant's result.
const POLL: Duration = Duration::from_millis(50);
/// How often a claimant whose result (or claim renewal) the database could not take tries again: short, so it
/// lands soon after a blip ends, well within [`TAKEOVER_GRACE`].
const RECORD_RETRY: Duration = Duration::from_millis(250);
/// How long before the request's own time limit a waiter gives up, so that its "try again shortly" (503) is the
/// answer rather than the time limit's 504.
const BEFORE_THE_TIME_LIMIT: Duration = Duration::from_secs(1);

type Outcome = Result<Session, ProviderError>;

pub struct SharedRefreshes {
    db: Database,
    sealer: Sealer,
    claim_timeout: Duration,
    takeover_grace: Duration,
    /// `REQUEST_TIMEOUT_SECONDS`, when the requests that wait here have one.
    request_timeout: Option<Duration>,
    /// Results still being written after a blip ([`SharedRefreshes::record`]), for the shutdown to wait for.
    writing: TaskTracker,
    /// The server is stopping: no refresh claims a token any more, nor waits for another replica's claim (see
    /// [`SharedRefreshes::stop_claiming`]).
    stopping: std::sync::atomic::AtomicBool,
}

/// What the row for a token says.
enum Claim {
    /// This replica owns the refresh: since the row's `claimed_at` (`None`: the row is another's, which this
    /// replica cannot read, so it refreshes without owning it).
    Mine(Option<OffsetDateTime>),
    /// Another replica finished it.
    Finished(Box<Outcome>),
    /// Another replica is still at it.
    Pending,
}

impl SharedRefreshes {
    pub fn new(db: Database, sealer: Sealer) -> Self {
        Self {
            db,
            sealer,
            claim_timeout: CLAIM_TIMEOUT,
            takeover_grace: TAKEOVER_GRACE,
            request_timeout: None,
            writing: TaskTracker::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The results still being written after a blip, stopping new ones from being waited for.
    pub(super) fn writing(&self) -> &TaskTracker {
        &self.writing
    }

    /// From now on (the server is stopping), a refresh that has not claimed its token yet, or is waiting for another
    /// replica's claim, gives up with "unavailable" instead of claiming or taking a claim over: it would call the
    /// provider just as the process ends, spending the token with nobody left to record the result. Those that
    /// hold a claim finish, and the shutdown waits for them.
    pub fn stop_claiming(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Another claim timeout than [`CLAIM_TIMEOUT`] (the tests use a short one).
    pub fn with_claim_timeout(mut self, claim_timeout: Duration) -> Self {
        self.claim_timeout = claim_timeout;
        self
    }

    /// The time limit of the requests that refresh (`REQUEST_TIMEOUT_SECONDS`): one waiting for another replica's
    /// refresh gives up [`BEFORE_THE_TIME_LIMIT`] before it.
    pub fn within_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = Some(request_timeout);
        self
    }

    /// Another takeover grace than [`TAKEOVER_GRACE`] (the tests use a short one).
    pub fn with_takeover_grace(mut self, takeover_grace: Duration) -> Self {
        self.takeover_grace = takeover_grace;
        self
    }

    /// The outcome of refreshing the token whose hash is `key`: from another replica when one refreshed (or is
    /// refreshing) it, else from `call`, whose result is then shared.
    pub async fn refresh<F, Fut>(&self, key: &[u8; 32], call: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let started = Instant::now();
        // An unrenewed claim this request has been watching: its `claimed_at`, and since when.
        let mut watching: Option<(OffsetDateTime, Instant)> = None;
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) });
            }
            let claim = match self.claim(key, &mut watching).await {
                Ok(claim) => claim,
                Err(error) => {
                    tracing::warn!(%error, "cannot share the session refresh through the database; not refreshing now");
                    return Err(ProviderError::Unavailable { retry_after: crate::db::RETRY_AFTER });
                }
            };
            match claim {
                Claim::Finished(outcome) => {
                    metrics::counter!("authbridge_session_refreshes_total", "event" => "shared").increment(1);
                    return *outcome;
                }
                Claim::Mine(claimed_at) => {
                    let lease = Mutex::new(claimed_at);
                    let outcome = tokio::select! {
                        outcome = call() => outcome,
                        never = self.renew_while_alive(key, &lease) => match never {},
                    };
                    let claimed_at = *lock(&lease);
                    self.record(key, &outcome, claimed_at).await;
                    return outcome;
                }
                Claim::Pending => {
                    if waited_too_long(started, Instant::now(), self.wait_limit()) {
                        // The claim keeps being renewed without an answer: do not hold the request any longer.
                        return Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) });
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Renews this replica's claim (`lease`: since when it holds it) every third of the claim timeout, for as long
    /// as the caller polls this, which is while its provider call runs. Stops renewing, without failing the call,
    /// once the claim is no longer this replica's (taken over after the database was out of reach too long).
    async fn renew_while_alive(&self, key: &[u8; 32], lease: &Mutex<Option<OffsetDateTime>>) -> Infallible {
        let mut wait = self.claim_timeout / 3;
        loop {
            tokio::time::sleep(wait).await;
            wait = self.claim_timeout / 3;
            let Some(claimed_at) = *lock(lease) else { break };
            let renewed = sqlx::query_scalar::<_, OffsetDateTime>(
                "UPDATE authbridge.refresh_results SET claimed_at = now() \
                 WHERE token_hash = $1 AND outcome IS NULL AND claimed_at = $2 RETURNING claimed_at",
            )
            .bind(key.as_slice())
            .bind(claimed_at)
            .fetch_optional(self.db.pool())
            .await;
            match renewed {
                Ok(Some(renewed)) => *lock(lease) = Some(renewed),
                Ok(None) => {
                    tracing::warn!("another replica took over a session refresh this replica is still making");
                    break;
                }
                // Try again soon: once the claim timeout has passed, another replica takes the claim over if it
                // stays unrenewed for the takeover grace.
                Err(error) => {
                    tracing::warn!(%error, "could not renew the claim on a session refresh");
                    wait = RECORD_RETRY;
                }
            }
        }
        std::future::pending().await
    }

    /// What the row for `key` says, claiming it when there is none (or none worth reading). `watching` is the
    /// unrenewed claim this request has been watching, if any (see [`watched_long_enough`]).
    async fn claim(
        &self,
        key: &[u8; 32],
        watching: &mut Option<(OffsetDateTime, Instant)>,
    ) -> Result<Claim, sqlx::Error> {
        let pool = self.db.pool();
        let inserted = sqlx::query_scalar::<_, OffsetDateTime>(
            "INSERT INTO authbridge.refresh_results (token_hash) VALUES ($1) ON CONFLICT (token_hash) DO NOTHING \
             RETURNING claimed_at",
        )
        .bind(key.as_slice())
        .fetch_optional(pool)
        .await?;
        if inserted.is_some() {
            // Rare (once per refresh), and the table holds only the last minute's refreshes: tidy up here. Best
            // effort: the claim is ours whatever happens to the tidying, and giving it up now would spend the token
            // without sharing the result, leaving the other replicas to wait out the claim and then re-send a spent
            // token, which signs the user out.
            if let Err(error) = remove_old_results(pool).await {
                tracing::warn!(%error, "could not remove old shared refresh results; they are removed at the next refresh");
            }
            return Ok(Claim::Mine(inserted));
        }
        let row = sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>, OffsetDateTime, bool, bool)>(
            "SELECT outcome, sealed_session, rejected_reason, claimed_at, \
                    finished_at IS NOT NULL AND finished_at < now() - $2::interval, \
                    finished_at IS NULL AND claimed_at < now() - $3::interval \
             FROM authbridge.refresh_results WHERE token_hash = $1",
        )
        .bind(key.as_slice())
        .bind(interval(KEEP))
        .bind(interval(self.claim_timeout))
        .fetch_optional(pool)
        .await?;
        let Some((outcome, sealed, reason, claimed_at, expired, unrenewed)) = row else {
            // Released a moment ago (the claimant's provider call failed): claim it ourselves on the next turn.
            return Ok(Claim::Pending);
        };
        if expired {
            // A result too old to trust: take the row over, if nobody else just did.
            let taken = sqlx::query_scalar::<_, OffsetDateTime>(
                "UPDATE authbridge.refresh_results \
                 SET claimed_at = now(), finished_at = NULL, outcome = NULL, sealed_session = NULL, \
                     rejected_reason = NULL \
                 WHERE token_hash = $1 AND finished_at IS NOT NULL AND finished_at < now() - $2::interval \
                 RETURNING claimed_at",
            )
            .bind(key.as_slice())
            .bind(interval(KEEP))
            .fetch_optional(pool)
            .await?;
            return Ok(if taken.is_some() { Claim::Mine(taken) } else { Claim::Pending });
        }
        if unrenewed {
            if !watched_long_enough(watching, claimed_at, Instant::now(), self.takeover_grace) {
                return Ok(Claim::Pending);
            }
            // Unrenewed all along: its replica died mid-call. Take the row over, unless it was renewed, recorded or
            // taken by another replica in the meantime (each changes or removes this `claimed_at`).
            let taken = sqlx::query_scalar::<_, OffsetDateTime>(
                "UPDATE authbridge.refresh_results SET claimed_at = now() \
                 WHERE token_hash = $1 AND finished_at IS NULL AND claimed_at = $2 RETURNING claimed_at",
            )
            .bind(key.as_slice())
            .bind(claimed_at)
            .fetch_optional(pool)
            .await?;
            return Ok(if taken.is_some() { Claim::Mine(taken) } else { Claim::Pending });
        }
        Ok(match (outcome.as_deref(), sealed) {
            (Some("refreshed"), Some(sealed)) => match self.open(&sealed) {
                Some(session) => Claim::Finished(Box::new(Ok(session))),
                // Sealed with keys this replica does not have (a password rotation half rolled out): ask the
                // provider ourselves rather than fail; at worst this is the race the table exists to prevent.
                None => Claim::Mine(None),
            },
            (Some("rejected"), _) => Claim::Finished(Box::new(Err(ProviderError::GrantRejected(
                reason.unwrap_or_else(|| "refused during another replica's refresh".to_owned()),
            )))),
            _ => Claim::Pending,
        })
    }

    /// Records the claimant's outcome: the new session or the refusal for everyone; any other failure releases the
    /// claim so the next request (here or elsewhere) asks the provider again. When the database cannot take it now
    /// (a blip between the claim and the provider's answer), it is written in the background as soon as it can be:
    /// left unrecorded, the claim would look abandoned after [`CLAIM_TIMEOUT`], and the replica taking it over
    /// would send the spent refresh token again and sign the user out.
    async fn record(&self, key: &[u8; 32], outcome: &Outcome, claimed_at: Option<OffsetDateTime>) {
        let record = match self.record_of(outcome, claimed_at) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "cannot record the session refresh for the other replicas");
                return;
            }
        };
        if let Err(error) = record.write(&self.db, key).await {
            if matches!(error, DbError::Unavailable(_)) {
                tracing::warn!(%error, "cannot record the session refresh for the other replicas yet; trying again");
                self.writing.spawn(record.write_later(self.db.clone(), *key).in_current_span());
            } else {
                tracing::warn!(%error, "cannot record the session refresh for the other replicas");
            }
        }
    }

    fn record_of(&self, outcome: &Outcome, claimed_at: Option<OffsetDateTime>) -> Result<Record, RecordError> {
        Ok(match outcome {
            Ok(session) => Record::Refreshed(self.sealer.seal(Purpose::SharedRefresh, &serde_json::to_vec(session)?)?),
            Err(ProviderError::GrantRejected(reason)) => Record::Rejected(reason.clone()),
            Err(_) => Record::Release(claimed_at),
        })
    }

    fn open(&self, sealed: &str) -> Option<Session> {
        let opened = self.sealer.open(Purpose::SharedRefresh, sealed).ok()?;
        serde_json::from_slice(&opened.plaintext).ok()
    }
}

/// What a claimant writes to its row once its provider call is over.
enum Record {
    /// The new session, sealed for the other replicas.
    Refreshed(String),
    /// The provider's refusal of the token.
    Rejected(String),
    /// Any other failure says nothing about the token: this replica's claim (held since then) is given back.
    Release(Option<OffsetDateTime>),
}

impl Record {
    async fn write(&self, db: &Database, key: &[u8; 32]) -> Result<(), DbError> {
        let pool = db.pool();
        match self {
            Record::Refreshed(sealed) => {
                sqlx::query(
                    "UPDATE authbridge.refresh_results \
                     SET outcome = 'refreshed', sealed_session = $2, rejected_reason = NULL, finished_at = now() \
                     WHERE token_hash = $1",
                )
                .bind(key.as_slice())
                .bind(sealed)
                .execute(pool)
                .await?;
            }
            Record::Rejected(reason) => {
                // Never over a session someone recorded: if a replica that took over was refused because the
                // first one spent the token after all, the first one's new session is the truth.
                sqlx::query(
                    "UPDATE authbridge.refresh_results \
                     SET outcome = 'rejected', rejected_reason = $2, finished_at = now() \
                     WHERE token_hash = $1 AND outcome IS NULL",
                )
                .bind(key.as_slice())
                .bind(reason)
                .execute(pool)
                .await?;
            }
            // Only this replica's own claim: should another have taken the row over meanwhile (the database was out
            // of reach for the renewals), its claim is live, and deleting it would leave its result unshared.
            Record::Release(None) => {}
            Record::Release(Some(claimed_at)) => {
                sqlx::query(
                    "DELETE FROM authbridge.refresh_results \
                     WHERE token_hash = $1 AND outcome IS NULL AND claimed_at = $2",
                )
                .bind(key.as_slice())
                .bind(claimed_at)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Writes the record once the database takes it, trying every [`RECORD_RETRY`] for as long as a result is
    /// kept ([`KEEP`]): after that no replica would read it.
    async fn write_later(self, db: Database, key: [u8; 32]) {
        let waits = std::iter::repeat(RECORD_RETRY);
        let attempt = || async {
            let limited = tokio::time::timeout(RECORD_ATTEMPT_LIMIT, self.write(&db, &key)).await;
            limited.unwrap_or_else(|_| Err(DbError::Unavailable("no answer within the try's limit".to_owned())))
        };
        match crate::db::retry_while_unavailable(waits, KEEP, None, attempt).await {
            Ok(()) => tracing::info!("recorded the session refresh for the other replicas"),
            Err(DbError::Unavailable(_)) => {
                tracing::warn!(
                    "gave up recording a session refresh for the other replicas: the database stayed unavailable"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot record the session refresh for the other replicas"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("cannot seal the session")]
    Seal(#[from] super::seal::SealError),
    #[error("cannot serialise the session: {0}")]
    Json(#[from] serde_json::Error),
}

/// Removes the results no replica can read any more (older than twice [`KEEP`]: a claim still alive is renewed long
/// before that), returning how many. Each new claim calls it, and so does every replica once a minute
/// (`startup::prune_bookkeeping`): the rows hold sealed sessions with live refresh tokens, which must not outlive
/// their use in the table, nor reach the database's backups, after a quiet spell with no refresh to tidy them.
pub async fn remove_old_results(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM authbridge.refresh_results WHERE claimed_at < now() - $1::interval")
        .bind(interval(KEEP * 2))
        .execute(pool)
        .await?
        .rows_affected())
}

/// A PostgreSQL interval literal for a whole number of milliseconds.
fn interval(duration: Duration) -> String {
    format!("{} milliseconds", duration.as_millis())
}

/// Whether the unrenewed claim made at `claimed_at` has been watched, unchanged, for `grace` by `now`; when it is
/// not the claim `watching` holds, watching starts over with it.
fn watched_long_enough(
    watching: &mut Option<(OffsetDateTime, Instant)>,
    claimed_at: OffsetDateTime,
    now: Instant,
    grace: Duration,
) -> bool {
    match *watching {
        Some((seen, since)) if seen == claimed_at => now.saturating_duration_since(since) >= grace,
        _ => {
            *watching = Some((claimed_at, now));
            false
        }
    }
}

impl SharedRefreshes {
    /// How long a request waits for another replica's refresh: twice the claim timeout and the takeover grace, long
    /// enough for the claim to be taken over once (by this replica or another) and its call to end; but never into
    /// the request's own time limit. Only a claim that replicas keep taking over without ever finishing, or a call
    /// slower than any timeout allows, gets this far: the request is then answered "try again shortly", and the
    /// result, once recorded, serves the next one.
    fn wait_limit(&self) -> Duration {
        let takeover = self.claim_timeout * 2 + self.takeover_grace;
        match self.request_timeout {
            Some(request_timeout) => takeover.min(request_timeout.saturating_sub(BEFORE_THE_TIME_LIMIT)),
            None => takeover,
        }
    }
}

/// A waiter started at `started` has waited past `limit` at `now`.
fn waited_too_long(started: Instant, now: Instant, limit: Duration) -> bool {
    now.saturating_duration_since(started) > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_gives_up_only_after_its_limit() {
        let started = Instant::now();
        let limit = Duration::from_secs(35);
        assert!(!waited_too_long(started, started, limit));
        assert!(!waited_too_long(started, started + limit, limit), "up to the limit");
        assert!(waited_too_long(started, started + limit + Duration::from_nanos(1), limit), "then no longer");
        assert!(
            !waited_too_long(started + Duration::from_secs(1), started, limit),
            "a clock read earlier is no reason"
        );
    }

    /// Twice the claim timeout and the grace (one takeover's worth and its call), but a second short of the
    /// request's time limit when that comes first (the default 30 s does).
    #[tokio::test]
    async fn a_waiter_waits_for_a_takeover_but_not_into_the_requests_time_limit() {
        let refreshes = |request_timeout: Option<Duration>| {
            let config = crate::config::DatabaseConfig {
                url: crate::config::Secret::new("postgres://x@127.0.0.1:1/x"),
                max_connections: 1,
                acquire_timeout: Duration::from_secs(1),
            };
            let database = Database::connect_lazy(&config).expect("a lazy pool");
            let sealer =
                Sealer::new(&crate::config::Secret::new("0123456789abcdef0123456789abcdef"), None).expect("a sealer");
            let refreshes = SharedRefreshes::new(database, sealer);
            match request_timeout {
                Some(request_timeout) => refreshes.within_request_timeout(request_timeout),
                None => refreshes,
            }
        };
        assert_eq!(refreshes(None).wait_limit(), CLAIM_TIMEOUT * 2 + TAKEOVER_GRACE);
        assert_eq!(refreshes(Some(Duration::from_secs(30))).wait_limit(), Duration::from_secs(29));
        assert_eq!(refreshes(Some(Duration::from_secs(300))).wait_limit(), CLAIM_TIMEOUT * 2 + TAKEOVER_GRACE);
    }

    #[test]
    fn an_unrenewed_claim_is_taken_over_only_once_watched_unchanged_for_the_grace() {
        let claimed = OffsetDateTime::UNIX_EPOCH;
        let renewed = claimed + time::Duration::seconds(5);
        let start = Instant::now();
        let mut watching = None;
        assert!(!watched_long_enough(&mut watching, claimed, start, TAKEOVER_GRACE), "first seen: watch it");
        assert_eq!(watching, Some((claimed, start)));
        assert!(!watched_long_enough(
            &mut watching,
            claimed,
            start + TAKEOVER_GRACE - Duration::from_millis(1),
            TAKEOVER_GRACE
        ));
        assert!(
            watched_long_enough(&mut watching, claimed, start + TAKEOVER_GRACE, TAKEOVER_GRACE),
            "unchanged for the grace"
        );
        let later = start + TAKEOVER_GRACE * 3;
        assert!(
            !watched_long_enough(&mut watching, renewed, later, TAKEOVER_GRACE),
            "another claim: watching starts over"
        );
        assert_eq!(watching, Some((renewed, later)));
        assert!(!watched_long_enough(&mut watching, renewed, later + TAKEOVER_GRACE / 2, TAKEOVER_GRACE));
        assert!(watched_long_enough(&mut watching, renewed, later + TAKEOVER_GRACE, TAKEOVER_GRACE));
    }
}
