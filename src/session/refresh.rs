//! Refreshing a session's tokens without ever logging a user out by accident.
//!
//! Refresh tokens are single-use (WorkOS always, Auth0 with rotation). When two requests of one browser (two tabs, parallel fetches) arrive with
//! the same near-expiry cookie, a naive implementation refreshes twice: the first wins, the second gets
//! `invalid_grant`, and its response clears the session the first just renewed. This module makes that impossible
//! within one process:
//!
//! - **single flight**: concurrent refreshes of the same token share one call to the provider;
//! - **memo**: the outcome stays available for [`MEMO_TTL`] after the call ends, keyed by a SHA-256 of the old refresh
//!   token (never the token itself), so a request that arrives a moment later with the old cookie receives the new
//!   tokens instead of burning through `invalid_grant`;
//! - **no cancellation**: the provider call runs in its own task, so a browser that gives up mid-request cannot
//!   consume the refresh token and throw away its replacement.
//!
//! - **switches ride along**: switching organization is a refresh scoped to the organization, under the same key,
//!   so a switch and an ordinary refresh of one session never race on its refresh token: a switch that finds a
//!   refresh of its token under way (or just done) waits for it and switches with the refresh token that came out.
//!
//! - **across replicas** (with `DATABASE_URL`): the call goes through [`SharedRefreshes`], so replicas that get the
//!   same cookie at once spend its refresh token once too.
//!
//! - **backoff after a failure**: a refresh that fails for a reason other than the token itself (the provider down,
//!   rate limiting, refusing our credentials) is not memoised as an outcome, but the same refresh token is not tried
//!   again for [`FAILURE_BACKOFF`], or for as long as the provider asked to be left alone when that is longer (its
//!   `Retry-After`, or Auth0's `X-RateLimit-Reset`, at most [`crate::outbound::MAX_RETRY_AFTER`]): during an outage each session asks the provider at most once per backoff
//!   instead of on every request. Meanwhile its requests carry on with the access token they have, or get a 503
//!   with `Retry-After` once it has expired. (Switching organization is not held back: it is one deliberate click.)
//!
//! What is shared is the *verified* new session, and a provider's "this token is dead".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::Session;
use super::provider::{IdentityProvider, ProviderError};
use super::shared_refresh::SharedRefreshes;
use crate::sync::lock;
use crate::token_cache::{Fingerprint, fingerprint};

/// How long a finished refresh is remembered for latecomers holding the old refresh token.
pub const MEMO_TTL: Duration = Duration::from_secs(30);

/// Each hop of a switch follows a refresh token that someone else just spent; a few is more than a browser makes.
const MAX_HOPS: usize = 4;

/// How long a refresh token whose refresh failed for a reason other than the token is not tried again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(2);

/// The wait the provider clients assume when an answer names none: one longer than this can only be the
/// provider's own, and holds a failed refresh back.
const ASSUMED_WAIT: Duration = crate::outbound::ASSUMED_RETRY_AFTER;

type Outcome = Result<Arc<Session>, ProviderError>;

/// A refresh's outcome and when it came: the memo is timed from the end of the call, not its start, so that a slow
/// refresh (the provider's time limit, a key fetch, a membership sync) is remembered for the whole [`MEMO_TTL`] too.
#[derive(Clone)]
struct Finished {
    at: Instant,
    outcome: Outcome,
}

#[derive(Clone)]
pub struct Refresher {
    provider: Arc<IdentityProvider>,
    flights: Arc<Mutex<HashMap<Fingerprint, Flight>>>,
    /// Refresh tokens whose last refresh failed for a reason other than the token, with that failure. Always locked
    /// after `flights` when both are.
    failures: Arc<Mutex<HashMap<Fingerprint, Failure>>>,
    /// With `DATABASE_URL`: the same, across replicas.
    shared: Option<Arc<SharedRefreshes>>,
    /// The refreshes under way, each in a task of its own, for the shutdown to wait for: a refresh cut off after
    /// the provider spent the old token, but before its result was recorded for the other replicas, would sign its
    /// user out (the replica taking the claim over sends the spent token again).
    tasks: TaskTracker,
}

