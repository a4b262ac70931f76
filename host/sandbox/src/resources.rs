//! What a sandbox holds on the host for its session besides its processes
//! (which each driver ends its own way: bwrap and its cgroup, or `runsc
//! delete`): its run directory, its egress gateway, its uid lease, its
//! pooled slot's mounts and its workspace volume. Both drivers bind them
//! with [`HostResources::bind_session`] and give them up in one order with
//! [`HostResources::release`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::egress::{Activity, Gateway, GatewayConfig, Hub};
use crate::error::Result;
use crate::local::slot::Slot;
use crate::local::volume::VolumeGuard;
use crate::spec::{EgressStats, SandboxSpec};
use crate::uids::UidLease;

/// A sandbox's host resources.
pub(crate) struct HostResources {
    run_dir: PathBuf,
    gateway: Mutex<Option<Gateway>>,
    /// Held while the sandbox runs; dropping it frees the uid host-wide.
    lease: Mutex<Option<UidLease>>,
    /// Declared last (dropped after everything that may hold the mount
    /// busy): dropping it unmounts the volume when this was its last sandbox.
    volume: Mutex<Option<VolumeGuard>>,
}

/// Who a sandbox's gateway serves.
pub(crate) struct GatewayFor<'a> {
    pub spec: &'a SandboxSpec,
    pub sandbox_id: &'a str,
    pub relay_port: u16,
    pub hub: &'a Hub,
    pub activity: &'a Arc<Activity>,
}

impl HostResources {
    /// A booted sandbox's: its run directory and uid lease; the rest comes
    /// with its session.
    pub fn new(run_dir: PathBuf, lease: Option<UidLease>) -> Self {
        Self { run_dir, gateway: Mutex::new(None), lease: Mutex::new(lease), volume: Mutex::new(None) }
    }

    /// The sandbox's run directory (the gateway's socket, the uploads).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Bind the session's egress gateway on `sock` (only the sandbox's
    /// `uid` may connect: 0600, and its when `uid` is given) and keep the
    /// guard of its workspace volume.
    pub fn bind_session(
        &self,
        sock: &Path,
        to: GatewayFor<'_>,
        uid: Option<u32>,
        volume: Option<VolumeGuard>,
    ) -> Result<()> {
        let spec = to.spec;
        let gateway = Gateway::bind(
            sock,
            GatewayConfig {
                sandbox_id: to.sandbox_id.to_owned(),
                session_id: spec.session_id.clone(),
                policy: spec.egress.clone(),
                llm: spec.llm.clone(),
                git: spec.git.clone(),
                relay_port: to.relay_port,
                hub: to.hub.clone(),
                mcp: spec.mcp.clone(),
                mcp_failures: spec.mcp_failures.clone(),
                secrets: spec.secrets.clone(),
            },
            to.activity.clone(),
        )?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(sock, Some(uid), Some(uid)).context("chown gateway socket")?;
        }
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600)).context("chmod gateway socket")?;
        if let Ok(mut v) = self.volume.lock() {
            *v = volume;
        }
        if let Ok(mut g) = self.gateway.lock() {
            *g = Some(gateway);
        }
        Ok(())
    }

    /// What the session's gateway counted so far.
    pub fn egress_stats(&self) -> EgressStats {
        self.gateway.lock().ok().and_then(|g| g.as_ref().map(Gateway::stats)).unwrap_or_default()
    }

    /// Give everything up, once the sandbox's processes are gone: the
    /// slot's mounts first (they hold the workspace volume busy), then the
    /// volume, the gateway, the run directory, and last the uid (no process
    /// of it is left to hand to the next sandbox).
    pub async fn release(&self, slot: Option<Arc<Slot>>) {
        if let Some(slot) = slot {
            let _ = tokio::task::spawn_blocking(move || slot.remove()).await;
        }
        let volume = self.volume.lock().ok().and_then(|mut v| v.take());
        if let Some(v) = volume {
            let _ = tokio::task::spawn_blocking(move || drop(v)).await;
        }
        if let Ok(mut g) = self.gateway.lock() {
            g.take();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        if let Ok(mut g) = self.lease.lock() {
            g.take();
        }
    }

    /// A sandbox dropped without a release: what must not outlive it on the
    /// host goes at once (the rest with the fields).
    pub fn abandon(&self, slot: Option<&Slot>) {
        if let Some(slot) = slot {
            slot.remove();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// Removes a run directory unless disarmed: a sandbox that failed to boot
/// leaves none.
pub(crate) struct RunDirGuard(pub Option<PathBuf>);

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
