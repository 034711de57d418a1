//! The `carebridge` command line: `serve` (default), `migrate`, `schema`. `main.rs` only parses
//! and calls [`run`]; each command is a function here so tests can drive it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, EnvOverrides, Mode, SourceConfig, SourceCredential};
use crate::domain::Vendor;
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
    /// Remove raw bodies and headers past each source's retention, and old domain events.
    Prune {
        /// Count what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the current mappers again over stored raw deliveries (all of them, or those the
    /// options select; every option given must hold). Idempotent; lineage is kept.
    Reprocess {
        /// Report what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Inbox ids (repeat or comma-separate).
        #[arg(long = "id", value_delimiter = ',')]
        ids: Vec<i64>,
        /// Source ids (repeat or comma-separate).
        #[arg(long = "source", value_delimiter = ',')]
        sources: Vec<String>,
        /// Stored statuses, e.g. FAILED,UNSUPPORTED (repeat or comma-separate).
        #[arg(long = "status", value_delimiter = ',')]
        statuses: Vec<String>,
        /// The vendor's event type as stored.
        #[arg(long)]
        event_type: Option<String>,
        /// Received at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Received before this instant (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Manage API keys stored in the database (hashed; a key is shown once).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Post fixture files to a running gateway, signed (Chup) or tokenized as the vendor would,
    /// using the credentials of the configured sources. For demos and load tests.
    Replay {
        /// Base URL of the gateway, e.g. http://127.0.0.1:8080
        #[arg(long)]
        to: String,
        /// Source id to post to; by default the first source of the vendor named by each file's
        /// directory (fixtures/<vendor>/…).
        #[arg(long)]
        source: Option<String>,
        /// JSON files (vendor payloads; Chup files unsigned).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (once).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: read, write, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List keys (names, scopes, created, revoked); never the keys themselves.
    List,
    /// Revoke a key by name; it stops working at once.
    Revoke {
        #[arg(long)]
        name: String,
    },
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
        Command::Keys { action } => keys(cli.config, action).await,
        Command::Prune { dry_run } => prune(cli.config, dry_run).await,
        Command::Reprocess {
            dry_run,
            ids,
            sources,
            statuses,
            event_type,
            since,
            until,
        } => {
            let selection = crate::store::reprocess::Selection {
                ids: (!ids.is_empty()).then_some(ids),
                source_ids: (!sources.is_empty()).then_some(sources),
                statuses: (!statuses.is_empty())
                    .then(|| statuses.iter().map(|s| s.to_ascii_uppercase()).collect()),
                event_type,
                received_from: since,
                received_until: until,
            };
            reprocess(cli.config, &selection, dry_run).await
        }
        Command::Replay { to, source, files } => {
            replay(cli.config, &to, source.as_deref(), &files).await
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

/// Posts each file in order and prints one line per answer; fails if any was not 2xx.
async fn replay(
    config_path: Option<PathBuf>,
    base_url: &str,
    source: Option<&str>,
    files: &[PathBuf],
) -> Result<(), String> {
    let config = load_config(config_path)?;
    let client = reqwest::Client::new();
    let mut failures = 0;
    for file in files {
        let body =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let target = replay_source(&config, source, file)?;
        let (url, body) = replay_request(base_url, target, body);
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {base_url}: {e}"))?;
        let status = response.status();
        let answer = response.text().await.unwrap_or_default();
        println!(
            "{} {} {} {}",
            status.as_u16(),
            target.id,
            file.display(),
            answer.trim()
        );
        if !status.is_success() {
            failures += 1;
        }
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(format!("{failures} of {} deliveries failed", files.len()))
    }
}

fn replay_source<'a>(
    config: &'a Config,
    source: Option<&str>,
    file: &std::path::Path,
) -> Result<&'a SourceConfig, String> {
    if let Some(id) = source {
        return config
            .source(id)
            .ok_or_else(|| format!("no source {id:?} in the configuration"));
    }
    let vendor = file
        .parent()
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .and_then(Vendor::parse)
        .ok_or_else(|| {
            format!(
                "{}: give --source, or keep the file in a directory named after its vendor",
                file.display()
            )
        })?;
    config
        .sources
        .iter()
        .find(|s| s.vendor == vendor)
        .ok_or_else(|| format!("no {vendor} source in the configuration"))
}

/// The URL and body a vendor would send: Chup signs the body, the others carry the token.
fn replay_request(base_url: &str, source: &SourceConfig, body: Vec<u8>) -> (String, Vec<u8>) {
    let url = format!("{}/webhooks/{}", base_url.trim_end_matches('/'), source.id);
    match &source.credential {
        SourceCredential::HmacSecret(secret) => (
            url,
            crate::vendors::chup::sign_chup(&body, secret.expose().as_bytes()),
        ),
        SourceCredential::UrlToken(token) => (format!("{url}?token={}", token.expose()), body),
    }
}

async fn keys(config_path: Option<PathBuf>, action: KeysAction) -> Result<(), String> {
    use crate::store::keys;
    let config = load_config(config_path)?;
    let db = startup::open_database(&config)
        .await
        .map_err(|e| e.to_string())?;
    let result = match action {
        KeysAction::Create { name, scopes } => {
            let mut parsed = Vec::new();
            for scope in &scopes {
                parsed.push(crate::config::Scope::parse(scope).ok_or_else(|| {
                    format!("unknown scope {scope:?} (expected read, write or admin)")
                })?);
            }
            let key = keys::create(&db, &name, &parsed)
                .await
                .map_err(|e| e.to_string())?;
            let detail = serde_json::json!({ "name": name, "scopes": scopes });
            crate::store::audit::record(&db, "cli", "keys.create", detail)
                .await
                .map_err(|e| format!("key created but not audited: {e}"))?;
            println!("{key}");
            eprintln!("key {name:?} created; it is shown only now, store it safely");
            Ok(())
        }
        KeysAction::List => {
            let rows = keys::list(&db)
                .await
                .map_err(|e| format!("cannot list keys: {e}"))?;
            for row in rows {
                let revoked = row.revoked_at.map_or("active".to_owned(), |at| {
                    format!("revoked {}", at.to_rfc3339())
                });
                println!(
                    "{}\t{}\tcreated {}\t{revoked}",
                    row.name,
                    row.scopes,
                    row.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
        KeysAction::Revoke { name } => {
            keys::revoke(&db, &name).await.map_err(|e| e.to_string())?;
            crate::store::audit::record(
                &db,
                "cli",
                "keys.revoke",
                serde_json::json!({ "name": name }),
            )
            .await
            .map_err(|e| format!("key revoked but not audited: {e}"))?;
            eprintln!("key {name:?} revoked");
            Ok(())
        }
    };
    db.close()
        .await
        .map_err(|e| format!("closing database: {e}"))?;
    result
}

async fn prune(config_path: Option<PathBuf>, dry_run: bool) -> Result<(), String> {
    let config = load_config(config_path)?;
    let db = startup::open_database(&config)
        .await
        .map_err(|e| e.to_string())?;
    let pause = std::time::Duration::from_millis(10);
    let report = crate::store::retention::prune(&db, &config, chrono::Utc::now(), dry_run, pause)
        .await
        .map_err(|e| format!("prune failed: {e}"))?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for (source, count) in &report.bodies {
        println!("{source}\t{verb} {count} raw bodies");
    }
    println!("events\t{verb} {}", report.events);
    db.close()
        .await
        .map_err(|e| format!("closing database: {e}"))?;
    Ok(())
}

async fn reprocess(
    config_path: Option<PathBuf>,
    selection: &crate::store::reprocess::Selection,
    dry_run: bool,
) -> Result<(), String> {
    let config = load_config(config_path)?;
    let db = startup::open_database(&config)
        .await
        .map_err(|e| e.to_string())?;
    let report =
        crate::store::reprocess::reprocess(&db, &config.mappers(), None, selection, dry_run)
            .await
            .map_err(|e| format!("reprocess failed: {e}"))?;
    let verb = if dry_run { "would change" } else { "changed" };
    for one in &report.deliveries {
        let what = match one.skipped {
            Some(reason) => format!("skipped: {reason}"),
            None => {
                let changes: Vec<String> = one
                    .entity_changes
                    .iter()
                    .map(|c| format!("{} {}:{}", c.change, c.entity_type, c.entity_id))
                    .collect();
                format!(
                    "{} -> {}{}",
                    one.status_before,
                    one.status_after,
                    if changes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", changes.join(", "))
                    }
                )
            }
        };
        println!("{}\t{what}", one.id.0);
    }
    if report.truncated {
        println!("…\tmore deliveries changed than are listed");
    }
    println!(
        "matched {}, reprocessed {}, skipped {}; {verb} {} deliveries and {} entities",
        report.matched, report.reprocessed, report.skipped, report.changed, report.entity_changes
    );
    db.close()
        .await
        .map_err(|e| format!("closing database: {e}"))?;
    Ok(())
}
