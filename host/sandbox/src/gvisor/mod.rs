//! The gVisor driver: each sandbox is a `runsc` container, so its processes
//! run on gVisor's user-space kernel instead of the host's.
//!
//! A claim writes an OCI bundle ([`oci`]) whose root is the same read-only
//! host view the bubblewrap driver gives (host `/usr`, the curated `/etc`,
//! the session's `/workspace` read-write, `/tmp`, `/mnt/session`), the
//! container process running as the sandbox's own leased host uid with no
//! capabilities, and starts it with `runsc run --detach`. Its network is
//! `--network=none` (loopback only); the container process is the init's
//! relay ([`crate::init::RELAY_ARG`]), which forwards `127.0.0.1:PORT` to the
//! egress gateway's unix socket, mounted read-only at `/run/bridle`
//! (`--host-uds=open` lets gVisor's gofer connect to it). Descriptors cannot
//! be passed into gVisor, so each exec is one `runsc exec` whose stdio are
//! the host pipes; the init's [`crate::init::EXEC_ARG`] makes each exec the
//! leader of its own process group so it can be killed as a group.
//! Release is `runsc delete --force` (kills every process, removes the
//! container's cgroups). A runsc sandbox is not the server's child: the
//! driver's [`lifeline`] watcher deletes the ones still running when the
//! server dies.
//!
//! Limits: memory and CPU by the container's host cgroup (memory past the
//! limit ends the whole sandbox: gVisor's kernel is one host process), the
//! rest as rlimits gVisor's kernel enforces. The workspace quota and the uid
//! range are the local driver's ([`LocalConfig`]).

pub mod install;
pub mod lifeline;
mod oci;
mod pool;
mod runsc;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::driver::{BusyGuard, ExecChild, ExecControl, Sandbox, SandboxDriver};
use crate::egress::Activity;
use crate::error::{Result, SandboxError};
use crate::live::Live;
use crate::local::pool::Pool;
use crate::local::slot::Slot;
use crate::local::volume::VolumeGuard;
use crate::local::{self, LocalConfig, Touching};
use crate::resources::{GatewayFor, HostResources, RunDirGuard};
use crate::spec::{EgressStats, ExecRequest, ExitStatus, Limit, SandboxSpec};
use crate::uids::{UidLease, UidPool};
use crate::workspace::Workspaces;
pub use runsc::{GvisorDoctor, INSTALL_HINT, check, find as find_runsc};

/// How long [`Sandbox::limit_hit_settled`] waits for the relay to report a
/// limit: several of its task counts, which a fork bomb slows down.
const LIMIT_SETTLE: Duration = Duration::from_secs(2);

/// Settings of the gVisor driver: the local driver's (state dir, uid range,
/// relay port, idle release, seccomp, limits, quota, egress) plus runsc's
/// own. The local driver's `bwrap` does not apply; its `pool` is this
/// driver's warm pool ([`pool`]).
/// With `seccomp`, every exec runs under the bubblewrap driver's deny list,
/// installed by the exec wrapper and enforced by gVisor's kernel.
#[derive(Debug, Clone, Default)]
pub struct GvisorConfig {
    pub base: LocalConfig,
    /// The `runsc` executable; default: found on `PATH`.
    pub runsc: Option<PathBuf>,
    /// `systrap`, `ptrace` or `kvm`; default: the best this runsc has of
    /// `systrap` and `ptrace`.
    pub platform: Option<String>,
}

struct Shared {
    cfg: LocalConfig,
    runsc: PathBuf,
    platform: String,
    /// runsc's state (`--root`): this server process's own.
    root_dir: PathBuf,
    rootfs: PathBuf,
    etc: PathBuf,
    init: PathBuf,
    host_dirs: Vec<PathBuf>,
    workspaces: Workspaces,
    uids: UidPool,
    egress: crate::egress::Hub,
    live: Live<GvisorSandbox>,
    lifeline: lifeline::Lifeline,
}

impl Shared {
    /// `runsc` with the flags every call shares.
    fn runsc(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.runsc);
        c.args(self.global_args()).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    fn global_args(&self) -> Vec<String> {
        global_args(&self.root_dir, &self.platform, self.cfg.cgroups)
    }
}

/// The flags every `runsc` call of a driver shares.
fn global_args(root_dir: &Path, platform: &str, cgroups: bool) -> Vec<String> {
    let mut a = vec![
        format!("--root={}", root_dir.display()),
        format!("--platform={platform}"),
        // Loopback only: the egress gateway is reached through the relay.
        "--network=none".into(),
        // Lets the gofer connect to the gateway's unix socket (the only
        // host socket a sandbox's mounts hold).
        "--host-uds=open".into(),
    ];
    if !cgroups {
        a.push("--ignore-cgroups".into());
    }
    a
}

/// The gVisor driver. Cheap to clone.
#[derive(Clone)]
pub struct GvisorDriver {
    shared: Arc<Shared>,
    /// The warm pool, when on. Not in [`Shared`]: pooled sandboxes hold
    /// `Shared`, and the pool must end with the last driver handle.
    pool: Option<Arc<Pool<GvisorSandbox>>>,
}

