//! A delegated thread, run: the coordinator's call to the delegation tool
//! becomes a child thread of the session, whose roster agent runs on its own
//! runtime in the session's sandbox (sharing the workspace) for one turn;
//! its final `agent.message` text is the call's result. The thread's events
//! go to its own log, its status changes also to the session's.
//!
//! The runtime ends with each turn (the thread goes idle); a follow-up call
//! naming the thread starts it again from the resume token it checkpointed,
//! so the agent keeps its conversation (its state is in the workspace).
//!
//! It runs as the coordinator runner's tool task: an interrupt aborts the
//! task, and [`Thread`]'s drop then ends the child runtime and marks the
//! thread terminated.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bridle_harness::ExecutionModel;
use bridle_sandbox::McpFailure;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::delegation::{self, Limits, RosterAgent};
use crate::ids::{Kind, new_id};
use crate::model::events::NewEvent;
use crate::model::sessions::{HarnessBinding, SessionStatus};
use crate::model::threads::{SessionThread, primary_thread_id, thread_agent};
use crate::session::Sessions;
use crate::session::actions;
use crate::session::engine::{PluginAction, ToolCall, ToolOutcome, add_usage};
use crate::session::io::{Out, Runtime};
use crate::session::mounts::Mounts;
use crate::session::start::{self, Target};
use crate::store::ThreadChange;
use crate::time::{now_micros, rfc3339};

/// Delegated-thread runtimes running in this process (the node).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// What a child thread takes from its coordinator's runner.
#[derive(Clone)]
pub(crate) struct Parent {
    pub host: Arc<Sessions>,
    pub session_id: String,
    /// The coordinator runner's lease epoch: the child's writes to the
    /// session's log are fenced by it.
    pub epoch: i64,
    pub binding: HarnessBinding,
    pub environment_id: String,
    pub vault_ids: Vec<String>,
    pub mounts: Arc<Mounts>,
    pub mcp_failures: mpsc::UnboundedSender<McpFailure>,
    pub roster: Arc<Vec<RosterAgent>>,
}

impl Parent {
    /// Add host events to the session's (primary) log and fan them out.
    async fn to_session(&self, events: Vec<Value>) {
        let new = events.into_iter().filter_map(NewEvent::from_value).collect();
        match self.host.store.runner_commit(&self.session_id, self.epoch, None, None, None, new).await {
            Ok(stored) => self.host.bus.publish(&self.session_id, &stored),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "storing a thread event in the session's log failed"),
        }
    }

    fn limits(&self) -> Limits {
        let c = &self.host.config.sessions;
        Limits { per_session: c.threads_per_session, per_node: c.thread_runtimes_per_node }
    }
}

/// Run one delegation call to its result: a turn of a new child thread, or
/// of the idle thread the call follows up on.
pub(crate) async fn run(parent: Parent, call: ToolCall) -> ToolOutcome {
    let error = |content: String| ToolOutcome { id: call.id.clone(), content, is_error: true, exit_code: None };
    let roster = parent.roster.clone();
    let request = match delegation::parse_call(&call.input, &roster) {
        Ok(x) => x,
        Err(why) => return error(why),
    };
    let primary = primary_thread_id(&parent.session_id);
    let opened = match &request.thread_id {
        None => new_thread(&parent, request.agent).await,
        Some(id) => follow_up(&parent, id, &primary, request.agent, &roster).await,
    };
    let (mut thread, agent) = match opened {
        Ok(x) => x,
        Err(why) => return error(why),
    };
    let message = request.message;
    let span = tracing::info_span!("thread", thread_id = %thread.id, agent = %agent.name);
    parent.to_session(delegation::primary_start(&thread.id, &agent.name, &message, request.thread_id.is_none())).await;
    thread.log(delegation::child_start(&thread.id, &agent.name, &primary, &message)).await;
    let result = thread.turn(&parent, agent, &message).instrument(span).await;
    thread.end(&parent, result.as_ref().err().map(String::as_str)).await;
    match result {
        Ok(text) => ToolOutcome {
            id: call.id.clone(),
            content: delegation::answer(&thread.id, &text),
            is_error: false,
            exit_code: None,
        },
        Err(why) => error(format!("agent `{}` failed (thread `{}` is terminated): {why}", agent.name, thread.id)),
    }
}

