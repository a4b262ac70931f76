//! The one place where the plugin contract's records become the engine's
//! inputs (and a tool outcome becomes the plugin's tool result). Stop
//! reasons, failures and tool calls arrive typed (the harness crate parses a
//! 0.1.0 plugin's JSON strings in its bindings, a malformed one being that
//! plugin's error); events stay JSON and are checked here: an invalid one is
//! the plugin's fault (`PluginAction::Invalid`), never stored.

use bridle_harness::{Action, PreviewedType, RetryStatus, ToolResult};
use serde_json::{Map, Value};

use super::engine::{Failure, PluginAction, ToolCall, ToolOutcome};
use super::validate::check_plugin_event;
use crate::ids::{Kind, new_id};
use crate::model::previews::{Preview, PreviewKind};

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
        Action::ToolCall(call) => PluginAction::ToolCall(ToolCall { id: call.id, name: call.name, input: call.input }),
        Action::Checkpoint(token) => PluginAction::Checkpoint(token),
        Action::TurnEnded(stop) => PluginAction::TurnEnded(serde_json::to_value(stop).unwrap_or_default()),
        Action::Failed(f) => PluginAction::Failed(Failure {
            error_type: f.error_type,
            message: f.message,
            terminal: f.retry == RetryStatus::Terminal,
        }),
        Action::Preview(bridle_harness::Preview::Start { event_id, event_type }) => {
            let kind = match event_type {
                PreviewedType::AgentMessage => PreviewKind::AgentMessage,
                PreviewedType::AgentThinking => PreviewKind::AgentThinking,
            };
            PluginAction::Preview(Preview::Start { event_id, kind })
        }
        Action::Preview(bridle_harness::Preview::Text { event_id, index, text }) => {
            PluginAction::Preview(Preview::Text { event_id, index, text })
        }
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

/// A tool outcome as the plugin's `on-tool-result` takes it.
pub fn tool_result(outcome: &ToolOutcome) -> ToolResult {
    ToolResult {
        id: outcome.id.clone(),
        content: outcome.content.clone(),
        is_error: outcome.is_error,
        exit_code: outcome.exit_code,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
    fn typed_records_become_engine_inputs() {
        let got = from_plugin(vec![
            Action::end_turn(),
            Action::failed("billing_error", "no money", RetryStatus::Terminal),
            Action::failed("overloaded_error", "busy", RetryStatus::Exhausted),
            Action::ToolCall(bridle_harness::ToolCall {
                id: "sevt_t".into(),
                name: "bash".into(),
                input: json!({"command": "ls"}),
            }),
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
        assert!(matches!(&got[2], PluginAction::Failed(f) if !f.terminal));
        let PluginAction::ToolCall(c) = &got[3] else { panic!("{got:?}") };
        assert_eq!((c.id.as_str(), c.name.as_str(), &c.input), ("sevt_t", "bash", &json!({"command": "ls"})));
    }

    #[test]
    fn previews_arrive_typed() {
        let got = from_plugin(vec![
            Action::preview_start("sevt_m", PreviewedType::AgentMessage),
            Action::preview_start("sevt_k", PreviewedType::AgentThinking),
            Action::preview_text("sevt_m", 0, "Hel"),
        ]);
        assert_eq!(
            got,
            vec![
                PluginAction::Preview(Preview::Start { event_id: "sevt_m".into(), kind: PreviewKind::AgentMessage }),
                PluginAction::Preview(Preview::Start { event_id: "sevt_k".into(), kind: PreviewKind::AgentThinking }),
                PluginAction::Preview(Preview::Text { event_id: "sevt_m".into(), index: 0, text: "Hel".into() }),
            ]
        );
    }

    #[test]
    fn tool_outcomes_become_the_plugins_tool_result() {
        let r = tool_result(&ToolOutcome::interrupted("sevt_t"));
        assert_eq!(
            (r.id.as_str(), r.content.as_str(), r.is_error, r.exit_code),
            ("sevt_t", "interrupted by the user", true, None)
        );
    }
}
