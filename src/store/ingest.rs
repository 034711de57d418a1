//! The ingest transaction: one delivery in, one atomic write out — the inbox row with its raw
//! bytes, the entity upserts behind the ordering guard, lineage, queue state history and the
//! domain events. A 2xx is answered only after this commits.
//!
//! Writers are serialized: in-process by a mutex (SQLite has one writer anyway) and, on
//! PostgreSQL, across replicas by a transaction-scoped advisory lock taken first. That one rule
//! makes dedupe checks race-free, makes the ordering guard a plain read-compare-write, and hands
//! out event cursors in commit order, so a subscriber resuming after cursor N never misses an
//! event that committed later with a smaller number.

use chrono::{DateTime, Utc};
use entity::ids::{
    AppointmentId, ClientId, LocationId, ServiceId, SourceId, StaffId, WebhookEventId,
};
use entity::{
    appointment, client, domain_event, entity_lineage, location, payment, queue_entry,
    queue_state_history, service, source, staff, visit, webhook_event,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect,
    Set, TransactionTrait,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::StoreError;
use crate::bus::Bus;
use crate::config;
use crate::domain::{
    Action, AppointmentChange, AppointmentStatusKind, Change, ClientChange, LocationChange,
    MapOutcome, Normalized, PaymentChange, QueueEntryChange, ServiceChange, StaffChange, Vendor,
    VisitChange, VisitStatusKind,
};
use crate::vendors::{Delivery, Rejection, Verified, Webhook};

/// Inbox statuses, as stored and as shown through GraphQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    Processed,
    Duplicate,
    Stale,
    Failed,
    Unsupported,
    Rejected,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Processed => "PROCESSED",
            InboxStatus::Duplicate => "DUPLICATE",
            InboxStatus::Stale => "STALE",
            InboxStatus::Failed => "FAILED",
            InboxStatus::Unsupported => "UNSUPPORTED",
            InboxStatus::Rejected => "REJECTED",
        }
    }

    pub fn is_duplicate(self) -> bool {
        self == InboxStatus::Duplicate
    }
}

/// A verified delivery and what the vendor layer made of it.
pub struct Inbound {
    pub source_id: config::SourceId,
    pub vendor: Vendor,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    pub webhook: Webhook<Verified>,
    pub normalized: Result<Delivery, Rejection>,
}

/// The stored outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Stored {
        id: i64,
        status: InboxStatus,
    },
    /// Not the vendor's shape: kept as `REJECTED` for inspection, answered 400.
    Rejected {
        id: i64,
        reason: String,
    },
}

/// The single writer of ingested deliveries.
pub struct Ingestor {
    db: DatabaseConnection,
    /// Serializes ingest transactions of this process; see the module docs.
    writer: Mutex<()>,
    bus: Bus,
}

/// Advisory lock key shared by every writer of domain events (PostgreSQL).
const EVENT_WRITER_LOCK: i64 = 0x4361_7265_4272_6467; // "CareBrdg"

impl Ingestor {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Ingestor {
        Ingestor {
            db,
            writer: Mutex::new(()),
            bus,
        }
    }

    /// Stores the delivery and applies it, atomically. A database that cannot be reached is an
    /// error (answered 503, nothing written). Any other failure while applying still stores
    /// the delivery, as `FAILED`, so an acknowledged webhook is never lost.
    pub async fn record(&self, inbound: Inbound) -> Result<Recorded, StoreError> {
        let _writer = self.writer.lock().await;
        let now = Utc::now();
        let outcome = async {
            let txn = begin_writer(&self.db).await?;
            let written = write_delivery(&txn, &inbound, now).await?;
            notify_replicas(&txn, &written.events).await?;
            txn.commit().await?;
            Ok::<_, DbErr>(written)
        }
        .await;
        match outcome {
            Ok(written) => {
                if !written.events.is_empty() {
                    self.bus.committed();
                }
                Ok(written.recorded)
            }
            Err(error) if is_unavailable(&error) => Err(StoreError::Unavailable(error)),
            Err(error) => {
                tracing::error!(%error, "applying a delivery failed; storing it as FAILED");
                let txn = begin_writer(&self.db)
                    .await
                    .map_err(StoreError::Unavailable)?;
                let reason = "internal error while applying the delivery (see gateway logs)";
                let event_type = inbound
                    .normalized
                    .as_ref()
                    .ok()
                    .and_then(|d| d.event_type.clone());
                let id = insert_inbox(
                    &txn,
                    &inbound,
                    now,
                    event_type,
                    None,
                    InboxStatus::Failed,
                    Some(reason),
                )
                .await?;
                txn.commit().await?;
                Ok(Recorded::Stored {
                    id: id.0,
                    status: InboxStatus::Failed,
                })
            }
        }
    }
}

