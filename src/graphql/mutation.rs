//! Mutation root: everything that acts on a vendor needs the `write` scope. Resolvers validate
//! input, call one store or outbound function, and map the outcome; vendor failures become a
//! `VENDOR_ERROR` with the vendor's documented answer, never a client library's text.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, MergedObject, Object};
use entity::ids::QueueEntryId;
use sea_orm::{DatabaseConnection, EntityTrait};

use super::error::{ApiError, ApiResult};
use super::filters::WebhookEventFilter;
use super::guard::{Class, Reads, RequireScope, caller};
use super::ids::encode;
use super::ids::{NodeKind, decode_as};
use super::types::{Alert, EntityChange, VcitaSubscription};
use super::types::{WebhookStatus, parse_stored, stored_name};
use crate::bus::Bus;
use crate::config::{Config, Scope};
use crate::outbound::{Outbound, VendorError, vcita};
use crate::store::outbound::{self as store, NewAlert};
use crate::store::reprocess;

/// Longest alert text accepted (an SMS-friendly limit; Chup's own is unpublished).
pub const MAX_ALERT_LENGTH: usize = 500;

#[derive(MergedObject, Default)]
pub struct Mutation(AlertMutation, VcitaMutation, AdminMutation);

/// What an erasure removed.
#[derive(async_graphql::SimpleObject)]
#[graphql(guard = "Reads(Class::AdminReport)")]
pub struct ErasureReport {
    pub client_id: ID,
    /// Deliveries whose raw body and headers were removed: every one that names the client or
    /// their records, processed, duplicate, failed, unsupported, stale or rejected.
    pub raw_bodies_erased: u64,
    /// Domain events whose payload was cleared.
    pub events_scrubbed: u64,
    /// Client, appointment, ticket, payment and alert rows whose personal fields or free text
    /// were cleared.
    pub records_scrubbed: u64,
}

/// What a reprocess run did, or in a dry run would do.
#[derive(async_graphql::SimpleObject)]
#[graphql(guard = "Reads(Class::AdminReport)")]
pub struct ReprocessReport {
    pub dry_run: bool,
    /// Deliveries the filter matched.
    pub matched: u64,
    /// Deliveries the current mappers ran over.
    pub reprocessed: u64,
    /// Deliveries left alone: duplicates, and those whose raw body was pruned.
    pub skipped: u64,
    /// Deliveries whose status or entities changed.
    pub changed: u64,
    /// Entities created, updated or deleted, over all deliveries.
    pub entity_changes: u64,
    /// The deliveries that changed or were skipped, in id order (at most 1000).
    pub deliveries: Vec<ReprocessedDelivery>,
    /// More deliveries changed or were skipped than are listed.
    pub truncated: bool,
}

/// One delivery's reprocess outcome.
#[derive(async_graphql::SimpleObject)]
#[graphql(guard = "Reads(Class::AdminReport)")]
pub struct ReprocessedDelivery {
    pub webhook_event_id: ID,
    pub status_before: WebhookStatus,
    pub status_after: WebhookStatus,
    /// Why it failed, is unsupported or was rejected, after this run.
    pub error: Option<String>,
    /// Why it was left alone, if it was.
    pub skipped: Option<String>,
    /// Entities created, updated or deleted. In a dry run, an entity that would be created has
    /// an id that exists only inside the dry run.
    pub entity_changes: Vec<EntityChange>,
}

