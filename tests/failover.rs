//! Session ownership, failover and crash recovery, end to end: real `bridle serve` nodes (three
//! on one real PostgreSQL, or one on SQLite) run real Claude Code in bubblewrap sandboxes
//! against the in-process fake model; all nodes share one sandbox dir (the shared workspace
//! storage), each with its own sandbox uid range.
//!
//! * Three nodes on PostgreSQL: a client streams from node A while node B runs the session;
//!   B is killed (`kill -9`) mid-turn and a user message is sent to node C during the
//!   failover. Another node adopts the session once B's lease lapses
//!   (`session.status_rescheduled`, `session.status_running`), the cut-off turn completes,
//!   the message sent during the failover is answered once and reached the runtime once, and
//!   the whole log (stored and streamed) has dense sequence numbers and no duplicates. Then
//!   the new owner is stopped gracefully (SIGTERM) mid-turn: it hands the session over and
//!   another node resumes it without waiting for a lease.
//! * Two nodes on PostgreSQL, the owner paused (SIGSTOP) instead of killed: another node adopts
//!   the session; when the old owner resumes, its runner's writes are refused (fencing by lease
//!   epoch) and it stops, and a message sent through it is answered once, by the new owner.
//! * One node on SQLite: killed mid-turn with a second message queued, restarted; the turn
//!   resumes and the queued message is answered exactly once.
//!
//! Needs root (sandbox uids), bubblewrap, node/npm (Claude Code is installed on first use into
//! `target/bridle-runtimes`) and the PostgreSQL 15 binaries.
//!
//! Run: `cargo test -p bridle --test failover -- --nocapture`

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridle_fake_model::{Config, FakeModel};
use cluster::{Api, Frame, Log, Stream, asked, database_url, install_runtimes, sandbox_dir, slow_echo, start_node};
use support::{Backend, Postgres, Server};

/// A bound on hangs (never a speed check): a turn on two busy cores takes seconds.
const WAIT: Duration = Duration::from_secs(180);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn fresh_token() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("sk-fake-failover-{:x}{:x}", std::process::id(), nanos)
}

fn node_name(s: &Server) -> String {
    std::fs::read_to_string(s.data_dir().join("node-id")).expect("node-id in the data dir").trim().to_owned()
}

fn is_answer(text: &str) -> impl Fn(&Frame) -> bool + '_ {
    move |f| f.kind == "agent.message" && f.text().contains(&format!("[{text}]"))
}

fn is_idle(f: &Frame) -> bool {
    f.kind == "session.status_idle"
}

/// The statuses a stream saw, from index `from`.
fn statuses(frames: &[Frame], from: usize) -> Vec<String> {
    frames[from..].iter().filter(|f| f.kind.starts_with("session.status_")).map(|f| f.kind.clone()).collect()
}

/// Frames streamed from the start of the log: sequence numbers 1, 2, 3, ... without a gap or
/// repeat, each the same event as the stored log's.
fn check_stream(frames: &[Frame], log: &Log) {
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.seq, i as i64 + 1, "streamed seqs must be dense and ordered: {:?}", seqs(frames));
        let (seq, id, kind, _) = &log.events[i];
        assert_eq!(
            (f.seq, f.body["id"].as_str().unwrap_or_default(), f.kind.as_str()),
            (*seq, id.as_str(), kind.as_str())
        );
    }
}

fn seqs(frames: &[Frame]) -> Vec<i64> {
    frames.iter().map(|f| f.seq).collect()
}

/// Every model request asked at most once about `text`, and some request asked it.
fn reached_runtime_once(fake: &FakeModel, model: &str, text: &str) {
    let asked = asked(fake, model);
    assert!(
        asked.iter().all(|texts| texts.iter().filter(|t| *t == text).count() <= 1),
        "`{text}` reached the runtime twice: {asked:?}"
    );
    assert!(asked.iter().any(|texts| texts.iter().any(|t| t == text)), "`{text}` never reached the runtime: {asked:?}");
}

