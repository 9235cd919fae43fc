//! Applying the SQL migrations in `migrations/` to a database: `authbridge migrate`, the tests and the demo.
//!
//! The migrations are embedded in the binary, so what runs is what was built and reviewed. Errors are one line
//! and never contain the connection URL's password: they end up in terminals and CI logs.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions, Connection, PgConnection};
use url::Url;

/// The migrations as built into this binary, in sqlx's default form. Run them with [`run`] or [`migrator`],
/// which keep sqlx's bookkeeping table out of the `public` schema.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Schema of the bookkeeping table. Everything in `public` is reachable through InsForge's records API and, by
/// InsForge's default privileges, granted to `anon`; a private schema is neither.
pub const MIGRATIONS_SCHEMA: &str = "authbridge";
pub const MIGRATIONS_TABLE: &str = "authbridge._sqlx_migrations";

/// The migrations name every object of theirs with its schema, so they need nothing from `public` but the objects
/// they name. With `public` out of the search path, a function someone with CREATE there (InsForge's
/// `project_admin`) planted to shadow a built-in one (`format(text, text)` would beat `pg_catalog.format(text,
/// VARIADIC "any")`) is never called by the migrating role, usually a superuser (CVE-2018-1058's pattern).
pub const SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// How long to wait for the database to accept a connection before giving up with a clear message.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a migration waits for a lock on what it changes. A table's DDL queues behind any transaction using it,
/// and every request queues behind the DDL, including reads, since the policies read authbridge's private tables:
/// one long or forgotten transaction would turn `migrate` into an outage of every todo request for as long as it
/// lasts. Past this, the migration gives up (nothing of it applied) and says why; running it again later is safe.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("DATABASE_URL is not a usable PostgreSQL URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("cannot connect to the database at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("the database at {target} did not accept a connection within {} seconds", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { target: String },
    #[error("migration {version} ({description}) failed: {reason}")]
    Migration { version: i64, description: String, reason: String },
    #[error("migrating the database at {target} failed: {reason}")]
    Other { target: String, reason: String },
}

/// The embedded migrations, configured to record themselves in [`MIGRATIONS_TABLE`].
pub fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    migrator.create_schema(MIGRATIONS_SCHEMA);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Applies every migration not yet applied. Idempotent: a second run changes nothing.
pub async fn run(database_url: &str) -> Result<(), MigrateError> {
    let redact = Redactor::new(database_url);
    let target = redact.target.clone();
    let options = crate::db::connect_options(database_url)
        .map_err(|e| MigrateError::InvalidUrl { reason: redact.clean(&e.to_string()) })?
        .options([("search_path", SEARCH_PATH)])
        // A migration waiting for its locks runs into `LOCK_TIMEOUT`, which the error says in one line; sqlx would
        // first log the whole migration's SQL as a "slow statement".
        .disable_statement_logging();

    let mut connection = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_elapsed) => return Err(MigrateError::ConnectTimeout { target }),
        Ok(Err(e)) => return Err(MigrateError::Connect { target, reason: redact.clean(&crate::db::describe(&e)) }),
        Ok(Ok(connection)) => connection,
    };

    let result = run_one_at_a_time(&mut connection).await;
    if result.is_ok() {
        reload_postgrest_schema(&mut connection).await;
    }
    // Closing politely is best effort; the migration outcome is what matters (and closing releases the lock).
    let _ = connection.close().await;

    result.map_err(|error| match error {
        sqlx::migrate::MigrateError::ExecuteMigration(cause, version) => MigrateError::Migration {
            version,
            description: description_of(version),
            reason: match cause.as_database_error().and_then(|error| error.code()).as_deref() {
                // Only a migration in a transaction is undone whole; the files are all such (migrations/README.md).
                Some("55P03") if !is_without_transaction(version) => format!(
                    "another session held a lock on what it changes for over {} s (a long or forgotten \
                     transaction: see pg_stat_activity); nothing of this migration was applied, and running \
                     `authbridge migrate` again is safe",
                    LOCK_TIMEOUT.as_secs()
                ),
                _ => redact.clean(&crate::db::describe(&cause)),
            },
        },
        other => MigrateError::Other { target, reason: redact.clean(&other.to_string()) },
    })
}

/// The migrations, one `migrate` at a time, each waiting at most [`LOCK_TIMEOUT`] for its locks. The lock that lets
/// one run at a time is sqlx's own (so a release before this one, whose `migrate` takes it too, is kept out as
/// well), taken here before the time limit is set: another `migrate` (a second replica's init container) waits for
/// it however long, where under the limit it would fail.
async fn run_one_at_a_time(connection: &mut PgConnection) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::Migrate;
    connection.lock().await?;
    sqlx::query("SELECT set_config('lock_timeout', $1, false)")
        .bind(format!("{}ms", LOCK_TIMEOUT.as_millis()))
        .execute(&mut *connection)
        .await?;
    let mut migrator = migrator();
    migrator.set_locking(false);
    migrator.run(&mut *connection).await
}

