//! Query root, merged from one object per area. Resolvers translate arguments into a filtered
//! `Select` (helpers at the bottom) and hand it to `paginate`; nested data comes from loaders.

use std::sync::Arc;

use async_graphql::{Context, ID, MergedObject, Object};
use chrono::NaiveDate;
use entity::ids::{ClientId, ServiceId, SourceId, StaffId};
use entity::{
    alert, appointment, client, domain_event, location, payment, queue_entry, service, source,
    staff, vcita_subscription, visit, webhook_event,
};
use sea_orm::sea_query::{Condition, Expr, Func};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use super::connection::{PageArgs, Totals, paginate};
use super::error::{ApiError, ApiResult};
use super::filters::{
    AppointmentFilter, ClientSearch, PaymentFilter, QueueEntryFilter, TimeRange, VisitFilter,
    WebhookEventFilter,
};
use super::ids::{NodeKind, decode, decode_as};
use super::limits::{self, ALERTS_PAGE, AUDIT_PAGE, EVENTS_PAGE};
use super::types::*;
use crate::auth::Caller;
use crate::config::Config;
use async_graphql::connection::Connection;

#[derive(MergedObject, Default)]
pub struct Query(
    NodeQuery,
    QueueQuery,
    AppointmentQuery,
    VisitQuery,
    ClientQuery,
    AdminQuery,
);

/// The database, leased within the caller's share of the pool (see `limits::DbShares`): the
/// lease is held until the returned value is dropped, i.e. for the resolver's statement.
async fn db<'a>(ctx: &'a Context<'_>) -> ApiResult<Db<'a>> {
    let connection = ctx
        .data::<DatabaseConnection>()
        .map_err(|_| ApiError::Internal)?;
    let lease = match (ctx.data_opt::<limits::DbShares>(), ctx.data_opt::<Caller>()) {
        (Some(shares), Some(caller)) => shares.lease(&caller.key_name).await,
        _ => None,
    };
    Ok(Db {
        connection,
        _lease: lease,
    })
}

/// A database connection handle and the key's lease that lets the resolver use it.
struct Db<'a> {
    connection: &'a DatabaseConnection,
    _lease: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Db<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.connection
    }
}

fn page(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> PageArgs {
    PageArgs {
        first,
        after,
        last,
        before,
    }
}

#[derive(Default)]
pub struct NodeQuery;

#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl NodeQuery {
    /// Any object by its global id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        let (kind, number) = decode(&id)?;
        load_node(ctx, kind, number).await
    }

    /// Domain events after a cursor, oldest first (what a subscription replays on resume).
    /// `first` is at most 1000.
    #[graphql(complexity = "limits::page_cost(first, EVENTS_PAGE, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(default = 100)] first: u64,
    ) -> ApiResult<Vec<DomainEvent>> {
        let after = match after {
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| ApiError::bad_input("malformed cursor"))?,
            None => 0,
        };
        let rows = domain_event::Entity::find()
            .filter(domain_event::Column::Cursor.gt(after))
            .order_by_asc(domain_event::Column::Cursor)
            .limit(limits::check_page(first, EVENTS_PAGE)?)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(DomainEvent::from).collect())
    }

    /// The configured webhook sources, with their last delivery and failure count.
    #[graphql(complexity = "limits::list_cost(limits::REFERENCE_SIZE, child_complexity)")]
    async fn sources(&self, ctx: &Context<'_>) -> ApiResult<Vec<Source>> {
        let config = ctx.data::<Arc<Config>>().map_err(|_| ApiError::Internal)?;
        let db = &*db(ctx).await?;
        let rows = source::Entity::find().all(db).await?;
        let failed: Vec<(SourceId, i64)> = webhook_event::Entity::find()
            .select_only()
            .column(webhook_event::Column::SourceId)
            .column_as(webhook_event::Column::Id.count(), "failed")
            .filter(webhook_event::Column::Status.is_in(["FAILED", "UNSUPPORTED", "REJECTED"]))
            .group_by(webhook_event::Column::SourceId)
            .into_tuple()
            .all(db)
            .await?;
        Ok(config
            .sources
            .iter()
            .map(|configured| {
                let id = configured.id.as_str();
                Source {
                    id: id.to_owned(),
                    vendor: configured.vendor.to_string(),
                    webhook_path: format!("/webhooks/{id}"),
                    last_delivery_at: rows
                        .iter()
                        .find(|row| row.id.0 == id)
                        .and_then(|row| row.last_delivery_at),
                    failed_deliveries: failed
                        .iter()
                        .find(|(s, _)| s.0 == id)
                        .map_or(0, |(_, n)| *n as u64),
                }
            })
            .collect())
    }
}

