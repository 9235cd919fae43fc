//! The throwaway PostgreSQL: a clear error for a busy port, data kept in a chosen directory, and nothing left
//! behind — after a drop, and after a process that never dropped its cluster has exited.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use standins::temp_postgres::{PostgresError, PostgresOptions, TempPostgres};

use crate::helpers::cluster;

/// Set in the environment of the child process the orphan test starts (the test binary itself).
const CHILD_ENV: &str = "AUTHBRIDGE_TEST_ORPHAN_CHILD";

/// Polls `condition` for up to ten seconds: clean-up happens in another process, asynchronously.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn accepts_tcp(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn an_explicit_port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let error =
        TempPostgres::start(PostgresOptions { port: Some(port), data_dir: None }).await.expect_err("the port is taken");
    assert!(matches!(error, PostgresError::PortInUse { port: p } if p == port), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("port {port} on 127.0.0.1 is already in use; choose another port or stop what is using it")
    );

    // The shared cluster's own port is just as busy.
    let shared = cluster().await.port();
    let error = TempPostgres::start(PostgresOptions { port: Some(shared), data_dir: None })
        .await
        .expect_err("the shared cluster holds it");
    assert!(matches!(error, PostgresError::PortInUse { .. }), "{error:?}");
}

#[tokio::test]
async fn a_dropped_cluster_stops_and_removes_its_directory() {
    let postgres = TempPostgres::start(PostgresOptions::default()).await.expect("a cluster");
    let dir = postgres.data_dir().to_owned();
    let port = postgres.port();
    assert!(dir.join("PG_VERSION").exists(), "initialised in {dir:?}");
    assert!(accepts_tcp(port));

    tokio::task::spawn_blocking(move || drop(postgres)).await.expect("drop");
    assert!(!dir.exists(), "{dir:?} is removed once the drop returns");
    assert!(!accepts_tcp(port), "nothing listens on {port} any more");
}

#[tokio::test]
async fn a_data_dir_keeps_its_data_between_runs() {
    let parent = std::env::temp_dir().join(format!("authbridge-keep-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&parent).expect("parent dir");
    let data_dir = parent.join("cluster");

    let first = TempPostgres::start(PostgresOptions { port: None, data_dir: Some(data_dir.clone()) })
        .await
        .expect("a kept cluster starts");
    let url = first.create_database("kept").await.expect("database");
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('still here')")
        .execute(&mut conn)
        .await
        .expect("write");
    conn.close().await.expect("close");
    first.stop().await;
    assert!(data_dir.join("PG_VERSION").exists(), "a kept cluster is not removed on stop");

    let second = TempPostgres::start(PostgresOptions { port: None, data_dir: Some(data_dir.clone()) })
        .await
        .expect("the same directory starts again");
    let mut conn = PgConnection::connect(&second.url_for("kept")).await.expect("connect");
    let body: String = sqlx::query_scalar("SELECT body FROM notes").fetch_one(&mut conn).await.expect("read");
    assert_eq!(body, "still here");
    conn.close().await.expect("close");
    second.stop().await;
    std::fs::remove_dir_all(&parent).expect("remove the kept cluster");
}

/// Unix-domain socket paths are limited to 107 bytes: a cluster in a deep directory must not need one.
#[tokio::test]
async fn a_data_dir_with_a_long_path_starts() {
    let parent = std::env::temp_dir().join(format!("authbridge-long-{}", uuid::Uuid::new_v4().simple()));
    let data_dir = parent.join("a-directory-name-long-enough-to-push-a-socket-path-in-it-past-the-limit");
    assert!(data_dir.join(".s.PGSQL.65535").as_os_str().len() > 107, "{data_dir:?} is long enough");

    let postgres = TempPostgres::start(PostgresOptions { port: None, data_dir: Some(data_dir.clone()) })
        .await
        .expect("a cluster in a long path starts");
    let url = postgres.create_database("deep").await.expect("database");
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.expect("query");
    assert_eq!(one, 1);
    conn.close().await.expect("close");
    postgres.stop().await;
    std::fs::remove_dir_all(&parent).expect("remove the kept cluster");
}

#[tokio::test]
async fn database_names_are_checked() {
    let postgres = cluster().await;
    for bad in ["", "Upper", "semi;colon", "quote\"d", "9starts_with_digit", &"x".repeat(64)] {
        let error = postgres.create_database(bad).await.expect_err("refused");
        assert!(matches!(error, PostgresError::BadDatabaseName(_)), "{bad:?}: {error:?}");
    }
}

async fn database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&cluster().await.url_for("postgres")).await.expect("a superuser connection");
    let found: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("pg_database");
    conn.close().await.expect("close");
    found
}

