//! GraphQL over websockets at `/graphql`: both `graphql-transport-ws` (current) and
//! `graphql-ws` (legacy `subscriptions-transport-ws`) subprotocols, executed by async-graphql's
//! protocol engine. This module owns what the stock handler does not do the way CareBridge
//! needs:
//! - the API key is checked on `connection_init` before anything else; a refused key closes the
//!   socket with 4403 (4401 if the first message is not `connection_init`);
//! - a malformed protocol message closes with 4400 and the reason; an unknown subprotocol with
//!   4406;
//! - one task per connection, and nothing in it waits on something only it could unblock: the
//!   socket is read, the engine polled, shared subscriptions drained and the keep-alive run
//!   whatever the client does. Everything written goes through a bounded [`Outbox`]; a client
//!   that lets more than `ws_max_queued_bytes` of answers pile up (it sends, or is sent, faster
//!   than it reads) is closed with 4429;
//! - the server pings every `ws_ping_interval_secs` and closes (4408) a connection that has
//!   sent nothing, not even a pong, for two intervals, or has read nothing for two intervals
//!   while answers waited; a closing client gets one interval to take its close frame, then
//!   the socket is dropped. A client that closes or vanishes ends the task at once, and its
//!   `max_websocket_connections` slot with it;
//! - read/write buffers of a few KiB per connection instead of the 128 KiB default, because an
//!   idle dashboard connection should cost kilobytes (the outbox allocates nothing while idle);
//! - a live-only subscription identical to others (same query, variables and scopes) does not
//!   run on this connection's engine: it joins the shared execution of `live`, and this loop
//!   writes the group's payload under the subscription's id. Ten thousand screens on one queue
//!   then cost one execution per event, not ten thousand. A member that falls behind gets an
//!   `error` (code `LAGGED`) and ends. Everything else goes through the engine as before.

mod outbox;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::ReceiverStream;

use self::outbox::{Outbox, Overflow};
use super::live;
use crate::auth::{self, Caller};
use crate::startup::AppState;

/// How long a new connection may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection socket buffers; messages are small GraphQL JSON.
const BUFFER_BYTES: usize = 4 * 1024;
/// Largest client message accepted (a subscribe with its query).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Client messages waiting for the engine. The engine takes everything waiting each time the
/// loop polls it, so this only smooths bursts; when full, reading pauses until it has room.
const ENGINE_INPUT: usize = 16;

/// `permit` is this connection's slot among `max_websocket_connections`; it is released when
/// the connection ends.
pub fn upgrade(
    state: AppState,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let offered: Vec<String> = headers
        .get("sec-websocket-protocol")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default();
    let protocol = offered
        .iter()
        .find_map(|p| WebSocketProtocols::from_str(p).ok());
    // An unknown subprotocol is echoed so the client's handshake completes and it can read the
    // 4406 close that says why (without a selected protocol, clients drop the handshake).
    let upgrade = match (&protocol, offered.first()) {
        (None, Some(unknown)) => upgrade.protocols([unknown.clone()]),
        _ => upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS),
    };
    upgrade
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            serve(state, protocol, socket).await;
            drop(permit);
        })
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Message types each protocol's client may send.
fn known_client_types(protocol: WebSocketProtocols) -> &'static [&'static str] {
    match protocol {
        WebSocketProtocols::GraphQLWS => {
            &["connection_init", "ping", "pong", "subscribe", "complete"]
        }
        WebSocketProtocols::SubscriptionsTransportWS => {
            &["connection_init", "start", "stop", "connection_terminate"]
        }
    }
}

/// A client message's `type` and `id`, or why it is not a protocol message.
fn message_type(
    text: &str,
    protocol: WebSocketProtocols,
) -> Result<(String, Option<String>), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "message is not JSON".to_owned())?;
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| "message has no `type`".to_owned())?;
    if !known_client_types(protocol).contains(&kind) {
        return Err(format!("unknown message type {kind:?}"));
    }
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok((kind.to_owned(), id))
}

