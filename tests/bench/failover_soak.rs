//! Failover soak: many sessions across three `bridle serve` nodes on one PostgreSQL (real
//! Claude Code in bubblewrap sandboxes, the fake model), while one node after another is
//! killed (`kill -9`) and restarted on a schedule. Each session keeps a conversation going
//! through whichever nodes are up. At the end, with every node back, an invariant check runs
//! over every session's stored event log: sequence numbers dense and ordered, no event stored
//! twice, every user message that was accepted stored exactly once and answered.
//!
//! Bounded in time and count; not part of `cargo test`. Run:
//!
//! ```text
//! cargo bench -p bridle --bench failover_soak
//! ```
//!
//! Knobs (environment): `SOAK_SESSIONS` (default 24), `SOAK_SECS` (default 180),
//! `SOAK_KILL_EVERY_SECS` (default 30), `SOAK_LEASE_SECS` (default 3).

#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridle_fake_model::{Config, FakeModel};
use cluster::{Api, Log, install_runtimes, sandbox_dir, slow_echo, start_node};
use support::{Backend, Postgres, Server};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The nodes' current API addresses (`None` while a node is down).
type Addrs = Arc<Mutex<Vec<Option<Api>>>>;

#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    unacknowledged: AtomicUsize,
    answered: AtomicUsize,
}

fn main() {
    let sessions = knob("SOAK_SESSIONS", 24) as usize;
    let secs = knob("SOAK_SECS", 180);
    let kill_every = knob("SOAK_KILL_EVERY_SECS", 30);
    let lease = knob("SOAK_LEASE_SECS", 3);
    let pg = Postgres::start();
    let runtimes = install_runtimes();
    let token = format!("sk-fake-soak-{}", std::process::id());
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let model = "soak-echo";
    fake.set_scenario(model, slow_echo(6, 250));
    let sb = sandbox_dir();
    let first = start_node(Backend::Postgres(&pg), &runtimes, sb.path(), lease);
    let second = first.start_second_node();
    let third = first.start_second_node();
    let db = first.database_url.clone().expect("postgres url");
    let nodes: Arc<Mutex<Vec<Server>>> = Arc::new(Mutex::new(vec![first, second, third]));
    let addrs: Addrs = Arc::new(Mutex::new(nodes.lock().unwrap().iter().map(|n| Some(Api::new(n))).collect()));
    println!("soak: {sessions} sessions, 3 nodes, {secs} s, a node killed every {kill_every} s, lease {lease} s");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    // The killer: kill -9 node k, leave it down a few seconds, restart it; next node.
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (nodes, addrs, kills) = (nodes.clone(), addrs.clone(), kills.clone());
        std::thread::spawn(move || {
            let mut k = 0;
            loop {
                std::thread::sleep(Duration::from_secs(kill_every));
                if Instant::now() + Duration::from_secs(10) > end {
                    return;
                }
                let i = k % 3;
                addrs.lock().unwrap()[i] = None;
                nodes.lock().unwrap()[i].stop();
                kills.fetch_add(1, Ordering::SeqCst);
                println!("[{:>4.0}s] killed node {i}", started.elapsed().as_secs_f64());
                std::thread::sleep(Duration::from_secs(5));
                let mut ns = nodes.lock().unwrap();
                ns[i].start_again();
                addrs.lock().unwrap()[i] = Some(Api::new(&ns[i]));
                println!("[{:>4.0}s] restarted node {i}", started.elapsed().as_secs_f64());
                k += 1;
            }
        })
    };

    let tally = Arc::new(Tally::default());
    let sids = rt.block_on(async {
        let api = addrs.lock().unwrap()[0].clone().unwrap();
        let mut sids = Vec::new();
        for _ in 0..sessions {
            sids.push(api.session(model, &fake.base_url(), &token).await);
        }
        let mut tasks = Vec::new();
        for (i, sid) in sids.iter().enumerate() {
            let (addrs, tally, db, sid) = (addrs.clone(), tally.clone(), db.clone(), sid.clone());
            tasks.push(tokio::spawn(async move { converse(i, &sid, &addrs, &tally, &db, end).await }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await.expect("session task"));
        }
        sids.into_iter().zip(acked).collect::<Vec<_>>()
    });
    killer.join().expect("killer thread");
    let drive_secs = started.elapsed().as_secs_f64();

    // Every node is up again: wait for every session to finish, then check every log.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let mut busy = 0;
            for (sid, _) in &sids {
                let log = Log::read(&db, sid).await;
                let unanswered = log.user_texts().iter().filter(|t| !log.answered(t)).count();
                let last_status = log.kinds().into_iter().rev().find(|k| k.starts_with("session.status_"));
                if unanswered > 0 || last_status != Some("session.status_idle") {
                    busy += 1;
                }
            }
            if busy == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (mut events, mut failovers, mut lost, mut dup_user, mut problems, mut reanswered) = (0, 0, 0, 0, 0, 0);
        for (sid, acked) in &sids {
            let log = Log::read(&db, sid).await;
            events += log.events.len();
            failovers += log.kinds().iter().filter(|k| **k == "session.status_rescheduled").count();
            for p in log.problems() {
                problems += 1;
                println!("PROBLEM {sid}: {p}");
            }
            for text in acked {
                match log.user_messages(text) {
                    1 => {}
                    0 => {
                        lost += 1;
                        println!("LOST {sid}: accepted message `{text}` is not in the log");
                    }
                    n => {
                        dup_user += 1;
                        println!("DUPLICATE {sid}: `{text}` stored {n} times");
                    }
                }
            }
            for text in log.user_texts() {
                match log.answers(&text) {
                    0 => {
                        lost += 1;
                        println!("LOST {sid}: `{text}` was never answered");
                    }
                    1 => {}
                    _ => reanswered += 1,
                }
            }
        }
        let accepted = tally.accepted.load(Ordering::SeqCst);
        println!("--- failover soak ---");
        println!("sessions            {sessions}");
        println!("nodes               3 (PostgreSQL), lease {lease} s");
        println!("duration            {drive_secs:.0} s driving + drain");
        println!("node kills          {}", kills.load(Ordering::SeqCst));
        println!("failovers           {failovers} (session.status_rescheduled)");
        println!(
            "user messages       {accepted} accepted, {} sends unacknowledged",
            tally.unacknowledged.load(Ordering::SeqCst)
        );
        println!("turns answered      {} (seen by the clients)", tally.answered.load(Ordering::SeqCst));
        println!("events              {events}");
        println!("turns re-run        {reanswered} (answered again after a resume)");
        println!("log problems        {problems}");
        println!("duplicated user ev. {dup_user}");
        println!("lost                {lost}");
        assert_eq!((problems, dup_user, lost), (0, 0, 0), "soak invariants");
    });
}

