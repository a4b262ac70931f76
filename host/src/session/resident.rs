//! Resident runtimes (the sandbox-as-tool model): one supervised process per
//! harness, outside any sandbox, serving many sessions. Its stdio is framed
//! by the host: every line is `{"session": <id>, "msg": <JSON>}` both ways
//! (see `wit/0.3.0/harness.wit`, `launch`). A resident that dies ends the turns of
//! its sessions; the next message starts a new one.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bridle_sandbox::ExitStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc};

use super::io::Out;

/// The resident processes of this node, by engine.
#[derive(Default)]
pub(crate) struct Residents {
    procs: Mutex<HashMap<String, Arc<ResidentProc>>>,
    /// The hub of the sessions' MCP routes ([`super::resident_mcp`]).
    pub mcp_hub: super::resident_mcp::ResidentHub,
}

/// One resident process.
pub(crate) struct ResidentProc {
    engine: String,
    stdin: Mutex<ChildStdin>,
    routes: std::sync::Mutex<HashMap<String, mpsc::Sender<Out>>>,
    alive: AtomicBool,
    _child: Mutex<Child>,
    /// The process's own host uid (when the server is root), held while it runs.
    _uid: Option<bridle_sandbox::uids::UidLease>,
}

impl Residents {
    /// The running resident of `engine` (started from `argv`/`env` if there
    /// is none), with `session_id` routed to the returned receiver.
    pub async fn attach(
        &self,
        engine: &str,
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        session_id: &str,
    ) -> Result<(Arc<ResidentProc>, mpsc::Receiver<Out>), String> {
        let mut procs = self.procs.lock().await;
        let proc = match procs.get(engine).filter(|p| p.alive.load(Ordering::SeqCst)) {
            Some(p) => p.clone(),
            None => {
                let p = ResidentProc::spawn(engine, argv, env, cwd)?;
                procs.insert(engine.to_owned(), p.clone());
                p
            }
        };
        let (tx, rx) = mpsc::channel(256);
        proc.routes.lock().unwrap_or_else(|p| p.into_inner()).insert(session_id.to_owned(), tx);
        Ok((proc, rx))
    }
}

impl Residents {
    /// The session is gone (deleted): let every resident forget it.
    pub async fn close_session(&self, session_id: &str) {
        let procs: Vec<_> = self.procs.lock().await.values().cloned().collect();
        for p in procs.iter().filter(|p| p.alive.load(Ordering::SeqCst)) {
            p.detach(session_id);
            if let Err(e) = p.send(session_id, json!({"type": "close"})).await {
                tracing::debug!(engine = %p.engine, error = %e, "could not tell the resident runtime to close a session");
            }
        }
    }
}

impl ResidentProc {
    fn spawn(engine: &str, argv: &[String], env: &[(String, String)], cwd: &Path) -> Result<Arc<Self>, String> {
        let (program, args) = argv.split_first().ok_or("empty launch command")?;
        let mut cmd = Command::new(program);
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v))).current_dir(cwd);
        // It runs no user code itself (tools run in sandboxes), but it holds
        // every session's model token: as root, run it as a uid of its own,
        // leased like the sandbox uids (never a sandbox's, nor `nobody`).
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = if unsafe { libc::geteuid() } == 0 {
            let lease = bridle_sandbox::uids::lease_resident_uid()
                .map_err(|e| format!("no host uid for the resident runtime: {e}"))?;
            cmd.uid(lease.uid()).gid(lease.uid()).env("HOME", "/tmp");
            Some(lease)
        } else {
            None
        };
        // Die with the server, even when it is killed outright.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the hook.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting the resident runtime `{program}`: {e}"))?;
        let stdin = child.stdin.take().ok_or("resident runtime has no stdin")?;
        let stdout = child.stdout.take().ok_or("resident runtime has no stdout")?;
        let stderr = child.stderr.take();
        tracing::info!(engine, program = %program, pid = child.id(), "resident process spawned");
        let proc = Arc::new(ResidentProc {
            engine: engine.to_owned(),
            stdin: Mutex::new(stdin),
            routes: std::sync::Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            _child: Mutex::new(child),
            _uid: uid,
        });
        if let Some(stderr) = stderr {
            let engine = engine.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "bridle::runtime_stderr", engine = %engine, "{line}");
                }
            });
        }
        let reader = proc.clone();
        tokio::spawn(async move { reader.route_output(stdout).await });
        Ok(proc)
    }

    /// The host uid the process runs as, when it has one of its own.
    pub fn uid(&self) -> Option<u32> {
        self._uid.as_ref().map(|l| l.uid())
    }

    /// Deliver each framed line to its session; on EOF, end every session's turn.
    async fn route_output(self: Arc<Self>, stdout: tokio::process::ChildStdout) {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let read_at = crate::time::now_micros();
            let framed: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => {
                    tracing::warn!(engine = %self.engine, line = %line, "resident runtime printed an unframed line");
                    continue;
                }
            };
            let (Some(session), Some(msg)) = (framed.get("session").and_then(Value::as_str), framed.get("msg")) else {
                tracing::warn!(engine = %self.engine, line = %line, "resident runtime line lacks session or msg");
                continue;
            };
            let tx = self.routes.lock().unwrap_or_else(|p| p.into_inner()).get(session).cloned();
            match tx {
                Some(tx) => {
                    let _ = tx.send(Out::Line(msg.to_string(), read_at)).await;
                }
                None => tracing::debug!(engine = %self.engine, session, "output for a session not attached here"),
            }
        }
        self.alive.store(false, Ordering::SeqCst);
        let code = self._child.lock().await.wait().await.ok().and_then(|s| s.code());
        tracing::warn!(engine = %self.engine, ?code, "resident runtime exited");
        let routes: Vec<_> = self.routes.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, tx)| tx).collect();
        for tx in routes {
            let status = code.map_or(ExitStatus::SandboxGone, |code| ExitStatus::Exited { code });
            let _ = tx.send(Out::Exit(status)).await;
        }
    }

    /// Send one message for a session, framed.
    pub async fn send(&self, session_id: &str, msg: Value) -> std::io::Result<()> {
        let mut line = json!({"session": session_id, "msg": msg}).to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await
    }

    /// The session no longer listens (its runner stopped).
    pub fn detach(&self, session_id: &str) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
    }
}
