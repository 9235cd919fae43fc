//! The Events API consumer: reads `GET /events` with a cursor and applies each event, so nothing WorkOS reported is
//! missed even when webhooks were lost, late or never configured.
//!
//! - **One consumer at a time**, across every replica: a poll runs only while its connection holds a PostgreSQL
//!   advisory lock (`pg_try_advisory_lock`); a replica that does not get it skips that poll. The lock belongs to the
//!   connection that applies the events, so if that connection dies, the lock goes with the work it protected.
//! - **The cursor moves with the events**: each event is applied, and the cursor set to its id, in one transaction.
//!   A restart resumes right after the last event applied; a crash in between loses nothing and repeats nothing.
//! - **Nothing is assumed about the server**: event ids are opaque (never compared or parsed); types are filtered
//!   here too (a server that ignores `events=` only costs ledger rows); a server that restarts from the beginning
//!   for an unknown `after` only replays events the ledger already has; a refused cursor falls back to
//!   `range_start` at the last event's time; a cursor whose event is older than WorkOS keeps events is not sent at
//!   all (a server may answer an empty page for it, which looks like "nothing new"), and reading goes on by time.
//!   Each of these is logged.
//! - **A gap is told from a quiet tenant**: the cursor row records when the last poll that read the event list to
//!   its end started, and the consumer's position is the later of that and the cursor's event. Only when both are
//!   older than WorkOS keeps events (the consumer stopped that long) may events have been missed: it then warns,
//!   reads the state again (what a complete listing no longer shows is ended, its deletion event lost) and reads
//!   every event WorkOS still has. A tenant with no event for a month, polled all along, is read on by time over
//!   all that WorkOS keeps, with no reconciliation and no warning.
//! - **WorkOS down** is retried with exponential backoff (honouring `Retry-After`); the cursor has not moved, so no
//!   event is lost.
//! - **One event the database keeps refusing for its data** (SQLSTATE class 22 or 23, or 54000: a value or a
//!   constraint no retry will get past) is retried the same way, but once it has failed five polls in a row over at
//!   least ten minutes it is recorded as rejected, logged at error level and skipped, as an unreadable payload is:
//!   otherwise it would hold back every event after it. Any other database error (a missing grant or table, a
//!   read-only database, the connection) is retried without end: it can be put right, and the event must not be
//!   lost meanwhile.
//! - **First start** (no cursor): the current organizations and memberships are read from the REST API, then
//!   events are read from shortly before that moment on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgConnection;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::events::{self, Effect, HANDLED_EVENT_TYPES, Outcome};
use super::store::{self, Listing, Source, Version};
use super::{Lifecycle, LifecycleError, MAX_CONFIRMED_GONE};
use crate::session::revocations::Revocations;
use crate::workos::WorkosError;
use crate::workos::management::{EventsFrom, MembershipsOf};

/// The advisory lock every replica's consumer competes for ("authbrid" in ASCII): one key for the whole cluster.
pub const LOCK_KEY: i64 = 0x6175_7468_6272_6964;
/// How far before the last known moment reading resumes from a time: events already applied are simply skipped,
/// and the margin covers clock skew between WorkOS and us.
const RESUME_OVERLAP: time::Duration = time::Duration::minutes(5);
/// The furthest back a `range_start` reaches, inside WorkOS's window: its API reference returns "events up to 30
/// days old" (docs `/reference/events`), its guide speaks of 90 days kept (`/events/data-syncing/events-api`); the
/// shorter figure holds. A quiet environment whose consumer has never seen an event would otherwise ask from its
/// first reconciliation forever, and once that is past the window WorkOS may refuse the request on every poll.
const MAX_LOOKBACK: time::Duration = time::Duration::days(29);
/// The pause between two polls while a backlog is read (a poll stopped at its page limit after reading new events):
/// short, but never none, so that WorkOS's other callers (sign-in, refresh, Audit Logs) share the API key's limits.
const BACKLOG_PAUSE: Duration = Duration::from_secs(1);

