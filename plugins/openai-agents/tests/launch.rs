//! Launch plan, endpoint checks, credentials and harness info.

use bridle_harness_sdk::{ApiShape, ExecutionModel, Harness, HarnessSession, LlmEndpoint, SessionSpec};
use bridle_plugin_openai_agents::{AgentsSession, OpenaiAgents, RUNTIME_SOURCE};
use serde_json::json;

#[test]
fn launch_names_the_resident_runtime() {
    let spec = json!({"session_id": "s", "agent": {"model": "gpt-5"}, "resident": true,
                      "llm": {"base_url": "http://gw/v1", "model": ""}});
    let mut s = AgentsSession::new(SessionSpec::from_json(&spec.to_string()).unwrap());
    let plan = s.launch().unwrap();
    assert_eq!(plan.argv, ["bridle-agents-runtime"]);
    assert!(plan.env.contains(&("OPENAI_AGENTS_DISABLE_TRACING".into(), "1".into())));
    assert!(plan.files.is_empty());
    let no_model = json!({"session_id": "s", "agent": {}, "llm": {"base_url": "http://gw/v1", "model": ""}});
    let mut s = AgentsSession::new(SessionSpec::from_json(&no_model.to_string()).unwrap());
    assert!(s.launch().is_err());
}

#[test]
fn runtime_source_is_shipped_and_keeps_retries_visible() {
    assert!(RUNTIME_SOURCE.contains("max_retries=0"));
    assert!(RUNTIME_SOURCE.contains("ModelRetrySettings"));
}

#[test]
fn info_endpoint_and_credentials() {
    let info = OpenaiAgents::info();
    assert_eq!(info.name, "openai-agents");
    assert_eq!(info.execution_model, ExecutionModel::SandboxAsTool);
    assert_eq!(info.api_shape, ApiShape::OpenaiResponses);
    let ep = |u: &str| LlmEndpoint { base_url: Some(u.into()), model: "m".into() };
    for ok in [
        "https://api.openai.com/v1",
        "http://127.0.0.1:9/v1/",
        // AI gateways: LLMProxy's bridge, Cloudflare AI Gateway, LiteLLM.
        "https://llmproxy.example.com/claude2codex/https://api.z.ai/anthropic/v1",
        "https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/v1",
        "http://litellm.internal:4000/v1",
    ] {
        assert!(OpenaiAgents::check_endpoint(&ep(ok)).is_ok(), "{ok}");
    }
    assert!(OpenaiAgents::check_endpoint(&LlmEndpoint::default()).is_ok());
    for bad in [
        "https://api.anthropic.com",
        "https://api.minimax.io/anthropic",
        "https://gw.example.com/anthropic/",
        "https://gw.example.com/v1/messages/",
        "https://gw.example.com/v1/chat/completions",
        "https://api.openai.com/v1/responses",
        "api.openai.com/v1",
        "ftp://x/v1",
        "https:///v1",
    ] {
        let err = OpenaiAgents::check_endpoint(&ep(bad)).unwrap_err();
        assert!(err.contains(bad), "{err}");
    }
    let plan = OpenaiAgents::credentials(&ep("https://api.openai.com/v1"));
    assert_eq!(plan.env[0].0, "OPENAI_API_KEY");
    assert_eq!(plan.inject[0].header, "authorization");
    assert_eq!(plan.inject[0].value_template, "Bearer {token}");
}
