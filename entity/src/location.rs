//! `locations`: where an appointment happens (a clinic room, or a virtual/phone "location").

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{LocationId, SourceId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "locations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: LocationId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub name: Option<String>,
    /// Vendor's location kind, kept raw (e.g. `in_person`, `video`, `phone`).
    pub kind: Option<String>,
    pub deleted: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::source::Entity",
        from = "Column::SourceId",
        to = "super::source::Column::Id"
    )]
    Source,
    #[sea_orm(has_many = "super::appointment::Entity")]
    Appointment,
}

impl Related<super::source::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Source.def()
    }
}

impl Related<super::appointment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Appointment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
