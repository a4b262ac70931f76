//! The Managed Agents events every plugin emits the same way, built in one
//! place: a model request's span pair (with its `model_usage`), a tool's
//! result, and text as content blocks.

use serde::Serialize;
use serde_json::{Value, json};

use crate::{Action, new_event_id};

/// Text as Managed Agents content: one text block, or none for empty text
/// (an empty text block is not a valid block).
pub fn text_content(text: &str) -> Vec<Value> {
    if text.is_empty() { Vec::new() } else { vec![json!({"type": "text", "text": text})] }
}

/// `agent.tool_result` for the tool use `tool_use_id`, with `text` as its content.
pub fn tool_result(tool_use_id: &str, text: &str, is_error: bool) -> Action {
    tool_result_blocks(tool_use_id, text_content(text), is_error)
}

/// `agent.tool_result` with content blocks.
pub fn tool_result_blocks(tool_use_id: &str, content: Vec<Value>, is_error: bool) -> Action {
    Action::emit_json(&json!({
        "type": "agent.tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error,
    }))
}

/// `agent.mcp_tool_result` with content blocks.
pub fn mcp_tool_result(mcp_tool_use_id: &str, content: Vec<Value>, is_error: bool) -> Action {
    Action::emit_json(&json!({
        "type": "agent.mcp_tool_result", "mcp_tool_use_id": mcp_tool_use_id, "content": content,
        "is_error": is_error,
    }))
}

/// A `span.model_request_end`'s `model_usage` (Anthropic semantics: cached
/// tokens are counted apart from input tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    /// `fast` when the request ran in fast mode (Anthropic only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<String>,
}

impl ModelUsage {
    /// From OpenAI-style counts, where the cached tokens are part of the
    /// input tokens: they are split out. An absent count is 0.
    pub fn cached_in_input(input: Option<u64>, output: Option<u64>, cached: Option<u64>, written: Option<u64>) -> Self {
        let cached = cached.unwrap_or(0);
        ModelUsage {
            input_tokens: input.unwrap_or(0).saturating_sub(cached),
            output_tokens: output.unwrap_or(0),
            cache_creation_input_tokens: written.unwrap_or(0),
            cache_read_input_tokens: cached,
            speed: None,
        }
    }
}

/// A new `span.model_request_start`: its id (the end names it) and the action.
pub fn span_start() -> (String, Action) {
    let id = new_event_id();
    let action = Action::emit_json(&json!({"type": "span.model_request_start", "id": id}));
    (id, action)
}

/// The `span.model_request_end` of the span `start_id`.
pub fn span_end(start_id: &str, is_error: bool, usage: &ModelUsage) -> Action {
    Action::emit_json(&json!({
        "type": "span.model_request_end",
        "model_request_start_id": start_id,
        "is_error": is_error,
        "model_usage": usage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(a: Action) -> Value {
        match a {
            Action::Emit(s) => serde_json::from_str(&s).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_content_has_no_empty_block() {
        assert!(text_content("").is_empty());
        assert_eq!(text_content("hi"), vec![json!({"type": "text", "text": "hi"})]);
    }

    #[test]
    fn tool_results() {
        assert_eq!(
            emitted(tool_result("sevt_1", "", false)),
            json!({"type": "agent.tool_result", "tool_use_id": "sevt_1", "content": [], "is_error": false})
        );
        assert_eq!(emitted(tool_result("sevt_1", "no", true))["content"][0]["text"], "no");
        assert_eq!(
            emitted(mcp_tool_result("sevt_2", text_content("x"), true)),
            json!({"type": "agent.mcp_tool_result", "mcp_tool_use_id": "sevt_2",
                   "content": [{"type": "text", "text": "x"}], "is_error": true})
        );
    }

    #[test]
    fn openai_usage_splits_cached_tokens_out_of_input() {
        let cases = [
            ((Some(10), Some(2), Some(4), None), (6, 2, 0, 4)),
            ((Some(10), Some(2), Some(4), Some(3)), (6, 2, 3, 4)),
            ((None, None, None, None), (0, 0, 0, 0)),
            // A gateway that counts cached tokens apart: never below zero.
            ((Some(1), Some(2), Some(4), None), (0, 2, 0, 4)),
        ];
        for ((input, output, cached, written), want) in cases {
            let u = ModelUsage::cached_in_input(input, output, cached, written);
            let got = (u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens);
            assert_eq!(got, want, "{input:?} {output:?} {cached:?} {written:?}");
        }
    }

    #[test]
    fn span_pair() {
        let (id, start) = span_start();
        assert_eq!(emitted(start), json!({"type": "span.model_request_start", "id": id}));
        let usage = ModelUsage { input_tokens: 3, output_tokens: 1, ..ModelUsage::default() };
        let end = emitted(span_end(&id, true, &usage));
        assert_eq!(end["model_request_start_id"], id.as_str());
        assert_eq!(end["is_error"], true);
        assert_eq!(
            end["model_usage"],
            json!({"input_tokens": 3, "output_tokens": 1, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0})
        );
        let fast = ModelUsage { speed: Some("fast".into()), ..usage };
        assert_eq!(emitted(span_end(&id, false, &fast))["model_usage"]["speed"], "fast");
    }
}
