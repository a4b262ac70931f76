//! The resident runtime's messages to the plugin (the bare `msg` of the
//! host's `{"session", "msg"}` framing), as `runtime/bridle_agents_runtime.py`
//! sends them. Read leniently (see `bridle_harness_sdk::wire`): unknown
//! fields are ignored, an unknown `type` is [`RuntimeMessage::Unknown`], a
//! field in another shape reads as absent.

use bridle_harness_sdk::wire::{loose, object};
use serde::Deserialize;
use serde_json::Value;

/// One runtime → plugin message, by its `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuntimeMessage {
    /// Raw `response.created`: a model request began.
    ModelRequestStart {},
    /// Raw `response.completed`, with the response's usage.
    ModelRequestEnd {
        #[serde(default, deserialize_with = "loose")]
        usage: Option<Usage>,
    },
    /// Raw `response.output_text.delta`: a piece of a message's text.
    TextDelta {
        #[serde(default, deserialize_with = "loose")]
        item_id: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    /// Raw `response.output_item.done` of a message (or, failing that,
    /// `message_output_created`): the text of an assistant message.
    Message {
        #[serde(default, deserialize_with = "loose")]
        item_id: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    /// `reasoning_item_created`.
    Reasoning {},
    /// A sandbox tool was invoked and awaits its result.
    ToolCall(Call),
    /// A custom tool (run by the client) was invoked and awaits its result.
    CustomToolCall(Call),
    /// An MCP tool was invoked and awaits `mcp_approval`.
    McpToolCall(McpCall),
    /// What an approved MCP tool call returned.
    McpToolResult(McpResult),
    /// A `ModelRetrySettings` policy decision.
    Retry(Retry),
    /// End-of-turn resume state (`{"last_response_id"}`).
    Checkpoint {
        #[serde(default, deserialize_with = "object")]
        state: Option<Value>,
    },
    /// The run finished.
    TurnEnd {},
    /// The run was cancelled.
    Interrupted {},
    /// The run raised, or a message was refused (`busy`, `protocol`).
    Error(RunError),
    /// Runtime diagnostics.
    Log {
        #[serde(default, deserialize_with = "loose")]
        level: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        message: Option<String>,
    },
    /// A message type this plugin does not know.
    #[serde(other)]
    Unknown,
}

/// Token usage of one model response (Responses API counts cached tokens
/// inside input tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "loose")]
    pub input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub cached_tokens: Option<u64>,
}

/// `tool_call` / `custom_tool_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Call {
    #[serde(default, deserialize_with = "loose")]
    pub call_id: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub name: Option<String>,
    /// The tool's arguments, when they are a JSON object.
    #[serde(default, deserialize_with = "object")]
    pub input: Option<Value>,
}

/// `mcp_tool_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct McpCall {
    #[serde(default, deserialize_with = "loose")]
    pub call_id: Option<String>,
    /// The MCP server's name (the agent's `mcp_servers[].name`).
    #[serde(default, deserialize_with = "loose")]
    pub server: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub input: Option<Value>,
}

/// `mcp_tool_result`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct McpResult {
    #[serde(default, deserialize_with = "loose")]
    pub call_id: Option<String>,
    /// Managed Agents content blocks (text, image).
    #[serde(default, deserialize_with = "loose")]
    pub content: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "loose")]
    pub is_error: Option<bool>,
}

/// `retry`: what the retry policy decided about a failed model request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Retry {
    /// `true`: the runner retries; otherwise the `error` that follows ends the turn.
    #[serde(default, deserialize_with = "loose")]
    pub retry: Option<bool>,
    /// 1-based.
    #[serde(default, deserialize_with = "loose")]
    pub attempt: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub max_retries: Option<u64>,
    /// HTTP status, when there was a response.
    #[serde(default, deserialize_with = "loose")]
    pub status: Option<u64>,
    /// The API's error code (`rate_limit_exceeded`, `insufficient_quota`, ...).
    #[serde(default, deserialize_with = "loose")]
    pub code: Option<String>,
    /// A connection error or time-out.
    #[serde(default, deserialize_with = "loose")]
    pub network: Option<bool>,
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub delay_ms: Option<u64>,
}

