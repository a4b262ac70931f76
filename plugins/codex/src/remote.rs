//! Remote tools (a self-hosted environment, `SessionSpec::remote_tools`):
//! codex's shell tool is off (`[features] shell_tool = false`), and the
//! worker's tools (`bridle_harness_sdk::remote`) are offered as dynamic
//! tools (`bash`, `read`, ...; the mechanism of the agent's custom tools).
//! An `item/tool/call` for one is emitted as the toolset's `agent.tool_use`
//! under the toolset's permission policy (codex asks no approval for
//! dynamic tools, so the plugin holds an `always_ask` call until
//! `user.tool_confirmation`), then sent to the host as a `tool-call`; the
//! worker's result is emitted as `agent.tool_result` and answers codex.

use std::collections::HashMap;

use bridle_harness_sdk::confirmation::Confirmation;
use bridle_harness_sdk::custom::CustomTool;
use bridle_harness_sdk::events::tool_result;
use bridle_harness_sdk::policy::{self, Decision, Perm, ToolPolicy};
use bridle_harness_sdk::remote::offered;
use bridle_harness_sdk::{Action, ToolCall, ToolResult, new_event_id};
use serde_json::{Value, json};

use crate::protocol::{RequestId, ToolCallParams};

#[derive(Debug, Default)]
pub struct WorkerTools {
    tools: Vec<CustomTool>,
    /// Calls sent to a worker, by `agent.tool_use` event id.
    running: HashMap<String, RequestId>,
    /// `always_ask` calls waiting for `user.tool_confirmation`.
    asking: HashMap<String, (RequestId, ToolCall)>,
}

fn reply(rpc_id: &RequestId, text: &str, success: bool) -> Action {
    let items = if text.is_empty() { json!([]) } else { json!([{"type": "inputText", "text": text}]) };
    Action::write_line(&json!({"id": rpc_id, "result": {"contentItems": items, "success": success}}))
}

impl WorkerTools {
    /// The worker's tools the agent enables, when the session's tools are remote.
    pub fn new(remote: bool, policy: &ToolPolicy) -> Self {
        WorkerTools { tools: if remote { offered(policy) } else { Vec::new() }, ..WorkerTools::default() }
    }

    pub fn enabled(&self) -> bool {
        !self.tools.is_empty()
    }

