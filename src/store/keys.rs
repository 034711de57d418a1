//! API keys kept in the database (`carebridge keys …`). Only the SHA-256 of a key is stored;
//! the key itself is shown once, when it is created. A revoked key stays listed (who had
//! access, until when) and never authenticates again.

use chrono::Utc;
use entity::api_key;
use sea_orm::{
    ActiveValue, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::config::Scope;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key named {0:?} already exists")]
    NameTaken(String),
    #[error("no active key named {0:?}")]
    NotFound(String),
    #[error("key names are 1-64 characters")]
    BadName,
    #[error("give at least one scope of read, write, admin")]
    NoScopes,
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

/// Creates a key; returns the key text, which is not stored anywhere.
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    scopes: &[Scope],
) -> Result<String, KeyError> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(KeyError::BadName);
    }
    if scopes.is_empty() {
        return Err(KeyError::NoScopes);
    }
    let existing = api_key::Entity::find()
        .filter(api_key::Column::Name.eq(name))
        .one(db)
        .await?;
    if existing.is_some() {
        return Err(KeyError::NameTaken(name.to_owned()));
    }
    let key = format!("cbk_{}", hex::encode(rand::random::<[u8; 32]>()));
    let row = api_key::ActiveModel {
        id: ActiveValue::NotSet,
        name: Set(name.to_owned()),
        key_sha256: Set(hex::encode(crate::auth::sha256(key.as_bytes()))),
        scopes: Set(scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        last_used_at: Set(None),
    };
    api_key::Entity::insert(row).exec(db).await?;
    Ok(key)
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .order_by_asc(api_key::Column::Name)
        .all(db)
        .await
}

pub async fn revoke(db: &DatabaseConnection, name: &str) -> Result<(), KeyError> {
    let updated = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(api_key::Column::Name.eq(name))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(KeyError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The name and scopes of the active key with this digest. The lookup is by digest, so the
/// comparison never touches the key itself.
pub async fn find_active(
    db: &DatabaseConnection,
    digest: &[u8; 32],
) -> Result<Option<(String, Vec<Scope>)>, DbErr> {
    let row = api_key::Entity::find()
        .filter(api_key::Column::KeySha256.eq(hex::encode(digest)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?;
    Ok(row.map(|row| (row.name, parse_scopes(&row.scopes))))
}

pub fn parse_scopes(text: &str) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = text.split(',').filter_map(Scope::parse).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}
