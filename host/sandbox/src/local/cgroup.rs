//! Per-sandbox cgroups (memory + pids, and CPU when the controller is there),
//! v1 (separate hierarchies) or v2 (unified), when the server may create them
//! (root, writable cgroupfs).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where the `bridle` parent cgroups live.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub version: Version,
    /// v1: `[pids, memory]` then `cpu` and `cpuacct` parents when those
    /// hierarchies exist; v2: `[parent]`.
    parents: Vec<PathBuf>,
    /// Index in `parents` of the hierarchy with the CPU bandwidth files
    /// (`cpu.cfs_quota_us` / `cpu.max`), if any.
    cpu: Option<usize>,
    /// Index in `parents` of the hierarchy with the CPU usage counter
    /// (`cpuacct.usage` / `cpu.stat`), if any.
    cpuacct: Option<usize>,
}

/// CFS period of the CPU limit.
const CPU_PERIOD_US: u64 = 100_000;

/// `cpus` (cores, may be fractional) as the CFS quota per [`CPU_PERIOD_US`]
/// (at least 1 ms, the kernel's minimum).
pub fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1_000)
}

/// The cgroup(s) of one sandbox.
#[derive(Debug)]
pub struct SandboxCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each dir, prepared for the pre-exec hook.
    pub procs: Vec<CString>,
    pids_dir: PathBuf,
    memory_dir: PathBuf,
    /// The CPU usage counter file and its unit (v1 `cpuacct.usage`: ns, v2
    /// `cpu.stat` `usage_usec`: µs).
    cpu_usage: Option<PathBuf>,
}

impl Cgroups {
    /// Find a usable hierarchy and create the `bridle` parent(s). `None` when
    /// cgroups cannot be managed here (then rlimits alone apply).
    pub fn detect() -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
            if !(controllers.contains("pids") && controllers.contains("memory")) {
                return None;
            }
            let parent = root.join("bridle");
            std::fs::create_dir_all(&parent).ok()?;
            // Delegate pids+memory (and cpu where offered) to children of the
            // root and of `bridle`.
            let wanted =
                if controllers.split_whitespace().any(|c| c == "cpu") { "+pids +memory +cpu" } else { "+pids +memory" };
            std::fs::write(root.join("cgroup.subtree_control"), wanted).ok()?;
            std::fs::write(parent.join("cgroup.subtree_control"), wanted).ok()?;
            let cpu = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "cpu"))
                .then_some(0);
            return Some(Cgroups { version: Version::V2, parents: vec![parent], cpu, cpuacct: cpu });
        }
        let pids = root.join("pids");
        let memory = root.join("memory");
        if pids.join("cgroup.procs").exists() && memory.join("cgroup.procs").exists() {
            let pp = pids.join("bridle");
            let mp = memory.join("bridle");
            std::fs::create_dir_all(&pp).ok()?;
            std::fs::create_dir_all(&mp).ok()?;
            // Hierarchical accounting so the sandbox's limit covers its children.
            let _ = std::fs::write(mp.join("memory.use_hierarchy"), "1");
            let mut parents = vec![pp, mp];
            // `cpu` and `cpuacct` are separate mounts or one co-mounted
            // `cpu,cpuacct` (often with `cpu` a symlink to it).
            let mut cpu = None;
            let mut cpuacct = None;
            let cpu_root = root.join("cpu");
            if cpu_root.join("cpu.cfs_quota_us").exists() && std::fs::create_dir_all(cpu_root.join("bridle")).is_ok() {
                parents.push(cpu_root.join("bridle"));
                cpu = Some(parents.len() - 1);
                if cpu_root.join("cpuacct.usage").exists() {
                    cpuacct = cpu;
                }
            }
            let acct_root = root.join("cpuacct");
            if cpuacct.is_none()
                && acct_root.join("cpuacct.usage").exists()
                && std::fs::create_dir_all(acct_root.join("bridle")).is_ok()
            {
                parents.push(acct_root.join("bridle"));
                cpuacct = Some(parents.len() - 1);
            }
            return Some(Cgroups { version: Version::V1, parents, cpu, cpuacct });
        }
        None
    }

    pub fn describe(&self) -> String {
        let dirs: Vec<String> = self.parents.iter().map(|p| p.display().to_string()).collect();
        format!("cgroup {:?} at {}", self.version, dirs.join(", "))
    }

    /// The CPU controller sandboxes are limited with, if any.
    pub fn cpu_controller(&self) -> Option<String> {
        let dir = self.parents.get(self.cpu?)?;
        Some(match self.version {
            Version::V1 => format!("cgroup v1 cpu (cpu.cfs_quota_us) at {}", dir.display()),
            Version::V2 => format!("cgroup v2 cpu.max at {}", dir.display()),
        })
    }

    /// Create the sandbox's cgroup(s) with the given limits (`cpus` in cores;
    /// ignored where there is no CPU controller: see [`Self::cpu_controller`]).
    pub fn create(
        &self,
        name: &str,
        memory: Option<u64>,
        pids: Option<u64>,
        cpus: Option<f64>,
    ) -> anyhow::Result<SandboxCgroup> {
        let dirs: Vec<PathBuf> = self.parents.iter().map(|p| p.join(name)).collect();
        for d in &dirs {
            std::fs::create_dir(d).with_context(|| format!("create cgroup {}", d.display()))?;
        }
        let (pids_dir, memory_dir) = match self.version {
            Version::V1 => (dirs[0].clone(), dirs[1].clone()),
            Version::V2 => (dirs[0].clone(), dirs[0].clone()),
        };
        let cg = SandboxCgroup {
            version: self.version,
            procs: dirs
                .iter()
                .map(|d| {
                    CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).context("cgroup path")
                })
                .collect::<anyhow::Result<_>>()?,
            cpu_usage: self.cpuacct.map(|i| match self.version {
                Version::V1 => dirs[i].join("cpuacct.usage"),
                Version::V2 => dirs[i].join("cpu.stat"),
            }),
            dirs,
            pids_dir,
            memory_dir,
        };
        let write = |dir: &Path, file: &str, value: String| -> anyhow::Result<()> {
            std::fs::write(dir.join(file), &value)
                .with_context(|| format!("write {value} to {}", dir.join(file).display()))
        };
        if let Some(p) = pids {
            write(&cg.pids_dir, "pids.max", p.to_string())?;
        }
        if let Some(m) = memory {
            match self.version {
                Version::V1 => {
                    write(&cg.memory_dir, "memory.limit_in_bytes", m.to_string())?;
                    if cg.memory_dir.join("memory.memsw.limit_in_bytes").exists() {
                        let _ = write(&cg.memory_dir, "memory.memsw.limit_in_bytes", m.to_string());
                    }
                }
                Version::V2 => {
                    write(&cg.memory_dir, "memory.max", m.to_string())?;
                    let _ = write(&cg.memory_dir, "memory.swap.max", "0".into());
                }
            }
        }
        if let (Some(cpus), Some(i)) = (cpus, self.cpu) {
            let quota = cpu_quota_us(cpus);
            match self.version {
                Version::V1 => {
                    write(&cg.dirs[i], "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                    write(&cg.dirs[i], "cpu.cfs_quota_us", quota.to_string())?;
                }
                Version::V2 => write(&cg.dirs[i], "cpu.max", format!("{quota} {CPU_PERIOD_US}"))?,
            }
        }
        Ok(cg)
    }
}

