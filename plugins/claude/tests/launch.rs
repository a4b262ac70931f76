//! Launch plan, endpoint checks and harness info.

use bridle_harness_sdk::{ApiShape, ExecutionModel, Harness, HarnessSession, LlmEndpoint, SessionSpec};
use bridle_plugin_claude::{Claude, ClaudeSession};
use serde_json::{Value, json};

fn session(agent: Value, resume: Option<&str>) -> ClaudeSession {
    let spec = json!({
        "session_id": "sesn_1", "agent": agent, "workspace": "/workspace", "resume": resume,
        "llm": {"base_url": "http://10.0.0.1:7070/llm/sesn_1", "upstream_base_url": "https://api.anthropic.com",
                "model": "claude-sonnet-4-5"},
    });
    ClaudeSession::new(SessionSpec::from_json(&spec.to_string()).unwrap())
}

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

fn env<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn default_launch() {
    let plan = session(json!({"model": {"id": "claude-sonnet-4-5"}}), None).launch().unwrap();
    let argv = &plan.argv;
    assert_eq!(argv[0], "claude");
    for f in ["-p", "--verbose", "--include-partial-messages"] {
        assert!(argv.iter().any(|a| a == f), "{f}");
    }
    assert_eq!(flag(argv, "--output-format"), Some("stream-json"));
    assert_eq!(flag(argv, "--input-format"), Some("stream-json"));
    assert_eq!(flag(argv, "--permission-prompt-tool"), Some("stdio"));
    assert_eq!(flag(argv, "--model"), Some("claude-sonnet-4-5"));
    assert_eq!(flag(argv, "--tools"), Some("Bash,Edit,Read,Write,Glob,Grep,WebFetch,WebSearch"));
    assert_eq!(flag(argv, "--allowedTools"), flag(argv, "--tools"));
    assert_eq!(flag(argv, "--settings"), None);
    assert_eq!(flag(argv, "--resume"), None);
    assert_eq!(plan.cwd.as_deref(), Some("/workspace"));
    let e = &plan.env;
    assert_eq!(env(e, "ANTHROPIC_BASE_URL"), Some("http://10.0.0.1:7070/llm/sesn_1"));
    assert_eq!(env(e, "HOME"), Some("/workspace/.bridle/claude"));
    assert_eq!(env(e, "CLAUDE_CONFIG_DIR"), Some("/workspace/.bridle/claude/.claude"));
    assert_eq!(env(e, "CLAUDE_CODE_MAX_RETRIES"), Some("10"));
    assert_eq!(env(e, "DISABLE_AUTOUPDATER"), Some("1"));
    // Secrets never appear in a launch plan.
    assert!(env(e, "ANTHROPIC_API_KEY").is_none());
}

#[test]
fn policies_system_prompt_mcp_and_resume() {
    let agent = json!({
        "model": {"id": "claude-opus-4-7"},
        "system": "Be terse.",
        "mcp_servers": [{"name": "docs", "type": "url", "url": "https://mcp.example.com/mcp"},
                        {"name": "unused", "type": "url", "url": "https://x.example.com"}],
        "tools": [
            {"type": "agent_toolset_20260401",
             "default_config": {"permission_policy": {"type": "always_ask"}},
             "configs": [{"name": "read", "permission_policy": {"type": "always_allow"}},
                         {"name": "web_search", "enabled": false},
                         {"name": "web_fetch", "enabled": false}]},
            {"type": "mcp_toolset", "mcp_server_name": "docs",
             "configs": [{"name": "search", "permission_policy": {"type": "always_allow"}},
                         {"name": "drop", "enabled": false}]}
        ]
    });
    let plan = session(agent, Some("87bd495a")).launch().unwrap();
    let argv = &plan.argv;
    assert_eq!(flag(argv, "--tools"), Some("Bash,Edit,Read,Write,Glob,Grep"));
    assert_eq!(flag(argv, "--allowedTools"), Some("Read,mcp__docs__search"));
    assert_eq!(flag(argv, "--disallowedTools"), Some("mcp__docs__drop"));
    let settings: Value = serde_json::from_str(flag(argv, "--settings").unwrap()).unwrap();
    assert_eq!(settings, json!({"permissions": {"ask": ["Bash", "Edit", "Write", "Glob", "Grep"]}}));
    let mcp: Value = serde_json::from_str(flag(argv, "--mcp-config").unwrap()).unwrap();
    assert_eq!(mcp, json!({"mcpServers": {"docs": {"type": "http", "url": "https://mcp.example.com/mcp"}}}));
    assert_eq!(flag(argv, "--append-system-prompt"), Some("Be terse."));
    assert_eq!(flag(argv, "--resume"), Some("87bd495a"));
    assert_eq!(flag(argv, "--model"), Some("claude-sonnet-4-5")); // llm.model wins
}

#[test]
fn no_toolset_disables_builtin_tools() {
    let plan = session(json!({"model": "m", "tools": []}), None).launch().unwrap();
    assert_eq!(flag(&plan.argv, "--tools"), Some(""));
    assert_eq!(flag(&plan.argv, "--allowedTools"), None);
}

