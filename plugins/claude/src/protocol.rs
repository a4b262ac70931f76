//! Claude Code's `--output-format stream-json` lines (what the Claude Agent
//! SDK reads), as serde types. Read leniently (see
//! `bridle_harness_sdk::wire`): unknown fields are ignored, an unknown `type`
//! (or `subtype`, block type, stream event) is an `Other`/`Unknown` variant,
//! and a field in another shape reads as absent.

use bridle_harness_sdk::wire::{loose, loose_list};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One stdout line, by its `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    System(System),
    Assistant(Assistant),
    User(User),
    StreamEvent(StreamEvent),
    Result(ResultMessage),
    ControlRequest(ControlRequest),
    ControlCancelRequest {
        #[serde(default, deserialize_with = "loose")]
        request_id: Option<String>,
    },
    /// A reply to one of our control requests (the interrupt).
    ControlResponse {},
    RateLimitEvent {},
    /// A line type this plugin does not know.
    #[serde(other)]
    Unknown,
}

/// `type: "system"`, by its `subtype`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub enum System {
    /// The session started (or resumed): its id is the resume token.
    Init {
        #[serde(default, deserialize_with = "loose")]
        session_id: Option<String>,
    },
    /// A model request failed and Claude Code retries it.
    ApiRetry(ApiRetry),
    /// The conversation was compacted.
    CompactBoundary {},
    /// A status note (`compacting`, ...); not part of any model request.
    Status {},
    #[serde(other)]
    Other,
}

/// `system/api_retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiRetry {
    /// 1-based attempt number of the retry about to happen.
    #[serde(default, deserialize_with = "loose")]
    pub attempt: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub max_retries: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub retry_delay_ms: Option<u64>,
    /// HTTP status; absent when there was no response.
    #[serde(default, deserialize_with = "loose")]
    pub error_status: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub error: Option<ErrorKind>,
}

/// The error of an `api_retry`: a name, or an API error object (`{"type"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ErrorKind {
    Name(String),
    Object {
        #[serde(rename = "type", default, deserialize_with = "loose")]
        kind: Option<String>,
    },
}

impl ErrorKind {
    /// The error's name (`overloaded_error`, `rate_limit`, ...), or `""`.
    pub fn name(&self) -> &str {
        match self {
            ErrorKind::Name(s) => s,
            ErrorKind::Object { kind } => kind.as_deref().unwrap_or_default(),
        }
    }
}

/// `type: "assistant"`: one content block (or several) of a model message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Assistant {
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<AssistantMessage>,
    /// Set on sub-agent (Task tool) traffic.
    #[serde(default, deserialize_with = "loose")]
    pub parent_tool_use_id: Option<String>,
    /// A synthetic message carrying an API error as its text.
    #[serde(default, deserialize_with = "loose")]
    pub is_api_error_message: Option<bool>,
    /// The API error's name on such a synthetic message.
    #[serde(default, deserialize_with = "loose")]
    pub error: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub api_error_status: Option<u64>,
}

impl Assistant {
    /// A synthetic message carrying an API error (the failure reports it).
    pub fn is_api_error(&self) -> bool {
        self.is_api_error_message == Some(true) || self.error.is_some()
    }
}

/// The Anthropic Messages `message` of an `assistant` line.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AssistantMessage {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
    /// `None` when it is not a list; blocks of another shape are dropped.
    #[serde(default, deserialize_with = "loose_list")]
    pub content: Option<Vec<AssistantBlock>>,
    #[serde(default, deserialize_with = "loose")]
    pub usage: Option<Usage>,
}

/// A content block of an assistant message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AssistantBlock {
    Text {
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    Thinking {},
    RedactedThinking {},
    ToolUse(ToolUse),
    #[serde(other)]
    Other,
}

/// A `tool_use` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ToolUse {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
    /// Claude Code's tool name (`Bash`, `mcp__srv__tool`, ...).
    #[serde(default, deserialize_with = "loose")]
    pub name: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
}

