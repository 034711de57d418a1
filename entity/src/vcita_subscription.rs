//! `vcita_subscriptions`: webhook subscriptions CareBridge registered with vCita, so it can
//! re-verify them and show their health. A subscription of one of the gateway's own sources
//! stores the source's id and its URL without the `?token=`: the token is added only on the
//! way to vCita, never stored here.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{SourceId, VcitaSubscriptionId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "vcita_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: VcitaSubscriptionId,
    pub event: String,
    /// Never carries a source's token (see the module doc).
    #[sea_orm(unique)]
    pub target_url: String,
    /// The gateway's own source this subscription delivers to, if it is one.
    pub source_id: Option<SourceId>,
    pub status: String,
    pub last_error: Option<String>,
    pub last_verified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
