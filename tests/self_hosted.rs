//! Self-hosted environments end to end: the official Python SDK's `EnvironmentWorker` (the
//! pinned `anthropic` package, unmodified) serves a real `bridle serve`'s sessions from worker
//! processes with their own working directories (`tests/python/e2e/test_self_hosted.py`): a
//! tool call runs in the worker's directory, two workers share ten sessions, a worker killed
//! mid-call does not lose the turn, bad keys and stale leases are refused, and the tool-call
//! round trip through a worker is measured beside the local sandbox's.
//!
//! The harness is openai-agents (its tools run outside its runtime); claude and codex sessions
//! in a self-hosted environment are refused at create (see README "Self-hosted environments").
//!
//! Run: `cargo test -p bridle --test self_hosted -- --nocapture`
//! Narrow the pytest selection with `BRIDLE_E2E_PYTEST_ARGS="-k killed"`.

mod support;

use std::process::Command;

use support::Backend;
use support::sessions::{fake_model, install_runtimes, sandbox_dir, session_server};

/// Leases this short make a killed worker's item return to the queue within seconds.
const LEASE_SECS: &str = "4";

#[test]
fn official_environment_worker_serves_self_hosted_sessions() {
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("selfhosted");
    let sandboxes = sandbox_dir();
    let mut server = session_server(
        Backend::Sqlite,
        &runtimes,
        sandboxes.path(),
        &[("BRIDLE_SELF_HOSTED__LEASE_SECS", LEASE_SECS), ("BRIDLE_LOG", "info,bridle=debug")],
    );
    let python = support::python_venv();
    let suite = support::tests_dir().join("python/e2e");
    let log = server.data_dir().join("server.log").to_string_lossy().into_owned();
    let mut cmd = Command::new(python);
    support::scrub(&mut cmd);
    cmd.args(["-m", "pytest"])
        .arg(suite.join("test_self_hosted.py"))
        .args(["-v", "-s", "-rfE", "-p", "no:cacheprovider", "--timeout=600", "--color=no", "--durations=5"])
        .current_dir(&suite)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BRIDLE_E2E_ENGINE", "openai-agents")
        .env("BRIDLE_E2E_FAKE_URL", fake.base_url())
        .env("BRIDLE_E2E_FAKE_TOKEN", &token)
        .env("BRIDLE_BASE_URL", &server.base_url)
        .env("BRIDLE_API_KEY", &server.api_key)
        .env("BRIDLE_E2E_SERVER_LOG", &log)
        .env("BRIDLE_E2E_SANDBOX_DIR", sandboxes.path())
        .env("BRIDLE_E2E_BIN", support::bridle_bin())
        .env("BRIDLE_E2E_DATA_DIR", server.data_dir())
        .env("BRIDLE_E2E_LEASE_SECS", LEASE_SECS);
    if let Ok(extra) = std::env::var("BRIDLE_E2E_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    support::run_and_report(&mut cmd, "pytest tests/python/e2e/test_self_hosted.py");
    server.assert_alive();
}
