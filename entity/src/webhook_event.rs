//! `webhook_events`: the inbox. Every delivery is stored before it is interpreted, whatever
//! the outcome (processed, duplicate, stale, failed, unsupported, rejected), so nothing a
//! vendor sent is ever silently dropped and any event can be replayed from its raw bytes.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{SourceId, WebhookEventId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: WebhookEventId,
    pub source_id: SourceId,
    pub vendor: String,
    pub event_type: Option<String>,
    pub received_at: DateTimeUtc,
    /// Outcome of signature/token verification, e.g. `VERIFIED`, `UNSIGNED`, `FAILED: …`.
    pub verification: Option<String>,
    /// Vendor-provided or derived idempotency key, looked up per source to spot duplicates.
    pub dedupe_key: Option<String>,
    pub body_sha256: String,
    /// `PROCESSED` | `DUPLICATE` | `STALE` | `FAILED` | `UNSUPPORTED` | `REJECTED`.
    pub status: String,
    pub error: Option<String>,
    pub content_type: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub headers: Json,
    /// The exact bytes received (what verification ran over); nulled by retention pruning.
    #[sea_orm(column_type = "Blob")]
    pub body: Option<Vec<u8>>,
    pub processed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::source::Entity",
        from = "Column::SourceId",
        to = "super::source::Column::Id"
    )]
    Source,
    #[sea_orm(has_many = "super::queue_state_history::Entity")]
    QueueStateHistory,
    #[sea_orm(has_many = "super::entity_lineage::Entity")]
    EntityLineage,
}

impl Related<super::source::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Source.def()
    }
}

impl Related<super::queue_state_history::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::QueueStateHistory.def()
    }
}

impl Related<super::entity_lineage::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EntityLineage.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
