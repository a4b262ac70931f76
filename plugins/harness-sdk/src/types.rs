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
    /// The model API paths the runtime calls, relative to the base URL
    /// (e.g. `/v1/messages`); the host's gateway forwards only these.
    #[serde(default)]
    pub model_paths: Vec<String>,
    /// The plugin honours [`SessionSpec::remote_tools`]: it routes the
    /// workspace tools to a self-hosted environment's workers through
    /// [`Action::ToolCall`](crate::Action).
    #[serde(default)]
    pub remote_tools: bool,
}

impl ApiShape {
    /// The model API paths a runtime of this shape calls, relative to the
    /// base URL: what the host assumes for a 0.1.0 plugin, which cannot
    /// declare them.
    pub fn default_model_paths(self) -> Vec<String> {
        let paths: &[&str] = match self {
            ApiShape::AnthropicMessages => &["/v1/messages", "/v1/messages/count_tokens"],
            ApiShape::OpenaiCompatible => &["/chat/completions", "/models"],
            ApiShape::OpenaiResponses => &["/responses", "/models"],
        };
        paths.iter().map(|p| p.to_string()).collect()
    }
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
    /// Where the runtime reads skills (absolute inside the sandbox): the host
    /// places each of [`SessionSpec::skills`] at `<skills_dir>/<name>/`.
    /// Default [`DEFAULT_SKILLS_DIR`].
    #[serde(default)]
    pub skills_dir: Option<String>,
}

/// Where the host places a session's skills when the launch plan names no
/// `skills_dir` (for a resident runtime: in its tool sandbox).
pub const DEFAULT_SKILLS_DIR: &str = "/mnt/session/skills";

/// A skill the session's agent can use (uploaded with the Skills API).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Skill {
    /// The skill's slug: its directory's name.
    pub name: String,
    /// What it does and when to use it (from its `SKILL.md`).
    pub description: String,
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

/// Why a turn ended normally. Serializes as the Managed Agents stop reason
/// (`{"type": "end_turn"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StopReason {
    /// The runtime finished the turn (or stopped it on an interrupt).
    EndTurn,
}

/// Whether the session can take another turn after a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryStatus {
    /// The turn is dead, the session lives.
    Exhausted,
    /// Retrying cannot help (credentials refused, billing).
    Terminal,
}

impl RetryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryStatus::Exhausted => "exhausted",
            RetryStatus::Terminal => "terminal",
        }
    }
}

/// The runtime gave up on the turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A Managed Agents `session.error` type, e.g. `model_overloaded_error`.
    pub error_type: String,
    pub message: String,
    pub retry: RetryStatus,
}

impl Failure {
    /// The 0.1.0 wire form and the golden-file form:
    /// `{"type", "message", "retry_status": {"type"}}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "type": self.error_type,
            "message": self.message,
            "retry_status": {"type": self.retry.as_str()},
        })
    }

    /// Read the 0.1.0 wire form; every field is required.
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Status {
            #[serde(rename = "type")]
            kind: RetryStatus,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "type")]
            error_type: String,
            message: String,
            retry_status: Status,
        }
        let w: Wire = serde_json::from_str(text).map_err(|e| format!("invalid failure `{text}`: {e}"))?;
        Ok(Failure { error_type: w.error_type, message: w.message, retry: w.retry_status.kind })
    }
}

/// Sandbox-as-tool: a tool call the host runs in the session's sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The plugin's id for the call; the [`ToolResult`] carries it back.
    pub id: String,
    /// `bash`, `read`, `write`, `edit`, `glob` or `grep`.
    pub name: String,
    /// The tool's input (a JSON object).
    #[serde(default)]
    pub input: Value,
}

/// The result of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolResult {
    pub id: String,
    /// The tool's output as text.
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub is_error: bool,
    /// Exit code of a process the tool ran, when there was one.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// The event types a [`Preview`] can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PreviewedType {
    /// Followed by [`Preview::Text`] deltas, concluded by the `agent.message`.
    #[serde(rename = "agent.message")]
    AgentMessage,
    /// Start-only: the `agent.thinking` with the same id concludes it.
    #[serde(rename = "agent.thinking")]
    AgentThinking,
}

