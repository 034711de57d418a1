//! The HTTP/1.1 connection loop. `axum::serve` can bound none of what an attacker holds open —
//! slow request heads (slowloris), idle keep-alive sockets, the number of connections — and it
//! sleeps a fixed second on every accept error, so this module accepts and serves connections
//! itself with hyper and enforces the three `[limits]`:
//!
//! - `header_read_timeout_secs`: from a connection's opening, or from the first byte of its
//!   next request, the request head must be complete within this long.
//! - `idle_timeout_secs`: a connection with nothing in flight, or whose client has stopped
//!   reading its response, is closed after this long. hyper's own `header_read_timeout` starts
//!   when a keep-alive connection goes idle (hyper 1.12 `proto/h1/conn.rs`, `poll_read_head`),
//!   so it cannot tell idle from slow; both are measured here instead, from what the socket
//!   reads and writes and what the router is doing.
//! - `max_connections`: at the cap, the connection that has been quiet (no request in flight)
//!   longest is closed to make room — an idle keep-alive socket or a slow head, never one
//!   mid-request — so a vendor's retried webhook gets a slot at once instead of after a
//!   timeout. If every connection is mid-request, the next one waits in the listen backlog
//!   until one is quiet.
//!
//! A failed `accept` (EMFILE and the like) also closes the longest-quiet connection, which frees
//! a descriptor, and backs off exponentially instead of spinning. Websockets leave this loop when
//! they upgrade: their slot here is freed and `max_websocket_connections` bounds them, and no
//! HTTP timeout applies to them (the websocket has its own keep-alive). Graceful shutdown closes
//! quiet connections at once, lets in-flight requests finish, and returns when all are closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Limits;

/// The connection limits of [`serve`], from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&Limits> for ConnectionLimits {
    fn from(limits: &Limits) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: limits.max_connections,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff.reset();
                stream
            }
            // The peer gave up before we accepted it; nothing is wrong with the listener.
            Err(error) if is_peer_error(&error) => continue,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "accept failed; closing the longest-quiet connection and backing off");
                registry.evict_longest_quiet();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = take_slot(&slots, &registry) => permit,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let activity = registry.register(limits);
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            activity,
            registry.clone(),
            permit,
        ));
    }
    drop(listener);
    registry.close_all();
    // Every connection task holds a slot until it ends: all slots back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _drained = slots.acquire_many(all).await;
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_peer_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// A connection slot: at once if one is free, else after closing the longest-quiet
/// connection; if every connection is mid-request, when the first one goes quiet or closes.
async fn take_slot(slots: &Arc<Semaphore>, registry: &Registry) -> OwnedSemaphorePermit {
    loop {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return permit;
        }
        let quiet = registry.became_quiet.notified();
        if registry.evict_longest_quiet() {
            tracing::info!("connection cap reached; closed the longest-quiet connection");
        }
        tokio::select! {
            // The semaphore is never closed, so this is always a permit.
            permit = slots.clone().acquire_owned() => if let Ok(permit) = permit {
                return permit;
            },
            () = quiet => {}
        }
    }
}

/// Exponential backoff between failed accepts: 10 ms doubling to 1 s, reset by a success.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn next_delay(&mut self) -> Duration {
        let delay = Self::FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        delay.min(Self::MAX)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// One connection: hyper serves it while this task watches its deadline and close requests.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
    _slot: OwnedSemaphorePermit,
) {
    let _registered = Registered {
        registry,
        id: activity.id,
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handling = activity.request_started();
            let router = router.clone();
            async move {
                let Ok(response) = router.oneshot(request.map(Body::new)).await;
                let writing = handling.responded();
                Ok::<_, Infallible>(response.map(|body| Body::new(TrackedBody { body, writing })))
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        // Measured by `Activity` instead (see the module doc); without a timer hyper would
        // ignore it anyway.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let changed = activity.changed.notified();
        let (deadline, close_requested, quiet) = {
            let state = activity.state();
            (
                state.deadline(&activity.limits),
                state.close_requested,
                state.is_quiet(),
            )
        };
        if close_requested {
            if quiet {
                return;
            }
            if !draining {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = changed => {}
            () = expiry => {
                let state = activity.state();
                if state.deadline(&activity.limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(
                        reason = state.expiry_reason(),
                        "closing a connection that timed out"
                    );
                    return;
                }
            }
        }
    }
}

/// The open connections, so that the cap and shutdown can ask some of them to close.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    /// Locked briefly to register, deregister or pick one to close; never across an await.
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
    /// Woken when a connection's last request finishes (a slot may now be freed).
    became_quiet: Arc<Notify>,
}

impl Registry {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, limits: ConnectionLimits) -> Arc<Activity> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            limits,
            state: Mutex::new(ActivityState::opened(Instant::now())),
            changed: Notify::new(),
            became_quiet: self.became_quiet.clone(),
        });
        self.connections().insert(id, activity.clone());
        activity
    }

    /// Asks the connection quiet longest to close; `false` when every one is mid-request.
    fn evict_longest_quiet(&self) -> bool {
        let connections = self.connections();
        let longest = connections
            .values()
            .filter_map(|activity| {
                let state = activity.state();
                (state.is_quiet() && !state.close_requested)
                    .then_some((state.quiet_since, activity))
            })
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, activity)) => {
                activity.request_close();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for activity in self.connections().values() {
            activity.request_close();
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.connections().remove(&self.id);
    }
}

/// What one connection is doing, fed by its socket (bytes read and written) and its requests
/// (handler running, response being written).
struct Activity {
    id: u64,
    limits: ConnectionLimits,
    /// Touched by the socket on every read and write; a mutex (not atomics) because the deadline
    /// depends on several fields at once. Never held across an await.
    state: Mutex<ActivityState>,
    /// Wakes the connection's task: its deadline moved earlier, or it was asked to close.
    changed: Notify,
    became_quiet: Arc<Notify>,
}

