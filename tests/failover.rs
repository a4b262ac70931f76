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
//!   resumes and the queued message is answered exactly once. Killed during an outcome's
//!   second round: the round runs again and is graded once.
//!
//! Needs root (sandbox uids), bubblewrap, node/npm (Claude Code is installed on first use into
//! `target/bridle-runtimes`) and the PostgreSQL 15 binaries.
//!
//! Run: `cargo test -p bridle --test failover -- --nocapture`

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bridle_fake_model::{Conversation, FakeModel, Reply, Scenario, ToolCall, scenario::Grader};
use cluster::{Api, Frame, Log, Stream, asked, database_url, install_runtimes, sandbox_dir, slow_echo, start_node};
use reqwest::Method;
use serde_json::{Value, json};
use support::sessions::fake_model;
use support::{Backend, Postgres, Server};

/// A bound on hangs (never a speed check): a turn on two busy cores takes seconds.
const WAIT: Duration = Duration::from_secs(180);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What every test starts from: the runtimes, the fake model streaming the slow echo for
/// `model`, and the sandbox dir all nodes share.
struct Fixture {
    runtimes: PathBuf,
    fake: FakeModel,
    token: String,
    model: String,
    sandboxes: support::sessions::SandboxDir,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let runtimes = install_runtimes();
        let (fake, token) = fake_model("failover");
        let model = format!("failover-{name}-{}", std::process::id());
        fake.set_scenario(&model, slow_echo(12, 400));
        Fixture { runtimes, fake, token, model, sandboxes: sandbox_dir() }
    }

    /// The first node (4 s leases); more join with [`Server::start_second_node`].
    fn node(&self, backend: Backend<'_>) -> Server {
        start_node(backend, &self.runtimes, self.sandboxes.path(), 4)
    }

    /// A session on the fake model through `api`.
    async fn session(&self, api: &Api) -> String {
        api.session(&self.model, &self.fake.base_url(), &self.token).await
    }
}

/// The statuses after a cut-off turn: the session moves, finishes that turn, then runs the
/// next message's turn.
const MOVED_THEN_TWO_TURNS: [&str; 5] = [
    "session.status_rescheduled",
    "session.status_running",
    "session.status_idle",
    "session.status_running",
    "session.status_idle",
];

