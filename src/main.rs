//! The `authbridge` command: parses the command line and hands over to the library, nothing more.
//!
//! Errors leave as one line on stderr and a non-zero exit status, never a panic or a `Debug` dump: operators read
//! them in terminals and CI logs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authbridge::config::Config;
use authbridge::startup::{Application, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "authbridge",
    version,
    about = "Enterprise sign-in (WorkOS AuthKit, Auth0 or any OpenID Connect provider) in front of InsForge row-level security"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app, configured from the environment or .env (the default when no subcommand is given).
    Serve,
    /// Apply the database migrations to DATABASE_URL (read from the environment or .env).
    Migrate,
    /// Run everything locally: PostgreSQL, the InsForge stand-in, a WorkOS or OpenID Connect stand-in, and the app.
    /// No accounts needed.
    #[cfg(feature = "demo")]
    Demo(demo_command::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before parsing: flags such as `demo --bind` fall back to variables, which `.env` may set.
    if let Err(problem) = load_dotenv() {
        // `--help` and `--version` need no configuration: a broken `.env` must not hide them.
        if let Err(asked) = Cli::try_parse()
            && matches!(asked.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
        {
            asked.exit();
        }
        eprintln!("authbridge: {problem}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let json_logs = match init_logging() {
        Ok(json) => json,
        Err(problem) => {
            eprintln!("authbridge: configuration error: {problem}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(json_logs).await,
        Command::Migrate => migrate().await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo_command::run(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A log shipper reading JSON lines gets the reason as one of them, not as a line it cannot parse.
        Err(problem) if json_logs => {
            tracing::error!(error = %problem, "authbridge stopped");
            ExitCode::FAILURE
        }
        Err(problem) => {
            eprintln!("authbridge: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(json_logs: bool) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| format!("configuration error: {e}"))?;
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    // Listening for the signals before saying where the app listens: whoever waits for that line (a supervisor, a
    // test) may stop the process at once, and a SIGTERM before the handler exists would kill it the default way,
    // without the graceful stop.
    let first = shutdown_signal();
    match app.local_addr() {
        Ok(addr) => tracing::info!(%addr, "authbridge is listening"),
        Err(error) => tracing::warn!(%error, "authbridge is listening on an unknown address"),
    }
    // Where to point the scraper, port 0 (any free one) included.
    if let Some(addr) = app.metrics_addr() {
        tracing::info!(%addr, "metrics are served at /metrics");
    }
    let stop = async move {
        first.await;
        // Requests under way may take up to REQUEST_TIMEOUT_SECONDS to finish; an operator who signals again wants
        // out now. Not within a second of the first, which is one Ctrl-C reaching the process twice (the whole
        // process group, and a wrapper passing it on); and not in the demo, whose shutdown removes its throwaway
        // database.
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_SIGNAL_AFTER).await;
            authbridge::startup::stop_signal().await;
            let why = "stopped at a second signal, without waiting for the requests under way";
            // In the log's format, as the reason for any other stop (the writer is synchronous: written before the
            // exit).
            if json_logs {
                tracing::error!("authbridge: {why}");
            } else {
                eprintln!("authbridge: {why}");
            }
            std::process::exit(1);
        });
    };
    app.run_until_stopped(stop).await.map_err(|e| format!("the server stopped: {e}"))?;
    // The last line of a clean stop: a log that ends without it was cut short (a SIGKILL at the end of a grace
    // period, a crash).
    tracing::info!("authbridge stopped: every request under way finished");
    Ok(())
}

/// How long after the first stop signal a second one counts as the operator's.
const SECOND_SIGNAL_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

async fn migrate() -> Result<(), String> {
    let database_url = authbridge::config::database_url_from_env().map_err(|e| e.to_string())?;
    authbridge::migrate::run(database_url.expose()).await.map_err(|e| format!("migrate: {e}"))?;
    let count = authbridge::migrate::MIGRATOR.iter().count();
    println!("authbridge migrate: the database is up to date ({count} migrations)");
    Ok(())
}

/// `RUST_LOG` filters (default `info,sqlx=warn`: sqlx logs every statement at `info`); `LOG_FORMAT=json` switches
/// to one JSON object per line for log shippers. Like every other variable, a value that cannot be what was meant
/// (a directive that does not parse, such as `sqlx=verbose`; an unknown format) stops the start instead of being
/// quietly replaced by the default. (A lone word that is not a level, `debgu`, parses: as a target, which then
/// logs nothing else. tracing cannot tell it from a real target.) Whether the lines are JSON.
fn init_logging() -> Result<bool, String> {
    let set = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let filter = match set("RUST_LOG") {
        Some(directives) => tracing_subscriber::EnvFilter::builder()
            .parse(directives.trim())
            .map_err(|error| format!("RUST_LOG: cannot parse {directives:?}: {error}"))?,
        None => tracing_subscriber::EnvFilter::new("info,sqlx=warn"),
    };
    let json = match set("LOG_FORMAT").map(|format| format.trim().to_ascii_lowercase()).as_deref() {
        None | Some("pretty") => false,
        Some("json") => true,
        Some(other) => return Err(format!("LOG_FORMAT: must be `pretty` or `json` (it is {other:?})")),
    };
    // Colours only for a person at a terminal: escape codes in a log file are noise, and cost time on every line.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let installed = if json { builder.json().try_init() } else { builder.try_init() };
    if let Err(error) = installed {
        eprintln!("authbridge: logging is not available: {error}");
    }
    Ok(json)
}

/// Reads `.env` when there is one. A malformed file is reported by line number only: the line itself may hold a
/// secret.
fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(dotenvy::Error::LineParse(line, index)) => {
            // dotenvy gives the line's text, not its number: found again in the file, compared, never printed.
            let number = std::fs::read_to_string(".env")
                .ok()
                .and_then(|contents| contents.lines().position(|candidate| candidate == line))
                .map_or_else(String::new, |at| format!("line {}, ", at + 1));
            Err(format!(".env has a malformed line ({number}at character {index} of it)"))
        }
        Err(dotenvy::Error::Io(e)) => Err(format!(".env could not be read: {}", e.kind())),
        Err(_) => Err(".env could not be loaded".to_owned()),
    }
}

/// `authbridge demo`: only with the `demo` feature (on by default), so a production build has neither the
/// subcommand nor the stand-ins it runs.
#[cfg(feature = "demo")]
mod demo_command {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use authbridge::demo::{self, DemoOptions, DemoProvider};
    use authbridge::startup::shutdown_signal;

    /// The identity provider the demo signs people in with.
    #[derive(Clone, Copy, clap::ValueEnum)]
    pub enum Provider {
        /// WorkOS AuthKit (its stand-in).
        Workos,
        /// An OpenID Connect provider (a stand-in shaped like an Auth0 tenant).
        Oidc,
    }

    #[derive(clap::Args)]
    pub struct DemoArgs {
        /// Address the app listens on (loopback only).
        #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:3000")]
        pub bind: SocketAddr,
        /// Port the app listens on (replaces the port of --bind).
        #[arg(long)]
        pub port: Option<u16>,
        /// Who signs people in: WorkOS, or an OpenID Connect provider (Auth0-shaped).
        #[arg(long, value_enum, default_value = "workos")]
        provider: Provider,
        /// Port of the WorkOS stand-in (its sign-in page), with --provider workos.
        #[arg(long, default_value_t = 3001)]
        workos_port: u16,
        /// Port of the OpenID Connect stand-in (the issuer and its sign-in page), with --provider oidc.
        #[arg(long, default_value_t = 3001)]
        oidc_port: u16,
        /// Port of the InsForge stand-in.
        #[arg(long, default_value_t = 3002)]
        insforge_port: u16,
        /// Port of PostgreSQL (default: any free port).
        #[arg(long)]
        postgres_port: Option<u16>,
        /// Keep the database in this directory between runs (default: a throwaway one). The stand-ins start from
        /// their seed each time; users and organizations deleted in an earlier run stay deleted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Lifetime of the access tokens the identity provider stand-in issues, in seconds (short values show
        /// refreshing).
        #[arg(long, default_value_t = 300)]
        access_token_ttl: u64,
    }

    pub async fn run(args: DemoArgs) -> Result<(), String> {
        let bind = args.port.map_or(args.bind, |port| SocketAddr::new(args.bind.ip(), port));
        let options = DemoOptions {
            bind,
            provider: match args.provider {
                Provider::Workos => DemoProvider::Workos,
                Provider::Oidc => DemoProvider::Oidc,
            },
            workos_port: args.workos_port,
            oidc_port: args.oidc_port,
            insforge_port: args.insforge_port,
            postgres_port: args.postgres_port,
            data_dir: args.data_dir,
            access_token_ttl: Duration::from_secs(args.access_token_ttl.max(1)),
        };
        demo::run(options, shutdown_signal()).await.map_err(|e| format!("demo: {e}"))
    }
}

/// The README's command lines and flags are what users copy: they must parse. Only with the demo (which they show).
#[cfg(all(test, feature = "demo"))]
mod tests {
    use clap::CommandFactory;

    use super::*;

    const README: &str = include_str!("../README.md");
    /// Flags of cargo itself, which the README's command lines also use.
    const CARGO_FLAGS: [&str; 6] =
        ["--release", "--profile", "--locked", "--workspace", "--no-default-features", "--features"];

    /// Every command line the README shows for this binary (`cargo run --release -- …` or `authbridge …`), as
    /// the arguments the binary would receive.
    fn readme_command_lines() -> Vec<Vec<String>> {
        let mut lines = Vec::new();
        for text in README.lines().flat_map(|line| line.split('`')) {
            let text = text.split(" #").next().unwrap_or_default().trim();
            let args = if let Some((_, args)) = text.split_once("cargo run --release --") {
                args
            } else if let Some(args) = text.strip_prefix("authbridge ") {
                args
            } else {
                continue;
            };
            let mut argv = vec!["authbridge".to_owned()];
            argv.extend(args.split_whitespace().map(str::to_owned));
            lines.push(argv);
        }
        lines
    }

    #[test]
    fn every_readme_command_line_parses() {
        let lines = readme_command_lines();
        assert!(lines.iter().any(|argv| argv.get(1).map(String::as_str) == Some("demo")), "{lines:?}");
        for argv in lines {
            if let Err(error) = Cli::try_parse_from(&argv)
                && !matches!(error.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
            {
                panic!("README shows `{}`, which the binary refuses:\n{error}", argv.join(" "));
            }
        }
    }

    #[test]
    fn every_flag_the_readme_names_exists() {
        let command = Cli::command();
        let mut known: Vec<String> = command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments())
            .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
            .collect();
        known.extend(["--help".to_owned(), "--version".to_owned()]);
        let named = README
            .lines()
            .flat_map(|line| line.split('`').skip(1).step_by(2))
            .flat_map(str::split_whitespace)
            .filter(|word| word.starts_with("--") && word.len() > 2)
            .map(|word| word.trim_end_matches([',', ';', '.']));
        for flag in named {
            assert!(
                known.iter().any(|k| k == flag) || CARGO_FLAGS.contains(&flag),
                "README names {flag}, which no subcommand has (known: {known:?})"
            );
        }
    }

    #[test]
    fn port_moves_the_demo_but_keeps_the_loopback_address() {
        let cli = Cli::try_parse_from(["authbridge", "demo", "--port", "8080"]).expect("parses");
        let Some(Command::Demo(args)) = cli.command else { panic!("the demo subcommand") };
        assert_eq!(args.port, Some(8080));
        assert!(args.bind.ip().is_loopback());
    }
}
