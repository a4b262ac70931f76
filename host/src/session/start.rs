//! Starting a session's runtime: the model credential, the environment's
//! sandbox spec, the plugin's launch plan, then either the runtime process
//! in the session's sandbox or the session attached to its harness's
//! resident process. What to start is decided in [`super::launch`]; this is
//! the I/O that does it.

use std::sync::Arc;

use bridle_harness::{ApiShape, ExecutionModel, LlmEndpoint};
use bridle_sandbox::tools::{ClaimHook, ToolConfig, ToolSandbox};
use bridle_sandbox::{ExecRequest, Sandbox, SandboxDriver, SandboxSpec};
use serde_json::Value;
use tracing::Instrument;

use super::Sessions;
use super::io::{OwnProcess, Resident, Runtime};
use super::launch::{self, Placement};
use super::mounts::Mounts;
use super::skills::SessionSkills;
use crate::model::environments::{Environment, Packages};
use crate::model::sessions::HarnessBinding;
use crate::model::vaults::{Credential, CredentialSecrets};
use crate::packages::spec::Spec;
use crate::store::Table;

/// Why the runtime could not be started, in words for `session.error`.
#[derive(Debug)]
pub(crate) struct StartError {
    pub error_type: &'static str,
    pub message: String,
}

impl StartError {
    fn new(message: impl Into<String>) -> Self {
        StartError { error_type: "unknown_error", message: message.into() }
    }
}

/// What a session's runtime is started for.
pub(crate) struct Target<'a> {
    pub session_id: &'a str,
    /// The session's binding (every harness its sandbox routes to).
    pub binding: &'a HarnessBinding,
    /// The harness this runtime runs on: `None`, the session's; a delegated
    /// thread's roster agent may name another of the binding's.
    pub engine: Option<&'a str>,
    pub agent: &'a Value,
    pub environment_id: &'a str,
    /// The resume token to start from.
    pub resume: Option<&'a str>,
    /// The session's resources, placed in each sandbox it claims (and its
    /// repositories, served by the sandbox's git route).
    pub mounts: &'a Arc<Mounts>,
    /// The session's vaults (credentials of its MCP servers).
    pub vault_ids: &'a [String],
    /// Where the sandbox's gateway reports MCP route failures.
    pub mcp_failures: &'a tokio::sync::mpsc::UnboundedSender<bridle_sandbox::McpFailure>,
}

