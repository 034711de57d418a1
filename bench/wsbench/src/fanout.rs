//! Fan-out: N idle subscribers of one service's queue, each on its own websocket connection
//! (a dashboard screen each), then one webhook for that service: how long until all N have
//! the event, and how much the server's resident memory grew per subscriber.
//!
//! The first webhook is a barrier (it proves every subscription is live) and is not measured;
//! RSS is read after it and a settle pause, so the figure is an idle subscriber that has
//! received an event. Then `events` webhooks are measured one at a time; medians are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::subscriber::{self, Event, Target};
use crate::webhook::{TICKET_BASE, ticket_in};
use crate::{ServerArgs, http, median, percentile, rss_kib};

/// Barrier events sent at most before giving up.
const BARRIER_TRIES: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Subscribers (connections) to open.
    #[arg(long)]
    subscribers: usize,
    /// The server's process id, for its RSS.
    #[arg(long)]
    pid: u32,
    /// Measured events after the barrier.
    #[arg(long, default_value_t = 5)]
    events: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Pause after the barrier before RSS is read.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
}

/// Receipt times: slot `event * subscribers + subscriber`, nanoseconds since `base` (0: not
/// yet). Event `e` is delivery `offset + 1 + e` (the ticket in the message says which).
struct Receipts {
    base: Instant,
    subscribers: usize,
    times: Vec<AtomicU64>,
    counts: Vec<AtomicUsize>,
    /// Subscribers that have received anything (the barrier).
    live: AtomicUsize,
    failures: AtomicUsize,
    all_in: Notify,
}

impl Receipts {
    fn record(&self, event: usize, subscriber: usize) {
        let Some(slot) = self.times.get(event * self.subscribers + subscriber) else {
            return;
        };
        slot.store(self.base.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
        if self.counts[event].fetch_add(1, Ordering::AcqRel) + 1 == self.subscribers {
            self.all_in.notify_one();
        }
    }

    fn went_live(&self) {
        if self.live.fetch_add(1, Ordering::AcqRel) + 1 == self.subscribers {
            self.all_in.notify_one();
        }
    }

    /// Until every subscriber has received something, or `limit`.
    async fn wait_live(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_in.notified();
            if self.live.load(Ordering::Acquire) >= self.subscribers {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    async fn wait_all(&self, event: usize, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_in.notified();
            let have = self.counts[event].load(Ordering::Acquire);
            if have >= self.subscribers {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "event {event}: only {have} of {} subscribers received it within {limit:?} \
                     ({} subscription failures)",
                    self.subscribers,
                    self.failures.load(Ordering::Relaxed)
                ));
            }
        }
    }

    /// Milliseconds from `since` to each subscriber's receipt of `event`, sorted.
    fn delays(&self, event: usize, since: Instant) -> Vec<f64> {
        let since = (since - self.base).as_nanos() as u64 + 1;
        let mut delays: Vec<f64> = self.times
            [event * self.subscribers..(event + 1) * self.subscribers]
            .iter()
            .map(|t| t.load(Ordering::Relaxed).saturating_sub(since) as f64 / 1e6)
            .collect();
        delays.sort_by(f64::total_cmp);
        delays
    }
}

