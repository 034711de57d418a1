//! Object types over entity models. Scalars map straight through; references and lists go
//! through the DataLoader (`load_ref`, `load_list`).

use async_graphql::{ComplexObject, Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use entity::{
    alert, appointment, client, domain_event, entity_lineage, location, payment, queue_entry,
    queue_state_history, service, staff, vcita_subscription, visit, webhook_event,
};

use super::enums::*;
use super::{Node, load_list, load_ref};
use crate::graphql::error::ApiResult;
use crate::graphql::guard::{Class, Reads};
use crate::graphql::ids::{NodeKind, encode};
use crate::graphql::loaders::{HistoryOf, LineageOf, TouchedBy};

/// The inbox rows that built an entity, oldest first.
async fn source_events(
    ctx: &Context<'_>,
    entity_type: &'static str,
    id: i64,
) -> ApiResult<Vec<WebhookEvent>> {
    let lineage = load_list(
        ctx,
        LineageOf {
            entity_type,
            entity_id: id,
        },
    )
    .await?;
    let mut events = Vec::with_capacity(lineage.len());
    for row in lineage {
        if let Some(event) = load_ref(ctx, Some(row.webhook_event_id)).await? {
            events.push(WebhookEvent(event));
        }
    }
    Ok(events)
}

/// A patient as one vendor account knows them.
pub struct Client(pub client::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Client {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Client, self.0.id)
    }
    /// The vendor's id of this client within its source.
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    /// Full name as the vendor gave it (or first + last).
    async fn name(&self) -> Option<String> {
        self.0.full_name.clone().or_else(|| {
            let parts: Vec<&str> = [&self.0.first_name, &self.0.last_name]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    }
    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }
    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }
    /// E.164 where the vendor's digits allowed it, else as sent.
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn custom_fields(&self) -> Option<Json<serde_json::Value>> {
        self.0.custom_fields.clone().map(Json)
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The webhook deliveries that built this record.
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Client", self.0.id.0).await
    }
}

