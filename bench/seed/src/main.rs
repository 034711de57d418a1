//! Fills a gateway database with stored webhooks for the query and growth benchmarks, fast,
//! without HTTP, yet leaving exactly what the gateway itself would have stored: the schema comes
//! from the gateway's own migrations (`startup::open_database`), and every delivery goes
//! through the gateway's own pipeline below the HTTP layer — Chup HMAC verification
//! (`vendors::Webhook::verify`), the Chup mapper (`vendors::normalize`) and the group-commit
//! writer (`store::ingest::Ingestor::record_batch`): inbox rows with raw bodies, clients,
//! services, staff, queue entries behind the ordering guard, state history, lineage and domain
//! events. Only the per-request HTTP cost (and its one-delivery-per-request batching) is
//! skipped, which is what makes a million deliveries take minutes instead of hours.
//!
//! The deliveries are signed Chup `live_queue_updated` webhooks with the payload shape of
//! `bench/gen_bodies.py`. Each ticket gets `--updates` deliveries in state order (WAITING,
//! ARRIVED, SERVING, SERVED, PHARMACY, with increasing `updated_at`, as Chup sends them), so the
//! later ones update the ticket in place. Tickets are spread over days: `--per-day` tickets per
//! service and clinic-local day (+08:00), the last day being `--last-day`, earlier days going
//! back from it. Ticket ids start at `--first-ticket` (far from `gen_bodies.py`'s 1,000,000…,
//! so the ingest benchmark that runs afterwards never sends a duplicate); clients, services
//! and staff use the same id and name scheme as `gen_bodies.py` (clients 100000…, services
//! 200…, staff 300…), so the ingest benchmark meets stored entities, as a live clinic would.
//!
//! usage: `carebridge-bench-seed --config FILE --source ID --secret SECRET --tickets N
//!         [--updates K] [--per-day P] [--services S] [--staff T] [--clients C]
//!         [--last-day YYYY-MM-DD] [--first-ticket ID]`
//! Prints how many deliveries were stored and how long it took.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use carebridge::config::{Config, EnvOverrides};
use carebridge::domain::Vendor;
use carebridge::store::ingest::{Inbound, Ingestor, Recorded};
use carebridge::vendors::{self, Credentials, MapperConfig, Unverified, Webhook};
use chrono::{Duration, NaiveDate};

/// What one run writes.
#[derive(Debug, Clone)]
struct Plan {
    tickets: u64,
    updates: u64,
    per_day: u64,
    services: u64,
    staff: u64,
    clients: u64,
    last_day: NaiveDate,
    first_ticket: u64,
}

const STATES: [(&str, i64, &str); 5] = [
    ("WAITING", 1, "In Queue"),
    ("ARRIVED", 3, "Arrived"),
    ("SERVING", 4, "Serving"),
    ("SERVED", 5, "Served"),
    ("PHARMACY", 7, "Pharmacy"),
];

/// Deliveries handed to the writer per call (its `MAX_BATCH`).
const CHUNK: usize = 256;
/// Calls in flight, so the next batch is verified and mapped while one commits.
const IN_FLIGHT: usize = 4;

impl Plan {
    fn deliveries(&self) -> u64 {
        self.tickets * self.updates
    }

    /// The payload (as `gen_bodies.py` writes it) of delivery number `n`. Deliveries are
    /// ordered day by day (oldest first); within a day, every ticket's first state, then every
    /// ticket's second, and so on, which is how a clinic's day unfolds.
    fn payload(&self, n: u64) -> String {
        let per_day_all = self.per_day * self.services;
        let per_day_deliveries = per_day_all * self.updates;
        let days = self.tickets.div_ceil(per_day_all);
        let day_index = n / per_day_deliveries;
        let within = n % per_day_deliveries;
        let update = within / per_day_all;
        let slot = within % per_day_all;
        let ticket = day_index * per_day_all + slot;
        let day = self.last_day - Duration::days((days - 1 - day_index) as i64);
        let service = 200 + slot % self.services;
        let staff = 300 + (slot / self.services) % self.staff;
        let client = 100_000 + (ticket * 7919) % self.clients;
        // Joined at 08:00 local plus 30 s per slot; each later state 10 minutes after.
        let joined =
            day.and_hms_opt(8, 0, 0).unwrap_or_default() + Duration::seconds(30 * slot as i64);
        let changed = joined + Duration::minutes(10 * update as i64);
        let stamp = |t: chrono::NaiveDateTime| format!("{}+08:00", t.format("%Y-%m-%dT%H:%M:%S"));
        // One delivery per ticket: a spread of states; several: the states in order.
        let state = if self.updates == 1 {
            ticket % STATES.len() as u64
        } else {
            update
        };
        let (name, value, label) = STATES[state as usize];
        let data = serde_json::json!({
            "id": self.first_ticket + ticket,
            "appointment_id": null,
            "appointment_date": null,
            "appointment_time": null,
            "registered_client_id": client,
            "registered_client_name": format!("Client {client}"),
            "registered_client_phone": format!("9230939{client:05}"),
            "client_name": format!("Client {client}"),
            "state": {"name": name, "value": value},
            "state_name": label,
            "service_id": service,
            "service_name": format!("Service {service}"),
            "staff_id": staff,
            "staff_name": format!("Staff {staff}"),
            "notes": {"items": [{"id": 5000 + n, "type": "alert",
                                 "message": "Please proceed to Counter 2 / Kaunter 2",
                                 "created_by": "Registration", "created_at": stamp(joined)}],
                      "escapeWhenCastingToString": false},
            "created_at": stamp(joined),
            "updated_at": stamp(changed),
        });
        serde_json::json!({"event": "live_queue_updated", "timestamp": stamp(changed), "data": data})
            .to_string()
    }
}

