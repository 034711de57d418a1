//! The domain event log beyond ingest: retention of old events, and the watermark that tells a
//! resuming subscriber its cursor is older than what is kept.

use chrono::{DateTime, Utc};
use entity::domain_event;
use entity::event_log_state;
use entity::ids::EventCursor;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set,
};

const PRUNED_THROUGH: &str = "pruned_through";

/// The highest cursor retention removed (0 if none).
pub async fn pruned_through<C: ConnectionTrait>(db: &C) -> Result<EventCursor, DbErr> {
    Ok(
        event_log_state::Entity::find_by_id(PRUNED_THROUGH.to_owned())
            .one(db)
            .await?
            .map_or(EventCursor(0), |row| row.cursor),
    )
}

/// Deletes events recorded before `older_than` and raises the watermark; returns how many.
pub async fn prune_events(
    db: &DatabaseConnection,
    older_than: DateTime<Utc>,
) -> Result<u64, DbErr> {
    // Reads the highest cursor, then deletes: a writer from the start (see `begin_write`).
    let txn = super::begin_write(db).await?;
    let highest: Option<Option<EventCursor>> = domain_event::Entity::find()
        .select_only()
        .column_as(domain_event::Column::Cursor.max(), "highest")
        .filter(domain_event::Column::RecordedAt.lt(older_than))
        .into_tuple()
        .one(&txn)
        .await?;
    let Some(highest) = highest.flatten() else {
        txn.commit().await?;
        return Ok(0);
    };
    let deleted = domain_event::Entity::delete_many()
        .filter(domain_event::Column::Cursor.lte(highest))
        .exec(&txn)
        .await?
        .rows_affected;
    let mark = event_log_state::ActiveModel {
        name: Set(PRUNED_THROUGH.to_owned()),
        cursor: Set(highest),
    };
    event_log_state::Entity::insert(mark)
        .on_conflict(
            OnConflict::column(event_log_state::Column::Name)
                .update_column(event_log_state::Column::Cursor)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(deleted)
}
