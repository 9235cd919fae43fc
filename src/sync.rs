//! The one way authbridge takes a `std::sync::Mutex` or `RwLock`; and [`Throttle`], for warnings that anyone can
//! cause on every request.
//!
//! A lock is poisoned when a thread panicked while holding it. Everything authbridge guards this way (refresh
//! flights, a response's pending cookie change, cached signing keys) stays consistent at every await-free step, so
//! the data is still good: carry on with it rather than turn one panic into a panic on every later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lets a warning through at most once per period, with how many times it was due since the last one said: a
/// client that causes it on every request (a forged cookie, a flood shed at the limit) must not flood the log too.
pub struct Throttle {
    every: Duration,
    /// When it was last let through, and how many times it has been due since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn every(every: Duration) -> Self {
        Self { every, state: Mutex::new((None, 0)) }
    }

    /// Counts one occurrence at `now`; when the period since the last warning is over, the number of occurrences to
    /// warn of (this one included).
    pub fn due(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        state.1 += 1;
        let quiet = state.0.is_none_or(|at| now.saturating_duration_since(at) >= self.every);
        quiet.then(|| {
            let count = state.1;
            *state = (Some(now), 0);
            count
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_speaks_first_then_once_a_period_with_the_count_since() {
        let throttle = Throttle::every(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.due(start), Some(1), "the first time at once");
        assert_eq!(throttle.due(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.due(start + Duration::from_secs(9)), None);
        assert_eq!(throttle.due(start + Duration::from_secs(10)), Some(3), "after the period, with everything since");
        assert_eq!(throttle.due(start + Duration::from_secs(11)), None);
    }
}
