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

/// The source ships for hosts that install the runtime themselves. That its client retries
/// nothing behind the runner's reported policy is behaviour, tested against the real SDK in
/// `tests/fake-model/tests/openai_agents.rs` (`retries_529_429_500_then_success`,
/// `persistent_failure_is_an_error`: the fake sees exactly the reported attempts).
#[test]
fn runtime_source_is_shipped() {
    assert!(RUNTIME_SOURCE.starts_with("#!"), "the runtime script, with its interpreter line");
}

#[test]
fn info_endpoint_and_credentials() {
    let info = OpenaiAgents::info();
    assert_eq!(info.name, "openai-agents");
    assert_eq!(info.execution_model, ExecutionModel::SandboxAsTool);
    assert_eq!(info.api_shape, ApiShape::OpenaiResponses);
    // The endpoint check: tests/endpoint.rs.
    let ep = |u: &str| LlmEndpoint { base_url: Some(u.into()), model: "m".into() };
    let plan = OpenaiAgents::credentials(&ep("https://api.openai.com/v1"));
    assert_eq!(plan.env[0].0, "OPENAI_API_KEY");
    assert_eq!(plan.inject[0].header, "authorization");
    assert_eq!(plan.inject[0].value_template, "Bearer {token}");
}
