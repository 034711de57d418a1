//! End-to-end latency at a steady rate: each webhook is timed from the moment its POST is
//! written to the moment its event arrives at a websocket subscriber.
//!
//! Deliveries rotate over `services` Chup services; one subscriber per service (one dashboard
//! screen each, `queueChanged(serviceId)`), so every delivery is measured by exactly one
//! subscriber. Sending is open-loop: delivery `i` is due at `start + i / rate` whatever the
//! server does, spread over `connections` keep-alive connections; a connection that falls
//! behind sends late, and the lateness is reported (`late`) rather than hidden.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::subscriber::{self, Event, Target};
use crate::webhook::{self, TICKET_BASE};
use crate::{ServerArgs, http, percentile};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Webhooks per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Services the deliveries rotate over; one subscriber each.
    #[arg(long, default_value_t = 20)]
    services: u64,
    /// Keep-alive connections the webhooks are sent on.
    #[arg(long, default_value_t = 32)]
    connections: u64,
}

/// Nanoseconds since `base`, never 0 (0 marks "not yet").
fn stamp(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64 + 1
}

pub async fn run(args: Args) -> Result<(), String> {
    let server = &args.server;
    let services = args.services.max(1);
    // Deliveries offset.. create the services; the next `services` are the barrier that shows
    // each subscription is live; the measured ones follow.
    server
        .post_each(server.offset..server.offset + services, services)
        .await?;
    let ids = server.service_ids().await?;
    let target = Target {
        address: server.server,
        key: server.key.clone(),
    };
    let count = (args.rate * args.seconds) as usize;
    let first_measured = server.offset + 2 * services;
    let base = Instant::now();
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let live = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for s in 0..services {
        let chup_service = (200 + s).to_string();
        let id = ids
            .get(&chup_service)
            .ok_or_else(|| format!("the server does not know service {chup_service}"))?;
        let mut socket =
            subscriber::subscribe(&target, subscriber::source_address(s as usize), Some(id))
                .await?;
        let (received, live, failures) = (received.clone(), live.clone(), failures.clone());
        readers.spawn(async move {
            let mut first = true;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let now = stamp(base);
                match subscriber::classify(&text) {
                    Event::Next(text) => {
                        if first {
                            first = false;
                            live.fetch_add(1, Ordering::Relaxed);
                        }
                        let Some(ticket) = webhook::ticket_in(text) else {
                            continue;
                        };
                        let index = ticket.wrapping_sub(TICKET_BASE + first_measured) as usize;
                        if let Some(slot) = received.get(index) {
                            let _first_arrival =
                                slot.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                        }
                    }
                    Event::Failure(text) => {
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("subscription failure: {text}");
                        }
                    }
                    Event::Other => {}
                }
            }
        });
    }
    // Barrier: one delivery per service, until every subscriber has had one.
    let barrier_started = Instant::now();
    server
        .post_each(server.offset + services..first_measured, services)
        .await?;
    while live.load(Ordering::Relaxed) < services as usize {
        if barrier_started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "only {} of {services} subscribers got the barrier event",
                live.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The measured run.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..count as u64)
            .map(|i| server.webhook_request(first_measured + i, services))
            .collect(),
    );
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let answered: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let non_2xx = Arc::new(AtomicUsize::new(0));
    let period = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let start_std = Instant::now() + Duration::from_millis(50);
    let start = tokio::time::Instant::from_std(start_std);
    let start_stamp = (start_std - base).as_nanos() as u64 + 1;
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..args.connections.max(1) as usize {
        let mut connection = http::Connection::open(server.server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (requests, sent, answered, non_2xx) = (
            requests.clone(),
            sent.clone(),
            answered.clone(),
            non_2xx.clone(),
        );
        let stride = args.connections.max(1) as usize;
        senders.spawn(async move {
            for i in (k..requests.len()).step_by(stride) {
                tokio::time::sleep_until(start + period * i as u32).await;
                sent[i].store(stamp(base), Ordering::Relaxed);
                match connection.send(&requests[i]).await {
                    Ok(reply) if (200..300).contains(&reply.status) => {}
                    Ok(reply) => {
                        if non_2xx.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!(
                                "status {}: {}",
                                reply.status,
                                String::from_utf8_lossy(&reply.body)
                            );
                        }
                    }
                    Err(error) => return Err(format!("webhook {i}: {error}")),
                }
                answered[i].store(stamp(base), Ordering::Relaxed);
            }
            Ok(())
        });
    }
    while let Some(done) = senders.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    // Stragglers: wait up to 2 s for events still in flight.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(2)
        && received.iter().any(|r| r.load(Ordering::Relaxed) == 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    readers.abort_all();

    let ms = |nanos: u64| nanos as f64 / 1e6;
    let mut end_to_end = Vec::with_capacity(count);
    let mut http_latency = Vec::with_capacity(count);
    let mut late = Vec::with_capacity(count);
    for i in 0..count {
        let sent_at = sent[i].load(Ordering::Relaxed);
        let scheduled = start_stamp + period.as_nanos() as u64 * i as u64;
        late.push(ms(sent_at.saturating_sub(scheduled)));
        http_latency.push(ms(answered[i].load(Ordering::Relaxed) - sent_at));
        let arrived = received[i].load(Ordering::Relaxed);
        if arrived != 0 {
            end_to_end.push(ms(arrived.saturating_sub(sent_at)));
        }
    }
    for values in [&mut end_to_end, &mut http_latency, &mut late] {
        values.sort_by(f64::total_cmp);
    }
    let first_sent = sent.iter().map(|s| s.load(Ordering::Relaxed)).min();
    let last_sent = sent.iter().map(|s| s.load(Ordering::Relaxed)).max();
    let achieved = match (first_sent, last_sent) {
        (Some(first), Some(last)) if last > first => {
            (count - 1) as f64 / ((last - first) as f64 / 1e9)
        }
        _ => f64::NAN,
    };
    let missing = count - end_to_end.len();
    let p = |values: &[f64], q| percentile(values, q);
    println!(
        "{count} webhooks at {achieved:.0}/s; {} subscribers; missing {missing}; non-2xx {}; subscription failures {}",
        services,
        non_2xx.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    println!(
        "end-to-end ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        p(&end_to_end, 50.0),
        p(&end_to_end, 90.0),
        p(&end_to_end, 99.0),
        p(&end_to_end, 99.9),
        p(&end_to_end, 100.0)
    );
    println!(
        "POST→2xx ms:   p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; sender lateness p99 {:.2} ms",
        p(&http_latency, 50.0),
        p(&http_latency, 90.0),
        p(&http_latency, 99.0),
        p(&http_latency, 100.0),
        p(&late, 99.0)
    );
    println!(
        "RESULT rate={achieved:.0} p50={:.3} p90={:.3} p99={:.3} max={:.3} http_p50={:.3} http_p99={:.3} late_p99={:.3} missing={missing} non2xx={} failures={}",
        p(&end_to_end, 50.0),
        p(&end_to_end, 90.0),
        p(&end_to_end, 99.0),
        p(&end_to_end, 100.0),
        p(&http_latency, 50.0),
        p(&http_latency, 99.0),
        p(&late, 99.0),
        non_2xx.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}
