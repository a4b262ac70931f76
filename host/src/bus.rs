//! In-process fan-out of appended session events to live SSE streams.
//!
//! The log in the store is the source of truth; the bus only wakes readers.
//! A reader that falls behind (a lagged channel) or sees a gap in sequence
//! numbers re-reads the log, so nothing is lost when the bus drops messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::events::StoredEvent;

/// Messages per session buffered for slow readers before they must catch up
/// from the store.
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub struct Bus {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<StoredEvent>>>>,
}

impl Bus {
    pub fn subscribe(&self, session_id: &str) -> broadcast::Receiver<Arc<StoredEvent>> {
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
            let _ = tx.send(Arc::new(e.clone()));
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

    /// Open SSE readers across all sessions.
    pub fn subscriber_count(&self) -> usize {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(broadcast::Sender::receiver_count).sum()
    }
}

/// Follow the other nodes' appends (PostgreSQL `LISTEN`) and deliver them to
/// this node's live readers; wake this node's runner of a session another
/// node appended user input to, and try to adopt sessions other nodes hand
/// over. Runs until the process ends; reconnects on error.
pub async fn follow_other_nodes(
    store: crate::store::Store,
    bus: Arc<Bus>,
    sessions: Option<Arc<crate::session::Sessions>>,
) {
    use crate::store::EVENTS_CHANNEL;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(store.url()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            continue;
        }
        tracing::info!(channel = EVENTS_CHANNEL, "following other nodes' events");
        // Notifications sent while (re)connecting are gone: let every live
        // runner look for input it may have missed.
        if let Some(s) = &sessions {
            for id in s.live_ids() {
                s.wake(&id);
            }
        }
        loop {
            let n = match listener.recv().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            };
            let parts: Vec<&str> = n.payload().split(' ').collect();
            match parts.as_slice() {
                [node, _, ..] if *node == store.node_id() => {}
                [_, session, "deleted"] => {
                    let body = serde_json::json!({"type": "session.deleted", "id": crate::ids::new_id(crate::ids::Kind::Event),
                        "processed_at": crate::time::rfc3339(crate::time::now_micros())});
                    let ev = StoredEvent {
                        session_id: (*session).to_owned(),
                        seq: i64::MAX,
                        id: String::new(),
                        kind: "session.deleted".into(),
                        processed_at: crate::time::now_micros(),
                        body: body.to_string(),
                    };
                    bus.publish(session, &[ev]);
                    bus.close(session);
                }
                [_, session, "released"] => {
                    if let Some(s) = &sessions {
                        s.remote_activity(session, true);
                    }
                }
                [_, session, first, last] => {
                    // Only the owner appends runtime output; another node's
                    // append is user input for the runner here, if any.
                    if let Some(s) = &sessions {
                        s.remote_activity(session, false);
                    }
                    if !bus.has_readers(session) {
                        continue;
                    }
                    let (Ok(first), Ok(last)) = (first.parse::<i64>(), last.parse::<i64>()) else { continue };
                    match store.events_between(session, first, last).await {
                        Ok(events) => bus.publish(session, &events),
                        // Readers re-read the log on the next event they see.
                        Err(e) => {
                            tracing::warn!(session_id = session, error = %e, "reading another node's events failed")
                        }
                    }
                }
                _ => tracing::warn!(payload = n.payload(), "unexpected notification"),
            }
        }
    }
}
