//! `staff`: a provider (doctor, nurse, queue operator) in one vendor account.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{SourceId, StaffId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "staff")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: StaffId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    /// Vendor service ids this provider offers (a JSON array, as the vendor lists them).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub service_ids: Option<Json>,
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
    #[sea_orm(has_many = "super::visit::Entity")]
    Visit,
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

impl Related<super::visit::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Visit.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
