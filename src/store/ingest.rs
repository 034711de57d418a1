//! The ingest write path: every delivery in, one atomic write per **batch** of deliveries out —
//! for each delivery the inbox row with its raw bytes, the entity upserts behind the ordering
//! guard, lineage, queue state history and the domain events. A 2xx is answered only after the
//! batch holding that delivery has committed.
//!
//! # Group commit
//!
//! A commit is the expensive part of a write (an fsync on SQLite, a round trip and a WAL flush
//! on PostgreSQL), so deliveries share commits. [`Ingestor::record`] hands its delivery to one
//! writer task over a channel and waits for the answer. The writer takes whatever is queued (up
//! to [`MAX_BATCH`]), applies it all in one transaction and only then answers each request and
//! publishes the events on the bus. A lone delivery is written at once; under load the batches
//! grow by themselves, because deliveries queue while the previous batch commits.
//!
//! Inside the batch transaction each delivery runs in its own SAVEPOINT: one whose apply fails
//! with an ordinary database error is rolled back to it and stored as `FAILED` (an acknowledged
//! webhook is never lost), and the rest of the batch goes on. A connection error fails the whole
//! batch: every request of it is answered 503 and nothing was written.
//!
//! # Fewest statements
//!
//! The single writer spends its time waiting for the database, so each statement saved is
//! throughput. Per batch, not per delivery: the dedupe lookup of all the batch's event
//! identities, the lookup of every entity the batch names (one `IN (…)` query per entity type),
//! the reservation of ids for the inbox rows and the rows the batch creates (the writer hands
//! them out, see [`Known::next_id`], so that lineage, events and later deliveries can name them
//! before they are written); then the source's `last_delivery_at` update, one multi-row upsert
//! per entity type for every row the batch created or changed, the inbox rows (each inserted
//! once, with its final status) and multi-row inserts of lineage, queue state history and
//! domain events. No statement is paid per delivery. The reads go to the database as one
//! [`Script`] and the writes as another: on SQLite that is two round trips to the connection's
//! thread instead of about a dozen, which at a steady 1k webhooks/s was most of the time a lone
//! delivery waited. A batch-level statement that fails for any reason but the connection makes
//! the writer redo the batch one delivery at a time, each inside its own savepoint, so one bad
//! row still fails only its delivery.
//!
//! # One writer
//!
//! Writers are serialized: in-process by the single writer task (SQLite has one writer anyway)
//! and, on PostgreSQL, across replicas by a transaction-scoped advisory lock taken first. That
//! one rule makes dedupe checks race-free (within a batch, a delivery sees the rows written by
//! the deliveries before it: same transaction), makes the ordering guard a plain
//! read-compare-write, and hands out event cursors in commit order, so a subscriber resuming
//! after cursor N never misses an event that committed later with a smaller number.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::ids::{
    AppointmentId, ClientId, LocationId, ServiceId, SourceId, StaffId, WebhookEventId,
};
use entity::{
    appointment, client, domain_event, entity_lineage, location, payment, queue_entry,
    queue_state_history, service, source, staff, visit, webhook_event,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityName, EntityTrait, FromQueryResult, IdenStatic,
    IntoActiveModel, QueryFilter, QueryResult, QuerySelect, QueryTrait, Set, Statement,
    TransactionTrait,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::script::Script;
use crate::bus::Bus;
use crate::config;
use crate::domain::{
    Action, AppointmentChange, AppointmentStatusKind, Change, ClientChange, LocationChange,
    MapOutcome, Normalized, PaymentChange, QueueEntryChange, ServiceChange, StaffChange, Vendor,
    VisitChange, VisitStatusKind,
};
use crate::vendors::{Delivery, Rejection, Verified, Webhook};

/// Inbox statuses, as stored and as shown through GraphQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    Processed,
    Duplicate,
    Stale,
    Failed,
    Unsupported,
    Rejected,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Processed => "PROCESSED",
            InboxStatus::Duplicate => "DUPLICATE",
            InboxStatus::Stale => "STALE",
            InboxStatus::Failed => "FAILED",
            InboxStatus::Unsupported => "UNSUPPORTED",
            InboxStatus::Rejected => "REJECTED",
        }
    }

    pub fn is_duplicate(self) -> bool {
        self == InboxStatus::Duplicate
    }
}

/// A verified delivery and what the vendor layer made of it.
pub struct Inbound {
    pub source_id: config::SourceId,
    pub vendor: Vendor,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    pub webhook: Webhook<Verified>,
    pub normalized: Result<Delivery, Rejection>,
}

/// The stored outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Stored {
        id: i64,
        status: InboxStatus,
    },
    /// Not the vendor's shape: kept as `REJECTED` for inspection, answered 400.
    Rejected {
        id: i64,
        reason: String,
    },
}

/// Most deliveries one transaction takes. Large enough that a commit is shared by a full wave
/// of concurrent requests, small enough that one batch's `IN (…)` lists and multi-row inserts
/// stay far below both backends' bind-parameter limits.
pub const MAX_BATCH: usize = 256;

/// Deliveries that may wait for the writer. When the database stalls, requests wait here (and
/// the HTTP timeout answers them) instead of memory growing without bound.
const QUEUE_CAPACITY: usize = 4096;

/// The inbox table, whose ids the batch hands out like those of the entities it creates.
const INBOX_TABLE: &str = "webhook_events";

/// Rows per multi-row INSERT: keeps every statement under SQLite's 32,766 bind parameters.
const INSERT_CHUNK: usize = 500;

/// One request's deliveries (one, from a webhook) and where to send their answers.
struct Job {
    inbounds: Vec<Inbound>,
    /// `oneshot`: each request is answered exactly once, after its batch committed or failed.
    reply: oneshot::Sender<Vec<Result<Recorded, StoreError>>>,
}

/// The front of the single writer: cheap to share, one per process.
pub struct Ingestor {
    /// `mpsc`: many request tasks hand deliveries to the one writer task, which drains them in
    /// batches; bounded, see [`QUEUE_CAPACITY`].
    jobs: mpsc::Sender<Job>,
    /// The writer's pool (see [`super::connect_ingest_writer`]).
    db: DatabaseConnection,
}

/// Advisory lock key shared by every writer of domain events (PostgreSQL).
const EVENT_WRITER_LOCK: i64 = 0x4361_7265_4272_6467; // "CareBrdg"

impl Ingestor {
    /// Starts the writer task (so this must run inside the Tokio runtime). The task ends when
    /// the last `Ingestor` is dropped and the queue is drained.
    /// `batch_sizes` observes how many deliveries each commit carried (metrics).
    pub fn new(db: DatabaseConnection, bus: Bus, batch_sizes: prometheus::Histogram) -> Ingestor {
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run_writer(db.clone(), bus, batch_sizes, queue));
        Ingestor { jobs, db }
    }

    /// The pool the writer writes through: closing it takes the database away from ingest
    /// (what tests of an unreachable database do).
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Stores the delivery and applies it, atomically, and returns once that is committed. A
    /// database that cannot be reached is an error (answered 503, nothing written). Any other
    /// failure while applying still stores the delivery, as `FAILED`, so an acknowledged
    /// webhook is never lost.
    pub async fn record(&self, inbound: Inbound) -> Result<Recorded, StoreError> {
        let mut answers = self.record_batch(vec![inbound]).await;
        answers.pop().unwrap_or_else(|| Err(writer_gone()))
    }

    /// Like [`Ingestor::record`] for deliveries already in hand (a bulk replay, a test): all of
    /// them are written in the same transaction, possibly with other queued deliveries, and
    /// answered in order.
    pub async fn record_batch(&self, inbounds: Vec<Inbound>) -> Vec<Result<Recorded, StoreError>> {
        let count = inbounds.len();
        let (reply, answer) = oneshot::channel();
        let answers = match self.jobs.send(Job { inbounds, reply }).await {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        answers.unwrap_or_else(|| (0..count).map(|_| Err(writer_gone())).collect())
    }
}

/// The writer stopped or its batch panicked before answering: nothing is known to be stored.
fn writer_gone() -> StoreError {
    StoreError::Unavailable(DbErr::Custom("the ingest writer is not running".to_owned()))
}

/// The writer loop: take what is queued, write it as one batch, repeat.
async fn run_writer(
    db: DatabaseConnection,
    bus: Bus,
    batch_sizes: prometheus::Histogram,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::replace(&mut jobs, Vec::with_capacity(MAX_BATCH));
        batch_sizes.observe(batch.iter().map(|job| job.inbounds.len()).sum::<usize>() as f64);
        // Its own task, so that a panic fails only this batch's requests (their reply senders
        // are dropped, which answers 503) and the writer goes on serving.
        let written = tokio::spawn(commit_batch(db.clone(), bus.clone(), batch));
        if let Err(error) = written.await {
            tracing::error!(%error, "an ingest batch panicked; its requests were answered 503");
        }
    }
}

