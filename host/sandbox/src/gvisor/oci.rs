//! The OCI runtime spec (`config.json`) the gVisor driver hands `runsc`: the
//! few fields it uses, as serde types, and the pure function that builds a
//! sandbox's spec from its layout and limits.

use std::path::PathBuf;

use serde::Serialize;

use crate::spec::Limits;

/// `config.json` (OCI runtime spec 1.0).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: &'static str,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// Every set empty: no capabilities at all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Root {
    pub path: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: PathBuf,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Mount {
    fn bind(source: impl Into<PathBuf>, destination: &str, writable: bool) -> Self {
        let rw = if writable { "rw" } else { "ro" };
        Self {
            destination: destination.into(),
            kind: "bind",
            source: source.into(),
            options: vec!["rbind".into(), rw.into(), "nosuid".into(), "nodev".into()],
        }
    }
    fn tmpfs(destination: &str, size: Option<u64>) -> Self {
        let mut options = vec!["nosuid".into(), "nodev".into(), "mode=1777".into()];
        if let Some(s) = size {
            options.push(format!("size={s}"));
        }
        Self { destination: destination.into(), kind: "tmpfs", source: "tmpfs".into(), options }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub resources: Resources,
    pub cgroups_path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub limit: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub quota: i64,
    pub period: u64,
}

/// Where a sandbox's pieces are on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The shared, empty root (mount points and the host's top-level links).
    pub rootfs: PathBuf,
    /// The sandbox `/etc` (shared copy).
    pub etc: PathBuf,
    /// This sandbox's `passwd` and `group` (its uid is the agent).
    pub passwd: PathBuf,
    pub group: PathBuf,
    /// Bound at `/workspace`.
    pub workspace: PathBuf,
    /// Bound at `/tmp`, else a tmpfs of `Limits::tmp_bytes`.
    pub tmp: Option<PathBuf>,
    /// Bound at `/mnt/session` (holds `outputs/` and the mount point
    /// `uploads/`).
    pub session_dir: PathBuf,
    /// Bound read-only over `/mnt/session/uploads`: the host places the
    /// session's files there, root-owned, and the agent cannot change them.
    pub uploads: PathBuf,
    /// The gateway socket's directory, read-only at `/run/bridle`.
    pub gateway_dir: PathBuf,
    /// The init binary, read-only at [`INIT_INSIDE`].
    pub init: PathBuf,
    /// Directories of the host root bound read-only at the same path
    /// (`/usr`, and `/lib*`, `/bin`, `/sbin` where they are not links).
    pub host_dirs: Vec<PathBuf>,
    /// Extra read-only binds `(host, inside)`.
    pub extra_ro: Vec<(PathBuf, String)>,
}

/// The init binary inside the sandbox.
pub const INIT_INSIDE: &str = "/run/bridle-init";
/// The gateway socket inside the sandbox.
pub const GATEWAY_INSIDE: &str = "/run/bridle/gw.sock";

