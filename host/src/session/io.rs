//! How a runner reaches its session's agent runtime: one trait,
//! [`RuntimeIo`], with an implementation per way a runtime runs — its own
//! process in the session's sandbox ([`OwnProcess`], agent in sandbox), or
//! the shared resident process of its harness with tools in a sandbox
//! claimed on the first call ([`Resident`], sandbox as tool). Each gives the
//! runner the same things: a stream of [`Out`] (lines, then the exit), a way
//! to write, and a release.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bridle_harness::PluginSession;
use bridle_sandbox::tools::ToolSandbox;
use bridle_sandbox::{BoxedWrite, BusyGuard, ExecChild, ExecControl, ExitStatus, Sandbox};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::resident::ResidentProc;
use super::resident_mcp::ResidentMcp;
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
    pub io: Box<dyn RuntimeIo>,
}

/// The way to a running runtime.
#[async_trait]
pub(crate) trait RuntimeIo: Send {
    /// The next line or the exit (output that ends without an exit is
    /// reported as the runtime gone).
    async fn recv(&mut self) -> Out;
    /// A line or exit already waiting, without waiting.
    fn try_recv(&mut self) -> Option<Out>;
    /// Write what the plugin asked for. A failure is logged: the exit that
    /// follows reports it.
    async fn write(&mut self, session_id: &str, bytes: &[u8]);
    /// Keeps the runtime's sandbox from idle release during a turn.
    fn busy(&self) -> Option<BusyGuard> {
        None
    }
    /// Where host-run tool calls run (sandbox as tool).
    fn tools(&self) -> Option<Arc<ToolSandbox>> {
        None
    }
    /// The sandbox limit the runtime died of, if any.
    async fn limit_hit(&mut self, status: &ExitStatus) -> Option<String> {
        status.limit().map(|l| l.to_string())
    }
    /// `; its last output: ...` from the runtime's stderr, or empty.
    fn stderr_tail(&self) -> String {
        String::new()
    }
    /// The sandbox the runtime's tools run in now, if one is running.
    async fn sandbox(&mut self) -> Option<Arc<dyn Sandbox>>;
    /// Let go of the runtime (workspaces stay).
    async fn release(self: Box<Self>, session_id: &str);
    /// End the runtime's own process only, leaving its sandbox to the other
    /// runtimes that share it (a delegated thread's runtime runs beside its
    /// coordinator's).
    async fn end_process(self: Box<Self>, session_id: &str) {
        self.release(session_id).await
    }
}

/// The runtime's own process in the session's sandbox.
pub(crate) struct OwnProcess {
    sandbox: Arc<dyn Sandbox>,
    stdin: Option<BoxedWrite>,
    control: Arc<dyn ExecControl>,
    out: mpsc::Receiver<Out>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl OwnProcess {
    /// The runtime process just started in `sandbox`: read its stdout as
    /// lines and keep the tail of its stderr.
    pub fn start(sandbox: Arc<dyn Sandbox>, mut child: ExecChild) -> OwnProcess {
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
        OwnProcess { sandbox, stdin: child.stdin.take(), control: child.control.clone(), out, stderr }
    }
}

#[async_trait]
impl RuntimeIo for OwnProcess {
    async fn recv(&mut self) -> Out {
        self.out.recv().await.unwrap_or(Out::Exit(ExitStatus::SandboxGone))
    }

    fn try_recv(&mut self) -> Option<Out> {
        self.out.try_recv().ok()
    }

    async fn write(&mut self, _session_id: &str, bytes: &[u8]) {
        let Some(stdin) = self.stdin.as_mut() else { return };
        let res = async {
            stdin.write_all(bytes).await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "writing to the runtime failed");
        }
    }

    fn busy(&self) -> Option<BusyGuard> {
        Some(self.sandbox.busy())
    }

    async fn limit_hit(&mut self, status: &ExitStatus) -> Option<String> {
        // Directly, or by aborting when it could not get a thread (a driver
        // that polls for limits may see it only a moment after the exit).
        if let Some(limit) = status.limit() {
            return Some(limit.to_string());
        }
        let limit = if status.success() { self.sandbox.limit_hit() } else { self.sandbox.limit_hit_settled().await };
        limit.map(|l| l.to_string())
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            String::new()
        } else {
            format!("; its last output: {}", t.iter().cloned().collect::<Vec<_>>().join(" | "))
        }
    }

    async fn sandbox(&mut self) -> Option<Arc<dyn Sandbox>> {
        Some(self.sandbox.clone()).filter(|s| s.is_running())
    }

    async fn release(self: Box<Self>, _session_id: &str) {
        let OwnProcess { sandbox, stdin, control, .. } = *self;
        drop(stdin);
        let _ = control.kill().await;
        let _ = sandbox.stop().await;
    }

    async fn end_process(self: Box<Self>, _session_id: &str) {
        let OwnProcess { stdin, control, .. } = *self;
        drop(stdin);
        let _ = control.kill().await;
    }
}

/// The session attached to its harness's resident process.
pub(crate) struct Resident {
    proc: Arc<ResidentProc>,
    out: mpsc::Receiver<Out>,
    tools: Arc<ToolSandbox>,
    /// Added to the `start` message: the plugin never holds it.
    api_key: String,
    /// The session's MCP route; its socket is added to the `start` message.
    mcp: Option<ResidentMcp>,
}

impl Resident {
    pub fn new(
        proc: Arc<ResidentProc>,
        out: mpsc::Receiver<Out>,
        tools: ToolSandbox,
        api_key: String,
        mcp: Option<ResidentMcp>,
    ) -> Resident {
        Resident { proc, out, tools: Arc::new(tools), api_key, mcp }
    }
}

#[async_trait]
impl RuntimeIo for Resident {
    async fn recv(&mut self) -> Out {
        self.out.recv().await.unwrap_or(Out::Exit(ExitStatus::SandboxGone))
    }

    fn try_recv(&mut self) -> Option<Out> {
        self.out.try_recv().ok()
    }

    async fn write(&mut self, session_id: &str, bytes: &[u8]) {
        // One JSON message per write; the host frames it.
        let mut msg = match serde_json::from_slice::<Value>(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(error = %e, "plugin wrote a non-JSON message for the resident runtime");
                return;
            }
        };
        if msg.get("type").and_then(Value::as_str) == Some("start") {
            msg["api_key"] = Value::String(self.api_key.clone());
            if let Some(mcp) = &self.mcp {
                msg["mcp_socket"] = Value::String(mcp.socket().to_string_lossy().into_owned());
            }
        }
        if let Err(e) = self.proc.send(session_id, msg).await {
            tracing::warn!(error = %e, "writing to the runtime failed");
        }
    }

    fn tools(&self) -> Option<Arc<ToolSandbox>> {
        Some(self.tools.clone())
    }

    async fn sandbox(&mut self) -> Option<Arc<dyn Sandbox>> {
        self.tools.sandbox().await
    }

    async fn release(self: Box<Self>, session_id: &str) {
        self.proc.detach(session_id);
        let _ = self.tools.release().await;
    }
}
