//! Erasing one client (a patient's right to erasure): their personal fields, the raw bodies and
//! headers of every stored delivery that names them or their appointments, tickets, visits and
//! payments — whatever the delivery's status — and the derived copies: the payloads of their
//! domain events, the free text of their appointments, tickets and payments, and the messages
//! of alerts sent to them. What remains is what the clinic's records need without identifying
//! the person: ids, states, times, hashes. The erasure itself is recorded in the audit log by
//! the caller.
//!
//! # Which deliveries name the client
//!
//! Lineage links only the deliveries whose changes were applied; a `DUPLICATE`, `FAILED`,
//! `UNSUPPORTED`, `STALE` or `REJECTED` delivery has none, yet carries the same name, phone and
//! email. So the client's source is searched too: every stored body of that source is a
//! candidate if it contains one of the client's vendor ids (their own, and those of their
//! appointments, tickets, visits and payments) — a byte search the database runs, the same on
//! SQLite and PostgreSQL. Each candidate is then decided by [`names`]: the current mapper's
//! reading of it when it maps (the ids its changes carry), else any JSON value equal to one of
//! those ids, else the id as a whole word of the body. The bulk of the search runs before the
//! writers' lock is taken, so ingest does not wait behind it; only deliveries stored since are
//! searched under the lock.

use std::collections::{BTreeSet, HashSet};

use entity::ids::{ClientId, QueueEntryId, SourceId, WebhookEventId};
use entity::{
    alert, appointment, client, domain_event, entity_lineage, payment, queue_entry, visit,
    webhook_event,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
};
use serde_json::{Value, json};

use crate::domain::{Change, MapOutcome, Vendor};
use crate::vendors::{self, MapperConfig, Verification, Webhook};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    pub raw_bodies: u64,
    pub events: u64,
    pub records: u64,
}

/// A candidate delivery as read for the decision: id, vendor, verification, body.
type StoredDelivery = (WebhookEventId, String, Option<String>, Option<Vec<u8>>);

/// Candidate deliveries loaded (with their bodies) per query.
const PAGE: usize = 200;

/// The client's vendor ids within their source: theirs and their records'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRefs {
    pub client: String,
    pub queue_entries: HashSet<String>,
    pub appointments: HashSet<String>,
    pub visits: HashSet<String>,
    pub payments: HashSet<String>,
}

impl ClientRefs {
    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.client.as_str())
            .chain(self.queue_entries.iter().map(String::as_str))
            .chain(self.appointments.iter().map(String::as_str))
            .chain(self.visits.iter().map(String::as_str))
            .chain(self.payments.iter().map(String::as_str))
            .filter(|id| !id.is_empty())
    }

    fn is_client(&self, id: Option<&String>) -> bool {
        id.is_some_and(|id| *id == self.client)
    }

    /// Whether a mapped change is about the client or one of their records.
    fn named_by(&self, change: &Change) -> bool {
        match change {
            Change::Client(c) => c.vendor_id == self.client,
            Change::QueueEntry(q) => {
                self.queue_entries.contains(&q.vendor_id)
                    || self.is_client(q.client_id.as_ref())
                    || q.appointment_id
                        .as_ref()
                        .is_some_and(|a| self.appointments.contains(a))
            }
            Change::Appointment(a) => {
                self.appointments.contains(&a.vendor_id) || self.is_client(a.client_id.as_ref())
            }
            Change::Visit(v) => {
                self.visits.contains(&v.vendor_id) || self.is_client(v.client_id.as_ref())
            }
            Change::Payment(p) => {
                self.payments.contains(&p.vendor_id) || self.is_client(p.client_id.as_ref())
            }
            Change::Staff(_) | Change::Service(_) | Change::Location(_) => false,
        }
    }
}

/// Whether a stored delivery names the client (see the module doc).
pub fn names(
    refs: &ClientRefs,
    vendor: Option<Vendor>,
    verification: Option<&str>,
    body: &[u8],
) -> bool {
    if let Some(vendor) = vendor {
        let webhook = Webhook::from_inbox(
            vendor,
            bytes::Bytes::copy_from_slice(body),
            verification.and_then(Verification::parse),
        );
        if let Ok(delivery) = vendors::normalize(&webhook, &MapperConfig::default())
            && let Ok(MapOutcome::Mapped(normalized)) = delivery.outcome
        {
            return normalized.changes.iter().any(|c| refs.named_by(c));
        }
    }
    let ids: HashSet<&str> = refs.all().collect();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => json_names(&value, &ids),
        Err(_) => ids.iter().any(|id| word_in(body, id.as_bytes())),
    }
}

