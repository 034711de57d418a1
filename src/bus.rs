//! Live fan-out of committed domain events to this process's subscribers.
//!
//! The event log in the database is the source of truth; the bus is only the fast path. One
//! *tailer* task per process reads events with a cursor above the last one it published, in
//! cursor order, and broadcasts them. It is woken by this process's writer after each commit
//! and, on PostgreSQL, by `LISTEN carebridge_events`, which every replica's writer `NOTIFY`s
//! inside its commit (the notification carries no payload: NOTIFY payloads are capped at 8000
//! bytes and the log has the data anyway). A periodic tick covers a lost notification.
//!
//! Because writers hand out cursors in commit order (see `store::ingest`), "everything above
//! the last published cursor" never skips an event, on one process or many.
//!
//! The ingest writer has its batch's events in hand when it commits, so it publishes them itself
//! when they are the very next ones ([`Bus::publish_committed`]): their first cursor follows the
//! last one published and they have no gaps, so no event can be missing between them. That
//! saves a read of the log and a task hand-off on the path from webhook to screen. Anything
//! else (a gap: another writer's or replica's events, or a sequence value a rolled-back
//! transaction used) is left to the tailer, which reads the log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use entity::domain_event;
use entity::ids::EventCursor;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use tokio::sync::{Notify, broadcast};

/// The PostgreSQL channel writers notify after committing events.
pub const NOTIFY_CHANNEL: &str = "carebridge_events";
/// Events read from the log per query while catching up.
const PAGE: u64 = 500;
/// How often the tailer looks even without a wake-up.
const SAFETY_TICK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Bus {
    /// `broadcast`: every subscriber sees every event, and a slow one never blocks the tailer;
    /// one that lags is told so and catches up from the log.
    sender: broadcast::Sender<Arc<domain_event::Model>>,
    /// Wakes the tailer; `Notify` keeps one pending permit, so wake-ups coalesce.
    wake: Arc<Notify>,
    /// What subscribers have been sent; the lock keeps the tailer's and the writer's sends in
    /// cursor order (held only while handing events to `sender`, which never waits).
    sent: Arc<Mutex<Sent>>,
}

/// The cursor of the last event handed to subscribers, known once the tailer has started (before
/// that, only the tailer publishes: it knows where the log starts), and the metric counting them.
#[derive(Default)]
struct Sent {
    last: Option<EventCursor>,
    counter: Option<prometheus::IntCounter>,
}

impl Sent {
    /// Sends the events above the last one sent, in the order given (cursor order).
    fn send(
        &mut self,
        sender: &broadcast::Sender<Arc<domain_event::Model>>,
        events: impl IntoIterator<Item = domain_event::Model>,
    ) {
        for event in events {
            if self.last.is_some_and(|last| event.cursor <= last) {
                continue;
            }
            self.last = Some(event.cursor);
            // No receiver is not an error: nobody is watching right now.
            let _nobody_listening = sender.send(Arc::new(event));
            if let Some(counter) = &self.counter {
                counter.inc();
            }
        }
    }
}

