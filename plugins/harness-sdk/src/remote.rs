//! Remote tools: in a self-hosted environment ([`SessionSpec::remote_tools`](crate::SessionSpec))
//! the workspace tools run on the environment's workers, the official SDKs'
//! `EnvironmentWorker`, which implements the `agent_toolset_20260401` tools
//! `bash`, `read`, `write`, `edit`, `glob` and `grep` (not `web_fetch` or
//! `web_search`: those stay in the runtime, they touch no workspace). A
//! plugin whose runtime runs tools itself turns those built-ins off and
//! offers these instead, through its custom-tool mechanism, with the input
//! shapes the worker reads; each call becomes an `agent.tool_use` named as
//! below and an [`Action::ToolCall`](crate::Action) the host sends to a worker.

use serde_json::{Value, json};

use crate::custom::CustomTool;
use crate::policy::ToolPolicy;

/// The tools a worker runs, by Managed Agents name.
pub const WORKER_TOOLS: [&str; 6] = ["bash", "read", "write", "edit", "glob", "grep"];

/// Whether a worker runs this tool.
pub fn runs_on_worker(name: &str) -> bool {
    WORKER_TOOLS.contains(&name)
}

/// The worker tools the agent enables, as the runtime is offered them: the
/// input schemas are the SDK's `BetaManagedAgentsAgentToolset20260401*Input`.
pub fn offered(policy: &ToolPolicy) -> Vec<CustomTool> {
    WORKER_TOOLS
        .iter()
        .filter(|name| policy.builtin_perm(name).is_some())
        .map(|name| {
            let (description, input_schema) = definition(name);
            CustomTool { name: (*name).to_string(), description: description.to_string(), input_schema }
        })
        .collect()
}

fn definition(name: &str) -> (&'static str, Value) {
    let s = |d: &str| json!({"type": "string", "description": d});
    match name {
        "bash" => (
            "Run a bash command in a persistent shell in the workspace. State (cwd, environment variables) \
             persists across calls.",
            json!({"type": "object", "properties": {
                "command": s("Shell command to execute. Omit only when `restart` is true."),
                "restart": {"type": "boolean", "description": "Restart the persistent shell instead of running a command."},
                "timeout_ms": {"type": "integer", "description": "Per-call timeout in milliseconds."},
            }}),
        ),
        "read" => (
            "Read a file of the workspace (relative to the working directory).",
            json!({"type": "object", "required": ["file_path"], "properties": {
                "file_path": s("Path of the file to read."),
                "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                               "description": "Optional [start_line, end_line], 1-indexed, inclusive; end_line 0 or negative reads to the end."},
            }}),
        ),
        "write" => (
            "Write (overwrite) a whole file of the workspace.",
            json!({"type": "object", "required": ["file_path", "content"], "properties": {
                "file_path": s("Path of the file to write."),
                "content": s("Full file contents to write."),
            }}),
        ),
        "edit" => (
            "Replace a string in a file of the workspace; by default `old_string` must occur exactly once.",
            json!({"type": "object", "required": ["file_path", "old_string", "new_string"], "properties": {
                "file_path": s("Path of the file to edit."),
                "old_string": s("Substring to find and replace."),
                "new_string": s("Replacement text."),
                "replace_all": {"type": "boolean", "description": "Replace every occurrence instead of requiring a unique match."},
            }}),
        ),
        "glob" => (
            "List files of the workspace matching a glob pattern (e.g. `**/*.rs`), newest first.",
            json!({"type": "object", "required": ["pattern"], "properties": {
                "pattern": s("Relative glob pattern."),
                "path": s("Optional directory to search under (default: the working directory)."),
            }}),
        ),
        _ => (
            "Search the contents of the workspace's files for a regular expression.",
            json!({"type": "object", "required": ["pattern"], "properties": {
                "pattern": s("Regular expression to search for."),
                "path": s("Optional file or directory to search under (default: the working directory)."),
            }}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_worker_tools_are_offered() {
        let agent = json!({"tools": [{"type": "agent_toolset_20260401",
            "configs": [{"name": "grep", "enabled": false}, {"name": "web_fetch", "enabled": true}]}]});
        let names: Vec<String> = offered(&ToolPolicy::from_agent(&agent)).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["bash", "read", "write", "edit", "glob"]);
        let none = offered(&ToolPolicy::from_agent(&json!({"tools": []})));
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn every_offered_schema_is_an_object_schema_naming_the_worker_fields() {
        let all = offered(&ToolPolicy::from_agent(&json!({"tools": [{"type": "agent_toolset_20260401"}]})));
        assert_eq!(all.len(), WORKER_TOOLS.len());
        for t in &all {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert!(!t.description.is_empty());
        }
        let field = |n: &str, f: &str| all.iter().any(|t| t.name == n && t.input_schema["properties"][f].is_object());
        assert!(field("bash", "command") && field("write", "file_path") && field("edit", "old_string"));
        assert!(runs_on_worker("grep") && !runs_on_worker("web_fetch"));
    }
}
