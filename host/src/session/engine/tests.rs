//! Table tests of the turn engine: each case feeds inputs in order and
//! checks the effects of every step, written compactly (see `show`).

use super::*;

fn t0() -> Instant {
    // Any fixed origin: the engine only compares instants it is given.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn at(secs: u64) -> Instant {
    t0() + Duration::from_secs(secs)
}

fn cfg() -> Config {
    Config { harness: "fake".into(), interrupt_grace: Duration::from_secs(10), price: None }
}

fn user(seq: i64, kind: &str, body: Value) -> UserEvent {
    let mut body = body;
    body["type"] = json!(kind);
    UserEvent { seq, kind: kind.into(), body }
}

fn msg(seq: i64) -> Input {
    Input::User(user(seq, "user.message", json!({"content": [{"type": "text", "text": "hi"}]})), at(0))
}

fn interrupt(seq: i64, secs: u64) -> Input {
    Input::User(user(seq, "user.interrupt", json!({})), at(secs))
}

fn confirm(seq: i64, id: &str) -> Input {
    Input::User(user(seq, "user.tool_confirmation", json!({"tool_use_id": id, "result": "allow"})), at(0))
}

fn custom_result(seq: i64, id: &str) -> Input {
    Input::User(user(seq, "user.custom_tool_result", json!({"custom_tool_use_id": id, "content": []})), at(0))
}

fn event(v: Value) -> PluginAction {
    let Value::Object(m) = v else { panic!("not an object") };
    PluginAction::Emit(m)
}

fn text() -> PluginAction {
    event(json!({"type": "agent.message", "id": "sevt_m", "content": [{"type": "text", "text": "x"}]}))
}

fn ask(id: &str) -> PluginAction {
    event(json!({"type": "agent.tool_use", "id": id, "name": "bash", "input": {}, "evaluated_permission": "ask"}))
}

fn custom_use(id: &str) -> PluginAction {
    event(json!({"type": "agent.custom_tool_use", "id": id, "name": "lookup", "input": {}}))
}

fn start(id: &str, kind: PreviewKind) -> PluginAction {
    PluginAction::Preview(Preview::Start { event_id: id.into(), kind })
}

fn delta(id: &str, text: &str) -> PluginAction {
    PluginAction::Preview(Preview::Text { event_id: id.into(), index: 0, text: text.into() })
}

