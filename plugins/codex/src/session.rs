//! One codex app-server session: the launch plan, the JSON-RPC handshake and
//! the mapping between app-server messages and Managed Agents events.

use crate::custom::DynamicTools;
use crate::endpoint::{ConfigToml, McpServerToml, Provider, provider_for};
use crate::protocol::{
    ApprovalParams, Command, ElicitationParams, ErrorInfo, ErrorNotification, FileChange, Incoming, Item, ItemKind,
    McpBlock, Notification, RequestId, ResponseResult, RpcError, ServerRequest, TokenCounts, Turn, TurnError,
};
use crate::remote::WorkerTools;
use bridle_harness_sdk::confirmation::Confirmation;
use bridle_harness_sdk::content::{self, Block, Source};
use bridle_harness_sdk::errors::model_error_type;
use bridle_harness_sdk::events::{self, ModelUsage, text_content};
use bridle_harness_sdk::held::HeldUses;
use bridle_harness_sdk::input::UserEvent;
use bridle_harness_sdk::policy::{self, Decision, Perm, ToolPolicy};
use bridle_harness_sdk::previews::Previews;
use bridle_harness_sdk::progress::{Progress, exit_failure};
use bridle_harness_sdk::wire::{Line, read_line};
use bridle_harness_sdk::{
    Action, File, HarnessSession, LaunchPlan, LogLevel, PreviewedType, RetryReport, RetryStatus, SessionSpec,
    ToolResult, log, new_event_id,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// What one of our JSON-RPC requests was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Initialize,
    ThreadStart,
    ThreadResume,
    TurnStart,
    TurnInterrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet (the process starts with the first user message).
    Fresh,
    /// `initialize` / `thread/*` in flight.
    Starting,
    /// A thread is open.
    Ready,
}

/// What kind of tool an item is, for its result event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolKind {
    Builtin,
    Mcp,
}

#[derive(Debug, Clone)]
struct ItemRef {
    event_id: String,
    kind: ToolKind,
}

/// A server approval request waiting for `user.tool_confirmation`.
#[derive(Debug, Clone)]
struct Approval {
    rpc_id: RequestId,
    form: ReplyForm,
}

/// How an approval request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyForm {
    /// `{"decision": "accept" | "decline"}` (v2 command and patch approvals).
    Decision,
    /// `{"decision": "approved" | "denied"}` (pre-v2 `execCommandApproval`,
    /// `applyPatchApproval`).
    LegacyDecision,
    /// An MCP elicitation: `{"action": "accept" | "decline"}` (MCP tool calls).
    Elicitation,
}

pub struct CodexSession {
    spec: SessionSpec,
    policy: ToolPolicy,
    custom: DynamicTools,
    /// A self-hosted environment's session: the workers' tools.
    worker: WorkerTools,
    provider: &'static Provider,
    next_id: u64,
    pending: HashMap<u64, Req>,
    phase: Phase,
    thread_id: Option<String>,
    checkpointed: Option<String>,
    /// `turn/start` inputs waiting for the thread or for the current turn.
    queue: Vec<Vec<Value>>,
    turn_active: bool,
    turn_id: Option<String>,
    interrupting: bool,
    /// An interrupt asked for before the turn id was known.
    interrupt_deferred: bool,
    items: HashMap<String, ItemRef>,
    /// `always_ask` tool uses held until an approval request (→ "ask") or
    /// their completion (→ "allow"), by item id, in arrival order.
    held: HeldUses,
    approvals: HashMap<String, Approval>,
    thinking_items: Vec<String>,
    span: Option<String>,
    retry: Progress,
    last_error: Option<TurnError>,
    /// Previews of agent messages being streamed, by item id.
    previews: Previews,
}

impl CodexSession {
    fn codex_home(&self) -> String {
        format!("{}/.bridle/codex", self.spec.workspace.trim_end_matches('/'))
    }

