//! DataLoaders for every nested lookup, so a page of N items with their client, staff and
//! service costs a constant number of statements, not N of each. One loader struct serves all
//! keys; each key type names what it loads.
//!
//! Two kinds of `DataLoader` run over it:
//! - HTTP: a fresh one with a cache per request, so its cache never outlives the request;
//! - live deliveries (websocket subscriptions): one process-wide [`LiveLoader`] *without* a
//!   cache, shared by every connection. Subscribers are woken by the same event at the same
//!   moment, so their loads of the same queue entry, client, service and staff land in the
//!   same batch: one statement per kind for all of them instead of one per subscriber. No
//!   cache means nothing outlives a batch, so each delivery sees the entity as it is then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::ids::{
    AppointmentId, ClientId, LocationId, QueueEntryId, ServiceId, StaffId, VisitId, WebhookEventId,
};
use entity::{
    appointment, client, entity_lineage, location, queue_entry, queue_state_history, service,
    staff, visit, webhook_event,
};
use futures_util::future::BoxFuture;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

pub struct DbLoader {
    pub db: DatabaseConnection,
}

/// The live loader gathers keys without a timer: its batch task is spawned to run after one
/// yield, i.e. behind the streams that the same event woke, which reach their loads first and
/// join the batch. A timer window (async-graphql's default 1 ms, 200 µs here before) made every
/// delivery wait for it twice (the changed entity, then its client, service and staff) and cost
/// a timer-thread wake-up each time: ≈0.5 ms of the webhook → screen latency at 1k/s.
fn spawn_after_yield(batch: BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        batch.await;
    })
}

/// The process-wide uncached loader of live deliveries (see the module doc). Schema data, so
/// every execution of the served schema finds it; an `Arc` so a subscription stream, which
/// outlives the resolver call that builds it, can keep a handle.
#[derive(Clone)]
pub struct LiveLoader(pub Arc<DataLoader<DbLoader>>);

impl LiveLoader {
    pub fn new(db: DatabaseConnection) -> LiveLoader {
        LiveLoader(Arc::new(
            DataLoader::new(DbLoader { db }, spawn_after_yield).delay(Duration::ZERO),
        ))
    }
}

macro_rules! by_id_loader {
    ($($key:ty => $module:ident),+ $(,)?) => {$(
        impl Loader<$key> for DbLoader {
            type Value = $module::Model;
            type Error = Arc<DbErr>;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let rows = $module::Entity::find()
                    .filter($module::Column::Id.is_in(keys.iter().copied()))
                    .all(&self.db)
                    .await
                    .map_err(Arc::new)?;
                Ok(rows.into_iter().map(|row| (row.id, row)).collect())
            }
        }
    )+};
}

by_id_loader! {
    ClientId => client,
    StaffId => staff,
    ServiceId => service,
    LocationId => location,
    AppointmentId => appointment,
    QueueEntryId => queue_entry,
    VisitId => visit,
    WebhookEventId => webhook_event,
}

/// The state history of a queue entry, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryOf(pub QueueEntryId);

impl Loader<HistoryOf> for DbLoader {
    type Value = Vec<queue_state_history::Model>;
    type Error = Arc<DbErr>;

    async fn load(
        &self,
        keys: &[HistoryOf],
    ) -> Result<HashMap<HistoryOf, Self::Value>, Self::Error> {
        let rows = queue_state_history::Entity::find()
            .filter(queue_state_history::Column::QueueEntryId.is_in(keys.iter().map(|k| k.0)))
            .order_by_asc(queue_state_history::Column::Id)
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        let mut grouped: HashMap<HistoryOf, Self::Value> = HashMap::new();
        for row in rows {
            grouped
                .entry(HistoryOf(row.queue_entry_id))
                .or_default()
                .push(row);
        }
        Ok(grouped)
    }
}

/// The inbox rows that touched an entity (its lineage), oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineageOf {
    pub entity_type: &'static str,
    pub entity_id: i64,
}

impl Loader<LineageOf> for DbLoader {
    type Value = Vec<entity_lineage::Model>;
    type Error = Arc<DbErr>;

    async fn load(
        &self,
        keys: &[LineageOf],
    ) -> Result<HashMap<LineageOf, Self::Value>, Self::Error> {
        let mut grouped: HashMap<LineageOf, Self::Value> = HashMap::new();
        let mut by_type: HashMap<&'static str, Vec<i64>> = HashMap::new();
        for key in keys {
            by_type
                .entry(key.entity_type)
                .or_default()
                .push(key.entity_id);
        }
        for (entity_type, ids) in by_type {
            let rows = entity_lineage::Entity::find()
                .filter(entity_lineage::Column::EntityType.eq(entity_type))
                .filter(entity_lineage::Column::EntityId.is_in(ids))
                .order_by_asc(entity_lineage::Column::WebhookEventId)
                .all(&self.db)
                .await
                .map_err(Arc::new)?;
            for row in rows {
                grouped
                    .entry(LineageOf {
                        entity_type,
                        entity_id: row.entity_id,
                    })
                    .or_default()
                    .push(row);
            }
        }
        Ok(grouped)
    }
}

/// The entities an inbox row touched (the other direction of lineage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TouchedBy(pub WebhookEventId);

impl Loader<TouchedBy> for DbLoader {
    type Value = Vec<entity_lineage::Model>;
    type Error = Arc<DbErr>;

    async fn load(
        &self,
        keys: &[TouchedBy],
    ) -> Result<HashMap<TouchedBy, Self::Value>, Self::Error> {
        let rows = entity_lineage::Entity::find()
            .filter(entity_lineage::Column::WebhookEventId.is_in(keys.iter().map(|k| k.0)))
            .all(&self.db)
            .await
            .map_err(Arc::new)?;
        let mut grouped: HashMap<TouchedBy, Self::Value> = HashMap::new();
        for row in rows {
            grouped
                .entry(TouchedBy(row.webhook_event_id))
                .or_default()
                .push(row);
        }
        Ok(grouped)
    }
}