/// Loads one node by kind and row id.
pub(crate) async fn load_node(
    ctx: &Context<'_>,
    kind: NodeKind,
    id: i64,
) -> ApiResult<Option<Node>> {
    use entity::ids::*;
    let db = &*db(ctx).await?;
    Ok(match kind {
        NodeKind::Client => load_ref(ctx, Some(ClientId(id)))
            .await?
            .map(|m| Node::Client(Client(m))),
        NodeKind::Staff => load_ref(ctx, Some(StaffId(id)))
            .await?
            .map(|m| Node::Staff(Staff(m))),
        NodeKind::Service => load_ref(ctx, Some(ServiceId(id)))
            .await?
            .map(|m| Node::Service(Service(m))),
        NodeKind::Location => load_ref(ctx, Some(LocationId(id)))
            .await?
            .map(|m| Node::Location(Location(m))),
        NodeKind::QueueEntry => load_ref(ctx, Some(QueueEntryId(id)))
            .await?
            .map(|m| Node::QueueEntry(QueueEntry(m))),
        NodeKind::Appointment => load_ref(ctx, Some(AppointmentId(id)))
            .await?
            .map(|m| Node::Appointment(Appointment(m))),
        NodeKind::WebhookEvent => load_ref(ctx, Some(WebhookEventId(id)))
            .await?
            .map(|m| Node::WebhookEvent(WebhookEvent(m))),
        NodeKind::Visit => visit::Entity::find_by_id(VisitId(id))
            .one(db)
            .await?
            .map(|m| Node::Visit(Visit(m))),
        NodeKind::Payment => payment::Entity::find_by_id(PaymentId(id))
            .one(db)
            .await?
            .map(|m| Node::Payment(Payment(m))),
        NodeKind::Alert => alert::Entity::find_by_id(AlertId(id))
            .one(db)
            .await?
            .map(|m| Node::Alert(Alert(m))),
        NodeKind::VcitaSubscription => {
            vcita_subscription::Entity::find_by_id(VcitaSubscriptionId(id))
                .one(db)
                .await?
                .map(|m| Node::VcitaSubscription(VcitaSubscription(m)))
        }
    })
}

#[derive(Default)]
pub struct QueueQuery;

#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl QueueQuery {
    /// Live-queue tickets, filtered, as a Relay connection (insertion order).
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn queue_entries(
        &self,
        ctx: &Context<'_>,
        filter: Option<QueueEntryFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, QueueEntry, Totals>> {
        let select = queue_entry_select(filter.unwrap_or_default())?;
        let connection = paginate(
            ctx,
            &*db(ctx).await?,
            select,
            queue_entry::Column::Id,
            |m| m.id.0,
            QueueEntry,
            page(first, after, last, before),
        )
        .await?;
        let rows = connection
            .edges
            .iter()
            .map(|e| (e.node.0.client_id, e.node.0.staff_id, e.node.0.service_id));
        prefetch_refs(ctx, ctx.look_ahead().field("edges").field("node"), rows).await?;
        Ok(connection)
    }

    /// Today's board of one service: the tickets of that clinic-local day in queue order
    /// (joined first, first), deleted tickets left out.
    #[graphql(complexity = "limits::list_cost(limits::BOARD_SIZE, child_complexity)")]
    async fn queue(
        &self,
        ctx: &Context<'_>,
        service_id: ID,
        date: NaiveDate,
    ) -> ApiResult<Vec<QueueEntry>> {
        let service = ServiceId(decode_as(&service_id, NodeKind::Service)?);
        let select = queue_entry::Entity::find()
            .filter(queue_entry::Column::ServiceId.eq(service))
            .filter(queue_entry::Column::QueueDate.eq(date))
            .filter(queue_entry::Column::Deleted.eq(false))
            .order_by_asc(queue_entry::Column::VendorCreatedAt)
            .order_by_asc(queue_entry::Column::Id);
        let rows = queue_entries_with_refs(ctx, &*db(ctx).await?, ctx.look_ahead(), select).await?;
        Ok(rows.into_iter().map(QueueEntry).collect())
    }

    /// Services of every source (or of the given ones), by name.
    #[graphql(complexity = "limits::list_cost(limits::REFERENCE_SIZE, child_complexity)")]
    async fn services(
        &self,
        ctx: &Context<'_>,
        source_ids: Option<Vec<String>>,
    ) -> ApiResult<Vec<Service>> {
        let mut select = service::Entity::find().filter(service::Column::Deleted.eq(false));
        if let Some(ids) = source_ids {
            select = select.filter(service::Column::SourceId.is_in(ids.into_iter().map(SourceId)));
        }
        let rows = select
            .order_by_asc(service::Column::Name)
            .order_by_asc(service::Column::Id)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(Service).collect())
    }

    /// Staff of every source (or of the given ones), by name.
    #[graphql(complexity = "limits::list_cost(limits::REFERENCE_SIZE, child_complexity)")]
    async fn staff(
        &self,
        ctx: &Context<'_>,
        source_ids: Option<Vec<String>>,
    ) -> ApiResult<Vec<Staff>> {
        let mut select = staff::Entity::find().filter(staff::Column::Deleted.eq(false));
        if let Some(ids) = source_ids {
            select = select.filter(staff::Column::SourceId.is_in(ids.into_iter().map(SourceId)));
        }
        let rows = select
            .order_by_asc(staff::Column::Name)
            .order_by_asc(staff::Column::Id)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(Staff).collect())
    }

    /// Locations (TimeTap).
    #[graphql(complexity = "limits::list_cost(limits::REFERENCE_SIZE, child_complexity)")]
    async fn locations(&self, ctx: &Context<'_>) -> ApiResult<Vec<Location>> {
        let rows = location::Entity::find()
            .order_by_asc(location::Column::Id)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(Location).collect())
    }
}

