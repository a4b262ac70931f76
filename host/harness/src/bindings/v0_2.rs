//! `bridle:harness@0.2.0`: stop reasons, failures, tool calls, tool results
//! and the session spec are typed records; only the tool input (free-form)
//! and events (the external API, validated by the host) are JSON text.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::{Guest, HostState};
use crate::{
    Action, ApiShape, CredentialPlan, ExecutionModel, Failure, File, HarnessInfo, HeaderRule, LaunchPlan, LlmEndpoint,
    RetryReport, RetryStatus, SessionSpec, StopReason, ToolCall, ToolResult,
};

wasmtime::component::bindgen!({
    path: "../../wit/0.2.0",
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
        api_shape: match info.api_shape {
            wit::ApiShape::AnthropicMessages => ApiShape::AnthropicMessages,
            wit::ApiShape::OpenaiCompatible => ApiShape::OpenaiCompatible,
            wit::ApiShape::OpenaiResponses => ApiShape::OpenaiResponses,
        },
        description: info.description,
        model_paths: info.model_paths,
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
    let spec = wit::SessionSpec {
        session_id: spec.session_id.clone(),
        agent_json: spec.agent.to_string(),
        workspace: spec.workspace.clone(),
        resume: spec.resume.clone(),
        llm: wit::SpecLlm {
            base_url: spec.llm.base_url.clone(),
            upstream_base_url: spec.llm.upstream_base_url.clone(),
            model: spec.llm.model.clone(),
        },
        resident: spec.resident,
    };
    h.bridle_harness_adapter().session().call_constructor(store, &spec).await
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
    let result = wit::ToolResult {
        id: result.id.clone(),
        content: result.content.clone(),
        is_error: result.is_error,
        exit_code: result.exit_code,
    };
    let out = h.bridle_harness_adapter().session().call_on_tool_result(store, res, &result).await?;
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
        wit::Action::ToolCall(c) => {
            let input = serde_json::from_str(&c.input_json)
                .map_err(|e| format!("tool-call `{}`: input-json `{}` is not JSON: {e}", c.id, c.input_json))?;
            Action::ToolCall(ToolCall { id: c.id, name: c.name, input })
        }
        wit::Action::Checkpoint(s) => Action::Checkpoint(s),
        wit::Action::TurnEnded(wit::StopReason::EndTurn) => Action::TurnEnded(StopReason::EndTurn),
        wit::Action::Failed(f) => Action::Failed(Failure {
            error_type: f.error_type,
            message: f.message,
            retry: match f.retry {
                wit::RetryStatus::Exhausted => RetryStatus::Exhausted,
                wit::RetryStatus::Terminal => RetryStatus::Terminal,
            },
        }),
    })
}
