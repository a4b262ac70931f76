//! Delegation, decided: the custom tool a coordinator's runtime gets to run
//! a roster agent as a child thread, the reading of its calls, the thread
//! limits, and the thread events of both logs. Pure; the I/O is in
//! [`super::child`].

use serde_json::{Value, json};

use crate::model::sessions::SessionStatus;
use crate::model::threads::SessionThread;

/// The custom tool a coordinator's runtime calls to delegate. The host
/// answers it, never the client.
pub const TOOL: &str = "delegate_to_agent";

/// One agent of a coordinator's roster, as a child thread runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RosterAgent {
    /// What the coordinator calls it (the agent's name; its id when two
    /// roster agents share a name).
    pub name: String,
    /// The agent's session snapshot (`BetaManagedAgentsSessionAgent`).
    pub snapshot: Value,
    /// The harness its metadata names (`bridle.engine`); `None`: the
    /// session's.
    pub engine: Option<String>,
}

/// Roster agents named for the tool: by name, or by id where names clash.
pub fn name_roster(agents: Vec<Value>) -> Vec<RosterAgent> {
    let names: Vec<String> = agents.iter().map(|a| a["name"].as_str().unwrap_or_default().to_owned()).collect();
    agents
        .into_iter()
        .zip(names.iter())
        .map(|(snapshot, name)| {
            let unique = !name.is_empty() && names.iter().filter(|n| *n == name).count() == 1;
            let name = match unique {
                true => name.clone(),
                false => snapshot["id"].as_str().unwrap_or_default().to_owned(),
            };
            RosterAgent { name, snapshot, engine: None }
        })
        .collect()
}

/// The delegation tool, as an agent's `tools` entry.
pub fn tool(roster: &[RosterAgent]) -> Value {
    let names: Vec<&str> = roster.iter().map(|a| a.name.as_str()).collect();
    let described: Vec<String> = roster
        .iter()
        .map(|a| match a.snapshot["description"].as_str().filter(|d| !d.is_empty()) {
            Some(d) => format!("`{}`: {d}", a.name),
            None => format!("`{}`", a.name),
        })
        .collect();
    json!({
        "type": "custom",
        "name": TOOL,
        "description": format!(
            "Delegate a task to another agent, which works on it in a thread of its own (in the same workspace) \
             and answers with its final message and the thread's id; send a follow-up to that thread with \
             `thread_id`. Agents: {}.",
            described.join("; ")
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "agent": {"type": "string", "enum": names,
                          "description": "The agent to delegate to (may be left out with `thread_id`)."},
                "message": {"type": "string", "description": "The task, as the agent's user message."},
                "thread_id": {"type": "string",
                              "description": "To follow up on an earlier delegation: the thread id its result \
                                              named. The agent goes on in that thread, with what it was told and \
                                              did there. Without it, the agent starts a new thread."}
            },
            "required": ["message"]
        }
    })
}

/// The coordinator's agent as its runtime gets it: without the roster, with
/// the delegation tool.
pub fn coordinator_agent(agent: &Value, roster: &[RosterAgent]) -> Value {
    let mut agent = agent.clone();
    if let Some(o) = agent.as_object_mut() {
        o.remove("multiagent");
        let tools = o.entry("tools").or_insert_with(|| json!([]));
        if !tools.is_array() {
            *tools = json!([]);
        }
        if let Some(list) = tools.as_array_mut() {
            list.push(tool(roster));
        }
    }
    agent
}

/// A delegation call, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    /// The roster agent the call names (`None`: a follow-up that names only
    /// its thread).
    pub agent: Option<&'a RosterAgent>,
    pub message: String,
    /// The thread to follow up on; `None`: a new thread.
    pub thread_id: Option<String>,
}

/// A delegation call, read: the roster agent, the message, the thread to
/// follow up on. An error is the tool result the model hears.
pub fn parse_call<'a>(input: &Value, roster: &'a [RosterAgent]) -> Result<Request<'a>, String> {
    let names = || roster.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    let thread_id = match input.get("thread_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        Some(other) => return Err(format!("`thread_id` must be a thread id an earlier delegation named, not {other}")),
    };
    let agent = match (input.get("agent").and_then(Value::as_str), &thread_id) {
        (None, None) => return Err(format!("`agent` is required: one of {}", names())),
        (None, Some(_)) => None,
        (Some(name), _) => Some(
            roster
                .iter()
                .find(|a| a.name == name)
                .ok_or_else(|| format!("`{name}` is not an agent you may delegate to; choose one of {}", names()))?,
        ),
    };
    let message =
        input["message"].as_str().filter(|m| !m.trim().is_empty()).ok_or("`message` must be a non-empty string")?;
    Ok(Request { agent, message: message.to_owned(), thread_id })
}

