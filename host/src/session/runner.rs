//! The runner of one live session: a `select!` loop that feeds the session's
//! [`Engine`] what happens (user events from the log, runtime output, tool
//! outcomes, the clock) and carries out the effects it returns (store a
//! commit, call the plugin, write to the runtime, run or cancel a tool,
//! start or stop the runtime). Every decision about the turn is the
//! engine's; this module only does the I/O. A tool call runs as a task of
//! its own, so the loop keeps taking user input while it runs: an interrupt
//! cancels it at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridle_harness::{Action, HarnessError};
use bridle_sandbox::{BusyGuard, ExitStatus, McpFailure};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::Sessions;
use super::actions;
use super::engine::{self, Effect, Engine, Input, Loaded, PluginCall, ToolCall, ToolOutcome, UserEvent};
use super::io::{Out, Runtime};
use super::mounts::Mounts;
use super::orphans;
use super::outcome::{self, cycle::Graded};
use super::outputs;
use super::remote;
use super::start::{self, Target};
use crate::model::events::{NewEvent, StoredEvent};
use crate::model::pricing;
use crate::model::sessions::{HarnessBinding, SessionStatus};
use crate::store::{StatusChange, StoreError};

/// How long an idle runner without a runtime lingers before its task ends.
const LINGER: Duration = Duration::from_secs(30);

/// How often `span.outcome_evaluation_ongoing` tells a client the grader is at work.
const GRADING_HEARTBEAT: Duration = Duration::from_secs(10);

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
    runner.stop_runtime("runner ended").await;
    runner.release().await;
    host.runner_gone(&id, rx);
}

struct Runner {
    host: Arc<Sessions>,
    id: String,
    binding: HarnessBinding,
    agent: Value,
    environment_id: String,
    engine: Engine,
    /// The lease epoch this runner claimed; every write carries it.
    epoch: i64,
    /// The last user event taken from the log.
    input_seq: i64,
    rt: Option<Runtime>,
    /// The host-run tool call in flight: its event id and task.
    tool: Option<(String, JoinHandle<ToolOutcome>)>,
    /// The environment is self-hosted: tool calls run on its workers.
    self_hosted: bool,
    /// The call a worker runs: its event id and where its answer goes.
    remote: Option<(String, remote::Answer)>,
    /// Workers' answers to calls not sent yet (a worker may run the second
    /// of two parallel tool uses while the runtime waits on the first).
    early: HashMap<String, ToolOutcome>,
    /// Keeps the sandbox from idle release while a turn runs.
    busy: Option<BusyGuard>,
    last_activity: Instant,
    /// When the runtime line being handled was read (epoch µs), for the
    /// `bridle::ingest` debug record of live-event latency.
    line_read_at: Option<i64>,
    /// When the runtime line being handled was read (for preview logs).
    this_line_read_at: Option<i64>,
    /// This session in the live-sessions gauge, under its current status.
    live: crate::metrics::LiveSession,
    /// Its file resources and which the current sandbox holds.
    mounts: Arc<Mounts>,
    vault_ids: Vec<String>,
    /// MCP route failures its sandboxes' gateways report.
    mcp_failures: (mpsc::UnboundedSender<McpFailure>, mpsc::UnboundedReceiver<McpFailure>),
    /// The outcome grader call in flight.
    grade: Option<JoinHandle<Graded>>,
    /// A coordinator's roster: its delegation calls run child threads.
    roster: Option<Arc<Vec<super::threads::delegation::RosterAgent>>>,
}

