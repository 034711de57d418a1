//! Queue tickets read together with their client, staff and service in one statement (three
//! `LEFT JOIN`s on primary keys), decoded by column position.
//!
//! Why not sea-orm's own decoder for the join (`find_also_related(..).all()`): it finds each
//! column of a joined row by its prefixed alias, building the name with `format!` for every
//! column of every row, and turns every NULL into an error whose text is another `format!`.
//! For a 50-ticket board (60 columns a row) that was 47 % of the gateway's instructions per
//! request under callgrind (bench/RESULTS.md, sixth session). The statement is still sea-orm's;
//! only the decoding walks the columns in the order sea-orm selects them: each entity's
//! columns in declaration order, entity after entity. A board's tickets share their staff and
//! service: each referenced row is decoded once. The struct literals below name every
//! field, so a new column fails to compile here; a reordered one is caught by the test
//! `a_joined_board_decodes_to_the_same_models_as_reading_each_table`.

use std::collections::HashSet;

use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, Iterable, ModelTrait, QueryResult, QueryTrait, Select,
    TryGetable,
};

use entity::ids::{ClientId, ServiceId, StaffId};
use entity::{client, queue_entry, service, staff};

/// Tickets in the select's order, and the distinct rows they point at (a board's tickets share
/// their service and staff; each is decoded once, not once per ticket).
#[derive(Debug, Default)]
pub struct TicketsWithRefs {
    pub entries: Vec<queue_entry::Model>,
    pub clients: Vec<client::Model>,
    pub staff: Vec<staff::Model>,
    pub services: Vec<service::Model>,
}

/// Runs `select` over queue entries joined with their client, staff and service.
pub async fn tickets_with_refs(
    db: &impl ConnectionTrait,
    select: Select<queue_entry::Entity>,
) -> Result<TicketsWithRefs, DbErr> {
    let statement = select
        .find_also_related(client::Entity)
        .find_also(queue_entry::Entity, staff::Entity)
        .find_also(queue_entry::Entity, service::Entity)
        .build(db.get_database_backend());
    let rows = db.query_all_raw(statement).await?;
    let mut board = TicketsWithRefs {
        entries: Vec::with_capacity(rows.len()),
        ..TicketsWithRefs::default()
    };
    let (mut seen_clients, mut seen_staff, mut seen_services) =
        (HashSet::new(), HashSet::new(), HashSet::new());
    for row in &rows {
        let mut c = Columns { row, at: 0 };
        board.entries.push(decode_entry(&mut c)?);
        if let Some(client) = joined(&mut c, &mut seen_clients, decode_client)? {
            board.clients.push(client);
        }
        if let Some(member) = joined(&mut c, &mut seen_staff, decode_staff)? {
            board.staff.push(member);
        }
        if let Some(service) = joined(&mut c, &mut seen_services, decode_service)? {
            board.services.push(service);
        }
    }
    Ok(board)
}

/// A cursor over one row's columns.
struct Columns<'a> {
    row: &'a QueryResult,
    at: usize,
}

impl Columns<'_> {
    fn next<T: TryGetable>(&mut self) -> Result<T, DbErr> {
        let value = self.row.try_get_by_index(self.at);
        self.at += 1;
        value
    }
}

/// The next joined entity: `None` (its columns stepped over) when the join found no row or an
/// earlier row already carried it; else decoded by `rest` from the columns after its key.
fn joined<K, M>(
    c: &mut Columns<'_>,
    seen: &mut HashSet<K>,
    rest: fn(K, &mut Columns<'_>) -> Result<M, DbErr>,
) -> Result<Option<M>, DbErr>
where
    K: TryGetable + std::hash::Hash + Eq + Copy,
    M: ModelTrait,
{
    let start = c.at;
    let key: Option<K> = c.next()?;
    let model = match key {
        Some(key) if seen.insert(key) => Some(rest(key, c)?),
        _ => None,
    };
    c.at = start + <M::Entity as EntityTrait>::Column::iter().count();
    Ok(model)
}

fn decode_entry(c: &mut Columns<'_>) -> Result<queue_entry::Model, DbErr> {
    Ok(queue_entry::Model {
        id: c.next()?,
        source_id: c.next()?,
        vendor_id: c.next()?,
        client_id: c.next()?,
        service_id: c.next()?,
        staff_id: c.next()?,
        appointment_id: c.next()?,
        appointment_vendor_id: c.next()?,
        state: c.next()?,
        state_code: c.next()?,
        state_name: c.next()?,
        state_label: c.next()?,
        queue_date: c.next()?,
        time_zone: c.next()?,
        notes: c.next()?,
        vendor_created_at: c.next()?,
        version: c.next()?,
        deleted: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
    })
}

fn decode_client(id: ClientId, c: &mut Columns<'_>) -> Result<client::Model, DbErr> {
    Ok(client::Model {
        id,
        source_id: c.next()?,
        vendor_id: c.next()?,
        first_name: c.next()?,
        last_name: c.next()?,
        full_name: c.next()?,
        phone: c.next()?,
        email: c.next()?,
        custom_fields: c.next()?,
        version: c.next()?,
        deleted: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
    })
}

fn decode_staff(id: StaffId, c: &mut Columns<'_>) -> Result<staff::Model, DbErr> {
    Ok(staff::Model {
        id,
        source_id: c.next()?,
        vendor_id: c.next()?,
        name: c.next()?,
        email: c.next()?,
        time_zone: c.next()?,
        service_ids: c.next()?,
        version: c.next()?,
        deleted: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
    })
}

fn decode_service(id: ServiceId, c: &mut Columns<'_>) -> Result<service::Model, DbErr> {
    Ok(service::Model {
        id,
        source_id: c.next()?,
        vendor_id: c.next()?,
        name: c.next()?,
        duration_minutes: c.next()?,
        staff_ids: c.next()?,
        version: c.next()?,
        deleted: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
    })
}
