//! Give a workspace tree to a new owner without following links: each entry is
//! reached through its parent's descriptor, directories are opened with
//! `O_NOFOLLOW | O_DIRECTORY` and changed with `fchown` on that descriptor,
//! everything else with `fchownat(AT_SYMLINK_NOFOLLOW)`. An entry swapped for
//! a symlink between listing and opening is changed as the link itself, never
//! followed.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, fchown, fchownat};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// `chown -R uid:uid root`, never following a symlink (`root` itself must be a
/// real directory).
pub fn chown_tree(root: &Path, uid: u32) -> anyhow::Result<()> {
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)));
    let fd = open(root, DIR_FLAGS, Mode::empty()).with_context(|| format!("open {}", root.display()))?;
    // Directories waiting to be listed. Children hold their parent's
    // descriptor only until they are opened, so open descriptors stay
    // bounded by the tree's depth, not its width.
    let mut stack: Vec<OwnedFd> = vec![fd];
    while let Some(fd) = stack.pop() {
        fchown(&fd, u, g).with_context(|| format!("chown a directory under {}", root.display()))?;
        let parent = Arc::new(fd.try_clone().context("dup")?);
        let mut dir = Dir::from_fd(fd).context("fdopendir")?;
        let mut subdirs = Vec::new();
        for entry in dir.iter() {
            let entry = entry.context("readdir")?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if entry.file_type() == Some(Type::Directory) || entry.file_type().is_none() {
                subdirs.push(name.to_owned());
            } else {
                chown_entry(&parent, name, u, g)?;
            }
        }
        drop(dir);
        for name in subdirs {
            match openat(&*parent, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
                Ok(child) => stack.push(child),
                // Not a directory (any more): a symlink or a file, changed itself.
                Err(Errno::ENOTDIR | Errno::ELOOP) => chown_entry(&parent, &name, u, g)?,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e).with_context(|| format!("open {name:?} under {}", root.display())),
            }
        }
    }
    Ok(())
}

fn chown_entry(parent: &OwnedFd, name: &std::ffi::CStr, u: Option<Uid>, g: Option<Gid>) -> anyhow::Result<()> {
    match fchownat(parent, name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("chown {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn changes_the_tree_but_not_link_targets() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret"), "x").unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::fs::write(ws.join("a/b/file"), "y").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), ws.join("a/to-file")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("a/b/to-dir")).unwrap();
        chown_tree(&ws, 612_345).unwrap();
        for p in ["", "a", "a/b", "a/b/file", "a/to-file", "a/b/to-dir"] {
            assert_eq!(std::fs::symlink_metadata(ws.join(p)).unwrap().uid(), 612_345, "{p}");
        }
        for p in ["", "sub", "secret"] {
            assert_eq!(std::fs::metadata(outside.join(p)).unwrap().uid(), 0, "{p}");
        }
    }

    /// A directory of the tree swapped for a symlink to the outside while
    /// the chown runs (what a sandbox could race at resume): the outside is
    /// never changed.
    #[test]
    fn a_directory_swapped_for_a_link_mid_walk_is_not_followed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        for i in 0..20 {
            std::fs::write(outside.join(format!("f{i}")), "x").unwrap();
        }
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (ws, outside, stop) = (ws.clone(), outside.clone(), stop.clone());
            std::thread::spawn(move || {
                let (d, real, link) = (ws.join("d"), ws.join("real"), ws.join("link"));
                std::fs::create_dir_all(&real).unwrap();
                for i in 0..20 {
                    std::fs::write(real.join(format!("f{i}")), "y").unwrap();
                }
                std::os::unix::fs::symlink(&outside, &link).unwrap();
                std::fs::rename(&real, &d).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Atomically exchange `d` (a real directory) and `link`.
                    let _ = nix::fcntl::renameat2(
                        nix::fcntl::AT_FDCWD,
                        &d,
                        nix::fcntl::AT_FDCWD,
                        &link,
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    );
                }
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut rounds = 0;
        while std::time::Instant::now() < deadline {
            chown_tree(&ws, 612_000 + rounds % 100).unwrap();
            rounds += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
        for e in std::fs::read_dir(&outside).unwrap() {
            let e = e.unwrap();
            assert_eq!(e.metadata().unwrap().uid(), 0, "{} changed after {rounds} rounds", e.path().display());
        }
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0);
    }
}
