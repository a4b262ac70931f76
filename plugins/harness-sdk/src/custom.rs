//! Custom tools (`{"type": "custom", "name", "description", "input_schema"}`
//! in `agent.tools`): the client, not the runtime, runs them. A plugin offers
//! them to its runtime in the runtime's own way, emits
//! `agent.custom_tool_use` when the model calls one (the host then idles the
//! session with `requires_action`), holds the runtime's call open, and
//! answers it when `user.custom_tool_result` arrives.
//!
//! [`CustomCalls`] keeps that bookkeeping: which custom tool uses were
//! emitted, which runtime calls wait on which event, and answers that came
//! before the runtime asked (a runtime may announce the tool use a moment
//! before it makes the call that waits for the result).

use std::collections::HashMap;

use serde_json::{Value, json};

/// One custom tool the agent declares.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTool {
    pub name: String,
    pub description: String,
    /// A JSON Schema object (`{"type": "object"}` when the agent gives none).
    pub input_schema: Value,
}

/// The agent's custom tools, in declaration order (entries without a name
/// are skipped; the API validated them already).
pub fn custom_tools(agent: &Value) -> Vec<CustomTool> {
    agent["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"].as_str() == Some("custom"))
        .filter_map(|t| {
            Some(CustomTool {
                name: t["name"].as_str().filter(|n| !n.is_empty())?.to_string(),
                description: t["description"].as_str().unwrap_or_default().to_string(),
                input_schema: if t["input_schema"].is_object() {
                    t["input_schema"].clone()
                } else {
                    json!({"type": "object"})
                },
            })
        })
        .collect()
}

/// A `user.custom_tool_result`, read.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResult {
    /// The `agent.custom_tool_use` event it answers.
    pub use_id: String,
    /// Managed Agents content blocks (may be empty).
    pub content: Vec<Value>,
    pub is_error: bool,
}

impl CustomResult {
    pub fn from_event(event: &Value) -> Result<CustomResult, String> {
        let use_id = event["custom_tool_use_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("user.custom_tool_result without custom_tool_use_id")?
            .to_string();
        let content = match &event["content"] {
            Value::Array(blocks) => blocks.clone(),
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            _ => Vec::new(),
        };
        Ok(CustomResult { use_id, content, is_error: event["is_error"].as_bool().unwrap_or(false) })
    }

    /// The text blocks, joined by newlines (what text-only runtimes get).
    pub fn text(&self) -> String {
        self.content.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The content as MCP `CallToolResult` content: text and base64 images
    /// kept, any other block given as its JSON text.
    pub fn mcp_content(&self) -> Vec<Value> {
        self.content
            .iter()
            .map(|b| match (b["type"].as_str(), b["text"].as_str()) {
                (Some("text"), Some(t)) => json!({"type": "text", "text": t}),
                (Some("image"), _) if b["source"]["type"].as_str() == Some("base64") => json!({
                    "type": "image", "data": b["source"]["data"], "mimeType": b["source"]["media_type"],
                }),
                _ => json!({"type": "text", "text": b.to_string()}),
            })
            .collect()
    }
}

/// Custom tool uses of one session, by `agent.custom_tool_use` event id. `H`
/// is how the runtime's waiting call is answered (a control request id, a
/// JSON-RPC id, a call id).
#[derive(Debug, Clone)]
pub struct CustomCalls<H> {
    /// Runtime call id (tool_use id, call id) → event id.
    by_call: HashMap<String, String>,
    /// Event id → the runtime's waiting call.
    waiting: HashMap<String, H>,
    /// Answers for emitted uses whose runtime call has not come yet.
    early: HashMap<String, CustomResult>,
}

impl<H> Default for CustomCalls<H> {
    fn default() -> Self {
        CustomCalls { by_call: HashMap::new(), waiting: HashMap::new(), early: HashMap::new() }
    }
}

/// What to do with a user's custom tool result.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<H> {
    /// The runtime waits on `H`: answer it now.
    Now(H, CustomResult),
    /// Kept until the runtime makes the call.
    Kept,
}

impl<H> CustomCalls<H> {
    /// The event id of a runtime call already announced, if any.
    pub fn event_for(&self, call_id: &str) -> Option<&str> {
        self.by_call.get(call_id).map(String::as_str)
    }

