//! Host uid leases. A uid is in use while a lock file for it
//! (`<dir>/<uid>`, `flock`ed exclusively) is held open: every server on the
//! host shares the directory, so two servers never run two sandboxes (or a
//! sandbox and a resident runtime) as the same uid, whatever ranges they were
//! given. The kernel drops the lock when its holder exits, so a crashed
//! server leaves no stale lease.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

use crate::error::{Result, SandboxError};

/// The host-wide lock directory (a tmpfs on most systems: emptied at boot).
pub const DEFAULT_LOCK_DIR: &str = "/run/bridle/uids";

/// Uids the resident runtimes of a server run as (one per resident
/// process): just below the default sandbox range, and leased through the
/// same lock directory, so never shared with a sandbox or another server.
pub const RESIDENT_UIDS: Range<u32> = 599_900..600_000;

/// One leased uid; the lease ends when this is dropped.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    _lock: File,
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

/// A range of host uids leased through a lock directory.
#[derive(Debug)]
pub struct UidPool {
    dir: PathBuf,
    range: Range<u32>,
    /// Where the next scan starts: spreads leases over the range so a
    /// released uid is not handed out again at once.
    cursor: AtomicU32,
}

impl UidPool {
    /// The pool of `range`, creating the lock directory (0700) if needed.
    pub fn new(dir: &Path, range: Range<u32>) -> Result<Self> {
        if range.is_empty() {
            return Err(SandboxError::Invalid("the sandbox uid range is empty".into()));
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create uid lock dir {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod uid lock dir {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), cursor: AtomicU32::new(range.start), range })
    }

    /// Lease `prefer` when it is in the range and free (a workspace already
    /// owned by it needs no chown), else the next free uid of the range.
    pub fn lease(&self, prefer: Option<u32>) -> Result<UidLease> {
        if let Some(p) = prefer.filter(|p| self.range.contains(p))
            && let Some(l) = self.try_lease(p)?
        {
            return Ok(l);
        }
        let len = self.range.end - self.range.start;
        let start = self.cursor.load(Ordering::Relaxed).clamp(self.range.start, self.range.end - 1) - self.range.start;
        for i in 0..len {
            let uid = self.range.start + (start + i) % len;
            if let Some(l) = self.try_lease(uid)? {
                self.cursor.store(uid.saturating_add(1), Ordering::Relaxed);
                return Ok(l);
            }
        }
        Err(SandboxError::Exhausted(len as usize))
    }

    fn try_lease(&self, uid: u32) -> Result<Option<UidLease>> {
        // A uid that looks held is skipped, not waited for.
        let lock = crate::lockfile::try_lock(&self.dir.join(uid.to_string()), std::time::Duration::ZERO)?;
        Ok(lock.map(|file| UidLease { uid, _lock: file }))
    }
}

/// Lease a dedicated uid for a resident runtime process (see [`RESIDENT_UIDS`]).
pub fn lease_resident_uid() -> Result<UidLease> {
    UidPool::new(Path::new(DEFAULT_LOCK_DIR), RESIDENT_UIDS)?.lease(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_exclusive_across_pools_and_return_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = UidPool::new(dir.path(), 100..103).unwrap();
        let b = UidPool::new(dir.path(), 100..103).unwrap();
        let l1 = a.lease(None).unwrap();
        let l2 = b.lease(None).unwrap();
        let l3 = b.lease(Some(l1.uid())).unwrap();
        let mut uids = vec![l1.uid(), l2.uid(), l3.uid()];
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 3, "{uids:?}");
        assert!(matches!(a.lease(None), Err(SandboxError::Exhausted(3))));
        let freed = l2.uid();
        drop(l2);
        assert_eq!(a.lease(Some(freed)).unwrap().uid(), freed);
    }

    #[test]
    fn resident_uids_are_their_own() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (the host-wide lock dir)");
            return;
        }
        let a = lease_resident_uid().unwrap();
        let b = lease_resident_uid().unwrap();
        for l in [&a, &b] {
            assert!(RESIDENT_UIDS.contains(&l.uid()) && l.uid() != 65534, "{}", l.uid());
        }
        assert_ne!(a.uid(), b.uid());
        // A sandbox pool over the same uids cannot take a resident's.
        let sandboxes = UidPool::new(Path::new(DEFAULT_LOCK_DIR), a.uid()..a.uid() + 1).unwrap();
        assert!(matches!(sandboxes.lease(Some(a.uid())), Err(SandboxError::Exhausted(1))));
    }

    #[test]
    fn prefers_a_free_uid_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = UidPool::new(dir.path(), 10..20).unwrap();
        assert_eq!(p.lease(Some(15)).unwrap().uid(), 15);
        let out_of_range = p.lease(Some(5)).unwrap().uid();
        assert!((10..20).contains(&out_of_range));
    }
}