/// Start the session's runtime.
pub(crate) async fn runtime(host: &Arc<Sessions>, t: Target<'_>) -> Result<Runtime, StartError> {
    let own = match t.engine {
        None => t.binding.clone(),
        Some(engine) => t
            .binding
            .for_engine(engine)
            .ok_or_else(|| StartError::new(format!("this session has no LLM vault for the `{engine}` harness")))?,
    };
    let plugin = host.harness.plugin(&own.engine).map_err(|e| StartError::new(e.to_string()))?;
    let (token, upstream) = credential(host, &own, plugin.info().api_shape).await?;
    let model = t.agent.pointer("/model/id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let llm = LlmEndpoint { base_url: Some(upstream.clone()), model: model.clone() };
    let plan = plugin.credentials(&llm).await.map_err(|e| StartError::new(e.to_string()))?;
    let driver = host.driver(t.binding.sandbox_driver).map_err(StartError::new)?;
    let env = host
        .store
        .get_doc::<Environment>(Table::Environments, t.environment_id)
        .await
        .map_err(|e| StartError::new(format!("reading the environment failed: {e}")))?
        .ok_or_else(|| StartError::new(format!("environment `{}` was deleted", t.environment_id)))?;
    let skills = SessionSkills::load(&host.store, t.agent).await.map_err(StartError::new)?;
    // The environment's packages, built into a layer once and reused: before the runtime starts.
    let layer_env = packages(host, &driver, &env.doc.config.packages()).await?;
    let mut spec = SandboxSpec::new(t.session_id.to_owned());
    spec.git = Some(t.mounts.git_routes());
    spec.secrets = super::env_secrets::load(host, t.session_id).await.map_err(StartError::new)?;
    shadowed(&spec.secrets, &plan.env)?;
    spec.egress = launch::egress(env.doc.config.networking(), t.agent, &host.config.sessions.package_manager_hosts);
    spec.mcp = super::mcp::routes(host, t.vault_ids, t.agent).await.map_err(StartError::new)?;
    spec.mcp_failures = Some(t.mcp_failures.clone());
    spec.workspace_bytes = launch::workspace_bytes(&env.doc.metadata, host.config.sessions.sandbox_disk_bytes_max)
        .map_err(StartError::new)?;
    if plugin.info().execution_model == ExecutionModel::SandboxAsTool {
        // Sandbox as tool: the sandbox runs tools only; the resident runtime
        // reaches the model itself with the key the host adds.
        // The runtime reaches its MCP servers through its own MCP route.
        let agent = crate::model::mcp::routed_agent(t.agent, super::resident_mcp::ROUTE_BASE);
        let mut session_spec =
            launch::session_spec(t.session_id, &agent, t.resume, &upstream, &model, Placement::Resident);
        session_spec.skills = skills.specs();
        session_spec.remote_tools = env.doc.config.is_self_hosted();
        let mut session = plugin.new_session(&session_spec).await.map_err(|e| StartError::new(e.to_string()))?;
        let plan = session.launch().await.map_err(|e| StartError::new(e.to_string()))?;
        let skills_dir = plan.skills_dir.clone().unwrap_or_else(|| bridle_harness::DEFAULT_SKILLS_DIR.to_owned());
        let mut argv = plan.argv.clone();
        let program = program_of(&argv, &own.engine)?;
        argv[0] = host
            .runtimes
            .resolve_host(&program)
            .map(|p| p.display().to_string())
            .ok_or_else(|| not_installed(&program))?;
        let cwd = host.runtimes.runtimes.dir().to_path_buf();
        let (proc, out) =
            host.residents.attach(&own.engine, &argv, &plan.env, &cwd, t.session_id).await.map_err(StartError::new)?;
        let mcp =
            super::resident_mcp::ResidentMcp::open(&host.residents.mcp_hub, &host.config.egress, &spec, proc.uid())
                .map_err(|e| StartError::new(format!("opening the MCP route: {e:#}")))?;
        // Files and skills are placed in each sandbox the tools claim, before its first call.
        let mounts = t.mounts.clone();
        let hook: ClaimHook = Arc::new(move |sandbox| {
            let (mounts, skills, dir) = (mounts.clone(), skills.clone(), skills_dir.clone());
            Box::pin(async move {
                mounts.sync(sandbox.as_ref()).await?;
                skills.place(sandbox.as_ref(), &dir).await
            })
        });
        spec.env.extend(layer_env);
        let tools = ToolSandbox::new(driver, spec, ToolConfig::default()).with_claim_hook(hook);
        tracing::info!(program = %program, "runtime started (session attached to the resident runtime)");
        return Ok(Runtime { plugin: session, io: Box::new(Resident::new(proc, out, tools, token, mcp)) });
    }
    // The sandbox routes to every harness of the session, whichever runtime
    // claims it first: the session's is the primary route, each delegate's
    // an extra one named by its engine.
    let own_route = (llm_route(&plan, &upstream, token, plugin.info().api_shape), plan.env.clone());
    let (mut route, mut route_env) =
        if own.engine == t.binding.engine { own_route.clone() } else { route_for(host, t.binding, &model).await? };
    for d in &t.binding.delegates {
        let (extra, env) = if d.engine == own.engine { own_route.clone() } else { route_for(host, d, &model).await? };
        route.extra.push(bridle_sandbox::NamedLlmRoute { name: d.engine.clone(), route: extra });
        route_env.extend(env);
    }
    // A secret may not hide another harness's variables either.
    shadowed(&spec.secrets, &route_env)?;
    spec.llm = Some(route);
    spec.env = route_env;
    let secrets = spec.secrets.clone();
    spec.env.extend(layer_env);
    let sandbox = driver.claim(spec).await.map_err(|e| StartError::new(format!("sandbox: {e}")))?;
    let llm_base_url = if own.engine == t.binding.engine {
        sandbox.llm_base_url_inside()
    } else {
        sandbox.llm_route_url_inside(&own.engine)
    };
    let placement = Placement::Sandbox { workspace: sandbox.workspace_inside(), llm_base_url };
    // The runtime reaches its MCP servers through the gateway's MCP route.
    let agent = crate::model::mcp::routed_agent(t.agent, &sandbox.proxy_url_inside());
    let mut session_spec = launch::session_spec(t.session_id, &agent, t.resume, &upstream, &model, placement);
    session_spec.skills = skills.specs();
    // A self-hosted environment's workers run the workspace tools.
    session_spec.remote_tools = env.doc.config.is_self_hosted();
    let setup = Setup { mounts: t.mounts, skills: &skills, secrets: &secrets };
    match in_sandbox(host, &plugin, sandbox.clone(), &session_spec, &own.engine, setup).await {
        Ok(rt) => Ok(rt),
        Err(e) => {
            let _ = sandbox.stop().await;
            Err(e)
        }
    }
}

/// The gateway's model route for a runtime of `plugin`: its upstream, its
/// credential plan's headers, its API shape's endpoints.
fn llm_route(
    plan: &bridle_harness::CredentialPlan,
    upstream: &str,
    token: String,
    shape: ApiShape,
) -> bridle_sandbox::LlmRoute {
    bridle_sandbox::LlmRoute {
        base_url: upstream.to_owned(),
        header_rules: plan
            .inject
            .iter()
            .map(|r| bridle_sandbox::HeaderRule { header: r.header.clone(), value_template: r.value_template.clone() })
            .collect(),
        token: bridle_sandbox::Secret::new(token),
        allowed: crate::model_paths::for_shape(shape),
        extra: Vec::new(),
    }
}

/// The model route of another harness of the session (and the sandbox
/// environment its credential plan sets). `model` is the claiming
/// runtime's: the plans depend on the upstream, not on the model.
async fn route_for(
    host: &Sessions,
    binding: &HarnessBinding,
    model: &str,
) -> Result<(bridle_sandbox::LlmRoute, Vec<(String, String)>), StartError> {
    let plugin = host.harness.plugin(&binding.engine).map_err(|e| StartError::new(e.to_string()))?;
    let shape = plugin.info().api_shape;
    let (token, upstream) = credential(host, binding, shape).await?;
    let llm = LlmEndpoint { base_url: Some(upstream.clone()), model: model.to_owned() };
    let plan = plugin.credentials(&llm).await.map_err(|e| StartError::new(e.to_string()))?;
    Ok((llm_route(&plan, &upstream, token, shape), plan.env))
}

/// What a new sandbox gets before its runtime starts.
struct Setup<'a> {
    /// The session's resources (files, repositories).
    mounts: &'a Mounts,
    skills: &'a SessionSkills,
    /// Environment-variable secrets (their names must not be the harness's own).
    secrets: &'a [bridle_sandbox::EnvSecret],
}

