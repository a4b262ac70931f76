//! The local driver: one machine, bubblewrap.
//!
//! Each sandbox is one `bwrap` process started **as its own unprivileged host
//! uid** (`uid_base + slot`, dropped in the pre-exec hook after the process
//! joined its cgroups and took its rlimits), with its own user (no nested ones:
//! `--disable-userns`), mount, pid, ipc, uts, network and cgroup namespaces, no
//! capabilities, a seccomp deny list, the host `/usr` (and a curated `/etc`)
//! read-only, a private `/tmp`, the session workspace read-write at
//! `/workspace`, and a private `/mnt/session` (`uploads/`, `outputs/`). Host paths are handed over as open descriptors (`--bind-fd`);
//! bwrap still resolves them as the sandbox uid, so the state dir's ancestors
//! must be traversable (checked at start-up). bwrap runs our init
//! ([`crate::init`]), which relays `127.0.0.1:PORT` to the egress gateway and
//! starts processes on request.

mod cgroup;
pub(crate) mod chown;
pub(crate) mod place;
pub(crate) mod pool;
pub(crate) mod slot;
pub(crate) mod volume;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use nix::fcntl::{OFlag, open};
use nix::sys::resource::Resource;
use nix::sys::stat::Mode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::driver::{BusyGuard, ExecChild, ExecControl, Sandbox, SandboxDriver};
use crate::egress::Activity;
use crate::error::{Result, SandboxError};
use crate::live::Live;
use crate::proto::{Channel, FromInit, ToInit, seqpacket_pair};
use crate::resources::{GatewayFor, HostResources, RunDirGuard};
use crate::spec::{EgressStats, ExecRequest, ExitStatus, Limit, Limits, SandboxSpec};
use crate::uids::{UidLease, UidPool};
use crate::workspace::{Workspace, Workspaces};
use cgroup::{Cgroups, SandboxCgroup};
pub use pool::PoolConfig;
use pool::{Pool, Pooled};
use slot::Slot;
use volume::{FromPool, PooledVolume, VolumeGuard, Volumes};

/// The smallest workspace quota the driver makes: ext4 with a journal needs
/// a few MiB of its own.
pub use volume::MIN_BYTES as MIN_WORKSPACE_BYTES;

/// The uid/gid processes have inside the sandbox (mapped to the host uid of
/// the sandbox's slot).
pub const INSIDE_UID: u32 = 1000;

const INSTALL_HINT: &str = "install it with `apt-get install -y bubblewrap` (Debian/Ubuntu; \
     `dnf install -y bubblewrap` on Fedora)";

/// Settings of the local driver.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Holds `workspaces/<session>` (0700, owned by the sandbox uid),
    /// `run/<sandbox>` (the gateway socket) and `etc/`. Its ancestors must be
    /// traversable by others (`o+x`): keep it outside a 0700 data dir, e.g.
    /// `/var/lib/bridle-sandboxes`.
    pub state_dir: PathBuf,
    /// The `bwrap` executable; default: found on `PATH`.
    pub bwrap: Option<PathBuf>,
    /// The init executable; default: `$BRIDLE_SANDBOX_INIT`, then
    /// `bridle-sandbox-init` beside the current executable (or one directory
    /// up), then the current executable if it called
    /// [`crate::init::run_if_init`].
    pub init_binary: Option<PathBuf>,
    /// First host uid (and gid) of the sandbox range.
    pub uid_base: u32,
    /// How many sandboxes may run at once (size of the uid range).
    pub uid_count: u32,
    /// Host-wide directory of uid lock files ([`crate::uids`]): shared by
    /// every server on the host so their sandboxes never share a uid.
    pub uid_lock_dir: PathBuf,
    /// Port of the egress relay on the sandbox's loopback.
    pub relay_port: u16,
    /// Release sandboxes idle this long (no exec running, no stdio, no egress).
    pub idle_timeout: Option<Duration>,
    /// Extra read-only binds `(host path, path inside)`, e.g. `/opt/node`.
    pub extra_ro_binds: Vec<(PathBuf, String)>,
    /// Apply the seccomp deny list.
    pub seccomp: bool,
    /// Use cgroups for memory, pids and CPU when the host allows it.
    pub cgroups: bool,
    /// Bytes each session's workspace and `/tmp` may hold together: an ext4
    /// image per workspace, loop-mounted (see `volume`). Needs root and loop
    /// devices; when they are missing the driver does not start, and the
    /// operator chooses `None` to run without a quota. Applies to workspaces
    /// created from then on (an image keeps the size it was made with).
    pub workspace_quota: Option<u64>,
    /// CPU cores each sandbox may use (cgroup CPU bandwidth; fractions
    /// allowed). Needs the cgroup `cpu` controller; without it (not root, no
    /// controller) the driver logs a warning and `bridle doctor` says so.
    pub cpus: Option<f64>,
    /// How long a claim may take before it fails.
    pub ready_timeout: Duration,
    /// The egress gateways' limits and the operator's internal destinations.
    pub egress: crate::egress::EgressSettings,
    /// Sandboxes booted ahead of demand (off by default). Needs root: a
    /// claim mounts the session's workspace into a pooled sandbox. Pooled
    /// sandboxes count against `uid_count`.
    pub pool: PoolConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/bridle-sandboxes"),
            bwrap: None,
            init_binary: None,
            uid_base: 600_000,
            uid_count: 1000,
            uid_lock_dir: PathBuf::from(crate::uids::DEFAULT_LOCK_DIR),
            relay_port: 41_080,
            idle_timeout: Some(Duration::from_secs(15 * 60)),
            extra_ro_binds: Vec::new(),
            seccomp: true,
            cgroups: true,
            workspace_quota: Some(4 << 30),
            cpus: Some(1.0),
            ready_timeout: Duration::from_secs(10),
            egress: crate::egress::EgressSettings::default(),
            pool: PoolConfig::default(),
        }
    }
}

/// Entries of the host `/etc` copied into the sandbox's `/etc` (one read-only
/// bind, built when the driver starts: one mount instead of thirty);
/// `passwd`, `group` and `hosts` are generated. Files not readable by others
/// on the host are never copied.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "environment",
    "gai.conf",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "python3.11",
    "perl",
    "services",
    "ssl",
    "terminfo",
    "timezone",
    "vim",
    "wgetrc",
    "gitconfig",
];

/// `<state_dir>/etc-<host>-<pid>`: this process's sandbox `/etc`. Copies
/// left by processes of this host that are gone are removed on the way.
pub(crate) fn own_etc_dir(state_dir: &Path, kind: &str) -> PathBuf {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let prefix = format!("{kind}-{host}-");
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    state_dir.join(format!("{prefix}{}", std::process::id()))
}

/// The gateway's CA certificate inside the sandbox.
pub const CA_CERT_INSIDE: &str = "/etc/bridle/egress-ca.pem";
/// The system roots plus the gateway's CA, inside the sandbox.
pub const CA_BUNDLE_INSIDE: &str = "/etc/bridle/ca-bundle.pem";
/// Debian's system bundle, which most TLS clients read by default.
const SYSTEM_BUNDLE: &str = "ssl/certs/ca-certificates.crt";