/// The id of a subscription the server just ended (`complete` or `error`), if `text` is one.
/// Only such messages are parsed; a `next` carries data and is passed through untouched.
fn ended_subscription(text: &str) -> Option<String> {
    if !(text.contains(r#""type":"complete""#) || text.contains(r#""type":"error""#)) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Tells the client one subscription was refused, in its protocol's words.
fn refusal(protocol: WebSocketProtocols, id: &str, message: &str) -> Message {
    subscription_error(protocol, id, message, None)
}

/// An `error` message for one subscription, which ends it.
fn subscription_error(
    protocol: WebSocketProtocols,
    id: &str,
    message: &str,
    extensions: Option<serde_json::Value>,
) -> Message {
    let mut error = serde_json::json!({ "message": message });
    if let Some(extensions) = extensions {
        error["extensions"] = extensions;
    }
    let payload = match protocol {
        WebSocketProtocols::GraphQLWS => serde_json::json!([error]),
        WebSocketProtocols::SubscriptionsTransportWS => error,
    };
    Message::Text(
        serde_json::json!({ "id": id, "type": "error", "payload": payload })
            .to_string()
            .into(),
    )
}

/// The caller named by a `connection_init` payload (`{"authorization": "Bearer …"}`).
async fn caller_from_init(state: &AppState, text: &str) -> Option<Caller> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let payload = value.get("payload")?;
    let header = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))
        .and_then(serde_json::Value::as_str)?;
    let key = auth::bearer_token(header)?;
    match auth::authenticate_any(&state.config.api_keys, &state.db, key).await {
        Ok(caller) => caller,
        Err(error) => {
            tracing::error!(%error, "cannot check an API key: key store unavailable");
            None
        }
    }
}

/// The socket's halves. Both are polled by the one connection task: no task per connection.
type SocketSink = SplitSink<WebSocket, Message>;
type SocketSource = SplitStream<WebSocket>;

async fn serve(state: AppState, protocol: Option<WebSocketProtocols>, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    let ping_every = Duration::from_secs(state.config.limits.ws_ping_interval_secs);
    let mut outbox = Outbox::new(state.config.limits.ws_max_queued_bytes);
    let refuse = |code: u16, reason: &'static str| Ending::Close {
        frame: Some(close(code, reason)),
        discard_queue: false,
    };
    let Some(protocol) = protocol else {
        let ending = refuse(4406, "Subprotocol not acceptable");
        return finish(ending, &mut outbox, &mut sink, &mut source, ping_every).await;
    };

    let first = match tokio::time::timeout(INIT_TIMEOUT, source.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        Ok(_) => return,
        Err(_elapsed) => {
            let ending = refuse(4408, "Connection initialisation timeout");
            return finish(ending, &mut outbox, &mut sink, &mut source, ping_every).await;
        }
    };
    if !matches!(message_type(&first, protocol), Ok((kind, _)) if kind == "connection_init") {
        let ending = refuse(4401, "Unauthorized: send connection_init first");
        return finish(ending, &mut outbox, &mut sink, &mut source, ping_every).await;
    }
    let Some(caller) = caller_from_init(&state, &first).await else {
        tracing::warn!("websocket refused: missing or unknown API key");
        let ending = refuse(4403, "Forbidden: unknown or missing API key");
        return finish(ending, &mut outbox, &mut sink, &mut source, ping_every).await;
    };

    // Connection data: only the caller. Nested loads go through the schema's process-wide
    // live loader (no cache, so nothing goes stale between events; shared, so the loads of
    // every connection resolving the same event merge into one batch).
    let mut data = Data::default();
    data.insert(caller.clone());

    let (to_engine, engine_input) = mpsc::channel::<Vec<u8>>(ENGINE_INPUT);
    if to_engine.try_send(first.into_bytes()).is_err() {
        return; // an empty channel whose receiver is right here: cannot happen
    }
    let mut engine = async_graphql::http::WebSocket::new(
        state.schema.clone(),
        ReceiverStream::new(engine_input),
        protocol,
    )
    .connection_data(data)
    .on_connection_init(|_| async { Ok(Data::default()) });

    let metrics = state.metrics.clone();
    metrics.websocket_connections.inc();
    let mut reported_subscriptions: i64 = 0;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    // A loop held up under load pings once when it gets to it, not once per missed interval.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection = Connection {
        protocol,
        caller,
        live: state.live.clone(),
        max_subscriptions: state.config.limits.max_subscriptions_per_connection,
        ping_every,
        last_heard: Instant::now(),
        active: HashSet::new(),
        shared: StreamMap::new(),
        acknowledged: false,
        outbox,
        to_engine,
        held: None,
    };
    // No branch awaits anything only this loop could unblock: the socket is written by the
    // outbox branch, the engine's input takes at most one held message (reading pauses until
    // the engine, polled here, makes room), and every other branch only queues.
    let ending = loop {
        let running = connection.active.len() as i64;
        if running != reported_subscriptions {
            // Only on change: the gauge is one atomic shared by every connection, and this loop
            // turns once per delivery on every subscribed connection at the same moment.
            metrics.subscriptions.add(running - reported_subscriptions);
            reported_subscriptions = running;
        }
        let waiting = connection.outbox.is_waiting();
        let holding = connection.held.is_some();
        let flow = tokio::select! {
            written = connection.outbox.flush(&mut sink), if waiting => match written {
                Ok(()) => Flow::Continue,
                Err(_gone) => Flow::Stop(Ending::Gone),
            },
            // An owned permit (a clone of the sender) so that it borrows nothing.
            room = connection.to_engine.clone().reserve_owned(), if holding => match (room, connection.held.take()) {
                (Ok(room), Some(message)) => {
                    room.send(message);
                    Flow::Continue
                }
                _ => Flow::Stop(Ending::Gone),
            },
            incoming = source.next(), if !holding => connection.on_client(incoming),
            outgoing = engine.next() => connection.on_engine(outgoing),
            Some((id, delivery)) = connection.shared.next(), if !connection.shared.is_empty() => {
                connection.on_shared(id, delivery)
            }
            _ = ping.tick() => connection.on_tick(),
        };
        if let Flow::Stop(ending) = flow {
            break ending;
        }
    };
    // Subscriptions end now (engine streams and shared memberships alike), not after the
    // close handshake.
    drop(engine);
    let Connection { mut outbox, .. } = connection;
    finish(ending, &mut outbox, &mut sink, &mut source, ping_every).await;
    metrics.subscriptions.sub(reported_subscriptions);
    metrics.websocket_connections.dec();
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop(Ending),
}