fn span_end() -> PluginAction {
    event(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_s", "is_error": false}))
}

fn end() -> PluginAction {
    PluginAction::TurnEnded(json!({"type": "end_turn"}))
}

fn retrying() -> PluginAction {
    PluginAction::Retrying { error_type: "model_overloaded_error".into(), message: "529".into() }
}

fn failed(terminal: bool) -> PluginAction {
    PluginAction::Failed(Failure { error_type: "model_overloaded_error".into(), message: "gave up".into(), terminal })
}

fn tool(id: &str) -> PluginAction {
    PluginAction::ToolCall(ToolCall { id: id.into(), name: "bash".into(), input: json!({"command": "sleep 45"}) })
}

fn done(id: &str) -> Input {
    Input::ToolDone(ToolOutcome { id: id.into(), content: "ok".into(), is_error: false, exit_code: Some(0) })
}

fn exited(limit: Option<&str>, actions: Vec<PluginAction>) -> Input {
    Input::Exited {
        status: "exited with code 1".into(),
        limit: limit.map(str::to_owned),
        stderr: String::new(),
        actions,
    }
}

/// An effect in a few words: `commit session.status_idle:end_turn =>idle @1`.
fn show(e: &Effect) -> String {
    match e {
        Effect::Commit { events, status, turn_seq, usage } => {
            let mut s = String::from("commit");
            for ev in events {
                let ev = Value::Object(ev.clone());
                let ty = ev.get("type").and_then(Value::as_str).unwrap_or("?");
                s.push(' ');
                s.push_str(ty);
                if let Some(r) = ev.pointer("/stop_reason/type").and_then(Value::as_str) {
                    s.push_str(&format!(":{r}"));
                }
                if let Some(r) = ev.pointer("/error/retry_status/type").and_then(Value::as_str) {
                    s.push_str(&format!(":{r}"));
                }
                if ty.starts_with("span.outcome_evaluation_") {
                    s.push_str(&format!("#{}", ev["iteration"]));
                }
                if let Some(r) = ev.get("result").and_then(Value::as_str) {
                    s.push_str(&format!(":{r}"));
                }
            }
            if let Some(st) = status {
                s.push_str(&format!(" =>{}", st.status.as_str()));
            }
            if let Some(seq) = turn_seq {
                s.push_str(&format!(" @{seq}"));
            }
            if let Some(u) = usage {
                s.push_str(&format!(" +usage {}", u["input_tokens"]));
            }
            s
        }
        Effect::SaveInputSeq(n) => format!("input {n}"),
        Effect::SaveResume(t) => format!("resume {t}"),
        Effect::StartRuntime => "start".into(),
        Effect::StopRuntime(why) => format!("stop: {why}"),
        Effect::Deliver(PluginCall::Input(ev)) => format!("deliver {}#{}", ev.kind, ev.seq),
        Effect::Deliver(PluginCall::ToolResult(o)) => {
            format!("tool_result {}{}", o.id, if o.is_error { " error" } else { "" })
        }
        Effect::Write(b) => format!("write {}", String::from_utf8_lossy(b)),
        Effect::RunTool(c) => format!("run {}", c.id),
        Effect::CancelTool => "cancel".into(),
        Effect::Interrupt => "interrupt".into(),
        Effect::CollectOutputs => "collect".into(),
        Effect::Preview(Preview::Start { event_id, kind }) => format!("preview start {} {event_id}", kind.as_str()),
        Effect::Preview(Preview::Text { event_id, index, text }) => format!("preview text {event_id}[{index}] {text}"),
        Effect::Grade(job) => format!("grade {}#{} {:?}", job.outcome.id, job.iteration, job.result),
        Effect::CancelGrade => "cancel grade".into(),
    }
}

/// The effects as the tables write them: a commit that ends a turn (to
/// idle or terminated) must come right after `collect` (the turn's outputs
/// are stored first), and is written without it; one that does not is
/// marked `(outputs not collected)`, which no table expects.
fn shown(effects: &[Effect]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in effects {
        let s = show(e);
        let ends = s.starts_with("commit") && (s.contains(" =>idle") || s.contains(" =>terminated"));
        if ends && out.last().is_some_and(|l| l == "collect") {
            out.pop();
        } else if ends {
            out.push(format!("{s} (outputs not collected)"));
            continue;
        }
        out.push(s);
    }
    out
}

/// Feed each input and compare the effects of each step.
fn run(engine: &mut Engine, steps: Vec<(Input, Vec<&str>)>) {
    for (i, (input, want)) in steps.into_iter().enumerate() {
        let label = format!("step {i}: {input:?}");
        let got: Vec<String> = shown(&engine.handle(input));
        assert_eq!(got, want, "{label}");
    }
}

fn idle() -> Engine {
    let mut e = Engine::new(cfg(), Loaded::default());
    assert!(e.begin().is_empty());
    e
}

/// A session mid-turn with its runtime up (turn from seq 1).
fn running() -> Engine {
    let mut e = idle();
    run(
        &mut e,
        vec![
            (msg(1), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (Input::Started, vec!["deliver user.message#1"]),
        ],
    );
    e
}

#[test]
fn a_turn_starts_the_runtime_and_ends_idle() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Plugin(vec![PluginAction::Write(b"go\n".to_vec())]), vec!["write go\n"]),
            (Input::Output(vec![text()]), vec![]),
            (Input::BurstEnd, vec!["commit agent.message"]),
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
            (Input::BurstEnd, vec![]),
            // The runtime stays up: the next message goes straight to it.
            (msg(2), vec!["input 2", "commit session.status_running =>running @2", "deliver user.message#2"]),
        ],
    );
    assert!(e.in_turn());
}

#[test]
fn an_idle_runtime_is_stopped_between_turns_only() {
    let mut e = running();
    run(
        &mut e,
        vec![
            // Mid-turn, idleness is not the runner's to judge.
            (Input::Idle, vec![]),
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
            (Input::BurstEnd, vec![]),
            // Outputs are collected once more before the sandbox goes.
            (Input::Idle, vec!["collect", "stop: idle"]),
            // The next message starts it again.
            (msg(2), vec!["input 2", "commit session.status_running =>running @2", "start"]),
        ],
    );
    assert!(!e.runtime_up());
}

