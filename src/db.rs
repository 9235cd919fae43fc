//! authbridge's own connection to PostgreSQL (`DATABASE_URL`), for its bookkeeping schema only.
//!
//! Todos never go through here: they go through InsForge with a minted token, so row-level security applies. This
//! pool serves the sign-outs and refreshes the replicas share (with either provider) and the WorkOS enterprise
//! lifecycle (events, memberships), and it is built to fail fast: a few connections, a short acquire timeout and a
//! statement timeout, so a database outage becomes a 503 in seconds instead of requests piling up until the request
//! time limit answers 504. The pool connects lazily: the app starts (and serves everything else) while the database
//! is down, and reconnects by itself when it is back.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;

/// Longest any one statement may run: our statements are single-row lookups and upserts.
const STATEMENT_TIMEOUT: &str = "5s";
/// How PostgreSQL notices a replica that vanished without closing its connections (a host lost, a network cut): it
/// probes a connection idle for a minute every 10 s and drops it after 6 unanswered probes, about two minutes in all;
/// and one whose answer goes unacknowledged for two minutes (`tcp_user_timeout`, PostgreSQL 12 or later), where
/// probes do not apply and retransmissions alone would take about fifteen.
/// The operating system's default is two hours, and a dropped connection is what releases what it held: the Events
/// API consumer's advisory lock above all, which would otherwise stop every replica from reading events that long.
/// PostgreSQL ignores these settings on a Unix socket, where a vanished peer is noticed at once.
const TCP_KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "60"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "6"),
    ("tcp_user_timeout", "120000"),
];
/// How long a client should wait before retrying when the database is unavailable (`Retry-After`).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle on the pool.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
}

/// Why a database call failed, in the two kinds callers act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or did not answer in time: retry later (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error: a bug or a schema that is not migrated (500, logged).
    #[error("a database statement failed: {0}")]
    Failed(String),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        let message = describe(&error);
        match &error {
            // `Protocol` included: a server that closes the connection mid-handshake (restarting, failing over, a
            // proxy in between cut off) shows up as an unexpected answer rather than an I/O error.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(message),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Connection exceptions (08…), the server refusing our credentials on a new connection (28…: a
                // password rotated at the database before DATABASE_URL; no request can fix it, an operator can, and
                // the log line says which), too many connections / out of resources (53…), shutting down or
                // restarting (57P0…), and our own statement timeout (57014): all "try again later".
                Some(code)
                    if code.starts_with("08")
                        || credentials_refused(&error)
                        || code.starts_with("53")
                        || code.starts_with("57P0")
                        || code == "57014" =>
                {
                    Self::Unavailable(message)
                }
                _ => Self::Failed(message),
            },
            _ => Self::Failed(message),
        }
    }
}

/// An error as the operator needs it: PostgreSQL's own words with its SQLSTATE and hint, rather than sqlx's
/// rendering, which ends in "at line N" (a line of PostgreSQL's C source, easily taken for a line of a migration
/// or a query). Not its DETAIL, which can quote rows (`Key (email)=(…) already exists`): user data, not for a log.
pub fn describe(error: &sqlx::Error) -> String {
    let Some(database) = error.as_database_error() else { return error.to_string() };
    let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        return database.message().to_owned();
    };
    let mut text = format!("{} (SQLSTATE {})", postgres.message(), postgres.code());
    if let Some(hint) = postgres.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// The query parameters sqlx's PostgreSQL driver reads from a connection URL (sqlx-postgres's
/// `PgConnectOptions::parse_from_url`, with `options[…]`).
const DRIVER_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `DATABASE_URL` as the driver's options. A parameter the driver does not read (libpq's `connect_timeout`,
/// `sslpassword`…) is left out and named in a warning, without its value: the driver would log it with its value,
/// and `sslpassword` is a secret.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let (options, ignored) = driver_options(url)?;
    if !ignored.is_empty() {
        tracing::warn!(
            parameters = %ignored.join(", "),
            "DATABASE_URL: ignoring parameters the PostgreSQL driver does not support"
        );
    }
    Ok(options)
}

