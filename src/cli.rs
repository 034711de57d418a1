//! The `carebridge` command line: `serve` (default), `migrate`, `schema`. `main.rs` only parses
//! and calls [`run`]; each command is a function here so tests can drive it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, EnvOverrides, Mode};
use crate::startup::{self, Application};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "carebridge",
    version,
    about = "GraphQL integration gateway for clinic SaaS webhooks"
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, development mode: loopback only, demo credentials.
    #[arg(long, global = true, env = "CAREBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "CAREBRIDGE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
}

/// Runs the parsed command; every failure is one line on stderr and a non-zero exit.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config, cli.log_format).await,
        Command::Migrate => migrate(cli.config, cli.log_format).await,
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("carebridge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, String> {
    Config::load(path.as_deref(), &EnvOverrides::from_process()).map_err(|e| e.to_string())
}

async fn serve(config_path: Option<PathBuf>, log_format: LogFormat) -> Result<(), String> {
    telemetry::init(log_format, std::io::stdout);
    let config = load_config(config_path)?;
    if config.mode == Mode::Development {
        eprint!("{}", config.development_banner());
    }
    let started = std::time::Instant::now();
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        address = %app.local_addr(),
        ready_ms = started.elapsed().as_millis() as u64,
        "carebridge ready"
    );
    app.run_until_stopped(startup::shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("carebridge stopped");
    Ok(())
}

async fn migrate(config_path: Option<PathBuf>, log_format: LogFormat) -> Result<(), String> {
    telemetry::init(log_format, std::io::stderr);
    let config = load_config(config_path)?;
    let db = startup::open_database(&config)
        .await
        .map_err(|e| e.to_string())?;
    db.close()
        .await
        .map_err(|e| format!("closing database: {e}"))?;
    eprintln!(
        "migrations applied to {}",
        startup::redact_url(config.database_url.expose())
    );
    Ok(())
}