/// A new child thread for `agent`, within the limits.
async fn new_thread<'a>(parent: &Parent, agent: Option<&'a RosterAgent>) -> Result<(Thread, &'a RosterAgent), String> {
    // `parse_call` names an agent whenever no thread is named.
    let agent = agent.ok_or("`agent` is required")?;
    let created = parent
        .host
        .store
        .list_threads(&parent.session_id)
        .await
        .map_err(|e| format!("the thread could not be created: {e}"))?;
    limits(parent, Some(created.len())).await?;
    Ok((Thread::create(parent, agent).await?, agent))
}

/// The session's idle thread `thread_id`, running again (a follow-up is no
/// new thread: only the node's runtime limit applies).
async fn follow_up<'a>(
    parent: &Parent,
    thread_id: &str,
    primary: &str,
    named: Option<&RosterAgent>,
    roster: &'a [RosterAgent],
) -> Result<(Thread, &'a RosterAgent), String> {
    let read = |e: crate::store::StoreError| format!("thread `{thread_id}` could not be read: {e}");
    let stored = parent.host.store.get_thread(&parent.session_id, thread_id).await.map_err(read)?;
    let agent = delegation::follow_up(thread_id, stored.as_ref(), primary, named, roster)?;
    let Some(stored) = stored else { return Err(format!("`{thread_id}` is not a thread of this session")) };
    limits(parent, None).await?;
    let resume = parent.host.store.thread_resume(thread_id).await.map_err(read)?;
    Ok((Thread::resume(parent, agent, stored, resume).await?, agent))
}

/// The thread limits, checked; a refusal also goes to the session's log.
async fn limits(parent: &Parent, new_thread: Option<usize>) -> Result<(), String> {
    if let Err(why) = delegation::check_limits(parent.limits(), new_thread, RUNNING.load(Ordering::SeqCst)) {
        tracing::info!(reason = %why, "delegation refused");
        parent.to_session(vec![delegation::limit_error(&why)]).await;
        return Err(format!("the delegation was refused: {why}"));
    }
    Ok(())
}

/// A child thread while it runs. Dropped before [`Thread::end`] (the
/// coordinator's call was cancelled), it ends the runtime and the thread.
struct Thread {
    id: String,
    agent_name: String,
    host: Arc<Sessions>,
    session_id: String,
    rt: Option<Runtime>,
    counted: bool,
    usage: Map<String, Value>,
    ended: bool,
    parent: Option<Parent>,
    started: std::time::Instant,
    /// The runtime's resume token: the one its turn starts from, then the
    /// last it checkpointed.
    resume: Option<String>,
    /// Seconds the thread ran in its earlier turns.
    active_before: f64,
    created_micros: i64,
}

impl Thread {
    async fn create(parent: &Parent, agent: &RosterAgent) -> Result<Thread, String> {
        let micros = now_micros();
        let now = rfc3339(micros);
        let t = SessionThread {
            id: new_id(Kind::SessionThread),
            agent: thread_agent(&agent.snapshot),
            archived_at: None,
            created_at: now.clone(),
            parent_thread_id: Some(primary_thread_id(&parent.session_id)),
            session_id: parent.session_id.clone(),
            stats: Some(json!({"active_seconds": 0, "duration_seconds": 0})),
            status: SessionStatus::Running,
            kind: "session_thread".into(),
            updated_at: now,
            usage: Some(zero_usage()),
            workflow_run_id: None,
        };
        parent.host.store.create_thread(&t).await.map_err(|e| format!("the thread could not be created: {e}"))?;
        tracing::info!(thread_id = %t.id, agent = %agent.name, "delegated thread created");
        Ok(Thread {
            id: t.id,
            agent_name: agent.name.clone(),
            host: parent.host.clone(),
            session_id: parent.session_id.clone(),
            rt: None,
            counted: false,
            usage: Map::new(),
            ended: false,
            parent: Some(parent.clone()),
            started: std::time::Instant::now(),
            resume: None,
            active_before: 0.0,
            created_micros: micros,
        })
    }

