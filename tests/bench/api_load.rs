//! Load benchmark: create-session and list-events (plus send-event) against a live
//! `bridle serve`, on SQLite and on PostgreSQL, over loopback with bounded concurrency.
//! Prints throughput and p50/p99/max latency per operation.
//!
//! Run: `cargo bench -p bridle --bench api_load`
//! Knobs: BRIDLE_BENCH_REQUESTS (per operation, default 2000), BRIDLE_BENCH_CONCURRENCY
//! (default 16), BRIDLE_BENCH_SECONDS (time cap per operation, default 60),
//! BRIDLE_BENCH_BACKENDS (default "sqlite,postgres").
//! Without `--bench` (e.g. `cargo test --benches`) it runs a tiny smoke version.

mod common;
#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Api, env_num};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{Backend, Postgres, Server};

struct Stats {
    op: &'static str,
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
    lat: Vec<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Run `n` requests made by `make(i)` with `conc` workers, stopping early at `cap`.
async fn drive<F, Fut>(op: &'static str, n: usize, conc: usize, cap: Duration, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, String>> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conc {
        let make = make.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n || start.elapsed() > cap {
                    break;
                }
                let t = Instant::now();
                match make(i).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for h in handles {
        let (l, e, f) = h.await.unwrap();
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let wall = start.elapsed();
    lat.sort();
    Stats { op, ok: lat.len(), errors, first_error, wall, lat }
}

async fn bench_backend(server: &Server, n: usize, conc: usize, cap: Duration) -> Vec<Stats> {
    let api = Api {
        base: server.base_url.clone(),
        key: server.api_key.clone(),
        http: Client::builder().pool_max_idle_per_host(conc).timeout(Duration::from_secs(30)).build().unwrap(),
    };
    let env = api
        .call(
            Method::POST,
            "/v1/environments",
            Some(&json!({"name": "bench", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}})),
        )
        .await
        .expect("create environment");
    let agent = api
        .call(Method::POST, "/v1/agents", Some(&json!({"name": "bench", "model": "claude-sonnet-4-6"})))
        .await
        .expect("create agent");
    let session_body = Arc::new(json!({"agent": agent["id"], "environment_id": env["id"]}));

    let mut out = Vec::new();

    let a = api.clone();
    let b = session_body.clone();
    out.push(
        drive("create-session", n, conc, cap, move |_| {
            let a = a.clone();
            let b = b.clone();
            async move { a.call(Method::POST, "/v1/sessions", Some(&b)).await }
        })
        .await,
    );

    // One session with a history of 1000 events to list from.
    let sess = api.call(Method::POST, "/v1/sessions", Some(&session_body)).await.expect("create session");
    let sid = sess["id"].as_str().unwrap().to_string();
    let events_path = format!("/v1/sessions/{sid}/events");
    for batch in 0..20 {
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"type": "user.message", "content": [{"type": "text", "text": format!("history {batch}-{i}")}]}))
            .collect();
        api.call(Method::POST, &events_path, Some(&json!({ "events": events }))).await.expect("seed events");
    }

    let a = api.clone();
    let p = format!("{events_path}?limit=100");
    out.push(
        drive("list-events (limit=100 of 1000)", n, conc, cap, move |_| {
            let a = a.clone();
            let p = p.clone();
            async move { a.call(Method::GET, &p, None).await }
        })
        .await,
    );

    let a = api.clone();
    let p = events_path.clone();
    out.push(
        drive("send-event (user.message)", n, conc, cap, move |i| {
            let a = a.clone();
            let p = p.clone();
            async move {
                let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": format!("load {i}")}]}]});
                a.call(Method::POST, &p, Some(&body)).await
            }
        })
        .await,
    );
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_num("BRIDLE_BENCH_REQUESTS", if full { 2000 } else { 40 });
    let conc = env_num("BRIDLE_BENCH_CONCURRENCY", if full { 16 } else { 4 }).max(1);
    let cap = Duration::from_secs(env_num("BRIDLE_BENCH_SECONDS", if full { 60 } else { 20 }) as u64);
    let backends = std::env::var("BRIDLE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    println!(
        "bridle load benchmark: {n} requests per operation, concurrency {conc}, cap {}s per operation, loopback",
        cap.as_secs()
    );
    println!(
        "{:<9} {:<34} {:>7} {:>6} {:>10} {:>9} {:>9} {:>9}",
        "backend", "operation", "ok", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut failed = false;
    for backend in backends.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let pg;
        let server = match backend {
            "sqlite" => Server::start(Backend::Sqlite),
            "postgres" => {
                pg = Postgres::start();
                Server::start(Backend::Postgres(&pg))
            }
            other => panic!("unknown backend {other:?} in BRIDLE_BENCH_BACKENDS"),
        };
        let stats = rt.block_on(bench_backend(&server, n, conc, cap));
        for s in stats {
            println!(
                "{:<9} {:<34} {:>7} {:>6} {:>10.1} {:>9.2} {:>9.2} {:>9.2}",
                backend,
                s.op,
                s.ok,
                s.errors,
                s.ok as f64 / s.wall.as_secs_f64(),
                pct(&s.lat, 0.50),
                pct(&s.lat, 0.99),
                pct(&s.lat, 1.0),
            );
            if let Some(e) = s.first_error {
                println!("          first error: {e}");
                failed = true;
            }
        }
        drop(server);
    }
    if failed {
        eprintln!("some requests failed (see above)");
        std::process::exit(1);
    }
}
