//! `payments`: a vCita payment. The amount stays the vendor's decimal string, because vCita
//! sends it as text and rounding it here would lose information.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, PaymentId, SourceId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: PaymentId,
    pub source_id: SourceId,
    pub vendor_id: String,
    pub client_id: Option<ClientId>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub state: Option<String>,
    pub payment_method: Option<String>,
    pub title: Option<String>,
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

impl ActiveModelBehavior for ActiveModel {}
