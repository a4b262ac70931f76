//! Support for the real-runtime tests: the runtimes (installed on first use through
//! `host/src/runtimes.rs`, the installer `bridle runtimes install` uses) and a line-based
//! driver for a runtime's stdio.
#![allow(dead_code)]

#[path = "../../../../host/src/runtimes.rs"]
pub mod runtimes;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use runtimes::{Runtime, Runtimes};
use serde_json::Value;

/// The runtimes directory shared by every test binary: `$BRIDLE_RUNTIMES_DIR`, else
/// `<workspace>/target/bridle-runtimes`.
pub fn runtimes_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BRIDLE_RUNTIMES_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bridle-runtimes")
}

/// The runtimes, installed (once per process; the install lock serializes processes).
pub fn runtimes(which: Runtime) -> Runtimes {
    static INSTALL: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = INSTALL.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtimes::new(runtimes_dir());
    if let Err(e) = rt.install(&[which]) {
        panic!("installing {which} into {}: {e:#}", rt.dir().display());
    }
    rt
}

/// Path of an installed program (installing its runtime if needed).
pub fn program(which: Runtime) -> PathBuf {
    let rt = runtimes(which);
    rt.resolve(which.program())
        .unwrap_or_else(|| panic!("{} not resolvable after install: {:?}", which.program(), rt.status_of(which)))
}

/// A child process spoken to in JSON lines.
pub struct LineProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    /// Every stdout line so far.
    pub lines: Vec<String>,
    pub stderr_path: PathBuf,
    name: String,
}

impl LineProc {
    pub fn spawn(name: &str, mut cmd: Command, stderr_path: PathBuf) -> LineProc {
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        LineProc { child, stdin, rx, lines: Vec::new(), stderr_path, name: name.to_owned() }
    }

    pub fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let res = writeln!(stdin, "{v}").and_then(|_| stdin.flush());
        if let Err(e) = res {
            panic!("writing to {}: {e}\n{}", self.name, self.diagnostics());
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Read lines until one parses as JSON and satisfies `pred`; `on_line` sees every JSON
    /// line first (to answer requests). Panics with the transcript on timeout or EOF.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut on_line: impl FnMut(&mut LineProc, &Value),
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    on_line(self, &v);
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: timed out waiting\n{}", self.name, self.diagnostics())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: stdout closed before the expected line\n{}", self.name, self.diagnostics())
                }
            }
        }
    }

    /// Every JSON line so far.
    pub fn values(&self) -> Vec<Value> {
        self.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: String = stderr.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
        format!("--- stdout ---\n{}\n--- stderr (tail) ---\n{}", self.lines.join("\n"), tail)
    }
}

impl Drop for LineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command with a scrubbed environment (no provider keys or base URLs from the shell).
pub fn clean_command(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8");
    cmd
}

/// The scenarios and checks the runtime tests share: each runtime is put through the same
/// text, tool, retry, recall and interrupt turns.
pub mod fakes {
    use bridle_fake_model::{Config, FakeModel, Reply, Scenario, ToolCall};

    /// A fake model server that accepts only `token`.
    pub fn start(token: &str) -> FakeModel {
        FakeModel::start_blocking(Config { token: Some(token.into()), ..Config::default() }).unwrap()
    }

    /// One turn: the model runs `command` with bash, then answers `text`.
    pub fn bash_then(command: &str, text: &str) -> Scenario {
        Scenario {
            turns: vec![Reply { tools: vec![ToolCall::bash(command)], text: text.into(), ..Reply::default() }],
            ..Scenario::default()
        }
    }

    /// Two turns: "OK.", then what the user asked it to remember.
    pub fn recall() -> Scenario {
        Scenario {
            turns: vec![Reply::text("OK."), Reply::text("You asked me to remember {{remembered}}")],
            ..Scenario::default()
        }
    }

    /// A reply that streams slowly (40 chunks, 250 ms apart), to interrupt.
    pub fn slow() -> Scenario {
        Scenario {
            turns: vec![Reply { text: "tick ".repeat(40), chunk_delay_ms: 250, ..Reply::default() }],
            ..Scenario::default()
        }
    }

    /// Every model request for `model` was authorized and carried `value` in `header`.
    pub fn assert_token_on_every_request(fm: &FakeModel, model: &str, header: &str, value: &str) {
        let reqs = fm.model_requests(model);
        assert!(!reqs.is_empty(), "no model request for {model}");
        for r in &reqs {
            assert!(r.authorized, "unauthorized request: {:?}", r.headers);
            assert_eq!(r.header(header), Some(value), "{header}");
        }
    }
}