impl From<reprocess::Report> for ReprocessReport {
    fn from(report: reprocess::Report) -> Self {
        let deliveries = report
            .deliveries
            .into_iter()
            .map(|one| ReprocessedDelivery {
                webhook_event_id: encode(NodeKind::WebhookEvent, one.id),
                status_before: parse_stored(&one.status_before, WebhookStatus::Failed),
                status_after: parse_stored(&one.status_after, WebhookStatus::Failed),
                error: one.error,
                skipped: one.skipped.map(str::to_owned),
                entity_changes: one
                    .entity_changes
                    .into_iter()
                    .map(|effect| {
                        let kind = NodeKind::parse(&effect.entity_type).unwrap_or(NodeKind::Client);
                        EntityChange {
                            entity_id: encode(kind, effect.entity_id),
                            entity_type: effect.entity_type,
                            change: effect.change.to_owned(),
                        }
                    })
                    .collect(),
            })
            .collect();
        ReprocessReport {
            dry_run: report.dry_run,
            matched: report.matched,
            reprocessed: report.reprocessed,
            skipped: report.skipped,
            changed: report.changed,
            entity_changes: report.entity_changes,
            deliveries,
            truncated: report.truncated,
        }
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Removes one client's personal data from entities, from the raw body and headers of every
    /// stored delivery that names them or their records (whatever its status), from the alerts
    /// sent to them and from the event log (the audit log records who did it). Ids, states and
    /// times stay, so the clinic's counts hold.
    #[graphql(guard = "RequireScope(Scope::Admin)")]
    async fn erase_client(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ErasureReport> {
        let client_id = entity::ids::ClientId(decode_as(&id, NodeKind::Client)?);
        let report = crate::store::erase::erase_client(data::<DatabaseConnection>(ctx)?, client_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("client {}", client_id.0)))?;
        Ok(ErasureReport {
            client_id: id,
            raw_bodies_erased: report.raw_bodies,
            events_scrubbed: report.events,
            records_scrubbed: report.records,
        })
    }

    /// Runs the current mappers again over one stored delivery (see `reprocessWebhookEvents`).
    #[graphql(guard = "RequireScope(Scope::Admin)")]
    async fn reprocess_webhook_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] dry_run: bool,
    ) -> ApiResult<ReprocessReport> {
        let selection = reprocess::Selection {
            ids: Some(vec![decode_as(&id, NodeKind::WebhookEvent)?]),
            ..reprocess::Selection::default()
        };
        let report = run_reprocess(ctx, &selection, dry_run).await?;
        if report.matched == 0 {
            return Err(ApiError::NotFound(format!("webhook event {}", id.as_str())));
        }
        Ok(report)
    }

    /// Runs the current mappers again over the stored raw deliveries the filter matches, in
    /// pages, after a mapper fix or to apply what FAILED or was UNSUPPORTED. Idempotent; the
    /// entities touched are linked to each delivery's inbox row. `dryRun` reports what would
    /// change and writes nothing. Duplicates and pruned deliveries are skipped.
    #[graphql(guard = "RequireScope(Scope::Admin)")]
    async fn reprocess_webhook_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<WebhookEventFilter>,
        #[graphql(default = false)] dry_run: bool,
    ) -> ApiResult<ReprocessReport> {
        let filter = filter.unwrap_or_default();
        let (received_from, received_until) = match &filter.received {
            Some(range) => range.bounds()?,
            None => (None, None),
        };
        let selection = reprocess::Selection {
            ids: None,
            source_ids: filter.source_ids,
            statuses: filter.statuses.map(|statuses| {
                statuses
                    .into_iter()
                    .map(|s| stored_name(s).to_owned())
                    .collect()
            }),
            event_type: filter.event_type,
            received_from,
            received_until,
        };
        run_reprocess(ctx, &selection, dry_run).await
    }
}

async fn run_reprocess(
    ctx: &Context<'_>,
    selection: &reprocess::Selection,
    dry_run: bool,
) -> ApiResult<ReprocessReport> {
    let mappers = data::<Arc<Config>>(ctx)?.mappers();
    let report = reprocess::reprocess(
        data::<DatabaseConnection>(ctx)?,
        &mappers,
        Some(data::<Bus>(ctx)?),
        selection,
        dry_run,
    )
    .await?;
    Ok(report.into())
}

fn data<'a, T: Send + Sync + 'static>(ctx: &'a Context<'_>) -> ApiResult<&'a T> {
    ctx.data::<T>().map_err(|_| ApiError::Internal)
}

/// Send a patient alert through Chup, for a queue ticket we know or a raw Chup visit id.
#[derive(InputObject)]
pub struct SendAlertInput {
    /// A CareBridge queue entry id; its Chup ticket id is the alert's `visit_id`.
    pub queue_entry_id: Option<ID>,
    /// A Chup visit id, when the ticket is not (yet) in CareBridge.
    pub visit_id: Option<String>,
    /// 1–500 characters.
    pub message: String,
    /// Repeating a key never sends twice; it returns the first alert.
    pub idempotency_key: String,
}

#[derive(Default)]
pub struct AlertMutation;

#[Object]
impl AlertMutation {
    /// Records the alert (PENDING) and returns it at once; the outbox sends it and retries
    /// transient failures. Watch `alerts` or the `events` subscription for SENT / FAILED.
    #[graphql(guard = "RequireScope(Scope::Write)")]
    async fn send_alert(&self, ctx: &Context<'_>, input: SendAlertInput) -> ApiResult<Alert> {
        let outbound = data::<Outbound>(ctx)?;
        if outbound.chup.is_none() {
            return Err(ApiError::bad_input(
                "Chup alerts are not configured on this gateway ([chup])",
            ));
        }
        let new = validate_alert(ctx, input).await?;
        let (alert, created) =
            store::create_alert(data::<DatabaseConnection>(ctx)?, data::<Bus>(ctx)?, new.0).await?;
        // An erased alert's message is empty: the key's first use can no longer be compared.
        let differs = alert.visit_vendor_id != new.1.visit_id
            || (alert.message != new.1.message && !alert.message.is_empty());
        if !created && differs {
            return Err(ApiError::bad_input(
                "this idempotencyKey was used for a different alert",
            ));
        }
        outbound.outbox_wake.notify_one();
        Ok(Alert(alert))
    }
}

struct Requested {
    message: String,
    visit_id: String,
}