/// InsForge's PostgREST plans every request from a schema cache it reads at start-up, so a new table or column is
/// refused (404, or 400 `PGRST204`) until it is told to reload. It listens on the `pgrst` channel for that
/// (<https://docs.postgrest.org/en/v12/references/schema_cache.html#schema-cache-reloading>), as InsForge's own
/// migrations do. Sent after every successful run: harmless where nobody listens (a plain PostgreSQL, the tests).
async fn reload_postgrest_schema(connection: &mut PgConnection) {
    if let Err(error) = sqlx::query("NOTIFY pgrst, 'reload schema'").execute(connection).await {
        // The migrations are in; only the reload is not. A restart of InsForge's PostgREST reloads as well.
        tracing::warn!(%error, "the migrations are applied, but PostgREST could not be told to reload its schema");
    }
}

fn is_without_transaction(version: i64) -> bool {
    MIGRATOR.iter().any(|migration| migration.version == version && migration.no_tx)
}

fn description_of(version: i64) -> String {
    MIGRATOR
        .iter()
        .find(|m| m.version == version)
        .map(|m| m.description.to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Names the target database as `host:port/dbname`, which is safe to print, and removes the URL itself from any
/// message should one quote it. Not the password alone: PostgreSQL's and sqlx's messages never quote it, and
/// replacing it wherever it occurs would garble them and tell what it equals ("authentication failed for user
/// \"***\"" says the password is the user's name; a one-letter password stars half the words).
struct Redactor {
    url: String,
    target: String,
}

impl Redactor {
    fn new(database_url: &str) -> Self {
        let target = match Url::parse(database_url) {
            Ok(url) => {
                let host = url.host_str().unwrap_or("localhost");
                let port = url.port().unwrap_or(5432);
                match url.path().trim_start_matches('/') {
                    "" => format!("{host}:{port}"),
                    database => format!("{host}:{port}/{database}"),
                }
            }
            Err(_) => "the configured database".to_owned(),
        };
        // Trimmed: a value from an env file may end in whitespace the message would not quote.
        Redactor { url: database_url.trim().to_owned(), target }
    }

    fn clean(&self, message: &str) -> String {
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.url.is_empty() { message } else { message.replace(&self.url, "DATABASE_URL") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_never_survives_in_a_message_and_the_password_alone_is_not_searched_for() {
        let url = "postgres://postgres:postgres@db.example.com:6543/todos?sslmode=require";
        let redact = Redactor::new(url);
        assert_eq!(redact.target, "db.example.com:6543/todos");
        assert_eq!(redact.clean(&format!("cannot use {url}\nsecond line")), "cannot use DATABASE_URL second line");
        let refused = r#"password authentication failed for user "postgres" (SQLSTATE 28P01)"#;
        assert_eq!(redact.clean(refused), refused, "nothing starred: it would tell the password is the user's name");
        let short = Redactor::new("postgres://app:e@localhost/app");
        assert_eq!(short.clean("error communicating with database"), "error communicating with database");
    }

    #[test]
    fn an_unparsable_url_is_not_echoed() {
        let redact = Redactor::new("not a url with hunter2");
        assert_eq!(redact.target, "the configured database");
    }

    #[test]
    fn the_embedded_migrations_are_numbered_and_described() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
        assert_eq!(description_of(3), "todos");
        assert_eq!(description_of(4), "lifecycle");
        assert_eq!(description_of(5), "organizations");
        assert_eq!(description_of(6), "shared refreshes");
        assert_eq!(description_of(7), "index friendly policies");
        assert_eq!(description_of(8), "faster rls helpers");
        assert_eq!(description_of(9), "rls helpers out of public");
        assert_eq!(description_of(10), "title check vertical tab");
        assert_eq!(description_of(11), "rls helpers self contained");
        assert_eq!(description_of(12), "deleted directories");
        assert_eq!(description_of(13), "todos columns users may set");
        assert_eq!(description_of(14), "policies read their own requesting user id");
        assert_eq!(description_of(15), "membership active since");
        assert_eq!(description_of(16), "audit log outbox maybe sent");
        assert_eq!(description_of(17), "directory denied since");
        assert_eq!(description_of(18), "events cursor polled at");
        assert_eq!(description_of(19), "user email history");
        assert_eq!(description_of(20), "requesting user id pinned");
        assert_eq!(description_of(21), "title check as stored");
        assert_eq!(description_of(22), "deleted users forgotten");
    }
}
