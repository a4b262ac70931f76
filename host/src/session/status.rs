//! The status state machine of one session. Plugins report facts (an agent
//! event, a retry, a turn end, a failure); this turns them into the
//! `session.status_*` and `session.error` events the seed promises, in order:
//!
//! - a turn starts: `session.status_running`;
//! - the runtime retries: `session.error` (`retry_status: retrying`), then
//!   `session.status_rescheduled` (once per outage), and `session.status_running`
//!   at the first sign of progress;
//! - a tool waits for the user: `session.status_idle` `requires_action` with the
//!   pending event ids (re-emitted with the remainder as they are answered);
//! - the turn ends: `session.status_idle` with the plugin's stop reason;
//! - the runtime gives up: `session.error` (`exhausted`) and
//!   `session.status_idle {retries_exhausted}`, or (`terminal`)
//!   `session.status_terminated`.

use serde_json::{Map, Value, json};

use crate::model::sessions::SessionStatus;

/// A fact about the run, from the runner or a plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// The host starts working on user input.
    TurnStarted,
    /// A plugin event, already validated, with its id assigned.
    Event(Map<String, Value>),
    Retrying {
        error_type: String,
        message: String,
    },
    Resumed,
    /// This node adopted the session mid-turn (its owner died or handed it
    /// over); the runtime is being resumed here.
    Adopted,
    /// The user answered pending tool calls (by event id).
    Answered(Vec<String>),
    TurnEnded(Value),
    /// A `session.error` about one input, not the run (an answer for a
    /// tool call no runtime waits for any more): the status stays.
    Refused {
        error_type: String,
        message: String,
    },
    /// A session resource could not be made ready (a repository clone):
    /// `session.error` with this error object, `retry_status: retrying`
    /// (the host tries again before the next turn); the session keeps
    /// running without it, so the status stays.
    ResourceFailed(Map<String, Value>),
    /// One of the agent's MCP servers failed (unreachable, refused, or
    /// rejecting its credential): a `session.error` naming it; the status
    /// stays.
    McpFailed {
        error_type: String,
        server: String,
        message: String,
    },
    /// The runtime gave up. `terminal` ends the session for good.
    Failed {
        error_type: String,
        message: String,
        terminal: bool,
    },
}

#[derive(Debug, Clone)]
pub struct StatusMachine {
    status: SessionStatus,
    pending: Vec<String>,
}

/// What to append after a fact: events (without ids) and the new status.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub events: Vec<Map<String, Value>>,
    pub status_changed: bool,
}

