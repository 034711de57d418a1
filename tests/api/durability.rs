//! Proof of the product's first rule — a webhook is acknowledged only after its raw bytes are
//! durably stored, so nothing acknowledged is ever lost — against the real `carebridge` binary
//! under the failures that break that rule in practice: the process SIGKILLed mid-request, the
//! database connection cut under load, and the alert outbox killed while it retries.
//!
//! Each test keeps a client-side ledger of exactly which requests were answered 2xx and checks
//! it against the database afterwards; the counts are printed (`--nocapture`) so a run can be
//! read, not just passed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use crate::helpers::{
    CHUP_SECRET, TestDatabase, binary, fixture, free_port, postgres_server_url, test_config_toml,
};

/// Webhook rate limits high enough that the load below never meets them: these tests are about
/// storage, and a 429 would only slow the clients down.
const NO_RATE_LIMIT: &str = "
    [limits]
    webhook_rate_per_second = 1000000
    webhook_burst = 1000000
";

/// The real binary on a fixed port, database and config, so it can be SIGKILLed and started
/// again as an operator's supervisor would. Its stderr goes to a file kept for failure messages.
struct Gateway {
    dir: tempfile::TempDir,
    listen: String,
    database_url: String,
    child: Option<Child>,
    client: reqwest::Client,
    starts: usize,
}

impl Gateway {
    fn new(config_toml: &str, database_url: String) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("carebridge.toml"), config_toml).expect("write config");
        Gateway {
            dir,
            listen: format!("127.0.0.1:{}", free_port()),
            database_url,
            child: None,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            starts: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// The end of the gateway's log (all runs), for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts the process and waits until `/readyz` answers 200 (its database answers).
    async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let config = self.dir.path().join("carebridge.toml");
        let mut child = Command::new(binary())
            .args(["--config", config.to_str().expect("utf8"), "serve"])
            .env_remove("CAREBRIDGE_CONFIG")
            .env("CAREBRIDGE_LISTEN", &self.listen)
            .env("DATABASE_URL", &self.database_url)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start carebridge");
        self.starts += 1;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "carebridge exited during start ({status}); log:\n{}",
                    self.log_tail()
                );
            }
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "carebridge never became ready; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// `kill -KILL pid`: no shutdown hook runs, in-flight requests and transactions die with
    /// the process. Waits until it is gone.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid").to_string();
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(killed.success(), "kill -KILL {pid}");
        child.wait().await.expect("reap");
    }
}

/// Polls `condition` until it holds; panics with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A small deterministic generator for the kill intervals; the seed is printed so a failing
/// run's schedule can be told apart from another's.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            | 1;
        eprintln!("kill schedule seed: {seed}");
        Jitter(seed)
    }

    /// A duration in `[low, high)` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low + self.0 % (high - low))
    }
}

/// One signed Chup delivery: `live_queue_created` with its own ticket id and `updated_at`.
struct Delivery {
    ticket: i64,
    body: Vec<u8>,
    sha256: String,
}

fn chup_delivery(ticket: i64) -> Delivery {
    let mut value: Value =
        serde_json::from_slice(&fixture("chup", "live_queue_created")).expect("fixture JSON");
    let at = chrono::DateTime::parse_from_rfc3339("2024-01-17T00:35:22+08:00").expect("time")
        + chrono::Duration::seconds(ticket % 86_400);
    let data = &mut value["payload"]["data"];
    data["id"] = ticket.into();
    data["updated_at"] = at.to_rfc3339().into();
    let body = carebridge::vendors::chup::sign_chup(
        &serde_json::to_vec(&value).expect("encode"),
        CHUP_SECRET.as_bytes(),
    );
    let sha256 = hex::encode(Sha256::digest(&body));
    Delivery {
        ticket,
        body,
        sha256,
    }
}

/// A delivery the gateway answered 2xx, as the vendor saw it.
#[derive(Debug, Clone)]
struct Acknowledged {
    ticket: i64,
    sha256: String,
    /// The inbox id from the answer's body (None when the process died while sending the body
    /// after the status line: the vendor still saw a 2xx).
    inbox_id: Option<i64>,
    /// Whether the request started while the database was unreachable (outage test).
    during_outage: bool,
    /// Whether the 2xx arrived while the database was still unreachable (outage test): with
    /// `during_outage` too, the gateway would have acknowledged what it could not store.
    answered_during_outage: bool,
}

