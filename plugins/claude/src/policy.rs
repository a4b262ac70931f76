//! The agent's tool policy (shared with every plugin, in the SDK) plus the
//! Claude Code names of the toolset's tools.

pub use bridle_harness_sdk::policy::{AUTO_DENIED, Decision, Perm, ToolPolicy, decide};

/// The agent toolset's tools: Managed Agents name ↔ Claude Code name.
pub const TOOLSET: [(&str, &str); 8] = [
    ("bash", "Bash"),
    ("edit", "Edit"),
    ("read", "Read"),
    ("write", "Write"),
    ("glob", "Glob"),
    ("grep", "Grep"),
    ("web_fetch", "WebFetch"),
    ("web_search", "WebSearch"),
];

/// Claude Code tool name → Managed Agents toolset name.
pub fn toolset_name(claude: &str) -> Option<&'static str> {
    TOOLSET.iter().find(|(_, c)| *c == claude).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_toolset_tool_has_a_claude_name() {
        for name in bridle_harness_sdk::policy::TOOLSET {
            assert!(TOOLSET.iter().any(|(n, _)| *n == name), "{name} has no Claude Code name");
        }
        assert_eq!(toolset_name("Bash"), Some("bash"));
        assert_eq!(toolset_name("Nope"), None);
    }
}
