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
/// What is held back is said when the period ends, so the tail of a burst is not left unsaid until the next one.
pub struct Throttle {
    every: Duration,
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    /// When a warning was last said.
    said_at: Option<Instant>,
    /// Occurrences not said yet.
    pending: u64,
    /// When a task will say them (the period's end); one past is as good as none (its task may have been dropped
    /// with its runtime).
    flush_at: Option<Instant>,
    /// The latest occurrence's detail (an error's text), said with the count.
    detail: Option<String>,
}

/// What to do about one more occurrence.
#[derive(Debug, PartialEq)]
pub enum Due {
    /// Say it now, with this many occurrences.
    Now(u64),
    /// Hold it; say what is held once this much more has passed.
    After(Duration),
    /// Hold it; a flush is already due.
    Held,
}

impl Throttle {
    pub const fn every(every: Duration) -> Self {
        Self { every, state: Mutex::new(ThrottleState { said_at: None, pending: 0, flush_at: None, detail: None }) }
    }

    /// Counts one occurrence at `now`.
    pub fn due(&self, now: Instant) -> Due {
        self.count(now, None).0
    }

    /// Counts one occurrence at `now`, with its detail when it has one: what to do, and (when it is to be said now)
    /// the latest detail, read under the same lock as the count, so a line never says another occurrence's.
    fn count(&self, now: Instant, detail: Option<String>) -> (Due, String) {
        let mut state = lock(&self.state);
        if detail.is_some() {
            state.detail = detail;
        }
        state.pending += 1;
        let since = state.said_at.map(|at| now.saturating_duration_since(at));
        match since {
            Some(since) if since < self.every => {
                if state.flush_at.is_some_and(|at| now < at) {
                    (Due::Held, String::new())
                } else {
                    let wait = self.every - since;
                    state.flush_at = Some(now + wait);
                    (Due::After(wait), String::new())
                }
            }
            _ => {
                let count = self.said(&mut state, now);
                (Due::Now(count), state.detail.clone().unwrap_or_default())
            }
        }
    }

    /// The occurrences held until `now`, marked said, with the latest detail; `None` when there are none (a warning
    /// said meanwhile took them).
    fn flush(&self, now: Instant) -> Option<(u64, String)> {
        let mut state = lock(&self.state);
        state.flush_at = None;
        (state.pending > 0).then(|| (self.said(&mut state, now), state.detail.clone().unwrap_or_default()))
    }

    fn said(&self, state: &mut ThrottleState, now: Instant) -> u64 {
        state.said_at = Some(now);
        std::mem::take(&mut state.pending)
    }

    /// Counts one occurrence, and calls `say` with the count now or when the period ends (from a task of its own,
    /// on the Tokio runtime this is called from; without one, at the next occurrence after the period).
    pub fn note(&'static self, say: fn(u64)) {
        self.noted(None, move |count, _| say(count));
    }

    /// As [`Throttle::note`], with this occurrence's `detail` (an error's text): `say` gets the latest one's with
    /// the count, so a line held back still says what went wrong last.
    pub fn note_detail(&'static self, detail: String, say: impl Fn(u64, &str) + Send + 'static) {
        self.noted(Some(detail), say);
    }

    fn noted(&'static self, detail: Option<String>, say: impl Fn(u64, &str) + Send + 'static) {
        match self.count(Instant::now(), detail) {
            (Due::Now(count), detail) => say(count, &detail),
            (Due::After(wait), _) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        tokio::time::sleep(wait).await;
                        if let Some((count, detail)) = self.flush(Instant::now()) {
                            say(count, &detail);
                        }
                    });
                }
                Err(_) => lock(&self.state).flush_at = None,
            },
            (Due::Held, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_speaks_at_once_then_holds_the_rest_for_the_end_of_the_period() {
        let throttle = Throttle::every(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.due(start), Due::Now(1), "the first time at once");
        assert_eq!(throttle.due(start + Duration::from_secs(1)), Due::After(Duration::from_secs(9)), "held");
        assert_eq!(throttle.due(start + Duration::from_secs(9)), Due::Held, "one flush is enough");
        assert_eq!(
            throttle.flush(start + Duration::from_secs(10)).map(|(count, _)| count),
            Some(2),
            "the held ones, when the period ends"
        );
        assert_eq!(throttle.flush(start + Duration::from_secs(10)), None, "said once");
        assert_eq!(throttle.due(start + Duration::from_secs(11)), Due::After(Duration::from_secs(9)));
        assert_eq!(throttle.flush(start + Duration::from_secs(20)).map(|(count, _)| count), Some(1));
        assert_eq!(throttle.due(start + Duration::from_secs(30)), Due::Now(1), "a whole period after, at once");
    }

    #[test]
    fn a_flush_that_never_ran_does_not_hold_later_ones_back() {
        let throttle = Throttle::every(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.due(start), Due::Now(1));
        assert_eq!(throttle.due(start + Duration::from_secs(1)), Due::After(Duration::from_secs(9)));
        // Its task dropped with its runtime: never flushed.
        assert_eq!(throttle.due(start + Duration::from_secs(11)), Due::Now(2));
        assert_eq!(throttle.due(start + Duration::from_secs(12)), Due::After(Duration::from_secs(9)), "a new flush");
    }

    /// Each line's detail is read with its count, under one lock: the first occurrence's at once, the latest held
    /// one's at the period's end.
    #[test]
    fn a_line_says_the_detail_of_the_occurrences_it_counts() {
        let throttle = Throttle::every(Duration::from_secs(10));
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(throttle.count(start, Some("refused".into())), (Due::Now(1), "refused".to_owned()));
        assert_eq!(throttle.count(at(1), Some("timed out".into())).0, Due::After(Duration::from_secs(9)));
        assert_eq!(throttle.count(at(2), Some("reset".into())).0, Due::Held);
        assert_eq!(throttle.flush(at(10)), Some((2, "reset".to_owned())));
    }

    /// A detailed note says the latest occurrence's detail with its count: the first at once, the held ones' last.
    #[tokio::test]
    async fn a_detailed_note_says_the_latest_detail() {
        static SAID: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
        static THROTTLE: Throttle = Throttle::every(Duration::from_millis(100));
        for error in ["refused", "timed out", "reset"] {
            THROTTLE.note_detail(error.to_owned(), |count, detail| lock(&SAID).push((count, detail.to_owned())));
        }
        assert_eq!(*lock(&SAID), [(1, "refused".to_owned())]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(*lock(&SAID), [(1, "refused".to_owned()), (2, "reset".to_owned())], "the latest of the held");
    }

    #[tokio::test]
    async fn noting_says_the_first_at_once_and_the_held_ones_when_the_period_ends() {
        static SAID: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        static THROTTLE: Throttle = Throttle::every(Duration::from_millis(100));
        let say: fn(u64) = |count| lock(&SAID).push(count);
        for _ in 0..3 {
            THROTTLE.note(say);
        }
        assert_eq!(*lock(&SAID), [1]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(*lock(&SAID), [1, 2], "the two held back, once");
    }
}
