//! `entity_lineage`: which webhook delivery touched which entity, and how (`CREATED`,
//! `UPDATED`, `DELETED`, …). It answers both "what did this event change?" and "which events
//! shaped this row?". `entity_id` is polymorphic (keyed by `entity_type`), so it stays a plain
//! `i64` rather than a typed id.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::WebhookEventId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "entity_lineage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub webhook_event_id: WebhookEventId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub entity_type: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub entity_id: i64,
    pub change: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::webhook_event::Entity",
        from = "Column::WebhookEventId",
        to = "super::webhook_event::Column::Id",
        on_delete = "Cascade"
    )]
    WebhookEvent,
}

impl Related<super::webhook_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::WebhookEvent.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