/// [`local::UPLOADS_DIR`]'s host side, in the sandbox's run directory.
const UPLOADS_HOST_DIR: &str = "uploads";

/// The host cgroup parent of every gVisor sandbox.
const CGROUP_PARENT: &str = "bridle-gvisor";

impl GvisorDriver {
    /// Check prerequisites (runsc, root, the init) and prepare the state dir.
    /// Fails with [`SandboxError::Unavailable`] naming what is missing.
    pub fn new(cfg: GvisorConfig) -> Result<Self> {
        let runsc = runsc::find(cfg.runsc.as_deref()).map_err(SandboxError::Unavailable)?;
        let platform = runsc::platform(&runsc, cfg.platform.as_deref()).map_err(SandboxError::Unavailable)?;
        let init = local::find_init(&cfg.base).map_err(SandboxError::Unavailable)?;
        let base = cfg.base;
        if !local::is_root() {
            return Err(SandboxError::Unavailable(
                "the gVisor sandbox driver needs root (runsc starts sandboxes as root and gives each its own \
                 host uid); run the server as root or use sandbox_driver = \"bubblewrap\""
                    .into(),
            ));
        }
        crate::settings::check(&base, true)?;
        let runtime = crate::settings::pool_runtime(&base)?;
        let workspaces = Workspaces::new(&base, true)?;
        // A dead server's sandboxes first: they hold its slots' and volumes' mounts.
        sweep_stale_roots(&runsc, &base.state_dir);
        workspaces.prepare_state_dir(true)?;
        let root_dir = local::own_etc_dir(&base.state_dir, "runsc");
        local::mkdir_mode(&root_dir, 0o700)?;
        let etc = local::own_etc_dir(&base.state_dir, "gvisor-etc");
        local::build_etc(&etc, base.egress.ca.as_ref().map(|c| c.cert_pem.as_str())).map_err(SandboxError::Other)?;
        let rootfs = local::own_etc_dir(&base.state_dir, "gvisor-rootfs");
        let host_dirs = build_rootfs(&rootfs, &base.extra_ro_binds).map_err(SandboxError::Other)?;
        let uids = UidPool::new(&base.uid_lock_dir, crate::settings::uid_range(&base)?)?;
        let lifeline = lifeline::Lifeline::spawn(&init, &runsc, &global_args(&root_dir, &platform, base.cgroups))
            .map_err(SandboxError::Other)?;
        let version = runsc::version(&runsc).unwrap_or_default();
        if !install::recent_enough(&version) {
            warn!(
                runsc = %runsc.display(), %version,
                "runsc is older than release {}: codex turns can stall and coreutils' stat fails on it; \
                 upgrade it (Debian 12: `apt-get install -t bookworm-backports runsc`) or set auto_install = true",
                install::TESTED_RELEASE
            );
        }
        info!(runsc = %runsc.display(), %version, %platform, pool = base.pool.size, "gVisor sandbox driver ready");
        let shared = Arc::new(Shared {
            egress: crate::egress::Hub::new(&base.egress)?,
            cfg: base,
            runsc,
            platform,
            root_dir,
            rootfs,
            etc,
            init,
            host_dirs,
            workspaces,
            uids,
            live: Live::new(),
            lifeline,
        });
        let pool = runtime.map(|rt| pool::start(&rt, &shared));
        Ok(Self { shared, pool })
    }

    /// How many pooled sandboxes are booted and waiting for a claim.
    pub fn pool_ready(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.ready())
    }

    /// The platform sandboxes run on.
    pub fn platform(&self) -> &str {
        &self.shared.platform
    }

    /// The config in force (the local driver's part).
    pub fn config(&self) -> &LocalConfig {
        &self.shared.cfg
    }

    /// The running sandbox of a session, if any.
    pub fn live(&self, session_id: &str) -> Option<Arc<GvisorSandbox>> {
        self.shared.live.get(session_id)
    }

    /// Host path of a session's workspace (inside its mounted volume when the
    /// quota is on: present only while a sandbox of the session runs).
    pub fn workspace_path(&self, session_id: &str) -> PathBuf {
        self.shared.workspaces.path(session_id)
    }

    /// Claim, returning the concrete type.
    pub async fn claim_gvisor(&self, spec: SandboxSpec) -> Result<Arc<GvisorSandbox>> {
        let from_pool = |sbx, spec| self.claim_pooled(sbx, spec);
        let cold = |spec| self.start(spec);
        crate::claim::claim("gvisor", &self.shared.live, self.pool.as_ref(), spec, from_pool, cold).await
    }

    async fn start(&self, spec: SandboxSpec) -> Result<Arc<GvisorSandbox>> {
        let shared = &self.shared;
        shared.workspaces.check_bytes(&spec)?;
        let session_env = local::session_env(&spec, shared.cfg.relay_port)?;
        let mut ws = shared.workspaces.open(&spec).await?;
        let owner = shared.workspaces.owner(&ws)?;
        let lease = shared.uids.lease(Some(owner))?;
        shared.workspaces.give(&ws, owner, lease.uid()).await?;
        let dirs = Dirs::Session { workspace: ws.dir.clone(), tmp: ws.tmp.clone() };
        let sbx = boot(shared.clone(), &spec.limits, dirs, lease, local::random_id()).await?;
        if let Err(e) = self.bind_session(&sbx, &spec, session_env, ws.volume.take()) {
            let _ = sbx.release_inner("binding failed").await;
            return Err(e);
        }
        Ok(sbx)
    }

    /// Give a booted sandbox its session: the egress gateway with the
    /// session's policy, the session's environment, its workspace volume;
    /// then it is the session's live sandbox.
    fn bind_session(
        &self,
        sbx: &Arc<GvisorSandbox>,
        spec: &SandboxSpec,
        session_env: Vec<(String, String)>,
        volume: Option<VolumeGuard>,
    ) -> Result<()> {
        let shared = &self.shared;
        let sock = sbx.host.run_dir().join("gw").join("gw.sock");
        let gateway = GatewayFor {
            spec,
            sandbox_id: &sbx.id,
            relay_port: shared.cfg.relay_port,
            hub: &shared.egress,
            activity: &sbx.activity,
        };
        sbx.host.bind_session(&sock, gateway, Some(sbx.uid), volume)?;
        let env = merge_env(local::base_env(&shared.cfg).into_iter().chain(session_env));
        if sbx.session_id.set(spec.session_id.clone()).is_err() || sbx.env.set(env).is_err() {
            return Err(SandboxError::Other(anyhow!("sandbox {} already serves a session", sbx.id)));
        }
        sbx.span.record("session_id", spec.session_id.as_str());
        sbx.activity.touch();
        shared.live.insert(&spec.session_id, sbx);
        Ok(())
    }
}

