//! Subscription root. Every stream is the same mechanism: subscribe to the bus first, then
//! replay the log after the client's cursor, then go live, skipping at the seam whatever the
//! replay already delivered (cursor ≤ last sent). A receiver that lags behind the bus catches
//! up from the log. So a stream is gap-free and in commit order, on one process or many.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, ID, InputObject, Subscription};
use entity::domain_event;
use entity::ids::{
    AppointmentId, ClientId, EventCursor, QueueEntryId, ServiceId, StaffId, VisitId,
};
use futures_util::{Stream, StreamExt};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::broadcast;

use super::error::{ApiError, ApiResult};
use super::ids::{NodeKind, decode_as};
use super::loaders::{DbLoader, LiveLoader};
use super::types::{Appointment, DomainEvent, QueueEntry, Visit};
use crate::bus::{self, Bus};

/// Which events a subscription wants; every given condition must hold.
#[derive(InputObject, Default, Clone)]
pub struct EventFilter {
    /// Event kinds, e.g. QUEUE_ENTRY_CHANGED.
    pub kinds: Option<Vec<String>>,
    pub source_ids: Option<Vec<String>>,
    pub service_id: Option<ID>,
    pub staff_id: Option<ID>,
    pub client_id: Option<ID>,
}

#[derive(Default)]
struct Matcher {
    kinds: Option<HashSet<String>>,
    sources: Option<HashSet<String>>,
    service: Option<ServiceId>,
    staff: Option<StaffId>,
    client: Option<ClientId>,
    entity_type: Option<&'static str>,
}

impl Matcher {
    fn new(filter: Option<EventFilter>, entity_type: Option<&'static str>) -> ApiResult<Matcher> {
        let filter = filter.unwrap_or_default();
        let id = |id: Option<ID>, kind| id.map(|id| decode_as(&id, kind)).transpose();
        Ok(Matcher {
            kinds: filter.kinds.map(|k| k.into_iter().collect()),
            sources: filter.source_ids.map(|s| s.into_iter().collect()),
            service: id(filter.service_id, NodeKind::Service)?.map(ServiceId),
            staff: id(filter.staff_id, NodeKind::Staff)?.map(StaffId),
            client: id(filter.client_id, NodeKind::Client)?.map(ClientId),
            entity_type,
        })
    }

    fn matches(&self, event: &domain_event::Model) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&event.kind))
            && self.sources.as_ref().is_none_or(|sources| {
                event
                    .source_id
                    .as_ref()
                    .is_some_and(|source| sources.contains(source.as_str()))
            })
            && self
                .service
                .is_none_or(|service| event.service_id == Some(service))
            && self.staff.is_none_or(|staff| event.staff_id == Some(staff))
            && self
                .client
                .is_none_or(|client| event.client_id == Some(client))
            && self
                .entity_type
                .is_none_or(|entity_type| event.entity_type == entity_type)
    }
}

/// Reads a client's `after` cursor: malformed, from the future, or older than the retained
/// history are errors that end this subscription only.
async fn start_cursor(
    db: &DatabaseConnection,
    after: Option<String>,
) -> ApiResult<Option<EventCursor>> {
    let Some(text) = after else { return Ok(None) };
    let cursor = text
        .parse::<i64>()
        .ok()
        .filter(|c| *c >= 0)
        .map(EventCursor)
        .ok_or_else(|| ApiError::bad_input(format!("{text:?} is not an event cursor")))?;
    let pruned_through = crate::store::events::pruned_through(db).await?;
    if cursor < pruned_through {
        return Err(ApiError::ResyncRequired(format!(
            "events up to cursor {} were pruned; cursor {text} is older than the retained \
             history: resync (reload current state and subscribe without `after`)",
            pruned_through.0
        )));
    }
    if cursor > bus::latest_cursor(db).await?.max(pruned_through) {
        return Err(ApiError::bad_input(format!(
            "cursor {text} is newer than any event; resync"
        )));
    }
    Ok(Some(cursor))
}

const CATCH_UP_PAGE: u64 = 500;

