//! Multiplexed live subscriptions (what Hasura calls multiplexing): websocket subscriptions
//! that would produce the same bytes share one execution.
//!
//! A dashboard screen subscribes to its service's queue; a clinic runs many screens on the same
//! service, and a deployment many clinics. Executed one by one, an event to N identical
//! subscribers costs N loads, N GraphQL executions and N JSON serializations, all producing
//! the same text. Here the [`LiveHub`] keeps one *group* per distinct [`ShareKey`]: the group
//! runs `schema.execute_stream` once, serializes each response once into an `Arc<str>`, and
//! broadcasts it; each member connection only wraps the shared text in its own
//! `{"type":"next","id":…,"payload":…}` and writes it.
//!
//! What may share: a live-only subscription (no `after` cursor, whose replay depends on when
//! and from where the client starts) whose query text, operation name, variables and caller
//! scopes are equal, and which names no audited admin field (`guard::AUDITED_READS`). The
//! scopes are the only thing about a caller that resolvers read on a subscription's path (the
//! `Reads` and `RequireScope` guards); the key's name is read only by mutations and the audit
//! log, so two keys with the same scopes share, and the group runs as a synthetic caller
//! holding only those scopes (no member's name can leak into another's answer). An admin read
//! must be audited under the key that made it, once per subscription, and a shared execution
//! runs as no key: so such a subscription runs on its connection's own engine, and the group's
//! caller never holds `admin` at all (whatever slipped through would be refused, not read
//! unaudited). Anything unusual — an unparsable document, a query or mutation, request
//! extensions, an `after` that is not null — is not shared and runs on the connection's own
//! engine exactly as before.
//!
//! Lifecycle: a group starts with its first member and is dropped (its stream cancelled) when
//! its last member leaves — `complete`/`stop`, or the connection closing, both of which drop
//! the member's [`Seat`]. When the shared stream ends (an error at start, say), every member
//! gets what it yielded and then ends; the group leaves the hub first, so a later subscriber
//! starts a fresh execution instead of joining a finished one.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{Data, Request, Value};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::CareBridgeSchema;
use crate::auth::Caller;
use crate::config::Scope;

/// Shared payloads a group holds for members that have not taken them yet. A payload is
/// released as soon as every member has it, so only a lagging member keeps any; one that falls
/// this far behind (its socket is not draining) is told so and ended rather than holding the
/// whole group's memory. Each slot costs ~40 bytes per group even when empty.
const GROUP_BUFFER: usize = 64;

/// The name of the synthetic caller a group runs as (see the module doc).
const SHARED_CALLER: &str = "(shared live subscription)";

/// Everything that decides a live subscription's answer. Two subscribes with equal keys get
/// byte-identical payloads, so they may share one execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON text: equal text, equal variables. Objects keep the client's key
    /// order, so the same values in another order only miss a chance to share.
    variables: String,
    /// Sorted and deduplicated.
    scopes: Vec<Scope>,
}

/// The key under which `request`, sent by `caller`, may share an execution; `None` when it
/// must run on its own (see the module doc). When in doubt, this says `None`.
pub fn share_key(request: &Request, caller: &Caller) -> Option<ShareKey> {
    if !request.extensions.0.is_empty() || !request.uploads.is_empty() {
        return None;
    }
    let document = async_graphql::parser::parse_query(&request.query).ok()?;
    if !is_live_subscription(&document, request) || names_audited_field(&document) {
        return None;
    }
    let mut scopes = caller.scopes.clone();
    scopes.sort_unstable();
    scopes.dedup();
    Some(ShareKey {
        query: request.query.clone(),
        operation_name: request.operation_name.clone(),
        variables: serde_json::to_string(&request.variables).ok()?,
        scopes,
    })
}