/// [`connect_options`] without the warning (the start-up's check of the variable): the options, and the parameters
/// left out, as they may be named.
pub fn driver_options(url: &str) -> Result<(PgConnectOptions, Vec<String>), sqlx::Error> {
    let mut parsed = url::Url::parse(url).map_err(|error| sqlx::Error::Configuration(error.into()))?;
    let known = |key: &str| DRIVER_PARAMETERS.contains(&key) || (key.starts_with("options[") && key.ends_with(']'));
    // Only a key shaped like a parameter's name is named: anything else may be part of a mistyped password.
    let named = |key: &str| {
        key.len() <= 40 && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    let ignored: Vec<String> = parsed
        .query_pairs()
        .filter(|(key, _)| !known(key))
        .map(|(key, _)| if named(&key) { format!("{key:?}") } else { "(a name that is not a parameter's)".to_owned() })
        .collect();
    if !ignored.is_empty() {
        let kept: Vec<(String, String)> =
            parsed.query_pairs().filter(|(key, _)| known(key)).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
    }
    Ok((PgConnectOptions::from_str(parsed.as_str())?, ignored))
}

impl Database {
    /// The pool, not yet connected: the first statement connects.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, DbError> {
        let options = connect_options(config.url.expose())
            // Never the URL itself in the message: it holds the password.
            .map_err(|_| DbError::Failed("DATABASE_URL is not a usable PostgreSQL URL".to_owned()))?
            .application_name("authbridge")
            // Every statement names its schemas; nothing from `public` is looked up by name (`migrate::SEARCH_PATH`).
            .options([("statement_timeout", STATEMENT_TIMEOUT), ("search_path", crate::migrate::SEARCH_PATH)])
            .options(TCP_KEEPALIVES);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// The pool as an on-call needs it beside a failure: how many of `DATABASE_MAX_CONNECTIONS` are open (those still
    /// being opened count) and how many idle. None idle is an exhausted pool or an unreachable database: the error
    /// it is logged beside says which.
    pub fn pool_state(&self) -> String {
        let options = self.pool.options();
        format!(
            "{} of {} connections open, {} idle",
            self.pool.size(),
            options.get_max_connections(),
            self.pool.num_idle()
        )
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers a statement, for `/readyz`, and if not, why (its log line). A pooled connection
    /// that does not come within [`PING_WAIT`] (every one in use, or none can be opened) is not waited for: one connection of its own, outside the pool, then tells an exhausted pool (the database answers:
    /// raise `DATABASE_MAX_CONNECTIONS`) from a database that does not answer (PostgreSQL's or the network's error).
    /// A pool merely busy, or opening a connection, answers within the wait.
    pub async fn ping(&self) -> Result<(), DbError> {
        // An idle connection comes at once.
        if let Ok(pooled) = tokio::time::timeout(PING_WAIT, self.pool.acquire()).await {
            let mut connection = pooled?;
            return sqlx::query("SELECT 1").execute(&mut *connection).await.map(|_| ()).map_err(DbError::from);
        }
        let mut connection = PgConnection::connect_with(&self.pool.connect_options())
            .await
            .map_err(|error| DbError::Unavailable(describe(&error)))?;
        let answered = sqlx::query("SELECT 1").execute(&mut connection).await.map_err(DbError::from);
        let _ = connection.close().await;
        answered?;
        let max = self.pool.options().get_max_connections();
        Err(DbError::Unavailable(format!(
            "the database answers, but no pooled connection came free within {} ms ({} of DATABASE_MAX_CONNECTIONS = \
             {max} open, all in use)",
            PING_WAIT.as_millis(),
            self.pool.size()
        )))
    }

    /// Whether the database has every migration this binary knows, so `serve` can refuse to start against a
    /// database that `authbridge migrate` has not brought up to date (every lifecycle statement would fail).
    pub async fn is_migrated(&self) -> Result<bool, DbError> {
        match migrated(&self.pool).await {
            // The pool says only that it waited (a connection refused, or a server still starting up, which it
            // retries): one connection of its own, outside the pool, says why to the operator starting the app;
            // and should the database answer it by now, it asks that connection instead.
            Err(DbError::Unavailable(_)) => {
                let options = self.pool.connect_options();
                match tokio::time::timeout(DIAGNOSIS_TIMEOUT, PgConnection::connect_with(&options)).await {
                    Ok(Ok(mut connection)) => {
                        let answer = migrated(&mut connection).await;
                        let _ = connection.close().await;
                        answer
                    }
                    // Our credentials refused (28…): at start-up that is a configuration to mend, not an outage
                    // to wait out (at run time it is answered 503 like one: `DbError::from`).
                    Ok(Err(error)) if credentials_refused(&error) => Err(DbError::Failed(describe(&error))),
                    Ok(Err(error)) => Err(DbError::Unavailable(describe(&error))),
                    Err(_elapsed) => {
                        Err(DbError::Unavailable(format!("no answer within {} seconds", DIAGNOSIS_TIMEOUT.as_secs())))
                    }
                }
            }
            other => other,
        }
    }
}

/// Whether PostgreSQL refused the connection's credentials (SQLSTATE class 28: a wrong password, an unknown role,
/// no `pg_hba.conf` entry).
fn credentials_refused(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| code.starts_with("28"))
}

/// Whether the latest migration this binary knows is recorded as applied.
async fn migrated<'c, E: sqlx::PgExecutor<'c>>(executor: E) -> Result<bool, DbError> {
    let latest = crate::migrate::MIGRATOR.iter().map(|migration| migration.version).max().unwrap_or_default();
    // The table is `migrate::MIGRATIONS_TABLE`; sqlx wants statements as literals.
    let query = "SELECT EXISTS (SELECT 1 FROM authbridge._sqlx_migrations WHERE version = $1 AND success)";
    match sqlx::query_scalar::<_, bool>(query).bind(latest).fetch_one(executor).await {
        Ok(applied) => Ok(applied),
        // No bookkeeping table at all: never migrated.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// How long `/readyz`'s check waits for a pooled connection before it asks over one of its own.
const PING_WAIT: Duration = Duration::from_millis(200);

/// How long the start-up's own connection may take to say why the pool could not connect.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait between two tries once a retry is hurried ([`retry_while_unavailable`]).
const HURRIED_WAIT: Duration = Duration::from_millis(250);

/// Tries again a write the database could not take when it was made (a sign-out, a shared refresh's result), for
/// as long as that write still matters: after each of `waits` in turn, until it succeeds, fails for a reason other
/// than the database being unavailable, or `within` has passed since the first wait began. The outcome is the last
/// try's (`Unavailable` when the database never came back). Once `hurry` is cancelled (the process is stopping and
/// waits a few seconds for these writes), the wait under way is cut short and the next ones last at most
/// [`HURRIED_WAIT`]: a database back during the shutdown then gets the write, rather than a minute's backoff.
pub async fn retry_while_unavailable<F, Fut>(
    waits: impl IntoIterator<Item = Duration>,
    within: Duration,
    hurry: Option<&CancellationToken>,
    mut attempt: F,
) -> Result<(), DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), DbError>>,
{
    let started = std::time::Instant::now();
    let mut last = DbError::Unavailable("not tried again".to_owned());
    for wait in waits {
        if started.elapsed() >= within {
            break;
        }
        match hurry {
            Some(hurry) if hurry.is_cancelled() => tokio::time::sleep(wait.min(HURRIED_WAIT)).await,
            Some(hurry) => {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = hurry.cancelled() => {}
                }
            }
            None => tokio::time::sleep(wait).await,
        }
        match attempt().await {
            Err(error @ DbError::Unavailable(_)) => last = error,
            done => return done,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What was logged while `run` ran, at every level, formatted as the binary formats it.
    fn logged_during(run: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buffer = Arc::clone(&buffer);
            move || SharedWriter(Arc::clone(&buffer))
        };
        let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(writer).finish();
        tracing::subscriber::with_default(subscriber, run);
        let bytes = buffer.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_parameter_the_driver_does_not_read_is_named_in_the_log_without_its_value() {
        let url = "postgres://authbridge:hunter2@db.example.com:6432/app?sslpassword=TopSecret&sslmode=require\
                   &connect_timeout=10&application_name=mine";
        let mut options = None;
        let logs = logged_during(|| options = Some(connect_options(url)));
        let options = options.and_then(Result::ok).expect("a usable URL");
        assert!(!logs.contains("TopSecret"), "the value is never logged: {logs}");
        assert!(logs.contains(r#""sslpassword", "connect_timeout""#), "each key is named: {logs}");
        assert!(!logs.contains("hunter2"), "nor is the password: {logs}");
        // What the driver reads is still read.
        assert_eq!(options.get_host(), "db.example.com");
        assert_eq!(options.get_port(), 6432);
        assert_eq!(options.get_database(), Some("app"));
        assert_eq!(options.get_application_name(), Some("mine"));
        assert!(matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::Require));
    }

    #[test]
    fn a_key_that_is_no_parameters_name_is_not_written_out() {
        let mut options = None;
        let logs = logged_during(|| options = Some(connect_options("postgres://u:p@h/db?x@y%20z=1")));
        assert!(options.is_some_and(|options| options.is_ok()));
        assert!(!logs.contains("x@y"), "{logs}");
        assert!(logs.contains("not a parameter's"), "{logs}");
    }

    #[test]
    fn a_url_with_only_parameters_the_driver_reads_is_taken_as_it_is_without_a_word() {
        let url = "postgres://u:p@localhost/db?sslmode=disable&options[search_path]=x&statement-cache-capacity=5";
        let mut options = None;
        let logs = logged_during(|| options = Some(connect_options(url)));
        assert!(options.is_some_and(|options| options.is_ok()));
        assert!(!logs.contains("ignoring"), "{logs}");
    }

    /// A write retried with a minute between tries is tried again at once when hurried, and then soon after each
    /// failure: a shutdown's few seconds are enough.
    #[tokio::test]
    async fn a_hurried_retry_does_not_wait_out_its_backoff() {
        let hurry = CancellationToken::new();
        let tries = std::sync::atomic::AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let retried = retry_while_unavailable(
            std::iter::repeat(Duration::from_secs(60)),
            Duration::from_secs(3600),
            Some(&hurry),
            || {
                let tried = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                async move { if tried < 3 { Err(DbError::Unavailable("still down".to_owned())) } else { Ok(()) } }
            },
        );
        let hurry_soon = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            hurry.cancel();
        };
        let (retried, ()) = tokio::join!(retried, hurry_soon);
        assert!(retried.is_ok(), "{retried:?}");
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
