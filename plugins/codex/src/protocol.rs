//! What `codex app-server` writes (JSON-RPC 2.0 without the `"jsonrpc"`
//! field, one object per line), as serde types: server requests,
//! notifications, and responses to the plugin's requests. Read leniently
//! (see `bridle_harness_sdk::wire`): unknown fields are ignored, an unknown
//! method or item type is an `Other` variant, and a field in another shape
//! reads as absent.

use bridle_harness_sdk::wire::{loose, loose_list};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A JSON-RPC id: echoed verbatim in replies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

/// One app-server line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "Envelope")]
pub enum Incoming {
    /// The server asks the client (approvals, dynamic tool calls, ...).
    Request {
        id: RequestId,
        request: ServerRequest,
    },
    Notification(Notification),
    /// The reply to one of the plugin's requests.
    Response {
        id: RequestId,
        result: ResponseResult,
        error: Option<RpcError>,
    },
    /// Neither a method nor an id.
    Invalid,
}

/// The JSON-RPC fields of a line, before its `params` are read by method.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "loose")]
    method: Option<String>,
    /// `null` is no id (JSON-RPC reserves it for parse errors).
    #[serde(default, deserialize_with = "loose")]
    id: Option<RequestId>,
    #[serde(default)]
    params: Value,
    #[serde(default, deserialize_with = "loose")]
    result: Option<ResponseResult>,
    #[serde(default, deserialize_with = "rpc_error")]
    error: Option<RpcError>,
}

impl From<Envelope> for Incoming {
    fn from(e: Envelope) -> Self {
        match (e.method, e.id) {
            (Some(method), Some(id)) => Incoming::Request { id, request: ServerRequest::read(&method, e.params) },
            (Some(method), None) => Incoming::Notification(Notification::read(&method, e.params)),
            (None, Some(id)) => Incoming::Response { id, result: e.result.unwrap_or_default(), error: e.error },
            (None, None) => Incoming::Invalid,
        }
    }
}

/// `params` for a method: its fields are all lenient, so only a `params`
/// that is missing or not an object reads as the default.
fn params<T: DeserializeOwned + Default>(params: Value) -> T {
    T::deserialize(params).unwrap_or_default()
}

/// A JSON-RPC `error`: any value but `null` means the request failed.
fn rpc_error<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RpcError>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        other => Some(RpcError::deserialize(other).unwrap_or_default()),
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RpcError {
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<String>,
}

/// The `result` fields the plugin reads (`thread/start`, `thread/resume`,
/// `turn/start`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResponseResult {
    #[serde(default, deserialize_with = "loose")]
    pub thread: Option<Thread>,
    #[serde(default, deserialize_with = "loose")]
    pub turn: Option<Turn>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Thread {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Turn {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
    /// `inProgress`, `completed`, `interrupted`, `failed`.
    #[serde(default, deserialize_with = "loose")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub error: Option<TurnError>,
}

/// A codex `TurnError` (also the `error` notification's `error`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub additional_details: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub codex_error_info: Option<ErrorInfo>,
}

/// `codexErrorInfo`: a codex enum, serialized as a bare name
/// (`"unauthorized"`) or as `{"<name>": {"httpStatusCode": N}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorInfo {
    Name(String),
    Detailed { name: String, http_status_code: Option<u64> },
}

impl ErrorInfo {
    pub fn name(&self) -> &str {
        match self {
            ErrorInfo::Name(n) | ErrorInfo::Detailed { name: n, .. } => n,
        }
    }

    pub fn http_status(&self) -> Option<u64> {
        match self {
            ErrorInfo::Name(_) => None,
            ErrorInfo::Detailed { http_status_code, .. } => *http_status_code,
        }
    }
}