#[test]
fn messages_during_a_turn_queue_and_run_in_order() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (msg(2), vec!["input 2"]),
            (msg(3), vec!["input 3"]),
            (
                Input::Output(vec![text(), end()]),
                vec![
                    "commit agent.message",
                    "commit session.status_idle:end_turn =>idle",
                    "commit session.status_running =>running @2",
                    "deliver user.message#2",
                ],
            ),
            (Input::BurstEnd, vec![]),
            (
                Input::Plugin(vec![end()]),
                vec![
                    "commit session.status_idle:end_turn =>idle",
                    "commit session.status_running =>running @3",
                    "deliver user.message#3",
                ],
            ),
        ],
    );
    assert!(e.handover(), "a turn in progress is handed over");
}

#[test]
fn burst_holds_plain_events_for_one_commit_and_never_a_status() {
    let mut e = running();
    let mut steps: Vec<(Input, Vec<&str>)> = (0..3).map(|_| (Input::Output(vec![text()]), vec![])).collect();
    steps.push((Input::BurstEnd, vec!["commit agent.message agent.message agent.message"]));
    // A status change in a burst commits at once, with what was held before it.
    steps.push((Input::Output(vec![text()]), vec![]));
    steps.push((
        Input::Output(vec![retrying()]),
        vec!["commit agent.message", "commit session.error:retrying session.status_rescheduled =>rescheduling"],
    ));
    steps.push((Input::BurstEnd, vec![]));
    run(&mut e, steps);
}

#[test]
fn burst_closes_at_its_line_and_event_bounds() {
    let mut e = running();
    for _ in 0..BURST_LINES - 1 {
        assert!(e.handle(Input::Output(vec![])).is_empty());
        assert!(e.burst_open());
    }
    let got: Vec<String> = shown(&e.handle(Input::Output(vec![text()])));
    assert_eq!(got, ["commit agent.message"], "the 64th line closes the burst");
    assert!(!e.burst_open());

    let many: Vec<PluginAction> = (0..BURST_EVENTS).map(|_| text()).collect();
    let got = e.handle(Input::Output(many));
    assert!(matches!(&got[..], [Effect::Commit { events, .. }] if events.len() == BURST_EVENTS));
    assert!(!e.burst_open(), "256 held events close the burst");
}

#[test]
fn interrupt_gives_the_runtime_its_grace_then_stops_it() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (interrupt(2, 100), vec!["input 2", "deliver user.interrupt#2"]),
            (Input::Tick(at(105)), vec![]),
            (
                Input::Tick(at(110)),
                vec!["stop: interrupt grace period over", "commit session.status_idle:end_turn =>idle"],
            ),
            // The next message starts the runtime again.
            (msg(3), vec!["input 3", "commit session.status_running =>running @3", "start"]),
        ],
    );
    assert_eq!(e.interrupt_deadline(), None);
}

#[test]
fn interrupt_ended_by_the_runtime_clears_the_deadline() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (interrupt(2, 0), vec!["input 2", "deliver user.interrupt#2"]),
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
            (Input::BurstEnd, vec![]),
            (Input::Tick(at(60)), vec![]),
        ],
    );
    // Between turns an interrupt is a no-op.
    run(&mut e, vec![(interrupt(3, 61), vec!["input 3"])]);
}

#[test]
fn interrupt_cancels_the_tool_call_in_flight() {
    let mut e = running();
    run(
        &mut e,
        vec![(
            Input::Output(vec![
                event(json!({"type": "agent.tool_use", "id": "sevt_t", "name": "bash", "input": {}})),
                tool("sevt_t"),
                tool("sevt_u"),
            ]),
            vec!["commit agent.tool_use", "run sevt_t"],
        )],
    );
    assert!(!e.wants_output(), "runtime output waits for the tool's outcome");
    assert!(!e.burst_open(), "a tool call closes the burst");
    run(
        &mut e,
        vec![
            (interrupt(2, 0), vec!["input 2", "deliver user.interrupt#2", "cancel"]),
            // The cancelled call's outcome goes to the plugin; the queued one never runs.
            (
                Input::ToolDone(ToolOutcome::interrupted("sevt_t")),
                vec!["tool_result sevt_t error", "tool_result sevt_u error"],
            ),
        ],
    );
    assert!(e.wants_output());
    run(
        &mut e,
        vec![
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
            (Input::BurstEnd, vec![]),
            (msg(3), vec!["input 3", "commit session.status_running =>running @3", "deliver user.message#3"]),
        ],
    );
}