impl Runner {
    /// Claim the session and load it; `None` when another node owns it.
    async fn load(host: Arc<Sessions>, id: String) -> anyhow::Result<Option<Runner>> {
        let Some(claim) = host.store.claim_session(&id, &host.node, host.lease.lease_micros()).await? else {
            return Ok(None);
        };
        let row = host.store.get_session(&id).await?.context("session not found")?;
        let state = host.store.runner_state(&id).await?.unwrap_or_default();
        let status = row.session.status;
        // User events taken in after the last turn started were queued
        // messages (or input for that turn); a runner that died left them.
        let taken = match state.input_seq > claim.turn_seq {
            true => host.store.user_events_between(&id, claim.turn_seq + 1, state.input_seq).await?,
            false => Vec::new(),
        };
        // A session left mid-turn (its node died or parked it): resume that
        // turn, unless the user interrupted it.
        let recover = match matches!(status, SessionStatus::Running | SessionStatus::Rescheduling) {
            true => {
                let turn = match claim.turn_seq {
                    0 => None,
                    seq => host.store.events_between(&id, seq, seq).await?.pop(),
                };
                let interrupted = taken.iter().any(|e| e.kind == "user.interrupt");
                Some(turn.filter(|_| !interrupted).map(|e| user_event(&e)))
            }
            false => None,
        };
        let outcome = match &recover {
            Some(turn) => recovered_outcome(&host, &id, turn.as_ref()).await?,
            None => None,
        };
        let orphaned = match status {
            SessionStatus::Idle => orphans::pending_in_log(&host.store, &id).await?,
            _ => Vec::new(),
        };
        let loaded = Loaded {
            status: Some(status),
            usage: row.session.usage.as_object().cloned().unwrap_or_default(),
            resume: state.resume,
            queue: taken.iter().filter(|e| starts_turn(&e.kind)).map(user_event).collect(),
            orphaned,
            recover,
            budget: row.session.budget.as_ref().map(pricing::budget_limit),
            outcome,
        };
        let model = pricing::model_id(&row.session.agent).unwrap_or_default();
        let price = host.config.price_of(model);
        if row.session.budget.is_some() && price.is_none() {
            // Priced at create (the API checks), unpriced since: say so.
            tracing::warn!(
                model,
                "the session has a budget, but the config no longer prices its model; the budget \
                                   is not enforced until [pricing.\"{model}\"] is set again"
            );
        }
        let cfg =
            engine::Config { harness: row.binding.engine.clone(), interrupt_grace: host.timing.interrupt_grace, price };
        let roster = match super::threads::roster(&host, &row.session.agent).await {
            Ok(r) => r.map(Arc::new),
            Err(e) => {
                // The session runs on; its runtime has no delegation tool.
                tracing::error!(error = format!("{e:#}"), "reading the coordinator's roster failed");
                None
            }
        };
        if let Err(e) = super::threads::end_orphans(&host, &id, claim.epoch).await {
            // They stay marked running until a runner takes the session up again.
            tracing::warn!(error = format!("{e:#}"), "ending the delegated threads a stopped server left failed");
        }
        let mut engine = Engine::new(cfg, loaded);
        if roster.is_some() {
            engine = engine.with_delegation(super::threads::delegation::TOOL);
        }
        let self_hosted = host
            .store
            .get_doc::<crate::model::environments::Environment>(
                crate::store::Table::Environments,
                &row.session.environment_id,
            )
            .await?
            .is_some_and(|e| e.doc.config.is_self_hosted());
        Ok(Some(Runner {
            live: crate::metrics::LiveSession::new(&row.binding.engine, status),
            mounts: Mounts::new(host.store.clone(), super::repos::Repos::for_host(&host), &id),
            engine,
            host,
            id,
            binding: row.binding,
            agent: row.session.agent,
            environment_id: row.session.environment_id,
            vault_ids: row.session.vault_ids,
            mcp_failures: mpsc::unbounded_channel(),
            epoch: claim.epoch,
            input_seq: state.input_seq,
            rt: None,
            tool: None,
            self_hosted,
            remote: None,
            early: HashMap::new(),
            busy: None,
            last_activity: Instant::now(),
            line_read_at: None,
            this_line_read_at: None,
            grade: None,
            roster,
        }))
    }