    /// An idle thread of the session, running again for a follow-up turn
    /// from its runtime's resume token. (The session's delegation calls run
    /// one at a time, on the node holding its lease: no other call claims
    /// the thread between its check and this.)
    async fn resume(
        parent: &Parent,
        agent: &RosterAgent,
        stored: SessionThread,
        resume: Option<String>,
    ) -> Result<Thread, String> {
        let change = ThreadChange { status: Some(SessionStatus::Running), ..Default::default() };
        parent
            .host
            .store
            .update_thread(&stored.id, change)
            .await
            .map_err(|e| format!("thread `{}` could not be resumed: {e}", stored.id))?;
        tracing::info!(thread_id = %stored.id, agent = %agent.name, resumable = resume.is_some(), "delegated thread resumed");
        let stat = |k: &str| stored.stats.as_ref().and_then(|s| s[k].as_f64()).unwrap_or(0.0);
        Ok(Thread {
            agent_name: agent.name.clone(),
            host: parent.host.clone(),
            session_id: parent.session_id.clone(),
            rt: None,
            counted: false,
            usage: stored.usage.as_ref().and_then(Value::as_object).cloned().unwrap_or_default(),
            ended: false,
            parent: Some(parent.clone()),
            started: std::time::Instant::now(),
            resume,
            active_before: stat("active_seconds"),
            created_micros: crate::time::parse_rfc3339(&stored.created_at).unwrap_or_else(now_micros),
            id: stored.id,
        })
    }

    /// Add events to the thread's own log and fan them out (under the thread id).
    /// (The future holds no borrow of the thread, whose runtime is not `Sync`.)
    fn log(&self, events: Vec<Value>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (host, id) = (self.host.clone(), self.id.clone());
        async move { append(&host, &id, events).await }
    }

    /// Start the roster agent's runtime and run the message as its turn:
    /// the text of its final `agent.message`.
    async fn turn(&mut self, parent: &Parent, agent: &RosterAgent, message: &str) -> Result<String, String> {
        // The roster agent's own harness (`bridle.engine`), else the session's.
        let engine = agent.engine.as_deref().unwrap_or(&parent.binding.engine);
        let plugin = parent.host.harness.plugin(engine).map_err(|e| e.to_string())?;
        if plugin.info().execution_model == ExecutionModel::SandboxAsTool {
            // Its runtime is a session of the harness's resident process,
            // which keys sessions by the session id: one per session.
            return Err(format!(
                "harness `{engine}` runs one runtime per session; delegated threads run on harnesses whose runtime \
                 runs in the sandbox (claude, codex)"
            ));
        }
        let runtime_agent = thread_agent(&agent.snapshot);
        let target = Target {
            session_id: &parent.session_id,
            binding: &parent.binding,
            engine: Some(engine),
            agent: &runtime_agent,
            environment_id: &parent.environment_id,
            resume: self.resume.as_deref(),
            mounts: &parent.mounts,
            vault_ids: &parent.vault_ids,
            mcp_failures: &parent.mcp_failures,
        };
        RUNNING.fetch_add(1, Ordering::SeqCst);
        self.counted = true;
        let rt = start::runtime(&parent.host, target).await.map_err(|e| e.message)?;
        self.rt = Some(rt);
        let input = json!({"type": "user.message", "content": [{"type": "text", "text": message}]});
        let mut last_text: Option<String> = None;
        let first = self.plugin_call(Call::Input(input)).await?;
        let mut queue: std::collections::VecDeque<PluginAction> = first.into();
        loop {
            while let Some(action) = queue.pop_front() {
                match self.act(action, &mut last_text).await? {
                    Step::Go(more) => queue.extend(more),
                    Step::Done => return Ok(last_text.unwrap_or_default()),
                }
            }
            let Some(rt) = self.rt.as_mut() else { return Err("the runtime is gone".into()) };
            match rt.io.recv().await {
                Out::Line(line, _) => {
                    let actions = rt.plugin.on_output(&line).await.map_err(|e| format!("harness {e}"))?;
                    queue.extend(actions::from_plugin(actions));
                }
                Out::Exit(status) => {
                    let tail = rt.io.stderr_tail();
                    return Err(format!("the agent runtime {status} before finishing its turn{tail}"));
                }
            }
        }
    }

