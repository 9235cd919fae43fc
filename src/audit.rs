//! The paper trail: Audit Log events for the customer (sent to WorkOS, which shows them to the organization's
//! admins in the Admin Portal), and the record of what impersonated sessions did.
//!
//! Never on a request's critical path. A request that changes something in an organization writes its event to an
//! outbox table in authbridge's private schema (`authbridge.audit_log_outbox`) and goes on; [`AuditDeliverer`]
//! sends the rows to `POST /audit_logs/events` in the background, each with the `Idempotency-Key` it was given
//! when it was written, retrying with backoff (1 s, doubling, up to 5 min) while WorkOS is unreachable. An outage
//! therefore loses no event and slows no request, and a resend after a lost answer is the same event to WorkOS.
//! Several replicas may deliver: a row is claimed (`FOR UPDATE SKIP LOCKED`, then leased by moving its next
//! attempt ahead) before it is sent, so two replicas never send it at once. WorkOS refusing an event for good (a
//! 4xx other than 401/403/404/408/409/429, e.g. an action not configured in its dashboard, or WorkOS's own 404
//! "Organization not found") marks the row failed and logs it. A 429 ends the pass: the other due rows wait for
//! its `Retry-After`. An event is given up only 23 hours after an attempt that may have reached WorkOS (WorkOS
//! keeps an idempotency key 24 hours); one WorkOS only ever refused before recording it (a wrong API key) is
//! retried until it goes, with an error logged every 15 minutes once it is an hour old.
//!
//! Each request of an impersonated session is written to `authbridge.impersonation_audit` (time, impersonator,
//! user, method, path, status), together with its Audit Log event when the session is in an organization, in one
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::workos::{WorkosError, is_organization_refusal};

/// What did it: a user (and the support staff impersonating them, when that is the case).
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub impersonator: Option<String>,
}

/// What it was done to.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: &'static str,
    pub id: String,
    pub name: Option<String>,
}

/// Where the request came from, as WorkOS's `context` has it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The client's IP address: the peer's, or behind proxies in `TRUSTED_PROXIES` the client they name.
    pub location: String,
    pub user_agent: Option<String>,
}

/// One request of an impersonated session.
#[derive(Debug, Clone)]
pub struct ImpersonatedRequest {
    pub impersonator: String,
    pub reason: Option<String>,
    pub user_id: String,
    pub user_name: String,
    pub session_id: Option<String>,
    pub organization_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub context: RequestContext,
}

/// Writes audit events (the outbox) and impersonation records; wakes the deliverer.
pub struct AuditTrail {
    lifecycle: Arc<Lifecycle>,
    /// `WORKOS_AUDIT_LOG_VERSIONS`: the schema version each action's events name, when not 1.
    versions: HashMap<String, u32>,
    wake: Arc<Notify>,
    /// The events being queued by tasks of their own ([`AuditTrail::queue`]), for [`AuditTrail::drain`].
    queueing: TaskTracker,
}

/// Every action authbridge records, as operators configure them in the WorkOS dashboard (README).
pub const ACTIONS: [&str; 8] = [
    "todo.created",
    "todo.renamed",
    "todo.completed",
    "todo.reopened",
    "todo.deleted",
    "organization.switched",
    "user.signed_in",
    "user.impersonated_request",
];

/// The `event` object WorkOS receives (docs/workos.md §7.2), validated against version `version` of its action's
/// schema.
pub fn event(action: &str, version: u32, actor: &Actor, targets: &[Target], context: &RequestContext) -> Value {
    // As the SDKs send it: WorkOS does not document taking more than milliseconds.
    let occurred_at = crate::workos::sdk_time(OffsetDateTime::now_utc()).unwrap_or_default();
    let mut actor_json = json!({ "type": "user", "id": actor.id, "name": actor.name });
    if let Some(impersonator) = &actor.impersonator {
        // WorkOS refuses a metadata value over 500 characters (docs `/audit-logs/metadata-schema`), and would refuse
        // the whole event for it.
        let impersonator: String = impersonator.chars().take(500).collect();
        actor_json["metadata"] = json!({ "impersonator": impersonator });
    }
    let targets: Vec<Value> = targets
        .iter()
        .map(|target| {
            let mut value = json!({ "type": target.kind, "id": target.id });
            if let Some(name) = &target.name {
                // WorkOS limits names; a todo title can be 500 characters.
                value["name"] = Value::String(name.chars().take(200).collect());
            }
            value
        })
        .collect();
    let mut context_json = json!({ "location": context.location });
    if let Some(user_agent) = &context.user_agent {
        context_json["user_agent"] = Value::String(user_agent.chars().take(500).collect());
    }
    json!({
        "action": action, "occurred_at": occurred_at, "version": version,
        "actor": actor_json, "targets": targets, "context": context_json,
    })
}

