//! What one GraphQL operation may cost and how many one API key may run at once, enforced by
//! one schema extension, so HTTP and both websocket protocols get the same rules.
//!
//! Before execution (no database work yet): the fields of any one selection set and the root
//! fields of an operation are counted with aliases, fragment spreads and inline fragments
//! expanded; then the operation's complexity, where every list counts its page size (or, for a
//! list whose length the data sets, a nominal size below) times its fields, and its depth.
//! Either refusal is `QUERY_TOO_COMPLEX` (HTTP 400 on both media types). Measured before these
//! rules: 1,200 aliases of `events(first: 1000)` counted 2,400 and ran, 30 MB and the whole pool.
//!
//! At execution: a key runs at most `max_concurrent_requests_per_key` operations at once
//! (`RATE_LIMITED`, HTTP 429 with Retry-After), and a query stops at `graphql_timeout_secs`
//! (`QUERY_TIMEOUT`, HTTP 503), its futures dropped, so no key holds pool connections for long.
//! Subscriptions are bounded per connection instead (`max_subscriptions_per_connection`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Positioned, Request, Response, ServerError, ServerResult, Variables};
use async_graphql::{ValidationResult, Value};
use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connection::{DEFAULT_PAGE, MAX_PAGE};
use super::error::ApiError;
use crate::auth::Caller;
use crate::config::Limits;

// ---- list sizes, for the fields' `complexity` attributes ----

/// `events(first:)` default and maximum.
pub const EVENTS_PAGE: (u64, u64) = (100, 1000);
/// `alerts(first:)` default and maximum.
pub const ALERTS_PAGE: (u64, u64) = (50, 500);
/// `auditLog(first:)` default and maximum.
pub const AUDIT_PAGE: (u64, u64) = (100, 1000);

/// Lists whose length the data sets, not the caller, count a nominal size: their real length
/// is not known before execution. A ticket's state history: a visit goes through a handful
/// of states.
pub const HISTORY_SIZE: u64 = 8;
/// The deliveries behind one entity, and the entities one delivery touched.
pub const LINEAGE_SIZE: u64 = 4;
/// Services, staff, locations, sources and vCita subscriptions of a clinic.
pub const REFERENCE_SIZE: u64 = 20;
/// One service's board for one day (`queue`), as large as a connection's largest page.
pub const BOARD_SIZE: u64 = MAX_PAGE;

/// `size` items of `child` each, plus the field itself.
pub fn list_cost(size: u64, child: usize) -> usize {
    usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_mul(child)
        .saturating_add(1)
}

/// A `first`-paged list: above `max` is refused by the resolver, so it costs `max`.
pub fn page_cost(first: u64, (_, max): (u64, u64), child: usize) -> usize {
    list_cost(first.clamp(1, max), child)
}

/// A Relay connection (`first` or `last`, at most `MAX_PAGE`, else `DEFAULT_PAGE`).
pub fn connection_cost(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let size = first
        .or(last)
        .map_or(DEFAULT_PAGE, |n| u64::try_from(n).unwrap_or(0));
    list_cost(size.clamp(1, MAX_PAGE), child)
}

/// Refuses a `first` above the list's maximum, as connections do.
pub fn check_page(first: u64, (_, max): (u64, u64)) -> Result<u64, ApiError> {
    if first > max {
        return Err(ApiError::bad_input(format!("`first` is at most {max}")));
    }
    Ok(first)
}

// ---- the HTTP answer of a refusal ----

/// How a response refused by these limits is answered over HTTP.
pub struct Refusal {
    pub status: StatusCode,
    /// Seconds, where waiting helps.
    pub retry_after: Option<u64>,
}

/// The refusal a response carries; `None` for any other response.
pub fn refusal(response: &Response) -> Option<Refusal> {
    if response.data != Value::Null {
        return None;
    }
    let code = response.errors.first()?.extensions.as_ref()?.get("code")?;
    let Value::String(code) = code else {
        return None;
    };
    // Auditing is the audit extension's: it records what ran, so a refused request (nothing
    // ran) leaves no row and a stopped query keeps the row of what it read.
    let (status, retry_after) = match code.as_str() {
        "QUERY_TOO_COMPLEX" => (StatusCode::BAD_REQUEST, None),
        "RATE_LIMITED" => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
        "QUERY_TIMEOUT" => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        _ => return None,
    };
    Some(Refusal {
        status,
        retry_after,
    })
}

fn server_error(error: ApiError) -> ServerError {
    let mut server_error = ServerError::new(error.message(), None);
    server_error.extensions = async_graphql::Error::from(error).extensions;
    server_error
}

// ---- the extension ----

