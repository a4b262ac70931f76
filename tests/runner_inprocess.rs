//! The session runner in process, without bubblewrap: the server's own state (SQLite, the
//! template plugin built as a plugin author builds it, the HTTP API on a loopback port) with a
//! sandbox driver that runs each runtime as a plain host process in a temp workspace. The
//! template's runtime is `cat`; here a small shell loop stands in for it that echoes like
//! `cat`, but stays silent on a message starting `hang` (a turn that never ends) and exits 3
//! on one starting `die`. So queueing, interrupts past their grace, idle stops and runtime
//! exits are driven through the public API in seconds, with nothing faked but the sandbox.

#[path = "support/cluster.rs"]
#[allow(unused_imports)]
mod cluster;
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bridle::config::{Config, HarnessConfig};
use bridle_sandbox::{
    EgressStats, ExecChild, ExecControl, ExecRequest, ExitStatus, Sandbox, SandboxDriver, SandboxError, SandboxSpec,
};
use cluster::{Frame, Stream};
use reqwest::Method;
use serde_json::{Value, json};
use support::Api;
use tokio::sync::OnceCell;

/// Stands in for `cat` (see the module docs).
const RUNTIME: &str = r#"while IFS= read -r line; do
  case "$line" in
    *'"text":"hang'*) ;;
    *'"text":"die'*) exit 3 ;;
    *) printf '%s\n' "$line" ;;
  esac
done"#;

/// Runs every exec as a host process (in its own process group) in `root/<session>`.
struct HostDriver {
    root: PathBuf,
    /// Runtime processes (resident execs) started, and execs still running.
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

#[async_trait]
impl SandboxDriver for HostDriver {
    fn name(&self) -> &'static str {
        "host-processes"
    }

    async fn claim(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let dir = self.root.join(&spec.session_id);
        std::fs::create_dir_all(&dir).map_err(|e| SandboxError::Other(e.into()))?;
        Ok(Arc::new(HostSandbox {
            id: format!("sbx_host_{}", spec.session_id),
            session_id: spec.session_id,
            workspace: dir.display().to_string(),
            up: AtomicBool::new(true),
            execs: Mutex::new(Vec::new()),
            started: self.started.clone(),
            running: self.running.clone(),
        }))
    }

    async fn resume(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
        self.claim(spec).await
    }

    async fn workspace_exists(&self, session_id: &str) -> Result<bool, SandboxError> {
        Ok(self.root.join(session_id).is_dir())
    }

    async fn delete_workspace(&self, session_id: &str) -> Result<(), SandboxError> {
        let _ = std::fs::remove_dir_all(self.root.join(session_id));
        Ok(())
    }
}

struct HostSandbox {
    id: String,
    session_id: String,
    workspace: String,
    up: AtomicBool,
    execs: Mutex<Vec<Arc<HostExec>>>,
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

struct HostExec {
    pid: i32,
    child: tokio::sync::Mutex<tokio::process::Child>,
    status: OnceCell<ExitStatus>,
    running: Arc<AtomicUsize>,
}

#[async_trait]
impl ExecControl for HostExec {
    fn pid(&self) -> Option<i32> {
        Some(self.pid)
    }

    async fn wait(&self) -> ExitStatus {
        *self
            .status
            .get_or_init(|| async {
                let st = self.child.lock().await.wait().await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                match st.map(|s| (s.code(), std::os::unix::process::ExitStatusExt::signal(&s))) {
                    Ok((Some(code), _)) => ExitStatus::Exited { code },
                    Ok((None, Some(signal))) => ExitStatus::Signaled { signal },
                    _ => ExitStatus::SandboxGone,
                }
            })
            .await
    }

