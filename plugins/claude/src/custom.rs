//! The agent's custom tools, served to Claude Code as an SDK MCP server that
//! lives in this plugin. `--mcp-config` names it (`{"type": "sdk", "name":
//! "bridle"}`); the CLI then sends every MCP message for it as a
//! `control_request` `mcp_message` and takes the JSON-RPC reply from our
//! `control_response` (`{"mcp_response": ...}`). The model sees the tools as
//! `mcp__bridle__<name>`; a `tools/call` is held open until the user's
//! `user.custom_tool_result` arrives.

use crate::protocol::{McpMessage, McpParams};
use crate::sdk_mcp::{self, Waiting};
use bridle_harness_sdk::custom::{Answer, CustomCalls, CustomResult, CustomTool, custom_tools};
use bridle_harness_sdk::{Action, LogLevel, log, new_event_id};
use serde_json::{Value, json};

/// The SDK MCP server's name (the middle of `mcp__bridle__<tool>`).
pub const SERVER: &str = "bridle";
const PREFIX: &str = "mcp__bridle__";

#[derive(Debug, Default)]
pub struct CustomServer {
    tools: Vec<CustomTool>,
    calls: CustomCalls<Waiting>,
}

/// The answer to a waiting `tools/call`.
fn call_result(w: &Waiting, content: Vec<Value>, is_error: bool) -> Action {
    sdk_mcp::call_result(w, Value::Array(content), is_error)
}

impl CustomServer {
    pub fn new(agent: &Value) -> Self {
        CustomServer { tools: custom_tools(agent), calls: CustomCalls::default() }
    }

    pub fn enabled(&self) -> bool {
        !self.tools.is_empty()
    }

    /// The `--mcp-config` entry for the server.
    pub fn mcp_config(&self) -> Value {
        json!({"type": "sdk", "name": SERVER})
    }

    /// The custom tool behind a Claude Code tool name, if it is one.
    pub fn custom_name<'a>(&self, claude_name: &'a str) -> Option<&'a str> {
        claude_name.strip_prefix(PREFIX).filter(|n| self.tools.iter().any(|t| t.name == *n))
    }

    /// The `agent.custom_tool_use` for a model's tool use, remembered so its
    /// `tools/call` and the user's answer find it.
    pub fn tool_use(&mut self, tool_use_id: &str, name: &str, input: &Value) -> Value {
        let event_id = new_event_id();
        self.calls.announce(tool_use_id, &event_id);
        json!({"type": "agent.custom_tool_use", "id": event_id, "name": name, "input": input})
    }

    /// One `mcp_message` control request for our server.
    pub fn on_mcp_message(&mut self, request_id: &str, message: McpMessage, out: &mut Vec<Action>) {
        if let Some((waiting, params)) = sdk_mcp::dispatch(request_id, message, SERVER, &self.tools, out) {
            self.on_call(waiting, params, out);
        }
    }

    fn on_call(&mut self, waiting: Waiting, params: McpParams, out: &mut Vec<Action>) {
        let name = params.name.as_deref().unwrap_or_default();
        if !self.tools.iter().any(|t| t.name == name) {
            let text = format!("`{name}` is not a custom tool of this agent");
            out.push(call_result(&waiting, vec![json!({"type": "text", "text": text})], true));
            return;
        }
        let tool_use_id = params.meta.and_then(|m| m.tool_use_id).unwrap_or_default();
        let event_id = match self.calls.event_for(&tool_use_id) {
            Some(e) => e.to_string(),
            None => {
                // No tool use seen for this call (an older CLI without the
                // id in `_meta`): announce it now.
                let input = params.arguments.filter(Value::is_object).unwrap_or_else(|| json!({}));
                let key = if tool_use_id.is_empty() { waiting.request_id.clone() } else { tool_use_id };
                let event = self.tool_use(&key, name, &input);
                out.push(Action::emit_json(&event));
                event["id"].as_str().unwrap_or_default().to_string()
            }
        };
        if let Some((w, result)) = self.calls.wait(&event_id, waiting) {
            out.push(call_result(&w, result.mcp_content(), result.is_error));
        }
    }

    /// `user.custom_tool_result`.
    pub fn on_result(&mut self, result: CustomResult) -> Result<Vec<Action>, String> {
        Ok(match self.calls.answer(result)? {
            Answer::Now(w, result) => vec![call_result(&w, result.mcp_content(), result.is_error)],
            Answer::Kept => Vec::new(),
        })
    }

    /// The CLI withdrew a control request.
    pub fn cancel(&mut self, request_id: &str) {
        self.calls.withdraw(|w| w.request_id == request_id);
    }

    /// End every open call (an interrupt): waiting ones get an error result
    /// so the CLI is not left blocked.
    pub fn release_all(&mut self, why: &str, out: &mut Vec<Action>) {
        for (event_id, w) in self.calls.drain() {
            log(LogLevel::Debug, &format!("claude: custom tool use {event_id} released: {why}"));
            out.push(call_result(&w, vec![json!({"type": "text", "text": why})], true));
        }
    }

    /// Forget every open call (the turn or the process ended).
    pub fn forget_all(&mut self) {
        self.calls.drain();
    }
}
