//! `shutdown_signal()` installs its handlers when it is called. In a test binary of its own: tokio never uninstalls a
//! signal handler, and in a shared one Ctrl-C would stop stopping the other tests.

#![cfg(unix)]

use std::time::Duration;

use authbridge::startup::shutdown_signal;

/// SIGTERM sent after `shutdown_signal()` returned but before its future is polled (a service manager stopping a
/// process that has just answered its health check) must be kept for the future. Were the handler installed on the
/// first poll instead, this SIGTERM would kill the test process the default way.
#[tokio::test]
async fn a_sigterm_before_the_first_poll_is_kept_for_the_shutdown() {
    let stop = shutdown_signal();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill could not send SIGTERM to this test process");
    // Give the signal time to arrive while nothing polls `stop`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .expect("the SIGTERM sent before the first poll completes the shutdown future");
}
