//! # Bridle harness plugin: Claude Code
//!
//! Drives `claude -p --input-format stream-json --output-format stream-json
//! --verbose` the way the Claude Agent SDK does, inside the session sandbox
//! (agent in sandbox), and maps its NDJSON to Managed Agents events.
//!
//! ## Runtime output → actions
//!
//! | Claude Code line | Action |
//! |---|---|
//! | `system/init` (`session_id`) | `checkpoint(session_id)` when it changes |
//! | `stream_event` `message_start` | emit `span.model_request_start` |
//! | `stream_event` `message_delta` | usage accumulated on the open span |
//! | `stream_event` `message_stop` | emit `span.model_request_end` with `model_usage` |
//! | `stream_event` `content_block_start` text / thinking | `preview` start (`agent.message` / `agent.thinking`), keyed by block index |
//! | `stream_event` `content_block_delta` `text_delta` | `preview` text of that block's message preview |
//! | `assistant` without stream events | a span opens at the message, closes at the next other line |
//! | `assistant` text block | emit `agent.message` `[{"type":"text","text"}]` (id: its block's preview's, in block order) |
//! | `assistant` thinking / redacted_thinking | emit `agent.thinking` (id: its preview's) |
//! | `assistant` tool_use (`Bash`, `Read`, ...) | emit `agent.tool_use` (`bash`, `read`, ...; `evaluated_permission: "allow"`) |
//! | `assistant` tool_use `mcp__workspace__<tool>` (remote tools) | emit `agent.tool_use` (`bash`, ...), as for the built-in |
//! | `assistant` tool_use `mcp__srv__tool` | emit `agent.mcp_tool_use` |
//! | `assistant` tool_use `mcp__bridle__<custom tool>` | emit `agent.custom_tool_use` (plain name; its `user` tool_result emits nothing) |
//! | `control_request` `mcp_message` for server `bridle` | the agent's custom tools as an SDK MCP server: `initialize`, `tools/list` answered at once; `tools/call` held until `user.custom_tool_result` (`--mcp-config` names it `{"type":"sdk","name":"bridle"}`, `--allowedTools` allows `mcp__bridle`) |
//! | `control_request` `mcp_message` for server `workspace` (a self-hosted environment: `remote_tools`) | the workers' tools (`bash`, `read`, `write`, `edit`, `glob`, `grep`) as an SDK MCP server, replacing the built-ins: `tools/call` → `tool-call` action for the emitted `agent.tool_use`; the worker's result (`on-tool-result`) answers it |
//! | tool_use of an `always_ask` tool | held until `can_use_tool` (→ `"ask"`) or its result (→ `"allow"`) |
//! | `control_request` `can_use_tool` | `always_ask`: emit the tool use with `"ask"`, wait for `user.tool_confirmation`; otherwise `write` an allow reply |
//! | other `control_request` | `write` an error reply (Bridle registers no hooks or other SDK servers) |
//! | `user` tool_result | emit `agent.tool_result` / `agent.mcp_tool_result`; `tool_use_id` is the event id of the tool use |
//! | `system/api_retry` | `retrying` (529/overloaded → `model_overloaded_error`, 429/rate_limit → `model_rate_limited_error`, else `model_request_failed_error`) |
//! | first progress line after a retry | `resumed` |
//! | `system/compact_boundary` | emit `agent.thread_context_compacted` |
//! | `result` `is_error: false`, or after `user.interrupt` | `turn-ended {"type":"end_turn"}` |
//! | `result` `is_error: true`, API error | `failed` (type from status/error; `exhausted`, `terminal` for auth/billing) |
//! | `result` `is_error: true`, other (max turns, ...) | `failed` `unknown_error`, `exhausted` |
//! | synthetic `assistant` with `is_api_error_message` | nothing (its text is the failure message) |
//! | non-JSON line, unknown type | skipped with a log line |
//!
//! The failure flag is `is_error`, never `subtype` (an exhausted retry ends
//! with `subtype: "success"`, `is_error: true`).
//!
//! ## User input → stdin
//!
//! | Event | Written |
//! |---|---|
//! | `user.message` | `{"type":"user","message":{"role":"user","content":[...]},"parent_tool_use_id":null}` |
//! | `user.interrupt` | `{"type":"control_request","request_id":"bridle_N","request":{"subtype":"interrupt"}}` |
//! | `user.tool_confirmation` allow | `control_response` success `{"behavior":"allow","updatedInput":<input>}` |
//! | `user.tool_confirmation` deny | `control_response` success `{"behavior":"deny","message":<deny_message>}` |
//! | `user.custom_tool_result` | `control_response` success `{"mcp_response": {"result": {"content", "isError"}}}` to the held `tools/call` (kept if the call has not come yet) |
//! | `user.interrupt` with a held `tools/call` | that call is answered `isError` first, so the CLI can stop |
//!
//! ## Resume
//!
//! `checkpoint` carries Claude Code's `session_id`; the next launch passes
//! `--resume <id>`. Its transcripts live under `CLAUDE_CONFIG_DIR`, which is
//! `<workspace>/.bridle/claude/.claude`, so they survive a sandbox restart.

mod custom;
mod endpoint;
mod policy;
mod protocol;
mod remote;
mod sdk_mcp;
mod session;

pub use endpoint::{PLACEHOLDER_KEY, parse_url};
pub use session::ClaudeSession;

use bridle_harness_sdk::{ApiShape, CredentialPlan, ExecutionModel, Harness, HarnessInfo, LlmEndpoint};

/// The Claude Code harness.
pub struct Claude;

impl Harness for Claude {
    type Session = ClaudeSession;

    fn info() -> HarnessInfo {
        HarnessInfo {
            name: "claude".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            execution_model: ExecutionModel::AgentInSandbox,
            api_shape: ApiShape::AnthropicMessages,
            description: "Claude Code (stream-json, as driven by the Claude Agent SDK)".into(),
            model_paths: ApiShape::AnthropicMessages.default_model_paths(),
            remote_tools: true,
        }
    }

    fn check_endpoint(llm: &LlmEndpoint) -> Result<(), String> {
        endpoint::check(llm)
    }

    fn credentials(llm: &LlmEndpoint) -> CredentialPlan {
        endpoint::credentials(llm)
    }
}

bridle_harness_sdk::export_harness!(Claude);
