//! Sandbox directories for tests and benchmarks (shared by both through `#[path]`).

use std::path::Path;

/// A sandbox directory outside the 0700 data dirs, traversable by the sandbox uids (the
/// "shared workspace storage" when several nodes use it).
pub fn sandbox_dir() -> SandboxDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new().prefix("bridle-sandboxes-").tempdir().expect("create sandbox dir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod sandbox dir");
    SandboxDir(d)
}

/// A [`sandbox_dir`]. Dropped, it first deletes the gVisor sandboxes and unmounts the workspace
/// volumes (the disk quota's loop mounts) that its servers left: tests and benches kill them, so
/// they never release (and runsc's sandboxes are not the server's children: they would run on).
pub struct SandboxDir(tempfile::TempDir);

impl SandboxDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        delete_gvisor_sandboxes(self.0.path());
        let Ok(entries) = std::fs::read_dir(self.0.path().join("volumes")) else { return };
        for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(e.path())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// `runsc delete --force` every container of every runsc state root (`runsc-<host>-<pid>`)
/// directly under `dir`.
fn delete_gvisor_sandboxes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("runsc-") {
            continue;
        }
        let root = format!("--root={}", e.path().display());
        let Ok(out) = std::process::Command::new("runsc").args([root.as_str(), "list", "-quiet"]).output() else {
            continue;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = std::process::Command::new("runsc").args([root.as_str(), "delete", "--force", id]).output();
        }
    }
}
