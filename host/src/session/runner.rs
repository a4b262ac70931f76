//! The runner of one live session: it takes the session's user events in
//! order, starts the agent runtime in the session's sandbox from the harness
//! plugin's launch plan, pumps the runtime's output through the plugin, and
//! stores and fans out the resulting events. Status events come only from
//! the [`StatusMachine`]; plugin events are checked before they are stored.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bridle_harness::{
    Action, ApiShape, ExecutionModel, HarnessError, LlmEndpoint, PluginSession, RetryStatus, ToolCall, ToolResult,
};
use bridle_sandbox::tools::{ToolConfig, ToolSandbox};
use bridle_sandbox::{BoxedWrite, ExecControl, ExecRequest, ExitStatus, Sandbox, SandboxSpec};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::Sessions;
use super::engine::add_usage;
use super::launch::{self, Placement};
use super::orphans;
use super::resident::ResidentProc;
use super::status::{Fact, StatusMachine};
use super::validate::check_plugin_event;
use crate::ids::{Kind, new_id};
use crate::model::environments::Environment;
use crate::model::events::{NewEvent, StoredEvent};
use crate::model::sessions::{HarnessBinding, SessionStatus};
use crate::model::vaults::{Credential, CredentialSecrets};
use crate::store::{RunnerState, StatusChange, StoreError, Table};
use crate::time::now_micros;

/// Lines of runtime stderr kept for error messages.
const STDERR_TAIL: usize = 20;
/// How long an idle runner without a runtime lingers before its task ends.
const LINGER: Duration = Duration::from_secs(30);
/// Most runtime lines, and plain events, handled as one burst of output
/// (stored in one commit); bounds how long user input waits behind a burst.
const BURST_LINES: usize = 64;
const BURST_EVENTS: usize = 256;

/// Run one session until it has nothing left to do.
pub(crate) async fn run(host: Arc<Sessions>, id: String, mut rx: mpsc::UnboundedReceiver<()>) {
    let mut runner = match Runner::load(host.clone(), id.clone()).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            // The owner (woken by the database notification) takes the input.
            tracing::debug!("another node owns this session");
            host.runner_gone(&id, rx);
            return;
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot start the session runner");
            host.runner_gone(&id, rx);
            return;
        }
    };
    runner.main(&mut rx).await;
    runner.shutdown_runtime("runner ended").await;
    runner.release().await;
    host.runner_gone(&id, rx);
}

/// A line from the runtime (with when it was read, epoch µs), or its end.
pub(crate) enum Out {
    Line(String, i64),
    Exit(ExitStatus),
}

/// A running runtime and what belongs to it.
struct Runtime {
    plugin: PluginSession,
    io: Io,
    out: mpsc::Receiver<Out>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// How the runner reaches the runtime.
enum Io {
    /// Agent in sandbox: the runtime process of this session, in its sandbox.
    Own { sandbox: Arc<dyn Sandbox>, stdin: Option<BoxedWrite>, control: Arc<dyn ExecControl> },
    /// Sandbox as tool: a shared resident process; the sandbox is claimed on
    /// the first tool call.
    Resident { proc: Arc<ResidentProc>, tools: Box<ToolSandbox>, api_key: String },
}

struct Runner {
    host: Arc<Sessions>,
    id: String,
    binding: HarnessBinding,
    agent: Value,
    environment_id: String,
    machine: StatusMachine,
    state: RunnerState,
    /// A turn is in progress (between taking a message and its end).
    turn: bool,
    /// Messages that arrived during a turn, taken in order after it.
    queue: VecDeque<StoredEvent>,
    rt: Option<Runtime>,
    /// Keeps the sandbox from idle release while a turn runs.
    busy: Option<bridle_sandbox::BusyGuard>,
    interrupt_deadline: Option<Instant>,
    last_activity: Instant,
    usage: Map<String, Value>,
    /// The lease epoch this runner claimed; every write carries it.
    epoch: i64,
    /// Another node adopted the session: stop without writing.
    fenced: bool,
    /// The user event of a turn being started, saved with its status.
    start_seq: Option<i64>,
    /// A resume token not yet stored (it is, when its turn ends).
    resume_unsaved: bool,
    /// A turn cut off by the previous owner's end, to resume first.
    recover: Option<Option<StoredEvent>>,
    /// Tool calls the log says wait on the user, held by a runtime that is
    /// gone (this runner is new): their turn is ended first.
    orphaned: Vec<String>,
    /// When the runtime line being handled was read (epoch µs), for the
    /// `bridle::ingest` debug record of live-event latency.
    line_read_at: Option<i64>,
    /// A burst of runtime output is being handled: its plain events wait in
    /// `held` and are stored in one commit (see `emit`).
    holding: bool,
    held: Vec<NewEvent>,
    /// This session in the live-sessions gauge, under its current status.
    live: crate::metrics::LiveSession,
}

/// Why the runtime could not be started, in words for `session.error`.
struct StartError {
    error_type: &'static str,
    message: String,
}

impl StartError {
    fn new(message: impl Into<String>) -> Self {
        StartError { error_type: "unknown_error", message: message.into() }
    }
}

impl Runner {
    /// Claim the session and load it; `None` when another node owns it.
    async fn load(host: Arc<Sessions>, id: String) -> anyhow::Result<Option<Runner>> {
        let Some(claim) = host.store.claim_session(&id, &host.node, host.lease.lease_micros()).await? else {
            return Ok(None);
        };
        let row = host.store.get_session(&id).await?.context("session not found")?;
        let state = host.store.runner_state(&id).await?.unwrap_or_default();
        let usage = row.session.usage.as_object().cloned().unwrap_or_default();
        let was_running = matches!(row.session.status, SessionStatus::Running | SessionStatus::Rescheduling);
        let live = crate::metrics::LiveSession::new(&row.binding.engine, row.session.status);
        let mut runner = Runner {
            host,
            id,
            binding: row.binding,
            agent: row.session.agent,
            environment_id: row.session.environment_id,
            machine: StatusMachine::new(row.session.status),
            state,
            turn: false,
            queue: VecDeque::new(),
            rt: None,
            busy: None,
            interrupt_deadline: None,
            last_activity: Instant::now(),
            usage,
            epoch: claim.epoch,
            fenced: false,
            start_seq: None,
            resume_unsaved: false,
            recover: None,
            orphaned: Vec::new(),
            line_read_at: None,
            holding: false,
            held: Vec::new(),
            live,
        };
        // User events taken in after the last turn started were queued
        // messages (or input for that turn); a runner that died left them.
        let taken = if runner.state.input_seq > claim.turn_seq {
            runner.host.store.user_events_between(&runner.id, claim.turn_seq + 1, runner.state.input_seq).await?
        } else {
            Vec::new()
        };
        runner.queue = taken.iter().filter(|e| e.kind == "user.message").cloned().collect();
        // A session left mid-turn (its node died or parked it): resume that
        // turn, unless the user interrupted it.
        if was_running {
            let turn = match claim.turn_seq {
                0 => None,
                seq => runner.host.store.events_between(&runner.id, seq, seq).await?.pop(),
            };
            let interrupted = taken.iter().any(|e| e.kind == "user.interrupt");
            runner.recover = Some(turn.filter(|_| !interrupted));
        }
        if runner.machine.status() == SessionStatus::Idle {
            runner.orphaned = orphans::pending_in_log(&runner.host.store, &runner.id).await?;
        }
        Ok(Some(runner))
    }

