//! The `LISTEN` side: follow the other nodes' notes and act on them here.

use std::sync::Arc;
use std::time::Duration;

use super::note::{CHANNEL, ClusterNote, NoteKind};
use crate::bus::Bus;
use crate::model::events::StoredEvent;
use crate::session::Sessions;
use crate::store::Store;

/// Follow the other nodes' notes: deliver their appends to this node's live
/// readers, wake this node's runner of a session another node appended user
/// input to, try to adopt sessions other nodes hand over, and end the
/// streams of sessions deleted elsewhere. Runs until the process ends;
/// reconnects on error.
pub async fn follow_other_nodes(store: Store, bus: Arc<Bus>, sessions: Option<Arc<Sessions>>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(store.url()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        tracing::info!(channel = CHANNEL, "following other nodes' events");
        // Notes sent while (re)connecting are gone: let every live runner
        // look for input it may have missed.
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
            match ClusterNote::decode(n.payload()) {
                Ok(note) if note.node == store.node_id() => {}
                Ok(note) => on_note(&store, &bus, sessions.as_ref(), note).await,
                Err(e) => tracing::warn!(payload = n.payload(), error = %e, "unreadable cluster note; ignored"),
            }
        }
    }
}

async fn on_note(store: &Store, bus: &Bus, sessions: Option<&Arc<Sessions>>, note: ClusterNote) {
    let session = note.session.as_str();
    match note.kind {
        NoteKind::Deleted { last_seq } => {
            let ev = StoredEvent::session_deleted(session, last_seq, crate::time::now_micros());
            bus.publish(session, &[ev]);
            bus.close(session);
        }
        NoteKind::WorkQueued { environment } => bus.work_ready(&environment),
        NoteKind::Released => {
            if let Some(s) = sessions {
                s.remote_activity(session, true);
            }
        }
        NoteKind::Appended { first, last } => {
            // Only the owner appends runtime output; another node's append
            // is user input for the runner here, if any.
            if let Some(s) = sessions {
                s.remote_activity(session, false);
            }
            if !bus.has_readers(session) {
                return;
            }
            match store.events_between(session, first, last).await {
                Ok(events) => bus.publish(session, &events),
                // Readers re-read the log on the next event they see.
                Err(e) => tracing::warn!(session_id = session, error = %e, "reading another node's events failed"),
            }
        }
    }
}