    /// `untrusted` makes codex ask before commands and patches; Bridle then
    /// answers the ones whose tool is `always_allow` itself. Under `never`
    /// codex asks for nothing, MCP tools included, so an MCP tool that asks
    /// needs at least `on-request` (which, in Bridle's full-access sandbox
    /// mode, asks before MCP tools with `approval_mode = "prompt"` only).
    fn approval_policy(&self) -> &'static str {
        // Under `auto` codex asks too, and the plugin judges each call.
        let asks = ["bash", "edit", "write"]
            .iter()
            .any(|t| matches!(self.policy.builtin_perm(t), Some(Perm::Ask | Perm::Auto)));
        let mcp_asks =
            self.policy.mcp.values().any(|p| mcp_prompts(p.default) || p.tools.values().any(|t| mcp_prompts(*t)));
        if asks {
            "untrusted"
        } else if mcp_asks {
            "on-request"
        } else {
            "never"
        }
    }

    fn request(&mut self, kind: Req, method: &str, params: Value) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, kind);
        Action::write_line(&json!({"method": method, "id": id, "params": params}))
    }

    fn thread_params(&self) -> Value {
        let mut p = json!({
            "cwd": self.spec.workspace,
            "model": self.spec.model_id(),
            "modelProvider": self.provider.id,
            "approvalPolicy": self.approval_policy(),
            "sandbox": "danger-full-access",
        });
        if let Some(system) = self.spec.agent["system"].as_str().filter(|s| !s.is_empty()) {
            p["developerInstructions"] = json!(system);
        }
        p
    }

    /// `thread/start` params: the thread params plus the custom tools (a
    /// resumed thread keeps the tools it was started with).
    fn thread_start_params(&self) -> Value {
        let mut p = self.thread_params();
        let tools: Vec<Value> = self.custom.specs().into_iter().chain(self.worker.specs()).collect();
        if !tools.is_empty() {
            p["dynamicTools"] = json!(tools);
        }
        p
    }

    fn start_thread(&mut self, out: &mut Vec<Action>) {
        match self.spec.resume.clone().filter(|s| !s.is_empty()) {
            Some(thread_id) if self.thread_id.is_none() => {
                let mut params = self.thread_params();
                params["threadId"] = json!(thread_id);
                out.push(self.request(Req::ThreadResume, "thread/resume", params));
            }
            _ => {
                let params = self.thread_start_params();
                out.push(self.request(Req::ThreadStart, "thread/start", params));
            }
        }
    }

    /// Send the next queued turn if the thread is ready and idle.
    fn pump(&mut self, out: &mut Vec<Action>) {
        if self.phase != Phase::Ready || self.turn_id.is_some() || self.queue.is_empty() {
            return;
        }
        if self.pending.values().any(|r| *r == Req::TurnStart) {
            return;
        }
        let input = self.queue.remove(0);
        let Some(thread_id) = self.thread_id.clone() else {
            return;
        };
        self.turn_active = true;
        out.push(self.request(Req::TurnStart, "turn/start", json!({"threadId": thread_id, "input": input})));
    }

    fn progress(&mut self, out: &mut Vec<Action>) {
        self.retry.progress(out);
    }

    fn open_span(&mut self, out: &mut Vec<Action>) {
        if self.span.is_none() {
            let (id, start) = events::span_start();
            out.push(start);
            self.span = Some(id);
        }
    }

    fn close_span(&mut self, is_error: bool, usage: Option<TokenCounts>, out: &mut Vec<Action>) {
        let Some(start_id) = self.span.take() else {
            return;
        };
        // OpenAI counts cached tokens inside input tokens.
        let u = usage.unwrap_or_default();
        let usage = ModelUsage::cached_in_input(
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_input_tokens,
        );
        out.push(events::span_end(&start_id, is_error, &usage));
    }

    /// Emit (or hold) the tool use for a started command / patch item.
    fn tool_use(&mut self, item_id: &str, name: &str, input: Value, out: &mut Vec<Action>) {
        if self.items.contains_key(item_id) {
            return;
        }
        let event_id = new_event_id();
        self.items.insert(item_id.to_string(), ItemRef { event_id: event_id.clone(), kind: ToolKind::Builtin });
        let mut event = json!({"type": "agent.tool_use", "id": event_id, "name": name, "input": input});
        let decision = match self.policy.builtin_perm(name) {
            Some(Perm::Ask) => Decision::Ask,
            Some(Perm::Auto) => {
                // Judged now; a denied call is marked and held until codex
                // asks for it, then declined.
                let (decision, evaluation) = policy::decide(Perm::Auto, name, &event["input"]);
                event["evaluation"] = evaluation;
                if decision == Decision::Deny {
                    event["evaluated_permission"] = json!("deny");
                }
                decision
            }
            _ => Decision::Allow,
        };
        if decision == Decision::Allow {
            event["evaluated_permission"] = json!("allow");
            out.push(Action::emit_json(&event));
        } else {
            self.held.hold(item_id, event);
        }
    }

    fn tool_result(&mut self, item_id: &str, content: Vec<Value>, is_error: bool, out: &mut Vec<Action>) {
        self.held.release(item_id, out);
        let Some(item) = self.items.get(item_id).cloned() else {
            log(LogLevel::Warn, &format!("codex: result for unknown item {item_id}, skipped"));
            return;
        };
        self.approvals.retain(|id, _| *id != item.event_id);
        out.push(match item.kind {
            ToolKind::Builtin => events::tool_result_blocks(&item.event_id, content, is_error),
            ToolKind::Mcp => events::mcp_tool_result(&item.event_id, content, is_error),
        });
    }

    fn on_item_started(&mut self, item: Option<Item>, out: &mut Vec<Action>) {
        // An item without a `type` reads as `None`: nothing to map.
        let Some(Item { id, kind, .. }) = item else {
            return;
        };
        let Some(id) = id else {
            log(LogLevel::Warn, "codex: item/started without an item id, skipped");
            return;
        };
        if matches!(kind, ItemKind::UserMessage {}) {
            return;
        }
        self.progress(out);
        if self.turn_active {
            self.open_span(out);
        }
        match kind {
            ItemKind::CommandExecution { command, .. } => {
                let input = json!({"command": unwrap_shell(command.as_deref().unwrap_or_default())});
                self.tool_use(&id, "bash", input, out);
            }
            ItemKind::FileChange { changes } => {
                let (name, input) = file_change_input(changes.as_deref().unwrap_or_default());
                self.tool_use(&id, name, input, out);
            }
            ItemKind::McpToolCall { server, tool, arguments, .. } => {
                if self.items.contains_key(&id) {
                    return;
                }
                let (server, tool) = (server.unwrap_or_default(), tool.unwrap_or_default());
                let event_id = new_event_id();
                self.items.insert(id.clone(), ItemRef { event_id: event_id.clone(), kind: ToolKind::Mcp });
                let mut event = json!({
                    "type": "agent.mcp_tool_use",
                    "id": event_id,
                    "mcp_server_name": server,
                    "name": tool,
                    "input": object_or_empty(&arguments),
                });
                if mcp_prompts(self.mcp_perm(&server, &tool)) {
                    // Held until codex asks to approve it (its config says
                    // `prompt` for this tool): then it is `ask`.
                    self.held.hold(&id, event);
                } else {
                    event["evaluated_permission"] = json!("allow");
                    out.push(Action::emit_json(&event));
                }
            }
            ItemKind::Reasoning {} if !self.thinking_items.contains(&id) => {
                self.thinking_items.push(id);
                out.push(Action::emit_json(&json!({"type": "agent.thinking"})));
            }
            ItemKind::DynamicToolCall { tool, namespace: None, arguments } => {
                self.custom.announce(&id, tool.as_deref().unwrap_or_default(), object_or_empty(&arguments), out);
            }
            _ => {}
        }
    }

    fn on_item_completed(&mut self, item: Option<Item>, out: &mut Vec<Action>) {
        let Some(Item { id, status, kind }) = item else {
            return;
        };
        let Some(id) = id else {
            log(LogLevel::Warn, "codex: item/completed without an item id, skipped");
            return;
        };
        let status = status.as_deref().unwrap_or("completed");
        match kind {
            ItemKind::AgentMessage { text } => {
                self.progress(out);
                let event_id = self.previews.claim_key(&id).unwrap_or_else(new_event_id);
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    out.push(Action::emit_json(
                        &json!({"type": "agent.message", "id": event_id, "content": text_content(&text)}),
                    ));
                }
            }
            ItemKind::Reasoning {} if !self.thinking_items.contains(&id) => {
                self.thinking_items.push(id);
                out.push(Action::emit_json(&json!({"type": "agent.thinking"})));
            }
            ItemKind::CommandExecution { command, aggregated_output, exit_code } => {
                // An item that never started (e.g. declined before it ran).
                if !self.items.contains_key(&id) {
                    let input = json!({"command": unwrap_shell(command.as_deref().unwrap_or_default())});
                    self.tool_use(&id, "bash", input, out);
                }
                let output = aggregated_output.unwrap_or_default();
                let is_error = status != "completed" || exit_code.is_some_and(|c| c != 0);
                let text = if !output.is_empty() {
                    output
                } else if status == "declined" {
                    "The command was declined.".to_string()
                } else {
                    String::new()
                };
                self.tool_result(&id, text_content(&text), is_error, out);
            }
            ItemKind::FileChange { changes } => {
                let changes = changes.unwrap_or_default();
                if !self.items.contains_key(&id) {
                    let (name, input) = file_change_input(&changes);
                    self.tool_use(&id, name, input, out);
                }
                let summary = changes
                    .iter()
                    .map(|c| format!("{}: {}", change_kind(c), c.path.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = match status {
                    "completed" => summary,
                    "declined" => "The change was declined.".to_string(),
                    other => format!("The change {other}.\n{summary}"),
                };
                self.tool_result(&id, text_content(&text), status != "completed", out);
            }
            ItemKind::McpToolCall { result, error, .. } => {
                let error = error.and_then(|e| e.message);
                let mut content: Vec<Value> =
                    result.and_then(|r| r.content).unwrap_or_default().iter().filter_map(mcp_block).collect();
                if let Some(e) = &error {
                    content.push(json!({"type": "text", "text": e}));
                }
                let is_error = error.is_some() || status == "failed";
                self.tool_result(&id, content, is_error, out);
            }
            ItemKind::WebSearch { query } => {
                self.progress(out);
                let event_id = new_event_id();
                out.push(Action::emit_json(&json!({
                    "type": "agent.tool_use", "id": event_id, "name": "web_search",
                    "input": {"query": query.unwrap_or_default()}, "evaluated_permission": "allow",
                })));
                out.push(events::tool_result(&event_id, "", false));
            }
            ItemKind::ContextCompaction {} => {
                out.push(Action::emit_json(&json!({"type": "agent.thread_context_compacted"})));
            }
            _ => {}
        }
    }

    fn on_error_notification(&mut self, p: ErrorNotification, out: &mut Vec<Action>) {
        if p.will_retry == Some(true) {
            let error = p.error.unwrap_or_default();
            let message = error.message.as_deref().unwrap_or("model request failed");
            let (attempt, max) = parse_reconnecting(message);
            let detail = error.additional_details.as_deref().unwrap_or_default();
            let text = if detail.is_empty() {
                format!("codex is retrying: {message}")
            } else {
                format!("codex is retrying: {message} ({detail})")
            };
            // The failed attempt was a model request of its own.
            self.close_span(true, None, out);
            out.push(self.retry.retrying(RetryReport {
                error_type: classify(&error).to_string(),
                message: text,
                attempt: attempt.unwrap_or(1),
                max_attempts: max,
                delay_ms: None,
            }));
        } else {
            self.last_error = p.error;
        }
    }

    fn end_turn(&mut self, turn: Turn, out: &mut Vec<Action>) {
        let status = turn.status.as_deref().unwrap_or("completed");
        self.close_span(status == "failed", None, out);
        self.held.release_all(out);
        self.retry.reset();
        self.turn_active = false;
        self.turn_id = None;
        self.approvals.clear();
        self.custom.forget_all();
        self.worker.forget_all();
        self.previews.clear();
        let interrupted = std::mem::take(&mut self.interrupting);
        self.interrupt_deferred = false;
        let last_error = self.last_error.take();
        match status {
            "failed" if !interrupted => out.push(failure(turn.error.or(last_error).as_ref())),
            _ => out.push(Action::end_turn()),
        }
        self.pump(out);
    }

    fn on_notification(&mut self, n: Notification, out: &mut Vec<Action>) {
        match n {
            Notification::ThreadStarted(p) => {
                if let Some(id) = p.thread.and_then(|t| t.id) {
                    self.set_thread(&id, out);
                }
            }
            Notification::TurnStarted(p) => {
                if let Some(id) = p.turn.and_then(|t| t.id) {
                    self.turn_id = Some(id);
                }
                if self.turn_active {
                    self.open_span(out);
                }
                if std::mem::take(&mut self.interrupt_deferred) {
                    self.send_interrupt(out);
                }
            }
            Notification::ItemStarted(p) => self.on_item_started(p.item, out),
            Notification::ItemCompleted(p) => self.on_item_completed(p.item, out),
            Notification::AgentMessageDelta(d) => {
                self.progress(out);
                if let (Some(item), Some(text)) = (d.item_id, d.delta.filter(|t| !t.is_empty())) {
                    // The first delta of an item opens its preview.
                    if self.previews.text(&item, &text).is_none() {
                        out.push(self.previews.start(item.as_str(), PreviewedType::AgentMessage));
                    }
                    out.extend(self.previews.text(&item, &text));
                }
            }
            Notification::Delta => self.progress(out),
            Notification::TokenUsageUpdated(p) => {
                if let Some(last) = p.token_usage.and_then(|u| u.last) {
                    self.progress(out);
                    // One model response finished: close its span (open one
                    // first if codex gave no earlier sign of the request).
                    self.open_span(out);
                    self.close_span(false, Some(last), out);
                }
            }
            Notification::Error(p) => self.on_error_notification(p, out),
            Notification::TurnCompleted(p) => {
                if self.turn_active {
                    self.end_turn(p.turn.unwrap_or_default(), out);
                }
            }
            Notification::ServerRequestResolved(p) => {
                if let Some(rid) = p.request_id {
                    self.approvals.retain(|_, a| a.rpc_id != rid);
                    self.custom.resolved(&rid);
                    self.worker.resolved(&rid);
                }
            }
            Notification::Other(method) => log(LogLevel::Trace, &format!("codex: notification `{method}` skipped")),
        }
    }

    fn set_thread(&mut self, id: &str, out: &mut Vec<Action>) {
        self.thread_id = Some(id.to_string());
        if self.checkpointed.as_deref() != Some(id) {
            self.checkpointed = Some(id.to_string());
            out.push(Action::Checkpoint(id.to_string()));
        }
    }

    fn on_response(&mut self, id: u64, result: ResponseResult, error: Option<RpcError>, out: &mut Vec<Action>) {
        let Some(kind) = self.pending.remove(&id) else {
            log(LogLevel::Debug, &format!("codex: response to unknown request {id}"));
            return;
        };
        let message = error.as_ref().and_then(|e| e.message.clone()).unwrap_or_else(|| "unknown error".to_string());
        match (kind, error) {
            (Req::Initialize, Some(_)) if !message.contains("Already initialized") => {
                self.fail_start(&format!("codex app-server refused initialize: {message}"), out);
            }
            (Req::Initialize, _) => {
                out.push(Action::write_line(&json!({"method": "initialized"})));
                self.start_thread(out);
            }
            (Req::ThreadResume, Some(_)) => {
                // The saved thread is gone (e.g. a fresh workspace): go on
                // with a new one rather than failing the session.
                log(LogLevel::Warn, &format!("codex: thread/resume failed ({message}); starting a new thread"));
                let params = self.thread_start_params();
                out.push(self.request(Req::ThreadStart, "thread/start", params));
            }
            (Req::ThreadStart, Some(_)) => {
                self.fail_start(&format!("codex could not start a thread: {message}"), out);
            }
            (Req::ThreadStart | Req::ThreadResume, None) => match result.thread.and_then(|t| t.id) {
                Some(tid) => {
                    self.set_thread(&tid, out);
                    self.phase = Phase::Ready;
                    self.pump(out);
                }
                None => self.fail_start("codex answered thread/start without a thread id", out),
            },
            (Req::TurnStart, Some(_)) => {
                self.turn_active = false;
                self.interrupting = false;
                out.push(Action::failed(
                    "unknown_error",
                    &format!("codex refused the turn: {message}"),
                    RetryStatus::Exhausted,
                ));
                self.pump(out);
            }
            (Req::TurnStart, None) => {
                if let Some(tid) = result.turn.and_then(|t| t.id) {
                    self.turn_id = Some(tid);
                    if std::mem::take(&mut self.interrupt_deferred) {
                        self.send_interrupt(out);
                    }
                }
            }
            (Req::TurnInterrupt, Some(_)) => {
                log(LogLevel::Warn, &format!("codex: turn/interrupt failed: {message}"));
            }
            (Req::TurnInterrupt, None) => {}
        }
    }

    /// The handshake failed: the queued turn cannot run.
    fn fail_start(&mut self, message: &str, out: &mut Vec<Action>) {
        self.phase = Phase::Fresh;
        self.queue.clear();
        if std::mem::take(&mut self.turn_active) {
            out.push(Action::failed("unknown_error", message, RetryStatus::Exhausted));
        } else {
            log(LogLevel::Error, message);
        }
    }

    fn on_server_request(&mut self, rpc_id: RequestId, request: ServerRequest, out: &mut Vec<Action>) {
        let (legacy, tool, p) = match request {
            ServerRequest::ToolCall(p) if self.worker.serves(&p) => {
                self.progress(out);
                self.worker.on_call(rpc_id, p, &self.policy, out);
                return;
            }
            ServerRequest::ToolCall(p) if self.custom.enabled() => {
                self.progress(out);
                self.custom.on_call(rpc_id, p, out);
                return;
            }
            ServerRequest::CommandApproval { legacy, params } => (legacy, "bash", params),
            ServerRequest::FileChangeApproval { legacy, params } => (legacy, "edit", params),
            ServerRequest::McpElicitation(p) => {
                self.on_elicitation(rpc_id, &p, out);
                return;
            }
            other => {
                // User-input prompts, dynamic tools: Bridle offers none of
                // them; answer so codex never waits.
                let method = other.method();
                log(LogLevel::Debug, &format!("codex: server request `{method}` refused"));
                out.push(Action::write_line(&json!({
                    "id": rpc_id,
                    "error": {"code": -32601, "message": format!("`{method}` is not supported by Bridle")},
                })));
                return;
            }
        };
        let ApprovalParams { item_id, call_id, command, reason, file_changes } = p;
        let item_id = item_id.or(call_id).unwrap_or_default();
        // Unknown item (legacy flow, or no item/started yet): make its event.
        if !self.items.contains_key(&item_id) {
            let input = if tool == "bash" {
                let command = match command {
                    Some(Command::Line(s)) => unwrap_shell(&s),
                    Some(Command::Argv(parts)) => parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
                    None => String::new(),
                };
                json!({"command": command})
            } else {
                json!({"reason": reason, "changes": file_changes})
            };
            self.tool_use(&item_id, tool, input, out);
        }
        let form = if legacy { ReplyForm::LegacyDecision } else { ReplyForm::Decision };
        match self.held.take(&item_id) {
            Some(event) if event["evaluated_permission"] == "deny" => {
                out.push(Action::emit_json(&event));
                out.push(approval_reply(&rpc_id, form, false));
            }
            Some(event) => self.ask(event, rpc_id, form, out),
            // The agent's policy allows this tool: answer for the user.
            None => out.push(approval_reply(&rpc_id, form, true)),
        }
    }

    /// Emit a held tool use as `ask`; its approval request waits for
    /// `user.tool_confirmation`.
    fn ask(&mut self, mut event: Value, rpc_id: RequestId, form: ReplyForm, out: &mut Vec<Action>) {
        event["evaluated_permission"] = json!("ask");
        let event_id = event["id"].as_str().unwrap_or_default().to_string();
        out.push(Action::emit_json(&event));
        self.approvals.insert(event_id, Approval { rpc_id, form });
    }

    /// The agent's policy for one MCP tool (`None`: disabled or unknown).
    fn mcp_perm(&self, server: &str, tool: &str) -> Option<Perm> {
        self.policy.mcp.get(server).and_then(|p| p.perm(tool))
    }

    /// codex asks to approve an MCP tool call (the elicitation names the
    /// server and tool, not the item): the held tool use of that server and
    /// tool becomes `ask`. Any other elicitation is declined: Bridle has no
    /// way to put an MCP server's questions to the user.
    fn on_elicitation(&mut self, rpc_id: RequestId, p: &ElicitationParams, out: &mut Vec<Action>) {
        let Some((server, tool)) = p.tool_approval() else {
            log(LogLevel::Debug, "codex: MCP elicitation declined (Bridle offers no elicitation to the user)");
            out.push(approval_reply(&rpc_id, ReplyForm::Elicitation, false));
            return;
        };
        let held = self
            .held
            .find(|e| e["type"] == "agent.mcp_tool_use" && e["mcp_server_name"] == server && e["name"] == tool)
            .map(str::to_string);
        match held.and_then(|key| self.held.take(&key)) {
            Some(event) => self.ask(event, rpc_id, ReplyForm::Elicitation, out),
            None if mcp_prompts(self.mcp_perm(server, tool)) => {
                // Nothing to show the user: refuse rather than run unasked.
                log(
                    LogLevel::Warn,
                    &format!("codex: approval for MCP tool `{server}/{tool}` before its call; declined"),
                );
                out.push(approval_reply(&rpc_id, ReplyForm::Elicitation, false));
            }
            None => out.push(approval_reply(&rpc_id, ReplyForm::Elicitation, true)),
        }
    }

    fn send_interrupt(&mut self, out: &mut Vec<Action>) {
        if let (Some(thread_id), Some(turn_id)) = (self.thread_id.clone(), self.turn_id.clone()) {
            out.push(self.request(
                Req::TurnInterrupt,
                "turn/interrupt",
                json!({"threadId": thread_id, "turnId": turn_id}),
            ));
        }
    }

    fn user_message(&mut self, event: &Value) -> Result<Vec<Action>, String> {
        let input = turn_input(&event["content"]);
        if input.is_empty() {
            return Err("user.message has no text or image content".into());
        }
        let mut out = Vec::new();
        self.queue.push(input);
        self.turn_active = true;
        match self.phase {
            Phase::Fresh => {
                self.phase = Phase::Starting;
                let mut params =
                    json!({"clientInfo": {"name": "bridle", "title": "Bridle", "version": env!("CARGO_PKG_VERSION")}});
                if self.custom.enabled() || self.worker.enabled() {
                    // `dynamicTools` is an experimental field.
                    params["capabilities"] = json!({"experimentalApi": true});
                }
                out.push(self.request(Req::Initialize, "initialize", params));
            }
            Phase::Starting => {}
            Phase::Ready => self.pump(&mut out),
        }
        Ok(out)
    }

    fn interrupt(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.turn_active {
            return out;
        }
        self.queue.clear();
        if self.phase != Phase::Ready {
            // Nothing reached the model yet: the turn just ends.
            self.turn_active = false;
            out.push(Action::end_turn());
            return out;
        }
        self.interrupting = true;
        self.custom.release_all("Interrupted by the user.", &mut out);
        self.worker.release_asking("Interrupted by the user.", &mut out);
        if self.turn_id.is_some() {
            self.send_interrupt(&mut out);
        } else {
            self.interrupt_deferred = true;
        }
        out
    }

    fn confirmation(&mut self, c: Confirmation) -> Result<Vec<Action>, String> {
        if let Some(actions) = self.worker.on_confirmation(&c) {
            return Ok(actions);
        }
        let approval = self.approvals.remove(&c.tool_use_id).ok_or_else(|| c.unexpected())?;
        Ok(vec![approval_reply(&approval.rpc_id, approval.form, c.allow)])
    }
}

