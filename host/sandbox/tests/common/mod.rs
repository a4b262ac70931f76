#![allow(dead_code)]
//! Helpers shared by the integration tests (run as root, as in CI).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bridle_sandbox::{ExecRequest, LocalConfig, LocalDriver, Output, Sandbox, SandboxSpec};

static NEXT_RANGE: AtomicU32 = AtomicU32::new(0);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A driver over a fresh state dir with its own uid range (tests in one
/// process run in parallel; each gets 20 uids of its own).
pub fn driver(tmp: &Path) -> LocalDriver {
    driver_from(config(tmp))
}

/// [`driver`] with settings changed by `edit`.
pub fn driver_with(tmp: &Path, edit: impl FnOnce(&mut LocalConfig)) -> LocalDriver {
    let mut cfg = config(tmp);
    edit(&mut cfg);
    driver_from(cfg)
}

/// The config [`driver`] uses (a fresh uid range), to adjust before
/// [`driver_from`].
pub fn config(tmp: &Path) -> LocalConfig {
    let n = NEXT_RANGE.fetch_add(1, Ordering::SeqCst);
    let base = 610_000 + std::process::id() % 1000 * 1000 + n * 20;
    LocalConfig {
        state_dir: tmp.join("state"),
        init_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_bridle-sandbox-init"))),
        uid_base: base,
        uid_count: 20,
        idle_timeout: None,
        ..LocalConfig::default()
    }
}

pub fn driver_from(cfg: LocalConfig) -> LocalDriver {
    init_tracing();
    ensure_bubblewrap();
    LocalDriver::new(cfg).expect("local driver (is bubblewrap installed? apt-get install -y bubblewrap)")
}

pub fn spec(session: &str) -> SandboxSpec {
    SandboxSpec::new(session)
}

/// Run a shell script in the sandbox and collect its output (10 s cap).
pub async fn sh(sbx: &dyn Sandbox, script: &str) -> Output {
    let child = sbx.exec(ExecRequest::shell(script)).await.expect("exec");
    tokio::time::timeout(Duration::from_secs(30), child.output(1 << 20)).await.expect("exec finished in time")
}

/// One request seen by [`FakeUpstream`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP/1.1 server that records requests and answers
/// `200 upstream-ok <path>`.
pub struct FakeUpstream {
    pub port: u16,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>> = Default::default();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = s.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.split("\r\n");
                    let request_line = lines.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end + 4..].to_vec();
                    while body.len() < len {
                        let Ok(n) = s.read(&mut chunk).await else { return };
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                    seen.lock().unwrap().push(Seen { request_line, headers, body });
                    let reply = format!("upstream-ok {path}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        reply.len(),
                        reply
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self { port, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// bubblewrap is the sandbox's one external program: install it when it is
/// missing (as root, with apt-get), so the suite runs on a fresh machine.
pub fn ensure_bubblewrap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::path::Path::new("/usr/bin/bwrap").exists() {
            return;
        }
        let install = || {
            std::process::Command::new("apt-get")
                .args(["install", "-y", "-qq", "bubblewrap"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = std::process::Command::new("apt-get").args(["update", "-qq"]).status();
            assert!(install(), "bubblewrap is missing and `apt-get install -y bubblewrap` failed");
        }
    });
}

/// gVisor's `runsc`, for the gVisor variant: installed (or upgraded from
/// the distribution's backports) when missing or too old, like bubblewrap.
pub fn ensure_runsc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = bridle_sandbox::gvisor::install::ensure() {
            panic!("gVisor: {e}");
        }
    });
}

/// How a test's sandboxes are made: started by the claim, taken from the
/// warm pool (booted before the session was known), started on gVisor, or
/// taken from gVisor's warm pool. The breakout and isolation suites run
/// against each ([`per_variant!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Cold,
    Pooled,
    Gvisor,
    GvisorPooled,
}

/// The driver of a [`Variant`].
#[derive(Clone)]
pub enum AnyDriver {
    Local(LocalDriver),
    Gvisor(bridle_sandbox::GvisorDriver),
}

impl AnyDriver {
    pub fn workspace_path(&self, session: &str) -> PathBuf {
        match self {
            AnyDriver::Local(d) => d.workspace_path(session),
            AnyDriver::Gvisor(d) => d.workspace_path(session),
        }
    }
    pub fn local(&self) -> &LocalDriver {
        match self {
            AnyDriver::Local(d) => d,
            AnyDriver::Gvisor(_) => panic!("not the local driver"),
        }
    }
}

/// A claimed sandbox of a [`Variant`]: the trait object, plus what tests
/// read on the host.
pub struct AnySandbox {
    pub inner: std::sync::Arc<dyn Sandbox>,
    /// The host uid its processes run as.
    pub uid: u32,
    /// The host process that holds the sandbox (bwrap, or gVisor's sandbox).
    pub host_pid: Option<u32>,
    pub local: Option<std::sync::Arc<bridle_sandbox::local::LocalSandbox>>,
}

