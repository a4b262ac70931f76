//! `user.tool_confirmation`: the user's answer to a tool use held under an
//! `always_ask` policy, read whole before a plugin touches what waits on it,
//! so a malformed answer leaves the waiting call answerable.

use serde_json::Value;

/// The model's reason when the user denies without a message.
pub const DEFAULT_DENY_MESSAGE: &str = "The user denied this tool call.";

/// A `user.tool_confirmation`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The held `agent.tool_use` (or `agent.mcp_tool_use`) event.
    pub tool_use_id: String,
    pub allow: bool,
    /// What the model hears on a deny: the user's `deny_message`, else
    /// [`DEFAULT_DENY_MESSAGE`].
    pub deny_message: String,
}

impl Confirmation {
    pub fn from_event(event: &Value) -> Result<Confirmation, String> {
        let tool_use_id = event["tool_use_id"].as_str().ok_or("user.tool_confirmation without tool_use_id")?;
        let allow = match event["result"].as_str() {
            Some("allow") => true,
            Some("deny") => false,
            other => return Err(format!("user.tool_confirmation result {other:?}")),
        };
        let deny_message = event["deny_message"].as_str().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_DENY_MESSAGE);
        Ok(Confirmation { tool_use_id: tool_use_id.to_string(), allow, deny_message: deny_message.to_string() })
    }

    /// The error for a confirmation that no held tool use waits for.
    pub fn unexpected(&self) -> String {
        format!("no tool use {} is waiting for confirmation", self.tool_use_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_answer() {
        let c = |v: Value| Confirmation::from_event(&v);
        let allow = c(json!({"tool_use_id": "sevt_1", "result": "allow"})).unwrap();
        assert_eq!((allow.tool_use_id.as_str(), allow.allow), ("sevt_1", true));
        let deny = c(json!({"tool_use_id": "sevt_1", "result": "deny", "deny_message": "not now"})).unwrap();
        assert_eq!((deny.allow, deny.deny_message.as_str()), (false, "not now"));
        let bare = c(json!({"tool_use_id": "sevt_1", "result": "deny", "deny_message": ""})).unwrap();
        assert_eq!(bare.deny_message, DEFAULT_DENY_MESSAGE);
        assert_eq!(bare.unexpected(), "no tool use sevt_1 is waiting for confirmation");
    }

    #[test]
    fn refuses_what_is_no_answer() {
        for (event, error) in [
            (json!({"result": "allow"}), "user.tool_confirmation without tool_use_id"),
            (json!({"tool_use_id": 7, "result": "allow"}), "user.tool_confirmation without tool_use_id"),
            (json!({"tool_use_id": "sevt_1"}), "user.tool_confirmation result None"),
            (json!({"tool_use_id": "sevt_1", "result": "maybe"}), "user.tool_confirmation result Some(\"maybe\")"),
        ] {
            assert_eq!(Confirmation::from_event(&event), Err(error.to_string()), "{event}");
        }
    }
}