fn ev(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl StatusMachine {
    pub fn new(status: SessionStatus) -> Self {
        StatusMachine { status, pending: Vec::new() }
    }

    pub fn status(&self) -> SessionStatus {
        self.status
    }

    /// Event ids waiting on the user.
    pub fn pending(&self) -> &[String] {
        &self.pending
    }

    fn set(&mut self, status: SessionStatus, step: &mut Step, event: Value) {
        if self.status != status || status == SessionStatus::Idle {
            self.status = status;
            step.status_changed = true;
            step.events.push(ev(event));
        }
    }

    fn running(&mut self, step: &mut Step) {
        if self.status != SessionStatus::Running {
            self.set(SessionStatus::Running, step, json!({"type": "session.status_running"}));
        }
    }

    pub fn apply(&mut self, fact: Fact) -> Step {
        let mut step = Step::default();
        if self.status == SessionStatus::Terminated {
            return step;
        }
        match fact {
            Fact::TurnStarted | Fact::Resumed => self.running(&mut step),
            Fact::Adopted => {
                self.set(SessionStatus::Rescheduling, &mut step, json!({"type": "session.status_rescheduled"}))
            }
            Fact::Event(e) => {
                // Agent output after a retry means the run resumed. Output
                // while a tool call waits on the user (e.g. the end of the
                // model request that asked) leaves the session idle.
                if self.status == SessionStatus::Rescheduling {
                    self.running(&mut step);
                }
                let waits = match e.get("type").and_then(Value::as_str) {
                    Some("agent.custom_tool_use") => true,
                    Some("agent.tool_use" | "agent.mcp_tool_use") => {
                        e.get("evaluated_permission").and_then(Value::as_str) == Some("ask")
                    }
                    _ => false,
                };
                let id = e.get("id").and_then(Value::as_str).map(str::to_owned);
                step.events.push(e);
                if let (true, Some(id)) = (waits, id) {
                    self.pending.push(id);
                    self.idle_requires_action(&mut step);
                }
            }
            Fact::Answered(ids) => {
                let before = self.pending.len();
                self.pending.retain(|p| !ids.contains(p));
                if self.pending.len() != before {
                    if self.pending.is_empty() {
                        self.running(&mut step);
                    } else {
                        self.idle_requires_action(&mut step);
                    }
                }
            }
            Fact::Retrying { error_type, message } => {
                step.events.push(ev(json!({
                    "type": "session.error",
                    "error": {"type": error_type, "message": message, "retry_status": {"type": "retrying"}},
                })));
                if self.status != SessionStatus::Rescheduling {
                    self.set(SessionStatus::Rescheduling, &mut step, json!({"type": "session.status_rescheduled"}));
                }
            }
            Fact::TurnEnded(stop_reason) => {
                self.pending.clear();
                self.set(
                    SessionStatus::Idle,
                    &mut step,
                    json!({"type": "session.status_idle", "stop_reason": stop_reason}),
                );
            }
            Fact::Refused { error_type, message } => {
                step.events.push(ev(json!({
                    "type": "session.error",
                    "error": {"type": error_type, "message": message, "retry_status": {"type": "exhausted"}},
                })));
            }
            Fact::ResourceFailed(mut error) => {
                error.insert("retry_status".into(), json!({"type": "retrying"}));
                step.events.push(ev(json!({"type": "session.error", "error": error})));
            }
            Fact::McpFailed { error_type, server, message } => {
                step.events.push(ev(json!({
                    "type": "session.error",
                    "error": {"type": error_type, "mcp_server_name": server, "message": message,
                              "retry_status": {"type": "exhausted"}},
                })));
            }
            Fact::Failed { error_type, message, terminal } => {
                self.pending.clear();
                let retry = if terminal { "terminal" } else { "exhausted" };
                step.events.push(ev(json!({
                    "type": "session.error",
                    "error": {"type": error_type, "message": message, "retry_status": {"type": retry}},
                })));
                if terminal {
                    self.set(SessionStatus::Terminated, &mut step, json!({"type": "session.status_terminated"}));
                } else {
                    self.set(
                        SessionStatus::Idle,
                        &mut step,
                        json!({"type": "session.status_idle", "stop_reason": {"type": "retries_exhausted"}}),
                    );
                }
            }
        }
        step
    }

    fn idle_requires_action(&mut self, step: &mut Step) {
        let ids = self.pending.clone();
        self.set(
            SessionStatus::Idle,
            step,
            json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ids}}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(step: &Step) -> Vec<&str> {
        step.events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect()
    }

    #[test]
    fn retry_sequence_then_success() {
        let mut m = StatusMachine::new(SessionStatus::Idle);
        assert_eq!(types(&m.apply(Fact::TurnStarted)), ["session.status_running"]);
        let r = || Fact::Retrying { error_type: "model_overloaded_error".into(), message: "529".into() };
        assert_eq!(types(&m.apply(r())), ["session.error", "session.status_rescheduled"]);
        assert_eq!(m.status(), SessionStatus::Rescheduling);
        // A second retry in the same outage: no second rescheduled.
        assert_eq!(types(&m.apply(r())), ["session.error"]);
        let msg = ev(json!({"type": "agent.message", "id": "sevt_1", "content": []}));
        assert_eq!(types(&m.apply(Fact::Event(msg))), ["session.status_running", "agent.message"]);
        let end = m.apply(Fact::TurnEnded(json!({"type": "end_turn"})));
        assert_eq!(end.events[0]["stop_reason"], json!({"type": "end_turn"}));
        assert_eq!(m.status(), SessionStatus::Idle);
    }

    #[test]
    fn resource_failure_keeps_the_status() {
        for status in [SessionStatus::Running, SessionStatus::Idle] {
            let mut m = StatusMachine::new(status);
            let error = ev(json!({"type": "repository_not_found_error", "message": "m", "repository_url": "u"}));
            let s = m.apply(Fact::ResourceFailed(error));
            assert_eq!(types(&s), ["session.error"]);
            assert!(!s.status_changed);
            assert_eq!(m.status(), status);
            assert_eq!(
                s.events[0]["error"],
                json!({"type": "repository_not_found_error", "message": "m", "repository_url": "u",
                       "retry_status": {"type": "retrying"}})
            );
        }
    }

    #[test]
    fn exhaustion_and_terminal_failures() {
        let mut m = StatusMachine::new(SessionStatus::Running);
        let s =
            m.apply(Fact::Failed { error_type: "model_overloaded_error".into(), message: "x".into(), terminal: false });
        assert_eq!(types(&s), ["session.error", "session.status_idle"]);
        assert_eq!(s.events[0]["error"]["retry_status"]["type"], "exhausted");
        assert_eq!(s.events[1]["stop_reason"]["type"], "retries_exhausted");
        m.apply(Fact::TurnStarted);
        let s = m.apply(Fact::Failed { error_type: "unknown_error".into(), message: "x".into(), terminal: true });
        assert_eq!(types(&s), ["session.error", "session.status_terminated"]);
        assert!(m.apply(Fact::TurnStarted).events.is_empty(), "terminated is final");
    }

    #[test]
    fn an_mcp_failure_names_its_server_and_keeps_the_status() {
        let mut m = StatusMachine::new(SessionStatus::Running);
        let s = m.apply(Fact::McpFailed {
            error_type: "mcp_connection_failed_error".into(),
            server: "docs".into(),
            message: "down".into(),
        });
        assert_eq!(types(&s), ["session.error"]);
        assert!(!s.status_changed);
        assert_eq!(
            s.events[0]["error"],
            json!({"type": "mcp_connection_failed_error", "mcp_server_name": "docs", "message": "down",
                   "retry_status": {"type": "exhausted"}})
        );
        assert_eq!(m.status(), SessionStatus::Running);
    }

    #[test]
    fn confirmations_gate_the_run() {
        let mut m = StatusMachine::new(SessionStatus::Running);
        let a = ev(
            json!({"type": "agent.tool_use", "id": "sevt_a", "name": "bash", "input": {}, "evaluated_permission": "ask"}),
        );
        let b = ev(json!({"type": "agent.custom_tool_use", "id": "sevt_b", "name": "lookup", "input": {}}));
        m.apply(Fact::Event(a));
        let s = m.apply(Fact::Event(b));
        assert_eq!(s.events.last().unwrap()["stop_reason"]["event_ids"], json!(["sevt_a", "sevt_b"]));
        // Output while waiting (the end of the model request) keeps it idle.
        let end = ev(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_x"}));
        assert_eq!(types(&m.apply(Fact::Event(end))), ["span.model_request_end"]);
        assert_eq!(m.status(), SessionStatus::Idle);
        let s = m.apply(Fact::Answered(vec!["sevt_a".into()]));
        assert_eq!(s.events[0]["stop_reason"]["event_ids"], json!(["sevt_b"]));
        let s = m.apply(Fact::Answered(vec!["sevt_b".into()]));
        assert_eq!(types(&s), ["session.status_running"]);
    }
}
