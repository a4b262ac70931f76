//! The turn engine of one session: pure, synchronous, no I/O. It owns what a
//! turn is made of — the queue of user messages, the turn in progress, the
//! interrupt deadline, the burst of runtime output being batched into one
//! commit, the host-run tool calls, the resume token's bookkeeping, the
//! adoption of a cut-off turn, fencing — and drives the [`StatusMachine`]
//! (every `session.status_*` and `session.error` comes from it).
//!
//! The runner feeds it [`Input`]s (a user event, a plugin's actions, the
//! runtime's exit, a tool's outcome, the clock) and executes the
//! [`Effect`]s it returns, in order (store a commit, deliver an event to the
//! plugin, write to the runtime, run or cancel a tool, start or stop the
//! runtime). Time enters as [`Instant`]s in the inputs; it is never read here.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::orphans;
use super::outcome::Outcome;
use super::outcome::cycle::{self, AfterTurn, AfterVerdict, Cycle, End, Graded, Job, Phase};
use super::status::{Fact, StatusMachine, Step};
use crate::ids::{Kind, new_id};
use crate::model::previews::{Preview, PreviewKind};
use crate::model::pricing::{self, Cost, Price};
use crate::model::sessions::SessionStatus;
use crate::store::StatusChange;

/// Most runtime lines, and plain events, handled as one burst of output
/// (stored in one commit); bounds how long user input waits behind a burst.
pub const BURST_LINES: usize = 64;
pub const BURST_EVENTS: usize = 256;

/// A user event the runner took from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    pub seq: i64,
    /// `user.message`, `user.interrupt`, `user.tool_confirmation`, ...
    pub kind: String,
    /// The stored body (with `type`).
    pub body: Value,
}

/// A tool call the host runs in the sandbox (sandbox as tool).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The `agent.tool_use` event id the call answers to.
    pub id: String,
    pub name: String,
    pub input: Value,
}

/// What a host-run tool call came to.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub id: String,
    pub content: String,
    pub is_error: bool,
    pub exit_code: Option<i32>,
}

impl ToolOutcome {
    /// The outcome of a call the user's interrupt cancelled (or that never
    /// ran because of it).
    pub fn interrupted(id: &str) -> Self {
        ToolOutcome { id: id.to_owned(), content: "interrupted by the user".into(), is_error: true, exit_code: None }
    }
}

/// The runtime gave up on the turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error_type: String,
    pub message: String,
    /// The session cannot go on (`retry_status: terminal`).
    pub terminal: bool,
}

/// One plugin action, typed (see `session/actions.rs` for the conversion
/// from the plugin's records). Events are already checked and have ids.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginAction {
    Emit(Map<String, Value>),
    /// The plugin emitted an event that failed the checks: why.
    Invalid(String),
    Write(Vec<u8>),
    Retrying {
        error_type: String,
        message: String,
    },
    Resumed,
    ToolCall(ToolCall),
    Checkpoint(String),
    TurnEnded(Value),
    Failed(Failure),
    /// Stream-only partial output of an event emitted later.
    Preview(Preview),
}

/// Something that happened to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A user event, in log order.
    User(UserEvent, Instant),
    /// The plugin's actions for a delivered user event or tool outcome.
    Plugin(Vec<PluginAction>),
    /// The plugin's actions for one runtime line. Consecutive lines form a
    /// burst (plain events held for one commit) until [`Input::BurstEnd`]
    /// or the engine closes it (see [`Engine::burst_open`]).
    Output(Vec<PluginAction>),
    /// No further runtime line is ready right now.
    BurstEnd,
    /// A host-run tool call finished (or was cancelled).
    ToolDone(ToolOutcome),
    /// The runtime asked for by [`Effect::StartRuntime`] runs.
    Started,
    /// It could not be started.
    StartFailed { error_type: String, message: String },
    /// The runtime exited: how (for messages), the sandbox limit it died
    /// of, its last stderr words (`; its last output: ...` or empty), and
    /// the plugin's actions for the exit.
    Exited { status: String, limit: Option<String>, stderr: String, actions: Vec<PluginAction> },
    /// The plugin trapped or overran its limits.
    PluginFault(String),
    /// The clock (for the interrupt deadline).
    Tick(Instant),
    /// The runtime sat idle between turns for the configured time: stop it
    /// (the next message starts it again, from its resume token).
    Idle,
    /// A write was fenced: another node adopted the session.
    Fenced,
    /// The session's budget as now stored (it can be raised or removed
    /// while the session lives).
    Budget(Option<Cost>),
    /// A session resource could not be made ready: its error object.
    ResourceFailed(Map<String, Value>),
    /// The sandbox's gateway could not serve one of the agent's MCP
    /// servers (the runtime goes on without it).
    McpFailed { error_type: String, server: String, message: String },
    /// The grader asked for by [`Effect::Grade`] answered (or failed).
    Graded(Graded),
    /// The grader is still at work (a heartbeat for the client).
    Grading,
}

