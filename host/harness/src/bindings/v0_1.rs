//! `bridle:harness@0.1.0` (frozen): stop reasons, failures, tool calls,
//! tool results and the session spec cross as JSON strings. They are parsed
//! here, strictly: a payload that does not parse is the plugin's error,
//! never a silent default.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::{Guest, HostState};
use crate::{
    Action, ApiShape, CredentialPlan, ExecutionModel, Failure, File, HarnessInfo, HeaderRule, LaunchPlan, LlmEndpoint,
    RetryReport, SessionSpec, StopReason, ToolCall, ToolResult,
};

wasmtime::component::bindgen!({
    path: "../../wit/0.1.0",
    world: "harness",
    // Exports run on wasmtime fibers so a slow plugin yields to tokio at
    // every epoch tick instead of pinning a worker thread.
    exports: { default: async },
});

use bridle::harness::host::LogLevel;
use bridle::harness::types as wit;

impl bridle::harness::types::Host for HostState {}

impl bridle::harness::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        HostState::log(self, level, &message);
    }

    fn new_event_id(&mut self) -> String {
        HostState::new_event_id()
    }
}

fn endpoint(llm: &LlmEndpoint) -> wit::LlmEndpoint {
    wit::LlmEndpoint { base_url: llm.base_url.clone(), model: llm.model.clone() }
}

pub(crate) async fn info(h: &Harness, store: &mut Store<HostState>) -> wasmtime::Result<HarnessInfo> {
    let info = h.bridle_harness_adapter().call_info(store).await?;
    let api_shape = match info.api_shape {
        wit::ApiShape::AnthropicMessages => ApiShape::AnthropicMessages,
        wit::ApiShape::OpenaiCompatible => ApiShape::OpenaiCompatible,
        wit::ApiShape::OpenaiResponses => ApiShape::OpenaiResponses,
    };
    let execution_model = match info.execution_model {
        wit::ExecutionModel::AgentInSandbox => ExecutionModel::AgentInSandbox,
        wit::ExecutionModel::SandboxAsTool => ExecutionModel::SandboxAsTool,
    };
    Ok(HarnessInfo {
        name: info.name,
        version: info.version,
        execution_model,
        // Before 0.3.0 only a runtime whose tools the host runs can reach workers.
        remote_tools: execution_model == ExecutionModel::SandboxAsTool,
        api_shape,
        description: info.description,
        // 0.1.0 cannot declare its paths: assume its API shape's.
        model_paths: api_shape.default_model_paths(),
    })
}

pub(crate) async fn check_endpoint(h: &Harness, store: &mut Store<HostState>, llm: &LlmEndpoint) -> Guest<()> {
    h.bridle_harness_adapter().call_check_endpoint(store, &endpoint(llm)).await
}

pub(crate) async fn credentials(
    h: &Harness,
    store: &mut Store<HostState>,
    llm: &LlmEndpoint,
) -> wasmtime::Result<CredentialPlan> {
    let plan = h.bridle_harness_adapter().call_credentials(store, &endpoint(llm)).await?;
    Ok(CredentialPlan {
        env: plan.env,
        inject: plan
            .inject
            .into_iter()
            .map(|r| HeaderRule { header: r.header, value_template: r.value_template })
            .collect(),
    })
}

pub(crate) async fn new_session(
    h: &Harness,
    store: &mut Store<HostState>,
    spec: &SessionSpec,
) -> wasmtime::Result<ResourceAny> {
    h.bridle_harness_adapter().session().call_constructor(store, &spec.to_json()).await
}

pub(crate) async fn launch(h: &Harness, store: &mut Store<HostState>, res: ResourceAny) -> Guest<LaunchPlan> {
    let plan = h.bridle_harness_adapter().session().call_launch(store, res).await?;
    Ok(plan.map(|plan| LaunchPlan {
        argv: plan.argv,
        env: plan.env,
        files: plan.files.into_iter().map(|f| File { path: f.path, contents: f.contents, mode: f.mode }).collect(),
        cwd: plan.cwd,
        skills_dir: None,
    }))
}

pub(crate) async fn on_input(
    h: &Harness,
    store: &mut Store<HostState>,
    res: ResourceAny,
    event: &str,
) -> Guest<Vec<Action>> {
    let out = h.bridle_harness_adapter().session().call_on_input(store, res, event).await?;
    Ok(out.and_then(actions))
}

pub(crate) async fn on_output(
    h: &Harness,
    store: &mut Store<HostState>,
    res: ResourceAny,
    line: &str,
) -> Guest<Vec<Action>> {
    let out = h.bridle_harness_adapter().session().call_on_output(store, res, line).await?;
    Ok(out.and_then(actions))
}

pub(crate) async fn on_tool_result(
    h: &Harness,
    store: &mut Store<HostState>,
    res: ResourceAny,
    result: &ToolResult,
) -> Guest<Vec<Action>> {
    let json = serde_json::to_string(result).expect("a ToolResult always serializes");
    let out = h.bridle_harness_adapter().session().call_on_tool_result(store, res, &json).await?;
    Ok(out.and_then(actions))
}

pub(crate) async fn on_exit(
    h: &Harness,
    store: &mut Store<HostState>,
    res: ResourceAny,
    code: Option<i32>,
) -> Guest<Vec<Action>> {
    let out = h.bridle_harness_adapter().session().call_on_exit(store, res, code).await?;
    Ok(actions(out))
}

/// The 0.1.0 actions, their JSON payloads parsed; the first bad one is the
/// error.
fn actions(list: Vec<wit::Action>) -> Result<Vec<Action>, String> {
    list.into_iter().map(action).collect()
}

fn action(a: wit::Action) -> Result<Action, String> {
    Ok(match a {
        wit::Action::Emit(s) => Action::Emit(s),
        wit::Action::Write(b) => Action::Write(b),
        wit::Action::Retrying(r) => Action::Retrying(RetryReport {
            error_type: r.error_type,
            message: r.message,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            delay_ms: r.delay_ms,
        }),
        wit::Action::Resumed => Action::Resumed,
        wit::Action::ToolCall(s) => Action::ToolCall(tool_call(&s)?),
        wit::Action::Checkpoint(s) => Action::Checkpoint(s),
        wit::Action::TurnEnded(s) => Action::TurnEnded(stop_reason(&s)?),
        wit::Action::Failed(s) => Action::Failed(Failure::from_json(&s)?),
    })
}

fn stop_reason(text: &str) -> Result<StopReason, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid stop reason `{text}` in turn-ended: {e}"))
}

fn tool_call(text: &str) -> Result<ToolCall, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid tool-call `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_strictly() {
        assert_eq!(stop_reason(r#"{"type":"end_turn"}"#), Ok(StopReason::EndTurn));
        for bad in ["", "not json", r#"{"type":"later"}"#, "{}"] {
            let err = stop_reason(bad).unwrap_err();
            assert!(err.contains("invalid stop reason"), "{err}");
        }
        let call = tool_call(r#"{"id":"c1","name":"bash","input":{"command":"ls"}}"#).unwrap();
        assert_eq!((call.id.as_str(), call.name.as_str()), ("c1", "bash"));
        assert!(tool_call(r#"{"name":"bash"}"#).is_err());
        let failed = action(wit::Action::Failed(r#"{"type":"x","message":"m"}"#.into()));
        assert!(failed.unwrap_err().contains("invalid failure"));
    }
}