/// Where a booting sandbox's `/workspace` (and volume `/tmp`) come from.
enum Dirs {
    /// A cold claim's: the session's own.
    Session { workspace: PathBuf, tmp: Option<PathBuf> },
    /// A pooled sandbox's: an empty slot, filled at claim ([`pool`]).
    Slot(Arc<Slot>),
}

/// Start a sandbox (`runsc run`) as the leased uid with `limits`: all but
/// its session, which [`GvisorDriver::bind_session`] gives it.
async fn boot(
    shared: Arc<Shared>,
    limits: &crate::spec::Limits,
    dirs: Dirs,
    lease: UidLease,
    id: String,
) -> Result<Arc<GvisorSandbox>> {
    let uid = lease.uid();
    let span = info_span!("sandbox", sandbox = %id, session_id = tracing::field::Empty, uid, driver = "gvisor");
    let run_dir = shared.cfg.state_dir.join("run").join(&id);
    local::mkdir_mode(&run_dir, 0o700)?;
    let mut cleanup = RunDirGuard(Some(run_dir.clone()));
    let gw_dir = run_dir.join("gw");
    let session_dir = run_dir.join("session");
    for d in [&gw_dir, &session_dir, &session_dir.join("outputs")] {
        local::mkdir_mode(d, 0o700)?;
        std::os::unix::fs::chown(d, Some(uid), Some(uid)).with_context(|| format!("chown {}", d.display()))?;
    }
    // The uploads: root's, bound read-only over this mount point.
    let uploads = run_dir.join(UPLOADS_HOST_DIR);
    local::mkdir_mode(&uploads, 0o755)?;
    local::mkdir_mode(&session_dir.join("uploads"), 0o755)?;
    // The agent is the sandbox's host uid here (gVisor's gofer creates
    // files with the caller's uid as it is), so it gets its own passwd.
    let passwd = run_dir.join("passwd");
    let group = run_dir.join("group");
    std::fs::write(
        &passwd,
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{uid}:{uid}:agent:/workspace:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )
    .context("write passwd")?;
    std::fs::write(&group, format!("root:x:0:\nagent:x:{uid}:\nnogroup:x:65534:\n")).context("write group")?;
    for f in [&passwd, &group] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).context("chmod passwd")?;
    }

    let activity = Activity::new();
    let (workspace, tmp, slot) = match dirs {
        Dirs::Session { workspace, tmp } => (workspace, tmp, None),
        Dirs::Slot(slot) => (slot.ws.clone(), None, Some(slot)),
    };
    let layout = oci::Layout {
        rootfs: shared.rootfs.clone(),
        etc: shared.etc.clone(),
        passwd,
        group,
        workspace: workspace.clone(),
        tmp,
        session_dir,
        uploads,
        gateway_dir: gw_dir,
        init: shared.init.clone(),
        host_dirs: shared.host_dirs.clone(),
        extra_ro: shared.cfg.extra_ro_binds.clone(),
    };
    let base_env = local::base_env(&shared.cfg);
    let cgroup = format!("/{CGROUP_PARENT}/{id}");
    let mut oci_spec =
        oci::sandbox_spec(&layout, uid, limits, shared.cfg.cpus, shared.cfg.relay_port, &base_env, &cgroup);
    if let Some(slot) = &slot {
        oci_spec = pool::slot_spec(oci_spec, slot.dir());
    }
    let json = serde_json::to_vec_pretty(&oci_spec).context("encode config.json")?;
    std::fs::write(run_dir.join("config.json"), json).context("write config.json")?;

    // The relay's stdout is our pipe: it says `ready` once listening,
    // and reaches end of file when the sandbox ends.
    let (ready_r, ready_w) = std::io::pipe().context("pipe")?;
    let log_path = run_dir.join("runsc.log");
    let log = std::fs::File::create(&log_path).context("create runsc.log")?;
    let t0 = std::time::Instant::now();
    let pid_file = run_dir.join("sandbox.pid");
    // Noted before it exists: a server killed during `runsc run` leaves
    // nothing running either.
    shared.lifeline.started(&id);
    let mut run = shared.runsc();
    run.arg("run")
        .arg("--detach")
        .arg(format!("--bundle={}", run_dir.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(ready_w)
        .stderr(log);
    let started = tokio::time::timeout(shared.cfg.ready_timeout, run.status()).await;
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default().trim().to_owned();
    let failed = match started {
        Ok(Ok(st)) if st.success() => None,
        Ok(Ok(st)) => Some(format!("runsc run failed ({st})")),
        Ok(Err(e)) => Some(format!("cannot run runsc: {e}")),
        Err(_) => Some(format!("runsc run did not return within {:?}", shared.cfg.ready_timeout)),
    };
    drop(run);
    let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r.into()).context("ready pipe")?;
    let ready_line = match failed {
        Some(e) => Err(e),
        None => {
            let mut buf = [0u8; 6];
            match tokio::time::timeout(shared.cfg.ready_timeout, ready.read_exact(&mut buf)).await {
                Ok(Ok(_)) if &buf == b"ready\n" => Ok(()),
                Ok(Ok(_)) => Err(format!("the relay said {:?}", String::from_utf8_lossy(&buf))),
                Ok(Err(e)) => Err(format!("the sandbox ended during start-up ({e})")),
                Err(_) => Err(format!("not ready within {:?}", shared.cfg.ready_timeout)),
            }
        }
    };
    if let Err(e) = ready_line {
        delete_container(&shared.runsc, &shared.global_args(), &id).await;
        shared.lifeline.released(&id);
        return Err(SandboxError::Other(anyhow!("gVisor sandbox failed to start: {e}; runsc said: {}", read_log())));
    }
    let sandbox_pid = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
    cleanup.0 = None;
    span.in_scope(|| info!(ready_us = t0.elapsed().as_micros() as u64, "gVisor sandbox started"));
    let sbx = Arc::new_cyclic(|me| GvisorSandbox {
        me: me.clone(),
        id,
        session_id: OnceLock::new(),
        relay_port: shared.cfg.relay_port,
        uid,
        env: OnceLock::new(),
        shared: shared.clone(),
        activity,
        cgroup,
        workspace,
        sandbox_pid,
        next_exec: AtomicU64::new(1),
        running: AtomicBool::new(true),
        released: AtomicBool::new(false),
        processes_at_limit: AtomicBool::new(false),
        end_reason: Mutex::new(None),
        execs: Mutex::new(Vec::new()),
        slot,
        host: HostResources::new(run_dir, Some(lease)),
        span: span.clone(),
    });
    sbx.activity.touch();
    tokio::spawn(watch_end(Arc::downgrade(&sbx), ready).instrument(span.clone()));
    tokio::spawn(monitor_idle(Arc::downgrade(&sbx)).instrument(span));
    Ok(sbx)
}