impl<'de> Deserialize<'de> for ErrorInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Detail {
            #[serde(rename = "httpStatusCode", default, deserialize_with = "loose")]
            http_status_code: Option<u64>,
        }
        match Value::deserialize(d)? {
            Value::String(name) => Ok(ErrorInfo::Name(name)),
            // One key: the variant; its value holds the variant's fields.
            Value::Object(o) => match o.into_iter().next() {
                Some((name, detail)) => Ok(ErrorInfo::Detailed {
                    name,
                    http_status_code: Detail::deserialize(detail).ok().and_then(|d| d.http_status_code),
                }),
                None => Ok(ErrorInfo::Name(String::new())),
            },
            other => Err(serde::de::Error::custom(format!("codexErrorInfo {other}"))),
        }
    }
}

/// A notification, by method.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    ThreadStarted(ThreadStarted),
    TurnStarted(TurnNotification),
    ItemStarted(ItemNotification),
    ItemCompleted(ItemNotification),
    /// A piece of an agent message's text, as the model produces it.
    AgentMessageDelta(AgentMessageDelta),
    /// Other streaming deltas and progress of an item: a sign of progress.
    Delta,
    TokenUsageUpdated(TokenUsageUpdated),
    Error(ErrorNotification),
    TurnCompleted(TurnNotification),
    ServerRequestResolved(ServerRequestResolved),
    /// A method this plugin does not act on.
    Other(String),
}

impl Notification {
    fn read(method: &str, p: Value) -> Notification {
        match method {
            "thread/started" => Notification::ThreadStarted(params(p)),
            "turn/started" => Notification::TurnStarted(params(p)),
            "item/started" => Notification::ItemStarted(params(p)),
            "item/completed" => Notification::ItemCompleted(params(p)),
            "item/agentMessage/delta" => Notification::AgentMessageDelta(params(p)),
            "item/reasoning/summaryTextDelta"
            | "item/reasoning/textDelta"
            | "item/reasoning/summaryPartAdded"
            | "item/commandExecution/outputDelta"
            | "item/fileChange/outputDelta"
            | "item/mcpToolCall/progress" => Notification::Delta,
            "thread/tokenUsage/updated" => Notification::TokenUsageUpdated(params(p)),
            "error" => Notification::Error(params(p)),
            "turn/completed" => Notification::TurnCompleted(params(p)),
            "serverRequest/resolved" => Notification::ServerRequestResolved(params(p)),
            other => Notification::Other(other.to_string()),
        }
    }
}

/// `item/agentMessage/delta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentMessageDelta {
    #[serde(default, deserialize_with = "loose")]
    pub item_id: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub delta: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ThreadStarted {
    #[serde(default, deserialize_with = "loose")]
    pub thread: Option<Thread>,
}

/// `turn/started`, `turn/completed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TurnNotification {
    #[serde(default, deserialize_with = "loose")]
    pub turn: Option<Turn>,
}

/// `item/started`, `item/completed`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ItemNotification {
    /// `None` when it is missing or has no `type`.
    #[serde(default, deserialize_with = "loose")]
    pub item: Option<Item>,
}

/// A thread item: the fields every item has, and what its `type` adds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Item {
    #[serde(default, deserialize_with = "loose")]
    pub id: Option<String>,
    /// `inProgress`, `completed`, `failed`, `declined` (tool items).
    #[serde(default, deserialize_with = "loose")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub kind: ItemKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ItemKind {
    UserMessage {},
    AgentMessage {
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    Reasoning {},
    CommandExecution {
        /// The shell line as codex runs it (`/bin/bash -lc '…'`).
        #[serde(default, deserialize_with = "loose")]
        command: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        aggregated_output: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        exit_code: Option<i64>,
    },
    FileChange {
        #[serde(default, deserialize_with = "loose_list")]
        changes: Option<Vec<FileChange>>,
    },
    McpToolCall {
        #[serde(default, deserialize_with = "loose")]
        server: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        tool: Option<String>,
        /// An object, or its JSON text.
        #[serde(default)]
        arguments: Value,
        #[serde(default, deserialize_with = "loose")]
        result: Option<McpResult>,
        #[serde(default, deserialize_with = "loose")]
        error: Option<McpError>,
    },
    WebSearch {
        #[serde(default, deserialize_with = "loose")]
        query: Option<String>,
    },
    ContextCompaction {},
    /// A call of a dynamic (client-run) tool.
    DynamicToolCall {
        #[serde(default, deserialize_with = "loose")]
        tool: Option<String>,
        /// Set for tools of a namespace; Bridle's custom tools have none.
        #[serde(default)]
        namespace: Option<Value>,
        #[serde(default)]
        arguments: Value,
    },
    #[serde(other)]
    Other,
}