/// Writes one batch, answers its requests, then publishes its events.
#[tracing::instrument(skip_all, fields(deliveries))]
async fn commit_batch(db: DatabaseConnection, bus: Bus, jobs: Vec<Job>) {
    let mut inbounds = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.reply, job.inbounds.len()));
        inbounds.extend(job.inbounds);
    }
    tracing::Span::current().record("deliveries", inbounds.len());
    let now = Utc::now();
    let started = std::time::Instant::now();
    let mut written = write_batch(&db, &inbounds, now, Pace::Batched).await;
    if let Err(error) = &written
        && !is_unavailable(error)
    {
        tracing::warn!(%error, "writing a batch failed; writing it again one delivery at a time");
        written = write_batch(&db, &inbounds, now, Pace::OneByOne).await;
    }
    let (mut answers, mut events) = match written {
        Ok(Written { recorded, events }) => {
            let elapsed_us = started.elapsed().as_micros();
            tracing::debug!(elapsed_us, "ingest batch committed");
            (recorded.into_iter().map(Ok).collect::<Vec<_>>(), events)
        }
        Err(error) => {
            tracing::error!(%error, "an ingest batch failed; nothing of it was stored");
            let unavailable = is_unavailable(&error);
            let answer = |_| {
                let error = error.clone();
                Err(if unavailable {
                    StoreError::Unavailable(error)
                } else {
                    StoreError::Database(error)
                })
            };
            ((0..inbounds.len()).map(answer).collect(), Vec::new())
        }
    };
    // Answers go out in request order; each request takes as many as it sent deliveries.
    answers.reverse();
    for (reply, count) in replies {
        let mine = (0..count).filter_map(|_| answers.pop()).collect();
        // A request that gave up waiting is fine: its delivery is stored all the same.
        let _requester_may_be_gone = reply.send(mine);
    }
    // Straight to this process's subscribers when they are the next events; otherwise the
    // tailer publishes them from the log, in cursor order (as it does for every replica).
    events.sort_unstable_by_key(|event| event.cursor);
    bus.publish_committed(events);
}

fn is_unavailable(error: &DbErr) -> bool {
    super::is_connection_error(error)
}

/// How a batch is written: all at once, or — after that failed — one delivery at a time, each
/// inside its own savepoint, so that a failure is pinned on the one delivery that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Batched,
    OneByOne,
}

/// What a committed batch produced: one outcome per delivery, in order, and its events.
struct Written {
    recorded: Vec<Recorded>,
    events: Vec<domain_event::Model>,
}

/// Writes every delivery of the batch in one transaction (see the module docs); an error is the
/// whole batch's, and nothing of it was committed.
async fn write_batch(
    db: &DatabaseConnection,
    batch: &[Inbound],
    now: DateTime<Utc>,
    pace: Pace,
) -> Result<Written, DbErr> {
    let txn = begin_writer(db).await?;
    let written = match pace {
        Pace::Batched => write_all(&txn, batch, now).await?,
        Pace::OneByOne => {
            txn.execute_raw(touch_sources(txn.get_database_backend(), batch, now))
                .await?;
            write_each(&txn, batch, now).await?
        }
    };
    notify_replicas(&txn, &written.events).await?;
    txn.commit().await?;
    Ok(written)
}

/// PostgreSQL: tells every replica's event tailer that events committed (delivered on commit,
/// not before; no payload — the log has the events).
async fn notify_replicas(
    txn: &DatabaseTransaction,
    events: &[domain_event::Model],
) -> Result<(), DbErr> {
    if !events.is_empty() {
        notify_replicas_of_events(txn).await?;
    }
    Ok(())
}

/// PostgreSQL: queues the wake-up that replicas' tailers get when `txn` commits.
pub(crate) async fn notify_replicas_of_events(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("NOTIFY {}", crate::bus::NOTIFY_CHANNEL))
            .await?;
    }
    Ok(())
}

/// The fast way: every read of the batch up front in one [`Script`] (dedupe identities, entity
/// rows, the inbox rows' ids), no savepoints, then every write in one more: the source's
/// `last_delivery_at`, the entity upserts, the inbox rows, lineage, history and events. On
/// SQLite each script is one round trip to the connection's thread. Any error fails the whole
/// batch (the caller then retries it [`Pace::OneByOne`]): errors are rare, round trips are what
/// the writer spends its time on.
async fn write_all(
    txn: &DatabaseTransaction,
    batch: &[Inbound],
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    let mut known = Known::default();
    known.prefetch(txn, batch).await?;
    let mut decided = Vec::with_capacity(batch.len());
    let mut rows_of = Vec::with_capacity(batch.len());
    for inbound in batch {
        let mut rows = Rows::default();
        decided.push(write_delivery(txn, &mut known, &mut rows, inbound, now).await?);
        rows_of.push(rows);
    }
    let mut writes = Script::new(txn.get_database_backend());
    writes.push(touch_sources(writes.backend(), batch, now));
    known.flush_into(&mut writes);
    let mut inbox_rows = Vec::with_capacity(batch.len());
    let mut all = Rows::default();
    let mut recorded = Vec::with_capacity(batch.len());
    for (decided, mut rows) in decided.into_iter().zip(rows_of) {
        let Decided {
            mut inbox_row,
            answer,
        } = decided;
        let id = WebhookEventId(known.next_id(txn, INBOX_TABLE).await?);
        inbox_row.id = Set(id);
        inbox_rows.push(inbox_row);
        rows.attach(id);
        all.append(rows);
        recorded.push(answer.recorded(id));
    }
    for chunk in chunks(inbox_rows) {
        writes.push(webhook_event::Entity::insert_many(chunk).build(writes.backend()));
    }
    all.push_into(&mut writes);
    let events = stored_events(writes.run(txn).await?)?;
    Ok(Written { recorded, events })
}

/// The careful way: each delivery, with its lineage, history and events, inside its own
/// savepoint. A delivery that fails with anything but a connection error is rolled back to its
/// savepoint and stored as `FAILED`; the others are written as usual.
async fn write_each(
    txn: &DatabaseTransaction,
    batch: &[Inbound],
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    let mut known = Known::default();
    let mut events = Vec::new();
    let mut recorded = Vec::with_capacity(batch.len());
    for inbound in batch {
        let savepoint = txn.begin().await?;
        let attempt = async {
            let mut rows = Rows::default();
            let decided = write_delivery(&savepoint, &mut known, &mut rows, inbound, now).await?;
            known.flush(&savepoint).await?;
            let id = insert_one_inbox(&savepoint, decided.inbox_row).await?;
            rows.attach(id);
            let events = rows.insert(&savepoint).await?;
            Ok::<_, DbErr>((decided.answer.recorded(id), events))
        }
        .await;
        match attempt {
            Ok((outcome, stored_events)) => {
                savepoint.commit().await?;
                events.extend(stored_events);
                recorded.push(outcome);
            }
            Err(error) if is_unavailable(&error) => return Err(error),
            Err(error) => {
                tracing::error!(%error, "applying a delivery failed; storing it as FAILED");
                savepoint.rollback().await?;
                // What this delivery read or wrote is undone; the database is the truth again.
                known = Known::default();
                recorded.push(store_failed(txn, inbound, now).await?);
            }
        }
    }
    Ok(Written { recorded, events })
}

/// Keeps a delivery whose apply failed, as `FAILED` and without its dedupe key (so a
/// redelivery is applied, not dropped as a duplicate). The row goes in inside its own savepoint:
/// should even it be refused, a last row with nothing from the sender but the raw bytes is
/// written instead, so one delivery can never fail the rest of its batch.
async fn store_failed(
    txn: &DatabaseTransaction,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<Recorded, DbErr> {
    let reason = "internal error while applying the delivery (see gateway logs)";
    let event_type = inbound
        .normalized
        .as_ref()
        .ok()
        .and_then(|d| d.event_type.clone());
    let row = inbox_row(
        inbound,
        now,
        event_type,
        None,
        InboxStatus::Failed,
        Some(reason),
    );
    let savepoint = txn.begin().await?;
    let id = match insert_one_inbox(&savepoint, row).await {
        Ok(id) => {
            savepoint.commit().await?;
            id
        }
        Err(error) if is_unavailable(&error) => return Err(error),
        Err(error) => {
            tracing::error!(%error, "storing a FAILED delivery failed; storing its raw bytes only");
            savepoint.rollback().await?;
            let row = inbox_row(inbound, now, None, None, InboxStatus::Failed, Some(reason));
            insert_one_inbox(txn, row).await?
        }
    };
    Ok(Recorded::Stored {
        id: id.0,
        status: InboxStatus::Failed,
    })
}

/// Opens a write transaction holding the writers' lock (PostgreSQL's advisory lock; on SQLite
/// the write lock, taken at `BEGIN`: see [`super::begin_write`]).
pub(crate) async fn begin_writer(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = super::begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({EVENT_WRITER_LOCK})"
        ))
        .await?;
    }
    Ok(txn)
}

/// A delivery applied but not yet in the inbox: its row, with its final status (so it is never
/// updated after insert), and what to answer once the row has its id.
struct Decided {
    inbox_row: webhook_event::ActiveModel,
    answer: Answer,
}

enum Answer {
    Stored(InboxStatus),
    Rejected(String),
}

impl Answer {
    fn recorded(self, id: WebhookEventId) -> Recorded {
        match self {
            Answer::Stored(status) => Recorded::Stored { id: id.0, status },
            Answer::Rejected(reason) => Recorded::Rejected { id: id.0, reason },
        }
    }
}

