//! `visits`: a VSee telehealth visit. VSee's v1 numeric codes and v2 names both map to the
//! normalized `status`; invoice amounts are integer minor units (cents), never floats.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, SourceId, StaffId, VisitId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "visits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: VisitId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub client_id: Option<ClientId>,
    pub staff_id: Option<StaffId>,
    pub scheduled_start: Option<DateTimeUtc>,
    pub scheduled_end: Option<DateTimeUtc>,
    pub actual_start: Option<DateTimeUtc>,
    pub actual_end: Option<DateTimeUtc>,
    pub status: String,
    pub status_raw: Option<String>,
    pub status_updated_by: Option<String>,
    pub note_id: Option<String>,
    pub note_status: Option<String>,
    pub invoice_id: Option<String>,
    pub invoice_status: Option<String>,
    pub invoice_amount_due: Option<i64>,
    pub invoice_amount_paid: Option<i64>,
    pub invoice_currency: Option<String>,
    /// Which VSee payload shape (v1/v2) the row was last written from.
    pub payload_version: Option<String>,
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
        belongs_to = "super::staff::Entity",
        from = "Column::StaffId",
        to = "super::staff::Column::Id",
        on_delete = "SetNull"
    )]
    Staff,
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

impl Related<super::staff::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Staff.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