    async fn main(&mut self, rx: &mut mpsc::UnboundedReceiver<()>) {
        let first = self.engine.begin();
        self.exec(first).await;
        loop {
            if self.engine.fenced() {
                tracing::warn!("another node adopted this session; this runner stops");
                return;
            }
            let between = !self.engine.in_turn();
            let idle_at = (between && self.rt.is_some()).then(|| self.last_activity + self.host.timing.runtime_idle);
            let linger_at = (between && self.rt.is_none()).then(|| self.last_activity + LINGER);
            let deadline = self.engine.interrupt_deadline().map(Instant::from_std);
            // Output waits while a host-run tool call is in flight: its
            // outcome comes first, as the runtime asked.
            let reading = self.engine.wants_output();
            // A heartbeat while the grader works.
            let grading_at = self.grade.is_some().then(|| self.last_activity + GRADING_HEARTBEAT);
            tokio::select! {
                wake = rx.recv() => {
                    if wake.is_none() {
                        return;
                    }
                    self.take_inputs().await;
                }
                out = recv_out(&mut self.rt), if reading => {
                    self.last_activity = Instant::now();
                    self.on_out(out).await;
                }
                Some(f) = self.mcp_failures.1.recv() => {
                    let input = Input::McpFailed { error_type: f.kind.error_type().to_owned(), server: f.server, message: f.message };
                    self.feed(input).await;
                }
                outcome = tool_done(&mut self.tool) => {
                    self.tool = None;
                    self.remote = None;
                    self.last_activity = Instant::now();
                    self.feed(Input::ToolDone(outcome)).await;
                }
                graded = grade_done(&mut self.grade) => {
                    self.grade = None;
                    self.feed(Input::Graded(graded)).await;
                }
                () = sleep_until(grading_at) => {
                    self.last_activity = Instant::now();
                    self.feed(Input::Grading).await;
                }
                () = sleep_until(deadline) => {
                    if self.engine.in_turn() {
                        tracing::warn!("runtime did not end its turn after an interrupt; stopping it");
                    }
                    self.feed(Input::Tick(std::time::Instant::now())).await;
                }
                () = sleep_until(idle_at) => {
                    tracing::info!("runtime idle; stopping it (it resumes on the next message)");
                    self.feed(Input::Idle).await;
                    self.last_activity = Instant::now();
                }
                () = sleep_until(linger_at) => {
                    if self.host.leave(&self.id, rx) {
                        return;
                    }
                    self.last_activity = Instant::now();
                    self.take_inputs().await;
                }
            }
        }
    }

