//! The one place where the plugin contract's records become the engine's
//! typed inputs (and a tool outcome becomes the plugin's tool result). The
//! 0.1.0 contract carries stop reasons, failures and tool calls as JSON
//! strings; they are parsed here, and a malformed one is the plugin's fault
//! (`PluginAction::Invalid`), never a silent default. When the contract's
//! records are typed, only this module changes.

use bridle_harness::Action;
use serde_json::{Map, Value, json};

use super::engine::{Failure, PluginAction, ToolCall, ToolOutcome};
use super::validate::check_plugin_event;
use crate::ids::{Kind, new_id};

/// A plugin's actions as the engine takes them: events checked and given
/// an id, JSON payloads parsed.
pub fn from_plugin(actions: Vec<Action>) -> Vec<PluginAction> {
    actions.into_iter().map(one).collect()
}

fn one(action: Action) -> PluginAction {
    match action {
        Action::Emit(json) => match event(&json) {
            Ok(map) => PluginAction::Emit(map),
            Err(msg) => PluginAction::Invalid(msg),
        },
        Action::Write(bytes) => PluginAction::Write(bytes),
        Action::Retrying(r) => PluginAction::Retrying { error_type: r.error_type, message: r.message },
        Action::Resumed => PluginAction::Resumed,
        Action::ToolCall(json) => match tool_call(&json) {
            Ok(call) => PluginAction::ToolCall(call),
            Err(msg) => PluginAction::Invalid(msg),
        },
        Action::Checkpoint(token) => PluginAction::Checkpoint(token),
        Action::TurnEnded(json) => match serde_json::from_str::<Value>(&json) {
            Ok(stop @ Value::Object(_)) if stop.get("type").is_some_and(Value::is_string) => {
                PluginAction::TurnEnded(stop)
            }
            _ => {
                PluginAction::Invalid(format!("turn-ended: the stop reason is not a JSON object with a `type`: {json}"))
            }
        },
        Action::Failed(json) => match failure(&json) {
            Ok(f) => PluginAction::Failed(f),
            Err(msg) => PluginAction::Invalid(msg),
        },
    }
}

/// Check one emitted event and give it an id when it has none.
fn event(json: &str) -> Result<Map<String, Value>, String> {
    let mut map = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    check_plugin_event(&map).map_err(|e| e.to_string())?;
    map.entry("id").or_insert_with(|| Value::String(new_id(Kind::Event)));
    Ok(map)
}

fn tool_call(json: &str) -> Result<ToolCall, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("tool call: not JSON: {e}"))?;
    let id = v.get("id").and_then(Value::as_str).ok_or("tool call: no string `id`")?;
    let name = v.get("name").and_then(Value::as_str).ok_or("tool call: no string `name`")?;
    let input = v.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(ToolCall { id: id.to_owned(), name: name.to_owned(), input })
}

fn failure(json: &str) -> Result<Failure, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("failed: not JSON: {e}"))?;
    let error_type = v.get("type").and_then(Value::as_str).unwrap_or("unknown_error").to_owned();
    let message = v.get("message").and_then(Value::as_str).unwrap_or("the agent runtime failed").to_owned();
    let terminal = v.pointer("/retry_status/type").and_then(Value::as_str) == Some("terminal");
    Ok(Failure { error_type, message, terminal })
}

/// A tool outcome as the plugin's `on-tool-result` takes it.
pub fn tool_result_json(outcome: &ToolOutcome) -> String {
    json!({
        "id": outcome.id,
        "content": outcome.content,
        "is_error": outcome.is_error,
        "exit_code": outcome.exit_code,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_and_given_ids() {
        let got = from_plugin(vec![
            Action::Emit(r#"{"type":"agent.message","content":[{"type":"text","text":"hi"}]}"#.into()),
            Action::Emit(r#"{"type":"session.status_idle"}"#.into()),
            Action::Emit("not json".into()),
        ]);
        let PluginAction::Emit(m) = &got[0] else { panic!("{got:?}") };
        assert!(m["id"].as_str().unwrap().starts_with("sevt_"));
        assert!(matches!(&got[1], PluginAction::Invalid(m) if m.contains("plugins may not emit")));
        assert!(matches!(&got[2], PluginAction::Invalid(m) if m.starts_with("not JSON")));
    }

    #[test]
    fn payloads_parse_into_typed_values() {
        let got = from_plugin(vec![
            Action::end_turn(),
            Action::failed("billing_error", "no money", "terminal"),
            Action::ToolCall(r#"{"id":"sevt_t","name":"bash","input":{"command":"ls"}}"#.into()),
        ]);
        assert_eq!(got[0], PluginAction::TurnEnded(json!({"type": "end_turn"})));
        assert_eq!(
            got[1],
            PluginAction::Failed(Failure {
                error_type: "billing_error".into(),
                message: "no money".into(),
                terminal: true
            })
        );
        let PluginAction::ToolCall(c) = &got[2] else { panic!("{got:?}") };
        assert_eq!((c.id.as_str(), c.name.as_str(), &c.input), ("sevt_t", "bash", &json!({"command": "ls"})));
    }

    #[test]
    fn malformed_payloads_are_the_plugins_fault_not_defaults() {
        let got = from_plugin(vec![
            Action::TurnEnded("end_turn".into()),
            Action::Failed("{".into()),
            Action::ToolCall(r#"{"name":"bash"}"#.into()),
        ]);
        assert!(got.iter().all(|a| matches!(a, PluginAction::Invalid(_))), "{got:?}");
    }

    #[test]
    fn tool_outcomes_round_trip_to_the_plugin_shape() {
        let v: Value = serde_json::from_str(&tool_result_json(&ToolOutcome::interrupted("sevt_t"))).unwrap();
        assert_eq!(
            v,
            json!({"id": "sevt_t", "content": "interrupted by the user", "is_error": true, "exit_code": null})
        );
    }
}