/// Token usage as the Messages API reports it. A `message_delta` carries
/// only the counters that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "loose")]
    pub input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub cache_read_input_tokens: Option<u64>,
    /// `fast` when the request ran in fast mode.
    #[serde(default, deserialize_with = "loose")]
    pub speed: Option<String>,
}

impl Usage {
    /// The four token counters, in `model_usage` order (input, output,
    /// cache creation, cache read).
    pub fn counters(&self) -> [Option<u64>; 4] {
        [self.input_tokens, self.output_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens]
    }

    /// Set counter `i` (in [`Usage::counters`] order).
    pub fn set_counter(&mut self, i: usize, n: u64) {
        let slot = match i {
            0 => &mut self.input_tokens,
            1 => &mut self.output_tokens,
            2 => &mut self.cache_creation_input_tokens,
            _ => &mut self.cache_read_input_tokens,
        };
        *slot = Some(n);
    }

    /// Take every field `newer` carries.
    pub fn merge(&mut self, newer: Usage) {
        let Usage { input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, speed } = newer;
        self.input_tokens = input_tokens.or(self.input_tokens);
        self.output_tokens = output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.speed = speed.or(self.speed.take());
    }
}

/// `type: "user"`: tool results (and replays of the user's own messages).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct User {
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<UserMessage>,
    #[serde(default, deserialize_with = "loose")]
    pub parent_tool_use_id: Option<String>,
    #[serde(rename = "isReplay", default, deserialize_with = "loose")]
    pub is_replay: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct UserMessage {
    #[serde(default, deserialize_with = "loose_list")]
    pub content: Option<Vec<UserBlock>>,
}

/// A content block of a `user` line; only tool results matter here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserBlock {
    ToolResult(ToolResultBlock),
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ToolResultBlock {
    #[serde(default, deserialize_with = "loose")]
    pub tool_use_id: Option<String>,
    #[serde(default)]
    pub content: ToolResultContent,
    #[serde(default, deserialize_with = "loose")]
    pub is_error: Option<bool>,
}

/// A tool result's `content`: a string or a list of blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ToolResultContent {
    #[default]
    Empty,
    Text(String),
    /// Blocks of another shape are dropped.
    Blocks(Vec<ResultBlock>),
    /// Neither (a number, an object): its JSON text.
    Other(String),
}

impl<'de> Deserialize<'de> for ToolResultContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => ToolResultContent::Empty,
            Value::String(s) => ToolResultContent::Text(s),
            Value::Array(items) => {
                ToolResultContent::Blocks(items.into_iter().filter_map(|b| ResultBlock::deserialize(b).ok()).collect())
            }
            other => ToolResultContent::Other(other.to_string()),
        })
    }
}

/// A block of a tool result.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResultBlock {
    Text {
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    Image {
        /// Passed through to the Managed Agents image block.
        #[serde(default)]
        source: Option<Value>,
    },
    #[serde(other)]
    Other,
}

/// `type: "stream_event"` (`--include-partial-messages`): one raw
/// Messages API stream event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StreamEvent {
    #[serde(default, deserialize_with = "loose")]
    pub event: Option<StreamEventBody>,
    #[serde(default, deserialize_with = "loose")]
    pub parent_tool_use_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEventBody {
    MessageStart {
        #[serde(default, deserialize_with = "loose")]
        message: Option<StartMessage>,
    },
    MessageDelta {
        #[serde(default, deserialize_with = "loose")]
        usage: Option<Usage>,
    },
    MessageStop {},
    /// A content block opens (text and thinking open a preview).
    ContentBlockStart {
        #[serde(default, deserialize_with = "loose")]
        index: Option<u64>,
        #[serde(default, deserialize_with = "loose")]
        content_block: Option<BlockStart>,
    },
    /// A piece of a content block (text deltas stream into its preview).
    ContentBlockDelta {
        #[serde(default, deserialize_with = "loose")]
        index: Option<u64>,
        #[serde(default, deserialize_with = "loose")]
        delta: Option<BlockDelta>,
    },
    /// Content block stops, pings: signs of progress.
    #[serde(other)]
    Other,
}

