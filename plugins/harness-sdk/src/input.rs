//! The user events `HarnessSession::on_input` receives, by type, with what
//! the SDK reads for the plugin (a confirmation, a custom tool's result).
//! The message's content stays JSON: each runtime takes it in its own form
//! (see [`content`](crate::content)).

use serde_json::Value;

use crate::confirmation::Confirmation;
use crate::custom::CustomResult;

/// One user event.
#[derive(Debug, Clone, PartialEq)]
pub enum UserEvent {
    /// `user.message`.
    Message,
    /// `user.interrupt`.
    Interrupt,
    /// `user.tool_confirmation`, read.
    ToolConfirmation(Confirmation),
    /// `user.custom_tool_result`, read.
    CustomToolResult(CustomResult),
}

impl UserEvent {
    /// Read `event` for the harness named `harness` (the name the error for
    /// another event type gives).
    pub fn read(harness: &str, event: &Value) -> Result<UserEvent, String> {
        match event["type"].as_str() {
            Some("user.message") => Ok(UserEvent::Message),
            Some("user.interrupt") => Ok(UserEvent::Interrupt),
            Some("user.tool_confirmation") => Confirmation::from_event(event).map(UserEvent::ToolConfirmation),
            Some("user.custom_tool_result") => CustomResult::from_event(event).map(UserEvent::CustomToolResult),
            other => Err(format!("the {harness} harness does not accept {other:?} events")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_by_type() {
        let read = |v: Value| UserEvent::read("echo", &v);
        assert_eq!(read(json!({"type": "user.message", "content": "hi"})), Ok(UserEvent::Message));
        assert_eq!(read(json!({"type": "user.interrupt"})), Ok(UserEvent::Interrupt));
        let confirmation = read(json!({"type": "user.tool_confirmation", "tool_use_id": "sevt_1", "result": "allow"}));
        assert!(matches!(&confirmation, Ok(UserEvent::ToolConfirmation(c)) if c.allow), "{confirmation:?}");
        let result = read(json!({"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_2", "content": []}));
        assert!(matches!(&result, Ok(UserEvent::CustomToolResult(r)) if r.use_id == "sevt_2"), "{result:?}");
        assert!(read(json!({"type": "user.tool_confirmation", "tool_use_id": "sevt_1"})).is_err());
        assert_eq!(
            read(json!({"type": "user.define_outcome"})),
            Err("the echo harness does not accept Some(\"user.define_outcome\") events".to_string())
        );
        assert_eq!(read(json!({})), Err("the echo harness does not accept None events".to_string()));
    }
}
