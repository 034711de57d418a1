//! `event_log_state`: named cursors about the event log itself. `pruned_through` is the
//! highest cursor removed by retention, so a subscriber resuming from an older cursor is told
//! to resync instead of silently missing events.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::EventCursor;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "event_log_state")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub cursor: EventCursor,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