/// Build the sandbox `/etc` under `dir` (replaced if present); with `ca`
/// (PEM), the sandbox trusts it: in `/etc/bridle` and in the system bundle.
pub(crate) fn build_etc(dir: &Path, ca: Option<&str>) -> anyhow::Result<()> {
    fn copy(src: &Path, dst: &Path) -> anyhow::Result<()> {
        let md = std::fs::symlink_metadata(src)?;
        if md.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
        } else if md.is_dir() {
            if md.permissions().mode() & 0o005 != 0o005 {
                return Ok(());
            }
            std::fs::create_dir(dst)?;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
            for e in std::fs::read_dir(src)? {
                let e = e?;
                copy(&e.path(), &dst.join(e.file_name()))?;
            }
        } else if md.is_file() && md.permissions().mode() & 0o004 != 0 {
            std::fs::copy(src, dst)?;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for e in ETC_ENTRIES {
        let src = Path::new("/etc").join(e);
        if std::fs::symlink_metadata(&src).is_ok() {
            copy(&src, &dir.join(e)).with_context(|| format!("copy {}", src.display()))?;
        }
    }
    let write = |name: &str, body: String| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, body).with_context(|| format!("write {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    };
    write(
        "passwd",
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{INSIDE_UID}:{INSIDE_UID}:agent:/workspace:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )?;
    write("group", format!("root:x:0:\nagent:x:{INSIDE_UID}:\nnogroup:x:65534:\n"))?;
    write("hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".into())?;
    if let Some(ca) = ca {
        let system = std::fs::read_to_string(Path::new("/etc").join(SYSTEM_BUNDLE)).unwrap_or_default();
        let bundle = format!("{}\n# Bridle egress gateway CA\n{}\n", system.trim_end(), ca.trim());
        std::fs::create_dir_all(dir.join("bridle"))?;
        std::fs::set_permissions(dir.join("bridle"), std::fs::Permissions::from_mode(0o755))?;
        write(CA_CERT_INSIDE.trim_start_matches("/etc/"), format!("{}\n", ca.trim()))?;
        write(CA_BUNDLE_INSIDE.trim_start_matches("/etc/"), bundle.clone())?;
        // The copied system bundle may be a link to the host's: replace it.
        let sys = dir.join(SYSTEM_BUNDLE);
        if sys.parent().is_some_and(Path::exists) {
            let _ = std::fs::remove_file(&sys);
            write(SYSTEM_BUNDLE, bundle)?;
        }
    }
    // A login shell (codex runs `bash -lc`) resets PATH in /etc/profile: put back the
    // directories the sandbox's spec adds (`BRIDLE_PATH_PREFIX`, e.g. a package layer's bins).
    std::fs::create_dir_all(dir.join("profile.d"))?;
    write(
        "profile.d/zz-bridle-path.sh",
        "if [ -n \"${BRIDLE_PATH_PREFIX:-}\" ]; then PATH=\"$BRIDLE_PATH_PREFIX:$PATH\"; export PATH; fi\n".into(),
    )?;
    Ok(())
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct Doctor {
    pub bwrap: std::result::Result<PathBuf, String>,
    pub bwrap_version: Option<String>,
    pub init: std::result::Result<PathBuf, String>,
    pub root: bool,
    pub cgroups: Option<String>,
    /// The CPU controller sandboxes are limited with (`None`: no CPU limit).
    pub cpu: Option<String>,
    /// The workspace quota mechanism after a trial mount; `None` when the
    /// quota is configured off.
    pub quota: Option<std::result::Result<String, String>>,
    pub seccomp: std::result::Result<(), String>,
    /// A trial `bwrap` run as the first sandbox uid.
    pub probe: std::result::Result<(), String>,
}

impl Doctor {
    /// Whether the local driver can run.
    pub fn ok(&self) -> bool {
        self.bwrap.is_ok() && self.init.is_ok() && self.probe.is_ok() && !matches!(self.quota, Some(Err(_)))
    }

    /// Human-readable report, one line per item.
    pub fn report(&self) -> String {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let mut s = String::new();
        match &self.bwrap {
            Ok(p) => s.push_str(&format!(
                "{} bubblewrap: {} ({})\n",
                mark(true),
                p.display(),
                self.bwrap_version.as_deref().unwrap_or("?")
            )),
            Err(e) => s.push_str(&format!("{} bubblewrap: {e}\n", mark(false))),
        }
        match &self.init {
            Ok(p) => s.push_str(&format!("{} sandbox init: {}\n", mark(true), p.display())),
            Err(e) => s.push_str(&format!("{} sandbox init: {e}\n", mark(false))),
        }
        s.push_str(&format!(
            "{} privileges: {}\n",
            mark(true),
            if self.root {
                "root: one unprivileged host uid per sandbox"
            } else {
                "not root: every sandbox runs as the server's own uid, no cgroups"
            }
        ));
        match &self.cgroups {
            Some(c) => s.push_str(&format!("{} limits: {c} + rlimits\n", mark(true))),
            None => s.push_str(&format!(
                "{} limits: rlimits only (no writable cgroup hierarchy; memory via RLIMIT_AS)\n",
                mark(true)
            )),
        }
        match &self.cpu {
            Some(c) => s.push_str(&format!("{} CPU limit: {c}\n", mark(true))),
            None => s.push_str(&format!("{} CPU limit: none (no cgroup cpu controller)\n", mark(true))),
        }
        match &self.quota {
            Some(Ok(q)) => s.push_str(&format!("{} disk quota: {q}\n", mark(true))),
            Some(Err(e)) => s.push_str(&format!("{} disk quota: {e}\n", mark(false))),
            None => s.push_str(&format!("{} disk quota: off (configured)\n", mark(true))),
        }
        match &self.seccomp {
            Ok(()) => s.push_str(&format!("{} seccomp: deny list compiled\n", mark(true))),
            Err(e) => s.push_str(&format!("{} seccomp: {e}\n", mark(false))),
        }
        match &self.probe {
            Ok(()) => s.push_str(&format!("{} trial sandbox: started\n", mark(true))),
            Err(e) => s.push_str(&format!("{} trial sandbox: {e}\n", mark(false))),
        }
        s
    }
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn find_bwrap(cfg: &LocalConfig) -> std::result::Result<PathBuf, String> {
    if let Some(p) = &cfg.bwrap {
        return if p.is_file() {
            Ok(p.clone())
        } else {
            Err(format!("bubblewrap not found at {}; {INSTALL_HINT}", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let c = dir.join("bwrap");
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(format!("bubblewrap (`bwrap`) is not installed (not on PATH); {INSTALL_HINT}"))
}

pub(crate) fn find_init(cfg: &LocalConfig) -> std::result::Result<PathBuf, String> {
    if let Some(p) = &cfg.init_binary {
        return if p.is_file() {
            Ok(p.clone())
        } else {
            Err(format!("sandbox init binary not found at {}", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("BRIDLE_SANDBOX_INIT") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    let exe = std::env::current_exe().ok();
    let mut looked = Vec::new();
    if let Some(dir) = exe.as_ref().and_then(|e| e.parent()) {
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            let c = d.join("bridle-sandbox-init");
            if c.is_file() {
                return Ok(c);
            }
            looked.push(c.display().to_string());
        }
    }
    if crate::init::multicall_registered()
        && let Some(e) = exe
    {
        return Ok(e);
    }
    Err(format!(
        "the sandbox init binary `bridle-sandbox-init` was not found (looked at {}); build it with \
         `cargo build --release -p bridle-sandbox --bin bridle-sandbox-init` and place it beside the \
         server binary, or set BRIDLE_SANDBOX_INIT",
        if looked.is_empty() { "nothing".into() } else { looked.join(", ") }
    ))
}

/// Report what the local driver needs and whether it is there. Starts one
/// trial sandbox (a few milliseconds).
pub fn check(cfg: &LocalConfig) -> Doctor {
    let bwrap = find_bwrap(cfg);
    let bwrap_version = bwrap.as_ref().ok().and_then(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    let root = is_root();
    let detected = if cfg.cgroups && root { Cgroups::detect() } else { None };
    let cgroups = detected.as_ref().map(Cgroups::describe);
    let cpu = if cfg.cpus.is_some() { detected.as_ref().and_then(Cgroups::cpu_controller) } else { None };
    let quota = cfg.workspace_quota.map(|bytes| {
        let v = Volumes::probe(&cfg.state_dir, Some(bytes))?;
        v.trial().map_err(|e| format!("trial mount failed: {e:#}"))?;
        Ok(v.describe())
    });
    let seccomp = crate::seccomp::compile().map(|_| ()).map_err(|e| format!("{e:#}"));
    let probe = match &bwrap {
        Ok(b) => probe(b, cfg, root),
        Err(_) => Err("skipped: bubblewrap missing".into()),
    };
    Doctor { bwrap, bwrap_version, init: find_init(cfg), root, cgroups, cpu, quota, seccomp, probe }
}

fn probe(bwrap: &Path, cfg: &LocalConfig, root: bool) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args([
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "/usr/bin/true",
    ]);
    if root {
        cmd.uid(cfg.uid_base).gid(cfg.uid_base);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "bwrap failed ({}): {}; unprivileged user namespaces must be enabled \
             (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, \
             kernel.apparmor_restrict_unprivileged_userns=0)",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run bwrap: {e}")),
    }
}

struct Shared {
    cfg: LocalConfig,
    bwrap: PathBuf,
    init_fd: OwnedFd,
    etc_fd: OwnedFd,
    seccomp: Option<Vec<u8>>,
    cgroups: Option<Cgroups>,
    /// The sessions' workspaces.
    workspaces: Workspaces,
    /// The workspace quota, when on (the same as `workspaces.volumes()`).
    volumes: Option<Arc<Volumes>>,
    root: bool,
    base_args: Vec<OsString>,
    /// Sandbox uids (leased host-wide); `None` when not root (every sandbox
    /// runs as the server's own uid).
    uids: Option<UidPool>,
    live: Live<LocalSandbox>,
    egress: crate::egress::Hub,
}

/// The local bubblewrap driver. Cheap to clone.
#[derive(Clone)]
pub struct LocalDriver {
    shared: Arc<Shared>,
    /// The warm pool, when on. Not in [`Shared`]: pooled sandboxes hold
    /// `Shared`, and the pool must end with the last driver handle.
    pool: Option<Arc<Pool<LocalSandbox>>>,
}

pub(crate) fn mkdir_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    match std::fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", p.display()))
}

fn open_path(p: &Path, dir: bool) -> anyhow::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    open(p, flags, Mode::empty()).with_context(|| format!("open {}", p.display()))
}

/// bwrap resolves bind sources by path as the sandbox uid, so every ancestor
/// of the state dir must be searchable by others (`o+x`; listing can stay off).
pub(crate) fn check_traversable(dir: &Path) -> Result<()> {
    let full = dir.canonicalize().with_context(|| format!("resolve {}", dir.display()))?;
    for anc in full.ancestors().skip(1) {
        let mode = std::fs::metadata(anc).with_context(|| format!("stat {}", anc.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(SandboxError::Unavailable(format!(
                "the sandbox state dir {} is below {} (mode {:o}), which the unprivileged sandbox \
                 uids cannot traverse; put the state dir outside the server's private data dir \
                 (e.g. /var/lib/bridle-sandboxes) or allow traversal only with `chmod o+x {}`",
                full.display(),
                anc.display(),
                mode & 0o7777,
                anc.display()
            )));
        }
    }
    Ok(())
}

impl LocalDriver {
    /// Check prerequisites and prepare the state dir. Fails with
    /// [`SandboxError::Unavailable`] naming what is missing and how to install it.
    pub fn new(cfg: LocalConfig) -> Result<Self> {
        let bwrap = find_bwrap(&cfg).map_err(SandboxError::Unavailable)?;
        let init = find_init(&cfg).map_err(SandboxError::Unavailable)?;
        let root = is_root();
        crate::settings::check(&cfg, root)?;
        let seccomp = if cfg.seccomp { Some(crate::seccomp::compile().map_err(SandboxError::Other)?) } else { None };
        let cgroups = if cfg.cgroups && root { Cgroups::detect() } else { None };
        let runtime = crate::settings::pool_runtime(&cfg)?;
        if cfg.cpus.is_some() && cgroups.as_ref().and_then(Cgroups::cpu_controller).is_none() {
            warn!(
                "no cgroup CPU controller available (not root, cgroups off, or no cpu controller): sandboxes run without a CPU limit"
            );
        }
        let workspaces = Workspaces::new(&cfg, root)?;
        workspaces.prepare_state_dir(root)?;
        let volumes = workspaces.volumes().cloned();
        // Each server process builds its own copy: several nodes may share
        // one state dir, and rebuilding a directory another node's
        // sandboxes bind (by fd) would empty theirs.
        let etc = own_etc_dir(&cfg.state_dir, "etc");
        build_etc(&etc, cfg.egress.ca.as_ref().map(|c| c.cert_pem.as_str())).map_err(SandboxError::Other)?;
        let etc_fd = open_path(&etc, true)?;
        let init_fd = open_path(&init, false)?;

        let uids = if root { Some(UidPool::new(&cfg.uid_lock_dir, crate::settings::uid_range(&cfg)?)?) } else { None };
        let base_args = base_args(&cfg);
        let shared = Arc::new(Shared {
            egress: crate::egress::Hub::new(&cfg.egress)?,
            cfg,
            bwrap,
            init_fd,
            etc_fd,
            seccomp,
            cgroups,
            workspaces,
            volumes,
            root,
            base_args,
            uids,
            live: Live::new(),
        });
        info!(
            bwrap = %shared.bwrap.display(),
            init = %init.display(),
            cgroups = shared.cgroups.as_ref().map(|c| c.describe()).unwrap_or_else(|| "none".into()),
            cpu = shared.cgroups.as_ref().and_then(Cgroups::cpu_controller).unwrap_or_else(|| "none".into()),
            quota = shared.volumes.as_ref().map(|v| v.describe()).unwrap_or_else(|| "off".into()),
            root,
            pool = shared.cfg.pool.size,
            "local sandbox driver ready"
        );
        let pool = runtime.map(|rt| {
            let pool = Pool::new(shared.cfg.pool.clone());
            let boot_shared = shared.clone();
            rt.spawn(pool::run(Arc::downgrade(&pool), move || boot_pooled(boot_shared.clone())));
            pool
        });
        Ok(Self { shared, pool })
    }

    /// How many pooled sandboxes are booted and waiting for a claim.
    pub fn pool_ready(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.ready())
    }

    /// The config in force.
    pub fn config(&self) -> &LocalConfig {
        &self.shared.cfg
    }

    /// Host path of a session's workspace (inside its mounted volume when the
    /// quota is on: present only while a sandbox of the session runs).
    pub fn workspace_path(&self, session_id: &str) -> PathBuf {
        self.shared.workspaces.path(session_id)
    }

    /// The running sandbox of a session, if any.
    pub fn live(&self, session_id: &str) -> Option<Arc<LocalSandbox>> {
        self.shared.live.get(session_id)
    }

    /// Claim, returning the concrete type.
    pub async fn claim_local(&self, spec: SandboxSpec) -> Result<Arc<LocalSandbox>> {
        let from_pool = |sbx, spec| self.claim_pooled(sbx, spec);
        let cold = |spec| self.start_claim(spec);
        crate::claim::claim("local", &self.shared.live, self.pool.as_ref(), spec, from_pool, cold).await
    }

    /// Check a claim's workspace size against the driver's quota.
    fn check_workspace_bytes(&self, spec: &SandboxSpec) -> Result<()> {
        self.shared.workspaces.check_bytes(spec)
    }

    /// Make (or mount) the session's workspace.
    async fn open_workspace(&self, spec: &SandboxSpec) -> Result<Workspace> {
        self.shared.workspaces.open(spec).await
    }

    /// Give the workspace (and its `tmp`) to the sandbox's host uid.
    async fn own_workspace(&self, ws: &Workspace, owner: u32, uid: u32) -> Result<()> {
        self.shared.workspaces.give(ws, owner, uid).await
    }

    fn register(&self, sbx: &Arc<LocalSandbox>, session_id: &str) {
        self.shared.live.insert(session_id, sbx);
    }

    /// The part of a claim that starts a new sandbox.
    async fn start_claim(&self, spec: SandboxSpec) -> Result<Arc<LocalSandbox>> {
        self.check_workspace_bytes(&spec)?;
        let env = session_env(&spec, self.shared.cfg.relay_port)?;
        let mut ws = self.open_workspace(&spec).await?;
        let owner = self.shared.workspaces.owner(&ws)?;
        let lease = match &self.shared.uids {
            Some(pool) => Some(pool.lease(Some(owner))?),
            None => None,
        };
        let uid = lease.as_ref().map_or_else(|| nix::unistd::geteuid().as_raw(), UidLease::uid);
        self.own_workspace(&ws, owner, uid).await?;
        let dirs = BootDirs { workspace: ws.dir.clone(), tmp: ws.tmp.clone(), slot: None };
        let sbx = boot(self.shared.clone(), &spec.limits, dirs, uid, lease).await?;
        if let Err(e) = sbx.bind_session(&spec, env, ws.volume.take()) {
            let _ = sbx.release_inner("binding failed").await;
            return Err(e);
        }
        self.register(&sbx, &spec.session_id);
        Ok(sbx)
    }

    /// A claim served from the pool: a new session adopts the pooled
    /// sandbox's volume (with the disk quota; nothing is made or mounted),
    /// any other claim mounts the session's workspace into the booted
    /// sandbox; then bind its gateway. On failure the pooled sandbox is
    /// released, never returned to the pool.
    async fn claim_pooled(&self, sbx: Arc<LocalSandbox>, spec: SandboxSpec) -> Result<Arc<LocalSandbox>> {
        let bound = async {
            self.check_workspace_bytes(&spec)?;
            let env = session_env(&spec, self.shared.cfg.relay_port)?;
            let slot = sbx.slot.as_ref().ok_or_else(|| anyhow!("a pooled sandbox without a slot"))?;
            // The pooled volume stays the sandbox's until used: on a failure
            // the release discards it after the slot lets go of it.
            let take_pooled = || sbx.pool_volume.lock().ok().and_then(|mut p| p.take());
            let pooled_bytes = sbx.pool_volume.lock().ok().and_then(|p| p.as_ref().map(PooledVolume::bytes));
            let has_workspace = self.shared.workspaces.exists(&spec.session_id)?;
            let adopt = volume::from_pool(pooled_bytes, spec.workspace_bytes, has_workspace) == FromPool::Adopt;
            if let (true, Some(v), Some(pv)) = (adopt, &self.shared.volumes, take_pooled()) {
                let (v2, s) = (v.clone(), spec.session_id.clone());
                let adopted = tokio::task::spawn_blocking(move || v2.adopt(pv, &s))
                    .await
                    .map_err(|e| anyhow!("volume task: {e}"))?;
                match adopted {
                    Ok((guard, leftover)) => {
                        tokio::task::spawn_blocking(move || drop(leftover));
                        // Made for this sandbox's uid; its `tmp` is fresh.
                        slot.adopt()?;
                        return sbx.bind_session(&spec, env, Some(guard));
                    }
                    // E.g. a concurrent claim of the same session mounted it
                    // first: mount the session's own, as below.
                    Err(e) => {
                        warn!(session_id = %spec.session_id, error = %format!("{:#}", e.error), "could not adopt the pooled workspace volume; mounting the session's own");
                        if let Ok(mut p) = sbx.pool_volume.lock() {
                            *p = Some(e.pooled);
                        }
                    }
                }
            }
            let mut ws = self.open_workspace(&spec).await?;
            let owner = self.shared.workspaces.owner(&ws)?;
            self.own_workspace(&ws, owner, sbx.host_uid).await?;
            slot.fill(&ws.dir, ws.tmp.as_deref())?;
            // Off the slot now: the pooled volume the session did not need
            // goes, off the claim's path.
            if let Some(pv) = take_pooled() {
                tokio::task::spawn_blocking(move || drop(pv));
            }
            sbx.bind_session(&spec, env, ws.volume.take())
        }
        .await;
        if let Err(e) = bound {
            let _ = sbx.release_inner("claim from the pool failed").await;
            return Err(e);
        }
        self.register(&sbx, &spec.session_id);
        Ok(sbx)
    }
}

/// Boot one sandbox for the pool: its own uid, an empty slot for the
/// session's directories, the pool's limits; no session yet.
async fn boot_pooled(shared: Arc<Shared>) -> Result<Arc<LocalSandbox>> {
    let lease = match &shared.uids {
        Some(pool) => pool.lease(None)?,
        None => return Err(SandboxError::Unavailable("the warm pool needs root".into())),
    };
    let uid = lease.uid();
    let with_tmp = shared.volumes.as_ref().is_some_and(|v| v.creates());
    let id = random_id();
    let root = slot::own_dir(&shared.cfg.state_dir);
    let slot = tokio::task::spawn_blocking(move || Slot::create(&root, &id, uid, with_tmp).map(|s| (s, id)))
        .await
        .map_err(|e| anyhow!("slot task: {e}"))?;
    let (slot, id) = slot.map_err(SandboxError::Other)?;
    let slot = Arc::new(slot);
    let dirs = BootDirs { workspace: slot.ws.clone(), tmp: slot.tmp.clone(), slot: Some(slot.clone()) };
    let limits = shared.cfg.pool.limits.clone();
    let volumes = shared.volumes.clone().filter(|v| v.creates());
    let sbx = match boot_as(shared, &limits, dirs, uid, Some(lease), id.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || slot.remove()).await;
            return Err(e);
        }
    };
    // With the quota, a fresh volume for the session to come, mounted into
    // the running sandbox (after the boot: the slot's mounts propagate into
    // it only from then on).
    if let Some(v) = volumes {
        let made = tokio::task::spawn_blocking(move || {
            let pv = v.provision(&id, uid)?;
            slot.fill_pooled(&pv.workspace(), &pv.tmp())?;
            anyhow::Ok(pv)
        })
        .await
        .map_err(|e| anyhow!("volume task: {e}"))
        .and_then(|r| r);
        match made {
            Ok(pv) => {
                if let Ok(mut p) = sbx.pool_volume.lock() {
                    *p = Some(pv);
                }
            }
            Err(e) => {
                let _ = sbx.release_inner("could not provision its volume").await;
                return Err(SandboxError::Other(e.context("provision a pooled workspace volume")));
            }
        }
    }
    Ok(sbx)
}

/// The environment a session adds to every process of its sandbox: the
/// spec's own, and the model route's address. Checked here, before
/// anything starts.
pub(crate) fn session_env(spec: &SandboxSpec, relay_port: u16) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    if spec.llm.is_some() {
        env.push(("BRIDLE_LLM_BASE_URL".to_string(), format!("http://127.0.0.1:{relay_port}/llm")));
    }
    env.extend(spec.env.iter().cloned());
    // Secrets: the placeholder only; the gateway holds the value.
    env.extend(spec.secrets.iter().map(|s| (s.name.clone(), s.placeholder.clone())));
    check_env(&env)?;
    Ok(env)
}

/// Every entry must reach the process as it is: a name, no `=` in it, no
/// NUL anywhere (`execve` would split or cut them).
pub(crate) fn check_env(env: &[(String, String)]) -> Result<()> {
    match env.iter().find(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0')) {
        Some((k, _)) => Err(SandboxError::Invalid(format!("bad environment variable {k:?}"))),
        None => Ok(()),
    }
}

fn base_args(cfg: &LocalConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    for s in [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--uid",
        &INSIDE_UID.to_string(),
        "--gid",
        &INSIDE_UID.to_string(),
        "--ro-bind",
        "/usr",
        "/usr",
    ] {
        push(s);
    }
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = PathBuf::from("/").join(top);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&host) {
                    a.push("--symlink".into());
                    a.push(target.into_os_string());
                    a.push(host.into_os_string());
                }
            }
            Ok(md) if md.is_dir() => {
                a.push("--ro-bind".into());
                a.push(host.clone().into_os_string());
                a.push(host.into_os_string());
            }
            _ => {}
        }
    }
    for (host, inside) in &cfg.extra_ro_binds {
        a.push("--ro-bind-try".into());
        a.push(host.clone().into_os_string());
        a.push(inside.into());
    }
    for s in ["--proc", "/proc", "--dev", "/dev", "--symlink", "/tmp", "/var/tmp", "--chdir", "/workspace"] {
        a.push(s.into());
    }
    a
}

/// The environment every process of a sandbox starts with (before the
/// session's and the exec's own).
pub(crate) fn base_env(cfg: &LocalConfig) -> Vec<(String, String)> {
    let port = cfg.relay_port;
    let proxy = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), "/workspace".into()),
        ("USER".into(), "agent".into()),
        ("LOGNAME".into(), "agent".into()),
        ("SHELL".into(), "/bin/bash".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("HTTP_PROXY".into(), proxy.clone()),
        ("HTTPS_PROXY".into(), proxy.clone()),
        ("http_proxy".into(), proxy.clone()),
        ("https_proxy".into(), proxy.clone()),
        ("NO_PROXY".into(), "127.0.0.1,localhost,::1".into()),
        ("no_proxy".into(), "127.0.0.1,localhost,::1".into()),
    ];
    if cfg.egress.ca.is_some() {
        // The runtimes' own CA settings, for the bundle that trusts the
        // gateway's CA (the system bundle in the sandbox's /etc does too).
        for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"] {
            env.push((k.into(), CA_BUNDLE_INSIDE.into()));
        }
        env.push(("NODE_EXTRA_CA_CERTS".into(), CA_CERT_INSIDE.into()));
    }
    env
}

