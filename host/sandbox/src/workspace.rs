//! A session's workspace on the host, the same for every driver: where it
//! lives (on its quota volume, or a plain directory), opening it for a
//! claim (mounting the volume, with the guard that keeps it mounted),
//! giving it to the sandbox's host uid, whether it exists, deleting it; and
//! the state dir's layout a driver starts with.
//!
//! A workspace is on a volume when it has an image, or when it is new and
//! the quota is on ([`placement`]); a plain directory made before the quota
//! was turned on stays one, unlimited.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tracing::{info, warn};

use crate::error::{Result, SandboxError};
use crate::local::chown::chown_tree;
use crate::local::volume::{MIN_BYTES, VolumeGuard, Volumes};
use crate::local::{self, LocalConfig};
use crate::spec::SandboxSpec;

/// Where a session's workspace is (to be) kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On its own quota volume (an ext4 image, loop-mounted while in use).
    Volume,
    /// A plain directory under `workspaces/`.
    Plain,
}

/// Where a session's workspace is: `image` (it has a volume image),
/// `quota_on` (new workspaces get one), `plain_dir` (it has a plain
/// directory, made before the quota was turned on).
pub(crate) fn placement(image: bool, quota_on: bool, plain_dir: bool) -> Placement {
    if image || (quota_on && !plain_dir) { Placement::Volume } else { Placement::Plain }
}

/// Whether a claim may ask for a workspace of `requested` bytes when the
/// driver's quota is `quota_on`.
pub(crate) fn check_bytes(requested: Option<u64>, quota_on: bool) -> Result<()> {
    let Some(bytes) = requested else { return Ok(()) };
    if bytes < MIN_BYTES {
        return Err(SandboxError::Invalid(format!(
            "the workspace quota must be at least {MIN_BYTES} bytes (16 MiB), got {bytes}"
        )));
    }
    if !quota_on {
        return Err(SandboxError::Invalid(
            "this driver runs without a workspace quota (`workspace_quota = None`), so it cannot give a session \
             one of its own"
                .into(),
        ));
    }
    Ok(())
}

/// A session id is a path component on the host: refuse anything else.
pub(crate) fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`valid_session_id`] as the error a claim returns.
pub(crate) fn check_session_id(id: &str) -> Result<()> {
    if valid_session_id(id) {
        Ok(())
    } else {
        Err(SandboxError::Invalid(format!("session id {id:?} must match [A-Za-z0-9_-]{{1,128}}")))
    }
}

/// Where a session's writable data lives, opened for one sandbox.
pub(crate) struct Workspace {
    /// Bound at `/workspace`.
    pub dir: PathBuf,
    /// Bound at `/tmp` when on the quota volume (else `/tmp` is a tmpfs).
    pub tmp: Option<PathBuf>,
    /// Keeps the volume mounted while the sandbox runs.
    pub volume: Option<VolumeGuard>,
}

/// The workspaces of one driver.
pub(crate) struct Workspaces {
    state_dir: PathBuf,
    /// The quota machinery: on, or serving the images made while it was.
    volumes: Option<Arc<Volumes>>,
    /// Whether workspaces are given to the sandbox's uid (root only).
    chown: bool,
}

impl Workspaces {
    /// The driver's workspaces under `cfg.state_dir`, with the quota it
    /// asks for. Fails with [`SandboxError::Unavailable`] when the quota (or
    /// the images of an earlier quota) cannot be served here.
    pub fn new(cfg: &LocalConfig, root: bool) -> Result<Self> {
        let volumes = match cfg.workspace_quota {
            Some(bytes) => Some(Arc::new(Volumes::probe(&cfg.state_dir, Some(bytes)).map_err(|why| {
                SandboxError::Unavailable(format!(
                    "the workspace disk quota ({} MiB per session) cannot be enforced here: {why}. Fix that, \
                     or choose to run without a disk quota (`sessions.sandbox_disk_bytes = 0` in Bridle's \
                     config; `LocalConfig::workspace_quota = None`)",
                    bytes >> 20
                ))
            })?)),
            // Quota off, but workspaces made while it was on live in images:
            // keep mounting those.
            None if Volumes::any_image(&cfg.state_dir) => match Volumes::probe(&cfg.state_dir, None) {
                Ok(v) => Some(Arc::new(v)),
                Err(why) => {
                    return Err(SandboxError::Unavailable(format!(
                        "{} holds workspace images (made with a disk quota) that cannot be mounted here: {why}",
                        cfg.state_dir.join("disks").display()
                    )));
                }
            },
            None => None,
        };
        Ok(Self { state_dir: cfg.state_dir.clone(), volumes, chown: root })
    }