/// How a connection ends.
enum Ending {
    /// The client closed, went away or broke the socket: nothing more can be said, and the
    /// slot is given back at once.
    Gone,
    /// Send what waits (none of it when `discard_queue`: the client is not reading it), then
    /// `frame` if any, and end.
    Close {
        frame: Option<Message>,
        discard_queue: bool,
    },
}

impl Ending {
    /// The client sends faster than it reads (or is sent more than it reads).
    fn flooded() -> Ending {
        Ending::Close {
            frame: Some(close(
                4429,
                "Too many messages: the client sends faster than it reads",
            )),
            discard_queue: true,
        }
    }

    /// The client is unresponsive: the answers it would get are dropped, the frame says why.
    fn timed_out(reason: &str) -> Ending {
        Ending::Close {
            frame: Some(close(4408, reason)),
            discard_queue: true,
        }
    }
}

/// Ends a connection as `ending` says. A close frame gets one keep-alive interval (`grace`) to
/// reach the client and be answered; meanwhile what the client still sends is read and
/// dropped, so that its close reply can arrive and the socket closes cleanly (closing with
/// unread input resets the connection, and the client may never see the frame). Past the
/// interval the socket is simply dropped.
async fn finish(
    ending: Ending,
    outbox: &mut Outbox,
    sink: &mut SocketSink,
    source: &mut SocketSource,
    grace: Duration,
) {
    let Ending::Close {
        frame,
        discard_queue,
    } = ending
    else {
        // Nothing more can be said; only the close reply tungstenite queued goes, if the
        // socket takes it now: never wait.
        outbox.discard();
        if let Some(Err(error)) = outbox.flush(sink).now_or_never() {
            tracing::debug!(%error, "websocket gone before its close reply");
        }
        return;
    };
    if discard_queue {
        outbox.discard();
    }
    // Without a frame there is no close reply to wait for: done once what waits is written.
    let awaits_reply = frame.is_some();
    if let Some(frame) = frame
        && outbox.push(frame.clone()).is_err()
    {
        // No room behind what waits: the client is not reading it, so the frame goes alone.
        outbox.discard();
        if outbox.push(frame).is_err() {
            return; // an empty outbox takes any one message
        }
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        let waiting = outbox.is_waiting();
        if !waiting && !awaits_reply {
            return;
        }
        tokio::select! {
            _ = &mut deadline => {
                tracing::info!("websocket dropped: the client did not complete the close in time");
                return;
            }
            written = outbox.flush(sink), if waiting => {
                if written.is_err() {
                    return;
                }
            }
            incoming = source.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_ignored_while_closing)) => {}
            },
        }
    }
}

