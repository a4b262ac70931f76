//! Sandbox limits seen through a real `bridle serve` (real Claude Code in bubblewrap sandboxes,
//! the in-process fake model):
//! - an environment's own workspace quota (`bridle.sandbox_disk_bytes`, allowed by the
//!   operator's `sessions.sandbox_disk_bytes_max`): its session's image is made at that size,
//!   and a tool call writing past it fails with "No space left on device", which the agent sees
//!   in the tool result;
//! - the egress gateways' global connection cap, sized from the open-file limit: a server started
//!   with a soft limit below its hard one raises the soft limit to the hard one and reports the
//!   cap derived from it in `/metrics`. The limits are set on the server process before it
//!   starts (this test process could not raise a lowered hard limit back).
//!
//! Needs root (sandbox uids, loop-mounted workspace images), bubblewrap, e2fsprogs and
//! node/npm (Claude Code is installed on first use into `target/bridle-runtimes`).
//!
//! Run: `cargo test -p bridle --test server_limits -- --nocapture`

// Shared with the failover tests; this one uses part of it.
#[allow(unused_imports)]
#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::time::Duration;

use bridle::runtimes::Runtime;
use bridle_fake_model::{Reply, Scenario, ToolCall};
use cluster::{Api, Stream};
use reqwest::Method;
use serde_json::json;
use support::sessions::{fake_model, install, sandbox_dir, session_server};
use support::{Backend, Server};

/// A bound on hangs (never a speed check): a turn on two busy cores takes seconds.
const WAIT: Duration = Duration::from_secs(180);
/// The environment's quota: far below the server's 4 GiB default.
const ENV_QUOTA: u64 = 32 << 20;

#[test]
fn an_environments_own_quota_stops_a_tool_write_with_enospc() {
    let runtimes = install(&[Runtime::ClaudeCode]);
    let (fake, token) = fake_model("envquota");
    let model = "quota-fill";
    // One tool call writing 64 MiB (twice the environment's quota), then a reply quoting its output.
    fake.set_scenario(
        model,
        Scenario {
            turns: vec![Reply {
                tools: vec![ToolCall::bash("dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; echo dd-rc=$?")],
                text: "Tool said: {{tool_output}}".into(),
                ..Reply::default()
            }],
            ..Scenario::default()
        },
    );
    let sandboxes = sandbox_dir();
    let server = session_server(
        Backend::Sqlite,
        &runtimes,
        sandboxes.path(),
        &[("BRIDLE_SESSIONS__SANDBOX_DISK_BYTES_MAX", "1073741824")],
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let api = Api::new(&server);
        let env = api
            .ok(
                Method::POST,
                "/v1/environments",
                Some(json!({"name": "small-disk", "metadata": {"bridle.sandbox_disk_bytes": ENV_QUOTA.to_string()}})),
            )
            .await;
        let agent = api
            .ok(
                Method::POST,
                "/v1/agents",
                Some(json!({"name": "filler", "model": model, "tools": [{"type": "agent_toolset_20260401"}]})),
            )
            .await;
        let vault = api.llm_vault("llm-quota", &fake.base_url(), &token).await;
        let s = api
            .ok(
                Method::POST,
                "/v1/sessions",
                Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vault]})),
            )
            .await;
        let sid = s["id"].as_str().unwrap().to_owned();
        let stream = Stream::open(&api, &sid).await;
        api.send(&sid, "Fill the disk.").await;
        let idle = stream.wait_for(0, "the turn's end", WAIT, |f| f.kind == "session.status_idle").await;
        let frames = stream.snapshot();
        assert_eq!(frames[idle].body["stop_reason"]["type"], "end_turn", "{}", frames[idle].body);

        // The tool's own result carries the error, and the agent saw it.
        let results: Vec<String> =
            frames.iter().filter(|f| f.kind == "agent.tool_result").map(|f| f.body.to_string()).collect();
        assert!(
            results.iter().any(|r| r.contains("No space left on device")),
            "no tool result shows ENOSPC: {results:#?}"
        );
        let answer: String = frames.iter().filter(|f| f.kind == "agent.message").map(|f| f.text()).collect();
        assert!(answer.contains("No space left on device"), "{answer}");
        assert!(!answer.contains("dd-rc=0"), "the 64 MiB write succeeded: {answer}");

        // The session's image was made at the environment's size, not the server's.
        let img = sandboxes.path().join("disks").join(format!("{sid}.img"));
        let len = std::fs::metadata(&img).unwrap_or_else(|e| panic!("{}: {e}", img.display())).len();
        assert_eq!(len, ENV_QUOTA, "{}", img.display());
    });
}

/// The server's open-file limits in the cap test: soft below hard, both far below this
/// process's own.
const SOFT_NOFILE: u64 = 1024;
const HARD_NOFILE: u64 = 4096;

#[test]
fn the_gateway_cap_is_sized_from_the_raised_open_file_limit() {
    let sandboxes = sandbox_dir();
    let dir = sandboxes.path().to_str().unwrap();
    let server = Server::start_with_nofile(
        Backend::Sqlite,
        &[("BRIDLE_SESSIONS__SANDBOX_DIR", dir)],
        (SOFT_NOFILE, HARD_NOFILE),
    );
    // The kernel's view of the running server: the soft limit was raised to the hard one.
    let pid = server.pid().expect("server pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open-file limit line");
    let values: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(values, [HARD_NOFILE, HARD_NOFILE], "{line}");
    // The cap takes half the 4096 descriptors at two per connection: 1024 connections. Sized
    // from the soft limit as it was given (1024 descriptors) it would be 256.
    let metrics = support::http_get(&server.addr, "/metrics", &[]).unwrap().1;
    let cap = metrics
        .lines()
        .find(|l| l.starts_with("bridle_egress_connections_max "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(cap, Some(1024.0), "server log:\n{}\nmetrics:\n{metrics}", server.log());
}
