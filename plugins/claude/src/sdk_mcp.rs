//! What every SDK MCP server of this plugin shares (the custom tools'
//! `bridle` server and the workers' `workspace` server): Claude Code sends
//! each MCP JSON-RPC message as an `mcp_message` control request and takes
//! the answer in a `control_response`. Notifications, `initialize`,
//! `tools/list`, `ping` and unknown methods are answered here; a
//! `tools/call` goes back to the server that owns the tools.

use bridle_harness_sdk::Action;
use bridle_harness_sdk::custom::CustomTool;
use serde_json::{Value, json};

use crate::protocol::{McpMessage, McpParams};

/// MCP protocol version answered when the client names none.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// A `tools/call` to answer later: the control request and the JSON-RPC id
/// inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub request_id: String,
    pub rpc_id: Value,
}

/// The `control_response` carrying an MCP JSON-RPC `response`.
pub fn reply(request_id: &str, response: Value) -> Action {
    Action::write_line(&json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": {"mcp_response": response}},
    }))
}

/// The answer to a waiting `tools/call`.
pub fn call_result(w: &Waiting, content: Value, is_error: bool) -> Action {
    reply(&w.request_id, json!({"jsonrpc": "2.0", "id": w.rpc_id, "result": {"content": content, "isError": is_error}}))
}

/// Answer `message` unless it is a `tools/call`, which is returned (with
/// what its answer needs) for the caller to handle.
pub fn dispatch(
    request_id: &str,
    message: McpMessage,
    server: &str,
    tools: &[CustomTool],
    out: &mut Vec<Action>,
) -> Option<(Waiting, McpParams)> {
    let method = message.method.as_deref().unwrap_or_default();
    let params = message.params.unwrap_or_default();
    let Some(rpc_id) = message.id else {
        // A notification: the CLI still wants its control request answered.
        out.push(reply(request_id, json!({"jsonrpc": "2.0", "result": {}, "id": 0})));
        return None;
    };
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": rpc_id, "result": result});
    let answer = match method {
        "initialize" => {
            let version = params.protocol_version.as_deref().unwrap_or(PROTOCOL_VERSION);
            ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": server, "version": env!("CARGO_PKG_VERSION")},
            }))
        }
        "tools/list" => {
            let tools: Vec<Value> = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
                .collect();
            ok(json!({"tools": tools}))
        }
        "ping" => ok(json!({})),
        "tools/call" => return Some((Waiting { request_id: request_id.to_string(), rpc_id }, params)),
        other => json!({"jsonrpc": "2.0", "id": rpc_id,
                        "error": {"code": -32601, "message": format!("method `{other}` not found")}}),
    };
    out.push(reply(request_id, answer));
    None
}