impl AuditTrail {
    pub fn new(lifecycle: Arc<Lifecycle>, versions: HashMap<String, u32>) -> Self {
        Self { lifecycle, versions, wake: Arc::new(Notify::new()), queueing: TaskTracker::new() }
    }

    fn version_of(&self, action: &str) -> u32 {
        self.versions.get(action).copied().unwrap_or(1)
    }

    /// Queues an event (as [`AuditTrail::record_with_key`], a failure logged) by a task of its own, which goes on
    /// when the returned handle is dropped, so that the request can stop waiting for a slow database while the
    /// event is still written. [`AuditTrail::drain`] waits for these tasks when the server stops.
    pub fn queue(
        self: &Arc<Self>,
        key: uuid::Uuid,
        organization_id: String,
        action: String,
        actor: Actor,
        targets: Vec<Target>,
        context: RequestContext,
    ) -> tokio::task::JoinHandle<()> {
        let trail = Arc::clone(self);
        let queue = async move {
            if let Err(error) = trail.record_with_key(key, &organization_id, &action, &actor, &targets, &context).await
            {
                tracing::error!(%error, action, "could not queue an audit log event");
            }
        };
        self.queueing.spawn(queue.instrument(tracing::Span::current()))
    }

    /// Waits, at most `within`, for the events still being queued: called when the server has stopped, so that a
    /// deploy does not lose the record of a change made just before it. False when some were still unwritten.
    pub async fn drain(&self, within: Duration) -> bool {
        self.queueing.close();
        tokio::time::timeout(within, self.queueing.wait()).await.is_ok()
    }

    /// The deliverer for this trail's outbox, woken whenever an event is written.
    pub fn deliverer(&self, options: DelivererOptions) -> AuditDeliverer {
        AuditDeliverer {
            lifecycle: Arc::clone(&self.lifecycle),
            wake: Arc::clone(&self.wake),
            options,
            alarm: Alarm::default(),
        }
    }

