//! Self-hosted environments end to end: the official Python SDK's `EnvironmentWorker` (the
//! pinned `anthropic` package, unmodified) serves a real `bridle serve`'s sessions from worker
//! processes with their own working directories (`tests/python/e2e/test_self_hosted.py`): a
//! tool call runs in the worker's directory, two workers share ten sessions, a worker killed
//! mid-call does not lose the turn, bad keys and stale leases are refused, and the tool-call
//! round trip through a worker is measured beside the local sandbox's.
//!
//! openai-agents runs the whole suite (its tools run outside its runtime). claude and codex run
//! the tool tests: their plugins turn the runtimes' own workspace tools off and offer the
//! worker's instead (Claude Code through an SDK MCP server, codex as dynamic tools), so a bash and
//! a write call land in the worker's directory (README "Self-hosted environments").
//!
//! Run: `cargo test -p bridle --test self_hosted -- --nocapture`
//! Narrow the pytest selection with `BRIDLE_E2E_PYTEST_ARGS="-k killed"`.

mod support;

use std::process::Command;

use support::Backend;
use support::sessions::{fake_model, install_runtimes, sandbox_dir, session_server};

/// Leases this short make a killed worker's item return to the queue within seconds.
const LEASE_SECS: &str = "4";
/// Long enough for ten sessions sharing two workers; the unanswered-call test waits this long.
const TOOL_TIMEOUT_SECS: &str = "45";

/// Run `tests/python/e2e/test_self_hosted.py` for `engine` against a fresh server, narrowed
/// to `select` (a pytest `-k` expression) when given.
fn run_suite(engine: &str, select: Option<&str>) {
    let runtimes = install_runtimes();
    let (fake, token) = fake_model(&format!("selfhosted-{engine}"));
    let sandboxes = sandbox_dir();
    let mut server = session_server(
        Backend::Sqlite,
        &runtimes,
        sandboxes.path(),
        &[
            ("BRIDLE_SELF_HOSTED__LEASE_SECS", LEASE_SECS),
            ("BRIDLE_SELF_HOSTED__TOOL_TIMEOUT_SECS", TOOL_TIMEOUT_SECS),
            ("BRIDLE_LOG", "info,bridle=debug"),
        ],
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
        .env("BRIDLE_E2E_ENGINE", engine)
        .env("BRIDLE_E2E_FAKE_URL", fake.base_url())
        .env("BRIDLE_E2E_FAKE_TOKEN", &token)
        .env("BRIDLE_BASE_URL", &server.base_url)
        .env("BRIDLE_API_KEY", &server.api_key)
        .env("BRIDLE_E2E_SERVER_LOG", &log)
        .env("BRIDLE_E2E_SANDBOX_DIR", sandboxes.path())
        .env("BRIDLE_E2E_BIN", support::bridle_bin())
        .env("BRIDLE_E2E_DATA_DIR", server.data_dir())
        .env("BRIDLE_E2E_LEASE_SECS", LEASE_SECS)
        .env("BRIDLE_E2E_TOOL_TIMEOUT_SECS", TOOL_TIMEOUT_SECS);
    if let Some(k) = select {
        cmd.args(["-k", k]);
    }
    if let Ok(extra) = std::env::var("BRIDLE_E2E_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    support::run_and_report(&mut cmd, &format!("pytest tests/python/e2e/test_self_hosted.py ({engine})"));
    server.assert_alive();
}

#[test]
fn official_environment_worker_serves_self_hosted_sessions() {
    run_suite("openai-agents", None);
}

/// Claude Code's Bash/Write are off; `mcp__workspace__bash` / `write` run on the worker.
#[test]
fn claude_runs_its_workspace_tools_on_the_official_worker() {
    run_suite("claude", Some("workspace_tools or asked or lacks"));
}

/// codex's shell tool is off; the dynamic tools `bash` / `write` run on the worker.
#[test]
fn codex_runs_its_workspace_tools_on_the_official_worker() {
    run_suite("codex", Some("workspace_tools or asked or lacks"));
}

/// Two nodes on one PostgreSQL database: a work item queued by a third party (the store, as
/// another node's runner would) wakes a long poll waiting on node B (`NOTIFY`), and its lease
/// moves between nodes (ack on A, heartbeat on B, stop on A): any node serves any worker.
#[test]
fn the_work_queue_spans_postgres_nodes() {
    use bridle::model::work::WorkItem;
    use serde_json::{Value, json};
    use support::{Api, Postgres};

    let pg = Postgres::start();
    let a = support::Server::start(Backend::Postgres(&pg));
    let b = a.start_second_node();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let admin = Api::new(&a);
        let env: Value = admin
            .request(reqwest::Method::POST, "/v1/environments")
            .json(&json!({"name": "pg-workers", "config": {"type": "self_hosted"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let env_id = env["id"].as_str().expect("environment created").to_owned();
        let out = support::run_ok(&mut a.cli_command(&["environments", "keys", "create", &env_id]), "keys create");
        let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (on_a, on_b) = (Api::with_key(&a, &key), Api::with_key(&b, &key));

        // A long poll on B, then work queued elsewhere: the poll answers it, not `null`.
        let poll = {
            let req = on_b
                .request(reqwest::Method::GET, &format!("/v1/environments/{env_id}/work/poll?block_ms=999"))
                .header("anthropic-worker-id", "pg-worker");
            tokio::spawn(async move { req.send().await.unwrap().json::<Value>().await.unwrap() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let store = bridle::store::Store::connect(a.database_url.as_deref().unwrap()).await.unwrap();
        let item = WorkItem::new(
            bridle::ids::new_id(bridle::ids::Kind::Work),
            &env_id,
            "sesn_0000000000000000000000000A",
            30,
            bridle::time::now_micros(),
        );
        store.insert_work(&item).await.unwrap();
        let got = poll.await.unwrap();
        assert_eq!(got["id"], item.id.as_str(), "the poll on node B was not woken by the work queued: {got}");
        assert!(got["secret"].as_str().is_some_and(|s| !s.is_empty()), "{got}");

        let path = |p: &str| format!("/v1/environments/{env_id}/work/{}{p}", item.id);
        let ack = on_a.request(reqwest::Method::POST, &path("/ack")).send().await.unwrap();
        assert_eq!(ack.status(), 200, "{}", ack.text().await.unwrap());
        let beat: Value = on_b
            .request(reqwest::Method::POST, &path("/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((beat["lease_extended"].as_bool(), beat["state"].as_str()), (Some(true), Some("active")), "{beat}");
        let stale = on_a
            .request(reqwest::Method::POST, &path("/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 412);
        let stale: Value = stale.json().await.unwrap();
        assert_eq!(stale["error"]["details"]["error_code"], "heartbeat_precondition_failed", "{stale}");
        assert_eq!(stale["error"]["details"]["current_state"]["state"], "active", "{stale}");
        let stop =
            on_a.request(reqwest::Method::POST, &path("/stop")).json(&json!({"force": true})).send().await.unwrap();
        assert_eq!(stop.status(), 200, "{}", stop.text().await.unwrap());
        let stats: Value = on_b
            .request(reqwest::Method::GET, &format!("/v1/environments/{env_id}/work/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((stats["depth"].as_i64(), stats["workers_polling"].as_i64()), (Some(0), Some(1)), "{stats}");
    });
}
