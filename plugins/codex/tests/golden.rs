//! Golden tests: a transcript in, the exact actions out.
//!
//! Cases live in `tests/data/`:
//! * `cx1.jsonl`, `c500.jsonl`, ... — recorded `codex app-server` stdout (from
//!   `../shared/reference/samples`); the run starts with a `user.message` and
//!   feeds every line to `on_output`. The plugin's request ids (initialize 0,
//!   thread/start 1, turn/start 2) match the recording's.
//! * `NAME.script.jsonl` — edge cases, one step per line: `{"spec": {...}}`
//!   (first line, optional), `{"in": <user event>}`, `{"out": <runtime line as
//!   JSON, or a string for raw text>}`, `{"exit": <code or null>}`.
//!
//! The expected actions are in `NAME.expected.json`. Regenerate them with
//! `BLESS=1 cargo test -p bridle-plugin-codex --test golden`, then review the
//! diff by eye.
//! The driver is `bridle_harness_sdk::golden`.

use bridle_harness_sdk::golden::{self, Golden};
use bridle_harness_sdk::golden_cases;
use bridle_plugin_codex::CodexSession;
use serde_json::Value;

/// JSON-RPC lines: the method, and the id of requests and responses.
fn describe_out(v: &Value) -> String {
    match (v["method"].as_str(), &v["id"]) {
        (Some(m), Value::Null) => m.to_string(),
        (Some(m), id) => format!("request {id} {m}"),
        (None, Value::Null) => String::new(),
        (None, id) => format!("response {id}"),
    }
}

fn goldens() -> Golden {
    Golden::new(
        env!("CARGO_MANIFEST_DIR"),
        golden::default_spec("mock-model", "http://10.0.0.1:7070/llm/v1", Some("https://api.openai.com/v1"), false),
        describe_out,
    )
}

/// Never an error or a panic: each runtime line of these cases is also fed
/// with one field at a time in another shape, and cut in half.
#[test]
fn odd_lines_never_fail() {
    goldens().check_odd_lines_of::<CodexSession>(&[
        "cx1.jsonl",
        "c500.jsonl",
        "c429.jsonl",
        "c500x.jsonl",
        "cappr.jsonl",
        "cappr_ask.script.jsonl",
        "items.script.jsonl",
        "custom_tool.script.jsonl",
        "mcp_ask_allow.script.jsonl",
    ]);
}

golden_cases! {
    goldens(), CodexSession;
    cx1_plain_text => "cx1.jsonl",
    c500_two_retries_then_success => "c500.jsonl",
    c429_rate_limited_retry => "c429.jsonl",
    c500x_retries_exhausted => "c500x.jsonl",
    cappr_auto_approved => "cappr.jsonl",
    cappr_ask_allow => "cappr_ask.script.jsonl",
    approval_deny_and_file_change => "approval_deny.script.jsonl",
    interrupt => "interrupt.script.jsonl",
    resume_and_queue => "resume.script.jsonl",
    resume_fallback => "resume_fallback.script.jsonl",
    items_mcp_reasoning_search => "items.script.jsonl",
    bad_request_failure => "bad_request.script.jsonl",
    malformed_output => "malformed.script.jsonl",
    exit_mid_turn => "exit_mid_turn.script.jsonl",
    custom_tool_round_trip => "custom_tool.script.jsonl",
    custom_tool_error_result => "custom_tool_error.script.jsonl",
    custom_tool_early_answer_and_interrupt => "custom_tool_edges.script.jsonl",
    // Recorded from codex 0.171 with `default_tools_approval_mode = "prompt"`:
    // the MCP approval elicitation becomes `ask`, answered by the confirmation.
    mcp_always_ask_allow => "mcp_ask_allow.script.jsonl",
    mcp_always_ask_deny => "mcp_ask_deny.script.jsonl",
}
