//! Generated bindings, one module per supported contract version (Zed
//! style: `v0_1`, `v0_2`, `v0_3`), each converting into the one set of host types
//! (`bridle_harness_sdk`'s), so nothing above this module sees a version;
//! and the per-store host state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub(crate) mod v0_1;
pub(crate) mod v0_2;
pub(crate) mod v0_3;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker, ResourceAny};

use crate::{Action, CredentialPlan, HarnessInfo, LaunchPlan, LlmEndpoint, SessionSpec, ToolResult};

/// The contract lines (major.minor) this host implements, oldest first; any
/// patch of a line matches.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1", "0.2", "0.3"];

/// One supported contract line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    V0_1,
    V0_2,
    V0_3,
}

impl Contract {
    /// The line of an exported `bridle:harness/adapter@X` version, if this
    /// host supports it. Semver for 0.x: the minor is the compatibility line.
    pub fn of(version: &str) -> Option<Contract> {
        let mut parts = version.split(['.', '-', '+']);
        match (parts.next(), parts.next()) {
            (Some("0"), Some("1")) => Some(Contract::V0_1),
            (Some("0"), Some("2")) => Some(Contract::V0_2),
            (Some("0"), Some("3")) => Some(Contract::V0_3),
            _ => None,
        }
    }
}

/// Link the host side of every supported contract.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::Harness::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_2::Harness::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_3::Harness::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A linked component of one contract version.
pub(crate) enum Pre {
    V0_1(v0_1::HarnessPre<HostState>),
    V0_2(v0_2::HarnessPre<HostState>),
    V0_3(v0_3::HarnessPre<HostState>),
}

impl Pre {
    pub fn new(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        Ok(match contract {
            Contract::V0_1 => Pre::V0_1(v0_1::HarnessPre::new(pre)?),
            Contract::V0_2 => Pre::V0_2(v0_2::HarnessPre::new(pre)?),
            Contract::V0_3 => Pre::V0_3(v0_3::HarnessPre::new(pre)?),
        })
    }

    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate_async(store).await?),
            Pre::V0_3(pre) => Instance::V0_3(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance, of whichever version. Every call converts to and from the
/// host types, so nothing above this module sees a version. The inner
/// `Result`'s `Err` is the plugin's own error (or, for 0.1.0, a payload it
/// sent that does not parse).
pub(crate) enum Instance {
    V0_1(v0_1::Harness),
    V0_2(v0_2::Harness),
    V0_3(v0_3::Harness),
}

pub(crate) type Guest<T> = wasmtime::Result<Result<T, String>>;

impl Instance {
    pub async fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<HarnessInfo> {
        match self {
            Instance::V0_1(h) => v0_1::info(h, store).await,
            Instance::V0_2(h) => v0_2::info(h, store).await,
            Instance::V0_3(h) => v0_3::info(h, store).await,
        }
    }

    pub async fn check_endpoint(&self, store: &mut Store<HostState>, llm: &LlmEndpoint) -> Guest<()> {
        match self {
            Instance::V0_1(h) => v0_1::check_endpoint(h, store, llm).await,
            Instance::V0_2(h) => v0_2::check_endpoint(h, store, llm).await,
            Instance::V0_3(h) => v0_3::check_endpoint(h, store, llm).await,
        }
    }

    pub async fn credentials(
        &self,
        store: &mut Store<HostState>,
        llm: &LlmEndpoint,
    ) -> wasmtime::Result<CredentialPlan> {
        match self {
            Instance::V0_1(h) => v0_1::credentials(h, store, llm).await,
            Instance::V0_2(h) => v0_2::credentials(h, store, llm).await,
            Instance::V0_3(h) => v0_3::credentials(h, store, llm).await,
        }
    }

    pub async fn new_session(&self, store: &mut Store<HostState>, spec: &SessionSpec) -> wasmtime::Result<ResourceAny> {
        match self {
            Instance::V0_1(h) => v0_1::new_session(h, store, spec).await,
            Instance::V0_2(h) => v0_2::new_session(h, store, spec).await,
            Instance::V0_3(h) => v0_3::new_session(h, store, spec).await,
        }
    }

    pub async fn launch(&self, store: &mut Store<HostState>, res: ResourceAny) -> Guest<LaunchPlan> {
        match self {
            Instance::V0_1(h) => v0_1::launch(h, store, res).await,
            Instance::V0_2(h) => v0_2::launch(h, store, res).await,
            Instance::V0_3(h) => v0_3::launch(h, store, res).await,
        }
    }

    pub async fn on_input(&self, store: &mut Store<HostState>, res: ResourceAny, event: &str) -> Guest<Vec<Action>> {
        match self {
            Instance::V0_1(h) => v0_1::on_input(h, store, res, event).await,
            Instance::V0_2(h) => v0_2::on_input(h, store, res, event).await,
            Instance::V0_3(h) => v0_3::on_input(h, store, res, event).await,
        }
    }

    pub async fn on_output(&self, store: &mut Store<HostState>, res: ResourceAny, line: &str) -> Guest<Vec<Action>> {
        match self {
            Instance::V0_1(h) => v0_1::on_output(h, store, res, line).await,
            Instance::V0_2(h) => v0_2::on_output(h, store, res, line).await,
            Instance::V0_3(h) => v0_3::on_output(h, store, res, line).await,
        }
    }

    pub async fn on_tool_result(
        &self,
        store: &mut Store<HostState>,
        res: ResourceAny,
        result: &ToolResult,
    ) -> Guest<Vec<Action>> {
        match self {
            Instance::V0_1(h) => v0_1::on_tool_result(h, store, res, result).await,
            Instance::V0_2(h) => v0_2::on_tool_result(h, store, res, result).await,
            Instance::V0_3(h) => v0_3::on_tool_result(h, store, res, result).await,
        }
    }

    pub async fn on_exit(
        &self,
        store: &mut Store<HostState>,
        res: ResourceAny,
        code: Option<i32>,
    ) -> Guest<Vec<Action>> {
        match self {
            Instance::V0_1(h) => v0_1::on_exit(h, store, res, code).await,
            Instance::V0_2(h) => v0_2::on_exit(h, store, res, code).await,
            Instance::V0_3(h) => v0_3::on_exit(h, store, res, code).await,
        }
    }
}

/// Data of one `Store`: one plugin instance (one session, or one
/// plugin-level call such as `info`).
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin: Arc<str>,
    pub session_id: Option<Arc<str>>,
    /// Epoch ticks left for the current call (see `epoch_deadline_callback`).
    pub ticks_left: u64,
    pub timed_out: bool,
    pub stderr: TailBuffer,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// `host.log`, the same for every contract version.
    pub(crate) fn log(&self, level: tracing::Level, message: &str) {
        let plugin = &*self.plugin;
        let session = self.session_id.as_deref().unwrap_or("");
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, session_id = session, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, session_id = session, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, session_id = session, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, session_id = session, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, session_id = session, "{message}"),
        }
    }

    /// `host.new-event-id`.
    pub(crate) fn new_event_id() -> String {
        format!("sevt_{}", ulid::Ulid::new())
    }
}

