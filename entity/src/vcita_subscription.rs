//! `vcita_subscriptions`: webhook subscriptions CareBridge registered with vCita, so it can
//! re-verify them and show their health.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::VcitaSubscriptionId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "vcita_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: VcitaSubscriptionId,
    pub event: String,
    #[sea_orm(unique)]
    pub target_url: String,
    pub status: String,
    pub last_error: Option<String>,
    pub last_verified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