/// The session's own directory inside every sandbox (a tmpfs sized like
/// `/dev/shm`), with `uploads/` (read-only, see [`UPLOADS_DIR`]) and
/// `outputs/` in it.
pub const SESSION_DIR: &str = "/mnt/session";
/// Files the host places for the session, read-only to the sandbox.
pub const UPLOADS_DIR: &str = "/mnt/session/uploads";
/// [`UPLOADS_DIR`]'s host side, in the sandbox's run directory.
const UPLOADS_HOST_DIR: &str = "uploads";

/// Fixed descriptor numbers inside bwrap.
const FD_CONTROL: RawFd = 3;
const FD_SECCOMP: RawFd = 4;
const FD_WORKSPACE: RawFd = 5;
const FD_RUN: RawFd = 6;
const FD_INIT: RawFd = 7;
const FD_ETC: RawFd = 8;
const FD_TMP: RawFd = 9;

/// The directories a sandbox boots with: the session's own (a cold claim),
/// or a pooled sandbox's empty slot, filled at claim.
struct BootDirs {
    /// Bound at `/workspace`.
    workspace: PathBuf,
    /// Bound at `/tmp` (else `/tmp` is a tmpfs).
    tmp: Option<PathBuf>,
    /// Set for a pooled sandbox.
    slot: Option<Arc<Slot>>,
}