/// One file of a `fileChange` item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FileChange {
    #[serde(default, deserialize_with = "loose")]
    pub path: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub kind: Option<PatchKind>,
    #[serde(default, deserialize_with = "loose")]
    pub diff: Option<String>,
}

/// `add` / `delete` / `update`, bare or as `{"type": ..., "move_path"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PatchKind {
    Name(String),
    Object {
        #[serde(rename = "type", default, deserialize_with = "loose")]
        kind: Option<String>,
    },
}

impl PatchKind {
    pub fn name(&self) -> Option<&str> {
        match self {
            PatchKind::Name(n) => Some(n),
            PatchKind::Object { kind } => kind.as_deref(),
        }
    }
}

/// An MCP `CallToolResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct McpResult {
    #[serde(default, deserialize_with = "loose_list")]
    pub content: Option<Vec<McpBlock>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum McpBlock {
    Text {
        #[serde(default, deserialize_with = "loose")]
        text: Option<String>,
    },
    Image {
        #[serde(default, deserialize_with = "loose")]
        mime_type: Option<String>,
        #[serde(default, deserialize_with = "loose")]
        data: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct McpError {
    #[serde(default, deserialize_with = "loose")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsageUpdated {
    #[serde(default, deserialize_with = "loose")]
    pub token_usage: Option<TokenUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenUsage {
    /// The usage of the model response that just finished.
    #[serde(default, deserialize_with = "loose")]
    pub last: Option<TokenCounts>,
}

/// Token counts (OpenAI semantics: cached tokens are part of input tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCounts {
    #[serde(default, deserialize_with = "loose")]
    pub input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub cached_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub cache_write_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "loose")]
    pub output_tokens: Option<u64>,
}

/// The `error` notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorNotification {
    #[serde(default, deserialize_with = "loose")]
    pub error: Option<TurnError>,
    /// `true`: codex retries the request on its own.
    #[serde(default, deserialize_with = "loose")]
    pub will_retry: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRequestResolved {
    #[serde(default, deserialize_with = "loose")]
    pub request_id: Option<RequestId>,
}

/// A server request, by method.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerRequest {
    /// `item/tool/call`: run a dynamic tool.
    ToolCall(ToolCallParams),
    /// `item/commandExecution/requestApproval` (`legacy`: `execCommandApproval`).
    CommandApproval { legacy: bool, params: ApprovalParams },
    /// `item/fileChange/requestApproval` (`legacy`: `applyPatchApproval`).
    FileChangeApproval { legacy: bool, params: ApprovalParams },
    /// `mcpServer/elicitation/request`: an MCP server's elicitation, or codex
    /// asking to approve an MCP tool call (`_meta.codex_approval_kind`).
    McpElicitation(ElicitationParams),
    /// User-input prompts, ...
    Other(String),
}

impl ServerRequest {
    fn read(method: &str, p: Value) -> ServerRequest {
        match method {
            "item/tool/call" => ServerRequest::ToolCall(params(p)),
            "item/commandExecution/requestApproval" => {
                ServerRequest::CommandApproval { legacy: false, params: params(p) }
            }
            "execCommandApproval" => ServerRequest::CommandApproval { legacy: true, params: params(p) },
            "item/fileChange/requestApproval" => ServerRequest::FileChangeApproval { legacy: false, params: params(p) },
            "applyPatchApproval" => ServerRequest::FileChangeApproval { legacy: true, params: params(p) },
            "mcpServer/elicitation/request" => ServerRequest::McpElicitation(params(p)),
            other => ServerRequest::Other(other.to_string()),
        }
    }

