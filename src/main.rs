//! The `authbridge` command: parses the command line and hands over to the library, nothing more.
//!
//! Errors leave as one line on stderr and a non-zero exit status, never a panic or a `Debug` dump: operators read
//! them in terminals and CI logs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "authbridge", version, about = "WorkOS AuthKit sign-in in front of InsForge row-level security")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app (the default when no subcommand is given).
    Serve,
    /// Apply the database migrations to DATABASE_URL (read from the environment or .env).
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            eprintln!("serve: not wired yet");
            ExitCode::from(2)
        }
        Command::Migrate => migrate().await,
    }
}

async fn migrate() -> ExitCode {
    if let Err(problem) = load_dotenv() {
        eprintln!("authbridge migrate: {problem}");
        return ExitCode::FAILURE;
    }
    let database_url = match authbridge::config::database_url_from_env() {
        Ok(url) => url,
        Err(error) => {
            eprintln!("authbridge migrate: {error}");
            return ExitCode::FAILURE;
        }
    };
    match authbridge::migrate::run(database_url.expose()).await {
        Ok(()) => {
            let count = authbridge::migrate::MIGRATOR.iter().count();
            println!("authbridge migrate: the database is up to date ({count} migrations)");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("authbridge migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `.env` when there is one. A malformed file is reported by line number only: the line itself may hold a
/// secret.
fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(dotenvy::Error::LineParse(_, index)) => {
            Err(format!(".env has a malformed line (at character {index} of it)"))
        }
        Err(dotenvy::Error::Io(e)) => Err(format!(".env could not be read: {}", e.kind())),
        Err(_) => Err(".env could not be loaded".to_owned()),
    }
}