/// Later entries win (glibc's `getenv` takes the first of duplicates).
fn merge_env(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// The shared root: mount points, and the host's top-level links
/// (`/bin -> usr/bin`); returns the top-level host directories to bind.
fn build_rootfs(dir: &Path, extra: &[(PathBuf, String)]) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    local::mkdir_mode(dir, 0o755)?;
    let mut host_dirs = vec![PathBuf::from("/usr")];
    for d in [
        "usr",
        "etc",
        "workspace",
        "tmp",
        "proc",
        "dev",
        "run",
        "run/bridle",
        pool::SLOT_MOUNT_POINT,
        "mnt",
        "mnt/session",
        "var",
    ] {
        local::mkdir_mode(&dir.join(d), 0o755)?;
    }
    std::os::unix::fs::symlink("/tmp", dir.join("var/tmp")).context("link /var/tmp")?;
    std::fs::write(dir.join("run/bridle-init"), b"").context("init mount point")?;
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(top);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                std::os::unix::fs::symlink(std::fs::read_link(&host)?, dir.join(top))
                    .with_context(|| format!("link /{top}"))?;
            }
            Ok(md) if md.is_dir() => {
                local::mkdir_mode(&dir.join(top), 0o755)?;
                host_dirs.push(host);
            }
            _ => {}
        }
    }
    for (host, inside) in extra {
        let at = dir.join(inside.trim_start_matches('/'));
        if at.starts_with(dir.join("usr")) || at.starts_with(dir.join("etc")) {
            continue;
        }
        if host.is_dir() {
            std::fs::create_dir_all(&at).with_context(|| format!("create {}", at.display()))?;
        } else {
            if let Some(p) = at.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&at, b"").with_context(|| format!("create {}", at.display()))?;
        }
    }
    Ok(host_dirs)
}