/// The `content_block` of a `content_block_start`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockStart {
    Text {},
    Thinking {},
    RedactedThinking {},
    /// Tool uses and other blocks: no preview.
    #[serde(other)]
    Other,
}

/// The `delta` of a `content_block_delta`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    /// Thinking, signature and tool input deltas: not previewed.
    #[serde(other)]
    Other,
}

/// The `message` of a `message_start` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StartMessage {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub usage: Option<Usage>,
}

/// `type: "result"`: the turn is over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResultMessage {
    /// `success`, `error_max_turns`, `error_during_execution`, ...
    #[serde(default, deserialize_with = "loose")]
    pub subtype: Option<String>,
    /// The failure flag (an exhausted retry ends with `subtype: "success"`).
    #[serde(default, deserialize_with = "loose")]
    pub is_error: Option<bool>,
    /// The turn's usage totals.
    #[serde(default, deserialize_with = "loose")]
    pub usage: Option<Usage>,
    /// The final text (or the error text).
    #[serde(default, deserialize_with = "loose")]
    pub result: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub terminal_reason: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub api_error_status: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub api_error_type: Option<String>,
    /// Error texts; entries that are not strings are dropped.
    #[serde(default, deserialize_with = "loose_list")]
    pub errors: Option<Vec<String>>,
}

impl ResultMessage {
    /// `is_error`, else "the subtype is not `success`".
    pub fn failed(&self) -> bool {
        self.is_error.unwrap_or_else(|| self.subtype.as_deref() != Some("success"))
    }
}

/// `type: "control_request"`: the CLI asks the SDK side something.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ControlRequest {
    #[serde(default, deserialize_with = "loose")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub request: Request,
}

/// The `request` of a control request: its `subtype` name (for replies to
/// the ones Bridle does not handle) and what it asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub subtype: String,
    pub kind: RequestKind,
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Subtype {
            #[serde(default, deserialize_with = "loose")]
            subtype: Option<String>,
        }
        // Read twice from one buffered value: the name survives even for
        // subtypes that `RequestKind` does not know.
        let v = Value::deserialize(d)?;
        let subtype = Subtype::deserialize(&v).ok().and_then(|s| s.subtype).unwrap_or_default();
        let kind = RequestKind::deserialize(&v).unwrap_or_default();
        Ok(Request { subtype, kind })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub enum RequestKind {
    /// Permission for a tool use (`--permission-prompt-tool stdio`).
    CanUseTool(CanUseTool),
    /// A JSON-RPC message for an SDK MCP server.
    McpMessage(McpMessageRequest),
    /// Hooks and the rest: Bridle registers none.
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CanUseTool {
    #[serde(default, deserialize_with = "loose")]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
    /// Absent on older CLIs.
    #[serde(default, deserialize_with = "loose")]
    pub tool_use_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct McpMessageRequest {
    #[serde(default, deserialize_with = "loose")]
    pub server_name: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<McpMessage>,
}

/// An MCP JSON-RPC message from the CLI to an SDK MCP server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct McpMessage {
    #[serde(default, deserialize_with = "loose")]
    pub method: Option<String>,
    /// Echoed in the reply; absent (or `null`) on a notification.
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default, deserialize_with = "loose")]
    pub params: Option<McpParams>,
}