/// The runtime process, in the session's sandbox.
async fn in_sandbox(
    host: &Arc<Sessions>,
    plugin: &bridle_harness::Plugin,
    sandbox: Arc<dyn Sandbox>,
    session_spec: &bridle_harness::SessionSpec,
    engine: &str,
    Setup { mounts, skills, secrets }: Setup<'_>,
) -> Result<Runtime, StartError> {
    // The session's files are in place before the runtime's first turn.
    mounts.sync(sandbox.as_ref()).await.map_err(|e| StartError::new(format!("placing the session's files: {e}")))?;
    let mut session = plugin.new_session(session_spec).await.map_err(|e| StartError::new(e.to_string()))?;
    let plan = session.launch().await.map_err(|e| StartError::new(e.to_string()))?;
    let skills_dir = plan.skills_dir.as_deref().unwrap_or(bridle_harness::DEFAULT_SKILLS_DIR);
    skills.place(sandbox.as_ref(), skills_dir).await.map_err(StartError::new)?;
    for f in &plan.files {
        write_file(sandbox.as_ref(), &f.path, &f.contents, f.mode).await?;
    }
    let mut argv = plan.argv.clone();
    let program = program_of(&argv, engine)?;
    argv[0] = host.runtimes.resolve_inside(&program).ok_or_else(|| not_installed(&program))?;
    // The runtime waits between turns: it must not keep the sandbox busy on
    // its own (the runner holds a busy guard during each turn).
    let mut req = ExecRequest::new(argv).resident(true);
    shadowed(secrets, &plan.env)?;
    req.env = plan.env.clone();
    req.cwd = plan.cwd.clone();
    let child = sandbox.exec(req).await.map_err(|e| StartError::new(format!("starting `{program}`: {e}")))?;
    tracing::info!(program = %program, sandbox = sandbox.id(), "runtime started");
    Ok(Runtime { plugin: session, io: Box::new(OwnProcess::start(sandbox, child)) })
}

