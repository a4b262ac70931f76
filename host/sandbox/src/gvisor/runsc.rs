//! Finding `runsc`, choosing its platform, and what `bridle doctor` reports
//! about it.

use std::path::{Path, PathBuf};

/// How to install runsc, for error messages.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install -y runsc` (Debian 12: add `-t bookworm-backports`, its own runsc is too old)";

/// The `runsc` executable: the configured one, else found on `PATH`.
pub fn find(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = configured {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(format!("runsc not found at {}; {INSTALL_HINT}", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("runsc"))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("gVisor's `runsc` is not installed (not on PATH); {INSTALL_HINT}"))
}

/// `runsc --version`'s first line.
pub fn version(runsc: &Path) -> Option<String> {
    let out = std::process::Command::new(runsc).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
}

/// The platform to run on: the configured one, else `ptrace`, else
/// `systrap`. `ptrace` first because limits are reported right on it: on
/// `systrap` (runsc 20240729) a fork bomb runs into host-side pressure (each
/// address space is a host stub process) long before the task limit, so a
/// runtime aborts unexplained and the bomb is ended only after ~27 s, not
/// ~10 s; claims cost the same on both. `kvm` needs `/dev/kvm` and is only
/// used when configured.
pub fn platform(runsc: &Path, configured: Option<&str>) -> Result<String, String> {
    let help = std::process::Command::new(runsc)
        .arg("flags")
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .map_err(|e| format!("cannot run {}: {e}", runsc.display()))?;
    choose_platform(&help, configured)
}

/// The platform choice, from `runsc flags`' text.
pub fn choose_platform(flags_help: &str, configured: Option<&str>) -> Result<String, String> {
    let line = flags_help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("-platform "))
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let known: Vec<&str> = ["systrap", "ptrace", "kvm"].into_iter().filter(|p| line.contains(p)).collect();
    match configured {
        Some(p) if known.contains(&p) => Ok(p.to_owned()),
        Some(p) => Err(format!(
            "this runsc has no platform {p:?} (it has: {}); set sessions.gvisor_platform to one of them",
            known.join(", ")
        )),
        None => known
            .iter()
            .find(|p| **p == "ptrace")
            .or_else(|| known.iter().find(|p| **p == "systrap"))
            .map(|p| (*p).to_owned())
            .ok_or_else(|| format!("cannot tell the platforms of this runsc from `runsc flags` ({line:?})")),
    }
}

/// What `bridle doctor` reports about the gVisor driver.
#[derive(Debug, Clone)]
pub struct GvisorDoctor {
    pub runsc: Result<PathBuf, String>,
    pub version: Option<String>,
    pub platform: Result<String, String>,
    pub init: Result<PathBuf, String>,
    pub root: bool,
    /// A trial sandbox (`runsc do true`).
    pub probe: Result<(), String>,
}

impl GvisorDoctor {
    pub fn ok(&self) -> bool {
        self.runsc.is_ok() && self.platform.is_ok() && self.init.is_ok() && self.root && self.probe.is_ok()
    }

    pub fn report(&self) -> String {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let mut s = String::new();
        match &self.runsc {
            Ok(p) => s.push_str(&format!(
                "{} gVisor: {} ({})\n",
                mark(true),
                p.display(),
                self.version.as_deref().unwrap_or("?")
            )),
            Err(e) => s.push_str(&format!("{} gVisor: {e}\n", mark(false))),
        }
        match &self.platform {
            Ok(p) => s.push_str(&format!("{} gVisor platform: {p}\n", mark(true))),
            Err(e) => s.push_str(&format!("{} gVisor platform: {e}\n", mark(false))),
        }
        match &self.init {
            Ok(p) => s.push_str(&format!("{} sandbox init: {}\n", mark(true), p.display())),
            Err(e) => s.push_str(&format!("{} sandbox init: {e}\n", mark(false))),
        }
        if !self.root {
            s.push_str(&format!("{} privileges: the gVisor driver needs root\n", mark(false)));
        }
        match &self.probe {
            Ok(()) => s.push_str(&format!("{} gVisor trial sandbox: started\n", mark(true))),
            Err(e) => s.push_str(&format!("{} gVisor trial sandbox: {e}\n", mark(false))),
        }
        s
    }
}

/// Check what the gVisor driver needs; runs one trial sandbox.
pub fn check(cfg: &super::GvisorConfig) -> GvisorDoctor {
    let runsc = find(cfg.runsc.as_deref());
    let version = runsc.as_ref().ok().and_then(|r| version(r));
    let platform = match &runsc {
        Ok(r) => platform(r, cfg.platform.as_deref()),
        Err(_) => Err("skipped: runsc missing".into()),
    };
    let root = crate::local::is_root();
    let probe = match (&runsc, &platform) {
        (Ok(r), Ok(p)) if root => probe(r, p),
        _ => Err("skipped".into()),
    };
    GvisorDoctor { runsc, version, platform, init: crate::local::find_init(&cfg.base), root, probe }
}

fn probe(runsc: &Path, platform: &str) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("bridle-runsc-probe-{}", std::process::id()));
    let out = std::process::Command::new(runsc)
        .arg(format!("--root={}", root.display()))
        .arg(format!("--platform={platform}"))
        .args(["--network=none", "do", "/bin/true"])
        .output();
    let _ = std::fs::remove_dir_all(&root);
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`runsc do true` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run runsc: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "  -pid-file string\n  -platform string\n    \tspecifies which platform to use: ptrace (default), kvm. (default \"ptrace\")\n  -profile\n";
    const NEW: &str = "  -platform string\n    \tspecifies which platform to use: systrap (default), ptrace, kvm. (default \"systrap\")\n";

    #[test]
    fn the_best_platform_the_installed_runsc_has() {
        assert_eq!(choose_platform(OLD, None), Ok("ptrace".into()));
        assert_eq!(choose_platform(NEW, None), Ok("ptrace".into()));
        let systrap_only = "  -platform string\n    \tspecifies which platform to use: systrap (default), kvm.\n";
        assert_eq!(choose_platform(systrap_only, None), Ok("systrap".into()));
        assert_eq!(choose_platform(OLD, Some("kvm")), Ok("kvm".into()));
        let err = choose_platform(OLD, Some("systrap")).unwrap_err();
        assert!(err.contains("no platform \"systrap\"") && err.contains("ptrace, kvm"), "{err}");
        assert!(choose_platform("nothing here", None).is_err());
    }
}
