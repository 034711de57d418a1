//! `queue_state_history`: every state a queue entry passed through, with when and which
//! webhook delivery said so. Append-only; deleted with its queue entry.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{QueueEntryId, QueueStateHistoryId, WebhookEventId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "queue_state_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: QueueStateHistoryId,
    pub queue_entry_id: QueueEntryId,
    pub state: String,
    pub state_code: Option<i64>,
    pub state_name: Option<String>,
    pub state_label: Option<String>,
    pub changed_at: DateTimeUtc,
    pub webhook_event_id: Option<WebhookEventId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::queue_entry::Entity",
        from = "Column::QueueEntryId",
        to = "super::queue_entry::Column::Id",
        on_delete = "Cascade"
    )]
    QueueEntry,
    #[sea_orm(
        belongs_to = "super::webhook_event::Entity",
        from = "Column::WebhookEventId",
        to = "super::webhook_event::Column::Id",
        on_delete = "SetNull"
    )]
    WebhookEvent,
}

impl Related<super::queue_entry::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::QueueEntry.def()
    }
}

impl Related<super::webhook_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::WebhookEvent.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
