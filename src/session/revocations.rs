//! Sessions that have ended before their tokens have.
//!
//! Signing out revokes the provider's session, so its refresh token is dead, but access tokens already issued
//! stay cryptographically valid until they expire (minutes): a copy of the cookie, or a bearer token of that
//! session, would keep working until then. Every request's session id is checked against this list first, so
//! an ended session is refused at once, refresh or not.
//!
//! Entries are kept for [`KEEP`], longer than any access token lives, and the list is bounded: when full, the
//! oldest entries go first (their tokens have long expired).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How long a revoked session id is remembered: past the expiry of any token issued before the revocation.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// The most ids remembered at once.
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct Revocations {
    revoked: Mutex<HashMap<String, Instant>>,
}

impl Revocations {
    pub fn revoke(&self, session_id: &str) {
        let mut revoked = lock(&self.revoked);
        let now = Instant::now();
        if revoked.len() >= CAPACITY {
            revoked.retain(|_, at| now.duration_since(*at) < KEEP);
        }
        if revoked.len() >= CAPACITY
            && let Some(oldest) = revoked.iter().min_by_key(|(_, at)| **at).map(|(id, _)| id.clone())
        {
            revoked.remove(&oldest);
        }
        revoked.insert(session_id.to_owned(), now);
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        lock(&self.revoked).get(session_id).is_some_and(|at| at.elapsed() < KEEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_ids_are_refused_and_others_are_not() {
        let revocations = Revocations::default();
        assert!(!revocations.is_revoked("session_1"));
        revocations.revoke("session_1");
        assert!(revocations.is_revoked("session_1"));
        assert!(!revocations.is_revoked("session_2"));
    }
}
