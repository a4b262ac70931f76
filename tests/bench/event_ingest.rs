//! Event ingest, in process: events appended to a session's log in SQLite (the server's own
//! `Store`, WAL, on a temp file) and delivered through the server's `Bus` to a live subscriber,
//! as the session runner and an SSE stream do it. Criterion reports events/s.
//!
//! * `append+deliver/1 per append`: one event per append (a transaction each), as the API
//!   stores a `POST .../events` with one event;
//! * `append+deliver/N per append`: N events in one append (one transaction), a `POST
//!   .../events` with N events;
//! * `round trip (SELECT 1)`: one statement through the pool, the floor under an append
//!   (which takes four: BEGIN, the session row's sequence, the INSERT, COMMIT);
//! * `append+deliver/8 sessions x 1`: eight sessions appending one event at a time concurrently
//!   (writers queue on SQLite's one write lock);
//! * `runner burst+deliver/N per burst`: the runner's own write path, `Store::runner_commit`
//!   (fenced by the lease epoch) with the N plain events of one burst of runtime output (the
//!   lines one `on_output` call and the lines already buffered behind it map to).
//!
//! Run: `cargo bench -p bridle --bench event_ingest` (about a minute).

use std::sync::Arc;
use std::time::Duration;

use bridle::bus::Bus;
use bridle::model::events::NewEvent;
use bridle::store::Store;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tokio::sync::broadcast;

/// A representative runtime event: an `agent.message` with a sentence of text.
fn event(i: u64) -> NewEvent {
    let body = json!({"type": "agent.message", "content": [{"type": "text", "text": format!("chunk {i}: the quick brown fox jumps over the lazy dog")}]});
    NewEvent::from_value(body).expect("an object")
}

async fn session(store: &Store, id: &str) {
    sqlx::query(
        "INSERT INTO sessions (id, agent_id, agent_version, environment_id, status, created_at, binding, body) \
         VALUES ($1, 'agent_bench', 1, 'env_bench', 'idle', 0, '{}', '{}')",
    )
    .bind(id)
    .execute(store.pool())
    .await
    .expect("insert a session row");
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    bus: Arc<Bus>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("open the store");
    Fixture { _dir: dir, store, bus: Arc::new(Bus::default()) }
}

/// Append `n` events in one call, publish them, and receive them on `rx`.
async fn append_deliver(f: &Fixture, sid: &str, rx: &mut broadcast::Receiver<bridle::bus::Live>, n: u64, i: u64) {
    let stored =
        f.store.append_events(sid, (0..n).map(|k| event(i * n + k)).collect(), false).await.expect("append events");
    f.bus.publish(sid, &stored);
    for _ in 0..n {
        rx.recv().await.expect("delivered to the subscriber");
    }
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = rt.block_on(fixture());
    // The floor under one append: a statement's round trip to SQLite through the pool.
    c.bench_function("round trip (SELECT 1)", |b| {
        b.iter(|| rt.block_on(async { sqlx::query("SELECT 1").execute(f.store.pool()).await.expect("select") }))
    });
    let mut g = c.benchmark_group("append+deliver");
    g.sample_size(20).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(2));
    for n in [1u64, 10, 100] {
        let sid = format!("sesn_bench_{n}");
        rt.block_on(session(&f.store, &sid));
        let mut rx = f.bus.subscribe(&sid);
        g.throughput(Throughput::Elements(n));
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("per append", n), |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(append_deliver(&f, &sid, &mut rx, n, i))
            })
        });
    }
    // Eight sessions at once, one event per append each.
    let sids: Vec<String> = (0..8).map(|k| format!("sesn_bench_conc_{k}")).collect();
    for sid in &sids {
        rt.block_on(session(&f.store, sid));
    }
    let f = Arc::new(f);
    g.throughput(Throughput::Elements(sids.len() as u64));
    let mut i = 0u64;
    g.bench_function("8 sessions x 1", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                let tasks: Vec<_> = sids
                    .iter()
                    .map(|sid| {
                        let f = f.clone();
                        let sid = sid.clone();
                        let mut rx = f.bus.subscribe(&sid);
                        tokio::spawn(async move { append_deliver(&f, &sid, &mut rx, 1, i).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("append task");
                }
            })
        })
    });
    g.finish();
    runner_bursts(c, &rt, &f);
}

/// The runner's write path: a claimed session, one fenced `runner_commit` per burst.
fn runner_bursts(c: &mut Criterion, rt: &tokio::runtime::Runtime, f: &Fixture) {
    let mut g = c.benchmark_group("runner burst+deliver");
    g.sample_size(20).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(2));
    for n in [1u64, 10, 50, 100] {
        let sid = format!("sesn_bench_runner_{n}");
        rt.block_on(session(&f.store, &sid));
        let claim =
            rt.block_on(f.store.claim_session(&sid, "node_bench", 3_600_000_000)).expect("claim").expect("free");
        let mut rx = f.bus.subscribe(&sid);
        g.throughput(Throughput::Elements(n));
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("per burst", n), |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(async {
                    let events = (0..n).map(|k| event(i * n + k)).collect();
                    let stored =
                        f.store.runner_commit(&sid, claim.epoch, None, None, None, events).await.expect("commit");
                    f.bus.publish(&sid, &stored);
                    for _ in 0..n {
                        rx.recv().await.expect("delivered to the subscriber");
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