#[test]
fn interrupt_during_a_tool_call_is_bounded_by_the_grace() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Output(vec![tool("sevt_t")]), vec!["run sevt_t"]),
            (interrupt(2, 0), vec!["input 2", "deliver user.interrupt#2", "cancel"]),
            (
                Input::Tick(at(10)),
                vec!["cancel", "stop: interrupt grace period over", "commit session.status_idle:end_turn =>idle"],
            ),
            // A late outcome has no one to go to.
            (done("sevt_t"), vec![]),
        ],
    );
}

#[test]
fn tool_calls_run_one_at_a_time() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Output(vec![tool("a"), tool("b")]), vec!["run a"]),
            (done("a"), vec!["tool_result a", "run b"]),
            (done("b"), vec!["tool_result b"]),
            (
                Input::Plugin(vec![text(), PluginAction::Write(b"r\n".to_vec())]),
                vec!["commit agent.message", "write r\n"],
            ),
        ],
    );
}

#[test]
fn confirmation_waits_idle_then_runs_again() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (
                Input::Output(vec![ask("sevt_a")]),
                vec!["commit agent.tool_use session.status_idle:requires_action =>idle"],
            ),
            (Input::BurstEnd, vec![]),
            (
                confirm(2, "sevt_a"),
                vec!["input 2", "commit session.status_running =>running", "deliver user.tool_confirmation#2"],
            ),
        ],
    );
}

#[test]
fn custom_tool_result_answers_the_call() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (
                Input::Output(vec![custom_use("sevt_c"), ask("sevt_a")]),
                vec![
                    "commit agent.custom_tool_use session.status_idle:requires_action =>idle",
                    "commit agent.tool_use session.status_idle:requires_action =>idle",
                ],
            ),
            (Input::BurstEnd, vec![]),
            // One of two answered: still waiting, on the other.
            (
                custom_result(2, "sevt_c"),
                vec![
                    "input 2",
                    "commit session.status_idle:requires_action =>idle",
                    "deliver user.custom_tool_result#2",
                ],
            ),
            (
                confirm(3, "sevt_a"),
                vec!["input 3", "commit session.status_running =>running", "deliver user.tool_confirmation#3"],
            ),
        ],
    );
}

#[test]
fn answer_no_runtime_waits_for_between_turns_ends_idle() {
    let mut e = idle();
    run(
        &mut e,
        vec![(
            confirm(1, "sevt_gone"),
            vec!["input 1", "commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
        )],
    );
}

#[test]
fn answer_no_runtime_waits_for_during_a_turn_goes_through_the_status_machine() {
    let mut e = running();
    run(&mut e, vec![(custom_result(2, "sevt_gone"), vec!["input 2", "commit session.error:exhausted"])]);
    assert_eq!(e.status(), SessionStatus::Running, "the turn goes on");
}

#[test]
fn retry_reschedules_then_progress_runs_again() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (
                Input::Plugin(vec![retrying()]),
                vec!["commit session.error:retrying session.status_rescheduled =>rescheduling"],
            ),
            (Input::Plugin(vec![retrying()]), vec!["commit session.error:retrying"]),
            // A message meanwhile queues behind the rescheduled turn.
            (msg(2), vec!["input 2"]),
            (Input::Plugin(vec![PluginAction::Resumed]), vec!["commit session.status_running =>running"]),
        ],
    );
}

#[test]
fn exhaustion_ends_the_turn_and_takes_the_next_message() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (msg(2), vec!["input 2"]),
            (
                Input::Plugin(vec![failed(false)]),
                vec![
                    "commit session.error:exhausted session.status_idle:retries_exhausted =>idle",
                    "commit session.status_running =>running @2",
                    "deliver user.message#2",
                ],
            ),
        ],
    );
}

#[test]
fn terminal_failure_stops_the_runtime_for_good() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (msg(2), vec!["input 2"]),
            (
                Input::Plugin(vec![failed(true)]),
                vec!["commit session.error:terminal session.status_terminated =>terminated", "stop: terminal failure"],
            ),
            // (The API refuses messages to a terminated session; the engine
            // records the turn start without any status change.)
            (msg(3), vec!["input 3", "commit @3", "start"]),
        ],
    );
    assert_eq!(e.status(), SessionStatus::Terminated);
}