/// One database per test, kept to the end of the run, took 4.7 GB: each goes when the last clone of its value does
/// (the test is done), even with a connection still open to it.
#[tokio::test]
async fn a_throwaway_database_is_dropped_once_its_last_clone_is_gone() {
    let database = cluster().await.create_throwaway_database().await.expect("a throwaway database");
    let name = database.name.clone();
    let mut open = PgConnection::connect(&database.url).await.expect("a connection to it");
    let clone = database.clone();
    drop(database);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(database_exists(&name).await, "a clone still holds it");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut open).await.expect("still usable");
    assert_eq!(one, 1);

    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(10);
    while database_exists(&name).await {
        assert!(Instant::now() < deadline, "{name} is still there after its last clone went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut open).await.is_err(), "its connection was ended");
}

/// Every CREATE DATABASE writes its template (~8 MB) into the write-ahead log, which by default keeps 1 GB between
/// checkpoints: a throwaway cluster keeps the least.
#[tokio::test]
async fn a_throwaway_cluster_keeps_little_write_ahead_log() {
    let mut conn = PgConnection::connect(&cluster().await.url_for("postgres")).await.expect("a superuser connection");
    for (setting, expected) in [("wal_level", "minimal"), ("max_wal_size", "64MB"), ("fsync", "off")] {
        let value: String =
            sqlx::query_scalar("SELECT current_setting($1)").bind(setting).fetch_one(&mut conn).await.expect(setting);
        assert_eq!(value, expected, "{setting}");
    }
    conn.close().await.expect("close");
}

/// A cluster that stops answering is explained by its own log, which a failed command quotes.
#[tokio::test]
async fn a_failed_command_quotes_the_end_of_the_servers_log() {
    let postgres = cluster().await;
    postgres.create_database("quoted_log").await.expect("the first time");
    let error = postgres.create_database("quoted_log").await.expect_err("it exists").to_string();
    assert!(error.contains("already exists"), "{error}");
    // The log's last lines, whatever other tests had the server log meanwhile.
    let (_, quoted) = error.split_once("the server's log ends: ").unwrap_or_else(|| panic!("quoted: {error}"));
    let levels = ["LOG:", "ERROR:", "STATEMENT:", "FATAL:", "WARNING:"];
    assert!(levels.iter().any(|level| quoted.contains(level)), "the server's own lines: {quoted}");
}

/// In the child: start a cluster, keep it in a static (never dropped), report it, and exit without any clean-up
/// code running — as a test binary ending, or a killed demo, would.
fn orphan_child() -> ! {
    static HELD: std::sync::OnceLock<TempPostgres> = std::sync::OnceLock::new();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let postgres = runtime.block_on(TempPostgres::start(PostgresOptions::default())).expect("child cluster");
    let postmaster_pid = std::fs::read_to_string(postgres.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .expect("pid line")
        .trim()
        .to_owned();
    let held = HELD.get_or_init(|| postgres);
    println!("ORPHAN {} {} {}", held.data_dir().display(), held.port(), postmaster_pid);
    std::process::exit(0);
}

#[test]
fn a_cluster_never_dropped_is_cleaned_up_when_its_process_exits() {
    if std::env::var_os(CHILD_ENV).is_some() {
        orphan_child();
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["temp_postgres::a_cluster_never_dropped_is_cleaned_up_when_its_process_exits", "--exact", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run this test binary as the child");
    let stdout = child.stdout.take().expect("stdout");
    let report = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("ORPHAN ").map(str::to_owned))
        .expect("the child reports its cluster");
    let status = child.wait().expect("the child exits");
    assert!(status.success(), "child: {status}");

    let mut parts = report.split(' ');
    let dir = PathBuf::from(parts.next().expect("dir"));
    let port: u16 = parts.next().expect("port").parse().expect("port number");
    let pid: u32 = parts.next().expect("pid").parse().expect("pid number");
    assert!(dir.starts_with(std::env::temp_dir()), "{dir:?}");

    eventually("the orphaned server has stopped", || !process_alive(pid));
    eventually("the orphaned directory is removed", || !dir.exists());
    assert!(!accepts_tcp(port), "nothing listens on {port}");
}
