//! Session latency per harness, end to end: a real `bridle serve` runs real Claude Code, real
//! `codex app-server` and the resident openai-agents runtime in real bubblewrap sandboxes
//! against the scripted fake model server (in process, loopback), as tests/e2e_sessions.rs
//! sets them up. An SSE client (raw HTTP, frames stamped when read) measures, per turn:
//!
//! * `user.message` → `session.status_running` and → first `agent.message`, from the moment
//!   the client sends the POST; the first turn of a session (cold: sandbox claim and runtime
//!   start) apart from later ones (warm: the runtime is running);
//! * live-event latency, runtime output → SSE client: the server stamps each line of runtime
//!   output when its reader reads it and logs it with the sequence numbers of the events the
//!   line became (`bridle::ingest` debug records, JSON log); the client stamps each frame when
//!   it reads it. Both use the machine's wall clock. The figure covers the harness plugin's
//!   mapping, the status machine, the SQLite append, the fan-out and the SSE write. Events
//!   from a host-run tool call or from user input are not runtime output and are left out.
//! * event deltas (the stream asks for `event_deltas[]=agent.message`): the fake model stamps
//!   when it writes a reply's first text token, the client when it reads the turn's first
//!   `event_delta` frame: model first token → first `event_delta` (through the runtime, the
//!   plugin, the engine and the SSE write); and the server's share of it, from the runtime
//!   line that delta came from being read (a `bridle::ingest` record) to the client.
//!
//! Run: `cargo bench -p bridle --bench session_latency` (a few minutes; installs the runtimes
//! on first use like the e2e tests). Knobs: BRIDLE_BENCH_ENGINES (default
//! "claude,codex,openai-agents"), BRIDLE_BENCH_SESSIONS (sessions per harness, default 3),
//! BRIDLE_BENCH_TURNS (turns per session, default 10). Needs root, bubblewrap, node, python3.

#[path = "../support/mod.rs"]
mod support;

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridle_fake_model::{Config, FakeModel, Reply, Scenario};
use common::{Api, Frame, env_num, pct, sorted};
use serde_json::Value;
use support::{Backend, Server};

const TURN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Figures {
    cold_running: Vec<f64>,
    cold_message: Vec<f64>,
    warm_running: Vec<f64>,
    warm_message: Vec<f64>,
    accepted: Vec<f64>,
    /// Per frame: (session, seq, client read time µs).
    frames: Vec<(String, i64, i64)>,
    /// Model first token → first `event_delta` at the client, ms.
    token_to_delta: Vec<f64>,
    /// Per turn's first `event_delta`: (its event id, client read time µs).
    first_deltas: Vec<(String, i64)>,
    errors: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn one_session(
    api: &Api,
    fake: &FakeModel,
    model: &str,
    ids: &(String, String, String),
    turns: usize,
    fig: &mut Figures,
) -> Result<(), String> {
    let sid = common::new_session(api, &ids.0, &ids.1, &ids.2).await?;
    let mut rx = api.stream_with_deltas(&sid, &["agent.message"]).await?;
    for turn in 0..turns {
        let tokens_before = fake.first_tokens(model).len();
        let t0 = Instant::now();
        api.message(&sid, &format!("turn {turn}: say something")).await?;
        fig.accepted.push(ms(t0.elapsed()));
        let mut frames = Vec::new();
        let mut first_delta: Option<Frame> = None;
        let mut keep = |f: &Frame| {
            if f.kind == "event_delta" && first_delta.is_none() {
                first_delta = Some(f.clone());
            }
            frames.push((sid.clone(), f.seq, f.at_us))
        };
        common::wait_frame(&mut rx, TURN_LIMIT, |f| f.kind == "session.status_running", &mut keep).await?;
        let running = ms(t0.elapsed());
        common::wait_frame(&mut rx, TURN_LIMIT, |f| f.kind == "agent.message", &mut keep).await?;
        let message = ms(t0.elapsed());
        common::wait_frame(&mut rx, TURN_LIMIT, |f| f.kind == "session.status_idle", &mut keep).await?;
        let delta = first_delta.ok_or_else(|| format!("turn {turn}: no event_delta frame before the agent.message"))?;
        let token = fake.first_tokens(model).get(tokens_before).copied();
        let token = token.ok_or_else(|| format!("turn {turn}: the fake model stamped no first token"))?;
        fig.token_to_delta.push((delta.at_us - token) as f64 / 1000.0);
        let event_id: Value = serde_json::from_str(&delta.data).map_err(|e| e.to_string())?;
        fig.first_deltas.push((event_id["event_id"].as_str().unwrap_or_default().to_owned(), delta.at_us));
        if turn == 0 {
            fig.cold_running.push(running);
            fig.cold_message.push(message);
        } else {
            fig.warm_running.push(running);
            fig.warm_message.push(message);
        }
        fig.frames.extend(frames);
    }
    Ok(())
}

/// `bridle::ingest` records from the server's JSON log: (session, seq) → line read time µs.
fn ingest_records(log: &str) -> HashMap<(String, i64), i64> {
    let mut out = HashMap::new();
    for line in log.lines().filter(|l| l.contains("bridle::ingest")) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let f = &v["fields"];
        let (Some(sid), Some(read), Some(first), Some(last)) =
            (f["session_id"].as_str(), f["read_at_us"].as_i64(), f["first_seq"].as_i64(), f["last_seq"].as_i64())
        else {
            continue;
        };
        for seq in first..=last {
            out.insert((sid.to_owned(), seq), read);
        }
    }
    out
}

