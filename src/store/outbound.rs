//! Persistence of outbound work: the alert outbox and the vCita subscription records.
//!
//! Alerts are claimed with a lease rather than a lock: a worker moves `next_attempt_at` into
//! the future with a conditional UPDATE and owns the alert if that UPDATE hit a row. A worker
//! that dies mid-send leaves the alert PENDING; it becomes due again when the lease runs out,
//! so a restart never loses one. Status changes append domain events through the same
//! commit-ordered writer as ingest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{AlertId, QueueEntryId, SourceId};
use entity::{alert, domain_event, vcita_subscription};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::ingest::begin_writer;
use crate::bus::Bus;

pub struct NewAlert {
    pub queue_entry_id: Option<QueueEntryId>,
    pub visit_vendor_id: String,
    pub message: String,
    pub idempotency_key: String,
    pub requested_by: String,
}

/// Records a PENDING alert, or returns the one already recorded under the same idempotency
/// key (`false`: nothing new was created).
pub async fn create_alert(
    db: &DatabaseConnection,
    bus: &Bus,
    new: NewAlert,
) -> Result<(alert::Model, bool), DbErr> {
    let now = Utc::now();
    let txn = begin_writer(db).await?;
    // Write first, read after: on SQLite a read-then-write transaction can lose its snapshot
    // to a concurrent writer; an insert that does nothing on conflict cannot.
    let row = alert::ActiveModel {
        id: ActiveValue::NotSet,
        queue_entry_id: Set(new.queue_entry_id),
        visit_vendor_id: Set(new.visit_vendor_id),
        message: Set(new.message),
        status: Set("PENDING".into()),
        attempts: Set(0),
        last_error: Set(None),
        idempotency_key: Set(new.idempotency_key.clone()),
        next_attempt_at: Set(now),
        requested_by: Set(Some(new.requested_by)),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
    };
    let inserted = alert::Entity::insert(row)
        .on_conflict(
            OnConflict::column(alert::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let stored = alert::Entity::find()
        .filter(alert::Column::IdempotencyKey.eq(new.idempotency_key))
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("alert just written".into()))?;
    let created = inserted == 1;
    if created {
        append_alert_event(&txn, "ALERT_CREATED", &stored).await?;
    }
    commit_with_events(txn, bus, created).await?;
    Ok((stored, created))
}

/// Claims up to `limit` due alerts for `lease`; each claim counts as an attempt.
pub async fn claim_due(
    db: &DatabaseConnection,
    limit: u64,
    lease: Duration,
) -> Result<Vec<alert::Model>, DbErr> {
    let now = Utc::now();
    let due = alert::Entity::find()
        .filter(alert::Column::Status.eq("PENDING"))
        .filter(alert::Column::NextAttemptAt.lte(now))
        .order_by_asc(alert::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    let mut claimed = Vec::with_capacity(due.len());
    for candidate in due {
        let hit = alert::Entity::update_many()
            .col_expr(alert::Column::NextAttemptAt, Expr::value(until))
            .col_expr(
                alert::Column::Attempts,
                sea_orm::sea_query::ExprTrait::add(Expr::col(alert::Column::Attempts), 1),
            )
            .col_expr(alert::Column::UpdatedAt, Expr::value(now))
            .filter(alert::Column::Id.eq(candidate.id))
            .filter(alert::Column::Status.eq("PENDING"))
            .filter(alert::Column::NextAttemptAt.eq(candidate.next_attempt_at))
            .exec(db)
            .await?;
        if hit.rows_affected == 1 {
            claimed.push(alert::Model {
                attempts: candidate.attempts + 1,
                next_attempt_at: until,
                ..candidate
            });
        }
    }
    Ok(claimed)
}

/// Alerts not yet sent or failed.
pub async fn pending_count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    alert::Entity::find()
        .filter(alert::Column::Status.eq("PENDING"))
        .count(db)
        .await
}

/// When the next PENDING alert falls due (None: nothing pending).
pub async fn next_due(db: &DatabaseConnection) -> Result<Option<DateTime<Utc>>, DbErr> {
    let next: Option<Option<DateTime<Utc>>> = alert::Entity::find()
        .select_only()
        .column_as(alert::Column::NextAttemptAt.min(), "next")
        .filter(alert::Column::Status.eq("PENDING"))
        .into_tuple()
        .one(db)
        .await?;
    Ok(next.flatten())
}

pub async fn mark_sent(db: &DatabaseConnection, bus: &Bus, id: AlertId) -> Result<(), DbErr> {
    finish(db, bus, id, "SENT", None).await
}

pub async fn mark_failed(
    db: &DatabaseConnection,
    bus: &Bus,
    id: AlertId,
    error: &str,
) -> Result<(), DbErr> {
    finish(db, bus, id, "FAILED", Some(error)).await
}

/// Leaves the alert PENDING, to be tried again at `next_attempt`.
pub async fn schedule_retry(
    db: &DatabaseConnection,
    id: AlertId,
    error: &str,
    next_attempt: DateTime<Utc>,
) -> Result<(), DbErr> {
    alert::Entity::update_many()
        .col_expr(alert::Column::LastError, Expr::value(error))
        .col_expr(alert::Column::NextAttemptAt, Expr::value(next_attempt))
        .col_expr(alert::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(alert::Column::Id.eq(id))
        .filter(alert::Column::Status.eq("PENDING"))
        .exec(db)
        .await?;
    Ok(())
}

async fn finish(
    db: &DatabaseConnection,
    bus: &Bus,
    id: AlertId,
    status: &str,
    error: Option<&str>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let txn = begin_writer(db).await?;
    let mut update = alert::Entity::update_many()
        .col_expr(alert::Column::Status, Expr::value(status))
        .col_expr(alert::Column::UpdatedAt, Expr::value(now))
        .filter(alert::Column::Id.eq(id))
        .filter(alert::Column::Status.eq("PENDING"));
    update = match error {
        Some(error) => update.col_expr(alert::Column::LastError, Expr::value(error)),
        None => update.col_expr(alert::Column::SentAt, Expr::value(now)),
    };
    let changed = update.exec(&txn).await?.rows_affected == 1;
    if changed && let Some(row) = alert::Entity::find_by_id(id).one(&txn).await? {
        append_alert_event(&txn, &format!("ALERT_{status}"), &row).await?;
    }
    commit_with_events(txn, bus, changed).await
}

async fn append_alert_event(
    txn: &DatabaseTransaction,
    kind: &str,
    alert: &alert::Model,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let event = domain_event::ActiveModel {
        cursor: ActiveValue::NotSet,
        kind: Set(kind.to_owned()),
        source_id: Set(None),
        entity_type: Set("Alert".to_owned()),
        entity_id: Set(alert.id.0),
        webhook_event_id: Set(None),
        occurred_at: Set(now),
        recorded_at: Set(now),
        service_id: Set(None),
        staff_id: Set(None),
        client_id: Set(None),
        payload: Set(
            json!({ "status": alert.status, "attempts": alert.attempts, "visitId": alert.visit_vendor_id }),
        ),
    };
    domain_event::Entity::insert(event)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Commits; when events were appended, wakes this process's tailer and (PostgreSQL, inside the
/// commit) every replica's.
async fn commit_with_events(
    txn: DatabaseTransaction,
    bus: &Bus,
    appended: bool,
) -> Result<(), DbErr> {
    if appended && txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("NOTIFY {}", crate::bus::NOTIFY_CHANNEL))
            .await?;
    }
    txn.commit().await?;
    if appended {
        bus.committed();
    }
    Ok(())
}

/// What a subscription row records about its target. `target_url` never carries a source's
/// token: for one of the gateway's own sources it is the URL without it, and `source_id` says
/// which source (the caller adds the token only on its way to vCita).
pub struct RecordedSubscription<'a> {
    /// `None` on unsubscribe: the row keeps the event it had.
    pub event: Option<&'a str>,
    pub target_url: &'a str,
    pub source_id: Option<&'a str>,
}