    /// Record an emitted `agent.custom_tool_use` for the runtime's call id.
    pub fn announce(&mut self, call_id: &str, event_id: &str) {
        self.by_call.insert(call_id.to_string(), event_id.to_string());
    }

    /// The runtime waits on `handle` for the result of `event_id`. Returns
    /// the answer if the user already gave it.
    pub fn wait(&mut self, event_id: &str, handle: H) -> Option<(H, CustomResult)> {
        match self.early.remove(event_id) {
            Some(result) => {
                self.forget(event_id);
                Some((handle, result))
            }
            None => {
                self.waiting.insert(event_id.to_string(), handle);
                None
            }
        }
    }

    /// A user's result. `Err` when no custom tool use of this session by
    /// that id is open.
    pub fn answer(&mut self, result: CustomResult) -> Result<Answer<H>, String> {
        if let Some(handle) = self.waiting.remove(&result.use_id) {
            self.forget(&result.use_id);
            return Ok(Answer::Now(handle, result));
        }
        if self.by_call.values().any(|e| *e == result.use_id) && !self.early.contains_key(&result.use_id) {
            let id = result.use_id.clone();
            self.early.insert(id, result);
            return Ok(Answer::Kept);
        }
        Err(format!("no custom tool use {} is waiting for a result", result.use_id))
    }

    fn forget(&mut self, event_id: &str) {
        self.by_call.retain(|_, e| e != event_id);
    }

    /// Forget every open use (the turn ended); returns the waiting calls,
    /// oldest event id first, so the plugin can release them.
    pub fn drain(&mut self) -> Vec<(String, H)> {
        self.by_call.clear();
        self.early.clear();
        let mut all: Vec<(String, H)> = self.waiting.drain().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Drop a waiting call the runtime withdrew (by its handle).
    pub fn withdraw(&mut self, pred: impl Fn(&H) -> bool) {
        let gone: Vec<String> = self.waiting.iter().filter(|(_, h)| pred(h)).map(|(e, _)| e.clone()).collect();
        for e in gone {
            self.waiting.remove(&e);
            self.forget(&e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.by_call.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, text: &str) -> CustomResult {
        CustomResult::from_event(&json!({
            "type": "user.custom_tool_result", "custom_tool_use_id": id,
            "content": [{"type": "text", "text": text}], "is_error": false,
        }))
        .unwrap()
    }

    #[test]
    fn reads_tools_and_results() {
        let agent = json!({"tools": [
            {"type": "agent_toolset_20260401"},
            {"type": "custom", "name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "custom", "name": "bare"},
            {"type": "custom"}
        ]});
        let tools = custom_tools(&agent);
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0].name, "get_weather");
        assert_eq!(tools[1].input_schema, json!({"type": "object"}));
        let r = result("sevt_1", "Sunny");
        assert_eq!(r.text(), "Sunny");
        assert_eq!(r.mcp_content(), vec![json!({"type": "text", "text": "Sunny"})]);
        assert!(CustomResult::from_event(&json!({"type": "user.custom_tool_result"})).is_err());
    }

    #[test]
    fn answers_now_early_or_refuses() {
        let mut c: CustomCalls<u32> = CustomCalls::default();
        c.announce("call_a", "sevt_a");
        assert_eq!(c.wait("sevt_a", 7), None);
        assert!(matches!(c.answer(result("sevt_a", "x")), Ok(Answer::Now(7, _))));
        assert!(c.answer(result("sevt_a", "again")).is_err(), "answered once only");
        // The user answers before the runtime's call comes in.
        c.announce("call_b", "sevt_b");
        assert_eq!(c.answer(result("sevt_b", "early")), Ok(Answer::Kept));
        let (h, r) = c.wait("sevt_b", 9).unwrap();
        assert_eq!((h, r.text().as_str()), (9, "early"));
        assert!(c.answer(result("sevt_b", "again")).is_err(), "answered once only");
        assert!(c.answer(result("sevt_zzz", "x")).is_err());
        c.announce("call_c", "sevt_c");
        c.wait("sevt_c", 11);
        assert_eq!(c.drain(), vec![("sevt_c".to_string(), 11)]);
        assert!(c.is_empty());
    }
}
