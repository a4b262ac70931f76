//! The gVisor driver's warm pool: sandboxes started (`runsc run`, the
//! relay up, uid, cgroup, run dir) before their session is known, handed
//! to a claim that then only binds the session's workspace into the
//! running sandbox and its egress gateway. The pool itself (size, idle
//! limit, refill) is the bubblewrap driver's ([`crate::local::pool`]), and so
//! are the pool config keys; a pooled sandbox serves one session and is
//! never handed out again.
//!
//! How the workspace gets in: gVisor's gofer serves each OCI mount from a
//! descriptor of the mount's root opened at start, so a host mount stacked
//! later on a mount's root stays invisible (and `stat` of it fails). A
//! lookup *below* a mount's root is a fresh `openat` by the gofer, which
//! crosses host mounts. So a pooled sandbox mounts its slot's *parent*
//! directory at [`SLOT_INSIDE`] (the slot's `ws/` and `tmp/` are shared
//! mounts on the host, [`crate::local::slot`], whose copies in the gofer's
//! mount namespace are slaves); a claim mounts the session's workspace onto
//! `ws/` on the host (it propagates into the gofer), then one `runsc exec`
//! as root with only `CAP_SYS_ADMIN`, inside gVisor's kernel, bind-mounts
//! `SLOT_INSIDE/ws` onto `/workspace` (and `tmp/` onto `/tmp` with the disk
//! quota). That exec is the claim's cost: about one `runsc exec`, instead
//! of a `runsc run`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use async_trait::async_trait;

use super::oci::{self, Capabilities, Mount, Process, User};
use super::{Dirs, GvisorDriver, GvisorSandbox, Shared, boot};
use crate::driver::Sandbox;
use crate::error::{Result, SandboxError};
use crate::local::pool::{self, Pool, Pooled};
use crate::local::slot::{self, Slot};
use crate::spec::SandboxSpec;

/// Where a pooled sandbox's slot directory is mounted, relative to the
/// root (its mount point in the shared rootfs).
pub(super) const SLOT_MOUNT_POINT: &str = "run/bridle-slot";
/// The same, inside the sandbox.
const SLOT_INSIDE: &str = "/run/bridle-slot";

/// Start the pool and its refill task.
pub(super) fn start(rt: &tokio::runtime::Handle, shared: &Arc<Shared>) -> Arc<Pool<GvisorSandbox>> {
    let pool = Pool::new(shared.cfg.pool.clone());
    let boot_shared = shared.clone();
    rt.spawn(pool::run(Arc::downgrade(&pool), move || boot_pooled(boot_shared.clone())));
    pool
}

/// Start one sandbox for the pool: its own uid, an empty slot, the pool's
/// limits; no session yet.
async fn boot_pooled(shared: Arc<Shared>) -> Result<Arc<GvisorSandbox>> {
    let lease = shared.uids.lease(None)?;
    let uid = lease.uid();
    let with_tmp = shared.workspaces.quota_on();
    let id = crate::local::random_id();
    let root = slot::own_dir(&shared.cfg.state_dir);
    let made = tokio::task::spawn_blocking(move || Slot::create(&root, &id, uid, with_tmp).map(|s| (s, id)))
        .await
        .map_err(|e| anyhow!("slot task: {e}"))?;
    let (slot, id) = made.map_err(SandboxError::Other)?;
    let slot = Arc::new(slot);
    let limits = shared.cfg.pool.limits.clone();
    match boot(shared, &limits, Dirs::Slot(slot.clone()), lease, id).await {
        Ok(s) => Ok(s),
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || slot.remove()).await;
            Err(e)
        }
    }
}

/// A pooled sandbox's OCI spec: no `/workspace` mount (the root's empty,
/// read-only directory until the claim binds over it), and the slot's
/// directory read-write at [`SLOT_INSIDE`].
pub(super) fn slot_spec(mut spec: oci::Spec, slot_dir: &Path) -> oci::Spec {
    spec.mounts.retain(|m| m.destination != "/workspace");
    spec.mounts.push(Mount {
        destination: SLOT_INSIDE.into(),
        kind: "bind",
        source: slot_dir.to_path_buf(),
        options: vec!["rbind".into(), "rw".into(), "nosuid".into(), "nodev".into()],
    });
    spec
}

/// The process that binds the filled slot into the sandbox: root inside
/// gVisor's kernel with `CAP_SYS_ADMIN` only (it holds nothing on the host).
fn bind_process(with_tmp: bool) -> Process {
    let mut script = format!("set -e\nmount --bind {SLOT_INSIDE}/ws /workspace\n");
    if with_tmp {
        script.push_str(&format!("mount --bind {SLOT_INSIDE}/tmp /tmp\n"));
    }
    let cap = vec!["CAP_SYS_ADMIN".to_string()];
    Process {
        terminal: false,
        user: User { uid: 0, gid: 0 },
        args: vec!["/bin/sh".into(), "-c".into(), script],
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        capabilities: Capabilities {
            bounding: cap.clone(),
            effective: cap.clone(),
            permitted: cap,
            ..Default::default()
        },
        rlimits: Vec::new(),
        no_new_privileges: true,
    }
}