/// A plugin call the runner makes on the engine's behalf; its actions come
/// back as [`Input::Plugin`].
#[derive(Debug, Clone, PartialEq)]
pub enum PluginCall {
    Input(UserEvent),
    ToolResult(ToolOutcome),
}

/// What the runner must do, in order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// One fenced write: events (ids assigned where the plugin gave one), a
    /// status change, and the user event a new turn starts from.
    Commit {
        events: Vec<Map<String, Value>>,
        status: Option<StatusChange>,
        turn_seq: Option<i64>,
        /// The session's usage, when it grew and no status change carries
        /// it: stored with the events it comes from, so the stored usage is
        /// always the sum of the stored `span.model_request_end` events.
        usage: Option<Value>,
    },
    /// The runner took user events up to this seq.
    SaveInputSeq(i64),
    /// Keep this resume token (its turn ended).
    SaveResume(String),
    /// Start the runtime (with [`Engine::resume`]); answer with
    /// [`Input::Started`] or [`Input::StartFailed`].
    StartRuntime,
    /// Stop the runtime and its sandbox (the workspace stays).
    StopRuntime(&'static str),
    Deliver(PluginCall),
    Write(Vec<u8>),
    /// Run a tool call; answer with [`Input::ToolDone`].
    RunTool(ToolCall),
    /// Cancel the tool call in flight (kill what it runs); its outcome
    /// still comes back as [`Input::ToolDone`].
    CancelTool,
    /// The budget is spent: interrupt the turn as a user would (answer
    /// with an [`Input::User`] `user.interrupt` at the last seq taken).
    Interrupt,
    /// Store the files the agent left in the session's outputs directory
    /// (a turn ends, or the runtime is about to stop for idleness).
    CollectOutputs,
    /// Send a preview frame to the session's live streams only (never
    /// stored). Ordered after the commits before it.
    Preview(Preview),
    /// Grade an outcome's round; answer with [`Input::Graded`] (and
    /// [`Input::Grading`] now and then while it runs).
    Grade(Job),
    /// Abandon the grading in flight (its answer, if any, is ignored).
    CancelGrade,
}

/// The session as the runner found it when it claimed the session.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub status: Option<SessionStatus>,
    pub usage: Map<String, Value>,
    /// The last resume token stored (of the last finished turn).
    pub resume: Option<String>,
    /// Messages taken in by a previous runner but not yet turned into turns.
    pub queue: Vec<UserEvent>,
    /// Tool calls the log says wait on the user (the runtime holding them
    /// is gone): their turn is ended first.
    pub orphaned: Vec<String>,
    /// A turn cut off by the previous owner: `Some(Some(ev))` resumes it
    /// from `ev`; `Some(None)` ends it (it was interrupted).
    pub recover: Option<Option<UserEvent>>,
    /// The session's budget ceiling, if it has one.
    pub budget: Option<Cost>,
    /// The outcome the cut-off turn (`recover`) worked on, as the log left it.
    pub outcome: Option<Cycle>,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct Config {
    /// The harness name, for messages.
    pub harness: String,
    pub interrupt_grace: Duration,
    /// The list prices of the session's model (budgets need them).
    pub price: Option<Price>,
}

/// What a started runtime is for.
#[derive(Debug, Clone, PartialEq)]
enum Starting {
    /// A new turn: deliver its message.
    Turn(UserEvent),
    /// An adopted turn: `session.status_running`, then deliver it again.
    Resume(UserEvent),
}

pub struct Engine {
    cfg: Config,
    machine: StatusMachine,
    usage: Map<String, Value>,
    /// A turn is in progress (between taking a message and its end).
    turn: bool,
    /// Messages that arrived during a turn, taken in order after it.
    queue: VecDeque<UserEvent>,
    runtime_up: bool,
    starting: Option<Starting>,
    interrupt_deadline: Option<Instant>,
    /// The user event a turn being started comes from (saved with its status).
    start_seq: Option<i64>,
    /// Lines in the burst being handled, when one is.
    burst: Option<usize>,
    held: Vec<Map<String, Value>>,
    tool: Option<ToolCall>,
    tools_waiting: VecDeque<ToolCall>,
    /// The user interrupted the turn while tools ran or waited.
    tools_interrupted: bool,
    /// The resume token for the next start; `saved` is the last one stored.
    resume: Option<String>,
    saved_resume: Option<String>,
    resume_unsaved: bool,
    fenced: bool,
    pending_begin: Option<(Vec<String>, Option<Option<UserEvent>>)>,
    budget: Option<Cost>,
    /// The turn is being stopped because the budget is spent.
    budget_stop: bool,
    /// Usage grew since the last commit that stored it.
    usage_dirty: bool,
    /// `agent.message` previews of this turn not yet concluded by their
    /// event or closed by a `span.model_request_end`: text deltas go only
    /// to these.
    previews: HashSet<String>,
    /// The outcome this turn works toward (`user.define_outcome`).
    outcome: Option<Cycle>,
    /// A coordinator's delegation tool: its custom tool uses are host-run
    /// calls (a child thread answers them), never the client's.
    delegate_tool: Option<String>,
    /// Delegation calls in flight or waiting (their event ids).
    delegated: HashSet<String>,
}

