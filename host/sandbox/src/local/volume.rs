//! Per-session disk quota: each workspace lives on its own ext4 filesystem in
//! a sparse image file (`<state>/disks/<session>.img`, created at the quota's
//! size on first claim), loop-mounted by the (root) server at
//! `<state>/volumes/<session>` while a sandbox of the session runs. The mount
//! holds the workspace (`workspace/`, bound at `/workspace`) and the sandbox's
//! writable `/tmp` (`tmp/`, emptied at each claim), so the filesystem itself
//! answers `ENOSPC` at the quota: no polling, and the host's disk holds at
//! most the image's size per session. The image outlives the mount (stop,
//! idle release, server restart) and goes with the session.
//!
//! The warm pool makes volumes ahead of demand ([`Volumes::provision`]):
//! `pool.<sandbox>` (a `.` is never in a session id), formatted, mounted and
//! owned by the pooled sandbox's uid. A new session's claim adopts one
//! ([`Volumes::adopt`]): its image and mount are renamed to the session's,
//! so no mkfs or loop mount runs on the claim's path.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use nix::errno::Errno;
use nix::mount::MntFlags;
use tracing::warn;

/// The quota machinery of one driver.
#[derive(Debug)]
pub struct Volumes {
    disks: PathBuf,
    mounts: PathBuf,
    /// Size of new images; `None` when the quota is off and this only
    /// serves the images made while it was on.
    bytes: Option<u64>,
    mkfs: PathBuf,
    mount: PathBuf,
    /// The volumes this server has mounted, by session. Also serializes
    /// mount and unmount.
    users: Mutex<HashMap<String, InUse>>,
}

/// A volume this server has mounted.
#[derive(Debug)]
struct InUse {
    /// Sandboxes using it: the last one out unmounts.
    sandboxes: usize,
    /// `volumes/<session>.lock`, `flock`ed while mounted here: another
    /// server on the host sharing the state dir neither mounts it too nor
    /// sweeps it away.
    lock: Option<File>,
}

/// Smallest quota: ext4 with a journal needs a few MiB of its own.
pub const MIN_BYTES: u64 = 16 << 20;

/// Names of pooled volumes start with this; session ids have no `.`.
const POOLED_PREFIX: &str = "pool.";

fn is_pooled(name: &str) -> bool {
    name.starts_with(POOLED_PREFIX)
}

/// How a claim from the pool gets its workspace volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromPool {
    /// Adopt the pooled sandbox's fresh volume: the common case, a new session.
    Adopt,
    /// Mount the session's own (`attach`), as a cold claim does, in place of
    /// the pooled volume, which is discarded.
    Attach,
}

/// A claim from the pool adopts the pooled volume only for a new session
/// (no workspace yet: not a resume, not a restart, not a plain directory
/// made before the quota) asking for the pooled size; a resumed session
/// keeps its own image, a session asking for another size gets an image of
/// that size.
pub(crate) fn from_pool(pooled_bytes: Option<u64>, requested: Option<u64>, has_workspace: bool) -> FromPool {
    match pooled_bytes {
        Some(b) if !has_workspace && requested.is_none_or(|r| r == b) => FromPool::Adopt,
        _ => FromPool::Attach,
    }
}

fn find_tool(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("`{name}` was not found (looked on PATH, /usr/sbin, /sbin)"))
}