/// `bridle::ingest` preview records: event id → when the runtime line of its first
/// `event_delta` was read (µs).
fn preview_records(log: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for line in log.lines().filter(|l| l.contains("bridle::ingest") && l.contains("event_delta")) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let f = &v["fields"];
        if let (Some(id), Some(read)) = (f["event_id"].as_str(), f["read_at_us"].as_i64()) {
            out.entry(id.to_owned()).or_insert(read);
        }
    }
    out
}

fn row(name: &str, v: Vec<f64>) {
    let v = sorted(v);
    println!("  {name:<40} {:>5} {:>10.1} {:>10.1} {:>10.1}", v.len(), pct(&v, 0.5), pct(&v, 0.99), pct(&v, 1.0));
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let engines = std::env::var("BRIDLE_BENCH_ENGINES").unwrap_or_else(|_| "claude,codex,openai-agents".into());
    let sessions = env_num("BRIDLE_BENCH_SESSIONS", if full { 3 } else { 1 }).max(1);
    let turns = env_num("BRIDLE_BENCH_TURNS", if full { 10 } else { 2 }).max(2);
    let runtimes = common::install_runtimes();
    let token = format!("sk-fake-bench-{}", std::process::id());
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "bridle session latency: {sessions} sessions x {turns} turns per harness, fake model, real runtimes and sandboxes, loopback"
    );
    let mut failed = false;
    for engine in engines.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let sb = support::sessions::sandbox_dir();
        let env = common::session_server_env(&runtimes, sb.path(), ",bridle::ingest=debug");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start_opts(Backend::Sqlite, &["--log-format", "json"], &env);
        let model = format!("bench-latency-{engine}");
        // A short thinking block and a few words of text: a handful of runtime events a turn.
        let reply = Reply { thinking: Some("Thinking it over.".into()), ..Reply::text("Here is a short answer.") };
        fake.set_scenario(&model, Scenario { turns: vec![reply], ..Scenario::default() });
        let llm = if engine == "claude" { fake.base_url() } else { fake.openai_base_url() };
        let api = Api::new(&server.base_url, &server.api_key);
        let mut fig = Figures::default();
        rt.block_on(async {
            let ids = common::session_setup(&api, engine, &llm, &token, &model).await;
            for _ in 0..sessions {
                if let Err(e) = one_session(&api, &fake, &model, &ids, turns, &mut fig).await {
                    fig.errors.push(e);
                }
            }
        });
        // Let the log writer catch up before reading it.
        std::thread::sleep(Duration::from_millis(300));
        let records = ingest_records(&server.log());
        let live: Vec<f64> = fig
            .frames
            .iter()
            .filter_map(|(sid, seq, at)| records.get(&(sid.clone(), *seq)).map(|read| (at - read) as f64 / 1000.0))
            .collect();
        let previewed = preview_records(&server.log());
        let delta_live: Vec<f64> = fig
            .first_deltas
            .iter()
            .filter_map(|(id, at)| previewed.get(id).map(|read| (at - read) as f64 / 1000.0))
            .collect();
        println!("{engine}:                                      n     p50 ms     p99 ms     max ms");
        row("POST user.message accepted", fig.accepted);
        row("cold turn: -> session.status_running", fig.cold_running);
        row("cold turn: -> first agent.message", fig.cold_message);
        row("warm turn: -> session.status_running", fig.warm_running);
        row("warm turn: -> first agent.message", fig.warm_message);
        row("runtime output -> SSE client", live);
        row("model first token -> first event_delta", fig.token_to_delta);
        row("runtime output -> first event_delta", delta_live);
        for e in &fig.errors {
            println!("  error: {e}");
            failed = true;
        }
        drop(server);
    }
    if failed {
        eprintln!("some sessions failed (see above)");
        std::process::exit(1);
    }
}