/// PostgreSQL: tells every replica's event tailer that events committed (delivered on commit,
/// not before; no payload — the log has the events).
async fn notify_replicas(
    txn: &DatabaseTransaction,
    events: &[domain_event::Model],
) -> Result<(), DbErr> {
    if !events.is_empty() && txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("NOTIFY {}", crate::bus::NOTIFY_CHANNEL))
            .await?;
    }
    Ok(())
}

fn is_unavailable(error: &DbErr) -> bool {
    matches!(error, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
}

/// Opens a write transaction holding the writers' lock (PostgreSQL; SQLite has one writer).
pub(crate) async fn begin_writer(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({EVENT_WRITER_LOCK})"
        ))
        .await?;
    }
    Ok(txn)
}

struct Written {
    recorded: Recorded,
    events: Vec<domain_event::Model>,
}

async fn write_delivery(
    txn: &DatabaseTransaction,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    touch_source(txn, &inbound.source_id, now).await?;
    let delivery = match &inbound.normalized {
        Err(rejection) => {
            let reason = rejection.to_string();
            let id = insert_inbox(
                txn,
                inbound,
                now,
                None,
                None,
                InboxStatus::Rejected,
                Some(&reason),
            )
            .await?;
            return Ok(Written {
                recorded: Recorded::Rejected { id: id.0, reason },
                events: vec![],
            });
        }
        Ok(delivery) => delivery,
    };
    let stored = |id: WebhookEventId, status| Recorded::Stored { id: id.0, status };
    let event_type = delivery.event_type.clone();
    let dedupe_key = delivery.dedupe_key.as_deref();

    if let Some(key) = dedupe_key
        && seen_before(txn, &inbound.source_id, key).await?
    {
        let id = insert_inbox(
            txn,
            inbound,
            now,
            event_type,
            Some(key),
            InboxStatus::Duplicate,
            None,
        )
        .await?;
        return Ok(Written {
            recorded: stored(id, InboxStatus::Duplicate),
            events: vec![],
        });
    }

    let normalized = match &delivery.outcome {
        Err(error) => {
            let reason = error.to_string();
            let id = insert_inbox(
                txn,
                inbound,
                now,
                event_type,
                dedupe_key,
                InboxStatus::Failed,
                Some(&reason),
            )
            .await?;
            return Ok(Written {
                recorded: stored(id, InboxStatus::Failed),
                events: vec![],
            });
        }
        Ok(MapOutcome::Unsupported { reason, .. }) => {
            let id = insert_inbox(
                txn,
                inbound,
                now,
                event_type,
                dedupe_key,
                InboxStatus::Unsupported,
                Some(reason),
            )
            .await?;
            return Ok(Written {
                recorded: stored(id, InboxStatus::Unsupported),
                events: vec![],
            });
        }
        Ok(MapOutcome::Mapped(normalized)) => normalized,
    };

    let source_id = SourceId(inbound.source_id.as_str().to_owned());
    // TimeTap sends no event id: a delivery identical to what built the stored appointment
    // is a duplicate (a global body hash would wrongly drop an edit that reverts an earlier one).
    if let Some(fingerprint) = primary_fingerprint(normalized)
        && same_fingerprint_as_stored(txn, &source_id, normalized, fingerprint).await?
    {
        let id = insert_inbox(
            txn,
            inbound,
            now,
            event_type,
            dedupe_key,
            InboxStatus::Duplicate,
            None,
        )
        .await?;
        return Ok(Written {
            recorded: stored(id, InboxStatus::Duplicate),
            events: vec![],
        });
    }

    let inbox_id = insert_inbox(
        txn,
        inbound,
        now,
        event_type.clone(),
        dedupe_key,
        InboxStatus::Processed,
        None,
    )
    .await?;
    let mut apply = Apply {
        txn,
        source_id,
        inbox_id,
        now,
        occurred_at: normalized.occurred_at.unwrap_or(now),
        refs: Refs::default(),
        events: Vec::new(),
        derived_event_type: None,
    };
    let status = apply.changes(normalized).await?;
    let events = apply.events;
    let derived = apply.derived_event_type;
    if status != InboxStatus::Processed || derived.is_some() {
        let mut row = webhook_event::ActiveModel {
            id: Set(inbox_id),
            ..Default::default()
        };
        row.status = Set(status.as_str().to_owned());
        if let Some(derived) = derived {
            row.event_type = Set(Some(derived));
        }
        row.update(txn).await?;
    }
    let mut committed = Vec::with_capacity(events.len());
    for event in events {
        committed.push(event.insert(txn).await?);
    }
    Ok(Written {
        recorded: stored(inbox_id, status),
        events: committed,
    })
}

