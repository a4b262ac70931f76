//! Host-wide leases held as `flock`ed lock files (sandbox uids, workspace
//! volumes): the kernel drops a lock when its holder exits, so a crashed
//! server leaves no stale lease.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Take the exclusive lock of `path` (created 0600, never through a
/// symlink); `None` when another open file description holds it after
/// `patience`. A process this server forks (a sandbox starting on another
/// thread) holds a copy of the descriptor, and so the lock, until it execs:
/// a lock released here a moment ago can look held for that long.
pub(crate) fn try_lock(path: &Path, patience: Duration) -> anyhow::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("open lock file {}", path.display()))?;
    let deadline = Instant::now() + patience;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
    }
}