fn approval_reply(rpc_id: &RequestId, form: ReplyForm, allow: bool) -> Action {
    // `decline` lets the turn go on (the model hears "declined");
    // `cancel` would abort the turn.
    let result = match (form, allow) {
        (ReplyForm::Decision, true) => json!({"decision": "accept"}),
        (ReplyForm::Decision, false) => json!({"decision": "decline"}),
        (ReplyForm::LegacyDecision, true) => json!({"decision": "approved"}),
        (ReplyForm::LegacyDecision, false) => json!({"decision": "denied"}),
        (ReplyForm::Elicitation, true) => json!({"action": "accept", "content": {}}),
        (ReplyForm::Elicitation, false) => json!({"action": "decline"}),
    };
    Action::write_line(&json!({"id": rpc_id, "result": result}))
}

/// Whether codex must ask before an MCP tool with this policy runs
/// (`approval_mode = "prompt"`). Bridle's `auto` judge knows only the
/// built-in tools, so an MCP tool under `auto` asks too.
fn mcp_prompts(perm: Option<Perm>) -> bool {
    matches!(perm, Some(Perm::Ask | Perm::Auto))
}

/// codex's `approval_mode` for an MCP tool's policy.
fn mcp_approval_mode(perm: Option<Perm>) -> &'static str {
    if mcp_prompts(perm) { "prompt" } else { "approve" }
}

