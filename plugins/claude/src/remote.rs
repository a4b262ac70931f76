//! Remote tools (a self-hosted environment, `SessionSpec::remote_tools`):
//! Claude Code's own workspace tools are off, and the worker's tools
//! (`bridle_harness_sdk::remote`) are offered by a second SDK MCP server of
//! this plugin, `workspace` (the model sees `mcp__workspace__bash`, ...).
//! Their tool uses are emitted as the toolset's `agent.tool_use` (name
//! `bash`, ..., under the toolset's permission policy, as a built-in would
//! be); the `tools/call` becomes a `tool-call` action the host sends to a
//! worker, and the worker's result answers the call.

use std::collections::HashMap;

use bridle_harness_sdk::custom::CustomTool;
use bridle_harness_sdk::policy::ToolPolicy;
use bridle_harness_sdk::remote::offered;
use bridle_harness_sdk::{Action, LogLevel, ToolCall, ToolResult, log};
use serde_json::{Value, json};

use crate::protocol::{McpMessage, McpParams};
use crate::sdk_mcp::{self, Waiting};

/// The SDK MCP server's name (the middle of `mcp__workspace__<tool>`).
pub const SERVER: &str = "workspace";
const PREFIX: &str = "mcp__workspace__";

/// A `tools/call` whose tool use is not known to the session: what it needs
/// to emit before the call goes out (an older CLI without `_meta`).
pub struct Unannounced<'a> {
    pub name: &'a str,
    pub input: &'a Value,
}

#[derive(Debug, Default)]
pub struct WorkerTools {
    tools: Vec<CustomTool>,
    /// Calls sent to a worker, by the `agent.tool_use` event id.
    waiting: HashMap<String, Waiting>,
}

fn call_result(w: &Waiting, text: &str, is_error: bool) -> Action {
    // The API (and the CLI) refuse an error result without content.
    let content = match (text.is_empty(), is_error) {
        (true, false) => json!([]),
        (true, true) => json!([{"type": "text", "text": "(no output)"}]),
        _ => json!([{"type": "text", "text": text}]),
    };
    sdk_mcp::call_result(w, content, is_error)
}

impl WorkerTools {
    /// The worker's tools the agent enables, when the session's tools are remote.
    pub fn new(remote: bool, policy: &ToolPolicy) -> Self {
        WorkerTools { tools: if remote { offered(policy) } else { Vec::new() }, waiting: HashMap::new() }
    }

    pub fn enabled(&self) -> bool {
        !self.tools.is_empty()
    }

    /// The `--mcp-config` entry for the server.
    pub fn mcp_config(&self) -> Value {
        json!({"type": "sdk", "name": SERVER})
    }