impl Volumes {
    /// Check that images can be made and mounted here: root, loop devices,
    /// `mkfs.ext4` (e2fsprogs) and `mount` (util-linux). The error says what
    /// is missing.
    pub fn probe(state_dir: &Path, bytes: Option<u64>) -> Result<Volumes, String> {
        if let Some(bytes) = bytes
            && bytes < MIN_BYTES
        {
            return Err(format!("the workspace quota must be at least {MIN_BYTES} bytes (16 MiB), got {bytes}"));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err("the server is not root, so it cannot loop-mount workspace images".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no loop devices (/dev/loop-control is missing; `modprobe loop`, or give the \
                        container access to loop devices)"
                .into());
        }
        let mkfs = find_tool("mkfs.ext4").map_err(|e| format!("{e}; install e2fsprogs"))?;
        let mount = find_tool("mount").map_err(|e| format!("{e}; install util-linux (mount)"))?;
        Ok(Volumes {
            disks: state_dir.join("disks"),
            mounts: state_dir.join("volumes"),
            bytes,
            mkfs,
            mount,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Create the state sub-directories.
    pub fn prepare(&self) -> anyhow::Result<()> {
        for (d, mode) in [(&self.disks, 0o700), (&self.mounts, 0o711)] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", d.display()))?;
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        match self.bytes {
            Some(b) => {
                format!("ext4 image per workspace, {} MiB each, loop-mounted ({})", b >> 20, self.mkfs.display())
            }
            None => "off for new workspaces; existing workspace images are still mounted".into(),
        }
    }

    /// Whether new workspaces get an image.
    pub fn creates(&self) -> bool {
        self.bytes.is_some()
    }

    /// Whether `state_dir` holds workspace images (made while the quota was
    /// on). A pooled volume's is no workspace's.
    pub fn any_image(state_dir: &Path) -> bool {
        std::fs::read_dir(state_dir.join("disks")).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                e.path().extension().is_some_and(|x| x == "img") && !is_pooled(&e.file_name().to_string_lossy())
            })
        })
    }

    pub fn image(&self, session: &str) -> PathBuf {
        self.disks.join(format!("{session}.img"))
    }

    pub fn mount_point(&self, session: &str) -> PathBuf {
        self.mounts.join(session)
    }

    /// The workspace directory inside the (mounted) volume.
    pub fn workspace(&self, session: &str) -> PathBuf {
        self.mount_point(session).join("workspace")
    }

    /// The sandbox's `/tmp` inside the (mounted) volume.
    pub fn tmp(&self, session: &str) -> PathBuf {
        self.mount_point(session).join("tmp")
    }

    pub fn exists(&self, session: &str) -> bool {
        self.image(session).is_file()
    }

    /// Mount the session's volume (creating its image on first use, of
    /// `size` bytes or else the configured quota) for one more sandbox, with
    /// `tmp/` emptied when this is its first user. An existing image keeps
    /// its size. Blocking.
    pub fn attach(self: &Arc<Self>, session: &str, size: Option<u64>) -> anyhow::Result<VolumeGuard> {
        let mut users = self.users.lock().map_err(|_| anyhow!("volume table poisoned"))?;
        if let Some(u) = users.get_mut(session) {
            u.sandboxes += 1;
            return Ok(VolumeGuard { volumes: Some(self.clone()), session: session.to_owned() });
        }
        // Held by another server on this host: a node that lost the session
        // (paused, fenced) may still have it mounted. Its mount is the one
        // kernel mount, so the new owner uses it as is; a volume held but not
        // mounted is refused (never mounted twice).
        let lock = self.lock(session, LOCK_PATIENCE)?;
        if lock.is_none() && !is_mount_point(&self.mount_point(session))? {
            bail!("the workspace of session {session} is in use by another Bridle server on this host");
        }
        if lock.is_none() {
            warn!(
                session,
                "workspace volume held by another server on this host (it lost the session); using its mount"
            );
        }
        {
            let img = self.image(session);
            if !img.is_file() {
                let bytes =
                    size.or(self.bytes).ok_or_else(|| anyhow!("no workspace image {} to mount", img.display()))?;
                self.create_image(&img, bytes)?;
            }
            let mp = self.mount_point(session);
            match std::fs::create_dir(&mp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("create {}", mp.display())),
            }
            // Still mounted after a crash or restart of the server: reuse it.
            if !is_mount_point(&mp)? {
                self.mount_image(&img, &mp)?;
            }
            std::fs::set_permissions(&mp, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("chmod {}", mp.display()))?;
            let ws = mp.join("workspace");
            match std::fs::create_dir(&ws) {
                Ok(()) => std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o700))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("create {}", ws.display())),
            }
            let tmp = mp.join("tmp");
            match std::fs::remove_dir_all(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("empty {}", tmp.display())),
            }
            std::fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        }
        users.insert(session.to_owned(), InUse { sandboxes: 1, lock });
        Ok(VolumeGuard { volumes: Some(self.clone()), session: session.to_owned() })
    }

    /// Take the session's volume lock; `None` when another process holds it.
    fn lock(&self, session: &str, patience: std::time::Duration) -> anyhow::Result<Option<File>> {
        crate::lockfile::try_lock(&self.mounts.join(format!("{session}.lock")), patience)
    }

    /// Unmount the volumes a dead server left mounted (killed, crashed):
    /// each one whose lock nobody holds. Their images stay, but for pooled
    /// volumes' (no session's), which go too, mounted or not. Blocking.
    pub fn sweep(&self) -> anyhow::Result<usize> {
        let _users = self.users.lock().map_err(|_| anyhow!("volume table poisoned"))?;
        let mut swept = 0;
        let entries = std::fs::read_dir(&self.mounts).with_context(|| format!("list {}", self.mounts.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lock") || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // At start-up nothing here forks yet: a held lock is another server's.
            let Some(lock) = self.lock(&name, std::time::Duration::ZERO)? else { continue };
            let mp = e.path();
            if is_mount_point(&mp)? {
                swept += 1;
            }
            unmount(&mp)?;
            if is_pooled(&name) {
                self.remove_pooled(&name, lock)?;
            }
        }
        // Pooled images a dead server made but had not mounted yet (or whose
        // mount point is gone).
        let disks = std::fs::read_dir(&self.disks).with_context(|| format!("list {}", self.disks.display()))?;
        for e in disks.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".img.new").or_else(|| file.strip_suffix(".img")) else { continue };
            if !is_pooled(name) || self.mount_point(name).exists() {
                continue;
            }
            let Some(lock) = self.lock(name, std::time::Duration::ZERO)? else { continue };
            self.remove_pooled(name, lock)?;
        }
        Ok(swept)
    }

    /// Remove an unmounted pooled volume's image (and one half made) and its
    /// lock file, then let go of the lock.
    fn remove_pooled(&self, name: &str, lock: File) -> anyhow::Result<()> {
        let img = self.image(name);
        for f in [img.with_extension("img.new"), img, self.mounts.join(format!("{name}.lock"))] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("remove {}", f.display())),
            }
        }
        drop(lock);
        Ok(())
    }

    /// Make a volume for the pooled sandbox `sandbox` ahead of demand: a
    /// fresh image of the configured quota, mounted, with `workspace/` and
    /// `tmp/` owned by `uid`. Blocking (mkfs, mount): the pool's task runs it,
    /// never a claim.
    pub fn provision(self: &Arc<Self>, sandbox: &str, uid: u32) -> anyhow::Result<PooledVolume> {
        let bytes = self.bytes.ok_or_else(|| anyhow!("the workspace quota is off: no volume to provision"))?;
        let name = format!("{POOLED_PREFIX}{sandbox}");
        // Held from before the image exists, so that no other server sweeps it.
        let lock = self
            .lock(&name, std::time::Duration::ZERO)?
            .ok_or_else(|| anyhow!("the pooled volume {name} is locked by another process"))?;
        // From here on, its drop removes whatever was made.
        let pv = PooledVolume { volumes: self.clone(), name, bytes, lock: Some(lock) };
        let mp = self.mount_point(&pv.name);
        self.create_image(&self.image(&pv.name), bytes)?;
        std::fs::create_dir(&mp).with_context(|| format!("create {}", mp.display()))?;
        self.mount_image(&self.image(&pv.name), &mp)?;
        std::fs::set_permissions(&mp, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("chmod {}", mp.display()))?;
        for d in [pv.workspace(), pv.tmp()] {
            std::fs::create_dir(&d).with_context(|| format!("create {}", d.display()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).with_context(|| format!("chown {}", d.display()))?;
        }
        Ok(pv)
    }

    /// Make the pooled volume `pv` the new session `session`'s: its image
    /// becomes `disks/<session>.img` (never replacing one), its mount
    /// `volumes/<session>` (a bind of the mounted filesystem, the pooled
    /// mount point then detached: a mount point cannot be renamed), its lock
    /// the session's. No mkfs, no loop mount. On failure `pv` comes back
    /// (the caller discards it once nothing uses it); a failure after the
    /// rename leaves the session a fresh, unmounted image, which a later
    /// claim mounts. Blocking, but only a few syscalls; the pooled mount
    /// point's detach (an unmount waits for an RCU grace period: milliseconds
    /// on a loaded host) is left to the returned [`PooledLeftover`]'s drop,
    /// for the caller to run off the claim's path.
    pub fn adopt(
        self: &Arc<Self>,
        mut pv: PooledVolume,
        session: &str,
    ) -> Result<(VolumeGuard, PooledLeftover), AdoptError> {
        let fail = |pv: PooledVolume, error: anyhow::Error| AdoptError { pooled: pv, error };
        let mut users = match self.users.lock() {
            Ok(u) => u,
            Err(_) => return Err(fail(pv, anyhow!("volume table poisoned"))),
        };
        if users.contains_key(session) {
            return Err(fail(pv, anyhow!("the workspace of session {session} is already mounted")));
        }
        let lock = match self.lock(session, std::time::Duration::ZERO) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let e = anyhow!("the workspace of session {session} is in use by another Bridle server on this host");
                return Err(fail(pv, e));
            }
            Err(e) => return Err(fail(pv, e)),
        };
        let (from, to) = (self.mount_point(&pv.name), self.mount_point(session));
        let moved = (|| -> anyhow::Result<()> {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &self.image(&pv.name),
                nix::fcntl::AT_FDCWD,
                &self.image(session),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .with_context(|| format!("rename the pooled image to {}", self.image(session).display()))?;
            match std::fs::create_dir(&to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    anyhow::ensure!(!is_mount_point(&to)?, "{} is mounted already", to.display());
                }
                Err(e) => return Err(e).with_context(|| format!("create {}", to.display())),
            }
            nix::mount::mount(Some(&from), &to, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
                .with_context(|| format!("mount {} onto {}", from.display(), to.display()))?;
            Ok(())
        })();
        if let Err(e) = moved {
            return Err(fail(pv, e));
        }
        users.insert(session.to_owned(), InUse { sandboxes: 1, lock: Some(lock) });
        let leftover = PooledLeftover {
            mount_point: from,
            lock_file: self.mounts.join(format!("{}.lock", pv.name)),
            lock: pv.lock.take(),
        };
        Ok((VolumeGuard { volumes: Some(self.clone()), session: session.to_owned() }, leftover))
    }

    fn create_image(&self, img: &Path, bytes: u64) -> anyhow::Result<()> {
        // Built under a temporary name, so a crash never leaves a half-made image.
        let tmp = img.with_extension("img.new");
        let _ = std::fs::remove_file(&tmp);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        f.set_len(bytes).with_context(|| format!("size {}", tmp.display()))?;
        drop(f);
        let out = Command::new(&self.mkfs)
            .args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0"])
            .arg(&tmp)
            .output()
            .with_context(|| format!("run {}", self.mkfs.display()))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "{} {} failed ({}): {}",
                self.mkfs.display(),
                tmp.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::rename(&tmp, img).with_context(|| format!("rename to {}", img.display()))
    }

    fn mount_image(&self, img: &Path, mp: &Path) -> anyhow::Result<()> {
        // `mount -o loop` finds a free loop device and marks it autoclear,
        // so unmounting frees it; `noinit_itable` keeps the kernel from
        // zeroing the lazily made inode tables in the background (host disk).
        let out = Command::new(&self.mount)
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noatime,noinit_itable"])
            .arg(img)
            .arg(mp)
            .output()
            .with_context(|| format!("run {}", self.mount.display()))?;
        if !out.status.success() {
            bail!(
                "mounting the workspace image {} on {} failed ({}): {}",
                img.display(),
                mp.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn detach(&self, session: &str) {
        let Ok(mut users) = self.users.lock() else { return };
        let Some(u) = users.get_mut(session) else { return };
        if u.sandboxes > 1 {
            u.sandboxes -= 1;
            return;
        }
        // A mount borrowed from another server on this host is unmounted
        // only once that server has let go of it (its lock is free).
        let lock = match u.lock.take() {
            Some(l) => Some(l),
            None => self.lock(session, std::time::Duration::ZERO).ok().flatten(),
        };
        if lock.is_some()
            && let Err(e) = unmount(&self.mount_point(session))
        {
            warn!(session, error = %format!("{e:#}"), "could not unmount the workspace volume");
        }
        // Drops the lock, after the unmount.
        users.remove(session);
        drop(lock);
    }

    /// Remove the session's volume (its sandbox released first). Fails while a
    /// sandbox of the session still uses it.
    pub fn delete(&self, session: &str) -> anyhow::Result<()> {
        let users = self.users.lock().map_err(|_| anyhow!("volume table poisoned"))?;
        if users.contains_key(session) {
            bail!("the workspace of session {session} is still in use");
        }
        let Some(_lock) = self.lock(session, LOCK_PATIENCE)? else {
            bail!("the workspace of session {session} is in use by another Bridle server on this host");
        };
        unmount(&self.mount_point(session))?;
        let img = self.image(session);
        match std::fs::remove_file(&img) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", img.display())),
        }
        let _ = std::fs::remove_file(self.mounts.join(format!("{session}.lock")));
        Ok(())
    }

    /// Make, mount, write to and remove a small image: what `bridle doctor`
    /// runs to show the mechanism works here.
    pub fn trial(&self) -> anyhow::Result<()> {
        let trial = Arc::new(Volumes { bytes: Some(MIN_BYTES), ..self.clone_paths() });
        trial.prepare()?;
        let name = format!("doctor-trial-{}", std::process::id());
        let guard = trial.attach(&name, None)?;
        std::fs::write(trial.workspace(&name).join("probe"), b"ok").context("write to the trial volume")?;
        drop(guard);
        trial.delete(&name)
    }

    fn clone_paths(&self) -> Volumes {
        Volumes {
            disks: self.disks.clone(),
            mounts: self.mounts.clone(),
            bytes: self.bytes,
            mkfs: self.mkfs.clone(),
            mount: self.mount.clone(),
            users: Mutex::new(HashMap::new()),
        }
    }
}

/// Whether `p` is the root of a mounted filesystem (its device differs from
/// its parent's).
fn is_mount_point(p: &Path) -> anyhow::Result<bool> {
    let md = std::fs::symlink_metadata(p).with_context(|| format!("stat {}", p.display()))?;
    let parent = p.parent().ok_or_else(|| anyhow!("{} has no parent", p.display()))?;
    let pmd = std::fs::metadata(parent).with_context(|| format!("stat {}", parent.display()))?;
    Ok(md.dev() != pmd.dev())
}

/// Unmount `mp` if mounted (retrying while the last processes of a released
/// sandbox let go, then detaching lazily) and remove the mount point.
fn unmount(mp: &Path) -> anyhow::Result<()> {
    if !mp.exists() {
        return Ok(());
    }
    if is_mount_point(mp)? {
        let mut done = false;
        for _ in 0..100 {
            match nix::mount::umount2(mp, MntFlags::empty()) {
                Ok(()) | Err(Errno::EINVAL) => {
                    done = true;
                    break;
                }
                Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e).with_context(|| format!("unmount {}", mp.display())),
            }
        }
        if !done {
            warn!(mount = %mp.display(), "workspace volume still busy after 2 s: detaching it lazily");
            nix::mount::umount2(mp, MntFlags::MNT_DETACH).with_context(|| format!("detach {}", mp.display()))?;
        }
    }
    match std::fs::remove_dir(mp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", mp.display())),
    }
}