/// Applies one delivery: decides its inbox status (rejected, duplicate, failed mapping,
/// unsupported, stale or processed) and writes the entity changes. Its inbox row is returned,
/// and its lineage, history and events are left in `rows` without the inbox id, for the
/// caller to insert (with the rest of the batch).
async fn write_delivery(
    txn: &DatabaseTransaction,
    known: &mut Known,
    rows: &mut Rows,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<Decided, DbErr> {
    let source_id = SourceId(inbound.source_id.as_str().to_owned());
    let delivery = match &inbound.normalized {
        Err(rejection) => {
            let reason = rejection.to_string();
            let inbox_row = inbox_row(
                inbound,
                now,
                None,
                None,
                InboxStatus::Rejected,
                Some(&reason),
            );
            return Ok(Decided {
                inbox_row,
                answer: Answer::Rejected(reason),
            });
        }
        Ok(delivery) => delivery,
    };
    let dedupe_key = delivery.dedupe_key.as_deref();
    let seen = match dedupe_key {
        Some(key) => known.seen_before(txn, &source_id, key).await?,
        None => false,
    };
    let (status, error, event_type) = match &delivery.outcome {
        _ if seen => (InboxStatus::Duplicate, None, delivery.event_type.clone()),
        Err(error) => (
            InboxStatus::Failed,
            Some(error.to_string()),
            delivery.event_type.clone(),
        ),
        Ok(MapOutcome::Unsupported { reason, .. }) => (
            InboxStatus::Unsupported,
            Some(reason.clone()),
            delivery.event_type.clone(),
        ),
        Ok(MapOutcome::Mapped(normalized)) => {
            // TimeTap sends no event id: a delivery identical to what built the stored
            // appointment is a duplicate (a global body hash would wrongly drop an edit that
            // reverts an earlier one).
            let duplicate = match primary_fingerprint(normalized) {
                Some(fingerprint) => {
                    known
                        .same_fingerprint_as_stored(txn, &source_id, normalized, fingerprint)
                        .await?
                }
                None => false,
            };
            if duplicate {
                (InboxStatus::Duplicate, None, delivery.event_type.clone())
            } else {
                let mut apply = Apply {
                    txn,
                    known: &mut *known,
                    rows: &mut *rows,
                    source_id: source_id.clone(),
                    now,
                    occurred_at: normalized.occurred_at.unwrap_or(now),
                    refs: Refs::default(),
                    derived_event_type: None,
                };
                let status = apply.changes(normalized).await?;
                let event_type = apply
                    .derived_event_type
                    .take()
                    .or_else(|| delivery.event_type.clone());
                (status, None, event_type)
            }
        }
    };
    if let Some(key) = dedupe_key {
        // Every non-REJECTED row carries its dedupe key: later deliveries must see it.
        known.dedupe.insert((source_id, key.to_owned()), true);
    }
    Ok(Decided {
        inbox_row: inbox_row(
            inbound,
            now,
            event_type,
            dedupe_key,
            status,
            error.as_deref(),
        ),
        answer: Answer::Stored(status),
    })
}

/// What running the current mappers again over one stored delivery did (see
/// [`super::reprocess`]).
pub(crate) struct Reapplied {
    pub status: InboxStatus,
    pub error: Option<String>,
    /// The vendor's (or, for TimeTap, the derived) event type.
    pub event_type: Option<String>,
    /// Every entity the delivery touched this time: `(entity type, row id, effect)`.
    pub effects: Vec<(String, i64, &'static str)>,
    pub events: Vec<domain_event::Model>,
}

/// Applies a stored delivery's mapping again and attributes its lineage, queue history and
/// events to the delivery's own inbox row. It is not checked against dedupe keys (the caller
/// decides whether the row is a duplicate), and it goes through the same ordering guard and
/// change detection as a new delivery, so applying it twice writes nothing the second time.
/// Lineage links that exist already are kept as they are.
pub(crate) async fn reapply(
    txn: &DatabaseTransaction,
    inbox_id: WebhookEventId,
    source_id: &SourceId,
    delivery: &Result<Delivery, Rejection>,
    now: DateTime<Utc>,
) -> Result<Reapplied, DbErr> {
    let delivery = match delivery {
        Err(rejection) => {
            return Ok(Reapplied {
                status: InboxStatus::Rejected,
                error: Some(rejection.to_string()),
                event_type: None,
                effects: Vec::new(),
                events: Vec::new(),
            });
        }
        Ok(delivery) => delivery,
    };
    let mut known = Known::default();
    let mut rows = Rows::default();
    let (status, error, event_type) = match &delivery.outcome {
        Err(error) => (
            InboxStatus::Failed,
            Some(error.to_string()),
            delivery.event_type.clone(),
        ),
        Ok(MapOutcome::Unsupported { reason, .. }) => (
            InboxStatus::Unsupported,
            Some(reason.clone()),
            delivery.event_type.clone(),
        ),
        Ok(MapOutcome::Mapped(normalized)) => {
            let mut apply = Apply {
                txn,
                known: &mut known,
                rows: &mut rows,
                source_id: source_id.clone(),
                now,
                occurred_at: normalized.occurred_at.unwrap_or(now),
                refs: Refs::default(),
                derived_event_type: None,
            };
            let status = apply.changes(normalized).await?;
            let event_type = apply
                .derived_event_type
                .take()
                .or_else(|| delivery.event_type.clone());
            (status, None, event_type)
        }
    };
    let effects = rows
        .lineage
        .iter()
        .map(|row| {
            let effect = match row.change.as_ref().as_str() {
                "created" => Effect::Created,
                "updated" => Effect::Updated,
                "deleted" => Effect::Deleted,
                "stale" => Effect::Stale,
                _ => Effect::Unchanged,
            };
            (
                row.entity_type.as_ref().clone(),
                *row.entity_id.as_ref(),
                effect.as_str(),
            )
        })
        .collect();
    known.flush(txn).await?;
    rows.attach(inbox_id);
    let lineage = std::mem::take(&mut rows.lineage);
    for chunk in chunks(lineage) {
        entity_lineage::Entity::insert_many(chunk)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    entity_lineage::Column::WebhookEventId,
                    entity_lineage::Column::EntityType,
                    entity_lineage::Column::EntityId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    let events = rows.insert(txn).await?;
    Ok(Reapplied {
        status,
        error,
        event_type,
        effects,
        events,
    })
}

/// The statement recording that the batch's sources delivered at `now` (one UPDATE for all).
fn touch_sources(backend: DbBackend, batch: &[Inbound], now: DateTime<Utc>) -> Statement {
    let ids: HashSet<&str> = batch.iter().map(|i| i.source_id.as_str()).collect();
    source::Entity::update_many()
        .col_expr(source::Column::LastDeliveryAt, Expr::value(now))
        .filter(source::Column::Id.is_in(ids.into_iter().map(|id| SourceId(id.to_owned()))))
        .build(backend)
}

fn inbox_row(
    inbound: &Inbound,
    now: DateTime<Utc>,
    event_type: Option<String>,
    dedupe_key: Option<&str>,
    status: InboxStatus,
    error: Option<&str>,
) -> webhook_event::ActiveModel {
    let body = inbound.webhook.body();
    webhook_event::ActiveModel {
        id: ActiveValue::NotSet,
        source_id: Set(SourceId(inbound.source_id.as_str().to_owned())),
        vendor: Set(inbound.vendor.as_str().to_owned()),
        event_type: Set(event_type),
        received_at: Set(now),
        verification: Set(Some(inbound.webhook.verification().as_str().to_owned())),
        dedupe_key: Set(dedupe_key.map(str::to_owned)),
        body_sha256: Set(hex::encode(Sha256::digest(body))),
        status: Set(status.as_str().to_owned()),
        error: Set(error.map(str::to_owned)),
        content_type: Set(inbound.content_type.clone()),
        headers: Set(inbound.headers.clone()),
        body: Set(Some(body.to_vec())),
        processed_at: Set(Some(now)),
    }
}

async fn insert_one_inbox(
    txn: &DatabaseTransaction,
    row: webhook_event::ActiveModel,
) -> Result<WebhookEventId, DbErr> {
    Ok(webhook_event::Entity::insert(row)
        .exec(txn)
        .await?
        .last_insert_id)
}

fn primary_fingerprint(normalized: &Normalized) -> Option<&str> {
    match normalized.changes.last() {
        Some(Change::Appointment(change)) => change.fingerprint.as_deref(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// What the batch has read: dedupe identities and entity rows, so each is fetched at most once.
// ---------------------------------------------------------------------------------------------

/// Rows of one entity type by `(source, vendor id)`; `None` means "known not to exist".
type Cached<M> = HashMap<(SourceId, String), Option<M>>;

/// The batch's knowledge of the database, filled by [`Known::prefetch`] and kept current by
/// every write of the batch. It is only ever a copy of what the transaction would read, so it
/// is thrown away whenever a savepoint is rolled back.
#[derive(Default)]
struct Known {
    /// `(source, dedupe key)` → whether a non-`REJECTED` inbox row carries it.
    dedupe: HashMap<(SourceId, String), bool>,
    clients: Cached<client::Model>,
    staff: Cached<staff::Model>,
    services: Cached<service::Model>,
    locations: Cached<location::Model>,
    queue_entries: Cached<queue_entry::Model>,
    appointments: Cached<appointment::Model>,
    visits: Cached<visit::Model>,
    payments: Cached<payment::Model>,
    /// Rows created or changed by the batch and not yet written (see [`Known::flush`]).
    staged: Staged,
    /// Ids handed out to the rows the batch creates, per table (see [`Known::next_id`]).
    next_ids: HashMap<&'static str, NextIds>,
    /// Per table, how many of the rows the batch names were not found, i.e. how many it may
    /// create: what [`Known::next_id`] reserves at once from a PostgreSQL sequence.
    creatable: HashMap<&'static str, usize>,
}

/// The cache keys of staged rows, per entity type, in the order they were first staged.
#[derive(Default)]
struct Staged {
    clients: Vec<(SourceId, String)>,
    staff: Vec<(SourceId, String)>,
    services: Vec<(SourceId, String)>,
    locations: Vec<(SourceId, String)>,
    queue_entries: Vec<(SourceId, String)>,
    appointments: Vec<(SourceId, String)>,
    visits: Vec<(SourceId, String)>,
    payments: Vec<(SourceId, String)>,
}

/// Where the next ids of one table come from.
enum NextIds {
    /// SQLite: the one writer holds the write lock for the whole transaction, so after reading
    /// the table's high-water mark once it simply counts up.
    Counter(i64),
    /// PostgreSQL: ids drawn from the table's identity sequence (replicas and other writers
    /// draw from it too), not yet used. Unused ones become gaps, as rolled-back inserts do.
    Reserved(Vec<i64>),
}

/// The vendor ids a batch names, per entity type, for one source.
#[derive(Default)]
struct Named {
    dedupe_keys: Vec<String>,
    clients: Vec<String>,
    staff: Vec<String>,
    services: Vec<String>,
    locations: Vec<String>,
    queue_entries: Vec<String>,
    appointments: Vec<String>,
    visits: Vec<String>,
    payments: Vec<String>,
}

impl Named {
    /// The entity tables these ids are looked up in.
    fn tables(&self) -> impl Iterator<Item = &'static str> + use<> {
        [
            (self.clients.is_empty(), client::Entity.table_name()),
            (self.staff.is_empty(), staff::Entity.table_name()),
            (self.services.is_empty(), service::Entity.table_name()),
            (self.locations.is_empty(), location::Entity.table_name()),
            (
                self.queue_entries.is_empty(),
                queue_entry::Entity.table_name(),
            ),
            (
                self.appointments.is_empty(),
                appointment::Entity.table_name(),
            ),
            (self.visits.is_empty(), visit::Entity.table_name()),
            (self.payments.is_empty(), payment::Entity.table_name()),
        ]
        .into_iter()
        .filter(|(empty, _)| !empty)
        .map(|(_, table)| table)
    }
}

impl Known {
    /// Reads, with one query per source and entity type, every dedupe identity and entity row
    /// the batch names, and reserves the ids of its inbox rows: all in one [`Script`].
    async fn prefetch(
        &mut self,
        txn: &DatabaseTransaction,
        batch: &[Inbound],
    ) -> Result<(), DbErr> {
        let mut by_source: HashMap<SourceId, Named> = HashMap::new();
        for inbound in batch {
            let Ok(delivery) = &inbound.normalized else {
                continue;
            };
            let named = by_source
                .entry(SourceId(inbound.source_id.as_str().to_owned()))
                .or_default();
            if let Some(key) = &delivery.dedupe_key {
                named.dedupe_keys.push(key.clone());
            }
            let Ok(MapOutcome::Mapped(normalized)) = &delivery.outcome else {
                continue;
            };
            for change in &normalized.changes {
                match change {
                    Change::Client(c) => named.clients.push(c.vendor_id.clone()),
                    Change::Staff(c) => named.staff.push(c.vendor_id.clone()),
                    Change::Service(c) => named.services.push(c.vendor_id.clone()),
                    Change::Location(c) => named.locations.push(c.vendor_id.clone()),
                    Change::QueueEntry(c) => {
                        named.queue_entries.push(c.vendor_id.clone());
                        named.appointments.extend(c.appointment_id.clone());
                    }
                    Change::Appointment(c) => named.appointments.push(c.vendor_id.clone()),
                    Change::Visit(c) => named.visits.push(c.vendor_id.clone()),
                    Change::Payment(c) => named.payments.push(c.vendor_id.clone()),
                }
            }
        }
        let mut script = Script::new(txn.get_database_backend());
        let mut parts: Vec<Part> = Vec::new();
        let named_tables = by_source
            .values()
            .flat_map(Named::tables)
            .collect::<HashSet<_>>();
        for (source_id, named) in by_source {
            prefetch_dedupe(&mut script, &mut parts, &source_id, named.dedupe_keys);
            prefetch::<client::Entity>(&mut script, &mut parts, &source_id, named.clients);
            prefetch::<staff::Entity>(&mut script, &mut parts, &source_id, named.staff);
            prefetch::<service::Entity>(&mut script, &mut parts, &source_id, named.services);
            prefetch::<location::Entity>(&mut script, &mut parts, &source_id, named.locations);
            prefetch::<queue_entry::Entity>(
                &mut script,
                &mut parts,
                &source_id,
                named.queue_entries,
            );
            prefetch::<appointment::Entity>(
                &mut script,
                &mut parts,
                &source_id,
                named.appointments,
            );
            prefetch::<visit::Entity>(&mut script, &mut parts, &source_id, named.visits);
            prefetch::<payment::Entity>(&mut script, &mut parts, &source_id, named.payments);
        }
        // Every delivery gets an inbox row.
        prefetch_ids(&mut script, &mut parts, INBOX_TABLE, batch.len());
        if script.backend() == DbBackend::Sqlite {
            // SQLite counts up from the high-water mark, whatever the count: reading it now for
            // every table the batch may create rows in saves a round trip at the first new row.
            // (PostgreSQL reserves as many as the reads found missing, so it waits for them.)
            for table in named_tables {
                prefetch_ids(&mut script, &mut parts, table, 0);
            }
        }
        let mut rows_of: Vec<Vec<QueryResult>> = parts.iter().map(|_| Vec::new()).collect();
        for row in script.run(txn).await? {
            let part = row.try_get::<i64>("", PART)?;
            rows_of
                .get_mut(usize::try_from(part).unwrap_or(usize::MAX))
                .ok_or_else(|| DbErr::Custom(format!("a prefetched row of unknown part {part}")))?
                .push(row);
        }
        for (part, rows) in parts.into_iter().zip(rows_of) {
            part(self, rows)?;
        }
        Ok(())
    }

    /// Whether a non-`REJECTED` delivery with this identity is stored (or written earlier in
    /// this batch).
    async fn seen_before(
        &mut self,
        txn: &DatabaseTransaction,
        source_id: &SourceId,
        key: &str,
    ) -> Result<bool, DbErr> {
        let cache_key = (source_id.clone(), key.to_owned());
        if let Some(seen) = self.dedupe.get(&cache_key) {
            return Ok(*seen);
        }
        let found = webhook_event::Entity::find()
            .select_only()
            .column(webhook_event::Column::Id)
            .filter(webhook_event::Column::SourceId.eq(source_id.clone()))
            .filter(webhook_event::Column::DedupeKey.eq(key))
            .filter(webhook_event::Column::Status.ne(InboxStatus::Rejected.as_str()))
            .into_tuple::<WebhookEventId>()
            .one(txn)
            .await?;
        self.dedupe.insert(cache_key, found.is_some());
        Ok(found.is_some())
    }

    async fn same_fingerprint_as_stored(
        &mut self,
        txn: &DatabaseTransaction,
        source_id: &SourceId,
        normalized: &Normalized,
        fingerprint: &str,
    ) -> Result<bool, DbErr> {
        let Some(Change::Appointment(change)) = normalized.changes.last() else {
            return Ok(false);
        };
        let stored = find::<appointment::Entity>(txn, self, source_id, &change.vendor_id).await?;
        Ok(stored.and_then(|row| row.fingerprint).as_deref() == Some(fingerprint))
    }
}

/// Entities identified by `(source_id, vendor_id)`, with their [`Known`] cache.
trait ByVendorId: EntityTrait<Model: Clone> {
    const ID: Self::Column;
    const SOURCE_ID: Self::Column;
    const VENDOR_ID: Self::Column;
    fn vendor_id(model: &Self::Model) -> &str;
    fn cache(known: &mut Known) -> &mut Cached<Self::Model>;
    fn staged(known: &mut Known) -> &mut Vec<(SourceId, String)>;
}

macro_rules! by_vendor_id {
    ($($module:ident => $field:ident),+ $(,)?) => {$(
        impl ByVendorId for $module::Entity {
            const ID: $module::Column = $module::Column::Id;
            const SOURCE_ID: $module::Column = $module::Column::SourceId;
            const VENDOR_ID: $module::Column = $module::Column::VendorId;
            fn vendor_id(model: &$module::Model) -> &str {
                &model.vendor_id
            }
            fn cache(known: &mut Known) -> &mut Cached<$module::Model> {
                &mut known.$field
            }
            fn staged(known: &mut Known) -> &mut Vec<(SourceId, String)> {
                &mut known.staged.$field
            }
        }
    )+};
}
by_vendor_id!(
    client => clients,
    staff => staff,
    service => services,
    location => locations,
    queue_entry => queue_entries,
    appointment => appointments,
    visit => visits,
    payment => payments,
);

/// What to do with the rows one prefetch statement returned.
type Part = Box<dyn FnOnce(&mut Known, Vec<QueryResult>) -> Result<(), DbErr> + Send>;

/// The column that tells which prefetch statement a row came from (its index in the script):
/// the batch's reads run as one [`Script`], whose rows arrive as one list.
const PART: &str = "prefetch_part";

/// Adds the statement reading which of these dedupe identities a non-`REJECTED` inbox row
/// carries.
fn prefetch_dedupe(
    script: &mut Script,
    parts: &mut Vec<Part>,
    source_id: &SourceId,
    mut keys: Vec<String>,
) {
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    script.push(
        webhook_event::Entity::find()
            .select_only()
            .column(webhook_event::Column::DedupeKey)
            .expr_as(Expr::val(parts.len() as i64), PART)
            .filter(webhook_event::Column::SourceId.eq(source_id.clone()))
            .filter(webhook_event::Column::DedupeKey.is_in(keys.iter().map(String::as_str)))
            .filter(webhook_event::Column::Status.ne(InboxStatus::Rejected.as_str()))
            .build(script.backend()),
    );
    let source_id = source_id.clone();
    parts.push(Box::new(
        move |known: &mut Known, rows: Vec<QueryResult>| {
            let found: HashSet<String> = rows
                .iter()
                .map(|row| row.try_get::<Option<String>>("", "dedupe_key"))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            for key in keys {
                let seen = found.contains(&key);
                known.dedupe.insert((source_id.clone(), key), seen);
            }
            Ok(())
        },
    ));
}

/// Adds the statement loading the named rows of one type (a single `IN (…)` query); its part
/// records them and the absent ones.
fn prefetch<E: ByVendorId>(
    script: &mut Script,
    parts: &mut Vec<Part>,
    source_id: &SourceId,
    mut vendor_ids: Vec<String>,
) where
    E::Model: Send,
{
    vendor_ids.sort_unstable();
    vendor_ids.dedup();
    if vendor_ids.is_empty() {
        return;
    }
    script.push(
        E::find()
            .expr_as(Expr::val(parts.len() as i64), PART)
            .filter(E::SOURCE_ID.eq(source_id.clone()))
            .filter(E::VENDOR_ID.is_in(vendor_ids.iter().map(String::as_str)))
            .build(script.backend()),
    );
    let source_id = source_id.clone();
    parts.push(Box::new(
        move |known: &mut Known, rows: Vec<QueryResult>| {
            let found = rows
                .iter()
                .map(|row| E::Model::from_query_result(row, ""))
                .collect::<Result<Vec<_>, _>>()?;
            // Each absent one may be created, once: that many ids are worth reserving in one go.
            *known
                .creatable
                .entry(E::default().table_name())
                .or_default() += vendor_ids.len().saturating_sub(found.len());
            let cache = E::cache(known);
            for vendor_id in vendor_ids {
                cache.insert((source_id.clone(), vendor_id), None);
            }
            for model in found {
                cache.insert(
                    (source_id.clone(), E::vendor_id(&model).to_owned()),
                    Some(model),
                );
            }
            Ok(())
        },
    ));
}

/// The stored row, from the batch's cache or else the database.
async fn find<E: ByVendorId>(
    txn: &DatabaseTransaction,
    known: &mut Known,
    source_id: &SourceId,
    vendor_id: &str,
) -> Result<Option<E::Model>, DbErr> {
    let key = (source_id.clone(), vendor_id.to_owned());
    if let Some(cached) = E::cache(known).get(&key) {
        return Ok(cached.clone());
    }
    let found = E::find()
        .filter(E::SOURCE_ID.eq(source_id.clone()))
        .filter(E::VENDOR_ID.eq(vendor_id))
        .one(txn)
        .await?;
    E::cache(known).insert(key, found.clone());
    Ok(found)
}

/// Records a row the batch just wrote.
fn remember<E: ByVendorId>(known: &mut Known, source_id: &SourceId, model: &E::Model) {
    E::cache(known).insert(
        (source_id.clone(), E::vendor_id(model).to_owned()),
        Some(model.clone()),
    );
}

impl Known {
    /// The id for a row the batch creates in `table`. The first one of a table costs one
    /// statement; the rest are counted (SQLite) or taken from the reserved block (PostgreSQL).
    async fn next_id(
        &mut self,
        txn: &DatabaseTransaction,
        table: &'static str,
    ) -> Result<i64, DbErr> {
        let exhausted = match self.next_ids.get(table) {
            Some(NextIds::Counter(_)) => false,
            Some(NextIds::Reserved(ids)) => ids.is_empty(),
            None => true,
        };
        if exhausted {
            let count = self.creatable.insert(table, 0).unwrap_or(0).max(1);
            let fresh = reserve_ids(txn, table, count).await?;
            self.next_ids.insert(table, fresh);
        }
        match self.next_ids.get_mut(table) {
            Some(NextIds::Counter(next)) => {
                let id = *next;
                *next += 1;
                Ok(id)
            }
            Some(NextIds::Reserved(ids)) => ids
                .pop()
                .ok_or_else(|| DbErr::Custom(format!("no id reserved for {table}"))),
            None => Err(DbErr::Custom(format!("no ids for {table}"))),
        }
    }

    /// Writes every staged row: one multi-row upsert per entity type (per [`INSERT_CHUNK`]
    /// rows), parents before children so that foreign keys hold at each statement. A row is
    /// written whole, as the batch last saw it — the batch holds the writers' lock, so what it
    /// read is still what is stored.
    async fn flush(&mut self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        let mut script = Script::new(txn.get_database_backend());
        self.flush_into(&mut script);
        script.run(txn).await?;
        Ok(())
    }

    /// [`Known::flush`]'s statements, added to `script`.
    fn flush_into(&mut self, script: &mut Script) {
        flush_staged::<client::Entity>(script, self);
        flush_staged::<staff::Entity>(script, self);
        flush_staged::<service::Entity>(script, self);
        flush_staged::<location::Entity>(script, self);
        flush_staged::<appointment::Entity>(script, self);
        flush_staged::<queue_entry::Entity>(script, self);
        flush_staged::<visit::Entity>(script, self);
        flush_staged::<payment::Entity>(script, self);
    }
}

/// Reserves ids for new rows of `table`: on SQLite the next id above both the largest stored
/// one and `sqlite_sequence` (which `AUTOINCREMENT` keeps, so an erased row's id is never
/// handed out again); on PostgreSQL `count` values of the table's identity sequence.
async fn reserve_ids(
    txn: &DatabaseTransaction,
    table: &'static str,
    count: usize,
) -> Result<NextIds, DbErr> {
    let backend = txn.get_database_backend();
    let rows = txn
        .query_all_raw(reservation(backend, table, count, None))
        .await?;
    reserved(backend, table, &rows)
}

/// The statement of [`reserve_ids`]; `part` tags its rows as a prefetch part.
fn reservation(
    backend: DbBackend,
    table: &'static str,
    count: usize,
    part: Option<usize>,
) -> Statement {
    let tag = part
        .map(|part| format!(", CAST({part} AS BIGINT) AS {PART}"))
        .unwrap_or_default();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) AS id{tag} \
             FROM generate_series(1, {count})"
        ),
        _ => format!(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
             COALESCE((SELECT MAX(id) FROM \"{table}\"), 0)) AS high{tag}"
        ),
    };
    Statement::from_string(backend, sql)
}

/// The ids a [`reservation`] returned.
fn reserved(backend: DbBackend, table: &str, rows: &[QueryResult]) -> Result<NextIds, DbErr> {
    match backend {
        DbBackend::Postgres => {
            let mut ids = rows
                .iter()
                .map(|row| row.try_get::<i64>("", "id"))
                .collect::<Result<Vec<_>, _>>()?;
            // Handed out by `pop`: smallest first.
            ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
            Ok(NextIds::Reserved(ids))
        }
        _ => {
            let row = rows
                .first()
                .ok_or_else(|| DbErr::Custom(format!("no high-water mark for {table}")))?;
            Ok(NextIds::Counter(row.try_get::<i64>("", "high")? + 1))
        }
    }
}

/// Adds the reservation of `count` ids of `table` to the batch's reads.
fn prefetch_ids(script: &mut Script, parts: &mut Vec<Part>, table: &'static str, count: usize) {
    let backend = script.backend();
    script.push(reservation(backend, table, count, Some(parts.len())));
    parts.push(Box::new(
        move |known: &mut Known, rows: Vec<QueryResult>| {
            let ids = reserved(backend, table, &rows)?;
            known.next_ids.insert(table, ids);
            Ok(())
        },
    ));
}

/// Adds the writes of the staged rows of one entity type: multi-row `INSERT … ON CONFLICT (id)
/// DO UPDATE`, so new rows are inserted with the ids the batch gave them and changed rows
/// overwritten.
fn flush_staged<E>(script: &mut Script, known: &mut Known)
where
    E: ByVendorId,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
{
    let keys = std::mem::take(E::staged(known));
    if keys.is_empty() {
        return;
    }
    let mut seen = HashSet::with_capacity(keys.len());
    let cache = E::cache(known);
    let rows: Vec<E::Model> = keys
        .iter()
        .filter(|key| seen.insert(*key))
        .filter_map(|key| cache.get(key).cloned().flatten())
        .collect();
    let id = E::ID;
    let update: Vec<E::Column> = <E::Column as sea_orm::Iterable>::iter()
        .filter(|column| column.as_str() != id.as_str())
        .collect();
    for chunk in chunks(rows) {
        script.push(
            E::insert_many(chunk.into_iter().map(IntoActiveModel::into_active_model))
                .on_conflict(
                    OnConflict::column(id)
                        .update_columns(update.clone())
                        .to_owned(),
                )
                .build(script.backend()),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rows written with multi-row INSERTs at the end of the batch.
// ---------------------------------------------------------------------------------------------

/// Lineage, queue state history and domain events of one delivery (until its inbox row exists,
/// without its id) or of the whole batch.
#[derive(Default)]
struct Rows {
    lineage: Vec<entity_lineage::ActiveModel>,
    history: Vec<queue_state_history::ActiveModel>,
    events: Vec<domain_event::ActiveModel>,
}

impl Rows {
    /// Names the delivery's inbox row on each of its rows.
    fn attach(&mut self, inbox_id: WebhookEventId) {
        for row in &mut self.lineage {
            row.webhook_event_id = Set(inbox_id);
        }
        for row in &mut self.history {
            row.webhook_event_id = Set(Some(inbox_id));
        }
        for row in &mut self.events {
            row.webhook_event_id = Set(Some(inbox_id));
        }
    }

    fn append(&mut self, mut other: Rows) {
        self.lineage.append(&mut other.lineage);
        self.history.append(&mut other.history);
        self.events.append(&mut other.events);
    }

    /// A delivery touches an entity once in its lineage: a second effect replaces the first
    /// (as the former per-row `ON CONFLICT DO UPDATE` did), which also keeps one multi-row
    /// INSERT from naming the same key twice.
    fn lineage(&mut self, entity_type: &str, entity_id: i64, effect: Effect) {
        let change = Set(effect.as_str().to_owned());
        let same = |row: &&mut entity_lineage::ActiveModel| {
            row.entity_id.as_ref() == &entity_id && row.entity_type.as_ref() == entity_type
        };
        if let Some(row) = self.lineage.iter_mut().find(same) {
            row.change = change;
            return;
        }
        self.lineage.push(entity_lineage::ActiveModel {
            webhook_event_id: ActiveValue::NotSet,
            entity_type: Set(entity_type.to_owned()),
            entity_id: Set(entity_id),
            change,
        });
    }

    /// Inserts everything, in chunks of [`INSERT_CHUNK`] rows; returns the events as stored
    /// (with their cursors).
    async fn insert(self, txn: &DatabaseTransaction) -> Result<Vec<domain_event::Model>, DbErr> {
        let mut script = Script::new(txn.get_database_backend());
        self.push_into(&mut script);
        stored_events(script.run(txn).await?)
    }

    /// [`Rows::insert`]'s statements, added to `script`; of them only the events' insert
    /// returns rows (see [`stored_events`]).
    fn push_into(self, script: &mut Script) {
        let backend = script.backend();
        for chunk in chunks(self.lineage) {
            script.push(entity_lineage::Entity::insert_many(chunk).build(backend));
        }
        for chunk in chunks(self.history) {
            script.push(queue_state_history::Entity::insert_many(chunk).build(backend));
        }
        for chunk in chunks(self.events) {
            let mut insert = domain_event::Entity::insert_many(chunk).into_query();
            insert.returning_all();
            script.push(backend.build(&insert));
        }
    }
}

/// The events as stored, from the rows their `INSERT … RETURNING` gave.
fn stored_events(rows: Vec<QueryResult>) -> Result<Vec<domain_event::Model>, DbErr> {
    rows.iter()
        .map(|row| domain_event::Model::from_query_result(row, ""))
        .collect()
}

fn chunks<T>(mut rows: Vec<T>) -> Vec<Vec<T>> {
    let mut chunks = Vec::with_capacity(rows.len().div_ceil(INSERT_CHUNK));
    while rows.len() > INSERT_CHUNK {
        let rest = rows.split_off(INSERT_CHUNK);
        chunks.push(std::mem::replace(&mut rows, rest));
    }
    if !rows.is_empty() {
        chunks.push(rows);
    }
    chunks
}

/// Row ids of the entities written so far in this delivery, by vendor id, so later changes
/// can reference them.
#[derive(Default)]
struct Refs {
    clients: Vec<(String, ClientId)>,
    staff: Vec<(String, StaffId)>,
    services: Vec<(String, ServiceId)>,
    locations: Vec<(String, LocationId)>,
    appointments: Vec<(String, AppointmentId)>,
}

fn lookup<T: Copy>(list: &[(String, T)], vendor_id: Option<&String>) -> Option<T> {
    let vendor_id = vendor_id?;
    list.iter()
        .find(|(id, _)| id == vendor_id)
        .map(|(_, row)| *row)
}

/// What a change did to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Stale,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Created => "created",
            Effect::Updated => "updated",
            Effect::Unchanged => "unchanged",
            Effect::Deleted => "deleted",
            Effect::Stale => "stale",
        }
    }
}

struct Apply<'a> {
    txn: &'a DatabaseTransaction,
    /// The batch's view of stored rows: reads go through it, writes update it.
    known: &'a mut Known,
    /// This delivery's lineage, history and events, inserted with the batch's.
    rows: &'a mut Rows,
    source_id: SourceId,
    now: DateTime<Utc>,
    occurred_at: DateTime<Utc>,
    refs: Refs,
    /// TimeTap: the event type derived by diffing against the stored appointment.
    derived_event_type: Option<String>,
}

/// True when the change is older than what is stored (never when either side has no version).
fn is_stale(stored: Option<DateTime<Utc>>, incoming: Option<DateTime<Utc>>) -> bool {
    matches!((stored, incoming), (Some(stored), Some(incoming)) if incoming < stored)
}

fn newest(stored: Option<DateTime<Utc>>, incoming: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    stored.max(incoming)
}

/// Sets an optional column when the delivery carries a value that differs from the stored one.
fn merge<T>(field: &mut ActiveValue<Option<T>>, incoming: Option<T>)
where
    T: Into<sea_orm::Value> + PartialEq + Clone,
    Option<T>: Into<sea_orm::Value>,
{
    if let Some(value) = incoming {
        field.set_if_not_equals(Some(value));
    }
}

fn json_ids(ids: &Option<Vec<String>>) -> Option<serde_json::Value> {
    ids.as_ref().map(|ids| json!(ids))
}

impl Apply<'_> {
    /// Stages the row for the batch's upsert of its type (see [`Known::flush`]) and keeps the
    /// batch's view of it current: a created row gets its id now, so that later changes, lineage
    /// and events can name it; `updated_at` moves only on a real change. Nothing is written
    /// here: one delivery costs no statement of its own.
    async fn save<A>(
        &mut self,
        mut row: A,
        created: bool,
    ) -> Result<<A::Entity as EntityTrait>::Model, DbErr>
    where
        A: ActiveModelTrait + UpdatedAt,
        A: sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model>,
        A::Entity: ByVendorId,
    {
        let changed = created || row.is_changed();
        if created {
            let id = self
                .known
                .next_id(self.txn, A::Entity::default().table_name())
                .await?;
            row.set(<A::Entity as ByVendorId>::ID, id.into());
        } else if changed {
            row.touch(self.now);
        }
        let saved = row.try_into_model()?;
        remember::<A::Entity>(self.known, &self.source_id, &saved);
        if changed {
            let key = (
                self.source_id.clone(),
                A::Entity::vendor_id(&saved).to_owned(),
            );
            A::Entity::staged(self.known).push(key);
        }
        Ok(saved)
    }

    /// Applies every change; the last change is the delivery's primary entity, and if it is
    /// older than what is stored the whole delivery is STALE and nothing is written.
    async fn changes(&mut self, normalized: &Normalized) -> Result<InboxStatus, DbErr> {
        if let Some(primary) = normalized.changes.last()
            && self.primary_is_stale(primary).await?
        {
            return Ok(InboxStatus::Stale);
        }
        for change in &normalized.changes {
            match change {
                Change::Client(change) => self.client(change).await?,
                Change::Staff(change) => self.staff(change).await?,
                Change::Service(change) => self.service(change).await?,
                Change::Location(change) => self.location(change).await?,
                Change::QueueEntry(change) => self.queue_entry(change).await?,
                Change::Appointment(change) => self.appointment(change).await?,
                Change::Visit(change) => self.visit(change).await?,
                Change::Payment(change) => self.payment(change).await?,
            }
        }
        Ok(InboxStatus::Processed)
    }

    async fn primary_is_stale(&mut self, primary: &Change) -> Result<bool, DbErr> {
        macro_rules! stale_row {
            ($module:ident, $change:expr) => {
                find::<$module::Entity>(self.txn, self.known, &self.source_id, &$change.vendor_id)
                    .await?
                    .filter(|row| is_stale(row.version, $change.version))
                    .map(|row| row.id.0)
            };
        }
        let (entity_type, stale) = match primary {
            Change::Client(c) => ("Client", stale_row!(client, c)),
            Change::Staff(c) => ("Staff", stale_row!(staff, c)),
            Change::Service(c) => ("Service", stale_row!(service, c)),
            Change::QueueEntry(c) => ("QueueEntry", stale_row!(queue_entry, c)),
            Change::Appointment(c) => ("Appointment", stale_row!(appointment, c)),
            Change::Visit(c) => ("Visit", stale_row!(visit, c)),
            Change::Payment(c) => ("Payment", stale_row!(payment, c)),
            Change::Location(_) => return Ok(false),
        };
        match stale {
            Some(row_id) => {
                self.rows.lineage(entity_type, row_id, Effect::Stale);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Queues a domain event for an entity that really changed.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        kind: String,
        entity_type: &str,
        entity_id: i64,
        service_id: Option<ServiceId>,
        staff_id: Option<StaffId>,
        client_id: Option<ClientId>,
        payload: serde_json::Value,
    ) {
        self.rows.events.push(domain_event::ActiveModel {
            cursor: ActiveValue::NotSet,
            kind: Set(kind),
            source_id: Set(Some(self.source_id.clone())),
            entity_type: Set(entity_type.to_owned()),
            entity_id: Set(entity_id),
            webhook_event_id: ActiveValue::NotSet,
            occurred_at: Set(self.occurred_at),
            recorded_at: Set(self.now),
            service_id: Set(service_id),
            staff_id: Set(staff_id),
            client_id: Set(client_id),
            payload: Set(payload),
        });
    }

    /// Records lineage and, unless nothing changed, the `<PREFIX>_<EFFECT>` event.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        entity_type: &str,
        prefix: &str,
        entity_id: i64,
        effect: Effect,
        refs: (Option<ServiceId>, Option<StaffId>, Option<ClientId>),
        payload: serde_json::Value,
    ) {
        self.rows.lineage(entity_type, entity_id, effect);
        if matches!(effect, Effect::Created | Effect::Updated | Effect::Deleted) {
            let kind = format!("{prefix}_{}", effect.as_str().to_ascii_uppercase());
            self.event(
                kind,
                entity_type,
                entity_id,
                refs.0,
                refs.1,
                refs.2,
                payload,
            );
        }
    }

    async fn client(&mut self, change: &ClientChange) -> Result<(), DbErr> {
        let existing =
            find::<client::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                client::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    first_name: Set(None),
                    last_name: Set(None),
                    full_name: Set(None),
                    phone: Set(None),
                    email: Set(None),
                    custom_fields: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.first_name, change.first_name.clone());
        merge(&mut row.last_name, change.last_name.clone());
        merge(&mut row.full_name, change.full_name.clone());
        merge(&mut row.phone, change.phone.clone());
        merge(&mut row.email, change.email.clone());
        merge(&mut row.custom_fields, change.custom_fields.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = self.save(row, created).await?.id;
        self.refs.clients.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Client",
            "CLIENT",
            id.0,
            effect,
            (None, None, Some(id)),
            payload,
        );
        Ok(())
    }

    async fn staff(&mut self, change: &StaffChange) -> Result<(), DbErr> {
        let existing =
            find::<staff::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id).await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                staff::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    email: Set(None),
                    time_zone: Set(None),
                    service_ids: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.email, change.email.clone());
        merge(&mut row.time_zone, change.time_zone.clone());
        merge(&mut row.service_ids, json_ids(&change.service_ids));
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = self.save(row, created).await?.id;
        self.refs.staff.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Staff",
            "STAFF",
            id.0,
            effect,
            (None, Some(id), None),
            payload,
        );
        Ok(())
    }

    async fn service(&mut self, change: &ServiceChange) -> Result<(), DbErr> {
        let existing =
            find::<service::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                service::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    duration_minutes: Set(None),
                    staff_ids: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.duration_minutes, change.duration_minutes);
        merge(&mut row.staff_ids, json_ids(&change.staff_ids));
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = self.save(row, created).await?.id;
        self.refs.services.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Service",
            "SERVICE",
            id.0,
            effect,
            (Some(id), None, None),
            payload,
        );
        Ok(())
    }

    async fn location(&mut self, change: &LocationChange) -> Result<(), DbErr> {
        let existing =
            find::<location::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                location::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    kind: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.kind, change.kind.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let id = self.save(row, created).await?.id;
        self.refs.locations.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Location",
            "LOCATION",
            id.0,
            effect,
            (None, None, None),
            payload,
        );
        Ok(())
    }

    async fn queue_entry(&mut self, change: &QueueEntryChange) -> Result<(), DbErr> {
        let existing =
            find::<queue_entry::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let previous_state = existing
            .as_ref()
            .map(|row| (row.state.clone(), row.state_code, row.state_name.clone()));
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                queue_entry::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    service_id: Set(None),
                    staff_id: Set(None),
                    appointment_id: Set(None),
                    appointment_vendor_id: Set(None),
                    state: Set("WAITING".to_owned()),
                    state_code: Set(None),
                    state_name: Set(None),
                    state_label: Set(None),
                    queue_date: Set(None),
                    time_zone: Set(None),
                    notes: Set(None),
                    vendor_created_at: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.service_id,
            lookup(&self.refs.services, change.service_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(
            &mut row.appointment_vendor_id,
            change.appointment_id.clone(),
        );
        if let Some(appointment_vendor_id) = &change.appointment_id {
            let linked = self.appointment_row(appointment_vendor_id).await?;
            merge(&mut row.appointment_id, linked);
        }
        if let Some(state) = &change.state {
            row.state.set_if_not_equals(kind_text(&state.kind));
            row.state_code.set_if_not_equals(state.raw_code);
            row.state_name.set_if_not_equals(state.raw_name.clone());
            merge(&mut row.state_label, state.label.clone());
        }
        merge(&mut row.queue_date, change.queue_date);
        merge(&mut row.time_zone, change.time_zone.clone());
        merge(&mut row.notes, change.notes.clone());
        merge(&mut row.vendor_created_at, change.vendor_created_at);
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = self.save(row, created).await?;
        let current_state = (
            saved.state.clone(),
            saved.state_code,
            saved.state_name.clone(),
        );
        if previous_state.as_ref() != Some(&current_state) {
            let history = queue_state_history::ActiveModel {
                id: ActiveValue::NotSet,
                queue_entry_id: Set(saved.id),
                state: Set(saved.state.clone()),
                state_code: Set(saved.state_code),
                state_name: Set(saved.state_name.clone()),
                state_label: Set(saved.state_label.clone()),
                changed_at: Set(change.version.unwrap_or(self.occurred_at)),
                webhook_event_id: ActiveValue::NotSet,
            };
            self.rows.history.push(history);
        }
        let payload = json!({
            "vendorId": saved.vendor_id,
            "state": saved.state,
            "previousState": previous_state.map(|(state, _, _)| state),
        });
        let refs = (saved.service_id, saved.staff_id, saved.client_id);
        let kind_prefix = "QUEUE_ENTRY";
        let effect_for_event = if effect == Effect::Updated {
            Effect::Updated
        } else {
            effect
        };
        self.rows.lineage("QueueEntry", saved.id.0, effect);
        if matches!(
            effect_for_event,
            Effect::Created | Effect::Updated | Effect::Deleted
        ) {
            let kind = match effect_for_event {
                Effect::Created => format!("{kind_prefix}_CREATED"),
                Effect::Deleted => format!("{kind_prefix}_DELETED"),
                _ => format!("{kind_prefix}_CHANGED"),
            };
            self.event(
                kind,
                "QueueEntry",
                saved.id.0,
                refs.0,
                refs.1,
                refs.2,
                payload,
            );
        }
        Ok(())
    }

    async fn appointment_row(&mut self, vendor_id: &str) -> Result<Option<AppointmentId>, DbErr> {
        if let Some(id) = lookup(&self.refs.appointments, Some(&vendor_id.to_owned())) {
            return Ok(Some(id));
        }
        let stored = find::<appointment::Entity>(self.txn, self.known, &self.source_id, vendor_id);
        Ok(stored.await?.map(|row| row.id))
    }

    async fn appointment(&mut self, change: &AppointmentChange) -> Result<(), DbErr> {
        let existing =
            find::<appointment::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let before = existing
            .as_ref()
            .map(|row| (row.status.clone(), row.starts_at, row.deleted));
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                appointment::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    staff_id: Set(None),
                    service_id: Set(None),
                    location_id: Set(None),
                    starts_at: Set(None),
                    ends_at: Set(None),
                    time_zone: Set(None),
                    status: Set(kind_text(&AppointmentStatusKind::Booked)),
                    status_raw: Set(None),
                    sub_status_raw: Set(None),
                    title: Set(None),
                    notes: Set(None),
                    custom_fields: Set(None),
                    fingerprint: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(
            &mut row.service_id,
            lookup(&self.refs.services, change.service_id.as_ref()),
        );
        merge(
            &mut row.location_id,
            lookup(&self.refs.locations, change.location_id.as_ref()),
        );
        merge(&mut row.starts_at, change.starts_at);
        merge(&mut row.ends_at, change.ends_at);
        merge(&mut row.time_zone, change.time_zone.clone());
        if let Some(status) = &change.status {
            row.status.set_if_not_equals(kind_text(&status.kind));
            row.status_raw.set_if_not_equals(status.raw.clone());
            row.sub_status_raw
                .set_if_not_equals(status.raw_sub_status.clone());
        }
        merge(&mut row.title, change.title.clone());
        merge(&mut row.notes, change.notes.clone());
        merge(&mut row.custom_fields, change.custom_fields.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        merge(&mut row.fingerprint, change.fingerprint.clone());
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = self.save(row, created).await?;
        self.refs
            .appointments
            .push((change.vendor_id.clone(), saved.id));

        let kind = appointment_event_kind(effect, before.as_ref(), &saved);
        if change.fingerprint.is_some() {
            // TimeTap: the delivery names no event; the diff names it.
            let derived = kind
                .map(|k| k.to_ascii_lowercase())
                .unwrap_or_else(|| "appointment_unchanged".into());
            self.derived_event_type = Some(derived);
        }
        self.rows.lineage("Appointment", saved.id.0, effect);
        if let Some(kind) = kind {
            let payload = json!({
                "vendorId": saved.vendor_id,
                "status": saved.status,
                "previousStatus": before.map(|(status, _, _)| status),
            });
            self.event(
                kind.to_owned(),
                "Appointment",
                saved.id.0,
                saved.service_id,
                saved.staff_id,
                saved.client_id,
                payload,
            );
        }
        Ok(())
    }

    async fn visit(&mut self, change: &VisitChange) -> Result<(), DbErr> {
        let existing =
            find::<visit::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id).await?;
        let status_before = existing.as_ref().map(|row| row.status.clone());
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                visit::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    staff_id: Set(None),
                    scheduled_start: Set(None),
                    scheduled_end: Set(None),
                    actual_start: Set(None),
                    actual_end: Set(None),
                    status: Set(kind_text(&VisitStatusKind::Pending)),
                    status_raw: Set(None),
                    status_updated_by: Set(None),
                    note_id: Set(None),
                    note_status: Set(None),
                    invoice_id: Set(None),
                    invoice_status: Set(None),
                    invoice_amount_due: Set(None),
                    invoice_amount_paid: Set(None),
                    invoice_currency: Set(None),
                    payload_version: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(&mut row.scheduled_start, change.scheduled_start);
        merge(&mut row.scheduled_end, change.scheduled_end);
        merge(&mut row.actual_start, change.actual_start);
        merge(&mut row.actual_end, change.actual_end);
        if let Some(status) = &change.status {
            row.status.set_if_not_equals(kind_text(&status.kind));
            row.status_raw.set_if_not_equals(Some(status.raw.clone()));
        }
        merge(&mut row.status_updated_by, change.status_updated_by.clone());
        if let Some(note) = &change.note {
            merge(&mut row.note_id, note.id.clone());
            merge(&mut row.note_status, note.status.clone());
        }
        if let Some(invoice) = &change.invoice {
            merge(&mut row.invoice_id, invoice.id.clone());
            merge(&mut row.invoice_status, invoice.status.clone());
            merge(&mut row.invoice_amount_due, invoice.amount_due);
            merge(&mut row.invoice_amount_paid, invoice.amount_paid);
            merge(&mut row.invoice_currency, invoice.currency.clone());
        }
        merge(&mut row.payload_version, change.payload_version.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = self.save(row, created).await?;
        let ended = ["COMPLETED", "CANCELLED"].contains(&saved.status.as_str())
            && status_before.as_deref() != Some(saved.status.as_str());
        self.rows.lineage("Visit", saved.id.0, effect);
        let kind = match effect {
            Effect::Created => Some("VISIT_CREATED"),
            Effect::Updated if ended => Some("VISIT_ENDED"),
            Effect::Updated => Some("VISIT_UPDATED"),
            Effect::Deleted => Some("VISIT_DELETED"),
            Effect::Unchanged | Effect::Stale => None,
        };
        if let Some(kind) = kind {
            let payload = json!({ "vendorId": saved.vendor_id, "status": saved.status, "previousStatus": status_before });
            self.event(
                kind.to_owned(),
                "Visit",
                saved.id.0,
                None,
                saved.staff_id,
                saved.client_id,
                payload,
            );
        }
        Ok(())
    }

    async fn payment(&mut self, change: &PaymentChange) -> Result<(), DbErr> {
        let existing =
            find::<payment::Entity>(self.txn, self.known, &self.source_id, &change.vendor_id)
                .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                payment::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    amount: Set(None),
                    currency: Set(None),
                    state: Set(None),
                    payment_method: Set(None),
                    title: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(&mut row.amount, change.amount.clone());
        merge(&mut row.currency, change.currency.clone());
        merge(&mut row.state, change.state.clone());
        merge(&mut row.payment_method, change.payment_method.clone());
        merge(&mut row.title, change.title.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = self.save(row, created).await?;
        let payload = json!({ "vendorId": saved.vendor_id, "state": saved.state });
        self.finish(
            "Payment",
            "PAYMENT",
            saved.id.0,
            effect,
            (None, None, saved.client_id),
            payload,
        );
        Ok(())
    }
}

/// The effect, judged before the version column is bumped (a newer version alone is not a change).
fn effect_of(created: bool, changed: bool, action: Action) -> Effect {
    match (created, changed, action) {
        (true, _, Action::Delete) => Effect::Deleted,
        (true, _, Action::Upsert) => Effect::Created,
        (false, false, _) => Effect::Unchanged,
        (false, true, Action::Delete) => Effect::Deleted,
        (false, true, Action::Upsert) => Effect::Updated,
    }
}

/// Appointment events name what happened: a status reached, a new start time, or a plain edit.
fn appointment_event_kind(
    effect: Effect,
    before: Option<&(String, Option<DateTime<Utc>>, bool)>,
    after: &appointment::Model,
) -> Option<&'static str> {
    match effect {
        Effect::Unchanged | Effect::Stale => return None,
        Effect::Deleted => return Some("APPOINTMENT_DELETED"),
        Effect::Created => return Some("APPOINTMENT_CREATED"),
        Effect::Updated => {}
    }
    let (status_before, starts_before, _) = before?;
    if *status_before != after.status {
        return Some(match after.status.as_str() {
            "CANCELLED" => "APPOINTMENT_CANCELLED",
            "NO_SHOW" => "APPOINTMENT_NO_SHOW",
            "COMPLETED" => "APPOINTMENT_COMPLETED",
            "CHECKED_IN" => "APPOINTMENT_CHECKED_IN",
            "CONFIRMED" => "APPOINTMENT_CONFIRMED",
            "RESCHEDULED" => "APPOINTMENT_RESCHEDULED",
            _ => "APPOINTMENT_UPDATED",
        });
    }
    if starts_before.is_some() && *starts_before != after.starts_at {
        return Some("APPOINTMENT_RESCHEDULED");
    }
    Some("APPOINTMENT_UPDATED")
}

/// The stored text of a normalized kind (`SCREAMING_SNAKE_CASE`, as in GraphQL).
fn kind_text<T: serde::Serialize>(kind: &T) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "OTHER".to_owned(),
    }
}

