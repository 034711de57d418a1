//! vCita subscriptions of this gateway's own sources keep the source's id, not its URL token.
//!
//! Until now a subscription made by `sourceId` stored the source's webhook URL with its
//! `?token=` in `target_url`, and every key that could list subscriptions could read it — enough
//! to forge that clinic's webhooks (issue 19, item 1). From here on the row stores the source's
//! id and its URL without the token; the token is added only on the way to vCita. This migration
//! adds `source_id` and rewrites the rows already stored: a `target_url` of the gateway's
//! webhook route (`…/webhooks/{id}`) loses its `token` parameter and gains `source_id = id`.
//! Where two rows become the same URL (the token was rotated between subscriptions), the most
//! recently updated is kept, since `target_url` is unique.
//!
//! `down` drops the column again; it cannot bring the tokens back, and should not.

use std::collections::HashSet;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum VcitaSubscriptions {
    Table,
    Id,
    TargetUrl,
    SourceId,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use VcitaSubscriptions as V;
        manager
            .alter_table(
                Table::alter()
                    .table(V::Table)
                    .add_column(ColumnDef::new(V::SourceId).text().null())
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        let rows = db
            .query_all(
                &Query::select()
                    .columns([V::Id, V::TargetUrl])
                    .from(V::Table)
                    .order_by(V::UpdatedAt, Order::Desc)
                    .order_by(V::Id, Order::Desc)
                    .to_owned(),
            )
            .await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let url: String = row.try_get("", "target_url")?;
            stored.push((id, url));
        }
        // URLs that stay as they are cannot be taken by a rewritten one.
        let mut taken: HashSet<String> = stored
            .iter()
            .filter(|(_, url)| without_token(url).is_none())
            .map(|(_, url)| url.clone())
            .collect();
        for (id, url) in stored {
            let Some((clean, source)) = without_token(&url) else {
                continue;
            };
            if taken.insert(clean.clone()) {
                db.execute(
                    &Query::update()
                        .table(V::Table)
                        .value(V::TargetUrl, clean)
                        .value(V::SourceId, source)
                        .and_where(Expr::col(V::Id).eq(id))
                        .to_owned(),
                )
                .await?;
            } else {
                db.execute(
                    &Query::delete()
                        .from_table(V::Table)
                        .and_where(Expr::col(V::Id).eq(id))
                        .to_owned(),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VcitaSubscriptions::Table)
                    .drop_column(VcitaSubscriptions::SourceId)
                    .to_owned(),
            )
            .await
    }
}

/// For a URL of the gateway's webhook route that carries a `token` parameter: the URL without
/// it, and the source id from the path. `None` for any other URL (left as it is).
fn without_token(url: &str) -> Option<(String, String)> {
    let (base, query) = url.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let (_, source) = base.rsplit_once("/webhooks/")?;
    let valid_id = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("token"))
        .collect();
    let had_token = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("token"));
    if !valid_id || !had_token {
        return None;
    }
    let mut clean = base.to_owned();
    if !kept.is_empty() {
        clean.push('?');
        clean.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        clean.push('#');
        clean.push_str(fragment);
    }
    Some((clean, source.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::without_token;

    #[test]
    fn a_source_url_loses_its_token_and_names_its_source() {
        assert_eq!(
            without_token("https://cb.example/webhooks/vcita-a?token=s3cret"),
            Some((
                "https://cb.example/webhooks/vcita-a".into(),
                "vcita-a".into()
            ))
        );
        assert_eq!(
            without_token("https://cb.example/webhooks/vcita-a?x=1&token=s3cret"),
            Some((
                "https://cb.example/webhooks/vcita-a?x=1".into(),
                "vcita-a".into()
            ))
        );
    }

    #[test]
    fn other_urls_stay_as_they_are() {
        assert_eq!(without_token("https://his.example/hooks/vcita"), None);
        assert_eq!(
            without_token("https://his.example/hooks?token=theirs"),
            None
        );
        assert_eq!(
            without_token("https://cb.example/webhooks/vcita-a?tokens=1"),
            None
        );
    }
}