/// Pages read in one poll at most (10 000 events): a poll ends, releases the lock and lets the next one go on, even
/// against a server that never stops paging.
pub const MAX_PAGES_PER_POLL: usize = 100;
/// Pages of organizations (and of each one's memberships) read when reconciling.
pub const MAX_RECONCILE_PAGES: usize = 1_000;
/// Polls in a row that one event may fail with the same lasting database error before it is recorded as rejected
/// and skipped: each failed poll is retried with backoff, and without a limit the consumer would stop at that event
/// for good, every later event (deprovisionings among them) unread.
const MAX_EVENT_FAILURES: u32 = 5;
/// How long one event must have kept failing, besides [`MAX_EVENT_FAILURES`] tries, before it is rejected: with the
/// 1/2/4/8 s backoff five tries take about 15 s, too short for an operator to notice and undo a mistake the error
/// classification cannot tell from bad data. A rejected event is skipped for good, so erring long costs only delay.
pub const MIN_FAILING_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy)]
pub struct ConsumerOptions {
    pub poll_interval: Duration,
    /// The first retry after a failure waits this long, doubling on each further failure up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// An event that keeps failing with a lasting database error is rejected only once it has failed for at least
    /// this long (and [`MAX_EVENT_FAILURES`] times): [`MIN_FAILING_FOR`] in service; tests shorten it.
    pub reject_after: Duration,
    /// Pages one poll reads at most: [`MAX_PAGES_PER_POLL`] in service; tests lower it to reach the limit.
    pub max_pages_per_poll: usize,
    /// Pages of organizations, and of each one's memberships, a reconciliation reads at most:
    /// [`MAX_RECONCILE_PAGES`] in service; tests lower it to reach the limit.
    pub max_reconcile_pages: usize,
    /// How long the lock's connection may wait, mid-poll, for this replica's next statement before PostgreSQL ends
    /// its session, and with it the lock: a replica that hung while polling (a stopped process, a stuck runtime; its
    /// kernel still answers TCP keepalives) would otherwise keep every replica from reading events until it
    /// resumes. Longer than any wait a working poll makes ([`ConsumerOptions::every`]).
    pub hung_after: Duration,
}

impl ConsumerOptions {
    /// Polls every `poll_interval`, with WorkOS calls that may each take up to `request_timeout`
    /// (`WORKOS_REQUEST_TIMEOUT_MS`).
    pub fn every(poll_interval: Duration, request_timeout: Duration) -> Self {
        Self {
            poll_interval,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            reject_after: MIN_FAILING_FOR,
            max_pages_per_poll: MAX_PAGES_PER_POLL,
            max_reconcile_pages: MAX_RECONCILE_PAGES,
            hung_after: Self::hung_after_for(request_timeout),
        }
    }

    /// The longest a working poll leaves the database waiting is the confirmation of objects a listing left out:
    /// up to [`MAX_CONFIRMED_GONE`] WorkOS calls in a row with no statement between them. Twice that and a minute.
    fn hung_after_for(request_timeout: Duration) -> Duration {
        let calls = u32::try_from(MAX_CONFIRMED_GONE + 1).unwrap_or(u32::MAX);
        request_timeout.saturating_mul(calls).saturating_mul(2) + Duration::from_secs(60)
    }

    /// The wait before retry number `failures` (1, 2, …): doubling, capped, with up to 25 % random jitter so
    /// replicas do not retry in step, and never shorter than the server's `Retry-After`.
    pub fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self.backoff_base.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
        let capped = doubled.min(self.backoff_max);
        let mut byte = [0u8; 1];
        let jitter = match aws_lc_rs::rand::fill(&mut byte) {
            Ok(()) => capped.mul_f64(f64::from(byte[0]) / 255.0 * 0.25),
            Err(_) => Duration::ZERO,
        };
        (capped + jitter).max(retry_after.unwrap_or_default())
    }
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Whether this consumer held the lock; when not, it did nothing else.
    pub leader: bool,
    /// Whether it read the current state from the REST API first: no cursor yet, or a gap (neither the cursor's
    /// event nor the last poll that read to the end is within what WorkOS keeps).
    pub reconciled: bool,
    pub pages: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub ignored: usize,
    pub rejected: usize,
    /// It stopped at its page limit with new events read and more left: the next poll starts after [`BACKLOG_PAUSE`],
    /// not after the interval, so a backlog drains at about the speed WorkOS answers.
    pub more: bool,
}