#[test]
fn postgres_owner_killed_mid_turn_is_adopted() {
    let pg = Postgres::start();
    let runtimes = install_runtimes();
    let token = fresh_token();
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let model = format!("failover-pg-{}", std::process::id());
    fake.set_scenario(&model, slow_echo(12, 400));
    let sb = sandbox_dir();
    let a = start_node(Backend::Postgres(&pg), &runtimes, sb.path(), 4);
    let b = a.start_second_node();
    let c = a.start_second_node();
    let mut nodes = [a, b, c];
    let db = database_url(&nodes[0]);
    let rt = rt();
    let stopped = rt.block_on(async {
        let apis: Vec<Api> = nodes.iter().map(Api::new).collect();
        let api = |i: usize| apis[i].clone();
        let sid = api(0).session(&model, &fake.base_url(), &token).await;
        // A client streams from node A; the first message goes through node B, whose runner
        // takes the session.
        let stream = Stream::open(&api(0), &sid).await;
        api(1).send(&sid, "first question").await;
        let mid = stream.wait_for(0, "turn 1 model request", WAIT, |f| f.kind == "span.model_request_start").await;
        let owner = Log::read(&db, &sid).await.lease_owner;
        assert_eq!(owner.as_deref(), Some(node_name(&nodes[1]).as_str()), "node B runs the session");

        // kill -9 the owner mid-turn; a message arrives through node C meanwhile.
        let killed = Instant::now();
        nodes[1].stop();
        api(2).send(&sid, "second question").await;
        let resched = stream.wait_for(mid, "adoption", WAIT, |f| f.kind == "session.status_rescheduled").await;
        let adopted_after = killed.elapsed();
        let running = stream.wait_for(resched, "resumed", WAIT, |f| f.kind == "session.status_running").await;
        let first = stream.wait_for(running, "answer 1", WAIT, is_answer("first question")).await;
        let idle1 = stream.wait_for(first, "turn 1 idle", WAIT, is_idle).await;
        let second = stream.wait_for(idle1, "answer 2", WAIT, is_answer("second question")).await;
        stream.wait_for(second, "turn 2 idle", WAIT, is_idle).await;
        let frames = stream.snapshot();
        println!("adoption: session.status_rescheduled {adopted_after:?} after kill -9 (lease 4 s)");
        assert_eq!(
            statuses(&frames, mid),
            [
                "session.status_rescheduled",
                "session.status_running",
                "session.status_idle",
                "session.status_running",
                "session.status_idle"
            ],
            "statuses after the owner died"
        );
        let log = Log::read(&db, &sid).await;
        assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants");
        check_stream(&frames, &log);
        let adopter = log.lease_owner.clone().expect("the adopter owns the session");
        assert_ne!(adopter, node_name(&nodes[1]), "a surviving node adopted the session");
        assert_eq!(log.user_messages("second question"), 1, "the message sent during the failover is stored once");
        let answers = log.agent_texts().iter().filter(|t| t.contains("[second question]")).count();
        assert_eq!(answers, 1, "the message sent during the failover is answered once");
        reached_runtime_once(&fake, &model, "second question");

        // The killed node comes back (its own sessions: none left); the adopter is stopped
        // gracefully mid-turn and hands the session over at once.
        nodes[1].start_again();
        let o = nodes.iter().position(|n| node_name(n) == adopter).expect("adopter is a node");
        let watcher = (0..3).find(|i| *i != o).unwrap();
        let stream = Stream::open(&Api::new(&nodes[watcher]), &sid).await;
        let from = stream.wait_for(0, "replay", WAIT, |f| f.seq == log.last_seq).await + 1;
        Api::new(&nodes[watcher]).send(&sid, "third question").await;
        let mid = stream.wait_for(from, "turn 3 model request", WAIT, |f| f.kind == "span.model_request_start").await;
        let stopping = Instant::now();
        nodes[o].terminate();
        let stopped = stopping.elapsed();
        let resched = stream.wait_for(mid, "handover", WAIT, |f| f.kind == "session.status_rescheduled").await;
        let handed_over = stopping.elapsed();
        let third = stream.wait_for(resched, "answer 3", WAIT, is_answer("third question")).await;
        stream.wait_for(third, "turn 3 idle", WAIT, is_idle).await;
        println!("graceful handover: SIGTERM took {stopped:?}; session.status_rescheduled {handed_over:?} after it");
        let frames = stream.snapshot();
        assert_eq!(
            statuses(&frames, mid),
            ["session.status_rescheduled", "session.status_running", "session.status_idle"],
            "statuses after the owner shut down"
        );
        let log = Log::read(&db, &sid).await;
        assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants");
        check_stream(&frames, &log);
        let owner = log.lease_owner.clone().expect("a node owns the session");
        assert_ne!(owner, adopter, "another node took the session over");
        // The cut-off turn's own message is delivered again to the resumed runtime (its saved
        // transcript may or may not hold it); it reached the runtime, and the log holds it once.
        let asked = asked(&fake, &model);
        assert!(asked.iter().any(|texts| texts.iter().any(|t| t == "third question")), "{asked:?}");
        assert_eq!(log.user_messages("third question"), 1);
        o
    });
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != stopped {
            n.assert_alive();
        }
    }
}