fn parse_args() -> Result<(PathBuf, String, String, Plan), String> {
    let mut config = None;
    let mut source = None;
    let mut secret = None;
    let mut plan = Plan {
        tickets: 0,
        updates: 1,
        per_day: 50,
        services: 20,
        staff: 20,
        clients: 2_000,
        last_day: NaiveDate::from_ymd_opt(2024, 1, 16).ok_or("bad default day")?,
        first_ticket: 10_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(&value)),
            "--source" => source = Some(value),
            "--secret" => secret = Some(value),
            "--tickets" => plan.tickets = number()?,
            "--updates" => plan.updates = number()?.clamp(1, STATES.len() as u64),
            "--per-day" => plan.per_day = number()?.max(1),
            "--services" => plan.services = number()?.max(1),
            "--staff" => plan.staff = number()?.max(1),
            "--clients" => plan.clients = number()?.max(1),
            "--first-ticket" => plan.first_ticket = number()?,
            "--last-day" => {
                plan.last_day = value
                    .parse()
                    .map_err(|_| format!("{flag}: not a YYYY-MM-DD date"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    match (config, source, secret) {
        (Some(config), Some(source), Some(secret)) if plan.tickets > 0 => {
            Ok((config, source, secret, plan))
        }
        _ => Err(
            "usage: carebridge-bench-seed --config FILE --source ID --secret SECRET \
                  --tickets N [--updates K] [--per-day P] [--services S] [--staff T] \
                  [--clients C] [--last-day YYYY-MM-DD] [--first-ticket ID]"
                .to_owned(),
        ),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("seed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let (config_path, source, secret, plan) = parse_args()?;
    let config = Config::load(Some(&config_path), &EnvOverrides::from_process())
        .map_err(|e| e.to_string())?;
    let source_id = config
        .source(&source)
        .ok_or_else(|| format!("source {source} is not in {}", config_path.display()))?
        .id
        .clone();
    // The gateway's own connect + migrate, then its source rows.
    let db = carebridge::startup::open_database(&config)
        .await
        .map_err(|e| e.to_string())?;
    carebridge::store::sync_sources(&db, &config)
        .await
        .map_err(|e| e.to_string())?;
    let histogram = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("b", "b"))
        .map_err(|e| e.to_string())?;
    // The writer on its own connection, as the gateway's (`startup`) is.
    let writer = carebridge::store::connect_ingest_writer(
        config.database_url.expose(),
        &carebridge::store::StatementCounter::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let ingestor = Arc::new(Ingestor::new(
        writer.clone(),
        carebridge::bus::Bus::new(16),
        histogram,
    ));
    let mapper = MapperConfig::default();
    let key = secret.into_bytes();

    let total = plan.deliveries();
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    let mut stored = 0u64;
    let mut next = 0u64;
    while next < total || !pending.is_empty() {
        while next < total && pending.len() < IN_FLIGHT {
            let end = (next + CHUNK as u64).min(total);
            let mut inbounds = Vec::with_capacity(CHUNK);
            for n in next..end {
                let unsigned = format!(r#"{{"payload":{},"signature":""}}"#, plan.payload(n));
                let body = carebridge::vendors::chup::sign_chup(unsigned.as_bytes(), &key);
                let webhook = Webhook::<Unverified>::new(Vendor::Chup, Bytes::from(body), None)
                    .verify(Credentials::HmacKey(&key))
                    .map_err(|e| format!("delivery {n} does not verify: {e}"))?;
                let normalized = vendors::normalize(&webhook, &mapper);
                inbounds.push(Inbound {
                    source_id: source_id.clone(),
                    vendor: Vendor::Chup,
                    content_type: Some("application/json".to_owned()),
                    headers: serde_json::json!({
                        "host": "127.0.0.1:18082",
                        "content-type": "application/json",
                        "content-length": "1000",
                    }),
                    webhook,
                    normalized,
                });
            }
            next = end;
            let ingestor = ingestor.clone();
            pending.spawn(async move { ingestor.record_batch(inbounds).await });
        }
        let Some(answers) = pending.join_next().await else {
            break;
        };
        for answer in answers.map_err(|e| e.to_string())? {
            match answer.map_err(|e| e.to_string())? {
                Recorded::Stored { .. } => stored += 1,
                Recorded::Rejected { reason, .. } => return Err(format!("rejected: {reason}")),
            }
        }
        if stored % 100_000 < CHUNK as u64 {
            eprintln!("seed: {stored}/{total} after {:.0?}", started.elapsed());
        }
    }
    drop(ingestor);
    writer.close().await.map_err(|e| e.to_string())?;
    db.close().await.map_err(|e| e.to_string())?;
    println!(
        "seeded {stored} deliveries ({} tickets × {} updates) in {:.1} s",
        plan.tickets,
        plan.updates,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
