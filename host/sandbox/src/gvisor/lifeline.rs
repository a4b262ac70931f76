//! The lifeline of a driver's gVisor sandboxes: runsc's sandboxes are not
//! the server's children, so nothing ends them when the server dies
//! (`kill -9` included), the way the bubblewrap driver's sandboxes end with
//! their init's parent-death signal.
//!
//! Each driver starts one watcher, the init binary in [`LIFELINE_ARG`]
//! mode, in its own process group (a terminal's signals to the server's
//! group do not reach it). Its stdin is a pipe whose write end only the
//! server holds (close-on-exec: no other child inherits it). The server
//! notes each sandbox there before starting it (`+ID`) and after deleting
//! it (`-ID`); at end of file, which is the server's exit however it ends,
//! the watcher deletes every sandbox still noted (`runsc delete --force`)
//! and exits.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use anyhow::Context;
use tracing::warn;

/// The init binary's argument for the watcher mode: `--gvisor-lifeline
/// RUNSC [RUNSC GLOBAL ARGS...]`, the sandbox ids on stdin.
pub const LIFELINE_ARG: &str = "--gvisor-lifeline";

/// The sandboxes a watcher deletes at end of file: the ones started and not
/// yet released, from the pipe's lines. Unknown lines are ignored (the
/// server is the only writer).
#[derive(Debug, Default)]
pub(crate) struct Noted(BTreeSet<String>);

impl Noted {
    pub(crate) fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(id) = line.strip_prefix('+').filter(|id| !id.is_empty()) {
            self.0.insert(id.to_owned());
        } else if let Some(id) = line.strip_prefix('-') {
            self.0.remove(id);
        }
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// The watcher's main (the init binary's [`LIFELINE_ARG`] mode).
pub fn watch(args: &[String]) -> i32 {
    let Some((runsc, global)) = args.split_first() else {
        eprintln!("bridle-sandbox-init: {LIFELINE_ARG} needs the runsc path");
        return 2;
    };
    let mut noted = Noted::default();
    // Blocks until the server writes or is gone; a read error is an end too.
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) => noted.line(&l),
            Err(_) => break,
        }
    }
    // All at once: each delete takes a while (the sandbox's processes end).
    let deletes: Vec<_> = noted
        .ids()
        .filter_map(|id| {
            Command::new(runsc)
                .args(global)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for mut d in deletes {
        let _ = d.wait();
    }
    0
}

/// The server's end of a watcher.
pub(crate) struct Lifeline {
    pipe: Mutex<Option<ChildStdin>>,
    child: Option<Child>,
}

impl Lifeline {
    /// Start the watcher: `init` in [`LIFELINE_ARG`] mode, deleting with
    /// `runsc` and its `global` arguments.
    pub(crate) fn spawn(init: &Path, runsc: &Path, global: &[String]) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(init)
            .arg(crate::init::INIT_ARG)
            .arg(LIFELINE_ARG)
            .arg(runsc)
            .args(global)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("start the gVisor lifeline watcher ({})", init.display()))?;
        let pipe = child.stdin.take();
        Ok(Self { pipe: Mutex::new(pipe), child: Some(child) })
    }

    /// Before a sandbox starts: from now on it ends with the server.
    pub(crate) fn started(&self, id: &str) {
        self.note(&format!("+{id}\n"));
    }

    /// After a sandbox was deleted.
    pub(crate) fn released(&self, id: &str) {
        self.note(&format!("-{id}\n"));
    }

    fn note(&self, line: &str) {
        let Ok(mut pipe) = self.pipe.lock() else { return };
        let Some(p) = pipe.as_mut() else { return };
        // A line is far below the pipe's buffer and the watcher reads at
        // once, so this does not block for long.
        if let Err(e) = p.write_all(line.as_bytes()) {
            warn!(error = %e, "the gVisor lifeline watcher is gone: sandboxes will outlive a crashed server");
            pipe.take();
        }
    }
}

impl Drop for Lifeline {
    /// The driver is gone: the watcher deletes what is still noted, and is
    /// reaped off this thread.
    fn drop(&mut self) {
        if let Ok(mut p) = self.pipe.lock() {
            p.take();
        }
        if let Some(mut child) = self.child.take() {
            std::thread::spawn(move || child.wait());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_deletes_what_was_started_and_not_released() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["+a"], &["a"]),
            (&["+a", "+b", "-a"], &["b"]),
            (&["+a", "-a", "+a"], &["a"]),
            (&["-a"], &[]),
            (&["+a", "", "+", "junk", "-b"], &["a"]),
            (&["+a\r"], &["a"]),
        ];
        for (lines, want) in cases {
            let mut n = Noted::default();
            for l in *lines {
                n.line(l);
            }
            assert_eq!(n.ids().collect::<Vec<_>>(), *want, "{lines:?}");
        }
    }
}