/// How long a volume lock that looks held is retried (see `Volumes::lock`).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// A volume made ahead of demand for a pooled sandbox ([`Volumes::provision`]):
/// dropping it unadopted unmounts it and removes its image (blocking).
#[derive(Debug)]
pub struct PooledVolume {
    volumes: Arc<Volumes>,
    name: String,
    bytes: u64,
    /// `None` once adopted: the session owns the volume.
    lock: Option<File>,
}

impl PooledVolume {
    /// Its size (the quota it was made with).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its `workspace/`, bound at `/workspace` in the pooled sandbox.
    pub fn workspace(&self) -> PathBuf {
        self.volumes.workspace(&self.name)
    }

    /// Its `tmp/`, bound at `/tmp` in the pooled sandbox.
    pub fn tmp(&self) -> PathBuf {
        self.volumes.tmp(&self.name)
    }
}

impl Drop for PooledVolume {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        let removed =
            unmount(&self.volumes.mount_point(&self.name)).and_then(|()| self.volumes.remove_pooled(&self.name, lock));
        if let Err(e) = removed {
            warn!(volume = %self.name, error = %format!("{e:#}"), "could not remove a pooled workspace volume");
        }
    }
}

/// What an adopted pooled volume leaves: its mount point, a second mount of
/// the session's filesystem now. Dropping it detaches that (nothing uses it:
/// the sandbox's binds are of the filesystem, not of this mount), removes
/// it and the pooled lock file, then lets go of the lock, which until then
/// keeps another server's sweep off it. Blocking.
#[derive(Debug)]
pub struct PooledLeftover {
    mount_point: PathBuf,
    lock_file: PathBuf,
    lock: Option<File>,
}