impl PreviewedType {
    /// The Managed Agents event type.
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewedType::AgentMessage => "agent.message",
            PreviewedType::AgentThinking => "agent.thinking",
        }
    }
}

/// Stream-only output: the runtime's partial output of an event the plugin
/// emits later with the same id. Never stored; sent only to stream clients
/// that asked (`event_deltas[]`). A preview never concluded is closed by its
/// model request's `span.model_request_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preview {
    /// Opens a preview. `event_id` comes from [`crate::new_event_id`] and
    /// becomes the emitted event's `id`.
    Start { event_id: String, event_type: PreviewedType },
    /// Text for entry `index` of an `agent.message` preview's `content`.
    Text { event_id: String, index: u32, text: String },
}

/// What the host should do in response to runtime output or user input.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// One Managed Agents event body as JSON (`type` and its fields).
    Emit(String),
    /// Bytes for the runtime's stdin (include the trailing newline).
    Write(Vec<u8>),
    /// The runtime is retrying on its own.
    Retrying(RetryReport),
    /// The first sign of progress after a retry.
    Resumed,
    /// Sandbox-as-tool: run this tool call in the sandbox; with remote
    /// tools ([`SessionSpec::remote_tools`]), on a worker, for any harness.
    ToolCall(ToolCall),
    /// Persist this runtime resume token; it returns as `resume` in the spec.
    Checkpoint(String),
    /// The turn is over.
    TurnEnded(StopReason),
    /// The runtime gave up on the turn.
    Failed(Failure),
    /// Stream partial output (see [`Preview`]).
    Preview(Preview),
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

    /// `Preview(Start)` of the event that will carry `event_id`.
    pub fn preview_start(event_id: &str, event_type: PreviewedType) -> Self {
        Action::Preview(Preview::Start { event_id: event_id.to_string(), event_type })
    }

    /// `Preview(Text)`: `text` for content entry `index` of `event_id`.
    pub fn preview_text(event_id: &str, index: u32, text: &str) -> Self {
        Action::Preview(Preview::Text { event_id: event_id.to_string(), index, text: text.to_string() })
    }

    /// `TurnEnded(StopReason::EndTurn)`.
    pub fn end_turn() -> Self {
        Action::TurnEnded(StopReason::EndTurn)
    }

    /// `Failed` with the given session.error type, message and retry status.
    pub fn failed(error_type: &str, message: &str, retry: RetryStatus) -> Self {
        Action::Failed(Failure { error_type: error_type.to_string(), message: message.to_string(), retry })
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
            Action::ToolCall(c) => json!({"tool_call": c}),
            Action::Checkpoint(s) => json!({"checkpoint": s}),
            Action::TurnEnded(s) => json!({"turn_ended": s}),
            Action::Failed(f) => json!({"failed": f.to_json()}),
            Action::Preview(p) => json!({"preview": p}),
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
    /// The agent's skills, placed at `<LaunchPlan::skills_dir>/<name>/`.
    #[serde(default)]
    pub skills: Vec<Skill>,
    /// The environment is self-hosted: the workspace tools run on its
    /// workers (see [`crate::remote`]), not in the runtime.
    #[serde(default)]
    pub remote_tools: bool,
}

fn default_workspace() -> String {
    "/workspace".to_string()
}

impl SessionSpec {
    /// Parse a spec in its JSON form (the 0.1.0 `spec-json`, test scripts).
    pub fn from_json(spec_json: &str) -> Result<Self, String> {
        serde_json::from_str(spec_json).map_err(|e| format!("invalid session spec: {e}"))
    }

    /// The model id: the endpoint's, else the agent snapshot's `model`
    /// (a string or `{"id"}`); empty when neither names one.
    pub fn model_id(&self) -> String {
        if !self.llm.model.is_empty() {
            return self.llm.model.clone();
        }
        let m = &self.agent["model"];
        m.as_str().or_else(|| m["id"].as_str()).unwrap_or_default().to_string()
    }

    /// The JSON form (the 0.1.0 `spec-json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SessionSpec always serializes")
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