/// Managed Agents error type of a codex `TurnError`.
pub fn classify(error: &TurnError) -> &'static str {
    let info = error.codex_error_info.as_ref();
    let status = info.and_then(ErrorInfo::http_status);
    let name = info.map(ErrorInfo::name).unwrap_or_default();
    let text = format!(
        "{} {}",
        error.message.as_deref().unwrap_or_default(),
        error.additional_details.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    // codex names a usage limit, or only quotes the status in its message.
    let status = match status {
        Some(s) => Some(s),
        None if name == "usageLimitExceeded" || text.contains("429") => Some(429),
        None => None,
    };
    model_error_type(status, &text)
}

/// `failed` for a codex `TurnError` (`None`: the turn failed without one):
/// exhausted (the turn is dead, the session lives) unless the credentials
/// are refused.
fn failure(error: Option<&TurnError>) -> Action {
    let message = error
        .and_then(|e| e.message.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("codex ended the turn with an error");
    let message = match error.and_then(|e| e.additional_details.as_deref()).filter(|s| !s.is_empty()) {
        Some(d) => format!("{message} ({d})"),
        None => message.to_string(),
    };
    let info = error.and_then(|e| e.codex_error_info.as_ref());
    // Only the bare-name form carries these (unit variants in codex).
    let name = match info {
        Some(ErrorInfo::Name(n)) => n.as_str(),
        _ => "",
    };
    // Retrying with credentials the provider refused cannot succeed.
    let refused = name == "unauthorized" || matches!(info.and_then(ErrorInfo::http_status), Some(401 | 403));
    let (error_type, retry) = match (error, name) {
        _ if refused => ("model_request_failed_error", RetryStatus::Terminal),
        (_, "sandboxError") | (None, _) => ("unknown_error", RetryStatus::Exhausted),
        (Some(e), _) => (classify(e), RetryStatus::Exhausted),
    };
    Action::failed(error_type, &message, retry)
}

/// `Reconnecting... 2/5` → (2, 5).
fn parse_reconnecting(message: &str) -> (Option<u32>, Option<u32>) {
    let Some(tail) = message.rsplit(' ').next() else {
        return (None, None);
    };
    match tail.split_once('/') {
        Some((a, b)) => (a.trim().parse().ok(), b.trim().parse().ok()),
        None => (None, None),
    }
}

/// `/bin/bash -lc 'cmd'` → `cmd` (what the model asked for).
pub fn unwrap_shell(command: &str) -> String {
    for prefix in ["/bin/bash -lc ", "bash -lc ", "/bin/sh -c ", "sh -c ", "/bin/zsh -lc "] {
        if let Some(rest) = command.strip_prefix(prefix) {
            if let Some(inner) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                return inner.replace("'\\''", "'");
            }
            if let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                return inner.replace("\\\"", "\"");
            }
            return rest.to_string();
        }
    }
    command.to_string()
}