impl Engine {
    pub fn new(cfg: Config, loaded: Loaded) -> Self {
        let status = loaded.status.unwrap_or(SessionStatus::Idle);
        Engine {
            cfg,
            machine: StatusMachine::new(status),
            usage: loaded.usage,
            turn: false,
            queue: loaded.queue.into(),
            runtime_up: false,
            starting: None,
            interrupt_deadline: None,
            start_seq: None,
            burst: None,
            held: Vec::new(),
            tool: None,
            tools_waiting: VecDeque::new(),
            tools_interrupted: false,
            resume: loaded.resume.clone(),
            saved_resume: loaded.resume,
            resume_unsaved: false,
            fenced: false,
            pending_begin: Some((loaded.orphaned, loaded.recover)),
            budget: loaded.budget,
            budget_stop: false,
            usage_dirty: false,
            previews: HashSet::new(),
            outcome: loaded.outcome,
            delegate_tool: None,
            delegated: HashSet::new(),
        }
    }

    /// The session's agent coordinates a roster: custom tool uses of `tool`
    /// are delegations the runner carries out as host-run tool calls.
    pub fn with_delegation(mut self, tool: &str) -> Self {
        self.delegate_tool = Some(tool.to_owned());
        self
    }

    pub fn status(&self) -> SessionStatus {
        self.machine.status()
    }

    /// A turn is in progress.
    pub fn in_turn(&self) -> bool {
        self.turn
    }

    pub fn runtime_up(&self) -> bool {
        self.runtime_up
    }

    /// The resume token to start the runtime with.
    pub fn resume(&self) -> Option<&str> {
        self.resume.as_deref()
    }

    /// When the runtime must have ended an interrupted turn.
    pub fn interrupt_deadline(&self) -> Option<Instant> {
        self.interrupt_deadline
    }

    /// A burst of runtime output is open: feed the next ready line, or
    /// [`Input::BurstEnd`].
    pub fn burst_open(&self) -> bool {
        self.burst.is_some()
    }

    /// Whether runtime output should be read now: not while a host-run tool
    /// call is in flight (its outcome comes first, as the runtime asked).
    pub fn wants_output(&self) -> bool {
        self.runtime_up && self.tool.is_none()
    }

    /// Another node adopted the session: the runner stops without writing.
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// Hand the session over when the runner ends (a turn or queued input
    /// remains for another node to resume).
    pub fn handover(&self) -> bool {
        self.turn || !self.queue.is_empty()
    }

    /// The first step after load: end orphaned waits, resume or end a
    /// cut-off turn, then take a queued message.
    pub fn begin(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some((orphaned, recover)) = self.pending_begin.take() else { return out };
        if !orphaned.is_empty() {
            let cause = "the agent runtime holding the call stopped (the server restarted, or another node took the \
                         session over)";
            let message = orphans::lost_calls_message(&orphaned, cause);
            self.fact(Fact::Failed { error_type: "unknown_error".into(), message, terminal: false }, &mut out);
        }
        if let Some(turn) = recover {
            self.fact(Fact::Adopted, &mut out);
            match turn {
                // Nothing to resume (the turn was interrupted): end it.
                None => {
                    self.outcome_over(End::Interrupted, "the user interrupted the session", &mut out);
                    self.fact(Fact::TurnEnded(json!({"type": "end_turn"})), &mut out)
                }
                Some(ev) => {
                    self.turn = true;
                    let ev = self.runtime_input(ev);
                    self.starting = Some(Starting::Resume(ev));
                    out.push(Effect::StartRuntime);
                    return out;
                }
            }
        }
        self.next_queued(&mut out);
        out
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.fenced {
            return out;
        }
        match input {
            Input::User(ev, now) => self.on_user(ev, now, &mut out),
            Input::Plugin(actions) => self.apply(actions, &mut out),
            Input::Output(actions) => {
                let lines = self.burst.get_or_insert(0);
                *lines += 1;
                self.apply(actions, &mut out);
                if self.burst.is_some_and(|n| n >= BURST_LINES) || self.held.len() >= BURST_EVENTS {
                    self.end_burst(&mut out);
                }
            }
            Input::BurstEnd => self.end_burst(&mut out),
            Input::ToolDone(outcome) => self.on_tool_done(outcome, &mut out),
            Input::Started => self.on_started(&mut out),
            Input::StartFailed { error_type, message } => {
                self.starting = None;
                if self.turn {
                    self.fail_turn(&error_type, &message, &mut out);
                }
            }
            Input::Exited { status, limit, stderr, actions } => {
                self.on_exit(&status, limit.as_deref(), &stderr, actions, &mut out)
            }
            Input::PluginFault(e) => {
                self.stop_runtime("plugin fault", &mut out);
                if self.turn {
                    self.fail_turn("unknown_error", &format!("harness {e}"), &mut out);
                }
            }
            Input::Tick(now) => {
                if self.interrupt_deadline.is_some_and(|d| d <= now) {
                    self.interrupt_deadline = None;
                    if self.turn {
                        self.stop_runtime("interrupt grace period over", &mut out);
                        self.outcome_over(End::Interrupted, "the user interrupted the session", &mut out);
                        let stop = self.stop_reason(json!({"type": "end_turn"}));
                        self.fact(Fact::TurnEnded(stop), &mut out);
                        self.turn_over();
                        self.next_queued(&mut out);
                    }
                }
            }
            Input::Idle => {
                if !self.turn {
                    if self.runtime_up {
                        out.push(Effect::CollectOutputs);
                    }
                    self.stop_runtime("idle", &mut out);
                }
            }
            Input::McpFailed { error_type, server, message } => {
                self.fact(Fact::McpFailed { error_type, server, message }, &mut out)
            }
            Input::Fenced => {
                self.fenced = true;
                self.burst = None;
                self.held.clear();
            }
            Input::Budget(budget) => self.budget = budget,
            Input::ResourceFailed(error) => self.fact(Fact::ResourceFailed(error), &mut out),
            Input::Graded(graded) => self.on_graded(graded, &mut out),
            Input::Grading => {
                if let Some(c) = self.outcome.as_ref().filter(|c| c.evaluating().is_some()) {
                    let ev = json!({"type": "span.outcome_evaluation_ongoing", "outcome_id": c.outcome.id,
                                    "iteration": c.iteration});
                    self.host_event(ev, &mut out);
                }
            }
        }
        out
    }