    async fn kill(&self) -> Result<(), SandboxError> {
        // SAFETY: kill(2) on the process group this exec created.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        Ok(())
    }
}

#[async_trait]
impl Sandbox for HostSandbox {
    fn id(&self) -> &str {
        &self.id
    }
    fn session_id(&self) -> &str {
        &self.session_id
    }
    fn llm_base_url_inside(&self) -> String {
        "http://127.0.0.1:9/llm".into()
    }
    fn proxy_url_inside(&self) -> String {
        "http://127.0.0.1:9".into()
    }
    fn workspace_inside(&self) -> &str {
        &self.workspace
    }
    fn egress_stats(&self) -> EgressStats {
        EgressStats::default()
    }
    fn is_running(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecChild, SandboxError> {
        if !self.is_running() {
            return Err(SandboxError::Gone(self.id.clone()));
        }
        let argv = match request.argv.first().map(String::as_str) {
            Some("cat") => vec!["/bin/sh".to_owned(), "-c".to_owned(), RUNTIME.to_owned()],
            _ => request.argv.clone(),
        };
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .current_dir(request.cwd.as_deref().unwrap_or(&self.workspace))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| SandboxError::Invalid(format!("cannot start {argv:?}: {e}")))?;
        // Runtimes are resident execs; the host's own short execs (placing files,
        // collecting outputs) are not runtime starts.
        if request.resident {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let exec = Arc::new(HostExec {
            pid: child.id().map_or(-1, |p| p as i32),
            child: tokio::sync::Mutex::new(child),
            status: OnceCell::new(),
            running: self.running.clone(),
        });
        self.execs.lock().unwrap().push(exec.clone());
        Ok(ExecChild {
            stdin: stdin.map(|s| Box::pin(s) as _),
            stdout: stdout.map(|s| Box::pin(s) as _),
            stderr: stderr.map(|s| Box::pin(s) as _),
            control: exec,
        })
    }

    async fn write_file(&self, path: &str, contents: &[u8], _mode: u32) -> Result<(), SandboxError> {
        std::fs::write(path, contents).map_err(|e| SandboxError::Other(e.into()))
    }

    async fn stop(&self) -> Result<(), SandboxError> {
        self.up.store(false, Ordering::SeqCst);
        let execs: Vec<_> = self.execs.lock().unwrap().drain(..).collect();
        for e in execs {
            let _ = e.kill().await;
        }
        Ok(())
    }

    async fn release(&self) -> Result<(), SandboxError> {
        self.stop().await
    }
}

/// A server state on `HostDriver`, serving the API on a loopback port.
struct Bench {
    api: Api,
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    _tmp: tempfile::TempDir,
}

async fn server(edit: impl FnOnce(&mut Config)) -> Bench {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: tmp.path().join("data"),
        runtimes_dir: tmp.path().join("runtimes"),
        auto_install: false,
        ..Config::default()
    };
    let plugin = support::template_plugin().display().to_string();
    config.harnesses.insert("echo".into(), HarnessConfig { plugin });
    edit(&mut config);
    let (started, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let driver = HostDriver { root: tmp.path().join("workspaces"), started: started.clone(), running: running.clone() };
    bridle::server::prepare_data_dir(&config).unwrap();
    let state = bridle::server::build_state_with(config, true, Some(Arc::new(driver))).await.unwrap();
    let (_, key) = bridle::keys::create_key(&state.store, "runner tests").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, bridle::api::router(state)).await });
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    Bench { api: Api { base, key, http }, started, running, _tmp: tmp }
}

async fn ok(api: &Api, method: Method, path: &str, body: Value) -> Value {
    let mut req = api.request(method.clone(), path);
    if !body.is_null() {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert!((200..300).contains(&status), "{method} {path} → {status}: {v}");
    v
}

/// An echo session (its LLM vault selects the `echo` engine).
async fn session(api: &Api) -> String {
    let env = ok(api, Method::POST, "/v1/environments", json!({"name": "env"})).await;
    let agent = ok(api, Method::POST, "/v1/agents", json!({"name": "echo", "model": "echo-1"})).await;
    let vault = ok(
        api,
        Method::POST,
        "/v1/vaults",
        json!({"display_name": "llm", "metadata": {
            "sandbox0.managed_agents.role": "llm",
            "sandbox0.managed_agents.engine": "echo",
            "sandbox0.managed_agents.llm_base_url": "http://127.0.0.1:9"}}),
    )
    .await;
    let vid = vault["id"].as_str().unwrap();
    let cred = json!({"display_name": "key", "auth": {"type": "static_bearer", "token": "tok"}});
    ok(api, Method::POST, &format!("/v1/vaults/{vid}/credentials"), cred).await;
    let body = json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]});
    let s = ok(api, Method::POST, "/v1/sessions", body).await;
    s["id"].as_str().unwrap().to_owned()
}

async fn send(api: &Api, sid: &str, events: Vec<Value>) {
    ok(api, Method::POST, &format!("/v1/sessions/{sid}/events"), json!({ "events": events })).await;
}