/// Whether the operation `request` selects is a subscription with no non-null `after`
/// argument anywhere in it (fragments included): a live-only stream, the same for everyone
/// who starts it at the same time.
fn is_live_subscription(document: &ExecutableDocument, request: &Request) -> bool {
    // The operation async-graphql would run; anything it would refuse runs on its own.
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), None) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation,
            None => return false,
        },
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.values().next() {
                Some(operation) => operation,
                None => return false,
            }
        }
        _ => return false,
    };
    let operation = &operation.node;
    if operation.ty != OperationType::Subscription {
        return false;
    }
    // A variable's value: the request's, else the operation's default, else null.
    let variable = |name: &str| -> Option<Value> {
        if let Some(value) = request.variables.get(name) {
            return Some(value.clone());
        }
        operation
            .variable_definitions
            .iter()
            .find(|definition| definition.node.name.node == name)
            .and_then(|definition| definition.node.default_value.as_ref())
            .map(|default| default.node.clone())
    };
    let mut visited = HashSet::new();
    !has_cursor(
        &operation.selection_set.node,
        document,
        &variable,
        &mut visited,
    )
}

/// Whether the document names an audited admin field anywhere, in any operation or fragment,
/// used or not: erring on the side of not sharing.
fn names_audited_field(document: &ExecutableDocument) -> bool {
    fn names(selection: &SelectionSet) -> bool {
        selection.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                super::guard::AUDITED_READS.contains(&field.name.node.as_str())
                    || names(&field.selection_set.node)
            }
            Selection::InlineFragment(fragment) => names(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => false, // every fragment is looked at below
        })
    }
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
        DocumentOperations::Multiple(operations) => operations
            .values()
            .map(|operation| &operation.node.selection_set.node)
            .collect(),
    };
    operations.into_iter().any(names)
        || document
            .fragments
            .values()
            .any(|fragment| names(&fragment.node.selection_set.node))
}

/// Whether any field under `selection` has an `after` argument that is not null.
fn has_cursor<'d>(
    selection: &'d SelectionSet,
    document: &'d ExecutableDocument,
    variable: &dyn Fn(&str) -> Option<Value>,
    visited: &mut HashSet<&'d str>,
) -> bool {
    selection.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            let field = &field.node;
            let cursor = field
                .arguments
                .iter()
                .filter(|(name, _)| name.node == "after")
                .any(|(_, value)| {
                    // Variables substituted (unset ones are null): any non-null value is a
                    // cursor, literal or not.
                    let resolved = value.node.clone().into_const_with(|name| {
                        Ok::<_, std::convert::Infallible>(variable(&name).unwrap_or(Value::Null))
                    });
                    !matches!(resolved, Ok(Value::Null))
                });
            cursor || has_cursor(&field.selection_set.node, document, variable, visited)
        }
        Selection::InlineFragment(fragment) => has_cursor(
            &fragment.node.selection_set.node,
            document,
            variable,
            visited,
        ),
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            if !visited.insert(name) {
                return false; // already looked at (or a cycle, which validation refuses)
            }
            match document.fragments.get(name) {
                Some(fragment) => has_cursor(
                    &fragment.node.selection_set.node,
                    document,
                    variable,
                    visited,
                ),
                // An unknown fragment fails validation; share nothing we cannot see.
                None => true,
            }
        }
    })
}

/// The running groups of this process. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    schema: CareBridgeSchema,
    /// A `std` mutex: held only to look up, insert or remove a group, never across an await,
    /// and joins and leaves are rare next to deliveries (which never take it).
    groups: Mutex<Groups>,
    /// Running groups (shared executions), for `/metrics`.
    running: prometheus::IntGauge,
}

#[derive(Default)]
struct Groups {
    by_key: HashMap<Arc<ShareKey>, Group>,
    /// Tells a group apart from a later one under the same key.
    next_id: u64,
}

struct Group {
    id: u64,
    /// The map's own key, handed to members so a seat costs a pointer, not a copy.
    key: Arc<ShareKey>,
    /// `broadcast`: every member gets every payload, a slow member never holds up the others,
    /// and one that falls behind learns it (`Lagged`) instead of silently missing payloads.
    sender: broadcast::Sender<Arc<str>>,
    members: usize,
    /// The task running the shared stream, cancelled when the last member leaves.
    task: tokio::task::AbortHandle,
}

impl LiveHub {
    pub fn new(schema: CareBridgeSchema, running: prometheus::IntGauge) -> LiveHub {
        LiveHub {
            inner: Arc::new(HubInner {
                schema,
                groups: Mutex::new(Groups::default()),
                running,
            }),
        }
    }