/// Entities with an `updated_at` column.
trait UpdatedAt {
    fn touch(&mut self, now: DateTime<Utc>);
}

macro_rules! updated_at {
    ($($module:ident),+) => {$(
        impl UpdatedAt for $module::ActiveModel {
            fn touch(&mut self, now: DateTime<Utc>) {
                self.updated_at = Set(now);
            }
        }
    )+};
}
updated_at!(
    client,
    staff,
    service,
    location,
    queue_entry,
    appointment,
    visit,
    payment
);

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A server error with a SQLSTATE, as PostgreSQL sends one.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "terminating connection due to administrator command"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn server_error(code: &'static str) -> [DbErr; 2] {
        let error = || sea_orm::sqlx::Error::Database(Box::new(ServerError(code)));
        [
            DbErr::Exec(RuntimeErr::SqlxError(error().into())),
            DbErr::Query(RuntimeErr::SqlxError(error().into())),
        ]
    }

    #[test]
    fn a_terminated_or_refused_session_is_a_connection_error_answered_503() {
        for code in ["57P01", "57P02", "57P03", "08006", "08003"] {
            for error in server_error(code) {
                assert!(is_unavailable(&error), "{code}: {error}");
            }
        }
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let reset = DbErr::Exec(RuntimeErr::SqlxError(
            sea_orm::sqlx::Error::Io(reset).into(),
        ));
        assert!(is_unavailable(&reset));
    }

    #[test]
    fn a_refused_statement_is_not_a_connection_error() {
        // unique violation, invalid byte sequence (a NUL), datetime out of range, raised
        for code in ["23505", "22021", "22008", "P0001"] {
            for error in server_error(code) {
                assert!(!is_unavailable(&error), "{code}: {error}");
            }
        }
    }
}
