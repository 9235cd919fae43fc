//! The `authbridge` command's own start-up, before any subcommand's work: `.env` and the logging variables are
//! checked like every other variable (a bad one stops the start with one line naming it), and `--help` and
//! `--version` work whatever state `.env` is in.

use std::process::{Command, Output};

use crate::migrate_command::{empty_dir, text};

/// `authbridge` with `args` in `dir`, with `vars` set and nothing of the developer's own configuration.
async fn authbridge(dir: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authbridge"));
    command.args(args).current_dir(dir);
    for name in ["DATABASE_URL", "RUST_LOG", "LOG_FORMAT"] {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("run authbridge")).await.expect("join")
}

#[tokio::test]
async fn a_malformed_dotenv_is_named_by_line_and_never_hides_help_or_version() {
    let dir = empty_dir();
    let secret = "hunter2-do-not-print";
    std::fs::write(dir.join(".env"), format!("# comment\nBIND_ADDR=127.0.0.1:3000\noops {secret}\n")).expect(".env");

    let refused = authbridge(&dir, &["migrate"], &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    let line = text(&refused.stderr);
    assert!(line.starts_with("authbridge: .env has a malformed line (line 3, "), "{line}");
    assert!(!line.contains(secret), "the line itself may hold a secret: {line}");

    let help = authbridge(&dir, &["--help"], &[]).await;
    assert!(help.status.success() && text(&help.stdout).contains("Usage: authbridge"), "{}", text(&help.stderr));
    let version = authbridge(&dir, &["--version"], &[]).await;
    assert!(version.status.success() && text(&version.stdout).starts_with("authbridge "), "{:?}", version);
    let migrate_help = authbridge(&dir, &["migrate", "--help"], &[]).await;
    assert!(migrate_help.status.success(), "{}", text(&migrate_help.stderr));
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_misspelt_log_format_or_filter_stops_the_start_by_name() {
    let dir = empty_dir();
    for (vars, named) in [
        (&[("LOG_FORMAT", "jsno")][..], "configuration error: LOG_FORMAT: must be `pretty` or `json` (it is \"jsno\")"),
        (&[("RUST_LOG", "debug,foo=notalevel")][..], "configuration error: RUST_LOG: cannot parse"),
    ] {
        let output = authbridge(&dir, &["migrate"], vars).await;
        assert_eq!(output.status.code(), Some(1), "{vars:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("authbridge: {named}")), "{stderr}");
    }
    // Accepted: the documented values, in any case, and the default.
    for vars in [&[("LOG_FORMAT", "JSON")][..], &[("LOG_FORMAT", "pretty"), ("RUST_LOG", "warn,sqlx=error")], &[]] {
        let output = authbridge(&dir, &["migrate"], vars).await;
        let stderr = text(&output.stderr);
        assert!(stderr.contains("DATABASE_URL"), "on to the subcommand, which misses its database: {stderr}");
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}