    async fn plugin_call(&mut self, call: Call) -> Result<Vec<PluginAction>, String> {
        let rt = self.rt.as_mut().ok_or("the runtime is gone")?;
        let r = match call {
            Call::Input(v) => rt.plugin.on_input(&v.to_string()).await,
            Call::Tool(o) => rt.plugin.on_tool_result(&actions::tool_result(&o)).await,
        };
        r.map(actions::from_plugin).map_err(|e| format!("harness {e}"))
    }

    /// One plugin action of the child's turn.
    async fn act(&mut self, action: PluginAction, last_text: &mut Option<String>) -> Result<Step, String> {
        match action {
            PluginAction::Emit(event) => {
                let kind = event.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
                if kind == "span.model_request_end"
                    && let Some(Value::Object(u)) = event.get("model_usage")
                {
                    add_usage(&mut self.usage, u);
                }
                if kind == "agent.message" {
                    *last_text = Some(crate::session::engine::message_text(&event));
                }
                let id = event.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let waits_on_user = kind == "agent.custom_tool_use"
                    || event.get("evaluated_permission").and_then(Value::as_str) == Some("ask");
                self.log(vec![Value::Object(event)]).await;
                if waits_on_user {
                    // Nobody answers a child thread's calls: the model hears so.
                    let answer = match kind.as_str() {
                        "agent.custom_tool_use" => delegation::tool_result(
                            &id,
                            "custom tools are answered by the client, which does not see delegated threads",
                            true,
                        ),
                        _ => json!({"type": "user.tool_confirmation", "tool_use_id": id, "result": "deny",
                                    "deny_message": "tools that ask for confirmation are denied in delegated threads"}),
                    };
                    return Ok(Step::Go(self.plugin_call(Call::Input(answer)).await?));
                }
                Ok(Step::Go(Vec::new()))
            }
            PluginAction::Write(bytes) => {
                if let Some(rt) = self.rt.as_mut() {
                    rt.io.write(&self.session_id, &bytes).await;
                }
                Ok(Step::Go(Vec::new()))
            }
            PluginAction::ToolCall(call) => {
                let tools = self.rt.as_ref().and_then(|rt| rt.io.tools());
                let outcome = match tools {
                    Some(tools) => {
                        let r = tools.call(&call.name, &call.input).await;
                        ToolOutcome { id: call.id, content: r.content, is_error: r.is_error, exit_code: r.exit_code }
                    }
                    None => ToolOutcome {
                        id: call.id,
                        content: "this harness has no sandbox tools".into(),
                        is_error: true,
                        exit_code: None,
                    },
                };
                Ok(Step::Go(self.plugin_call(Call::Tool(outcome)).await?))
            }
            PluginAction::TurnEnded(_) => Ok(Step::Done),
            PluginAction::Failed(f) => Err(f.message),
            PluginAction::Invalid(msg) => Err(format!("the harness plugin emitted an invalid event: {msg}")),
            PluginAction::Checkpoint(token) => {
                self.resume = Some(token);
                Ok(Step::Go(Vec::new()))
            }
            PluginAction::Retrying { .. } | PluginAction::Resumed | PluginAction::Preview(_) => {
                Ok(Step::Go(Vec::new()))
            }
        }
    }