pub(crate) fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut b);
    format!("sbx_{}", hex::encode(b))
}

async fn boot(
    shared: Arc<Shared>,
    limits: &Limits,
    dirs: BootDirs,
    uid: u32,
    lease: Option<UidLease>,
) -> Result<Arc<LocalSandbox>> {
    boot_as(shared, limits, dirs, uid, lease, random_id()).await
}

/// Start bubblewrap and the init: everything but the session (its gateway,
/// environment and id come with [`LocalSandbox::bind_session`]).
async fn boot_as(
    shared: Arc<Shared>,
    limits: &Limits,
    dirs: BootDirs,
    uid: u32,
    lease: Option<UidLease>,
    id: String,
) -> Result<Arc<LocalSandbox>> {
    let BootDirs { workspace, tmp: tmp_dir, slot } = dirs;
    let t0 = std::time::Instant::now();
    let span = info_span!("sandbox", sandbox = %id, session_id = tracing::field::Empty, uid);
    let cfg = &shared.cfg;
    let port = cfg.relay_port;

    // Gateway socket directory, visible only to this sandbox (read-only);
    // the gateway binds its socket in it when a session is bound.
    let run_dir = cfg.state_dir.join("run").join(&id);
    mkdir_mode(&run_dir, 0o700)?;
    let mut cleanup = RunDirGuard(Some(run_dir.clone()));
    let activity = Activity::new();
    if shared.root {
        std::os::unix::fs::chown(&run_dir, Some(uid), Some(uid)).context("chown run dir")?;
    }

    let t_gateway = t0.elapsed();
    let cgroup = match &shared.cgroups {
        Some(c) => {
            Some(c.create(&id, limits.memory_bytes, limits.max_processes, cfg.cpus).map_err(SandboxError::Other)?)
        }
        None => None,
    };
    let cgroup_guard = CgroupGuard(cgroup);

    let t_cgroup = t0.elapsed();
    // Descriptors for bwrap.
    let (host_end, init_end) = seqpacket_pair()?;
    let ws_fd = open_path(&workspace, true)?;
    let run_fd = open_path(&run_dir, true)?;
    let tmp_fd = tmp_dir.as_deref().map(|t| open_path(t, true)).transpose()?;
    let seccomp_fd = match &shared.seccomp {
        Some(bytes) => Some(seccomp_pipe(bytes)?),
        None => None,
    };

    let mut args = shared.base_args.clone();
    let fdarg =
        |flag: &str, fd: RawFd, dest: &str| -> [OsString; 3] { [flag.into(), fd.to_string().into(), dest.into()] };
    args.extend(fdarg("--bind-fd", FD_WORKSPACE, "/workspace"));
    args.extend(fdarg("--ro-bind-fd", FD_RUN, "/run/bridle"));
    args.extend(fdarg("--ro-bind-fd", FD_INIT, "/run/bridle-init"));
    args.extend(fdarg("--ro-bind-fd", FD_ETC, "/etc"));
    // `/tmp` is on the workspace volume when there is one (its bytes count
    // against the quota), else a size-capped tmpfs like `/dev/shm`.
    let tmpfs_dirs: &[&str] = if tmp_fd.is_some() {
        args.extend(fdarg("--bind-fd", FD_TMP, "/tmp"));
        &["/dev/shm"]
    } else {
        &["/tmp", "/dev/shm"]
    };
    let tmp = limits.tmp_bytes;
    for dir in tmpfs_dirs {
        if let Some(size) = tmp {
            args.push("--size".into());
            args.push(size.to_string().into());
        }
        args.push("--tmpfs".into());
        args.push((*dir).into());
    }
    // `/mnt/session`: files the host places for the session (`uploads/`)
    // and files the agent leaves for it (`outputs/`). Remade at each claim:
    // the host places the one before the runtime starts and collects the
    // other at the end of each turn.
    if let Some(size) = tmp {
        args.push("--size".into());
        args.push(size.to_string().into());
    }
    // `uploads/` is a host directory bound read-only: only the host places
    // files there (root-owned where the server is root); the agent reads them.
    let uploads = run_dir.join(UPLOADS_HOST_DIR);
    mkdir_mode(&uploads, 0o755)?;
    args.extend(["--tmpfs".into(), SESSION_DIR.into(), "--ro-bind".into(), uploads.into_os_string()]);
    for a in [UPLOADS_DIR, "--dir", "/mnt/session/outputs"] {
        args.push(a.into());
    }
    args.push("--remount-ro".into());
    args.push("/".into());
    if seccomp_fd.is_some() {
        args.push("--seccomp".into());
        args.push(FD_SECCOMP.to_string().into());
    }
    let env = base_env(cfg);
    for (k, v) in &env {
        args.push("--setenv".into());
        args.push(k.into());
        args.push(v.into());
    }
    args.push("--".into());
    args.push("/run/bridle-init".into());
    for s in [
        crate::init::INIT_ARG,
        "--control-fd",
        &FD_CONTROL.to_string(),
        "--port",
        &port.to_string(),
        "--gateway",
        "/run/bridle/gw.sock",
    ] {
        args.push(s.into());
    }

    let mut fd_map: Vec<(RawFd, RawFd)> = vec![
        (init_end.as_raw_fd(), FD_CONTROL),
        (ws_fd.as_raw_fd(), FD_WORKSPACE),
        (run_fd.as_raw_fd(), FD_RUN),
        (shared.init_fd.as_raw_fd(), FD_INIT),
        (shared.etc_fd.as_raw_fd(), FD_ETC),
    ];
    if let Some(fd) = &seccomp_fd {
        fd_map.push((fd.as_raw_fd(), FD_SECCOMP));
    }
    if let Some(fd) = &tmp_fd {
        fd_map.push((fd.as_raw_fd(), FD_TMP));
    }
    let mut rlimits: Vec<(Resource, u64, u64)> = vec![(Resource::RLIMIT_CORE, 0, 0)];
    if let Some(n) = limits.max_processes {
        // With a pids cgroup, the cgroup binds first (and its refusals are
        // observable in pids.events); RLIMIT_NPROC of the sandbox's own uid is
        // the backstop.
        let n = if cgroup_guard.0.is_some() { n.saturating_mul(2) } else { n };
        rlimits.push((Resource::RLIMIT_NPROC, n, n));
    }
    if let Some(s) = limits.cpu_seconds {
        rlimits.push((Resource::RLIMIT_CPU, s, s.saturating_add(5)));
    }
    if let Some(b) = limits.file_size_bytes {
        rlimits.push((Resource::RLIMIT_FSIZE, b, b));
    }
    if let Some(n) = limits.open_files {
        rlimits.push((Resource::RLIMIT_NOFILE, n, n));
    }
    if cgroup_guard.0.is_none()
        && let Some(m) = limits.memory_bytes
    {
        rlimits.push((Resource::RLIMIT_AS, m, m));
    }
    let procs: Vec<std::ffi::CString> = cgroup_guard.0.as_ref().map(|c| c.procs.clone()).unwrap_or_default();
    let drop_to = shared.root.then_some(uid);

    let mut cmd = tokio::process::Command::new(&shared.bwrap);
    cmd.args(&args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the hook only makes async-signal-safe syscalls (open, write,
    // close, setrlimit, fcntl, dup2, setgroups, setresgid, setresuid) on data
    // prepared before fork.
    unsafe {
        cmd.pre_exec(move || child_setup(&procs, &rlimits, &fd_map, drop_to));
    }
    let mut child = cmd.spawn().with_context(|| format!("spawn {}", shared.bwrap.display()))?;
    drop(init_end);
    drop(seccomp_fd);
    drop(ws_fd);
    drop(run_fd);
    drop(tmp_fd);
    let bwrap_pid = child.id();
    let stderr = child.stderr.take();
    let t_spawn = t0.elapsed();

    let chan = Arc::new(Channel::new(host_end)?);
    let ready = tokio::time::timeout(cfg.ready_timeout, chan.recv::<FromInit>()).await;
    let ready_err = match ready {
        Ok(Ok(Some((FromInit::Ready, _)))) => None,
        Ok(Ok(Some((other, _)))) => Some(format!("unexpected first message {other:?}")),
        Ok(Ok(None)) => Some("the sandbox exited during start-up".to_string()),
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(format!("not ready within {:?}", cfg.ready_timeout)),
    };
    if let Some(err) = ready_err {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let mut msg = String::new();
        if let Some(mut e) = stderr {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut msg)).await;
        }
        return Err(SandboxError::Other(anyhow!("sandbox failed to start: {err}; bwrap said: {}", msg.trim())));
    }
    if let Some(stderr) = stderr {
        tokio::spawn(log_stderr(stderr).instrument(span.clone()));
    }
    cleanup.0 = None;
    let sbx = Arc::new(LocalSandbox {
        id: id.clone(),
        session_id: OnceLock::new(),
        session_env: OnceLock::new(),
        relay_port: port,
        shared: shared.clone(),
        chan: chan.clone(),
        activity,
        cgroup: Mutex::new({
            let mut g = cgroup_guard;
            g.0.take()
        }),
        bwrap: Mutex::new(Some(child)),
        bwrap_pid,
        table: Mutex::new(ExecTable::default()),
        next_id: AtomicU64::new(1),
        running: AtomicBool::new(true),
        released: AtomicBool::new(false),
        end_reason: Mutex::new(None),
        host_uid: uid,
        slot,
        pool_volume: Mutex::new(None),
        host: HostResources::new(run_dir, lease),
        span: span.clone(),
    });
    sbx.activity.touch();
    tokio::spawn(reader(Arc::downgrade(&sbx), chan).instrument(span.clone()));
    tokio::spawn(monitor(Arc::downgrade(&sbx)).instrument(span.clone()));
    let t_ready = t0.elapsed();
    span.in_scope(|| {
        info!(
            run_dir_us = t_gateway.as_micros() as u64,
            cgroup_us = t_cgroup.as_micros() as u64,
            spawn_us = t_spawn.as_micros() as u64,
            ready_us = t_ready.as_micros() as u64,
            "sandbox started"
        )
    });
    Ok(sbx)
}

