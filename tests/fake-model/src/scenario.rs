//! Scenarios: what the fake answers, chosen by the model name in the request.
//!
//! A scenario's replies are derived from the conversation the runtime sends (which user turn
//! it is, how many tool results came back since that user message), not from a request
//! counter, so retries, resumes and extra requests never shift the script. Only injected
//! failures are consumed in order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The script for one model name. JSON example:
///
/// ```json
/// {
///   "failures": [{"status": 529, "retry_after": 1, "times": 2}],
///   "turns": [
///     {"tools": [{"command": "echo hi > /workspace/out.txt"}], "text": "Done: {{tool_output}}"},
///     {"text": "You asked me to remember {{remembered}}"}
///   ]
/// }
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Served first, one per model request, in order (`times` repeats one entry).
    pub failures: Vec<Failure>,
    /// Once `failures` are used up, every model request fails like this (persistent failure).
    pub fail_always: Option<Failure>,
    /// The reply for user turn k (1-based) is `turns[k-1]`; the last one repeats. Empty: the
    /// default reply.
    pub turns: Vec<Reply>,
    /// How Bridle's outcome grader requests are answered (absent: always satisfied).
    pub grader: Option<Grader>,
}

/// Answers to outcome grader requests (a request whose system prompt or instructions carry
/// [`GRADER_MARKER`]; its round is read from the `## Evaluation round: N` line, 0-based).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Grader {
    /// Satisfied from this 1-based round on; absent: never satisfied (`needs_revision`).
    pub pass_after: Option<u32>,
    /// Answer with prose instead of the verdict object.
    pub malformed: bool,
}

/// What marks a grader request (Bridle's `session::outcome::grader::MARKER`).
pub const GRADER_MARKER: &str = "bridle-outcome-grader";

/// The malformed grader answer.
pub const MALFORMED_VERDICT: &str = "The work looks fine to me overall.";

impl Grader {
    /// The grader's answer for a 0-based round.
    pub fn answer(&self, round: u32) -> String {
        if self.malformed {
            return MALFORMED_VERDICT.into();
        }
        match self.pass_after {
            Some(n) if round + 1 >= n => {
                serde_json::json!({"result": "satisfied", "explanation": format!("round {round}: every criterion is met")})
                    .to_string()
            }
            _ => serde_json::json!({"result": "needs_revision",
                                     "explanation": format!("round {round}: the second criterion is not met yet")})
            .to_string(),
        }
    }
}

/// One injected HTTP failure, with the provider's real error body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// HTTP status: 529, 500, 429, 503, 400, ...
    pub status: u16,
    /// Seconds for a `retry-after` header; absent: no header.
    #[serde(default)]
    pub retry_after: Option<f64>,
    /// An `x-should-retry` header.
    #[serde(default)]
    pub should_retry: Option<bool>,
    /// Error message; a default per status otherwise.
    #[serde(default)]
    pub message: Option<String>,
    /// How many consecutive requests fail this way (default 1).
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Failure {
    pub fn new(status: u16) -> Failure {
        Failure { status, retry_after: None, should_retry: None, message: None, times: 1 }
    }
    pub fn times(mut self, n: u32) -> Failure {
        self.times = n;
        self
    }
    pub fn retry_after(mut self, secs: f64) -> Failure {
        self.retry_after = Some(secs);
        self
    }
}

/// The reply to one user turn: its tool calls (one per model request, each after the previous
/// one's result came back), then the final text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Reply {
    /// Final text. Templates: `{{last_user}}`, `{{remembered}}` (what follows "remember" in
    /// the earliest user text that has it), `{{turn}}`, `{{tool_output}}` (the last tool
    /// result's text), `{{model}}`.
    pub text: String,
    /// Tool calls made before the text.
    pub tools: Vec<ToolCall>,
    /// A thinking / reasoning block before the text.
    pub thinking: Option<String>,
    /// Split the text into this many streamed deltas (default: one per word).
    pub chunks: Option<usize>,
    /// Pause between streamed deltas (a slow reply to interrupt mid-turn).
    pub chunk_delay_ms: u64,
    /// Pause before the response starts.
    pub delay_ms: u64,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            text: DEFAULT_TEXT.into(),
            tools: Vec::new(),
            thinking: None,
            chunks: None,
            chunk_delay_ms: 0,
            delay_ms: 0,
        }
    }
}