    /// Queues an Audit Log event for `organization_id` under the idempotency key `key`: a fresh one, or for an
    /// event that happens once however often it is recorded, [`once_key`] (a second record with the same key is not
    /// queued, and a resend after its row has gone is the same event to WorkOS). A failure is the caller's to log:
    /// what the user did has happened, and they must not be told otherwise.
    pub async fn record_with_key(
        &self,
        key: uuid::Uuid,
        organization_id: &str,
        action: &str,
        actor: &Actor,
        targets: &[Target],
        context: &RequestContext,
    ) -> Result<(), LifecycleError> {
        let event = event(action, self.version_of(action), actor, targets, context);
        let mut conn = self.lifecycle.database().pool().acquire().await?;
        insert_outbox(&mut conn, key, organization_id, &event).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Records one request of an impersonated session, and its Audit Log event when it happened in an organization.
    pub async fn record_impersonated_request(&self, request: &ImpersonatedRequest) -> Result<(), LifecycleError> {
        let mut tx = self.lifecycle.database().pool().begin().await?;
        sqlx::query(
            "INSERT INTO authbridge.impersonation_audit \
                 (impersonator, reason, user_id, session_id, method, path, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&request.impersonator)
        .bind(&request.reason)
        .bind(&request.user_id)
        .bind(&request.session_id)
        .bind(&request.method)
        .bind(&request.path)
        .bind(i16::try_from(request.status).unwrap_or(i16::MAX))
        .execute(&mut *tx)
        .await?;
        if let Some(organization_id) = &request.organization_id {
            let actor = Actor {
                id: request.user_id.clone(),
                name: request.user_name.clone(),
                impersonator: Some(request.impersonator.clone()),
            };
            let target = Target {
                kind: "request",
                id: format!("{} {}", request.method, request.path),
                name: Some(format!("{} {} → {}", request.method, request.path, request.status)),
            };
            let action = "user.impersonated_request";
            let event = event(action, self.version_of(action), &actor, &[target], &request.context);
            insert_outbox(&mut tx, uuid::Uuid::new_v4(), organization_id, &event).await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The idempotency key of an event that can only happen once to its target (a todo is created once): the same for
/// every record of it, so that a create sent again by its caller is not a second event. `occurrence` tells apart
/// two lives of one id (a todo created, deleted, and created again with the same caller-chosen id: its
/// `created_at`), so that the second is an event of its own. A version 8 UUID from SHA-256 over the four.
pub fn once_key(organization_id: &str, action: &str, target_id: &str, occurrence: &str) -> uuid::Uuid {
    use aws_lc_rs::digest::{SHA256, digest};
    // NUL cannot occur in any of the four (ids, actions and times are ours or WorkOS's), so the parts cannot run
    // together.
    let input = format!("authbridge audit event\0{organization_id}\0{action}\0{target_id}\0{occurrence}");
    let hash = digest(&SHA256, input.as_bytes());
    // SHA-256 is 32 bytes, so the first 16 are always there.
    let bytes = hash.as_ref().first_chunk::<16>().copied().unwrap_or_default();
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

async fn insert_outbox(
    conn: &mut sqlx::PgConnection,
    key: uuid::Uuid,
    organization_id: &str,
    event: &Value,
) -> Result<(), sqlx::Error> {
    // A key already queued is the same event (`once_key`): nothing to add. Random keys never meet.
    sqlx::query(
        "INSERT INTO authbridge.audit_log_outbox (idempotency_key, organization_id, event) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(organization_id)
    .bind(event)
    .execute(conn)
    .await?;
    Ok(())
}

/// How the deliverer paces itself.
#[derive(Debug, Clone, Copy)]
pub struct DelivererOptions {
    /// The wait after a row's first failed attempt; it doubles with each further one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the outbox is looked at when nothing wakes the deliverer.
    pub poll_interval: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// How long a claimed row is left alone by other deliverers: at least twice as long as one send can take (a
    /// batch stops starting sends once half of it is gone).
    pub lease: Duration,
}

impl Default for DelivererOptions {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            batch: 20,
            lease: Duration::from_secs(60),
        }
    }
}

impl DelivererOptions {
    /// The lease for sends that may each take up to `send_timeout`: at least twice that and a margin (a batch starts
    /// sends only while half the lease is left), and never shorter than this one.
    pub fn lease_for(&self, send_timeout: Duration) -> Duration {
        self.lease.max(send_timeout.saturating_mul(2) + Duration::from_secs(10))
    }

    /// The wait after the `attempts`-th failed attempt.
    pub fn backoff(&self, attempts: i32) -> Duration {
        doubling(self.initial_backoff, u32::try_from(attempts).unwrap_or(0), self.max_backoff)
    }
}

/// `first` after the first time, twice as long after each further one, never more than `max`.
fn doubling(first: Duration, times: u32, max: Duration) -> Duration {
    let doublings = times.saturating_sub(1).min(20);
    first.saturating_mul(1 << doublings).min(max)
}

/// Longest wait between two looks at an outbox that could not be read.
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(30);

/// The wait after the `failures`-th look in a row at an outbox that could not be read: the poll interval,
/// doubling, up to [`MAX_OUTAGE_PAUSE`].
fn outage_pause(poll_interval: Duration, failures: u32) -> Duration {
    doubling(poll_interval, failures, MAX_OUTAGE_PAUSE)
}

/// What the deliverer waits for before its next look at the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextLook {
    /// The poll interval, or less when an event is written.
    Poll(Duration),
    /// The outbox could not be read: this long, whatever is written meanwhile. The database is down (or refusing),
    /// and asking again every second, and at every new event, would only fill the log; the events wait in the
    /// outbox meanwhile, or in the request that writes them.
    After(Duration),
}

/// The looks in a row at an outbox that could not be read.
#[derive(Debug, Default)]
struct Outage {
    failures: u32,
}

impl Outage {
    /// After a look that read the outbox (`read`) or could not.
    fn next_look(&mut self, poll_interval: Duration, read: bool) -> NextLook {
        if read {
            self.failures = 0;
            return NextLook::Poll(poll_interval);
        }
        self.failures = self.failures.saturating_add(1);
        NextLook::After(outage_pause(poll_interval, self.failures))
    }
}

/// Sends the outbox to WorkOS in the background.
pub struct AuditDeliverer {
    lifecycle: Arc<Lifecycle>,
    wake: Arc<Notify>,
    options: DelivererOptions,
    /// Telling the operator (at error level) that events have been undelivered for long: the events WorkOS refuses
    /// for certain are retried without end, so the alarm is repeated, but not at every pass.
    alarm: Alarm,
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// One claimed outbox row: id, key, organization, event, attempts (this one included), and whether it was written
/// more than [`ALARM_AFTER`] ago.
type Claimed = (i64, uuid::Uuid, String, Value, i32, bool);

impl AuditDeliverer {
    /// Delivers until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut outage = Outage::default();
        loop {
            let pass = self.deliver_due().await;
            let next = outage.next_look(self.options.poll_interval, pass.is_ok());
            match (&pass, &next) {
                (Ok(pass), _) if pass.delivered + pass.retrying + pass.failed > 0 => {
                    tracing::debug!(?pass, "audit log outbox pass");
                }
                (Err(error), NextLook::After(retry_in)) => {
                    tracing::warn!(%error, ?retry_in, "could not read the audit log outbox; will try again");
                }
                _ => {}
            }
            match next {
                NextLook::Poll(interval) => tokio::select! {
                    () = &mut shutdown => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                },
                NextLook::After(pause) => tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(pause) => {}
                },
            }
        }
    }

    /// Claims the rows that are due, sends each once, and records the outcome.
    pub async fn deliver_due(&self) -> Result<Delivery, LifecycleError> {
        let pool = self.lifecycle.database().pool();
        let mut pass = Delivery::default();
        // Past WorkOS's idempotency window a send that went through unseen would be recorded a second time: an event
        // an earlier attempt may have delivered is given up first (an operator sees the error, and the row keeps the
        // event). The window counts from that attempt (or one still marked in flight: its deliverer stopped
        // mid-send), not from the row's creation: an event WorkOS only ever refused cannot be recorded twice.
        let expired: Vec<(i64, Option<String>)> = sqlx::query_as(
            "UPDATE authbridge.audit_log_outbox SET failed_at = now(), last_error = $2, sending_at = NULL \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
               AND LEAST(maybe_sent_at, sending_at) < now() - make_interval(secs => $1) \
             RETURNING id, event->>'action'",
        )
        .bind(SEND_WITHIN.as_secs_f64())
        .bind(GIVEN_UP)
        .fetch_all(pool)
        .await?;
        for (id, action) in &expired {
            tracing::error!(outbox_id = id, action = action.as_deref().unwrap_or("?"), "{GIVEN_UP}");
        }
        pass.failed += expired.len();
        // A row still marked in flight when it is claimed again had an attempt whose outcome was never recorded:
        // it may have reached WorkOS, so it counts as one. A row is marked in flight just before its own send, not
        // when the batch is claimed: a deliverer stopped mid-batch leaves the rows it never sent unmarked.
        let claimed: Vec<Claimed> = sqlx::query_as(
            "UPDATE authbridge.audit_log_outbox SET attempts = attempts + 1, \
                 next_attempt_at = now() + make_interval(secs => $2), \
                 maybe_sent_at = COALESCE(maybe_sent_at, sending_at), sending_at = NULL \
             WHERE id IN (SELECT id FROM authbridge.audit_log_outbox \
                          WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
                          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, idempotency_key, organization_id, event, attempts, \
                 created_at < now() - make_interval(secs => $3)",
        )
        .bind(self.options.batch)
        .bind(self.options.lease.as_secs_f64())
        .bind(ALARM_AFTER.as_secs_f64())
        .fetch_all(pool)
        .await?;
        let claimed_at = Instant::now();
        let mut unsent = Vec::new();
        // Set by a 429: the rest of the batch, and every other due row, waits this long.
        let mut rate_limited: Option<Duration> = None;
        // Events undelivered for long, and why the last of them was not delivered: for the operator.
        let mut overdue: Option<(usize, String)> = None;
        // Each write about a claimed row names the claim (`attempts` as it left it): a deliverer that stalled past its
        // lease (a stopped process) must not, when it resumes, write over a row another replica claimed since,
        // and perhaps delivered.
        let mut rows = claimed.into_iter();
        while let Some((id, key, organization_id, event, attempts, old)) = rows.next() {
            if !may_still_send(claimed_at, Instant::now(), self.options.lease) {
                unsent.push((id, attempts));
                continue;
            }
            let still_ours = sqlx::query(
                "UPDATE authbridge.audit_log_outbox SET sending_at = now() WHERE id = $1 AND attempts = $2 \
                 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(id)
            .bind(attempts)
            .execute(pool)
            .await?
            .rows_affected()
                == 1;
            if !still_ours {
                continue;
            }
            let sent = self.lifecycle.workos().create_audit_log_event(&organization_id, &event, &key.to_string()).await;
            let Err(error) = sent else {
                sqlx::query(
                    "UPDATE authbridge.audit_log_outbox \
                     SET delivered_at = now(), last_error = NULL, sending_at = NULL WHERE id = $1 AND attempts = $2",
                )
                .bind(id)
                .bind(attempts)
                .execute(pool)
                .await?;
                pass.delivered += 1;
                continue;
            };
            let outcome = outcome(&error);
            if outcome == Outcome::Permanent {
                tracing::warn!(%error, action = %event["action"], "WorkOS refused an audit log event; it will not be retried");
                sqlx::query(
                    "UPDATE authbridge.audit_log_outbox \
                     SET failed_at = now(), last_error = $2, sending_at = NULL \
                     WHERE id = $1 AND attempts = $3 AND delivered_at IS NULL",
                )
                .bind(id)
                .bind(error.to_string())
                .bind(attempts)
                .execute(pool)
                .await?;
                pass.failed += 1;
                continue;
            }
            let wait = match &error {
                // Capped like the backoff: one answer must not park the outbox for hours, past the 23 hours after
                // which an event that may have gone through is given up.
                WorkosError::RateLimited { retry_after: Some(after) } => (*after).min(self.options.max_backoff),
                _ => self.options.backoff(attempts),
            };
            tracing::info!(%error, attempts, retry_in_ms = wait.as_millis() as u64, "audit log event not delivered yet");
            // The attempt's own start (`sending_at`) is when it may have reached WorkOS.
            sqlx::query(
                "UPDATE authbridge.audit_log_outbox \
                 SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3, \
                     maybe_sent_at = CASE WHEN $4 THEN COALESCE(maybe_sent_at, sending_at, now()) \
                                          ELSE maybe_sent_at END, \
                     sending_at = NULL \
                 WHERE id = $1 AND attempts = $5 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(id)
            .bind(wait.as_secs_f64())
            .bind(error.to_string())
            .bind(outcome == Outcome::MaybeRecorded)
            .bind(attempts)
            .execute(pool)
            .await?;
            pass.retrying += 1;
            if old {
                let count = overdue.as_ref().map_or(0, |(count, _)| *count);
                overdue = Some((count + 1, error.to_string()));
            }
            if matches!(error, WorkosError::RateLimited { .. }) {
                // Every further send of this pass would be refused too, and would count against the limit.
                rate_limited = Some(wait);
                unsent.extend(rows.by_ref().map(|row| (row.0, row.4)));
                break;
            }
        }
        if !unsent.is_empty() {
            // Due again (at once, or after a rate limit), for this deliverer's next pass or another replica's, and
            // not counted as tried.
            let (ids, attempts): (Vec<i64>, Vec<i32>) = unsent.into_iter().unzip();
            sqlx::query(
                "UPDATE authbridge.audit_log_outbox \
                 SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts - 1, sending_at = NULL \
                 WHERE (id, attempts) IN (SELECT * FROM unnest($1::bigint[], $3::int[])) \
                   AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(&ids)
            .bind(rate_limited.unwrap_or_default().as_secs_f64())
            .bind(&attempts)
            .execute(pool)
            .await?;
        }
        if let Some(wait) = rate_limited {
            // The limit is the API key's, not the batch's: the due rows this pass did not claim wait too, or the next
            // pass would spend another request on a refusal. Rows another deliverer holds are left to it.
            sqlx::query(
                "UPDATE authbridge.audit_log_outbox SET next_attempt_at = now() + make_interval(secs => $1) \
                 WHERE id IN (SELECT id FROM authbridge.audit_log_outbox \
                              WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
                              FOR UPDATE SKIP LOCKED)",
            )
            .bind(wait.as_secs_f64())
            .execute(pool)
            .await?;
        }
        if let Some((count, error)) = overdue
            && self.alarm.due(Instant::now())
        {
            tracing::error!(
                events = count,
                %error,
                "audit log events have been undelivered for over an hour and are still being retried; \
                 the customer's Audit Logs lack them until WorkOS accepts them (check WORKOS_API_KEY)"
            );
        }
        for (outcome, count) in [("delivered", pass.delivered), ("retrying", pass.retrying), ("failed", pass.failed)] {
            if count > 0 {
                metrics::counter!("authbridge_audit_log_events_total", "outcome" => outcome).increment(count as u64);
            }
        }
        Ok(pass)
    }
}

/// How long an event is sent (and sent again) at most after an attempt that may have reached WorkOS. WorkOS keeps
/// an `Idempotency-Key` 24 hours ("the API will generate a new response if you submit a request with an expired
/// key", its SDKs' `createEvent`, workos-node src/audit-logs/audit-logs.ts); an hour is left for a send in flight
/// and the clocks.
const SEND_WITHIN: Duration = Duration::from_secs(23 * 3600);
const GIVEN_UP: &str = "an audit log event that may have reached WorkOS was still undelivered 23 hours later and \
    was given up: WorkOS forgets its Idempotency-Key after 24, and a later send could record it twice";
/// An event still undelivered this long after it was written is worth an operator's attention.
const ALARM_AFTER: Duration = Duration::from_secs(3600);
/// How often that alarm is repeated while such events remain.
const ALARM_EVERY: Duration = Duration::from_secs(15 * 60);

/// An alarm raised at most once every [`ALARM_EVERY`]: remembers when it last went off.
#[derive(Default)]
struct Alarm {
    last: std::sync::Mutex<Option<Instant>>,
}

impl Alarm {
    /// Whether to raise the alarm at `now` (and, if so, note that it was).
    fn due(&self, now: Instant) -> bool {
        let mut last = crate::sync::lock(&self.last);
        let due = last.is_none_or(|last| now.saturating_duration_since(last) >= ALARM_EVERY);
        if due {
            *last = Some(now);
        }
        due
    }
}

/// What a failed attempt means for its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// WorkOS refused the event itself: sending it again cannot change that. Kept as failed, not retried.
    Permanent,
    /// Refused before WorkOS could record it: sending it again is safe however late, so it is never given up.
    NotRecorded,
    /// WorkOS may have recorded it: sending it again is safe only while WorkOS remembers its key.
    MaybeRecorded,
}

fn outcome(error: &WorkosError) -> Outcome {
    match error {
        // WorkOS's own "no such organization": no later send goes elsewhere. Any other 404 (a proxy's, a wrong
        // WORKOS_API_BASE_URL path) says nothing about the event and never reached the endpoint.
        WorkosError::Rejected { status: 404, code, message } if is_organization_refusal(404, code, message) => {
            Outcome::Permanent
        }
        // 401/403: our API key, checked before anything is recorded (rotated or wrong, it can be fixed). 408: the
        // server did not receive the whole request (RFC 9110 §15.5.9), so it cannot have acted on it.
        WorkosError::Rejected { status: 401 | 403 | 404 | 408, .. } => Outcome::NotRecorded,
        // A conflict over the key is another request with it (an earlier attempt) still being processed.
        WorkosError::Rejected { status: 409, .. } => Outcome::MaybeRecorded,
        // Any other 4xx: WorkOS judged the event (e.g. an action not configured in its dashboard).
        WorkosError::Rejected { status: 400..=499, .. } => Outcome::Permanent,
        // Anything else unsuccessful that is not a 5xx is a redirect, which is not followed: WorkOS's API does not
        // redirect, so it came from something in between (an `http://` WORKOS_API_BASE_URL, a proxy) and the event
        // never reached the endpoint. Fixable, like a wrong key.
        WorkosError::Rejected { .. } => Outcome::NotRecorded,
        // A rate limit is checked before the request is acted on; a connection refused carried nothing; the
        // sign-in answers are 4xx refusals this endpoint does not give, acted on by nothing.
        WorkosError::RateLimited { .. }
        | WorkosError::Connect(_)
        | WorkosError::InvalidGrant { .. }
        | WorkosError::OrganizationSelectionRequired(_)
        | WorkosError::OrganizationAuthRequired { .. } => Outcome::NotRecorded,
        // No answer in time, a 5xx or a connection broken mid-request, a 2xx that could not be read.
        WorkosError::Timeout | WorkosError::Unavailable { .. } | WorkosError::Broken(_) | WorkosError::Malformed(_) => {
            Outcome::MaybeRecorded
        }
    }
}

/// Whether a row of a batch claimed at `claimed` may still be sent at `now`. The batch shares one lease but its rows
/// go out one after another, so a slow WorkOS could make the last ones outlive it, and another replica would then
/// claim and send them too. A send starts only while half the lease is left: it is bounded by the WorkOS request
/// timeout, and the lease is at least twice that ([`DelivererOptions::lease_for`]), so it ends while the row is still
/// this deliverer's.
fn may_still_send(claimed: Instant, now: Instant, lease: Duration) -> bool {
    now.saturating_duration_since(claimed) < lease / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbox that cannot be read is looked at again after the poll interval, then twice as long each time, up to
    /// half a minute: an outage is not logged every second by every replica.
    #[test]
    fn an_unreadable_outbox_is_asked_less_and_less_often() {
        let poll = Duration::from_secs(1);
        let pauses: Vec<u64> = (1..=7).map(|failures| outage_pause(poll, failures).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(outage_pause(poll, u32::MAX), MAX_OUTAGE_PAUSE, "no overflow");
        assert_eq!(outage_pause(Duration::from_millis(50), 1), Duration::from_millis(50));
    }

    /// After a look that read the outbox: the poll interval, or an event written; after looks that could not: ever
    /// longer pauses that no event cuts short, until a look reads it again.
    #[test]
    fn after_an_unreadable_outbox_the_next_look_waits_longer_each_time_until_one_reads_it() {
        let poll = Duration::from_secs(1);
        let mut outage = Outage::default();
        let looks: Vec<NextLook> =
            [true, false, false, false, true, false].map(|read| outage.next_look(poll, read)).into();
        let after = |seconds| NextLook::After(Duration::from_secs(seconds));
        assert_eq!(looks, [NextLook::Poll(poll), after(1), after(2), after(4), NextLook::Poll(poll), after(1)]);
    }

    #[test]
    fn the_lease_outlives_two_sends_of_the_longest_request_timeout() {
        let options = DelivererOptions::default();
        assert_eq!(options.lease_for(Duration::from_secs(10)), Duration::from_secs(60), "the default covers 10 s");
        assert_eq!(options.lease_for(Duration::from_secs(600)), Duration::from_secs(1210));
        assert!(may_still_send(Instant::now(), Instant::now(), options.lease_for(Duration::ZERO)));
    }

    #[test]
    fn a_claimed_row_is_sent_only_while_half_its_lease_is_left() {
        let claimed = Instant::now();
        let lease = Duration::from_secs(60);
        assert!(may_still_send(claimed, claimed, lease));
        assert!(may_still_send(claimed, claimed + Duration::from_millis(29_999), lease));
        assert!(!may_still_send(claimed, claimed + Duration::from_secs(30), lease), "half the lease gone: stop");
        assert!(!may_still_send(claimed, claimed + Duration::from_secs(61), lease));
    }

    #[test]
    fn an_event_that_happens_once_has_one_key() {
        let key = once_key("org_1", "todo.created", "6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t1");
        assert_eq!(key, once_key("org_1", "todo.created", "6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t1"));
        assert_eq!(key.get_version_num(), 8);
        assert_ne!(key, once_key("org_2", "todo.created", "6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t1"));
        assert_ne!(key, once_key("org_1", "todo.deleted", "6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t1"));
        assert_ne!(key, once_key("org_1", "todo.created", "7f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t1"));
        assert_ne!(key, once_key("org_1", "todo.created", "6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c", "t2"));
    }

    fn rejected(status: u16, code: &str, message: &str) -> WorkosError {
        WorkosError::Rejected { status, code: code.to_owned(), message: message.to_owned() }
    }

    #[test]
    fn only_workos_refusing_the_event_itself_is_permanent() {
        assert_eq!(outcome(&rejected(400, "invalid_audit_log_event", "Invalid Audit Log event.")), Outcome::Permanent);
        assert_eq!(outcome(&rejected(422, "unknown", "Validation failed.")), Outcome::Permanent);
        // WorkOS's own answer for an organization it does not know (code-less, or with its code).
        assert_eq!(outcome(&rejected(404, "unknown", "Organization not found: 'org_1'.")), Outcome::Permanent);
        assert_eq!(outcome(&rejected(404, "organization_not_found", "Not Found")), Outcome::Permanent);
        // A proxy's 404 or a wrong WORKOS_API_BASE_URL path: the endpoint was never reached.
        assert_eq!(outcome(&rejected(404, "unknown", "404 Not Found")), Outcome::NotRecorded);
        assert_eq!(outcome(&rejected(404, "entity_not_found", "Not Found")), Outcome::NotRecorded);
    }

    #[test]
    fn refusals_before_workos_could_record_the_event_are_told_from_unclear_outcomes() {
        for status in [401, 403, 408] {
            assert_eq!(outcome(&rejected(status, "unknown", "no")), Outcome::NotRecorded, "{status}");
        }
        assert_eq!(outcome(&WorkosError::RateLimited { retry_after: None }), Outcome::NotRecorded);
        assert_eq!(outcome(&WorkosError::Connect(String::new())), Outcome::NotRecorded);
        assert_eq!(outcome(&rejected(409, "conflict", "Conflict")), Outcome::MaybeRecorded);
        // A redirect (not followed): from something in front of WorkOS, whose API never redirects.
        for status in [301, 307] {
            assert_eq!(outcome(&rejected(status, "unknown", "Moved")), Outcome::NotRecorded, "{status}");
        }
        assert_eq!(outcome(&WorkosError::Timeout), Outcome::MaybeRecorded);
        assert_eq!(outcome(&WorkosError::Unavailable { status: 500 }), Outcome::MaybeRecorded);
        assert_eq!(outcome(&WorkosError::Unavailable { status: 502 }), Outcome::MaybeRecorded);
        assert_eq!(outcome(&WorkosError::Malformed("not JSON".to_owned())), Outcome::MaybeRecorded);
    }

    #[test]
    fn the_alarm_for_undelivered_events_is_repeated_every_15_minutes() {
        let alarm = Alarm::default();
        let now = Instant::now();
        assert!(alarm.due(now), "the first time");
        assert!(!alarm.due(now), "not at the next pass");
        assert!(!alarm.due(now + Duration::from_secs(14 * 60 + 59)));
        assert!(alarm.due(now + Duration::from_secs(15 * 60)), "15 minutes after it went off");
        assert!(!alarm.due(now + Duration::from_secs(29 * 60)), "counted from when it last went off");
        assert!(alarm.due(now + Duration::from_secs(30 * 60)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = DelivererOptions::default();
        assert_eq!(options.backoff(1), Duration::from_secs(1));
        assert_eq!(options.backoff(2), Duration::from_secs(2));
        assert_eq!(options.backoff(4), Duration::from_secs(8));
        assert_eq!(options.backoff(30), Duration::from_secs(300));
        assert_eq!(options.backoff(0), Duration::from_secs(1));
    }

    /// WorkOS's metadata rules, as the stand-in holds them (50 keys, keys up to 40 characters, flat values of at
    /// most 500 characters), met by every event the app builds, impersonated or not, whatever the impersonator.
    #[test]
    fn every_event_meets_workos_metadata_rules() {
        let context = RequestContext { location: "127.0.0.1".into(), user_agent: Some("Mozilla/5.0".into()) };
        let impersonators = [None, Some("support@example.com".to_owned()), Some(format!("{}@x.test", "é".repeat(600)))];
        for impersonator in impersonators {
            // Every action the README has operators configure, with each of its target types.
            for (action, kinds) in standins::workos_standin::CONFIGURED_AUDIT_LOG_SCHEMAS {
                let actor = Actor { id: "user_1".into(), name: "Alice".into(), impersonator: impersonator.clone() };
                let targets: Vec<Target> =
                    kinds.iter().map(|kind| Target { kind, id: "t1".into(), name: Some("x".repeat(600)) }).collect();
                let event = event(action, 1, &actor, &targets, &context);
                assert_eq!(standins::workos_standin::audit_metadata_fault(&event), None, "{action}: {event}");
                assert_eq!(event["actor"]["metadata"].is_object(), impersonator.is_some());
            }
        }
    }

    /// The actions operators are told to configure are the ones authbridge records (and accepts in
    /// `WORKOS_AUDIT_LOG_VERSIONS`).
    #[test]
    fn the_recorded_actions_are_the_configured_ones() {
        let configured: Vec<&str> =
            standins::workos_standin::CONFIGURED_AUDIT_LOG_SCHEMAS.iter().map(|(action, _)| *action).collect();
        assert_eq!(configured, ACTIONS);
    }

    #[test]
    fn events_have_workos_shape_and_cut_long_names() {
        let actor = Actor { id: "user_1".into(), name: "Alice".into(), impersonator: Some("s@x.test".into()) };
        let target = Target { kind: "todo", id: "t1".into(), name: Some("x".repeat(600)) };
        let context = RequestContext { location: "127.0.0.1".into(), user_agent: None };
        let event = event("todo.created", 3, &actor, &[target], &context);
        assert_eq!(event["action"], "todo.created");
        assert_eq!(event["version"], 3);
        assert_eq!(event["actor"]["type"], "user");
        assert_eq!(event["actor"]["metadata"]["impersonator"], "s@x.test");
        assert_eq!(event["targets"][0]["name"].as_str().map(str::len), Some(200));
        assert_eq!(event["context"]["location"], "127.0.0.1");
        assert!(event["occurred_at"].as_str().is_some_and(|at| at.ends_with('Z')));
    }
}