/// The schema extension; one [`CostCheck`] per operation.
pub struct CostLimits {
    limits: Arc<Limits>,
    gates: Arc<KeyGates>,
}

impl CostLimits {
    pub fn new(limits: &Limits) -> CostLimits {
        CostLimits {
            limits: Arc::new(limits.clone()),
            gates: Arc::new(KeyGates::new(limits.max_concurrent_requests_per_key)),
        }
    }
}

impl ExtensionFactory for CostLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CostCheck {
            limits: self.limits.clone(),
            gates: self.gates.clone(),
            operation_name: Mutex::new(None),
            kind: Mutex::new(None),
        })
    }
}

struct CostCheck {
    limits: Arc<Limits>,
    gates: Arc<KeyGates>,
    /// Carried from `prepare_request` to `parse_query`, which does not see the request.
    operation_name: Mutex<Option<String>>,
    /// The selected operation's type, for `execute` (only queries get the deadline).
    kind: Mutex<Option<OperationType>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_graphql::async_trait::async_trait]
impl Extension for CostCheck {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *locked(&self.operation_name) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    /// Counts fields right after parsing: before validation, whose overlap rule is quadratic in
    /// the fields of a selection set.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        check_fields(&document, &self.limits).map_err(server_error)?;
        let name = locked(&self.operation_name).clone();
        *locked(&self.kind) = operation_type(&document, name.as_deref());
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let limits = &self.limits;
        if result.depth > limits.max_query_depth {
            return Err(vec![server_error(ApiError::TooComplex(format!(
                "the query is nested too deep: depth {}, at most {}",
                result.depth, limits.max_query_depth
            )))]);
        }
        if result.complexity > limits.max_query_complexity {
            return Err(vec![server_error(ApiError::TooComplex(format!(
                "the query is too complex: cost {}, at most {} (every field counts 1, every \
                 list its page size times its fields)",
                result.complexity, limits.max_query_complexity
            )))]);
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let _permit = match ctx.data_opt::<Caller>() {
            Some(caller) => match self.gates.try_enter(&caller.key_name) {
                Some(permit) => Some(permit),
                None => return Response::from_errors(vec![server_error(ApiError::RateLimited)]),
            },
            None => None,
        };
        if *locked(&self.kind) != Some(OperationType::Query) {
            return next.run(ctx, operation_name).await;
        }
        let deadline = self.limits.graphql_timeout_secs;
        match tokio::time::timeout(Duration::from_secs(deadline), next.run(ctx, operation_name))
            .await
        {
            Ok(response) => response,
            Err(_elapsed) => {
                tracing::warn!(deadline, "a GraphQL query ran past its deadline");
                Response::from_errors(vec![server_error(ApiError::Timeout(deadline))])
            }
        }
    }
}

fn operation_type(document: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

// ---- counting fields ----

/// Refuses a document with an operation of too many root fields or a selection set of too
/// many fields. Every operation of the document is checked, selected or not.
fn check_fields(document: &ExecutableDocument, limits: &Limits) -> Result<(), ApiError> {
    let mut counter = FieldCounter {
        fragments: &document.fragments,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    for (_, operation) in document.operations.iter() {
        let root = counter.fields(&operation.node.selection_set.node);
        if root > limits.max_root_fields {
            return Err(ApiError::TooComplex(format!(
                "the operation has {root} root fields, at most {} (aliases and fragments \
                 included)",
                limits.max_root_fields
            )));
        }
        counter.check_sets(&operation.node.selection_set.node, limits)?;
    }
    for fragment in document.fragments.values() {
        counter.check_sets(&fragment.node.selection_set.node, limits)?;
    }
    Ok(())
}

/// Counts the fields a selection set resolves, spreads expanded; each fragment is counted
/// once (memoized), so nested spreads cannot make the count itself expensive.
struct FieldCounter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    memo: HashMap<&'a str, usize>,
    /// Fragments being counted: a cycle counts 0 here and is refused by validation.
    visiting: HashSet<&'a str>,
}

impl<'a> FieldCounter<'a> {
    fn fields(&mut self, set: &'a SelectionSet) -> usize {
        set.items.iter().fold(0usize, |count, item| {
            let more = match &item.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(inline) => self.fields(&inline.node.selection_set.node),
                Selection::FragmentSpread(spread) => self.spread(&spread.node.fragment_name.node),
            };
            count.saturating_add(more)
        })
    }

    fn spread(&mut self, name: &'a str) -> usize {
        if let Some(count) = self.memo.get(name) {
            return *count;
        }
        let Some(fragment) = self.fragments.get(name) else {
            return 0;
        };
        if !self.visiting.insert(name) {
            return 0;
        }
        let count = self.fields(&fragment.node.selection_set.node);
        self.visiting.remove(name);
        self.memo.insert(name, count);
        count
    }

    /// Checks `set` and every selection set written inside it.
    fn check_sets(&mut self, set: &'a SelectionSet, limits: &Limits) -> Result<(), ApiError> {
        let count = self.fields(set);
        if count > limits.max_selection_fields {
            return Err(ApiError::TooComplex(format!(
                "a selection set has {count} fields, at most {} (aliases and fragments included)",
                limits.max_selection_fields
            )));
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.check_sets(&field.node.selection_set.node, limits)?;
                }
                Selection::InlineFragment(inline) => {
                    self.check_sets(&inline.node.selection_set.node, limits)?;
                }
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
}

// ---- per-key admission ----

/// One semaphore per API key name. The map holds only keys that authenticated (configured or
/// stored keys), and is pruned of idle entries when it grows, so it stays small.
struct KeyGates {
    per_key: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Above this many key entries, idle ones are dropped on the next insert.
const PRUNE_ABOVE: usize = 1024;

impl KeyGates {
    fn new(per_key: usize) -> KeyGates {
        KeyGates {
            per_key,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `key`, or `None` when it already runs its bound.
    fn try_enter(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        self.semaphore(key).try_acquire_owned().ok()
    }

    /// A slot for `key`, waiting for one of its own to be released (never for another key's).
    async fn enter(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        self.semaphore(key).acquire_owned().await.ok()
    }

    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        {
            let mut slots = locked(&self.slots);
            if !slots.contains_key(key) && slots.len() >= PRUNE_ABOVE {
                let per_key = self.per_key;
                slots.retain(|_, s| s.available_permits() < per_key);
            }
            slots
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_key)))
                .clone()
        }
    }
}

