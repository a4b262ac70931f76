//! The outcome loop in the engine: grading after each turn, the grader's
//! feedback as the next round's input, the iteration limit, a malformed
//! grader answer, interrupts, and adoption mid-outcome.

use super::*;
use crate::session::outcome::Outcome;
use crate::session::outcome::cycle::{Cycle, Graded};
use crate::session::outcome::grader::{Grade, Verdict};

fn define(seq: i64, max: u32) -> Input {
    Input::User(define_event(seq, max), at(0))
}

fn define_event(seq: i64, max: u32) -> UserEvent {
    let body = json!({"outcome_id": "outc_1", "description": "a haiku", "rubric": {"type": "text", "content": "5-7-5"},
                      "max_iterations": max});
    user(seq, "user.define_outcome", body)
}

fn said(text: &str) -> PluginAction {
    event(json!({"type": "agent.message", "id": "sevt_m", "content": [{"type": "text", "text": text}]}))
}

fn graded(verdict: Verdict) -> Input {
    let grade = Grade { verdict, explanation: "line 2 has eight syllables".into() };
    Input::Graded(Graded { grade: Ok(grade), usage: json!({"input_tokens": 5, "output_tokens": 2}) })
}

/// An outcome's first round, worked and handed to the grader.
fn graded_once(max: u32) -> Engine {
    let mut e = idle();
    run(
        &mut e,
        vec![
            (define(1, max), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            // The runtime gets a message asking for the work (not the definition).
            (Input::Started, vec!["deliver user.message#1"]),
            (
                Input::Output(vec![said("old pond"), end()]),
                vec!["commit agent.message", "commit span.outcome_evaluation_start#0", r#"grade outc_1#0 "old pond""#],
            ),
            (Input::BurstEnd, vec![]),
        ],
    );
    assert!(e.in_turn(), "the session stays running while the grader works");
    e
}

#[test]
fn the_first_input_asks_for_the_work_with_its_rubric() {
    let mut e = idle();
    let out = e.handle(define(1, 3));
    let out = [out, e.handle(Input::Started)].concat();
    let Some(Effect::Deliver(PluginCall::Input(ev))) = out.last() else { panic!("{:?}", shown(&out)) };
    assert_eq!(ev.kind, "user.message");
    let text = ev.body.pointer("/content/0/text").and_then(Value::as_str).unwrap_or_default();
    assert!(text.contains("a haiku") && text.contains("5-7-5"), "{text}");
}

#[test]
fn met_on_the_second_round() {
    let mut e = graded_once(3);
    run(
        &mut e,
        vec![
            // The feedback is the next round's input.
            (
                graded(Verdict::NeedsRevision),
                vec!["commit span.outcome_evaluation_end#0:needs_revision +usage 5", "deliver user.message#0"],
            ),
            (
                Input::Output(vec![said("frog jumps"), end()]),
                vec![
                    "commit agent.message",
                    "commit span.outcome_evaluation_start#1",
                    r#"grade outc_1#1 "frog jumps""#,
                ],
            ),
            (
                graded(Verdict::Satisfied),
                vec![
                    "commit span.outcome_evaluation_end#1:satisfied +usage 10",
                    "commit session.status_idle:end_turn =>idle",
                ],
            ),
        ],
    );
    assert!(!e.in_turn());
}

#[test]
fn the_feedback_reaches_the_agent() {
    let mut e = graded_once(3);
    let out = e.handle(graded(Verdict::NeedsRevision));
    let Some(Effect::Deliver(PluginCall::Input(ev))) = out.last() else { panic!("{:?}", shown(&out)) };
    let text = ev.body.pointer("/content/0/text").and_then(Value::as_str).unwrap_or_default();
    assert!(text.contains("line 2 has eight syllables"), "{text}");
}

#[test]
fn never_met_stops_at_the_limit_after_one_last_turn() {
    let mut e = graded_once(2);
    run(
        &mut e,
        vec![
            (
                graded(Verdict::NeedsRevision),
                vec!["commit span.outcome_evaluation_end#0:needs_revision +usage 5", "deliver user.message#0"],
            ),
            (
                Input::Output(vec![said("b"), end()]),
                vec!["commit agent.message", "commit span.outcome_evaluation_start#1", r#"grade outc_1#1 "b""#],
            ),
            (
                graded(Verdict::NeedsRevision),
                vec!["commit span.outcome_evaluation_end#1:max_iterations_reached +usage 10", "deliver user.message#0"],
            ),
            // The acknowledging turn is not graded.
            (
                Input::Output(vec![said("c"), end()]),
                vec!["commit agent.message", "commit session.status_idle:end_turn =>idle"],
            ),
        ],
    );
    assert!(!e.in_turn());
}

#[test]
fn a_failed_verdict_ends_the_outcome() {
    let mut e = graded_once(3);
    run(
        &mut e,
        vec![(
            graded(Verdict::Failed),
            vec!["commit span.outcome_evaluation_end#0:failed +usage 5", "commit session.status_idle:end_turn =>idle"],
        )],
    );
}

#[test]
fn a_malformed_grader_answer_is_a_session_error_and_the_session_goes_on() {
    let mut e = graded_once(3);
    let bad = Graded { grade: Err("the grader's answer is not a verdict (no JSON object)".into()), usage: Value::Null };
    let out = e.handle(Input::Graded(bad));
    assert_eq!(
        shown(&out),
        [
            "commit span.outcome_evaluation_end#0:failed",
            "commit session.error:exhausted",
            "commit session.status_idle:end_turn =>idle",
        ]
    );
    let Some(Effect::Commit { events, .. }) = out.get(1) else { panic!() };
    assert_eq!(events[0]["error"]["type"], "model_request_failed_error");
    assert!(events[0]["error"]["message"].as_str().unwrap_or_default().contains("outc_1"));
    run(
        &mut e,
        vec![(msg(2), vec!["input 2", "commit session.status_running =>running @2", "deliver user.message#2"])],
    );
}

#[test]
fn an_interrupt_stops_the_evaluation() {
    let mut e = graded_once(3);
    run(
        &mut e,
        vec![
            (
                interrupt(2, 0),
                vec![
                    "input 2",
                    "cancel grade",
                    "commit span.outcome_evaluation_end#0:interrupted",
                    "commit session.status_idle:end_turn =>idle",
                ],
            ),
            // A late verdict has nothing to grade.
            (graded(Verdict::Satisfied), vec![]),
        ],
    );
}

#[test]
fn an_interrupt_during_the_work_ends_the_outcome() {
    let mut e = idle();
    run(
        &mut e,
        vec![
            (define(1, 3), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (Input::Started, vec!["deliver user.message#1"]),
            (interrupt(2, 0), vec!["input 2", "deliver user.interrupt#2"]),
            (
                Input::Output(vec![end()]),
                vec![
                    "commit span.outcome_evaluation_start#0 span.outcome_evaluation_end#0:interrupted \
                     session.status_idle:end_turn =>idle",
                ],
            ),
        ],
    );
}

#[test]
fn an_outcome_sent_during_a_turn_waits_for_it() {
    let mut e = running();
    run(
        &mut e,
        vec![
            (define(2, 3), vec!["input 2"]),
            (
                Input::Output(vec![end()]),
                vec![
                    "commit session.status_idle:end_turn =>idle",
                    "commit session.status_running =>running @2",
                    "deliver user.message#2",
                ],
            ),
        ],
    );
}

#[test]
fn a_runtime_failure_fails_the_outcome() {
    let mut e = idle();
    run(
        &mut e,
        vec![
            (define(1, 3), vec!["input 1", "commit session.status_running =>running @1", "start"]),
            (
                Input::StartFailed { error_type: "unknown_error".into(), message: "no sandbox".into() },
                vec![
                    "commit span.outcome_evaluation_start#0",
                    "commit span.outcome_evaluation_end#0:failed",
                    "commit session.error:exhausted session.status_idle:retries_exhausted =>idle",
                ],
            ),
        ],
    );
}

#[test]
fn adoption_resumes_the_outcome_at_its_round() {
    let turn = define_event(1, 3);
    let mut cycle = Cycle::new(Outcome::from_event(&turn.body).unwrap());
    cycle.iteration = 1;
    let loaded = Loaded {
        status: Some(SessionStatus::Running),
        recover: Some(Some(turn)),
        outcome: Some(cycle.clone()),
        ..Loaded::default()
    };
    let mut e = Engine::new(cfg(), loaded);
    assert_eq!(shown(&e.begin()), ["commit session.status_rescheduled =>rescheduling", "start"]);
    run(
        &mut e,
        vec![
            (Input::Started, vec!["commit session.status_running =>running", "deliver user.message#1"]),
            (
                Input::Output(vec![said("again"), end()]),
                vec!["commit agent.message", "commit span.outcome_evaluation_start#1", r#"grade outc_1#1 "again""#],
            ),
        ],
    );
    // Interrupted while the node was gone: the outcome ends so.
    let loaded =
        Loaded { status: Some(SessionStatus::Running), recover: Some(None), outcome: Some(cycle), ..Loaded::default() };
    let mut e = Engine::new(cfg(), loaded);
    assert_eq!(
        shown(&e.begin()),
        [
            "commit session.status_rescheduled =>rescheduling",
            "commit span.outcome_evaluation_start#1",
            "commit span.outcome_evaluation_end#1:interrupted",
            "commit session.status_idle:end_turn =>idle",
        ]
    );
}
