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

/// A [`sandbox_dir`]. Dropped, it first deletes the gVisor sandboxes, then unmounts everything its
/// servers left mounted below it (workspace volumes, the warm pool's slots and volumes): tests
/// and benches kill their servers, so those never release (and runsc's sandboxes are not the
/// server's children: they would run on). Left mounted, they would pile up on the machine from
/// run to run, and every new mount namespace (each bubblewrap sandbox) copies them all.
pub struct SandboxDir(tempfile::TempDir);

impl SandboxDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        delete_gvisor_sandboxes(self.0.path());
        unmount_below(self.0.path());
    }
}

/// `umount -l` every mount point at or below `dir`, deepest first, until none is left (slots
/// stack a session's volume on a bind of themselves). The volumes' loop devices clear themselves
/// (`mount -o loop` sets autoclear) once their last mount is gone.
pub fn unmount_below(dir: &Path) {
    for _ in 0..8 {
        let mut points = mounts_below(dir);
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = std::process::Command::new("umount").arg("-l").arg(&p).stderr(std::process::Stdio::null()).status();
        }
    }
}

/// The mount points (`/proc/self/mountinfo`'s fifth field) at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let below = format!("{}/", dir.trim_end_matches('/'));
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == dir || p.starts_with(&below))
        .map(str::to_owned)
        .collect()
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