    /// The session's list cost reached its budget.
    fn budget_spent(&self) -> bool {
        match (self.budget, &self.cfg.price) {
            (Some(max), Some(price)) => pricing::list_cost(&self.usage, price) >= max,
            _ => false,
        }
    }

    /// How the turn ended: a turn stopped for the budget says so, whatever
    /// the runtime made of the interrupt.
    fn stop_reason(&self, stop: Value) -> Value {
        match self.budget_stop {
            true => json!({"type": "budget_reached"}),
            false => stop,
        }
    }

    fn on_user(&mut self, ev: UserEvent, now: Instant, out: &mut Vec<Effect>) {
        out.push(Effect::SaveInputSeq(ev.seq));
        match ev.kind.as_str() {
            "user.message" | "user.define_outcome" if self.turn => self.queue.push_back(ev),
            "user.message" | "user.define_outcome" => self.start_turn(ev, out),
            "user.interrupt" if self.outcome.as_ref().is_some_and(|c| c.evaluating().is_some()) => {
                // The runtime's turn is over; only the grader is at work.
                self.outcome_over(End::Interrupted, "the user interrupted the evaluation", out);
                self.finish_turn(json!({"type": "end_turn"}), out);
            }
            "user.interrupt" if self.turn => {
                self.interrupt_deadline = Some(now + self.cfg.interrupt_grace);
                // The plugin hears of it first (it tells the runtime), then
                // the tool call in flight is cancelled; its outcome, and the
                // runtime's output after it, follow.
                if self.runtime_up {
                    out.push(Effect::Deliver(PluginCall::Input(ev)));
                }
                if self.tool.is_some() || !self.tools_waiting.is_empty() {
                    self.tools_interrupted = true;
                }
                if self.tool.is_some() {
                    out.push(Effect::CancelTool);
                }
            }
            "user.interrupt" => {}
            "user.tool_confirmation" | "user.custom_tool_result" => {
                let target = ev
                    .body
                    .get("tool_use_id")
                    .or_else(|| ev.body.get("custom_tool_use_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if !self.machine.pending().contains(&target) {
                    // The API took it (the call was pending in the log), but
                    // its turn ended before the runner got to it: report it.
                    // Between turns, also end with an idle status, so a
                    // client waiting for the answer's outcome sees one.
                    let message = orphans::undelivered_answer_message(&ev.kind, &target);
                    let error_type = "unknown_error".to_owned();
                    let fact = match self.turn {
                        true => Fact::Refused { error_type, message },
                        false => Fact::Failed { error_type, message, terminal: false },
                    };
                    self.fact(fact, out);
                    return;
                }
                self.fact(Fact::Answered(vec![target]), out);
                if self.runtime_up {
                    out.push(Effect::Deliver(PluginCall::Input(ev)));
                }
            }
            // Unknown user event types are refused by the API; nothing to do.
            _ => {}
        }
    }

    fn start_turn(&mut self, ev: UserEvent, out: &mut Vec<Effect>) {
        self.turn = true;
        self.start_seq = Some(ev.seq);
        self.fact(Fact::TurnStarted, out);
        if ev.kind == "user.define_outcome" {
            self.outcome = Outcome::from_event(&ev.body).map(Cycle::new);
        }
        let ev = self.runtime_input(ev);
        if self.budget_spent() {
            // Sent before the budget ran out (the API refuses them after):
            // the turn ends at once, without a model request.
            self.outcome_over(End::Failed, "the session's budget is spent", out);
            self.fact(Fact::TurnEnded(json!({"type": "budget_reached"})), out);
            self.turn_over();
            return self.next_queued(out);
        }
        if self.runtime_up {
            out.push(Effect::Deliver(PluginCall::Input(ev)));
        } else {
            self.starting = Some(Starting::Turn(ev));
            out.push(Effect::StartRuntime);
        }
    }

    fn on_started(&mut self, out: &mut Vec<Effect>) {
        self.runtime_up = true;
        match self.starting.take() {
            Some(Starting::Turn(ev)) => out.push(Effect::Deliver(PluginCall::Input(ev))),
            Some(Starting::Resume(ev)) => {
                self.fact(Fact::Resumed, out);
                out.push(Effect::Deliver(PluginCall::Input(ev)));
            }
            None => {}
        }
    }

    fn on_tool_done(&mut self, outcome: ToolOutcome, out: &mut Vec<Effect>) {
        if self.tool.take().is_none() {
            // The runtime is gone (exit, stop): nobody waits for it.
            return;
        }
        out.push(Effect::Deliver(self.tool_answer(outcome)));
        self.next_tool(out);
    }

    /// A custom tool use of the delegation tool.
    fn is_delegation(&self, event: &Map<String, Value>) -> bool {
        self.delegate_tool.is_some()
            && event.get("type").and_then(Value::as_str) == Some("agent.custom_tool_use")
            && event.get("name").and_then(Value::as_str) == self.delegate_tool.as_deref()
    }

    /// A delegation runs as a host-run call; the child thread's events, not
    /// the tool use, tell the session's log about it.
    fn delegate(&mut self, event: Map<String, Value>, out: &mut Vec<Effect>) {
        let Some(id) = event.get("id").and_then(Value::as_str).map(str::to_owned) else { return };
        let name = self.delegate_tool.clone().unwrap_or_default();
        let input = event.get("input").cloned().unwrap_or(Value::Null);
        if self.runtime_up {
            self.delegated.insert(id.clone());
            self.tools_waiting.push_back(ToolCall { id, name, input });
            self.next_tool(out);
        }
    }

    /// How a host-run call's outcome reaches the plugin: a delegation's as
    /// the `user.custom_tool_result` its custom tool waits for.
    fn tool_answer(&mut self, outcome: ToolOutcome) -> PluginCall {
        if !self.delegated.remove(&outcome.id) {
            return PluginCall::ToolResult(outcome);
        }
        let body = json!({"type": "user.custom_tool_result", "custom_tool_use_id": outcome.id,
                          "content": [{"type": "text", "text": outcome.content}], "is_error": outcome.is_error});
        PluginCall::Input(UserEvent { seq: 0, kind: "user.custom_tool_result".into(), body })
    }

    fn next_tool(&mut self, out: &mut Vec<Effect>) {
        if self.tool.is_some() {
            return;
        }
        while let Some(call) = self.tools_waiting.pop_front() {
            if self.tools_interrupted {
                // Never run a call the user interrupted: answer it at once.
                let answer = self.tool_answer(ToolOutcome::interrupted(&call.id));
                out.push(Effect::Deliver(answer));
                continue;
            }
            self.end_burst(out);
            self.tool = Some(call.clone());
            out.push(Effect::RunTool(call));
            return;
        }
    }

    fn on_exit(
        &mut self,
        status: &str,
        limit: Option<&str>,
        stderr: &str,
        actions: Vec<PluginAction>,
        out: &mut Vec<Effect>,
    ) {
        self.end_burst(out);
        self.runtime_up = false;
        self.drop_tools(out);
        // Calls waiting on the user died with the runtime: say so.
        let waiting = self.machine.pending().to_vec();
        if self.resume_unsaved {
            // A runtime that died mid-turn may not have written what its new
            // token names yet (Claude Code writes its transcript late):
            // resume from the token of the last finished turn.
            self.resume = self.saved_resume.clone();
            self.resume_unsaved = false;
        }
        let lost = |why: String| match waiting.is_empty() {
            true => why,
            false => orphans::lost_calls_message(&waiting, &why),
        };
        if let (Some(limit), true) = (limit, self.turn) {
            // A runtime that died of a sandbox limit is reported as that
            // limit, whatever the plugin makes of the exit.
            let why = lost(format!("the agent runtime was stopped: sandbox {limit} limit exceeded"));
            self.fail_turn("unknown_error", &why, out);
            return;
        }
        let actions = actions
            .into_iter()
            .map(|a| match a {
                PluginAction::Failed(mut f) if !waiting.is_empty() => {
                    f.message = orphans::lost_calls_message(&waiting, &f.message);
                    PluginAction::Failed(f)
                }
                a => a,
            })
            .collect();
        self.apply(actions, out);
        if self.turn {
            let why = format!("the agent runtime {status} before finishing the turn{stderr}");
            self.fail_turn("unknown_error", &lost(why), out);
        }
    }

    /// Forget host-run tool calls (the runtime that asked is gone).
    fn drop_tools(&mut self, out: &mut Vec<Effect>) {
        if self.tool.take().is_some() {
            out.push(Effect::CancelTool);
        }
        self.tools_waiting.clear();
        self.tools_interrupted = false;
        self.delegated.clear();
    }

    fn stop_runtime(&mut self, why: &'static str, out: &mut Vec<Effect>) {
        self.end_burst(out);
        self.drop_tools(out);
        if self.runtime_up || self.starting.is_some() {
            self.runtime_up = false;
            self.starting = None;
            out.push(Effect::StopRuntime(why));
        }
    }

    fn apply(&mut self, actions: Vec<PluginAction>, out: &mut Vec<Effect>) {
        for action in actions {
            // Held events are stored before anything else happens.
            // (A preview flushes them itself, when it goes out.)
            if !matches!(action, PluginAction::Emit(_) | PluginAction::Checkpoint(_) | PluginAction::Preview(_)) {
                self.flush(out);
            }
            match action {
                PluginAction::Emit(event) if self.is_delegation(&event) => self.delegate(event, out),
                PluginAction::Emit(event) => {
                    if event.get("type").and_then(Value::as_str) == Some("span.model_request_end") {
                        // The model request is over: it closes its previews.
                        self.previews.clear();
                        if let Some(Value::Object(u)) = event.get("model_usage") {
                            add_usage(&mut self.usage, u);
                            self.usage_dirty = true;
                        }
                    }
                    if let Some(id) = event.get("id").and_then(Value::as_str) {
                        self.previews.remove(id);
                    }
                    if let Some(c) = self.outcome.as_mut().filter(|c| c.phase == Phase::Working)
                        && event.get("type").and_then(Value::as_str) == Some("agent.message")
                    {
                        c.result.push(message_text(&event));
                    }
                    self.fact(Fact::Event(event), out);
                    if self.turn && !self.budget_stop && self.budget_spent() {
                        self.budget_stop = true;
                        out.push(Effect::Interrupt);
                    }
                }
                PluginAction::Preview(preview) => self.preview(preview, out),
                PluginAction::Invalid(msg) => {
                    self.stop_runtime("invalid plugin event", out);
                    if self.turn {
                        let m = format!("harness plugin `{}` emitted an invalid event: {msg}", self.cfg.harness);
                        self.fail_turn("unknown_error", &m, out);
                    }
                    return;
                }
                PluginAction::Write(bytes) => {
                    if self.runtime_up {
                        out.push(Effect::Write(bytes));
                    }
                }
                PluginAction::Retrying { error_type, message } => {
                    self.fact(Fact::Retrying { error_type, message }, out)
                }
                PluginAction::Resumed => self.fact(Fact::Resumed, out),
                PluginAction::ToolCall(call) => {
                    if self.runtime_up {
                        self.tools_waiting.push_back(call);
                        self.next_tool(out);
                    }
                }
                PluginAction::Checkpoint(token) => {
                    // Kept once the turn ends: a runtime cut off in its first
                    // turn may not have saved what the token names.
                    self.resume = Some(token);
                    self.resume_unsaved = true;
                }
                PluginAction::TurnEnded(stop) => {
                    self.save_resume(out);
                    let stop = self.stop_reason(stop);
                    if self.outcome_turn_ended(&stop, out) {
                        // The grader scores the turn; the session stays running.
                        continue;
                    }
                    self.fact(Fact::TurnEnded(stop), out);
                    self.turn_over();
                    self.next_queued(out);
                }
                PluginAction::Failed(f) => {
                    self.save_resume(out);
                    self.outcome_over(End::Failed, &f.message, out);
                    let terminal = f.terminal;
                    self.fact(Fact::Failed { error_type: f.error_type, message: f.message, terminal }, out);
                    self.turn_over();
                    if terminal {
                        self.stop_runtime("terminal failure", out);
                    } else {
                        self.next_queued(out);
                    }
                }
            }
        }
    }

    /// A preview goes out during a turn only, and a text delta only to a
    /// message preview this turn opened and nothing has closed yet (held
    /// events were flushed before it, so frames keep the runtime's order).
    fn preview(&mut self, preview: Preview, out: &mut Vec<Effect>) {
        if !self.turn {
            return;
        }
        let open = match &preview {
            Preview::Start { event_id, kind } => {
                if *kind == PreviewKind::AgentMessage {
                    self.previews.insert(event_id.clone());
                }
                true
            }
            Preview::Text { event_id, .. } => self.previews.contains(event_id),
        };
        if open {
            self.flush(out);
            out.push(Effect::Preview(preview));
        }
    }

    fn save_resume(&mut self, out: &mut Vec<Effect>) {
        if let (true, Some(token)) = (self.resume_unsaved, self.resume.clone()) {
            self.saved_resume = Some(token.clone());
            self.resume_unsaved = false;
            out.push(Effect::SaveResume(token));
        }
    }

    /// End the turn with a failure the session can recover from.
    fn fail_turn(&mut self, error_type: &str, message: &str, out: &mut Vec<Effect>) {
        self.outcome_over(End::Failed, message, out);
        let fact = Fact::Failed { error_type: error_type.into(), message: message.into(), terminal: false };
        self.fact(fact, out);
        self.turn_over();
        self.next_queued(out);
    }

    /// Between turns: no deadline, no tool calls.
    fn turn_over(&mut self) {
        self.turn = false;
        self.interrupt_deadline = None;
        self.tools_interrupted = false;
        self.budget_stop = false;
        self.previews.clear();
    }

    fn next_queued(&mut self, out: &mut Vec<Effect>) {
        if !self.turn
            && self.machine.status() != SessionStatus::Terminated
            && let Some(next) = self.queue.pop_front()
        {
            self.start_turn(next, out);
        }
    }

    /// Run a fact through the status machine; commit what it yields. During
    /// a burst, plain events are held (a status change never waits).
    fn fact(&mut self, fact: Fact, out: &mut Vec<Effect>) {
        let step = self.machine.apply(fact);
        self.commit_step(step, out);
    }

    /// An event the host adds to the log (an outcome's evaluation span):
    /// stored like any other, but no sign of the runtime's progress.
    fn host_event(&mut self, event: Value, out: &mut Vec<Effect>) {
        self.commit_step(Step { events: vec![ev_map(event)], status_changed: false }, out);
    }

    fn commit_step(&mut self, step: Step, out: &mut Vec<Effect>) {
        if self.burst.is_some() && !step.status_changed && self.start_seq.is_none() {
            self.held.extend(step.events);
            return;
        }
        let mut events = std::mem::take(&mut self.held);
        events.extend(step.events);
        let status = step
            .status_changed
            .then(|| StatusChange { status: self.machine.status(), usage: Value::Object(self.usage.clone()) });
        // A turn's outputs are stored before its end is: a client that sees
        // the session idle finds them listed.
        if status.as_ref().is_some_and(|c| matches!(c.status, SessionStatus::Idle | SessionStatus::Terminated)) {
            out.push(Effect::CollectOutputs);
        }
        if events.is_empty() && status.is_none() && self.start_seq.is_none() {
            return;
        }
        let usage = match status {
            Some(_) => {
                self.usage_dirty = false;
                None
            }
            None => self.dirty_usage(),
        };
        out.push(Effect::Commit { events, status, turn_seq: self.start_seq.take(), usage });
    }

    /// The usage to store with the next commit, if it grew.
    fn dirty_usage(&mut self) -> Option<Value> {
        std::mem::take(&mut self.usage_dirty).then(|| Value::Object(self.usage.clone()))
    }

    /// Commit the held events now.
    fn flush(&mut self, out: &mut Vec<Effect>) {
        if !self.held.is_empty() {
            let usage = self.dirty_usage();
            out.push(Effect::Commit { events: std::mem::take(&mut self.held), status: None, turn_seq: None, usage });
        }
    }

    fn end_burst(&mut self, out: &mut Vec<Effect>) {
        self.burst = None;
        self.flush(out);
    }
}

impl Engine {
    /// What the runtime is given for a turn's user event: an outcome's
    /// definition becomes a message asking for its work.
    fn runtime_input(&self, ev: UserEvent) -> UserEvent {
        match (ev.kind.as_str(), &self.outcome) {
            ("user.define_outcome", Some(c)) => UserEvent {
                seq: ev.seq,
                kind: "user.message".into(),
                body: cycle::message_body(&cycle::work_text(&c.outcome)),
            },
            _ => ev,
        }
    }