struct Flight {
    id: u64,
    outcome: watch::Receiver<Option<Finished>>,
}

impl Flight {
    /// Finished more than [`MEMO_TTL`] before `now`, or ended without an outcome (its task panicked): kept, such a
    /// flight would answer "unavailable" to every later refresh of the token.
    fn is_stale(&self, now: Instant) -> bool {
        match &*self.outcome.borrow() {
            Some(done) => now.saturating_duration_since(done.at) > MEMO_TTL,
            None => self.outcome.has_changed().is_err(),
        }
    }
}

/// A refresh that failed for a reason other than the token, and when it did.
struct Failure {
    at: Instant,
    error: ProviderError,
}

impl Failure {
    /// Whether the token is still held back from the provider at `now`: for [`FAILURE_BACKOFF`] after the failure, or
    /// for the wait the provider asked for when longer than [`ASSUMED_WAIT`] (a rate limit: asking sooner only
    /// prolongs it, for every application of the tenant).
    fn holds_back(&self, now: Instant) -> bool {
        let asked = match &self.error {
            ProviderError::Unavailable { retry_after } if *retry_after > ASSUMED_WAIT => *retry_after,
            _ => Duration::ZERO,
        };
        now.saturating_duration_since(self.at) < FAILURE_BACKOFF.max(asked)
    }

    /// The failure as a request held back at `now` answers it: a provider's wait counted from the failure, so the
    /// `Retry-After` says what is left of it (at least a second), not the whole wait again.
    fn as_of(&self, now: Instant) -> ProviderError {
        match &self.error {
            ProviderError::Unavailable { retry_after } => ProviderError::Unavailable {
                retry_after: retry_after
                    .saturating_sub(now.saturating_duration_since(self.at))
                    .max(Duration::from_secs(1)),
            },
            other => other.clone(),
        }
    }
}

impl Refresher {
    pub fn new(provider: Arc<IdentityProvider>) -> Self {
        Self { provider, flights: Arc::default(), failures: Arc::default(), shared: None, tasks: TaskTracker::new() }
    }