/// `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RunError {
    /// `api`, `network`, `max_turns`, `other` (the run raised); `busy`,
    /// `protocol` (one message was refused).
    #[serde(default, deserialize_with = "loose")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub status: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridle_harness_sdk::wire::{Line, read_line};
    use serde_json::json;

    fn read(line: &str) -> Line<RuntimeMessage> {
        read_line("openai-agents", line)
    }

    fn msg(line: &str) -> RuntimeMessage {
        match read(line) {
            Line::Message(m) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn every_message_type_parses() {
        use RuntimeMessage as M;
        let call =
            Call { call_id: Some("c1".into()), name: Some("bash".into()), input: Some(json!({"command": "ls"})) };
        let cases: Vec<(&str, RuntimeMessage)> = vec![
            (r#"{"type":"model_request_start"}"#, M::ModelRequestStart {}),
            (
                r#"{"type":"model_request_end","usage":{"input_tokens":10,"output_tokens":2,"cached_tokens":4}}"#,
                M::ModelRequestEnd {
                    usage: Some(Usage { input_tokens: Some(10), output_tokens: Some(2), cached_tokens: Some(4) }),
                },
            ),
            (r#"{"type":"message","text":"hi"}"#, M::Message { item_id: None, text: Some("hi".into()) }),
            (
                r#"{"type":"message","item_id":"msg_1","text":"hi"}"#,
                M::Message { item_id: Some("msg_1".into()), text: Some("hi".into()) },
            ),
            (
                r#"{"type":"text_delta","item_id":"msg_1","text":"h"}"#,
                M::TextDelta { item_id: Some("msg_1".into()), text: Some("h".into()) },
            ),
            (r#"{"type":"reasoning"}"#, M::Reasoning {}),
            (
                r#"{"type":"tool_call","call_id":"c1","name":"bash","input":{"command":"ls"}}"#,
                M::ToolCall(call.clone()),
            ),
            (
                r#"{"type":"custom_tool_call","call_id":"c1","name":"bash","input":{"command":"ls"}}"#,
                M::CustomToolCall(call),
            ),
            (
                r#"{"type":"retry","retry":true,"attempt":2,"max_retries":5,"status":429,"code":"rate_limit_exceeded","network":false,"message":"slow down","delay_ms":1500}"#,
                M::Retry(Retry {
                    retry: Some(true),
                    attempt: Some(2),
                    max_retries: Some(5),
                    status: Some(429),
                    code: Some("rate_limit_exceeded".into()),
                    network: Some(false),
                    message: Some("slow down".into()),
                    delay_ms: Some(1500),
                }),
            ),
            (
                r#"{"type":"checkpoint","state":{"last_response_id":"resp_1"}}"#,
                M::Checkpoint { state: Some(json!({"last_response_id": "resp_1"})) },
            ),
            (r#"{"type":"turn_end","final_output":"done"}"#, M::TurnEnd {}),
            (r#"{"type":"interrupted"}"#, M::Interrupted {}),
            (
                r#"{"type":"error","kind":"api","status":401,"code":"invalid_api_key","message":"no"}"#,
                M::Error(RunError {
                    kind: Some("api".into()),
                    status: Some(401),
                    code: Some("invalid_api_key".into()),
                    message: Some("no".into()),
                }),
            ),
            (
                r#"{"type":"log","level":"warn","message":"hello"}"#,
                M::Log { level: Some("warn".into()), message: Some("hello".into()) },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
    }

    #[test]
    fn unknown_types_and_new_fields_are_tolerated() {
        assert_eq!(msg(r#"{"type":"handoff","to":"other_agent"}"#), RuntimeMessage::Unknown);
        assert_eq!(msg(r#"{"type":"reasoning","summary":"new field","n":1}"#), RuntimeMessage::Reasoning {});
    }

    #[test]
    fn missing_or_odd_fields_read_as_absent() {
        use RuntimeMessage as M;
        let cases: Vec<(&str, RuntimeMessage)> = vec![
            (r#"{"type":"tool_call"}"#, M::ToolCall(Call::default())),
            (r#"{"type":"tool_call","call_id":1,"name":null,"input":"ls"}"#, M::ToolCall(Call::default())),
            (r#"{"type":"model_request_end","usage":"bad"}"#, M::ModelRequestEnd { usage: None }),
            (r#"{"type":"retry","retry":"yes"}"#, M::Retry(Retry::default())),
            (r#"{"type":"checkpoint","state":"str"}"#, M::Checkpoint { state: None }),
            (r#"{"type":"message","text":null}"#, M::Message { item_id: None, text: None }),
            (r#"{"type":"error"}"#, M::Error(RunError::default())),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(read("not json"), Line::NotJson);
        assert_eq!(read("[1]"), Line::NotJson);
        assert_eq!(read(""), Line::Blank);
        assert_eq!(read(r#"{"type":7}"#), Line::Unreadable);
        assert_eq!(read(r#"{"kind":"api"}"#), Line::Unreadable);
    }
}
