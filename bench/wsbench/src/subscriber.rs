//! One subscriber: its own websocket connection (as a dashboard screen has), the
//! `graphql-transport-ws` handshake with the API key in `connection_init`, one subscription.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Socket = WebSocketStream<TcpStream>;

/// What a dashboard screen shows of the queue: the ticket, its state, the patient, the service
/// and the staff member. The baseline serves the same shape.
pub const SCREEN_QUERY: &str = "subscription Screen($serviceId: ID) { queueChanged(serviceId: \
     $serviceId) { id vendorId state { kind label } client { name phone } service { name } \
     staff { name } joinedAt } }";

/// Where to connect and as whom.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub key: String,
}

/// Thousands of client connections to one server port would run out of ephemeral ports across
/// rounds (TIME_WAIT); spreading them over loopback source addresses 127.0.0.2… avoids that.
pub fn source_address(index: usize) -> Ipv4Addr {
    const SPREAD: usize = 64;
    Ipv4Addr::new(127, 0, 0, 2 + (index % SPREAD) as u8)
}

/// Opens a connection, completes the handshake and starts subscription `"1"`.
pub async fn subscribe(
    target: &Target,
    source: Ipv4Addr,
    service_id: Option<&str>,
) -> Result<Socket, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(target.address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = format!("ws://{}/graphql", target.address)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().map_err(|_| "header")?,
    );
    // Small buffers: the client holds as many connections as the server does.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let init = serde_json::json!({
        "type": "connection_init",
        "payload": {"authorization": format!("Bearer {}", target.key)},
    });
    send(&mut socket, init).await?;
    loop {
        let message = next_text(&mut socket, Duration::from_secs(30)).await?;
        if message.contains("connection_ack") {
            break;
        }
    }
    let subscribe = serde_json::json!({
        "id": "1",
        "type": "subscribe",
        "payload": {"query": SCREEN_QUERY, "variables": {"serviceId": service_id}},
    });
    send(&mut socket, subscribe).await?;
    Ok(socket)
}

async fn send(socket: &mut Socket, message: serde_json::Value) -> Result<(), String> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// The next text message (pings are answered by tungstenite while reading).
pub async fn next_text(socket: &mut Socket, wait: Duration) -> Result<String, String> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .map_err(|_| "no message in time".to_owned())?
            .ok_or("closed")?
            .map_err(|e| format!("read: {e}"))?;
        match message {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(frame) => return Err(format!("closed by server: {frame:?}")),
            _ => {}
        }
    }
}

/// What a subscription message is.
pub enum Event<'a> {
    /// A `next` with data (the text, to read the ticket from).
    Next(&'a str),
    /// `error`, `complete`, or a `next` carrying errors.
    Failure(&'a str),
    Other,
}

pub fn classify(text: &str) -> Event<'_> {
    if text.contains(r#""type":"next""#) {
        if text.contains(r#""errors":"#) {
            Event::Failure(text)
        } else {
            Event::Next(text)
        }
    } else if text.contains(r#""type":"error""#) || text.contains(r#""type":"complete""#) {
        Event::Failure(text)
    } else {
        Event::Other
    }
}