/// runsc state dirs of server processes of this host that are gone: their
/// sandboxes outlive them (runsc's sandbox is not our child), so delete
/// them before the dirs go.
fn sweep_stale_roots(runsc: &Path, state_dir: &Path) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let prefix = format!("runsc-{host}-");
    let Ok(entries) = std::fs::read_dir(state_dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let root = format!("--root={}", e.path().display());
        let Ok(out) = std::process::Command::new(runsc).args([root.as_str(), "list", "-quiet"]).output() else {
            continue;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = std::process::Command::new(runsc).args([root.as_str(), "delete", "--force", id]).output();
            info!(sandbox = id, "deleted a gVisor sandbox left by a previous server");
        }
    }
}

async fn delete_container(runsc: &Path, global: &[String], id: &str) {
    let mut c = tokio::process::Command::new(runsc);
    c.args(global)
        .args(["delete", "--force", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match tokio::time::timeout(Duration::from_secs(20), c.status()).await {
        Ok(Ok(st)) if st.success() => {}
        other => warn!(sandbox = id, result = ?other, "runsc delete did not succeed"),
    }
}

/// Reads the relay's stdout until it ends: the sandbox is gone (its memory
/// limit, or killed from outside). A [`crate::init::PROCESS_LIMIT_LINE`]
/// before that means its tasks stayed at the process limit: the sandbox is
/// ended for it, as the bubblewrap driver's pids cgroup ends its sandbox.
async fn watch_end(weak: Weak<GvisorSandbox>, pipe: tokio::net::unix::pipe::Receiver) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(pipe).lines();
    let mut process_limit = false;
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            crate::init::PROCESS_LIMIT_SEEN_LINE => {
                if let Some(sbx) = weak.upgrade() {
                    info!("gVisor sandbox's tasks are at its process limit");
                    sbx.processes_at_limit.store(true, Ordering::SeqCst);
                }
            }
            crate::init::PROCESS_LIMIT_LINE => {
                process_limit = true;
                break;
            }
            _ => {}
        }
    }
    let Some(sbx) = weak.upgrade() else { return };
    if sbx.running.load(Ordering::SeqCst) {
        if process_limit {
            sbx.set_end_reason(ExitStatus::LimitExceeded { limit: Limit::Processes, signal: Some(libc::SIGKILL) });
            warn!("gVisor sandbox reached its process limit: ending it");
            let _ = sbx.release_inner("process limit").await;
            return;
        }
        if sbx.memory_limit_hit() {
            sbx.set_end_reason(ExitStatus::LimitExceeded { limit: Limit::Memory, signal: Some(libc::SIGKILL) });
        }
        warn!("gVisor sandbox ended on its own");
        let _ = sbx.release_inner("sandbox ended").await;
    }
}

async fn monitor_idle(weak: Weak<GvisorSandbox>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(sbx) = weak.upgrade() else { return };
        if !sbx.running.load(Ordering::SeqCst) {
            return;
        }
        let timeout = sbx.shared.cfg.idle_timeout;
        if crate::idle::expired(timeout, sbx.session_id.get().is_some(), sbx.activity.idle_for()) {
            info!(idle_secs = timeout.unwrap_or_default().as_secs(), "releasing idle sandbox");
            let _ = sbx.release_inner("idle").await;
            return;
        }
    }
}

/// A sandbox of the gVisor driver.
pub struct GvisorSandbox {
    /// Execs' waiting tasks hold the sandbox weakly.
    me: Weak<GvisorSandbox>,
    id: String,
    /// Set when a session is bound: at once for a cold claim, at claim time
    /// for a pooled sandbox (never changed after).
    session_id: OnceLock<String>,
    relay_port: u16,
    uid: u32,
    /// Every exec's environment before its own (`runsc exec` starts from
    /// nothing); set with the session.
    env: OnceLock<Vec<(String, String)>>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    cgroup: String,
    /// The host directory bound at `/workspace`.
    workspace: PathBuf,
    sandbox_pid: Option<i32>,
    next_exec: AtomicU64,
    running: AtomicBool,
    released: AtomicBool,
    /// The relay saw the sandbox's tasks at the process limit.
    processes_at_limit: AtomicBool,
    end_reason: Mutex<Option<ExitStatus>>,
    /// The status channels of running execs, ended at release.
    execs: Mutex<Vec<watch::Sender<Option<ExitStatus>>>>,
    /// A pooled sandbox's slot (its `/workspace` on the host).
    slot: Option<Arc<Slot>>,
    /// Its run dir, uid lease, gateway and workspace volume; declared after
    /// the slot, whose binds hold the volume's mount busy.
    host: HostResources,
    span: tracing::Span,
}

impl std::fmt::Debug for GvisorSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GvisorSandbox")
            .field("id", &self.id)
            .field("session_id", &self.session_id.get())
            .finish_non_exhaustive()
    }
}

