//! Golden tests: a transcript in, the exact actions out.
//!
//! Cases live in `tests/data/`:
//! * `ccN.jsonl` — recorded Claude Code stdout (from `../shared/reference/samples`);
//!   the run starts with a `user.message` and feeds every line to `on_output`.
//! * `NAME.script.jsonl` — edge cases, one step per line: `{"spec": {...}}`
//!   (first line, optional), `{"in": <user event>}`, `{"out": <runtime line as
//!   JSON, or a string for raw text>}`, `{"exit": <code or null>}`.
//!
//! The expected actions are in `NAME.expected.json`. Regenerate them with
//! `BLESS=1 cargo test -p bridle-plugin-claude --test golden`, then review the
//! diff by eye.
//! The driver is `bridle_harness_sdk::golden`.

use bridle_harness_sdk::golden::{self, Golden, describe_typed};
use bridle_harness_sdk::golden_cases;
use bridle_plugin_claude::ClaudeSession;

fn goldens() -> Golden {
    Golden::new(
        env!("CARGO_MANIFEST_DIR"),
        golden::default_spec("claude-sonnet-4-5", "http://10.0.0.1:7070/llm", None, false),
        describe_typed,
    )
}

/// Never an error or a panic: each runtime line of these cases is also fed
/// with one field at a time in another shape, and cut in half.
#[test]
fn odd_lines_never_fail() {
    goldens().check_odd_lines_of::<ClaudeSession>(&[
        "cc1.jsonl",
        "cc2.jsonl",
        "cc3.jsonl",
        "cc4.jsonl",
        "cc5.jsonl",
        "permission_allow.script.jsonl",
        "custom_tool.script.jsonl",
        "mcp_thinking.script.jsonl",
        "stream_previews.script.jsonl",
        "remote_tools.script.jsonl",
    ]);
}

golden_cases! {
    goldens(), ClaudeSession;
    cc1_plain_text => "cc1.jsonl",
    cc2_two_retries_then_success => "cc2.jsonl",
    cc3_retries_exhausted => "cc3.jsonl",
    cc4_bash_tool_round_trip => "cc4.jsonl",
    cc5_max_turns => "cc5.jsonl",
    permission_allow => "permission_allow.script.jsonl",
    permission_deny => "permission_deny.script.jsonl",
    // A malformed answer is refused and leaves the prompt answerable.
    confirmation_malformed_then_allow => "confirmation_malformed.script.jsonl",
    interrupt => "interrupt.script.jsonl",
    rate_limited_retry_then_resume => "rate_limit.script.jsonl",
    mcp_and_thinking => "mcp_thinking.script.jsonl",
    malformed_output => "malformed.script.jsonl",
    exit_mid_turn => "exit_mid_turn.script.jsonl",
    resume_same_session => "resume.script.jsonl",
    custom_tool_round_trip => "custom_tool.script.jsonl",
    custom_tool_error_result => "custom_tool_error.script.jsonl",
    custom_tool_early_answer_and_interrupt => "custom_tool_edges.script.jsonl",
    stream_previews => "stream_previews.script.jsonl",
    remote_tools_round_trip => "remote_tools.script.jsonl",
}
