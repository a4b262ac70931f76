//! Bookkeeping for previews ([`crate::Preview`]): which runtime blocks have an
//! open preview, under which event id, so the buffered event that concludes
//! a preview carries the id its `start` announced.
//!
//! A runtime names its blocks its own way (a content block index, an item
//! id): that is the key. The buffered event claims its preview's id by key
//! when the runtime names the block again, or else the oldest open preview
//! of its type.

use crate::{Action, PreviewedType, new_event_id};

#[derive(Debug, Clone)]
struct Open {
    key: String,
    event_id: String,
    kind: PreviewedType,
}

/// The open previews of one model reply.
#[derive(Debug, Clone, Default)]
pub struct Previews {
    open: Vec<Open>,
}

impl Previews {
    /// Open a preview for block `key` (a fresh event id); returns the action
    /// that announces it. A key opened again replaces the old preview.
    pub fn start(&mut self, key: impl Into<String>, kind: PreviewedType) -> Action {
        let key = key.into();
        self.open.retain(|o| o.key != key);
        let event_id = new_event_id();
        let action = Action::preview_start(&event_id, kind);
        self.open.push(Open { key, event_id, kind });
        action
    }

    /// A text delta for block `key`'s message preview: `None` when none is
    /// open under that key, or the text is empty.
    pub fn text(&self, key: &str, text: &str) -> Option<Action> {
        if text.is_empty() {
            return None;
        }
        self.open
            .iter()
            .find(|o| o.key == key && o.kind == PreviewedType::AgentMessage)
            .map(|o| Action::preview_text(&o.event_id, 0, text))
    }

    /// The id for the buffered event of block `key`, closing its preview;
    /// `None` when no preview is open under that key.
    pub fn claim_key(&mut self, key: &str) -> Option<String> {
        let pos = self.open.iter().position(|o| o.key == key)?;
        Some(self.open.remove(pos).event_id)
    }

    /// The id for a buffered event of `kind`: the oldest open preview of that
    /// type (closing it), else a fresh id.
    pub fn claim(&mut self, kind: PreviewedType) -> String {
        match self.open.iter().position(|o| o.kind == kind) {
            Some(pos) => self.open.remove(pos).event_id,
            None => new_event_id(),
        }
    }

    /// Forget every open preview (the reply is over; its model request's
    /// `span.model_request_end` closes them for clients).
    pub fn clear(&mut self) {
        self.open.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Preview, reset_event_ids};

    #[test]
    fn buffered_events_carry_their_previews_ids() {
        reset_event_ids();
        let mut p = Previews::default();
        assert_eq!(
            p.start("0", PreviewedType::AgentThinking),
            Action::preview_start("sevt_test_0001", PreviewedType::AgentThinking)
        );
        assert_eq!(
            p.start("1", PreviewedType::AgentMessage),
            Action::preview_start("sevt_test_0002", PreviewedType::AgentMessage)
        );
        // Deltas go to message previews only, by key; empty text is no delta.
        assert_eq!(p.text("1", "Hi"), Some(Action::preview_text("sevt_test_0002", 0, "Hi")));
        assert_eq!(p.text("0", "hmm"), None);
        assert_eq!(p.text("1", ""), None);
        assert_eq!(p.text("9", "x"), None);
        assert_eq!(p.claim(PreviewedType::AgentMessage), "sevt_test_0002");
        assert_eq!(p.claim_key("0").as_deref(), Some("sevt_test_0001"));
        assert!(p.is_empty());
        // Nothing open: a fresh id.
        assert_eq!(p.claim(PreviewedType::AgentMessage), "sevt_test_0003");
        assert_eq!(p.claim_key("1"), None);
    }

    #[test]
    fn a_key_opened_again_replaces_its_preview() {
        reset_event_ids();
        let mut p = Previews::default();
        p.start("a", PreviewedType::AgentMessage);
        p.start("a", PreviewedType::AgentMessage);
        let Some(Action::Preview(Preview::Text { event_id, .. })) = p.text("a", "x") else { panic!() };
        assert_eq!(event_id, "sevt_test_0002");
        p.clear();
        assert!(p.is_empty());
    }
}
