//! Stream-only previews of events still being produced: the API's
//! `event_start` and `event_delta` frames. Sent only to stream connections
//! that opted in with `event_deltas[]`; never stored, listed or replayed.

use serde_json::json;

/// The event types a stream can ask previews of (`event_deltas[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreviewKind {
    /// Text deltas follow the start; the buffered `agent.message` concludes.
    AgentMessage,
    /// Start-only; the buffered `agent.thinking` concludes.
    AgentThinking,
}

impl PreviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewKind::AgentMessage => "agent.message",
            PreviewKind::AgentThinking => "agent.thinking",
        }
    }

    /// An `event_deltas[]` value.
    pub fn parse(s: &str) -> Option<PreviewKind> {
        match s {
            "agent.message" => Some(PreviewKind::AgentMessage),
            "agent.thinking" => Some(PreviewKind::AgentThinking),
            _ => None,
        }
    }
}

/// One preview frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// `event_start`: the previewed event's type and the id it will carry.
    Start { event_id: String, kind: PreviewKind },
    /// `event_delta`: text for entry `index` of an `agent.message`'s content.
    Text { event_id: String, index: u32, text: String },
}

impl Preview {
    /// The previewed event's type (text deltas only preview messages).
    pub fn kind(&self) -> PreviewKind {
        match self {
            Preview::Start { kind, .. } => *kind,
            Preview::Text { .. } => PreviewKind::AgentMessage,
        }
    }

    pub fn event_id(&self) -> &str {
        match self {
            Preview::Start { event_id, .. } | Preview::Text { event_id, .. } => event_id,
        }
    }

    /// The frame's `type` (its SSE `event:` name).
    pub fn frame_type(&self) -> &'static str {
        match self {
            Preview::Start { .. } => "event_start",
            Preview::Text { .. } => "event_delta",
        }
    }

    /// The frame's JSON, as the official SDKs parse it.
    pub fn body(&self) -> String {
        match self {
            Preview::Start { event_id, kind } => {
                json!({"type": "event_start", "event": {"type": kind.as_str(), "id": event_id}})
            }
            Preview::Text { event_id, index, text } => json!({
                "type": "event_delta",
                "event_id": event_id,
                "delta": {"type": "content_delta", "index": index, "content": {"type": "text", "text": text}},
            }),
        }
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn frames_have_the_sdks_shape() {
        let start = Preview::Start { event_id: "sevt_1".into(), kind: PreviewKind::AgentThinking };
        assert_eq!(start.frame_type(), "event_start");
        assert_eq!(
            serde_json::from_str::<Value>(&start.body()).unwrap(),
            json!({"type": "event_start", "event": {"type": "agent.thinking", "id": "sevt_1"}})
        );
        let delta = Preview::Text { event_id: "sevt_1".into(), index: 0, text: "Hel".into() };
        assert_eq!((delta.frame_type(), delta.kind()), ("event_delta", PreviewKind::AgentMessage));
        assert_eq!(
            serde_json::from_str::<Value>(&delta.body()).unwrap(),
            json!({"type": "event_delta", "event_id": "sevt_1",
                   "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": "Hel"}}})
        );
    }

    #[test]
    fn only_the_api_types_parse() {
        assert_eq!(PreviewKind::parse("agent.message"), Some(PreviewKind::AgentMessage));
        assert_eq!(PreviewKind::parse("agent.thinking"), Some(PreviewKind::AgentThinking));
        assert_eq!(PreviewKind::parse("agent.tool_use"), None);
    }
}