    /// Joins the group of `key` (starting it if it is not running) and returns this member's
    /// stream of shared payloads, `request` being what the group runs if it starts here.
    pub fn join(&self, key: ShareKey, request: Request) -> Member {
        let inner = &self.inner;
        let mut groups = inner.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = groups.by_key.get_mut(&key) {
            group.members += 1;
            let seat = Seat {
                hub: inner.clone(),
                key: group.key.clone(),
                id: group.id,
            };
            return Member::new(group.sender.subscribe(), seat);
        }
        let key = Arc::new(key);
        let id = groups.next_id;
        groups.next_id += 1;
        let (sender, receiver) = broadcast::channel(GROUP_BUFFER);
        let run = run_group(inner.clone(), key.clone(), id, request, sender.clone());
        let task = tokio::spawn(run).abort_handle();
        let group = Group {
            id,
            key: key.clone(),
            sender,
            members: 1,
            task,
        };
        groups.by_key.insert(key.clone(), group);
        inner.running.set(groups.by_key.len() as i64);
        let seat = Seat {
            hub: inner.clone(),
            key,
            id,
        };
        Member::new(receiver, seat)
    }
}

/// Runs one group's stream to its end, broadcasting each response serialized once.
async fn run_group(
    hub: Arc<HubInner>,
    key: Arc<ShareKey>,
    id: u64,
    request: Request,
    sender: broadcast::Sender<Arc<str>>,
) {
    // The connection data a member's own execution would have had, minus the key's name, and
    // minus `admin` (see the module doc: no admin read runs unaudited under a shared caller).
    let mut data = Data::default();
    data.insert(Caller {
        key_name: SHARED_CALLER.to_owned(),
        scopes: key
            .scopes
            .iter()
            .copied()
            .filter(|scope| *scope != Scope::Admin)
            .collect(),
    });
    let mut stream = hub
        .schema
        .execute_stream_with_session_data(request, Arc::new(data));
    while let Some(response) = stream.next().await {
        let payload = match serde_json::to_string(&response) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "a shared subscription response could not be serialized");
                r#"{"data":null,"errors":[{"message":"internal error: unserializable response","extensions":{"code":"INTERNAL"}}]}"#.to_owned()
            }
        };
        // No receiver means every member left in the meantime; the task is being cancelled.
        let _no_members_left = sender.send(Arc::from(payload));
    }
    // The stream ended: take the group out of the hub (so nobody joins it any more); members
    // then read what is buffered and see the channel close once this sender is dropped too.
    hub.release(&key, id, Release::Ended);
}

impl HubInner {
    /// Takes group `id` of `key` out of the hub if it is still the one registered: `Ended` when
    /// its stream ended (it stops by itself), `Left` when a member left, which cancels the
    /// stream if that was the last member.
    fn release(&self, key: &ShareKey, id: u64, why: Release) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(group) = groups.by_key.get_mut(key).filter(|group| group.id == id) else {
            return; // that group already ended and left the hub
        };
        if why == Release::Left {
            group.members = group.members.saturating_sub(1);
            if group.members > 0 {
                return;
            }
            group.task.abort();
        }
        groups.by_key.remove(key);
        self.running.set(groups.by_key.len() as i64);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    Ended,
    Left,
}

/// A member's place in its group: dropping it (unsubscribe, connection closed) leaves the
/// group, and the last one out stops the shared stream.
struct Seat {
    hub: Arc<HubInner>,
    key: Arc<ShareKey>,
    id: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.hub.release(&self.key, self.id, Release::Left);
    }
}

/// What a member receives.
#[derive(Debug)]
pub enum Delivery {
    /// A response, serialized once for the whole group.
    Payload(Arc<str>),
    /// The member fell this many payloads behind and missed them; it must end.
    Lagged(u64),
    /// The shared stream ended; so does the member.
    Ended,
}

/// One connection's membership of a group: a stream of [`Delivery`]s that ends after
/// `Ended` or `Lagged`. Per subscriber it holds a broadcast receiver and its (boxed, reused)
/// receive future, a few dozen bytes.
pub struct Member {
    receiver: BroadcastStream<Arc<str>>,
    done: bool,
    _seat: Seat,
}