impl Drop for PooledLeftover {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.mount_point, MntFlags::MNT_DETACH) {
            warn!(mount = %self.mount_point.display(), error = %e, "could not detach an adopted pooled volume's mount point");
        }
        let _ = std::fs::remove_dir(&self.mount_point);
        let _ = std::fs::remove_file(&self.lock_file);
        self.lock.take();
    }
}

/// [`Volumes::adopt`] failed; the pooled volume is handed back.
#[derive(Debug)]
pub struct AdoptError {
    pub pooled: PooledVolume,
    pub error: anyhow::Error,
}

/// One sandbox's use of a mounted volume; dropping it may unmount (blocking).
#[derive(Debug)]
pub struct VolumeGuard {
    volumes: Option<Arc<Volumes>>,
    session: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        if let Some(v) = self.volumes.take() {
            v.detach(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_adopts_the_pooled_volume_only_for_a_new_session_of_the_pooled_size() {
        const Q: u64 = 4 << 30;
        for (pooled, requested, has_workspace, expect, why) in [
            (Some(Q), None, false, FromPool::Adopt, "a new session, the default size"),
            (Some(Q), Some(Q), false, FromPool::Adopt, "a new session asking for the pooled size"),
            (Some(Q), None, true, FromPool::Attach, "a resumed session keeps its own image"),
            (Some(Q), Some(Q), true, FromPool::Attach, "resumed, whatever size it asks for"),
            (Some(Q), Some(64 << 20), false, FromPool::Attach, "another size gets an image of its own"),
            (None, None, false, FromPool::Attach, "no pooled volume (quota off)"),
        ] {
            assert_eq!(from_pool(pooled, requested, has_workspace), expect, "{why}");
        }
    }

    #[test]
    fn pooled_volume_names_never_collide_with_a_session_id() {
        assert!(is_pooled("pool.sbx_0123"));
        // Session ids are [A-Za-z0-9_-]: never a `.`.
        assert!(!crate::workspace::valid_session_id("pool.sbx_0123"));
        assert!(!is_pooled("pool-sbx_0123"));
        assert!(!is_pooled("sess_pool."));
    }
}