/// Pool connections one key's resolvers may hold at once (`max_db_connections_per_key`).
/// Admission bounds a key's operations, but each operation runs its root fields in parallel,
/// so two keys' accepted heavy requests could still queue every pool connection ahead of
/// another key's query (`bench/run-abuse.sh`: an honest board query went from 3.5 ms alone to
/// 256 ms p50 while two keys attacked). With a share, a key waits for its own connections and
/// the rest of the pool stays free for others.
pub struct DbShares(KeyGates);

impl DbShares {
    pub fn new(limits: &Limits) -> DbShares {
        DbShares(KeyGates::new(limits.max_db_connections_per_key))
    }

    /// A lease of one of `key`'s connections, held while the resolver uses the database.
    pub async fn lease(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        self.0.enter(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_root_fields: 3,
            max_selection_fields: 4,
            ..Limits::default()
        }
    }

    fn check(query: &str) -> Result<(), ApiError> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        check_fields(&document, &limits())
    }

    #[test]
    fn aliases_spreads_and_inline_fragments_count_as_fields() {
        assert!(check("{ a b c }").is_ok());
        assert!(check("{ a b c d }").is_err(), "root fields");
        assert!(check("{ a ...F } fragment F on Query { b c d }").is_err());
        assert!(check("{ a ... on Query { b ... on Query { c d } } }").is_err());
        assert!(check("{ a { x y z w v } }").is_err(), "a nested set");
        assert!(check("{ a { ...G } } fragment G on A { x y z w v }").is_err());
        assert!(check("{ a { x: id y: id z: id w: id } }").is_ok());
    }

    #[test]
    fn fragment_cycles_and_deep_spreads_are_counted_cheaply() {
        assert!(check("{ ...A } fragment A on Query { a ...A }").is_ok());
        // 2^30 fields if expanded naively; memoized, it is counted once per fragment.
        let mut query = String::from("{ ...F0 }");
        for i in 0..30 {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F30 on Query { a }");
        assert!(check(&query).is_err());
    }

    #[test]
    fn list_costs_saturate_and_clamp_to_the_maximum() {
        assert_eq!(page_cost(1000, EVENTS_PAGE, 3), 3001);
        assert_eq!(page_cost(u64::MAX, EVENTS_PAGE, 3), 3001);
        assert_eq!(connection_cost(None, None, 2), 41);
        assert_eq!(connection_cost(Some(-5), None, 2), 3);
        assert_eq!(connection_cost(None, Some(i32::MAX), 2), 201);
        assert_eq!(list_cost(u64::MAX, usize::MAX), usize::MAX);
    }

    #[test]
    fn a_key_gets_its_bound_of_slots_and_no_more() {
        let gates = KeyGates::new(2);
        let first = gates.try_enter("a");
        let second = gates.try_enter("a");
        assert!(first.is_some() && second.is_some());
        assert!(gates.try_enter("a").is_none());
        assert!(
            gates.try_enter("b").is_some(),
            "another key is not affected"
        );
        drop(first);
        assert!(gates.try_enter("a").is_some());
    }
}