/// A provider or staff member.
pub struct Staff(pub staff::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Staff {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Staff, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    /// IANA time zone, where the vendor says.
    async fn time_zone(&self) -> Option<&str> {
        self.0.time_zone.as_deref()
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Staff", self.0.id.0).await
    }
}

/// A service (Chup service, vCita service, TimeTap reason).
pub struct Service(pub service::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Service {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Service, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn duration_minutes(&self) -> Option<i32> {
        self.0.duration_minutes
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Service", self.0.id.0).await
    }
}

pub struct Location(pub location::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Location {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Location, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// e.g. `Office`, as the vendor sent it.
    async fn kind(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
}

/// A Chup live-queue ticket (Chup's alert API calls it a visit).
pub struct QueueEntry(pub queue_entry::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl QueueEntry {
    pub async fn id(&self) -> ID {
        encode(NodeKind::QueueEntry, self.0.id)
    }
    /// Chup's ticket id (the `visit_id` of its alert API).
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn state(&self) -> QueueState {
        QueueState {
            kind: parse_stored(&self.0.state, QueueStateKind::Other),
            raw_code: self.0.state_code,
            raw_name: self.0.state_name.clone(),
            label: self.0.state_label.clone(),
        }
    }
    /// Every state the ticket went through, oldest first.
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::HISTORY_SIZE, child_complexity)"
    )]
    async fn state_history(&self, ctx: &Context<'_>) -> ApiResult<Vec<QueueStateChange>> {
        Ok(load_list(ctx, HistoryOf(self.0.id))
            .await?
            .into_iter()
            .map(QueueStateChange)
            .collect())
    }
    async fn client(&self, ctx: &Context<'_>) -> ApiResult<Option<Client>> {
        Ok(load_ref(ctx, self.0.client_id).await?.map(Client))
    }
    async fn service(&self, ctx: &Context<'_>) -> ApiResult<Option<Service>> {
        Ok(load_ref(ctx, self.0.service_id).await?.map(Service))
    }
    async fn staff(&self, ctx: &Context<'_>) -> ApiResult<Option<Staff>> {
        Ok(load_ref(ctx, self.0.staff_id).await?.map(Staff))
    }
    /// The appointment this ticket came from, if any.
    async fn appointment(&self, ctx: &Context<'_>) -> ApiResult<Option<Appointment>> {
        Ok(load_ref(ctx, self.0.appointment_id).await?.map(Appointment))
    }
    /// The clinic-local day of the ticket.
    async fn queue_date(&self) -> Option<NaiveDate> {
        self.0.queue_date
    }
    /// The vendor's offset or zone, e.g. `+08:00`.
    async fn time_zone(&self) -> Option<&str> {
        self.0.time_zone.as_deref()
    }
    async fn notes(&self) -> Option<Json<serde_json::Value>> {
        self.0.notes.clone().map(Json)
    }
    /// When the patient joined the queue (vendor time).
    async fn joined_at(&self) -> Option<DateTime<Utc>> {
        self.0.vendor_created_at
    }
    /// The vendor's last change time.
    async fn vendor_updated_at(&self) -> Option<DateTime<Utc>> {
        self.0.version
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "QueueEntry", self.0.id.0).await
    }
}

/// One transition of a queue ticket.
pub struct QueueStateChange(pub queue_state_history::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl QueueStateChange {
    async fn state(&self) -> QueueState {
        QueueState {
            kind: parse_stored(&self.0.state, QueueStateKind::Other),
            raw_code: self.0.state_code,
            raw_name: self.0.state_name.clone(),
            label: self.0.state_label.clone(),
        }
    }
    async fn changed_at(&self) -> DateTime<Utc> {
        self.0.changed_at
    }
    /// The delivery that reported this transition.
    async fn source_event(&self, ctx: &Context<'_>) -> ApiResult<Option<WebhookEvent>> {
        Ok(load_ref(ctx, self.0.webhook_event_id)
            .await?
            .map(WebhookEvent))
    }
}

pub struct Appointment(pub appointment::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Appointment {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Appointment, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn status(&self) -> AppointmentStatus {
        AppointmentStatus {
            kind: parse_stored(&self.0.status, AppointmentStatusKind::Other),
            raw: self.0.status_raw.clone(),
            raw_sub_status: self.0.sub_status_raw.clone(),
        }
    }
    /// UTC instant.
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.0.starts_at
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at
    }
    /// The zone or offset the vendor gave the times in.
    async fn time_zone(&self) -> Option<&str> {
        self.0.time_zone.as_deref()
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn notes(&self) -> Option<&str> {
        self.0.notes.as_deref()
    }
    async fn custom_fields(&self) -> Option<Json<serde_json::Value>> {
        self.0.custom_fields.clone().map(Json)
    }
    async fn client(&self, ctx: &Context<'_>) -> ApiResult<Option<Client>> {
        Ok(load_ref(ctx, self.0.client_id).await?.map(Client))
    }
    async fn staff(&self, ctx: &Context<'_>) -> ApiResult<Option<Staff>> {
        Ok(load_ref(ctx, self.0.staff_id).await?.map(Staff))
    }
    async fn service(&self, ctx: &Context<'_>) -> ApiResult<Option<Service>> {
        Ok(load_ref(ctx, self.0.service_id).await?.map(Service))
    }
    async fn location(&self, ctx: &Context<'_>) -> ApiResult<Option<Location>> {
        Ok(load_ref(ctx, self.0.location_id).await?.map(Location))
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Appointment", self.0.id.0).await
    }
}

/// A VSee telehealth visit.
pub struct Visit(pub visit::Model);

#[derive(SimpleObject, Clone)]
#[graphql(guard = "Reads(Class::Clinic)")]
pub struct VisitNote {
    pub id: Option<String>,
    /// new | signed | draft, as sent.
    pub status: Option<String>,
}

#[derive(SimpleObject, Clone)]
#[graphql(guard = "Reads(Class::Clinic)")]
pub struct Invoice {
    pub id: Option<String>,
    /// pending | processing | paid | closed | forgiven | cancelled | failed | refunded, as sent.
    pub status: Option<String>,
    /// Minor units (cents).
    pub amount_due: Option<i64>,
    pub amount_paid: Option<i64>,
    pub currency: Option<String>,
}

#[Object(guard = "Reads(Class::Clinic)")]
impl Visit {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Visit, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn status(&self) -> VisitStatus {
        VisitStatus {
            kind: parse_stored(&self.0.status, VisitStatusKind::Other),
            raw: self.0.status_raw.clone(),
        }
    }
    /// The patient (VSee member).
    async fn patient(&self, ctx: &Context<'_>) -> ApiResult<Option<Client>> {
        Ok(load_ref(ctx, self.0.client_id).await?.map(Client))
    }
    async fn provider(&self, ctx: &Context<'_>) -> ApiResult<Option<Staff>> {
        Ok(load_ref(ctx, self.0.staff_id).await?.map(Staff))
    }
    async fn scheduled_start(&self) -> Option<DateTime<Utc>> {
        self.0.scheduled_start
    }
    async fn scheduled_end(&self) -> Option<DateTime<Utc>> {
        self.0.scheduled_end
    }
    async fn actual_start(&self) -> Option<DateTime<Utc>> {
        self.0.actual_start
    }
    async fn actual_end(&self) -> Option<DateTime<Utc>> {
        self.0.actual_end
    }
    async fn status_updated_by(&self) -> Option<&str> {
        self.0.status_updated_by.as_deref()
    }
    async fn note(&self) -> Option<VisitNote> {
        (self.0.note_id.is_some() || self.0.note_status.is_some()).then(|| VisitNote {
            id: self.0.note_id.clone(),
            status: self.0.note_status.clone(),
        })
    }
    async fn invoice(&self) -> Option<Invoice> {
        let row = &self.0;
        (row.invoice_id.is_some() || row.invoice_status.is_some()).then(|| Invoice {
            id: row.invoice_id.clone(),
            status: row.invoice_status.clone(),
            amount_due: row.invoice_amount_due,
            amount_paid: row.invoice_amount_paid,
            currency: row.invoice_currency.clone(),
        })
    }
    /// VSee payload version of the last delivery ("1.0" or "2.0").
    async fn payload_version(&self) -> Option<&str> {
        self.0.payload_version.as_deref()
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Visit", self.0.id.0).await
    }
}

/// A vCita payment.
pub struct Payment(pub payment::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Payment {
    pub async fn id(&self) -> ID {
        encode(NodeKind::Payment, self.0.id)
    }
    async fn vendor_id(&self) -> &str {
        &self.0.vendor_id
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    /// As sent (vCita does not state the unit), decimal text.
    async fn amount(&self) -> Option<&str> {
        self.0.amount.as_deref()
    }
    async fn currency(&self) -> Option<&str> {
        self.0.currency.as_deref()
    }
    /// paid | pending | refunded …, as sent.
    async fn state(&self) -> Option<&str> {
        self.0.state.as_deref()
    }
    async fn payment_method(&self) -> Option<&str> {
        self.0.payment_method.as_deref()
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn client(&self, ctx: &Context<'_>) -> ApiResult<Option<Client>> {
        Ok(load_ref(ctx, self.0.client_id).await?.map(Client))
    }
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn source_events(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookEvent>> {
        source_events(ctx, "Payment", self.0.id.0).await
    }
}

/// One delivery in the inbox. Raw bytes and headers are for `admin` keys only.
pub struct WebhookEvent(pub webhook_event::Model);

/// An entity a delivery touched, and how.
// No type guard: ids and type names only, no clinic data, and it is reached only through a
// guarded delivery (`read`) or an admin reprocess report (`admin`).
#[derive(SimpleObject, Clone)]
pub struct EntityChange {
    pub entity_type: String,
    /// Global id of the entity.
    pub entity_id: ID,
    /// created | updated | unchanged | deleted | stale
    pub change: String,
}

impl From<entity_lineage::Model> for EntityChange {
    fn from(row: entity_lineage::Model) -> EntityChange {
        let kind = NodeKind::parse(&row.entity_type).unwrap_or(NodeKind::Client);
        EntityChange {
            entity_id: encode(kind, row.entity_id),
            entity_type: row.entity_type,
            change: row.change,
        }
    }
}

#[Object(guard = "Reads(Class::Clinic)")]
impl WebhookEvent {
    pub async fn id(&self) -> ID {
        encode(NodeKind::WebhookEvent, self.0.id)
    }
    async fn source_id(&self) -> &str {
        self.0.source_id.as_str()
    }
    async fn vendor(&self) -> &str {
        &self.0.vendor
    }
    /// The vendor's event type (for TimeTap: derived from the diff).
    async fn event_type(&self) -> Option<&str> {
        self.0.event_type.as_deref()
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    /// How the delivery was verified: hmac-raw | hmac-php-json | url-token.
    async fn verification(&self) -> Option<&str> {
        self.0.verification.as_deref()
    }
    async fn status(&self) -> WebhookStatus {
        parse_stored(&self.0.status, WebhookStatus::Failed)
    }
    /// Why it failed, was rejected or is unsupported.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn dedupe_key(&self) -> Option<&str> {
        self.0.dedupe_key.as_deref()
    }
    async fn body_sha256(&self) -> &str {
        &self.0.body_sha256
    }
    /// The raw body as received (UTF-8, lossy); null once pruned by retention.
    #[graphql(guard = "Reads(Class::Admin)")]
    async fn raw_body(&self) -> Option<String> {
        self.0
            .body
            .as_deref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }
    /// Request headers as received, minus credentials.
    #[graphql(guard = "Reads(Class::Admin)")]
    async fn headers(&self) -> Json<serde_json::Value> {
        Json(self.0.headers.clone())
    }
    /// The entities this delivery touched.
    #[graphql(
        complexity = "crate::graphql::limits::list_cost(crate::graphql::limits::LINEAGE_SIZE, child_complexity)"
    )]
    async fn entities(&self, ctx: &Context<'_>) -> ApiResult<Vec<EntityChange>> {
        Ok(load_list(ctx, TouchedBy(self.0.id))
            .await?
            .into_iter()
            .map(EntityChange::from)
            .collect())
    }
}

/// An outbound patient alert through Chup. Its receipt — id, status, attempts, idempotency key
/// and times — is readable by a `write` key that sent it ([`Class::Receipt`]); the ticket, the
/// visit id, the message and the vendor's error need `read`.
pub struct Alert(pub alert::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl Alert {
    #[graphql(guard = "Reads(Class::Receipt)")]
    pub async fn id(&self) -> ID {
        encode(NodeKind::Alert, self.0.id)
    }
    async fn queue_entry(&self, ctx: &Context<'_>) -> ApiResult<Option<QueueEntry>> {
        Ok(load_ref(ctx, self.0.queue_entry_id).await?.map(QueueEntry))
    }
    /// The Chup visit id the alert is sent for.
    async fn visit_id(&self) -> &str {
        &self.0.visit_vendor_id
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn status(&self) -> AlertStatus {
        parse_stored(&self.0.status, AlertStatus::Pending)
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn idempotency_key(&self) -> &str {
        &self.0.idempotency_key
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }
}

/// A vCita webhook subscription managed through CareBridge. Its id, event, status and
/// verification time are a receipt ([`Class::Receipt`]) for the `write` key that made it; the
/// target URL and vCita's error need `read`.
pub struct VcitaSubscription(pub vcita_subscription::Model);

#[Object(guard = "Reads(Class::Clinic)")]
impl VcitaSubscription {
    #[graphql(guard = "Reads(Class::Receipt)")]
    pub async fn id(&self) -> ID {
        encode(NodeKind::VcitaSubscription, self.0.id)
    }
    /// `entity/event`, e.g. `client/created`.
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn event(&self) -> &str {
        &self.0.event
    }
    /// Where vCita posts. Never a secret: a source of this gateway is shown without its
    /// `?token=` (vCita alone is given it), and the values in any other URL's query are hidden.
    async fn target_url(&self) -> String {
        crate::outbound::vcita::shown_url(&self.0.target_url)
    }
    /// The gateway's own vCita source this subscription delivers to, if it is one.
    async fn source_id(&self) -> Option<&str> {
        self.0.source_id.as_ref().map(|id| id.0.as_str())
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn status(&self) -> &str {
        &self.0.status
    }
    /// vCita's last refusal or why it could not be reached, secrets redacted.
    async fn last_error(&self, ctx: &Context<'_>) -> Option<String> {
        let error = self.0.last_error.as_deref()?;
        Some(match ctx.data::<std::sync::Arc<crate::config::Config>>() {
            Ok(config) => crate::outbound::vcita::redact(config, error),
            Err(_) => error.to_owned(),
        })
    }
    #[graphql(guard = "Reads(Class::Receipt)")]
    async fn last_verified_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_verified_at
    }
}

/// One configured webhook endpoint of one vendor account: `POST /webhooks/{id}`.
#[derive(SimpleObject, Clone)]
#[graphql(guard = "Reads(Class::Clinic)")]
pub struct Source {
    pub id: String,
    /// chup | vcita | vsee | timetap
    pub vendor: String,
    /// The path the vendor posts to (token or secret not included).
    pub webhook_path: String,
    /// When the last delivery arrived (any outcome).
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Deliveries stored as FAILED, UNSUPPORTED or REJECTED.
    pub failed_deliveries: u64,
}

/// An item of the live event stream: something changed in the clinic.
#[derive(SimpleObject, Clone)]
#[graphql(complex, guard = "Reads(Class::Clinic)")]
pub struct DomainEvent {
    /// Commit-ordered position; resume a subscription after it.
    pub cursor: String,
    /// e.g. QUEUE_ENTRY_CHANGED, APPOINTMENT_CANCELLED.
    pub kind: String,
    pub source_id: Option<String>,
    pub entity_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// A small summary (vendor id, new and previous state or status).
    pub payload: Json<serde_json::Value>,
    #[graphql(skip)]
    pub entity_id: i64,
}

impl From<domain_event::Model> for DomainEvent {
    fn from(row: domain_event::Model) -> DomainEvent {
        DomainEvent {
            cursor: row.cursor.0.to_string(),
            kind: row.kind,
            source_id: row.source_id.map(|s| s.0),
            entity_type: row.entity_type,
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
            payload: Json(row.payload),
            entity_id: row.entity_id,
        }
    }
}

#[ComplexObject(guard = "Reads(Class::Clinic)")]
impl DomainEvent {
    /// The changed entity, as it is now.
    async fn entity(&self, ctx: &Context<'_>) -> ApiResult<Option<Node>> {
        match NodeKind::parse(&self.entity_type) {
            Some(kind) => crate::graphql::query::load_node(ctx, kind, self.entity_id).await,
            None => Ok(None),
        }
    }
}

/// One audit log entry.
#[derive(SimpleObject, Clone)]
#[graphql(guard = "Reads(Class::AdminReport)")]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The API key name (or `cli`).
    pub actor: String,
    /// mutation | admin_read | keys.create | keys.revoke
    pub action: String,
    /// Operation and field names; never argument values.
    pub detail: Json<serde_json::Value>,
}

impl From<entity::audit_log::Model> for AuditEntry {
    fn from(row: entity::audit_log::Model) -> AuditEntry {
        AuditEntry {
            at: row.at,
            actor: row.actor,
            action: row.action,
            detail: Json(row.detail),
        }
    }
}
