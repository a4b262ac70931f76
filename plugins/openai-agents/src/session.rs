//! One session of the resident runtime: the messages written to it, and its
//! messages mapped to Managed Agents events and tool calls.

use crate::protocol::{Call as CallMessage, McpCall, McpResult, Retry, RunError, RuntimeMessage, Usage};
use crate::{RETRY_BUDGET, RUNTIME_PROGRAM, TOOLS};
use bridle_harness_sdk::confirmation::Confirmation;
use bridle_harness_sdk::content::{self, Block, Source};
use bridle_harness_sdk::custom::{Answer, CustomCalls, CustomResult, CustomTool, custom_tools};
use bridle_harness_sdk::errors::model_error_type;
use bridle_harness_sdk::events::{self, ModelUsage, text_content};
use bridle_harness_sdk::input::UserEvent;
use bridle_harness_sdk::policy::{self, Decision, McpPolicy, Perm, ToolPolicy};
use bridle_harness_sdk::previews::Previews;
use bridle_harness_sdk::progress::{Progress, exit_failure};
use bridle_harness_sdk::wire::{Line, head, read_line};
use bridle_harness_sdk::{
    Action, HarnessSession, LaunchPlan, LogLevel, PreviewedType, RetryReport, RetryStatus, SessionSpec, ToolCall,
    ToolResult, log, new_event_id,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// A tool call the host runs (or the user must confirm first).
#[derive(Debug, Clone)]
struct Call {
    call_id: String,
    name: String,
    input: Value,
    /// An MCP tool: the runtime runs it itself once approved.
    mcp: bool,
}

pub struct AgentsSession {
    spec: SessionSpec,
    /// Enabled tools with their policies.
    tools: Vec<(&'static str, Perm)>,
    /// Tool-use event id → the runtime's call.
    calls: HashMap<String, Call>,
    /// `always_ask` calls waiting for `user.tool_confirmation`.
    asking: Vec<String>,
    /// The agent's custom tools, and their calls waiting for
    /// `user.custom_tool_result` (answered by the runtime's call id).
    custom: Vec<CustomTool>,
    custom_calls: CustomCalls<String>,
    /// MCP server name → tool policies (`mcp_toolset`).
    mcp: BTreeMap<String, McpPolicy>,
    /// The runtime's call id → the `agent.mcp_tool_use` event id, for calls
    /// approved and running.
    mcp_running: HashMap<String, String>,
    span: Option<String>,
    retry: Progress,
    turn_active: bool,
    interrupting: bool,
    /// Previews of messages being streamed, by the runtime's item id.
    previews: Previews,
}

impl AgentsSession {
    fn perm(&self, tool: &str) -> Option<Perm> {
        self.tools.iter().find(|(n, _)| *n == tool).map(|(_, p)| *p)
    }

    /// The runtime's per-session configuration; sent before every input so
    /// a restarted runtime picks the session up again.
    fn start_message(&self) -> Value {
        let resume =
            self.spec.resume.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()).unwrap_or(Value::Null);
        let mut start = json!({
            "type": "start",
            "model": self.spec.model_id(),
            "base_url": self.spec.llm.base_url,
            "system": bridle_harness_sdk::skills::with_skills(
                self.spec.agent["system"].as_str(),
                &self.spec.skills,
                bridle_harness_sdk::DEFAULT_SKILLS_DIR,
            ),
            "tools": self.tools.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            "max_retries": RETRY_BUDGET,
            "resume": resume,
        });
        let mcp = self.mcp_servers();
        if !mcp.is_empty() {
            start["mcp_servers"] = json!(mcp);
        }
        if !self.custom.is_empty() {
            start["custom_tools"] = self
                .custom
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
                .collect();
        }
        start
    }

    /// The agent's MCP servers with an enabled tool, as the runtime reaches
    /// them (the host's MCP route; the host adds the route's socket to
    /// `start`), with the tools the toolset enables or disables by name.
    fn mcp_servers(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for server in self.spec.agent["mcp_servers"].as_array().into_iter().flatten() {
            let (Some(name), Some(url)) = (server["name"].as_str(), server["url"].as_str()) else {
                continue;
            };
            let Some(p) = self.mcp.get(name) else {
                continue; // no mcp_toolset: the server offers no tool
            };
            if p.default.is_none() && p.tools.values().all(Option::is_none) {
                continue;
            }
            let enabled: Option<Vec<&str>> = p
                .default
                .is_none()
                .then(|| p.tools.iter().filter(|(_, perm)| perm.is_some()).map(|(t, _)| t.as_str()).collect());
            let disabled: Vec<&str> =
                p.tools.iter().filter(|(_, perm)| perm.is_none()).map(|(t, _)| t.as_str()).collect();
            out.push(json!({"name": name, "url": url, "enabled_tools": enabled, "disabled_tools": disabled}));
        }
        out
    }

    /// The runtime invoked an MCP tool: announced with the policy's
    /// permission; run (`mcp_approval`) unless it asks or is disabled.
    fn on_mcp_tool_call(&mut self, m: McpCall, out: &mut Vec<Action>) {
        self.progress(out);
        let (Some(call_id), Some(server), Some(name)) = (m.call_id, m.server, m.name) else {
            log(LogLevel::Warn, "openai-agents: mcp_tool_call without call_id, server or name, skipped");
            return;
        };
        let input = m.input.unwrap_or_else(|| json!({}));
        let id = new_event_id();
        let perm = self.mcp.get(&server).and_then(|p| p.perm(&name));
        // Bridle's `auto` judge knows only the built-in tools: an MCP tool
        // under `auto` asks.
        let decision = match perm {
            Some(Perm::Allow) => "allow",
            Some(Perm::Ask | Perm::Auto) => "ask",
            None => "deny",
        };
        out.push(Action::emit_json(&json!({
            "type": "agent.mcp_tool_use", "id": id, "mcp_server_name": server, "name": name,
            "input": input, "evaluated_permission": decision,
        })));
        let call = Call { call_id: call_id.clone(), name: name.clone(), input, mcp: true };
        match decision {
            "allow" => {
                out.push(mcp_approval(&call_id, None));
                self.mcp_running.insert(call_id, id);
            }
            "ask" => {
                self.asking.push(id.clone());
                self.calls.insert(id, call);
            }
            _ => {
                let text = format!("The MCP tool `{name}` of server `{server}` is not enabled for this agent.");
                out.push(mcp_denied(&id, &text));
                out.push(mcp_approval(&call_id, Some(&text)));
            }
        }
    }

    fn on_mcp_tool_result(&mut self, m: McpResult, out: &mut Vec<Action>) {
        self.progress(out);
        let Some(id) = m.call_id.and_then(|c| self.mcp_running.remove(&c)) else {
            log(LogLevel::Warn, "openai-agents: mcp_tool_result for no running MCP call, skipped");
            return;
        };
        out.push(events::mcp_tool_result(&id, m.content.unwrap_or_default(), m.is_error.unwrap_or(false)));
    }

    fn progress(&mut self, out: &mut Vec<Action>) {
        self.retry.progress(out);
    }

    fn close_span(&mut self, is_error: bool, usage: Option<&Usage>, out: &mut Vec<Action>) {
        let Some(start) = self.span.take() else {
            return;
        };
        // Responses counts cached tokens inside input tokens.
        let u = usage.copied().unwrap_or_default();
        let usage = ModelUsage::cached_in_input(u.input_tokens, u.output_tokens, u.cached_tokens, None);
        out.push(events::span_end(&start, is_error, &usage));
    }

    fn end(&mut self, out: &mut Vec<Action>) {
        self.close_span(true, None, out);
        self.turn_active = false;
        self.interrupting = false;
        self.previews.clear();
        self.retry.reset();
        self.asking.clear();
        self.custom_calls.drain();
        self.mcp_running.clear();
    }

    /// The runtime invoked a custom tool and waits for its result.
    fn on_custom_tool_call(&mut self, m: CallMessage, out: &mut Vec<Action>) {
        self.progress(out);
        let (Some(call_id), Some(name)) = (m.call_id.as_deref(), m.name.as_deref()) else {
            log(LogLevel::Warn, "openai-agents: custom_tool_call without call_id or name, skipped");
            return;
        };
        if !self.custom.iter().any(|t| t.name == name) {
            let text = format!("`{name}` is not a custom tool of this agent");
            out.push(runtime_result(call_id, &text, true));
            return;
        }
        let input = m.input.clone().unwrap_or_else(|| json!({}));
        let id = new_event_id();
        self.custom_calls.announce(call_id, &id);
        self.custom_calls.wait(&id, call_id.to_string());
        out.push(Action::emit_json(&json!({"type": "agent.custom_tool_use", "id": id, "name": name, "input": input})));
    }

    fn on_custom_result(&mut self, result: CustomResult) -> Result<Vec<Action>, String> {
        match self.custom_calls.answer(result)? {
            Answer::Now(call_id, result) => Ok(vec![runtime_result(&call_id, &result.text(), result.is_error)]),
            // Not reachable: a use is announced with its waiting call.
            Answer::Kept => Ok(Vec::new()),
        }
    }

    fn confirmation(&mut self, c: Confirmation) -> Result<Vec<Action>, String> {
        let id = c.tool_use_id.as_str();
        let pos = self.asking.iter().position(|a| a == id).ok_or_else(|| c.unexpected())?;
        self.asking.remove(pos);
        let Some(call) = self.calls.get(id).cloned() else {
            return Err(c.unexpected());
        };
        let text = c.deny_message.as_str();
        if call.mcp {
            self.calls.remove(id);
            if c.allow {
                self.mcp_running.insert(call.call_id.clone(), id.to_string());
                return Ok(vec![mcp_approval(&call.call_id, None)]);
            }
            return Ok(vec![mcp_denied(id, text), mcp_approval(&call.call_id, Some(text))]);
        }
        if c.allow {
            return Ok(vec![Self::tool_call_action(id, &call)]);
        }
        self.calls.remove(id);
        Ok(vec![events::tool_result(id, text, true), runtime_result(&call.call_id, text, true)])
    }

    fn tool_call_action(id: &str, call: &Call) -> Action {
        Action::ToolCall(ToolCall { id: id.to_string(), name: call.name.clone(), input: call.input.clone() })
    }

    fn on_tool_call(&mut self, m: CallMessage, out: &mut Vec<Action>) {
        self.progress(out);
        let (Some(call_id), Some(name)) = (m.call_id.as_deref(), m.name.as_deref()) else {
            log(LogLevel::Warn, "openai-agents: tool_call without call_id or name, skipped");
            return;
        };
        let input = m.input.clone().unwrap_or_else(|| json!({}));
        let call = Call { call_id: call_id.to_string(), name: name.to_string(), input: input.clone(), mcp: false };
        let id = new_event_id();
        let refuse = |out: &mut Vec<Action>, text: String| {
            out.push(events::tool_result(&id, &text, true));
            out.push(runtime_result(call_id, &text, true));
        };
        let Some(perm) = self.perm(name) else {
            // Not offered to the model, yet called: refused before any
            // policy applies (no `evaluation`).
            out.push(Action::emit_json(&json!({
                "type": "agent.tool_use", "id": id, "name": name, "input": input, "evaluated_permission": "deny",
            })));
            refuse(out, format!("The tool `{name}` is not enabled for this agent."));
            return;
        };
        let (decision, evaluation) = policy::decide(perm, name, &input);
        let mut event = json!({
            "type": "agent.tool_use", "id": id, "name": name, "input": input,
            "evaluated_permission": decision.as_str(),
        });
        // Like every plugin, only `auto` says how it decided (the API reads an
        // absent `evaluation` as the policy its permission implies).
        if perm == Perm::Auto {
            event["evaluation"] = evaluation;
        }
        out.push(Action::emit_json(&event));
        match decision {
            Decision::Allow => out.push(Self::tool_call_action(&id, &call)),
            Decision::Ask => self.asking.push(id.clone()),
            Decision::Deny => {
                refuse(out, policy::AUTO_DENIED.to_string());
                return;
            }
        }
        self.calls.insert(id, call);
    }

    fn on_retry(&mut self, m: Retry, out: &mut Vec<Action>) {
        if m.retry != Some(true) {
            // A refused retry: the error that follows ends the turn.
            log(LogLevel::Debug, &format!("openai-agents: retry refused: {:?}", m.message));
            return;
        }
        let status = m.status;
        let error_type = model_error_type(status, m.code.as_deref().unwrap_or_default());
        let attempt = m.attempt.unwrap_or(1).max(1);
        let max = m.max_retries;
        let delay = m.delay_ms;
        let cause = match (status, m.network == Some(true)) {
            (Some(s), _) => format!("model API returned HTTP {s}"),
            (None, true) => "model API connection failed".to_string(),
            (None, false) => "model request failed".to_string(),
        };
        let detail = m.message.as_deref().unwrap_or_default();
        let mut message = format!("{cause}: {detail}; openai-agents retry {attempt}");
        if let Some(max) = max {
            message.push_str(&format!(" of {max}"));
        }
        self.close_span(true, None, out);
        out.push(self.retry.retrying(RetryReport {
            error_type: error_type.to_string(),
            message,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            max_attempts: max.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
            delay_ms: delay,
        }));
    }

    fn on_error(&mut self, m: RunError, out: &mut Vec<Action>) {
        let message = m.message.as_deref().unwrap_or("the agent run failed");
        let status = m.status;
        let kind = m.kind.as_deref().unwrap_or("other");
        if kind == "busy" || kind == "protocol" {
            // About one message, not the turn: the runtime is still running.
            log(LogLevel::Warn, &format!("openai-agents: {message}"));
            return;
        }
        let was_interrupting = self.interrupting;
        self.end(out);
        if was_interrupting {
            out.push(Action::end_turn());
            return;
        }
        let (error_type, retry_status) = match (kind, status) {
            // Retrying with the same credentials cannot succeed.
            (_, Some(401 | 403)) => ("model_request_failed_error", RetryStatus::Terminal),
            ("api", _) => match model_error_type(status, m.code.as_deref().unwrap_or_default()) {
                "billing_error" => ("billing_error", RetryStatus::Terminal),
                other => (other, RetryStatus::Exhausted),
            },
            ("network", _) => ("model_request_failed_error", RetryStatus::Exhausted),
            _ => ("unknown_error", RetryStatus::Exhausted),
        };
        out.push(Action::failed(error_type, message, retry_status));
    }
}

/// The plugin's answer to an `mcp_tool_call`: run it, or (with the text the
/// model gets instead) not.
fn mcp_approval(call_id: &str, denied: Option<&str>) -> Action {
    let mut m = json!({"type": "mcp_approval", "call_id": call_id, "allow": denied.is_none()});
    if let Some(text) = denied {
        m["output"] = json!(text);
    }
    Action::write_line(&m)
}

/// The result event of an MCP tool call that did not run.
fn mcp_denied(tool_use_id: &str, text: &str) -> Action {
    events::mcp_tool_result(tool_use_id, text_content(text), true)
}

/// The answer to a `tool_call` or `custom_tool_call`.
fn runtime_result(call_id: &str, output: &str, is_error: bool) -> Action {
    Action::write_line(&json!({"type": "tool_result", "call_id": call_id, "output": output, "is_error": is_error}))
}

/// `user.message` content → the runtime's content (`text` / `image` url).
fn input_content(content: &Value) -> Vec<Value> {
    content::blocks(content)
        .into_iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(json!({"type": "text", "text": text})),
            Block::Image { source } => Some(json!({"type": "image", "url": source.url()?})),
            Block::Document { source: Source::Text { data } } => Some(json!({"type": "text", "text": data})),
            _ => None,
        })
        .collect()
}

