//! Concurrent live sessions: a real `bridle serve` with the light runtime, the resident
//! openai-agents runtime (one process outside the sandbox serves every session; a text turn
//! claims no sandbox), driven by the scripted fake model server. The number of live sessions
//! ramps up level by level; at each level every session sends a message at the same moment
//! and its SSE stream (raw HTTP, one per session) is followed to `session.status_idle`.
//!
//! Per level: turn latency (POST sent → first `agent.message`, → `session.status_idle`),
//! errors, and the server's resident set size with all sessions live (runner, plugin instance,
//! SSE stream and runtime attached). Memory per live session = RSS growth since the
//! one-session baseline ÷ sessions added; the runtime process is a separate process, reported
//! apart and not counted. CPU per turn (user + system, from /proc) is split between the server
//! and the runtime processes.
//!
//! Run: `cargo bench -p bridle --bench live_sessions` (a few minutes). Knobs:
//! BRIDLE_BENCH_LEVELS (default "10,25,50,100,200"). The full run writes the chart
//! tests/bench/charts/live_sessions.svg. Needs root, bubblewrap, python3.

#[path = "../support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use bridle_fake_model::{Config, FakeModel, Scenario};
use common::{Api, Series, pct, sorted};
use futures::future::join_all;
use support::{Backend, Server};

const TURN_LIMIT: Duration = Duration::from_secs(180);

struct Live {
    id: String,
    rx: tokio::sync::mpsc::UnboundedReceiver<common::Frame>,
}

/// One turn: (→ first agent.message, → status_idle) in ms.
async fn turn(api: &Api, s: &mut Live, n: usize) -> Result<(f64, f64), String> {
    let t0 = Instant::now();
    api.message(&s.id, &format!("turn {n}")).await?;
    common::wait_frame(&mut s.rx, TURN_LIMIT, |f| f.kind == "agent.message", |_| {}).await?;
    let msg = t0.elapsed().as_secs_f64() * 1000.0;
    common::wait_frame(&mut s.rx, TURN_LIMIT, |f| f.kind == "session.status_idle", |_| {}).await?;
    Ok((msg, t0.elapsed().as_secs_f64() * 1000.0))
}

/// The descendants of `pid` (the runtime processes a server started).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = std::collections::HashMap::<u32, Vec<u32>>::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The parent pid is the 2nd field after the `(comm)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if let Some(pp) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
            parents.entry(pp).or_default().push(p);
        }
    }
    let mut stack = parents.get(&pid).cloned().unwrap_or_default();
    let mut out = Vec::new();
    while let Some(p) = stack.pop() {
        out.push(p);
        stack.extend(parents.get(&p).cloned().unwrap_or_default());
    }
    out
}

/// Resident KiB of a process in wasm linear memories: runs of adjacent writable mappings that
/// end at an inaccessible reservation of at least 1 GiB (the rest of a wasmtime memory slot
/// and its guard; malloc arenas reserve at most 64 MiB).
fn wasm_memory_rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return 0 };
    // (start, end, perms, rss KiB) per mapping, in address order.
    let mut maps: Vec<(u64, u64, String, u64)> = Vec::new();
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if let Some(m) = maps.last_mut() {
                m.3 = rss.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            }
        } else if let Some((range, rest)) = line.split_once(' ')
            && let Some((a, b)) = range.split_once('-')
            && let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            maps.push((a, b, rest.split_whitespace().next().unwrap_or_default().to_owned(), 0));
        }
    }
    let (mut total, mut run, mut run_end) = (0, 0, 0);
    for (a, b, perms, rss) in maps {
        if perms.starts_with("rw") {
            run = if a == run_end { run + rss } else { rss };
            run_end = b;
        } else {
            if perms == "---p" && a == run_end && b - a >= 1 << 30 {
                total += run;
            }
            (run, run_end) = (0, 0);
        }
    }
    total
}

/// CPU time (user + system) a process has used, in ms.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) * 1000.0 / hz)
}

fn runtime_cpu_ms(server: u32) -> f64 {
    descendants(server).into_iter().map(cpu_ms).sum()
}