    /// The turn is over: end the runtime, settle the thread's status (idle
    /// after a finished turn, terminated after a failure) in both logs.
    async fn end(&mut self, parent: &Parent, failure: Option<&str>) {
        self.ended = true;
        if let Some(rt) = self.rt.take() {
            rt.io.end_process(&self.session_id).await;
        }
        self.uncount();
        let usage = Value::Object(merged_usage(&self.usage));
        let (status, event) = match failure {
            None => {
                (SessionStatus::Idle, delegation::status_idle(&self.id, &self.agent_name, json!({"type": "end_turn"})))
            }
            Some(why) => {
                tracing::info!(reason = why, "delegated thread failed");
                (SessionStatus::Terminated, delegation::status_terminated(&self.id, &self.agent_name))
            }
        };
        let active = self.active_before + self.started.elapsed().as_secs_f64();
        let duration = (now_micros() - self.created_micros).max(0) as f64 / 1e6;
        let change = ThreadChange {
            status: Some(status),
            usage: Some(usage),
            stats: Some(json!({"active_seconds": active, "duration_seconds": duration.max(active)})),
            archive: false,
            // A follow-up resumes the runtime from here.
            resume: self.resume.clone(),
        };
        if let Err(e) = self.host.store.update_thread(&self.id, change).await {
            tracing::warn!(error = format!("{e:#}"), "storing the thread's status failed");
        }
        self.log(vec![event.clone()]).await;
        parent.to_session(vec![event]).await;
    }

    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Cancelled mid-turn (the user interrupted the coordinator).
        self.uncount();
        let (rt, parent, id, name) = (self.rt.take(), self.parent.take(), self.id.clone(), self.agent_name.clone());
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        handle.spawn(async move {
            let Some(parent) = parent else { return };
            if let Some(rt) = rt {
                rt.io.end_process(&parent.session_id).await;
            }
            tracing::info!(thread_id = %id, "delegated thread interrupted");
            terminate(&parent.host, &parent, &id, &name).await;
        });
    }
}

/// Mark a thread terminated, in its log and the session's.
async fn terminate(host: &Arc<Sessions>, parent: &Parent, id: &str, name: &str) {
    let change = ThreadChange { status: Some(SessionStatus::Terminated), ..Default::default() };
    if let Err(e) = host.store.update_thread(id, change).await {
        tracing::warn!(error = format!("{e:#}"), "storing the thread's status failed");
    }
    let event = delegation::status_terminated(id, name);
    append(host, id, vec![event.clone()]).await;
    parent.to_session(vec![event]).await;
}

async fn append(host: &Sessions, thread_id: &str, events: Vec<Value>) {
    let new = events.into_iter().filter_map(NewEvent::from_value).collect();
    match host.store.append_thread_events(thread_id, new).await {
        Ok(stored) => host.bus.publish(thread_id, &stored),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "storing a thread event failed"),
    }
}

enum Call {
    Input(Value),
    Tool(ToolOutcome),
}

enum Step {
    Go(Vec<PluginAction>),
    Done,
}

fn zero_usage() -> Value {
    json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
           "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}})
}

/// The thread's usage: its requests' totals over zeros for what they never
/// counted (also inside `cache_creation`).
fn merged_usage(u: &Map<String, Value>) -> Map<String, Value> {
    let mut total = zero_usage().as_object().cloned().unwrap_or_default();
    for (k, v) in u {
        match (total.get_mut(k), v) {
            (Some(Value::Object(into)), Value::Object(from)) => into.extend(from.clone()),
            _ => {
                total.insert(k.clone(), v.clone());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keeps_every_counter() {
        let mut u = Map::new();
        add_usage(&mut u, json!({"input_tokens": 3, "cache_creation_input_tokens": 2}).as_object().unwrap());
        assert_eq!(
            Value::Object(merged_usage(&u)),
            json!({"input_tokens": 3, "output_tokens": 0, "cache_read_input_tokens": 0,
                   "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 2}})
        );
    }
}
