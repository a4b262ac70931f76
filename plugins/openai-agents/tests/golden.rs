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
//! The driver is `bridle_harness_sdk::golden`.

use bridle_harness_sdk::golden::{self, Golden, describe_typed};
use bridle_harness_sdk::golden_cases;
use bridle_plugin_openai_agents::AgentsSession;

fn goldens() -> Golden {
    Golden::new(
        env!("CARGO_MANIFEST_DIR"),
        golden::default_spec("gpt-fake", "http://10.0.0.1:7070/llm/v1", Some("https://api.openai.com/v1"), true),
        describe_typed,
    )
}

/// Never an error or a panic: each runtime line of these cases is also fed
/// with one field at a time in another shape, and cut in half.
#[test]
fn odd_lines_never_fail() {
    goldens().check_odd_lines_of::<AgentsSession>(&[
        "rec_text.script.jsonl",
        "rec_tool.script.jsonl",
        "rec_retry.script.jsonl",
        "rec_exhausted.script.jsonl",
        "rec_custom_tool.script.jsonl",
        "ask_allow.script.jsonl",
        "stream_previews.script.jsonl",
    ]);
}

golden_cases! {
    goldens(), AgentsSession;
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
    recorded_custom_tool_round_trip => "rec_custom_tool.script.jsonl",
    recorded_custom_tool_error_result => "rec_custom_tool_error.script.jsonl",
    custom_tool_edges => "custom_tool_edges.script.jsonl",
    stream_previews => "stream_previews.script.jsonl",
    mcp_tools_allow_ask_deny_disabled => "mcp_tools.script.jsonl",
}