    async fn main(&mut self, rx: &mut mpsc::UnboundedReceiver<()>) {
        if !self.orphaned.is_empty()
            && let Err(e) = self.end_orphaned_wait().await
        {
            tracing::error!(error = format!("{e:#}"), "ending the orphaned tool calls' turn failed");
        }
        if let Some(turn) = self.recover.take()
            && let Err(e) = self.resume_turn(turn).await
        {
            tracing::error!(error = format!("{e:#}"), "resuming the cut-off turn failed");
        }
        if !self.turn
            && let Err(e) = self.next_queued().await
        {
            tracing::error!(error = format!("{e:#}"), "starting a queued message failed");
        }
        loop {
            if self.fenced {
                tracing::warn!("another node adopted this session; this runner stops");
                return;
            }
            let idle_at = (!self.turn && self.rt.is_some()).then(|| self.last_activity + self.host.timing.runtime_idle);
            let linger_at = (!self.turn && self.rt.is_none()).then(|| self.last_activity + LINGER);
            tokio::select! {
                wake = rx.recv() => {
                    if wake.is_none() {
                        return;
                    }
                    if let Err(e) = self.take_inputs().await {
                        tracing::error!(error = format!("{e:#}"), "taking user events failed");
                    }
                }
                out = recv_out(&mut self.rt) => {
                    self.last_activity = Instant::now();
                    if let Err(e) = self.on_out(out).await {
                        tracing::error!(error = format!("{e:#}"), "handling runtime output failed");
                    }
                }
                () = sleep_until(self.interrupt_deadline) => {
                    self.interrupt_deadline = None;
                    if self.turn {
                        tracing::warn!("runtime did not end its turn after an interrupt; stopping it");
                        self.shutdown_runtime("interrupt grace period over").await;
                        let _ = self.apply_fact(Fact::TurnEnded(json!({"type": "end_turn"}))).await;
                        self.turn_over();
                        let _ = self.next_queued().await;
                    }
                }
                () = sleep_until(idle_at) => {
                    tracing::info!("runtime idle; stopping it (it resumes on the next message)");
                    self.shutdown_runtime("idle").await;
                    self.last_activity = Instant::now();
                }
                () = sleep_until(linger_at) => {
                    if self.host.leave(&self.id, rx) {
                        return;
                    }
                    self.last_activity = Instant::now();
                    if let Err(e) = self.take_inputs().await {
                        tracing::error!(error = format!("{e:#}"), "taking user events failed");
                    }
                }
            }
        }
    }

