//! The agent's custom tools as codex dynamic tools: offered in `thread/start`
//! (`dynamicTools`, an experimental field: `initialize` opts in with
//! `capabilities.experimentalApi`), called through the server request
//! `item/tool/call`, which is held open until `user.custom_tool_result`
//! arrives and then answered with a `DynamicToolCallResponse`.

use crate::protocol::{RequestId, ToolCallParams};
use bridle_harness_sdk::custom::{Answer, CustomCalls, CustomResult, CustomTool, custom_tools};
use bridle_harness_sdk::{Action, new_event_id};
use serde_json::{Value, json};

#[derive(Debug, Default)]
pub struct DynamicTools {
    tools: Vec<CustomTool>,
    /// Waiting calls, answered by their JSON-RPC id.
    calls: CustomCalls<RequestId>,
}

fn reply(rpc_id: &RequestId, items: Vec<Value>, success: bool) -> Action {
    Action::write_line(&json!({"id": rpc_id, "result": {"contentItems": items, "success": success}}))
}

/// Managed Agents content → `DynamicToolCallOutputContentItem`s.
fn content_items(result: &CustomResult) -> Vec<Value> {
    result
        .content
        .iter()
        .map(|b| {
            let src = &b["source"];
            match (b["type"].as_str(), src["type"].as_str()) {
                (Some("text"), _) if b["text"].is_string() => json!({"type": "inputText", "text": b["text"]}),
                (Some("image"), Some("url")) => json!({"type": "inputImage", "imageUrl": src["url"]}),
                (Some("image"), Some("base64")) => json!({"type": "inputImage", "imageUrl": format!(
                    "data:{};base64,{}",
                    src["media_type"].as_str().unwrap_or("image/png"),
                    src["data"].as_str().unwrap_or_default()
                )}),
                _ => json!({"type": "inputText", "text": b.to_string()}),
            }
        })
        .collect()
}

impl DynamicTools {
    pub fn new(agent: &Value) -> Self {
        DynamicTools { tools: custom_tools(agent), calls: CustomCalls::default() }
    }

    pub fn enabled(&self) -> bool {
        !self.tools.is_empty()
    }

    /// `thread/start.dynamicTools`.
    pub fn specs(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|t| {
                json!({"type": "function", "name": t.name, "description": t.description, "inputSchema": t.input_schema})
            })
            .collect()
    }

    fn declares(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    /// A `dynamicToolCall` item started (or its call came first): the
    /// `agent.custom_tool_use`, once per call id.
    pub fn announce(&mut self, call_id: &str, tool: &str, input: Value, out: &mut Vec<Action>) {
        if self.calls.event_for(call_id).is_some() || !self.declares(tool) {
            return;
        }
        let event_id = new_event_id();
        self.calls.announce(call_id, &event_id);
        out.push(Action::emit_json(&json!({
            "type": "agent.custom_tool_use", "id": event_id, "name": tool, "input": input,
        })));
    }

    /// The server request `item/tool/call`.
    pub fn on_call(&mut self, rpc_id: RequestId, p: ToolCallParams, out: &mut Vec<Action>) {
        let tool = p.tool.as_deref().unwrap_or_default();
        if !self.declares(tool) || p.namespace.is_some() {
            let text = format!("`{tool}` is not a custom tool of this agent");
            out.push(reply(&rpc_id, vec![json!({"type": "inputText", "text": text})], false));
            return;
        }
        let call_id = p.call_id.as_deref().unwrap_or_default();
        let input = if p.arguments.is_object() { p.arguments.clone() } else { json!({}) };
        self.announce(call_id, tool, input, out);
        let Some(event_id) = self.calls.event_for(call_id).map(str::to_string) else {
            return;
        };
        if let Some((rpc_id, result)) = self.calls.wait(&event_id, rpc_id) {
            out.push(reply(&rpc_id, content_items(&result), !result.is_error));
        }
    }

    /// `user.custom_tool_result`.
    pub fn on_result(&mut self, result: CustomResult) -> Result<Vec<Action>, String> {
        Ok(match self.calls.answer(result)? {
            Answer::Now(rpc_id, result) => vec![reply(&rpc_id, content_items(&result), !result.is_error)],
            Answer::Kept => Vec::new(),
        })
    }

    /// codex resolved (or dropped) a server request.
    pub fn resolved(&mut self, rpc_id: &RequestId) {
        self.calls.withdraw(|id| id == rpc_id);
    }

    /// An interrupt: answer every waiting call as failed so the turn can stop.
    pub fn release_all(&mut self, why: &str, out: &mut Vec<Action>) {
        for (_, rpc_id) in self.calls.drain() {
            out.push(reply(&rpc_id, vec![json!({"type": "inputText", "text": why})], false));
        }
    }

    pub fn forget_all(&mut self) {
        self.calls.drain();
    }
}
