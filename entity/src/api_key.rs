//! `api_keys`: GraphQL API credentials. Only the SHA-256 of a key is stored, so a database
//! leak does not leak usable keys; `scopes` is a comma-separated list.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::ApiKeyId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ApiKeyId,
    #[sea_orm(unique)]
    pub name: String,
    #[sea_orm(unique)]
    pub key_sha256: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