#[derive(Default)]
pub struct AppointmentQuery;

#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl AppointmentQuery {
    /// Appointments of every vendor, filtered, as a Relay connection (insertion order).
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn appointments(
        &self,
        ctx: &Context<'_>,
        filter: Option<AppointmentFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, Appointment, Totals>> {
        let select = appointment_select(filter.unwrap_or_default())?;
        let connection = paginate(
            ctx,
            &*db(ctx).await?,
            select,
            appointment::Column::Id,
            |m| m.id.0,
            Appointment,
            page(first, after, last, before),
        )
        .await?;
        let rows = connection
            .edges
            .iter()
            .map(|e| (e.node.0.client_id, e.node.0.staff_id, e.node.0.service_id));
        prefetch_refs(ctx, ctx.look_ahead().field("edges").field("node"), rows).await?;
        Ok(connection)
    }

    /// vCita payments.
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn payments(
        &self,
        ctx: &Context<'_>,
        filter: Option<PaymentFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, Payment, Totals>> {
        let select = payment_select(filter.unwrap_or_default())?;
        paginate(
            ctx,
            &*db(ctx).await?,
            select,
            payment::Column::Id,
            |m| m.id.0,
            Payment,
            page(first, after, last, before),
        )
        .await
    }
}

#[derive(Default)]
pub struct VisitQuery;

#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl VisitQuery {
    /// VSee telehealth visits.
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn visits(
        &self,
        ctx: &Context<'_>,
        filter: Option<VisitFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, Visit, Totals>> {
        let select = visit_select(filter.unwrap_or_default())?;
        let connection = paginate(
            ctx,
            &*db(ctx).await?,
            select,
            visit::Column::Id,
            |m| m.id.0,
            Visit,
            page(first, after, last, before),
        )
        .await?;
        let rows = connection
            .edges
            .iter()
            .map(|e| (e.node.0.client_id, e.node.0.staff_id, None));
        prefetch_refs(ctx, ctx.look_ahead().field("edges").field("node"), rows).await?;
        Ok(connection)
    }
}

#[derive(Default)]
pub struct ClientQuery;

#[allow(clippy::too_many_arguments)] // GraphQL arguments, one per parameter
#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl ClientQuery {
    /// Patients; `search` matches name, phone (digits) or email, case-insensitively.
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        source_ids: Option<Vec<String>>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, Client, Totals>> {
        let select = client_select(search, source_ids)?;
        paginate(
            ctx,
            &*db(ctx).await?,
            select,
            client::Column::Id,
            |m| m.id.0,
            Client,
            page(first, after, last, before),
        )
        .await
    }
}

