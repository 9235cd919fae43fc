//! Refreshing WorkOS tokens without ever logging a user out by accident.
//!
//! WorkOS refresh tokens are single-use. When two requests of one browser (two tabs, parallel fetches) arrive with
//! the same near-expiry cookie, a naive implementation refreshes twice: the first wins, the second gets
//! `invalid_grant`, and its response clears the session the first just renewed. This module makes that impossible
//! within one process:
//!
//! - **single flight**: concurrent refreshes of the same token share one call to WorkOS;
//! - **memo**: the outcome stays available for [`MEMO_TTL`] after the call, keyed by a SHA-256 of the old refresh
//!   token (never the token itself), so a request that arrives a moment later with the old cookie receives the new
//!   tokens instead of burning through `invalid_grant`;
//! - **no cancellation**: the WorkOS call runs in its own task, so a browser that gives up mid-request cannot
//!   consume the refresh token and throw away its replacement.
//!
//! Failures other than `invalid_grant` (WorkOS down, rate limited, refusing our credentials) are not memoised:
//! the next request simply tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use tokio::sync::watch;

use crate::workos::{AuthResponse, WorkosClient, WorkosError};

/// How long a finished refresh is remembered for latecomers holding the old refresh token.
pub const MEMO_TTL: Duration = Duration::from_secs(30);

type Outcome = Result<Arc<AuthResponse>, WorkosError>;
type TokenHash = [u8; 32];

#[derive(Clone)]
pub struct Refresher {
    workos: WorkosClient,
    flights: Arc<Mutex<HashMap<TokenHash, Flight>>>,
}

struct Flight {
    id: u64,
    started: Instant,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Flight {
    fn is_stale(&self) -> bool {
        self.started.elapsed() > MEMO_TTL && self.outcome.borrow().is_some()
    }
}

impl Refresher {
    pub fn new(workos: WorkosClient) -> Self {
        Self { workos, flights: Arc::default() }
    }

    /// New tokens for `refresh_token`, from WorkOS or from a refresh of the same token that is under way or
    /// just finished.
    pub async fn refresh(&self, refresh_token: &str) -> Outcome {
        let key = hash(refresh_token);
        let mut outcome = {
            let mut flights = self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            flights.retain(|_, flight| !flight.is_stale());
            match flights.get(&key) {
                Some(flight) => flight.outcome.clone(),
                None => {
                    let flight = self.start(key, refresh_token.to_owned());
                    let receiver = flight.outcome.clone();
                    flights.insert(key, flight);
                    receiver
                }
            }
        };
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Err(WorkosError::Unavailable { status: 500 })),
            // The task died without an answer (it panicked): report an outage, which keeps the session.
            Err(_) => Err(WorkosError::Unavailable { status: 500 }),
        }
    }

    fn start(&self, key: TokenHash, refresh_token: String) -> Flight {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        let workos = self.workos.clone();
        let flights = Arc::clone(&self.flights);
        tokio::spawn(async move {
            let outcome = workos.authenticate_with_refresh_token(&refresh_token).await.map(Arc::new);
            match &outcome {
                Ok(_) => tracing::debug!("refreshed a WorkOS session"),
                Err(error) => tracing::info!(%error, "WorkOS session refresh failed"),
            }
            if outcome.as_ref().is_err_and(|error| !matches!(error, WorkosError::InvalidGrant { .. })) {
                // Remember only answers about the token itself (new tokens, or "this token is dead"). Forget any
                // other failure at once, so the next request tries again instead of replaying an outage.
                let mut flights = flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if flights.get(&key).is_some_and(|flight| flight.id == id) {
                    flights.remove(&key);
                }
            }
            // Nobody waiting any more is fine: the memo (or nobody) reads it.
            let _ = sender.send(Some(outcome));
        });
        Flight { id, started: Instant::now(), outcome: receiver }
    }
}

fn hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}