/// The roster agent a follow-up to `thread_id` runs, or why it may not run:
/// `thread` is the session's thread of that id (`None`: the session has no
/// such child thread), `named` the agent the call named, if any.
pub fn follow_up<'a>(
    thread_id: &str,
    thread: Option<&SessionThread>,
    primary_id: &str,
    named: Option<&RosterAgent>,
    roster: &'a [RosterAgent],
) -> Result<&'a RosterAgent, String> {
    if thread_id == primary_id {
        return Err(format!("`{thread_id}` is your own thread; name a thread an earlier delegation returned"));
    }
    let Some(t) = thread else {
        return Err(format!(
            "`{thread_id}` is not a thread of this session; name a thread an earlier delegation returned, \
             or leave `thread_id` out to start a new one"
        ));
    };
    if t.archived_at.is_some() {
        return Err(format!("thread `{thread_id}` is archived: it takes no more messages"));
    }
    match t.status {
        SessionStatus::Terminated => {
            return Err(format!(
                "thread `{thread_id}` is terminated (its turn failed or was cut off) and takes no more messages; \
                 leave `thread_id` out to start a new thread"
            ));
        }
        SessionStatus::Running | SessionStatus::Rescheduling => {
            return Err(format!("thread `{thread_id}` is running a turn already; wait for its answer"));
        }
        SessionStatus::Idle => {}
    }
    let id = t.agent["id"].as_str().unwrap_or_default();
    let agent = roster
        .iter()
        .find(|a| a.snapshot["id"].as_str() == Some(id))
        .ok_or_else(|| format!("thread `{thread_id}` runs agent `{id}`, which is not in your roster"))?;
    match named {
        Some(n) if n.name != agent.name => {
            Err(format!("thread `{thread_id}` runs agent `{}`, not `{}`", agent.name, n.name))
        }
        _ => Ok(agent),
    }
}

/// The configured thread limits (`0`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Child threads one session may create.
    pub per_session: u32,
    /// Child-thread runtimes running at once on this node.
    pub per_node: u32,
}

/// Whether one more child-thread runtime may start; why not otherwise.
/// `new_thread`: the session's child threads so far when the call creates
/// one (`None`: a follow-up, which is no new thread).
pub fn check_limits(limits: Limits, new_thread: Option<usize>, node_running: usize) -> Result<(), String> {
    if let Some(session_threads) = new_thread
        && limits.per_session > 0
        && session_threads >= limits.per_session as usize
    {
        return Err(format!(
            "this session has created {session_threads} threads, the most one session may create \
             (sessions.threads_per_session = {})",
            limits.per_session
        ));
    }
    if limits.per_node > 0 && node_running >= limits.per_node as usize {
        return Err(format!(
            "{node_running} delegated threads are running on this server, the most it runs at once \
             (sessions.thread_runtimes_per_node = {}); try again later",
            limits.per_node
        ));
    }
    Ok(())
}

/// The `session.error` a refused delegation adds to the session's log.
pub fn limit_error(message: &str) -> Value {
    json!({"type": "session.error",
           "error": {"type": "thread_limit_error", "message": message, "retry_status": {"type": "exhausted"}}})
}

fn text(message: &str) -> Value {
    json!([{"type": "text", "text": message}])
}

/// The events a delegation adds to the session's (primary) log when its
/// thread starts a turn: `new`, a thread created for it; else a follow-up.
pub fn primary_start(thread_id: &str, agent_name: &str, message: &str, new: bool) -> Vec<Value> {
    let created = json!({"type": "session.thread_created", "session_thread_id": thread_id, "agent_name": agent_name,
                         "workflow_run_id": null});
    let rest = [
        status_running(thread_id, agent_name),
        json!({"type": "agent.thread_message_sent", "to_session_thread_id": thread_id,
               "to_agent_name": agent_name, "content": text(message)}),
    ];
    new.then_some(created).into_iter().chain(rest).collect()
}

/// The events that open a turn in the child's own log.
pub fn child_start(thread_id: &str, agent_name: &str, primary_id: &str, message: &str) -> Vec<Value> {
    vec![
        status_running(thread_id, agent_name),
        json!({"type": "agent.thread_message_received", "from_session_thread_id": primary_id,
               "content": text(message)}),
    ]
}

pub fn status_running(thread_id: &str, agent_name: &str) -> Value {
    json!({"type": "session.thread_status_running", "session_thread_id": thread_id, "agent_name": agent_name})
}