    /// The quota machinery, when on (or serving older images).
    pub fn volumes(&self) -> Option<&Arc<Volumes>> {
        self.volumes.as_ref()
    }

    /// Whether new workspaces get a quota volume.
    pub fn quota_on(&self) -> bool {
        self.volumes.as_ref().is_some_and(|v| v.creates())
    }

    /// Make the state dir's layout (`workspaces/`, `run/`) and clear what a
    /// killed server of this host left: its pooled-sandbox slots first
    /// (their binds hold workspace volumes busy), then its volumes.
    pub fn prepare_state_dir(&self, root: bool) -> Result<()> {
        let dir = &self.state_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("create state dir {}", dir.display()))?;
        local::mkdir_mode(dir, 0o711)?;
        if root {
            local::check_traversable(dir)?;
        }
        local::mkdir_mode(&dir.join("workspaces"), 0o711)?;
        local::mkdir_mode(&dir.join("run"), 0o711)?;
        if root {
            match crate::local::slot::sweep(dir) {
                0 => {}
                n => info!(servers = n, "removed pooled-sandbox slots left by a previous server"),
            }
        }
        if let Some(v) = &self.volumes {
            v.prepare().map_err(SandboxError::Other)?;
            // Volumes a killed or crashed server left mounted (loop devices
            // included) are released here; their workspaces stay.
            match v.sweep() {
                Ok(0) => {}
                Ok(n) => info!(volumes = n, "unmounted workspace volumes left by a previous server"),
                Err(e) => warn!(error = %format!("{e:#}"), "could not sweep stale workspace volumes"),
            }
        }
        Ok(())
    }

    /// Host path of a session's workspace (inside its mounted volume when
    /// on one: present only while a sandbox of the session runs).
    pub fn path(&self, session_id: &str) -> PathBuf {
        match self.volume_of(session_id) {
            Some(v) => v.workspace(session_id),
            None => self.plain(session_id),
        }
    }

    /// The volumes, when this session's workspace is (or is to be) on one.
    fn volume_of(&self, session_id: &str) -> Option<&Arc<Volumes>> {
        let v = self.volumes.as_ref()?;
        match placement(v.exists(session_id), v.creates(), self.plain(session_id).is_dir()) {
            Placement::Volume => Some(v),
            Placement::Plain => None,
        }
    }

    /// A workspace as a plain directory: without a quota, or made before the
    /// quota was turned on (kept as it is, unlimited).
    fn plain(&self, session_id: &str) -> PathBuf {
        self.state_dir.join("workspaces").join(session_id)
    }

    /// Check a claim's workspace size against the driver's quota.
    pub fn check_bytes(&self, spec: &SandboxSpec) -> Result<()> {
        check_bytes(spec.workspace_bytes, self.quota_on())
    }

    /// Make (or mount) the session's workspace: its directory, its volume's
    /// `tmp` when on a volume, and the guard that keeps the volume mounted.
    pub async fn open(&self, spec: &SandboxSpec) -> Result<Workspace> {
        Ok(match self.volume_of(&spec.session_id).cloned() {
            Some(v) => {
                let (v2, s, size) = (v.clone(), spec.session_id.clone(), spec.workspace_bytes);
                let guard = tokio::task::spawn_blocking(move || v2.attach(&s, size))
                    .await
                    .map_err(|e| anyhow!("volume task: {e}"))?
                    .map_err(SandboxError::Other)?;
                Workspace {
                    dir: v.workspace(&spec.session_id),
                    tmp: Some(v.tmp(&spec.session_id)),
                    volume: Some(guard),
                }
            }
            None => {
                if self.quota_on() {
                    warn!(session_id = %spec.session_id, "this workspace predates the disk quota: it stays a plain directory, without a quota");
                }
                let plain = self.plain(&spec.session_id);
                local::mkdir_mode(&plain, 0o700)?;
                Workspace { dir: plain, tmp: None, volume: None }
            }
        })
    }

    /// The host uid that owns an opened workspace (a sandbox uid lease
    /// prefers it: no chown then).
    pub fn owner(&self, ws: &Workspace) -> Result<u32> {
        Ok(std::fs::symlink_metadata(&ws.dir).with_context(|| format!("stat {}", ws.dir.display()))?.uid())
    }

    /// Give the workspace (and its `tmp`) to the sandbox's host uid, when
    /// `owner` is another (root only: otherwise every sandbox is the
    /// server's own uid).
    pub async fn give(&self, ws: &Workspace, owner: u32, uid: u32) -> Result<()> {
        if !self.chown {
            return Ok(());
        }
        if owner != uid {
            let dir = ws.dir.clone();
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid))
                .await
                .map_err(|e| anyhow!("chown task: {e}"))??;
        }
        if let Some(t) = &ws.tmp {
            std::os::unix::fs::chown(t, Some(uid), Some(uid)).with_context(|| format!("chown {}", t.display()))?;
        }
        Ok(())
    }

    /// Whether the session has a workspace (an image or a plain directory).
    pub fn exists(&self, session_id: &str) -> Result<bool> {
        if !valid_session_id(session_id) {
            return Err(SandboxError::Invalid(format!("bad session id {session_id:?}")));
        }
        let volume = self.volumes.as_ref().is_some_and(|v| v.exists(session_id));
        Ok(volume || self.plain(session_id).is_dir())
    }

    /// A resume needs the session's workspace.
    pub fn check_resumable(&self, session_id: &str) -> Result<()> {
        if self.exists(session_id)? {
            Ok(())
        } else {
            Err(SandboxError::Invalid(format!("session {session_id} has no workspace to resume")))
        }
    }

    /// Delete the session's workspace (its image and its plain directory).
    /// Its sandbox must be released first.
    pub async fn delete(&self, session_id: &str) -> Result<()> {
        if !valid_session_id(session_id) {
            return Err(SandboxError::Invalid(format!("bad session id {session_id:?}")));
        }
        if let Some(v) = self.volumes.clone() {
            let s = session_id.to_owned();
            tokio::task::spawn_blocking(move || v.delete(&s))
                .await
                .map_err(|e| anyhow!("volume task: {e}"))?
                .map_err(SandboxError::Other)?;
        }
        let p = self.plain(session_id);
        match tokio::fs::remove_dir_all(&p).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SandboxError::Other(anyhow::Error::from(e).context(format!("remove {}", p.display())))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_is_on_a_volume_when_it_has_an_image_or_is_new_under_the_quota() {
        use Placement::*;
        // (image, quota on, plain dir) -> placement
        let cases = [
            ((false, false, false), Plain),
            ((false, false, true), Plain),
            ((false, true, false), Volume),
            // Made before the quota was turned on: stays plain.
            ((false, true, true), Plain),
            // An image is served even with the quota off.
            ((true, false, false), Volume),
            ((true, false, true), Volume),
            ((true, true, false), Volume),
            ((true, true, true), Volume),
        ];
        for ((image, quota, plain), want) in cases {
            assert_eq!(placement(image, quota, plain), want, "image={image} quota={quota} plain={plain}");
        }
    }

    #[test]
    fn a_claims_workspace_size_needs_the_quota_and_at_least_the_minimum() {
        let cases: [(Option<u64>, bool, Option<&str>); 6] = [
            (None, false, None),
            (None, true, None),
            (Some(MIN_BYTES), true, None),
            (Some(1 << 30), true, None),
            (Some(MIN_BYTES - 1), true, Some("at least")),
            (Some(1 << 30), false, Some("without a workspace quota")),
        ];
        for (requested, quota, want) in cases {
            match (check_bytes(requested, quota), want) {
                (Ok(()), None) => {}
                (Err(SandboxError::Invalid(m)), Some(w)) => assert!(m.contains(w), "{requested:?} {quota}: {m}"),
                (got, want) => panic!("{requested:?} quota={quota}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn session_ids_are_one_safe_path_component() {
        for ok in ["a", "sesn_01-AB", &"x".repeat(128)] {
            assert!(check_session_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(matches!(check_session_id(bad), Err(SandboxError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn exists_and_delete_refuse_a_bad_session_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LocalConfig { state_dir: dir.path().to_path_buf(), workspace_quota: None, ..Default::default() };
        let ws = Workspaces::new(&cfg, false).expect("workspaces");
        assert!(matches!(ws.exists("../etc"), Err(SandboxError::Invalid(_))));
        assert!(!ws.exists("fresh").expect("exists"));
        std::fs::create_dir_all(dir.path().join("workspaces/fresh")).expect("mkdir");
        assert!(ws.exists("fresh").expect("exists"));
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert!(matches!(rt.block_on(ws.delete("a/b")), Err(SandboxError::Invalid(_))));
        rt.block_on(ws.delete("fresh")).expect("delete");
        assert!(!ws.exists("fresh").expect("exists"));
        rt.block_on(ws.delete("fresh")).expect("deleting what is gone is fine");
    }
}