    /// Take every user event stored since the last one taken.
    async fn take_inputs(&mut self) -> anyhow::Result<()> {
        loop {
            let events = self.host.store.user_events_after(&self.id, self.state.input_seq).await?;
            if events.is_empty() {
                return Ok(());
            }
            for ev in events {
                self.state.input_seq = ev.seq;
                let r = self.host.store.set_input_seq_fenced(&self.id, self.epoch, ev.seq).await;
                self.fence(r)?;
                self.last_activity = Instant::now();
                self.on_input(ev).await?;
            }
        }
    }

    async fn on_input(&mut self, ev: StoredEvent) -> anyhow::Result<()> {
        match ev.kind.as_str() {
            "user.message" if self.turn => {
                self.queue.push_back(ev);
                Ok(())
            }
            "user.message" => self.start_turn(ev).await,
            "user.interrupt" => {
                if self.turn {
                    self.interrupt_deadline = Some(Instant::now() + self.host.timing.interrupt_grace);
                    self.plugin_input(&ev).await
                } else {
                    Ok(())
                }
            }
            "user.tool_confirmation" | "user.custom_tool_result" => {
                let body: Value = serde_json::from_str(&ev.body)?;
                let target = body
                    .get("tool_use_id")
                    .or_else(|| body.get("custom_tool_use_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if !self.machine.pending().contains(&target) {
                    return self.answer_undelivered(&ev.kind, &target).await;
                }
                self.apply_fact(Fact::Answered(vec![target])).await?;
                self.plugin_input(&ev).await
            }
            other => {
                tracing::warn!(kind = other, "user event type the runner does not handle");
                Ok(())
            }
        }
    }

    async fn start_turn(&mut self, ev: StoredEvent) -> anyhow::Result<()> {
        self.turn = true;
        self.start_seq = Some(ev.seq);
        self.apply_fact(Fact::TurnStarted).await?;
        if self.rt.is_none()
            && let Err(e) = self.start_runtime().await
        {
            tracing::warn!(error = %e.message, "runtime could not start");
            self.fail_turn(e.error_type, &e.message).await?;
            return Ok(());
        }
        self.busy = match self.rt.as_ref().map(|rt| &rt.io) {
            Some(Io::Own { sandbox, .. }) => Some(sandbox.busy()),
            _ => None,
        };
        self.plugin_input(&ev).await
    }

    /// End the turn with a failure the session can recover from.
    async fn fail_turn(&mut self, error_type: &str, message: &str) -> anyhow::Result<()> {
        self.apply_fact(Fact::Failed { error_type: error_type.into(), message: message.into(), terminal: false })
            .await?;
        self.turn_over();
        self.next_queued().await
    }

    /// This runner is new, yet the log says tool calls wait on the user: the
    /// runtime that held them is gone (server restart, adoption by this
    /// node), so end their turn in the open (see [`orphans`]).
    async fn end_orphaned_wait(&mut self) -> anyhow::Result<()> {
        let ids = std::mem::take(&mut self.orphaned);
        tracing::warn!(?ids, "tool calls wait on a runtime that is gone; ending their turn");
        let cause = "the agent runtime holding the call stopped (the server restarted, or another node took the \
                     session over)";
        let message = orphans::lost_calls_message(&ids, cause);
        self.apply_fact(Fact::Failed { error_type: "unknown_error".into(), message, terminal: false }).await
    }

    /// An answer the API took (its call was pending in the log) that no
    /// runtime here waits for: its turn ended before the runner got to it.
    /// Report it rather than drop it; between turns also end with an idle
    /// status, so a client waiting for the answer's outcome sees one.
    async fn answer_undelivered(&mut self, kind: &str, target: &str) -> anyhow::Result<()> {
        tracing::warn!(target = %target, "answer for a tool call whose turn ended; reported");
        let message = orphans::undelivered_answer_message(kind, target);
        let error_type = "unknown_error".to_owned();
        let fact = match self.turn {
            // During a turn: report it, the turn goes on.
            true => Fact::Refused { error_type, message },
            false => Fact::Failed { error_type, message, terminal: false },
        };
        self.apply_fact(fact).await
    }

    /// Between turns: no deadline, the sandbox may idle.
    fn turn_over(&mut self) {
        self.turn = false;
        self.busy = None;
        self.interrupt_deadline = None;
    }

    /// Start the next queued message, if any.
    async fn next_queued(&mut self) -> anyhow::Result<()> {
        if let Some(next) = self.queue.pop_front() {
            Box::pin(self.start_turn(next)).await?;
        }
        Ok(())
    }

    async fn plugin_input(&mut self, ev: &StoredEvent) -> anyhow::Result<()> {
        let Some(rt) = self.rt.as_mut() else { return Ok(()) };
        let result = rt.plugin.on_input(&ev.body).await;
        self.after_plugin_call(result).await
    }

    async fn on_out(&mut self, out: Out) -> anyhow::Result<()> {
        match out {
            Out::Line(line, read_at) => {
                // Lines the runtime has already written join this one: their
                // plain events are stored together, in order, in one commit.
                self.holding = true;
                let (mut line, mut read_at, mut lines, mut exit) = (line, read_at, 0, None);
                let done = loop {
                    let Some(rt) = self.rt.as_mut() else { break Ok(()) };
                    let result = rt.plugin.on_output(&line).await;
                    self.line_read_at.get_or_insert(read_at);
                    if let Err(e) = self.after_plugin_call(result).await {
                        break Err(e);
                    }
                    lines += 1;
                    if lines >= BURST_LINES || self.held.len() >= BURST_EVENTS {
                        break Ok(());
                    }
                    match self.rt.as_mut().map(|rt| rt.out.try_recv()) {
                        Some(Ok(Out::Line(next, at))) => (line, read_at) = (next, at),
                        Some(Ok(out)) => {
                            exit = Some(out);
                            break Ok(());
                        }
                        _ => break Ok(()),
                    }
                };
                self.holding = false;
                let flushed = self.emit(None, Vec::new()).await;
                self.line_read_at = None;
                done?;
                flushed?;
                match exit {
                    Some(out) => Box::pin(self.on_out(out)).await,
                    None => Ok(()),
                }
            }
            Out::Exit(status) => {
                let Some(mut rt) = self.rt.take() else { return Ok(()) };
                let stderr = tail(&rt.stderr);
                // A runtime that died of a sandbox limit (directly, or by
                // aborting when it could not get a thread) is reported as
                // that limit, whatever the plugin makes of the exit.
                let limit = status.limit().or_else(|| match &rt.io {
                    Io::Own { sandbox, .. } => sandbox.limit_hit(),
                    Io::Resident { .. } => None,
                });
                tracing::info!(%status, ?limit, "runtime exited");
                let mut actions = rt.plugin.on_exit(status.code()).await.unwrap_or_default();
                release_io(rt.io, &self.id).await;
                // Calls waiting on the user died with the runtime: say so.
                let waiting = self.machine.pending().to_vec();
                if self.resume_unsaved {
                    // A runtime that died mid-turn may not have written what
                    // its new token names yet (Claude Code writes its
                    // transcript late, and "No conversation found" would fail
                    // every later message): resume from the token of the last
                    // finished turn, as after a restart or failover.
                    self.state.resume = self.host.store.runner_state(&self.id).await?.and_then(|s| s.resume);
                    self.resume_unsaved = false;
                }
                let lost = |why: String| match waiting.is_empty() {
                    true => why,
                    false => orphans::lost_calls_message(&waiting, &why),
                };
                if let (Some(limit), true) = (limit, self.turn) {
                    let why = lost(format!("the agent runtime was stopped: sandbox {limit} limit exceeded"));
                    return self.fail_turn("unknown_error", &why).await;
                }
                if !waiting.is_empty() {
                    orphans::name_lost_calls(&mut actions, &waiting);
                }
                self.apply_actions(actions).await?;
                if self.turn {
                    let why = match limit {
                        Some(limit) => format!("the agent runtime was stopped: sandbox {limit} limit exceeded"),
                        None => format!("the agent runtime {status} before finishing the turn{stderr}"),
                    };
                    self.fail_turn("unknown_error", &lost(why)).await?;
                }
                Ok(())
            }
        }
    }

    /// Handle a plugin call's result: its actions, or its fault.
    async fn after_plugin_call(&mut self, result: Result<Vec<Action>, HarnessError>) -> anyhow::Result<()> {
        match result {
            Ok(actions) => self.apply_actions(actions).await,
            Err(e) if e.is_fault() => {
                tracing::error!(error = %e, "harness plugin fault; stopping the runtime");
                self.shutdown_runtime("plugin fault").await;
                if self.turn {
                    self.fail_turn("unknown_error", &format!("harness {e}")).await?;
                }
                Ok(())
            }
            Err(e) => {
                // The plugin could not map this input or line: log it, go on.
                tracing::warn!(error = %e, "harness plugin refused an input");
                Ok(())
            }
        }
    }

    async fn apply_actions(&mut self, actions: Vec<Action>) -> anyhow::Result<()> {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            // Held events are stored before anything else happens.
            if !matches!(action, Action::Emit(_) | Action::Checkpoint(_)) {
                self.flush_held().await?;
            }
            match action {
                Action::Emit(json) => {
                    if let Err(msg) = self.emit_plugin_event(&json).await? {
                        tracing::error!(error = %msg, event = %truncate(&json, 500), "plugin emitted an invalid event");
                        self.flush_held().await?;
                        self.shutdown_runtime("invalid plugin event").await;
                        if self.turn {
                            let m = format!("harness plugin `{}` emitted an invalid event: {msg}", self.binding.engine);
                            self.fail_turn("unknown_error", &m).await?;
                        }
                        return Ok(());
                    }
                }
                Action::Write(bytes) => self.write_stdin(&bytes).await,
                Action::Retrying(r) => {
                    tracing::info!(attempt = r.attempt, error_type = %r.error_type, "runtime retrying a model request");
                    self.apply_fact(Fact::Retrying { error_type: r.error_type, message: r.message }).await?;
                }
                Action::Resumed => self.apply_fact(Fact::Resumed).await?,
                Action::ToolCall(call) => {
                    // What follows a host-run tool is not this line's output.
                    self.line_read_at = None;
                    let result = self.run_tool(&call).await;
                    if let Some(rt) = self.rt.as_mut() {
                        match rt.plugin.on_tool_result(&result).await {
                            Ok(more) => work.extend(more),
                            Err(e) => return Box::pin(self.after_plugin_call(Err(e))).await,
                        }
                    }
                }
                Action::Checkpoint(token) => {
                    // Kept once the turn ends: a runtime cut off in its
                    // first turn may not have saved what the token names
                    // (Claude Code writes its transcript late).
                    self.state.resume = Some(token);
                    self.resume_unsaved = true;
                }
                Action::TurnEnded(stop) => {
                    let stop = serde_json::to_value(stop).context("serializing a stop reason")?;
                    self.save_resume().await?;
                    self.apply_fact(Fact::TurnEnded(stop)).await?;
                    self.turn_over();
                    self.next_queued().await?;
                }
                Action::Failed(failure) => {
                    let terminal = failure.retry == RetryStatus::Terminal;
                    self.save_resume().await?;
                    let (error_type, message) = (failure.error_type, failure.message);
                    self.apply_fact(Fact::Failed { error_type, message, terminal }).await?;
                    self.turn_over();
                    if terminal {
                        self.shutdown_runtime("terminal failure").await;
                    } else {
                        self.next_queued().await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Check, id and store one plugin event. `Ok(Err(msg))` when invalid.
    async fn emit_plugin_event(&mut self, json: &str) -> anyhow::Result<Result<(), String>> {
        let mut map = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Ok(Err("not a JSON object".into())),
            Err(e) => return Ok(Err(format!("not JSON: {e}"))),
        };
        if let Err(e) = check_plugin_event(&map) {
            return Ok(Err(e.to_string()));
        }
        if !map.contains_key("id") {
            map.insert("id".into(), Value::String(new_id(Kind::Event)));
        }
        if map.get("type").and_then(Value::as_str) == Some("span.model_request_end")
            && let Some(Value::Object(u)) = map.get("model_usage")
        {
            add_usage(&mut self.usage, u);
        }
        self.apply_fact(Fact::Event(map)).await?;
        Ok(Ok(()))
    }

    /// Run a fact through the status machine; store what it yields.
    async fn apply_fact(&mut self, fact: Fact) -> anyhow::Result<()> {
        let step = self.machine.apply(fact);
        self.live.set(self.machine.status());
        // The status row changes in the same transaction as the events that
        // announce it: a client that reacts to a status event by fetching
        // the session sees that status, and a crash loses neither.
        let status = step
            .status_changed
            .then(|| StatusChange { status: self.machine.status(), usage: Value::Object(self.usage.clone()) });
        self.emit(status, step.events).await
    }

    /// Store events (after any held ones, in the same commit), with a
    /// status change and a turn start when given. During a burst, plain
    /// events are held instead (a status change never waits).
    async fn emit(&mut self, status: Option<StatusChange>, events: Vec<Map<String, Value>>) -> anyhow::Result<()> {
        let mut new: Vec<NewEvent> = events
            .into_iter()
            .map(|mut body| {
                let id = body.remove("id").and_then(|v| v.as_str().map(str::to_owned));
                NewEvent { id, body }
            })
            .collect();
        if self.holding && status.is_none() && self.start_seq.is_none() {
            self.held.append(&mut new);
            return Ok(());
        }
        if !self.held.is_empty() {
            new.splice(0..0, self.held.drain(..));
        }
        if new.is_empty() && status.is_none() && self.start_seq.is_none() {
            return Ok(());
        }
        let turn_seq = self.start_seq.take();
        let r = self.host.store.runner_commit(&self.id, self.epoch, status, turn_seq, new).await;
        let stored = self.fence(r)?;
        self.host.bus.publish(&self.id, &stored);
        if let (Some(read_at), Some(first), Some(last)) = (self.line_read_at, stored.first(), stored.last()) {
            // Pairs an SSE frame's `id:` (seq) with when its runtime line was read.
            tracing::debug!(target: "bridle::ingest", session_id = %self.id, read_at_us = read_at, first_seq = first.seq, last_seq = last.seq, "runtime output stored");
            // Later lines of the burst are stamped from their own reads.
            self.line_read_at = None;
        }
        Ok(())
    }

    /// Store the events held during a burst now (its next step has effects
    /// beyond the log, or comes much later).
    async fn flush_held(&mut self) -> anyhow::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let holding = std::mem::replace(&mut self.holding, false);
        let r = self.emit(None, Vec::new()).await;
        self.holding = holding;
        r
    }

    /// Store the runtime's resume token taken during the turn that ends.
    async fn save_resume(&mut self) -> anyhow::Result<()> {
        if let (true, Some(token)) = (self.resume_unsaved, self.state.resume.clone()) {
            let r = self.host.store.set_resume_fenced(&self.id, self.epoch, &token).await;
            self.fence(r)?;
            self.resume_unsaved = false;
        }
        Ok(())
    }

    /// Note a fenced write (another node adopted the session) so the
    /// runner stops; pass every result on.
    fn fence<T>(&mut self, r: Result<T, StoreError>) -> anyhow::Result<T> {
        if let Err(StoreError::Fenced(_)) = &r {
            self.fenced = true;
        }
        Ok(r?)
    }

    /// Resume the turn the previous owner of this session was running when
    /// it died or parked it: `session.status_rescheduled`, the runtime
    /// started again with its resume token, `session.status_running`, and
    /// the turn's message delivered to it again.
    async fn resume_turn(&mut self, turn: Option<StoredEvent>) -> anyhow::Result<()> {
        tracing::info!(turn_seq = turn.as_ref().map(|t| t.seq), "adopting a session cut off mid-turn");
        self.apply_fact(Fact::Adopted).await?;
        let Some(ev) = turn else {
            // Nothing to resume (the turn was interrupted): end it.
            self.apply_fact(Fact::TurnEnded(json!({"type": "end_turn"}))).await?;
            return Ok(());
        };
        self.turn = true;
        if let Err(e) = self.start_runtime().await {
            tracing::warn!(error = %e.message, "runtime could not be resumed");
            return self.fail_turn(e.error_type, &e.message).await;
        }
        self.apply_fact(Fact::Resumed).await?;
        self.busy = match self.rt.as_ref().map(|rt| &rt.io) {
            Some(Io::Own { sandbox, .. }) => Some(sandbox.busy()),
            _ => None,
        };
        self.plugin_input(&ev).await
    }

    /// The runner ends: give the lease up. A turn in progress (the node is
    /// shutting down) is handed over so another node resumes it at once;
    /// user input that arrived after the last take wakes a runner again.
    async fn release(&mut self) {
        if self.fenced {
            return;
        }
        let handover = self.turn || !self.queue.is_empty();
        if let Err(e) = self.host.store.release_session(&self.id, self.epoch, handover).await {
            tracing::warn!(error = format!("{e:#}"), "releasing the session lease failed; it lapses on its own");
            return;
        }
        if handover {
            tracing::info!("session parked mid-turn; another node resumes it");
            return;
        }
        match self.host.store.user_events_after(&self.id, self.state.input_seq).await {
            Ok(events) if !events.is_empty() => self.host.wake(&self.id),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "checking for new user events failed"),
        }
    }

    async fn write_stdin(&mut self, bytes: &[u8]) {
        let Some(rt) = self.rt.as_mut() else { return };
        let res = match &mut rt.io {
            Io::Own { stdin: Some(stdin), .. } => {
                async {
                    stdin.write_all(bytes).await?;
                    stdin.flush().await
                }
                .await
            }
            Io::Own { stdin: None, .. } => Ok(()),
            Io::Resident { proc, api_key, .. } => {
                // One JSON message per write; the host frames it and adds
                // the session's key to `start` (the plugin never holds it).
                match serde_json::from_slice::<Value>(bytes) {
                    Ok(mut msg) => {
                        if msg.get("type").and_then(Value::as_str) == Some("start") {
                            msg["api_key"] = Value::String(api_key.clone());
                        }
                        proc.send(&self.id, msg).await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "plugin wrote a non-JSON message for the resident runtime");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = res {
            // The exit that follows reports the failure; keep the log line.
            tracing::warn!(error = %e, "writing to the runtime failed");
        }
    }

    /// The model credential and upstream URL of this session.
    async fn credential(&mut self, api_shape: ApiShape) -> Result<(String, String), StartError> {
        let default_url = launch::default_base_url(api_shape);
        let Some(cred_id) = &self.binding.credential_id else {
            let llm = &self.host.config.default_llm;
            let Some(key) = &llm.api_key else {
                return Err(StartError::new(
                    "no model credential: this session has no LLM vault and the server has no default_llm.api_key configured; \
                     attach a vault with sandbox0.managed_agents.role = \"llm\" holding the provider token",
                ));
            };
            let url = llm.base_url.clone().or_else(|| self.binding.llm_base_url.clone());
            return Ok((key.clone(), url.unwrap_or_else(|| default_url.to_owned())));
        };
        let row = self
            .host
            .store
            .get_doc::<Credential>(Table::Credentials, cred_id)
            .await
            .map_err(|e| StartError::new(format!("reading the LLM credential failed: {e}")))?;
        let Some(row) = row.filter(|r| !r.archived) else {
            return Err(StartError::new(format!(
                "the LLM credential `{cred_id}` selected at session create was deleted or archived"
            )));
        };
        let sealed = row.sealed.unwrap_or_default();
        let secrets: CredentialSecrets = self
            .host
            .secrets
            .open(&sealed)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| StartError::new("the LLM credential cannot be decrypted with this server's key"))?;
        let token = secrets.token.ok_or_else(|| StartError::new("the LLM credential has no token"))?;
        Ok((token, self.binding.llm_base_url.clone().unwrap_or_else(|| default_url.to_owned())))
    }

    async fn start_runtime(&mut self) -> Result<(), StartError> {
        let plugin = self.host.harness.plugin(&self.binding.engine).map_err(|e| StartError::new(e.to_string()))?;
        let (token, upstream) = self.credential(plugin.info().api_shape).await?;
        let model = self.agent.pointer("/model/id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let llm = LlmEndpoint { base_url: Some(upstream.clone()), model: model.clone() };
        let plan = plugin.credentials(&llm).await.map_err(|e| StartError::new(e.to_string()))?;
        let driver = self.host.sandboxes.clone().map_err(StartError::new)?;
        let resident = plugin.info().execution_model == ExecutionModel::SandboxAsTool;
        let env = self
            .host
            .store
            .get_doc::<Environment>(Table::Environments, &self.environment_id)
            .await
            .map_err(|e| StartError::new(format!("reading the environment failed: {e}")))?
            .ok_or_else(|| StartError::new(format!("environment `{}` was deleted", self.environment_id)))?;
        let mut spec = SandboxSpec::new(self.id.clone());
        spec.egress =
            launch::egress(env.doc.config.networking, &self.agent, &self.host.config.sessions.package_manager_hosts);
        spec.workspace_bytes =
            launch::workspace_bytes(&env.doc.metadata, self.host.config.sessions.sandbox_disk_bytes_max)
                .map_err(StartError::new)?;
        if resident {
            // Sandbox as tool: the sandbox runs tools only; the resident
            // runtime reaches the model itself with the key the host adds.
            let rt = self.start_resident(&plugin, driver, spec, token, upstream, model).await?;
            self.rt = Some(rt);
            return Ok(());
        }
        spec.llm = Some(bridle_sandbox::LlmRoute {
            base_url: upstream.clone(),
            header_rules: plan
                .inject
                .iter()
                .map(|r| bridle_sandbox::HeaderRule {
                    header: r.header.clone(),
                    value_template: r.value_template.clone(),
                })
                .collect(),
            token: bridle_sandbox::Secret::new(token),
            allowed: crate::model_paths::for_shape(plugin.info().api_shape),
        });
        spec.env = plan.env.clone();
        let sandbox = driver.claim(spec).await.map_err(|e| StartError::new(format!("sandbox: {e}")))?;
        let placement =
            Placement::Sandbox { workspace: sandbox.workspace_inside(), llm_base_url: sandbox.llm_base_url_inside() };
        let session_spec =
            launch::session_spec(&self.id, &self.agent, self.state.resume.as_deref(), &upstream, &model, placement);
        match self.launch(&plugin, sandbox.clone(), &session_spec).await {
            Ok(rt) => {
                self.rt = Some(rt);
                Ok(())
            }
            Err(e) => {
                let _ = sandbox.stop().await;
                Err(e)
            }
        }
    }

    async fn start_resident(
        &mut self,
        plugin: &bridle_harness::Plugin,
        driver: Arc<dyn bridle_sandbox::SandboxDriver>,
        spec: SandboxSpec,
        token: String,
        upstream: String,
        model: String,
    ) -> Result<Runtime, StartError> {
        let session_spec = launch::session_spec(
            &self.id,
            &self.agent,
            self.state.resume.as_deref(),
            &upstream,
            &model,
            Placement::Resident,
        );
        let mut session = plugin.new_session(&session_spec).await.map_err(|e| StartError::new(e.to_string()))?;
        let plan = session.launch().await.map_err(|e| StartError::new(e.to_string()))?;
        let mut argv = plan.argv.clone();
        let Some(program) = argv.first().cloned() else {
            return Err(StartError::new(format!("harness `{}` returned an empty launch command", self.binding.engine)));
        };
        argv[0] = self.host.runtimes.resolve_host(&program).map(|p| p.display().to_string()).ok_or_else(|| {
            StartError::new(format!(
                "the agent runtime `{program}` is not installed on this server; run `bridle runtimes install`"
            ))
        })?;
        let cwd = self.host.runtimes.runtimes.dir().to_path_buf();
        let (proc, out) = self
            .host
            .residents
            .attach(&self.binding.engine, &argv, &plan.env, &cwd, &self.id)
            .await
            .map_err(StartError::new)?;
        let tools = Box::new(ToolSandbox::new(driver, spec, ToolConfig::default()));
        tracing::info!(program = %program, "runtime started (session attached to the resident runtime)");
        Ok(Runtime {
            plugin: session,
            io: Io::Resident { proc, tools, api_key: token },
            out,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    async fn launch(
        &mut self,
        plugin: &bridle_harness::Plugin,
        sandbox: Arc<dyn Sandbox>,
        session_spec: &bridle_harness::SessionSpec,
    ) -> Result<Runtime, StartError> {
        let mut session = plugin.new_session(session_spec).await.map_err(|e| StartError::new(e.to_string()))?;
        let plan = session.launch().await.map_err(|e| StartError::new(e.to_string()))?;
        for f in &plan.files {
            write_file(sandbox.as_ref(), &f.path, &f.contents, f.mode).await?;
        }
        let mut argv = plan.argv.clone();
        let Some(program) = argv.first().cloned() else {
            return Err(StartError::new(format!("harness `{}` returned an empty launch command", self.binding.engine)));
        };
        argv[0] = self.host.runtimes.resolve_inside(&program).ok_or_else(|| {
            StartError::new(format!(
                "the agent runtime `{program}` is not installed on this server; run `bridle runtimes install`"
            ))
        })?;
        // The runtime waits between turns: it must not keep the sandbox busy
        // on its own (the runner holds a busy guard during each turn).
        let mut req = ExecRequest::new(argv).resident(true);
        req.env = plan.env.clone();
        req.cwd = plan.cwd.clone();
        let mut child = sandbox.exec(req).await.map_err(|e| StartError::new(format!("starting `{program}`: {e}")))?;
        tracing::info!(program = %program, sandbox = sandbox.id(), "runtime started");
        let (tx, out) = mpsc::channel(256);
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        // stderr is read to its end before the exit is reported, so the
        // error for a runtime that dies at start carries its last words.
        let stderr_done = child.stderr.take().map(|err| {
            let tail = stderr.clone();
            tokio::spawn(
                async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(target: "bridle::runtime_stderr", "{line}");
                        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
                .in_current_span(),
            )
        });
        if let Some(stdout) = child.stdout.take() {
            let control = child.control.clone();
            tokio::spawn(
                async move {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if tx.send(Out::Line(line, now_micros())).await.is_err() {
                            return;
                        }
                    }
                    let status = control.wait().await;
                    if let Some(done) = stderr_done {
                        let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
                    }
                    let _ = tx.send(Out::Exit(status)).await;
                }
                .in_current_span(),
            );
        }
        let io = Io::Own { sandbox, stdin: child.stdin.take(), control: child.control.clone() };
        Ok(Runtime { plugin: session, io, out, stderr })
    }

    /// Sandbox-as-tool: run one tool call in the session's sandbox (claimed
    /// on the first call). Returns the result JSON for the plugin.
    async fn run_tool(&mut self, call: &ToolCall) -> ToolResult {
        let id = call.id.clone();
        let Some(Runtime { io: Io::Resident { tools, .. }, .. }) = self.rt.as_mut() else {
            let content = "this harness has no sandbox tools".into();
            return ToolResult { id, content, is_error: true, exit_code: None };
        };
        tracing::debug!(tool = %call.name, "running a tool call in the sandbox");
        let r = tools.call(&call.name, &call.input).await;
        ToolResult { id, content: r.content, is_error: r.is_error, exit_code: r.exit_code }
    }

    /// Stop the runtime process and its sandbox (the workspace stays).
    async fn shutdown_runtime(&mut self, why: &str) {
        self.busy = None;
        let Some(rt) = self.rt.take() else { return };
        tracing::info!(why, "stopping the runtime");
        release_io(rt.io, &self.id).await;
    }
}

/// Let go of a runtime: kill an own process and stop its sandbox; detach
/// from a resident and release the tool sandbox (workspaces stay).
async fn release_io(io: Io, session_id: &str) {
    match io {
        Io::Own { sandbox, stdin, control } => {
            drop(stdin);
            let _ = control.kill().await;
            let _ = sandbox.stop().await;
        }
        Io::Resident { proc, tools, .. } => {
            proc.detach(session_id);
            let _ = tools.release().await;
        }
    }
}

async fn recv_out(rt: &mut Option<Runtime>) -> Out {
    match rt {
        Some(rt) => rt.out.recv().await.unwrap_or(Out::Exit(ExitStatus::SandboxGone)),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Write a launch-plan file into the workspace as the sandbox user, so it
/// ends up owned by the runtime that will read it.
async fn write_file(sandbox: &dyn Sandbox, path: &str, contents: &[u8], mode: u32) -> Result<(), StartError> {
    let ws = sandbox.workspace_inside();
    if path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return Err(StartError::new(format!("launch plan file `{path}` is outside the workspace")));
    }
    let full = format!("{ws}/{path}");
    let mut req = ExecRequest::new([
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\" && chmod \"$2\" \"$1\"".to_owned(),
        "sh".to_owned(),
        full.clone(),
        format!("{mode:o}"),
    ]);
    req.cwd = Some(ws.to_owned());
    let mut child = sandbox.exec(req).await.map_err(|e| StartError::new(format!("writing {full}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(contents).await;
        let _ = stdin.shutdown().await;
    }
    let out = child.output(4096).await;
    if out.status.success() {
        Ok(())
    } else {
        Err(StartError::new(format!("writing {full} failed: {} {}", out.status, out.stderr_str().trim())))
    }
}

fn tail(buf: &Mutex<VecDeque<String>>) -> String {
    let t = buf.lock().unwrap_or_else(|p| p.into_inner());
    if t.is_empty() {
        String::new()
    } else {
        format!("; its last output: {}", t.iter().cloned().collect::<Vec<_>>().join(" | "))
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