    /// Take every user event stored since the last one taken.
    async fn take_inputs(&mut self) {
        loop {
            let events = match self.host.store.user_events_after(&self.id, self.input_seq).await {
                Ok(events) if !events.is_empty() => events,
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "taking user events failed");
                    return;
                }
            };
            if events.iter().any(|e| starts_turn(&e.kind)) {
                // A message may start a turn: measure it against the budget
                // as it is now (an update may have raised or removed it).
                match self.host.store.get_session(&self.id).await {
                    Ok(Some(row)) => {
                        let budget = row.session.budget.as_ref().map(pricing::budget_limit);
                        self.feed(Input::Budget(budget)).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "reading the session's budget failed"),
                }
            }
            for ev in events {
                self.last_activity = Instant::now();
                if ev.kind == "user.tool_result" {
                    self.answer_remote(&ev);
                }
                if ev.kind == "user.interrupt" && self.self_hosted {
                    // The worker serving the session stops at its next heartbeat.
                    remote::stop_work(&self.host, &self.id).await;
                }
                self.feed(Input::User(user_event(&ev), std::time::Instant::now())).await;
                if self.engine.fenced() {
                    return;
                }
            }
        }
    }

    /// A runtime line (and the lines already waiting behind it, as one
    /// burst), or its exit.
    async fn on_out(&mut self, out: Out) {
        let mut next = Some(out);
        while let Some(out) = next.take() {
            match out {
                Out::Exit(status) => self.on_exit(status).await,
                Out::Line(line, read_at) => {
                    let Some(rt) = self.rt.as_mut() else { break };
                    let result = rt.plugin.on_output(&line).await;
                    self.line_read_at.get_or_insert(read_at);
                    self.this_line_read_at = Some(read_at);
                    let input = self.plugin_result(result, Input::Output);
                    self.feed(input).await;
                    // The engine closed the burst (it is long enough, or a
                    // tool call starts): the rest waits for the next round.
                    if !self.engine.burst_open() {
                        break;
                    }
                    next = self.rt.as_mut().and_then(|rt| rt.io.try_recv());
                    if next.is_none() {
                        self.feed(Input::BurstEnd).await;
                    }
                }
            }
        }
        self.line_read_at = None;
        self.this_line_read_at = None;
    }

    async fn on_exit(&mut self, status: ExitStatus) {
        let Some(mut rt) = self.rt.take() else { return };
        let stderr = rt.io.stderr_tail();
        // A runtime that died of a sandbox limit (directly, or by aborting
        // when it could not get a thread) is reported as that limit.
        let limit = rt.io.limit_hit(&status).await;
        tracing::info!(%status, ?limit, "runtime exited");
        let exit_actions = rt.plugin.on_exit(status.code()).await.unwrap_or_default();
        rt.io.release(&self.id).await;
        self.busy = None;
        let actions = actions::from_plugin(exit_actions);
        self.feed(Input::Exited { status: status.to_string(), limit, stderr, actions }).await;
    }

    /// Give the engine one input and carry out what it decides.
    async fn feed(&mut self, input: Input) {
        let effects = self.engine.handle(input);
        self.exec(effects).await;
    }

    /// Carry out effects in order. An effect that answers (a plugin call's
    /// actions, a started runtime) goes back to the engine at once, and
    /// what that yields is carried out before the rest.
    async fn exec(&mut self, effects: Vec<Effect>) {
        let mut work: VecDeque<Effect> = effects.into();
        loop {
            while let Some(effect) = work.pop_front() {
                if self.engine.fenced() {
                    break;
                }
                if let Some(answer) = self.effect(effect).await {
                    for e in self.engine.handle(answer).into_iter().rev() {
                        work.push_front(e);
                    }
                }
            }
            // Repositories that could not be cloned meanwhile (at a start,
            // before a turn, or when a tool claimed its sandbox) are reported.
            let notices = self.mounts.take_notices();
            if notices.is_empty() || self.engine.fenced() {
                break;
            }
            for error in notices {
                work.extend(self.engine.handle(Input::ResourceFailed(error)));
            }
        }
        // A turn keeps its sandbox from idle release; between turns it may idle.
        match self.engine.in_turn() {
            true if self.busy.is_none() => self.busy = self.rt.as_ref().and_then(|rt| rt.io.busy()),
            true => {}
            false => self.busy = None,
        }
    }

    async fn effect(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Commit { events, status, turn_seq, usage } => self.commit(events, status, turn_seq, usage).await,
            Effect::SaveInputSeq(seq) => {
                self.input_seq = seq;
                let r = self.host.store.set_input_seq_fenced(&self.id, self.epoch, seq).await;
                self.written(r, "saving the input position")
            }
            Effect::SaveResume(token) => {
                let r = self.host.store.set_resume_fenced(&self.id, self.epoch, &token).await;
                self.written(r, "saving the resume token")
            }
            Effect::StartRuntime => {
                // A coordinator's runtime gets the delegation tool for its roster.
                let agent = match &self.roster {
                    Some(r) => super::threads::delegation::coordinator_agent(&self.agent, r),
                    None => self.agent.clone(),
                };
                let target = Target {
                    session_id: &self.id,
                    binding: &self.binding,
                    engine: None,
                    agent: &agent,
                    environment_id: &self.environment_id,
                    resume: self.engine.resume(),
                    mounts: &self.mounts,
                    vault_ids: &self.vault_ids,
                    mcp_failures: &self.mcp_failures.0,
                };
                match start::runtime(&self.host, target).await {
                    Ok(rt) => {
                        self.rt = Some(rt);
                        Some(Input::Started)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.message, "runtime could not start");
                        Some(Input::StartFailed { error_type: e.error_type.to_owned(), message: e.message })
                    }
                }
            }
            Effect::StopRuntime(why) => {
                self.stop_runtime(why).await;
                None
            }
            Effect::Deliver(call) => {
                let mut body = None;
                if let PluginCall::Input(ev) = &call
                    && ev.kind == "user.message"
                {
                    self.sync_mounts().await;
                    let sandbox = self.sandbox().await;
                    body = Some(self.mounts.message_for_runtime(&ev.body, sandbox.as_deref()).await);
                }
                let rt = self.rt.as_mut()?;
                let result = match call {
                    PluginCall::Input(ev) => rt.plugin.on_input(&body.unwrap_or(ev.body).to_string()).await,
                    PluginCall::ToolResult(outcome) => rt.plugin.on_tool_result(&actions::tool_result(&outcome)).await,
                };
                Some(self.plugin_result(result, Input::Plugin))
            }
            Effect::Write(bytes) => {
                if let Some(rt) = self.rt.as_mut() {
                    rt.io.write(&self.id, &bytes).await;
                }
                None
            }
            Effect::RunTool(call) => self.run_tool(call),
            Effect::CancelTool => self.cancel_tool().await,
            Effect::Preview(preview) => {
                if let Some(read_at) = self.this_line_read_at {
                    // Pairs a preview frame with when its runtime line was read.
                    tracing::debug!(target: "bridle::ingest", session_id = %self.id, read_at_us = read_at, preview = preview.frame_type(), event_id = preview.event_id(), "runtime output previewed");
                }
                self.host.bus.preview(&self.id, preview);
                None
            }
            Effect::Interrupt => {
                tracing::info!("the session's budget is spent; interrupting the turn");
                let body = json!({"type": "user.interrupt", "id": "budget_reached"});
                let ev = UserEvent { seq: self.input_seq, kind: "user.interrupt".into(), body };
                Some(Input::User(ev, std::time::Instant::now()))
            }
            Effect::CollectOutputs => {
                self.collect_outputs().await;
                None
            }
            Effect::Grade(job) => {
                let task = outcome::call::grade(self.host.clone(), self.binding.clone(), self.agent.clone(), job);
                self.grade = Some(tokio::spawn(task.in_current_span()));
                self.last_activity = Instant::now();
                None
            }
            Effect::CancelGrade => {
                if let Some(task) = self.grade.take() {
                    task.abort();
                }
                None
            }
        }
    }

    /// Resources added since the sandbox was claimed are placed before the
    /// turn (a sandbox claimed later gets them all when it is claimed).
    async fn sync_mounts(&mut self) {
        let Some(sandbox) = self.sandbox().await else { return };
        if let Err(e) = self.mounts.sync(sandbox.as_ref()).await {
            tracing::warn!(error = %e, "placing the session's files failed");
        }
    }

    /// Store the files the agent left in the outputs directory. A failure
    /// is logged: the next collection tries again.
    async fn collect_outputs(&mut self) {
        let Some(sandbox) = self.sandbox().await else { return };
        let max = self.host.config.files.max_bytes;
        match outputs::collect(&self.host.store, &self.id, sandbox.as_ref(), max).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "session outputs collected"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "collecting the session's outputs failed"),
        }
        // The session was deleted while its outputs were being stored: they go too.
        if let Ok(None) = self.host.store.get_session(&self.id).await
            && let Err(e) = self.host.store.delete_session_files(&self.id).await
        {
            tracing::warn!(error = format!("{e:#}"), "deleting the outputs of a deleted session failed");
        }
    }

    async fn sandbox(&mut self) -> Option<Arc<dyn bridle_sandbox::Sandbox>> {
        match &mut self.rt {
            Some(rt) => rt.io.sandbox().await,
            None => None,
        }
    }

    /// Store one commit and fan it out.
    async fn commit(
        &mut self,
        events: Vec<Map<String, Value>>,
        status: Option<StatusChange>,
        turn_seq: Option<i64>,
        usage: Option<Value>,
    ) -> Option<Input> {
        let new: Vec<NewEvent> = events
            .into_iter()
            .map(|mut body| {
                let id = body.remove("id").and_then(|v| v.as_str().map(str::to_owned));
                NewEvent { id, body }
            })
            .collect();
        let new_status = status.as_ref().map(|c| c.status);
        let stored = match self.host.store.runner_commit(&self.id, self.epoch, status, usage, turn_seq, new).await {
            Ok(stored) => stored,
            Err(e) => return self.written::<()>(Err(e), "storing the session's events"),
        };
        // The gauge follows the stored status at once (the batch may go on
        // to start a runtime, which takes a while).
        if let Some(s) = new_status {
            self.live.set(s);
        }
        self.host.bus.publish(&self.id, &stored);
        if let (Some(read_at), Some(first), Some(last)) = (self.line_read_at.take(), stored.first(), stored.last()) {
            // Pairs an SSE frame's `id:` (seq) with when its runtime line was read.
            tracing::debug!(target: "bridle::ingest", session_id = %self.id, read_at_us = read_at, first_seq = first.seq, last_seq = last.seq, "runtime output stored");
        }
        None
    }

    /// A fenced write (another node adopted the session) stops the runner;
    /// any other failure is logged (the database is down: the session goes
    /// on, and a lease it cannot renew is adopted elsewhere).
    fn written<T>(&self, r: Result<T, StoreError>, what: &str) -> Option<Input> {
        match r {
            Ok(_) => None,
            Err(StoreError::Fenced(_)) => Some(Input::Fenced),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "{what} failed");
                None
            }
        }
    }

    /// A plugin call's result as the engine's input: its actions (through
    /// `wrap`), or its fault. An input or line the plugin could not map is
    /// logged and skipped.
    fn plugin_result(
        &self,
        result: Result<Vec<Action>, HarnessError>,
        wrap: fn(Vec<engine::PluginAction>) -> Input,
    ) -> Input {
        match result {
            Ok(raw) => {
                for a in &raw {
                    if let Action::Retrying(r) = a {
                        tracing::info!(attempt = r.attempt, error_type = %r.error_type, "runtime retrying a model request");
                    }
                }
                let actions = actions::from_plugin(raw);
                for a in &actions {
                    if let engine::PluginAction::Invalid(msg) = a {
                        tracing::error!(error = %msg, "plugin emitted an invalid event");
                    }
                }
                wrap(actions)
            }
            Err(e) if e.is_fault() => {
                tracing::error!(error = %e, "harness plugin fault; stopping the runtime");
                Input::PluginFault(e.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, "harness plugin refused an input");
                wrap(Vec::new())
            }
        }
    }

    /// A worker's `user.tool_result`: the answer of the call it runs.
    fn answer_remote(&mut self, ev: &StoredEvent) {
        let body: Value = serde_json::from_str(&ev.body).unwrap_or_default();
        let target = body.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
        match self.remote.take() {
            Some((id, tx)) if id == target => {
                let _ = tx.send(remote::outcome_of(&id, &body));
            }
            other => {
                // The API took it for a pending call: the runtime asks for it later.
                tracing::debug!(tool_use_id = target, "a user.tool_result ahead of its call; kept");
                self.early.insert(target.to_owned(), remote::outcome_of(target, &body));
                self.remote = other;
            }
        }
    }

    /// Start a host-run tool call in the session's sandbox (claimed on the
    /// first call), or on a worker of its self-hosted environment, as a task
    /// of its own.
    fn run_tool(&mut self, call: ToolCall) -> Option<Input> {
        if let Some(roster) = self.roster.clone().filter(|_| call.name == super::threads::delegation::TOOL) {
            let parent = super::threads::child::Parent {
                host: self.host.clone(),
                session_id: self.id.clone(),
                epoch: self.epoch,
                binding: self.binding.clone(),
                environment_id: self.environment_id.clone(),
                vault_ids: self.vault_ids.clone(),
                mounts: self.mounts.clone(),
                mcp_failures: self.mcp_failures.0.clone(),
                roster,
            };
            let id = call.id.clone();
            self.tool = Some((id, tokio::spawn(super::threads::child::run(parent, call).in_current_span())));
            return None;
        }
        if self.self_hosted {
            if let Some(answered) = self.early.remove(&call.id) {
                return Some(Input::ToolDone(answered));
            }
            tracing::debug!(tool = %call.name, tool_use_id = %call.id, "sending a tool call to the environment's workers");
            let (tx, rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(
                remote::run(
                    self.host.clone(),
                    self.id.clone(),
                    self.environment_id.clone(),
                    (call.id.clone(), call.name.clone()),
                    rx,
                )
                .in_current_span(),
            );
            self.remote = Some((call.id.clone(), tx));
            self.tool = Some((call.id, task));
            return None;
        }
        let Some(tools) = self.rt.as_ref().and_then(|rt| rt.io.tools()) else {
            let content = "this harness has no sandbox tools".to_owned();
            return Some(Input::ToolDone(ToolOutcome { id: call.id, content, is_error: true, exit_code: None }));
        };
        tracing::debug!(tool = %call.name, "running a tool call in the sandbox");
        let id = call.id.clone();
        let task = tokio::spawn(
            async move {
                let r = tools.call(&call.name, &call.input).await;
                ToolOutcome { id: call.id, content: r.content, is_error: r.is_error, exit_code: r.exit_code }
            }
            .in_current_span(),
        );
        self.tool = Some((id, task));
        None
    }

    /// Cancel the tool call in flight: drop its task, then release the tool
    /// sandbox, which kills whatever the call started (the workspace stays;
    /// the next call claims a fresh sandbox).
    async fn cancel_tool(&mut self) -> Option<Input> {
        let (id, task) = self.tool.take()?;
        task.abort();
        let _ = task.await;
        if self.self_hosted {
            // The worker stops at its next heartbeat.
            self.remote = None;
            remote::stop_work(&self.host, &self.id).await;
            tracing::info!(tool_use_id = %id, "remote tool call cancelled");
            return Some(Input::ToolDone(ToolOutcome::interrupted(&id)));
        }
        if let Some(tools) = self.rt.as_ref().and_then(|rt| rt.io.tools())
            && let Err(e) = tools.release().await
        {
            tracing::warn!(error = %e, "releasing the tool sandbox after a cancelled call failed");
        }
        tracing::info!(tool_use_id = %id, "tool call cancelled");
        Some(Input::ToolDone(ToolOutcome::interrupted(&id)))
    }

    /// Stop the runtime process and its sandbox (the workspace stays).
    async fn stop_runtime(&mut self, why: &str) {
        self.busy = None;
        if let Some((_, task)) = self.tool.take() {
            task.abort();
        }
        self.remote = None;
        self.early.clear();
        let Some(rt) = self.rt.take() else { return };
        tracing::info!(why, "stopping the runtime");
        rt.io.release(&self.id).await;
    }

    /// The runner ends: give the lease up. A turn in progress (the node is
    /// shutting down) is handed over so another node resumes it at once;
    /// user input that arrived after the last take wakes a runner again.
    async fn release(&mut self) {
        if self.engine.fenced() {
            return;
        }
        let handover = self.engine.handover();
        if let Err(e) = self.host.store.release_session(&self.id, self.epoch, handover).await {
            tracing::warn!(error = format!("{e:#}"), "releasing the session lease failed; it lapses on its own");
            return;
        }
        if handover {
            tracing::info!("session parked mid-turn; another node resumes it");
            return;
        }
        match self.host.store.user_events_after(&self.id, self.input_seq).await {
            Ok(events) if !events.is_empty() => self.host.wake(&self.id),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "checking for new user events failed"),
        }
    }
}