async fn touch_source(
    txn: &DatabaseTransaction,
    id: &config::SourceId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    source::Entity::update_many()
        .col_expr(source::Column::LastDeliveryAt, Expr::value(now))
        .filter(source::Column::Id.eq(SourceId(id.as_str().to_owned())))
        .exec(txn)
        .await?;
    Ok(())
}

async fn seen_before(
    txn: &DatabaseTransaction,
    source: &config::SourceId,
    key: &str,
) -> Result<bool, DbErr> {
    let found = webhook_event::Entity::find()
        .select_only()
        .column(webhook_event::Column::Id)
        .filter(webhook_event::Column::SourceId.eq(SourceId(source.as_str().to_owned())))
        .filter(webhook_event::Column::DedupeKey.eq(key))
        .filter(webhook_event::Column::Status.ne(InboxStatus::Rejected.as_str()))
        .into_tuple::<WebhookEventId>()
        .one(txn)
        .await?;
    Ok(found.is_some())
}

async fn insert_inbox(
    txn: &DatabaseTransaction,
    inbound: &Inbound,
    now: DateTime<Utc>,
    event_type: Option<String>,
    dedupe_key: Option<&str>,
    status: InboxStatus,
    error: Option<&str>,
) -> Result<WebhookEventId, DbErr> {
    let body = inbound.webhook.body();
    let row = webhook_event::ActiveModel {
        id: ActiveValue::NotSet,
        source_id: Set(SourceId(inbound.source_id.as_str().to_owned())),
        vendor: Set(inbound.vendor.as_str().to_owned()),
        event_type: Set(event_type),
        received_at: Set(now),
        verification: Set(Some(inbound.webhook.verification().as_str().to_owned())),
        dedupe_key: Set(dedupe_key.map(str::to_owned)),
        body_sha256: Set(hex::encode(Sha256::digest(body))),
        status: Set(status.as_str().to_owned()),
        error: Set(error.map(str::to_owned)),
        content_type: Set(inbound.content_type.clone()),
        headers: Set(inbound.headers.clone()),
        body: Set(Some(body.to_vec())),
        processed_at: Set(Some(now)),
    };
    Ok(webhook_event::Entity::insert(row)
        .exec(txn)
        .await?
        .last_insert_id)
}

fn primary_fingerprint(normalized: &Normalized) -> Option<&str> {
    match normalized.changes.last() {
        Some(Change::Appointment(change)) => change.fingerprint.as_deref(),
        _ => None,
    }
}

async fn same_fingerprint_as_stored(
    txn: &DatabaseTransaction,
    source_id: &SourceId,
    normalized: &Normalized,
    fingerprint: &str,
) -> Result<bool, DbErr> {
    let Some(Change::Appointment(change)) = normalized.changes.last() else {
        return Ok(false);
    };
    let stored = appointment::Entity::find()
        .filter(appointment::Column::SourceId.eq(source_id.clone()))
        .filter(appointment::Column::VendorId.eq(change.vendor_id.as_str()))
        .one(txn)
        .await?;
    Ok(stored.and_then(|row| row.fingerprint).as_deref() == Some(fingerprint))
}

/// Row ids of the entities written so far in this delivery, by vendor id, so later changes
/// can reference them.
#[derive(Default)]
struct Refs {
    clients: Vec<(String, ClientId)>,
    staff: Vec<(String, StaffId)>,
    services: Vec<(String, ServiceId)>,
    locations: Vec<(String, LocationId)>,
    appointments: Vec<(String, AppointmentId)>,
}

fn lookup<T: Copy>(list: &[(String, T)], vendor_id: Option<&String>) -> Option<T> {
    let vendor_id = vendor_id?;
    list.iter()
        .find(|(id, _)| id == vendor_id)
        .map(|(_, row)| *row)
}

/// What a change did to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Stale,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Created => "created",
            Effect::Updated => "updated",
            Effect::Unchanged => "unchanged",
            Effect::Deleted => "deleted",
            Effect::Stale => "stale",
        }
    }
}

struct Apply<'a> {
    txn: &'a DatabaseTransaction,
    source_id: SourceId,
    inbox_id: WebhookEventId,
    now: DateTime<Utc>,
    occurred_at: DateTime<Utc>,
    refs: Refs,
    events: Vec<domain_event::ActiveModel>,
    /// TimeTap: the event type derived by diffing against the stored appointment.
    derived_event_type: Option<String>,
}

