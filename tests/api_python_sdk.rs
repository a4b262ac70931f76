//! API compatibility: the official `anthropic` Python SDK (pinned in
//! `tests/python/requirements.txt`, installed into `tests/.venv`) drives a live `bridle serve`
//! through every Managed Agents route, once on SQLite and once on a real PostgreSQL.
//!
//! Run: `cargo test -p bridle --test api_python_sdk -- --nocapture`
//! Narrow the pytest selection with `BRIDLE_PYTEST_ARGS="-k sessions"`.

mod support;

use std::process::Command;
use support::{Backend, Postgres, Server};

/// A short SSE heartbeat so the heartbeat test need not wait the default 15 s.
const HEARTBEAT_SECS: &str = "2";

fn start(backend: Backend<'_>) -> Server {
    Server::start_opts(backend, &[], &[("BRIDLE_SSE_HEARTBEAT_SECS", HEARTBEAT_SECS)])
}

fn run_pytest(server: &Server, label: &str) {
    let python = support::python_venv();
    let suite = support::tests_dir().join("python");
    let mut cmd = Command::new(python);
    support::scrub(&mut cmd);
    cmd.args(["-m", "pytest"])
        .arg(&suite)
        // The end-to-end session suite lives below (tests/python/e2e, run by e2e_sessions.rs).
        .arg(format!("--ignore={}", suite.join("e2e").display()))
        .args(["-q", "-rfE", "-p", "no:cacheprovider", "--timeout=180", "--color=no"])
        .current_dir(&suite)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BRIDLE_BASE_URL", &server.base_url)
        .env("BRIDLE_API_KEY", &server.api_key)
        .env("BRIDLE_BACKEND", label)
        .env("BRIDLE_HEARTBEAT_SECS", HEARTBEAT_SECS);
    if let Ok(extra) = std::env::var("BRIDLE_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    support::run_and_report(&mut cmd, &format!("pytest tests/python against {label}"));
}

#[test]
fn python_sdk_against_sqlite() {
    let mut server = start(Backend::Sqlite);
    run_pytest(&server, "sqlite");
    server.assert_alive();
}

#[test]
fn python_sdk_against_postgres() {
    let pg = Postgres::start();
    let mut server = start(Backend::Postgres(&pg));
    run_pytest(&server, "postgres");
    server.assert_alive();
}