/// State of one event stream.
struct Tail {
    db: DatabaseConnection,
    receiver: broadcast::Receiver<Arc<domain_event::Model>>,
    last: EventCursor,
    backlog: VecDeque<domain_event::Model>,
    catching_up: bool,
    matcher: Matcher,
    failed: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(ApiResult<domain_event::Model>, Tail)> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.cursor;
                if self.matcher.matches(&event) {
                    return Some((Ok(event), self));
                }
                continue;
            }
            if self.catching_up {
                match bus::events_after(&self.db, self.last, CATCH_UP_PAGE).await {
                    Ok(rows) => {
                        self.catching_up = rows.len() as u64 == CATCH_UP_PAGE;
                        self.backlog.extend(rows);
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some((Err(ApiError::from(error)), self));
                    }
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) if event.cursor > self.last => self.backlog.push_back((*event).clone()),
                Ok(_already_replayed) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "subscriber fell behind the bus; catching up from the log"
                    );
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Committed events matching `matcher`, after `after` (or from now), gap-free and in order.
async fn committed_events(
    ctx: &Context<'_>,
    matcher: Matcher,
    after: Option<String>,
) -> ApiResult<impl Stream<Item = ApiResult<domain_event::Model>> + use<>> {
    let db = ctx
        .data::<DatabaseConnection>()
        .map_err(|_| ApiError::Internal)?
        .clone();
    let bus = ctx.data::<Bus>().map_err(|_| ApiError::Internal)?;
    // Subscribe before reading the log, so nothing committed in between is missed.
    let receiver = bus.subscribe();
    let (last, catching_up) = match start_cursor(&db, after).await? {
        Some(cursor) => (cursor, true),
        None => (bus::latest_cursor(&db).await?, false),
    };
    let tail = Tail {
        db,
        receiver,
        last,
        backlog: VecDeque::new(),
        catching_up,
        matcher,
        failed: false,
    };
    Ok(futures_util::stream::unfold(tail, Tail::next))
}

#[derive(Default)]
pub struct Subscription;

#[Subscription(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl Subscription {
    /// Everything that happens in the clinic. With `after`, first replays every stored event
    /// after that cursor, then continues live with no gap and no duplicate.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ApiResult<DomainEvent>> + use<>> {
        let events = committed_events(ctx, Matcher::new(filter, None)?, after).await?;
        Ok(events.map(|event| event.map(DomainEvent::from)))
    }

    /// Queue tickets as they change, optionally of one service.
    async fn queue_changed(
        &self,
        ctx: &Context<'_>,
        service_id: Option<ID>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ApiResult<QueueEntry>> + use<>> {
        let filter = EventFilter {
            service_id,
            ..EventFilter::default()
        };
        Ok(entity_changes(
            ctx,
            Some(filter),
            "QueueEntry",
            after,
            QueueEntryId,
            QueueEntry,
        )
        .await?)
    }

    /// Appointments as they change.
    async fn appointment_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ApiResult<Appointment>> + use<>> {
        Ok(entity_changes(
            ctx,
            filter,
            "Appointment",
            after,
            AppointmentId,
            Appointment,
        )
        .await?)
    }

    /// Telehealth visits as they change.
    async fn visit_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ApiResult<Visit>> + use<>> {
        Ok(entity_changes(ctx, filter, "Visit", after, VisitId, Visit).await?)
    }
}

/// The events of one entity type as a stream of that entity's current state, loaded when the
/// event is delivered, so a subscriber always sees the newest state. The load goes through the
/// process-wide live loader: every stream woken by the same event asks for the same id at the
/// same moment, and the loader turns those asks into one statement.
async fn entity_changes<K, M, T>(
    ctx: &Context<'_>,
    filter: Option<EventFilter>,
    entity_type: &'static str,
    after: Option<String>,
    key: fn(i64) -> K,
    wrap: fn(M) -> T,
) -> ApiResult<impl Stream<Item = ApiResult<T>> + use<K, M, T>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    M: Send + Sync + Clone + 'static,
    T: Send + 'static,
    DbLoader: Loader<K, Value = M, Error = Arc<DbErr>>,
{
    let events = committed_events(ctx, Matcher::new(filter, Some(entity_type))?, after).await?;
    let loader = ctx
        .data::<LiveLoader>()
        .map_err(|_| ApiError::Internal)?
        .clone();
    Ok(events.then(move |event| {
        let loader = loader.clone();
        async move {
            let id = event?.entity_id;
            let row = loader.0.load_one(key(id)).await?;
            row.map(wrap)
                .ok_or_else(|| ApiError::NotFound(format!("{entity_type} {id}")))
        }
    }))
}
