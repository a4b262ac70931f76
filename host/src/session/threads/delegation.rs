//! Delegation, decided: the custom tool a coordinator's runtime gets to run
//! a roster agent as a child thread, the reading of its calls, the thread
//! limits, and the thread events of both logs. Pure; the I/O is in
//! [`super::child`].

use serde_json::{Value, json};

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
             and answers with its final message. Agents: {}.",
            described.join("; ")
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "agent": {"type": "string", "enum": names, "description": "The agent to delegate to."},
                "message": {"type": "string", "description": "The task, as the agent's user message."}
            },
            "required": ["agent", "message"]
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

/// A delegation call, read: the roster agent and the message. An error is
/// the tool result the model hears.
pub fn parse_call<'a>(input: &Value, roster: &'a [RosterAgent]) -> Result<(&'a RosterAgent, String), String> {
    let names = || roster.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    let name = input["agent"].as_str().ok_or_else(|| format!("`agent` is required: one of {}", names()))?;
    let agent = roster
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| format!("`{name}` is not an agent you may delegate to; choose one of {}", names()))?;
    let message =
        input["message"].as_str().filter(|m| !m.trim().is_empty()).ok_or("`message` must be a non-empty string")?;
    Ok((agent, message.to_owned()))
}

/// The configured thread limits (`0`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Child threads one session may create.
    pub per_session: u32,
    /// Child-thread runtimes running at once on this node.
    pub per_node: u32,
}

/// Whether one more child thread may start; why not otherwise.
pub fn check_limits(limits: Limits, session_threads: usize, node_running: usize) -> Result<(), String> {
    if limits.per_session > 0 && session_threads >= limits.per_session as usize {
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
/// thread starts.
pub fn primary_start(thread_id: &str, agent_name: &str, message: &str) -> Vec<Value> {
    vec![
        json!({"type": "session.thread_created", "session_thread_id": thread_id, "agent_name": agent_name,
               "workflow_run_id": null}),
        status_running(thread_id, agent_name),
        json!({"type": "agent.thread_message_sent", "to_session_thread_id": thread_id,
               "to_agent_name": agent_name, "content": text(message)}),
    ]
}

/// The events that open the child's own log.
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
        // An agent without tools gets a list with the one tool.
        let a = coordinator_agent(&json!({"id": "agent_01L"}), &roster());
        assert_eq!(a["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn calls_are_read_or_answered_with_why_not() {
        let r = roster();
        // (input, Ok((agent, message)) or Err(the error's start))
        type Case = (Value, Result<(&'static str, &'static str), &'static str>);
        let table: &[Case] = &[
            (json!({"agent": "researcher", "message": "find x"}), Ok(("researcher", "find x"))),
            (json!({"agent": "agent_01C", "message": "hi"}), Ok(("agent_01C", "hi"))),
            (json!({"agent": "nobody", "message": "hi"}), Err("`nobody` is not an agent")),
            (json!({"message": "hi"}), Err("`agent` is required")),
            (json!({"agent": "researcher", "message": "  "}), Err("`message` must be")),
            (json!({"agent": "researcher"}), Err("`message` must be")),
        ];
        for (input, want) in table {
            match (parse_call(input, &r), want) {
                (Ok((a, m)), Ok((name, msg))) => assert_eq!((a.name.as_str(), m.as_str()), (*name, *msg)),
                (Err(e), Err(prefix)) => assert!(e.starts_with(prefix), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn limits_refuse_past_the_configured_counts() {
        let l = Limits { per_session: 2, per_node: 3 };
        assert!(check_limits(l, 1, 2).is_ok());
        assert!(check_limits(l, 2, 0).unwrap_err().contains("threads_per_session = 2"));
        assert!(check_limits(l, 0, 3).unwrap_err().contains("thread_runtimes_per_node = 3"));
        assert!(check_limits(Limits { per_session: 0, per_node: 0 }, 1000, 1000).is_ok());
    }

    #[test]
    fn thread_events_name_the_thread_and_agent() {
        let p = primary_start("sthr_1", "researcher", "find x");
        let kinds: Vec<&str> = p.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["session.thread_created", "session.thread_status_running", "agent.thread_message_sent"]);
        assert_eq!(p[2]["to_session_thread_id"], "sthr_1");
        assert_eq!(p[2]["content"][0]["text"], "find x");
        let c = child_start("sthr_1", "researcher", "sthr_0", "find x");
        assert_eq!(c[1]["type"], "agent.thread_message_received");
        assert_eq!(c[1]["from_session_thread_id"], "sthr_0");
        assert_eq!(limit_error("m")["error"]["type"], "thread_limit_error");
        assert_eq!(tool_result("sevt_1", "done", false)["custom_tool_use_id"], "sevt_1");
    }
}
