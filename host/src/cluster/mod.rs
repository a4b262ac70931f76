//! How the nodes of a PostgreSQL cluster tell each other what happened to a
//! session: a typed [`ClusterNote`] sent with `NOTIFY` in the transaction
//! that made the change ([`note`]), and the `LISTEN` loop that acts on the
//! other nodes' notes ([`listener`]). On SQLite there is one node and no
//! notes.

pub mod listener;
pub mod note;

pub use listener::follow_other_nodes;
pub use note::{ClusterNote, NoteKind};
