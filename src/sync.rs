//! The one way authbridge takes a `std::sync::Mutex` or `RwLock`.
//!
//! A lock is poisoned when a thread panicked while holding it. Everything authbridge guards this way (refresh
//! flights, a response's pending cookie change, cached signing keys) stays consistent at every await-free step, so
//! the data is still good: carry on with it rather than turn one panic into a panic on every later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
