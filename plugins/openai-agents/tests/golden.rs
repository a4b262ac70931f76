//! Golden tests: a transcript in, the exact actions out.
//!
//! Cases live in `tests/data/`:
//! * `rec_*.script.jsonl` — recorded by `tests/recorder/record.py`: the real
//!   resident runtime (`runtime/bridle_agents_runtime.py` on `openai-agents`)
//!   against a loopback fake Responses server; each `out` is one runtime
//!   `msg` (the host strips the session framing).
//! * `NAME.script.jsonl` — edge cases. Steps, one per line: `{"spec": {...}}`
//!   (first line, optional), `{"in": <user event>}`, `{"out": <runtime msg as
//!   JSON, or a string for raw text>}`, `{"tool_result": {"content",
//!   "is_error", "exit_code"}}` (its `id` defaults to the last `tool-call`
//!   action's), `{"exit": <code or null>}`.
//!
//! The expected actions are in `NAME.expected.json`. Regenerate them with
//! `BLESS=1 cargo test -p bridle-plugin-openai-agents --test golden`, then review the
//! diff by eye.

use bridle_harness_sdk::{Action, HarnessSession, SessionSpec, reset_event_ids};
use bridle_plugin_openai_agents::AgentsSession;
use serde_json::{Value, json};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn default_spec() -> Value {
    json!({
        "session_id": "sesn_test",
        "agent": {"model": {"id": "gpt-fake"}, "system": null, "tools": [
            {"type": "agent_toolset_20260401",
             "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}
        ]},
        "workspace": "/workspace",
        "resume": null,
        "llm": {"base_url": "http://10.0.0.1:7070/llm/v1", "upstream_base_url": "https://api.openai.com/v1", "model": "gpt-fake"},
        "resident": true
    })
}

enum Step {
    In(Value),
    Out(String),
    ToolResult(Value),
    Exit(Option<i32>),
}

fn load(name: &str) -> (Value, Vec<Step>) {
    let text = std::fs::read_to_string(data(name)).expect("case file");
    let mut spec = default_spec();
    let mut steps = Vec::new();
    if name.ends_with(".script.jsonl") {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("script line is JSON");
            if let Some(s) = v.get("spec") {
                spec = s.clone();
            } else if let Some(e) = v.get("in") {
                steps.push(Step::In(e.clone()));
            } else if let Some(o) = v.get("out") {
                steps.push(Step::Out(match o {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }));
            } else if let Some(r) = v.get("tool_result") {
                steps.push(Step::ToolResult(r.clone()));
            } else if let Some(c) = v.get("exit") {
                steps.push(Step::Exit(c.as_i64().map(|c| c as i32)));
            } else {
                panic!("bad script line {line}");
            }
        }
    } else {
        steps.push(Step::In(json!({"type": "user.message", "id": "sevt_user_1",
            "content": [{"type": "text", "text": "say hi"}]})));
        steps.extend(text.lines().map(|l| Step::Out(l.to_string())));
    }
    (spec, steps)
}

/// Run a case; the result lists every step that produced actions.
fn run(name: &str) -> Value {
    reset_event_ids();
    let (spec, steps) = load(name);
    let spec = SessionSpec::from_json(&spec.to_string()).expect("spec");
    let mut session = AgentsSession::new(spec);
    let mut log = Vec::new();
    let mut last_call: Option<String> = None;
    for (i, step) in steps.into_iter().enumerate() {
        let (label, result) = match step {
            Step::In(e) => (format!("in {}", e["type"].as_str().unwrap_or("?")), session.on_input(e)),
            Step::Out(line) => {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let kind = [v["type"].as_str(), v["subtype"].as_str(), v["event"]["type"].as_str()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                (format!("out {kind}"), session.on_output(&line))
            }
            Step::ToolResult(mut r) => {
                if r.get("id").is_none() {
                    r["id"] = json!(last_call.clone().unwrap_or_default());
                }
                ("tool result".to_string(), session.on_tool_result(r))
            }
            Step::Exit(code) => (format!("exit {code:?}"), Ok(session.on_exit(code))),
        };
        if let Ok(actions) = &result {
            for a in actions {
                if let Action::ToolCall(call) = a {
                    let v: Value = serde_json::from_str(call).unwrap_or(Value::Null);
                    last_call = v["id"].as_str().map(str::to_string);
                }
            }
        }
        match result {
            Ok(actions) if actions.is_empty() => {}
            Ok(actions) => log.push(json!({
                "step": i, "what": label,
                "actions": actions.iter().map(Action::to_golden).collect::<Vec<_>>(),
            })),
            Err(e) => log.push(json!({"step": i, "what": label, "error": e})),
        }
    }
    Value::Array(log)
}

fn golden(name: &str) {
    let actual = run(name);
    let stem = name.trim_end_matches(".jsonl").trim_end_matches(".script");
    let path = data(&format!("{stem}.expected.json"));
    let pretty = serde_json::to_string_pretty(&actual).expect("json") + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, pretty).expect("write expected");
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing; run with BLESS=1", path.display()));
    let expected: Value = serde_json::from_str(&expected).expect("expected is JSON");
    assert!(expected == actual, "{name}: actions differ from {}\n--- actual ---\n{pretty}", path.display());
}

macro_rules! cases {
    ($($test:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $test() { golden($file); } )*
    };
}

cases! {
    recorded_text => "rec_text.script.jsonl",
    recorded_tool_round_trip => "rec_tool.script.jsonl",
    recorded_two_retries_then_success => "rec_retry.script.jsonl",
    recorded_retries_exhausted => "rec_exhausted.script.jsonl",
    recorded_bad_request => "rec_bad_request.script.jsonl",
    ask_allow => "ask_allow.script.jsonl",
    ask_deny_and_disabled_tool => "ask_deny.script.jsonl",
    interrupt_during_tool_call => "interrupt.script.jsonl",
    resume_and_errors => "resume.script.jsonl",
    malformed_output => "malformed.script.jsonl",
    exit_mid_turn => "exit_mid_turn.script.jsonl",
}
