//! Sandbox-as-tool: the agent loop runs outside (a resident runtime), and each
//! tool call of the Managed Agents agent toolset runs inside the session's
//! sandbox, claimed lazily on the first call (and claimed again after an idle
//! release, on the same workspace).
//!
//! Inputs follow the toolset: `bash {command, timeout_ms?, restart?}`,
//! `read {file_path, view_range?}`, `write {file_path, content}`,
//! `edit {file_path, old_string, new_string, replace_all?}`,
//! `glob {pattern, path?}`, `grep {pattern, path?}`. Every file operation runs
//! as the sandbox user inside the sandbox, so paths resolve in the sandbox's
//! view (relative to `/workspace`) and nothing outside it is reachable.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::driver::{BoxedRead, BoxedWrite, ExecChild, Sandbox, SandboxDriver};
use crate::error::{Result, SandboxError};
use crate::spec::{ExecRequest, ExitStatus, Limit, SandboxSpec};

/// Tunables of the tool executor.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// Output kept per call; the rest is dropped and counted.
    pub max_output_bytes: usize,
    pub default_bash_timeout: Duration,
    pub max_bash_timeout: Duration,
    /// Time-out of read/write/edit/glob/grep.
    pub file_timeout: Duration,
    /// Largest file `read`/`edit` load.
    pub max_file_bytes: usize,
}

impl Default for ToolConfig {
    fn default() -> Self {
        Self {
            max_output_bytes: 30_000,
            default_bash_timeout: Duration::from_secs(120),
            max_bash_timeout: Duration::from_secs(600),
            file_timeout: Duration::from_secs(30),
            max_file_bytes: 10 << 20,
        }
    }
}

/// The outcome of one tool call, ready to become `agent.tool_result` /
/// the runtime's function-call output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolResult {
    pub content: String,
    pub is_error: bool,
    /// Exit code of the command (bash; the helper command for the others).
    pub exit_code: Option<i32>,
    pub truncated: bool,
    pub timed_out: bool,
    /// A sandbox resource limit stopped the call: report `session.error`.
    pub limit: Option<Limit>,
}

impl ToolResult {
    fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            exit_code: Some(0),
            truncated: false,
            timed_out: false,
            limit: None,
        }
    }
    fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            exit_code: None,
            truncated: false,
            timed_out: false,
            limit: None,
        }
    }
}

#[derive(Deserialize)]
struct BashInput {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    restart: Option<bool>,
}

#[derive(Deserialize)]
struct ReadInput {
    file_path: String,
    #[serde(default)]
    view_range: Option<Vec<i64>>,
}

