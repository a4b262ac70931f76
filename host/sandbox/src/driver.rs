//! The driver abstraction: a [`SandboxDriver`] claims [`Sandbox`]es, a sandbox
//! runs processes ([`ExecChild`]) with piped stdio. The local driver implements it
//! with bubblewrap; a Kubernetes driver (a pod per sandbox, exec through the API
//! server, the egress gateway as a sidecar) fits the same shape.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Result, SandboxError};
use crate::spec::{EgressStats, ExecRequest, ExitStatus, SandboxSpec};

pub type BoxedWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type BoxedRead = Pin<Box<dyn AsyncRead + Send>>;

/// Claims and resumes sandboxes; owns workspaces.
#[async_trait]
pub trait SandboxDriver: Send + Sync {
    /// A short name for logs (`"local"`).
    fn name(&self) -> &'static str;

    /// Start a sandbox for `spec.session_id`. Its workspace is created when
    /// missing and reused when present, so claiming again after a stop, a release
    /// or an idle release resumes on the same `/workspace`.
    async fn claim(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>>;

    /// Like [`claim`](Self::claim), but fails when the session has no workspace yet.
    async fn resume(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>>;

    /// Whether the session has a workspace.
    async fn workspace_exists(&self, session_id: &str) -> Result<bool>;

    /// Delete the session's workspace (session deleted). Releases its sandbox first.
    async fn delete_workspace(&self, session_id: &str) -> Result<()>;
}

/// A running sandbox. All methods take `&self`; the handle is shared.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Unique id of this sandbox instance (`sbx_…`).
    fn id(&self) -> &str;
    /// The session whose workspace is mounted.
    fn session_id(&self) -> &str;
    /// The model route as the sandbox reaches it (`http://127.0.0.1:PORT/llm`):
    /// give it to the runtime as its base URL (`ANTHROPIC_BASE_URL`,
    /// `OPENAI_BASE_URL`, Codex `openai_base_url`).
    fn llm_base_url_inside(&self) -> String;
    /// The extra model route `name` ([`crate::LlmRoute::extra`]) as the
    /// sandbox reaches it (`http://127.0.0.1:PORT/llm-<name>`).
    fn llm_route_url_inside(&self, name: &str) -> String {
        format!("{}{}", self.proxy_url_inside(), crate::egress::extra_llm_prefix(name))
    }
    /// The HTTP proxy as the sandbox reaches it (`http://127.0.0.1:PORT`).
    fn proxy_url_inside(&self) -> String;
    /// The workspace path inside the sandbox (`/workspace`).
    fn workspace_inside(&self) -> &str {
        "/workspace"
    }
    /// Egress counters so far.
    fn egress_stats(&self) -> EgressStats;
    /// False once stopped or released.
    fn is_running(&self) -> bool;

    /// Start a process with piped stdin/stdout/stderr. A running exec keeps the
    /// sandbox from idling out unless [`ExecRequest::resident`] is set.
    async fn exec(&self, request: ExecRequest) -> Result<ExecChild>;
    /// Write a file at `path` (absolute, inside the sandbox) as the sandbox's
    /// user: parent directories are made, a final symlink is refused, and
    /// the file gets `mode`. No shell is involved.
    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<()>;
    /// Place a file at `path` (absolute, inside the sandbox) that the
    /// sandbox's user can read but not change: `content` streamed in, any
    /// file already there replaced, missing parent directories made. The
    /// local driver running as root makes it root-owned (mode 0444) and
    /// `/mnt/session/uploads` root-owned too, so the agent can neither
    /// write, `chmod` nor (there) remove it. This default, for drivers that
    /// cannot, writes it as the sandbox's user with mode 0444.
    async fn place_read_only(&self, path: &str, content: BoxedRead) -> Result<()> {
        place_by_exec(self, path, content).await
    }
    /// A resource limit this sandbox has hit so far, if any: lets the caller
    /// explain a process that died of it in its own way (e.g. a runtime that
    /// aborts when it cannot start a thread).
    fn limit_hit(&self) -> Option<crate::spec::Limit> {
        None
    }
    /// [`Sandbox::limit_hit`] for a process that has just died abnormally,
    /// once the driver has had time to see the limit: a driver that learns
    /// of limits by polling waits for its next polls.
    async fn limit_hit_settled(&self) -> Option<crate::spec::Limit> {
        self.limit_hit()
    }
    /// Keep the sandbox from idling out while the guard lives (a tool call in
    /// flight, a turn in progress).
    fn busy(&self) -> BusyGuard {
        BusyGuard::noop()
    }
    /// Kill every process of the sandbox; the workspace stays. The handle is then
    /// gone: claim again to resume.
    async fn stop(&self) -> Result<()>;
    /// Kill the whole process tree and free everything but the workspace
    /// (uid, cgroups, gateway socket).
    async fn release(&self) -> Result<()>;
}

/// Returned by [`Sandbox::busy`]; runs its release action on drop.
pub struct BusyGuard(Option<Box<dyn FnOnce() + Send + Sync>>);

impl BusyGuard {
    pub fn noop() -> Self {
        Self(None)
    }
    pub fn new(on_drop: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(on_drop)))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Waiting for and killing one exec.
#[async_trait]
pub trait ExecControl: Send + Sync {
    /// The process id inside the sandbox, when the driver knows it.
    fn pid(&self) -> Option<i32>;
    /// Wait for the process to end. Later calls return the same status.
    async fn wait(&self) -> ExitStatus;
    /// SIGKILL the process and its process group.
    async fn kill(&self) -> Result<()>;
}

/// A process running in a sandbox.
pub struct ExecChild {
    pub stdin: Option<BoxedWrite>,
    pub stdout: Option<BoxedRead>,
    pub stderr: Option<BoxedRead>,
    pub control: Arc<dyn ExecControl>,
}

impl ExecChild {
    pub fn pid(&self) -> Option<i32> {
        self.control.pid()
    }
    pub async fn wait(&self) -> ExitStatus {
        self.control.wait().await
    }
    pub async fn kill(&self) -> Result<()> {
        self.control.kill().await
    }

