//! A loaded plugin (`Plugin`: compiled component + `*Pre`) and one live
//! session instance (`PluginSession`: its own `Store`).

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, ResourceAny};

use crate::bindings::{HostState, Instance, Pre};
use crate::engine::RuntimeInner;
use crate::{
    Action, ApiShape, CredentialPlan, ExecutionModel, HarnessError, HarnessInfo, LaunchPlan, LlmEndpoint, PluginSource,
    SessionSpec, ToolResult,
};

/// A harness plugin ready to serve sessions: compiled once, linked once
/// (`HarnessPre`), instantiated per session.
pub struct Plugin {
    name: Arc<str>,
    source: PluginSource,
    info: HarnessInfo,
    contract: String,
    sha256: String,
    pre: Pre,
    rt: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("info", &self.info)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Link a compiled component and ask it for its `info()`.
    pub(crate) fn load(
        rt: Arc<RuntimeInner>,
        name: &str,
        source: PluginSource,
        component: &Component,
        sha256: String,
    ) -> Result<Plugin, HarnessError> {
        let (contract, line) = crate::inspect::check_contract(&rt.engine, component, name)?;
        let load_err = |e: wasmtime::Error| HarnessError::Load { plugin: name.to_string(), message: format!("{e:#}") };
        let instance_pre = rt
            .linker
            .instantiate_pre(component)
            .map_err(|e| load_err(e.context("it imports something this host does not provide")))?;
        let pre = Pre::new(line, instance_pre).map_err(load_err)?;
        let mut plugin = Plugin {
            name: name.into(),
            source,
            info: HarnessInfo {
                name: String::new(),
                version: String::new(),
                execution_model: ExecutionModel::AgentInSandbox,
                api_shape: ApiShape::AnthropicMessages,
                description: String::new(),
                model_paths: Vec::new(),
                remote_tools: false,
            },
            contract,
            sha256,
            pre,
            rt,
        };
        plugin.info = futures::executor::block_on(plugin.call_info())?;
        Ok(plugin)
    }

    /// The engine name this plugin is registered under (vault metadata
    /// `sandbox0.managed_agents.engine`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the plugin declared about itself (read once, at load).
    pub fn info(&self) -> &HarnessInfo {
        &self.info
    }

    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    /// The contract version the component exports, e.g. `0.2.0`.
    pub fn contract_version(&self) -> &str {
        &self.contract
    }

    /// Hex SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Does this endpoint fit the harness's API shape? A rejection is
    /// `HarnessError::Plugin` carrying the plugin's explanation.
    pub async fn check_endpoint(&self, llm: &LlmEndpoint) -> Result<(), HarnessError> {
        let verdict = self.oneshot("check_endpoint", async |store, h| h.check_endpoint(store, llm).await).await?;
        verdict.map_err(|message| HarnessError::Plugin { plugin: self.name.to_string(), message })
    }

    /// The credential plan for this endpoint.
    pub async fn credentials(&self, llm: &LlmEndpoint) -> Result<CredentialPlan, HarnessError> {
        self.oneshot("credentials", async |store, h| h.credentials(store, llm).await).await
    }

    /// A fresh instance (own `Store`, memory cap, deadlines) for one session
    /// run.
    pub async fn new_session(&self, spec: &SessionSpec) -> Result<PluginSession, HarnessError> {
        let session_id: Option<Arc<str>> = Some(Arc::from(spec.session_id.as_str()));
        let mut store = self.rt.new_store(self.name.clone(), session_id.clone());
        let harness = self
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| classify_instantiate(&self.name, &self.rt, &store, e))?;
        let mut session = PluginSession {
            plugin: self.name.clone(),
            session_id,
            store,
            harness,
            resource: None,
            poisoned: None,
            rt: self.rt.clone(),
        };
        let resource = session.call("new_session", async |store, h| h.new_session(store, spec).await).await?;
        session.resource = Some(resource);
        Ok(session)
    }

    /// Benchmark hook: a `Store` plus `instantiate_pre`, nothing else.
    #[doc(hidden)]
    pub async fn bench_instantiate(&self) -> Result<(), HarnessError> {
        let mut store = self.rt.new_store(self.name.clone(), None);
        self.pre.instantiate(&mut store).await.map_err(|e| classify_instantiate(&self.name, &self.rt, &store, e))?;
        Ok(())
    }

    async fn call_info(&self) -> Result<HarnessInfo, HarnessError> {
        self.oneshot("info", async |store, h| h.info(store).await).await
    }

    /// Plugin-level calls get a throwaway instance: the contract makes them
    /// stateless, and a fault cannot leak into a session.
    async fn oneshot<R>(
        &self,
        what: &'static str,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, HarnessError> {
        let started = std::time::Instant::now();
        let mut store = self.rt.new_store(self.name.clone(), None);
        let harness = self
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| classify_instantiate(&self.name, &self.rt, &store, e))?;
        let result = f(&mut store, &harness).await.map_err(|e| classify(&self.name, &self.rt, &store, e));
        crate::metrics::call(&self.name, what, started.elapsed(), result.as_ref().map(|_| ()));
        result
    }
}