/// The reply when nothing else is scripted.
pub const DEFAULT_TEXT: &str = "Hello from the fake model.";

/// A tool call. `command` is a bash command mapped onto whatever shell tool the runtime
/// offers (Claude Code `Bash`, codex `exec_command` / `shell`, Bridle's `bash`); `name` +
/// `input` call any tool verbatim; `custom` + `input` call the offered tool whose name is
/// `custom` or ends with it (an agent's custom tool, which a runtime may prefix, e.g. Claude
/// Code's `mcp__bridle__get_weather`, or a member of a Responses `namespace` tool, e.g. codex's
/// `lookup` in `mcp__docs`, called with its `namespace`). `wait_ms` (with `command`) is how
/// long the runtime should wait for the command before it answers, mapped onto each shell
/// tool's own argument ([`shell_wait_arg`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ToolCall {
    pub command: Option<String>,
    pub name: Option<String>,
    pub custom: Option<String>,
    pub input: Option<Value>,
    pub wait_ms: Option<u64>,
}

impl ToolCall {
    pub fn bash(command: impl Into<String>) -> ToolCall {
        ToolCall { command: Some(command.into()), ..ToolCall::default() }
    }
}

impl Scenario {
    pub fn text(text: impl Into<String>) -> Scenario {
        Scenario { turns: vec![Reply::text(text)], ..Scenario::default() }
    }
    pub fn with_failures(mut self, f: Failure) -> Scenario {
        self.failures.push(f);
        self
    }

    /// Built-in scenarios by model name, so the binary is useful without control calls:
    /// `fake-tool` (bash `echo hello > out.txt`, then text), `fake-custom-tool` (the agent's
    /// custom tool `get_weather` with `{"city": "Paris"}`, then text quoting its result), `fake-recall`
    /// (turn 1 "OK", later turns answer `{{remembered}}`), `fake-slow` (20 deltas, 500 ms
    /// apart), `fake-fail-<status>-<n>` (n failures with `retry-after: 1`, then text),
    /// `fake-fail-<status>-always`. Anything else: `None` (the default reply).
    pub fn builtin(model: &str) -> Option<Scenario> {
        let rest = model.strip_prefix("fake-")?;
        match rest {
            "tool" => Some(Scenario {
                turns: vec![Reply {
                    tools: vec![ToolCall::bash("echo hello > out.txt")],
                    text: "I wrote out.txt. Output: {{tool_output}}".into(),
                    ..Reply::default()
                }],
                ..Scenario::default()
            }),
            "custom-tool" => Some(Scenario {
                turns: vec![Reply {
                    tools: vec![ToolCall {
                        custom: Some("get_weather".into()),
                        input: Some(serde_json::json!({"city": "Paris"})),
                        ..ToolCall::default()
                    }],
                    text: "The tool said: {{tool_output}}".into(),
                    ..Reply::default()
                }],
                ..Scenario::default()
            }),
            "recall" => Some(Scenario {
                turns: vec![
                    Reply::text("OK, I will remember that."),
                    Reply::text("You asked me to remember {{remembered}}"),
                ],
                ..Scenario::default()
            }),
            "outcome-never" => Some(Scenario { grader: Some(Grader::default()), ..Scenario::default() }),
            "outcome-malformed" => {
                Some(Scenario { grader: Some(Grader { malformed: true, ..Grader::default() }), ..Scenario::default() })
            }
            "slow" => Some(Scenario {
                turns: vec![Reply {
                    text: (1..=20).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" "),
                    chunk_delay_ms: 500,
                    ..Reply::default()
                }],
                ..Scenario::default()
            }),
            _ if rest.starts_with("outcome-pass-") => {
                let n: u32 = rest.strip_prefix("outcome-pass-")?.parse().ok()?;
                let turns = vec![Reply::text("Draft {{turn}} of the work.")];
                Some(Scenario {
                    turns,
                    grader: Some(Grader { pass_after: Some(n), ..Grader::default() }),
                    ..Scenario::default()
                })
            }
            _ => {
                let fail = rest.strip_prefix("fail-")?;
                let (status, n) = fail.split_once('-')?;
                let status: u16 = status.parse().ok()?;
                let f = Failure::new(status).retry_after(1.0);
                if n == "always" {
                    Some(Scenario { fail_always: Some(f), ..Scenario::default() })
                } else {
                    let n: u32 = n.parse().ok()?;
                    Some(Scenario::default().with_failures(f.times(n)))
                }
            }
        }
    }
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply { text: text.into(), ..Reply::default() }
    }
}

