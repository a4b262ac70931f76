//! Read-only files placed by the host into a running sandbox.
//!
//! A file the sandbox's own user writes is a file it can `chmod` back to
//! writable, so the host writes it instead, root-owned (a uid the sandbox's
//! user namespace does not map), mode 0444:
//! * under `/mnt/session/uploads`, a host directory bound read-only into
//!   the sandbox: nothing there can be written, changed or removed by the
//!   agent;
//! * elsewhere (`/workspace`), through the sandbox's own view of its
//!   filesystem (`/proc/<pid>/root` of a process inside): the agent cannot
//!   write or `chmod` the file; it can remove it from its own directory.
//!
//! Every path component is opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS)` from a directory fd: the sandbox's files are the
//! agent's to shape, and a symlink it planted (`/workspace/in -> /etc`)
//! must never lead a root write out of the sandbox.

use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, anyhow};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::driver::BoxedRead;

/// A process inside the sandbox, whose root is the sandbox's root: a child
/// of the outer bubblewrap process.
pub(super) fn inner_pid(bwrap_pid: u32) -> anyhow::Result<u32> {
    let children = std::fs::read_to_string(format!("/proc/{bwrap_pid}/task/{bwrap_pid}/children"))
        .with_context(|| format!("listing the children of bubblewrap (pid {bwrap_pid})"))?;
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("bubblewrap (pid {bwrap_pid}) has no child process"))
}

fn resolve() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Open (making it, owned like its parent, when missing) the directory
/// `name` inside `parent`.
fn open_or_make_dir(parent: &OwnedFd, name: &str) -> anyhow::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(parent, name, flags, Mode::empty(), resolve()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(anyhow!("opening directory `{name}`: {e}")),
    }
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(anyhow!("making directory `{name}`: {e}")),
    }
    let owner = rustix::fs::fstat(parent).context("stat of a parent directory")?;
    let fd = rustix::fs::openat2(parent, name, flags, Mode::empty(), resolve())
        .map_err(|e| anyhow!("opening directory `{name}`: {e}"))?;
    // Made by root, owned like the directory it is in (the agent's, under
    // `/workspace`), so the agent can use the directories it asked for.
    rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(owner.st_uid)),
        Some(rustix::fs::Gid::from_raw(owner.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| anyhow!("owning directory `{name}`: {e}"))?;
    Ok(fd)
}

/// Create `path` (absolute, taken from the directory `root`) as a
/// new root-owned mode-0444 file, replacing what was there, and return it
/// open for writing.
pub(super) fn create(root: &Path, path: &str) -> anyhow::Result<std::fs::File> {
    let rel = path.strip_prefix('/').ok_or_else(|| anyhow!("`{path}` is not absolute"))?;
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((name, dirs)) = parts.split_last() else { return Err(anyhow!("`{path}` names no file")) };
    if parts.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(anyhow!("`{path}` is not a plain path"));
    }
    let mut dir: OwnedFd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("opening the sandbox's root {}", root.display()))?;
    for d in dirs {
        dir = open_or_make_dir(&dir, d).with_context(|| format!("placing {path}"))?;
    }
    match rustix::fs::unlinkat(&dir, *name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir(&dir, name) => {
            return Err(anyhow!("{path} is a directory"));
        }
        Err(e) => return Err(anyhow!("replacing {path}: {e}")),
    }
    let fd = rustix::fs::openat2(
        &dir,
        *name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
        resolve(),
    )
    .map_err(|e| anyhow!("creating {path}: {e}"))?;
    // The mode is 0444 whatever the umask says.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o444)).map_err(|e| anyhow!("mode of {path}: {e}"))?;
    Ok(std::fs::File::from(fd))
}

fn is_dir(dir: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory)
}

/// Place `content` at `path` (absolute) under the host directory `root`.
pub(crate) async fn place(root: std::path::PathBuf, path: &str, mut content: BoxedRead) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let owned = path.to_owned();
    let file = tokio::task::spawn_blocking(move || create(&root, &owned)).await.context("placing a file")??;
    let mut file = tokio::fs::File::from_std(file);
    tokio::io::copy(&mut content, &mut file).await.with_context(|| format!("writing {path}"))?;
    file.flush().await.with_context(|| format!("writing {path}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a directory standing in for a sandbox root: directories are
    /// made, the file is replaced and mode 0444, a planted symlink is
    /// refused and nothing is written through it.
    #[test]
    fn creates_replaces_and_refuses_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("workspace")).unwrap();
        {
            use std::io::Write;
            let mut f = create(root.path(), "/workspace/in/a.txt").unwrap();
            f.write_all(b"one").unwrap();
        }
        let placed = root.path().join("workspace/in/a.txt");
        assert_eq!(std::fs::read(&placed).unwrap(), b"one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&placed).unwrap().permissions().mode() & 0o777, 0o444);
        {
            use std::io::Write;
            let mut f = create(root.path(), "/workspace/in/a.txt").unwrap();
            f.write_all(b"two").unwrap();
        }
        assert_eq!(std::fs::read(&placed).unwrap(), b"two");

        std::os::unix::fs::symlink(outside.path(), root.path().join("workspace/evil")).unwrap();
        let err = create(root.path(), "/workspace/evil/x.txt").unwrap_err();
        assert!(format!("{err:#}").contains("evil"), "{err:#}");
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("workspace/link")).unwrap();
        // A final symlink is replaced (unlinked), never followed.
        create(root.path(), "/workspace/link").unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "something was written outside");

        std::fs::create_dir(root.path().join("workspace/dir")).unwrap();
        let err = create(root.path(), "/workspace/dir").unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
        for bad in ["workspace/a", "/workspace/../etc/x", "/workspace//x", "/"] {
            assert!(create(root.path(), bad).is_err(), "{bad} was accepted");
        }
    }
}