#[test]
fn info_endpoint_and_credentials() {
    let info = Claude::info();
    assert_eq!(info.name, "claude");
    assert_eq!(info.execution_model, ExecutionModel::AgentInSandbox);
    assert_eq!(info.api_shape, ApiShape::AnthropicMessages);
    let ep = |u: &str| LlmEndpoint { base_url: Some(u.into()), model: "m".into() };
    assert!(Claude::check_endpoint(&ep("https://api.anthropic.com")).is_ok());
    let err = Claude::check_endpoint(&ep("https://api.openai.com/v1")).unwrap_err();
    assert!(err.contains("Anthropic Messages"), "{err}");
    let plan = Claude::credentials(&ep("https://gateway.example.com"));
    let keys: Vec<&str> = plan.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"]);
    let headers: Vec<(&str, &str)> =
        plan.inject.iter().map(|r| (r.header.as_str(), r.value_template.as_str())).collect();
    assert_eq!(headers, [("x-api-key", "{token}"), ("authorization", "Bearer {token}")]);
}

#[test]
fn custom_tools_are_an_allowed_sdk_mcp_server() {
    let agent = json!({"model": {"id": "claude-sonnet-4-5"}, "tools": [
        {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}},
        {"type": "custom", "name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    ]});
    let plan = session(agent, None).launch().unwrap();
    let argv = &plan.argv;
    let mcp: Value = serde_json::from_str(flag(argv, "--mcp-config").expect("--mcp-config")).unwrap();
    assert_eq!(mcp, json!({"mcpServers": {"bridle": {"type": "sdk", "name": "bridle"}}}));
    assert!(argv.iter().any(|a| a == "--strict-mcp-config"));
    // Custom tools never wait on a permission prompt, whatever the toolset's policy.
    assert_eq!(flag(argv, "--allowedTools"), Some("mcp__bridle"));
    // Without custom tools there is no such server.
    let plan = session(json!({"model": {"id": "claude-sonnet-4-5"}}), None).launch().unwrap();
    assert_eq!(flag(&plan.argv, "--mcp-config"), None);
}

#[test]
fn skills_go_to_the_config_dir_and_enable_the_skill_tool() {
    let plain = session(json!({"model": {"id": "claude-sonnet-4-5"}}), None).launch().unwrap();
    assert_eq!(plain.skills_dir.as_deref(), Some("/workspace/.bridle/claude/.claude/skills"));
    assert!(!flag(&plain.argv, "--tools").unwrap().contains("Skill"), "no skills, no Skill tool");

    let spec = json!({
        "session_id": "sesn_1", "agent": {"model": {"id": "claude-sonnet-4-5"}}, "workspace": "/workspace",
        "llm": {"base_url": "http://10.0.0.1:7070/llm/sesn_1", "model": "claude-sonnet-4-5"},
        "skills": [{"name": "units", "description": "Convert units."}],
    });
    let plan = ClaudeSession::new(SessionSpec::from_json(&spec.to_string()).unwrap()).launch().unwrap();
    assert!(flag(&plan.argv, "--tools").unwrap().split(',').any(|t| t == "Skill"));
    assert!(flag(&plan.argv, "--allowedTools").unwrap().split(',').any(|t| t == "Skill"));
    // The skills directory is `$CLAUDE_CONFIG_DIR/skills`.
    assert_eq!(
        plan.skills_dir.and_then(|d| d.rsplit_once('/').map(|(dir, _)| dir.to_owned())).as_deref(),
        env(&plan.env, "CLAUDE_CONFIG_DIR")
    );
}

/// A self-hosted environment's session: the workers' tools replace Claude Code's own workspace
/// tools (web tools stay), under the toolset's policies, served by the `workspace` SDK server.
#[test]
fn remote_tools_replace_the_workspace_builtins() {
    let agent = json!({
        "model": {"id": "claude-sonnet-4-5"},
        "tools": [{"type": "agent_toolset_20260401",
                   "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}},
                               {"name": "grep", "enabled": false}]}],
    });
    let spec = json!({
        "session_id": "sesn_1", "agent": agent, "workspace": "/workspace", "remote_tools": true,
        "llm": {"base_url": "http://10.0.0.1:7070/llm/sesn_1", "model": "claude-sonnet-4-5"},
    });
    let plan = ClaudeSession::new(SessionSpec::from_json(&spec.to_string()).unwrap()).launch().unwrap();
    let argv = &plan.argv;
    assert_eq!(flag(argv, "--tools"), Some("WebFetch,WebSearch"));
    assert_eq!(
        flag(argv, "--allowedTools"),
        Some("mcp__workspace__edit,mcp__workspace__read,mcp__workspace__write,mcp__workspace__glob,WebFetch,WebSearch")
    );
    let settings: Value = serde_json::from_str(flag(argv, "--settings").unwrap()).unwrap();
    assert_eq!(settings, json!({"permissions": {"ask": ["mcp__workspace__bash"]}}));
    let mcp: Value = serde_json::from_str(flag(argv, "--mcp-config").unwrap()).unwrap();
    assert_eq!(mcp, json!({"mcpServers": {"workspace": {"type": "sdk", "name": "workspace"}}}));
    assert!(Claude::info().remote_tools);
}