    /// Claude Code's name for a worker tool.
    pub fn claude_name(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// The toolset name behind a Claude Code tool name, if it is one of ours.
    pub fn toolset_name<'a>(&self, claude_name: &'a str) -> Option<&'a str> {
        claude_name.strip_prefix(PREFIX).filter(|n| self.tools.iter().any(|t| t.name == *n))
    }

    /// One `mcp_message` control request for our server. A `tools/call`
    /// asks `event_for` for the `agent.tool_use` its tool use was emitted as
    /// (by the model's tool use id); `None` emits one through `announce`.
    pub fn on_mcp_message(
        &mut self,
        request_id: &str,
        message: McpMessage,
        event_for: impl FnOnce(&str) -> Option<String>,
        announce: impl FnOnce(Unannounced<'_>, &mut Vec<Action>) -> String,
        out: &mut Vec<Action>,
    ) {
        if let Some((waiting, params)) = sdk_mcp::dispatch(request_id, message, SERVER, &self.tools, out) {
            self.on_call(waiting, params, event_for, announce, out);
        }
    }

    fn on_call(
        &mut self,
        waiting: Waiting,
        params: McpParams,
        event_for: impl FnOnce(&str) -> Option<String>,
        announce: impl FnOnce(Unannounced<'_>, &mut Vec<Action>) -> String,
        out: &mut Vec<Action>,
    ) {
        let name = params.name.as_deref().unwrap_or_default();
        if !self.tools.iter().any(|t| t.name == name) {
            out.push(call_result(&waiting, &format!("`{name}` is not a tool of this session's workers"), true));
            return;
        }
        let input = params.arguments.filter(Value::is_object).unwrap_or_else(|| json!({}));
        let tool_use_id = params.meta.and_then(|m| m.tool_use_id).unwrap_or_default();
        let event_id = match event_for(&tool_use_id) {
            Some(id) => id,
            None => announce(Unannounced { name, input: &input }, out),
        };
        if self.waiting.contains_key(&event_id) {
            log(LogLevel::Warn, &format!("claude: a second tools/call for tool use {event_id}, refused"));
            out.push(call_result(&waiting, "this tool use is already running", true));
            return;
        }
        self.waiting.insert(event_id.clone(), waiting);
        out.push(Action::ToolCall(ToolCall { id: event_id, name: name.to_string(), input }));
    }

    /// A worker's result: the answer of the waiting `tools/call`.
    pub fn on_result(&mut self, result: ToolResult) -> Result<Vec<Action>, String> {
        let w = self.waiting.remove(&result.id).ok_or_else(|| format!("tool result for unknown call {}", result.id))?;
        Ok(vec![call_result(&w, &result.content, result.is_error)])
    }

    /// The CLI withdrew a control request.
    pub fn cancel(&mut self, request_id: &str) {
        self.waiting.retain(|_, w| w.request_id != request_id);
    }

    /// Forget every open call (the turn or the process ended).
    pub fn forget_all(&mut self) {
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> WorkerTools {
        WorkerTools::new(true, &ToolPolicy::from_agent(&json!({"tools": [{"type": "agent_toolset_20260401"}]})))
    }

    fn call(name: &str, tool_use_id: Option<&str>) -> McpMessage {
        let mut params = json!({"name": name, "arguments": {"command": "ls"}});
        if let Some(id) = tool_use_id {
            params["_meta"] = json!({"claudecode/toolUseId": id});
        }
        serde_json::from_value(json!({"method": "tools/call", "id": 7, "params": params})).unwrap()
    }

    #[test]
    fn off_unless_the_tools_are_remote() {
        let policy = ToolPolicy::from_agent(&json!({"tools": [{"type": "agent_toolset_20260401"}]}));
        assert!(!WorkerTools::new(false, &policy).enabled());
        let on = all();
        assert!(on.enabled());
        assert_eq!(on.toolset_name("mcp__workspace__bash"), Some("bash"));
        assert_eq!(on.toolset_name("mcp__workspace__web_fetch"), None);
        assert_eq!(on.toolset_name("Bash"), None);
    }

    #[test]
    fn a_call_goes_to_the_host_and_its_result_answers_the_cli() {
        let mut w = all();
        let mut out = Vec::new();
        let event = |id: &str| (id == "toolu_1").then(|| "sevt_1".to_string());
        w.on_mcp_message("req_1", call("bash", Some("toolu_1")), event, |_, _| unreachable!(), &mut out);
        assert_eq!(
            out,
            [Action::ToolCall(ToolCall { id: "sevt_1".into(), name: "bash".into(), input: json!({"command": "ls"}) })]
        );
        let reply = w.on_result(ToolResult { id: "sevt_1".into(), content: "a.txt".into(), ..Default::default() });
        let Ok(reply) = reply else { panic!("{reply:?}") };
        let Action::Write(bytes) = &reply[0] else { panic!("{reply:?}") };
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v["response"]["request_id"], "req_1");
        let rpc = &v["response"]["response"]["mcp_response"];
        assert_eq!((rpc["id"].clone(), rpc["result"]["isError"].clone()), (json!(7), json!(false)));
        assert_eq!(rpc["result"]["content"][0]["text"], "a.txt");
        // Answered once.
        assert!(w.on_result(ToolResult { id: "sevt_1".into(), ..Default::default() }).is_err());
    }

    #[test]
    fn a_call_without_its_tool_use_is_announced_and_an_unknown_tool_refused() {
        let mut w = all();
        let mut out = Vec::new();
        w.on_mcp_message(
            "req_2",
            call("bash", None),
            |_| None,
            |u, out| {
                out.push(Action::emit_json(&json!({"type": "agent.tool_use", "id": "sevt_9", "name": u.name})));
                "sevt_9".into()
            },
            &mut out,
        );
        assert!(matches!(&out[..], [Action::Emit(_), Action::ToolCall(c)] if c.id == "sevt_9"), "{out:?}");
        let mut out = Vec::new();
        w.on_mcp_message("req_3", call("web_fetch", Some("t")), |_| None, |_, _| unreachable!(), &mut out);
        let Action::Write(bytes) = &out[0] else { panic!("{out:?}") };
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v["response"]["response"]["mcp_response"]["result"]["isError"], true);
    }
}