/// `add`, `delete`, `update` (the default).
fn change_kind(c: &FileChange) -> &str {
    c.kind.as_ref().and_then(|k| k.name()).unwrap_or("update")
}

fn file_change_input(changes: &[FileChange]) -> (&'static str, Value) {
    let all_new = !changes.is_empty() && changes.iter().all(|c| change_kind(c) == "add");
    let file_path = changes.first().and_then(|c| c.path.clone());
    let changes: Vec<Value> =
        changes.iter().map(|c| json!({"path": c.path, "kind": change_kind(c), "diff": c.diff})).collect();
    // A patch that only creates files is a `write`; anything else an `edit`.
    let name = if all_new { "write" } else { "edit" };
    (name, json!({"file_path": file_path, "changes": changes}))
}

fn object_or_empty(v: &Value) -> Value {
    match v {
        Value::Object(_) => v.clone(),
        Value::String(s) => {
            serde_json::from_str::<Value>(s).ok().filter(Value::is_object).unwrap_or_else(|| json!({"arguments": s}))
        }
        Value::Null => json!({}),
        other => json!({"arguments": other}),
    }
}

/// MCP content block → Managed Agents block.
fn mcp_block(b: &McpBlock) -> Option<Value> {
    match b {
        McpBlock::Text { text } => Some(json!({"type": "text", "text": text.as_deref()?})),
        McpBlock::Image { mime_type, data } => Some(json!({"type": "image", "source": {
            "type": "base64", "media_type": mime_type.as_deref()?, "data": data.as_deref()?}})),
        McpBlock::Other => None,
    }
}