impl PollReport {
    /// Whether the poll changed anything worth a log line: events applied or rejected (duplicates and event types
    /// authbridge ignores change nothing, and an idle poll every few seconds must not fill the log).
    fn changed_anything(&self) -> bool {
        self.applied > 0 || self.rejected > 0
    }
}

/// Where reading by time resumes for a last known moment `at`: a little before it, but never further back than
/// [`MAX_LOOKBACK`]. Reaching that bound means events may have been lost: [`EventsConsumer::consume`] reconciles
/// first.
fn resume_from(at: OffsetDateTime) -> OffsetDateTime {
    (at - RESUME_OVERLAP).max(OffsetDateTime::now_utc() - MAX_LOOKBACK)
}

/// Where the next page starts.
enum Position {
    After(String),
    RangeStart(OffsetDateTime),
}

/// One event's lasting failures in a row.
struct Failing {
    event_id: String,
    failures: u32,
    since: Instant,
}

impl Failing {
    /// `event_id` failed once more (at `now`): one more in a row if it is the event that failed last, else its
    /// first failure (another event's count says nothing about this one).
    fn next(previous: Option<&Failing>, event_id: &str, now: Instant) -> Failing {
        let (failures, since) = match previous {
            Some(current) if current.event_id == event_id => (current.failures.saturating_add(1), current.since),
            _ => (1, now),
        };
        Failing { event_id: event_id.to_owned(), failures, since }
    }
}

pub struct EventsConsumer {
    lifecycle: Arc<Lifecycle>,
    revocations: Option<Arc<Revocations>>,
    options: ConsumerOptions,
    /// The event the last poll failed to apply with a lasting error, how many polls in a row did, and when the first
    /// of them failed.
    failing: Mutex<Option<Failing>>,
}

impl EventsConsumer {
    /// `revocations` hears about revoked sessions and deleted users at once, so this replica refuses them without
    /// waiting for its cache.
    pub fn new(lifecycle: Arc<Lifecycle>, revocations: Option<Arc<Revocations>>, options: ConsumerOptions) -> Self {
        Self { lifecycle, revocations, options, failing: Mutex::new(None) }
    }