/// What the vendor-like clients saw.
#[derive(Default)]
struct Ledger {
    acknowledged: Mutex<Vec<Acknowledged>>,
    acked: AtomicUsize,
    attempts: AtomicUsize,
    unavailable: AtomicUsize,
    connection_errors: AtomicUsize,
    /// 503s answered while the outage lasted (outage test).
    unavailable_during_outage: AtomicUsize,
    /// Set while the database is unreachable (outage test).
    outage: AtomicBool,
}

/// A vendor's delivery loop: sends its own deliveries one after another and retries each one
/// (connection refused or reset, 5xx) until it is answered 2xx, as vendors do. Stops between
/// deliveries once `stop` is set. Anything but 2xx/5xx/connection errors fails the test.
async fn vendor_client(url: String, first_ticket: i64, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut ticket = first_ticket;
    while !stop.load(Ordering::SeqCst) {
        let delivery = chup_delivery(ticket);
        ticket += 1;
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "delivery {} never acknowledged",
                delivery.ticket
            );
            ledger.attempts.fetch_add(1, Ordering::SeqCst);
            let during_outage = ledger.outage.load(Ordering::SeqCst);
            let sent = client
                .post(&url)
                .header("content-type", "application/json")
                .body(delivery.body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    let answered_during_outage = ledger.outage.load(Ordering::SeqCst);
                    let answer: Option<Value> = response.json().await.ok();
                    ledger
                        .acknowledged
                        .lock()
                        .expect("ledger")
                        .push(Acknowledged {
                            ticket: delivery.ticket,
                            sha256: delivery.sha256.clone(),
                            inbox_id: answer.and_then(|a| a["id"].as_i64()),
                            during_outage,
                            answered_during_outage,
                        });
                    ledger.acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(response) if response.status() == 503 => {
                    ledger.unavailable.fetch_add(1, Ordering::SeqCst);
                    if during_outage && ledger.outage.load(Ordering::SeqCst) {
                        ledger
                            .unavailable_during_outage
                            .fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    panic!("delivery {}: unexpected {status}: {text}", delivery.ticket);
                }
                Err(_) => {
                    ledger.connection_errors.fetch_add(1, Ordering::SeqCst);
                }
            }
            // A vendor's retry delay (short, to keep the test quick), not a synchronization.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts `count` vendor clients, each with its own range of ticket ids.
fn start_clients(
    count: i64,
    url: &str,
    ledger: &Arc<Ledger>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|n| {
            tokio::spawn(vendor_client(
                url.to_owned(),
                1_000_000 + n * 100_000,
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

/// What the database holds for the acknowledged deliveries.
struct Audit {
    acknowledged: usize,
    inbox_rows: usize,
    duplicates: usize,
    /// Rows stored as FAILED: kept, but not applied (a cut connection must be a 503 instead).
    failed: usize,
    stored_unacknowledged: usize,
    lost: Vec<String>,
}

/// Checks every acknowledged delivery against the database: its exact bytes are in the inbox
/// (by body sha256, and the inbox id it was answered with holds those bytes) and its queue
/// entry exists. Returns the counts; `lost` lists every violation.
async fn audit(db: &DatabaseConnection, acknowledged: &[Acknowledged]) -> Audit {
    let rows = entity::webhook_event::Entity::find()
        .filter(entity::webhook_event::Column::SourceId.eq("chup-main"))
        .all(db)
        .await
        .expect("read inbox");
    let by_id: HashMap<i64, &entity::webhook_event::Model> =
        rows.iter().map(|row| (row.id.0, row)).collect();
    let stored: HashSet<&str> = rows.iter().map(|row| row.body_sha256.as_str()).collect();
    let tickets: HashSet<String> = entity::queue_entry::Entity::find()
        .all(db)
        .await
        .expect("read queue entries")
        .into_iter()
        .map(|entry| entry.vendor_id)
        .collect();
    let mut lost = Vec::new();
    for ack in acknowledged {
        if !stored.contains(ack.sha256.as_str()) {
            lost.push(format!("ticket {}: bytes not in the inbox", ack.ticket));
        }
        if let Some(id) = ack.inbox_id {
            match by_id.get(&id) {
                Some(row) if row.body_sha256 == ack.sha256 => {}
                Some(_) => lost.push(format!(
                    "ticket {}: inbox {id} holds other bytes",
                    ack.ticket
                )),
                None => lost.push(format!(
                    "ticket {}: answered inbox {id}, no such row",
                    ack.ticket
                )),
            }
        }
        if !tickets.contains(&ack.ticket.to_string()) {
            lost.push(format!("ticket {}: no queue entry", ack.ticket));
        }
    }
    let acked: HashSet<&str> = acknowledged.iter().map(|a| a.sha256.as_str()).collect();
    Audit {
        acknowledged: acknowledged.len(),
        inbox_rows: rows.len(),
        duplicates: rows.iter().filter(|row| row.status == "DUPLICATE").count(),
        failed: rows.iter().filter(|row| row.status == "FAILED").count(),
        stored_unacknowledged: stored.iter().filter(|sha| !acked.contains(*sha)).count(),
        lost,
    }
}

/// Several vendor clients post distinct signed Chup deliveries while the gateway is SIGKILLed
/// four times at random 100–500 ms moments and restarted on the same port and database; every
/// delivery that got a 2xx must be in the inbox with its exact bytes and its queue entry must
/// exist. A kill can land anywhere — mid-body, mid-transaction, between commit and answer — so
/// this is the direct test of "acknowledged only after durably stored" (WAL + synchronous=FULL
/// on SQLite, a committed transaction on PostgreSQL). Retries of deliveries whose answer died
/// with the process show up as DUPLICATE rows, which is expected and counted.
#[tokio::test]
async fn no_acknowledged_webhook_is_lost_when_the_gateway_is_killed_repeatedly_under_load() {
    let database = TestDatabase::create().await;
    let mut gateway = Gateway::new(&test_config_toml(NO_RATE_LIMIT), database.url());
    gateway.start().await;
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(4, &gateway.url("/webhooks/chup-main"), &ledger, &stop);
    let mut jitter = Jitter::seeded();
    const KILLS: usize = 4;
    for _ in 0..KILLS {
        // Kill only under load: some deliveries must have gone through this process first.
        let before = ledger.acked.load(Ordering::SeqCst);
        wait_until(
            "deliveries are acknowledged",
            Duration::from_secs(20),
            || ledger.acked.load(Ordering::SeqCst) >= before + 5,
        )
        .await;
        tokio::time::sleep(jitter.millis(100, 500)).await;
        gateway.kill().await;
        gateway.start().await;
    }
    let before = ledger.acked.load(Ordering::SeqCst);
    wait_until(
        "deliveries are acknowledged after the last restart",
        Duration::from_secs(20),
        || ledger.acked.load(Ordering::SeqCst) >= before + 20,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("vendor client");
    }

    let db = Database::connect(database.url()).await.expect("connect");
    let acknowledged = ledger.acknowledged.lock().expect("ledger").clone();
    let audit = audit(&db, &acknowledged).await;
    eprintln!(
        "kill test ({}): {} kills, {} attempts, {} connection errors, {} 503s; acknowledged {}, \
         inbox rows {} ({} duplicates from retries, {} FAILED), stored but never acknowledged \
         {}, lost {}",
        if postgres_server_url().is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        KILLS,
        ledger.attempts.load(Ordering::SeqCst),
        ledger.connection_errors.load(Ordering::SeqCst),
        ledger.unavailable.load(Ordering::SeqCst),
        audit.acknowledged,
        audit.inbox_rows,
        audit.duplicates,
        audit.failed,
        audit.stored_unacknowledged,
        audit.lost.len(),
    );
    assert!(
        audit.lost.is_empty(),
        "acknowledged but lost: {:?}\nlog:\n{}",
        audit.lost,
        gateway.log_tail()
    );
    assert_eq!(
        audit.stored_unacknowledged, 0,
        "every delivery was retried until acknowledged"
    );
    assert_eq!(audit.failed, 0, "a kill never leaves a delivery FAILED");
    assert_eq!(gateway.starts, KILLS + 1);
    db.close().await.ok();
    gateway.kill().await;
}

/// A TCP proxy between the gateway and PostgreSQL that can simulate an outage: every live
/// connection is dropped at once and new ones are accepted and closed straight away (the
/// gateway sees its connections reset, as behind a failing network or load balancer), until
/// the outage ends. The machine's PostgreSQL keeps running for the other tests.
struct OutageProxy {
    address: SocketAddr,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl OutageProxy {
    async fn start(upstream: String) -> OutageProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, live) = (up.clone(), live.clone());
            async move {
                while let Ok((mut downstream, _)) = listener.accept().await {
                    // Checked and registered under the lock `begin_outage` takes, so no
                    // connection slips through the start of an outage.
                    let mut live = live.lock().expect("live");
                    if !up.load(Ordering::SeqCst) {
                        drop(downstream);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut downstream, &mut server).await;
                        }
                    });
                    live.retain(|task| !task.is_finished());
                    live.push(pipe.abort_handle());
                }
            }
        });
        OutageProxy {
            address,
            up,
            live,
            accept,
        }
    }

    fn begin_outage(&self) {
        let mut live = self.live.lock().expect("live");
        self.up.store(false, Ordering::SeqCst);
        for pipe in live.drain(..) {
            pipe.abort();
        }
    }

    fn end_outage(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.begin_outage();
    }
}