/// Whether any string or number in `value` is one of `ids`.
fn json_names(value: &Value, ids: &HashSet<&str>) -> bool {
    match value {
        Value::String(text) => ids.contains(text.trim()),
        Value::Number(number) => ids.contains(number.to_string().as_str()),
        Value::Array(items) => items.iter().any(|item| json_names(item, ids)),
        Value::Object(fields) => fields.values().any(|item| json_names(item, ids)),
        Value::Bool(_) | Value::Null => false,
    }
}

/// Whether `id` occurs in `body` as a whole word (not inside a longer id).
fn word_in(body: &[u8], id: &[u8]) -> bool {
    if id.is_empty() || id.len() > body.len() {
        return false;
    }
    let part_of_id = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (0..=body.len() - id.len()).any(|at| {
        body[at..at + id.len()] == *id
            && (at == 0 || !part_of_id(body[at - 1]))
            && body.get(at + id.len()).is_none_or(|b| !part_of_id(*b))
    })
}

/// `None` when there is no such client.
pub async fn erase_client(
    db: &DatabaseConnection,
    id: ClientId,
) -> Result<Option<ErasureReport>, DbErr> {
    // The bulk of the search, before taking the writers' lock (ingest goes on meanwhile).
    let Some((_, source, refs)) = client_refs(db, id).await? else {
        return Ok(None);
    };
    let searched_through = highest_delivery(db, &source).await?;
    let mut candidates = candidate_deliveries(db, &source, &refs, None).await?;

    // Under the writers' lock: the ingest writer overwrites the rows it changes whole, so an
    // erasure must not slip in between its read and its write.
    let txn = super::ingest::begin_writer(db).await?;
    let Some((touched, source, refs)) = client_refs(&txn, id).await? else {
        return Ok(None);
    };
    candidates.extend(candidate_deliveries(&txn, &source, &refs, Some(searched_through)).await?);
    let mut report = ErasureReport::default();

    let mut deliveries: BTreeSet<WebhookEventId> = BTreeSet::new();
    for (entity_type, ids) in &touched {
        for chunk in ids.chunks(500) {
            let rows: Vec<WebhookEventId> = entity_lineage::Entity::find()
                .select_only()
                .column(entity_lineage::Column::WebhookEventId)
                .filter(entity_lineage::Column::EntityType.eq(*entity_type))
                .filter(entity_lineage::Column::EntityId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            deliveries.extend(rows);
        }
    }
    let candidates: Vec<WebhookEventId> = candidates.difference(&deliveries).copied().collect();
    for chunk in candidates.chunks(PAGE) {
        let rows: Vec<StoredDelivery> = webhook_event::Entity::find()
            .select_only()
            .columns([
                webhook_event::Column::Id,
                webhook_event::Column::Vendor,
                webhook_event::Column::Verification,
                webhook_event::Column::Body,
            ])
            .filter(webhook_event::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        for (delivery, vendor, verification, body) in rows {
            if let Some(body) = body
                && names(
                    &refs,
                    Vendor::parse(&vendor),
                    verification.as_deref(),
                    &body,
                )
            {
                deliveries.insert(delivery);
            }
        }
    }
    for chunk in deliveries.into_iter().collect::<Vec<_>>().chunks(500) {
        report.raw_bodies += webhook_event::Entity::update_many()
            .col_expr(
                webhook_event::Column::Body,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(webhook_event::Column::Headers, Expr::value(json!({})))
            .filter(webhook_event::Column::Id.is_in(chunk.iter().copied()))
            .exec(&txn)
            .await?
            .rows_affected;
    }

    let none = Expr::value(Option::<String>::None);
    report.records += client::Entity::update_many()
        .col_expr(client::Column::FirstName, none.clone())
        .col_expr(client::Column::LastName, none.clone())
        .col_expr(client::Column::FullName, none.clone())
        .col_expr(client::Column::Phone, none.clone())
        .col_expr(client::Column::Email, none.clone())
        .col_expr(
            client::Column::CustomFields,
            Expr::value(Option::<serde_json::Value>::None),
        )
        .col_expr(client::Column::Deleted, Expr::value(true))
        .filter(client::Column::Id.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    // Free text written about the client on their appointments, tickets and payments.
    report.records += appointment::Entity::update_many()
        .col_expr(appointment::Column::Notes, none.clone())
        .col_expr(appointment::Column::Title, none.clone())
        .col_expr(
            appointment::Column::CustomFields,
            Expr::value(Option::<serde_json::Value>::None),
        )
        .filter(appointment::Column::ClientId.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    report.records += queue_entry::Entity::update_many()
        .col_expr(
            queue_entry::Column::Notes,
            Expr::value(Option::<serde_json::Value>::None),
        )
        .filter(queue_entry::Column::ClientId.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    report.records += payment::Entity::update_many()
        .col_expr(payment::Column::Title, none)
        .filter(payment::Column::ClientId.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    // The messages sent to them through Chup (the alert, its status and times stay). An empty
    // message is what an erased alert looks like: a new alert's is 1-500 characters.
    let tickets: Vec<QueueEntryId> = touched
        .iter()
        .find(|(kind, _)| *kind == "QueueEntry")
        .map(|(_, ids)| ids.iter().map(|id| QueueEntryId(*id)).collect())
        .unwrap_or_default();
    let mut addressed = Condition::any();
    if !tickets.is_empty() {
        addressed = addressed.add(alert::Column::QueueEntryId.is_in(tickets));
    }
    if !refs.queue_entries.is_empty() && source_vendor(&txn, &source).await? == Some(Vendor::Chup) {
        addressed = addressed.add(alert::Column::VisitVendorId.is_in(refs.queue_entries.clone()));
    }
    if !addressed.is_empty() {
        report.records += alert::Entity::update_many()
            .col_expr(alert::Column::Message, Expr::value(""))
            .filter(addressed)
            .exec(&txn)
            .await?
            .rows_affected;
    }

    let mut about = Condition::any().add(domain_event::Column::ClientId.eq(id));
    for (entity_type, ids) in &touched {
        for chunk in ids.chunks(500) {
            about = about.add(
                Condition::all()
                    .add(domain_event::Column::EntityType.eq(*entity_type))
                    .add(domain_event::Column::EntityId.is_in(chunk.iter().copied())),
            );
        }
    }
    report.events = domain_event::Entity::update_many()
        .col_expr(
            domain_event::Column::Payload,
            Expr::value(json!({ "erased": true })),
        )
        .filter(about)
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(Some(report))
}

/// The client's records by lineage type name (with their row ids), their source, and their
/// vendor ids; `None` when there is no such client.
async fn client_refs<C: ConnectionTrait>(
    db: &C,
    id: ClientId,
) -> Result<Option<(Vec<(&'static str, Vec<i64>)>, SourceId, ClientRefs)>, DbErr> {
    let Some(found) = client::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    macro_rules! of_client {
        ($module:ident) => {
            $module::Entity::find()
                .select_only()
                .columns([$module::Column::Id, $module::Column::VendorId])
                .filter($module::Column::ClientId.eq(id))
                .into_tuple::<(i64, String)>()
                .all(db)
                .await?
        };
    }
    let appointments = of_client!(appointment);
    let queue_entries = of_client!(queue_entry);
    let visits = of_client!(visit);
    let payments = of_client!(payment);
    let vendor_ids = |rows: &[(i64, String)]| rows.iter().map(|(_, v)| v.clone()).collect();
    let row_ids = |rows: &[(i64, String)]| rows.iter().map(|(id, _)| *id).collect();
    let refs = ClientRefs {
        client: found.vendor_id.clone(),
        queue_entries: vendor_ids(&queue_entries),
        appointments: vendor_ids(&appointments),
        visits: vendor_ids(&visits),
        payments: vendor_ids(&payments),
    };
    let touched = vec![
        ("Client", vec![id.0]),
        ("Appointment", row_ids(&appointments)),
        ("QueueEntry", row_ids(&queue_entries)),
        ("Visit", row_ids(&visits)),
        ("Payment", row_ids(&payments)),
    ];
    Ok(Some((touched, found.source_id, refs)))
}

async fn source_vendor<C: ConnectionTrait>(
    db: &C,
    source: &SourceId,
) -> Result<Option<Vendor>, DbErr> {
    let vendor: Option<String> = entity::source::Entity::find_by_id(source.clone())
        .select_only()
        .column(entity::source::Column::Vendor)
        .into_tuple()
        .one(db)
        .await?;
    Ok(vendor.as_deref().and_then(Vendor::parse))
}

async fn highest_delivery<C: ConnectionTrait>(
    db: &C,
    source: &SourceId,
) -> Result<WebhookEventId, DbErr> {
    let highest: Option<Option<WebhookEventId>> = webhook_event::Entity::find()
        .select_only()
        .column_as(webhook_event::Column::Id.max(), "highest")
        .filter(webhook_event::Column::SourceId.eq(source.clone()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(highest.flatten().unwrap_or(WebhookEventId(0)))
}

/// The source's deliveries (above `after`) that still have a body and may name the client:
/// those containing one of the client's vendor ids, found by the database. An id a JSON
/// encoder could escape (anything beyond letters, digits and `-_.:@+`) defeats a byte search,
/// so then every stored body of the source is a candidate.
async fn candidate_deliveries<C: ConnectionTrait>(
    db: &C,
    source: &SourceId,
    refs: &ClientRefs,
    after: Option<WebhookEventId>,
) -> Result<BTreeSet<WebhookEventId>, DbErr> {
    let mut base = webhook_event::Entity::find()
        .select_only()
        .column(webhook_event::Column::Id)
        .filter(webhook_event::Column::SourceId.eq(source.clone()))
        .filter(webhook_event::Column::Body.is_not_null());
    if let Some(after) = after {
        base = base.filter(webhook_event::Column::Id.gt(after));
    }
    let ids: Vec<&str> = refs.all().collect();
    let searchable = ids.iter().all(|id| {
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@+".contains(&b))
    });
    if !searchable {
        let all: Vec<WebhookEventId> = base.into_tuple().all(db).await?;
        return Ok(all.into_iter().collect());
    }
    let contains = match db.get_database_backend() {
        DbBackend::Postgres => "position($1::bytea in \"body\") > 0",
        _ => "instr(\"body\", ?) > 0",
    };
    let mut found = BTreeSet::new();
    for chunk in ids.chunks(50) {
        let mut any = Condition::any();
        for id in chunk {
            any = any.add(Expr::cust_with_values(
                contains,
                [sea_orm::Value::Bytes(Some(id.as_bytes().to_vec()))],
            ));
        }
        let rows: Vec<WebhookEventId> = base.clone().filter(any).into_tuple().all(db).await?;
        found.extend(rows);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> ClientRefs {
        ClientRefs {
            client: "3734".into(),
            queue_entries: ["19242".to_owned()].into(),
            ..ClientRefs::default()
        }
    }

    #[test]
    fn an_unmappable_body_names_the_client_by_a_json_value_not_a_digit_run() {
        let body = br#"{"payload":{"data":{"registered_client_id":3734,"updated_at":"x"}}}"#;
        assert!(names(&refs(), None, None, body));
        let other = br#"{"payload":{"data":{"registered_client_id":37345,"phone":"60123734"}}}"#;
        assert!(!names(&refs(), None, None, other));
    }

    #[test]
    fn a_body_that_is_not_json_names_the_client_by_a_whole_word() {
        assert!(names(&refs(), None, None, b"client=3734&x=1"));
        assert!(!names(&refs(), None, None, b"client=137345"));
    }

    #[test]
    fn a_mapped_delivery_names_the_client_by_the_ids_its_changes_carry() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/chup/live_queue_created.json"
        ))
        .expect("fixture");
        assert!(names(&refs(), Some(Vendor::Chup), None, &body));
        let stranger = ClientRefs {
            client: "1".into(),
            ..ClientRefs::default()
        };
        assert!(!names(&stranger, Some(Vendor::Chup), None, &body));
    }
}