impl Member {
    fn new(receiver: broadcast::Receiver<Arc<str>>, seat: Seat) -> Member {
        Member {
            receiver: BroadcastStream::new(receiver),
            done: false,
            _seat: seat,
        }
    }
}

impl Stream for Member {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if self.done {
            return Poll::Ready(None);
        }
        let delivery = match std::task::ready!(self.receiver.poll_next_unpin(cx)) {
            Some(Ok(payload)) => return Poll::Ready(Some(Delivery::Payload(payload))),
            Some(Err(BroadcastStreamRecvError::Lagged(missed))) => Delivery::Lagged(missed),
            None => Delivery::Ended,
        };
        self.done = true;
        Poll::Ready(Some(delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> Caller {
        Caller {
            key_name: "screen".into(),
            scopes: vec![Scope::Read],
        }
    }

    fn request(query: &str, variables: serde_json::Value) -> Request {
        let mut request = Request::new(query);
        request.variables = async_graphql::Variables::from_json(variables);
        request
    }

    fn shared(query: &str, variables: serde_json::Value) -> bool {
        share_key(&request(query, variables), &reader()).is_some()
    }

    #[test]
    fn live_subscriptions_share_and_cursor_subscriptions_do_not() {
        let queue = "subscription($s: ID) { queueChanged(serviceId: $s) { id } }";
        assert!(shared(queue, serde_json::json!({"s": "Service:1"})));
        assert!(shared(
            "subscription { events { cursor } }",
            serde_json::json!({})
        ));
        assert!(shared(
            "subscription { events(after: null) { cursor } }",
            serde_json::json!({})
        ));
        assert!(!shared(
            "subscription { events(after: \"3\") { cursor } }",
            serde_json::json!({})
        ));
        let by_variable = "subscription($a: String) { events(after: $a) { cursor } }";
        assert!(shared(by_variable, serde_json::json!({})));
        assert!(shared(by_variable, serde_json::json!({"a": null})));
        assert!(!shared(by_variable, serde_json::json!({"a": "3"})));
        let defaulted = "subscription($a: String = \"3\") { events(after: $a) { cursor } }";
        assert!(!shared(defaulted, serde_json::json!({})));
        assert!(shared(defaulted, serde_json::json!({"a": null})));
    }

    #[test]
    fn a_cursor_inside_a_fragment_is_found() {
        let spread = "subscription { ...F } fragment F on Subscription { events(after: \"1\") \
                      { cursor } }";
        assert!(!shared(spread, serde_json::json!({})));
        let inline = "subscription { ... on Subscription { events(after: \"1\") { cursor } } }";
        assert!(!shared(inline, serde_json::json!({})));
        let unknown = "subscription { ...Missing }";
        assert!(!shared(unknown, serde_json::json!({})));
    }

    #[test]
    fn subscriptions_naming_an_audited_field_are_never_shared() {
        let direct = "subscription { queueChanged { sourceEvents { rawBody } } }";
        assert!(!shared(direct, serde_json::json!({})));
        let spread = "subscription { queueChanged { sourceEvents { ...H } } } \
                      fragment H on WebhookEvent { headers }";
        assert!(!shared(spread, serde_json::json!({})));
        let inline = "subscription { events { entity { ... on QueueEntry { sourceEvents { \
                      raw: rawBody } } } } }";
        assert!(!shared(inline, serde_json::json!({})));
        let plain = "subscription { queueChanged { sourceEvents { status } } }";
        assert!(shared(plain, serde_json::json!({})));
    }

    #[test]
    fn queries_mutations_and_unusual_requests_are_not_shared() {
        assert!(!shared("{ services { id } }", serde_json::json!({})));
        assert!(!shared("mutation { x }", serde_json::json!({})));
        assert!(!shared("subscription {", serde_json::json!({})));
        let two = "subscription A { events { cursor } } subscription B { events { kind } }";
        assert!(!shared(two, serde_json::json!({})), "no operation name");
        assert!(
            share_key(
                &request(two, serde_json::json!({})).operation_name("B"),
                &reader()
            )
            .is_some()
        );
        assert!(
            share_key(
                &request(two, serde_json::json!({})).operation_name("C"),
                &reader()
            )
            .is_none()
        );
        let mut with_extensions =
            request("subscription { events { cursor } }", serde_json::json!({}));
        with_extensions
            .extensions
            .0
            .insert("persistedQuery".into(), Value::Null);
        assert!(share_key(&with_extensions, &reader()).is_none());
    }

    #[test]
    fn keys_differ_by_variables_and_scopes_but_not_by_key_name() {
        let queue = "subscription($s: ID) { queueChanged(serviceId: $s) { id } }";
        let one = share_key(
            &request(queue, serde_json::json!({"s": "Service:1"})),
            &reader(),
        );
        let two = share_key(
            &request(queue, serde_json::json!({"s": "Service:2"})),
            &reader(),
        );
        assert_ne!(one, two);
        let other_screen = Caller {
            key_name: "another screen".into(),
            scopes: vec![Scope::Read],
        };
        let same = share_key(
            &request(queue, serde_json::json!({"s": "Service:1"})),
            &other_screen,
        );
        assert_eq!(one, same);
        let admin = Caller {
            key_name: "screen".into(),
            scopes: vec![Scope::Admin, Scope::Read],
        };
        let admin = share_key(
            &request(queue, serde_json::json!({"s": "Service:1"})),
            &admin,
        );
        assert_ne!(one, admin);
    }

    fn hub() -> LiveHub {
        let gauge = prometheus::IntGauge::new("test_shared", "test").expect("gauge");
        LiveHub::new(crate::graphql::schema_builder().finish(), gauge)
    }

    #[tokio::test]
    async fn a_member_that_falls_behind_learns_it_and_ends() {
        let hub = hub();
        let (sender, receiver) = broadcast::channel(GROUP_BUFFER);
        let seat = Seat {
            hub: hub.inner.clone(),
            key: Arc::new(
                share_key(
                    &request("subscription { events { cursor } }", serde_json::json!({})),
                    &reader(),
                )
                .expect("key"),
            ),
            id: 0,
        };
        let mut member = Member::new(receiver, seat);
        for n in 0..GROUP_BUFFER + 3 {
            sender.send(Arc::from(n.to_string())).expect("a receiver");
        }
        assert!(matches!(member.next().await, Some(Delivery::Lagged(3))));
        assert!(member.next().await.is_none(), "and nothing after");
    }

    #[tokio::test]
    async fn a_shared_stream_that_fails_sends_its_error_to_every_member_then_ends_them() {
        // This schema has no database: the subscription fails at start, for every member.
        let hub = hub();
        let query = "subscription { events { cursor } }";
        let key = share_key(&request(query, serde_json::json!({})), &reader()).expect("key");
        let mut members = [
            hub.join(key.clone(), request(query, serde_json::json!({}))),
            hub.join(key, request(query, serde_json::json!({}))),
        ];
        for member in &mut members {
            match member.next().await {
                Some(Delivery::Payload(payload)) => {
                    assert!(payload.contains(r#""code":"INTERNAL""#), "{payload}")
                }
                other => panic!("expected the error payload, got {other:?}"),
            }
            assert!(matches!(member.next().await, Some(Delivery::Ended)));
        }
        assert!(hub.inner.groups.lock().expect("lock").by_key.is_empty());
        assert_eq!(hub.inner.running.get(), 0);
    }

    #[tokio::test]
    async fn the_last_member_out_cancels_the_shared_stream() {
        let hub = hub();
        let query = "subscription { events { cursor } }";
        let key = share_key(&request(query, serde_json::json!({})), &reader()).expect("key");
        let first = hub.join(key.clone(), request(query, serde_json::json!({})));
        let second = hub.join(key, request(query, serde_json::json!({})));
        assert_eq!(hub.inner.running.get(), 1, "one group");
        drop(first);
        drop(second);
        assert!(hub.inner.groups.lock().expect("lock").by_key.is_empty());
        assert_eq!(hub.inner.running.get(), 0);
    }
}