#[test]
fn runtime_exit_mid_turn_fails_the_turn() {
    let mut e = running();
    run(
        &mut e,
        vec![(
            exited(None, vec![]),
            vec!["commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
        )],
    );
    assert!(!e.runtime_up());
    // The plugin's own failure for the exit ends the turn instead.
    let mut e = running();
    run(
        &mut e,
        vec![(
            exited(None, vec![failed(false)]),
            vec!["commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
        )],
    );
}

#[test]
fn runtime_exit_of_a_sandbox_limit_names_the_limit() {
    let mut e = running();
    let got = e.handle(exited(Some("memory"), vec![failed(false)]));
    let [Effect::CollectOutputs, Effect::Commit { events, .. }] = &got[..] else { panic!("{got:?}") };
    assert_eq!(events[0]["error"]["message"], "the agent runtime was stopped: sandbox memory limit exceeded");
}

#[test]
fn runtime_exit_while_waiting_on_the_user_names_the_lost_calls() {
    let mut e = running();
    e.handle(Input::Output(vec![ask("sevt_a")]));
    e.handle(Input::BurstEnd);
    let got = e.handle(exited(None, vec![failed(false)]));
    let [Effect::CollectOutputs, Effect::Commit { events, .. }] = &got[..] else { panic!("{got:?}") };
    let m = events[0]["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("gave up; tool call `sevt_a` was waiting"), "{m}");
}

#[test]
fn runtime_exit_during_a_tool_call_cancels_it() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Output(vec![tool("a")]), vec!["run a"]),
            (
                exited(None, vec![]),
                vec!["cancel", "commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
            ),
            (done("a"), vec![]),
        ],
    );
}

#[test]
fn resume_token_is_kept_only_when_its_turn_ends() {
    let loaded = Loaded { resume: Some("old".into()), ..Loaded::default() };
    let mut e = Engine::new(cfg(), loaded);
    e.begin();
    e.handle(msg(1));
    e.handle(Input::Started);
    run(&mut e, vec![(Input::Plugin(vec![PluginAction::Checkpoint("new".into())]), vec![])]);
    assert_eq!(e.resume(), Some("new"));
    // Died mid-turn: back to the last saved token.
    e.handle(exited(None, vec![]));
    assert_eq!(e.resume(), Some("old"));
    e.handle(msg(2));
    e.handle(Input::Started);
    run(
        &mut e,
        vec![(
            Input::Plugin(vec![PluginAction::Checkpoint("newer".into()), end()]),
            vec!["resume newer", "commit session.status_idle:end_turn =>idle"],
        )],
    );
    e.handle(exited(None, vec![]));
    assert_eq!(e.resume(), Some("newer"));
}

#[test]
fn invalid_plugin_event_stops_the_runtime_and_fails_the_turn() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Output(vec![text()]), vec![]),
            (
                Input::Output(vec![PluginAction::Invalid("bad".into()), text()]),
                vec![
                    "commit agent.message",
                    "stop: invalid plugin event",
                    "commit session.error:exhausted session.status_idle:retries_exhausted =>idle",
                ],
            ),
        ],
    );
    assert!(!e.burst_open());
}