    /// Shares refreshes with the other replicas through the database.
    pub fn with_shared(mut self, shared: SharedRefreshes) -> Self {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// The verified session `refresh_token` (the refresh token of `session`) turns into, from the provider or from a
    /// refresh of the same token that is under way or just finished.
    pub async fn refresh(&self, refresh_token: &str, session: &Session) -> Outcome {
        let key = fingerprint(refresh_token);
        let mut outcome = {
            let mut flights = lock(&self.flights);
            let now = Instant::now();
            flights.retain(|_, flight| !flight.is_stale(now));
            match flights.get(&key) {
                Some(flight) => {
                    metrics::counter!("authbridge_session_refreshes_total", "event" => "merged").increment(1);
                    flight.outcome.clone()
                }
                None => {
                    if let Some(error) = self.held_back(&key, now) {
                        metrics::counter!("authbridge_session_refreshes_total", "event" => "held_back").increment(1);
                        return Err(error);
                    }
                    metrics::counter!("authbridge_session_refreshes_total", "event" => "started").increment(1);
                    let flight = self.start(key, session.clone(), None);
                    let receiver = flight.outcome.clone();
                    flights.insert(key, flight);
                    receiver
                }
            }
        };
        outcome_of(&mut outcome).await
    }

    /// `session` switched to `organization_id`. Waits for a refresh of the same token under way (or remembered) and
    /// switches with its result; a switch to the same organization under way is shared as it is.
    pub async fn switch(&self, session: &Session, organization_id: &str) -> Outcome {
        let mut current = Arc::new(session.clone());
        for _ in 0..MAX_HOPS {
            let Some(refresh_token) = current.refresh_token.as_deref() else {
                return Err(ProviderError::GrantRejected("the session has no refresh token".to_owned()));
            };
            let key = fingerprint(refresh_token);
            let mut outcome = {
                let mut flights = lock(&self.flights);
                let now = Instant::now();
                flights.retain(|_, flight| !flight.is_stale(now));
                match flights.get(&key) {
                    Some(flight) => flight.outcome.clone(),
                    None => {
                        let flight = self.start(key, Session::clone(&current), Some(organization_id.to_owned()));
                        let receiver = flight.outcome.clone();
                        flights.insert(key, flight);
                        receiver
                    }
                }
            };
            let fresh = outcome_of(&mut outcome).await?;
            if fresh.organization_id.as_deref() == Some(organization_id) {
                return Ok(fresh);
            }
            // Someone refreshed this token first (for another organization, or none; here or on another replica):
            // switch the new one.
            current = fresh;
        }
        Err(ProviderError::Unavailable { retry_after: Duration::from_secs(1) })
    }

    /// What `session` has turned into here since it was made, when its refresh token has been spent already: a switch
    /// that waited for the refresh that made `session` and then spent its token (a hop). A response that carries
    /// `session` but reaches the browser after the switch's would otherwise leave the browser a spent refresh token
    /// (the last `Set-Cookie` wins) and undo the switch on the page; it carries the newest session instead. Only
    /// remembered outcomes count (not past [`MEMO_TTL`]), only new tokens of the same user, each a new refresh token
    /// (a provider that does not rotate them hands back the same one). `None` when nothing here has spent it (the
    /// usual case: one fingerprint and a map lookup). The provider's session as it is: the caller carries the
    /// session's own choices over.
    pub fn newest(&self, session: &Session) -> Option<Arc<Session>> {
        let flights = lock(&self.flights);
        let now = Instant::now();
        let mut newest: Option<Arc<Session>> = None;
        for _ in 0..MAX_HOPS {
            let current = newest.as_deref().unwrap_or(session);
            let Some(token) = current.refresh_token.as_deref() else { break };
            let Some(flight) = flights.get(&fingerprint(token)).filter(|flight| !flight.is_stale(now)) else { break };
            let next = match &*flight.outcome.borrow() {
                Some(Finished { outcome: Ok(next), .. })
                    if next.user.id == session.user.id && next.refresh_token.as_deref() != Some(token) =>
                {
                    Arc::clone(next)
                }
                // Under way, failed, or not a successor: nothing newer to hand out.
                _ => break,
            };
            newest = Some(next);
        }
        newest
    }

    /// Waits, at most `within`, for the refreshes under way and the results still being written for the other
    /// replicas: called when the server has stopped. False when some were still going.
    pub async fn drain(&self, within: Duration) -> bool {
        self.tasks.close();
        if let Some(shared) = &self.shared {
            shared.stop_claiming();
        }
        let shared = self.shared.as_ref().map(|shared| shared.writing().clone());
        let all = async {
            self.tasks.wait().await;
            // After the refreshes: a refresh that meets a blip starts a write as it ends.
            if let Some(writing) = shared {
                writing.close();
                writing.wait().await;
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }

    /// The failure `key`'s last refresh ended in, while it holds the token back at `now`. Forgets failures that no
    /// longer hold anything back, so the map stays as small as the sessions failing right now.
    fn held_back(&self, key: &Fingerprint, now: Instant) -> Option<ProviderError> {
        let mut failures = lock(&self.failures);
        failures.retain(|_, failure| failure.holds_back(now));
        failures.get(key).map(|failure| failure.as_of(now))
    }

    fn start(&self, key: Fingerprint, session: Session, organization_id: Option<String>) -> Flight {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        let provider = Arc::clone(&self.provider);
        let flights = Arc::clone(&self.flights);
        let failures = Arc::clone(&self.failures);
        let shared = self.shared.clone();
        // Within the span of the request that started it, so that what the refresh logs names that request and the
        // session's user (recorded on the request's span only once the session is resolved).
        let span = tracing::info_span!("refresh", user_id = %session.user.id);
        let refresh = async move {
            let call = || async {
                match &organization_id {
                    None => provider.refresh(&session).await,
                    Some(organization_id) => provider.switch_organization(&session, organization_id).await,
                }
            };
            let outcome = match &shared {
                Some(shared) => shared.refresh(&key, call).await,
                None => call().await,
            }
            .map(Arc::new);
            match &outcome {
                Ok(_) => {
                    metrics::counter!("authbridge_session_refreshes_total", "event" => "succeeded").increment(1);
                    tracing::debug!("refreshed a session");
                }
                Err(error) => {
                    metrics::counter!("authbridge_session_refreshes_total", "event" => "failed").increment(1);
                    tracing::info!(%error, "session refresh failed");
                }
            }
            if let Err(error) = &outcome
                && !matches!(error, ProviderError::GrantRejected(_))
            {
                // Remember as an outcome only answers about the token itself (new tokens, or "this token is dead"):
                // any other failure says nothing about it. An ordinary refresh holds the token back for the backoff
                // (recorded before the flight goes, so no request can slip in between); a switch does not.
                let mut flights = lock(&flights);
                if organization_id.is_none() {
                    lock(&failures).insert(key, Failure { at: Instant::now(), error: error.clone() });
                }
                if flights.get(&key).is_some_and(|flight| flight.id == id) {
                    flights.remove(&key);
                }
            }
            // Nobody waiting any more is fine: the memo (or nobody) reads it.
            let _ = sender.send(Some(Finished { at: Instant::now(), outcome }));
        };
        self.tasks.spawn(tracing::Instrument::instrument(refresh, span));
        Flight { id, outcome: receiver }
    }
}

/// The outcome of the flight `outcome` watches, once it has one. A task that died without an answer (it panicked)
/// reports an outage, which keeps the session.
async fn outcome_of(outcome: &mut watch::Receiver<Option<Finished>>) -> Outcome {
    match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.as_ref().map(|finished| finished.outcome.clone()),
        Err(_) => None,
    }
    .unwrap_or(Err(ProviderError::Unavailable { retry_after: Duration::from_secs(5) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, refresh_token: &str, organization: Option<&str>) -> Session {
        Session {
            access_token: "access".to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            user: crate::identity::UserProfile::id_only(user),
            organization_id: organization.map(str::to_owned),
            impersonator: None,
            session_id: None,
            oidc: None,
            personal: false,
        }
    }

    /// A refresher (its provider never called) remembering that each refresh token of `spent` turned into its
    /// outcome, finished `ago`.
    fn remembering(spent: Vec<(&str, Outcome)>, ago: Duration) -> Refresher {
        let refresher = Refresher::new(Arc::new(crate::session::sign_in::tests::provider()));
        let at = Instant::now().checked_sub(ago).expect("a moment in the past");
        for (id, (token, outcome)) in (0..).zip(spent) {
            let (_finished, receiver) = watch::channel(Some(Finished { at, outcome }));
            lock(&refresher.flights).insert(fingerprint(token), Flight { id, outcome: receiver });
        }
        refresher
    }

    #[test]
    fn the_newest_session_follows_spent_refresh_tokens_of_the_same_user_only() {
        let original = session("user_1", "r1", Some("org_a"));
        let switched = Arc::new(session("user_1", "r2", Some("org_b")));
        let refreshed = Arc::new(session("user_1", "r3", Some("org_b")));
        let newest = |refresher: &Refresher| refresher.newest(&original).map(|s| s.refresh_token.clone());

        let nothing = remembering(vec![], Duration::ZERO);
        assert_eq!(newest(&nothing), None, "a token nothing here spent");
        let chain = remembering(vec![("r1", Ok(switched.clone())), ("r2", Ok(refreshed.clone()))], Duration::ZERO);
        assert_eq!(newest(&chain), Some(Some("r3".to_owned())), "every hop followed");
        let forgotten = remembering(vec![("r1", Ok(switched.clone()))], MEMO_TTL + Duration::from_secs(1));
        assert_eq!(newest(&forgotten), None, "an outcome past the memo is not followed");
        let other_user = remembering(vec![("r1", Ok(Arc::new(session("user_2", "r9", None))))], Duration::ZERO);
        assert_eq!(newest(&other_user), None, "never another user's tokens");
        let not_rotated = remembering(vec![("r1", Ok(Arc::new(session("user_1", "r1", None))))], Duration::ZERO);
        assert_eq!(newest(&not_rotated), None, "the same refresh token again is no successor");
        let dead = remembering(vec![("r1", Err(ProviderError::GrantRejected("spent".to_owned())))], Duration::ZERO);
        assert_eq!(newest(&dead), None, "a refusal is nothing newer");
    }

    #[test]
    fn a_flight_is_forgotten_only_once_finished_for_longer_than_the_memo() {
        let (sender, receiver) = watch::channel(None);
        let flight = Flight { id: 0, outcome: receiver };
        let started = Instant::now();
        assert!(
            !flight.is_stale(started + MEMO_TTL * 10),
            "a call still under way is never forgotten, or a second one would spend the token"
        );
        // A slow call: it ends just before the memo's time would have run out had it been timed from the start.
        let at = started + MEMO_TTL - Duration::from_secs(1);
        let spent = Err(ProviderError::GrantRejected("spent".to_owned()));
        sender.send(Some(Finished { at, outcome: spent })).expect("a receiver");
        assert!(!flight.is_stale(at + Duration::from_secs(1)), "a finished call is remembered for latecomers");
        assert!(!flight.is_stale(at + MEMO_TTL), "for the memo's whole time from the call's end, however slow it was");
        assert!(flight.is_stale(at + MEMO_TTL + Duration::from_nanos(1)), "and forgotten after it");
        assert!(!flight.is_stale(started), "a clock read before the call ended is not a reason to forget it");
    }

    #[test]
    fn a_flight_whose_task_died_without_an_outcome_is_forgotten() {
        let (sender, receiver) = watch::channel(None);
        let flight = Flight { id: 0, outcome: receiver };
        assert!(!flight.is_stale(Instant::now()), "under way");
        drop(sender);
        assert!(flight.is_stale(Instant::now()), "the next refresh of the token starts afresh");
    }

    #[test]
    fn a_failure_holds_the_token_back_for_the_backoff_only() {
        let at = Instant::now();
        let failure = Failure { at, error: ProviderError::Unavailable { retry_after: Duration::from_secs(1) } };
        assert!(failure.holds_back(at), "just failed: do not ask the provider again at once");
        assert!(failure.holds_back(at + FAILURE_BACKOFF - Duration::from_nanos(1)), "for the whole backoff");
        assert!(!failure.holds_back(at + FAILURE_BACKOFF), "from the backoff's end, ask again");
        assert!(failure.holds_back(at - Duration::from_secs(1)), "a clock read before the failure still holds back");

        let limited = Failure { at, error: ProviderError::Unavailable { retry_after: Duration::from_secs(30) } };
        assert!(limited.holds_back(at + Duration::from_secs(29)), "as long as the provider asked");
        assert!(!limited.holds_back(at + Duration::from_secs(30)));
        let unsaid = Failure { at, error: ProviderError::Unavailable { retry_after: ASSUMED_WAIT } };
        assert!(!unsaid.holds_back(at + FAILURE_BACKOFF), "the wait assumed when none was named is not the provider's");
    }

    #[test]
    fn a_request_held_back_is_told_what_is_left_of_the_wait() {
        let at = Instant::now();
        let wait = |failure: &Failure, now| match failure.as_of(now) {
            ProviderError::Unavailable { retry_after } => retry_after,
            other => panic!("not unavailable: {other:?}"),
        };
        let limited = Failure { at, error: ProviderError::Unavailable { retry_after: Duration::from_secs(40) } };
        assert_eq!(wait(&limited, at), Duration::from_secs(40));
        assert_eq!(wait(&limited, at + Duration::from_secs(16)), Duration::from_secs(24));
        assert_eq!(wait(&limited, at + Duration::from_millis(39_500)), Duration::from_secs(1), "at least a second");
        assert_eq!(wait(&limited, at - Duration::from_secs(1)), Duration::from_secs(40), "a clock read before it");
        let refused = Failure { at, error: ProviderError::GrantRejected("invalid_grant".to_owned()) };
        assert!(
            matches!(refused.as_of(at + Duration::from_secs(1)), ProviderError::GrantRejected(reason) if reason == "invalid_grant")
        );
    }
}