/// True when the change is older than what is stored (never when either side has no version).
fn is_stale(stored: Option<DateTime<Utc>>, incoming: Option<DateTime<Utc>>) -> bool {
    matches!((stored, incoming), (Some(stored), Some(incoming)) if incoming < stored)
}

fn newest(stored: Option<DateTime<Utc>>, incoming: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    stored.max(incoming)
}

/// Sets an optional column when the delivery carries a value that differs from the stored one.
fn merge<T>(field: &mut ActiveValue<Option<T>>, incoming: Option<T>)
where
    T: Into<sea_orm::Value> + PartialEq + Clone,
    Option<T>: Into<sea_orm::Value>,
{
    if let Some(value) = incoming {
        field.set_if_not_equals(Some(value));
    }
}

fn json_ids(ids: &Option<Vec<String>>) -> Option<serde_json::Value> {
    ids.as_ref().map(|ids| json!(ids))
}

impl Apply<'_> {
    /// Applies every change; the last change is the delivery's primary entity, and if it is
    /// older than what is stored the whole delivery is STALE and nothing is written.
    async fn changes(&mut self, normalized: &Normalized) -> Result<InboxStatus, DbErr> {
        if let Some(primary) = normalized.changes.last()
            && self.primary_is_stale(primary).await?
        {
            return Ok(InboxStatus::Stale);
        }
        for change in &normalized.changes {
            match change {
                Change::Client(change) => self.client(change).await?,
                Change::Staff(change) => self.staff(change).await?,
                Change::Service(change) => self.service(change).await?,
                Change::Location(change) => self.location(change).await?,
                Change::QueueEntry(change) => self.queue_entry(change).await?,
                Change::Appointment(change) => self.appointment(change).await?,
                Change::Visit(change) => self.visit(change).await?,
                Change::Payment(change) => self.payment(change).await?,
            }
        }
        Ok(InboxStatus::Processed)
    }

    async fn primary_is_stale(&mut self, primary: &Change) -> Result<bool, DbErr> {
        macro_rules! stored_version {
            ($module:ident, $change:expr) => {
                $module::Entity::find()
                    .select_only()
                    .column($module::Column::Id)
                    .column($module::Column::Version)
                    .filter($module::Column::SourceId.eq(self.source_id.clone()))
                    .filter($module::Column::VendorId.eq($change.vendor_id.as_str()))
                    .into_tuple::<(i64, Option<DateTime<Utc>>)>()
                    .one(self.txn)
                    .await?
                    .filter(|(_, version)| is_stale(*version, $change.version))
            };
        }
        let (entity_type, stale) = match primary {
            Change::Client(c) => ("Client", stored_version!(client, c)),
            Change::Staff(c) => ("Staff", stored_version!(staff, c)),
            Change::Service(c) => ("Service", stored_version!(service, c)),
            Change::QueueEntry(c) => ("QueueEntry", stored_version!(queue_entry, c)),
            Change::Appointment(c) => ("Appointment", stored_version!(appointment, c)),
            Change::Visit(c) => ("Visit", stored_version!(visit, c)),
            Change::Payment(c) => ("Payment", stored_version!(payment, c)),
            Change::Location(_) => return Ok(false),
        };
        match stale {
            Some((row_id, _)) => {
                self.lineage(entity_type, row_id, Effect::Stale).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn lineage(
        &self,
        entity_type: &str,
        entity_id: i64,
        effect: Effect,
    ) -> Result<(), DbErr> {
        let row = entity_lineage::ActiveModel {
            webhook_event_id: Set(self.inbox_id),
            entity_type: Set(entity_type.to_owned()),
            entity_id: Set(entity_id),
            change: Set(effect.as_str().to_owned()),
        };
        entity_lineage::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    entity_lineage::Column::WebhookEventId,
                    entity_lineage::Column::EntityType,
                    entity_lineage::Column::EntityId,
                ])
                .update_column(entity_lineage::Column::Change)
                .to_owned(),
            )
            .exec_without_returning(self.txn)
            .await?;
        Ok(())
    }

    /// Queues a domain event for an entity that really changed.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        kind: String,
        entity_type: &str,
        entity_id: i64,
        service_id: Option<ServiceId>,
        staff_id: Option<StaffId>,
        client_id: Option<ClientId>,
        payload: serde_json::Value,
    ) {
        self.events.push(domain_event::ActiveModel {
            cursor: ActiveValue::NotSet,
            kind: Set(kind),
            source_id: Set(Some(self.source_id.clone())),
            entity_type: Set(entity_type.to_owned()),
            entity_id: Set(entity_id),
            webhook_event_id: Set(Some(self.inbox_id)),
            occurred_at: Set(self.occurred_at),
            recorded_at: Set(self.now),
            service_id: Set(service_id),
            staff_id: Set(staff_id),
            client_id: Set(client_id),
            payload: Set(payload),
        });
    }

    /// Records lineage and, unless nothing changed, the `<PREFIX>_<EFFECT>` event.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &mut self,
        entity_type: &str,
        prefix: &str,
        entity_id: i64,
        effect: Effect,
        refs: (Option<ServiceId>, Option<StaffId>, Option<ClientId>),
        payload: serde_json::Value,
    ) -> Result<(), DbErr> {
        self.lineage(entity_type, entity_id, effect).await?;
        if matches!(effect, Effect::Created | Effect::Updated | Effect::Deleted) {
            let kind = format!("{prefix}_{}", effect.as_str().to_ascii_uppercase());
            self.event(
                kind,
                entity_type,
                entity_id,
                refs.0,
                refs.1,
                refs.2,
                payload,
            );
        }
        Ok(())
    }

    async fn client(&mut self, change: &ClientChange) -> Result<(), DbErr> {
        let existing = client::Entity::find()
            .filter(client::Column::SourceId.eq(self.source_id.clone()))
            .filter(client::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                client::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    first_name: Set(None),
                    last_name: Set(None),
                    full_name: Set(None),
                    phone: Set(None),
                    email: Set(None),
                    custom_fields: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.first_name, change.first_name.clone());
        merge(&mut row.last_name, change.last_name.clone());
        merge(&mut row.full_name, change.full_name.clone());
        merge(&mut row.phone, change.phone.clone());
        merge(&mut row.email, change.email.clone());
        merge(&mut row.custom_fields, change.custom_fields.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = save(self.txn, row, created, self.now).await?.id;
        self.refs.clients.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Client",
            "CLIENT",
            id.0,
            effect,
            (None, None, Some(id)),
            payload,
        )
        .await
    }

    async fn staff(&mut self, change: &StaffChange) -> Result<(), DbErr> {
        let existing = staff::Entity::find()
            .filter(staff::Column::SourceId.eq(self.source_id.clone()))
            .filter(staff::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                staff::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    email: Set(None),
                    time_zone: Set(None),
                    service_ids: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.email, change.email.clone());
        merge(&mut row.time_zone, change.time_zone.clone());
        merge(&mut row.service_ids, json_ids(&change.service_ids));
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = save(self.txn, row, created, self.now).await?.id;
        self.refs.staff.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Staff",
            "STAFF",
            id.0,
            effect,
            (None, Some(id), None),
            payload,
        )
        .await
    }

    async fn service(&mut self, change: &ServiceChange) -> Result<(), DbErr> {
        let existing = service::Entity::find()
            .filter(service::Column::SourceId.eq(self.source_id.clone()))
            .filter(service::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                service::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    duration_minutes: Set(None),
                    staff_ids: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.duration_minutes, change.duration_minutes);
        merge(&mut row.staff_ids, json_ids(&change.staff_ids));
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let id = save(self.txn, row, created, self.now).await?.id;
        self.refs.services.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Service",
            "SERVICE",
            id.0,
            effect,
            (Some(id), None, None),
            payload,
        )
        .await
    }

    async fn location(&mut self, change: &LocationChange) -> Result<(), DbErr> {
        let existing = location::Entity::find()
            .filter(location::Column::SourceId.eq(self.source_id.clone()))
            .filter(location::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                location::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    name: Set(None),
                    kind: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(&mut row.name, change.name.clone());
        merge(&mut row.kind, change.kind.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let id = save(self.txn, row, created, self.now).await?.id;
        self.refs.locations.push((change.vendor_id.clone(), id));
        let payload = json!({ "vendorId": change.vendor_id });
        self.finish(
            "Location",
            "LOCATION",
            id.0,
            effect,
            (None, None, None),
            payload,
        )
        .await
    }

    async fn queue_entry(&mut self, change: &QueueEntryChange) -> Result<(), DbErr> {
        let existing = queue_entry::Entity::find()
            .filter(queue_entry::Column::SourceId.eq(self.source_id.clone()))
            .filter(queue_entry::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let previous_state = existing
            .as_ref()
            .map(|row| (row.state.clone(), row.state_code, row.state_name.clone()));
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                queue_entry::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    service_id: Set(None),
                    staff_id: Set(None),
                    appointment_id: Set(None),
                    appointment_vendor_id: Set(None),
                    state: Set("WAITING".to_owned()),
                    state_code: Set(None),
                    state_name: Set(None),
                    state_label: Set(None),
                    queue_date: Set(None),
                    time_zone: Set(None),
                    notes: Set(None),
                    vendor_created_at: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.service_id,
            lookup(&self.refs.services, change.service_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(
            &mut row.appointment_vendor_id,
            change.appointment_id.clone(),
        );
        if let Some(appointment_vendor_id) = &change.appointment_id {
            let linked = self.appointment_row(appointment_vendor_id).await?;
            merge(&mut row.appointment_id, linked);
        }
        if let Some(state) = &change.state {
            row.state.set_if_not_equals(kind_text(&state.kind));
            row.state_code.set_if_not_equals(state.raw_code);
            row.state_name.set_if_not_equals(state.raw_name.clone());
            merge(&mut row.state_label, state.label.clone());
        }
        merge(&mut row.queue_date, change.queue_date);
        merge(&mut row.time_zone, change.time_zone.clone());
        merge(&mut row.notes, change.notes.clone());
        merge(&mut row.vendor_created_at, change.vendor_created_at);
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = save(self.txn, row, created, self.now).await?;
        let current_state = (
            saved.state.clone(),
            saved.state_code,
            saved.state_name.clone(),
        );
        if previous_state.as_ref() != Some(&current_state) {
            let history = queue_state_history::ActiveModel {
                id: ActiveValue::NotSet,
                queue_entry_id: Set(saved.id),
                state: Set(saved.state.clone()),
                state_code: Set(saved.state_code),
                state_name: Set(saved.state_name.clone()),
                state_label: Set(saved.state_label.clone()),
                changed_at: Set(change.version.unwrap_or(self.occurred_at)),
                webhook_event_id: Set(Some(self.inbox_id)),
            };
            queue_state_history::Entity::insert(history)
                .exec_without_returning(self.txn)
                .await?;
        }
        let payload = json!({
            "vendorId": saved.vendor_id,
            "state": saved.state,
            "previousState": previous_state.map(|(state, _, _)| state),
        });
        let refs = (saved.service_id, saved.staff_id, saved.client_id);
        let kind_prefix = "QUEUE_ENTRY";
        let effect_for_event = if effect == Effect::Updated {
            Effect::Updated
        } else {
            effect
        };
        self.lineage("QueueEntry", saved.id.0, effect).await?;
        if matches!(
            effect_for_event,
            Effect::Created | Effect::Updated | Effect::Deleted
        ) {
            let kind = match effect_for_event {
                Effect::Created => format!("{kind_prefix}_CREATED"),
                Effect::Deleted => format!("{kind_prefix}_DELETED"),
                _ => format!("{kind_prefix}_CHANGED"),
            };
            self.event(
                kind,
                "QueueEntry",
                saved.id.0,
                refs.0,
                refs.1,
                refs.2,
                payload,
            );
        }
        Ok(())
    }

    async fn appointment_row(&self, vendor_id: &str) -> Result<Option<AppointmentId>, DbErr> {
        if let Some(id) = lookup(&self.refs.appointments, Some(&vendor_id.to_owned())) {
            return Ok(Some(id));
        }
        appointment::Entity::find()
            .select_only()
            .column(appointment::Column::Id)
            .filter(appointment::Column::SourceId.eq(self.source_id.clone()))
            .filter(appointment::Column::VendorId.eq(vendor_id))
            .into_tuple::<AppointmentId>()
            .one(self.txn)
            .await
    }

    async fn appointment(&mut self, change: &AppointmentChange) -> Result<(), DbErr> {
        let existing = appointment::Entity::find()
            .filter(appointment::Column::SourceId.eq(self.source_id.clone()))
            .filter(appointment::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let before = existing
            .as_ref()
            .map(|row| (row.status.clone(), row.starts_at, row.deleted));
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                appointment::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    staff_id: Set(None),
                    service_id: Set(None),
                    location_id: Set(None),
                    starts_at: Set(None),
                    ends_at: Set(None),
                    time_zone: Set(None),
                    status: Set(kind_text(&AppointmentStatusKind::Booked)),
                    status_raw: Set(None),
                    sub_status_raw: Set(None),
                    title: Set(None),
                    notes: Set(None),
                    custom_fields: Set(None),
                    fingerprint: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(
            &mut row.service_id,
            lookup(&self.refs.services, change.service_id.as_ref()),
        );
        merge(
            &mut row.location_id,
            lookup(&self.refs.locations, change.location_id.as_ref()),
        );
        merge(&mut row.starts_at, change.starts_at);
        merge(&mut row.ends_at, change.ends_at);
        merge(&mut row.time_zone, change.time_zone.clone());
        if let Some(status) = &change.status {
            row.status.set_if_not_equals(kind_text(&status.kind));
            row.status_raw.set_if_not_equals(status.raw.clone());
            row.sub_status_raw
                .set_if_not_equals(status.raw_sub_status.clone());
        }
        merge(&mut row.title, change.title.clone());
        merge(&mut row.notes, change.notes.clone());
        merge(&mut row.custom_fields, change.custom_fields.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        merge(&mut row.fingerprint, change.fingerprint.clone());
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = save(self.txn, row, created, self.now).await?;
        self.refs
            .appointments
            .push((change.vendor_id.clone(), saved.id));

        let kind = appointment_event_kind(effect, before.as_ref(), &saved);
        if change.fingerprint.is_some() {
            // TimeTap: the delivery names no event; the diff names it.
            let derived = kind
                .map(|k| k.to_ascii_lowercase())
                .unwrap_or_else(|| "appointment_unchanged".into());
            self.derived_event_type = Some(derived);
        }
        self.lineage("Appointment", saved.id.0, effect).await?;
        if let Some(kind) = kind {
            let payload = json!({
                "vendorId": saved.vendor_id,
                "status": saved.status,
                "previousStatus": before.map(|(status, _, _)| status),
            });
            self.event(
                kind.to_owned(),
                "Appointment",
                saved.id.0,
                saved.service_id,
                saved.staff_id,
                saved.client_id,
                payload,
            );
        }
        Ok(())
    }

    async fn visit(&mut self, change: &VisitChange) -> Result<(), DbErr> {
        let existing = visit::Entity::find()
            .filter(visit::Column::SourceId.eq(self.source_id.clone()))
            .filter(visit::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let status_before = existing.as_ref().map(|row| row.status.clone());
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                visit::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    staff_id: Set(None),
                    scheduled_start: Set(None),
                    scheduled_end: Set(None),
                    actual_start: Set(None),
                    actual_end: Set(None),
                    status: Set(kind_text(&VisitStatusKind::Pending)),
                    status_raw: Set(None),
                    status_updated_by: Set(None),
                    note_id: Set(None),
                    note_status: Set(None),
                    invoice_id: Set(None),
                    invoice_status: Set(None),
                    invoice_amount_due: Set(None),
                    invoice_amount_paid: Set(None),
                    invoice_currency: Set(None),
                    payload_version: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(
            &mut row.staff_id,
            lookup(&self.refs.staff, change.staff_id.as_ref()),
        );
        merge(&mut row.scheduled_start, change.scheduled_start);
        merge(&mut row.scheduled_end, change.scheduled_end);
        merge(&mut row.actual_start, change.actual_start);
        merge(&mut row.actual_end, change.actual_end);
        if let Some(status) = &change.status {
            row.status.set_if_not_equals(kind_text(&status.kind));
            row.status_raw.set_if_not_equals(Some(status.raw.clone()));
        }
        merge(&mut row.status_updated_by, change.status_updated_by.clone());
        if let Some(note) = &change.note {
            merge(&mut row.note_id, note.id.clone());
            merge(&mut row.note_status, note.status.clone());
        }
        if let Some(invoice) = &change.invoice {
            merge(&mut row.invoice_id, invoice.id.clone());
            merge(&mut row.invoice_status, invoice.status.clone());
            merge(&mut row.invoice_amount_due, invoice.amount_due);
            merge(&mut row.invoice_amount_paid, invoice.amount_paid);
            merge(&mut row.invoice_currency, invoice.currency.clone());
        }
        merge(&mut row.payload_version, change.payload_version.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = save(self.txn, row, created, self.now).await?;
        let ended = ["COMPLETED", "CANCELLED"].contains(&saved.status.as_str())
            && status_before.as_deref() != Some(saved.status.as_str());
        self.lineage("Visit", saved.id.0, effect).await?;
        let kind = match effect {
            Effect::Created => Some("VISIT_CREATED"),
            Effect::Updated if ended => Some("VISIT_ENDED"),
            Effect::Updated => Some("VISIT_UPDATED"),
            Effect::Deleted => Some("VISIT_DELETED"),
            Effect::Unchanged | Effect::Stale => None,
        };
        if let Some(kind) = kind {
            let payload = json!({ "vendorId": saved.vendor_id, "status": saved.status, "previousStatus": status_before });
            self.event(
                kind.to_owned(),
                "Visit",
                saved.id.0,
                None,
                saved.staff_id,
                saved.client_id,
                payload,
            );
        }
        Ok(())
    }

    async fn payment(&mut self, change: &PaymentChange) -> Result<(), DbErr> {
        let existing = payment::Entity::find()
            .filter(payment::Column::SourceId.eq(self.source_id.clone()))
            .filter(payment::Column::VendorId.eq(change.vendor_id.as_str()))
            .one(self.txn)
            .await?;
        let (mut row, created) = match existing {
            Some(model) => (model.into_active_model(), false),
            None => (
                payment::ActiveModel {
                    id: ActiveValue::NotSet,
                    source_id: Set(self.source_id.clone()),
                    vendor_id: Set(change.vendor_id.clone()),
                    client_id: Set(None),
                    amount: Set(None),
                    currency: Set(None),
                    state: Set(None),
                    payment_method: Set(None),
                    title: Set(None),
                    version: Set(None),
                    deleted: Set(false),
                    created_at: Set(self.now),
                    updated_at: Set(self.now),
                },
                true,
            ),
        };
        merge(
            &mut row.client_id,
            lookup(&self.refs.clients, change.client_id.as_ref()),
        );
        merge(&mut row.amount, change.amount.clone());
        merge(&mut row.currency, change.currency.clone());
        merge(&mut row.state, change.state.clone());
        merge(&mut row.payment_method, change.payment_method.clone());
        merge(&mut row.title, change.title.clone());
        row.deleted
            .set_if_not_equals(change.action == Action::Delete);
        let effect = effect_of(created, row.is_changed(), change.action);
        let version = newest(row.version.clone().unwrap(), change.version);
        row.version.set_if_not_equals(version);
        let saved = save(self.txn, row, created, self.now).await?;
        let payload = json!({ "vendorId": saved.vendor_id, "state": saved.state });
        self.finish(
            "Payment",
            "PAYMENT",
            saved.id.0,
            effect,
            (None, None, saved.client_id),
            payload,
        )
        .await
    }
}

/// The effect, judged before the version column is bumped (a newer version alone is not a change).
fn effect_of(created: bool, changed: bool, action: Action) -> Effect {
    match (created, changed, action) {
        (true, _, Action::Delete) => Effect::Deleted,
        (true, _, Action::Upsert) => Effect::Created,
        (false, false, _) => Effect::Unchanged,
        (false, true, Action::Delete) => Effect::Deleted,
        (false, true, Action::Upsert) => Effect::Updated,
    }
}

/// Appointment events name what happened: a status reached, a new start time, or a plain edit.
fn appointment_event_kind(
    effect: Effect,
    before: Option<&(String, Option<DateTime<Utc>>, bool)>,
    after: &appointment::Model,
) -> Option<&'static str> {
    match effect {
        Effect::Unchanged | Effect::Stale => return None,
        Effect::Deleted => return Some("APPOINTMENT_DELETED"),
        Effect::Created => return Some("APPOINTMENT_CREATED"),
        Effect::Updated => {}
    }
    let (status_before, starts_before, _) = before?;
    if *status_before != after.status {
        return Some(match after.status.as_str() {
            "CANCELLED" => "APPOINTMENT_CANCELLED",
            "NO_SHOW" => "APPOINTMENT_NO_SHOW",
            "COMPLETED" => "APPOINTMENT_COMPLETED",
            "CHECKED_IN" => "APPOINTMENT_CHECKED_IN",
            "CONFIRMED" => "APPOINTMENT_CONFIRMED",
            "RESCHEDULED" => "APPOINTMENT_RESCHEDULED",
            _ => "APPOINTMENT_UPDATED",
        });
    }
    if starts_before.is_some() && *starts_before != after.starts_at {
        return Some("APPOINTMENT_RESCHEDULED");
    }
    Some("APPOINTMENT_UPDATED")
}

/// The stored text of a normalized kind (`SCREAMING_SNAKE_CASE`, as in GraphQL).
fn kind_text<T: serde::Serialize>(kind: &T) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "OTHER".to_owned(),
    }
}

/// Inserts a new row or updates a changed one; `updated_at` moves only on a real change.
async fn save<A>(
    txn: &DatabaseTransaction,
    mut row: A,
    created: bool,
    now: DateTime<Utc>,
) -> Result<<A::Entity as EntityTrait>::Model, DbErr>
where
    A: ActiveModelTrait + sea_orm::ActiveModelBehavior + Send + UpdatedAt,
    A: sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model>,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    if created {
        row.insert(txn).await
    } else if row.is_changed() {
        row.touch(now);
        row.update(txn).await
    } else {
        row.try_into_model()
    }
}

/// Entities with an `updated_at` column.
trait UpdatedAt {
    fn touch(&mut self, now: DateTime<Utc>);
}

macro_rules! updated_at {
    ($($module:ident),+) => {$(
        impl UpdatedAt for $module::ActiveModel {
            fn touch(&mut self, now: DateTime<Utc>) {
                self.updated_at = Set(now);
            }
        }
    )+};
}
updated_at!(
    client,
    staff,
    service,
    location,
    queue_entry,
    appointment,
    visit,
    payment
);