#[test]
fn plugin_fault_stops_the_runtime_and_fails_the_turn() {
    let mut e = running();
    run(
        &mut e,
        vec![(
            Input::PluginFault("trapped".into()),
            vec!["stop: plugin fault", "commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
        )],
    );
}

#[test]
fn start_failure_fails_the_turn_and_tries_the_next_message() {
    let mut e = idle();
    run(
        &mut e,
        vec![
            (msg(1), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (msg(2), vec!["input 2"]),
            (
                Input::StartFailed { error_type: "unknown_error".into(), message: "no credential".into() },
                vec![
                    "commit session.error:exhausted session.status_idle:retries_exhausted =>idle",
                    "commit session.status_running =>running @2",
                    "start",
                ],
            ),
        ],
    );
}

#[test]
fn orphaned_waits_at_load_end_their_turn_first() {
    let loaded = Loaded {
        status: Some(SessionStatus::Idle),
        orphaned: vec!["sevt_a".into()],
        queue: vec![user(5, "user.message", json!({}))],
        ..Loaded::default()
    };
    let mut e = Engine::new(cfg(), loaded);
    let got: Vec<String> = shown(&e.begin());
    assert_eq!(
        got,
        [
            "commit session.error:exhausted session.status_idle:retries_exhausted =>idle",
            "commit session.status_running =>running @5",
            "start",
        ]
    );
    assert!(e.begin().is_empty(), "begin runs once");
}

#[test]
fn adoption_mid_turn_resumes_the_turn() {
    let turn = user(3, "user.message", json!({}));
    let loaded = Loaded { status: Some(SessionStatus::Running), recover: Some(Some(turn)), ..Loaded::default() };
    let mut e = Engine::new(cfg(), loaded);
    let got: Vec<String> = shown(&e.begin());
    assert_eq!(got, ["commit session.status_rescheduled =>rescheduling", "start"]);
    run(&mut e, vec![(Input::Started, vec!["commit session.status_running =>running", "deliver user.message#3"])]);
    assert!(e.in_turn());
}

#[test]
fn interrupted_adoption_ends_the_turn() {
    let loaded = Loaded { status: Some(SessionStatus::Running), recover: Some(None), ..Loaded::default() };
    let mut e = Engine::new(cfg(), loaded);
    let got: Vec<String> = shown(&e.begin());
    assert_eq!(got, ["commit session.status_rescheduled =>rescheduling", "commit session.status_idle:end_turn =>idle"]);
    assert!(!e.in_turn());
}

#[test]
fn adoption_that_cannot_start_fails_the_turn() {
    let turn = user(3, "user.message", json!({}));
    let loaded = Loaded { status: Some(SessionStatus::Running), recover: Some(Some(turn)), ..Loaded::default() };
    let mut e = Engine::new(cfg(), loaded);
    e.begin();
    run(
        &mut e,
        vec![(
            Input::StartFailed { error_type: "unknown_error".into(), message: "x".into() },
            vec!["commit session.error:exhausted session.status_idle:retries_exhausted =>idle"],
        )],
    );
}

#[test]
fn a_fenced_write_stops_everything() {
    let mut e = running();
    e.handle(Input::Output(vec![text()]));
    run(&mut e, vec![(Input::Fenced, vec![]), (msg(2), vec![]), (Input::Output(vec![end()]), vec![])]);
    assert!(e.fenced());
}

#[test]
fn usage_adds_up_into_the_status_change() {
    let mut e = running();
    let usage = || {
        event(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_s",
            "model_usage": {"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 5}}))
    };
    let got = e.handle(Input::Plugin(vec![usage(), usage(), end()]));
    let Some(Effect::Commit { status: Some(st), .. }) = got.last() else { panic!("{got:?}") };
    assert_eq!(st.usage["input_tokens"], 6);
    assert_eq!(st.usage["output_tokens"], 4);
    assert_eq!(st.usage["cache_creation"]["ephemeral_5m_input_tokens"], 10);
}

fn model_end(input_tokens: u64) -> PluginAction {
    event(json!({"type": "span.model_request_end", "model_request_start_id": "sevt_s",
        "model_usage": {"input_tokens": input_tokens, "output_tokens": 0}}))
}

/// $1 per million input tokens: one cent is 10,000 input tokens.
fn priced(loaded: Loaded) -> Engine {
    let price = Price { input: 1_000_000, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 };
    let mut e = Engine::new(Config { price: Some(price), ..cfg() }, loaded);
    assert!(e.begin().is_empty());
    e
}

#[test]
fn usage_is_stored_with_the_events_it_comes_from() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (Input::Output(vec![model_end(7)]), vec![]),
            (Input::Output(vec![text()]), vec![]),
            (Input::BurstEnd, vec!["commit span.model_request_end agent.message +usage 7"]),
            // The status change after it needs no usage of its own.
            (
                Input::Output(vec![model_end(3), end()]),
                vec!["commit span.model_request_end +usage 10", "commit session.status_idle:end_turn =>idle"],
            ),
        ],
    );
}

#[test]
fn a_spent_budget_interrupts_the_turn_which_ends_budget_reached() {
    let mut e = priced(Loaded { budget: Some(Cost::from_cents(1)), ..Loaded::default() });
    run(
        &mut e,
        vec![
            (msg(1), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (Input::Started, vec!["deliver user.message#1"]),
            (Input::Output(vec![model_end(9_999)]), vec![]),
            // The request that reaches the ceiling interrupts the turn, as a
            // user would (the runner answers with the interrupt).
            (Input::Output(vec![model_end(1)]), vec!["interrupt"]),
            (interrupt(1, 0), vec!["input 1", "deliver user.interrupt#1"]),
            // Whatever the runtime says of the turn, it ended for the budget.
            (
                Input::Output(vec![end()]),
                vec![
                    "commit span.model_request_end span.model_request_end +usage 10000",
                    "commit session.status_idle:budget_reached =>idle",
                ],
            ),
        ],
    );
}

#[test]
fn a_runtime_that_ignores_the_budget_interrupt_is_stopped_after_the_grace_period() {
    let mut e = priced(Loaded { budget: Some(Cost::from_cents(1)), ..Loaded::default() });
    e.handle(msg(1));
    e.handle(Input::Started);
    assert_eq!(
        e.handle(Input::Plugin(vec![model_end(20_000)])).iter().map(show).collect::<Vec<_>>(),
        ["commit span.model_request_end +usage 20000", "interrupt"]
    );
    e.handle(interrupt(1, 0));
    run(
        &mut e,
        vec![(
            Input::Tick(at(11)),
            vec!["stop: interrupt grace period over", "commit session.status_idle:budget_reached =>idle"],
        )],
    );
}

#[test]
fn messages_after_the_budget_is_spent_end_at_once_until_it_is_raised() {
    let spent = json!({"input_tokens": 10_000}).as_object().unwrap().clone();
    let mut e = priced(Loaded { budget: Some(Cost::from_cents(1)), usage: spent, ..Loaded::default() });
    run(
        &mut e,
        vec![
            (
                msg(1),
                vec![
                    "input 1",
                    "commit session.status_running =>running @1",
                    "commit session.status_idle:budget_reached =>idle",
                ],
            ),
            (Input::Budget(Some(Cost::from_cents(2))), vec![]),
            (msg(2), vec!["input 2", "commit session.status_running =>running @2", "start"]),
        ],
    );
    // A removed budget stops nothing.
    let spent = json!({"input_tokens": 1_000_000}).as_object().unwrap().clone();
    let mut e = priced(Loaded { budget: Some(Cost::from_cents(1)), usage: spent, ..Loaded::default() });
    run(
        &mut e,
        vec![
            (Input::Budget(None), vec![]),
            (msg(1), vec!["input 1", "commit session.status_running =>running @1", "start"]),
        ],
    );
}

#[test]
fn a_budget_without_a_price_or_a_price_without_a_budget_stops_nothing() {
    let mut e = Engine::new(cfg(), Loaded { budget: Some(Cost(0)), ..Loaded::default() });
    e.begin();
    e.handle(msg(1));
    e.handle(Input::Started);
    assert!(!e.handle(Input::Plugin(vec![model_end(1_000_000)])).iter().any(|x| matches!(x, Effect::Interrupt)));
    let mut e = priced(Loaded::default());
    e.handle(msg(1));
    e.handle(Input::Started);
    assert!(!e.handle(Input::Plugin(vec![model_end(1_000_000)])).iter().any(|x| matches!(x, Effect::Interrupt)));
}

#[test]
fn previews_go_out_at_once_and_the_message_keeps_its_burst() {
    let mut e = running();
    run(
        &mut e,
        vec![
            // Held events go out before a preview, so frames keep the runtime's order.
            (Input::Output(vec![event(json!({"type": "agent.thinking", "id": "sevt_k"}))]), vec![]),
            (
                Input::Output(vec![start("sevt_m", PreviewKind::AgentMessage)]),
                vec!["commit agent.thinking", "preview start agent.message sevt_m"],
            ),
            (Input::Output(vec![delta("sevt_m", "Hel")]), vec!["preview text sevt_m[0] Hel"]),
            (Input::Output(vec![delta("sevt_m", "lo")]), vec!["preview text sevt_m[0] lo"]),
            // The buffered message is held like any event; it concludes the preview.
            (Input::Output(vec![text()]), vec![]),
            (Input::Output(vec![delta("sevt_m", "late")]), vec![]),
            (Input::BurstEnd, vec!["commit agent.message"]),
        ],
    );
}

#[test]
fn a_preview_is_closed_by_its_span_end_and_by_the_turns_end() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (
                Input::Output(vec![start("sevt_a", PreviewKind::AgentMessage)]),
                vec!["preview start agent.message sevt_a"],
            ),
            // Thinking previews are start-only.
            (
                Input::Output(vec![start("sevt_k", PreviewKind::AgentThinking)]),
                vec!["preview start agent.thinking sevt_k"],
            ),
            (Input::Output(vec![delta("sevt_k", "no")]), vec![]),
            // A delta for a preview never started is dropped.
            (Input::Output(vec![delta("sevt_x", "no")]), vec![]),
            // The model request ends without the message (cut off): closed.
            // (A dropped preview does not flush the held events.)
            (Input::Output(vec![span_end(), delta("sevt_a", "no")]), vec![]),
            (Input::BurstEnd, vec!["commit span.model_request_end"]),
            (
                Input::Output(vec![start("sevt_b", PreviewKind::AgentMessage)]),
                vec!["preview start agent.message sevt_b"],
            ),
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
            (Input::BurstEnd, vec![]),
            // Between turns nothing is previewed, and the turn's previews are closed.
            (Input::Output(vec![delta("sevt_b", "no")]), vec![]),
            (Input::Output(vec![start("sevt_c", PreviewKind::AgentMessage)]), vec![]),
        ],
    );
}

