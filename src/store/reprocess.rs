//! Reprocess: runs the current mappers again over stored raw deliveries — after a mapper fix,
//! a configuration change (VSee status codes), or to apply deliveries that `FAILED` or were
//! `UNSUPPORTED` when they came in.
//!
//! What an operator can rely on:
//! - **Idempotent.** Entity writes go through the ingest path's ordering guard and change
//!   detection, so running it twice over the same rows changes nothing the second time and
//!   emits no events.
//! - **Lineage is kept.** Every entity a run touches is linked to the delivery's original inbox
//!   row (links that exist stay as they were); the events it emits name that row too.
//! - A delivery that was `PROCESSED` and is now older than what is stored stays `PROCESSED`: it
//!   was applied in its time and newer deliveries have superseded it since.
//! - **Skipped, with the reason:** `DUPLICATE` rows (the first delivery carries the effect), rows
//!   whose raw body retention has pruned, and a row whose dedupe key another stored delivery
//!   already carries (it becomes `DUPLICATE`, as it would have on arrival).
//! - Work goes in pages of [`PAGE`] rows, one writer transaction each, so ingest waits for at
//!   most one page. A **dry run** applies each page and rolls it back: it reports what that page
//!   would change against what is stored, so an entity that an earlier page of the same dry run
//!   would create is reported as created again.

use chrono::{DateTime, Utc};
use entity::ids::{SourceId, WebhookEventId};
use entity::webhook_event;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::ingest::{self, InboxStatus};
use crate::bus::Bus;
use crate::domain::Vendor;
use crate::vendors::{self, MapperConfig, Verification, Webhook};

/// Deliveries per writer transaction.
pub const PAGE: u64 = 100;

/// Most deliveries listed one by one in a report; the counts cover all of them.
pub const MAX_LISTED: usize = 1000;

/// Which stored deliveries to reprocess; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Option<Vec<i64>>,
    pub source_ids: Option<Vec<String>>,
    /// Stored status names (`FAILED`, …).
    pub statuses: Option<Vec<String>>,
    pub event_type: Option<String>,
    /// Received at or after.
    pub received_from: Option<DateTime<Utc>>,
    /// Received before.
    pub received_until: Option<DateTime<Utc>>,
}

impl Selection {
    fn condition(&self) -> Condition {
        use webhook_event::Column as C;
        let mut all = Condition::all();
        if let Some(ids) = &self.ids {
            all = all.add(C::Id.is_in(ids.iter().map(|id| WebhookEventId(*id))));
        }
        if let Some(sources) = &self.source_ids {
            all = all.add(C::SourceId.is_in(sources.iter().map(|s| SourceId(s.clone()))));
        }
        if let Some(statuses) = &self.statuses {
            all = all.add(C::Status.is_in(statuses.iter().cloned()));
        }
        if let Some(event_type) = &self.event_type {
            all = all.add(C::EventType.eq(event_type.clone()));
        }
        if let Some(from) = self.received_from {
            all = all.add(C::ReceivedAt.gte(from));
        }
        if let Some(until) = self.received_until {
            all = all.add(C::ReceivedAt.lt(until));
        }
        all
    }
}

/// What a run did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    /// Deliveries the selection matched.
    pub matched: u64,
    /// Deliveries the mappers ran over.
    pub reprocessed: u64,
    /// Deliveries left alone (see [`Reprocessed::skipped`]).
    pub skipped: u64,
    /// Deliveries whose status or entities changed.
    pub changed: u64,
    /// Entities created, updated or deleted, over all deliveries.
    pub entity_changes: u64,
    /// The deliveries that changed or were skipped, in id order, at most [`MAX_LISTED`].
    pub deliveries: Vec<Reprocessed>,
    /// More deliveries changed or were skipped than are listed.
    pub truncated: bool,
}

/// One delivery's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprocessed {
    pub id: WebhookEventId,
    pub status_before: String,
    pub status_after: String,
    /// Why the delivery failed, is unsupported or was rejected, after this run.
    pub error: Option<String>,
    /// Why the delivery was left alone, if it was.
    pub skipped: Option<&'static str>,
    /// Entities created, updated or deleted by this run (in a dry run, an entity that would be
    /// created has an id that does not exist outside the dry run).
    pub entity_changes: Vec<EntityEffect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityEffect {
    pub entity_type: String,
    pub entity_id: i64,
    /// `created` | `updated` | `deleted`
    pub change: &'static str,
}

/// Reprocesses every delivery the selection matches, in id order. The bus (when the caller
/// runs inside the gateway) is woken after each committed page that emitted events; other
/// processes' tailers find them on their next poll or, on PostgreSQL, by NOTIFY.
pub async fn reprocess(
    db: &DatabaseConnection,
    mappers: &MapperConfig,
    bus: Option<&Bus>,
    selection: &Selection,
    dry_run: bool,
) -> Result<Report, DbErr> {
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let mut after = WebhookEventId(0);
    loop {
        let txn = ingest::begin_writer(db).await?;
        let page = webhook_event::Entity::find()
            .filter(selection.condition())
            .filter(webhook_event::Column::Id.gt(after))
            .order_by_asc(webhook_event::Column::Id)
            .limit(PAGE)
            .all(&txn)
            .await?;
        let Some(last) = page.last() else {
            txn.rollback().await?;
            break;
        };
        after = last.id;
        let mut emitted = false;
        for row in page {
            let outcome = reprocess_one(&txn, mappers, row).await?;
            emitted |= outcome.emitted;
            report.add(outcome.reprocessed);
        }
        if dry_run {
            txn.rollback().await?;
        } else {
            if emitted {
                ingest::notify_replicas_of_events(&txn).await?;
            }
            txn.commit().await?;
            if emitted && let Some(bus) = bus {
                bus.committed();
            }
        }
    }
    Ok(report)
}

