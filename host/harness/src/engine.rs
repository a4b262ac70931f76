//! The one wasmtime `Engine`: configuration, pooling with fallback, the epoch
//! ticker, the linker, and the on-disk compile cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtx;

use crate::Limits;
use crate::bindings::{HostState, MemoryLimiter, TailBuffer};

pub(crate) struct RuntimeInner {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub limits: Limits,
    pub cache_dir: Option<PathBuf>,
    pub pooling: bool,
}

impl RuntimeInner {
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Arc<Self>> {
        let (engine, pooling) = build_engine(&limits)?;
        spawn_epoch_ticker(&engine, limits.epoch_tick())?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        // Rust's std for wasm32-wasip2 imports wasi:cli/io/... even when
        // unused; they are linked against a context that grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        crate::bindings::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking bridle:harness/host")?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating plugin cache dir {}", dir.display()))?;
        }
        Ok(Arc::new(RuntimeInner { engine, linker, limits, cache_dir, pooling }))
    }

    /// A fresh store for one instance: no env, no args, no preopens, no
    /// network (wasmtime-wasi 48 denies sockets by default), stdin empty,
    /// stdout discarded, stderr kept (tail) for trap reports.
    pub fn new_store(&self, plugin: Arc<str>, session_id: Option<Arc<str>>) -> Store<HostState> {
        let stderr = TailBuffer::default();
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryLimiter { cap: self.limits.memory_bytes as usize, used: 0, exceeded: false },
                plugin,
                session_id,
                ticks_left: self.limits.call_ticks(),
                timed_out: false,
                stderr,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Each tick past the deadline: give the executor a turn (a looping
        // plugin never pins a tokio worker for more than one tick), and trap
        // once the call's budget is spent.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left == 0 {
                state.timed_out = true;
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Compile `bytes`, or load the serialized artifact from the cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Ok(Component::from_binary(&self.engine, bytes)?);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if path.is_file() {
            // SAFETY: the cache directory is ours and only holds artifacts this
            // function serialized; the key covers the component bytes and the
            // engine's compatibility hash (wasmtime version + config), and
            // wasmtime re-checks the header on load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring bad cache entry: {e:#}"),
            }
        }
        let component = Component::from_binary(&self.engine, bytes)?;
        if let Err(e) = write_cache(&path, &component) {
            tracing::warn!(path = %path.display(), "could not write plugin cache: {e:#}");
        }
        Ok(component)
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut engine_hash = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let mut h = Sha256::new();
        h.update(bytes);
        h.update(engine_hash.finish().to_le_bytes());
        h.update(b"wasmtime-48");
        hex::encode(&h.finalize()[..20])
    }
}

fn write_cache(path: &Path, component: &Component) -> Result<()> {
    let bytes = component.serialize()?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn base_config() -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    cfg
}

/// Bytes of each pooled memory's working set reset with memset instead of
/// madvise when an instance ends, so the next session on that slot takes no
/// page faults on it. Only with `PAGEMAP_SCAN` (Linux 6.7+), which finds the
/// pages the guest wrote; without it wasmtime keeps the first bytes of the
/// memory instead, and a Rust plugin's 1 MiB shadow stack comes first but is
/// used from its top down: every live session would keep its whole stack.
const KEEP_RESIDENT: usize = 2 << 20;

/// Pooling first (instantiation ~2x faster), on-demand when the pool's
/// address-space reservation fails (small VMs, ulimit -v, some CI) or when
/// disabled by config.
fn build_engine(limits: &Limits) -> Result<(Engine, bool)> {
    if limits.pooling {
        let n = limits.max_instances.max(1);
        let (scan, keep_resident) = match PoolingAllocationConfig::is_pagemap_scan_available() {
            true => (Enabled::Yes, KEEP_RESIDENT),
            false => (Enabled::No, 0),
        };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // A wasip2 Rust component is a handful of core instances (the
            // module, the preview1 adapter, shims) with two memories.
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes as usize)
            .pagemap_scan(scan)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(64 << 10);
        let mut cfg = base_config();
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&cfg) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!("pooling allocator unavailable ({e:#}); falling back to on-demand allocation"),
        }
    }
    let engine = Engine::new(&base_config()).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
    Ok((engine, false))
}

/// An OS thread (not a tokio task) so ticks keep coming even when every
/// worker is busy inside guest code. It ends when the engine is dropped.
/// Without it no call has a deadline: failing to start it fails the runtime.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) -> Result<()> {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("bridle-wasm-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    spawned.map(drop).context("starting the wasm epoch ticker thread (plugin call deadlines depend on it)")
}
