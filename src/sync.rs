//! The one way authbridge takes a `std::sync::Mutex`.
//!
//! A mutex is poisoned when a thread panicked while holding it. Everything authbridge guards this way (refresh
//! flights, a response's pending cookie change) stays consistent at every await-free step, so the data is still
//! good: carry on with it rather than turn one panic into a panic on every later request.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