#[test]
fn a_fenced_engine_sends_no_previews() {
    let mut e = running();
    run(
        &mut e,
        vec![(Input::Fenced, vec![]), (Input::Output(vec![start("sevt_a", PreviewKind::AgentMessage)]), vec![])],
    );
}

mod outcomes;

/// A coordinator's session mid-turn: custom tool uses of `delegate` are delegations.
fn coordinating() -> Engine {
    let mut e = Engine::new(cfg(), Loaded::default()).with_delegation("delegate");
    assert!(e.begin().is_empty());
    run(
        &mut e,
        vec![
            (msg(1), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (Input::Started, vec!["deliver user.message#1"]),
        ],
    );
    e
}

fn delegation(id: &str) -> PluginAction {
    event(
        json!({"type": "agent.custom_tool_use", "id": id, "name": "delegate", "input": {"agent": "a", "message": "m"}}),
    )
}

#[test]
fn a_delegation_runs_on_the_host_and_its_result_answers_the_custom_tool() {
    let mut e = coordinating();
    run(
        &mut e,
        vec![
            // Not stored, not waiting on the client: the host runs it (a child thread).
            (Input::Output(vec![text(), delegation("sevt_d")]), vec!["commit agent.message", "run sevt_d"]),
            // Its outcome reaches the runtime as the custom tool's result.
            (done("sevt_d"), vec!["deliver user.custom_tool_result#0"]),
            (Input::Output(vec![end()]), vec!["commit session.status_idle:end_turn =>idle"]),
        ],
    );
    // Another custom tool still waits on the client.
    let mut e = coordinating();
    run(
        &mut e,
        vec![(
            Input::Output(vec![custom_use("sevt_c")]),
            vec!["commit agent.custom_tool_use session.status_idle:requires_action =>idle"],
        )],
    );
}

#[test]
fn a_delegation_outcome_is_the_custom_tool_result_body() {
    let mut e = coordinating();
    e.handle(Input::Output(vec![delegation("sevt_d")]));
    let out = e.handle(Input::ToolDone(ToolOutcome {
        id: "sevt_d".into(),
        content: "the child said".into(),
        is_error: true,
        exit_code: None,
    }));
    let [Effect::Deliver(PluginCall::Input(ev))] = out.as_slice() else { panic!("{:?}", shown(&out)) };
    assert_eq!(
        ev.body,
        json!({"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_d",
               "content": [{"type": "text", "text": "the child said"}], "is_error": true})
    );
}

#[test]
fn an_interrupt_cancels_the_delegation_and_answers_queued_ones() {
    let mut e = coordinating();
    run(
        &mut e,
        vec![
            (Input::Output(vec![delegation("sevt_d"), delegation("sevt_e")]), vec!["run sevt_d"]),
            (interrupt(2, 0), vec!["input 2", "deliver user.interrupt#2", "cancel"]),
            (
                Input::ToolDone(ToolOutcome::interrupted("sevt_d")),
                vec!["deliver user.custom_tool_result#0", "deliver user.custom_tool_result#0"],
            ),
        ],
    );
}

#[test]
fn without_a_roster_a_custom_tool_named_like_the_delegation_waits_on_the_client() {
    let mut e = running();
    run(
        &mut e,
        vec![(
            Input::Output(vec![delegation("sevt_d")]),
            vec!["commit agent.custom_tool_use session.status_idle:requires_action =>idle"],
        )],
    );
}
