//! The outgoing side of one websocket connection: a bounded queue of messages waiting for the
//! socket, drained by the connection loop's write branch. Nothing in the loop awaits the socket
//! directly, so a client that does not read cannot stop the loop from reading what it sends,
//! polling its engine or running its keep-alive. The queue's bound (`ws_max_queued_bytes`) and
//! how long the socket has taken nothing decide instead when such a client is given up.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};

/// Queue slots kept after a burst has drained; more is given back, so an idle connection costs
/// what it did before the burst.
const IDLE_CAPACITY: usize = 8;

/// Messages waiting for the socket, in order.
pub(super) struct Outbox {
    queue: VecDeque<Message>,
    /// What the queued messages cost (see [`cost`]); the bound applies to this.
    bytes: usize,
    limit: usize,
    /// Messages were handed to the socket and not flushed yet.
    unflushed: bool,
    /// When the socket last took something, or when something started to wait after nothing
    /// did: the start of the current stall, if the outbox is waiting.
    progress_at: Instant,
}

/// A message refused because the queue is at its bound: the client sends (or is sent) more
/// than it reads.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Overflow;

impl Outbox {
    pub(super) fn new(limit: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            limit,
            unflushed: false,
            progress_at: Instant::now(),
        }
    }

    /// Queues `message`, unless that would take the queue over its bound. An empty queue takes
    /// one message of any size, so a large payload still goes out to a client that reads.
    pub(super) fn push(&mut self, message: Message) -> Result<(), Overflow> {
        self.admit(&message)?;
        self.queue.push_back(message);
        Ok(())
    }

    /// Queues a control frame (a keep-alive ping) ahead of the waiting messages: a client busy
    /// reading a backlog still gets it, and answers it, within the keep-alive's patience.
    /// Frames are whole messages, so it never lands inside one.
    pub(super) fn push_first(&mut self, message: Message) -> Result<(), Overflow> {
        self.admit(&message)?;
        self.queue.push_front(message);
        Ok(())
    }

    fn admit(&mut self, message: &Message) -> Result<(), Overflow> {
        let cost = cost(message);
        if !self.queue.is_empty() && self.bytes + cost > self.limit {
            return Err(Overflow);
        }
        if !self.is_waiting() {
            self.progress_at = Instant::now();
        }
        self.bytes += cost;
        Ok(())
    }

    /// Whether anything waits for the socket: queued messages or an unfinished flush.
    pub(super) fn is_waiting(&self) -> bool {
        !self.queue.is_empty() || self.unflushed
    }

    /// How long the socket has taken nothing while something waited (zero when nothing does).
    pub(super) fn stalled_for(&self) -> Duration {
        if self.is_waiting() {
            self.progress_at.elapsed()
        } else {
            Duration::ZERO
        }
    }

    /// Drops what has not reached the socket yet: a client that does not read would never get
    /// it, and a close frame should not wait behind it.
    pub(super) fn discard(&mut self) {
        self.queue = VecDeque::new();
        self.bytes = 0;
    }

    /// Hands the queued messages to `sink` and flushes them; done when all are flushed.
    /// Cancel-safe: a message leaves the queue only when the sink takes it, so the loop may
    /// drop this future whenever another branch is ready.
    pub(super) fn flush<'a, S>(
        &'a mut self,
        sink: &'a mut S,
    ) -> impl Future<Output = Result<(), S::Error>> + 'a
    where
        S: Sink<Message> + Unpin,
    {
        poll_fn(move |cx| self.poll_flush(sink, cx))
    }

    fn poll_flush<S>(&mut self, sink: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Sink<Message> + Unpin,
    {
        while !self.queue.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= cost(&message);
            self.unflushed = true;
            self.progress_at = Instant::now();
            sink.start_send_unpin(message)?;
        }
        ready!(sink.poll_flush_unpin(cx))?;
        self.unflushed = false;
        self.progress_at = Instant::now();
        if self.queue.capacity() > IDLE_CAPACITY {
            self.queue.shrink_to(IDLE_CAPACITY);
        }
        Poll::Ready(Ok(()))
    }
}

/// What a queued message costs against the bound: its payload plus its queue slot.
fn cost(message: &Message) -> usize {
    let payload = match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(frame) => frame.as_ref().map_or(0, |frame| frame.reason.len()),
    };
    payload + std::mem::size_of::<Message>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Message {
        Message::Text(body.to_owned().into())
    }

    #[test]
    fn the_bound_refuses_what_would_exceed_it_but_an_empty_queue_takes_any_message() {
        let slot = std::mem::size_of::<Message>();
        let mut outbox = Outbox::new(2 * (slot + 10));
        assert_eq!(outbox.push(text(&"x".repeat(10))), Ok(()));
        assert_eq!(outbox.push(text(&"x".repeat(10))), Ok(()));
        assert_eq!(outbox.push(text("x")), Err(Overflow));

        let mut small = Outbox::new(1);
        assert_eq!(
            small.push(text(&"x".repeat(10_000))),
            Ok(()),
            "one always fits"
        );
        assert_eq!(small.push(text("x")), Err(Overflow));
        small.discard();
        assert!(!small.is_waiting());
        assert_eq!(small.push(text("x")), Ok(()));
    }

    #[tokio::test]
    async fn flushing_sends_everything_in_order_and_frees_the_bound() {
        let slot = std::mem::size_of::<Message>();
        let mut outbox = Outbox::new(3 * (slot + 1));
        for body in ["a", "b", "c"] {
            outbox.push(text(body)).expect("fits");
        }
        assert!(outbox.is_waiting());
        let mut sink: Vec<Message> = Vec::new();
        outbox
            .flush(&mut sink)
            .await
            .expect("a Vec takes everything");
        assert_eq!(sink, vec![text("a"), text("b"), text("c")]);
        assert!(!outbox.is_waiting());
        assert_eq!(outbox.stalled_for(), Duration::ZERO);
        for body in ["d", "e"] {
            outbox.push(text(body)).expect("room again");
        }
        let ping = Message::Ping(Vec::new().into());
        outbox.push_first(ping.clone()).expect("room for a ping");
        let mut sink: Vec<Message> = Vec::new();
        outbox
            .flush(&mut sink)
            .await
            .expect("a Vec takes everything");
        assert_eq!(
            sink,
            vec![ping, text("d"), text("e")],
            "the ping goes first"
        );
    }

    #[tokio::test]
    async fn a_sink_that_takes_nothing_keeps_the_queue_and_counts_the_stall() {
        let mut sink = Stuck;
        let mut outbox = Outbox::new(1 << 20);
        for body in ["a", "b", "c"] {
            outbox.push(text(body)).expect("fits");
        }
        let attempt =
            tokio::time::timeout(Duration::from_millis(20), outbox.flush(&mut sink)).await;
        assert!(attempt.is_err(), "the flush waits for the sink");
        assert!(outbox.is_waiting());
        assert!(outbox.stalled_for() > Duration::ZERO);
        assert_eq!(
            outbox.queue.len(),
            3,
            "nothing was lost when the flush was dropped"
        );
    }

    /// A socket whose peer never reads.
    struct Stuck;

    impl Sink<Message> for Stuck {
        type Error = std::convert::Infallible;

        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }

        fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }
}
