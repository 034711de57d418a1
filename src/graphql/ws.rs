//! GraphQL over websockets at `/graphql`: both `graphql-transport-ws` (current) and
//! `graphql-ws` (legacy `subscriptions-transport-ws`) subprotocols, executed by async-graphql's
//! protocol engine. This module owns what the stock handler does not do the way CareBridge
//! needs:
//! - the API key is checked on `connection_init` before anything else; a refused key closes the
//!   socket with 4403 (4401 if the first message is not `connection_init`);
//! - a malformed protocol message closes with 4400 and the reason; an unknown subprotocol with
//!   4406;
//! - the server pings every `ws_ping_interval_secs` and closes (4408) a connection that has
//!   sent nothing, not even a pong, for two intervals;
//! - read/write buffers of a few KiB per connection instead of the 128 KiB default, because an
//!   idle dashboard connection should cost kilobytes;
//! - a live-only subscription identical to others (same query, variables and scopes) does not
//!   run on this connection's engine: it joins the shared execution of `live`, and this loop
//!   writes the group's payload under the subscription's id. Ten thousand screens on one queue
//!   then cost one execution per event, not ten thousand. A member that falls behind gets an
//!   `error` (code `LAGGED`) and ends. Everything else goes through the engine as before.

use std::str::FromStr;
use std::time::{Duration, Instant};

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::ReceiverStream;

use super::live;
use crate::auth::{self, Caller};
use crate::startup::AppState;

/// How long a new connection may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection socket buffers; messages are small GraphQL JSON.
const BUFFER_BYTES: usize = 4 * 1024;
/// Largest client message accepted (a subscribe with its query).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

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

async fn serve(state: AppState, protocol: Option<WebSocketProtocols>, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    let Some(protocol) = protocol else {
        let _closing = sink.send(close(4406, "Subprotocol not acceptable")).await;
        return;
    };

    let first = match tokio::time::timeout(INIT_TIMEOUT, source.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        Ok(_) => return,
        Err(_elapsed) => {
            let _closing = sink
                .send(close(4408, "Connection initialisation timeout"))
                .await;
            return;
        }
    };
    if !matches!(message_type(&first, protocol), Ok((kind, _)) if kind == "connection_init") {
        let _closing = sink
            .send(close(4401, "Unauthorized: send connection_init first"))
            .await;
        return;
    }
    let Some(caller) = caller_from_init(&state, &first).await else {
        tracing::warn!("websocket refused: missing or unknown API key");
        let _closing = sink
            .send(close(4403, "Forbidden: unknown or missing API key"))
            .await;
        return;
    };

    // Connection data: only the caller. Nested loads go through the schema's process-wide
    // live loader (no cache, so nothing goes stale between events; shared, so the loads of
    // every connection resolving the same event merge into one batch).
    let mut data = Data::default();
    data.insert(caller.clone());

    let (to_engine, engine_input) = mpsc::channel::<Vec<u8>>(16);
    if to_engine.send(first.into_bytes()).await.is_err() {
        return;
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
    let ping_every = Duration::from_secs(state.config.limits.ws_ping_interval_secs);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let max_subscriptions = state.config.limits.max_subscriptions_per_connection;
    // Ids of this connection's running subscriptions, on the engine or shared.
    let mut active: std::collections::HashSet<String> = std::collections::HashSet::new();
    // This connection's memberships of shared live subscriptions, by subscription id. A
    // `StreamMap` polls them all from this one task: no task or channel per subscription.
    let mut shared: StreamMap<String, live::Member> = StreamMap::new();
    // Subscriptions are shared only once the engine has acknowledged `connection_init`, so a
    // client that subscribes before the ack gets the engine's behaviour, in order.
    let mut acknowledged = false;
    loop {
        let running = active.len() as i64;
        if running != reported_subscriptions {
            // Only on change: the gauge is one atomic shared by every connection, and this loop
            // turns once per delivery on every subscribed connection at the same moment.
            metrics.subscriptions.add(running - reported_subscriptions);
            reported_subscriptions = running;
        }
        tokio::select! {
            incoming = source.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let (kind, id) = match message_type(&text, protocol) {
                            Ok(parsed) => parsed,
                            Err(reason) => {
                                let _closing = sink.send(close(4400, &reason)).await;
                                break;
                            }
                        };
                        match (kind.as_str(), id) {
                            ("subscribe" | "start", Some(id)) if !active.contains(&id) => {
                                if active.len() >= max_subscriptions {
                                    let message = format!("at most {max_subscriptions} subscriptions per connection");
                                    if sink.send(refusal(protocol, &id, &message)).await.is_err() {
                                        break;
                                    }
                                    continue;
                                }
                                if acknowledged && let Some((key, request)) = shareable(&text, &caller) {
                                    shared.insert(id.clone(), state.live.join(key, request));
                                    active.insert(id);
                                    continue;
                                }
                                active.insert(id);
                            }
                            ("subscribe" | "start", Some(id)) => {
                                // A second subscribe under a running id: the engine replaces
                                // its stream with the new one, so a shared one is replaced too.
                                shared.remove(&id);
                            }
                            ("complete" | "stop", Some(id)) => {
                                active.remove(&id);
                                if shared.remove(&id).is_some() {
                                    // As the engine answers a stop of a running stream.
                                    if sink.send(complete(&id)).await.is_err() {
                                        break;
                                    }
                                    continue;
                                }
                            }
                            _ => {}
                        }
                        if to_engine.send(text.as_bytes().to_vec()).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let _closing = sink.send(close(4400, "binary messages are not part of the protocol")).await;
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                }
            }
            outgoing = engine.next() => {
                let message = match outgoing {
                    Some(WsMessage::Text(text)) => {
                        if let Some(id) = ended_subscription(&text) {
                            active.remove(&id);
                        }
                        if !acknowledged && text.contains(r#""type":"connection_ack""#) {
                            acknowledged = true;
                        }
                        Message::Text(text.into())
                    }
                    Some(WsMessage::Close(code, reason)) => close(code, &reason),
                    None => break,
                };
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            Some((id, delivery)) = shared.next(), if !shared.is_empty() => {
                let message = match delivery {
                    live::Delivery::Payload(payload) => next(protocol, &id, &payload),
                    live::Delivery::Lagged(missed) => {
                        tracing::info!(missed, "a shared subscriber fell behind; ending it");
                        shared.remove(&id);
                        active.remove(&id);
                        lagged(protocol, &id, missed)
                    }
                    live::Delivery::Ended => {
                        shared.remove(&id);
                        active.remove(&id);
                        complete(&id)
                    }
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::info!("websocket closed: no answer to keep-alive pings");
                    let _closing = sink.send(close(4408, "keep-alive timeout")).await;
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    metrics.subscriptions.sub(reported_subscriptions);
    metrics.websocket_connections.dec();
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