pub async fn run(args: Args) -> Result<(), String> {
    let server = &args.server;
    let n = args.subscribers;
    // One service (Chup 200); delivery `offset` creates it.
    server.post_each([server.offset], 1).await?;
    let ids = server.service_ids().await?;
    let service = ids
        .get("200")
        .ok_or("the server does not know service 200")?
        .clone();
    let (rss_before, _) = rss_kib(args.pid)?;

    let receipts = Arc::new(Receipts {
        base: Instant::now(),
        subscribers: n,
        times: (0..(args.events + BARRIER_TRIES) * n)
            .map(|_| AtomicU64::new(0))
            .collect(),
        counts: (0..args.events + BARRIER_TRIES)
            .map(|_| AtomicUsize::new(0))
            .collect(),
        live: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        all_in: Notify::new(),
    });
    let first_ticket = TICKET_BASE + server.offset + 1;
    let target = Target {
        address: server.server,
        key: server.key.clone(),
    };
    let connecting = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let mut readers = tokio::task::JoinSet::new();
    for index in 0..n {
        let (gate, target, service, receipts, ready) = (
            gate.clone(),
            target.clone(),
            service.clone(),
            receipts.clone(),
            ready_tx.clone(),
        );
        readers.spawn(async move {
            let permit = gate.acquire_owned().await;
            let source = subscriber::source_address(index);
            let mut socket = match subscriber::subscribe(&target, source, Some(&service)).await {
                Ok(socket) => socket,
                Err(error) => {
                    let _main_gone = ready.send(Err(error));
                    return;
                }
            };
            drop(permit);
            let _main_gone = ready.send(Ok(()));
            let mut live = false;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                match subscriber::classify(&text) {
                    Event::Next(text) => {
                        if !live {
                            live = true;
                            receipts.went_live();
                        }
                        if let Some(ticket) = ticket_in(text) {
                            let event = ticket.wrapping_sub(first_ticket) as usize;
                            receipts.record(event, index);
                        }
                    }
                    Event::Failure(text) => {
                        if receipts.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("subscription failure: {text}");
                        }
                    }
                    Event::Other => {}
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => return Err(format!("a subscriber could not connect: {error}")),
            None => return Err("subscriber tasks ended early".into()),
        }
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    println!("{n} subscribers connected and subscribed in {connect_seconds:.1} s");

    let mut poster = http::Connection::open(server.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut post = async |delivery: u64| -> Result<f64, String> {
        let sent = Instant::now();
        let reply = poster
            .send(&server.webhook_request(delivery, 1))
            .await
            .map_err(|e| format!("webhook: {e}"))?;
        if !(200..300).contains(&reply.status) {
            return Err(format!("webhook: status {}", reply.status));
        }
        Ok(sent.elapsed().as_secs_f64() * 1e3)
    };
    // Barrier: events until every subscriber has had one (a server may still be setting up
    // subscriptions it has accepted).
    let barrier = Instant::now();
    let mut next_event = 0;
    loop {
        if next_event == BARRIER_TRIES {
            return Err(format!(
                "only {} of {n} subscribers received any of {BARRIER_TRIES} barrier events",
                receipts.live.load(Ordering::Relaxed)
            ));
        }
        post(server.offset + 1 + next_event as u64).await?;
        next_event += 1;
        if receipts.wait_live(Duration::from_secs(10)).await {
            break;
        }
    }
    let barrier_ms = barrier.elapsed().as_secs_f64() * 1e3;
    println!("barrier: all {n} live after {next_event} event(s), {barrier_ms:.1} ms");
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let (rss_after, _) = rss_kib(args.pid)?;
    let per_subscriber = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
    println!(
        "server RSS {rss_before} KiB before, {rss_after} KiB with {n} idle subscribers: \
         {:.1} KiB per subscriber",
        per_subscriber / 1024.0
    );

    let mut all_served = Vec::new();
    let mut first = Vec::new();
    let mut middle = Vec::new();
    let mut http_ms = Vec::new();
    for event in next_event..next_event + args.events {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        http_ms.push(post(server.offset + 1 + event as u64).await?);
        receipts.wait_all(event, Duration::from_secs(60)).await?;
        let delays = receipts.delays(event, sent);
        let (all, one, half) = (
            percentile(&delays, 100.0),
            percentile(&delays, 0.0),
            percentile(&delays, 50.0),
        );
        println!(
            "event {event}: first {one:.1} ms, half {half:.1} ms, all {all:.1} ms \
             (POST answered in {:.1} ms)",
            http_ms[http_ms.len() - 1]
        );
        all_served.push(all);
        first.push(one);
        middle.push(half);
    }
    readers.abort_all();
    println!(
        "RESULT subscribers={n} all_ms={:.2} first_ms={:.2} half_ms={:.2} post_ms={:.2} \
         barrier_ms={barrier_ms:.2} rss_before_kib={rss_before} rss_after_kib={rss_after} \
         per_sub_kib={:.2} connect_s={connect_seconds:.1} failures={}",
        median(&all_served),
        median(&first),
        median(&middle),
        median(&http_ms),
        per_subscriber / 1024.0,
        receipts.failures.load(Ordering::Relaxed)
    );
    Ok(())
}