/// What an exec's `runsc exec` exit code means. runsc reports a signalled
/// process as `128 + signal`; a sandbox that ended under an exec ends it
/// with the sandbox's end reason.
pub(crate) fn classify(code: Option<i32>, sandbox_alive: bool, end: Option<ExitStatus>) -> ExitStatus {
    if !sandbox_alive {
        return end.unwrap_or(ExitStatus::SandboxGone);
    }
    match code {
        Some(c) if c > 128 && c < 128 + 32 => match c - 128 {
            libc::SIGXCPU => ExitStatus::LimitExceeded { limit: Limit::CpuTime, signal: Some(libc::SIGXCPU) },
            libc::SIGXFSZ => ExitStatus::LimitExceeded { limit: Limit::FileSize, signal: Some(libc::SIGXFSZ) },
            sig => ExitStatus::Signaled { signal: sig },
        },
        Some(c) => ExitStatus::Exited { code: c },
        None => ExitStatus::SandboxGone,
    }
}

impl GvisorSandbox {
    /// Host uid the sandbox's processes run as (also inside).
    pub fn host_uid(&self) -> u32 {
        self.uid
    }

    /// Host pid of the gVisor sandbox process.
    pub fn sandbox_pid(&self) -> Option<i32> {
        self.sandbox_pid
    }

    fn sandbox_alive(&self) -> bool {
        self.running.load(Ordering::SeqCst)
            && self.sandbox_pid.is_none_or(|p| Path::new(&format!("/proc/{p}")).exists())
    }

    fn set_end_reason(&self, st: ExitStatus) {
        if let Ok(mut r) = self.end_reason.lock() {
            r.get_or_insert(st);
        }
    }

    fn end_reason(&self) -> Option<ExitStatus> {
        self.end_reason.lock().ok().and_then(|r| *r)
    }

    /// Whether the container's memory cgroup killed something (v1
    /// `memory.oom_control`, v2 `memory.events`).
    fn memory_limit_hit(&self) -> bool {
        let rel = self.cgroup.trim_start_matches('/');
        let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
        let v1 = read(format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"));
        let v2 = read(format!("/sys/fs/cgroup/{rel}/memory.events"));
        let failcnt = read(format!("/sys/fs/cgroup/memory/{rel}/memory.failcnt"));
        let count = |text: &str, key: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(key))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .next()
                .unwrap_or(0)
        };
        count(&v1, "oom_kill ") > 0 || count(&v2, "oom_kill ") > 0 || failcnt.trim().parse::<u64>().unwrap_or(0) > 0
    }

    async fn exec_inner(self: &Arc<Self>, request: ExecRequest) -> Result<ExecChild> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        if request.argv.is_empty() {
            return Err(SandboxError::Invalid("exec needs a program".into()));
        }
        // A pooled sandbox runs nothing before a session is bound.
        let Some(base) = self.env.get() else {
            return Err(SandboxError::Invalid(format!("sandbox {} has no session yet", self.id)));
        };
        let mut env = merge_env(base.iter().cloned().chain(request.env.iter().cloned()));
        if !self.shared.cfg.seccomp {
            env.push((crate::init::NO_SECCOMP_ENV.into(), "1".into()));
        }
        local::check_env(&env)?;
        let cwd = request.cwd.clone().unwrap_or_else(|| "/workspace".into());
        let n = self.next_exec.fetch_add(1, Ordering::Relaxed);
        let process = oci::exec_process(self.uid, &request.argv, &env, &cwd);
        let process_file = self.host.run_dir().join(format!("exec-{n}.json"));
        let pid_file = self.host.run_dir().join(format!("exec-{n}.pid"));
        std::fs::write(&process_file, serde_json::to_vec(&process).context("encode exec process")?)
            .context("write exec process")?;
        let mut cmd = self.shared.runsc();
        cmd.arg("exec")
            .arg(format!("--process={}", process_file.display()))
            .arg(format!("--internal-pid-file={}", pid_file.display()))
            .arg(&self.id)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawn {}", self.shared.runsc.display()))?;
        let keeps_busy = !request.resident;
        if keeps_busy {
            self.activity.open_raw();
        } else {
            self.activity.touch();
        }
        let (stx, srx) = watch::channel(None);
        if let Ok(mut e) = self.execs.lock() {
            e.retain(|s| s.borrow().is_none() && !s.is_closed());
            e.push(stx.clone());
        }
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let weak = Arc::downgrade(self);
        let act = self.activity.clone();
        let pf = process_file.clone();
        tokio::spawn(
            async move {
                let st = child.wait().await;
                let _ = std::fs::remove_file(&pf);
                let code = st.ok().and_then(|s| s.code());
                let status = match weak.upgrade() {
                    Some(sbx) => {
                        let mut alive = sbx.sandbox_alive();
                        if alive && code.is_some_and(|c| c >= 128) {
                            // The sandbox may be ending under us (memory
                            // limit): give its end a moment to show.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            alive = sbx.sandbox_alive();
                        }
                        if alive && code == Some(128 + libc::SIGABRT) {
                            // A runtime aborts when it cannot start a thread:
                            // give the relay time to report the process limit,
                            // if that was it (a sample under a fork bomb takes
                            // up to a second; a sandbox held at the limit is
                            // ended half a second later).
                            for _ in 0..30 {
                                if sbx.processes_at_limit.load(Ordering::SeqCst) || !alive {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                alive = sbx.sandbox_alive();
                            }
                        }
                        if !alive && sbx.end_reason().is_none() && sbx.memory_limit_hit() {
                            sbx.set_end_reason(ExitStatus::LimitExceeded {
                                limit: Limit::Memory,
                                signal: Some(libc::SIGKILL),
                            });
                        }
                        classify(code, alive, sbx.end_reason())
                    }
                    None => ExitStatus::SandboxGone,
                };
                if keeps_busy {
                    act.close();
                }
                let _ = stx.send(Some(status));
            }
            .instrument(self.span.clone()),
        );
        let act = self.activity.clone();
        Ok(ExecChild {
            stdin: stdin.map(|s| Box::pin(Touching::new(s, act.clone())) as crate::driver::BoxedWrite),
            stdout: stdout.map(|s| Box::pin(Touching::new(s, act.clone())) as crate::driver::BoxedRead),
            stderr: stderr.map(|s| Box::pin(Touching::new(s, act.clone())) as crate::driver::BoxedRead),
            control: Arc::new(GvisorExec { sandbox: Arc::downgrade(self), pid_file, status: srx }),
        })
    }

    async fn release_inner(&self, why: &str) -> Result<()> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.running.store(false, Ordering::SeqCst);
        delete_container(&self.shared.runsc, &self.shared.global_args(), &self.id).await;
        self.shared.lifeline.released(&self.id);
        let end = self.end_reason().unwrap_or(ExitStatus::SandboxGone);
        if let Ok(mut e) = self.execs.lock() {
            for s in e.drain(..) {
                s.send_if_modified(|v| {
                    if v.is_none() {
                        *v = Some(end);
                        true
                    } else {
                        false
                    }
                });
            }
        }
        self.host.release(self.slot.clone()).await;
        if let Some(session_id) = self.session_id.get() {
            self.shared.live.remove(session_id, &self.id);
        }
        info!(parent: &self.span, reason = why, "sandbox released");
        Ok(())
    }
}