    /// The request's method.
    pub fn method(&self) -> &str {
        match self {
            ServerRequest::ToolCall(_) => "item/tool/call",
            ServerRequest::CommandApproval { legacy: false, .. } => "item/commandExecution/requestApproval",
            ServerRequest::CommandApproval { legacy: true, .. } => "execCommandApproval",
            ServerRequest::FileChangeApproval { legacy: false, .. } => "item/fileChange/requestApproval",
            ServerRequest::FileChangeApproval { legacy: true, .. } => "applyPatchApproval",
            ServerRequest::McpElicitation(_) => "mcpServer/elicitation/request",
            ServerRequest::Other(method) => method,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallParams {
    #[serde(default, deserialize_with = "loose")]
    pub call_id: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub tool: Option<String>,
    #[serde(default)]
    pub namespace: Option<Value>,
    #[serde(default)]
    pub arguments: Value,
}

/// The params of `mcpServer/elicitation/request`. codex 0.171 asks to
/// approve an MCP tool call this way (when the tool's `approval_mode` is
/// `prompt` and the approval policy is not `never`), marking it in `_meta`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElicitationParams {
    #[serde(default, deserialize_with = "loose")]
    pub server_name: Option<String>,
    #[serde(default, rename = "_meta", deserialize_with = "loose")]
    pub meta: Option<ElicitationMeta>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ElicitationMeta {
    /// `mcp_tool_call` for a tool-call approval.
    #[serde(default, deserialize_with = "loose")]
    pub codex_approval_kind: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub tool_name: Option<String>,
}

impl ElicitationParams {
    /// `(server, tool)` when this asks to approve an MCP tool call.
    pub fn tool_approval(&self) -> Option<(&str, &str)> {
        let meta = self.meta.as_ref()?;
        if meta.codex_approval_kind.as_deref() != Some("mcp_tool_call") {
            return None;
        }
        Some((self.server_name.as_deref()?, meta.tool_name.as_deref()?))
    }
}

/// The params of an approval request (v2 and legacy).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalParams {
    #[serde(default, deserialize_with = "loose")]
    pub item_id: Option<String>,
    /// The legacy methods name the call instead of the item.
    #[serde(default, deserialize_with = "loose")]
    pub call_id: Option<String>,
    #[serde(default, deserialize_with = "loose")]
    pub command: Option<Command>,
    /// Passed through to the tool use's input.
    #[serde(default)]
    pub reason: Value,
    #[serde(default)]
    pub file_changes: Value,
}

/// A command: a shell line, or (legacy) an argv.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Line(String),
    Argv(Vec<Value>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridle_harness_sdk::wire::{Line, read_line};
    use serde_json::json;

    fn read(line: &str) -> Line<Incoming> {
        read_line("codex", line)
    }

    fn msg(line: &str) -> Incoming {
        match read(line) {
            Line::Message(m) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn note(line: &str) -> Notification {
        match msg(line) {
            Incoming::Notification(n) => n,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn item(line: &str) -> Item {
        match note(line) {
            Notification::ItemStarted(p) | Notification::ItemCompleted(p) => p.item.expect("an item"),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_responses() {
        let cases: Vec<(&str, Incoming)> = vec![
            (
                r#"{"id":0,"result":{"userAgent":"codex/0.171.0"}}"#,
                Incoming::Response { id: RequestId::Number(0), result: ResponseResult::default(), error: None },
            ),
            (
                r#"{"id":1,"result":{"thread":{"id":"thr_1","status":{"type":"idle"}}}}"#,
                Incoming::Response {
                    id: RequestId::Number(1),
                    result: ResponseResult { thread: Some(Thread { id: Some("thr_1".into()) }), turn: None },
                    error: None,
                },
            ),
            (
                r#"{"id":2,"error":{"code":-32600,"message":"no such thread"}}"#,
                Incoming::Response {
                    id: RequestId::Number(2),
                    result: ResponseResult::default(),
                    error: Some(RpcError { message: Some("no such thread".into()) }),
                },
            ),
            (
                r#"{"id":3,"error":"boom"}"#,
                Incoming::Response {
                    id: RequestId::Number(3),
                    result: ResponseResult::default(),
                    error: Some(RpcError::default()),
                },
            ),
            (
                r#"{"id":"srv_1","method":"item/tool/call","params":{"callId":"c1","tool":"get_weather","arguments":{"city":"Paris"}}}"#,
                Incoming::Request {
                    id: RequestId::Text("srv_1".into()),
                    request: ServerRequest::ToolCall(ToolCallParams {
                        call_id: Some("c1".into()),
                        tool: Some("get_weather".into()),
                        namespace: None,
                        arguments: json!({"city": "Paris"}),
                    }),
                },
            ),
            (
                r#"{"id":7,"method":"item/commandExecution/requestApproval","params":{"itemId":"call_1","command":"/bin/bash -lc 'ls'"}}"#,
                Incoming::Request {
                    id: RequestId::Number(7),
                    request: ServerRequest::CommandApproval {
                        legacy: false,
                        params: ApprovalParams {
                            item_id: Some("call_1".into()),
                            command: Some(Command::Line("/bin/bash -lc 'ls'".into())),
                            ..ApprovalParams::default()
                        },
                    },
                },
            ),
            (
                r#"{"id":8,"method":"execCommandApproval","params":{"callId":"call_2","command":["ls","-la"]}}"#,
                Incoming::Request {
                    id: RequestId::Number(8),
                    request: ServerRequest::CommandApproval {
                        legacy: true,
                        params: ApprovalParams {
                            call_id: Some("call_2".into()),
                            command: Some(Command::Argv(vec![json!("ls"), json!("-la")])),
                            ..ApprovalParams::default()
                        },
                    },
                },
            ),
            (
                r#"{"id":9,"method":"item/fileChange/requestApproval","params":{"itemId":"call_4","reason":null}}"#,
                Incoming::Request {
                    id: RequestId::Number(9),
                    request: ServerRequest::FileChangeApproval {
                        legacy: false,
                        params: ApprovalParams { item_id: Some("call_4".into()), ..ApprovalParams::default() },
                    },
                },
            ),
            (
                r#"{"id":10,"method":"applyPatchApproval","params":{"callId":"c","reason":"r","fileChanges":{"a":{}}}}"#,
                Incoming::Request {
                    id: RequestId::Number(10),
                    request: ServerRequest::FileChangeApproval {
                        legacy: true,
                        params: ApprovalParams {
                            call_id: Some("c".into()),
                            reason: json!("r"),
                            file_changes: json!({"a": {}}),
                            ..ApprovalParams::default()
                        },
                    },
                },
            ),
            (
                r#"{"id":11,"method":"item/tool/requestUserInput","params":{"questions":[]}}"#,
                Incoming::Request {
                    id: RequestId::Number(11),
                    request: ServerRequest::Other("item/tool/requestUserInput".into()),
                },
            ),
            (
                r#"{"method":"thread/started","params":{"thread":{"id":"thr_1"}}}"#,
                Incoming::Notification(Notification::ThreadStarted(ThreadStarted {
                    thread: Some(Thread { id: Some("thr_1".into()) }),
                })),
            ),
            (
                r#"{"method":"turn/started","params":{"turn":{"id":"turn_1","status":"inProgress","error":null}}}"#,
                Incoming::Notification(Notification::TurnStarted(TurnNotification {
                    turn: Some(Turn { id: Some("turn_1".into()), status: Some("inProgress".into()), error: None }),
                })),
            ),
            (
                r#"{"method":"item/agentMessage/delta","params":{"threadId":"thr_1","turnId":"turn_1","itemId":"msg_1","delta":"Hi"}}"#,
                Incoming::Notification(Notification::AgentMessageDelta(AgentMessageDelta {
                    item_id: Some("msg_1".into()),
                    delta: Some("Hi".into()),
                })),
            ),
            (
                r#"{"method":"item/reasoning/textDelta","params":{"delta":"Hm"}}"#,
                Incoming::Notification(Notification::Delta),
            ),
            (
                r#"{"method":"thread/tokenUsage/updated","params":{"tokenUsage":{"total":{},"last":{"inputTokens":1000,"cachedInputTokens":800,"outputTokens":50}}}}"#,
                Incoming::Notification(Notification::TokenUsageUpdated(TokenUsageUpdated {
                    token_usage: Some(TokenUsage {
                        last: Some(TokenCounts {
                            input_tokens: Some(1000),
                            cached_input_tokens: Some(800),
                            cache_write_input_tokens: None,
                            output_tokens: Some(50),
                        }),
                    }),
                })),
            ),
            (
                r#"{"method":"error","params":{"error":{"message":"Reconnecting... 1/2","codexErrorInfo":{"responseStreamDisconnected":{"httpStatusCode":null}},"additionalDetails":"busy"},"willRetry":true}}"#,
                Incoming::Notification(Notification::Error(ErrorNotification {
                    error: Some(TurnError {
                        message: Some("Reconnecting... 1/2".into()),
                        additional_details: Some("busy".into()),
                        codex_error_info: Some(ErrorInfo::Detailed {
                            name: "responseStreamDisconnected".into(),
                            http_status_code: None,
                        }),
                    }),
                    will_retry: Some(true),
                })),
            ),
            (
                r#"{"method":"turn/completed","params":{"turn":{"id":"turn_1","status":"failed","error":{"message":"no","codexErrorInfo":"unauthorized"}}}}"#,
                Incoming::Notification(Notification::TurnCompleted(TurnNotification {
                    turn: Some(Turn {
                        id: Some("turn_1".into()),
                        status: Some("failed".into()),
                        error: Some(TurnError {
                            message: Some("no".into()),
                            additional_details: None,
                            codex_error_info: Some(ErrorInfo::Name("unauthorized".into())),
                        }),
                    }),
                })),
            ),
            (
                r#"{"method":"serverRequest/resolved","params":{"requestId":7}}"#,
                Incoming::Notification(Notification::ServerRequestResolved(ServerRequestResolved {
                    request_id: Some(RequestId::Number(7)),
                })),
            ),
            (
                r#"{"method":"thread/status/changed","params":{"status":"active"}}"#,
                Incoming::Notification(Notification::Other("thread/status/changed".into())),
            ),
            (r#"{"result":{}}"#, Incoming::Invalid),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
    }

    #[test]
    fn server_request_methods_round_trip() {
        for method in [
            "item/tool/call",
            "item/commandExecution/requestApproval",
            "execCommandApproval",
            "item/fileChange/requestApproval",
            "applyPatchApproval",
            "item/tool/requestUserInput",
            "mcpServer/elicitation/request",
        ] {
            assert_eq!(ServerRequest::read(method, Value::Null).method(), method);
        }
    }

    #[test]
    fn mcp_tool_approvals_are_told_from_other_elicitations() {
        // As codex 0.171 sends it (recorded).
        let approval = json!({"threadId": "t", "turnId": "u", "serverName": "docs", "mode": "form",
            "_meta": {"codex_approval_kind": "mcp_tool_call", "tool_name": "lookup", "tool_params": {"key": "k"}},
            "message": "Allow the docs MCP server to run tool \"lookup\"?",
            "requestedSchema": {"type": "object", "properties": {}}});
        let ServerRequest::McpElicitation(p) = ServerRequest::read("mcpServer/elicitation/request", approval) else {
            panic!("not an elicitation");
        };
        assert_eq!(p.tool_approval(), Some(("docs", "lookup")));
        for other in [
            json!({"serverName": "docs", "message": "Your name?", "requestedSchema": {}}),
            json!({"serverName": "docs", "_meta": {"codex_approval_kind": "tool_suggestion", "tool_name": "x"}}),
            json!({"_meta": {"codex_approval_kind": "mcp_tool_call", "tool_name": "x"}}),
            json!({"serverName": "docs", "_meta": "junk"}),
        ] {
            let ServerRequest::McpElicitation(p) = ServerRequest::read("mcpServer/elicitation/request", other.clone())
            else {
                panic!("not an elicitation");
            };
            assert_eq!(p.tool_approval(), None, "{other}");
        }
    }

    #[test]
    fn every_item_type_parses() {
        let wrap = |item: &str| format!(r#"{{"method":"item/completed","params":{{"item":{item},"threadId":"t"}}}}"#);
        let cases: Vec<(&str, ItemKind)> = vec![
            (r#"{"type":"userMessage","id":"u","content":[]}"#, ItemKind::UserMessage {}),
            (
                r#"{"type":"agentMessage","id":"m","text":"Done."}"#,
                ItemKind::AgentMessage { text: Some("Done.".into()) },
            ),
            (r#"{"type":"reasoning","id":"r","summary":[]}"#, ItemKind::Reasoning {}),
            (
                r#"{"type":"commandExecution","id":"c","command":"/bin/bash -lc 'ls'","aggregatedOutput":"a\n","exitCode":101}"#,
                ItemKind::CommandExecution {
                    command: Some("/bin/bash -lc 'ls'".into()),
                    aggregated_output: Some("a\n".into()),
                    exit_code: Some(101),
                },
            ),
            (
                r#"{"type":"fileChange","id":"f","changes":[{"path":"/w/a","kind":{"type":"update","move_path":null},"diff":"@@"},{"path":"/w/b","kind":"add"}]}"#,
                ItemKind::FileChange {
                    changes: Some(vec![
                        FileChange {
                            path: Some("/w/a".into()),
                            kind: Some(PatchKind::Object { kind: Some("update".into()) }),
                            diff: Some("@@".into()),
                        },
                        FileChange { path: Some("/w/b".into()), kind: Some(PatchKind::Name("add".into())), diff: None },
                    ]),
                },
            ),
            (
                r#"{"type":"mcpToolCall","id":"m1","server":"docs","tool":"search","arguments":{"q":"x"},"result":{"content":[{"type":"text","text":"found"},{"type":"image","data":"AAAA","mimeType":"image/png"},{"type":"resource_link","uri":"x"}]},"error":{"message":"late"}}"#,
                ItemKind::McpToolCall {
                    server: Some("docs".into()),
                    tool: Some("search".into()),
                    arguments: json!({"q": "x"}),
                    result: Some(McpResult {
                        content: Some(vec![
                            McpBlock::Text { text: Some("found".into()) },
                            McpBlock::Image { mime_type: Some("image/png".into()), data: Some("AAAA".into()) },
                            McpBlock::Other,
                        ]),
                    }),
                    error: Some(McpError { message: Some("late".into()) }),
                },
            ),
            (r#"{"type":"webSearch","id":"w","query":"rust"}"#, ItemKind::WebSearch { query: Some("rust".into()) }),
            (r#"{"type":"contextCompaction","id":"cc"}"#, ItemKind::ContextCompaction {}),
            (
                r#"{"type":"dynamicToolCall","id":"d","tool":"get_weather","arguments":"{\"city\":\"P\"}","namespace":null}"#,
                ItemKind::DynamicToolCall {
                    tool: Some("get_weather".into()),
                    namespace: None,
                    arguments: json!("{\"city\":\"P\"}"),
                },
            ),
            (r#"{"type":"plan","id":"p","text":"1. a"}"#, ItemKind::Other),
        ];
        for (raw, want) in cases {
            let got = item(&wrap(raw));
            assert_eq!(got.kind, want, "{raw}");
            assert!(got.id.is_some(), "{raw}");
        }
        let status = item(&wrap(r#"{"type":"commandExecution","id":"c","status":"declined"}"#)).status;
        assert_eq!(status.as_deref(), Some("declined"));
    }

    #[test]
    fn missing_or_odd_fields_read_as_absent() {
        // No params, params of another shape, fields of another shape.
        assert_eq!(note(r#"{"method":"error"}"#), Notification::Error(ErrorNotification::default()));
        assert_eq!(
            note(r#"{"method":"error","params":{"willRetry":true,"error":"text"}}"#),
            Notification::Error(ErrorNotification { error: None, will_retry: Some(true) })
        );
        assert_eq!(
            note(r#"{"method":"thread/tokenUsage/updated","params":{"tokenUsage":"bad"}}"#),
            Notification::TokenUsageUpdated(TokenUsageUpdated::default())
        );
        assert_eq!(
            note(r#"{"method":"turn/completed","params":{"turn":"bad"}}"#),
            Notification::TurnCompleted(TurnNotification::default())
        );
        assert_eq!(note(r#"{"method":"item/started"}"#), Notification::ItemStarted(ItemNotification::default()));
        assert_eq!(
            note(r#"{"method":"item/started","params":{"item":{"id":"no_type"}}}"#),
            Notification::ItemStarted(ItemNotification::default()),
            "an item without a type"
        );
        let no_id = item(r#"{"method":"item/started","params":{"item":{"type":"commandExecution"}}}"#);
        assert_eq!(no_id.id, None);
        let bad =
            item(r#"{"method":"item/completed","params":{"item":{"type":"fileChange","id":"zz","changes":"bad"}}}"#);
        assert_eq!(bad.kind, ItemKind::FileChange { changes: None });
        // A null id is no id: a notification.
        assert_eq!(
            msg(r#"{"method":"item/commandExecution/requestApproval","id":null}"#),
            Incoming::Notification(Notification::Other("item/commandExecution/requestApproval".into()))
        );
        assert_eq!(
            msg(r#"{"id":4,"result":{"turn":{"id":5}}}"#),
            Incoming::Response {
                id: RequestId::Number(4),
                result: ResponseResult { thread: None, turn: Some(Turn::default()) },
                error: None,
            }
        );
        assert_eq!(msg(r#"{"nothing":true}"#), Incoming::Invalid);
        let info =
            |v: Value| serde_json::from_value::<TurnError>(json!({"codexErrorInfo": v})).unwrap().codex_error_info;
        assert_eq!(
            info(json!({"responseStreamConnectionFailed": {"httpStatusCode": 401}})).and_then(|i| i.http_status()),
            Some(401)
        );
        assert_eq!(info(json!({"other": null})).map(|i| i.name().to_string()), Some("other".into()));
        assert_eq!(info(json!(7)), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(read("codex: warning on stdout"), Line::NotJson);
        assert_eq!(read("[]"), Line::NotJson);
        assert_eq!(read(r#"{"method":"#), Line::NotJson);
        assert_eq!(read(""), Line::Blank);
    }

    /// Every line codex wrote in the recorded transcripts reads as a typed
    /// message; only notifications Bridle does not act on are `Other`.
    #[test]
    fn recorded_transcripts_are_fully_typed() {
        let transcripts = [
            include_str!("../tests/data/cx1.jsonl"),
            include_str!("../tests/data/c429.jsonl"),
            include_str!("../tests/data/c500.jsonl"),
            include_str!("../tests/data/c500x.jsonl"),
            include_str!("../tests/data/cappr.jsonl"),
        ];
        let ignored = [
            "account/rateLimits/updated",
            "remoteControl/status/changed",
            "thread/status/changed",
            "thread/readState/changed",
            "warning",
            "mcpServer/startupStatus/updated",
        ];
        for line in transcripts.iter().flat_map(|t| t.lines()) {
            match msg(line) {
                Incoming::Invalid => panic!("untyped line: {line}"),
                Incoming::Notification(Notification::Other(m)) => assert!(ignored.contains(&m.as_str()), "{line}"),
                Incoming::Notification(Notification::ItemStarted(p) | Notification::ItemCompleted(p)) => {
                    let item = p.item.expect(line);
                    assert!(item.kind != ItemKind::Other && item.id.is_some(), "{line}");
                }
                _ => {}
            }
        }
    }
}