/// `kill -9` the node and start it again; then follow `sid` from the start of its log. Returns
/// the new node's API, the stream, the index of the first event after `cut_seq` (the last one
/// stored before the kill) and that of the recovery's `session.status_rescheduled`.
async fn kill_and_restart(node: &mut Server, sid: &str, cut_seq: i64) -> (Api, Stream, usize, usize) {
    node.stop();
    node.start_again();
    let api = Api::new(node);
    let stream = Stream::open(&api, sid).await;
    let from = stream.wait_for(0, "replay", WAIT, |f| f.seq == cut_seq).await + 1;
    let resched = stream.wait_for(from, "recovery", WAIT, |f| f.kind == "session.status_rescheduled").await;
    (api, stream, from, resched)
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

/// The stored log keeps its invariants, and the frames streamed from the start of the log have
/// sequence numbers 1, 2, 3, ... without a gap or repeat, each the same event as the stored
/// log's.
fn check_log(frames: &[Frame], log: &Log) {
    assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants");
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
    let fx = Fixture::new("pg");
    let a = fx.node(Backend::Postgres(&pg));
    let b = a.start_second_node();
    let c = a.start_second_node();
    let mut nodes = [a, b, c];
    let db = database_url(&nodes[0]);
    let rt = rt();
    let stopped = rt.block_on(async {
        let apis: Vec<Api> = nodes.iter().map(Api::new).collect();
        let api = |i: usize| apis[i].clone();
        let sid = fx.session(&api(0)).await;
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
        assert_eq!(statuses(&frames, mid), MOVED_THEN_TWO_TURNS, "statuses after the owner died");
        let log = Log::read(&db, &sid).await;
        check_log(&frames, &log);
        let adopter = log.lease_owner.clone().expect("the adopter owns the session");
        assert_ne!(adopter, node_name(&nodes[1]), "a surviving node adopted the session");
        assert_eq!(log.user_messages("second question"), 1, "the message sent during the failover is stored once");
        assert_eq!(log.answers("second question"), 1, "the message sent during the failover is answered once");
        reached_runtime_once(&fx.fake, &fx.model, "second question");

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
        check_log(&frames, &log);
        let owner = log.lease_owner.clone().expect("a node owns the session");
        assert_ne!(owner, adopter, "another node took the session over");
        // The cut-off turn's own message is delivered again to the resumed runtime (its saved
        // transcript may or may not hold it); it reached the runtime, and the log holds it once.
        let asked = asked(&fx.fake, &fx.model);
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
    let fx = Fixture::new("sqlite");
    let mut node = fx.node(Backend::Sqlite);
    let db = database_url(&node);
    let rt = rt();
    rt.block_on(async {
        let api = Api::new(&node);
        let sid = fx.session(&api).await;
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

        let (_, stream, from, resched) = kill_and_restart(&mut node, &sid, before).await;
        let first = stream.wait_for(resched, "answer 1", WAIT, is_answer("first question")).await;
        let idle1 = stream.wait_for(first, "turn 1 idle", WAIT, is_idle).await;
        let second = stream.wait_for(idle1, "answer 2", WAIT, is_answer("second question")).await;
        stream.wait_for(second, "turn 2 idle", WAIT, is_idle).await;
        let frames = stream.snapshot();
        assert_eq!(statuses(&frames, from), MOVED_THEN_TWO_TURNS, "statuses after the restart");
        let log = Log::read(&db, &sid).await;
        check_log(&frames, &log);
        assert_eq!(log.user_messages("second question"), 1);
        assert_eq!(log.answers("second question"), 1, "the queued message is answered once");
        assert!(!log.kinds().contains(&"session.error"), "recovery reports no error: {:?}", log.kinds());
        reached_runtime_once(&fx.fake, &fx.model, "second question");
    });
    node.assert_alive();
}

/// Usage through a crash: the node is killed while a tool runs, after the turn's first model
/// request was stored; after the restart the turn runs again. The session's usage is then the
/// sum of the stored model requests (`Log::problems`): the cut-off request counts, as it was
/// paid for, and nothing counts twice.
#[test]
fn sqlite_usage_after_a_kill_is_the_sum_of_the_stored_requests() {
    let fx = Fixture::new("usage");
    let reply = Reply { tools: vec![ToolCall::bash("sleep 8")], text: "slept".into(), ..Reply::default() };
    fx.fake.set_scenario(&fx.model, Scenario { turns: vec![reply], ..Scenario::default() });
    let mut node = fx.node(Backend::Sqlite);
    let db = database_url(&node);
    rt().block_on(async {
        let api = Api::new(&node);
        let sid = fx.session(&api).await;
        let stream = Stream::open(&api, &sid).await;
        api.send(&sid, "sleep a while").await;
        stream.wait_for(0, "the tool call", WAIT, |f| f.kind == "agent.tool_use").await;
        let deadline = Instant::now() + WAIT;
        while !Log::read(&db, &sid).await.kinds().contains(&"span.model_request_end") {
            assert!(Instant::now() < deadline, "the tool call's model request was never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cut = Log::read(&db, &sid).await;
        assert_eq!(cut.problems(), Vec::<String>::new(), "usage is stored with the request, mid-turn");
        drop(stream);

        let (_, stream, _, resched) = kill_and_restart(&mut node, &sid, cut.last_seq).await;
        stream.wait_for(resched, "the turn's end", WAIT, is_idle).await;
        let log = Log::read(&db, &sid).await;
        assert_eq!(log.problems(), Vec::<String>::new(), "stored log invariants after recovery");
        let ends = log.kinds().iter().filter(|k| **k == "span.model_request_end").count();
        assert!(ends >= 3, "the cut-off request and the re-run's two are stored: {:?}", log.kinds());
        let (before, after) = (cut.usage["input_tokens"].as_u64(), log.usage["input_tokens"].as_u64());
        assert!(after > before && before > Some(0), "usage grew from {before:?} to {after:?}");
    });
    node.assert_alive();
}

/// A session whose agent asks before every bash call (`always_ask`), on the fixture's model.
async fn ask_session(fx: &Fixture, api: &Api) -> String {
    let env = api.ok(Method::POST, "/v1/environments", Some(json!({"name": format!("env-{}", fx.model)}))).await;
    let tools = json!([{"type": "agent_toolset_20260401",
        "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]);
    let agent = api
        .ok(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": format!("ask-{}", fx.model), "model": fx.model, "tools": tools})),
        )
        .await;
    let meta = json!({"sandbox0.managed_agents.role": "llm", "sandbox0.managed_agents.engine": "claude",
        "sandbox0.managed_agents.llm_base_url": fx.fake.base_url()});
    let vault = api.ok(Method::POST, "/v1/vaults", Some(json!({"display_name": "llm", "metadata": meta}))).await;
    let vid = vault["id"].as_str().unwrap();
    let cred = json!({"display_name": "model key", "auth": {"type": "static_bearer", "token": fx.token}});
    api.ok(Method::POST, &format!("/v1/vaults/{vid}/credentials"), Some(cred)).await;
    let body = json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]});
    api.ok(Method::POST, "/v1/sessions", Some(body)).await["id"].as_str().unwrap().to_owned()
}

fn confirm(tool_use_id: &str) -> Value {
    json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": tool_use_id, "result": "allow"}]})
}

/// Start a turn on an `always_ask` session through `api` and wait until it asks; returns the
/// waiting tool use's id and the last stored seq.
async fn wait_for_ask(api: &Api, db: &str, sid: &str) -> (String, i64) {
    let stream = Stream::open(api, sid).await;
    api.send(sid, "run it").await;
    let asks = |f: &Frame| f.kind == "session.status_idle" && f.body["stop_reason"]["type"] == "requires_action";
    let waiting = stream.wait_for(0, "requires_action", WAIT, asks).await;
    let use_id = stream.snapshot()[waiting].body["stop_reason"]["event_ids"][0].as_str().unwrap().to_owned();
    (use_id, Log::read(db, sid).await.last_seq)
}

/// After the runtime holding `use_id` died with its node: an answer sent at once gets a clear
/// outcome either way (refused, or taken and reported as undeliverable); the call's turn ends
/// in the open (a `session.error` naming it, then `retries_exhausted`); a later answer is
/// refused; the next message is answered.
async fn lost_call_ends(fx: &Fixture, api: &Api, db: &str, sid: &str, use_id: &str, before: i64) {
    fx.fake.set_scenario(&fx.model, slow_echo(3, 0));
    let path = format!("/v1/sessions/{sid}/events");
    // Races the runner that takes the session over.
    let (early, early_body) = api.call(Method::POST, &path, Some(confirm(use_id))).await.unwrap();
    assert!(early == 200 || early == 400, "answer right after the runtime died → {early}: {early_body}");
    println!("an answer sent right after the runtime died got {early}");
    let stream = Stream::open(api, sid).await;
    let from = stream.wait_for(0, "replay", WAIT, |f| f.seq == before).await + 1;
    let lost = stream.wait_for(from, "the lost call's error", WAIT, |f| f.kind == "session.error").await;
    let err = &stream.snapshot()[lost].body["error"];
    let msg = err["message"].as_str().unwrap_or_default();
    assert_eq!(err["type"], "unknown_error");
    assert_eq!(err["retry_status"]["type"], "exhausted");
    assert!(msg.contains(use_id) && msg.contains("can no longer be answered"), "error message: {msg}");
    let ended = |f: &Frame| f.kind == "session.status_idle" && f.body["stop_reason"]["type"] == "retries_exhausted";
    let mut idle = stream.wait_for(lost, "the turn's end", WAIT, ended).await;
    assert_eq!(statuses(&stream.snapshot()[..=idle], from), ["session.status_idle"], "no turn resumed first");
    if early == 200 {
        let undelivered = |f: &Frame| {
            f.kind == "session.error"
                && f.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(use_id) && m.contains("could not be delivered"))
        };
        let at = stream.wait_for(lost + 1, "the undelivered answer's error", WAIT, undelivered).await;
        idle = stream.wait_for(at, "idle after the undelivered answer", WAIT, ended).await;
    } else {
        assert_eq!(early_body["error"]["type"], "invalid_request_error", "{early_body}");
    }
    // The answer is late now: refused in the error envelope.
    let (late, body) = api.call(Method::POST, &path, Some(confirm(use_id))).await.unwrap();
    assert_eq!(late, 400, "a late answer is refused: {body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("not waiting"), "{body}");
    // The session goes on.
    api.send(sid, "third question").await;
    let answer = stream.wait_for(idle, "the next answer", WAIT, is_answer("third question")).await;
    let done = stream.wait_for(answer, "the next turn's end", WAIT, is_idle).await;
    assert_eq!(stream.snapshot()[done].body["stop_reason"]["type"], "end_turn");
    check_log(&stream.snapshot(), &Log::read(db, sid).await);
}

fn ask_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    let scenario = json!({"turns": [{"tools": [{"command": "echo never-confirmed"}], "text": "unreachable"}]});
    fx.fake.set_scenario(&fx.model, serde_json::from_value(scenario).unwrap());
    fx
}

/// The server dies (`kill -9`) while a session waits on a tool confirmation; the runtime that
/// held the call dies with it. After the restart nothing waits forever: see [`lost_call_ends`].
#[test]
fn sqlite_restart_ends_a_confirmation_that_can_no_longer_be_answered() {
    let fx = ask_fixture("ask");
    let mut node = fx.node(Backend::Sqlite);
    let db = database_url(&node);
    let rt = rt();
    rt.block_on(async {
        let sid = ask_session(&fx, &Api::new(&node)).await;
        let (use_id, before) = wait_for_ask(&Api::new(&node), &db, &sid).await;
        node.stop();
        node.start_again();
        lost_call_ends(&fx, &Api::new(&node), &db, &sid, &use_id, before).await;
    });
    node.assert_alive();
}

/// Failover: the node running a session that waits on a tool confirmation is killed
/// (`kill -9`); the other node adopts the session once the lease lapses and ends the call's
/// turn in the open: see [`lost_call_ends`].
#[test]
fn postgres_adoption_ends_a_confirmation_that_can_no_longer_be_answered() {
    let pg = Postgres::start();
    let fx = ask_fixture("ask-pg");
    let mut a = fx.node(Backend::Postgres(&pg));
    let mut b = a.start_second_node();
    let db = database_url(&a);
    let rt = rt();
    rt.block_on(async {
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        let sid = ask_session(&fx, &api_b).await;
        let (use_id, before) = wait_for_ask(&api_b, &db, &sid).await;
        assert_eq!(Log::read(&db, &sid).await.lease_owner.as_deref(), Some(node_name(&b).as_str()));
        b.stop();
        lost_call_ends(&fx, &api_a, &db, &sid, &use_id, before).await;
        assert_eq!(Log::read(&db, &sid).await.lease_owner.as_deref(), Some(node_name(&a).as_str()));
    });
    a.assert_alive();
}

fn seq_of(log: &Log, event_id: &str) -> i64 {
    log.events.iter().find(|(_, id, ..)| id == event_id).map(|(seq, ..)| *seq).unwrap_or(i64::MAX)
}

/// An outcome through a crash: the node is killed (`kill -9`) during the outcome's second
/// round, after the first round was graded `needs_revision`. After the restart the round runs
/// again and is graded once: the outcome ends `satisfied` at iteration 1, each round has one
/// evaluation (a start and the end that names it), no grader round is asked twice, and the
/// session's `outcome_evaluations` says the same.
#[test]
fn sqlite_node_killed_during_an_outcome_round_finishes_it_once() {
    let fx = Fixture::new("outcome");
    let mut scenario = slow_echo(12, 400);
    scenario.grader = Some(Grader { pass_after: Some(2), malformed: false });
    fx.fake.set_scenario(&fx.model, scenario);
    let mut node = fx.node(Backend::Sqlite);
    let db = database_url(&node);
    rt().block_on(async {
        let api = Api::new(&node);
        let sid = fx.session(&api).await;
        let stream = Stream::open(&api, &sid).await;
        let define = json!({"events": [{"type": "user.define_outcome", "description": "Write a haiku about a pond.",
            "rubric": {"type": "text", "content": "Three lines; the second mentions a frog."}, "max_iterations": 3}]});
        api.ok(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(define)).await;
        let first = stream.wait_for(0, "round 1 graded", WAIT, |f| f.kind == "span.outcome_evaluation_end").await;
        assert_eq!(stream.snapshot()[first].body["result"], "needs_revision");
        stream.wait_for(first, "round 2 model request", WAIT, |f| f.kind == "span.model_request_start").await;
        let cut = Log::read(&db, &sid).await;
        drop(stream);

        let (api, stream, _, resched) = kill_and_restart(&mut node, &sid, cut.last_seq).await;
        let end = stream.wait_for(resched, "round 2 graded", WAIT, |f| f.kind == "span.outcome_evaluation_end").await;
        stream.wait_for(end, "the outcome's end", WAIT, is_idle).await;
        let frames = stream.snapshot();
        assert_eq!(
            (frames[end].body["result"].as_str(), frames[end].body["iteration"].as_u64()),
            (Some("satisfied"), Some(1))
        );
        let log = Log::read(&db, &sid).await;
        check_log(&frames, &log);
        assert!(!log.kinds().contains(&"session.error"), "recovery reports no error: {:?}", log.kinds());
        let of = |kind: &str| {
            log.events.iter().filter(|(_, _, k, _)| k == kind).map(|(.., b)| b.clone()).collect::<Vec<_>>()
        };
        let (starts, ends) = (of("span.outcome_evaluation_start"), of("span.outcome_evaluation_end"));
        let rounds = |evs: &[Value]| evs.iter().map(|e| e["iteration"].as_u64()).collect::<Vec<_>>();
        assert_eq!(rounds(&starts), [Some(0), Some(1)], "one evaluation per round: {starts:?}");
        assert_eq!(rounds(&ends), [Some(0), Some(1)], "one verdict per round: {ends:?}");
        let start_ids: Vec<_> = starts.iter().map(|e| e["id"].clone()).collect();
        let named: Vec<_> = ends.iter().map(|e| e["outcome_evaluation_start_id"].clone()).collect();
        assert_eq!(named, start_ids, "each verdict names its round's start");
        let graded: Vec<_> = fx
            .fake
            .model_requests(&fx.model)
            .iter()
            .filter_map(|r| Conversation::from_messages(&r.body).grader_round)
            .collect();
        assert_eq!(graded, [0, 1], "each round was graded once");
        let session = api.ok(Method::GET, &format!("/v1/sessions/{sid}"), None).await;
        let evaluations = session["outcome_evaluations"].as_array().cloned().unwrap_or_default();
        assert_eq!(evaluations.len(), 1, "one outcome: {evaluations:?}");
        assert_eq!(evaluations[0]["result"], "satisfied", "{evaluations:?}");
    });
    node.assert_alive();
}

/// Fencing: the owner is paused (SIGSTOP) mid-turn, not killed. Another node adopts the
/// session once the lease lapses and finishes the turn; when the old owner wakes up, its
/// writes are refused (its lease epoch is stale) and its runner stops, and a message sent
/// through the old owner is answered once, by the new owner.
#[test]
fn postgres_paused_owner_is_fenced_out() {
    let pg = Postgres::start();
    let fx = Fixture::new("fence");
    let mut a = fx.node(Backend::Postgres(&pg));
    let mut b = a.start_second_node();
    let db = database_url(&a);
    let signal = |sig: &str, s: &Server| {
        let pid = s.pid().expect("node runs").to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    let rt = rt();
    rt.block_on(async {
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        let sid = fx.session(&api_a).await;
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
        assert_eq!(statuses(&frames, mid), MOVED_THEN_TWO_TURNS, "statuses after the owner was paused");
        let log = Log::read(&db, &sid).await;
        check_log(&frames, &log);
        assert_eq!(log.lease_owner.as_deref(), Some(node_name(&a).as_str()), "the adopter keeps the session");
        assert_eq!(log.answers("after the pause"), 1);
        reached_runtime_once(&fx.fake, &fx.model, "after the pause");
    });
    a.assert_alive();
    b.assert_alive();
}

/// A coordinator whose roster is one helper agent on `helper_model`; returns the session id.
async fn coordinator_session(fx: &Fixture, api: &Api, helper_model: &str) -> String {
    let env = api.ok(Method::POST, "/v1/environments", Some(json!({"name": format!("env-{}", fx.model)}))).await;
    let tools = json!([{"type": "agent_toolset_20260401"}]);
    let helper = api
        .ok(Method::POST, "/v1/agents", Some(json!({"name": "helper", "model": helper_model, "tools": tools})))
        .await;
    let lead = api
        .ok(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "lead", "model": fx.model, "tools": tools,
                        "multiagent": {"type": "coordinator", "agents": [helper["id"]]}})),
        )
        .await;
    let vid = api.llm_vault(&format!("llm-{}", fx.model), &fx.fake.base_url(), &fx.token).await;
    let s = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": lead["id"], "environment_id": env["id"], "vault_ids": [vid]})),
        )
        .await;
    s["id"].as_str().unwrap().to_owned()
}

/// A session's child threads, as the API lists them (the primary thread left out).
async fn child_threads(api: &Api, sid: &str) -> Vec<Value> {
    let page = api.ok(Method::GET, &format!("/v1/sessions/{sid}/threads"), None).await;
    page["data"].as_array().unwrap().iter().filter(|t| !t["parent_thread_id"].is_null()).cloned().collect()
}

/// kill -9 while a delegated thread runs: after the restart the cut-off thread is terminated
/// with the reason in its own log (in the session's log once), the coordinator's turn resumes
/// and ends, no thread is left running and no thread event is stored twice.
#[test]
fn sqlite_node_killed_during_a_delegated_thread_ends_it_clearly() {
    let fx = Fixture::new("threads");
    let helper_model = format!("{}-helper", fx.model);
    // The helper streams slowly: the node dies while the child thread runs.
    fx.fake.set_scenario(&helper_model, slow_echo(40, 400));
    let delegate = ToolCall {
        custom: Some("delegate_to_agent".into()),
        input: Some(json!({"agent": "helper", "message": "the question"})),
        ..ToolCall::default()
    };
    let coordinator = Reply { text: "Coordinator: {{tool_output}}".into(), tools: vec![delegate], ..Reply::default() };
    fx.fake.set_scenario(&fx.model, Scenario { turns: vec![coordinator], ..Scenario::default() });
    let mut node = fx.node(Backend::Sqlite);
    let db = database_url(&node);
    let rt = rt();
    rt.block_on(async {
        let api = Api::new(&node);
        let sid = coordinator_session(&fx, &api, &helper_model).await;
        let stream = Stream::open(&api, &sid).await;
        api.send(&sid, "first question").await;
        let created = stream.wait_for(0, "thread created", WAIT, |f| f.kind == "session.thread_created").await;
        let old = stream.snapshot()[created].body["session_thread_id"].as_str().unwrap().to_owned();
        // The child's runtime is at work: its model request is in the child's log.
        let deadline = Instant::now() + WAIT;
        loop {
            let log = api.ok(Method::GET, &format!("/v1/sessions/{sid}/threads/{old}/events"), None).await;
            if log["data"].as_array().unwrap().iter().any(|e| e["type"] == "span.model_request_start") {
                break;
            }
            assert!(Instant::now() < deadline, "the child thread never asked its model: {log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(stream);

        node.stop();
        node.start_again();
        let api = Api::new(&node);
        let stream = Stream::open(&api, &sid).await;
        let ended = stream
            .wait_for(created, "the cut-off thread terminated", WAIT, |f| {
                f.kind == "session.thread_status_terminated" && f.body["session_thread_id"] == old.as_str()
            })
            .await;
        stream.wait_for(ended, "the resumed turn idle", WAIT, is_idle).await;
        let frames = stream.snapshot();
        let log = Log::read(&db, &sid).await;
        check_log(&frames, &log);

        let thread = api.ok(Method::GET, &format!("/v1/sessions/{sid}/threads/{old}"), None).await;
        assert_eq!(thread["status"], "terminated", "{thread}");
        let own = api.ok(Method::GET, &format!("/v1/sessions/{sid}/threads/{old}/events"), None).await;
        let own = own["data"].as_array().unwrap().clone();
        let kinds: Vec<&str> = own.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds[kinds.len() - 2..], ["session.error", "session.thread_status_terminated"], "{kinds:?}");
        assert!(own[own.len() - 2]["error"]["message"].as_str().unwrap().contains("stopped"), "{own:?}");
        let ids: std::collections::HashSet<&str> = own.iter().filter_map(|e| e["id"].as_str()).collect();
        assert_eq!(ids.len(), own.len(), "no event of the child's log is stored twice");

        // Every thread the session created ended once in the session's log; none runs on.
        let threads = child_threads(&api, &sid).await;
        assert!(threads.iter().all(|t| t["status"] != "running"), "{threads:?}");
        for t in &threads {
            let id = t["id"].as_str().unwrap();
            let ends = log
                .events
                .iter()
                .filter(|(_, _, k, b)| {
                    (k == "session.thread_status_idle" || k == "session.thread_status_terminated")
                        && b["session_thread_id"] == id
                })
                .count();
            let created = log
                .events
                .iter()
                .filter(|(_, _, k, b)| k == "session.thread_created" && b["session_thread_id"] == id)
                .count();
            assert_eq!((created, ends), (1, 1), "thread {id}: created and ended once in the session log");
        }
    });
    node.assert_alive();
}

/// kill -9 while a delegated thread is idle: the thread keeps its resume token in the database,
/// and the coordinator's follow-up after the restart resumes the child with its context (its
/// model request for the follow-up carries the first exchange); no second thread is created.
#[test]
fn sqlite_an_idle_thread_takes_a_follow_up_after_a_restart() {
    let fx = Fixture::new("threads-idle");
    let helper_model = format!("{}-helper", fx.model);
    let answer = Reply { text: "Answer {{turn}} about {{last_user}}".into(), ..Reply::default() };
    fx.fake.set_scenario(&helper_model, Scenario { turns: vec![answer], ..Scenario::default() });
    let call = |input: Value| Reply {
        text: "Coordinator: {{tool_output}}".into(),
        tools: vec![ToolCall { custom: Some("delegate_to_agent".into()), input: Some(input), ..ToolCall::default() }],
        ..Reply::default()
    };
    let first = call(json!({"agent": "helper", "message": "the apples"}));
    fx.fake.set_scenario(&fx.model, Scenario { turns: vec![first.clone()], ..Scenario::default() });
    let mut node = fx.node(Backend::Sqlite);
    let rt = rt();
    rt.block_on(async {
        let api = Api::new(&node);
        let sid = coordinator_session(&fx, &api, &helper_model).await;
        let stream = Stream::open(&api, &sid).await;
        api.send(&sid, "ask about apples").await;
        stream.wait_for(0, "the first turn idle", WAIT, is_idle).await;
        drop(stream);
        let threads = child_threads(&api, &sid).await;
        assert_eq!(threads.len(), 1, "{threads:?}");
        assert_eq!(threads[0]["status"], "idle", "{threads:?}");
        let tid = threads[0]["id"].as_str().unwrap().to_owned();

        node.stop();
        node.start_again();
        let follow = call(json!({"thread_id": tid, "message": "the pears"}));
        fx.fake.set_scenario(&fx.model, Scenario { turns: vec![first, follow], ..Scenario::default() });
        let api = Api::new(&node);
        let stream = Stream::open(&api, &sid).await;
        let idle = stream.wait_for(0, "the first turn idle, replayed", WAIT, is_idle).await;
        api.send(&sid, "now ask about pears").await;
        let end = stream.wait_for(idle + 1, "the follow-up's turn idle", WAIT, is_idle).await;
        let frames = stream.snapshot();
        let turn = &frames[idle + 1..=end];
        assert!(turn.iter().all(|f| f.kind != "session.thread_created"), "a follow-up creates no thread");
        let answer = turn.iter().rev().find(|f| f.kind == "agent.message").expect("the coordinator answered");
        assert!(answer.body.to_string().contains("Answer 2 about the pears"), "{}", answer.body);

        let threads = child_threads(&api, &sid).await;
        assert_eq!(threads.len(), 1, "{threads:?}");
        assert_eq!(threads[0]["status"], "idle", "{threads:?}");
        let pears: Vec<String> = fx
            .fake
            .model_requests(&helper_model)
            .iter()
            .map(|r| r.body.to_string())
            .filter(|b| b.contains("the pears"))
            .collect();
        let last = pears.last().expect("the child asked its model about the pears");
        assert!(last.contains("the apples") && last.contains("Answer 1 about the apples"), "{last}");
    });
    node.assert_alive();
}
