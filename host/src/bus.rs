//! In-process fan-out of appended session events to live SSE streams.
//!
//! The log in the store is the source of truth; the bus only wakes readers.
//! A reader that falls behind (a lagged channel) or sees a gap in sequence
//! numbers re-reads the log, so nothing is lost when the bus drops messages.
//! Previews (`event_start` / `event_delta`) travel the same channel, so they
//! keep their order with the events around them; they exist nowhere else,
//! and a lagged reader loses them (they are best effort).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::events::StoredEvent;
use crate::model::previews::Preview;

/// Messages per session buffered for slow readers before they must catch up
/// from the store.
const CAPACITY: usize = 1024;

/// One message to a session's live readers.
#[derive(Debug, Clone)]
pub enum Live {
    /// A stored event.
    Event(Arc<StoredEvent>),
    /// A stream-only preview frame.
    Preview(Arc<Preview>),
}

#[derive(Debug, Default)]
pub struct Bus {
    channels: Mutex<HashMap<String, broadcast::Sender<Live>>>,
    /// Per self-hosted environment: wakes its long polls when work is queued.
    work: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl Bus {
    pub fn subscribe(&self, session_id: &str) -> broadcast::Receiver<Live> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(session_id.to_owned()).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe()
    }

    /// Deliver events (already stored) to the session's live readers.
    pub fn publish(&self, session_id: &str, events: &[StoredEvent]) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = map.get(session_id) else { return };
        if tx.receiver_count() == 0 {
            map.remove(session_id);
            return;
        }
        for e in events {
            let _ = tx.send(Live::Event(Arc::new(e.clone())));
        }
    }

    /// Deliver a preview to the session's live readers, if it has any.
    pub fn preview(&self, session_id: &str, preview: Preview) {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(session_id) {
            let _ = tx.send(Live::Preview(Arc::new(preview)));
        }
    }

    /// End every live stream of a session (it was deleted).
    pub fn close(&self, session_id: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(session_id);
    }

    /// Whether any live reader follows this session here.
    pub fn has_readers(&self, session_id: &str) -> bool {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.get(session_id).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The wake-up of an environment's long polls: take it (and register
    /// with `notified()`) before looking at the queue, so no wake is missed.
    pub fn work_waiter(&self, environment_id: &str) -> Arc<tokio::sync::Notify> {
        let mut map = self.work.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(environment_id.to_owned()).or_default().clone()
    }

    /// Work was queued (here or on another node): wake the environment's polls.
    pub fn work_ready(&self, environment_id: &str) {
        let map = self.work.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(environment_id) {
            n.notify_waiters();
        }
    }

    /// Open SSE readers across all sessions.
    pub fn subscriber_count(&self) -> usize {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(broadcast::Sender::receiver_count).sum()
    }
}
