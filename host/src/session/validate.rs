//! Checks on the events a harness plugin emits, before they reach the log.
//! A plugin may only emit agent and span events, in the wire shape; the
//! host alone emits `session.*` events, and clients alone `user.*` ones.

use serde_json::{Map, Value};

/// Why a plugin's event was refused (shown in the `session.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

fn field<'a>(ev: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    ev.get(name).filter(|v| !v.is_null())
}

fn need_str(ev: &Map<String, Value>, ty: &str, name: &str) -> Result<(), InvalidEvent> {
    match field(ev, name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(InvalidEvent(format!("{ty}: `{name}` must be a non-empty string"))),
    }
}

fn need_object(ev: &Map<String, Value>, ty: &str, name: &str) -> Result<(), InvalidEvent> {
    match field(ev, name) {
        Some(Value::Object(_)) => Ok(()),
        _ => Err(InvalidEvent(format!("{ty}: `{name}` must be an object"))),
    }
}

fn content_blocks(ev: &Map<String, Value>, ty: &str, required: bool, allowed: &[&str]) -> Result<(), InvalidEvent> {
    let blocks = match field(ev, "content") {
        None if !required => return Ok(()),
        Some(Value::Array(b)) => b,
        _ => return Err(InvalidEvent(format!("{ty}: `content` must be an array of content blocks"))),
    };
    for (i, b) in blocks.iter().enumerate() {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
        if !allowed.contains(&kind) {
            return Err(InvalidEvent(format!(
                "{ty}: content[{i}] has type `{kind}`; expected one of {}",
                allowed.join(", ")
            )));
        }
        if kind == "text" && !b.get("text").is_some_and(Value::is_string) {
            return Err(InvalidEvent(format!("{ty}: content[{i}].text must be a string")));
        }
    }
    Ok(())
}

/// Check one plugin event body (`type` and fields; `id` optional).
pub fn check_plugin_event(ev: &Map<String, Value>) -> Result<(), InvalidEvent> {
    let ty = ev.get("type").and_then(Value::as_str).ok_or_else(|| InvalidEvent("event has no string `type`".into()))?;
    if let Some(id) = ev.get("id")
        && !id.as_str().is_some_and(|s| crate::ids::has_kind(s, crate::ids::Kind::Event))
    {
        return Err(InvalidEvent(format!("{ty}: `id` must be an event id from new-event-id (sevt_...)")));
    }
    match ty {
        "agent.message" => content_blocks(ev, ty, true, &["text", "redacted"]),
        "agent.thinking" | "agent.thread_context_compacted" | "span.model_request_start" => Ok(()),
        "agent.tool_use" | "agent.custom_tool_use" => {
            need_str(ev, ty, "name")?;
            need_object(ev, ty, "input")?;
            if let Some(p) = field(ev, "evaluated_permission")
                && !matches!(p.as_str(), Some("allow" | "ask" | "deny"))
            {
                return Err(InvalidEvent(format!("{ty}: evaluated_permission must be allow, ask or deny")));
            }
            Ok(())
        }
        "agent.mcp_tool_use" => {
            need_str(ev, ty, "name")?;
            need_str(ev, ty, "mcp_server_name")?;
            need_object(ev, ty, "input")
        }
        "agent.tool_result" | "agent.mcp_tool_result" => {
            let id_field = if ty == "agent.tool_result" { "tool_use_id" } else { "mcp_tool_use_id" };
            need_str(ev, ty, id_field)?;
            content_blocks(ev, ty, false, &["text", "image", "document", "search_result"])?;
            match field(ev, "is_error") {
                None | Some(Value::Bool(_)) => Ok(()),
                _ => Err(InvalidEvent(format!("{ty}: is_error must be a boolean"))),
            }
        }
        "span.model_request_end" => {
            need_str(ev, ty, "model_request_start_id")?;
            match field(ev, "model_usage") {
                None => Ok(()),
                Some(Value::Object(u)) => {
                    for (k, v) in u {
                        if k != "speed" && !v.is_u64() {
                            return Err(InvalidEvent(format!("{ty}: model_usage.{k} must be a non-negative integer")));
                        }
                    }
                    Ok(())
                }
                Some(_) => Err(InvalidEvent(format!("{ty}: model_usage must be an object"))),
            }
        }
        t if t.starts_with("session.") || t.starts_with("user.") => Err(InvalidEvent(format!(
            "plugins may not emit `{t}`: the host emits session events and clients send user events"
        ))),
        t if t.starts_with("span.outcome_evaluation_") => {
            Err(InvalidEvent(format!("plugins may not emit `{t}`: the host grades outcomes")))
        }
        t => Err(InvalidEvent(format!("unknown event type `{t}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(), InvalidEvent> {
        check_plugin_event(v.as_object().unwrap())
    }

    #[test]
    fn accepts_well_formed_agent_events() {
        assert!(check(json!({"type": "agent.message", "content": [{"type": "text", "text": "hi"}]})).is_ok());
        assert!(check(json!({"type": "agent.tool_use", "name": "bash", "input": {"command": "ls"}, "evaluated_permission": "ask"})).is_ok());
        assert!(check(json!({"type": "agent.tool_result", "tool_use_id": "sevt_1", "content": [{"type": "text", "text": "x"}], "is_error": false})).is_ok());
        assert!(check(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_1", "model_usage": {"input_tokens": 3, "output_tokens": 1}})).is_ok());
    }

    #[test]
    fn plugin_types_in_the_stored_list_are_known_here() {
        use crate::model::events::STORED_EVENT_TYPES;
        let plugin = STORED_EVENT_TYPES
            .iter()
            .filter(|t| t.starts_with("agent.") || t.starts_with("span."))
            .filter(|t| !t.starts_with("span.outcome_evaluation_"));
        for t in plugin {
            let e = check(json!({"type": t})).err().map(|e| e.0).unwrap_or_default();
            assert!(!e.contains("unknown event type"), "{t}: {e}");
        }
    }

    #[test]
    fn refuses_malformed_and_reserved_events() {
        assert!(check(json!({"type": "agent.message", "content": "hi"})).is_err());
        assert!(check(json!({"type": "agent.tool_use", "input": {}})).is_err());
        assert!(check(json!({"type": "session.status_idle"})).is_err());
        assert!(check(json!({"type": "user.message"})).is_err());
        assert!(check(json!({"type": "agent.dance"})).is_err());
        assert!(check(json!({"type": "agent.thinking", "id": "agent_1"})).is_err());
        assert!(check(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_1", "model_usage": {"input_tokens": -1}})).is_err());
    }
}