/// Polls `/readyz` until stopped, recording whether it ever answered 503 during the outage.
async fn readiness_probe(
    url: String,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    not_ready_during_outage: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    while !stop.load(Ordering::SeqCst) {
        let during_outage = ledger.outage.load(Ordering::SeqCst);
        if let Ok(response) = client.get(&url).send().await
            && response.status() == 503
            && during_outage
        {
            not_ready_during_outage.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database becomes unreachable for about 3 s under a steady webhook load, then comes back:
/// the gateway answers 503 (never 2xx) while it cannot store, `/readyz` says 503, and both
/// recover by themselves — same process, no restart — while every delivery it did acknowledge
/// is stored with its queue entry. The outage is made by a TCP proxy the gateway's
/// `DATABASE_URL` points at, so the machine's PostgreSQL keeps serving the other tests.
///
/// PostgreSQL only. SQLite is a file opened by the process itself: there is no connection
/// that can drop while the process lives, so an "outage" could only be faked from inside (the
/// gateway's pool closed, which `health.rs` already does for `/readyz`); a crash of the process
/// holding the file is what the kill test above covers on SQLite.
#[tokio::test]
async fn during_a_database_outage_the_gateway_answers_503_and_recovers_without_losing_anything() {
    let Some(_) = postgres_server_url() else {
        eprintln!(
            "skipped on SQLite: an embedded database has no connection to cut (see the doc \
             comment); set TEST_DATABASE_URL to run it on PostgreSQL"
        );
        return;
    };
    let database = TestDatabase::create().await;
    let mut via_proxy = reqwest::Url::parse(&database.url()).expect("database URL");
    let upstream = format!(
        "{}:{}",
        via_proxy.host_str().expect("host"),
        via_proxy.port().unwrap_or(5432)
    );
    let proxy = OutageProxy::start(upstream).await;
    via_proxy
        .set_port(Some(proxy.address.port()))
        .expect("port");
    via_proxy
        .set_host(Some(&proxy.address.ip().to_string()))
        .expect("host");
    let mut gateway = Gateway::new(&test_config_toml(NO_RATE_LIMIT), via_proxy.to_string());
    gateway.start().await;

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(3, &gateway.url("/webhooks/chup-main"), &ledger, &stop);
    let not_ready = Arc::new(AtomicUsize::new(0));
    let probe = tokio::spawn(readiness_probe(
        gateway.url("/readyz"),
        ledger.clone(),
        stop.clone(),
        not_ready.clone(),
    ));
    wait_until(
        "deliveries are acknowledged",
        Duration::from_secs(20),
        || ledger.acked.load(Ordering::SeqCst) >= 10,
    )
    .await;

    // Flags are raised after the outage begins and lowered before it ends, so a request
    // flagged at both ends ran entirely inside the outage.
    proxy.begin_outage();
    ledger.outage.store(true, Ordering::SeqCst);
    let outage_started = Instant::now();
    // The outage lasts at least 3 s, and until the gateway has shown it: 503s to vendors and
    // to the readiness probe.
    wait_until("the outage is visible", Duration::from_secs(20), || {
        outage_started.elapsed() >= Duration::from_secs(3)
            && ledger.unavailable_during_outage.load(Ordering::SeqCst) > 0
            && not_ready.load(Ordering::SeqCst) > 0
    })
    .await;
    let acked_at_end_of_outage = ledger.acked.load(Ordering::SeqCst);
    ledger.outage.store(false, Ordering::SeqCst);
    proxy.end_outage();
    let outage = outage_started.elapsed();

    let ready_again = Instant::now();
    loop {
        let ready = gateway.client.get(gateway.url("/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            ready_again.elapsed() < Duration::from_secs(20),
            "readyz never recovered; log:\n{}",
            gateway.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = ready_again.elapsed();
    wait_until(
        "deliveries are acknowledged again",
        Duration::from_secs(20),
        || ledger.acked.load(Ordering::SeqCst) >= acked_at_end_of_outage + 20,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("vendor client");
    }
    probe.await.expect("probe");

    let db = Database::connect(database.url()).await.expect("connect");
    let acknowledged = ledger.acknowledged.lock().expect("ledger").clone();
    let audit = audit(&db, &acknowledged).await;
    let acked_in_outage = acknowledged.iter().filter(|a| a.during_outage).count();
    eprintln!(
        "outage test (PostgreSQL): outage {:.1} s, readyz 200 again {} ms after it ended; {} \
         attempts, {} 503s during the outage ({} in all), readyz 503 seen {} times; acknowledged \
         {} ({} of requests sent during the outage, answered after it), inbox rows {} ({} \
         duplicates, {} FAILED), stored but never acknowledged {}, lost {}",
        outage.as_secs_f64(),
        recovery.as_millis(),
        ledger.attempts.load(Ordering::SeqCst),
        ledger.unavailable_during_outage.load(Ordering::SeqCst),
        ledger.unavailable.load(Ordering::SeqCst),
        not_ready.load(Ordering::SeqCst),
        audit.acknowledged,
        acked_in_outage,
        audit.inbox_rows,
        audit.duplicates,
        audit.failed,
        audit.stored_unacknowledged,
        audit.lost.len(),
    );
    assert!(
        audit.lost.is_empty(),
        "acknowledged but lost: {:?}\nlog:\n{}",
        audit.lost,
        gateway.log_tail()
    );
    let acked_while_down: Vec<i64> = acknowledged
        .iter()
        .filter(|a| a.during_outage && a.answered_during_outage)
        .map(|a| a.ticket)
        .collect();
    assert!(
        acked_while_down.is_empty(),
        "2xx while the database was unreachable: {acked_while_down:?}"
    );
    assert_eq!(audit.stored_unacknowledged, 0);
    assert_eq!(
        audit.failed, 0,
        "a cut connection is a 503, not a FAILED row"
    );
    assert_eq!(gateway.starts, 1, "recovered without a restart");
    db.close().await.ok();
    gateway.kill().await;
}

/// The gateway's config with `[chup]` pointing at the fake: retries start at 50 ms, never give
/// up within the test, and a claim's lease is 2 s so an alert whose worker was killed is freed
/// within the test's time (the default 60 s is for a real Chup behind a 15 s timeout; the fake
/// answers in milliseconds, and only one gateway process runs at a time here).
fn alert_config(chup_url: &str) -> String {
    use crate::fake_vendors::{CHUP_API_KEY, CHUP_BUSINESS, CHUP_EMAIL};
    test_config_toml(&format!(
        r#"
        [chup]
        api_base = "{chup_url}"
        api_key = "{CHUP_API_KEY}"
        business_id = "{CHUP_BUSINESS}"
        email = "{CHUP_EMAIL}"
        max_attempts = 1000
        retry_base_ms = 50
        lease_secs = 2
        "#
    ))
}

/// Creates an alert through GraphQL (`sendAlert`, write key); returns its global id.
async fn send_alert(gateway: &Gateway, key: &str) -> String {
    let query = "mutation($input: SendAlertInput!) { sendAlert(input: $input) { id status } }";
    let input =
        json!({"visitId": "19242", "message": format!("Your turn ({key})"), "idempotencyKey": key});
    let body: Value = gateway
        .client
        .post(gateway.url("/graphql"))
        .bearer_auth(crate::helpers::WRITE_KEY)
        .json(&json!({"query": query, "variables": {"input": input}}))
        .send()
        .await
        .expect("sendAlert")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["data"]["sendAlert"]["status"], "PENDING", "{body}");
    body["data"]["sendAlert"]["id"]
        .as_str()
        .expect("alert id")
        .to_owned()
}

async fn alerts(db: &DatabaseConnection) -> Vec<entity::alert::Model> {
    entity::alert::Entity::find()
        .all(db)
        .await
        .expect("read alerts")
}

/// Alerts are recorded while Chup is down; the gateway is SIGKILLed and restarted twice while
/// the outbox retries them, Chup comes back, and the gateway is killed twice more while it is
/// sending (Chup answers after 25 ms, like a real API over a network). Afterwards every alert
/// is SENT and Chup received every idempotency key.
///
/// What this proves and what it measures: the outbox is at-least-once. A kill between Chup
/// recording an alert and our commit of SENT leaves it PENDING; the next process sends it
/// again when the lease runs out, with the same `Idempotency-Key` (the known window, documented
/// in the README). The test counts the raw deliveries per key Chup received — not what a
/// deduplicating Chup would keep — asserts none is missing, and asserts at most one resend per
/// kill (the worker sends one alert at a time, so one kill can catch at most one in that
/// window). Kills are not steered away from the window: it is the point of the measurement.
#[tokio::test]
async fn alerts_survive_kills_while_retried_and_chup_gets_each_key_at_least_once() {
    let database = TestDatabase::create().await;
    let chup = crate::fake_vendors::chup().await;
    chup.state.down.store(true, Ordering::SeqCst);
    chup.state.latency_ms.store(25, Ordering::SeqCst);
    let mut gateway = Gateway::new(&alert_config(&chup.url), database.url());
    gateway.start().await;
    const ALERTS: usize = 24;
    let keys: Vec<String> = (0..ALERTS).map(|n| format!("durable-{n}")).collect();
    for key in &keys {
        send_alert(&gateway, key).await;
    }
    let db = Database::connect(database.url()).await.expect("connect");
    let refused = || chup.state.alert_attempts.lock().expect("attempts").len();
    let received = || chup.state.sent().len();
    let mut jitter = Jitter::seeded();

    // Chup down: kill while the outbox is retrying.
    for _ in 0..2 {
        let before = refused();
        wait_until("the outbox retries", Duration::from_secs(20), || {
            refused() >= before + ALERTS / 2
        })
        .await;
        tokio::time::sleep(jitter.millis(100, 500)).await;
        gateway.kill().await;
        gateway.start().await;
    }
    // Chup up: kill while alerts are being sent.
    chup.state.down.store(false, Ordering::SeqCst);
    let mut kills_while_sending = 0;
    for _ in 0..2 {
        let before = received();
        wait_until("Chup receives alerts", Duration::from_secs(20), || {
            received() > before
        })
        .await;
        if received() >= ALERTS {
            break;
        }
        tokio::time::sleep(jitter.millis(0, 150)).await;
        gateway.kill().await;
        kills_while_sending += 1;
        gateway.start().await;
    }

    let started = Instant::now();
    loop {
        let rows = alerts(&db).await;
        if rows.iter().all(|alert| alert.status == "SENT") {
            assert_eq!(rows.len(), ALERTS);
            break;
        }
        let pending: Vec<_> = rows.iter().filter(|a| a.status != "SENT").collect();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "alerts not sent: {pending:?}\nlog:\n{}",
            gateway.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut per_key: HashMap<String, usize> = HashMap::new();
    for alert in chup.state.sent() {
        *per_key
            .entry(alert.idempotency_key.expect("Idempotency-Key header"))
            .or_default() += 1;
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !per_key.contains_key(*k)).collect();
    let resent: Vec<(&String, &usize)> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    let resends: usize = per_key.values().map(|n| n - 1).sum();
    let attempts: i32 = alerts(&db).await.iter().map(|a| a.attempts).sum();
    eprintln!(
        "alert kill test ({}): {} alerts, {} kills ({} while sending), {} refused attempts while \
         Chup was down, {} attempts recorded; all SENT; Chup received {} deliveries: {} keys \
         missing, {} resends (keys {:?})",
        if postgres_server_url().is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        ALERTS,
        gateway.starts - 1,
        kills_while_sending,
        refused() - received(),
        attempts,
        received(),
        missing.len(),
        resends,
        resent,
    );
    assert!(missing.is_empty(), "Chup never received {missing:?}");
    assert!(
        resends <= kills_while_sending,
        "more resends ({resends}) than kills while sending ({kills_while_sending}): {resent:?}"
    );
    db.close().await.ok();
    gateway.kill().await;
}
