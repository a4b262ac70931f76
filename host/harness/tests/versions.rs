//! Contracts 0.1.0, 0.2.0 and 0.3.0 side by side: one `HarnessRuntime`
//! loads a 0.1.0 component (fixtures/echo-v0_1), a 0.2.0 one
//! (fixtures/echo-v0_2) and a 0.3.0 one (the template), and all run a plugin
//! session through the same host types.

mod support;

use bridle_harness::{Action, PluginSource, Preview, PreviewedType, RetryStatus, StopReason, ToolResult};
use serde_json::Value;
use support::{fixtures, runtime, spec, template};

const HELLO: &str = r#"{"type":"user.message","id":"sevt_1","content":[{"type":"text","text":"hello"}]}"#;

fn all() -> bridle_harness::HarnessRuntime {
    runtime(&[
        ("old", PluginSource::Path(fixtures().echo_v0_1.clone())),
        ("mid", PluginSource::Path(fixtures().echo_v0_2.clone())),
        ("new", PluginSource::Path(template().to_path_buf())),
    ])
}

/// One echo turn: write, cat's echo back, an agent message and a turn end.
async fn echo_turn(rt: &bridle_harness::HarnessRuntime, engine: &str) -> Vec<Action> {
    let plugin = rt.plugin(engine).unwrap();
    let mut session = plugin.new_session(&spec()).await.unwrap();
    assert_eq!(session.launch().await.unwrap().argv, vec!["cat"]);
    let input = session.on_input(HELLO).await.unwrap();
    let Action::Write(bytes) = &input[0] else { panic!("{engine}: {input:?}") };
    let line = std::str::from_utf8(bytes).unwrap().trim_end().to_string();
    let out = session.on_output(&line).await.unwrap();
    let Some(Action::Emit(event)) = out.iter().find(|a| matches!(a, Action::Emit(_))) else {
        panic!("{engine}: {out:?}")
    };
    let event: Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["type"], "agent.message", "{engine}");
    assert_eq!(event["content"][0]["text"], "hello", "{engine}");
    out
}

#[tokio::test]
async fn components_of_every_contract_run_in_one_runtime() {
    let rt = all();
    assert!(rt.registry().errors().is_empty(), "{}", rt.registry());
    let old = rt.plugin("old").unwrap();
    let mid = rt.plugin("mid").unwrap();
    let new = rt.plugin("new").unwrap();
    assert_eq!(old.contract_version(), "0.1.0");
    assert_eq!(mid.contract_version(), "0.2.0");
    assert_eq!(new.contract_version(), "0.3.0");
    // A 0.1.0 plugin cannot declare its model paths: its API shape's apply.
    assert_eq!(old.info().model_paths, ["/v1/messages", "/v1/messages/count_tokens"]);
    assert_eq!(mid.info().model_paths, ["/v1/messages"]);
    let listing = rt.registry().to_string();
    assert!(listing.contains("0.1.0") && listing.contains("0.2.0") && listing.contains("0.3.0"), "{listing}");

    let old_out = echo_turn(&rt, "old").await;
    // The 0.1.0 JSON stop reason arrives typed.
    assert_eq!(old_out.last(), Some(&Action::TurnEnded(StopReason::EndTurn)), "{old_out:?}");
    // 0.1.0 and 0.2.0 cannot preview: their turns have no preview actions.
    assert!(!old_out.iter().any(|a| matches!(a, Action::Preview(_))), "{old_out:?}");
    let mid_out = echo_turn(&rt, "mid").await;
    assert_eq!(mid_out, vec![mid_out[0].clone(), Action::TurnEnded(StopReason::EndTurn)]);
    let new_out = echo_turn(&rt, "new").await;
    assert_eq!(new_out.last(), Some(&Action::TurnEnded(StopReason::EndTurn)), "{new_out:?}");
    // 0.3.0 previews arrive typed, with the id the buffered message carries.
    let Action::Emit(event) = &new_out[2] else { panic!("{new_out:?}") };
    let id = serde_json::from_str::<Value>(event).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(
        new_out[..2],
        [
            Action::Preview(Preview::Start { event_id: id.clone(), event_type: PreviewedType::AgentMessage }),
            Action::Preview(Preview::Text { event_id: id, index: 0, text: "hello".into() }),
        ]
    );
}

#[tokio::test]
async fn a_0_2_plugins_failure_arrives_typed() {
    let rt = all();
    let mut session = rt.plugin("mid").unwrap().new_session(&spec()).await.unwrap();
    let failed = session.on_output(r#"{"type":"fail"}"#).await.unwrap();
    let [Action::Failed(f)] = &failed[..] else { panic!("{failed:?}") };
    assert_eq!((f.error_type.as_str(), f.retry), ("model_overloaded_error", RetryStatus::Terminal));
}

#[test]
fn inspect_shows_the_0_2_contract() {
    let d = bridle_harness::inspect(&fixtures().echo_v0_2).unwrap();
    assert_eq!(d.contract_version.as_deref(), Some("0.2.0"));
    assert!(d.error.is_none(), "{d}");
}

#[tokio::test]
async fn a_0_1_plugins_json_payloads_are_parsed_strictly() {
    let rt = all();
    let old = rt.plugin("old").unwrap();
    let mut session = old.new_session(&spec()).await.unwrap();

    // A failure: typed, with its retry status.
    let failed = session.on_output(r#"{"type":"fail"}"#).await.unwrap();
    let [Action::Failed(f)] = &failed[..] else { panic!("{failed:?}") };
    assert_eq!((f.error_type.as_str(), f.message.as_str()), ("model_overloaded_error", "busy"));
    assert_eq!(f.retry, RetryStatus::Terminal);

    // A tool call and its result, through the 0.1.0 JSON on both legs.
    let call = session.on_output(r#"{"type":"tool"}"#).await.unwrap();
    let [Action::ToolCall(c)] = &call[..] else { panic!("{call:?}") };
    assert_eq!((c.id.as_str(), c.name.as_str()), ("call_1", "bash"));
    assert_eq!(c.input["command"], "ls");
    let result = ToolResult { id: "call_1".into(), content: "a.txt".into(), is_error: false, exit_code: Some(0) };
    let answered = session.on_tool_result(&result).await.unwrap();
    let Action::Emit(event) = &answered[0] else { panic!("{answered:?}") };
    assert!(event.contains("a.txt"), "{event}");

    // A malformed stop reason is the plugin's error, not a silent end_turn,
    // and it leaves the instance usable.
    let err = session.on_output(r#"{"type":"bad_stop"}"#).await.unwrap_err();
    assert!(!err.is_fault(), "{err}");
    assert!(err.to_string().contains("invalid stop reason `not json`"), "{err}");
    assert!(session.on_output(r#"{"type":"fail"}"#).await.is_ok());
}

#[test]
fn inspect_shows_the_0_1_contract() {
    let d = bridle_harness::inspect(&fixtures().echo_v0_1).unwrap();
    assert_eq!(d.contract_version.as_deref(), Some("0.1.0"));
    assert!(d.error.is_none(), "{d}");
    assert!(d.to_string().contains("contract:    bridle:harness@0.1.0"), "{d}");
}