    /// Their `thread/start.dynamicTools` entries.
    pub fn specs(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "inputSchema": t.input_schema}))
            .collect()
    }

    /// Whether an `item/tool/call` is for one of them.
    pub fn serves(&self, p: &ToolCallParams) -> bool {
        p.namespace.is_none() && p.tool.as_deref().is_some_and(|n| self.tools.iter().any(|t| t.name == n))
    }

    /// The server request `item/tool/call` for one of them.
    pub fn on_call(&mut self, rpc_id: RequestId, p: ToolCallParams, policy: &ToolPolicy, out: &mut Vec<Action>) {
        let name = p.tool.unwrap_or_default();
        let input = if p.arguments.is_object() { p.arguments } else { json!({}) };
        let id = new_event_id();
        let mut event = json!({"type": "agent.tool_use", "id": id, "name": name, "input": input});
        let perm = policy.builtin_perm(&name).unwrap_or(Perm::Allow);
        let decision = match perm {
            Perm::Allow => Decision::Allow,
            Perm::Ask => Decision::Ask,
            Perm::Auto => {
                let (decision, evaluation) = policy::decide(perm, &name, &input);
                event["evaluation"] = evaluation;
                decision
            }
        };
        event["evaluated_permission"] = json!(decision.as_str());
        out.push(Action::emit_json(&event));
        let call = ToolCall { id: id.clone(), name, input };
        match decision {
            Decision::Allow => {
                self.running.insert(id, rpc_id);
                out.push(Action::ToolCall(call));
            }
            Decision::Ask => {
                self.asking.insert(id, (rpc_id, call));
            }
            Decision::Deny => {
                out.push(tool_result(&id, policy::AUTO_DENIED, true));
                out.push(reply(&rpc_id, policy::AUTO_DENIED, false));
            }
        }
    }

    /// `user.tool_confirmation` for a held call; `None` when it is not ours.
    pub fn on_confirmation(&mut self, c: &Confirmation) -> Option<Vec<Action>> {
        let (rpc_id, call) = self.asking.remove(&c.tool_use_id)?;
        if c.allow {
            self.running.insert(call.id.clone(), rpc_id);
            return Some(vec![Action::ToolCall(call)]);
        }
        Some(vec![tool_result(&c.tool_use_id, &c.deny_message, true), reply(&rpc_id, &c.deny_message, false)])
    }

    /// A worker's result: emitted, and the answer of the waiting call.
    pub fn on_result(&mut self, result: ToolResult) -> Result<Vec<Action>, String> {
        let rpc_id =
            self.running.remove(&result.id).ok_or_else(|| format!("tool result for unknown call {}", result.id))?;
        Ok(vec![
            tool_result(&result.id, &result.content, result.is_error),
            reply(&rpc_id, &result.content, !result.is_error),
        ])
    }

    /// codex resolved (or dropped) a server request.
    pub fn resolved(&mut self, rpc_id: &RequestId) {
        self.running.retain(|_, r| r != rpc_id);
        self.asking.retain(|_, (r, _)| r != rpc_id);
    }

    /// An interrupt: calls still held for a confirmation are answered as
    /// failed (a running call is answered when the host cancels it).
    pub fn release_asking(&mut self, why: &str, out: &mut Vec<Action>) {
        let mut held: Vec<_> = self.asking.drain().collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, (rpc_id, _)) in held {
            out.push(tool_result(&id, why, true));
            out.push(reply(&rpc_id, why, false));
        }
    }

    pub fn forget_all(&mut self) {
        self.running.clear();
        self.asking.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(perm: &str) -> ToolPolicy {
        ToolPolicy::from_agent(&json!({"tools": [{"type": "agent_toolset_20260401",
            "default_config": {"permission_policy": {"type": perm}}}]}))
    }

    fn params(tool: &str) -> ToolCallParams {
        serde_json::from_value(json!({"callId": "c1", "tool": tool, "arguments": {"command": "ls"}})).unwrap()
    }

    fn event(a: &Action) -> Value {
        match a {
            Action::Emit(s) => serde_json::from_str(s).unwrap(),
            Action::Write(b) => serde_json::from_slice(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offered_only_when_remote() {
        let p = policy("always_allow");
        assert!(!WorkerTools::new(false, &p).enabled());
        let w = WorkerTools::new(true, &p);
        let names: Vec<Value> = w.specs().iter().map(|s| s["name"].clone()).collect();
        assert_eq!(names, [json!("bash"), json!("read"), json!("write"), json!("edit"), json!("glob"), json!("grep")]);
        assert!(w.serves(&params("bash")) && !w.serves(&params("web_fetch")));
    }

    #[test]
    fn an_allowed_call_runs_on_a_worker_and_its_result_answers_codex() {
        let p = policy("always_allow");
        let mut w = WorkerTools::new(true, &p);
        let mut out = Vec::new();
        w.on_call(RequestId::Number(4), params("bash"), &p, &mut out);
        let use_ = event(&out[0]);
        assert_eq!((use_["name"].as_str(), use_["evaluated_permission"].as_str()), (Some("bash"), Some("allow")));
        let id = use_["id"].as_str().unwrap().to_string();
        assert!(matches!(&out[1], Action::ToolCall(c) if c.id == id && c.input == json!({"command": "ls"})));
        let done = w.on_result(ToolResult { id: id.clone(), content: "a".into(), ..Default::default() }).unwrap();
        assert_eq!(event(&done[0])["tool_use_id"], id.as_str());
        let answer = event(&done[1]);
        assert_eq!((answer["id"].clone(), answer["result"]["success"].clone()), (json!(4), json!(true)));
        assert!(w.on_result(ToolResult { id, ..Default::default() }).is_err(), "answered once");
    }

    #[test]
    fn an_asked_call_waits_for_the_confirmation() {
        let p = policy("always_ask");
        let mut w = WorkerTools::new(true, &p);
        let mut out = Vec::new();
        w.on_call(RequestId::Number(5), params("bash"), &p, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let id = event(&out[0])["id"].as_str().unwrap().to_string();
        assert_eq!(event(&out[0])["evaluated_permission"], "ask");
        let answer =
            |id: &str, allow: bool| Confirmation { tool_use_id: id.to_string(), allow, deny_message: "no".into() };
        assert!(w.on_confirmation(&answer("sevt_other", true)).is_none());
        let denied = w.on_confirmation(&answer(&id, false)).unwrap();
        assert_eq!(event(&denied[0])["is_error"], true);
        assert_eq!(event(&denied[1])["result"]["success"], false);
        let mut out = Vec::new();
        w.on_call(RequestId::Number(6), params("bash"), &p, &mut out);
        let id = event(&out[0])["id"].as_str().unwrap().to_string();
        let allowed = w.on_confirmation(&answer(&id, true)).unwrap();
        assert!(matches!(&allowed[..], [Action::ToolCall(c)] if c.id == id));
    }
}
