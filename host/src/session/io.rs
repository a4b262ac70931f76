//! How a runner reaches its session's agent runtime, whichever way it runs:
//! its own process in the session's sandbox (agent in sandbox), or the
//! shared resident process of its harness with tools in a sandbox claimed on
//! the first call (sandbox as tool). Both give the runner the same things: a
//! stream of [`Out`] (lines, then the exit), a way to write, and a release.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridle_harness::PluginSession;
use bridle_sandbox::tools::ToolSandbox;
use bridle_sandbox::{BoxedWrite, BusyGuard, ExecChild, ExecControl, ExitStatus, Sandbox};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::resident::ResidentProc;
use crate::time::now_micros;

/// Lines of runtime stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// A line from the runtime (with when it was read, epoch µs), or its end.
pub(crate) enum Out {
    Line(String, i64),
    Exit(ExitStatus),
}

/// A running runtime: its plugin session and the way to it.
pub(crate) struct Runtime {
    pub plugin: PluginSession,
    io: Io,
    out: mpsc::Receiver<Out>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

enum Io {
    Own { sandbox: Arc<dyn Sandbox>, stdin: Option<BoxedWrite>, control: Arc<dyn ExecControl> },
    Resident { proc: Arc<ResidentProc>, tools: Arc<ToolSandbox>, api_key: String },
}

impl Runtime {
    /// The runtime process just started in `sandbox`: read its stdout as
    /// lines and keep the tail of its stderr.
    pub fn own(plugin: PluginSession, sandbox: Arc<dyn Sandbox>, mut child: ExecChild) -> Runtime {
        let (tx, out) = mpsc::channel(256);
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        // stderr is read to its end before the exit is reported, so the
        // error for a runtime that dies at start carries its last words.
        let stderr_done = child.stderr.take().map(|err| {
            let tail = stderr.clone();
            tokio::spawn(
                async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(target: "bridle::runtime_stderr", "{line}");
                        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
                .in_current_span(),
            )
        });
        if let Some(stdout) = child.stdout.take() {
            let control = child.control.clone();
            tokio::spawn(
                async move {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if tx.send(Out::Line(line, now_micros())).await.is_err() {
                            return;
                        }
                    }
                    let status = control.wait().await;
                    if let Some(done) = stderr_done {
                        let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
                    }
                    let _ = tx.send(Out::Exit(status)).await;
                }
                .in_current_span(),
            );
        }
        let io = Io::Own { sandbox, stdin: child.stdin.take(), control: child.control.clone() };
        Runtime { plugin, io, out, stderr }
    }

    /// The session attached to its harness's resident process; `tools` runs
    /// its tool calls. `api_key` is added to the `start` message (the plugin
    /// never holds it).
    pub fn resident(
        plugin: PluginSession,
        proc: Arc<ResidentProc>,
        out: mpsc::Receiver<Out>,
        tools: ToolSandbox,
        api_key: String,
    ) -> Runtime {
        let io = Io::Resident { proc, tools: Arc::new(tools), api_key };
        Runtime { plugin, io, out, stderr: Arc::new(Mutex::new(VecDeque::new())) }
    }

    /// The next line or the exit (a runtime whose output channel closed
    /// without an exit is reported as gone).
    pub async fn recv(&mut self) -> Out {
        self.out.recv().await.unwrap_or(Out::Exit(ExitStatus::SandboxGone))
    }

    /// A line or exit already waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Out> {
        self.out.try_recv().ok()
    }

    /// Keeps the runtime's sandbox from idle release during a turn (the
    /// resident's tool sandbox is kept busy by each call).
    pub fn busy(&self) -> Option<BusyGuard> {
        match &self.io {
            Io::Own { sandbox, .. } => Some(sandbox.busy()),
            Io::Resident { .. } => None,
        }
    }

    /// Where host-run tool calls run (sandbox as tool only).
    pub fn tools(&self) -> Option<Arc<ToolSandbox>> {
        match &self.io {
            Io::Resident { tools, .. } => Some(tools.clone()),
            Io::Own { .. } => None,
        }
    }

    /// The sandbox limit the runtime's process died of, if any.
    pub fn limit_hit(&self, status: &ExitStatus) -> Option<String> {
        let limit = status.limit().or_else(|| match &self.io {
            Io::Own { sandbox, .. } => sandbox.limit_hit(),
            Io::Resident { .. } => None,
        });
        limit.map(|l| l.to_string())
    }

    /// `; its last output: ...` from the runtime's stderr, or empty.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            String::new()
        } else {
            format!("; its last output: {}", t.iter().cloned().collect::<Vec<_>>().join(" | "))
        }
    }

    /// Write what the plugin asked for. A failure is logged: the exit that
    /// follows reports it.
    pub async fn write(&mut self, session_id: &str, bytes: &[u8]) {
        let res = match &mut self.io {
            Io::Own { stdin: Some(stdin), .. } => {
                async {
                    stdin.write_all(bytes).await?;
                    stdin.flush().await
                }
                .await
            }
            Io::Own { stdin: None, .. } => Ok(()),
            // One JSON message per write; the host frames it and adds the
            // session's key to `start`.
            Io::Resident { proc, api_key, .. } => match serde_json::from_slice::<Value>(bytes) {
                Ok(mut msg) => {
                    if msg.get("type").and_then(Value::as_str) == Some("start") {
                        msg["api_key"] = Value::String(api_key.clone());
                    }
                    proc.send(session_id, msg).await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "plugin wrote a non-JSON message for the resident runtime");
                    Ok(())
                }
            },
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "writing to the runtime failed");
        }
    }

    /// Let go of the runtime: kill an own process and stop its sandbox;
    /// detach from a resident and release the tool sandbox (workspaces stay).
    pub async fn release(self, session_id: &str) {
        match self.io {
            Io::Own { sandbox, stdin, control } => {
                drop(stdin);
                let _ = control.kill().await;
                let _ = sandbox.stop().await;
            }
            Io::Resident { proc, tools, .. } => {
                proc.detach(session_id);
                let _ = tools.release().await;
            }
        }
    }
}
