//! `queue_entries`: a Chup live-queue ticket (Chup's alert API calls it a visit). `state` is
//! normalized; `state_code`/`state_name`/`state_label` keep what the vendor sent, and every
//! transition is appended to `queue_state_history`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{AppointmentId, ClientId, QueueEntryId, ServiceId, SourceId, StaffId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "queue_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: QueueEntryId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub client_id: Option<ClientId>,
    pub service_id: Option<ServiceId>,
    pub staff_id: Option<StaffId>,
    pub appointment_id: Option<AppointmentId>,
    /// The vendor's appointment id, kept even before (or without) a matching appointment row.
    pub appointment_vendor_id: Option<String>,
    /// Normalized: WAITING, ARRIVED, SERVING, SERVED, NO_SHOW, MOVED, CANCELLED, …
    pub state: String,
    pub state_code: Option<i64>,
    pub state_name: Option<String>,
    pub state_label: Option<String>,
    /// The clinic-local day the ticket belongs to.
    pub queue_date: Option<Date>,
    pub time_zone: Option<String>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub notes: Option<Json>,
    pub vendor_created_at: Option<DateTimeUtc>,
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
    #[sea_orm(
        belongs_to = "super::client::Entity",
        from = "Column::ClientId",
        to = "super::client::Column::Id",
        on_delete = "SetNull"
    )]
    Client,
    #[sea_orm(
        belongs_to = "super::service::Entity",
        from = "Column::ServiceId",
        to = "super::service::Column::Id",
        on_delete = "SetNull"
    )]
    Service,
    #[sea_orm(
        belongs_to = "super::staff::Entity",
        from = "Column::StaffId",
        to = "super::staff::Column::Id",
        on_delete = "SetNull"
    )]
    Staff,
    #[sea_orm(
        belongs_to = "super::appointment::Entity",
        from = "Column::AppointmentId",
        to = "super::appointment::Column::Id",
        on_delete = "SetNull"
    )]
    Appointment,
    #[sea_orm(has_many = "super::queue_state_history::Entity")]
    QueueStateHistory,
    #[sea_orm(has_many = "super::alert::Entity")]
    Alert,
}

impl Related<super::source::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Source.def()
    }
}

impl Related<super::client::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Client.def()
    }
}

impl Related<super::service::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Service.def()
    }
}

impl Related<super::staff::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Staff.def()
    }
}

impl Related<super::appointment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Appointment.def()
    }
}

impl Related<super::queue_state_history::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::QueueStateHistory.def()
    }
}

impl Related<super::alert::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Alert.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