/// `user.message` content → codex `UserInput` items.
fn turn_input(content: &Value) -> Vec<Value> {
    content::blocks(content)
        .into_iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(json!({"type": "text", "text": text, "text_elements": []})),
            Block::Image { source } => Some(json!({"type": "image", "url": source.url()?})),
            // Plain-text documents go in as text; other documents have no
            // codex input form.
            Block::Document { source: Source::Text { data } } => {
                Some(json!({"type": "text", "text": data, "text_elements": []}))
            }
            _ => None,
        })
        .collect()
}

impl HarnessSession for CodexSession {
    fn new(spec: SessionSpec) -> Self {
        let policy = ToolPolicy::from_agent(&spec.agent);
        let custom = DynamicTools::new(&spec.agent);
        let worker = WorkerTools::new(spec.remote_tools, &policy);
        let provider = provider_for(spec.llm.upstream_base_url.as_deref());
        let checkpointed = spec.resume.clone();
        CodexSession {
            spec,
            policy,
            custom,
            worker,
            provider,
            next_id: 0,
            pending: HashMap::new(),
            phase: Phase::Fresh,
            thread_id: None,
            checkpointed,
            queue: Vec::new(),
            turn_active: false,
            turn_id: None,
            interrupting: false,
            interrupt_deferred: false,
            items: HashMap::new(),
            held: HeldUses::default(),
            approvals: HashMap::new(),
            thinking_items: Vec::new(),
            span: None,
            retry: Progress::default(),
            last_error: None,
            previews: Previews::default(),
        }
    }