#[derive(Default)]
pub struct AdminQuery;

#[Object(guard = "super::guard::RequireScope(crate::config::Scope::Read)")]
impl AdminQuery {
    /// The inbox: every stored delivery and what became of it.
    #[graphql(complexity = "limits::connection_cost(first, last, child_complexity)")]
    async fn webhook_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<WebhookEventFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Connection<String, WebhookEvent, Totals>> {
        let select = webhook_event_select(filter.unwrap_or_default())?;
        paginate(
            ctx,
            &*db(ctx).await?,
            select,
            webhook_event::Column::Id,
            |m| m.id.0,
            WebhookEvent,
            page(first, after, last, before),
        )
        .await
    }

    /// Outbound patient alerts, newest first. `first` is at most 500.
    #[graphql(complexity = "limits::page_cost(first, ALERTS_PAGE, child_complexity)")]
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        status: Option<AlertStatus>,
        #[graphql(default = 50)] first: u64,
    ) -> ApiResult<Vec<Alert>> {
        let mut select = alert::Entity::find();
        if let Some(status) = status {
            select = select.filter(alert::Column::Status.eq(stored_name(status)));
        }
        let rows = select
            .order_by_desc(alert::Column::Id)
            .limit(limits::check_page(first, ALERTS_PAGE)?)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(Alert).collect())
    }

    /// The audit log, newest first: mutations and admin reads, by key name. `first` is at
    /// most 1000.
    #[graphql(
        guard = "super::guard::Reads(super::guard::Class::Admin)",
        complexity = "limits::page_cost(first, AUDIT_PAGE, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u64,
    ) -> ApiResult<Vec<AuditEntry>> {
        let first = limits::check_page(first, AUDIT_PAGE)?;
        let rows = crate::store::audit::recent(&*db(ctx).await?, first).await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// vCita webhook subscriptions managed through CareBridge.
    #[graphql(complexity = "limits::list_cost(limits::REFERENCE_SIZE, child_complexity)")]
    async fn vcita_subscriptions(&self, ctx: &Context<'_>) -> ApiResult<Vec<VcitaSubscription>> {
        let rows = vcita_subscription::Entity::find()
            .order_by_asc(vcita_subscription::Column::Id)
            .all(&*db(ctx).await?)
            .await?;
        Ok(rows.into_iter().map(VcitaSubscription).collect())
    }
}

// ---- filter → Select ----

fn source_filter(ids: Option<Vec<String>>) -> Option<Vec<SourceId>> {
    ids.map(|ids| ids.into_iter().map(SourceId).collect())
}

fn range_condition<C: ColumnTrait>(column: C, range: Option<&TimeRange>) -> ApiResult<Condition> {
    let mut condition = Condition::all();
    if let Some(range) = range {
        let (from, to) = range.bounds()?;
        if let Some(from) = from {
            condition = condition.add(column.gte(from));
        }
        if let Some(to) = to {
            condition = condition.add(column.lt(to));
        }
    }
    Ok(condition)
}

fn opt_id<T>(id: Option<&ID>, kind: NodeKind, wrap: fn(i64) -> T) -> ApiResult<Option<T>> {
    id.map(|id| decode_as(id, kind).map(wrap)).transpose()
}

