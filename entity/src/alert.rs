//! `alerts`: the outbox for alerts sent to Chup. A row is written in the same transaction as
//! the request, and a worker delivers it with retries (`attempts`, `next_attempt_at`); the
//! unique `idempotency_key` makes a retried request a no-op instead of a second alert.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{AlertId, QueueEntryId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: AlertId,
    pub queue_entry_id: Option<QueueEntryId>,
    /// Chup's id for the ticket ("visit" in its alert API).
    pub visit_vendor_id: String,
    pub message: String,
    /// `PENDING` | `SENT` | `FAILED`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[sea_orm(unique)]
    pub idempotency_key: String,
    pub next_attempt_at: DateTimeUtc,
    pub requested_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::queue_entry::Entity",
        from = "Column::QueueEntryId",
        to = "super::queue_entry::Column::Id",
        on_delete = "SetNull"
    )]
    QueueEntry,
}

impl Related<super::queue_entry::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::QueueEntry.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