    fn launch(&mut self) -> Result<LaunchPlan, String> {
        let model = self.spec.model_id();
        if model.is_empty() {
            return Err("the agent has no model id".into());
        }
        if self.spec.llm.base_url.is_empty() {
            return Err("the session spec has no llm.base_url".into());
        }
        let mut mcp_servers = Vec::new();
        for server in self.spec.agent["mcp_servers"].as_array().into_iter().flatten() {
            let (Some(name), Some(url)) = (server["name"].as_str(), server["url"].as_str()) else {
                continue;
            };
            let Some(p) = self.policy.mcp.get(name) else {
                continue;
            };
            if p.default.is_none() && p.tools.values().all(Option::is_none) {
                continue; // every tool of the server is disabled
            }
            // codex asks before the tools whose approval mode is `prompt`
            // (an elicitation the session maps to `requires_action`).
            let default_approval = mcp_approval_mode(p.default);
            let tool_approvals: Vec<(&str, &'static str)> = p
                .tools
                .iter()
                .filter(|(_, perm)| perm.is_some() && mcp_approval_mode(**perm) != default_approval)
                .map(|(t, perm)| (t.as_str(), mcp_approval_mode(*perm)))
                .collect();
            // Per-tool enablement from the toolset's configs (codex's own
            // enabled_tools / disabled_tools lists).
            let enabled_tools = p.default.is_none().then(|| {
                p.tools.iter().filter(|(_, perm)| perm.is_some()).map(|(t, _)| t.as_str()).collect::<Vec<_>>()
            });
            let disabled_tools: Vec<&str> =
                p.tools.iter().filter(|(_, perm)| perm.is_none()).map(|(t, _)| t.as_str()).collect();
            mcp_servers.push(McpServerToml {
                name,
                url,
                enabled_tools,
                disabled_tools,
                default_approval,
                tool_approvals,
            });
        }
        let config = ConfigToml {
            model: &model,
            base_url: &self.spec.llm.base_url,
            provider: self.provider,
            approval_policy: self.approval_policy(),
            mcp_servers,
            // The workers run the shell; codex's own would run in Bridle's sandbox.
            shell_tool: !self.worker.enabled(),
        }
        .render();
        let mut config_file = File::new(".bridle/codex/config.toml", config.into_bytes());
        config_file.mode = 0o600;
        Ok(LaunchPlan {
            argv: vec!["codex".into(), "app-server".into()],
            env: vec![
                // Threads (rollouts) live in the workspace, so thread/resume
                // works after the sandbox restarts.
                ("CODEX_HOME".into(), self.codex_home()),
                ("RUST_LOG".into(), "warn".into()),
            ],
            files: vec![config_file],
            cwd: Some(self.spec.workspace.clone()),
            // Codex discovers skills in `$CODEX_HOME/skills`.
            skills_dir: Some(format!("{}/skills", self.codex_home())),
        })
    }

    fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String> {
        match UserEvent::read("codex", &event)? {
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
        // Stray output must not end the session: logged by `read_line`.
        let Line::Message(message) = read_line::<Incoming>("codex", line) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match message {
            Incoming::Request { id, request } => self.on_server_request(id, request, &mut out),
            Incoming::Notification(n) => self.on_notification(n, &mut out),
            Incoming::Response { id, result, error } => match id {
                RequestId::Number(n) if n >= 0 => self.on_response(n.unsigned_abs(), result, error, &mut out),
                _ => log(LogLevel::Debug, "codex: response with a foreign id skipped"),
            },
            Incoming::Invalid => log(LogLevel::Debug, "codex: message without method or id skipped"),
        }
        Ok(out)
    }

    fn on_exit(&mut self, code: Option<i32>) -> Vec<Action> {
        let mut out = Vec::new();
        self.phase = Phase::Fresh;
        self.pending.clear();
        self.thread_id = None;
        self.turn_id = None;
        self.queue.clear();
        self.approvals.clear();
        self.custom.forget_all();
        self.worker.forget_all();
        if !std::mem::take(&mut self.turn_active) {
            return out;
        }
        self.close_span(true, None, &mut out);
        self.held.release_all(&mut out);
        self.retry.reset();
        if std::mem::take(&mut self.interrupting) {
            out.push(Action::end_turn());
            return out;
        }
        out.push(exit_failure("codex app-server", code, "before the turn finished"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_unwrapping() {
        assert_eq!(unwrap_shell("/bin/bash -lc 'touch /w/a'"), "touch /w/a");
        assert_eq!(unwrap_shell("/bin/bash -lc 'echo '\\''hi'\\'''"), "echo 'hi'");
        assert_eq!(unwrap_shell("bash -lc \"ls \\\"x\\\"\""), "ls \"x\"");
        assert_eq!(unwrap_shell("ls -la"), "ls -la");
    }

    #[test]
    fn reconnecting_counts() {
        assert_eq!(parse_reconnecting("Reconnecting... 2/5"), (Some(2), Some(5)));
        assert_eq!(parse_reconnecting("boom"), (None, None));
    }

    fn turn_error(v: Value) -> TurnError {
        serde_json::from_value(v).expect("a TurnError")
    }

    #[test]
    fn error_classes() {
        let e = |v: Value| classify(&turn_error(v));
        assert_eq!(
            e(json!({"codexErrorInfo": {"responseStreamDisconnected": {"httpStatusCode": 429}}})),
            "model_rate_limited_error"
        );
        assert_eq!(e(json!({"codexErrorInfo": "internalServerError"})), "model_request_failed_error");
        assert_eq!(e(json!({"message": "overloaded"})), "model_overloaded_error");
        assert_eq!(e(json!({})), "model_request_failed_error");
    }

    #[test]
    fn refused_credentials_are_terminal() {
        let retry = |v: Value| match failure(Some(&turn_error(v))) {
            Action::Failed(f) => f.retry,
            other => panic!("expected failed, got {other:?}"),
        };
        let refused =
            json!({"message": "401", "codexErrorInfo": {"responseStreamConnectionFailed": {"httpStatusCode": 401}}});
        assert_eq!(retry(refused), RetryStatus::Terminal);
        assert_eq!(retry(json!({"message": "x", "codexErrorInfo": "unauthorized"})), RetryStatus::Terminal);
        let busy =
            json!({"message": "500", "codexErrorInfo": {"responseTooManyFailedAttempts": {"httpStatusCode": 500}}});
        assert_eq!(retry(busy), RetryStatus::Exhausted);
        assert_eq!(retry(json!({"message": "x", "codexErrorInfo": "sandboxError"})), RetryStatus::Exhausted);
        let Action::Failed(f) = failure(None) else { panic!("expected failed") };
        assert_eq!((f.error_type.as_str(), f.retry), ("unknown_error", RetryStatus::Exhausted));
    }
}
