//! Erasing one client (a patient's right to erasure): their personal fields, the raw bodies and
//! headers of every delivery that touched them or their appointments, tickets, visits and
//! payments, and the payloads of their domain events — in one transaction. What remains is what
//! the clinic's records need without identifying the person: ids, states, times, hashes. The
//! erasure itself is recorded in the audit log by the caller.

use std::collections::BTreeSet;

use entity::ids::{ClientId, WebhookEventId};
use entity::{
    appointment, client, domain_event, entity_lineage, payment, queue_entry, visit, webhook_event,
};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    pub raw_bodies: u64,
    pub events: u64,
    pub records: u64,
}

/// `None` when there is no such client.
pub async fn erase_client(
    db: &DatabaseConnection,
    id: ClientId,
) -> Result<Option<ErasureReport>, DbErr> {
    // Under the writers' lock: the ingest writer overwrites the rows it changes whole, so an
    // erasure must not slip in between its read and its write.
    let txn = super::ingest::begin_writer(db).await?;
    if client::Entity::find_by_id(id).one(&txn).await?.is_none() {
        return Ok(None);
    }
    let mut report = ErasureReport::default();

    // The entities that carry this client, by lineage type name.
    let mut touched: Vec<(&str, Vec<i64>)> = vec![("Client", vec![id.0])];
    macro_rules! ids_of {
        ($module:ident) => {
            $module::Entity::find()
                .select_only()
                .column($module::Column::Id)
                .filter($module::Column::ClientId.eq(id))
                .into_tuple::<i64>()
                .all(&txn)
                .await?
        };
    }
    touched.push(("Appointment", ids_of!(appointment)));
    touched.push(("QueueEntry", ids_of!(queue_entry)));
    touched.push(("Visit", ids_of!(visit)));
    touched.push(("Payment", ids_of!(payment)));

    let mut deliveries: BTreeSet<WebhookEventId> = BTreeSet::new();
    for (entity_type, ids) in &touched {
        if ids.is_empty() {
            continue;
        }
        let rows: Vec<WebhookEventId> = entity_lineage::Entity::find()
            .select_only()
            .column(entity_lineage::Column::WebhookEventId)
            .filter(entity_lineage::Column::EntityType.eq(*entity_type))
            .filter(entity_lineage::Column::EntityId.is_in(ids.clone()))
            .into_tuple()
            .all(&txn)
            .await?;
        deliveries.extend(rows);
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
    // Free text written about the client on their appointments and tickets.
    report.records += appointment::Entity::update_many()
        .col_expr(appointment::Column::Notes, none.clone())
        .col_expr(appointment::Column::Title, none)
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

    report.events = domain_event::Entity::update_many()
        .col_expr(
            domain_event::Column::Payload,
            Expr::value(json!({ "erased": true })),
        )
        .filter(
            sea_orm::Condition::any()
                .add(domain_event::Column::ClientId.eq(id))
                .add(
                    sea_orm::Condition::all()
                        .add(domain_event::Column::EntityType.eq("Client"))
                        .add(domain_event::Column::EntityId.eq(id.0)),
                ),
        )
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(Some(report))
}