impl std::ops::Deref for AnySandbox {
    type Target = dyn Sandbox;
    fn deref(&self) -> &Self::Target {
        &*self.inner
    }
}

impl AnySandbox {
    pub fn host_uid(&self) -> Option<u32> {
        Some(self.uid)
    }
    pub fn bwrap_pid(&self) -> Option<u32> {
        self.host_pid
    }
}

/// The gVisor driver over a fresh state dir and uid range.
pub fn gvisor_driver_with(tmp: &Path, edit: impl FnOnce(&mut LocalConfig)) -> bridle_sandbox::GvisorDriver {
    init_tracing();
    ensure_runsc();
    let mut base = config(tmp);
    edit(&mut base);
    bridle_sandbox::GvisorDriver::new(bridle_sandbox::GvisorConfig { base, ..Default::default() })
        .expect("gVisor driver (is runsc installed? apt-get install -y runsc)")
}

impl Variant {
    /// Whether its sandboxes run on gVisor.
    pub fn is_gvisor(self) -> bool {
        matches!(self, Variant::Gvisor | Variant::GvisorPooled)
    }

    /// Whether its sandboxes come from a warm pool.
    pub fn is_pooled(self) -> bool {
        matches!(self, Variant::Pooled | Variant::GvisorPooled)
    }

    pub fn driver(self, tmp: &Path) -> AnyDriver {
        self.driver_with(tmp, |_| {})
    }

    /// A pooled driver keeps one sandbox warm; `edit` may change the pool's
    /// limits to the ones the test's specs ask for.
    pub fn driver_with(self, tmp: &Path, edit: impl FnOnce(&mut LocalConfig)) -> AnyDriver {
        if self.is_gvisor() {
            let size = if self.is_pooled() { 1 } else { 0 };
            return AnyDriver::Gvisor(gvisor_driver_with(tmp, |c| {
                c.pool = bridle_sandbox::PoolConfig { size, ..Default::default() };
                edit(c);
            }));
        }
        let mut cfg = config(tmp);
        if self == Variant::Pooled {
            cfg.pool = bridle_sandbox::PoolConfig { size: 1, ..Default::default() };
        }
        edit(&mut cfg);
        AnyDriver::Local(driver_from(cfg))
    }

    /// Claim; a pooled claim waits for the pool's sandbox and must get it.
    pub async fn claim(self, d: &AnyDriver, spec: SandboxSpec) -> AnySandbox {
        let d = match d {
            AnyDriver::Gvisor(g) => {
                if self.is_pooled() {
                    for _ in 0..600 {
                        if g.pool_ready() > 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                let sbx = g.claim_gvisor(spec).await.expect("claim");
                assert_eq!(sbx.pooled(), self.is_pooled(), "{self:?} claim");
                return AnySandbox {
                    uid: sbx.host_uid(),
                    host_pid: sbx.sandbox_pid().map(|p| p as u32),
                    inner: sbx,
                    local: None,
                };
            }
            AnyDriver::Local(d) => d,
        };
        if self == Variant::Pooled {
            for _ in 0..300 {
                if d.pool_ready() > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let sbx = d.claim_local(spec).await.expect("claim");
        assert_eq!(sbx.pooled(), self == Variant::Pooled, "{self:?} claim");
        AnySandbox {
            uid: sbx.host_uid().expect("root: a uid per sandbox"),
            host_pid: sbx.bwrap_pid(),
            inner: sbx.clone(),
            local: Some(sbx),
        }
    }

    /// The uid processes see inside (`id -u`): 1000 with bubblewrap (a
    /// user namespace maps it); the host uid itself on gVisor.
    pub fn inside_uid(self, sbx: &AnySandbox) -> u32 {
        if self.is_gvisor() { sbx.uid } else { bridle_sandbox::local::INSIDE_UID }
    }
}

/// One `#[tokio::test]` per [`Variant`] for each named `async fn(Variant)`:
/// `name::cold`, `name::pooled`, `name::gvisor` and `name::gvisor_pooled`.
#[macro_export]
macro_rules! per_variant {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn cold() {
                    super::$name($crate::common::Variant::Cold).await
                }
                #[tokio::test]
                async fn pooled() {
                    super::$name($crate::common::Variant::Pooled).await
                }
                #[tokio::test]
                async fn gvisor() {
                    super::$name($crate::common::Variant::Gvisor).await
                }
                #[tokio::test]
                async fn gvisor_pooled() {
                    super::$name($crate::common::Variant::GvisorPooled).await
                }
            }
        )*
    };
}