/// Enabled toolset tools and their policies (`agent.tools`, read by the
/// SDK's policy), reduced to the tools the runtime offers.
fn tool_policy(agent: &Value) -> Vec<(&'static str, Perm)> {
    let policy = ToolPolicy::from_agent(agent);
    // In the runtime's order: the start message lists them.
    TOOLS.iter().filter_map(|name| Some((*name, policy.builtin_perm(name)?))).collect()
}

impl HarnessSession for AgentsSession {
    fn new(spec: SessionSpec) -> Self {
        let tools = tool_policy(&spec.agent);
        let mcp = ToolPolicy::from_agent(&spec.agent).mcp;
        let custom = custom_tools(&spec.agent);
        AgentsSession {
            spec,
            tools,
            calls: HashMap::new(),
            asking: Vec::new(),
            custom,
            custom_calls: CustomCalls::default(),
            mcp,
            mcp_running: HashMap::new(),
            span: None,
            retry: Progress::default(),
            turn_active: false,
            interrupting: false,
            previews: Previews::default(),
        }
    }

    fn launch(&mut self) -> Result<LaunchPlan, String> {
        if self.spec.model_id().is_empty() {
            return Err("the agent has no model id".into());
        }
        Ok(LaunchPlan {
            argv: vec![RUNTIME_PROGRAM.into()],
            env: vec![("OPENAI_AGENTS_DISABLE_TRACING".into(), "1".into()), ("PYTHONUNBUFFERED".into(), "1".into())],
            files: Vec::new(),
            cwd: None,
            // The default: the host places skills in the tool sandbox, and the
            // instructions (`start_message`) point the model at them.
            skills_dir: None,
        })
    }

    fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String> {
        match UserEvent::read("openai-agents", &event)? {
            UserEvent::Message => {
                let content = input_content(&event["content"]);
                if content.is_empty() {
                    return Err("user.message has no text or image content".into());
                }
                self.turn_active = true;
                Ok(vec![
                    Action::write_line(&self.start_message()),
                    Action::write_line(&json!({"type": "input", "content": content})),
                ])
            }
            UserEvent::Interrupt => {
                if !self.turn_active {
                    return Ok(Vec::new());
                }
                self.interrupting = true;
                self.asking.clear();
                // The runtime fails its own waiting calls on an interrupt.
                self.custom_calls.drain();
                Ok(vec![Action::write_line(&json!({"type": "interrupt"}))])
            }
            UserEvent::ToolConfirmation(c) => self.confirmation(c),
            UserEvent::CustomToolResult(r) => self.on_custom_result(r),
        }
    }

    fn on_output(&mut self, line: &str) -> Result<Vec<Action>, String> {
        // Stray or unreadable output must not end the session: logged by `read_line`.
        let Line::Message(m) = read_line::<RuntimeMessage>("openai-agents", line) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match m {
            RuntimeMessage::ModelRequestStart {} => {
                self.progress(&mut out);
                self.close_span(false, None, &mut out);
                let (id, start) = events::span_start();
                out.push(start);
                self.span = Some(id);
            }
            RuntimeMessage::ModelRequestEnd { usage } => self.close_span(false, usage.as_ref(), &mut out),
            RuntimeMessage::TextDelta { item_id, text } => {
                self.progress(&mut out);
                if let (Some(item), Some(text)) = (item_id, text.filter(|t| !t.is_empty())) {
                    // The first delta of an item opens its preview.
                    if self.previews.text(&item, &text).is_none() {
                        out.push(self.previews.start(item.as_str(), PreviewedType::AgentMessage));
                    }
                    out.extend(self.previews.text(&item, &text));
                }
            }
            RuntimeMessage::Message { item_id, text } => {
                self.progress(&mut out);
                let id = item_id.and_then(|item| self.previews.claim_key(&item)).unwrap_or_else(new_event_id);
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    out.push(Action::emit_json(
                        &json!({"type": "agent.message", "id": id, "content": text_content(&text)}),
                    ));
                }
            }
            RuntimeMessage::Reasoning {} => {
                self.progress(&mut out);
                out.push(Action::emit_json(&json!({"type": "agent.thinking"})));
            }
            RuntimeMessage::ToolCall(call) => self.on_tool_call(call, &mut out),
            RuntimeMessage::CustomToolCall(call) => self.on_custom_tool_call(call, &mut out),
            RuntimeMessage::McpToolCall(call) => self.on_mcp_tool_call(call, &mut out),
            RuntimeMessage::McpToolResult(result) => self.on_mcp_tool_result(result, &mut out),
            RuntimeMessage::Retry(retry) => self.on_retry(retry, &mut out),
            RuntimeMessage::Checkpoint { state } => {
                if let Some(state) = state {
                    out.push(Action::Checkpoint(state.to_string()));
                }
            }
            RuntimeMessage::TurnEnd {} | RuntimeMessage::Interrupted {} if self.turn_active => {
                self.end(&mut out);
                out.push(Action::end_turn());
            }
            RuntimeMessage::TurnEnd {} | RuntimeMessage::Interrupted {} => {}
            RuntimeMessage::Error(error) => self.on_error(error, &mut out),
            RuntimeMessage::Log { level, message } => log(
                LogLevel::Info,
                &format!(
                    "openai-agents runtime ({}): {}",
                    level.as_deref().unwrap_or("info"),
                    message.as_deref().unwrap_or_default()
                ),
            ),
            RuntimeMessage::Unknown => {
                log(LogLevel::Debug, &format!("openai-agents: message of unknown type skipped: {}", head(line)))
            }
        }
        Ok(out)
    }

    fn on_tool_result(&mut self, result: ToolResult) -> Result<Vec<Action>, String> {
        let id = result.id.as_str();
        let call = self.calls.remove(id).ok_or_else(|| format!("tool result for unknown call {id}"))?;
        // Interrupted meanwhile: the runtime already gave up on the call.
        if !self.turn_active {
            return Ok(Vec::new());
        }
        Ok(vec![
            events::tool_result(id, &result.content, result.is_error),
            runtime_result(&call.call_id, &result.content, result.is_error),
        ])
    }

    fn on_exit(&mut self, code: Option<i32>) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.turn_active {
            return out;
        }
        let interrupted = self.interrupting;
        self.end(&mut out);
        self.calls.clear();
        if interrupted {
            out.push(Action::end_turn());
        } else {
            out.push(exit_failure("the openai-agents runtime", code, "during the turn"));
        }
        out
    }
}
