//! One sandbox must not starve the server: a real `bridle serve` (its open-file limit lowered to
//! 10 000 with `prlimit`, just above the 8 192 each sandbox process may open) runs two sessions
//! (real Claude Code in bubblewrap sandboxes, the in-process fake model). Thousands of connections are opened and held against session A's
//! egress gateway socket, as A's sandboxed processes would through the relay. Meanwhile every
//! API call answers within a second and session B's turn completes; the flood is counted in
//! `bridle_egress_connection_limits_total`.
//!
//! Needs root (sandbox uids, the socket), bubblewrap and node/npm (Claude Code is installed on
//! first use into `target/bridle-runtimes`).
//!
//! Run: `cargo test -p bridle --test egress_flood -- --nocapture`

// Shared with the failover tests; this one uses part of it.
#[allow(unused_imports)]
#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bridle::runtimes::Runtime;
use cluster::{Api, Stream};
use reqwest::Method;
use support::Backend;
use support::sessions::{fake_model, install, sandbox_dir, session_server};
use tokio::net::UnixStream;

/// A bound on hangs (never a speed check): a turn on two busy cores takes seconds.
const WAIT: Duration = Duration::from_secs(180);
/// The server's descriptor limit for this test (sandboxes get `RLIMIT_NOFILE` 8192, which must fit).
const SERVER_NOFILE: u64 = 10_000;
/// Connections the flood tries to hold: more than the server may open at all.
const FLOOD: usize = 12_000;

/// Lower a running process's open-file limit (what `prlimit --pid` does).
fn lower_nofile(pid: u32, limit: u64) {
    let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: a valid pointer to the new limit, no old-limit pointer.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &r, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn gateway_sockets(sandboxes: &Path) -> Vec<PathBuf> {
    let run = sandboxes.join("run");
    std::fs::read_dir(&run)
        .map(|d| d.flatten().map(|e| e.path().join("gw.sock")).filter(|p| p.exists()).collect())
        .unwrap_or_default()
}

#[test]
fn a_gateway_flood_leaves_the_api_and_other_sessions_working() {
    let runtimes = install(&[Runtime::ClaudeCode]);
    let (fake, token) = fake_model("flood");
    let sandboxes = sandbox_dir();
    let server = session_server(Backend::Sqlite, &runtimes, sandboxes.path(), &[("BRIDLE_LOG", "info")]);
    // Lowered once the server runs (the test cannot raise a hard limit back, so it cannot hand
    // the server a low one at start): the global cap was sized from the higher limit, and the
    // per-sandbox cap alone must keep the flood below this one.
    lower_nofile(server.pid().expect("server pid"), SERVER_NOFILE);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let api = Api::new(&server);
        // Session A: one turn, after which its sandbox (and gateway) stays up.
        let a = api.session("flood-a", &fake.base_url(), &token).await;
        let stream_a = Stream::open(&api, &a).await;
        api.send(&a, "Hello from A.").await;
        stream_a.wait_for(0, "A idle", WAIT, |f| f.kind == "session.status_idle").await;
        let socks = gateway_sockets(sandboxes.path());
        assert_eq!(socks.len(), 1, "one sandbox, one gateway: {socks:?}");

        // The flood: connections held open, sending nothing, opened until FLOOD are held or
        // none got through for a second (the gateway stopped accepting and the socket's
        // backlog is full).
        let mut held = Vec::new();
        let mut last_progress = std::time::Instant::now();
        while held.len() < FLOOD && last_progress.elapsed() < Duration::from_secs(1) {
            match tokio::time::timeout(Duration::from_millis(100), UnixStream::connect(&socks[0])).await {
                Ok(Ok(s)) => {
                    held.push(s);
                    last_progress = std::time::Instant::now();
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        assert!(held.len() > 256, "the flood held only {} connections", held.len());

        // Session B works through its own sandbox meanwhile.
        let b = api.session("flood-b", &fake.base_url(), &token).await;
        let stream_b = Stream::open(&api, &b).await;
        api.send(&b, "Hello from B.").await;

        // Every API call answers, within a second, while the flood holds.
        for i in 0..30 {
            let call = api.request(Method::GET, &format!("/v1/sessions/{b}")).timeout(Duration::from_secs(1)).send();
            let r = call.await.unwrap_or_else(|e| panic!("API call {i} during the flood: {e}"));
            assert_eq!(r.status().as_u16(), 200, "API call {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle = stream_b.wait_for(0, "B's turn", WAIT, |f| f.kind == "session.status_idle").await;
        assert_eq!(stream_b.snapshot()[idle].body["stop_reason"]["type"], "end_turn");
        assert!(stream_b.snapshot().iter().any(|f| f.kind == "agent.message"), "B's turn produced an answer");

        // The limits were hit, and said so in metrics and (a few lines of) log.
        let metrics = support::http_get(&server.addr, "/metrics", &[]).unwrap().1;
        let limited: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("bridle_egress_connection_limits_total{") && l.contains("sandbox_connections"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(limited >= 1.0, "no limit counted:\n{metrics}");
        drop(held);
        let log = server.log();
        let lines = log.lines().filter(|l| l.contains("egress connection limit reached")).count();
        assert!((1..=20).contains(&lines), "{lines} limit lines in the log");
        assert!(!log.contains("Too many open files"), "the server ran out of descriptors");
    });
}