/// The params of `initialize` and `tools/call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct McpParams {
    #[serde(rename = "protocolVersion", default, deserialize_with = "loose")]
    pub protocol_version: Option<String>,
    /// The tool of a `tools/call`.
    #[serde(default, deserialize_with = "loose")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<Value>,
    #[serde(rename = "_meta", default, deserialize_with = "loose")]
    pub meta: Option<McpMeta>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct McpMeta {
    /// The model's tool use behind a `tools/call`.
    #[serde(rename = "claudecode/toolUseId", default, deserialize_with = "loose")]
    pub tool_use_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridle_harness_sdk::wire::{Line, read_line};
    use serde_json::json;

    fn read(line: &str) -> Line<Message> {
        read_line("claude", line)
    }

    fn msg(line: &str) -> Message {
        match read(line) {
            Line::Message(m) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn usage(input: u64, output: u64) -> Usage {
        Usage { input_tokens: Some(input), output_tokens: Some(output), ..Usage::default() }
    }

    #[test]
    fn every_message_type_parses() {
        let cases: Vec<(&str, Message)> = vec![
            (
                r#"{"type":"system","subtype":"init","session_id":"s1","tools":["Bash"]}"#,
                Message::System(System::Init { session_id: Some("s1".into()) }),
            ),
            (
                r#"{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":500,"error_status":529,"error":"overloaded"}"#,
                Message::System(System::ApiRetry(ApiRetry {
                    attempt: Some(2),
                    max_retries: Some(10),
                    retry_delay_ms: Some(500),
                    error_status: Some(529),
                    error: Some(ErrorKind::Name("overloaded".into())),
                })),
            ),
            (r#"{"type":"system","subtype":"compact_boundary"}"#, Message::System(System::CompactBoundary {})),
            (r#"{"type":"system","subtype":"status","status":"compacting"}"#, Message::System(System::Status {})),
            (
                r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"hi"},{"type":"thinking","thinking":"hm"},{"type":"redacted_thinking","data":"x"},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":3,"output_tokens":1}},"parent_tool_use_id":null}"#,
                Message::Assistant(Assistant {
                    message: Some(AssistantMessage {
                        id: Some("msg_1".into()),
                        content: Some(vec![
                            AssistantBlock::Text { text: Some("hi".into()) },
                            AssistantBlock::Thinking {},
                            AssistantBlock::RedactedThinking {},
                            AssistantBlock::ToolUse(ToolUse {
                                id: Some("toolu_1".into()),
                                name: Some("Bash".into()),
                                input: Some(json!({"command": "ls"})),
                            }),
                        ]),
                        usage: Some(usage(3, 1)),
                    }),
                    ..Assistant::default()
                }),
            ),
            (
                r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"ok"},{"type":"image","source":{"type":"base64"}}],"is_error":false}]},"parent_tool_use_id":null}"#,
                Message::User(User {
                    message: Some(UserMessage {
                        content: Some(vec![UserBlock::ToolResult(ToolResultBlock {
                            tool_use_id: Some("toolu_1".into()),
                            content: ToolResultContent::Blocks(vec![
                                ResultBlock::Text { text: Some("ok".into()) },
                                ResultBlock::Image { source: Some(json!({"type": "base64"})) },
                            ]),
                            is_error: Some(false),
                        })]),
                    }),
                    ..User::default()
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3,"output_tokens":1}}}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::MessageStart {
                        message: Some(StartMessage { id: Some("msg_1".into()), usage: Some(usage(3, 1)) }),
                    }),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"message_delta","usage":{"output_tokens":9,"speed":"fast"}}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::MessageDelta {
                        usage: Some(Usage { output_tokens: Some(9), speed: Some("fast".into()), ..Usage::default() }),
                    }),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"message_stop"}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::MessageStop {}),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{}},"parent_tool_use_id":"toolu_9"}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::ContentBlockDelta { index: None, delta: None }),
                    parent_tool_use_id: Some("toolu_9".into()),
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"content_block_start","index":1,"content_block":{"type":"thinking","thinking":""}}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::ContentBlockStart {
                        index: Some(1),
                        content_block: Some(BlockStart::Thinking {}),
                    }),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::ContentBlockDelta {
                        index: Some(0),
                        delta: Some(BlockDelta::TextDelta { text: Some("Hel".into()) }),
                    }),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::ContentBlockDelta { index: Some(0), delta: Some(BlockDelta::Other) }),
                    parent_tool_use_id: None,
                }),
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500","terminal_reason":"api_error","api_error_status":500,"api_error_type":"api_error","errors":["a",7,"b"],"usage":{"input_tokens":3,"output_tokens":1}}"#,
                Message::Result(ResultMessage {
                    subtype: Some("success".into()),
                    is_error: Some(true),
                    usage: Some(usage(3, 1)),
                    result: Some("API Error: 500".into()),
                    terminal_reason: Some("api_error".into()),
                    api_error_status: Some(500),
                    api_error_type: Some("api_error".into()),
                    errors: Some(vec!["a".into(), "b".into()]),
                }),
            ),
            (
                r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"tool_use_id":"toolu_1"}}"#,
                Message::ControlRequest(ControlRequest {
                    request_id: Some("r1".into()),
                    request: Request {
                        subtype: "can_use_tool".into(),
                        kind: RequestKind::CanUseTool(CanUseTool {
                            tool_name: Some("Bash".into()),
                            input: Some(json!({"command": "ls"})),
                            tool_use_id: Some("toolu_1".into()),
                        }),
                    },
                }),
            ),
            (
                r#"{"type":"control_request","request_id":"r2","request":{"subtype":"mcp_message","server_name":"bridle","message":{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"},"_meta":{"claudecode/toolUseId":"toolu_2"}}}}}"#,
                Message::ControlRequest(ControlRequest {
                    request_id: Some("r2".into()),
                    request: Request {
                        subtype: "mcp_message".into(),
                        kind: RequestKind::McpMessage(McpMessageRequest {
                            server_name: Some("bridle".into()),
                            message: Some(McpMessage {
                                method: Some("tools/call".into()),
                                id: Some(json!(4)),
                                params: Some(McpParams {
                                    protocol_version: None,
                                    name: Some("get_weather".into()),
                                    arguments: Some(json!({"city": "Paris"})),
                                    meta: Some(McpMeta { tool_use_id: Some("toolu_2".into()) }),
                                }),
                            }),
                        }),
                    },
                }),
            ),
            (
                r#"{"type":"control_request","request_id":"r3","request":{"subtype":"hook_callback","callback_id":"h"}}"#,
                Message::ControlRequest(ControlRequest {
                    request_id: Some("r3".into()),
                    request: Request { subtype: "hook_callback".into(), kind: RequestKind::Other },
                }),
            ),
            (
                r#"{"type":"control_cancel_request","request_id":"r1"}"#,
                Message::ControlCancelRequest { request_id: Some("r1".into()) },
            ),
            (
                r#"{"type":"control_response","response":{"subtype":"success","request_id":"bridle_1"}}"#,
                Message::ControlResponse {},
            ),
            (r#"{"type":"rate_limit_event","rate_limit_info":{}}"#, Message::RateLimitEvent {}),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
    }

    #[test]
    fn unknown_types_are_the_catch_all() {
        assert_eq!(msg(r#"{"type":"keep_alive"}"#), Message::Unknown);
        assert_eq!(msg(r#"{"type":"system","subtype":"hook_started","x":1}"#), Message::System(System::Other));
        let a = msg(r#"{"type":"assistant","message":{"content":[{"type":"server_tool_use","id":"x"}]}}"#);
        let Message::Assistant(a) = a else { panic!("{a:?}") };
        assert_eq!(a.message.unwrap().content, Some(vec![AssistantBlock::Other]));
    }

    #[test]
    fn missing_or_odd_fields_read_as_absent() {
        let cases: Vec<(&str, Message)> = vec![
            (r#"{"type":"assistant"}"#, Message::Assistant(Assistant::default())),
            (
                r#"{"type":"assistant","message":{"content":"not an array"}}"#,
                Message::Assistant(Assistant { message: Some(AssistantMessage::default()), ..Assistant::default() }),
            ),
            (
                r#"{"type":"assistant","message":{"id":7,"content":[{"type":"tool_use"},{"type":"text","text":7},3]}}"#,
                Message::Assistant(Assistant {
                    message: Some(AssistantMessage {
                        id: None,
                        content: Some(vec![
                            AssistantBlock::ToolUse(ToolUse::default()),
                            AssistantBlock::Text { text: None },
                        ]),
                        usage: None,
                    }),
                    ..Assistant::default()
                }),
            ),
            (
                r#"{"type":"system","subtype":"api_retry","attempt":"x","error":{"type":"overloaded_error"}}"#,
                Message::System(System::ApiRetry(ApiRetry {
                    error: Some(ErrorKind::Object { kind: Some("overloaded_error".into()) }),
                    ..ApiRetry::default()
                })),
            ),
            (
                r#"{"type":"system","subtype":"init","session_id":42}"#,
                Message::System(System::Init { session_id: None }),
            ),
            (
                r#"{"type":"stream_event","event":{"type":"message_delta","usage":"bad"}}"#,
                Message::StreamEvent(StreamEvent {
                    event: Some(StreamEventBody::MessageDelta { usage: None }),
                    parent_tool_use_id: None,
                }),
            ),
            (r#"{"type":"control_request"}"#, Message::ControlRequest(ControlRequest::default())),
            (r#"{"type":"control_cancel_request"}"#, Message::ControlCancelRequest { request_id: None }),
            (r#"{"type":"result","is_error":"yes"}"#, Message::Result(ResultMessage::default())),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
        assert!(ResultMessage::default().failed(), "no is_error and no success subtype");
    }

    #[test]
    fn tool_result_content_shapes() {
        let content = |v: Value| serde_json::from_value::<ToolResultBlock>(json!({"content": v})).unwrap().content;
        assert_eq!(content(json!(null)), ToolResultContent::Empty);
        assert_eq!(content(json!("out")), ToolResultContent::Text("out".into()));
        assert_eq!(content(json!(42)), ToolResultContent::Other("42".into()));
        assert_eq!(
            content(json!([{"type": "text", "text": "a"}, "stray", {"type": "tool_reference"}])),
            ToolResultContent::Blocks(vec![ResultBlock::Text { text: Some("a".into()) }, ResultBlock::Other])
        );
        assert_eq!(serde_json::from_value::<ToolResultBlock>(json!({})).unwrap(), ToolResultBlock::default());
    }

    #[test]
    fn usage_merges_what_a_delta_carries() {
        let mut u = Usage { speed: Some("standard".into()), ..usage(3, 1) };
        u.merge(Usage { output_tokens: Some(9), ..Usage::default() });
        assert_eq!(u, Usage { output_tokens: Some(9), speed: Some("standard".into()), ..usage(3, 1) });
        u.set_counter(3, 5);
        assert_eq!(u.counters(), [Some(3), Some(9), None, Some(5)]);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(read("Warning: something printed on stdout"), Line::NotJson);
        assert_eq!(read("[1,2,3]"), Line::NotJson);
        assert_eq!(read(r#"{"type":"assistant""#), Line::NotJson);
        assert_eq!(read(""), Line::Blank);
        assert_eq!(read(r#"{"type":5}"#), Line::Unreadable);
        assert_eq!(read(r#"{"noType":true}"#), Line::Unreadable);
        assert_eq!(read(r#"{"type":"system"}"#), Line::Unreadable, "a system line needs its subtype");
    }

    /// Every line Claude Code wrote in the recorded transcripts is a message
    /// this module knows (no line falls to a catch-all).
    #[test]
    fn recorded_transcripts_are_fully_typed() {
        let transcripts = [
            include_str!("../tests/data/cc1.jsonl"),
            include_str!("../tests/data/cc2.jsonl"),
            include_str!("../tests/data/cc3.jsonl"),
            include_str!("../tests/data/cc4.jsonl"),
            include_str!("../tests/data/cc5.jsonl"),
        ];
        for line in transcripts.iter().flat_map(|t| t.lines()) {
            match msg(line) {
                Message::Unknown | Message::System(System::Other) => panic!("untyped line: {line}"),
                Message::Assistant(a) => {
                    let content = a.message.and_then(|m| m.content).expect("assistant content");
                    assert!(!content.contains(&AssistantBlock::Other), "{line}");
                }
                _ => {}
            }
        }
    }
}