struct Level {
    sessions: usize,
    msg: Vec<f64>,
    idle: Vec<f64>,
    errors: Vec<String>,
    rss_kib: u64,
    /// Of `rss_kib`, in plugin instances' wasm linear memories.
    pool_kib: u64,
    runtime_kib: u64,
    wall: f64,
    server_cpu_ms: f64,
    runtime_cpu_ms: f64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let levels: Vec<usize> = std::env::var("BRIDLE_BENCH_LEVELS")
        .unwrap_or_else(|_| if full { "10,25,50,100,200".into() } else { "2,4".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtimes = common::install_runtimes();
    let token = format!("sk-fake-bench-{}", std::process::id());
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let model = "bench-live";
    fake.set_scenario(model, Scenario::text("OK."));
    let sb = support::sessions::sandbox_dir();
    let env = common::session_server_env(&runtimes, sb.path(), "");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_opts(Backend::Sqlite, &[], &env);
    let pid = server.pid().expect("server pid");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("bridle concurrent live sessions: openai-agents (resident runtime) on the fake model, SQLite, loopback");
    let (base_kib, out) = rt.block_on(async {
        let api = Api::new(&server.base_url, &server.api_key);
        let ids = common::session_setup(&api, "openai-agents", &fake.openai_base_url(), &token, model).await;
        let mut live: Vec<Live> = Vec::new();
        // One warm session: the resident runtime is up, the baseline counts it.
        let id = common::new_session(&api, &ids.0, &ids.1, &ids.2).await.expect("warm-up session");
        let rx = api.stream(&id).await.expect("warm-up stream");
        live.push(Live { id, rx });
        turn(&api, &mut live[0], 0).await.expect("warm-up turn");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base_kib = common::rss_kib(pid).unwrap_or(0);
        println!("baseline (1 live session): server RSS {:.1} MiB", base_kib as f64 / 1024.0);
        println!(
            "{:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>11} {:>11} {:>11} {:>13} {:>13} {:>11}",
            "sessions",
            "errors",
            "msg p50 s",
            "msg p99 s",
            "idle p50 s",
            "idle p99 s",
            "turns/s",
            "server cpu",
            "runtime cpu",
            "server MiB",
            "wasm mem MiB",
            "KiB/session",
            "runtime MiB"
        );
        let mut out = Vec::new();
        for (round, &target) in levels.iter().enumerate() {
            let mut errors = Vec::new();
            while live.len() < target {
                match common::new_session(&api, &ids.0, &ids.1, &ids.2).await {
                    Ok(id) => match api.stream(&id).await {
                        Ok(rx) => live.push(Live { id, rx }),
                        Err(e) => errors.push(e),
                    },
                    Err(e) => errors.push(e),
                }
                if errors.len() > 10 {
                    break;
                }
            }
            let (cpu0, rcpu0) = (cpu_ms(pid), runtime_cpu_ms(pid));
            let start = Instant::now();
            let results = join_all(live.iter_mut().map(|s| turn(&api, s, round + 1))).await;
            let wall = start.elapsed().as_secs_f64();
            let (cpu1, rcpu1) = (cpu_ms(pid), runtime_cpu_ms(pid));
            let (mut msg, mut idle) = (Vec::new(), Vec::new());
            for r in results {
                match r {
                    Ok((m, i)) => {
                        msg.push(m / 1000.0);
                        idle.push(i / 1000.0);
                    }
                    Err(e) => errors.push(e),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let l = Level {
                sessions: live.len(),
                msg: sorted(msg),
                idle: sorted(idle),
                errors,
                rss_kib: common::rss_kib(pid).unwrap_or(0),
                pool_kib: wasm_memory_rss_kib(pid),
                runtime_kib: descendants(pid).into_iter().filter_map(common::rss_kib).sum(),
                wall,
                server_cpu_ms: cpu1 - cpu0,
                runtime_cpu_ms: rcpu1 - rcpu0,
            };
            let per = (l.rss_kib as f64 - base_kib as f64) / (l.sessions.saturating_sub(1).max(1)) as f64;
            let turns = l.idle.len().max(1) as f64;
            println!(
                "{:>8} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>8.1} {:>8.1} ms {:>8.1} ms {:>11.1} {:>13.1} {:>13.0} {:>11.1}",
                l.sessions,
                l.errors.len(),
                pct(&l.msg, 0.5),
                pct(&l.msg, 0.99),
                pct(&l.idle, 0.5),
                pct(&l.idle, 0.99),
                l.idle.len() as f64 / l.wall,
                l.server_cpu_ms / turns,
                l.runtime_cpu_ms / turns,
                l.rss_kib as f64 / 1024.0,
                l.pool_kib as f64 / 1024.0,
                per,
                l.runtime_kib as f64 / 1024.0
            );
            for e in l.errors.iter().take(3) {
                println!("         error: {e}");
            }
            let stop = !l.errors.is_empty();
            out.push(l);
            if stop {
                println!("stopping the ramp at the first level with errors");
                break;
            }
        }
        (base_kib, out)
    });
    if let (Some(first), Some(last)) = (out.first(), out.last())
        && last.sessions > first.sessions
    {
        let added = (last.sessions - first.sessions) as f64;
        let slope = (last.rss_kib as f64 - first.rss_kib as f64) / added;
        let pool = (last.pool_kib as f64 - first.pool_kib as f64) / added;
        println!(
            "server memory per live session: {slope:.0} KiB, of which {pool:.0} KiB in wasm linear memories \
             (RSS growth from {} to {} sessions; baseline {:.1} MiB)",
            first.sessions,
            last.sessions,
            base_kib as f64 / 1024.0
        );
    }
    if full {
        let mut series = Vec::new();
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            series.push(Series {
                name: format!("turn (message to idle) {name}"),
                points: out.iter().map(|l| (l.sessions as f64, pct(&l.idle, p))).collect(),
            });
        }
        common::write_chart(
            "live_sessions.svg",
            "Concurrent live sessions, all sending at once (openai-agents, fake model, 2 cores)",
            "live sessions",
            "seconds",
            &series,
        );
    }
    if out.iter().any(|l| !l.errors.is_empty()) {
        eprintln!("errors under load (see above)");
        std::process::exit(1);
    }
}
