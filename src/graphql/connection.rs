//! Relay cursor connections over any entity, keyed by its auto-increment id: stable order
//! (insertion order), cursors that survive inserts, `first/after` and `last/before`, and a
//! `totalCount` computed only when it is asked for.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, OutputType, SimpleObject};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use super::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

/// Extra connection fields.
#[derive(SimpleObject)]
pub struct Totals {
    /// Items matching the filter, across all pages.
    pub total_count: u64,
}

#[derive(Debug, Default, Clone)]
pub struct PageArgs {
    pub after: Option<String>,
    pub before: Option<String>,
    pub first: Option<i32>,
    pub last: Option<i32>,
}

fn parse_cursor(cursor: &Option<String>) -> ApiResult<Option<i64>> {
    cursor
        .as_deref()
        .map(|text| {
            text.parse::<i64>()
                .map_err(|_| ApiError::bad_input(format!("{text:?} is not a cursor of this list")))
        })
        .transpose()
}

fn page_size(value: Option<i32>, name: &str) -> ApiResult<Option<u64>> {
    match value {
        None => Ok(None),
        Some(n) if n < 0 => Err(ApiError::bad_input(format!(
            "`{name}` must not be negative"
        ))),
        Some(n) if n as u64 > MAX_PAGE => Err(ApiError::bad_input(format!(
            "`{name}` is at most {MAX_PAGE}"
        ))),
        Some(n) => Ok(Some(n as u64)),
    }
}

/// Runs one page of `select` ordered by `id_column`.
pub async fn paginate<E, N>(
    ctx: &Context<'_>,
    db: &DatabaseConnection,
    select: Select<E>,
    id_column: E::Column,
    id_of: fn(&E::Model) -> i64,
    to_node: fn(E::Model) -> N,
    args: PageArgs,
) -> ApiResult<Connection<String, N, Totals>>
where
    E: EntityTrait,
    E::Model: Sync,
    N: OutputType,
{
    let first = page_size(args.first, "first")?;
    let last = page_size(args.last, "last")?;
    if first.is_some() && last.is_some() {
        return Err(ApiError::bad_input("give `first` or `last`, not both"));
    }
    let after = parse_cursor(&args.after)?;
    let before = parse_cursor(&args.before)?;

    let total_count = if ctx.look_ahead().field("totalCount").exists() {
        select.clone().count(db).await?
    } else {
        0
    };
    let mut page = select;
    if let Some(after) = after {
        page = page.filter(id_column.gt(after));
    }
    if let Some(before) = before {
        page = page.filter(id_column.lt(before));
    }
    let (rows, has_previous, has_next) = match last {
        Some(last) => {
            let mut rows = page
                .order_by_desc(id_column)
                .limit(last + 1)
                .all(db)
                .await?;
            let more = rows.len() as u64 > last;
            rows.truncate(last as usize);
            rows.reverse();
            (rows, more, before.is_some())
        }
        None => {
            let first = first.unwrap_or(DEFAULT_PAGE);
            let mut rows = page
                .order_by_asc(id_column)
                .limit(first + 1)
                .all(db)
                .await?;
            let more = rows.len() as u64 > first;
            rows.truncate(first as usize);
            (rows, after.is_some(), more)
        }
    };
    let mut connection =
        Connection::with_additional_fields(has_previous, has_next, Totals { total_count });
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(id_of(&row).to_string(), to_node(row))),
    );
    Ok(connection)
}
