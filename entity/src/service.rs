//! `services`: what a client is booked or queued for (Chup service, vCita service, TimeTap
//! reason).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ServiceId, SourceId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "services")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ServiceId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub name: Option<String>,
    pub duration_minutes: Option<i32>,
    /// Vendor staff ids that provide this service (a JSON array, as the vendor lists them).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub staff_ids: Option<Json>,
    pub version: Option<DateTimeUtc>,
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
    #[sea_orm(has_many = "super::queue_entry::Entity")]
    QueueEntry,
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

impl Related<super::queue_entry::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::QueueEntry.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