fn queue_entry_select(filter: QueueEntryFilter) -> ApiResult<Select<queue_entry::Entity>> {
    use queue_entry::Column as C;
    let mut select = queue_entry::Entity::find()
        .filter(range_condition(C::VendorCreatedAt, filter.joined.as_ref())?);
    if !filter.include_deleted.unwrap_or(false) {
        select = select.filter(C::Deleted.eq(false));
    }
    if let Some(ids) = source_filter(filter.source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(states) = filter.states {
        select = select.filter(C::State.is_in(states.into_iter().map(stored_name)));
    }
    if let Some(id) = opt_id(filter.service_id.as_ref(), NodeKind::Service, ServiceId)? {
        select = select.filter(C::ServiceId.eq(id));
    }
    if let Some(id) = opt_id(filter.staff_id.as_ref(), NodeKind::Staff, StaffId)? {
        select = select.filter(C::StaffId.eq(id));
    }
    if let Some(id) = opt_id(filter.client_id.as_ref(), NodeKind::Client, ClientId)? {
        select = select.filter(C::ClientId.eq(id));
    }
    if let Some(date) = filter.queue_date {
        select = select.filter(C::QueueDate.eq(date));
    }
    Ok(select)
}

fn appointment_select(filter: AppointmentFilter) -> ApiResult<Select<appointment::Entity>> {
    use appointment::Column as C;
    let mut select =
        appointment::Entity::find().filter(range_condition(C::StartsAt, filter.starts.as_ref())?);
    if !filter.include_deleted.unwrap_or(false) {
        select = select.filter(C::Deleted.eq(false));
    }
    if let Some(ids) = source_filter(filter.source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(statuses) = filter.statuses {
        select = select.filter(C::Status.is_in(statuses.into_iter().map(stored_name)));
    }
    if let Some(id) = opt_id(filter.service_id.as_ref(), NodeKind::Service, ServiceId)? {
        select = select.filter(C::ServiceId.eq(id));
    }
    if let Some(id) = opt_id(filter.staff_id.as_ref(), NodeKind::Staff, StaffId)? {
        select = select.filter(C::StaffId.eq(id));
    }
    if let Some(id) = opt_id(filter.client_id.as_ref(), NodeKind::Client, ClientId)? {
        select = select.filter(C::ClientId.eq(id));
    }
    Ok(select)
}

fn visit_select(filter: VisitFilter) -> ApiResult<Select<visit::Entity>> {
    use visit::Column as C;
    let mut select = visit::Entity::find().filter(range_condition(
        C::ScheduledStart,
        filter.scheduled.as_ref(),
    )?);
    if let Some(ids) = source_filter(filter.source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(statuses) = filter.statuses {
        select = select.filter(C::Status.is_in(statuses.into_iter().map(stored_name)));
    }
    if let Some(id) = opt_id(filter.staff_id.as_ref(), NodeKind::Staff, StaffId)? {
        select = select.filter(C::StaffId.eq(id));
    }
    if let Some(id) = opt_id(filter.client_id.as_ref(), NodeKind::Client, ClientId)? {
        select = select.filter(C::ClientId.eq(id));
    }
    Ok(select)
}

fn payment_select(filter: PaymentFilter) -> ApiResult<Select<payment::Entity>> {
    use payment::Column as C;
    let mut select = payment::Entity::find();
    if let Some(ids) = source_filter(filter.source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(states) = filter.states {
        select = select.filter(C::State.is_in(states));
    }
    if let Some(id) = opt_id(filter.client_id.as_ref(), NodeKind::Client, ClientId)? {
        select = select.filter(C::ClientId.eq(id));
    }
    Ok(select)
}

fn webhook_event_select(filter: WebhookEventFilter) -> ApiResult<Select<webhook_event::Entity>> {
    use webhook_event::Column as C;
    let mut select = webhook_event::Entity::find()
        .filter(range_condition(C::ReceivedAt, filter.received.as_ref())?);
    if let Some(ids) = source_filter(filter.source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(statuses) = filter.statuses {
        select = select.filter(C::Status.is_in(statuses.into_iter().map(stored_name)));
    }
    if let Some(event_type) = filter.event_type {
        select = select.filter(C::EventType.eq(event_type));
    }
    Ok(select)
}

/// Case-insensitive search over name, email and phone digits (LOWER … LIKE works the same on
/// SQLite and PostgreSQL); the text is validated by `ClientSearch`.
fn client_select(
    search: Option<String>,
    source_ids: Option<Vec<String>>,
) -> ApiResult<Select<client::Entity>> {
    use client::Column as C;
    use sea_orm::sea_query::ExprTrait;
    let mut select = client::Entity::find().filter(C::Deleted.eq(false));
    if let Some(ids) = source_filter(source_ids) {
        select = select.filter(C::SourceId.is_in(ids));
    }
    if let Some(search) = ClientSearch::parse(search.as_deref())? {
        let like = |column: C| {
            Expr::expr(Func::lower(Expr::col(column)))
                .like(sea_orm::sea_query::LikeExpr::new(search.like_pattern.clone()).escape('\\'))
        };
        let mut any = Condition::any()
            .add(like(C::FullName))
            .add(like(C::FirstName))
            .add(like(C::LastName))
            .add(like(C::Email));
        if let Some(digits) = search.phone_digits {
            any = any.add(C::Phone.contains(digits));
        }
        select = select.filter(any);
    }
    Ok(select)
}