struct CgroupGuard(Option<SandboxCgroup>);
impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.kill_and_remove();
        }
    }
}

fn seccomp_pipe(bytes: &[u8]) -> anyhow::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
    let mut f = std::fs::File::from(w);
    std::io::Write::write_all(&mut f, bytes).context("write seccomp filter")?;
    Ok(r)
}

fn child_setup(
    procs: &[std::ffi::CString],
    rlimits: &[(Resource, u64, u64)],
    fd_map: &[(RawFd, RawFd)],
    drop_to: Option<u32>,
) -> std::io::Result<()> {
    let err = std::io::Error::last_os_error;
    // SAFETY: async-signal-safe syscalls on memory owned by the closure.
    unsafe {
        for p in procs {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(err());
            }
            let r = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if r < 0 {
                return Err(err());
            }
        }
        for (res, soft, hard) in rlimits {
            nix::sys::resource::setrlimit(*res, *soft, *hard).map_err(std::io::Error::from)?;
        }
        let mut tmp = [0 as RawFd; 16];
        for (i, (src, _)) in fd_map.iter().enumerate().take(16) {
            let t = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 64);
            if t < 0 {
                return Err(err());
            }
            tmp[i] = t;
        }
        for (i, (_, dst)) in fd_map.iter().enumerate().take(16) {
            if libc::dup2(tmp[i], *dst) < 0 {
                return Err(err());
            }
        }
        if let Some(uid) = drop_to {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(err());
            }
            if libc::setresgid(uid, uid, uid) != 0 {
                return Err(err());
            }
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(err());
            }
        }
    }
    Ok(())
}

