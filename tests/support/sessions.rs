//! Servers that run sessions, for the integration tests and benchmarks: the shared runtimes
//! install, sandbox directories, a sandbox uid range per server that no other test process
//! holds, bubblewrap, and the scripted fake model behind a fresh token.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bridle::runtimes::{Runtime, Runtimes};
use bridle_fake_model::{Config, FakeModel};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, Backend, Server};

/// The runtimes directory shared by every test binary: `$BRIDLE_RUNTIMES_DIR`, else
/// `<workspace>/target/bridle-runtimes` (the fake model's own runtime tests use it too).
pub fn runtimes_dir() -> PathBuf {
    std::env::var_os("BRIDLE_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bridle-runtimes"))
}

/// Install `which` into [`runtimes_dir`] and return it. One install at a time per process;
/// the installer's own lock serializes processes, and an up-to-date install is a no-op.
pub fn install(which: &[Runtime]) -> PathBuf {
    static INSTALL: OnceLock<Mutex<()>> = OnceLock::new();
    let _guard = INSTALL.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let dir = runtimes_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if let Err(e) = Runtimes::new(&dir).install(which) {
        panic!("installing the runtimes into {}: {e:#}", dir.display());
    }
    dir.canonicalize().unwrap_or(dir)
}

/// Every runtime, installed into [`runtimes_dir`].
pub fn install_runtimes() -> PathBuf {
    install(&Runtime::ALL)
}

// Not every target that includes the support code uses both.
#[allow(unused_imports)]
pub use super::sandbox_dir::{SandboxDir, sandbox_dir};

/// A server that runs sessions: `runtimes` and its own `sandboxes`, plus `envs`. The support
/// code gives it bubblewrap and a uid range of its own ([`claim_uid_range`]).
pub fn session_server(backend: Backend<'_>, runtimes: &Path, sandboxes: &Path, envs: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("BRIDLE_RUNTIMES_DIR", runtimes.to_str().expect("utf-8 runtimes dir")),
        ("BRIDLE_SESSIONS__SANDBOX_DIR", sandboxes.to_str().expect("utf-8 sandbox dir")),
    ];
    all.extend_from_slice(envs);
    Server::start_opts(backend, &[], &all)
}

/// A token no one else uses (so finding it anywhere means it leaked from this run), tagged
/// with the test's name.
pub fn fresh_token(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("sk-fake-{tag}-{:x}{:x}", std::process::id(), nanos)
}

/// The scripted fake model (in process), accepting only a [`fresh_token`]; returns both.
pub fn fake_model(tag: &str) -> (FakeModel, String) {
    let token = fresh_token(tag);
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    (fake, token)
}

impl Api {
    /// A vault for the Claude engine's model traffic: `llm_base_url` is the fake model at
    /// `fake_url`, its credential `token`. Returns the vault id.
    pub async fn llm_vault(&self, name: &str, fake_url: &str, token: &str) -> String {
        let vault = self
            .post_ok(
                "/v1/vaults",
                json!({"display_name": name, "metadata": {
                    "sandbox0.managed_agents.role": "llm",
                    "sandbox0.managed_agents.engine": "claude",
                    "sandbox0.managed_agents.llm_base_url": fake_url}}),
            )
            .await;
        let id = vault["id"].as_str().expect("vault id").to_owned();
        self.post_ok(
            &format!("/v1/vaults/{id}/credentials"),
            json!({"display_name": "model key", "auth": {"type": "static_bearer", "token": token}}),
        )
        .await;
        id
    }

    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let r =
            self.request(Method::POST, path).json(&body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!((200..300).contains(&status), "POST {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"))
    }
}

// ---------------------------------------------------------------------------------------------
// sandbox uid ranges
// ---------------------------------------------------------------------------------------------

/// Uids per range: the server's default `max_sandboxes`, which [`Server`] also sets.
pub const UID_RANGE_LEN: u32 = 1000;
/// First uid of the first range. Above the production default (600 000) and the ranges the
/// sandbox crate's own tests pick (610 000 up to about 1 610 000), so neither can overlap ours.
const UID_RANGES_BASE: u32 = 2_000_000;
const UID_RANGES: u32 = 1000;

/// A sandbox uid range, held until dropped: an exclusive lock on a slot file in the temp dir.
/// Servers in this process and in every other test process running at the same time hold
/// different slots, so two sandboxes never share a host uid.
pub struct UidRange {
    pub base: u32,
    _lock: File,
}

/// Claim a free uid range (see [`UidRange`]). The lock goes away with the process, so a killed
/// test binary leaves no slot behind.
pub fn claim_uid_range() -> UidRange {
    let dir = std::env::temp_dir().join("bridle-test-uid-ranges");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    // Start at a pid-dependent slot so concurrent processes rarely probe the same files.
    let first = std::process::id() % UID_RANGES;
    for i in 0..UID_RANGES {
        let slot = (first + i) % UID_RANGES;
        let path = dir.join(format!("{slot}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        match file.try_lock() {
            Ok(()) => return UidRange { base: UID_RANGES_BASE + slot * UID_RANGE_LEN, _lock: file },
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => panic!("lock {}: {e}", path.display()),
        }
    }
    panic!("all {UID_RANGES} sandbox uid ranges are held by running tests");
}

/// gVisor's `runsc`, for the suites on `sandbox_driver = "gvisor"`:
/// installed (or upgraded from the distribution's backports) when missing
/// or too old, like bubblewrap.
pub fn ensure_runsc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = bridle_sandbox::gvisor::install::ensure() {
            panic!("gVisor: {e}");
        }
    });
}

/// bubblewrap is the sandbox's one external program: install it when it is
/// missing (as root, with apt-get), so the suite runs on a fresh machine.
pub fn ensure_bubblewrap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !Path::new("/usr/bin/bwrap").exists() {
            super::apt_install(&["bubblewrap"]);
        }
    });
}