/// Whether `events` (in cursor order) are exactly the ones after `last`: no cursor skipped.
fn follow_without_gap(last: EventCursor, events: &[domain_event::Model]) -> bool {
    events
        .iter()
        .enumerate()
        .all(|(offset, event)| event.cursor.0 == last.0 + 1 + offset as i64)
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Bus {
            sender,
            wake: Arc::new(Notify::new()),
            sent: Arc::default(),
        }
    }

    /// Called by a writer after its commit: new events are in the log.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// Called by a writer after its commit with the events it wrote, sorted by cursor: sends
    /// them at once when they directly follow the last event published, or else wakes the
    /// tailer to publish from the log (see the module docs). Returns whether they were sent.
    pub fn publish_committed(&self, events: Vec<domain_event::Model>) -> bool {
        if events.is_empty() {
            return false;
        }
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if sent
            .last
            .is_some_and(|last| follow_without_gap(last, &events))
        {
            sent.send(&self.sender, events);
            return true;
        }
        drop(sent);
        self.committed();
        false
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<domain_event::Model>> {
        self.sender.subscribe()
    }

    /// Publishes every event above `start` as it commits, until the process ends.
    /// `published` counts the events handed to subscribers (metrics).
    pub fn spawn_tailer(
        &self,
        db: DatabaseConnection,
        start: EventCursor,
        published: prometheus::IntCounter,
    ) -> tokio::task::JoinHandle<()> {
        {
            let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
            sent.last = Some(sent.last.map_or(start, |last| last.max(start)));
            sent.counter = Some(published);
        }
        let bus = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = bus.publish_new(&db).await {
                    tracing::warn!(%error, "event tailer could not read the log; retrying")
                }
                tokio::select! {
                    () = bus.wake.notified() => {}
                    () = tokio::time::sleep(SAFETY_TICK) => {}
                }
            }
        })
    }

    /// PostgreSQL: wakes the tailer when any replica commits events.
    pub fn spawn_listener(&self, db: &DatabaseConnection) -> Option<tokio::task::JoinHandle<()>> {
        if db.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        let pool = db.get_postgres_connection_pool().clone();
        let wake = self.wake.clone();
        Some(tokio::spawn(async move {
            loop {
                match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
                            tracing::warn!(%error, "cannot LISTEN for events; retrying");
                        } else {
                            // `recv` reconnects by itself after a dropped connection.
                            while listener.recv().await.is_ok() {
                                wake.notify_one();
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot open the event listener; retrying")
                    }
                }
                wake.notify_one();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    /// The tailer's round: publishes everything in the log above the last event sent (events
    /// the writer sent meanwhile are skipped, not sent twice).
    async fn publish_new(&self, db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        loop {
            let last = self.last_sent().unwrap_or(EventCursor(0));
            let rows = events_after(db, last, PAGE).await?;
            let full_page = rows.len() as u64 == PAGE;
            self.sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(&self.sender, rows);
            if !full_page {
                return Ok(());
            }
        }
    }

    fn last_sent(&self) -> Option<EventCursor> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
    }
}

/// Events above `after`, in cursor order.
///
/// The limit is written into the SQL text, not bound: SQLite marks a statement whose `LIMIT` is
/// a bound parameter for re-preparing every time that parameter is bound again (the planner may
/// use its value), so the tailer's query, run after every commit, was parsed and planned anew
/// each time (perf: `sqlite3Reprepare` ≈ 8 % of the gateway's CPU at 1k webhooks/s).
pub async fn events_after(
    db: &DatabaseConnection,
    after: EventCursor,
    limit: u64,
) -> Result<Vec<domain_event::Model>, sea_orm::DbErr> {
    let mut statement = domain_event::Entity::find()
        .filter(domain_event::Column::Cursor.gt(after))
        .order_by_asc(domain_event::Column::Cursor)
        .build(db.get_database_backend());
    statement.sql.push_str(&format!(" LIMIT {limit}"));
    domain_event::Entity::find()
        .from_raw_sql(statement)
        .all(db)
        .await
}

/// The newest cursor in the log (0 when empty).
pub async fn latest_cursor(db: &DatabaseConnection) -> Result<EventCursor, sea_orm::DbErr> {
    let latest: Option<Option<EventCursor>> = domain_event::Entity::find()
        .select_only()
        .column_as(domain_event::Column::Cursor.max(), "latest")
        .into_tuple()
        .one(db)
        .await?;
    Ok(latest.flatten().unwrap_or(EventCursor(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cursor: i64) -> domain_event::Model {
        domain_event::Model {
            cursor: EventCursor(cursor),
            kind: "QUEUE_ENTRY_UPDATED".to_owned(),
            source_id: None,
            entity_type: "QueueEntry".to_owned(),
            entity_id: cursor,
            webhook_event_id: None,
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            service_id: None,
            staff_id: None,
            client_id: None,
            payload: serde_json::json!({}),
        }
    }

    /// A bus whose tailer would have started at `last` (without one running).
    fn bus_after(last: i64) -> Bus {
        let bus = Bus::new(16);
        bus.sent.lock().unwrap().last = Some(EventCursor(last));
        bus
    }

    fn received(receiver: &mut broadcast::Receiver<Arc<domain_event::Model>>) -> Vec<i64> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|event| event.cursor.0)
            .collect()
    }

    #[test]
    fn the_next_events_go_straight_to_subscribers() {
        let bus = bus_after(7);
        let mut receiver = bus.subscribe();
        assert!(bus.publish_committed(vec![event(8), event(9), event(10)]));
        assert_eq!(received(&mut receiver), [8, 9, 10]);
        assert!(bus.publish_committed(vec![event(11)]));
        assert_eq!(received(&mut receiver), [11]);
        assert_eq!(bus.last_sent(), Some(EventCursor(11)));
    }

    #[test]
    fn events_after_a_gap_are_left_to_the_tailer() {
        let bus = bus_after(7);
        let mut receiver = bus.subscribe();
        // Cursor 8 belongs to another writer and is not published yet.
        assert!(!bus.publish_committed(vec![event(9), event(10)]));
        // A gap inside the batch is just as unknown.
        assert!(!bus.publish_committed(vec![event(8), event(10)]));
        assert_eq!(received(&mut receiver), Vec::<i64>::new());
        assert_eq!(bus.last_sent(), Some(EventCursor(7)));
    }

    #[test]
    fn nothing_is_sent_directly_before_the_tailer_knows_where_the_log_starts() {
        let bus = Bus::new(16);
        let mut receiver = bus.subscribe();
        assert!(!bus.publish_committed(vec![event(1)]));
        assert_eq!(received(&mut receiver), Vec::<i64>::new());
    }

    #[test]
    fn the_tailer_skips_what_the_writer_already_sent() {
        let bus = bus_after(7);
        let mut receiver = bus.subscribe();
        assert!(bus.publish_committed(vec![event(8), event(9)]));
        // The tailer's read of the log raced with the writer and returned 8..=10.
        bus.sent
            .lock()
            .unwrap()
            .send(&bus.sender, vec![event(8), event(9), event(10)]);
        assert_eq!(received(&mut receiver), [8, 9, 10]);
    }
}
