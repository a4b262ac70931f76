//! # Bridle harness plugin: OpenAI Agents SDK (sandbox as tool)
//!
//! The agent loop runs in a **resident** Python program on the official
//! `openai-agents` SDK (`runtime/bridle_agents_runtime.py` beside this
//! crate), outside any sandbox; one process serves every session. Its tools
//! (`bash`, `read`, `write`, `edit`, `glob`, `grep`) are function tools that
//! do not run locally: each call travels runtime → plugin (`tool-call`
//! action) → host → the session's sandbox → `on-tool-result` → plugin →
//! runtime.
//!
//! ## Launch
//!
//! `launch` names the resident program, `bridle-agents-runtime` (a bare
//! name the host resolves in its runtime directory: an executable wrapper
//! that runs `bridle_agents_runtime.py` with a Python that has
//! `openai-agents` installed), with `OPENAI_AGENTS_DISABLE_TRACING=1`.
//!
//! ## Resident runtime protocol
//!
//! The host frames every line both ways as `{"session": <id>, "msg": <msg>}`;
//! the plugin writes and reads the bare `msg`. One JSON object per line.
//!
//! Plugin → runtime:
//!
//! | `msg` | Meaning |
//! |---|---|
//! | `{"type":"start","model","base_url","system","tools":[names],"custom_tools"?:[{"name","description","input_schema"}],"max_retries","resume":{"last_response_id"}\|null}` | (Re)configure the session; sent before every `input`, so a restarted runtime picks the session up. `base_url` is the session's real upstream (Responses API root) and the host adds the session's real key as `api_key` (the runtime runs outside every sandbox; the plugin never sees the key); the client is `AsyncOpenAI(max_retries=0)`. `custom_tools` (the agent's custom tools, when it has any) become function tools answered by the client. `mcp_servers` (`[{"name","url","enabled_tools":[..]\|null,"disabled_tools":[..]}]`, servers with an enabled tool) are reached with `MCPServerStreamableHttp` over the unix socket the host adds as `mcp_socket` (its MCP route for the session, which adds the vault credential); `url` is the route's (`…/mcp/<name>`). |
//! | `{"type":"input","content":[{"type":"text","text"} \| {"type":"image","url"}]}` | Run one turn (`Runner.run_streamed`) on the session's history plus this message. |
//! | `{"type":"tool_result","call_id","output","is_error"}` | The result of a `tool_call` or `custom_tool_call`. |
//! | `{"type":"mcp_approval","call_id","allow","output"?}` | Run the `mcp_tool_call` (`allow`), or answer the model with `output` instead. |
//! | `{"type":"interrupt"}` | Cancel the running turn; pending tool calls resolve as errors. |
//! | `{"type":"close"}` | Forget the session. |
//!
//! Runtime → plugin:
//!
//! | `msg` | Meaning | Action |
//! |---|---|---|
//! | `{"type":"model_request_start"}` | raw `response.created` | emit `span.model_request_start` |
//! | `{"type":"model_request_end","usage":{"input_tokens","output_tokens","cached_tokens"}}` | raw `response.completed` | emit `span.model_request_end` (cached split out of input) |
//! | `{"type":"text_delta","item_id","text"}` | raw `response.output_text.delta` | `preview` text of the item's message preview (its first delta opens the preview) |
//! | `{"type":"message","item_id","text"}` | raw `response.output_item.done` of a message (else `message_output_created`) | emit `agent.message` (id: the item's preview's) |
//! | `{"type":"reasoning"}` | `reasoning_item_created` | emit `agent.thinking` |
//! | `{"type":"tool_call","call_id","name","input"}` | a function tool was invoked and awaits its result | emit `agent.tool_use`; `always_allow`: `tool-call {"id": <event id>, "name", "input"}`; `always_ask`: wait for `user.tool_confirmation`; disabled: error result written back |
//! | `{"type":"custom_tool_call","call_id","name","input"}` | a custom tool was invoked and awaits its result | emit `agent.custom_tool_use` (the host idles the session, `requires_action`); `user.custom_tool_result` → `tool_result` with its text |
//! | `{"type":"mcp_tool_call","call_id","server","name","input"}` | an MCP tool was invoked and awaits `mcp_approval` | emit `agent.mcp_tool_use` (`mcp_server_name`); `always_allow`: `mcp_approval` allow; `always_ask` (and `auto`): wait for `user.tool_confirmation`; disabled: `deny`, an error result |
//! | `{"type":"mcp_tool_result","call_id","content","is_error"}` | the approved call returned | emit `agent.mcp_tool_result` |
//! | `{"type":"retry","retry":true,"attempt","max_retries","status","code","network","message","delay_ms"}` | a `ModelRetrySettings` policy decision | `retrying` (429 → `model_rate_limited_error`, 529 → `model_overloaded_error`, else `model_request_failed_error`) |
//! | `{"type":"retry","retry":false,...}` | the policy refused | logged (the `error` follows) |
//! | `{"type":"checkpoint","state":{"last_response_id"}}` | end of a turn | `checkpoint(<state JSON>)` |
//! | `{"type":"turn_end","final_output"}` | the run finished | `turn-ended {"type":"end_turn"}` |
//! | `{"type":"interrupted"}` | the run was cancelled | `turn-ended {"type":"end_turn"}` |
//! | `{"type":"error","kind":"api"\|"network"\|"max_turns"\|"other","status"?,"code"?,"message"}` | the run raised | `failed` (`exhausted`; `terminal` for 401/403) |
//! | `{"type":"error","kind":"busy"\|"protocol","message"}` | a message was refused | logged |
//! | `{"type":"log","level","message"}` | runtime diagnostics | logged |
//!
//! The first message after a `retrying` report (a request start, message,
//! reasoning or tool call) also yields `resumed`.
//!
//! ## Resume
//!
//! The runtime keeps each session's history (`RunResult.to_input_list()`)
//! in memory. The checkpoint is `{"last_response_id": ...}`; when a session
//! comes back with it and the runtime has no history for it (the runtime was
//! restarted), the next turn continues with `previous_response_id`, which
//! needs an upstream that stores responses.