    /// A turn ended with `stop`. An outcome's working turn is graded
    /// (true: the turn goes on while the grader works); otherwise the
    /// outcome ends with the turn.
    fn outcome_turn_ended(&mut self, stop: &Value, out: &mut Vec<Effect>) -> bool {
        let interrupted = self.interrupt_deadline.is_some();
        let Some(c) = self.outcome.as_mut() else { return false };
        match c.after_turn(stop, interrupted) {
            AfterTurn::Done => {
                self.outcome = None;
                false
            }
            AfterTurn::Ended(end, why) => {
                self.outcome_over(end, &why, out);
                false
            }
            AfterTurn::Evaluate => {
                let start_id = new_id(Kind::Event);
                c.phase = Phase::Evaluating { start_id: start_id.clone() };
                let job = Job { outcome: c.outcome.clone(), iteration: c.iteration, result: c.result.join("\n\n") };
                let ev = json!({"type": "span.outcome_evaluation_start", "id": start_id, "outcome_id": c.outcome.id,
                                "iteration": c.iteration});
                self.host_event(ev, out);
                self.end_burst(out);
                out.push(Effect::Grade(job));
                true
            }
        }
    }

    /// The grader answered for the round in evaluation.
    fn on_graded(&mut self, graded: Graded, out: &mut Vec<Effect>) {
        let Some(c) = self.outcome.as_mut() else { return };
        let Some(start_id) = c.evaluating().map(str::to_owned) else { return };
        if let Value::Object(u) = &graded.usage {
            add_usage(&mut self.usage, u);
            self.usage_dirty = true;
        }
        let grade = match graded.grade {
            Ok(grade) => grade,
            Err(why) => {
                let id = c.outcome.id.clone();
                self.outcome_end(&start_id, End::Failed.as_str(), &why, graded.usage, out);
                self.outcome = None;
                let message = format!("outcome `{id}`: the grader gave no verdict: {why}");
                self.fact(Fact::Refused { error_type: "model_request_failed_error".into(), message }, out);
                return self.finish_turn(json!({"type": "end_turn"}), out);
            }
        };
        let (result, after) = c.after_verdict(&grade);
        self.outcome_end(&start_id, result, &grade.explanation, graded.usage, out);
        let Some(c) = self.outcome.as_mut() else { return };
        let next = match after {
            AfterVerdict::Revise(text) => {
                c.iteration += 1;
                c.phase = Phase::Working;
                c.result.clear();
                Some(text)
            }
            AfterVerdict::Acknowledge(text) => {
                c.phase = Phase::Acknowledging;
                Some(text)
            }
            AfterVerdict::Finish => None,
        };
        match next {
            Some(text) => {
                // The next round's input is the grader's feedback.
                let ev = UserEvent { seq: 0, kind: "user.message".into(), body: cycle::message_body(&text) };
                if self.runtime_up {
                    out.push(Effect::Deliver(PluginCall::Input(ev)));
                } else {
                    self.starting = Some(Starting::Turn(ev));
                    out.push(Effect::StartRuntime);
                }
            }
            None => {
                self.outcome = None;
                self.finish_turn(json!({"type": "end_turn"}), out);
            }
        }
    }

