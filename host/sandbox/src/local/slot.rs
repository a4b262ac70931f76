//! The mount points of a pooled sandbox.
//!
//! A pooled sandbox boots before its session is known, so bubblewrap binds
//! empty *slot* directories at `/workspace` (and `/tmp` with the disk
//! quota). Each slot directory is first bound onto itself and made a shared
//! mount: the sandbox's copy of it is then a slave, so when the claim mounts
//! the session's workspace onto the slot on the host, the mount propagates
//! into the running sandbox (read and written as the sandbox's own uid, like
//! a direct bind). Nothing propagates back: the sandbox's side is a slave
//! and it holds no capabilities.
//!
//! With the disk quota, the pool's task fills the slot with a fresh pooled
//! volume ([`super::volume::PooledVolume`]) right after the boot; a new
//! session's claim adopts it as it is ([`Slot::adopt`]: no mount), any other
//! claim replaces it with the session's own ([`Slot::fill`]).
//!
//! Slots live under `<state_dir>/pool/<host>-<pid>/<sandbox>`: a server
//! sweeps the slots its dead predecessors on the same host left mounted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use tracing::warn;

/// One pooled sandbox's slot directories.
#[derive(Debug)]
pub(crate) struct Slot {
    dir: PathBuf,
    /// Bound at `/workspace`.
    pub ws: PathBuf,
    /// Bound at `/tmp` (with the disk quota, `/tmp` lives on the session's volume).
    pub tmp: Option<PathBuf>,
    filled: Mutex<Filled>,
}

/// What is mounted onto a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    Empty,
    /// A pooled volume, not a session's yet.
    Pooled,
    /// A session's directories (for good: a slot serves one session).
    Session,
}

/// `<state_dir>/pool/<host>-<pid>`: this process's slots.
pub(crate) fn own_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pool").join(format!("{}-{}", host_tag(), std::process::id()))
}

fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Unmount and remove the slots of processes of this host that are gone
/// (a killed server). Returns how many slot trees were removed.
pub(crate) fn sweep(state_dir: &Path) -> usize {
    let prefix = format!("{}-", host_tag());
    let Ok(entries) = std::fs::read_dir(state_dir.join("pool")) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for slot in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            remove_slot_dir(&slot.path());
        }
        if std::fs::remove_dir(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

impl Slot {
    /// Make the slot of sandbox `id` under `root`: `ws/` (and `tmp/`) owned
    /// by `uid` (the sandbox starts in `/workspace`), each a shared mount.
    pub fn create(root: &Path, id: &str, uid: u32, with_tmp: bool) -> anyhow::Result<Slot> {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        let slot =
            Slot { ws: dir.join("ws"), tmp: with_tmp.then(|| dir.join("tmp")), dir, filled: Mutex::new(Filled::Empty) };
        for p in std::iter::once(&slot.ws).chain(slot.tmp.as_ref()) {
            std::fs::create_dir(p).with_context(|| format!("create {}", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
            std::os::unix::fs::chown(p, Some(uid), Some(uid)).with_context(|| format!("chown {}", p.display()))?;
            mount(Some(p), p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .with_context(|| format!("bind {} onto itself", p.display()))?;
            mount(None::<&str>, p, None::<&str>, MsFlags::MS_SHARED, None::<&str>)
                .with_context(|| format!("make {} a shared mount", p.display()))?;
        }
        Ok(slot)
    }

    /// The directory holding `ws/` (and `tmp/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mount the session's workspace (and its volume's `tmp`) onto the slot,
    /// in place of a pooled volume if one is there: the running sandbox sees
    /// them at `/workspace` (and `/tmp`) at once.
    pub fn fill(&self, workspace: &Path, tmp: Option<&Path>) -> anyhow::Result<()> {
        let mut filled = self.filled.lock().map_err(|_| anyhow::anyhow!("slot lock poisoned"))?;
        let was = std::mem::replace(&mut *filled, Filled::Session);
        anyhow::ensure!(was != Filled::Session, "slot {} already holds a session", self.dir.display());
        match (tmp, &self.tmp) {
            (Some(_), None) => anyhow::bail!("the session has a volume /tmp but the pooled sandbox has a tmpfs"),
            (None, Some(_)) => anyhow::bail!("the session has no volume /tmp but the pooled sandbox expects one"),
            _ => {}
        }
        if was == Filled::Pooled {
            // Off the slot (and so out of the sandbox): the pooled volume's binds.
            for p in std::iter::once(&self.ws).chain(self.tmp.as_ref()) {
                umount2(p, MntFlags::MNT_DETACH)
                    .with_context(|| format!("unmount the pooled volume from {}", p.display()))?;
            }
        }
        bind(workspace, &self.ws)?;
        if let (Some(t), Some(slot)) = (tmp, &self.tmp) {
            bind(t, slot)?;
        }
        Ok(())
    }

    /// Mount a pooled volume's `workspace` and `tmp` onto the empty slot (the
    /// pool's task, after the boot).
    pub fn fill_pooled(&self, workspace: &Path, tmp: &Path) -> anyhow::Result<()> {
        let mut filled = self.filled.lock().map_err(|_| anyhow::anyhow!("slot lock poisoned"))?;
        anyhow::ensure!(*filled == Filled::Empty, "slot {} is not empty", self.dir.display());
        let slot_tmp = self.tmp.as_ref().ok_or_else(|| anyhow::anyhow!("a pooled volume needs a slot with /tmp"))?;
        *filled = Filled::Session; // until both binds are in: never adopted half-filled
        bind(workspace, &self.ws)?;
        bind(tmp, slot_tmp)?;
        *filled = Filled::Pooled;
        Ok(())
    }

    /// The pooled volume on the slot becomes the session's: nothing is
    /// mounted (its mounts are renamed on the host, see
    /// [`super::volume::Volumes::adopt`]).
    pub fn adopt(&self) -> anyhow::Result<()> {
        let mut filled = self.filled.lock().map_err(|_| anyhow::anyhow!("slot lock poisoned"))?;
        anyhow::ensure!(*filled == Filled::Pooled, "slot {} holds no pooled volume", self.dir.display());
        *filled = Filled::Session;
        Ok(())
    }

    /// Unmount everything from the slot and remove it. Call after the
    /// sandbox's processes are gone and before its workspace volume is
    /// detached (the binds hold the volume busy). Also done on drop; again
    /// is harmless.
    pub fn remove(&self) {
        remove_slot_dir(&self.dir);
    }
}

/// A slot whose boot was abandoned (the pool's task cancelled at shutdown)
/// or whose sandbox was dropped unreleased must not stay mounted.
impl Drop for Slot {
    fn drop(&mut self) {
        remove_slot_dir(&self.dir);
    }
}

/// Unmount a slot's mount points and remove its (then empty) directories.
/// Never recursive: were an unmount to fail, a recursive removal would go
/// into the session's workspace.
fn remove_slot_dir(dir: &Path) {
    for sub in ["ws", "tmp"] {
        let p = dir.join(sub);
        unmount_all(&p);
        match std::fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %p.display(), error = %e, "could not remove a pooled sandbox's slot"),
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn bind(src: &Path, dst: &Path) -> anyhow::Result<()> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("mount {} onto {}", src.display(), dst.display()))
}

/// Detach every mount stacked on `p` (the session's bind, then the slot's
/// own). Lazy: a sandbox still dying must not hold the claim or release up.
fn unmount_all(p: &Path) {
    for _ in 0..8 {
        match umount2(p, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return,
            Err(e) => {
                warn!(path = %p.display(), error = %e, "could not unmount a pooled sandbox's slot");
                return;
            }
        }
    }
}