async fn validate_alert(
    ctx: &Context<'_>,
    input: SendAlertInput,
) -> ApiResult<(NewAlert, Requested)> {
    let message = input.message.trim().to_owned();
    if message.is_empty() || message.chars().count() > MAX_ALERT_LENGTH {
        return Err(ApiError::bad_input(format!(
            "`message` must be 1-{MAX_ALERT_LENGTH} characters"
        )));
    }
    let key = input.idempotency_key.trim().to_owned();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::bad_input(
            "`idempotencyKey` must be 1-200 characters",
        ));
    }
    let (queue_entry_id, visit_id) = match (input.queue_entry_id, input.visit_id) {
        (Some(id), None) => {
            let id = QueueEntryId(decode_as(&id, NodeKind::QueueEntry)?);
            let ticket = entity::queue_entry::Entity::find_by_id(id)
                .one(data::<DatabaseConnection>(ctx)?)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("queue entry {}", id.0)))?;
            (Some(id), ticket.vendor_id)
        }
        (None, Some(visit)) if !visit.trim().is_empty() => (None, visit.trim().to_owned()),
        _ => {
            return Err(ApiError::bad_input(
                "give exactly one of `queueEntryId` or `visitId`",
            ));
        }
    };
    let requested = Requested {
        message: message.clone(),
        visit_id: visit_id.clone(),
    };
    let new = NewAlert {
        queue_entry_id,
        visit_vendor_id: visit_id,
        message,
        idempotency_key: key,
        requested_by: caller(ctx)?.key_name.clone(),
    };
    Ok((new, requested))
}

/// Subscribe a vCita event to a URL: give `targetUrl`, or `sourceId` of one of this gateway's
/// vCita sources to use its own webhook URL without pasting it (vCita is given the source's
/// token; CareBridge stores and shows the URL without it).
#[derive(InputObject)]
pub struct SubscribeVcitaInput {
    /// `entity/event`, e.g. `client/created`.
    pub event: String,
    pub target_url: Option<String>,
    pub source_id: Option<String>,
}

#[derive(Default)]
pub struct VcitaMutation;

#[Object]
impl VcitaMutation {
    /// Subscribes at vCita and records the subscription. vCita's refusal
    /// (`{"response":"Not Subscribed"}`) is a `VENDOR_ERROR`. A source's token goes to vCita
    /// only: the subscription is stored and shown with the source's id and tokenless URL.
    #[graphql(guard = "RequireScope(Scope::Write)")]
    async fn subscribe_vcita_webhook(
        &self,
        ctx: &Context<'_>,
        input: SubscribeVcitaInput,
    ) -> ApiResult<VcitaSubscription> {
        let vcita = vcita_client(ctx)?;
        if !vcita::EVENTS.contains(&input.event.as_str()) {
            return Err(ApiError::bad_input(format!(
                "{:?} is not a vCita hook event; use one of {}",
                input.event,
                vcita::EVENTS.join(", ")
            )));
        }
        let target = resolve_target(ctx, input.target_url, input.source_id)?;
        let outcome = vcita.subscribe(&input.event, &target).await;
        settle_subscription(ctx, Some(&input.event), &target, "SUBSCRIBED", outcome).await
    }

    /// Unsubscribes a target URL (or one of this gateway's vCita sources) at vCita.
    #[graphql(guard = "RequireScope(Scope::Write)")]
    async fn unsubscribe_vcita_webhook(
        &self,
        ctx: &Context<'_>,
        target_url: Option<String>,
        source_id: Option<String>,
    ) -> ApiResult<VcitaSubscription> {
        let vcita = vcita_client(ctx)?;
        let target = resolve_target(ctx, target_url, source_id)?;
        let outcome = vcita.unsubscribe(&target).await;
        settle_subscription(ctx, None, &target, "UNSUBSCRIBED", outcome).await
    }
}

fn vcita_client(ctx: &Context<'_>) -> ApiResult<Arc<vcita::VcitaClient>> {
    data::<Outbound>(ctx)?
        .vcita
        .clone()
        .ok_or_else(|| ApiError::bad_input("vCita is not configured on this gateway ([vcita])"))
}

fn resolve_target(
    ctx: &Context<'_>,
    target_url: Option<String>,
    source_id: Option<String>,
) -> ApiResult<vcita::Target> {
    let config = data::<Arc<Config>>(ctx)?;
    vcita::resolve(config, target_url.as_deref(), source_id.as_deref()).map_err(|error| match error
    {
        vcita::TargetError::NoToken(_) => ApiError::Internal,
        refused => ApiError::bad_input(refused.to_string()),
    })
}

/// Records the outcome; vCita's answer is stored and returned with every secret redacted.
async fn settle_subscription(
    ctx: &Context<'_>,
    event: Option<&str>,
    target: &vcita::Target,
    success: &str,
    outcome: Result<(), VendorError>,
) -> ApiResult<VcitaSubscription> {
    let db = data::<DatabaseConnection>(ctx)?;
    let recorded = store::RecordedSubscription {
        event,
        target_url: target.stored_url(),
        source_id: target.source_id(),
    };
    match outcome {
        Ok(()) => Ok(VcitaSubscription(
            store::record_subscription(db, recorded, success, None).await?,
        )),
        Err(error) => {
            let reason = vcita::redact(data::<Arc<Config>>(ctx)?, &error.to_string());
            store::record_subscription(db, recorded, "FAILED", Some(&reason)).await?;
            Err(ApiError::Vendor(reason))
        }
    }
}
