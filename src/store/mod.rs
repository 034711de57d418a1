//! Persistence over the `entity` crate: connecting (SQLite or PostgreSQL), migrating, and the
//! transactions that apply normalized changes. Handlers never touch sea-orm directly; they call
//! the functions here, which keeps every transaction boundary in one place.

pub mod audit;
pub mod board;
pub mod erase;
pub mod events;
pub mod ingest;
pub mod keys;
pub mod outbound;
pub mod reprocess;
pub mod retention;
mod script;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::{Config, SourceConfig};

/// Errors of the storage layer; callers map `Unavailable` to 503 and never show the text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

/// Whether the database could not be reached or the connection broke, as opposed to a
/// statement the database refused. A connection cut mid-transaction surfaces as an execution
/// error carrying an I/O or pool error, and a server that shuts down or is told to end our
/// session answers with a SQLSTATE of its own (see [`is_connection_sqlstate`]), so those count
/// too: such a delivery must be answered 503 (the vendor retries), not stored as FAILED by a
/// fallback that would also fail.
pub fn is_connection_error(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            match inner.as_ref() {
                Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed
                | Sqlx::Protocol(_) => true,
                Sqlx::Database(database) => {
                    database.code().is_some_and(|c| is_connection_sqlstate(&c))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// SQLSTATEs that mean the session is gone, not that the statement was wrong: class 08
/// (connection exception), 57P01 `admin_shutdown` ("terminating connection due to administrator
/// command", a restart or `pg_terminate_backend`), 57P02 `crash_shutdown`, 57P03
/// `cannot_connect_now` (starting up or in recovery) and 57P05 (idle session timeout).
pub fn is_connection_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05")
}

/// Counts SQL statements run through a pool (metrics, and tests that prove a query plan does
/// not grow with the page size).
#[derive(Debug, Clone, Default)]
pub struct StatementCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Opens the pool and counts its statements into `counter`.
pub async fn connect_counted(
    database_url: &str,
    counter: &StatementCounter,
) -> Result<DatabaseConnection, StoreError> {
    let mut db = connect(database_url).await?;
    counter.attach(&mut db);
    Ok(db)
}

/// Opens the ingest writer's own pool of exactly one connection, counting into `counter`.
///
/// One connection, always the same, because SQLite discards a connection's page cache whenever
/// another connection has written since its last transaction: with the writer's batches spread
/// over the shared pool, every batch read its index pages back from the file (measured: ~180
/// `pread`s per batch). Its own connection keeps them cached, and on PostgreSQL keeps the
/// writer's prepared statements on one server backend, which plans them anew every time (see
/// [`connect_dedicated`]).
pub async fn connect_ingest_writer(
    database_url: &str,
    counter: &StatementCounter,
) -> Result<DatabaseConnection, StoreError> {
    connect_dedicated(database_url, counter, WRITER_STATEMENT_CACHE).await
}

/// Prepared statements the ingest writer's SQLite connection keeps, instead of sqlx's 100. Its
/// statements are batch scripts (see `ingest`) whose text follows the batch's row counts, so
/// under varied load few repeat, and each keeps a compiled multi-row insert per table: with 100
/// the gateway's RSS after 10 s of ingest at saturation was 87 MB, with 40 it is 46 MB. At a
/// steady rate the batches are small and their few shapes repeat, which 40 still covers (the
/// 1k/s latency did not change).
const WRITER_STATEMENT_CACHE: usize = 40;

/// sqlx's default number of prepared statements kept per connection.
const DEFAULT_STATEMENT_CACHE: usize = 100;

/// Opens the event tailer's own connection (see [`crate::bus`]), counting into `counter`.
///
/// The tailer asks for the events above its cursor after every commit. On its own connection it
/// never waits behind dashboard queries for a pooled one, and on PostgreSQL its query is planned
/// for the cursor it asks with (see [`connect_dedicated`]): the generic plan that the shared
/// pool would cache for it on an empty log is a sequential scan and sort of the whole log
/// (measured: 2.8 ms per call at 50k events, growing with the log, run after every commit).
pub async fn connect_event_tailer(
    database_url: &str,
    counter: &StatementCounter,
) -> Result<DatabaseConnection, StoreError> {
    connect_dedicated(database_url, counter, DEFAULT_STATEMENT_CACHE).await
}

/// A pool of exactly one connection for one of the gateway's own loops, counting into
/// `counter`. On PostgreSQL it plans each statement for its parameters every time
/// (`plan_cache_mode = force_custom_plan`).
///
/// Why: with the default, a prepared statement switches to a generic plan after five runs and
/// keeps it until the table is analyzed again, so a gateway started on an empty database
/// caches sequential scans for lookups that later run against millions of rows; on a server
/// without autovacuum (or between its runs) ingest fell from 6,195 to 204 deliveries/s by 195k
/// stored webhooks (bench/RESULTS.md, fifth session). These loops run a few statements per
/// batch, so planning each is cheap. The shared pool keeps cached plans: a dashboard query is
/// planned as often as it runs, and planning each one cost 23 % of the board query's throughput.
async fn connect_dedicated(
    database_url: &str,
    counter: &StatementCounter,
    sqlite_statement_cache: usize,
) -> Result<DatabaseConnection, StoreError> {
    let mut options = connect_options(database_url);
    options
        .max_connections(1)
        .min_connections(1)
        .map_sqlx_postgres_opts(|opts| opts.options([("plan_cache_mode", "force_custom_plan")]))
        .map_sqlx_sqlite_opts(move |opts| opts.statement_cache_capacity(sqlite_statement_cache));
    let mut db = Database::connect(options)
        .await
        .map_err(StoreError::Unavailable)?;
    counter.attach(&mut db);
    Ok(db)
}

impl StatementCounter {
    fn attach(&self, db: &mut DatabaseConnection) {
        let count = self.0.clone();
        db.set_metric_callback(move |_info| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// SQLite page cache per connection, as a negative `cache_size` (KiB): 32 MiB instead of the
/// default 2 MiB, so the writer's index lookups (dedupe keys, vendor ids) stay in memory as the
/// inbox grows, instead of reading pages back through the kernel. Grows only as pages are used.
const SQLITE_CACHE_KIB: i64 = -32 * 1024;

/// Opens the shared pool (see [`connect_options`]).
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, StoreError> {
    let mut options = connect_options(database_url);
    if database_url.starts_with("sqlite:") {
        options.max_connections(8).min_connections(1);
    } else {
        options.max_connections(16).min_connections(1);
    }
    Database::connect(options)
        .await
        .map_err(StoreError::Unavailable)
}

/// How every pool connects. SQLite gets WAL (readers never block the writer),
/// `synchronous=FULL` (a 2xx means the webhook survived a power cut, not just a process crash),
/// foreign keys, a busy timeout so concurrent writers wait instead of failing, and temporary
/// storage in memory: the ingest batch gives each delivery a savepoint, and SQLite keeps the
/// pages a savepoint may have to restore in a sub-journal that otherwise spills to a temp file
/// past 64 KiB (measured: two thirds of all write syscalls under load, for data that never
/// needs to survive a crash).
fn connect_options(database_url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .pragma("temp_store", "memory")
                .pragma("cache_size", SQLITE_CACHE_KIB.to_string())
                .create_if_missing(true)
        });
    if database_url.starts_with("sqlite:") {
        // A pooled SQLite connection is a local file handle, not a socket that can go stale:
        // the ping sqlx sends before handing one out is a wasted round trip to its worker
        // thread (measured: ~1 ms of a ~10 ms ingest batch on a loaded box).
        options.test_before_acquire(false);
    }
    options
}

/// Begins a transaction that may write, as a writer from its first statement.
///
/// Why: SQLite's default `BEGIN` is deferred, so a transaction that reads first holds only a
/// read snapshot; if another connection commits a write before this one's first write, the
/// upgrade fails at once with `SQLITE_BUSY_SNAPSHOT` ("database is locked", 517) — the busy
/// timeout cannot help, the snapshot is stale. `BEGIN IMMEDIATE` takes the write lock up front,
/// waiting for it under the busy timeout, so two of our own writers queue instead of failing a
/// request. Readers are never blocked (WAL). PostgreSQL needs nothing here: its writers wait
/// for row locks, and the event writers also serialize on an advisory lock (`ingest`).
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
    } else {
        db.begin().await
    }
}

/// Applies every pending migration (append-only; see the `migration` crate).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    migration::Migrator::up(db, None).await?;
    Ok(())
}

/// Whether the database answers a trivial query right now (`/readyz`).
pub async fn ping(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.execute_unprepared("SELECT 1")
        .await
        .map_err(StoreError::Unavailable)?;
    Ok(())
}

/// Makes the `sources` table mirror the config, so inbox rows can reference their source and
/// GraphQL can list them. Sources removed from the config stay (their history is kept).
pub async fn sync_sources(db: &DatabaseConnection, config: &Config) -> Result<(), StoreError> {
    use entity::source;
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{EntityTrait, Set};

    if config.sources.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let rows = config
        .sources
        .iter()
        .map(|SourceConfig { id, vendor, .. }| source::ActiveModel {
            id: Set(entity::ids::SourceId(id.as_str().to_owned())),
            vendor: Set(vendor.as_str().to_owned()),
            created_at: Set(now),
            last_delivery_at: Set(None),
        });
    source::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(source::Column::Id)
                .update_column(source::Column::Vendor)
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