/// User events that start a turn (queued while one runs).
fn starts_turn(kind: &str) -> bool {
    matches!(kind, "user.message" | "user.define_outcome")
}

/// The outcome a cut-off turn worked on, when it was a
/// `user.define_outcome`: its round as the log tells it.
async fn recovered_outcome(
    host: &Sessions,
    id: &str,
    turn: Option<&UserEvent>,
) -> anyhow::Result<Option<outcome::cycle::Cycle>> {
    let Some(turn) = turn.filter(|t| t.kind == "user.define_outcome") else {
        // An interrupted turn (`None`) may have been an outcome's: find it.
        if turn.is_none() {
            return last_open_outcome(host, id).await;
        }
        return Ok(None);
    };
    let Some(o) = outcome::Outcome::from_event(&turn.body) else { return Ok(None) };
    let mut cycle = outcome::cycle::Cycle::new(o);
    cycle.iteration = outcome_iteration(host, id, &cycle.outcome.id).await?.unwrap_or(0);
    Ok(Some(cycle))
}

/// The round an outcome is on, per its entry in `outcome_evaluations`.
async fn outcome_iteration(host: &Sessions, id: &str, outcome_id: &str) -> anyhow::Result<Option<u32>> {
    let all = outcome::evaluations(&host.store, id).await?;
    Ok(all
        .iter()
        .find(|o| o["outcome_id"] == outcome_id)
        .and_then(|o| o["iteration"].as_u64())
        .and_then(|i| u32::try_from(i).ok()))
}