    /// Polls until `stop` turns true (or its sender is dropped): every `poll_interval` after a success, with
    /// backoff after a failure.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let delay = match self.poll_once().await {
                Ok(report) => {
                    failures = 0;
                    if report.leader {
                        // For an alert on a consumer that stopped reading (deprovisioning stalls with it): the age of
                        // the newest of these across replicas.
                        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
                        metrics::gauge!("authbridge_events_consumer_last_poll_timestamp_seconds").set(now);
                    }
                    if report.changed_anything() {
                        tracing::info!(
                            applied = report.applied,
                            duplicates = report.duplicates,
                            ignored = report.ignored,
                            rejected = report.rejected,
                            "applied events from the WorkOS Events API"
                        );
                    }
                    if report.more { self.options.poll_interval.min(BACKLOG_PAUSE) } else { self.options.poll_interval }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let retry_after = match &error {
                        LifecycleError::Workos(WorkosError::RateLimited { retry_after }) => *retry_after,
                        _ => None,
                    };
                    let delay = self.options.backoff(failures, retry_after);
                    let retry_in_ms = delay.as_millis() as u64;
                    // Which side failed, in words: the error's own text follows.
                    match &error {
                        LifecycleError::Database(_) => tracing::warn!(
                            %error, failures, retry_in_ms,
                            "the Events API consumer could not use the database; will retry"
                        ),
                        LifecycleError::Workos(_) => tracing::warn!(
                            %error, failures, retry_in_ms,
                            "reading the WorkOS Events API failed; will retry"
                        ),
                    }
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One poll: take the lock or step aside, then read and apply every page there is.
    pub async fn poll_once(&self) -> Result<PollReport, LifecycleError> {
        let mut conn = self.lifecycle.database().pool().acquire().await?;
        if !store::try_lock(&mut conn, LOCK_KEY).await? {
            tracing::debug!("another replica is reading the Events API");
            return Ok(PollReport::default());
        }
        if let Err(error) = store::limit_idle(&mut conn, Some(self.options.hung_after)).await {
            // PostgreSQL before 14 has no such limit: the poll goes on without it.
            tracing::debug!(%error, "cannot limit how long the Events API lock's connection may wait");
        }
        let outcome = self.consume(&mut conn).await;
        let _ = store::limit_idle(&mut conn, None).await;
        if !matches!(store::unlock(&mut conn, LOCK_KEY).await, Ok(true)) {
            // A connection that may still hold the lock must never go back to the pool: closing it releases it.
            conn.close_on_drop();
        }
        outcome
    }

    async fn consume(&self, conn: &mut PgConnection) -> Result<PollReport, LifecycleError> {
        let mut report = PollReport { leader: true, ..PollReport::default() };
        let cursor = store::cursor(conn).await?;
        // Before the first request: if this poll reads to the end, every event created before this moment has been
        // seen (one created while it runs may not be listed; the next poll's `RESUME_OVERLAP` reads it).
        let now = OffsetDateTime::now_utc();
        let window_start = now - MAX_LOOKBACK;
        // What is known up to: the later of the cursor's event and the start of the last poll that read to the end
        // (a quiet tenant's last event may be a month old while nothing was missed), or without a cursor event the
        // reconciliation too (`None` < `Some`).
        let known_until = match cursor.after_event_id {
            Some(_) => cursor.last_event_at.max(cursor.polled_at),
            None => cursor.last_event_at.max(cursor.reconciled_at).max(cursor.polled_at),
        };
        let gap_since = known_until.filter(|at| *at < window_start);
        let cursor_event_expired = cursor.last_event_at.is_some_and(|at| at < window_start);
        let mut position = match (&cursor.after_event_id, gap_since) {
            (_, Some(since)) => {
                // WorkOS no longer has every event since then, and what it does with a cursor naming an expired
                // event is undocumented (docs/workos.md §4.2): it may answer an empty page, which would stop this
                // consumer for good without a word. So the cursor is not sent: the state the lost events changed
                // is read again from the REST API, and the events WorkOS still has are read by time (those
                // already applied are skipped). Users, sessions and directory users have no such listing: what
                // happened to them in the gap is lost, hence the warning.
                tracing::warn!(
                    since = %since,
                    "the Events API cursor is older than WorkOS keeps events, so some events may have been missed; \
                     reading organizations and memberships again from WorkOS, then every event it still has"
                );
                self.reconcile(conn).await?;
                report.reconciled = true;
                Position::RangeStart(resume_from(since))
            }
            (Some(id), None) if !cursor_event_expired => Position::After(id.clone()),
            (Some(_), None) => {
                // No gap: a poll read to the end within the window, so the cursor's event is merely old (no event
                // since). But WorkOS may have dropped it, and what it does with such a cursor is undocumented (see
                // above), so it is not sent: reading goes on by time, from as far back as WorkOS keeps events. That
                // costs nothing here (had WorkOS listed an event in the window, the cursor would have moved to it)
                // and, should WorkOS have answered the old cursor with empty pages while it still listed events,
                // reads them rather than going on from the last poll past them.
                tracing::debug!(
                    "the Events API cursor's event is older than WorkOS keeps events, but a later poll read every \
                     event; reading by time over the whole window"
                );
                Position::RangeStart(resume_from(window_start))
            }
            (None, None) => {
                let reconciled_at = match cursor.reconciled_at {
                    Some(at) => at,
                    None => {
                        self.reconcile(conn).await?;
                        store::mark_reconciled(conn, now).await?;
                        report.reconciled = true;
                        now
                    }
                };
                // After a refused cursor the last event's time is kept, and is later than the reconciliation; a poll
                // that read to the end may be later still.
                let since = known_until.map_or(reconciled_at, |at| at.max(reconciled_at));
                Position::RangeStart(resume_from(since))
            }
        };
        let mut last_event_at = cursor.last_event_at;
        let mut cursor_refused = false;
        // Set only on reaching a page with no next cursor: a poll cut short by an error returns early, and one cut
        // short by its page limit leaves the loop without it.
        let mut read_to_end = false;

        for _ in 0..self.options.max_pages_per_poll {
            let from = match &position {
                Position::After(id) => EventsFrom::After(id),
                Position::RangeStart(at) => EventsFrom::RangeStart(*at),
            };
            let page = match self.lifecycle.workos().list_events(&HANDLED_EVENT_TYPES, &from).await {
                Ok(page) => page,
                Err(WorkosError::Rejected { status: 400 | 404 | 422, .. })
                    if matches!(position, Position::After(_)) && !cursor_refused =>
                {
                    // Not documented, but possible once the cursor's event is past WorkOS's retention.
                    tracing::warn!(
                        "WorkOS refused the Events API cursor; reading on from the last event's time instead"
                    );
                    cursor_refused = true;
                    // Forgotten for good, so that a quiet environment (no new event to move it on) does not send
                    // the refused cursor again on every poll.
                    store::forget_cursor_event(conn).await?;
                    let since = last_event_at.unwrap_or_else(OffsetDateTime::now_utc);
                    position = Position::RangeStart(resume_from(since));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            report.pages += 1;
            let Some(last) = page.data.last() else {
                read_to_end = true;
                break;
            };
            let last_id = last.id.clone();

            let (mut replayed, mut unasked) = (0usize, 0usize);
            for envelope in &page.data {
                if !HANDLED_EVENT_TYPES.contains(&envelope.event_type.as_str()) {
                    unasked += 1;
                }
                let applied = match events::apply(conn, envelope, Source::EventsApi, true).await {
                    Ok(applied) => {
                        self.note_failure(None);
                        applied
                    }
                    Err(error) if lasting(&error) => {
                        let (failures, failing_for) = self.note_failure(Some(&envelope.id));
                        if failures < MAX_EVENT_FAILURES || failing_for < self.options.reject_after {
                            return Err(error.into());
                        }
                        self.note_failure(None);
                        tracing::error!(event_id = %envelope.id, event_type = %envelope.event_type, %error, failures,
                            failing_for_s = failing_for.as_secs(),
                            "a WorkOS event failed to apply on every try; it is recorded as rejected and skipped");
                        events::reject(conn, envelope, Source::EventsApi, error.to_string()).await?
                    }
                    Err(error) => return Err(error.into()),
                };
                last_event_at = Some(envelope.created_at);
                match &applied.outcome {
                    Outcome::Applied => report.applied += 1,
                    Outcome::Duplicate => {
                        report.duplicates += 1;
                        replayed += 1;
                    }
                    Outcome::Ignored => report.ignored += 1,
                    Outcome::Rejected(why) => {
                        report.rejected += 1;
                        tracing::error!(event_id = %envelope.id, event_type = %envelope.event_type, %why,
                            "a WorkOS event could not be read; it is recorded as rejected and skipped");
                    }
                }
                self.follow_up(&applied.effects).await;
            }
            if replayed > 0 {
                tracing::info!(
                    replayed,
                    "the Events API returned events already applied (delivered by webhook, or replayed); nothing changed"
                );
            }
            if unasked > 0 {
                tracing::info!(
                    unasked,
                    "the Events API returned event types that were not asked for; recorded and ignored"
                );
            }
            match page.list_metadata.after {
                Some(_) => position = Position::After(last_id),
                None => {
                    read_to_end = true;
                    break;
                }
            }
        }
        if read_to_end {
            store::mark_polled(conn, now).await?;
        }
        // Only when this poll got further: pages of events already applied (a server that does not move on from the
        // cursor) must not be asked for again and again without the interval between.
        report.more = !read_to_end && report.applied + report.ignored + report.rejected > 0;
        if gap_since.is_some() {
            // Only now that the window has been read: a poll that failed before this finds the same gap next time
            // and reconciles again, rather than resuming after the reconciliation with the window unread.
            store::mark_reread(conn, cursor.after_event_id.as_deref(), now).await?;
        }
        if let Err(error) = store::prune_ledger(conn).await {
            tracing::warn!(%error, "could not prune old entries of the event ledger");
        }
        Ok(report)
    }

    /// Counts one more failure of `event_id` in a row (a different event starts again at 1), or forgets the count
    /// (`None`: an event was applied). Returns the count and how long ago the first of these failures was.
    fn note_failure(&self, event_id: Option<&str>) -> (u32, Duration) {
        let mut failing = crate::sync::lock(&self.failing);
        let Some(event_id) = event_id else {
            *failing = None;
            return (0, Duration::ZERO);
        };
        let next = Failing::next(failing.as_ref(), event_id, Instant::now());
        let counted = (next.failures, next.since.elapsed());
        *failing = Some(next);
        counted
    }

    /// Tells this replica's revocation list at once, and fetches organizations a membership named.
    async fn follow_up(&self, effects: &[Effect]) {
        if let Some(revocations) = &self.revocations {
            revocations.note(effects);
        }
        if let Err(error) = self.lifecycle.fetch_missing_organizations(effects).await {
            tracing::warn!(%error, "could not fetch an organization named by a membership; its name shows later");
        }
    }

    /// Reads every organization and its memberships (every status) from the REST API, at their own versions, then,
    /// if every page was read, ends the organizations and memberships the database holds that WorkOS no longer
    /// lists: their deletion events were lost (in a gap of the Events API, or webhooks given up on). Without this a
    /// client that only ever presents bearer tokens would keep such an organization, and through RLS its data, for
    /// good: only a cookie's refresh lists a user's memberships again (`sync`).
    async fn reconcile(&self, conn: &mut PgConnection) -> Result<(), LifecycleError> {
        let workos = self.lifecycle.workos();
        // Rows changed since shortly before this moment may be newer than the listing (created while it was read,
        // or by an event in flight), and WorkOS's clock may run ahead of ours: those are left alone.
        let changed_before = OffsetDateTime::now_utc() - reconcile_margin();
        let mut after: Option<String> = None;
        let mut listed_organizations: Vec<String> = Vec::new();
        let mut listed_memberships: Vec<String> = Vec::new();
        // Set only when a listing ended on its own: one cut short by a page limit says nothing about what it did
        // not reach, so nothing may be ended on its word.
        let mut complete = false;
        let mut memberships_complete = true;
        for _ in 0..self.options.max_reconcile_pages {
            let page = workos.list_organizations(after.as_deref()).await?;
            for organization in &page.data {
                store::upsert_organization(conn, organization, &Version::of_object(organization.updated_at)).await?;
                listed_organizations.push(organization.id.clone());
                let mut members_after: Option<String> = None;
                let mut members_complete = false;
                for _ in 0..self.options.max_reconcile_pages {
                    let members = workos
                        .list_memberships(MembershipsOf::Organization(&organization.id), members_after.as_deref())
                        .await?;
                    for membership in &members.data {
                        store::upsert_membership(conn, membership, &Version::of_object(membership.updated_at)).await?;
                        listed_memberships.push(membership.id.clone());
                    }
                    match members.list_metadata.after {
                        Some(next) if !members.data.is_empty() => members_after = Some(next),
                        _ => {
                            members_complete = true;
                            break;
                        }
                    }
                }
                memberships_complete &= members_complete;
            }
            match page.list_metadata.after {
                Some(next) if !page.data.is_empty() => after = Some(next),
                _ => {
                    complete = true;
                    break;
                }
            }
        }
        let organizations = listed_organizations.len();
        if !(complete && memberships_complete) {
            tracing::warn!(
                organizations,
                "read organizations and memberships from WorkOS, but the listing was cut short at its page limit; \
                 nothing it did not list is ended"
            );
            return Ok(());
        }
        let ended_memberships =
            self.lifecycle.end_left_out(conn, Listing::Memberships, &listed_memberships, changed_before).await?;
        let ended_organizations =
            self.lifecycle.end_left_out(conn, Listing::Organizations, &listed_organizations, changed_before).await?;
        tracing::info!(
            organizations,
            memberships = listed_memberships.len(),
            ended_organizations,
            ended_memberships,
            "read the current organizations and memberships from WorkOS; those it no longer lists are ended"
        );
        Ok(())
    }
}

/// How much older than the reconciliation's start a row must be for it to be ended as not listed.
fn reconcile_margin() -> time::Duration {
    time::Duration::try_from(super::sync::SWEEP_MARGIN).unwrap_or(time::Duration::MINUTE)
}

/// Whether a database error will come back however often the same event is applied: see [`lasting_sqlstate`].
fn lasting(error: &sqlx::Error) -> bool {
    let Some(database) = error.as_database_error() else { return false };
    database.code().is_some_and(|code| lasting_sqlstate(&code))
}

/// Whether a SQLSTATE says the event's own data is at fault, so that no retry can apply it: class 22 (data
/// exception: a value the column cannot hold, such as a NUL byte in text), class 23 (integrity constraint
/// violation: a check or foreign key the data breaks) and 54000 (program limit exceeded: a value too large to
/// store). Everything else is retried without end, because it may be the database's or an operator's state, which
/// can be put right without losing the event: 42 (a missing privilege, table or column: a migration or grant
/// pending), 25 (a read-only transaction: a failover under way), XX (internal error), and the connection,
/// conflict and resource classes (08, 40, 53, 55, 57, 58).
fn lasting_sqlstate(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23") || code == "54000"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_are_counted_per_event() {
        let start = Instant::now();
        let later = start + Duration::from_secs(60);
        let first = Failing::next(None, "event_a", start);
        assert_eq!((first.failures, first.since), (1, start));
        let again = Failing::next(Some(&first), "event_a", later);
        assert_eq!((again.failures, again.since), (2, start), "the same event: one more, since its first failure");
        let other = Failing::next(Some(&again), "event_b", later);
        assert_eq!(
            (other.event_id.as_str(), other.failures, other.since),
            ("event_b", 1, later),
            "another starts at 1"
        );
    }

    #[test]
    fn a_poll_is_logged_when_it_applied_or_rejected_events_only() {
        let report = |applied, duplicates, ignored, rejected| PollReport {
            leader: true,
            reconciled: false,
            pages: 1,
            applied,
            duplicates,
            ignored,
            rejected,
            more: false,
        };
        assert!(!report(0, 0, 0, 0).changed_anything(), "an idle poll");
        assert!(!report(0, 3, 2, 0).changed_anything(), "duplicates and ignored types change nothing");
        assert!(report(1, 0, 0, 0).changed_anything());
        assert!(report(0, 0, 0, 1).changed_anything());
        assert!(report(2, 0, 0, 1).changed_anything());
    }

    /// The documented floor: an operator has at least ten minutes to notice and undo a mistake before an event that
    /// keeps failing is skipped for good.
    #[test]
    fn an_event_fails_for_ten_minutes_at_least_before_it_is_rejected() {
        assert!(MIN_FAILING_FOR >= Duration::from_secs(600), "{MIN_FAILING_FOR:?}");
        assert!(MIN_FAILING_FOR <= Duration::from_secs(3600), "and not for hours: {MIN_FAILING_FOR:?}");
        assert_eq!(
            ConsumerOptions::every(Duration::from_secs(5), Duration::from_secs(10)).reject_after,
            MIN_FAILING_FOR,
            "in service"
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_honours_retry_after() {
        let options = ConsumerOptions {
            poll_interval: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            reject_after: MIN_FAILING_FOR,
            max_pages_per_poll: MAX_PAGES_PER_POLL,
            max_reconcile_pages: MAX_RECONCILE_PAGES,
            hung_after: Duration::from_secs(600),
        };
        for (failures, low) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let wait = options.backoff(failures, None);
            let low = Duration::from_secs(low);
            assert!(wait >= low && wait <= low.mul_f64(1.25), "attempt {failures}: {wait:?}");
        }
        assert!(options.backoff(1, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
    }

    #[test]
    fn only_errors_about_the_data_itself_are_lasting() {
        // An operator's or the database's state: put right, the event applies, so it must never be skipped.
        for code in ["42501", "42P01", "42703", "XX000", "25006", "08006", "40001", "53300", "55P03", "57014", "58030"]
        {
            assert!(!lasting_sqlstate(code), "{code} was taken as lasting");
        }
        // The event's data: no retry will apply it.
        for code in ["22P05", "23514", "22021", "23505", "54000"] {
            assert!(lasting_sqlstate(code), "{code} was not taken as lasting");
        }
        assert!(!lasting_sqlstate("54001"), "statement too complex is not about the event's values");
        assert!(!lasting_sqlstate(""));
    }
}
