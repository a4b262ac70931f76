//! Generated bindings (one module per supported contract version, Zed-style:
//! a future 0.2 gets `v0_2` beside this one) and the per-store host state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// `bridle:harness@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "harness",
        // Exports run on wasmtime fibers so a slow plugin yields to tokio at
        // every epoch tick instead of pinning a worker thread.
        exports: { default: async },
    });
}

/// The contract major.minor this host implements; any 0.1.x patch matches.
pub const SUPPORTED_CONTRACT: &str = "0.1";

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

impl v0_1::bridle::harness::types::Host for HostState {}

impl v0_1::bridle::harness::host::Host for HostState {
    fn log(&mut self, level: v0_1::bridle::harness::host::LogLevel, message: String) {
        use v0_1::bridle::harness::host::LogLevel as L;
        let plugin = &*self.plugin;
        let session = self.session_id.as_deref().unwrap_or("");
        match level {
            L::Trace => tracing::trace!(plugin, session_id = session, "{message}"),
            L::Debug => tracing::debug!(plugin, session_id = session, "{message}"),
            L::Info => tracing::info!(plugin, session_id = session, "{message}"),
            L::Warn => tracing::warn!(plugin, session_id = session, "{message}"),
            L::Error => tracing::error!(plugin, session_id = session, "{message}"),
        }
    }

    fn new_event_id(&mut self) -> String {
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
