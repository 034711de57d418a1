//! The audit log: who (key name) did what (a mutation, an admin read, a key change) and when.
//! Details name operations and fields, never argument values, which may hold patient data.

use chrono::Utc;
use entity::audit_log;
use sea_orm::{ActiveValue, DatabaseConnection, DbErr, EntityTrait, QueryOrder, QuerySelect, Set};

pub async fn record(
    db: &DatabaseConnection,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), DbErr> {
    let row = audit_log::ActiveModel {
        id: ActiveValue::NotSet,
        at: Set(Utc::now()),
        actor: Set(actor.to_owned()),
        action: Set(action.to_owned()),
        detail: Set(detail),
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Newest first.
pub async fn recent(db: &DatabaseConnection, limit: u64) -> Result<Vec<audit_log::Model>, DbErr> {
    audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