/// One sandbox's spec: the relay as its process, run as `uid` with no
/// capabilities, every limit of `limits` (memory and CPU by the host cgroup
/// `cgroup`, the rest as rlimits the gVisor kernel enforces for every
/// process of the sandbox, `runsc exec`'d ones included).
pub fn sandbox_spec(
    layout: &Layout,
    uid: u32,
    limits: &Limits,
    cpus: Option<f64>,
    relay_port: u16,
    env: &[(String, String)],
    cgroup: &str,
) -> Spec {
    let mut mounts = vec![
        Mount { destination: "/proc".into(), kind: "proc", source: "proc".into(), options: vec![] },
        Mount { destination: "/dev".into(), kind: "tmpfs", source: "tmpfs".into(), options: vec![] },
    ];
    for d in &layout.host_dirs {
        mounts.push(Mount::bind(d, &d.to_string_lossy(), false));
    }
    for (host, inside) in &layout.extra_ro {
        mounts.push(Mount::bind(host, inside, false));
    }
    mounts.push(Mount::bind(&layout.etc, "/etc", false));
    mounts.push(Mount::bind(&layout.passwd, "/etc/passwd", false));
    mounts.push(Mount::bind(&layout.group, "/etc/group", false));
    mounts.push(Mount::bind(&layout.workspace, "/workspace", true));
    match &layout.tmp {
        Some(t) => mounts.push(Mount::bind(t, "/tmp", true)),
        None => mounts.push(Mount::tmpfs("/tmp", limits.tmp_bytes)),
    }
    mounts.push(Mount::tmpfs("/dev/shm", limits.tmp_bytes));
    mounts.push(Mount::bind(&layout.session_dir, crate::local::SESSION_DIR, true));
    mounts.push(Mount::bind(&layout.uploads, crate::local::UPLOADS_DIR, false));
    mounts.push(Mount::bind(&layout.gateway_dir, "/run/bridle", false));
    mounts.push(Mount::bind(&layout.init, INIT_INSIDE, false));

    let cpu = cpus.map(|c| {
        let period = 100_000u64;
        Cpu { quota: (c * period as f64).round().max(1000.0) as i64, period }
    });
    Spec {
        oci_version: "1.0.2",
        process: Process {
            terminal: false,
            user: User { uid, gid: uid },
            args: vec![
                INIT_INSIDE.into(),
                crate::init::INIT_ARG.into(),
                crate::init::RELAY_ARG.into(),
                "--port".into(),
                relay_port.to_string(),
                "--gateway".into(),
                GATEWAY_INSIDE.into(),
            ],
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: "/workspace".into(),
            capabilities: Capabilities::default(),
            rlimits: rlimits(limits),
            no_new_privileges: true,
        },
        root: Root { path: layout.rootfs.clone(), readonly: true },
        hostname: "sandbox".into(),
        mounts,
        linux: Linux {
            namespaces: ["pid", "network", "ipc", "uts", "mount"].into_iter().map(|kind| Namespace { kind }).collect(),
            resources: Resources { memory: limits.memory_bytes.map(|limit| Memory { limit }), cpu },
            cgroups_path: cgroup.into(),
        },
    }
}

/// The rlimits of every process in the sandbox. The process limit is
/// `RLIMIT_NPROC` inside gVisor's kernel (a host pids cgroup would count the
/// sandbox kernel's own threads and kill it instead).
pub fn rlimits(limits: &Limits) -> Vec<Rlimit> {
    let mut r = vec![Rlimit { kind: "RLIMIT_CORE", hard: 0, soft: 0 }];
    let mut push = |kind, v: Option<u64>, extra: u64| {
        if let Some(v) = v {
            r.push(Rlimit { kind, soft: v, hard: v.saturating_add(extra) });
        }
    };
    push("RLIMIT_NPROC", limits.max_processes, 0);
    push("RLIMIT_CPU", limits.cpu_seconds, 5);
    push("RLIMIT_FSIZE", limits.file_size_bytes, 0);
    push("RLIMIT_NOFILE", limits.open_files, 0);
    r
}