    /// Close stdin, collect stdout and stderr (each capped at `max_bytes`, the
    /// rest counted and dropped), and wait.
    pub async fn output(mut self, max_bytes: usize) -> Output {
        use tokio::io::AsyncReadExt;
        drop(self.stdin.take());
        async fn collect(r: Option<BoxedRead>, max: usize) -> (Vec<u8>, u64) {
            let mut buf = Vec::new();
            let mut dropped = 0u64;
            if let Some(mut r) = r {
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    match r.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = max.saturating_sub(buf.len());
                            let take = room.min(n);
                            buf.extend_from_slice(&chunk[..take]);
                            dropped += (n - take) as u64;
                        }
                    }
                }
            }
            (buf, dropped)
        }
        let (out, err) = tokio::join!(collect(self.stdout.take(), max_bytes), collect(self.stderr.take(), max_bytes));
        let status = self.control.wait().await;
        Output { status, stdout: out.0, stderr: err.0, truncated_bytes: out.1 + err.1 }
    }
}

/// Collected result of [`ExecChild::output`].
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated_bytes: u64,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Replaces what is at `$1` (a read-only copy left by an earlier placement
/// cannot be opened for writing) with stdin, mode 0444.
const PLACE_SCRIPT: &str = r#"set -e
mkdir -p -- "$(dirname -- "$1")"
rm -f -- "$1"
cat > "$1"
chmod 0444 -- "$1""#;

/// [`Sandbox::place_read_only`] as the sandbox's own user: a shell in the
/// sandbox writes stdin to `path`.
pub async fn place_by_exec<S: Sandbox + ?Sized>(sandbox: &S, path: &str, mut content: BoxedRead) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let req = ExecRequest::new(["/bin/bash", "-c", PLACE_SCRIPT, "place-file", path]);
    let mut child = sandbox.exec(req).await?;
    let mut stdin = child.stdin.take().ok_or_else(|| SandboxError::Invalid("no stdin to write to".into()))?;
    let streamed = async {
        tokio::io::copy(&mut content, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    drop(stdin);
    let out = child.output(4096).await;
    streamed.map_err(|e| SandboxError::Other(anyhow::anyhow!("writing {path}: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::Invalid(format!(
            "cannot place a file at {path} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
