//! One Claude Code session: the launch plan and the two-way mapping between
//! stream-json lines and Managed Agents events.

use crate::custom::{self, CustomServer};
use crate::policy::{self, Decision, Perm, TOOLSET, ToolPolicy, toolset_name};
use crate::protocol::{
    ApiRetry, Assistant, AssistantBlock, BlockDelta, BlockStart, ControlRequest, Message, RequestKind, ResultBlock,
    ResultMessage, StreamEvent, StreamEventBody, System, ToolResultBlock, ToolResultContent, ToolUse, Usage, User,
    UserBlock,
};
use crate::remote::{self, Unannounced, WorkerTools};
use bridle_harness_sdk::confirmation::Confirmation;
use bridle_harness_sdk::errors::model_error_type;
use bridle_harness_sdk::events::{self, ModelUsage, text_content};
use bridle_harness_sdk::held::HeldUses;
use bridle_harness_sdk::input::UserEvent;
use bridle_harness_sdk::previews::Previews;
use bridle_harness_sdk::progress::{Progress, exit_failure};
use bridle_harness_sdk::wire::{Line, head, read_line};
use bridle_harness_sdk::{
    Action, HarnessSession, LaunchPlan, LogLevel, PreviewedType, RetryReport, RetryStatus, SessionSpec, ToolResult,
    log, new_event_id,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Claude Code's retry budget; set explicitly so reports carry it.
const MAX_RETRIES: u32 = 10;

/// A tool use we emitted: the Managed Agents event id its result points at.
#[derive(Debug, Clone)]
struct ToolRef {
    event_id: String,
    mcp: bool,
    /// A custom tool: its result is the user's, not an agent event.
    custom: bool,
}

/// A `can_use_tool` control request waiting for `user.tool_confirmation`.
#[derive(Debug, Clone)]
struct PendingPermission {
    request_id: String,
    input: Value,
}

/// An open `span.model_request_*` pair.
#[derive(Debug, Clone)]
struct Span {
    start_id: String,
    message_id: Option<String>,
    usage: Usage,
    /// Opened by a `stream_event` `message_start` (closed by `message_stop`);
    /// otherwise opened by an `assistant` line and closed by the next line
    /// that is not part of the same message.
    streamed: bool,
}

/// The last API error of the turn (synthetic assistant message / result).
#[derive(Debug, Clone, Default)]
struct ApiError {
    status: Option<u64>,
    kind: String,
    text: String,
}

pub struct ClaudeSession {
    spec: SessionSpec,
    policy: ToolPolicy,
    custom: CustomServer,
    /// A self-hosted environment's session: the workers' tools.
    worker: WorkerTools,
    checkpointed: Option<String>,
    tools: HashMap<String, ToolRef>,
    /// `always_ask` tool uses (by Claude's tool use id) held until Claude
    /// Code asks for permission (→ "ask") or runs them anyway (→ "allow").
    held: HeldUses,
    permissions: HashMap<String, PendingPermission>,
    span: Option<Span>,
    /// A retry was reported and no progress seen since.
    retry: Progress,
    /// The message whose streamed span already closed (its `assistant`
    /// lines may still follow).
    closed_message: Option<String>,
    api_error: Option<ApiError>,
    turn_active: bool,
    interrupting: bool,
    next_request: u64,
    /// Usage already reported in this turn's spans (in `Usage::counters` order).
    reported: [u64; 4],
    /// Previews of the streamed message's text and thinking blocks, keyed
    /// by content block index; its `assistant` lines claim their ids.
    previews: Previews,
}

impl ClaudeSession {
    fn state_dir(&self) -> String {
        format!("{}/.bridle/claude", self.spec.workspace.trim_end_matches('/'))
    }

    fn next_request_id(&mut self) -> String {
        self.next_request += 1;
        format!("bridle_{}", self.next_request)
    }

    // ---- output helpers -------------------------------------------------

    fn close_span(&mut self, is_error: bool, out: &mut Vec<Action>) {
        if let Some(span) = self.span.take() {
            self.closed_message = span.message_id.clone();
            let counts = span.usage.counters().map(|n| n.unwrap_or(0));
            for (reported, n) in self.reported.iter_mut().zip(counts) {
                *reported = reported.saturating_add(n);
            }
            let [input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens] = counts;
            let usage = ModelUsage {
                input_tokens,
                output_tokens,
                cache_creation_input_tokens,
                cache_read_input_tokens,
                speed: span.usage.speed,
            };
            out.push(events::span_end(&span.start_id, is_error, &usage));
        }
    }

    fn open_span(&mut self, message_id: Option<String>, usage: Option<Usage>, streamed: bool, out: &mut Vec<Action>) {
        self.close_span(false, out);
        let (start_id, start) = events::span_start();
        out.push(start);
        self.span = Some(Span { start_id, message_id, usage: usage.unwrap_or_default(), streamed });
    }

    /// The first progress after a retry report.
    fn progress(&mut self, out: &mut Vec<Action>) {
        self.retry.progress(out);
    }

    /// The permission and event body for a Claude tool use.
    fn tool_event(&self, name: &str, input: &Value, event_id: &str) -> (Perm, Value, bool) {
        if let Some(tool) = self.worker.toolset_name(name) {
            // A worker's tool is the toolset's, whoever serves it.
            let perm = self.policy.builtin_perm(tool).unwrap_or(Perm::Allow);
            let event = json!({"type": "agent.tool_use", "id": event_id, "name": tool, "input": input});
            return (perm, event, false);
        }
        if let Some(rest) = name.strip_prefix("mcp__") {
            let (server, tool) = rest.split_once("__").unwrap_or((rest, ""));
            let perm = self.policy.mcp.get(server).and_then(|p| p.perm(tool)).unwrap_or(Perm::Ask);
            let event = json!({
                "type": "agent.mcp_tool_use",
                "id": event_id,
                "mcp_server_name": server,
                "name": tool,
                "input": input,
            });
            return (perm, event, true);
        }
        let (ma_name, perm) = match toolset_name(name) {
            Some(n) => (n, self.policy.builtin_perm(n).unwrap_or(Perm::Allow)),
            // Not a toolset tool (Claude Code internals such as TodoWrite):
            // keep its own name; Bridle has no policy for it.
            None => (name, Perm::Allow),
        };
        let event = json!({
            "type": "agent.tool_use",
            "id": event_id,
            "name": ma_name,
            "input": input,
        });
        (perm, event, false)
    }

    fn on_tool_use(&mut self, block: ToolUse, out: &mut Vec<Action>) {
        let Some(id) = block.id.as_deref() else {
            log(LogLevel::Warn, "claude: tool_use block without id, skipped");
            return;
        };
        let name = block.name.as_deref().unwrap_or("unknown");
        let input = block.input.unwrap_or_else(|| json!({}));
        if let Some(custom) = self.custom.custom_name(name) {
            let event = self.custom.tool_use(id, custom, &input);
            let event_id = event["id"].as_str().unwrap_or_default().to_string();
            self.tools.insert(id.to_string(), ToolRef { event_id, mcp: false, custom: true });
            out.push(Action::emit_json(&event));
            return;
        }
        let event_id = new_event_id();
        let (perm, mut event, mcp) = self.tool_event(name, &input, &event_id);
        let perm = judged(perm, &mut event, mcp, &input);
        self.tools.insert(id.to_string(), ToolRef { event_id: event_id.clone(), mcp, custom: false });
        match perm {
            Perm::Allow => {
                event["evaluated_permission"] = json!("allow");
                out.push(Action::emit_json(&event));
            }
            Perm::Ask | Perm::Auto => self.held.hold(id, event),
        }
    }

    fn on_tool_result(&mut self, block: ToolResultBlock, out: &mut Vec<Action>) {
        let Some(id) = block.tool_use_id.as_deref() else {
            log(LogLevel::Warn, "claude: tool_result without tool_use_id, skipped");
            return;
        };
        // Ran without a permission prompt: it was allowed after all.
        self.held.release(id, out);
        let Some(tool) = self.tools.get(id).cloned() else {
            log(LogLevel::Warn, &format!("claude: tool_result for unknown tool use {id}, skipped"));
            return;
        };
        // A prompt Claude Code withdrew is no longer answerable.
        self.permissions.remove(&tool.event_id);
        if tool.custom {
            return;
        }
        let content = content_blocks(block.content);
        let is_error = block.is_error.unwrap_or(false);
        out.push(if tool.mcp {
            events::mcp_tool_result(&tool.event_id, content, is_error)
        } else {
            events::tool_result_blocks(&tool.event_id, content, is_error)
        });
    }

    fn permission_reply(request_id: &str, allow: bool, input: &Value, message: &str) -> Action {
        let response = if allow {
            json!({"behavior": "allow", "updatedInput": input})
        } else {
            json!({"behavior": "deny", "message": message})
        };
        Action::write_line(&json!({
            "type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response},
        }))
    }

    fn on_control_request(&mut self, v: ControlRequest, out: &mut Vec<Action>) {
        let Some(request_id) = v.request_id else {
            log(LogLevel::Warn, "claude: control_request without request_id, skipped");
            return;
        };
        let subtype = v.request.subtype;
        let req = match v.request.kind {
            RequestKind::McpMessage(m) if m.server_name.as_deref() == Some(custom::SERVER) && self.custom.enabled() => {
                self.custom.on_mcp_message(&request_id, m.message.unwrap_or_default(), out);
                return;
            }
            RequestKind::McpMessage(m) if m.server_name.as_deref() == Some(remote::SERVER) && self.worker.enabled() => {
                self.on_worker_message(&request_id, m.message.unwrap_or_default(), out);
                return;
            }
            RequestKind::CanUseTool(req) => req,
            _ => {
                // Hooks, SDK MCP servers, ...: Bridle registers none; answer
                // so the CLI never waits on us.
                log(LogLevel::Debug, &format!("claude: unsupported control request `{subtype}`"));
                out.push(Action::write_line(&json!({
                    "type": "control_response",
                    "response": {"subtype": "error", "request_id": request_id,
                                 "error": format!("bridle does not handle `{subtype}`")},
                })));
                return;
            }
        };
        let name = req.tool_name.as_deref().unwrap_or("unknown");
        let input = req.input.unwrap_or_else(|| json!({}));
        if self.custom.custom_name(name).is_some() {
            // The client runs custom tools; they need no confirmation.
            out.push(Self::permission_reply(&request_id, true, &input, ""));
            return;
        }
        // The request names the tool use; older CLIs may not, then match the
        // oldest held use of the same tool.
        let tool_use_id = match req.tool_use_id {
            Some(id) => Some(id),
            None => {
                let tool = self.worker.toolset_name(name).or(toolset_name(name)).unwrap_or(name);
                self.held.find(|e| e["name"].as_str() == Some(tool)).map(str::to_string)
            }
        };
        let (perm, event) = match tool_use_id.as_deref().and_then(|id| self.held.take(id)) {
            Some(event) => (Perm::Ask, Some(event)),
            None => match tool_use_id.as_deref().and_then(|id| self.tools.get(id)) {
                // Already emitted as allowed: Claude Code asks on its own
                // (e.g. a path outside the workspace); the policy allows.
                Some(_) => (Perm::Allow, None),
                None => {
                    let event_id = new_event_id();
                    let (perm, mut event, mcp) = self.tool_event(name, &input, &event_id);
                    let perm = judged(perm, &mut event, mcp, &input);
                    if let Some(id) = &tool_use_id {
                        self.tools.insert(id.clone(), ToolRef { event_id, mcp, custom: false });
                    }
                    (perm, Some(event))
                }
            },
        };
        match (perm, event) {
            (Perm::Ask, Some(mut event)) if event["evaluated_permission"] == "deny" => {
                event["input"] = input.clone();
                out.push(Action::emit_json(&event));
                out.push(Self::permission_reply(&request_id, false, &input, policy::AUTO_DENIED));
            }
            (Perm::Ask, Some(mut event)) => {
                event["input"] = input.clone();
                event["evaluated_permission"] = json!("ask");
                let event_id = event["id"].as_str().unwrap_or_default().to_string();
                out.push(Action::emit_json(&event));
                self.permissions.insert(event_id, PendingPermission { request_id, input });
            }
            (_, event) => {
                if let Some(mut event) = event {
                    event["evaluated_permission"] = json!("allow");
                    out.push(Action::emit_json(&event));
                }
                out.push(Self::permission_reply(&request_id, true, &input, ""));
            }
        }
    }

    /// An MCP message for the workers' tools: a `tools/call` goes to the
    /// host as a `tool-call` for the tool use it was emitted as.
    fn on_worker_message(&mut self, request_id: &str, message: crate::protocol::McpMessage, out: &mut Vec<Action>) {
        let tools = &self.tools;
        let event_for = |tool_use_id: &str| tools.get(tool_use_id).map(|t| t.event_id.clone());
        let announce = |u: Unannounced<'_>, out: &mut Vec<Action>| {
            // No tool use seen for this call (an older CLI without the id in
            // `_meta`): Claude Code asked for and got permission, so it runs.
            let event_id = new_event_id();
            out.push(Action::emit_json(&json!({
                "type": "agent.tool_use", "id": event_id, "name": u.name, "input": u.input,
                "evaluated_permission": "allow",
            })));
            event_id
        };
        self.worker.on_mcp_message(request_id, message, event_for, announce, out);
    }

    fn on_assistant(&mut self, v: Assistant, out: &mut Vec<Action>) {
        let is_api_error = v.is_api_error();
        let Some((msg_id, usage, content)) = v.message.and_then(|m| Some((m.id, m.usage, m.content?))) else {
            log(LogLevel::Warn, "claude: assistant line without message content, skipped");
            return;
        };
        // A synthetic message carrying an API error: the failure reports it.
        if is_api_error {
            let text = content
                .iter()
                .filter_map(|b| match b {
                    AssistantBlock::Text { text } => text.as_deref(),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            self.api_error = Some(ApiError { status: v.api_error_status, kind: v.error.unwrap_or_default(), text });
            return;
        }
        if v.parent_tool_use_id.is_some() {
            // Sub-agent traffic (Task tool): not part of the session's thread.
            log(LogLevel::Debug, "claude: sub-agent message skipped");
            return;
        }
        self.progress(out);
        let message_id = msg_id;
        let same_span = self.span.as_ref().is_some_and(|s| s.message_id.is_some() && s.message_id == message_id);
        let closed = message_id.is_some() && message_id == self.closed_message;
        if !same_span && !closed {
            self.open_span(message_id, usage, false, out);
        }
        for block in content {
            match block {
                AssistantBlock::Text { text } => {
                    // The streamed block's preview id, in block order.
                    let id = self.previews.claim(PreviewedType::AgentMessage);
                    if let Some(text) = text.filter(|t| !t.is_empty()) {
                        out.push(Action::emit_json(
                            &json!({"type": "agent.message", "id": id, "content": text_content(&text)}),
                        ));
                    }
                }
                AssistantBlock::Thinking {} | AssistantBlock::RedactedThinking {} => {
                    let id = self.previews.claim(PreviewedType::AgentThinking);
                    out.push(Action::emit_json(&json!({"type": "agent.thinking", "id": id})));
                }
                AssistantBlock::ToolUse(tool_use) => self.on_tool_use(tool_use, out),
                AssistantBlock::Other => log(LogLevel::Debug, "claude: assistant block of another type skipped"),
            }
        }
    }

    /// Tool results of the session's own thread.
    fn on_user(&mut self, v: User, out: &mut Vec<Action>) {
        if v.parent_tool_use_id.is_some() || v.is_replay == Some(true) {
            return;
        }
        let results: Vec<ToolResultBlock> = v
            .message
            .and_then(|m| m.content)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| match b {
                UserBlock::ToolResult(r) => Some(r),
                UserBlock::Other => None,
            })
            .collect();
        if !results.is_empty() {
            self.progress(out);
        }
        for r in results {
            self.on_tool_result(r, out);
        }
    }

    fn on_stream_event(&mut self, v: StreamEvent, out: &mut Vec<Action>) {
        if v.parent_tool_use_id.is_some() {
            return;
        }
        match v.event {
            Some(StreamEventBody::MessageStart { message }) => {
                self.progress(out);
                self.previews.clear();
                let message = message.unwrap_or_default();
                self.open_span(message.id, message.usage, true, out);
            }
            Some(StreamEventBody::ContentBlockStart { index, content_block }) => {
                self.progress(out);
                let kind = match content_block {
                    Some(BlockStart::Text {}) => PreviewedType::AgentMessage,
                    Some(BlockStart::Thinking {} | BlockStart::RedactedThinking {}) => PreviewedType::AgentThinking,
                    Some(BlockStart::Other) | None => return,
                };
                if let Some(index) = index {
                    out.push(self.previews.start(index.to_string(), kind));
                }
            }
            Some(StreamEventBody::ContentBlockDelta { index, delta }) => {
                self.progress(out);
                if let (Some(index), Some(BlockDelta::TextDelta { text: Some(text) })) = (index, delta) {
                    out.extend(self.previews.text(&index.to_string(), &text));
                }
            }
            Some(StreamEventBody::MessageDelta { usage }) => {
                if let (Some(span), Some(usage)) = (self.span.as_mut(), usage) {
                    span.usage.merge(usage);
                }
            }
            Some(StreamEventBody::MessageStop {}) => self.close_span(false, out),
            Some(StreamEventBody::Other) | None => self.progress(out),
        }
    }

    fn on_result(&mut self, v: ResultMessage, out: &mut Vec<Action>) {
        let is_error = v.failed();
        // Without stream events an assistant line only carries the usage of
        // `message_start`; the result has the turn's totals, so the last
        // span gets what the earlier ones did not report.
        if let (Some(span), Some(total)) = (self.span.as_mut(), &v.usage)
            && !span.streamed
        {
            let own = span.usage.counters();
            for (i, t) in total.counters().into_iter().enumerate() {
                if let Some(t) = t {
                    let rest = t.saturating_sub(self.reported[i]);
                    span.usage.set_counter(i, rest.max(own[i].unwrap_or(0)));
                }
            }
        }
        self.close_span(is_error && !self.interrupting, out);
        self.held.release_all(out);
        self.retry.reset();
        let interrupted = std::mem::take(&mut self.interrupting);
        let api_error = self.api_error.take();
        self.turn_active = false;
        self.reported = [0; 4];
        self.previews.clear();
        self.permissions.clear();
        self.custom.forget_all();
        self.worker.forget_all();
        if !is_error || interrupted {
            out.push(Action::end_turn());
            return;
        }
        let result_text = v.result.as_deref().unwrap_or_default();
        let status = v.api_error_status.or(api_error.as_ref().and_then(|e| e.status));
        if v.terminal_reason.as_deref() == Some("api_error") || status.is_some() || api_error.is_some() {
            let kind = api_error
                .as_ref()
                .map(|e| e.kind.clone())
                .filter(|k| !k.is_empty())
                .or_else(|| v.api_error_type.clone())
                .unwrap_or_default();
            let error_type = model_error_type(status, &kind);
            let message = [result_text, api_error.as_ref().map(|e| e.text.as_str()).unwrap_or("")]
                .into_iter()
                .find(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("model API error {}", status.unwrap_or(0)));
            let terminal = error_type == "billing_error"
                || matches!(kind.as_str(), "authentication_failed" | "oauth_org_not_allowed" | "account_on_hold");
            // Exhausted (the turn is dead, the session lives) unless the
            // credentials themselves are refused.
            out.push(Action::failed(
                error_type,
                &message,
                if terminal { RetryStatus::Terminal } else { RetryStatus::Exhausted },
            ));
            return;
        }
        // Not an API error: max turns, budget, execution error.
        let errors = v.errors.unwrap_or_default().join("; ");
        let subtype = v.subtype.as_deref().unwrap_or("error");
        let message = if !errors.is_empty() {
            errors
        } else if !result_text.is_empty() {
            result_text.to_string()
        } else {
            format!("Claude Code ended the turn with `{subtype}`")
        };
        out.push(Action::failed("unknown_error", &message, RetryStatus::Exhausted));
    }

    fn on_system(&mut self, v: System, out: &mut Vec<Action>) {
        match v {
            System::Init { session_id } => {
                if let Some(id) = session_id.filter(|s| !s.is_empty())
                    && self.checkpointed.as_deref() != Some(id.as_str())
                {
                    self.checkpointed = Some(id.clone());
                    out.push(Action::Checkpoint(id));
                }
            }
            System::ApiRetry(retry) => self.on_api_retry(retry, out),
            System::CompactBoundary {} => {
                out.push(Action::emit_json(&json!({"type": "agent.thread_context_compacted"})));
            }
            System::Status {} | System::Other => {}
        }
    }

    fn on_api_retry(&mut self, v: ApiRetry, out: &mut Vec<Action>) {
        let status = v.error_status;
        let kind = v.error.as_ref().map(|e| e.name().to_string()).unwrap_or_default();
        let attempt = v.attempt.unwrap_or(1).max(1);
        let max = v.max_retries;
        let delay = v.retry_delay_ms;
        let mut message = match (status, kind.as_str()) {
            (Some(s), "") => format!("model API returned HTTP {s}"),
            (Some(s), k) => format!("model API returned HTTP {s} ({k})"),
            // No HTTP response: a connection error or time-out.
            (None, "" | "unknown") => "model API request failed without a response".into(),
            (None, k) => format!("model API request failed ({k})"),
        };
        message.push_str(&format!("; Claude Code retry {attempt}"));
        if let Some(m) = max {
            message.push_str(&format!(" of {m}"));
        }
        if let Some(d) = delay {
            message.push_str(&format!(" in {d} ms"));
        }
        out.push(self.retry.retrying(RetryReport {
            error_type: model_error_type(status, &kind).to_string(),
            message,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            max_attempts: max.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
            delay_ms: delay,
        }));
    }

    // ---- input ------------------------------------------------------------

    fn user_message(&mut self, event: &Value) -> Result<Vec<Action>, String> {
        let content: Vec<Value> = match &event["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| match b["type"].as_str() {
                    Some("text") => Some(json!({"type": "text", "text": b["text"].as_str()?})),
                    // Anthropic Messages shapes: pass the source through.
                    Some(kind @ ("image" | "document")) => {
                        let mut block = json!({"type": kind, "source": b.get("source")?});
                        for k in ["title", "context"] {
                            if let Some(s) = b[k].as_str() {
                                block[k] = json!(s);
                            }
                        }
                        Some(block)
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if content.is_empty() {
            return Err("user.message has no text, image or document content".into());
        }
        if !self.turn_active {
            self.reported = [0; 4];
        }
        self.turn_active = true;
        Ok(vec![Action::write_line(&json!({
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": null,
        }))])
    }

    fn interrupt(&mut self) -> Vec<Action> {
        if !self.turn_active {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Unanswered permission prompts would block the interrupt.
        let mut pending: Vec<_> = self.permissions.drain().collect();
        pending.sort_by(|a, b| a.1.request_id.cmp(&b.1.request_id));
        for (_, p) in pending {
            out.push(Self::permission_reply(&p.request_id, false, &p.input, "Interrupted by the user."));
        }
        self.custom.release_all("Interrupted by the user.", &mut out);
        let request_id = self.next_request_id();
        self.interrupting = true;
        out.push(Action::write_line(&json!({
            "type": "control_request",
            "request_id": request_id,
            "request": {"subtype": "interrupt"},
        })));
        out
    }

    /// Read whole (`UserEvent::read`) before the waiting permission is
    /// taken: a malformed answer leaves it answerable.
    fn confirmation(&mut self, c: Confirmation) -> Result<Vec<Action>, String> {
        let p = self.permissions.remove(&c.tool_use_id).ok_or_else(|| c.unexpected())?;
        Ok(vec![Self::permission_reply(&p.request_id, c.allow, &p.input, &c.deny_message)])
    }
}

/// Claude tool-result content (string or blocks) → Managed Agents blocks.
fn content_blocks(content: ToolResultContent) -> Vec<Value> {
    match content {
        ToolResultContent::Empty => Vec::new(),
        ToolResultContent::Text(s) | ToolResultContent::Other(s) => text_content(&s),
        ToolResultContent::Blocks(blocks) => blocks
            .into_iter()
            .filter_map(|b| match b {
                ResultBlock::Text { text } => Some(json!({"type": "text", "text": text?})),
                ResultBlock::Image { source } => Some(json!({"type": "image", "source": source?})),
                ResultBlock::Other => None,
            })
            .collect(),
    }
}

impl HarnessSession for ClaudeSession {
    fn new(spec: SessionSpec) -> Self {
        let policy = ToolPolicy::from_agent(&spec.agent);
        let custom = CustomServer::new(&spec.agent);
        let worker = WorkerTools::new(spec.remote_tools, &policy);
        let checkpointed = spec.resume.clone();
        ClaudeSession {
            spec,
            policy,
            custom,
            worker,
            checkpointed,
            tools: HashMap::new(),
            held: HeldUses::default(),
            permissions: HashMap::new(),
            span: None,
            retry: Progress::default(),
            closed_message: None,
            api_error: None,
            turn_active: false,
            interrupting: false,
            next_request: 0,
            reported: [0; 4],
            previews: Previews::default(),
        }
    }

    fn launch(&mut self) -> Result<LaunchPlan, String> {
        const SKILL_TOOL: &str = "Skill";
        let model = self.spec.model_id();
        if model.is_empty() {
            return Err("the agent has no model id".into());
        }
        let mut argv: Vec<String> = [
            "claude",
            "-p",
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
            // message_start/stop bound the model-request spans.
            "--include-partial-messages",
            "--permission-mode",
            "default",
            // always_ask tools come back as can_use_tool control requests.
            "--permission-prompt-tool",
            "stdio",
            "--model",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        argv.push(model);

        // A worker's tool replaces the built-in of the same name.
        let claude_name = |n: &str| match self.worker.toolset_name(&WorkerTools::claude_name(n)) {
            Some(_) => Some(WorkerTools::claude_name(n)),
            None => TOOLSET.iter().find(|(m, _)| *m == n).map(|(_, c)| (*c).to_string()),
        };
        let builtin = |n: &String| !n.starts_with("mcp__");
        let enabled: Vec<String> =
            self.policy.builtin.iter().filter_map(|(n, _)| claude_name(n)).filter(builtin).collect();
        let mut allowed: Vec<String> =
            self.policy.builtin.iter().filter(|(_, p)| *p == Perm::Allow).filter_map(|(n, _)| claude_name(n)).collect();
        let mut ask: Vec<String> =
            // Under `auto` Claude Code asks for every call, and the plugin judges it.
            self.policy
                .builtin
                .iter()
                .filter(|(_, p)| matches!(p, Perm::Ask | Perm::Auto))
                .filter_map(|(n, _)| claude_name(n))
                .collect();
        let mut disallowed = Vec::new();
        let mut enabled = enabled;
        if !self.spec.skills.is_empty() {
            // Claude Code offers skills through its `Skill` tool, which only
            // loads a skill's instructions (what the skill runs goes through
            // the tools above, under their own policy).
            enabled.push(SKILL_TOOL.into());
            allowed.push(SKILL_TOOL.into());
        }
        argv.push("--tools".into());
        argv.push(enabled.join(","));

        // MCP servers the agent declares and a toolset enables.
        let mut servers = Map::new();
        for server in self.spec.agent["mcp_servers"].as_array().into_iter().flatten() {
            let (Some(name), Some(url)) = (server["name"].as_str(), server["url"].as_str()) else {
                continue;
            };
            let Some(p) = self.policy.mcp.get(name) else {
                continue;
            };
            servers.insert(name.to_string(), json!({"type": "http", "url": url}));
            if name == custom::SERVER && self.custom.enabled() {
                log(LogLevel::Warn, "claude: MCP server `bridle` is shadowed by the agent's custom tools");
                continue;
            }
            if p.default == Some(Perm::Allow) {
                allowed.push(format!("mcp__{name}"));
            }
            for (tool, perm) in &p.tools {
                let full = format!("mcp__{name}__{tool}");
                match perm {
                    None => disallowed.push(full),
                    Some(Perm::Allow) => allowed.push(full),
                    Some(Perm::Ask | Perm::Auto) => ask.push(full),
                }
            }
        }
        if self.custom.enabled() {
            // The client runs custom tools: Claude Code must not ask first.
            servers.insert(custom::SERVER.to_string(), self.custom.mcp_config());
            allowed.push(format!("mcp__{}", custom::SERVER));
        }
        if self.worker.enabled() {
            // Allowed and asked per tool above, as the built-ins would be.
            servers.insert(remote::SERVER.to_string(), self.worker.mcp_config());
        }
        if !allowed.is_empty() {
            argv.push("--allowedTools".into());
            argv.push(allowed.join(","));
        }
        if !disallowed.is_empty() {
            argv.push("--disallowedTools".into());
            argv.push(disallowed.join(","));
        }
        if !ask.is_empty() {
            // Ask rules make Claude Code prompt even for tools it would
            // otherwise auto-approve (reads inside the workspace).
            argv.push("--settings".into());
            argv.push(json!({"permissions": {"ask": ask}}).to_string());
        }
        if !servers.is_empty() {
            argv.push("--mcp-config".into());
            argv.push(json!({"mcpServers": servers}).to_string());
            argv.push("--strict-mcp-config".into());
        }
        if let Some(system) = self.spec.agent["system"].as_str().filter(|s| !s.is_empty()) {
            // Appended, so Claude Code keeps its own tool instructions.
            argv.push("--append-system-prompt".into());
            argv.push(system.to_string());
        }
        if let Some(resume) = self.spec.resume.as_deref().filter(|s| !s.is_empty()) {
            argv.push("--resume".into());
            argv.push(resume.to_string());
        }

        let dir = self.state_dir();
        let env: Vec<(String, String)> = [
            // State (sessions for --resume) lives in the workspace, so it
            // survives stop/resume of the sandbox.
            ("HOME", dir.clone()),
            ("CLAUDE_CONFIG_DIR", format!("{dir}/.claude")),
            ("ANTHROPIC_BASE_URL", self.spec.llm.base_url.clone()),
            ("CLAUDE_CODE_MAX_RETRIES", MAX_RETRIES.to_string()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ("DISABLE_AUTOUPDATER", "1".into()),
            ("DISABLE_TELEMETRY", "1".into()),
            ("DISABLE_ERROR_REPORTING", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(LaunchPlan {
            argv,
            env,
            files: Vec::new(),
            cwd: Some(self.spec.workspace.clone()),
            // `$CLAUDE_CONFIG_DIR/skills` (= `~/.claude/skills`): Claude Code
            // loads the skills there at start.
            skills_dir: Some(format!("{dir}/.claude/skills")),
        })
    }

    fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String> {
        match UserEvent::read("claude", &event)? {
            UserEvent::Message => self.user_message(&event),
            UserEvent::Interrupt => Ok(self.interrupt()),
            UserEvent::ToolConfirmation(c) => self.confirmation(c),
            UserEvent::CustomToolResult(r) => self.custom.on_result(r),
        }
    }

    /// A worker's result for a call of the workers' tools.
    fn on_tool_result(&mut self, result: ToolResult) -> Result<Vec<Action>, String> {
        self.worker.on_result(result)
    }

    fn on_output(&mut self, line: &str) -> Result<Vec<Action>, String> {
        // Stray non-protocol output must not kill the session: `read_line`
        // logs and skips it. A JSON object that is no message (`Unreadable`)
        // still ends an assistant-opened span, as any other line does.
        let message = match read_line::<Message>("claude", line) {
            Line::Blank | Line::NotJson => return Ok(Vec::new()),
            Line::Unreadable => None,
            Line::Message(m) => Some(m),
        };
        let mut out = Vec::new();
        // An assistant-opened span ends at the first line that is not part
        // of the same message.
        if let Some(span) = &self.span
            && !span.streamed
        {
            let keeps_span = match &message {
                Some(Message::Assistant(a)) => {
                    let id = a.message.as_ref().and_then(|m| m.id.as_deref());
                    id.is_some() && id == span.message_id.as_deref()
                }
                Some(
                    Message::ControlRequest(_)
                    | Message::ControlResponse {}
                    | Message::RateLimitEvent {}
                    | Message::System(System::Status {})
                    | Message::Result(_),
                ) => true,
                _ => false,
            };
            if !keeps_span {
                self.close_span(false, &mut out);
            }
        }
        let Some(message) = message else {
            return Ok(out);
        };
        match message {
            Message::System(v) => self.on_system(v, &mut out),
            Message::Assistant(v) => self.on_assistant(v, &mut out),
            Message::User(v) => self.on_user(v, &mut out),
            Message::StreamEvent(v) => self.on_stream_event(v, &mut out),
            Message::Result(v) => self.on_result(v, &mut out),
            Message::ControlRequest(v) => self.on_control_request(v, &mut out),
            Message::ControlCancelRequest { request_id } => {
                if let Some(rid) = request_id {
                    self.permissions.retain(|_, p| p.request_id != rid);
                    self.custom.cancel(&rid);
                    self.worker.cancel(&rid);
                }
            }
            Message::ControlResponse {} | Message::RateLimitEvent {} => {}
            Message::Unknown => {
                log(LogLevel::Debug, &format!("claude: output of unknown type skipped: {}", head(line)))
            }
        }
        Ok(out)
    }

    fn on_exit(&mut self, code: Option<i32>) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.turn_active {
            return out;
        }
        self.turn_active = false;
        self.close_span(true, &mut out);
        self.held.release_all(&mut out);
        self.permissions.clear();
        self.custom.forget_all();
        self.worker.forget_all();
        self.retry.reset();
        if std::mem::take(&mut self.interrupting) {
            out.push(Action::end_turn());
            return out;
        }
        out.push(exit_failure("Claude Code", code, "before the turn finished"));
        out
    }
}

/// Under `auto`, judge one call: its event gets the `evaluation`, and the
/// policy it then follows is returned. A denied call is marked
/// (`evaluated_permission: "deny"`) and held like an asked one; when Claude
/// Code asks for it, it is refused.
fn judged(perm: Perm, event: &mut Value, mcp: bool, input: &Value) -> Perm {
    if perm != Perm::Auto {
        return perm;
    }
    // MCP tools are judged as what they are, whatever their names.
    let tool = if mcp { String::new() } else { event["name"].as_str().unwrap_or_default().to_string() };
    let (decision, evaluation) = policy::decide(perm, &tool, input);
    event["evaluation"] = evaluation;
    match decision {
        Decision::Allow => Perm::Allow,
        Decision::Ask => Perm::Ask,
        Decision::Deny => {
            event["evaluated_permission"] = json!("deny");
            Perm::Ask
        }
    }
}