/// The process `runsc exec` starts: `argv` as the leader of its own process
/// group (through the init, which also installs the seccomp filters), as
/// `uid`, with no capabilities.
pub fn exec_process(uid: u32, argv: &[String], env: &[(String, String)], cwd: &str) -> Process {
    let mut args =
        vec![INIT_INSIDE.to_string(), crate::init::INIT_ARG.into(), crate::init::EXEC_ARG.into(), "--".into()];
    args.extend(argv.iter().cloned());
    Process {
        terminal: false,
        user: User { uid, gid: uid },
        args,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: cwd.into(),
        capabilities: Capabilities::default(),
        rlimits: Vec::new(),
        no_new_privileges: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(tmp: Option<&str>) -> Layout {
        Layout {
            rootfs: "/s/rootfs".into(),
            etc: "/s/etc".into(),
            passwd: "/s/run/x/passwd".into(),
            group: "/s/run/x/group".into(),
            workspace: "/s/workspaces/ses".into(),
            tmp: tmp.map(PathBuf::from),
            session_dir: "/s/run/x/session".into(),
            uploads: "/s/run/x/uploads".into(),
            gateway_dir: "/s/run/x/gw".into(),
            init: "/opt/init".into(),
            host_dirs: vec!["/usr".into()],
            extra_ro: vec![],
        }
    }

    fn mount<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
        s.mounts.iter().find(|m| m.destination == dest).unwrap_or_else(|| panic!("no mount at {dest}"))
    }

    #[test]
    fn only_the_workspace_tmp_and_session_dir_are_writable_uploads_are_not() {
        let s = sandbox_spec(&layout(None), 600_001, &Limits::default(), Some(1.0), 41080, &[], "/bridle/x");
        assert!(s.root.readonly);
        for m in s.mounts.iter().filter(|m| m.kind == "bind") {
            let writable = m.options.iter().any(|o| o == "rw");
            let expected = ["/workspace", "/mnt/session"].contains(&m.destination.as_str());
            assert_eq!(writable, expected, "{m:?}");
        }
        // The read-only uploads bind comes after (over) the writable session dir.
        let at = |d: &str| s.mounts.iter().position(|m| m.destination == d).unwrap();
        assert!(at("/mnt/session/uploads") > at("/mnt/session"));
        assert_eq!(mount(&s, "/mnt/session/uploads").source, PathBuf::from("/s/run/x/uploads"));
        assert_eq!(mount(&s, "/tmp").kind, "tmpfs");
        assert!(mount(&s, "/tmp").options.contains(&format!("size={}", 1u64 << 30)));
        let with_volume = sandbox_spec(&layout(Some("/v/tmp")), 1, &Limits::default(), None, 1, &[], "/b");
        assert_eq!(mount(&with_volume, "/tmp"), &Mount::bind("/v/tmp", "/tmp", true));
    }

    #[test]
    fn the_process_is_the_relay_as_the_sandbox_uid_without_capabilities() {
        let env = vec![("HOME".to_string(), "/workspace".to_string())];
        let s = sandbox_spec(&layout(None), 600_007, &Limits::default(), None, 41080, &env, "/b");
        assert_eq!((s.process.user.uid, s.process.user.gid), (600_007, 600_007));
        assert!(s.process.no_new_privileges);
        let caps = &s.process.capabilities;
        assert!(caps.bounding.is_empty() && caps.effective.is_empty() && caps.permitted.is_empty());
        assert_eq!(s.process.args[..3], [INIT_INSIDE, crate::init::INIT_ARG, crate::init::RELAY_ARG]);
        assert!(s.process.args.windows(2).any(|w| w == ["--port", "41080"]));
        assert_eq!(s.process.env, ["HOME=/workspace"]);
        let ns: Vec<_> = s.linux.namespaces.iter().map(|n| n.kind).collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid"));
    }

    #[test]
    fn limits_become_cgroup_resources_and_rlimits() {
        let limits = Limits {
            memory_bytes: Some(256 << 20),
            max_processes: Some(64),
            cpu_seconds: Some(10),
            file_size_bytes: Some(1 << 20),
            open_files: Some(100),
            tmp_bytes: None,
        };
        let s = sandbox_spec(&layout(None), 1, &limits, Some(0.5), 1, &[], "/b");
        assert_eq!(s.linux.resources.memory.as_ref().map(|m| m.limit), Some(256 << 20));
        let cpu = s.linux.resources.cpu.as_ref().expect("cpu");
        assert_eq!((cpu.quota, cpu.period), (50_000, 100_000));
        let r = &s.process.rlimits;
        let get = |k: &str| r.iter().find(|l| l.kind == k).map(|l| (l.soft, l.hard));
        assert_eq!(get("RLIMIT_NPROC"), Some((64, 64)));
        assert_eq!(get("RLIMIT_CPU"), Some((10, 15)));
        assert_eq!(get("RLIMIT_FSIZE"), Some((1 << 20, 1 << 20)));
        assert_eq!(get("RLIMIT_NOFILE"), Some((100, 100)));
        assert_eq!(get("RLIMIT_CORE"), Some((0, 0)));
        assert!(!mount(&s, "/tmp").options.iter().any(|o| o.starts_with("size=")));
        let none = Limits {
            memory_bytes: None,
            max_processes: None,
            cpu_seconds: None,
            file_size_bytes: None,
            open_files: None,
            tmp_bytes: None,
        };
        let s = sandbox_spec(&layout(None), 1, &none, None, 1, &[], "/b");
        assert!(s.linux.resources.memory.is_none() && s.linux.resources.cpu.is_none());
        assert_eq!(s.process.rlimits, [Rlimit { kind: "RLIMIT_CORE", hard: 0, soft: 0 }]);
    }

    #[test]
    fn an_exec_runs_through_the_group_leader_wrapper() {
        let p = exec_process(5, &["echo".into(), "hi".into()], &[("A".into(), "b".into())], "/tmp");
        assert_eq!(p.args, [INIT_INSIDE, crate::init::INIT_ARG, crate::init::EXEC_ARG, "--", "echo", "hi"]);
        assert_eq!(p.env, ["A=b"]);
        assert_eq!(p.user.uid, 5);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["noNewPrivileges"], true);
    }
}
