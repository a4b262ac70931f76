//! SSE fan-out: one session, N live SSE subscribers (raw HTTP streams over loopback), events
//! appended through the API one `POST .../events` at a time at a steady pace. Delivery
//! latency per (event, subscriber) = when the subscriber read the frame − the event's
//! `processed_at` (the server's wall clock when it appended it; same machine, same clock).
//! So it covers the SQLite commit, the bus fan-out, the SSE write and the client read.
//! Every subscriber must see every event, in order; anything else is an error.
//!
//! Run: `cargo bench -p bridle --bench sse_fanout` (about a minute). Knobs:
//! BRIDLE_BENCH_SUBSCRIBERS (default "1,10,100,1000"), BRIDLE_BENCH_EVENTS (per level,
//! default 100, more at small levels for at least 2000 deliveries), BRIDLE_BENCH_INTERVAL_MS (between events, default 10). The full run writes
//! the chart tests/bench/charts/sse_fanout.svg.

#[path = "../support/mod.rs"]
mod support;

mod common;

use std::time::Duration;

use common::{Api, Series, env_num, pct, sorted};
use futures::future::join_all;
use serde_json::json;
use support::{Backend, Server};

struct Level {
    subscribers: usize,
    lat: Vec<f64>,
    errors: Vec<String>,
    rate: f64,
}

async fn level(api: &Api, sid: &str, subscribers: usize, events: usize, interval: Duration) -> Level {
    let mut errors = Vec::new();
    // Open the streams, 50 at a time.
    let mut streams = Vec::new();
    for chunk in (0..subscribers).collect::<Vec<_>>().chunks(50) {
        for r in join_all(chunk.iter().map(|_| api.stream(sid))).await {
            match r {
                Ok(rx) => streams.push(rx),
                Err(e) => errors.push(format!("open: {e}")),
            }
        }
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut rx| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(events);
                let mut last = None;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                while lat.len() < events {
                    let f = match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(f)) => f,
                        Ok(None) => return Err(format!("stream ended after {} events", lat.len())),
                        Err(_) => return Err(format!("timed out after {} events", lat.len())),
                    };
                    if let Some(l) = last
                        && f.seq != l + 1
                    {
                        return Err(format!("seq {} after {l}", f.seq));
                    }
                    last = Some(f.seq);
                    let at = f.processed_at_us().ok_or("frame without processed_at")?;
                    lat.push((f.at_us - at) as f64 / 1000.0);
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(interval);
    for _ in 0..events {
        tick.tick().await;
        // Interrupts are processed on receipt, so their frames carry the append time (a
        // user.message to this never-running session would wait queued, `processed_at: null`).
        let body = json!({"events": [{"type": "user.interrupt"}]});
        if let Err(e) = api.call(reqwest::Method::POST, &format!("/v1/sessions/{sid}/events"), Some(&body)).await {
            errors.push(format!("post: {e}"));
        }
    }
    let mut lat = Vec::new();
    for r in join_all(readers).await {
        match r {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    Level { subscribers, lat: sorted(lat), errors, rate }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let levels: Vec<usize> = std::env::var("BRIDLE_BENCH_SUBSCRIBERS")
        .unwrap_or_else(|_| if full { "1,10,100,1000".into() } else { "1,10".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let events = env_num("BRIDLE_BENCH_EVENTS", if full { 100 } else { 10 });
    let interval = Duration::from_millis(env_num("BRIDLE_BENCH_INTERVAL_MS", 10) as u64);
    let server = Server::start(Backend::Sqlite);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "bridle SSE fan-out: one session, {events}+ events per level, one every {}ms, SQLite, loopback",
        interval.as_millis()
    );
    println!(
        "{:>11} {:>10} {:>12} {:>9} {:>9} {:>9} {:>7}",
        "subscribers", "deliveries", "delivered/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let out = rt.block_on(async {
        let api = Api::new(&server.base_url, &server.api_key);
        let env = api
            .post(
                "/v1/environments",
                json!({"name": "fanout", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}}),
            )
            .await;
        let agent = api.post("/v1/agents", json!({"name": "fanout", "model": "claude-sonnet-4-6"})).await;
        let s = api.post("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"]})).await;
        let sid = s["id"].as_str().unwrap().to_owned();
        let mut out = Vec::new();
        for &n in &levels {
            // At least 2000 deliveries per level (full run), so its p99 rests on enough samples.
            let l = level(&api, &sid, n, events.max(if full { 2000 / n.max(1) } else { 0 }), interval).await;
            println!(
                "{:>11} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                l.subscribers,
                l.lat.len(),
                l.rate,
                pct(&l.lat, 0.5),
                pct(&l.lat, 0.99),
                pct(&l.lat, 1.0),
                l.errors.len()
            );
            for e in l.errors.iter().take(3) {
                println!("            error: {e}");
            }
            out.push(l);
        }
        out
    });
    if full {
        let series = [("p50", 0.5), ("p99", 0.99)].map(|(name, p)| Series {
            name: format!("delivery latency {name}"),
            points: out.iter().map(|l| (l.subscribers as f64, pct(&l.lat, p))).collect(),
        });
        common::write_chart(
            "sse_fanout.svg",
            "SSE fan-out: one session, N subscribers (SQLite, 2 cores)",
            "subscribers",
            "ms",
            &series,
        );
    }
    if out.iter().any(|l| !l.errors.is_empty()) {
        eprintln!("errors under load (see above)");
        std::process::exit(1);
    }
}
