//! The email of a user known only by id (a bearer token without an email claim), looked up at WorkOS
//! (`GET /user_management/users/{id}`, docs/workos.md §6.3) and remembered for a few minutes.
//!
//! Only a convenience: the email goes into `/api/me` and the minted InsForge token, and RLS does not depend on it.
//! So a lookup never fails a request: a WorkOS that is slow, down or refusing leaves the email out (and is asked
//! again next time), and an unknown user is remembered as having none. The cache is bounded: when it is full,
//! expired entries go first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::WorkosClient;
use crate::sync::lock;

/// How long a looked-up email is trusted.
pub const EMAIL_TTL: Duration = Duration::from_secs(5 * 60);
/// Most users remembered at once.
pub const EMAIL_CACHE_CAPACITY: usize = 10_000;
/// Longest a request waits for the lookup.
const LOOKUP_TIME_LIMIT: Duration = Duration::from_secs(2);

pub struct UserEmails {
    client: WorkosClient,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
    /// The (user, email) pairs recorded in the database lately ([`UserEmails::needs_recording`]).
    recorded: Mutex<HashMap<String, (String, Instant)>>,
}

impl UserEmails {
    pub fn new(client: WorkosClient) -> Self {
        Self::with_limits(client, EMAIL_TTL, EMAIL_CACHE_CAPACITY)
    }

    pub fn with_limits(client: WorkosClient, ttl: Duration, capacity: usize) -> Self {
        Self { client, ttl, capacity: capacity.max(1), cache: Mutex::default(), recorded: Mutex::default() }
    }

    /// Whether `email` should be recorded as `user_id`'s in the database now: not when it was (or tried, and
    /// failed) within the cache's lifetime, so a bearer client's every request does not write, nor wait on a
    /// database that is failing (the lifecycle's directory rule needs the address once, and again only if it
    /// changes). Bounded like the cache: when full, expired entries go, then all.
    pub fn needs_recording(&self, user_id: &str, email: &str) -> bool {
        let recorded = lock(&self.recorded);
        !recorded.get(user_id).is_some_and(|(known, at)| known == email && at.elapsed() < self.ttl)
    }

    /// Remembers that recording `email` as `user_id`'s was tried just now.
    pub fn recorded(&self, user_id: &str, email: &str) {
        let mut recorded = lock(&self.recorded);
        if recorded.len() >= self.capacity && !recorded.contains_key(user_id) {
            let ttl = self.ttl;
            recorded.retain(|_, (_, at)| at.elapsed() < ttl);
            if recorded.len() >= self.capacity {
                recorded.clear();
            }
        }
        recorded.insert(user_id.to_owned(), (email.to_owned(), Instant::now()));
    }

    /// The user's email, from the cache or WorkOS; `None` when WorkOS has none or cannot say right now.
    pub async fn email_of(&self, user_id: &str) -> Option<String> {
        if let Some((email, at)) = lock(&self.cache).get(user_id)
            && at.elapsed() < self.ttl
        {
            return email.clone();
        }
        let found = match tokio::time::timeout(LOOKUP_TIME_LIMIT, self.client.get_user(user_id)).await {
            Ok(Ok(user)) => user.and_then(|user| user.email),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not look up a bearer token's user at WorkOS; leaving the email out");
                return None;
            }
            Err(_) => {
                tracing::warn!("looking up a bearer token's user at WorkOS timed out; leaving the email out");
                return None;
            }
        };
        self.remember(user_id, found.clone());
        found
    }

    fn remember(&self, user_id: &str, email: Option<String>) {
        let mut cache = lock(&self.cache);
        if cache.len() >= self.capacity && !cache.contains_key(user_id) {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= self.capacity
                && let Some(oldest) = cache.iter().min_by_key(|(_, (_, at))| *at).map(|(id, _)| id.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(user_id.to_owned(), (email, Instant::now()));
    }

    /// How many users are remembered (for the bound's test).
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }
}