#[test]
fn sqlite_node_killed_mid_turn_recovers_on_restart() {
    let runtimes = install_runtimes();
    let token = fresh_token();
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let model = format!("failover-sqlite-{}", std::process::id());
    fake.set_scenario(&model, slow_echo(12, 400));
    let sb = sandbox_dir();
    let mut node = start_node(Backend::Sqlite, &runtimes, sb.path(), 4);
    let db = database_url(&node);
    let rt = rt();
    rt.block_on(async {
        let api = Api::new(&node);
        let sid = api.session(&model, &fake.base_url(), &token).await;
        let stream = Stream::open(&api, &sid).await;
        api.send(&sid, "first question").await;
        stream.wait_for(0, "turn 1 model request", WAIT, |f| f.kind == "span.model_request_start").await;
        // A second message, accepted (and queued by the runner) during the turn.
        let queued = api.send(&sid, "second question").await;
        let deadline = Instant::now() + WAIT;
        while Log::read(&db, &sid).await.input_seq < seq_of(&Log::read(&db, &sid).await, &queued) {
            assert!(Instant::now() < deadline, "the runner never took the second message");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before = Log::read(&db, &sid).await.last_seq;
        drop(stream);

        node.stop();
        node.start_again();
        let api = Api::new(&node);
        let stream = Stream::open(&api, &sid).await;
        let from = stream.wait_for(0, "replay", WAIT, |f| f.seq == before).await + 1;
        let resched = stream.wait_for(from, "recovery", WAIT, |f| f.kind == "session.status_rescheduled").await;
        let first = stream.wait_for(resched, "answer 1", WAIT, is_answer("first question")).await;
        let idle1 = stream.wait_for(first, "turn 1 idle", WAIT, is_idle).await;
        let second = stream.wait_for(idle1, "answer 2", WAIT, is_answer("second question")).await;
        stream.wait_for(second, "turn 2 idle", WAIT, is_idle).await;
        let frames = stream.snapshot();
        assert_eq!(
            statuses(&frames, from),
            [
                "session.status_rescheduled",
                "session.status_running",
                "session.status_idle",
                "session.status_running",
                "session.status_idle"
            ],
            "statuses after the restart"
        );
        let log = Log::read(&db, &sid).await;
        assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants");
        check_stream(&frames, &log);
        assert_eq!(log.user_messages("second question"), 1);
        let answers = log.agent_texts().iter().filter(|t| t.contains("[second question]")).count();
        assert_eq!(answers, 1, "the queued message is answered once");
        assert!(!log.kinds().contains(&"session.error"), "recovery reports no error: {:?}", log.kinds());
        reached_runtime_once(&fake, &model, "second question");
    });
    node.assert_alive();
}

fn seq_of(log: &Log, event_id: &str) -> i64 {
    log.events.iter().find(|(_, id, ..)| id == event_id).map(|(seq, ..)| *seq).unwrap_or(i64::MAX)
}

/// Fencing: the owner is paused (SIGSTOP) mid-turn, not killed. Another node adopts the
/// session once the lease lapses and finishes the turn; when the old owner wakes up, its
/// writes are refused (its lease epoch is stale) and its runner stops, and a message sent
/// through the old owner is answered once, by the new owner.
#[test]
fn postgres_paused_owner_is_fenced_out() {
    let pg = Postgres::start();
    let runtimes = install_runtimes();
    let token = fresh_token();
    let fake = FakeModel::start_blocking(Config { token: Some(token.clone()), default_scenario: None })
        .expect("start the fake model server");
    let model = format!("failover-fence-{}", std::process::id());
    fake.set_scenario(&model, slow_echo(12, 400));
    let sb = sandbox_dir();
    let mut a = start_node(Backend::Postgres(&pg), &runtimes, sb.path(), 4);
    let mut b = a.start_second_node();
    let db = database_url(&a);
    let signal = |sig: &str, s: &Server| {
        let pid = s.pid().expect("node runs").to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    let rt = rt();
    rt.block_on(async {
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        let sid = api_a.session(&model, &fake.base_url(), &token).await;
        let stream = Stream::open(&api_a, &sid).await;
        api_b.send(&sid, "first question").await;
        let mid = stream.wait_for(0, "turn 1 model request", WAIT, |f| f.kind == "span.model_request_start").await;
        assert_eq!(Log::read(&db, &sid).await.lease_owner.as_deref(), Some(node_name(&b).as_str()));

        signal("-STOP", &b);
        let resched = stream.wait_for(mid, "adoption", WAIT, |f| f.kind == "session.status_rescheduled").await;
        let first = stream.wait_for(resched, "answer 1", WAIT, is_answer("first question")).await;
        let idle = stream.wait_for(first, "turn 1 idle", WAIT, is_idle).await;
        assert_eq!(Log::read(&db, &sid).await.lease_owner.as_deref(), Some(node_name(&a).as_str()));

        // The old owner wakes up and gets a message: its runner's write is refused, it stops,
        // and the new owner answers.
        signal("-CONT", &b);
        api_b.send(&sid, "after the pause").await;
        let after = stream.wait_for(idle, "answer 2", WAIT, is_answer("after the pause")).await;
        stream.wait_for(after, "turn 2 idle", WAIT, is_idle).await;
        let deadline = Instant::now() + WAIT;
        while !b.log().contains("another node adopted this session") {
            assert!(Instant::now() < deadline, "the paused owner's runner was never fenced out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let frames = stream.snapshot();
        assert_eq!(
            statuses(&frames, mid),
            [
                "session.status_rescheduled",
                "session.status_running",
                "session.status_idle",
                "session.status_running",
                "session.status_idle"
            ],
            "statuses after the owner was paused"
        );
        let log = Log::read(&db, &sid).await;
        assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants");
        check_stream(&frames, &log);
        assert_eq!(log.lease_owner.as_deref(), Some(node_name(&a).as_str()), "the adopter keeps the session");
        assert_eq!(log.agent_texts().iter().filter(|t| t.contains("[after the pause]")).count(), 1);
        reached_runtime_once(&fake, &model, "after the pause");
    });
    a.assert_alive();
    b.assert_alive();
}