fn message(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

/// A bound on a hang, not a speed check.
const WAIT: Duration = Duration::from_secs(20);

fn stop_reason(f: &Frame) -> &str {
    f.body["stop_reason"]["type"].as_str().unwrap_or_default()
}

/// The frames from `from` on, as `type[:detail]` words.
fn words(frames: &[Frame], from: usize) -> Vec<String> {
    frames[from..]
        .iter()
        .filter(|f| !f.kind.starts_with("span."))
        .map(|f| match f.kind.as_str() {
            "agent.message" | "user.message" => format!("{}:{}", f.kind, f.text()),
            "session.status_idle" => format!("idle:{}", stop_reason(f)),
            "session.error" => {
                format!("error:{}", f.body["error"]["retry_status"]["type"].as_str().unwrap_or_default())
            }
            k => k.trim_start_matches("session.").to_owned(),
        })
        .collect()
}

async fn idle_count(stream: &Stream, n: usize) -> usize {
    let mut at = 0;
    for _ in 0..n {
        at = stream.wait_for(at, "session.status_idle", WAIT, |f| f.kind == "session.status_idle").await + 1;
    }
    at
}

#[tokio::test]
async fn messages_sent_together_run_as_turns_in_order_on_one_runtime() {
    let b = server(|_| {}).await;
    let sid = session(&b.api).await;
    let stream = Stream::open(&b.api, &sid).await;
    send(&b.api, &sid, vec![message("one"), message("two"), message("three")]).await;
    let end = idle_count(&stream, 3).await;
    let frames = stream.snapshot();
    assert_eq!(
        words(&frames[..end], 0),
        [
            "user.message:one",
            "user.message:two",
            "user.message:three",
            "status_running",
            "agent.message:one",
            "idle:end_turn",
            "status_running",
            "agent.message:two",
            "idle:end_turn",
            "status_running",
            "agent.message:three",
            "idle:end_turn",
        ]
    );
    assert_eq!(b.started.load(Ordering::SeqCst), 1, "one runtime for the three turns");

    // `stats`: time in `running` counts; once idle it stops while the session's age goes on.
    let stats =
        |s: &Value| (s["stats"]["active_seconds"].as_f64().unwrap(), s["stats"]["duration_seconds"].as_f64().unwrap());
    let (active, age) = stats(&ok(&b.api, Method::GET, &format!("/v1/sessions/{sid}"), Value::Null).await);
    assert!(active > 0.0 && active <= age, "active {active} s of {age} s");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (active2, age2) = stats(&ok(&b.api, Method::GET, &format!("/v1/sessions/{sid}"), Value::Null).await);
    assert_eq!(active2, active, "an idle session's active time does not grow");
    assert!(age2 >= age + 1.0, "the age grows: {age} s then {age2} s");
}

#[tokio::test]
async fn an_interrupt_the_runtime_ignores_ends_the_turn_after_the_grace() {
    let b = server(|c| c.sessions.interrupt_grace_secs = 1).await;
    let sid = session(&b.api).await;
    let stream = Stream::open(&b.api, &sid).await;
    send(&b.api, &sid, vec![message("hang on")]).await;
    stream.wait_for(0, "status_running", WAIT, |f| f.kind == "session.status_running").await;
    send(&b.api, &sid, vec![json!({"type": "user.interrupt"})]).await;
    let end = idle_count(&stream, 1).await;
    assert_eq!(
        words(&stream.snapshot()[..end], 0),
        ["user.message:hang on", "status_running", "user.interrupt", "idle:end_turn"]
    );
    // The silent runtime was stopped; the next message starts a new one and is answered.
    send(&b.api, &sid, vec![message("back")]).await;
    let end2 = idle_count(&stream, 2).await;
    assert_eq!(
        words(&stream.snapshot()[..end2], end),
        ["user.message:back", "status_running", "agent.message:back", "idle:end_turn"]
    );
    assert_eq!(b.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_runtime_is_stopped_and_the_next_message_starts_it_again() {
    let b = server(|c| c.sessions.runtime_idle_secs = 1).await;
    let sid = session(&b.api).await;
    let stream = Stream::open(&b.api, &sid).await;
    send(&b.api, &sid, vec![message("first")]).await;
    let end = idle_count(&stream, 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.running.load(Ordering::SeqCst) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the idle runtime was never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&b.api, &sid, vec![message("second")]).await;
    let end2 = idle_count(&stream, 2).await;
    assert_eq!(
        words(&stream.snapshot()[..end2], end),
        ["user.message:second", "status_running", "agent.message:second", "idle:end_turn"]
    );
    assert_eq!(b.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_runtime_that_dies_mid_turn_ends_it_with_the_plugins_failure() {
    let b = server(|_| {}).await;
    let sid = session(&b.api).await;
    let stream = Stream::open(&b.api, &sid).await;
    send(&b.api, &sid, vec![message("die now")]).await;
    let end = stream.wait_for(0, "terminated", WAIT, |f| f.kind == "session.status_terminated").await + 1;
    let frames = stream.snapshot();
    assert_eq!(
        words(&frames[..end], 0),
        ["user.message:die now", "status_running", "error:terminal", "status_terminated"]
    );
    let err = frames.iter().find(|f| f.kind == "session.error").unwrap();
    assert!(
        err.body["error"]["message"].as_str().unwrap().contains("echo runtime exited with Some(3)"),
        "{:?}",
        err.body
    );
    let s = ok(&b.api, Method::GET, &format!("/v1/sessions/{sid}"), Value::Null).await;
    assert_eq!(s["status"], "terminated");
    // A terminated session's duration is frozen at its final update.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = ok(&b.api, Method::GET, &format!("/v1/sessions/{sid}"), Value::Null).await;
    assert_eq!(again["stats"], s["stats"]);
    assert!(s["stats"]["active_seconds"].as_f64().unwrap() > 0.0, "{}", s["stats"]);
}
