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

use std::sync::Arc;
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
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Bus {
            sender,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Called by a writer after its commit: new events are in the log.
    pub fn committed(&self) {
        self.wake.notify_one();
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
        let bus = self.clone();
        tokio::spawn(async move {
            let mut last = start;
            loop {
                match publish_new(&db, &bus.sender, last, &published).await {
                    Ok(published) => last = published,
                    Err(error) => {
                        tracing::warn!(%error, "event tailer could not read the log; retrying")
                    }
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
}

async fn publish_new(
    db: &DatabaseConnection,
    sender: &broadcast::Sender<Arc<domain_event::Model>>,
    mut last: EventCursor,
    published: &prometheus::IntCounter,
) -> Result<EventCursor, sea_orm::DbErr> {
    loop {
        let rows = events_after(db, last, PAGE).await?;
        let full_page = rows.len() as u64 == PAGE;
        for row in rows {
            last = row.cursor;
            // No receiver is not an error: nobody is watching right now.
            let _nobody_listening = sender.send(Arc::new(row));
            published.inc();
        }
        if !full_page {
            return Ok(last);
        }
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