/// Records the outcome of a subscribe / unsubscribe call for a target URL.
pub async fn record_subscription(
    db: &DatabaseConnection,
    recorded: RecordedSubscription<'_>,
    status: &str,
    error: Option<&str>,
) -> Result<vcita_subscription::Model, DbErr> {
    let RecordedSubscription {
        event,
        target_url,
        source_id,
    } = recorded;
    let now = Utc::now();
    let verified = error.is_none().then_some(now);
    let row = vcita_subscription::ActiveModel {
        id: ActiveValue::NotSet,
        event: Set(event.unwrap_or("").to_owned()),
        target_url: Set(target_url.to_owned()),
        source_id: Set(source_id.map(|id| SourceId(id.to_owned()))),
        status: Set(status.to_owned()),
        last_error: Set(error.map(str::to_owned)),
        last_verified_at: Set(verified),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let mut columns = vec![
        vcita_subscription::Column::SourceId,
        vcita_subscription::Column::Status,
        vcita_subscription::Column::LastError,
        vcita_subscription::Column::UpdatedAt,
    ];
    if event.is_some() {
        columns.push(vcita_subscription::Column::Event);
    }
    if verified.is_some() {
        columns.push(vcita_subscription::Column::LastVerifiedAt);
    }
    // One statement, so no read-then-write transaction; the read after it sees its write.
    vcita_subscription::Entity::insert(row)
        .on_conflict(
            OnConflict::column(vcita_subscription::Column::TargetUrl)
                .update_columns(columns)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    vcita_subscription::Entity::find()
        .filter(vcita_subscription::Column::TargetUrl.eq(target_url))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("subscription just written".into()))
}
