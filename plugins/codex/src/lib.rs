//! # Bridle harness plugin: codex app-server
//!
//! Drives `codex app-server` (JSON-RPC 2.0 without the `"jsonrpc"` field,
//! one JSON object per line on stdio) inside the session sandbox and maps
//! it to Managed Agents events.
//!
//! ## Handshake (written by the plugin)
//!
//! On the first `user.message`: `initialize` (with `capabilities.experimentalApi`
//! when the agent has custom tools) → (reply) `initialized` + `thread/start`
//! (the custom tools as `dynamicTools`; a resumed thread keeps them), or
//! `thread/resume {threadId}` when the spec carries a
//! checkpoint → (reply) `checkpoint(thread id)` + `turn/start {threadId,
//! input}`. Later messages go straight to `turn/start`; a message that
//! arrives during a turn is queued until `turn/completed`. A failed
//! `thread/resume` falls back to `thread/start`.
//!
//! ## Runtime output → actions
//!
//! | app-server message | Action |
//! |---|---|
//! | `thread/start` / `thread/resume` reply, `thread/started` | `checkpoint(thread.id)` when it changes |
//! | `turn/started` | emit `span.model_request_start` |
//! | `thread/tokenUsage/updated` | emit `span.model_request_end` with `tokenUsage.last` (cached tokens split out of input) |
//! | `item/started` reasoning | emit `agent.thinking` |
//! | `item/agentMessage/delta` | `preview` text of the item's message preview (its first delta opens the preview) |
//! | `item/completed` agentMessage | emit `agent.message` (id: the item's preview's) |
//! | `item/started` commandExecution | emit `agent.tool_use` `bash` `{"command"}` (unwrapped from `bash -lc '…'`) |
//! | `item/completed` commandExecution | emit `agent.tool_result` (aggregated output; error unless exit 0) |
//! | `item/started` / `completed` fileChange | `agent.tool_use` `edit` (`write` when it only adds files) / `agent.tool_result` |
//! | `item/started` / `completed` mcpToolCall | `agent.mcp_tool_use` / `agent.mcp_tool_result` |
//! | `item/completed` webSearch | `agent.tool_use` `web_search` + `agent.tool_result` |
//! | `item/completed` contextCompaction | emit `agent.thread_context_compacted` |
//! | tool use of an `always_ask` tool | held until its approval request (→ `"ask"`) or completion (→ `"allow"`) |
//! | `item/commandExecution/requestApproval`, `item/fileChange/requestApproval` (and legacy `execCommandApproval`, `applyPatchApproval`) | `always_ask`: emit the tool use with `evaluated_permission: "ask"`; otherwise `write` `{"decision":"accept"}` |
//! | `item/started` dynamicToolCall, server request `item/tool/call` | emit `agent.custom_tool_use` (once per call id); the request is held until `user.custom_tool_result` |
//! | server request `item/tool/call` for a worker tool (a self-hosted environment: `remote_tools`; `[features] shell_tool = false`) | emit `agent.tool_use` (`bash`, ..., under the toolset's policy; `always_ask` held until `user.tool_confirmation`), then `tool-call`; the worker's result (`on-tool-result`) emits `agent.tool_result` and answers the request |
//! | other server requests | `write` a JSON-RPC error (Bridle offers no user-input prompts) |
//! | `error` `willRetry: true` | `retrying` (attempt from `Reconnecting... n/N`; 429 → `model_rate_limited_error`) and the failed attempt's span ends with `is_error` |
//! | first item, delta or usage after a retry | `resumed` |
//! | `error` `willRetry: false` | remembered for the failure |
//! | `turn/completed` `completed` / `interrupted` | `turn-ended {"type":"end_turn"}` |
//! | `turn/completed` `failed` | `failed` (`exhausted`; `terminal` for `unauthorized`) |
//! | non-JSON line, unknown method | skipped with a log line |
//!
//! ## User input → stdin
//!
//! | Event | Written |
//! |---|---|
//! | `user.message` | `turn/start {threadId, input: [{"type":"text","text","text_elements":[]}, {"type":"image","url"}]}` |
//! | `user.interrupt` | `turn/interrupt {threadId, turnId}` (the turn then completes `interrupted`) |
//! | `user.tool_confirmation` allow / deny | JSON-RPC reply `{"decision":"accept"}` / `{"decision":"decline"}` to the approval request |
//! | `user.custom_tool_result` | reply to the held `item/tool/call`: `{"contentItems": [{"type":"inputText","text"} \| {"type":"inputImage","imageUrl"}], "success": !is_error}` |
//!
//! ## Launch
//!
//! `codex app-server` with `CODEX_HOME=<workspace>/.bridle/codex` and a
//! `config.toml` there (written through the launch plan's `files`): a model
//! provider whose `base_url` is the session's gateway URL, `wire_api =
//! "responses"`, `request_max_retries = 0` (transport retries are silent,
//! see runtimes.md B.7) and `stream_max_retries = 5` (10 for MiniMax),
//! `sandbox_mode = "danger-full-access"` (the isolation is Bridle's), and
//! `approval_policy = "untrusted"` when bash, edit or write is
//! `always_ask` (else `never`). MiniMax upstreams (`api.minimax.io`,
//! `api.minimaxi.com`) get a `minimax` provider reading `MINIMAX_API_KEY`.

mod custom;
mod endpoint;
mod protocol;
mod remote;
mod session;

pub use endpoint::{ConfigToml, MINIMAX, OPENAI, Provider, is_minimax, parse_url, toml_str};
pub use session::{CodexSession, classify, unwrap_shell};

use bridle_harness_sdk::{ApiShape, CredentialPlan, ExecutionModel, Harness, HarnessInfo, LlmEndpoint};

/// The codex app-server harness.
pub struct Codex;

impl Harness for Codex {
    type Session = CodexSession;

    fn info() -> HarnessInfo {
        HarnessInfo {
            name: "codex".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            execution_model: ExecutionModel::AgentInSandbox,
            api_shape: ApiShape::OpenaiResponses,
            description: "OpenAI Codex (codex app-server, JSON-RPC over stdio)".into(),
            model_paths: ApiShape::OpenaiResponses.default_model_paths(),
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

bridle_harness_sdk::export_harness!(Codex);