async fn log_stderr(stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        warn!(line = %line, "sandbox init stderr");
    }
}

#[derive(Default)]
struct ExecTable {
    pending: HashMap<u64, oneshot::Sender<std::result::Result<i32, String>>>,
    live: HashMap<u64, LiveExec>,
}

struct LiveExec {
    status: watch::Sender<Option<ExitStatus>>,
    oom_base: u64,
    pids_base: u64,
    keeps_busy: bool,
}

/// A sandbox of the local driver.
pub struct LocalSandbox {
    id: String,
    /// Set when a session is bound: at once for a cold claim, at claim time
    /// for a pooled sandbox (never changed after).
    session_id: OnceLock<String>,
    /// Added before each exec's own environment (see [`session_env`]).
    session_env: OnceLock<Vec<(String, String)>>,
    relay_port: u16,
    shared: Arc<Shared>,
    chan: Arc<Channel>,
    activity: Arc<Activity>,
    cgroup: Mutex<Option<SandboxCgroup>>,
    bwrap: Mutex<Option<tokio::process::Child>>,
    bwrap_pid: Option<u32>,
    table: Mutex<ExecTable>,
    next_id: AtomicU64,
    running: AtomicBool,
    released: AtomicBool,
    end_reason: Mutex<Option<ExitStatus>>,
    host_uid: u32,
    /// A pooled sandbox's slot (its `/workspace` mount point on the host).
    slot: Option<Arc<Slot>>,
    /// The fresh volume on a pooled sandbox's slot (with the disk quota),
    /// until a claim adopts or discards it; declared after `slot`, whose
    /// binds hold it busy.
    pool_volume: Mutex<Option<PooledVolume>>,
    /// Its run dir, uid lease, gateway and workspace volume; declared after
    /// everything that may hold the volume's mount busy.
    host: HostResources,
    span: tracing::Span,
}

