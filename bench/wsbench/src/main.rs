//! The websocket benchmark client for `bench/run-latency.sh`, `bench/run-fanout.sh` and
//! `bench/run-footprint.sh` (see shared/design/PERFORMANCE.md for the targets).
//!
//! It signs Chup webhooks itself (the gateway's own signer), posts them over plain HTTP/1.1
//! keep-alive connections, and subscribes over `graphql-transport-ws` with the dashboard-screen
//! selection in [`subscriber::SCREEN_QUERY`]. The same client drives the gateway and the
//! baseline (`carebridge-bench-wsbase`), which serve the same shape.
//!
//! Each subcommand prints human-readable lines, then one `RESULT key=value …` line for the
//! scripts.
//!
//! # Layout
//! - `latency`: webhooks at a steady rate, each timed from its POST to its arrival at the
//!   subscriber of its service.
//! - `fanout`: N idle subscribers, each on its own connection; one webhook; time until all N
//!   have it, and the server's RSS growth per subscriber.
//! - `footprint`: starts a server, times it to its first 200 from a readiness URL, reads its
//!   idle RSS, stops it with SIGTERM.
//! - `post`: posts N webhooks as fast as it can (fills a database for `footprint`).

#![forbid(unsafe_code)]

mod fanout;
mod footprint;
mod http;
mod latency;
mod subscriber;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "websocket benchmark client for CareBridge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The server under test and how to talk to it.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// host:port of the gateway or the baseline.
    #[arg(long)]
    server: SocketAddr,
    /// API key sent in `connection_init` and on `/graphql` queries.
    #[arg(long, default_value = "bench-api-key-0123456789abcdef")]
    key: String,
    /// The Chup source's HMAC secret.
    #[arg(long, default_value = "bench-chup-secret-0123456789abcdef")]
    secret: String,
    /// The Chup source id (URL path `/webhooks/{source}`).
    #[arg(long, default_value = "chup-main")]
    source: String,
    /// First delivery number: distinct per run on one database, so no delivery is a duplicate.
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

#[derive(Subcommand)]
enum Command {
    Latency(latency::Args),
    Fanout(fanout::Args),
    Footprint(footprint::Args),
    Post(PostArgs),
}

#[derive(clap::Args)]
struct PostArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
    #[arg(long, default_value_t = 20)]
    services: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        // Footprint is timing-sensitive and blocking; it needs no runtime.
        Command::Footprint(args) => footprint::run(args),
        command => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(async move {
                match command {
                    Command::Latency(args) => latency::run(args).await,
                    Command::Fanout(args) => fanout::run(args).await,
                    Command::Post(args) => post(args).await,
                    Command::Footprint(_) => unreachable!("handled above"),
                }
            }),
            Err(error) => Err(format!("cannot start the runtime: {error}")),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wsbench: {error}");
            ExitCode::FAILURE
        }
    }
}

impl ServerArgs {
    fn host(&self) -> String {
        self.server.to_string()
    }

    /// Delivery `n` of `services`, as a request ready to write.
    fn webhook_request(&self, n: u64, services: u64) -> Vec<u8> {
        let body = webhook::chup_body(n, webhook::service_of(n, services), self.secret.as_bytes());
        http::post(
            &self.host(),
            &format!("/webhooks/{}", self.source),
            None,
            &body,
        )
    }

    /// Posts deliveries one after another on one connection; every answer must be 2xx.
    async fn post_each(
        &self,
        deliveries: impl IntoIterator<Item = u64>,
        services: u64,
    ) -> Result<(), String> {
        let mut connection = http::Connection::open(self.server)
            .await
            .map_err(|e| format!("connect {}: {e}", self.server))?;
        for n in deliveries {
            let reply = connection
                .send(&self.webhook_request(n, services))
                .await
                .map_err(|e| format!("webhook {n}: {e}"))?;
            if !(200..300).contains(&reply.status) {
                return Err(format!(
                    "webhook {n}: status {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
            }
        }
        Ok(())
    }

    /// The global id of every service the server knows, by Chup service id.
    async fn service_ids(&self) -> Result<HashMap<String, String>, String> {
        let mut connection = http::Connection::open(self.server)
            .await
            .map_err(|e| format!("connect {}: {e}", self.server))?;
        let query = serde_json::json!({"query": "{ services { id vendorId } }"}).to_string();
        let request = http::post(&self.host(), "/graphql", Some(&self.key), query.as_bytes());
        let reply = connection
            .send(&request)
            .await
            .map_err(|e| format!("services query: {e}"))?;
        let value: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|_| format!("services query: status {}, not JSON", reply.status))?;
        let services = value["data"]["services"]
            .as_array()
            .ok_or_else(|| format!("services query answered {value}"))?;
        Ok(services
            .iter()
            .filter_map(|s| Some((s["vendorId"].as_str()?.into(), s["id"].as_str()?.into())))
            .collect())
    }
}

async fn post(args: PostArgs) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let server = args.server.clone();
        let deliveries = (worker..args.count)
            .step_by(args.concurrency as usize)
            .map(move |i| server.offset + i);
        let server = args.server.clone();
        let services = args.services;
        workers.spawn(async move { server.post_each(deliveries, services).await });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "posted {} webhooks in {seconds:.1} s ({:.0}/s)",
        args.count,
        args.count as f64 / seconds
    );
    println!(
        "RESULT posted={} rate={:.0}",
        args.count,
        args.count as f64 / seconds
    );
    Ok(())
}

/// The resident set of process `pid`, in KiB (`VmRSS`), and its peak (`VmHWM`).
pub fn rss_kib(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Percentile `p` (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}