impl Activity {
    fn state(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_close(&self) {
        self.state().close_requested = true;
        self.changed.notify_one();
    }

    fn bytes_read(&self) {
        if self.state().bytes_read(Instant::now()) {
            self.changed.notify_one();
        }
    }

    fn bytes_written(&self) {
        self.state().last_write = Instant::now();
    }

    fn request_started(self: &Arc<Self>) -> Handling {
        self.state().request_started();
        Handling {
            activity: self.clone(),
            responded: false,
        }
    }
}

/// A request whose handler is running (the request timeout bounds it, not this module).
struct Handling {
    activity: Arc<Activity>,
    responded: bool,
}

impl Handling {
    fn responded(mut self) -> Writing {
        self.responded = true;
        self.activity.state().handler_responded(Instant::now());
        Writing {
            activity: self.activity.clone(),
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if !self.responded {
            self.activity.state().handlers -= 1;
            self.activity.finish_if_quiet();
        }
    }
}

/// A response whose body hyper is still writing; dropped when it is done (or abandoned).
struct Writing {
    activity: Arc<Activity>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.activity.state().bodies -= 1;
        self.activity.finish_if_quiet();
    }
}

impl Activity {
    /// Called when a request ends: if nothing else is in flight, the idle clock starts now.
    fn finish_if_quiet(&self) {
        let quiet = {
            let mut state = self.state();
            let quiet = state.is_quiet();
            if quiet {
                state.quiet_since = Instant::now();
            }
            quiet
        };
        if quiet {
            self.changed.notify_one();
            self.became_quiet.notify_one();
        }
    }
}

/// The pure part: which deadline applies given what is in flight.
#[derive(Debug)]
struct ActivityState {
    /// Requests whose handler is running.
    handlers: usize,
    /// Responses whose body is being written.
    bodies: usize,
    /// Since when nothing has been in flight (the connection's opening at first).
    quiet_since: Instant,
    /// No request has started on this connection yet: its first head is due by the header
    /// timeout, counted from the opening.
    fresh: bool,
    /// When the first byte of the next request arrived, if it has and its head is not complete.
    head_started: Option<Instant>,
    last_write: Instant,
    close_requested: bool,
}

impl ActivityState {
    fn opened(now: Instant) -> ActivityState {
        ActivityState {
            handlers: 0,
            bodies: 0,
            quiet_since: now,
            fresh: true,
            head_started: None,
            last_write: now,
            close_requested: false,
        }
    }

    fn is_quiet(&self) -> bool {
        self.handlers == 0 && self.bodies == 0
    }

    /// `true` when this started a request head (the deadline moved).
    fn bytes_read(&mut self, now: Instant) -> bool {
        if self.is_quiet() && self.head_started.is_none() {
            self.head_started = Some(if self.fresh { self.quiet_since } else { now });
            return true;
        }
        false
    }

    fn request_started(&mut self) {
        self.handlers += 1;
        self.fresh = false;
        self.head_started = None;
    }

    fn handler_responded(&mut self, now: Instant) {
        self.handlers -= 1;
        self.bodies += 1;
        self.last_write = now;
    }

    /// When the connection is closed if nothing changes; `None` while a handler runs.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.handlers > 0 {
            None
        } else if self.bodies > 0 {
            Some(self.last_write + limits.idle_timeout)
        } else if let Some(started) = self.head_started {
            Some(started + limits.header_read_timeout)
        } else if self.fresh {
            Some(self.quiet_since + limits.header_read_timeout)
        } else {
            Some(self.quiet_since + limits.idle_timeout)
        }
    }

    fn expiry_reason(&self) -> &'static str {
        if self.bodies > 0 {
            "client stopped reading its response"
        } else if self.head_started.is_some() || self.fresh {
            "request head not received in time"
        } else {
            "idle keep-alive connection"
        }
    }
}

/// The socket, reporting reads and writes to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells the connection when it is written (dropped).
struct TrackedBody {
    body: Body,
    writing: Writing,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) {
            self.writing.activity.bytes_written();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
    };

    #[test]
    fn a_new_connection_owes_its_first_head_by_the_header_timeout_from_opening() {
        let opened = Instant::now();
        let mut state = ActivityState::opened(opened);
        assert_eq!(
            state.deadline(&LIMITS),
            Some(opened + Duration::from_secs(20))
        );
        // A first byte late does not restart the clock.
        state.bytes_read(opened + Duration::from_secs(15));
        assert_eq!(
            state.deadline(&LIMITS),
            Some(opened + Duration::from_secs(20))
        );
    }

    #[test]
    fn no_deadline_while_a_handler_runs_then_idle_after_the_response() {
        let opened = Instant::now();
        let mut state = ActivityState::opened(opened);
        state.request_started();
        assert_eq!(state.deadline(&LIMITS), None);
        let responded = opened + Duration::from_secs(1);
        state.handler_responded(responded);
        assert_eq!(
            state.deadline(&LIMITS),
            Some(responded + Duration::from_secs(60))
        );
        state.bodies -= 1;
        let quiet = opened + Duration::from_secs(2);
        state.quiet_since = quiet;
        assert_eq!(
            state.deadline(&LIMITS),
            Some(quiet + Duration::from_secs(60))
        );
        // The next request's first byte starts the header clock.
        let next = opened + Duration::from_secs(30);
        assert!(state.bytes_read(next));
        assert_eq!(
            state.deadline(&LIMITS),
            Some(next + Duration::from_secs(20))
        );
        assert!(
            !state.bytes_read(next + Duration::from_secs(5)),
            "only the first byte"
        );
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }
}