impl std::fmt::Debug for LocalSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSandbox")
            .field("id", &self.id)
            .field("session_id", &self.session_id.get())
            .finish_non_exhaustive()
    }
}

async fn reader(weak: Weak<LocalSandbox>, chan: Arc<Channel>) {
    loop {
        let msg = chan.recv::<FromInit>().await;
        let Some(sbx) = weak.upgrade() else { return };
        match msg {
            Ok(Some((m, _))) => sbx.on_message(m),
            Ok(None) | Err(_) => {
                if sbx.running.load(Ordering::SeqCst) {
                    warn!("sandbox init went away");
                }
                let _ = sbx.release_inner("init exited").await;
                return;
            }
        }
    }
}

/// Watches for a fork bomb (sustained `pids.max` hits) and for idleness.
async fn monitor(weak: Weak<LocalSandbox>) {
    let mut last_hits = 0u64;
    let mut streak = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(sbx) = weak.upgrade() else { return };
        if !sbx.running.load(Ordering::SeqCst) {
            return;
        }
        let hits = sbx.pids_hits();
        let at_limit = sbx.cgroup.lock().ok().and_then(|c| c.as_ref().map(|c| c.at_pids_limit())).unwrap_or(false);
        if hits > last_hits || at_limit {
            streak += 1;
        } else {
            streak = 0;
        }
        last_hits = hits;
        if streak >= 3 {
            warn!(hits, "process limit hit repeatedly (fork bomb?): stopping the sandbox");
            sbx.set_end_reason(ExitStatus::LimitExceeded { limit: Limit::Processes, signal: Some(libc::SIGKILL) });
            let _ = sbx.release_inner("process limit").await;
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

impl LocalSandbox {
    /// Bind the session: its egress gateway (the init relays to the socket
    /// in the run dir, which exists from now on), its environment, its id,
    /// and the guard of its workspace volume.
    fn bind_session(&self, spec: &SandboxSpec, env: Vec<(String, String)>, volume: Option<VolumeGuard>) -> Result<()> {
        let sock = self.host.run_dir().join("gw.sock");
        let gateway = GatewayFor {
            spec,
            sandbox_id: &self.id,
            relay_port: self.relay_port,
            hub: &self.shared.egress,
            activity: &self.activity,
        };
        self.host.bind_session(&sock, gateway, self.shared.root.then_some(self.host_uid), volume)?;
        if self.session_id.set(spec.session_id.clone()).is_err() || self.session_env.set(env).is_err() {
            return Err(SandboxError::Other(anyhow!("sandbox {} already serves a session", self.id)));
        }
        self.span.record("session_id", spec.session_id.as_str());
        self.activity.touch();
        Ok(())
    }

    fn set_end_reason(&self, st: ExitStatus) {
        if let Ok(mut r) = self.end_reason.lock() {
            r.get_or_insert(st);
        }
    }

    fn on_message(&self, m: FromInit) {
        let Ok(mut t) = self.table.lock() else { return };
        match m {
            FromInit::Ready => {}
            FromInit::Started { id, pid } => {
                if let Some(tx) = t.pending.remove(&id) {
                    let _ = tx.send(Ok(pid));
                }
            }
            FromInit::Failed { id, error } => {
                if let Some(tx) = t.pending.remove(&id) {
                    let _ = tx.send(Err(error));
                }
                if let Some(l) = t.live.remove(&id)
                    && l.keeps_busy
                {
                    self.activity.close();
                }
            }
            FromInit::Written { id } => {
                if let Some(tx) = t.pending.remove(&id) {
                    let _ = tx.send(Ok(0));
                }
            }
            FromInit::Exited { id, code, signal } => {
                if let Some(l) = t.live.remove(&id) {
                    let st = self.classify(code, signal, l.oom_base, l.pids_base);
                    debug!(exec = id, status = %st, "exec ended");
                    let _ = l.status.send(Some(st));
                    if l.keeps_busy {
                        self.activity.close();
                    }
                }
            }
        }
    }

    fn oom_kills(&self) -> u64 {
        self.cgroup.lock().ok().and_then(|c| c.as_ref().map(|c| c.oom_kills())).unwrap_or(0)
    }

    fn pids_hits(&self) -> u64 {
        self.cgroup.lock().ok().and_then(|c| c.as_ref().map(|c| c.pids_limit_hits())).unwrap_or(0)
    }

    fn classify(&self, code: Option<i32>, signal: Option<i32>, oom_base: u64, pids_base: u64) -> ExitStatus {
        if let Some(r) = self.end_reason.lock().ok().and_then(|r| *r) {
            return r;
        }
        match (code, signal) {
            // A shell whose child the OOM killer took reports 128 + SIGKILL.
            (Some(137), _) if self.oom_kills() > oom_base => {
                ExitStatus::LimitExceeded { limit: Limit::Memory, signal: Some(libc::SIGKILL) }
            }
            // Failed while forks were being refused by the process limit.
            (Some(code), _) if code != 0 && self.pids_hits() > pids_base => {
                ExitStatus::LimitExceeded { limit: Limit::Processes, signal: None }
            }
            (Some(code), _) => ExitStatus::Exited { code },
            (None, Some(sig)) if sig == libc::SIGKILL && self.oom_kills() > oom_base => {
                ExitStatus::LimitExceeded { limit: Limit::Memory, signal: Some(sig) }
            }
            (None, Some(sig)) if sig == libc::SIGXCPU => {
                ExitStatus::LimitExceeded { limit: Limit::CpuTime, signal: Some(sig) }
            }
            (None, Some(sig)) if sig == libc::SIGXFSZ => {
                ExitStatus::LimitExceeded { limit: Limit::FileSize, signal: Some(sig) }
            }
            (None, Some(sig)) => ExitStatus::Signaled { signal: sig },
            (None, None) => ExitStatus::SandboxGone,
        }
    }

    /// Whether this sandbox was booted by the warm pool (before its session
    /// was known).
    pub fn pooled(&self) -> bool {
        self.slot.is_some()
    }

    /// Host uid the sandbox runs as.
    pub fn host_uid(&self) -> Option<u32> {
        Some(self.host_uid)
    }

    /// Host pid of the outer `bwrap` process.
    pub fn bwrap_pid(&self) -> Option<u32> {
        self.bwrap_pid
    }

    /// CPU time the sandbox's processes used so far (from its cgroup), where
    /// the host counts it.
    pub fn cpu_usage(&self) -> Option<Duration> {
        self.cgroup.lock().ok().and_then(|c| c.as_ref().and_then(|c| c.cpu_usage()))
    }

    async fn exec_inner(&self, request: ExecRequest) -> Result<ExecChild> {
        let keeps_busy = !request.resident;
        if !self.running.load(Ordering::SeqCst) {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        // A pooled sandbox runs nothing before a session is bound.
        let Some(session_env) = self.session_env.get() else {
            return Err(SandboxError::Invalid(format!("sandbox {} has no session yet", self.id)));
        };
        if request.argv.is_empty() {
            return Err(SandboxError::Invalid("exec needs a program".into()));
        }
        check_env(&request.env)?;
        let env: Vec<(String, String)> = session_env.iter().cloned().chain(request.env).collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        let (tx, rx) = oneshot::channel();
        let (stx, srx) = watch::channel(None);
        let oom_base = self.oom_kills();
        let pids_base = self.pids_hits();
        {
            let mut t = self.table.lock().map_err(|_| anyhow!("exec table poisoned"))?;
            t.pending.insert(id, tx);
            t.live.insert(id, LiveExec { status: stx, oom_base, pids_base, keeps_busy });
        }
        if keeps_busy {
            self.activity.open_raw();
        } else {
            self.activity.touch();
        }
        let sent = self
            .chan
            .send(
                &ToInit::Exec { id, argv: request.argv.clone(), env, cwd: request.cwd },
                &[in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            )
            .await;
        drop((in_r, out_w, err_w));
        let fail = |this: &Self| {
            if let Ok(mut t) = this.table.lock() {
                t.pending.remove(&id);
                if let Some(l) = t.live.remove(&id)
                    && l.keeps_busy
                {
                    this.activity.close();
                }
            }
        };
        if let Err(e) = sent {
            fail(self);
            if !self.running.load(Ordering::SeqCst) {
                return Err(SandboxError::Gone(self.id.clone()));
            }
            return Err(SandboxError::Other(e));
        }
        let pid = match rx.await {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                fail(self);
                return Err(SandboxError::Invalid(format!("cannot start {:?}: {e}", request.argv[0])));
            }
            Err(_) => {
                fail(self);
                return Err(SandboxError::Gone(self.id.clone()));
            }
        };
        debug!(parent: &self.span, exec = id, pid, argv0 = %request.argv[0], "exec started");
        let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(in_w).context("stdin pipe")?;
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r).context("stdout pipe")?;
        let stderr = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r).context("stderr pipe")?;
        let act = self.activity.clone();
        Ok(ExecChild {
            stdin: Some(Box::pin(Touching::new(stdin, act.clone()))),
            stdout: Some(Box::pin(Touching::new(stdout, act.clone()))),
            stderr: Some(Box::pin(Touching::new(stderr, act))),
            control: Arc::new(LocalExec { id, pid, chan: self.chan.clone(), status: srx }),
        })
    }

    async fn write_file_inner(&self, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        if !self.running.load(Ordering::SeqCst) {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        if !path.starts_with('/') {
            return Err(SandboxError::Invalid(format!("write_file needs an absolute path, not {path:?}")));
        }
        if self.session_id.get().is_none() {
            return Err(SandboxError::Invalid(format!("sandbox {} has no session yet", self.id)));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        let (tx, rx) = oneshot::channel();
        self.table.lock().map_err(|_| anyhow!("exec table poisoned"))?.pending.insert(id, tx);
        let sent = self.chan.send(&ToInit::WriteFile { id, path: path.to_owned(), mode }, &[read.as_raw_fd()]).await;
        drop(read);
        if let Err(e) = sent {
            if let Ok(mut t) = self.table.lock() {
                t.pending.remove(&id);
            }
            return Err(SandboxError::Other(e));
        }
        // The init reads while we write; closing our end is its EOF.
        let mut pipe = tokio::net::unix::pipe::Sender::from_owned_fd(write).context("write pipe")?;
        let written = async {
            pipe.write_all(contents).await?;
            pipe.shutdown().await
        }
        .await;
        drop(pipe);
        match rx.await {
            Ok(Ok(_)) => written.map_err(|e| SandboxError::Other(anyhow!("writing {path}: {e}"))),
            Ok(Err(e)) => Err(SandboxError::Invalid(format!("cannot write {path}: {e}"))),
            Err(_) => Err(SandboxError::Gone(self.id.clone())),
        }
    }

    async fn release_inner(&self, why: &str) -> Result<()> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.running.store(false, Ordering::SeqCst);
        let child = self.bwrap.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        let cg = self.cgroup.lock().ok().and_then(|mut c| c.take());
        if let Some(cg) = cg {
            let _ = tokio::task::spawn_blocking(move || cg.kill_and_remove()).await;
        }
        self.finish_all();
        self.host.release(self.slot.clone()).await;
        // A pooled volume no claim took: the slot that held it busy is gone now.
        let pooled = self.pool_volume.lock().ok().and_then(|mut v| v.take());
        if let Some(pv) = pooled {
            let _ = tokio::task::spawn_blocking(move || drop(pv)).await;
        }
        if let Some(session) = self.session_id.get() {
            self.shared.live.remove(session, &self.id);
        }
        info!(parent: &self.span, reason = why, "sandbox released");
        Ok(())
    }

    fn finish_all(&self) {
        let end = self.end_reason.lock().ok().and_then(|r| *r).unwrap_or(ExitStatus::SandboxGone);
        if let Ok(mut t) = self.table.lock() {
            t.pending.clear();
            for (_, l) in t.live.drain() {
                let _ = l.status.send(Some(end));
            }
        }
    }
}

#[async_trait]
impl Pooled for LocalSandbox {
    fn alive(&self) -> bool {
        self.is_running()
    }
    async fn discard(&self, why: &str) {
        let _ = self.release_inner(why).await;
    }
}

impl Drop for LocalSandbox {
    fn drop(&mut self) {
        if !self.released.load(Ordering::SeqCst) {
            // kill_on_drop takes the bwrap process (and with it the pid namespace).
            if let Ok(mut c) = self.cgroup.lock()
                && let Some(cg) = c.take()
            {
                cg.kill_and_remove();
            }
            self.host.abandon(self.slot.as_deref());
        }
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
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
        if let Some(ExitStatus::LimitExceeded { limit, .. }) = self.end_reason.lock().ok().and_then(|r| *r) {
            return Some(limit);
        }
        if self.pids_hits() > 0 {
            Some(Limit::Processes)
        } else if self.oom_kills() > 0 {
            Some(Limit::Memory)
        } else {
            None
        }
    }
    async fn exec(&self, request: ExecRequest) -> Result<ExecChild> {
        self.exec_inner(request).await
    }
    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.write_file_inner(path, contents, mode).await
    }
    async fn place_read_only(&self, path: &str, content: crate::driver::BoxedRead) -> Result<()> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        let placed = if let Some(rest) = path.strip_prefix(UPLOADS_DIR).filter(|r| r.starts_with('/')) {
            // A read-only bind of a host directory: the host writes it directly.
            place::place(self.host.run_dir().join(UPLOADS_HOST_DIR), rest, content).await
        } else {
            // Only root can own a file the sandbox's user cannot change.
            match self.bwrap_pid.filter(|_| is_root()).map(place::inner_pid) {
                Some(Ok(pid)) => place::place(format!("/proc/{pid}/root").into(), path, content).await,
                Some(Err(e)) => Err(e),
                None => return crate::driver::place_by_exec(self, path, content).await,
            }
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

struct LocalExec {
    id: u64,
    pid: i32,
    chan: Arc<Channel>,
    status: watch::Receiver<Option<ExitStatus>>,
}

#[async_trait]
impl ExecControl for LocalExec {
    fn pid(&self) -> Option<i32> {
        Some(self.pid)
    }
    async fn wait(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => (*s).unwrap_or(ExitStatus::SandboxGone),
            Err(_) => ExitStatus::SandboxGone,
        }
    }
    async fn kill(&self) -> Result<()> {
        if self.status.borrow().is_some() {
            return Ok(());
        }
        self.chan.send(&ToInit::Signal { id: self.id, signal: libc::SIGKILL }, &[]).await.map_err(SandboxError::Other)
    }
}

/// Marks stdio traffic as sandbox activity.
pub(crate) struct Touching<T> {
    inner: T,
    act: Arc<Activity>,
}

impl<T> Touching<T> {
    pub(crate) fn new(inner: T, act: Arc<Activity>) -> Self {
        Self { inner, act }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touching<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.act.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touching<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.act.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl SandboxDriver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }
    async fn claim(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        Ok(self.claim_local(spec).await?)
    }
    async fn resume(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        self.shared.workspaces.check_resumable(&spec.session_id)?;
        Ok(self.claim_local(spec).await?)
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
