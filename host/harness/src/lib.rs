//! The wasmtime runtime for Bridle harness plugins (`bridle:harness@0.1.x`,
//! `@0.2.x` and `@0.3.x`, side by side).
//!
//! A narrow core over wasmtime, after Spin's `spin-core`: one [`Engine`]
//! (component model, pooling allocator with on-demand fallback, an epoch
//! ticker thread), one `Linker`, a compiled component and `HarnessPre` per
//! plugin, and a fresh `Store` per session with a memory cap and a per-call
//! deadline (as `wasmtime serve` builds one per request from a shared `*Pre`).
//! No wasmtime type crosses the public API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bridle_harness::HarnessError> {
//! use bridle_harness::{HarnessConfig, HarnessRuntime};
//! let runtime = HarnessRuntime::new(HarnessConfig::default())?; // the three builtins
//! let claude = runtime.registry().get("claude")?;
//! let spec = bridle_harness::SessionSpec::from_json(r#"{"session_id":"sesn_1", "llm": {"base_url":"http://gw","model":"m"}}"#).unwrap();
//! let mut session = claude.new_session(&spec).await?;
//! let plan = session.launch().await?;
//! let actions = session.on_output(r#"{"type":"system","subtype":"init"}"#).await?;
//! # Ok(()) }
//! ```
//!
//! **Async, not `spawn_blocking`.** Exports are called with wasmtime's async
//! API: guest code runs on a fiber inside the caller's task. Calls are
//! microseconds, so a thread hop per runtime line would cost more than the
//! call; and a misbehaving plugin cannot pin a tokio worker, because every
//! epoch tick (10 ms by default) past the call's start yields to the
//! executor, and the call traps once its budget (default 1 s) is spent.
//! [`HarnessRuntime::new`] compiles plugins synchronously (tens of ms each,
//! once; with a cache dir, a file read): call it at startup or from
//! `spawn_blocking`.
//!
//! **Faults.** A trap, time-out or memory blow-up returns a typed
//! [`HarnessError`] naming the plugin ([`HarnessError::is_fault`]), logs the
//! full wasm backtrace with plugin and session fields, and poisons that one
//! [`PluginSession`]. The engine, the plugin and every other session carry on.
//!
//! [`Engine`]: wasmtime::Engine

mod bindings;
mod engine;
mod error;
mod inspect;
pub mod metrics;
mod plugin;
mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use bindings::SUPPORTED_CONTRACTS;
pub use bridle_harness_sdk::{
    Action, ApiShape, CredentialPlan, DEFAULT_SKILLS_DIR, ExecutionModel, Failure, File, HarnessInfo, HeaderRule,
    LaunchPlan, LlmEndpoint, Preview, PreviewedType, RetryReport, RetryStatus, SessionSpec, Skill, SpecLlm, StopReason,
    ToolCall, ToolResult,
};
pub use error::HarnessError;
pub use inspect::{PluginDescription, inspect};
pub use plugin::{Plugin, PluginSession};
pub use registry::{HarnessEntry, PluginSource, Registry, RegistryEntry, builtin_names, builtin_wasm};

/// Resource limits for plugin instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Total linear memory of one instance, in bytes (default 64 MiB).
    pub memory_bytes: u64,
    /// Wall-clock budget of one call into a plugin, in ms (default 1000).
    pub call_timeout_ms: u64,
    /// Epoch tick, in ms (default 10): the granularity of the deadline and
    /// how often a running plugin yields to the executor.
    pub epoch_tick_ms: u64,
    /// Pooling allocator size: the most plugin instances (live sessions +
    /// in-flight plugin-level calls) at once (default 1000).
    pub max_instances: u32,
    /// Use the pooling allocator when the machine allows it (default true).
    pub pooling: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 64 << 20, call_timeout_ms: 1000, epoch_tick_ms: 10, max_instances: 1000, pooling: true }
    }
}

impl Limits {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub(crate) fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms.max(1))
    }

    pub(crate) fn call_ticks(&self) -> u64 {
        (self.call_timeout_ms / self.epoch_tick_ms.max(1)).max(1)
    }
}

/// Runtime configuration: `[harnesses.<engine>] plugin = "..."` entries,
/// limits and the compile cache directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HarnessConfig {
    /// Where compiled plugins are cached (`<data dir>/plugin-cache`); none =
    /// compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// Engine name → plugin. [`HarnessConfig::default`] holds the builtins.
    pub harnesses: BTreeMap<String, HarnessEntry>,
    pub limits: Limits,
}

impl Default for HarnessConfig {
    /// The three builtins under their own names, default limits, no cache.
    fn default() -> Self {
        let harnesses = builtin_names()
            .into_iter()
            .map(|name| (name.to_string(), HarnessEntry { plugin: PluginSource::Builtin(name.to_string()) }))
            .collect();
        HarnessConfig { cache_dir: None, harnesses, limits: Limits::default() }
    }
}

impl HarnessConfig {
    /// Add or replace one engine (operator config goes over the builtins).
    pub fn with_plugin(mut self, engine: impl Into<String>, plugin: PluginSource) -> Self {
        self.harnesses.insert(engine.into(), HarnessEntry { plugin });
        self
    }

    /// Apply `[harnesses.*]` entries from the server config over these.
    pub fn merge(mut self, entries: BTreeMap<String, HarnessEntry>) -> Self {
        self.harnesses.extend(entries);
        self
    }
}

/// The harness plugin runtime: engine, registry, limits. Cheap to share
/// behind an `Arc`; every method takes `&self`.
pub struct HarnessRuntime {
    inner: Arc<engine::RuntimeInner>,
    registry: Registry,
}

impl HarnessRuntime {
    /// Start the engine and load every configured plugin. A plugin that
    /// fails to load does not fail the runtime: it is listed with its error
    /// ([`Registry::errors`]) and lookups of it return that error.
    pub fn new(config: HarnessConfig) -> Result<Self, HarnessError> {
        let inner = engine::RuntimeInner::new(config.limits.clone(), config.cache_dir.clone())
            .map_err(|e| HarnessError::Runtime(format!("{e:#}")))?;
        let registry = Registry::load(&inner, &config.harnesses);
        Ok(HarnessRuntime { inner, registry })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Shortcut for `registry().get(engine)`.
    pub fn plugin(&self, engine: &str) -> Result<Arc<Plugin>, HarnessError> {
        self.registry.get(engine)
    }

    /// Load a plugin outside the registry (tests, tools).
    pub fn load(&self, engine: &str, source: PluginSource) -> Result<Arc<Plugin>, HarnessError> {
        let mut one = BTreeMap::new();
        one.insert(engine.to_string(), HarnessEntry { plugin: source });
        Registry::load(&self.inner, &one).get(engine)
    }

    /// True when instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

impl std::fmt::Debug for HarnessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarnessRuntime")
            .field("pooling", &self.inner.pooling)
            .field("limits", &self.inner.limits)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Compile-time check: the session runner can hold these across `.await`
/// in tokio tasks.
#[allow(dead_code)]
fn _assert_send_sync(runtime: &HarnessRuntime, plugin: &Plugin, session: &mut PluginSession) {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(runtime);
    send_sync(plugin);
    send(session);
    let llm = LlmEndpoint::default();
    send(&plugin.check_endpoint(&llm));
    send(&plugin.credentials(&llm));
    let spec = SessionSpec::default();
    send(&plugin.new_session(&spec));
    send(&session.on_output(""));
}
