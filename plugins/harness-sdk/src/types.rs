//! Plain Rust mirrors of the `bridle:harness/types` records.
//!
//! They are ordinary structs and enums (no wasm types), so plugin logic that
//! uses them compiles and runs natively too. On wasm32 the SDK converts them
//! to and from the generated bindings at the component boundary.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the agent loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionModel {
    /// The runtime process runs inside the session's sandbox (claude, codex).
    AgentInSandbox,
    /// A resident runtime outside the sandbox runs the loop and uses the
    /// sandbox through `Action::ToolCall` (openai-agents).
    SandboxAsTool,
}

/// The model API shape the runtime speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiShape {
    AnthropicMessages,
    OpenaiCompatible,
    OpenaiResponses,
}

/// Static facts about a harness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarnessInfo {
    /// Engine name, as used in vault metadata `sandbox0.managed_agents.engine`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    pub execution_model: ExecutionModel,
    pub api_shape: ApiShape,
    /// One line for people: what runtime this drives.
    pub description: String,
}

/// The model endpoint of a session. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LlmEndpoint {
    /// The upstream base URL from the LLM vault, if any.
    pub base_url: Option<String>,
    /// The agent's model id.
    pub model: String,
}

/// A header the host's egress gateway adds to requests bound for the LLM
/// host; `{token}` in `value_template` is replaced by the vault secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    pub header: String,
    pub value_template: String,
}

impl HeaderRule {
    pub fn new(header: impl Into<String>, value_template: impl Into<String>) -> Self {
        Self { header: header.into(), value_template: value_template.into() }
    }
}

/// Placeholder environment values plus gateway header injection rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CredentialPlan {
    pub env: Vec<(String, String)>,
    pub inject: Vec<HeaderRule>,
}

/// A file the host writes into the workspace before launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Relative to the session workspace; must not escape it.
    pub path: String,
    pub contents: Vec<u8>,
    /// Unix permission bits, e.g. `0o644`.
    pub mode: u32,
}

impl File {
    /// A regular file with mode `0o644`.
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self { path: path.into(), contents: contents.into(), mode: 0o644 }
    }
}

/// How to start the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// Program and arguments; a bare program name is resolved by the host.
    pub argv: Vec<String>,
    /// Extra environment (the credential plan's env is added by the host).
    pub env: Vec<(String, String)>,
    /// Files written into the workspace before the process starts.
    pub files: Vec<File>,
    /// Absolute working directory inside the sandbox (default `/workspace`).
    pub cwd: Option<String>,
}

/// The runtime is retrying a failed model request on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryReport {
    /// A Managed Agents `session.error` type, e.g. `model_overloaded_error`.
    pub error_type: String,
    pub message: String,
    /// 1-based attempt number of the retry about to happen.
    pub attempt: u32,
    pub max_attempts: Option<u32>,
    pub delay_ms: Option<u64>,
}

/// What the host should do in response to runtime output or user input.
///
/// Serializes as `{"emit": "..."}`, `{"write": [..]}`, `"resumed"`, ... so
/// golden files stay readable; see [`Action::to_golden`] for a friendlier
/// form with JSON payloads parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// One Managed Agents event body as JSON (`type` and its fields).
    Emit(String),
    /// Bytes for the runtime's stdin (include the trailing newline).
    Write(Vec<u8>),
    /// The runtime is retrying on its own.
    Retrying(RetryReport),
    /// The first sign of progress after a retry.
    Resumed,
    /// Sandbox-as-tool: run this tool call (JSON) in the sandbox.
    ToolCall(String),
    /// Persist this runtime resume token; it returns as `resume` in the spec.
    Checkpoint(String),
    /// The turn is over: JSON stop reason, e.g. `{"type":"end_turn"}`.
    TurnEnded(String),
    /// The runtime gave up: JSON error with `retry_status`.
    Failed(String),
}

impl Action {
    /// `Emit` with the event serialized compactly.
    pub fn emit_json(event: &Value) -> Self {
        Action::Emit(event.to_string())
    }

    /// `Write` of `msg` serialized as one line (newline appended), the
    /// framing every JSON-lines runtime expects.
    pub fn write_line(msg: &Value) -> Self {
        let mut bytes = serde_json::to_vec(msg).expect("a Value always serializes");
        bytes.push(b'\n');
        Action::Write(bytes)
    }

    /// `ToolCall` with `{"id", "name", "input"}` serialized.
    pub fn tool_call_json(call: &Value) -> Self {
        Action::ToolCall(call.to_string())
    }

    /// `TurnEnded` with the stop reason serialized.
    pub fn turn_ended_json(stop_reason: &Value) -> Self {
        Action::TurnEnded(stop_reason.to_string())
    }

    /// `TurnEnded` with `{"type":"end_turn"}`.
    pub fn end_turn() -> Self {
        Action::TurnEnded(r#"{"type":"end_turn"}"#.to_string())
    }

    /// `Failed` with `{"type", "message", "retry_status": {"type": retry_status}}`.
    /// `retry_status` is `"exhausted"` or `"terminal"`.
    pub fn failed(error_type: &str, message: &str, retry_status: &str) -> Self {
        Action::Failed(
            serde_json::json!({
                "type": error_type,
                "message": message,
                "retry_status": {"type": retry_status},
            })
            .to_string(),
        )
    }

    /// A JSON view for golden files: JSON payloads are parsed (so diffs show
    /// structure, not escaped strings) and written bytes become text when
    /// they are UTF-8.
    pub fn to_golden(&self) -> Value {
        use serde_json::json;
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.into()));
        match self {
            Action::Emit(s) => json!({"emit": parse(s)}),
            Action::Write(b) => match std::str::from_utf8(b) {
                Ok(text) => json!({"write": text}),
                Err(_) => json!({"write_bytes": b}),
            },
            Action::Retrying(r) => json!({"retrying": r}),
            Action::Resumed => json!("resumed"),
            Action::ToolCall(s) => json!({"tool_call": parse(s)}),
            Action::Checkpoint(s) => json!({"checkpoint": s}),
            Action::TurnEnded(s) => json!({"turn_ended": parse(s)}),
            Action::Failed(s) => json!({"failed": parse(s)}),
        }
    }
}

/// The LLM part of a [`SessionSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpecLlm {
    /// The URL the runtime must use: the host's egress gateway.
    pub base_url: String,
    /// The real upstream, for shape decisions only (never call it).
    #[serde(default)]
    pub upstream_base_url: Option<String>,
    pub model: String,
}

/// What the host tells a new session (the `spec-json` constructor argument).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionSpec {
    pub session_id: String,
    /// The agent snapshot (Managed Agents `agent` object) as JSON.
    #[serde(default)]
    pub agent: Value,
    /// Absolute workspace path inside the sandbox, usually `/workspace`.
    #[serde(default = "default_workspace")]
    pub workspace: String,
    /// The last `Action::Checkpoint` token of this session, if any.
    #[serde(default)]
    pub resume: Option<String>,
    pub llm: SpecLlm,
    /// True when the runtime is the shared resident process (sandbox-as-tool).
    #[serde(default)]
    pub resident: bool,
}

fn default_workspace() -> String {
    "/workspace".to_string()
}

impl SessionSpec {
    /// Parse the host's `spec-json`.
    pub fn from_json(spec_json: &str) -> Result<Self, String> {
        serde_json::from_str(spec_json).map_err(|e| format!("invalid session spec: {e}"))
    }
}

/// Severity of a [`crate::log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