/// One session's plugin instance. Calls are serialized by `&mut self`; the
/// futures are `Send`, so the session runner can hold this in a tokio task.
///
/// After a fault (trap, time-out, memory) the instance is poisoned: every
/// later call returns [`HarnessError::Poisoned`] without entering wasm.
pub struct PluginSession {
    plugin: Arc<str>,
    session_id: Option<Arc<str>>,
    store: Store<HostState>,
    harness: Instance,
    resource: Option<ResourceAny>,
    poisoned: Option<String>,
    rt: Arc<RuntimeInner>,
}

impl PluginSession {
    /// The engine name of the plugin behind this session.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Set once a call faulted; the instance accepts no more calls.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// How to start the runtime.
    pub async fn launch(&mut self) -> Result<LaunchPlan, HarnessError> {
        let res = self.resource()?;
        let plan = self.call("launch", async |store, h| h.launch(store, res).await).await?;
        self.guest_result(plan)
    }

    /// A user event as JSON (with its `id`).
    pub async fn on_input(&mut self, event_json: &str) -> Result<Vec<Action>, HarnessError> {
        let res = self.resource()?;
        let out = self.call("on_input", async |store, h| h.on_input(store, res, event_json).await).await?;
        self.guest_result(out)
    }

    /// One runtime stdout line, without the newline.
    pub async fn on_output(&mut self, line: &str) -> Result<Vec<Action>, HarnessError> {
        let res = self.resource()?;
        let out = self.call("on_output", async |store, h| h.on_output(store, res, line).await).await?;
        self.guest_result(out)
    }

    /// Sandbox-as-tool: the result of a `tool-call` action.
    pub async fn on_tool_result(&mut self, result: &ToolResult) -> Result<Vec<Action>, HarnessError> {
        let res = self.resource()?;
        let out = self.call("on_tool_result", async |store, h| h.on_tool_result(store, res, result).await).await?;
        self.guest_result(out)
    }

    /// The runtime exited (`None`: killed by a signal).
    pub async fn on_exit(&mut self, code: Option<i32>) -> Result<Vec<Action>, HarnessError> {
        let res = self.resource()?;
        let out = self.call("on_exit", async |store, h| h.on_exit(store, res, code).await).await?;
        self.guest_result(out)
    }

    fn resource(&self) -> Result<ResourceAny, HarnessError> {
        if let Some(cause) = &self.poisoned {
            return Err(HarnessError::Poisoned { plugin: self.plugin.to_string(), cause: cause.clone() });
        }
        self.resource.ok_or_else(|| HarnessError::Poisoned {
            plugin: self.plugin.to_string(),
            cause: "the session constructor did not complete".into(),
        })
    }

    fn guest_result<T>(&self, r: Result<T, String>) -> Result<T, HarnessError> {
        r.map_err(|message| HarnessError::Plugin { plugin: self.plugin.to_string(), message })
    }

    /// Enter the instance with a fresh per-call deadline; classify and
    /// remember any fault.
    async fn call<R>(
        &mut self,
        what: &'static str,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, HarnessError> {
        if let Some(cause) = &self.poisoned {
            return Err(HarnessError::Poisoned { plugin: self.plugin.to_string(), cause: cause.clone() });
        }
        let state = self.store.data_mut();
        state.ticks_left = self.rt.limits.call_ticks();
        state.timed_out = false;
        state.stderr.clear();
        self.store.set_epoch_deadline(1);
        let started = std::time::Instant::now();
        let result = f(&mut self.store, &self.harness).await;
        let result = result.map_err(|e| classify(&self.plugin, &self.rt, &self.store, e));
        crate::metrics::call(&self.plugin, what, started.elapsed(), result.as_ref().map(|_| ()));
        if let Err(err) = &result {
            self.poisoned = Some(err.to_string());
        }
        result
    }
}

impl std::fmt::Debug for PluginSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSession")
            .field("plugin", &self.plugin)
            .field("session_id", &self.session_id)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Turn a wasmtime error from a call into the typed fault, and log it with
/// the full backtrace (the typed error keeps the short form).
fn classify(plugin: &str, rt: &RuntimeInner, store: &Store<HostState>, e: wasmtime::Error) -> HarnessError {
    let state = store.data();
    let session_id = state.session_id.as_deref().unwrap_or("");
    tracing::error!(plugin, session_id, "harness plugin fault: {e:?}");
    if state.timed_out {
        return HarnessError::Timeout { plugin: plugin.to_string(), limit: rt.limits.call_timeout() };
    }
    if state.limiter.exceeded {
        return HarnessError::MemoryExceeded { plugin: plugin.to_string(), limit_bytes: rt.limits.memory_bytes };
    }
    let mut message = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    let stderr = state.stderr.text();
    if !stderr.is_empty() {
        message.push_str(&format!("; plugin stderr: {stderr}"));
    }
    HarnessError::Trap { plugin: plugin.to_string(), message }
}

fn classify_instantiate(plugin: &str, rt: &RuntimeInner, store: &Store<HostState>, e: wasmtime::Error) -> HarnessError {
    let state = store.data();
    if state.timed_out || state.limiter.exceeded || e.downcast_ref::<wasmtime::Trap>().is_some() {
        return classify(plugin, rt, store, e);
    }
    HarnessError::Instantiate { plugin: plugin.to_string(), message: format!("{e:#}") }
}