/// Caps the total linear memory of one instance (all its memories together).
pub(crate) struct MemoryLimiter {
    pub cap: usize,
    pub used: usize,
    /// Set when a grow was refused, so the resulting trap is reported as a
    /// memory blow-up rather than a generic trap.
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        if self.used.saturating_add(delta) > self.cap {
            self.exceeded = true;
            // An error (not `Ok(false)`) traps right here: a Rust guest would
            // otherwise abort a little later with a less telling trap.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (growing to {desired} bytes)",
                self.cap
            ));
        }
        self.used += delta;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The last few KiB a plugin wrote to stderr (a Rust panic message lands
/// here), kept so a trap can be reported with its cause. Never refuses a
/// write: a chatty plugin loses old output, it does not trap.
#[derive(Clone, Default)]
pub(crate) struct TailBuffer(Arc<Mutex<VecDeque<u8>>>);

const TAIL_BYTES: usize = 4096;

impl TailBuffer {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (buf.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        buf.drain(..overflow);
        buf.extend(bytes);
    }

    /// The captured text, trimmed; empty when the plugin wrote nothing.
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = buf.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl IsTerminal for TailBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailBuffer {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this path; plugins are p2 components.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for TailBuffer {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TailBuffer {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_end() {
        let t = TailBuffer::default();
        t.push(&vec![b'a'; TAIL_BYTES]);
        t.push(b"panicked at here");
        let text = t.text();
        assert_eq!(text.len(), TAIL_BYTES);
        assert!(text.ends_with("panicked at here"));
    }

    #[test]
    fn limiter_counts_all_memories() {
        let mut l = MemoryLimiter { cap: 100, used: 0, exceeded: false };
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        assert!(l.memory_growing(30, 50, None).is_err());
        assert!(l.exceeded);
    }
}