/// One connection's state outside the engine and the socket.
struct Connection {
    protocol: WebSocketProtocols,
    caller: Caller,
    live: live::LiveHub,
    max_subscriptions: usize,
    ping_every: Duration,
    /// When the client last sent anything, pongs included.
    last_heard: Instant,
    /// Ids of this connection's running subscriptions, on the engine or shared.
    active: HashSet<String>,
    /// This connection's memberships of shared live subscriptions, by subscription id. A
    /// `StreamMap` polls them all from this one task: no task or channel per subscription.
    shared: StreamMap<String, live::Member>,
    /// Subscriptions are shared only once the engine has acknowledged `connection_init`, so a
    /// client that subscribes before the ack gets the engine's behaviour, in order.
    acknowledged: bool,
    /// Everything written to the client goes through here (see `outbox`).
    outbox: Outbox,
    /// The engine's input. Bounded, and never awaited by the loop's reading branch: a message
    /// that finds it full is `held` and reading pauses until the engine takes it.
    to_engine: mpsc::Sender<Vec<u8>>,
    held: Option<Vec<u8>>,
}

impl Connection {
    /// Queues `message` for the client; a client that lets too much pile up is closed.
    fn send(&mut self, message: Message) -> Flow {
        match self.outbox.push(message) {
            Ok(()) => Flow::Continue,
            Err(Overflow) => {
                tracing::info!("websocket closed: the client sends faster than it reads");
                Flow::Stop(Ending::flooded())
            }
        }
    }

