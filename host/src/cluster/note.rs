//! The one message nodes exchange over `NOTIFY`, and its one encoding.

use serde::{Deserialize, Serialize};

/// The PostgreSQL channel every node listens on.
pub const CHANNEL: &str = "bridle_events";

/// Something one node did to a session that the others must hear of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNote {
    /// The node that made the change (a node ignores its own notes).
    pub node: String,
    pub session: String,
    #[serde(flatten)]
    pub kind: NoteKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum NoteKind {
    /// Events `first..=last` were appended to the session's log.
    Appended { first: i64, last: i64 },
    /// The session's lease was given up with work left (a handover).
    Released,
    /// The session was deleted; its log ended at `last_seq`.
    Deleted { last_seq: i64 },
    /// A work item was queued in this self-hosted environment (for the
    /// session): long polls there may take it.
    WorkQueued { environment: String },
}

impl ClusterNote {
    pub fn new(node: &str, session: &str, kind: NoteKind) -> Self {
        ClusterNote { node: node.to_owned(), session: session.to_owned(), kind }
    }

    /// The `NOTIFY` payload (JSON; far below PostgreSQL's 8000-byte limit,
    /// since ids are short).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a note always serializes")
    }

    pub fn decode(payload: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_note_round_trips() {
        for kind in [
            NoteKind::Appended { first: 3, last: 9 },
            NoteKind::Released,
            NoteKind::Deleted { last_seq: 12 },
            NoteKind::WorkQueued { environment: "env_1".into() },
        ] {
            let note = ClusterNote::new("node_a", "sesn_1", kind);
            assert_eq!(ClusterNote::decode(&note.encode()).unwrap(), note);
        }
    }

    #[test]
    fn encoding_is_stable() {
        // Nodes of two versions share a cluster during a rolling upgrade.
        let note = ClusterNote::new("n", "s", NoteKind::Appended { first: 1, last: 2 });
        assert_eq!(note.encode(), r#"{"node":"n","session":"s","what":"appended","first":1,"last":2}"#);
        assert_eq!(
            ClusterNote::decode(r#"{"node":"n","session":"s","what":"deleted","last_seq":4}"#).unwrap().kind,
            NoteKind::Deleted { last_seq: 4 }
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", "n s 1 2", r#"{"node":"n","session":"s","what":"exploded"}"#, "{}"] {
            assert!(ClusterNote::decode(bad).is_err(), "{bad:?}");
        }
    }
}
