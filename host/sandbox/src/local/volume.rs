//! Per-session disk quota: each workspace lives on its own ext4 filesystem in
//! a sparse image file (`<state>/disks/<session>.img`, created at the quota's
//! size on first claim), loop-mounted by the (root) server at
//! `<state>/volumes/<session>` while a sandbox of the session runs. The mount
//! holds the workspace (`workspace/`, bound at `/workspace`) and the sandbox's
//! writable `/tmp` (`tmp/`, emptied at each claim), so the filesystem itself
//! answers `ENOSPC` at the quota: no polling, and the host's disk holds at
//! most the image's size per session. The image outlives the mount (stop,
//! idle release, server restart) and goes with the session.

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

    /// Whether `state_dir` holds workspace images (made while the quota was on).
    pub fn any_image(state_dir: &Path) -> bool {
        std::fs::read_dir(state_dir.join("disks"))
            .is_ok_and(|rd| rd.flatten().any(|e| e.path().extension().is_some_and(|x| x == "img")))
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
    /// each one whose lock nobody holds. Their images stay. Blocking.
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
            let Some(_lock) = self.lock(&name, std::time::Duration::ZERO)? else { continue };
            let mp = e.path();
            if is_mount_point(&mp)? {
                swept += 1;
            }
            unmount(&mp)?;
        }
        Ok(swept)
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