#[derive(Deserialize)]
struct WriteInput {
    file_path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditInput {
    file_path: String,
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: Option<bool>,
}

#[derive(Deserialize)]
struct SearchInput {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
}

/// A persistent bash in the sandbox (state such as `cd` and exports carries
/// over between calls, as with the toolset's bash).
struct BashSession {
    child: ExecChild,
    stdin: BoxedWrite,
    stdout: BoxedRead,
    nonce: String,
}

#[derive(Default)]
struct ToolState {
    sandbox: Option<Arc<dyn Sandbox>>,
    bash: Option<BashSession>,
    /// Held while a call is in flight.
    busy: Option<crate::driver::BusyGuard>,
}

/// Prepares each sandbox the executor claims, before its first call runs
/// (e.g. places the session's files); an error fails that call.
pub type ClaimHook = Arc<
    dyn Fn(
            Arc<dyn Sandbox>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Runs toolset calls in a lazily claimed sandbox. Calls are serialized.
pub struct ToolSandbox {
    driver: Arc<dyn SandboxDriver>,
    spec: SandboxSpec,
    cfg: ToolConfig,
    state: Mutex<ToolState>,
    on_claim: Option<ClaimHook>,
}

/// Keeps `max` bytes, counts the rest.
struct Capped {
    kept: Vec<u8>,
    dropped: usize,
    max: usize,
}

impl Capped {
    fn new(max: usize) -> Self {
        Self { kept: Vec::new(), dropped: 0, max }
    }
    fn push(&mut self, b: &[u8]) {
        let room = self.max.saturating_sub(self.kept.len());
        let take = room.min(b.len());
        self.kept.extend_from_slice(&b[..take]);
        self.dropped += b.len() - take;
    }
    fn finish(self) -> (String, bool) {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        let truncated = self.dropped > 0;
        if truncated {
            s.push_str(&format!("\n[output truncated: {} more bytes omitted]", self.dropped));
        }
        (s, truncated)
    }
}

fn random_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl ToolSandbox {
    pub fn new(driver: Arc<dyn SandboxDriver>, spec: SandboxSpec, cfg: ToolConfig) -> Self {
        Self { driver, spec, cfg, state: Mutex::new(ToolState::default()), on_claim: None }
    }

    /// Run `hook` on every sandbox claimed, before the call that claimed it.
    pub fn with_claim_hook(mut self, hook: ClaimHook) -> Self {
        self.on_claim = Some(hook);
        self
    }

    /// The sandbox, when one has been claimed and is still running.
    pub async fn sandbox(&self) -> Option<Arc<dyn Sandbox>> {
        let st = self.state.lock().await;
        st.sandbox.clone().filter(|s| s.is_running())
    }

    /// Release the sandbox (the workspace stays); the next call claims again.
    pub async fn release(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        st.bash = None;
        if let Some(s) = st.sandbox.take() {
            s.release().await?;
        }
        Ok(())
    }

    async fn ensure(&self, st: &mut ToolState) -> Result<Arc<dyn Sandbox>> {
        if let Some(s) = st.sandbox.as_ref().filter(|s| s.is_running()) {
            return Ok(s.clone());
        }
        st.bash = None;
        let s = self.driver.claim(self.spec.clone()).await?;
        debug!(sandbox = s.id(), "tool sandbox claimed");
        if let Some(hook) = &self.on_claim
            && let Err(e) = hook(s.clone()).await
        {
            let _ = s.release().await;
            return Err(SandboxError::Invalid(format!("preparing the sandbox failed: {e}")));
        }
        st.busy = Some(s.busy());
        st.sandbox = Some(s.clone());
        Ok(s)
    }

    /// Run one tool call. Never fails: problems become an error result.
    pub async fn call(&self, name: &str, input: &serde_json::Value) -> ToolResult {
        let mut st = self.state.lock().await;
        st.busy = st.sandbox.as_ref().filter(|s| s.is_running()).map(|s| s.busy());
        let res = self.dispatch(&mut st, name, input).await;
        st.busy = None;
        match res {
            Ok(r) => r,
            Err(e) => {
                warn!(tool = name, error = %e, "tool call failed");
                ToolResult::error(format!("sandbox error: {e}"))
            }
        }
    }

    async fn dispatch(&self, st: &mut ToolState, name: &str, input: &serde_json::Value) -> Result<ToolResult> {
        let st = &mut *st;
        match name {
            "bash" => match serde_json::from_value::<BashInput>(input.clone()) {
                Ok(i) => self.bash(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid bash input: {e}"))),
            },
            "read" => match serde_json::from_value::<ReadInput>(input.clone()) {
                Ok(i) => self.read(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid read input: {e}"))),
            },
            "write" => match serde_json::from_value::<WriteInput>(input.clone()) {
                Ok(i) => self.write(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid write input: {e}"))),
            },
            "edit" => match serde_json::from_value::<EditInput>(input.clone()) {
                Ok(i) => self.edit(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid edit input: {e}"))),
            },
            "glob" => match serde_json::from_value::<SearchInput>(input.clone()) {
                Ok(i) => self.glob(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid glob input: {e}"))),
            },
            "grep" => match serde_json::from_value::<SearchInput>(input.clone()) {
                Ok(i) => self.grep(st, i).await,
                Err(e) => Ok(ToolResult::error(format!("invalid grep input: {e}"))),
            },
            other => Ok(ToolResult::error(format!("unknown tool {other:?}"))),
        }
    }

    async fn start_bash(&self, sbx: &Arc<dyn Sandbox>) -> Result<BashSession> {
        let mut child = sbx
            .exec(
                ExecRequest::new([
                    "/bin/bash",
                    "--noprofile",
                    "--norc",
                    "-c",
                    "exec 2>&1; exec /bin/bash --noprofile --norc",
                ])
                .resident(true),
            )
            .await?;
        let stdin = child.stdin.take().ok_or_else(|| SandboxError::Invalid("bash without stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| SandboxError::Invalid("bash without stdout".into()))?;
        drop(child.stderr.take());
        Ok(BashSession { child, stdin, stdout, nonce: random_nonce() })
    }

    async fn bash(&self, st: &mut ToolState, input: BashInput) -> Result<ToolResult> {
        if input.restart.unwrap_or(false) {
            if let Some(b) = st.bash.take() {
                let _ = {
                    let c = b.child.control.clone();
                    c.kill().await
                };
            }
            if input.command.as_deref().unwrap_or("").trim().is_empty() {
                return Ok(ToolResult::ok("bash session restarted"));
            }
        }
        let Some(command) = input.command.filter(|c| !c.trim().is_empty()) else {
            return Ok(ToolResult::error("bash needs a command"));
        };
        let timeout = input
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.cfg.default_bash_timeout)
            .min(self.cfg.max_bash_timeout);
        let sbx = self.ensure(st).await?;
        if st.bash.is_none() {
            st.bash = Some(self.start_bash(&sbx).await?);
        }
        let Some(mut session) = st.bash.take() else {
            return Ok(ToolResult::error("bash session unavailable"));
        };
        let marker = format!("__BRIDLE_DONE_{}_", session.nonce);
        let b64 = base64::engine::general_purpose::STANDARD.encode(command.as_bytes());
        let line =
            format!("eval \"$(printf '%s' '{b64}' | base64 -d)\" < /dev/null; printf '\\n{marker}%d\\n' \"$?\"\n");
        if let Err(e) = session.stdin.write_all(line.as_bytes()).await {
            let status = {
                let c = session.child.control.clone();
                c.wait().await
            };
            return Ok(gone_result(format!("the bash session ended ({e})"), status));
        }
        let _ = session.stdin.flush().await;

        let mut out = Capped::new(self.cfg.max_output_bytes);
        let mut pending: Vec<u8> = Vec::new();
        let needle = format!("\n{marker}");
        let read = async {
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let n = session.stdout.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                pending.extend_from_slice(&chunk[..n]);
                if let Some(i) = find(&pending, needle.as_bytes()) {
                    let after = &pending[i + needle.len()..];
                    if let Some(nl) = after.iter().position(|b| *b == b'\n') {
                        let code = std::str::from_utf8(&after[..nl]).ok().and_then(|s| s.trim().parse::<i32>().ok());
                        out.push(&pending[..i]);
                        return Some(code.unwrap_or(-1));
                    }
                    continue;
                }
                // Keep a tail that might hold the start of the marker.
                let keep = needle.len() + 16;
                if pending.len() > keep {
                    let cut = pending.len() - keep;
                    out.push(&pending[..cut]);
                    pending.drain(..cut);
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Some(code)) => {
                let (mut content, truncated) = out.finish();
                st.bash = Some(session);
                if code != 0 {
                    content.push_str(&format!("\n[exit code: {code}]"));
                }
                Ok(ToolResult {
                    content,
                    is_error: code != 0,
                    exit_code: Some(code),
                    truncated,
                    timed_out: false,
                    limit: None,
                })
            }
            Ok(None) => {
                // The shell itself ended (`exit`, a limit, the sandbox stopped).
                out.push(&pending);
                let status = {
                    let c = session.child.control.clone();
                    c.wait().await
                };
                let (content, truncated) = out.finish();
                let mut r = gone_result(content, status);
                r.truncated = truncated;
                Ok(r)
            }
            Err(_) => {
                let _ = {
                    let c = session.child.control.clone();
                    c.kill().await
                };
                out.push(&pending);
                let (mut content, truncated) = out.finish();
                content.push_str(&format!(
                    "\n[timed out after {} ms; the bash session was restarted]",
                    timeout.as_millis()
                ));
                Ok(ToolResult { content, is_error: true, exit_code: None, truncated, timed_out: true, limit: None })
            }
        }
    }

    /// Run a helper command; stdin optional; returns (status, stdout, stderr, truncated).
    async fn run(
        &self,
        st: &mut ToolState,
        req: ExecRequest,
        stdin: Option<Vec<u8>>,
        max: usize,
    ) -> Result<std::result::Result<(ExitStatus, Vec<u8>, String, bool), ToolResult>> {
        let sbx = self.ensure(st).await?;
        let mut child = sbx.exec(req).await?;
        let input = stdin.unwrap_or_default();
        let mut writer = child.stdin.take();
        let feed = async move {
            if let Some(w) = writer.as_mut() {
                let _ = w.write_all(&input).await;
                let _ = w.shutdown().await;
            }
            drop(writer);
        };
        let control = child.control.clone();
        let collect = async move {
            feed.await;
            child.output(max).await
        };
        match tokio::time::timeout(self.cfg.file_timeout, collect).await {
            Ok(out) => {
                let err = out.stderr_str();
                Ok(Ok((out.status, out.stdout, err, out.truncated_bytes > 0)))
            }
            Err(_) => {
                let _ = control.kill().await;
                let mut r = ToolResult::error(format!("timed out after {} ms", self.cfg.file_timeout.as_millis()));
                r.timed_out = true;
                Ok(Err(r))
            }
        }
    }

    async fn read_file(&self, st: &mut ToolState, path: &str) -> Result<std::result::Result<Vec<u8>, ToolResult>> {
        let req = ExecRequest::new(["cat", "--", path]);
        match self.run(st, req, None, self.cfg.max_file_bytes + 1).await? {
            Err(r) => Ok(Err(r)),
            Ok((status, out, err, _)) => {
                if !status.success() {
                    return Ok(Err(failed(&status, err.trim())));
                }
                if out.len() > self.cfg.max_file_bytes {
                    return Ok(Err(ToolResult::error(format!(
                        "{path} is larger than {} bytes",
                        self.cfg.max_file_bytes
                    ))));
                }
                Ok(Ok(out))
            }
        }
    }

    async fn write_file(
        &self,
        st: &mut ToolState,
        path: &str,
        content: &[u8],
    ) -> Result<std::result::Result<(), ToolResult>> {
        let req = ExecRequest::new([
            "/bin/sh",
            "-c",
            "d=$(dirname -- \"$1\") && mkdir -p -- \"$d\" && cat > \"$1\"",
            "sh",
            path,
        ]);
        match self.run(st, req, Some(content.to_vec()), 64 * 1024).await? {
            Err(r) => Ok(Err(r)),
            Ok((status, _, err, _)) if !status.success() => Ok(Err(failed(&status, err.trim()))),
            Ok(_) => Ok(Ok(())),
        }
    }

    async fn read(&self, st: &mut ToolState, i: ReadInput) -> Result<ToolResult> {
        let bytes = match self.read_file(st, &i.file_path).await? {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let (start, end) = match i.view_range.as_deref() {
            None => (1usize, lines.len()),
            Some([s, e]) => {
                let s = (*s).max(1) as usize;
                let e = if *e < 0 { lines.len() } else { (*e as usize).min(lines.len()) };
                if s > lines.len().max(1) || (e < s && !lines.is_empty()) {
                    return Ok(ToolResult::error(format!(
                        "view_range {:?} is outside the file's {} lines",
                        i.view_range,
                        lines.len()
                    )));
                }
                (s, e)
            }
            Some(_) => {
                return Ok(ToolResult::error("view_range must be [start, end]"));
            }
        };
        let mut out = Capped::new(self.cfg.max_output_bytes);
        for (n, l) in lines.iter().enumerate().take(end).skip(start - 1) {
            out.push(format!("{:>6}\t{}\n", n + 1, l).as_bytes());
        }
        let (content, truncated) = out.finish();
        let mut r = ToolResult::ok(content);
        r.truncated = truncated;
        Ok(r)
    }

    async fn write(&self, st: &mut ToolState, i: WriteInput) -> Result<ToolResult> {
        match self.write_file(st, &i.file_path, i.content.as_bytes()).await? {
            Err(r) => Ok(r),
            Ok(()) => Ok(ToolResult::ok(format!("Wrote {} bytes to {}", i.content.len(), i.file_path))),
        }
    }

    async fn edit(&self, st: &mut ToolState, i: EditInput) -> Result<ToolResult> {
        if i.old_string.is_empty() {
            return Ok(ToolResult::error("old_string must not be empty"));
        }
        if i.old_string == i.new_string {
            return Ok(ToolResult::error("old_string and new_string are the same"));
        }
        let bytes = match self.read_file(st, &i.file_path).await? {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(ToolResult::error(format!("{} is not UTF-8 text", i.file_path)));
        };
        let count = text.matches(&i.old_string).count();
        let replace_all = i.replace_all.unwrap_or(false);
        if count == 0 {
            return Ok(ToolResult::error(format!("old_string was not found in {}", i.file_path)));
        }
        if count > 1 && !replace_all {
            return Ok(ToolResult::error(format!(
                "old_string occurs {count} times in {}; give more context or set replace_all",
                i.file_path
            )));
        }
        let new = if replace_all {
            text.replace(&i.old_string, &i.new_string)
        } else {
            text.replacen(&i.old_string, &i.new_string, 1)
        };
        match self.write_file(st, &i.file_path, new.as_bytes()).await? {
            Err(r) => Ok(r),
            Ok(()) => Ok(ToolResult::ok(format!(
                "Replaced {} occurrence{} in {}",
                if replace_all { count } else { 1 },
                if replace_all && count != 1 { "s" } else { "" },
                i.file_path
            ))),
        }
    }

    async fn glob(&self, st: &mut ToolState, i: SearchInput) -> Result<ToolResult> {
        let base = i.path.unwrap_or_else(|| "/workspace".into());
        // The pattern is expanded by bash as a glob only (never evaluated).
        let script = "shopt -s globstar nullglob dotglob extglob; cd -- \"$1\" || exit 2; \
                      IFS=; set -- $2; for f in \"$@\"; do printf '%s\\n' \"$f\"; done";
        let req = ExecRequest::new([
            "/bin/bash",
            "--noprofile",
            "--norc",
            "-c",
            script,
            "glob",
            base.as_str(),
            i.pattern.as_str(),
        ]);
        match self.run(st, req, None, self.cfg.max_output_bytes).await? {
            Err(r) => Ok(r),
            Ok((status, out, err, truncated)) => {
                if !status.success() {
                    return Ok(failed(&status, err.trim()));
                }
                let text = String::from_utf8_lossy(&out);
                let prefix = base.trim_end_matches('/');
                let mut files: Vec<String> = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| if l.starts_with('/') { l.to_string() } else { format!("{prefix}/{l}") })
                    .collect();
                files.sort();
                let mut r =
                    ToolResult::ok(if files.is_empty() { "No files found".to_string() } else { files.join("\n") });
                r.truncated = truncated;
                Ok(r)
            }
        }
    }

    async fn grep(&self, st: &mut ToolState, i: SearchInput) -> Result<ToolResult> {
        let base = i.path.unwrap_or_else(|| "/workspace".into());
        let req =
            ExecRequest::new(["grep", "-rnIE", "--exclude-dir=.git", "-e", i.pattern.as_str(), "--", base.as_str()]);
        match self.run(st, req, None, self.cfg.max_output_bytes).await? {
            Err(r) => Ok(r),
            Ok((ExitStatus::Exited { code: 1 }, _, _, _)) => Ok(ToolResult::ok("No matches found")),
            Ok((status, out, err, truncated)) => {
                if !status.success() {
                    return Ok(failed(&status, err.trim()));
                }
                let mut cap = Capped::new(self.cfg.max_output_bytes);
                cap.push(&out);
                let (content, t2) = cap.finish();
                let mut r = ToolResult::ok(content.trim_end().to_string());
                r.truncated = truncated || t2;
                Ok(r)
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn failed(status: &ExitStatus, stderr: &str) -> ToolResult {
    let mut r = ToolResult::error(if stderr.is_empty() { format!("command {status}") } else { stderr.to_string() });
    r.exit_code = status.code();
    r.limit = status.limit();
    r
}

fn gone_result(mut content: String, status: ExitStatus) -> ToolResult {
    if let Some(l) = status.limit() {
        content.push_str(&format!("\n[stopped: sandbox {l} limit exceeded]"));
    } else {
        content.push_str(&format!("\n[the bash session ended: {status}]"));
    }
    ToolResult {
        content,
        is_error: true,
        exit_code: status.code(),
        truncated: false,
        timed_out: false,
        limit: status.limit(),
    }
}

/// Quote a string for a POSIX shell (exposed for runners building commands).
pub fn shell_quote(s: &str) -> String {
    sh_quote(s)
}
