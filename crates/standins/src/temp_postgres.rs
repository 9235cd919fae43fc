//! A throwaway PostgreSQL cluster started from the machine's own binaries, for the tests and `authbridge demo`.
//!
//! Nothing is downloaded: the binaries are looked up on `PATH`, through `pg_config --bindir`, then in
//! `/usr/lib/postgresql/<version>/bin`. When none is found the error names the package to install.
//!
//! `initdb` refuses to run as root, and CI runs as root; so as root the server runs as the `postgres` user
//! (`setpriv`, else `runuser`), in a directory handed over to that user. As anyone else it runs directly.
//!
//! Clean-up must happen even when `Drop` never runs (a test binary keeps its shared cluster in a `static`, and
//! statics are never dropped; a process can be killed). So the server is started under a small `sh` supervisor
//! that holds the read end of a pipe whose only write end is in this process. When the pipe closes — on
//! [`TempPostgres::stop`], on drop, or because this process exited in any way at all — the supervisor stops the
//! server (fast shutdown) and removes the throwaway directory.

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The superuser `initdb` creates (`-U`), whatever the operating-system user is.
pub const SUPERUSER: &str = "postgres";
/// Where the superuser's generated password is kept, inside the (mode 0700) data directory, so a kept cluster
/// (`--data-dir`) can be reopened.
const PASSWORD_FILE: &str = "authbridge-superuser-password";
/// The server's log, in the data directory.
const LOG_FILE: &str = "authbridge-postgres.log";
/// The operating-system user the server runs as when this process is root.
const SERVICE_USER: &str = "postgres";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop may take before we stop waiting for it.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Free ports are picked by binding port 0 and releasing it; another process can grab it in between.
const FREE_PORT_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// `None` picks a free port.
    pub port: Option<u16>,
    /// `Some` keeps the cluster in that directory between runs (created and initialised when missing or empty);
    /// `None` uses a fresh temporary directory, removed when the cluster stops.
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found (in PG_BINDIR when set, else on PATH, \
         through pg_config, or in /usr/lib/postgresql/*/bin); install them (Debian/Ubuntu: `apt-get install \
         postgresql`)"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `{SERVICE_USER}` user to run it as; \
         install the `postgresql` package (it creates that user) or run as a normal user"
    )]
    NoServiceUser,
    #[error("running as root needs `setpriv` or `runuser` (util-linux) to start PostgreSQL as `{SERVICE_USER}`")]
    NoPrivilegeDrop,
    #[error("port {port} on 127.0.0.1 is already in use; choose another port or stop what is using it")]
    PortInUse { port: u16 },
    #[error("{action} failed: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed ({status}): {output}")]
    Initdb { status: String, output: String },
    #[error("PostgreSQL stopped while starting: {log}")]
    Exited { log: String },
    #[error("PostgreSQL did not accept connections within {} seconds: {log}", START_TIMEOUT.as_secs())]
    StartTimeout { log: String },
    #[error("database name {0:?} is not allowed: use lowercase letters, digits and underscores")]
    BadDatabaseName(String),
    #[error("PostgreSQL refused a command: {0}")]
    Sql(String),
}

fn io_error(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> PostgresError {
    let action = action.into();
    move |source| PostgresError::Io { action, source }
}

/// A running cluster. Stopped (and, when temporary, deleted) on [`TempPostgres::stop`], on drop, or when this
/// process exits.
#[derive(Debug)]
pub struct TempPostgres {
    port: u16,
    data_dir: PathBuf,
    temporary: bool,
    /// The superuser's password. Loopback is not a boundary on a shared machine: without a password, any local
    /// user could connect as superuser (and run programs through `COPY … TO PROGRAM`).
    password: String,
    supervisor: Option<Child>,
    /// Closing this pipe is the stop signal.
    lifeline: Option<ChildStdin>,
}

impl TempPostgres {
    pub async fn start(options: PostgresOptions) -> Result<TempPostgres, PostgresError> {
        // PG_BINDIR picks one installation (of several versions, or outside the usual places) and is then the
        // only place looked at.
        let bin_dir = match std::env::var_os("PG_BINDIR").filter(|dir| !dir.is_empty()) {
            Some(dir) if has_server_binaries(Path::new(&dir)) => PathBuf::from(dir),
            Some(_) => return Err(PostgresError::BinariesNotFound),
            None => find_bin_dir(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql")).await?,
        };
        let runner = Runner::detect().await?;

        let (data_dir, temporary) = match &options.data_dir {
            Some(dir) => (absolute(dir)?, false),
            None => (make_temp_dir().await?, true),
        };
        // From here on a temporary directory must not be left behind if starting fails.
        let mut cleanup = TempDirGuard { path: temporary.then(|| data_dir.clone()) };

        let mut attempts = 0;
        let postgres = loop {
            attempts += 1;
            // Checked on every attempt: a temporary cluster whose server failed has been removed by its
            // supervisor and is initialised afresh.
            let password = if tokio::fs::try_exists(data_dir.join("PG_VERSION")).await.unwrap_or(false) {
                existing_password(&data_dir).await?
            } else {
                prepare_empty_dir(&data_dir, &runner).await?;
                initdb(&bin_dir, &data_dir, &runner, temporary).await?
            };
            let port = match options.port {
                Some(port) => {
                    ensure_port_free(port)?;
                    port
                }
                None => free_port()?,
            };
            match launch(&bin_dir, &data_dir, port, temporary, password, &runner).await {
                Ok(postgres) => break postgres,
                Err(PostgresError::Exited { log }) if log.contains("could not bind") => {
                    // Someone took the port between our probe and the server's bind: with a free port, pick
                    // another; with the caller's port, say so.
                    if options.port.is_some() {
                        return Err(PostgresError::PortInUse { port });
                    }
                    if attempts >= FREE_PORT_ATTEMPTS {
                        return Err(PostgresError::Exited { log });
                    }
                }
                Err(error) => return Err(error),
            }
        };
        // The supervisor owns the directory now.
        cleanup.path = None;
        Ok(postgres)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the data directory is removed when the cluster stops.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// A superuser connection URL for `database` (with the generated password). The server listens on 127.0.0.1
    /// only.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Creates an empty database and returns its superuser URL.
    pub async fn create_database(&self, name: &str) -> Result<String, PostgresError> {
        if !is_plain_identifier(name) {
            return Err(PostgresError::BadDatabaseName(name.to_owned()));
        }
        // Identifiers cannot be bound as parameters; `name` is checked above to contain nothing to quote.
        self.run_as_superuser(format!("CREATE DATABASE \"{name}\"")).await?;
        Ok(self.url_for(name))
    }

    /// Creates a uniquely named empty database that is dropped, with whatever connections are still open to it, once
    /// the last clone of the returned value is gone: one per test, dropped when the test is done with it.
    ///
    /// Hundreds of tests each making a database of ~8 MB took 4.7 GB kept to the end of the run. PostgreSQL stops
    /// when it cannot write, which is the likely cause of a CI run in which every test after some point failed with
    /// "the database system is not yet accepting connections" (its log replayed after the stop).
    pub async fn create_throwaway_database(&'static self) -> Result<ThrowawayDatabase, PostgresError> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let url = self.create_database(&name).await?;
        Ok(ThrowawayDatabase {
            name: name.clone(),
            url,
            _dropped_when_done: Arc::new(DropWhenDone { cluster: self, name }),
        })
    }

    /// Runs one statement on the `postgres` database as the superuser. A failure carries the end of the server's
    /// log, which says why a cluster stopped answering when the error alone does not.
    async fn run_as_superuser(&self, statement: String) -> Result<(), PostgresError> {
        let result = async {
            let mut connection = PgConnection::connect(&self.url_for("postgres")).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await?;
            let _ = connection.close().await;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(PostgresError::Sql(format!(
                "{error} (the server's log ends: {})",
                read_log_tail(&self.data_dir.join(LOG_FILE)).await
            ))),
        }
    }

    /// Stops the server and waits until it is gone (and its temporary directory removed).
    pub async fn stop(mut self) {
        self.lifeline.take();
        let deadline = Instant::now() + STOP_TIMEOUT;
        if let Some(mut supervisor) = self.supervisor.take() {
            while Instant::now() < deadline {
                match supervisor.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.lifeline.take();
        // Waiting here makes "dropped" mean "gone" (a second demo can reuse the port and directory at once).
        // It is short: a fast shutdown of a throwaway cluster takes a fraction of a second.
        if let Some(mut supervisor) = self.supervisor.take() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                match supervisor.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// A database of a cluster that lives as long as the process (a test binary's, in a `static`), dropped once the
/// last clone of this value is gone. See [`TempPostgres::create_throwaway_database`].
#[derive(Debug, Clone)]
pub struct ThrowawayDatabase {
    pub name: String,
    /// A superuser connection URL.
    pub url: String,
    _dropped_when_done: Arc<DropWhenDone>,
}

#[derive(Debug)]
struct DropWhenDone {
    cluster: &'static TempPostgres,
    name: String,
}

impl Drop for DropWhenDone {
    fn drop(&mut self) {
        let _ = dropper().send((self.cluster, std::mem::take(&mut self.name)));
    }
}

/// Where finished databases are sent to be dropped: one thread with a runtime of its own (a test's runtime may be
/// shutting down when its database goes), dropping them one at a time for the rest of the process.
fn dropper() -> &'static tokio::sync::mpsc::UnboundedSender<(&'static TempPostgres, String)> {
    static DROPPER: OnceLock<tokio::sync::mpsc::UnboundedSender<(&'static TempPostgres, String)>> = OnceLock::new();
    DROPPER.get_or_init(|| {
        let (sender, mut finished) = tokio::sync::mpsc::unbounded_channel::<(&'static TempPostgres, String)>();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                eprintln!("no runtime to drop throwaway databases on: they stay until the cluster stops");
                return;
            };
            runtime.block_on(async {
                while let Some((cluster, name)) = finished.recv().await {
                    // `name` was checked when the database was made.
                    let dropped = cluster.run_as_superuser(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
                    if let Err(error) = dropped.await {
                        eprintln!("could not drop the throwaway database {name}: {error}");
                    }
                }
            });
        });
        sender
    })
}

/// A database name with nothing to quote: lowercase letters, digits and underscores, not starting with a digit,
/// within PostgreSQL's 63 bytes.
fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Removes a temporary directory if starting fails half-way.
struct TempDirGuard {
    path: Option<PathBuf>,
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// How server processes are started: directly, or as the `postgres` user when we are root.
#[derive(Debug, Clone)]
enum Runner {
    Direct,
    AsServiceUser { prefix: Vec<OsString>, uid: u32, gid: u32 },
}

impl Runner {
    async fn detect() -> Result<Runner, PostgresError> {
        if !running_as_root() {
            return Ok(Runner::Direct);
        }
        let uid = id_of("-u").await.ok_or(PostgresError::NoServiceUser)?;
        let gid = id_of("-g").await.ok_or(PostgresError::NoServiceUser)?;
        let prefix: Vec<OsString> = if let Some(setpriv) = find_on_path("setpriv") {
            // setpriv execs the command, so the process we signal is the server itself.
            vec![
                setpriv.into(),
                format!("--reuid={SERVICE_USER}").into(),
                format!("--regid={SERVICE_USER}").into(),
                "--init-groups".into(),
            ]
        } else if let Some(runuser) = find_on_path("runuser") {
            vec![runuser.into(), "-u".into(), SERVICE_USER.into(), "--".into()]
        } else {
            return Err(PostgresError::NoPrivilegeDrop);
        };
        Ok(Runner::AsServiceUser { prefix, uid, gid })
    }

    fn command(&self, program: &Path) -> Vec<OsString> {
        let mut argv = match self {
            Runner::Direct => Vec::new(),
            Runner::AsServiceUser { prefix, .. } => prefix.clone(),
        };
        argv.push(program.as_os_str().to_owned());
        argv
    }
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective uid; no libc call needed.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

async fn id_of(flag: &str) -> Option<u32> {
    let output = tokio::process::Command::new("id").arg(flag).arg(SERVICE_USER).output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file() && m.mode() & 0o111 != 0).unwrap_or(false)
}

fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

/// Finds a directory holding both `initdb` and `postgres`: `PATH`, then `pg_config --bindir`, then the highest
/// version under `versioned_root` (`/usr/lib/postgresql/<version>/bin`, where Debian puts them off `PATH`).
async fn find_bin_dir(path: Option<OsString>, versioned_root: &Path) -> Result<PathBuf, PostgresError> {
    if let Some(path) = &path {
        for dir in std::env::split_paths(path) {
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
        }
    }

    let pg_config = path
        .as_ref()
        .and_then(|path| std::env::split_paths(path).map(|d| d.join("pg_config")).find(|p| is_executable(p)));
    if let Some(pg_config) = pg_config
        && let Ok(output) = tokio::process::Command::new(pg_config).arg("--bindir").output().await
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
    }

    let mut versions: Vec<(Vec<u32>, PathBuf)> = match std::fs::read_dir(versioned_root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version: Option<Vec<u32>> = name.split('.').map(|part| part.parse().ok()).collect();
                let bin = entry.path().join("bin");
                version.filter(|_| has_server_binaries(&bin)).map(|v| (v, bin))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or(PostgresError::BinariesNotFound)
}

fn absolute(dir: &Path) -> Result<PathBuf, PostgresError> {
    std::path::absolute(dir).map_err(io_error(format!("resolving {}", dir.display())))
}

async fn make_temp_dir() -> Result<PathBuf, PostgresError> {
    let base = std::env::temp_dir();
    for _ in 0..8 {
        let candidate = base.join(format!("authbridge-pg-{}", uuid::Uuid::new_v4().simple()));
        match tokio::fs::DirBuilder::new().mode(0o700).create(&candidate).await {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(format!("creating a directory in {}", base.display()))(e)),
        }
    }
    Err(PostgresError::Io {
        action: format!("creating a unique directory in {}", base.display()),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

/// initdb wants an empty directory owned by the user it runs as, mode 0700.
async fn prepare_empty_dir(dir: &Path, runner: &Runner) -> Result<(), PostgresError> {
    tokio::fs::create_dir_all(dir).await.map_err(io_error(format!("creating {}", dir.display())))?;
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io_error(format!("reading {}", dir.display())))?;
    if entries.next_entry().await.map_err(io_error(format!("reading {}", dir.display())))?.is_some() {
        return Err(PostgresError::Io {
            action: format!("using {} as a PostgreSQL data directory", dir.display()),
            source: std::io::Error::other("it is not empty and holds no PostgreSQL cluster"),
        });
    }
    tokio::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .await
        .map_err(io_error(format!("setting permissions of {}", dir.display())))?;
    if let Runner::AsServiceUser { uid, gid, .. } = runner {
        std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
            .map_err(io_error(format!("handing {} to the {SERVICE_USER} user", dir.display())))?;
    }
    Ok(())
}

/// The password of a cluster this module initialised earlier. A cluster from before passwords were generated
/// still trusts local connections and ignores whatever password is sent, so a fresh one does no harm there.
async fn existing_password(data_dir: &Path) -> Result<String, PostgresError> {
    match tokio::fs::read_to_string(data_dir.join(PASSWORD_FILE)).await {
        Ok(password) => Ok(password.trim().to_owned()),
        Err(_) => generate_password(),
    }
}

/// 32 random bytes from the operating system, base64url: a password nobody can guess, safe in a connection URL.
fn generate_password() -> Result<String, PostgresError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PostgresError::Io {
        action: "generating a password".to_owned(),
        source: std::io::Error::other("the system random number generator failed"),
    })?;
    Ok(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes))
}

/// Initialises the cluster with password authentication and returns the superuser's new password.
async fn initdb(bin_dir: &Path, data_dir: &Path, runner: &Runner, temporary: bool) -> Result<String, PostgresError> {
    let password = generate_password()?;
    // initdb reads the password from a file (never the command line, which other users can see in `ps`); the
    // file sits beside the data directory, readable only by the user initdb runs as, and is removed right after.
    let pwfile = data_dir.with_file_name(format!(
        ".{}-pw",
        data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    write_private(&pwfile, &password, runner).await?;
    let result = run_initdb(bin_dir, data_dir, &pwfile, runner, temporary).await;
    let _ = tokio::fs::remove_file(&pwfile).await;
    result?;
    write_private(&data_dir.join(PASSWORD_FILE), &password, runner).await?;
    Ok(password)
}

/// Writes `contents` to a new file of mode 0600, owned by the user the server runs as.
async fn write_private(path: &Path, contents: &str, runner: &Runner) -> Result<(), PostgresError> {
    let action = || format!("writing {}", path.display());
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = options.open(path).await.map_err(io_error(action()))?;
    tokio::io::AsyncWriteExt::write_all(&mut file, contents.as_bytes()).await.map_err(io_error(action()))?;
    if let Runner::AsServiceUser { uid, gid, .. } = runner {
        std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(io_error(action()))?;
    }
    Ok(())
}

async fn run_initdb(
    bin_dir: &Path,
    data_dir: &Path,
    pwfile: &Path,
    runner: &Runner,
    temporary: bool,
) -> Result<(), PostgresError> {
    let argv = runner.command(&bin_dir.join("initdb"));
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .arg("--pgdata")
        .arg(data_dir)
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--username", SUPERUSER, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C"])
        .stdin(Stdio::null())
        // initdb may be run from a directory the service user cannot enter (e.g. /root).
        .current_dir("/");
    if temporary {
        command.arg("--no-sync");
    }
    let output = command.output().await.map_err(io_error("running initdb"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Err(PostgresError::Initdb { status: output.status.to_string(), output: last_lines(&text, 6) })
}

fn ensure_port_free(port: u16) -> Result<(), PostgresError> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map(drop)
        .map_err(|_| PostgresError::PortInUse { port })
}

fn free_port() -> Result<u16, PostgresError> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("finding a free port on 127.0.0.1"))?;
    listener.local_addr().map(|a| a.port()).map_err(io_error("finding a free port on 127.0.0.1"))
}

/// The supervisor: runs the server in the background, waits for its stdin (our pipe) to close, then stops the
/// server (SIGINT: fast shutdown) and, for a throwaway cluster, removes the directory. If the server exits by
/// itself (a failed start), the supervisor exits too, after copying the end of the server log to its stderr,
/// which is how a failed start is noticed and explained. SIGPIPE is ignored so that a parent that is already
/// gone (its stderr pipe closed) cannot kill the supervisor before it has cleaned up.
///
/// `$1` data dir, `$2` "1" to remove it afterwards, `$3` log file, the rest: the server command line.
const SUPERVISOR: &str = r#"
trap '' PIPE
dir=$1; remove=$2; log=$3; shift 3
exec 3<&0 </dev/null
"$@" >>"$log" 2>&1 3<&- &
server=$!
( read _ignored <&3; kill -INT "$server" ) >/dev/null 2>&1 &
exec 3<&-
wait "$server"
status=$?
tail -n 8 "$log" >&2 2>/dev/null
if [ "$remove" = 1 ]; then rm -rf "$dir"; fi
exit "$status"
"#;

async fn launch(
    bin_dir: &Path,
    data_dir: &Path,
    port: u16,
    temporary: bool,
    password: String,
    runner: &Runner,
) -> Result<TempPostgres, PostgresError> {
    let log = data_dir.join(LOG_FILE);
    let mut server = runner.command(&bin_dir.join("postgres"));
    server.push("-D".into());
    server.push(data_dir.as_os_str().to_owned());
    let mut settings = vec![
        format!("port={port}"),
        "listen_addresses=127.0.0.1".to_owned(),
        // No Unix-domain socket: every connection uses TCP on 127.0.0.1. The default directory
        // (/var/run/postgresql) may not exist or be writable, and one in the data directory fails to start once the
        // path passes 107 bytes (a long TMPDIR or --data-dir; the browser test's TMPDIR hit it).
        "unix_socket_directories=".to_owned(),
        "max_connections=200".to_owned(),
    ];
    if temporary {
        // Durability is pointless for data that is deleted at the end; skipping it makes tests much faster.
        settings.extend(["fsync=off", "synchronous_commit=off", "full_page_writes=off"].map(str::to_owned));
        // Keep the write-ahead log small: every CREATE DATABASE writes a copy of its template (~8 MB) into it, and
        // by default 1 GB of it stays on disk between checkpoints, which a machine with little disk left cannot
        // spare. Nothing replicates from a throwaway cluster, so the least WAL will do.
        settings.extend(
            ["wal_level=minimal", "max_wal_senders=0", "max_wal_size=64MB", "min_wal_size=32MB"].map(str::to_owned),
        );
        // Checkpoints come often then; their lines would crowd out of the log's end what a failure quotes from it.
        settings.extend(["log_checkpoints=off", "checkpoint_warning=0"].map(str::to_owned));
    }
    for setting in settings {
        server.push("-c".into());
        server.push(setting.into());
    }

    let mut supervisor = std::process::Command::new("sh")
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("authbridge-postgres")
        .arg(data_dir)
        .arg(if temporary { "1" } else { "0" })
        .arg(&log)
        .args(&server)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/")
        // Its own process group: a Ctrl-C in the terminal goes to the program that started the cluster, which
        // then stops it through the pipe, instead of killing the supervisor before it can clean up.
        .process_group(0)
        .spawn()
        .map_err(io_error("starting PostgreSQL under sh"))?;
    let lifeline = supervisor.stdin.take();

    let mut postgres = TempPostgres {
        port,
        data_dir: data_dir.to_owned(),
        temporary,
        password,
        supervisor: Some(supervisor),
        lifeline,
    };

    let deadline = Instant::now() + START_TIMEOUT;
    let url = postgres.url_for("postgres");
    loop {
        if let Some(supervisor) = postgres.supervisor.as_mut()
            && let Ok(Some(_)) = supervisor.try_wait()
        {
            let log = supervisor_output(supervisor).await;
            // The supervisor is gone; nothing is left to stop. Keep Drop from waiting on it.
            postgres.supervisor = None;
            postgres.lifeline = None;
            return Err(PostgresError::Exited { log });
        }
        // Bounded, in case something that is not PostgreSQL grabbed the port and never answers.
        if let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&url)).await {
            let _ = connection.close().await;
            return Ok(postgres);
        }
        if Instant::now() >= deadline {
            let log = read_log_tail(&log).await;
            return Err(PostgresError::StartTimeout { log });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_log_tail(path: &Path) -> String {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => last_lines(&text, 6),
        Err(_) => "(no server log)".to_owned(),
    }
}

/// What an exited supervisor wrote: the end of the server log (the directory may already be removed).
async fn supervisor_output(supervisor: &mut Child) -> String {
    let Some(mut stderr) = supervisor.stderr.take() else {
        return "(no server log)".to_owned();
    };
    // Every writer of this pipe has exited, so the read ends at once; it still runs off the async threads.
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    })
    .await
    .unwrap_or_default();
    last_lines(&text, 6)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_binaries_name_the_package_to_install() {
        let empty = std::env::temp_dir().join(format!("authbridge-nopg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&empty).expect("temp dir");
        let error = find_bin_dir(Some(empty.clone().into_os_string()), &empty).await.expect_err("nothing there");
        std::fs::remove_dir(&empty).expect("cleanup");
        assert!(matches!(error, PostgresError::BinariesNotFound));
        assert!(error.to_string().contains("apt-get install postgresql"), "{error}");
    }

    #[tokio::test]
    async fn the_highest_versioned_directory_wins() {
        let root = std::env::temp_dir().join(format!("authbridge-pgroot-{}", uuid::Uuid::new_v4().simple()));
        for version in ["9.6", "15", "13"] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("bin dir");
            for program in ["initdb", "postgres"] {
                std::fs::write(bin.join(program), "#!/bin/sh\n").expect("fake binary");
                std::fs::set_permissions(bin.join(program), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .expect("chmod");
            }
        }
        // A PATH without PostgreSQL, so only the versioned root can answer.
        let found = find_bin_dir(Some(OsString::from("/nonexistent")), &root).await.expect("found");
        std::fs::remove_dir_all(&root).expect("cleanup");
        assert_eq!(found, root.join("15").join("bin"));
    }
}
