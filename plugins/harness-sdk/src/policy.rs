//! The agent's tool configuration (Managed Agents `agent.tools`) reduced to
//! what a harness needs: which toolset tools are enabled with which
//! permission policy, the MCP servers' tool policies, and the custom tools.
//! Shared by every plugin, so all read `agent.tools` the same way.

use serde_json::Value;
use std::collections::BTreeMap;

/// A tool's permission policy (`always_allow` / `always_ask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Allow,
    Ask,
}

impl Perm {
    /// A `permission_policy` object, or `default` when absent or unknown.
    pub fn parse(v: &Value, default: Perm) -> Perm {
        match v.get("type").and_then(Value::as_str) {
            Some("always_ask") => Perm::Ask,
            Some("always_allow") => Perm::Allow,
            _ => default,
        }
    }
}

/// The agent toolset's tools, by Managed Agents name.
pub const TOOLSET: [&str; 8] = ["bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"];

/// One MCP server's tool policies (from an `mcp_toolset`).
#[derive(Debug, Clone, Default)]
pub struct McpPolicy {
    pub default: Option<Perm>,
    pub tools: BTreeMap<String, Option<Perm>>,
}

impl McpPolicy {
    /// `None`: the tool is disabled.
    pub fn perm(&self, tool: &str) -> Option<Perm> {
        match self.tools.get(tool) {
            Some(p) => *p,
            None => self.default,
        }
    }
}

/// Enabled tools with their policies. A disabled tool is absent.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// Toolset name (`bash`, ...) → policy, enabled tools only, toolset order.
    pub builtin: Vec<(&'static str, Perm)>,
    /// MCP server name → policies.
    pub mcp: BTreeMap<String, McpPolicy>,
    /// Names of custom tools the agent declares.
    pub custom: Vec<String>,
}

/// `enabled` of a config: `Some(false)` disables, anything else keeps `default`.
fn enabled(v: &Value, default: bool) -> bool {
    v.get("enabled").and_then(Value::as_bool).unwrap_or(default)
}

impl ToolPolicy {
    /// Read `agent.tools`. An agent without a `tools` array (a bare test
    /// spec) gets the whole toolset with `always_allow`; an agent whose
    /// `tools` has no `agent_toolset_*` entry gets no built-in tools.
    pub fn from_agent(agent: &Value) -> ToolPolicy {
        let Some(tools) = agent.get("tools").and_then(Value::as_array) else {
            return ToolPolicy {
                builtin: TOOLSET.iter().map(|n| (*n, Perm::Allow)).collect(),
                ..ToolPolicy::default()
            };
        };
        let mut policy = ToolPolicy::default();
        for entry in tools {
            let kind = entry.get("type").and_then(Value::as_str).unwrap_or("");
            let default_config = entry.get("default_config").unwrap_or(&Value::Null);
            let configs = entry.get("configs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            if kind.starts_with("agent_toolset") {
                let def_on = enabled(default_config, true);
                let def_perm =
                    Perm::parse(default_config.get("permission_policy").unwrap_or(&Value::Null), Perm::Allow);
                for name in TOOLSET {
                    let cfg = configs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(name));
                    let (on, perm) = match cfg {
                        Some(c) => (
                            enabled(c, def_on),
                            Perm::parse(c.get("permission_policy").unwrap_or(&Value::Null), def_perm),
                        ),
                        None => (def_on, def_perm),
                    };
                    if on && !policy.builtin.iter().any(|(n, _)| *n == name) {
                        policy.builtin.push((name, perm));
                    }
                }
            } else if kind == "mcp_toolset" {
                let Some(server) = entry.get("mcp_server_name").and_then(Value::as_str) else {
                    continue;
                };
                // MCP tools default to always_ask (Managed Agents default).
                let def_perm = Perm::parse(default_config.get("permission_policy").unwrap_or(&Value::Null), Perm::Ask);
                let mut mp =
                    McpPolicy { default: enabled(default_config, true).then_some(def_perm), tools: BTreeMap::new() };
                for c in configs {
                    if let Some(name) = c.get("name").and_then(Value::as_str) {
                        let perm = Perm::parse(c.get("permission_policy").unwrap_or(&Value::Null), def_perm);
                        mp.tools.insert(name.to_string(), enabled(c, true).then_some(perm));
                    }
                }
                policy.mcp.insert(server.to_string(), mp);
            } else if kind == "custom"
                && let Some(name) = entry.get("name").and_then(Value::as_str)
            {
                policy.custom.push(name.to_string());
            }
        }
        policy
    }

    /// Policy of a toolset tool by Managed Agents name; `None` if disabled.
    pub fn builtin_perm(&self, name: &str) -> Option<Perm> {
        self.builtin.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toolset_defaults_and_overrides() {
        let agent = json!({"tools": [
            {"type": "agent_toolset_20260401",
             "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}},
             "configs": [
                {"name": "bash", "permission_policy": {"type": "always_ask"}},
                {"name": "web_search", "enabled": false}
             ]},
            {"type": "mcp_toolset", "mcp_server_name": "docs",
             "configs": [{"name": "search", "permission_policy": {"type": "always_allow"}}]},
            {"type": "custom", "name": "lookup", "description": "x", "input_schema": {"type": "object"}}
        ]});
        let p = ToolPolicy::from_agent(&agent);
        assert_eq!(p.builtin_perm("bash"), Some(Perm::Ask));
        assert_eq!(p.builtin_perm("read"), Some(Perm::Allow));
        assert_eq!(p.builtin_perm("web_search"), None);
        let docs = &p.mcp["docs"];
        assert_eq!(docs.perm("search"), Some(Perm::Allow));
        assert_eq!(docs.perm("other"), Some(Perm::Ask));
        assert_eq!(p.custom, vec!["lookup".to_string()]);
    }

    #[test]
    fn no_toolset_means_no_builtins_and_missing_tools_means_all() {
        assert!(ToolPolicy::from_agent(&json!({"tools": []})).builtin.is_empty());
        assert_eq!(ToolPolicy::from_agent(&json!({})).builtin.len(), 8);
        // Garbage never panics.
        let p = ToolPolicy::from_agent(&json!({"tools": [1, "x", {"type": 5}]}));
        assert!(p.builtin.is_empty());
    }
}