impl Drop for GvisorSandbox {
    fn drop(&mut self) {
        if !self.released.load(Ordering::SeqCst) {
            // runsc's sandbox is not our child: delete it explicitly.
            let _ = std::process::Command::new(&self.shared.runsc)
                .args(self.shared.global_args())
                .args(["delete", "--force", &self.id])
                .output();
            self.shared.lifeline.released(&self.id);
            self.host.abandon(self.slot.as_deref());
        }
    }
}

#[async_trait]
impl Sandbox for GvisorSandbox {
    fn id(&self) -> &str {
        &self.id
    }
    fn session_id(&self) -> &str {
        self.session_id.get().map_or("", String::as_str)
    }
    fn llm_base_url_inside(&self) -> String {
        format!("http://127.0.0.1:{}/llm", self.relay_port)
    }
    fn proxy_url_inside(&self) -> String {
        format!("http://127.0.0.1:{}", self.relay_port)
    }
    fn egress_stats(&self) -> EgressStats {
        self.host.egress_stats()
    }
    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
    fn limit_hit(&self) -> Option<Limit> {
        match self.end_reason() {
            Some(ExitStatus::LimitExceeded { limit, .. }) => Some(limit),
            _ if self.processes_at_limit.load(Ordering::SeqCst) => Some(Limit::Processes),
            _ => None,
        }
    }
    async fn limit_hit_settled(&self) -> Option<Limit> {
        // The relay counts the sandbox's tasks every 250 ms, slowly under a
        // fork bomb: a runtime that aborts the moment it cannot get a thread
        // exits before the count that reports the limit.
        let deadline = tokio::time::Instant::now() + LIMIT_SETTLE;
        loop {
            let limit = self.limit_hit();
            if limit.is_some() || !self.is_running() || tokio::time::Instant::now() >= deadline {
                return limit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    async fn exec(&self, request: ExecRequest) -> Result<ExecChild> {
        let me = self.me.upgrade().ok_or_else(|| SandboxError::Gone(self.id.clone()))?;
        me.exec_inner(request).await
    }
    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        if !path.starts_with('/') {
            return Err(SandboxError::Invalid(format!("write_file needs an absolute path, not {path:?}")));
        }
        let argv = vec![
            oci::INIT_INSIDE.to_string(),
            crate::init::INIT_ARG.into(),
            crate::init::WRITE_ARG.into(),
            path.into(),
            format!("{mode:o}"),
        ];
        let mut child = self.exec(ExecRequest { argv, ..Default::default() }).await?;
        if let Some(mut stdin) = child.stdin.take() {
            let written = async {
                stdin.write_all(contents).await?;
                stdin.shutdown().await
            }
            .await;
            drop(stdin);
            if let Err(e) = written {
                let out = child.output(4096).await;
                return Err(SandboxError::Invalid(format!("cannot write {path}: {e} {}", out.stderr_str().trim())));
            }
        }
        let out = child.output(4096).await;
        match out.status {
            ExitStatus::Exited { code: 0 } => Ok(()),
            ExitStatus::SandboxGone => Err(SandboxError::Gone(self.id.clone())),
            st => Err(SandboxError::Invalid(format!("cannot write {path}: {} ({st})", out.stderr_str().trim()))),
        }
    }
    /// The host writes the file, root-owned and mode 0444 (a uid the
    /// sandbox's user is not and has no capability to act as), into the
    /// host directory behind the sandbox path: the read-only uploads bind,
    /// or the workspace (every path component opened `RESOLVE_IN_ROOT`
    /// without symlinks, so nothing the agent planted leads it out).
    async fn place_read_only(&self, path: &str, content: crate::driver::BoxedRead) -> Result<()> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        let under = |dir: &str| path.strip_prefix(dir).filter(|r| r.starts_with('/'));
        let placed = if let Some(rest) = under(local::UPLOADS_DIR) {
            local::place::place(self.host.run_dir().join(UPLOADS_HOST_DIR), rest, content).await
        } else if let Some(rest) = under("/workspace") {
            local::place::place(self.workspace.clone(), rest, content).await
        } else {
            return crate::driver::place_by_exec(self, path, content).await;
        };
        placed.map_err(|e| SandboxError::Invalid(format!("{e:#}")))
    }
    fn busy(&self) -> BusyGuard {
        if !self.is_running() {
            return BusyGuard::noop();
        }
        self.activity.open_raw();
        let act = self.activity.clone();
        BusyGuard::new(move || act.close())
    }
    async fn stop(&self) -> Result<()> {
        self.release_inner("stopped").await
    }
    async fn release(&self) -> Result<()> {
        self.release_inner("released").await
    }
}

struct GvisorExec {
    sandbox: Weak<GvisorSandbox>,
    pid_file: PathBuf,
    status: watch::Receiver<Option<ExitStatus>>,
}

impl GvisorExec {
    /// The exec's pid inside the sandbox (its process group's id), once
    /// runsc has written it.
    fn read_pid(&self) -> Option<i32> {
        let mut s = String::new();
        std::fs::File::open(&self.pid_file).ok()?.read_to_string(&mut s).ok()?;
        s.trim().parse().ok()
    }
}

#[async_trait]
impl ExecControl for GvisorExec {
    fn pid(&self) -> Option<i32> {
        self.read_pid()
    }
    async fn wait(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        loop {
            if let Some(st) = *rx.borrow() {
                return st;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().unwrap_or(ExitStatus::SandboxGone);
            }
        }
    }
    async fn kill(&self) -> Result<()> {
        let Some(sbx) = self.sandbox.upgrade() else { return Ok(()) };
        if self.status.borrow().is_some() || !sbx.is_running() {
            return Ok(());
        }
        let mut pid = self.read_pid();
        for _ in 0..50 {
            if pid.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            pid = self.read_pid();
        }
        let Some(pid) = pid.filter(|p| *p > 1) else {
            return Err(SandboxError::Other(anyhow!("the exec's pid in the sandbox is not known yet")));
        };
        // Its process group, from inside (runsc kill signals one process).
        let argv = vec!["/bin/kill".to_string(), "-KILL".into(), "--".into(), format!("-{pid}")];
        let killer = sbx.exec_inner(ExecRequest { argv, resident: true, ..Default::default() }).await?;
        let _ = killer.output(4096).await;
        Ok(())
    }
}

#[async_trait]
impl SandboxDriver for GvisorDriver {
    fn name(&self) -> &'static str {
        "gvisor"
    }
    async fn claim(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        Ok(self.claim_gvisor(spec).await?)
    }
    async fn resume(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        self.shared.workspaces.check_resumable(&spec.session_id)?;
        self.claim(spec).await
    }
    async fn workspace_exists(&self, session_id: &str) -> Result<bool> {
        self.shared.workspaces.exists(session_id)
    }
    async fn delete_workspace(&self, session_id: &str) -> Result<()> {
        if let Some(s) = self.live(session_id) {
            s.release_inner("workspace deleted").await?;
        }
        self.shared.workspaces.delete(session_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_runsc_exec() {
        let mem = ExitStatus::LimitExceeded { limit: Limit::Memory, signal: Some(9) };
        let cases: &[(Option<i32>, bool, Option<ExitStatus>, ExitStatus)] = &[
            (Some(0), true, None, ExitStatus::Exited { code: 0 }),
            (Some(7), true, None, ExitStatus::Exited { code: 7 }),
            (Some(128), true, None, ExitStatus::Exited { code: 128 }),
            (Some(137), true, None, ExitStatus::Signaled { signal: 9 }),
            (Some(143), true, None, ExitStatus::Signaled { signal: 15 }),
            (Some(153), true, None, ExitStatus::LimitExceeded { limit: Limit::FileSize, signal: Some(25) }),
            (Some(152), true, None, ExitStatus::LimitExceeded { limit: Limit::CpuTime, signal: Some(24) }),
            (Some(255), true, None, ExitStatus::Exited { code: 255 }),
            (Some(137), false, Some(mem), mem),
            (Some(128), false, None, ExitStatus::SandboxGone),
            (None, true, None, ExitStatus::SandboxGone),
        ];
        for (code, alive, end, want) in cases {
            assert_eq!(classify(*code, *alive, *end), *want, "{code:?} alive={alive}");
        }
    }

    #[test]
    fn later_environment_entries_win() {
        let env = merge_env([("A".into(), "1".into()), ("B".into(), "2".into()), ("A".into(), "3".into())]);
        assert_eq!(env, [("A".to_string(), "3".to_string()), ("B".to_string(), "2".to_string())]);
    }
}