/// The outcome the log shows in progress, if any (to be ended).
async fn last_open_outcome(host: &Sessions, id: &str) -> anyhow::Result<Option<outcome::cycle::Cycle>> {
    let events = outcome::events(&host.store, id).await?;
    let open =
        outcome::resource::fold(&events).into_iter().find(|o| o["completed_at"].is_null() && o["result"] != "pending");
    let Some(open) = open else { return Ok(None) };
    let define = events.iter().find(|e| e["type"] == "user.define_outcome" && e["outcome_id"] == open["outcome_id"]);
    let Some(o) = define.and_then(outcome::Outcome::from_event) else { return Ok(None) };
    let mut cycle = outcome::cycle::Cycle::new(o);
    cycle.iteration = open["iteration"].as_u64().and_then(|i| u32::try_from(i).ok()).unwrap_or(0);
    Ok(Some(cycle))
}

async fn grade_done(grade: &mut Option<JoinHandle<Graded>>) -> Graded {
    match grade {
        Some(task) => task
            .await
            .unwrap_or_else(|e| Graded { grade: Err(format!("the grader task failed: {e}")), usage: Value::Null }),
        None => std::future::pending().await,
    }
}

/// A stored user event as the engine takes it.
fn user_event(ev: &StoredEvent) -> UserEvent {
    let body = serde_json::from_str(&ev.body).unwrap_or_else(|e| {
        tracing::warn!(seq = ev.seq, error = %e, "a stored user event is not JSON");
        Value::Object(Map::new())
    });
    UserEvent { seq: ev.seq, kind: ev.kind.clone(), body }
}

async fn recv_out(rt: &mut Option<Runtime>) -> Out {
    match rt {
        Some(rt) => rt.io.recv().await,
        None => std::future::pending().await,
    }
}

async fn tool_done(tool: &mut Option<(String, JoinHandle<ToolOutcome>)>) -> ToolOutcome {
    match tool {
        Some((id, task)) => task.await.unwrap_or_else(|e| ToolOutcome {
            id: id.clone(),
            content: format!("the tool call failed: {e}"),
            is_error: true,
            exit_code: None,
        }),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
