//! Retention: raw bodies and headers of deliveries older than a source's `retention_days` are
//! removed, while the inbox row keeps its metadata (source, event type, status, error, times)
//! and `body_sha256`, so an operator can still see and prove what arrived. Domain events older
//! than `event_days` are pruned too (subscribers resuming from before that are told to resync).
//! Work goes in small batches with a pause between them, so the ingest writer is never held
//! for long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{SourceId, WebhookEventId};
use entity::webhook_event;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// Rows per UPDATE: small enough that the ingest writer waits milliseconds at most.
pub const BATCH: u64 = 200;

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Inbox rows whose raw body and headers were (or would be) removed, by source.
    pub bodies: Vec<(String, u64)>,
    pub events: u64,
}

/// The raw-body cutoff of each source: received before this, the body goes.
pub fn cutoffs(config: &crate::config::Config, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
    config
        .sources
        .iter()
        .map(|source| {
            (
                source.id.to_string(),
                now - chrono::Duration::days(i64::from(source.retention_days)),
            )
        })
        .collect()
}

fn aged(source: &str, cutoff: DateTime<Utc>) -> sea_orm::Select<webhook_event::Entity> {
    webhook_event::Entity::find()
        .filter(webhook_event::Column::SourceId.eq(SourceId(source.to_owned())))
        .filter(webhook_event::Column::ReceivedAt.lt(cutoff))
        .filter(webhook_event::Column::Body.is_not_null())
}

/// Removes (or with `dry_run` counts) aged raw bodies and events.
pub async fn prune(
    db: &DatabaseConnection,
    config: &crate::config::Config,
    now: DateTime<Utc>,
    dry_run: bool,
    pause: Duration,
) -> Result<PruneReport, DbErr> {
    let mut report = PruneReport::default();
    for (source, cutoff) in cutoffs(config, now) {
        let count = if dry_run {
            aged(&source, cutoff).count(db).await?
        } else {
            prune_bodies(db, &source, cutoff, pause).await?
        };
        report.bodies.push((source, count));
    }
    let event_cutoff = now - chrono::Duration::days(i64::from(config.retention.event_days));
    report.events = if dry_run {
        entity::domain_event::Entity::find()
            .filter(entity::domain_event::Column::RecordedAt.lt(event_cutoff))
            .count(db)
            .await?
    } else {
        super::events::prune_events(db, event_cutoff).await?
    };
    Ok(report)
}

async fn prune_bodies(
    db: &DatabaseConnection,
    source: &str,
    cutoff: DateTime<Utc>,
    pause: Duration,
) -> Result<u64, DbErr> {
    let mut pruned = 0;
    loop {
        let ids: Vec<WebhookEventId> = aged(source, cutoff)
            .select_only()
            .column(webhook_event::Column::Id)
            .order_by_asc(webhook_event::Column::Id)
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(pruned);
        }
        let updated = webhook_event::Entity::update_many()
            .col_expr(
                webhook_event::Column::Body,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(
                webhook_event::Column::Headers,
                Expr::value(serde_json::json!({})),
            )
            .filter(webhook_event::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        pruned += updated.rows_affected;
        tokio::time::sleep(pause).await;
    }
}

/// Prunes every `interval`, for as long as the process runs.
pub fn spawn(
    db: DatabaseConnection,
    config: std::sync::Arc<crate::config::Config>,
) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs(config.retention.interval_secs);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match prune(&db, &config, Utc::now(), false, Duration::from_millis(10)).await {
                Ok(report) => {
                    let bodies: u64 = report.bodies.iter().map(|(_, n)| n).sum();
                    if bodies > 0 || report.events > 0 {
                        tracing::info!(bodies, events = report.events, "retention pruned old data");
                    }
                }
                Err(error) => tracing::warn!(%error, "retention run failed; next run retries"),
            }
        }
    })
}
