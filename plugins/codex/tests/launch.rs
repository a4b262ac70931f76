//! Launch plan (CODEX_HOME, config.toml), endpoint checks and harness info.

use bridle_harness_sdk::{ApiShape, ExecutionModel, Harness, HarnessSession, LlmEndpoint, SessionSpec};
use bridle_plugin_codex::{Codex, CodexSession};
use serde_json::{Value, json};

fn session(agent: Value, upstream: &str) -> CodexSession {
    let spec = json!({
        "session_id": "sesn_1", "agent": agent, "workspace": "/workspace", "resume": null,
        "llm": {"base_url": "http://10.0.0.1:7070/llm/sesn_1/v1", "upstream_base_url": upstream,
                "model": "gpt-5-codex"},
    });
    CodexSession::new(SessionSpec::from_json(&spec.to_string()).unwrap())
}

#[test]
fn openai_launch_plan() {
    let plan = session(json!({"model": {"id": "gpt-5-codex"}}), "https://api.openai.com/v1").launch().unwrap();
    assert_eq!(plan.argv, ["codex", "app-server"]);
    assert_eq!(plan.cwd.as_deref(), Some("/workspace"));
    assert!(plan.env.contains(&("CODEX_HOME".to_string(), "/workspace/.bridle/codex".to_string())));
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, ".bridle/codex/config.toml");
    let toml = String::from_utf8(plan.files[0].contents.clone()).unwrap();
    for line in [
        "model = \"gpt-5-codex\"",
        "model_provider = \"bridle\"",
        "approval_policy = \"never\"",
        "sandbox_mode = \"danger-full-access\"",
        "[model_providers.bridle]",
        "base_url = \"http://10.0.0.1:7070/llm/sesn_1/v1\"",
        "wire_api = \"responses\"",
        "env_key = \"OPENAI_API_KEY\"",
        "request_max_retries = 0",
        "stream_max_retries = 5",
    ] {
        assert!(toml.lines().any(|l| l == line), "missing `{line}` in\n{toml}");
    }
    assert!(!toml.contains("sk-"), "no key in config");
}

#[test]
fn minimax_ask_policy_and_mcp() {
    let agent = json!({
        "model": "MiniMax-M2",
        "mcp_servers": [{"name": "docs", "type": "url", "url": "https://mcp.example.com/mcp"}],
        "tools": [
            {"type": "agent_toolset_20260401",
             "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]},
            {"type": "mcp_toolset", "mcp_server_name": "docs"}
        ]
    });
    let plan = session(agent, "https://api.minimax.io/v1").launch().unwrap();
    let toml = String::from_utf8(plan.files[0].contents.clone()).unwrap();
    for line in [
        "model_provider = \"minimax\"",
        "[model_providers.minimax]",
        "env_key = \"MINIMAX_API_KEY\"",
        "requires_openai_auth = false",
        "stream_max_retries = 10",
        "[mcp_servers.\"docs\"]",
        "url = \"https://mcp.example.com/mcp\"",
    ] {
        assert!(toml.lines().any(|l| l == line), "missing `{line}` in\n{toml}");
    } // codex 0.171 refuses `untrusted` in config.toml; it goes on thread/start.
    assert!(!toml.contains("untrusted"), "config.toml must not set approval_policy = untrusted:\n{toml}");
}

#[test]
fn mcp_toolset_configs_become_enabled_and_disabled_tools() {
    let agent = json!({
        "model": "gpt-5-codex",
        "mcp_servers": [{"name": "docs", "type": "url", "url": "http://127.0.0.1:41080/mcp/docs"},
                        {"name": "wiki", "type": "url", "url": "http://127.0.0.1:41080/mcp/wiki"}],
        "tools": [
            {"type": "mcp_toolset", "mcp_server_name": "docs",
             "configs": [{"name": "delete", "enabled": false}]},
            {"type": "mcp_toolset", "mcp_server_name": "wiki", "default_config": {"enabled": false},
             "configs": [{"name": "search", "enabled": true}, {"name": "edit", "enabled": false}]}
        ]
    });
    let plan = session(agent, "https://api.openai.com/v1").launch().unwrap();
    let toml = String::from_utf8(plan.files[0].contents.clone()).unwrap();
    let docs = toml.split("[mcp_servers.\"docs\"]").nth(1).unwrap().split("[mcp_servers").next().unwrap();
    assert!(docs.contains("disabled_tools = [\"delete\"]") && !docs.contains("enabled_tools"), "{toml}");
    let wiki = toml.split("[mcp_servers.\"wiki\"]").nth(1).unwrap();
    assert!(wiki.contains("enabled_tools = [\"search\"]") && wiki.contains("disabled_tools = [\"edit\"]"), "{toml}");
}

#[test]
fn launch_needs_a_model() {
    let spec = json!({"session_id": "s", "agent": {}, "llm": {"base_url": "http://gw/v1", "model": ""}});
    let mut s = CodexSession::new(SessionSpec::from_json(&spec.to_string()).unwrap());
    assert!(s.launch().is_err());
}

#[test]
fn info_endpoint_and_credentials() {
    let info = Codex::info();
    assert_eq!(info.name, "codex");
    assert_eq!(info.execution_model, ExecutionModel::AgentInSandbox);
    assert_eq!(info.api_shape, ApiShape::OpenaiResponses);
    let ep = |u: &str| LlmEndpoint { base_url: Some(u.into()), model: "m".into() };
    assert!(Codex::check_endpoint(&ep("https://api.openai.com/v1")).is_ok());
    assert!(Codex::check_endpoint(&ep("https://api.anthropic.com")).is_err());
    let plan = Codex::credentials(&ep("https://api.openai.com/v1"));
    assert_eq!(plan.env, [("OPENAI_API_KEY".to_string(), "sk-bridle-placeholder".to_string())]);
    assert_eq!(plan.inject.len(), 1);
    assert_eq!(plan.inject[0].header, "authorization");
    assert_eq!(plan.inject[0].value_template, "Bearer {token}");
}