impl GvisorSandbox {
    /// Whether this sandbox was started by the warm pool (before its
    /// session was known).
    pub fn pooled(&self) -> bool {
        self.slot.is_some()
    }
}

impl GvisorDriver {
    /// A claim served from the pool: mount the session's workspace onto the
    /// slot, bind it into the sandbox, bind the gateway. On failure the
    /// pooled sandbox is released, never returned to the pool.
    pub(super) async fn claim_pooled(&self, sbx: Arc<GvisorSandbox>, spec: SandboxSpec) -> Result<Arc<GvisorSandbox>> {
        let bound = async {
            let workspaces = &self.shared.workspaces;
            workspaces.check_bytes(&spec)?;
            let env = crate::local::session_env(&spec, self.shared.cfg.relay_port)?;
            let mut ws = workspaces.open(&spec).await?;
            let owner = workspaces.owner(&ws)?;
            workspaces.give(&ws, owner, sbx.uid).await?;
            let slot = sbx.slot.as_ref().ok_or_else(|| anyhow!("a pooled sandbox without a slot"))?;
            slot.fill(&ws.dir, ws.tmp.as_deref())?;
            bind_inside(&sbx, ws.tmp.is_some()).await?;
            self.bind_session(&sbx, &spec, env, ws.volume.take())
        }
        .await;
        if let Err(e) = bound {
            let _ = sbx.release_inner("claim from the pool failed").await;
            return Err(e);
        }
        Ok(sbx)
    }
}

/// Run [`bind_process`] in the sandbox and wait for it.
async fn bind_inside(sbx: &GvisorSandbox, with_tmp: bool) -> Result<()> {
    let file = sbx.host.run_dir().join("bind-slot.json");
    std::fs::write(&file, serde_json::to_vec(&bind_process(with_tmp)).context("encode bind process")?)
        .context("write bind process")?;
    let mut cmd = sbx.shared.runsc();
    cmd.arg("exec")
        .arg(format!("--process={}", file.display()))
        .arg(&sbx.id)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(sbx.shared.cfg.ready_timeout, cmd.output())
        .await
        .map_err(|_| {
            anyhow!("binding the workspace into the pooled sandbox took over {:?}", sbx.shared.cfg.ready_timeout)
        })?
        .with_context(|| format!("spawn {}", sbx.shared.runsc.display()))?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(SandboxError::Other(anyhow!(
            "could not bind the workspace into the pooled gVisor sandbox ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[async_trait]
impl Pooled for GvisorSandbox {
    fn alive(&self) -> bool {
        self.is_running()
    }
    async fn discard(&self, why: &str) {
        let _ = self.release_inner(why).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_spec_mounts_the_slot_instead_of_a_workspace() {
        let slot_path = std::path::PathBuf::from("/state/pool/h-1/sbx_x");
        let mk = |destination: &str| Mount {
            destination: destination.into(),
            kind: "bind",
            source: "/src".into(),
            options: vec!["rbind".into(), "rw".into()],
        };
        let spec = oci::Spec {
            oci_version: "1.0.2",
            process: bind_process(false),
            root: oci::Root { path: "/r".into(), readonly: true },
            hostname: "sandbox".into(),
            mounts: vec![mk("/usr"), mk("/workspace"), mk("/mnt/session")],
            linux: oci::Linux { namespaces: vec![], resources: Default::default(), cgroups_path: "/b".into() },
        };
        let out = slot_spec(spec, &slot_path);
        let dests: Vec<_> = out.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/usr", "/mnt/session", SLOT_INSIDE]);
        let m = out.mounts.last().expect("slot mount");
        assert_eq!(m.source, slot_path);
        assert!(m.options.contains(&"rbind".to_string()) && m.options.contains(&"rw".to_string()));
        assert_eq!(format!("/{SLOT_MOUNT_POINT}"), SLOT_INSIDE);
    }

    #[test]
    fn the_bind_process_is_root_with_only_cap_sys_admin_and_binds_tmp_with_a_volume() {
        let p = bind_process(false);
        assert_eq!((p.user.uid, p.user.gid), (0, 0));
        assert_eq!(p.capabilities.effective, ["CAP_SYS_ADMIN"]);
        assert_eq!(p.capabilities.bounding, ["CAP_SYS_ADMIN"]);
        assert!(p.capabilities.ambient.is_empty() && p.capabilities.inheritable.is_empty());
        assert!(p.no_new_privileges);
        let script = &p.args[2];
        assert!(script.contains("mount --bind /run/bridle-slot/ws /workspace"), "{script}");
        assert!(!script.contains("/tmp"), "{script}");
        assert!(bind_process(true).args[2].contains("mount --bind /run/bridle-slot/tmp /tmp"));
    }
}
