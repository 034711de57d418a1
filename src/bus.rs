//! Live fan-out of committed domain events to this process's subscribers. Only events that
//! committed are published (after the commit), in cursor order, because one writer publishes.
//! A receiver that lags behind the channel is told so by `broadcast` and catches up from the
//! event log, which is the source of truth; the channel is only the fast path.

use std::sync::Arc;

use entity::domain_event;
use tokio::sync::broadcast;

/// Events kept for slow receivers before they must catch up from the database.
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct Bus {
    /// `broadcast`: every subscriber sees every event, and a slow one never blocks the writer.
    sender: broadcast::Sender<Arc<domain_event::Model>>,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Bus { sender }
    }

    pub fn publish(&self, events: Vec<domain_event::Model>) {
        for event in events {
            // No receiver is not an error: nobody is watching right now.
            let _no_receivers_is_fine = self.sender.send(Arc::new(event));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<domain_event::Model>> {
        self.sender.subscribe()
    }
}