/// A secret's variable that the harness sets itself would hide the
/// placeholder (or the runtime's own setting): refused, naming both.
fn shadowed(secrets: &[bridle_sandbox::EnvSecret], env: &[(String, String)]) -> Result<(), StartError> {
    match secrets.iter().find(|s| env.iter().any(|(k, _)| *k == s.name)) {
        Some(s) => Err(StartError::new(format!(
            "the environment_variable credential for `{}` names a variable one of this session's harnesses sets itself; \
             choose another secret_name",
            s.name
        ))),
        None => Ok(()),
    }
}

/// Build (or find) the layer of the environment's packages; the variables a session's sandbox
/// needs to use it. A failed build names the failing package and the end of its output.
async fn packages(
    host: &Arc<Sessions>,
    driver: &Arc<dyn SandboxDriver>,
    packages: &Packages,
) -> Result<Vec<(String, String)>, StartError> {
    let spec = Spec::of(packages).map_err(|e| StartError::new(format!("environment packages: {}", e.0)))?;
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let layers = host.layers.as_ref().ok_or_else(|| {
        StartError::new("environment packages cannot be installed: package layers are unavailable on this node")
    })?;
    let span = tracing::info_span!("package_layer", key = %spec.key());
    let t0 = std::time::Instant::now();
    let ready = layers.ensure(driver, &spec).instrument(span).await.map_err(|e| StartError::new(e.to_string()))?;
    tracing::info!(key = %ready.key, built = ready.built, secs = t0.elapsed().as_secs_f64(), "package layer ready");
    Ok(ready.env)
}

fn program_of(argv: &[String], engine: &str) -> Result<String, StartError> {
    argv.first().cloned().ok_or_else(|| StartError::new(format!("harness `{engine}` returned an empty launch command")))
}

fn not_installed(program: &str) -> StartError {
    StartError::new(format!(
        "the agent runtime `{program}` is not installed on this server; run `bridle runtimes install`"
    ))
}

/// The model credential and upstream URL of this session: its LLM vault
/// credential (decrypted here, only to hand to the gateway or the resident
/// runtime), or the server's `default_llm`.
pub(crate) async fn credential(
    host: &Sessions,
    binding: &HarnessBinding,
    api_shape: ApiShape,
) -> Result<(String, String), StartError> {
    let default_url = launch::default_base_url(api_shape);
    let Some(cred_id) = &binding.credential_id else {
        let llm = &host.config.default_llm;
        let Some(key) = &llm.api_key else {
            return Err(StartError::new(
                "no model credential: this session has no LLM vault and the server has no default_llm.api_key configured; \
                 attach a vault with sandbox0.managed_agents.role = \"llm\" holding the provider token",
            ));
        };
        let url = llm.base_url.clone().or_else(|| binding.llm_base_url.clone());
        return Ok((key.clone(), url.unwrap_or_else(|| default_url.to_owned())));
    };
    let row = host
        .store
        .get_doc::<Credential>(Table::Credentials, cred_id)
        .await
        .map_err(|e| StartError::new(format!("reading the LLM credential failed: {e}")))?;
    let Some(row) = row.filter(|r| !r.archived) else {
        return Err(StartError::new(format!(
            "the LLM credential `{cred_id}` selected at session create was deleted or archived"
        )));
    };
    let sealed = row.sealed.unwrap_or_default();
    let secrets: CredentialSecrets = host
        .secrets
        .open(&sealed)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| StartError::new("the LLM credential cannot be decrypted with this server's key"))?;
    let token = secrets.token.ok_or_else(|| StartError::new("the LLM credential has no token"))?;
    Ok((token, binding.llm_base_url.clone().unwrap_or_else(|| default_url.to_owned())))
}

/// Write a launch-plan file into the workspace as the sandbox user, so it
/// ends up owned by the runtime that will read it.
async fn write_file(sandbox: &dyn Sandbox, path: &str, contents: &[u8], mode: u32) -> Result<(), StartError> {
    if path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return Err(StartError::new(format!("launch plan file `{path}` is outside the workspace")));
    }
    let full = format!("{}/{path}", sandbox.workspace_inside());
    sandbox.write_file(&full, contents, mode).await.map_err(|e| StartError::new(format!("writing {full}: {e}")))
}