    /// Passes a client message to the engine without waiting: if its input is full, the
    /// message is held and the loop stops reading until the engine has room.
    fn pass_to_engine(&mut self, message: Vec<u8>) -> Flow {
        match self.to_engine.try_send(message) {
            Ok(()) => Flow::Continue,
            Err(mpsc::error::TrySendError::Full(message)) => {
                self.held = Some(message);
                Flow::Continue
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Flow::Stop(Ending::Gone),
        }
    }

    fn on_client(&mut self, incoming: Option<Result<Message, axum::Error>>) -> Flow {
        self.last_heard = Instant::now();
        let text = match incoming {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                return Flow::Stop(Ending::Close {
                    frame: Some(close(4400, "binary messages are not part of the protocol")),
                    discard_queue: false,
                });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Flow::Continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Flow::Stop(Ending::Gone),
        };
        let (kind, id) = match message_type(&text, self.protocol) {
            Ok(parsed) => parsed,
            Err(reason) => {
                return Flow::Stop(Ending::Close {
                    frame: Some(close(4400, &reason)),
                    discard_queue: false,
                });
            }
        };
        match (kind.as_str(), id) {
            ("subscribe" | "start", Some(id)) if !self.active.contains(&id) => {
                if self.active.len() >= self.max_subscriptions {
                    let message = format!(
                        "at most {} subscriptions per connection",
                        self.max_subscriptions
                    );
                    return self.send(refusal(self.protocol, &id, &message));
                }
                if self.acknowledged
                    && let Some((key, request)) = shareable(&text, &self.caller)
                {
                    self.shared.insert(id.clone(), self.live.join(key, request));
                    self.active.insert(id);
                    return Flow::Continue;
                }
                self.active.insert(id);
            }
            ("subscribe" | "start", Some(id)) => {
                // A second subscribe under a running id: the engine replaces its stream with
                // the new one, so a shared one is replaced too.
                self.shared.remove(&id);
            }
            ("complete" | "stop", Some(id)) => {
                self.active.remove(&id);
                if self.shared.remove(&id).is_some() {
                    // As the engine answers a stop of a running stream.
                    return self.send(complete(&id));
                }
            }
            _ => {}
        }
        self.pass_to_engine(text.as_bytes().to_vec())
    }

    fn on_engine(&mut self, outgoing: Option<WsMessage>) -> Flow {
        match outgoing {
            Some(WsMessage::Text(text)) => {
                if let Some(id) = ended_subscription(&text) {
                    self.active.remove(&id);
                }
                if !self.acknowledged && text.contains(r#""type":"connection_ack""#) {
                    self.acknowledged = true;
                }
                self.send(Message::Text(text.into()))
            }
            Some(WsMessage::Close(code, reason)) => Flow::Stop(Ending::Close {
                frame: Some(close(code, &reason)),
                discard_queue: false,
            }),
            // The engine is done (a legacy `connection_terminate`, or after its own error):
            // what it said still goes out.
            None => Flow::Stop(Ending::Close {
                frame: None,
                discard_queue: false,
            }),
        }
    }

    fn on_shared(&mut self, id: String, delivery: live::Delivery) -> Flow {
        let message = match delivery {
            live::Delivery::Payload(payload) => next(self.protocol, &id, &payload),
            live::Delivery::Lagged(missed) => {
                tracing::info!(missed, "a shared subscriber fell behind; ending it");
                self.shared.remove(&id);
                self.active.remove(&id);
                lagged(self.protocol, &id, missed)
            }
            live::Delivery::Ended => {
                self.shared.remove(&id);
                self.active.remove(&id);
                complete(&id)
            }
        };
        self.send(message)
    }

    /// The keep-alive: a client that has sent nothing, or read nothing while answers waited,
    /// for two intervals is unresponsive; any other gets a ping.
    fn on_tick(&mut self) -> Flow {
        let patience = self.ping_every * 2;
        if self.last_heard.elapsed() > patience {
            tracing::info!("websocket closed: no answer to keep-alive pings");
            return Flow::Stop(Ending::timed_out("keep-alive timeout"));
        }
        if self.outbox.stalled_for() > patience {
            tracing::info!("websocket closed: the client stopped reading");
            return Flow::Stop(Ending::timed_out(
                "keep-alive timeout: the client stopped reading",
            ));
        }
        match self.outbox.push_first(Message::Ping(Vec::new().into())) {
            Ok(()) => Flow::Continue,
            Err(Overflow) => Flow::Stop(Ending::flooded()),
        }
    }
}

/// The share key of a `subscribe`/`start` message's request, and the request, when it may share
/// an execution (see `live`); `None` sends it to the engine.
fn shareable(text: &str, caller: &Caller) -> Option<(live::ShareKey, async_graphql::Request)> {
    match ClientMessage::from_bytes(text).ok()? {
        ClientMessage::Start { payload, .. } => {
            live::share_key(&payload, caller).map(|key| (key, payload))
        }
        _ => None,
    }
}

/// A shared payload as one subscription's `next` (`data` in the legacy protocol), exactly as
/// the engine words it; the payload text is copied in, never re-serialized.
fn next(protocol: WebSocketProtocols, id: &str, payload: &str) -> Message {
    let kind = match protocol {
        WebSocketProtocols::GraphQLWS => "next",
        WebSocketProtocols::SubscriptionsTransportWS => "data",
    };
    let id = json_string(id);
    let mut text = String::with_capacity(40 + id.len() + payload.len());
    text.push_str(r#"{"type":""#);
    text.push_str(kind);
    text.push_str(r#"","id":"#);
    text.push_str(&id);
    text.push_str(r#","payload":"#);
    text.push_str(payload);
    text.push('}');
    Message::Text(text.into())
}

/// The end of one subscription, as the engine words it.
fn complete(id: &str) -> Message {
    Message::Text(format!(r#"{{"type":"complete","id":{}}}"#, json_string(id)).into())
}

/// Ends a shared subscriber that fell behind: it missed payloads, so it must not carry on as
/// if it had not. `resync` as for a cursor older than the retained history.
fn lagged(protocol: WebSocketProtocols, id: &str, missed: u64) -> Message {
    let message = format!(
        "this subscription fell behind the live updates ({missed} missed) and was ended: \
         resubscribe with `after` set to the last cursor you received, or reload the current \
         state and subscribe again"
    );
    let extensions = serde_json::json!({ "code": "LAGGED", "resync": true });
    subscription_error(protocol, id, &message, Some(extensions))
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Message) -> serde_json::Value {
        match message {
            Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn shared_payloads_are_worded_as_the_engine_words_them() {
        let payload = r#"{"data":{"x":1}}"#;
        let Message::Text(current) = next(WebSocketProtocols::GraphQLWS, "a\"b", payload) else {
            panic!("text");
        };
        assert_eq!(
            current.as_str(),
            r#"{"type":"next","id":"a\"b","payload":{"data":{"x":1}}}"#
        );
        let legacy = text(next(
            WebSocketProtocols::SubscriptionsTransportWS,
            "1",
            payload,
        ));
        assert_eq!(
            legacy,
            serde_json::json!({"type": "data", "id": "1", "payload": {"data": {"x": 1}}})
        );
        assert_eq!(
            text(complete("1")),
            serde_json::json!({"type": "complete", "id": "1"})
        );
    }

    #[test]
    fn a_lagging_member_gets_an_error_asking_it_to_resync() {
        let current = text(lagged(WebSocketProtocols::GraphQLWS, "1", 7));
        assert_eq!(current["type"], "error");
        assert_eq!(current["payload"][0]["extensions"]["code"], "LAGGED");
        assert_eq!(current["payload"][0]["extensions"]["resync"], true);
        assert!(
            current["payload"][0]["message"]
                .as_str()
                .expect("message")
                .contains("fell behind")
        );
        let legacy = text(lagged(WebSocketProtocols::SubscriptionsTransportWS, "1", 7));
        assert_eq!(legacy["payload"]["extensions"]["code"], "LAGGED");
    }
}