impl Report {
    fn add(&mut self, one: Reprocessed) {
        self.matched += 1;
        if one.skipped.is_some() {
            self.skipped += 1;
        } else {
            self.reprocessed += 1;
        }
        let changed = one.status_before != one.status_after || !one.entity_changes.is_empty();
        if changed {
            self.changed += 1;
        }
        self.entity_changes += one.entity_changes.len() as u64;
        if changed || one.skipped.is_some() {
            if self.deliveries.len() < MAX_LISTED {
                self.deliveries.push(one);
            } else {
                self.truncated = true;
            }
        }
    }
}

struct Outcome {
    reprocessed: Reprocessed,
    /// Whether domain events were written.
    emitted: bool,
}

async fn reprocess_one(
    txn: &DatabaseTransaction,
    mappers: &MapperConfig,
    row: webhook_event::Model,
) -> Result<Outcome, DbErr> {
    let skip = |reason: &'static str, status_after: &str| Outcome {
        reprocessed: Reprocessed {
            id: row.id,
            status_before: row.status.clone(),
            status_after: status_after.to_owned(),
            error: row.error.clone(),
            skipped: Some(reason),
            entity_changes: Vec::new(),
        },
        emitted: false,
    };
    if row.status == InboxStatus::Duplicate.as_str() {
        return Ok(skip(
            "a duplicate: its first delivery carries the effect",
            &row.status,
        ));
    }
    let Some(body) = row.body.clone() else {
        return Ok(skip("its raw body was pruned by retention", &row.status));
    };
    let Some(vendor) = Vendor::parse(&row.vendor) else {
        return Ok(skip("stored with an unknown vendor", &row.status));
    };
    let verification = row.verification.as_deref().and_then(Verification::parse);
    let webhook = Webhook::from_inbox(vendor, body.into(), verification);
    let delivery = vendors::normalize(&webhook, mappers);

    // A delivery stored without its dedupe key (rejected, or failed while being written) is
    // a duplicate now if another stored delivery carries the key, as it would have been then.
    let dedupe_key = delivery.as_ref().ok().and_then(|d| d.dedupe_key.clone());
    let mut set_dedupe_key = None;
    if row.dedupe_key.is_none()
        && let Some(key) = dedupe_key
    {
        if carried_by_another(txn, &row, &key).await? {
            mark(txn, &row, InboxStatus::Duplicate.as_str(), None, None, None).await?;
            return Ok(skip(
                "another stored delivery carries its dedupe key",
                InboxStatus::Duplicate.as_str(),
            ));
        }
        set_dedupe_key = Some(key);
    }

    let reapplied = ingest::reapply(txn, row.id, &row.source_id, &delivery, Utc::now()).await?;
    let entity_changes: Vec<EntityEffect> = reapplied
        .effects
        .into_iter()
        .filter(|(_, _, effect)| matches!(*effect, "created" | "updated" | "deleted"))
        .map(|(entity_type, entity_id, change)| EntityEffect {
            entity_type,
            entity_id,
            change,
        })
        .collect();
    let superseded =
        row.status == InboxStatus::Processed.as_str() && reapplied.status == InboxStatus::Stale;
    let status_after = if superseded {
        InboxStatus::Processed
    } else {
        reapplied.status
    };
    // An unchanged re-run keeps the event type it had (TimeTap's is derived from a diff, which
    // is empty the second time).
    let event_type = if entity_changes.is_empty() {
        row.event_type.clone().or(reapplied.event_type)
    } else {
        reapplied.event_type
    };
    // A REJECTED row keeps its dedupe key off unless it now maps (see `seen_before`).
    let set_dedupe_key = set_dedupe_key.filter(|_| status_after != InboxStatus::Rejected);
    mark(
        txn,
        &row,
        status_after.as_str(),
        reapplied.error.as_deref(),
        event_type.as_deref(),
        set_dedupe_key.as_deref(),
    )
    .await?;
    Ok(Outcome {
        emitted: !reapplied.events.is_empty(),
        reprocessed: Reprocessed {
            id: row.id,
            status_before: row.status.clone(),
            status_after: status_after.as_str().to_owned(),
            error: reapplied.error,
            skipped: None,
            entity_changes,
        },
    })
}

async fn carried_by_another(
    txn: &DatabaseTransaction,
    row: &webhook_event::Model,
    key: &str,
) -> Result<bool, DbErr> {
    use webhook_event::Column as C;
    let other = webhook_event::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::SourceId.eq(row.source_id.clone()))
        .filter(C::DedupeKey.eq(key))
        .filter(C::Status.ne(InboxStatus::Rejected.as_str()))
        .filter(C::Id.ne(row.id))
        .into_tuple::<WebhookEventId>()
        .one(txn)
        .await?;
    Ok(other.is_some())
}

/// Records the run's outcome on the inbox row; `processed_at` is when mappers last ran over it.
async fn mark(
    txn: &DatabaseTransaction,
    row: &webhook_event::Model,
    status: &str,
    error: Option<&str>,
    event_type: Option<&str>,
    dedupe_key: Option<&str>,
) -> Result<(), DbErr> {
    use webhook_event::Column as C;
    let mut update = webhook_event::Entity::update_many()
        .col_expr(C::Status, Expr::value(status))
        .col_expr(C::Error, Expr::value(error.map(str::to_owned)))
        .col_expr(C::ProcessedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(row.id));
    if let Some(event_type) = event_type {
        update = update.col_expr(C::EventType, Expr::value(event_type));
    }
    if let Some(key) = dedupe_key {
        update = update.col_expr(C::DedupeKey, Expr::value(key));
    }
    update.exec(txn).await?;
    Ok(())
}
