//! Captures everything the test binary logs, so a test can prove that no secret ever reaches the logs.
//!
//! One global subscriber for the whole binary (tracing allows one), at debug level for every crate, writing into
//! memory. Tests use unique secrets, so searching the shared buffer for *their* secrets is exact.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture() {
    INSTALLED.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new("debug,sqlx=info");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(|| Capture).try_init();
    });
}

/// Everything logged so far by every test in this binary.
pub fn captured() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
}

/// The line logged at `level` with `message` while handling the request that carried `request_id`.
pub async fn logged(request_id: &str, level: &str, message: &str) -> Option<String> {
    let marker = format!("request_id=\"{request_id}\"");
    let level = format!(" {level} ");
    // Lines are written before the response leaves the app; the wait is only slack. The buffer is searched where it
    // is, newest line first, rather than copied: every test's logging waits for the lock meanwhile.
    for _ in 0..50 {
        let found = {
            let logs = LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            String::from_utf8_lossy(&logs)
                .lines()
                .rev()
                .find(|line| line.contains(&marker) && line.contains(&level) && line.contains(message))
                .map(str::to_owned)
        };
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