/// What one model request asked for, read from its body (provider-neutral).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversation {
    pub model: String,
    /// Texts of the user's own messages, oldest first (runtime-injected context excluded).
    pub user_texts: Vec<String>,
    /// Tool results since the last user message, oldest first.
    pub tool_results: Vec<String>,
    /// Names of the tools offered.
    pub tools: Vec<String>,
    pub stream: bool,
    /// A Bridle outcome grader request: its 0-based round.
    pub grader_round: Option<u32>,
}

/// The round of a grader request (`None` when the request is not one).
fn grader_round(system: &str, user: &str) -> Option<u32> {
    if !system.contains(GRADER_MARKER) {
        return None;
    }
    let line = user.lines().find_map(|l| l.strip_prefix("## Evaluation round: "))?;
    line.trim().parse().ok()
}

/// Text that runtimes inject as user messages (`<system-reminder>`, `<environment_context>`,
/// AGENTS.md) is not the user's.
fn is_injected(text: &str) -> bool {
    let t = text.trim_start();
    t.is_empty() || t.starts_with('<') || t.starts_with("# AGENTS.md")
}

/// The text of a tool result's `content` (string, or blocks with `text`).
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").or_else(|| b.get("output")).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Conversation {
    /// From an Anthropic Messages request body.
    pub fn from_messages(body: &Value) -> Conversation {
        let mut c = Conversation {
            model: str_field(body, "model"),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            tools: tool_names(body),
            ..Conversation::default()
        };
        let empty = Vec::new();
        let messages = body.get("messages").and_then(Value::as_array).unwrap_or(&empty);
        for m in messages {
            if m.get("role").and_then(Value::as_str) != Some("user") {
                continue;
            }
            let mut texts = Vec::new();
            let mut results = Vec::new();
            match m.get("content") {
                Some(Value::String(s)) => texts.push(s.clone()),
                Some(Value::Array(blocks)) => {
                    for b in blocks {
                        match b.get("type").and_then(Value::as_str) {
                            Some("text") => texts.push(str_field(b, "text")),
                            Some("tool_result") => results.push(content_text(b.get("content").unwrap_or(&Value::Null))),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            c.absorb(texts, results);
        }
        let system = match body.get("system") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => content_text(other),
            None => String::new(),
        };
        c.grader_round = grader_round(&system, c.user_texts.last().map(String::as_str).unwrap_or(""));
        c
    }

    /// From an OpenAI Responses request body.
    pub fn from_responses(body: &Value) -> Conversation {
        let mut c = Conversation {
            model: str_field(body, "model"),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            tools: tool_names(body),
            ..Conversation::default()
        };
        match body.get("input") {
            Some(Value::String(s)) => c.absorb(vec![s.clone()], Vec::new()),
            Some(Value::Array(items)) => {
                for item in items {
                    let kind = item.get("type").and_then(Value::as_str);
                    let role = item.get("role").and_then(Value::as_str);
                    match (kind, role) {
                        (Some("function_call_output" | "custom_tool_call_output"), _) => {
                            c.absorb(Vec::new(), vec![content_text(item.get("output").unwrap_or(&Value::Null))])
                        }
                        (Some("message") | None, Some("user")) => {
                            let texts = match item.get("content") {
                                Some(Value::String(s)) => vec![s.clone()],
                                Some(Value::Array(parts)) => parts
                                    .iter()
                                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                                    .map(str::to_owned)
                                    .collect(),
                                _ => Vec::new(),
                            };
                            c.absorb(texts, Vec::new());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        c.grader_round =
            grader_round(&str_field(body, "instructions"), c.user_texts.last().map(String::as_str).unwrap_or(""));
        c
    }

    /// One user message's parts: real text starts a new turn (and forgets earlier tool
    /// results); tool results accumulate within the turn.
    fn absorb(&mut self, texts: Vec<String>, results: Vec<String>) {
        let own: Vec<String> = texts.into_iter().filter(|t| !is_injected(t)).collect();
        if !own.is_empty() {
            self.user_texts.push(own.join("\n"));
            self.tool_results.clear();
        }
        self.tool_results.extend(results);
    }

    /// 1-based user turn (0 when the request has no user text at all).
    pub fn turn(&self) -> usize {
        self.user_texts.len()
    }

    /// What follows "remember" in the earliest user text that has it.
    pub fn remembered(&self) -> String {
        for t in &self.user_texts {
            let lower = t.to_lowercase();
            if let Some(i) = lower.find("remember") {
                // "remember" is ASCII, so the byte offset is valid in the original too.
                let rest = &t[i + "remember".len()..];
                return rest.trim_start_matches([':', ' ', ',', '\n']).trim().trim_end_matches(['.', '!']).to_owned();
            }
        }
        String::new()
    }

    fn render(&self, template: &str) -> String {
        template
            .replace("{{last_user}}", self.user_texts.last().map(String::as_str).unwrap_or(""))
            .replace("{{remembered}}", &self.remembered())
            .replace("{{turn}}", &self.turn().to_string())
            .replace("{{tool_output}}", self.tool_results.last().map(|s| s.trim()).unwrap_or(""))
            .replace("{{model}}", &self.model)
    }
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The names of the offered tools. A Responses `namespace` tool (codex offers each MCP server's
/// tools in one, `mcp__<server>`) contributes its members as `<namespace>.<name>`: tool names
/// never hold a `.`, so the form is unambiguous ([`split_namespace`]).
fn tool_names(body: &Value) -> Vec<String> {
    let name = |t: &Value| t.get("name").or_else(|| t.get("type")).and_then(Value::as_str).map(str::to_owned);
    let mut out = Vec::new();
    for t in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        match (t.get("type").and_then(Value::as_str), t.get("tools").and_then(Value::as_array)) {
            (Some("namespace"), Some(members)) => {
                let ns = name(t).unwrap_or_default();
                out.extend(members.iter().filter_map(name).map(|m| format!("{ns}.{m}")));
            }
            _ => out.extend(name(t)),
        }
    }
    out
}

/// `<namespace>.<name>` → (`Some(namespace)`, `name`); a plain name → (`None`, name).
pub fn split_namespace(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    }
}

/// What to send for one model request.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    Fail(Failure),
    Respond(Response),
}

/// A successful reply, provider-neutral.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub thinking: Option<String>,
    /// Text deltas (joined: the message text). Empty when the reply is a tool call.
    pub chunks: Vec<String>,
    pub tool: Option<ToolCall>,
    pub chunk_delay_ms: u64,
    pub delay_ms: u64,
}

impl Response {
    pub fn text(&self) -> String {
        self.chunks.concat()
    }
}

/// The successful reply a scenario gives to a conversation.
pub fn respond(scenario: &Scenario, conv: &Conversation) -> Response {
    if let Some(round) = conv.grader_round {
        let text = scenario.grader.clone().unwrap_or(Grader { pass_after: Some(1), malformed: false }).answer(round);
        return Response { thinking: None, chunks: vec![text], tool: None, chunk_delay_ms: 0, delay_ms: 0 };
    }
    let default = Reply::default();
    let reply = if scenario.turns.is_empty() {
        &default
    } else {
        let k = conv.turn().clamp(1, scenario.turns.len());
        &scenario.turns[k - 1]
    };
    let done = conv.tool_results.len();
    if let Some(tool) = reply.tools.get(done) {
        return Response {
            thinking: reply.thinking.clone(),
            chunks: Vec::new(),
            tool: Some(tool.clone()),
            chunk_delay_ms: 0,
            delay_ms: reply.delay_ms,
        };
    }
    let text = conv.render(&reply.text);
    Response {
        thinking: reply.thinking.clone(),
        chunks: split_chunks(&text, reply.chunks),
        tool: None,
        chunk_delay_ms: reply.chunk_delay_ms,
        delay_ms: reply.delay_ms,
    }
}

/// Split text into `n` roughly equal pieces on char boundaries, or per word.
fn split_chunks(text: &str, n: Option<usize>) -> Vec<String> {
    if text.is_empty() {
        return vec![String::new()];
    }
    match n {
        Some(n) if n > 1 => {
            let chars: Vec<char> = text.chars().collect();
            let size = chars.len().div_ceil(n).max(1);
            chars.chunks(size).map(|c| c.iter().collect()).collect()
        }
        Some(_) => vec![text.to_owned()],
        None => {
            let mut out = Vec::new();
            let mut cur = String::new();
            for ch in text.chars() {
                cur.push(ch);
                if ch == ' ' {
                    out.push(std::mem::take(&mut cur));
                }
            }
            if !cur.is_empty() {
                out.push(cur);
            }
            out
        }
    }
}

/// The arguments for a tool call, mapped onto the shell tool the runtime offers.
/// Returns `(name, input)`.
pub fn tool_call_args(call: &ToolCall, offered: &[String]) -> (String, Value) {
    if let Some(name) = &call.name {
        let input = call.input.clone().unwrap_or_else(|| Value::Object(Default::default()));
        return (name.clone(), input);
    }
    if let Some(custom) = &call.custom {
        let input = call.input.clone().unwrap_or_else(|| Value::Object(Default::default()));
        let name = offered
            .iter()
            .find(|t| *t == custom)
            .or_else(|| offered.iter().find(|t| t.ends_with(custom.as_str())))
            .unwrap_or(custom);
        return (name.clone(), input);
    }
    let cmd = call.command.clone().unwrap_or_default();
    let has = |n: &str| offered.iter().any(|t| t == n);
    let shell = if has("Bash") {
        Shell::ClaudeBash
    } else if has("exec_command") {
        Shell::CodexExec
    } else if has("shell") {
        Shell::CodexShell
    } else if has("shell_command") {
        Shell::CodexShellCommand
    } else {
        // Bridle's openai-agents runtime, and the default.
        Shell::BridleBash
    };
    let mut input = match shell {
        Shell::ClaudeBash => serde_json::json!({"command": cmd, "description": "Run the scripted command"}),
        Shell::CodexExec => serde_json::json!({"cmd": cmd}),
        Shell::CodexShell => serde_json::json!({"command": ["bash", "-lc", cmd]}),
        Shell::CodexShellCommand | Shell::BridleBash => serde_json::json!({"command": cmd}),
    };
    if let Some((key, ms)) = shell_wait_arg(shell, call.wait_ms) {
        input[key] = ms.into();
    }
    (shell.name().into(), input)
}

/// The shell tools a runtime may offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// Claude Code's `Bash`.
    ClaudeBash,
    /// codex's unified exec `exec_command`.
    CodexExec,
    /// older codex's `shell`.
    CodexShell,
    /// codex's `shell_command`.
    CodexShellCommand,
    /// Bridle's toolset `bash` (the openai-agents runtime's).
    BridleBash,
}

impl Shell {
    pub fn name(self) -> &'static str {
        match self {
            Shell::ClaudeBash => "Bash",
            Shell::CodexExec => "exec_command",
            Shell::CodexShell => "shell",
            Shell::CodexShellCommand => "shell_command",
            Shell::BridleBash => "bash",
        }
    }
}

/// codex's unified exec clamps `yield_time_ms` to 250..=30 000 ms
/// (`codex-rs/core/src/unified_exec`: `MIN_YIELD_TIME_MS`, `MAX_YIELD_TIME_MS`) and answers
/// "still running" once it passes: the fake asks for what codex will really wait.
pub const CODEX_YIELD_MS: (u64, u64) = (250, 30_000);
/// What the fake asks codex to wait when the scenario does not say (codex's own default).
pub const CODEX_DEFAULT_YIELD_MS: u64 = 10_000;
/// The longest timeout Claude Code's `Bash` and Bridle's `bash` take (600 s; longer is refused
/// or cut to this).
pub const MAX_SHELL_TIMEOUT_MS: u64 = 600_000;

/// The argument that says how long `shell` waits for a command, and its value for a scenario's
/// `wait_ms`: `None` leaves the runtime's default (except codex's `exec_command`, which
/// always gets a `yield_time_ms`).
pub fn shell_wait_arg(shell: Shell, wait_ms: Option<u64>) -> Option<(&'static str, u64)> {
    match shell {
        Shell::CodexExec => {
            let (min, max) = CODEX_YIELD_MS;
            Some(("yield_time_ms", wait_ms.unwrap_or(CODEX_DEFAULT_YIELD_MS).clamp(min, max)))
        }
        Shell::ClaudeBash => wait_ms.map(|ms| ("timeout", ms.min(MAX_SHELL_TIMEOUT_MS))),
        Shell::CodexShell | Shell::CodexShellCommand | Shell::BridleBash => {
            wait_ms.map(|ms| ("timeout_ms", ms.min(MAX_SHELL_TIMEOUT_MS)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_turns_and_tool_results() {
        let body = json!({
            "model": "m", "stream": true, "tools": [{"name": "Bash"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "Please remember PAPAYA."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "OK"}]},
                {"role": "user", "content": "what was it?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hi\n"}]}
            ]
        });
        let c = Conversation::from_messages(&body);
        assert_eq!(c.turn(), 2);
        assert_eq!(c.remembered(), "PAPAYA");
        assert_eq!(c.tool_results, vec!["hi\n"]);
        assert_eq!(c.tools, vec!["Bash"]);
        assert!(c.stream);
    }

    #[test]
    fn responses_turns_and_tool_results() {
        let body = json!({
            "model": "m", "tools": [{"type": "function", "name": "exec_command"}],
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>..</environment_context>"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "do it"}]},
                {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "done"}
            ]
        });
        let c = Conversation::from_responses(&body);
        assert_eq!(c.turn(), 1);
        assert_eq!(c.tool_results, vec!["done"]);
        let s = Scenario {
            turns: vec![Reply {
                tools: vec![ToolCall::bash("echo hi")],
                text: "got {{tool_output}}".into(),
                ..Reply::default()
            }],
            ..Scenario::default()
        };
        let r = respond(&s, &c);
        assert_eq!(r.tool, None);
        assert_eq!(r.text(), "got done");
        let mut first = c.clone();
        first.tool_results.clear();
        let r = respond(&s, &first);
        let (name, args) = tool_call_args(r.tool.as_ref().unwrap(), &first.tools);
        assert_eq!(name, "exec_command");
        assert_eq!(args["cmd"], "echo hi");
    }

    #[test]
    fn a_commands_wait_maps_onto_each_shell_tool() {
        let call = |wait_ms| ToolCall { wait_ms, ..ToolCall::bash("sleep 1") };
        let cases: &[(&str, Option<u64>, Value)] = &[
            ("Bash", None, json!({"command": "sleep 1", "description": "Run the scripted command"})),
            (
                "Bash",
                Some(20_000),
                json!({"command": "sleep 1", "description": "Run the scripted command", "timeout": 20_000}),
            ),
            (
                "Bash",
                Some(900_000),
                json!({"command": "sleep 1", "description": "Run the scripted command", "timeout": 600_000}),
            ),
            ("exec_command", None, json!({"cmd": "sleep 1", "yield_time_ms": 10_000})),
            ("exec_command", Some(20_000), json!({"cmd": "sleep 1", "yield_time_ms": 20_000})),
            ("exec_command", Some(60_000), json!({"cmd": "sleep 1", "yield_time_ms": 30_000})),
            ("exec_command", Some(10), json!({"cmd": "sleep 1", "yield_time_ms": 250})),
            ("shell", Some(20_000), json!({"command": ["bash", "-lc", "sleep 1"], "timeout_ms": 20_000})),
            ("shell_command", None, json!({"command": "sleep 1"})),
            ("shell_command", Some(20_000), json!({"command": "sleep 1", "timeout_ms": 20_000})),
            ("bash", None, json!({"command": "sleep 1"})),
            ("bash", Some(20_000), json!({"command": "sleep 1", "timeout_ms": 20_000})),
            ("bash", Some(900_000), json!({"command": "sleep 1", "timeout_ms": 600_000})),
        ];
        for (tool, wait, want) in cases {
            let (name, input) = tool_call_args(&call(*wait), &[tool.to_string(), "read".into()]);
            assert_eq!((name.as_str(), &input), (*tool, want), "{tool} waiting {wait:?}");
        }
        // Nothing offered that the fake knows: Bridle's `bash`.
        assert_eq!(tool_call_args(&call(Some(5)), &[]).1, json!({"command": "sleep 1", "timeout_ms": 5}));
        let parsed: ToolCall = serde_json::from_value(json!({"command": "x", "wait_ms": 30000})).unwrap();
        assert_eq!(parsed.wait_ms, Some(30_000));
    }

    #[test]
    fn custom_tools_match_a_prefixed_offer() {
        let s = Scenario::builtin("fake-custom-tool").unwrap();
        let call = &s.turns[0].tools[0];
        let offered = vec!["Bash".to_string(), "mcp__bridle__get_weather".to_string()];
        let (name, input) = tool_call_args(call, &offered);
        assert_eq!(name, "mcp__bridle__get_weather");
        assert_eq!(input, json!({"city": "Paris"}));
        let (name, _) = tool_call_args(call, &["get_weather".to_string()]);
        assert_eq!(name, "get_weather");
    }

    #[test]
    fn namespaced_tools_are_offered_and_called_by_their_member_name() {
        // codex 0.171 offers an MCP server's tools in a namespace tool.
        let body = json!({"model": "m", "input": "hi", "tools": [
            {"type": "function", "name": "exec_command"},
            {"type": "namespace", "name": "mcp__docs", "tools": [{"type": "function", "name": "lookup"}]},
            {"type": "web_search"}
        ]});
        let c = Conversation::from_responses(&body);
        assert_eq!(c.tools, vec!["exec_command", "mcp__docs.lookup", "web_search"]);
        let call = ToolCall { custom: Some("lookup".into()), ..ToolCall::default() };
        let (name, _) = tool_call_args(&call, &c.tools);
        assert_eq!(split_namespace(&name), (Some("mcp__docs"), "lookup"));
        assert_eq!(split_namespace("exec_command"), (None, "exec_command"));
    }

    #[test]
    fn builtins_parse() {
        let s = Scenario::builtin("fake-fail-529-2").unwrap();
        assert_eq!(s.failures[0].status, 529);
        assert_eq!(s.failures[0].times, 2);
        assert!(Scenario::builtin("fake-fail-500-always").unwrap().fail_always.is_some());
        assert!(Scenario::builtin("fake-fail-x-1").is_none());
        assert!(Scenario::builtin("claude-sonnet").is_none());
    }

    #[test]
    fn grader_requests_are_answered_by_round() {
        let user = "## Task\nt\n\n## Evaluation round: 1\n\nresult";
        let messages = json!({"model": "fake-outcome-pass-2", "system": "You grade (bridle-outcome-grader).",
                              "messages": [{"role": "user", "content": user}]});
        let conv = Conversation::from_messages(&messages);
        assert_eq!(conv.grader_round, Some(1));
        let s = Scenario::builtin("fake-outcome-pass-2").unwrap();
        assert!(respond(&s, &conv).text().contains("\"satisfied\""));
        let first = Conversation::from_responses(&json!({"model": "m", "instructions": "bridle-outcome-grader",
                                                        "input": user.replace("round: 1", "round: 0")}));
        assert_eq!(first.grader_round, Some(0));
        assert!(respond(&s, &first).text().contains("\"needs_revision\""));
        let never = Scenario::builtin("fake-outcome-never").unwrap();
        assert!(respond(&never, &conv).text().contains("\"needs_revision\""));
        let bad = Scenario::builtin("fake-outcome-malformed").unwrap();
        assert_eq!(respond(&bad, &conv).text(), MALFORMED_VERDICT);
        // Not a grader request: an ordinary turn.
        let plain =
            Conversation::from_messages(&json!({"model": "m", "messages": [{"role": "user", "content": user}]}));
        assert_eq!(plain.grader_round, None);
        assert_eq!(respond(&s, &plain).text(), "Draft 1 of the work.");
    }

    #[test]
    fn chunks_rejoin() {
        let t = "héllo wörld, this is text";
        assert_eq!(split_chunks(t, None).concat(), t);
        assert_eq!(split_chunks(t, Some(4)).concat(), t);
        assert_eq!(split_chunks(t, Some(4)).len(), 4);
        assert_eq!(split_chunks(t, Some(1)), vec![t.to_string()]);
    }

    #[test]
    fn scenario_json_round_trips_and_rejects_typos() {
        let s: Scenario = serde_json::from_value(json!({
            "failures": [{"status": 429}],
            "turns": [{"text": "x", "tools": [{"command": "ls"}]}]
        }))
        .unwrap();
        assert_eq!(s.failures[0].times, 1);
        assert!(serde_json::from_value::<Scenario>(json!({"turnz": []})).is_err());
    }
}
