//! API types: each wraps an entity model (or a config value) and exposes it as the contract of
//! PRODUCT.md says. Nested entities are loaded through the request's DataLoader (HTTP) or the
//! process-wide live loader (websockets; see `loaders`). Normalized enums always travel with
//! the vendor's raw value.

mod enums;
mod objects;

pub use enums::*;
pub use objects::*;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Context, ID, Interface};
use sea_orm::{DatabaseConnection, DbErr, Select};
use std::sync::Arc;

use entity::ids::{ClientId, ServiceId, StaffId};
use entity::queue_entry;

use super::error::{ApiError, ApiResult};
use super::loaders::{DbLoader, LiveLoader};

/// Every object with a global id (`node(id)` finds it).
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Client(Client),
    Staff(Staff),
    Service(Service),
    Location(Location),
    QueueEntry(QueueEntry),
    Appointment(Appointment),
    Visit(Visit),
    Payment(Payment),
    WebhookEvent(WebhookEvent),
    Alert(Alert),
    VcitaSubscription(VcitaSubscription),
}

/// The request's loader: HTTP requests carry one with a per-request cache; everything else
/// (websocket subscriptions and operations) uses the schema's process-wide live loader, which
/// has no cache (a connection outlives the data it would cache) and batches the loads of all
/// connections together.
enum Loaders<'a> {
    Cached(&'a DataLoader<DbLoader, HashMapCache>),
    Uncached(&'a DataLoader<DbLoader>),
}

fn loaders<'a>(ctx: &'a Context<'_>) -> ApiResult<Loaders<'a>> {
    if let Some(loader) = ctx.data_opt::<DataLoader<DbLoader, HashMapCache>>() {
        return Ok(Loaders::Cached(loader));
    }
    ctx.data_opt::<LiveLoader>()
        .map(|live| Loaders::Uncached(&live.0))
        .ok_or(ApiError::Internal)
}

/// Loads one optional reference through the request's DataLoader.
pub(crate) async fn load_ref<K, V>(ctx: &Context<'_>, key: Option<K>) -> ApiResult<Option<V>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    DbLoader: Loader<K, Value = V, Error = Arc<DbErr>>,
{
    let Some(key) = key else { return Ok(None) };
    Ok(match loaders(ctx)? {
        Loaders::Cached(loader) => loader.load_one(key).await?,
        Loaders::Uncached(loader) => loader.load_one(key).await?,
    })
}

/// Loads one key whose value is a list (history, lineage); missing means empty.
pub(crate) async fn load_list<K, V>(ctx: &Context<'_>, key: K) -> ApiResult<Vec<V>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    DbLoader: Loader<K, Value = Vec<V>, Error = Arc<DbErr>>,
{
    let list = match loaders(ctx)? {
        Loaders::Cached(loader) => loader.load_one(key).await?,
        Loaders::Uncached(loader) => loader.load_one(key).await?,
    };
    Ok(list.unwrap_or_default())
}

/// The references a page of rows points at, loaded in one batch per kind before the rows'
/// field resolvers run. DataLoader alone batches by a short timer, and a large list resolves
/// in several polls, so a page could be split across batches; loading the whole page's keys at
/// once makes the statement count exact.
pub(crate) async fn prefetch_refs(
    ctx: &Context<'_>,
    selection: async_graphql::Lookahead<'_>,
    refs: impl Iterator<Item = (Option<ClientId>, Option<StaffId>, Option<ServiceId>)>,
) -> ApiResult<()> {
    // Only a cached loader keeps what is prefetched; without one, field loads batch anyway.
    let Loaders::Cached(loader) = loaders(ctx)? else {
        return Ok(());
    };
    let (mut clients, mut staff, mut services) = (Vec::new(), Vec::new(), Vec::new());
    for (client, member, service) in refs {
        clients.extend(client);
        staff.extend(member);
        services.extend(service);
    }
    let wants = |names: &[&str]| names.iter().any(|name| selection.field(name).exists());
    let (c, s, v) = tokio::join!(
        async {
            if wants(&["client", "patient"]) {
                loader.load_many(clients).await.map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if wants(&["staff", "provider"]) {
                loader.load_many(staff).await.map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if wants(&["service"]) {
                loader.load_many(services).await.map(drop)
            } else {
                Ok(())
            }
        },
    );
    c?;
    s?;
    v?;
    Ok(())
}

/// Runs `select` over queue entries and, when the selection asks for a client, staff or service,
/// fetches those in the same statement (three LEFT JOINs on primary keys; see `store::board`)
/// and feeds them to the request's loader, whose cache the field resolvers then hit. One
/// statement and one round trip for a whole board instead of one per kind, and no wait for the
/// DataLoader's batching timer.
/// Without a cached loader (websockets) the rows alone are read and the fields batch as usual.
pub(crate) async fn queue_entries_with_refs(
    ctx: &Context<'_>,
    db: &DatabaseConnection,
    selection: async_graphql::Lookahead<'_>,
    select: Select<queue_entry::Entity>,
) -> ApiResult<Vec<queue_entry::Model>> {
    let wants = |name: &str| selection.field(name).exists();
    let loader = match loaders(ctx)? {
        Loaders::Cached(loader) if wants("client") || wants("staff") || wants("service") => loader,
        _ => return Ok(select.all(db).await?),
    };
    let board = crate::store::board::tickets_with_refs(db, select).await?;
    loader
        .feed_many(board.clients.into_iter().map(|m| (m.id, m)))
        .await;
    loader
        .feed_many(board.staff.into_iter().map(|m| (m.id, m)))
        .await;
    loader
        .feed_many(board.services.into_iter().map(|m| (m.id, m)))
        .await;
    Ok(board.entries)
}