pub fn status_idle(thread_id: &str, agent_name: &str, stop_reason: Value) -> Value {
    json!({"type": "session.thread_status_idle", "session_thread_id": thread_id, "agent_name": agent_name,
           "stop_reason": stop_reason})
}

pub fn status_terminated(thread_id: &str, agent_name: &str) -> Value {
    json!({"type": "session.thread_status_terminated", "session_thread_id": thread_id, "agent_name": agent_name})
}

/// The call's result text: the child's answer and the thread to follow up on.
pub fn answer(thread_id: &str, text_out: &str) -> String {
    format!("{text_out}\n\n[thread_id: {thread_id} (pass it as `thread_id` to send this agent a follow-up)]")
}

/// The answer the coordinator's runtime gets for its call.
pub fn tool_result(use_id: &str, text_out: &str, is_error: bool) -> Value {
    json!({"type": "user.custom_tool_result", "custom_tool_use_id": use_id, "content": text(text_out),
           "is_error": is_error})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Vec<RosterAgent> {
        name_roster(vec![
            json!({"id": "agent_01A", "name": "researcher", "description": "finds things"}),
            json!({"id": "agent_01B", "name": "twin"}),
            json!({"id": "agent_01C", "name": "twin"}),
        ])
    }

    #[test]
    fn clashing_names_are_called_by_id() {
        let names: Vec<String> = roster().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["researcher", "agent_01B", "agent_01C"]);
    }

    #[test]
    fn the_coordinator_gets_the_tool_and_loses_the_roster() {
        let agent = json!({"id": "agent_01L", "multiagent": {"type": "coordinator"},
                           "tools": [{"type": "custom", "name": "lookup"}]});
        let a = coordinator_agent(&agent, &roster());
        assert!(a.get("multiagent").is_none());
        let tools = a["tools"].as_array().unwrap();
        assert_eq!(tools[0]["name"], "lookup");
        assert_eq!(tools[1]["name"], TOOL);
        assert_eq!(
            tools[1]["input_schema"]["properties"]["agent"]["enum"],
            json!(["researcher", "agent_01B", "agent_01C"])
        );
        assert!(tools[1]["description"].as_str().unwrap().contains("`researcher`: finds things"));
        // A follow-up names its thread instead of (or with) its agent.
        assert_eq!(tools[1]["input_schema"]["required"], json!(["message"]));
        assert_eq!(tools[1]["input_schema"]["properties"]["thread_id"]["type"], "string");
        // An agent without tools gets a list with the one tool.
        let a = coordinator_agent(&json!({"id": "agent_01L"}), &roster());
        assert_eq!(a["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn calls_are_read_or_answered_with_why_not() {
        let r = roster();
        // (input, Ok((agent, message, thread)) or Err(the error's start))
        type Case = (Value, Result<(Option<&'static str>, &'static str, Option<&'static str>), &'static str>);
        let table: &[Case] = &[
            (json!({"agent": "researcher", "message": "find x"}), Ok((Some("researcher"), "find x", None))),
            (json!({"agent": "agent_01C", "message": "hi"}), Ok((Some("agent_01C"), "hi", None))),
            (json!({"agent": "nobody", "message": "hi"}), Err("`nobody` is not an agent")),
            (json!({"message": "hi"}), Err("`agent` is required")),
            (json!({"agent": "researcher", "message": "  "}), Err("`message` must be")),
            (json!({"agent": "researcher"}), Err("`message` must be")),
            // A follow-up names its thread, with or without its agent.
            (json!({"thread_id": "sthr_9", "message": "more"}), Ok((None, "more", Some("sthr_9")))),
            (
                json!({"agent": "researcher", "thread_id": " sthr_9 ", "message": "more"}),
                Ok((Some("researcher"), "more", Some("sthr_9"))),
            ),
            (json!({"agent": "researcher", "thread_id": null, "message": "x"}), Ok((Some("researcher"), "x", None))),
            (json!({"thread_id": "", "message": "more"}), Err("`thread_id` must be")),
            (json!({"thread_id": 7, "message": "more"}), Err("`thread_id` must be")),
            (json!({"thread_id": "sthr_9", "agent": "nobody", "message": "m"}), Err("`nobody` is not an agent")),
            (json!({"thread_id": "sthr_9"}), Err("`message` must be")),
        ];
        for (input, want) in table {
            match (parse_call(input, &r), want) {
                (Ok(got), Ok((name, msg, thread))) => assert_eq!(
                    (got.agent.map(|a| a.name.as_str()), got.message.as_str(), got.thread_id.as_deref()),
                    (*name, *msg, *thread),
                    "{input}"
                ),
                (Err(e), Err(prefix)) => assert!(e.starts_with(prefix), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn child(status: SessionStatus, agent_id: &str, archived: bool) -> SessionThread {
        SessionThread {
            id: "sthr_9".into(),
            agent: json!({"id": agent_id, "name": "researcher"}),
            archived_at: archived.then(|| "2026-01-01T00:00:00Z".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
            parent_thread_id: Some("sthr_0".into()),
            session_id: "sesn_0".into(),
            stats: None,
            status,
            kind: "session_thread".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            usage: None,
            workflow_run_id: None,
        }
    }

    #[test]
    fn a_follow_up_goes_to_an_idle_thread_of_the_session_only() {
        use SessionStatus::*;
        let r = roster();
        let idle = child(Idle, "agent_01A", false);
        // (thread id, the session's thread of that id, agent named, Ok(agent) or Err(the error's start))
        type Case = (&'static str, Option<SessionThread>, Option<usize>, Result<&'static str, &'static str>);
        let table: Vec<Case> = vec![
            ("sthr_9", Some(idle.clone()), None, Ok("researcher")),
            ("sthr_9", Some(idle.clone()), Some(0), Ok("researcher")),
            ("sthr_9", Some(idle.clone()), Some(1), Err("thread `sthr_9` runs agent `researcher`, not `agent_01B`")),
            // Another session's thread is not found in this one.
            ("sthr_other", None, None, Err("`sthr_other` is not a thread of this session")),
            ("sthr_0", None, None, Err("`sthr_0` is your own thread")),
            ("sthr_9", Some(child(Idle, "agent_01A", true)), None, Err("thread `sthr_9` is archived")),
            ("sthr_9", Some(child(Terminated, "agent_01A", false)), None, Err("thread `sthr_9` is terminated")),
            ("sthr_9", Some(child(Running, "agent_01A", false)), None, Err("thread `sthr_9` is running")),
            ("sthr_9", Some(child(Idle, "agent_01Z", false)), None, Err("thread `sthr_9` runs agent `agent_01Z`")),
            ("sthr_9", Some(child(Idle, "agent_01C", false)), None, Ok("agent_01C")),
        ];
        for (id, thread, named, want) in table {
            let got = follow_up(id, thread.as_ref(), "sthr_0", named.map(|i| &r[i]), &r);
            match (got, want) {
                (Ok(a), Ok(name)) => assert_eq!(a.name, name, "{id}"),
                (Err(e), Err(prefix)) => assert!(e.starts_with(prefix), "{id}: {e}"),
                (got, want) => panic!("{id}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn limits_refuse_past_the_configured_counts() {
        let l = Limits { per_session: 2, per_node: 3 };
        assert!(check_limits(l, Some(1), 2).is_ok());
        assert!(check_limits(l, Some(2), 0).unwrap_err().contains("threads_per_session = 2"));
        assert!(check_limits(l, Some(0), 3).unwrap_err().contains("thread_runtimes_per_node = 3"));
        // A follow-up creates no thread: only the node's runtimes count.
        assert!(check_limits(l, None, 2).is_ok());
        assert!(check_limits(l, None, 3).unwrap_err().contains("thread_runtimes_per_node = 3"));
        assert!(check_limits(Limits { per_session: 0, per_node: 0 }, Some(1000), 1000).is_ok());
    }

    #[test]
    fn thread_events_name_the_thread_and_agent() {
        let kinds = |p: &[Value]| p.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let p = primary_start("sthr_1", "researcher", "find x", true);
        assert_eq!(kinds(&p), ["session.thread_created", "session.thread_status_running", "agent.thread_message_sent"]);
        assert_eq!(p[2]["to_session_thread_id"], "sthr_1");
        assert_eq!(p[2]["content"][0]["text"], "find x");
        // A follow-up: the thread runs again, no thread is created.
        let p = primary_start("sthr_1", "researcher", "more", false);
        assert_eq!(kinds(&p), ["session.thread_status_running", "agent.thread_message_sent"]);
        assert_eq!((&p[0]["session_thread_id"], &p[1]["to_session_thread_id"]), (&json!("sthr_1"), &json!("sthr_1")));
        assert!(
            answer("sthr_1", "done").starts_with("done\n") && answer("sthr_1", "done").contains("thread_id: sthr_1")
        );
        let c = child_start("sthr_1", "researcher", "sthr_0", "find x");
        assert_eq!(c[1]["type"], "agent.thread_message_received");
        assert_eq!(c[1]["from_session_thread_id"], "sthr_0");
        assert_eq!(limit_error("m")["error"]["type"], "thread_limit_error");
        assert_eq!(tool_result("sevt_1", "done", false)["custom_tool_use_id"], "sevt_1");
    }
}
