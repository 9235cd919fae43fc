//! `authbridge migrate`, the built binary as an operator runs it: one line on success, one clear line and a
//! non-zero exit on failure, never a backtrace and never the password from `DATABASE_URL`.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::helpers::{TestDb, closed_port_url};

const PASSWORD: &str = "hunter2-do-not-print";

/// An empty working directory, so a developer's own `.env` never leaks into the test.
pub(crate) fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("authbridge-migrate-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).expect("temp dir");
    dir
}

async fn migrate(dir: &PathBuf, database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authbridge"));
    command.arg("migrate").current_dir(dir).env_remove("DATABASE_URL").env("RUST_BACKTRACE", "1");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run authbridge migrate")).await.expect("join")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_one_clean_line(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "exactly one line on stderr: {stderr:?}");
    for noise in ["panicked", "backtrace", "Error {", "Io(", PASSWORD] {
        assert!(!stderr.contains(noise), "stderr contains {noise:?}: {stderr}");
    }
    assert!(text(&output.stdout).is_empty(), "nothing on stdout on failure");
    stderr
}

#[tokio::test]
async fn an_unreachable_database_is_one_clear_line_and_a_failure_exit() {
    let dir = empty_dir();
    let port = closed_port_url().port().expect("port");
    let url = format!("postgres://migrator:{PASSWORD}@127.0.0.1:{port}/app");
    let output = migrate(&dir, Some(&url)).await;
    assert_eq!(output.status.code(), Some(1));
    let line = assert_one_clean_line(&output);
    assert!(line.starts_with("authbridge: migrate: cannot connect to the database at 127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}/app")), "names the target without credentials: {line}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_missing_database_url_names_the_variable() {
    let dir = empty_dir();
    let output = migrate(&dir, None).await;
    assert_eq!(output.status.code(), Some(1));
    let line = assert_one_clean_line(&output);
    assert!(line.contains("DATABASE_URL"), "{line}");

    // Refused as `serve` refuses it (sqlx would take a `mysql://` URL to a PostgreSQL server and migrate it).
    let output = migrate(&dir, Some(&format!("mysql://migrator:{PASSWORD}@127.0.0.1:5432/app"))).await;
    assert_eq!(output.status.code(), Some(1));
    let line = assert_one_clean_line(&output);
    assert!(line.contains("DATABASE_URL: must be a postgres:// connection URL"), "{line}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_failing_migration_is_named_in_one_line() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql("CREATE TABLE public.todos (id int)").execute(&mut conn).await.expect("a conflicting table");
    let dir = empty_dir();
    let output = migrate(&dir, Some(&db.url)).await;
    assert_eq!(output.status.code(), Some(1));
    let line = assert_one_clean_line(&output);
    assert!(line.starts_with("authbridge: migrate: migration 3 (todos) failed: "), "{line}");
    assert!(line.contains("already exists (SQLSTATE 42P07)"), "PostgreSQL's words and code: {line}");
    assert!(!line.contains(" at line "), "no line of PostgreSQL's source, taken for one of the migration: {line}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn migrate_reads_dotenv_applies_once_and_is_idempotent() {
    let db = TestDb::empty().await;
    let dir = empty_dir();
    std::fs::write(dir.join(".env"), format!("# test\nDATABASE_URL={}\n", db.url)).expect(".env");
    for run in 0..2 {
        let output = migrate(&dir, None).await;
        assert!(output.status.success(), "run {run}: {}", text(&output.stderr));
        let stdout = text(&output.stdout);
        assert_eq!(stdout, "authbridge migrate: the database is up to date (22 migrations)\n", "run {run}");
        assert!(output.stderr.is_empty(), "run {run}: {}", text(&output.stderr));
    }
    let mut conn = db.connect().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(tables, 1, "the todos table");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