mod protocol;
mod session;

pub use session::AgentsSession;

use bridle_harness_sdk::url::{PathEnd, parse_url};
use bridle_harness_sdk::{ApiShape, CredentialPlan, ExecutionModel, Harness, HarnessInfo, HeaderRule, LlmEndpoint};

/// The program the host resolves in its runtime directory.
pub const RUNTIME_PROGRAM: &str = "bridle-agents-runtime";

/// The runtime's source, for hosts that install it themselves.
pub const RUNTIME_SOURCE: &str = include_str!("../runtime/bridle_agents_runtime.py");

/// The model-retry budget of `ModelRetrySettings(max_retries=...)`.
pub const RETRY_BUDGET: u32 = 5;

/// The tools the runtime offers (the sandbox-backed part of the toolset).
pub const TOOLS: [&str; 6] = ["bash", "read", "write", "edit", "glob", "grep"];

/// The credential plan's placeholder. This harness's runtime is resident,
/// outside every sandbox: it gets the real key from the host in each `start`
/// message and calls the upstream itself, so the placeholder and the header
/// rule only matter to the sandbox's gateway, which this runtime never uses.
pub const PLACEHOLDER_KEY: &str = "sk-bridle-placeholder";

/// The openai-agents harness.
pub struct OpenaiAgents;

impl Harness for OpenaiAgents {
    type Session = AgentsSession;

    fn info() -> HarnessInfo {
        HarnessInfo {
            name: "openai-agents".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            execution_model: ExecutionModel::SandboxAsTool,
            api_shape: ApiShape::OpenaiResponses,
            description: "OpenAI Agents SDK (Python), resident runtime using the sandbox as a tool".into(),
            model_paths: ApiShape::OpenaiResponses.default_model_paths(),
            remote_tools: true,
        }
    }

    /// The runtime calls `<base>/responses`: the base must be the root of an
    /// OpenAI Responses–compatible API. The path's end decides (see
    /// `bridle_harness_sdk::url`), so gateway paths that name an Anthropic
    /// upstream mid-path, as LLMProxy's bridge does, pass.
    fn check_endpoint(llm: &LlmEndpoint) -> Result<(), String> {
        let Some(base) = llm.base_url.as_deref() else {
            return Ok(());
        };
        let url = parse_url(base)?;
        let anthropic = || {
            format!(
                "`{base}` is an Anthropic Messages endpoint; the openai-agents engine needs an \
                 OpenAI Responses-compatible base URL (it calls <base>/responses). Put a \
                 Responses-compatible gateway in front of it (e.g. LLMProxy's \
                 https://<host>/claude2codex/<provider URL>), or use the claude engine."
            )
        };
        if url.host == "api.anthropic.com" {
            return Err(anthropic());
        }
        match url.path_end() {
            PathEnd::V1Root | PathEnd::Other => Ok(()),
            PathEnd::AnthropicRoot | PathEnd::MessagesCall => Err(anthropic()),
            PathEnd::ChatCompletionsCall | PathEnd::CompletionsCall => Err(format!(
                "`{base}` is a Chat Completions endpoint; the openai-agents engine uses the \
                 Responses API: give the API root (e.g. https://api.openai.com/v1) of a \
                 provider that serves <base>/responses."
            )),
            PathEnd::ResponsesCall => {
                Err(format!("`{base}` ends in /responses; give the API root instead (e.g. https://api.openai.com/v1)."))
            }
        }
    }

    fn credentials(_llm: &LlmEndpoint) -> CredentialPlan {
        CredentialPlan {
            env: vec![("OPENAI_API_KEY".into(), PLACEHOLDER_KEY.into())],
            inject: vec![HeaderRule::new("authorization", "Bearer {token}")],
        }
    }
}

bridle_harness_sdk::export_harness!(OpenaiAgents);