fn read_counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key)).then(|| it.next().and_then(|v| v.parse().ok())).flatten()
            })
        })
        .unwrap_or(0)
}

impl SandboxCgroup {
    /// Times a fork failed because of `pids.max`.
    pub fn pids_limit_hits(&self) -> u64 {
        read_counter(&self.pids_dir.join("pids.events"), "max")
    }

    /// Whether the sandbox holds as many processes as `pids.max` allows.
    pub fn at_pids_limit(&self) -> bool {
        let read =
            |f: &str| std::fs::read_to_string(self.pids_dir.join(f)).ok().and_then(|s| s.trim().parse::<u64>().ok());
        match (read("pids.current"), read("pids.max")) {
            (Some(cur), Some(max)) => cur >= max,
            _ => false,
        }
    }

    /// CPU time used by the sandbox's processes so far, where counted.
    pub fn cpu_usage(&self) -> Option<Duration> {
        let path = self.cpu_usage.as_ref()?;
        match self.version {
            Version::V1 => std::fs::read_to_string(path).ok()?.trim().parse().ok().map(Duration::from_nanos),
            Version::V2 => Some(Duration::from_micros(read_counter(path, "usage_usec"))),
        }
    }

    /// OOM kills inside the sandbox.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => read_counter(&self.memory_dir.join("memory.oom_control"), "oom_kill"),
            Version::V2 => read_counter(&self.memory_dir.join("memory.events"), "oom_kill"),
        }
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILL everything in the cgroup until it is empty, then remove it.
    pub fn kill_and_remove(&self) {
        for attempt in 0..100 {
            if self.version == Version::V2 {
                let _ = std::fs::write(self.dirs[0].join("cgroup.kill"), "1");
            }
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) with a pid read from our own cgroup.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(if attempt < 10 { 1 } else { 20 }));
        }
        for d in &self.dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_quota_from_cores() {
        for (cpus, quota) in [(1.0, 100_000), (0.5, 50_000), (2.5, 250_000), (0.001, 1_000), (0.0, 1_000)] {
            assert_eq!(super::cpu_quota_us(cpus), quota, "{cpus}");
        }
    }
}