    /// The outcome ends without a verdict (an interrupt, a failure): its
    /// evaluation span closes with `end` (opened first if none is).
    fn outcome_over(&mut self, end: End, explanation: &str, out: &mut Vec<Effect>) {
        let Some(c) = self.outcome.take() else { return };
        let start_id = match (&c.phase, c.evaluating()) {
            // Its result is already stored (max_iterations_reached).
            (Phase::Acknowledging, _) => return,
            (_, Some(id)) => {
                out.push(Effect::CancelGrade);
                id.to_owned()
            }
            (_, None) => {
                let id = new_id(Kind::Event);
                let ev = json!({"type": "span.outcome_evaluation_start", "id": id, "outcome_id": c.outcome.id,
                                "iteration": c.iteration});
                self.host_event(ev, out);
                id
            }
        };
        self.outcome = Some(c);
        self.outcome_end(&start_id, end.as_str(), explanation, Value::Null, out);
        self.outcome = None;
    }

    fn outcome_end(&mut self, start_id: &str, result: &str, explanation: &str, usage: Value, out: &mut Vec<Effect>) {
        let Some(c) = &self.outcome else { return };
        let usage = match usage {
            Value::Object(u) => Value::Object(u),
            _ => json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0}),
        };
        let ev = json!({"type": "span.outcome_evaluation_end", "outcome_evaluation_start_id": start_id,
                        "outcome_id": c.outcome.id, "iteration": c.iteration, "result": result,
                        "explanation": explanation, "usage": usage});
        self.host_event(ev, out);
    }

    /// End the turn now (no runtime turn is in progress) and take the next.
    fn finish_turn(&mut self, stop: Value, out: &mut Vec<Effect>) {
        let stop = self.stop_reason(stop);
        self.fact(Fact::TurnEnded(stop), out);
        self.turn_over();
        self.next_queued(out);
    }
}

fn ev_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The text of an `agent.message`.
pub(crate) fn message_text(event: &Map<String, Value>) -> String {
    event
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""))
        .unwrap_or_default()
}

/// Add a `span.model_request_end` usage to the session's running totals.
pub fn add_usage(total: &mut Map<String, Value>, u: &Map<String, Value>) {
    for key in ["input_tokens", "output_tokens", "cache_read_input_tokens"] {
        if let Some(n) = u.get(key).and_then(Value::as_u64) {
            let cur = total.get(key).and_then(Value::as_u64).unwrap_or(0);
            total.insert(key.into(), json!(cur + n));
        }
    }
    if let Some(n) = u.get("cache_creation_input_tokens").and_then(Value::as_u64) {
        let cc = total.entry("cache_creation").or_insert_with(|| json!({}));
        if let Some(cc) = cc.as_object_mut() {
            let cur = cc.get("ephemeral_5m_input_tokens").and_then(Value::as_u64).unwrap_or(0);
            cc.insert("ephemeral_5m_input_tokens".into(), json!(cur + n));
        }
    }
}

#[cfg(test)]
mod tests;