/// Keep one session talking until `end`: send a message through some node that is up, wait
/// for its answer (read from the database), repeat. Returns the texts the API accepted.
async fn converse(i: usize, sid: &str, addrs: &Addrs, tally: &Tally, db: &str, end: Instant) -> Vec<String> {
    let mut acked = Vec::new();
    let mut k = 0;
    while Instant::now() < end {
        let mut text = format!("s{i}-m{k}");
        let mut sent = false;
        for attempt in 0..30 {
            // A retry after an unacknowledged send is a new message (the first may be stored).
            if attempt > 0 {
                text = format!("s{i}-m{k}-r{attempt}");
            }
            let api = addrs.lock().unwrap()[(i + k + attempt) % 3].clone();
            let Some(api) = api else { continue };
            let body =
                serde_json::json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
            match api.call(reqwest::Method::POST, &format!("/v1/sessions/{sid}/events"), Some(body)).await {
                Ok((status, _)) if (200..300).contains(&status) => {
                    tally.accepted.fetch_add(1, Ordering::SeqCst);
                    acked.push(text.clone());
                    sent = true;
                    break;
                }
                // The node died while answering: the message may or may not be stored.
                _ => {
                    tally.unacknowledged.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if !sent {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log = Log::read(db, sid).await;
            if log.answered(&text) {
                tally.answered.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if Instant::now() > deadline {
                println!("session {sid}: `{text}` not answered within 120 s; moving on");
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        k += 1;
    }
    acked
}
