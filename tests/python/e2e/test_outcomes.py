"""Outcomes end to end, for one harness (BRIDLE_E2E_ENGINE): `user.define_outcome` drives the
real runtime over several turns; after each, Bridle's grader (a separate model call on the
session's own endpoint and credential, the fake model's grader scenario answering) decides.
Shown: met on the second round, never met (stops at the limit), a malformed grader answer."""

from __future__ import annotations

import json

from .lib import is_idle, text_of

MARKER = "bridle-outcome-grader"
START, END = "span.outcome_evaluation_start", "span.outcome_evaluation_end"


def outcome(max_iterations: int) -> dict:
    return {"type": "user.define_outcome", "description": "Write a haiku about a pond.",
            "rubric": {"type": "text", "content": "Three lines; the second mentions a frog."},
            "max_iterations": max_iterations}


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind]


def grader_requests(stack, model: str) -> list[dict]:
    return [r for r in stack.fake.requests(model) if MARKER in json.dumps(r.get("body"))]


def run_outcome(s, max_iterations: int, final_result: str) -> tuple[dict, list[dict]]:
    """Define an outcome; wait until its evaluation ends with `final_result` and the session
    goes idle. Returns the echo and the events from the echo on."""
    start = s.mark()
    (echo,) = s.send(outcome(max_iterations))
    s.wait_for(lambda e: e.get("type") == END and e.get("result") == final_result,
               f"{END} with result {final_result}", start)
    end, _ = s.wait_idle(start, "end_turn")
    return echo.to_dict(mode="json"), s.snapshot(start)[: end - start + 1]


def test_outcome_met_on_the_second_round(stack, model, sessions):
    stack.fake.set_scenario(model, {"turns": [{"text": "Draft {{turn}} of the haiku."}], "grader": {"pass_after": 2}})
    s = stack.session(model)
    sessions.append(s)
    echo, evs = run_outcome(s, 3, "satisfied")
    oid = echo["outcome_id"]
    s.check(oid.startswith("outc_"), f"outcome id {oid!r}")
    s.expect_order(evs, [
        "user.define_outcome", "session.status_running", "agent.message",
        lambda e: e.get("type") == START and e.get("iteration") == 0,
        lambda e: e.get("type") == END and e.get("result") == "needs_revision" and e.get("iteration") == 0,
        "agent.message",
        lambda e: e.get("type") == START and e.get("iteration") == 1,
        lambda e: e.get("type") == END and e.get("result") == "satisfied" and e.get("iteration") == 1,
        is_idle("end_turn"),
    ], "an outcome met on the second round")
    starts, ends = of_type(evs, START), of_type(evs, END)
    s.check([e["outcome_evaluation_start_id"] for e in ends] == [e["id"] for e in starts],
            "each evaluation end names its start")
    s.check(all(e["outcome_id"] == oid for e in starts + ends), "every span names the outcome")
    s.check(all(e["usage"]["input_tokens"] > 0 for e in ends), f"the grader's usage is counted: {ends}")
    s.check("second criterion" in ends[0]["explanation"], f"explanation: {ends[0]['explanation']!r}")
    s.check(len(of_type(evs, "session.status_running")) == 1 and len(of_type(evs, "session.status_idle")) == 1,
            "the session runs through the rounds and goes idle once")
    s.check(not of_type(evs, "session.error"), "no session.error")
    (ev,) = stack.client.beta.sessions.retrieve(s.id).outcome_evaluations
    s.check((ev.outcome_id, ev.result, ev.iteration) == (oid, "satisfied", 1), f"outcome_evaluations: {ev}")
    s.check(ev.completed_at is not None, "a satisfied outcome has completed_at")
    # The grader saw the rubric and the agent's result, never the agent's conversation.
    graders = grader_requests(stack, model)
    s.check(len(graders) == 2, f"{len(graders)} grader requests, expected 2")
    body = json.dumps(graders[1]["body"])
    s.check("frog" in body and "Draft" in body, "the grader request carries the rubric and the agent's result")
    s.check("agent_toolset" not in body and '"tools"' not in body, "the grader request carries no agent tools")
    s.check(all(r["authorized"] for r in graders), "the grader used the session's credential")
    s.check_credentials()


def test_outcome_never_met_stops_at_the_limit(stack, model, sessions):
    stack.fake.set_scenario(model, {"turns": [{"text": "Draft {{turn}}."}], "grader": {}})
    s = stack.session(model)
    sessions.append(s)
    _, evs = run_outcome(s, 2, "max_iterations_reached")
    results = [e["result"] for e in of_type(evs, END)]
    s.check(results == ["needs_revision", "max_iterations_reached"], f"evaluation results {results}")
    last_end = max(i for i, e in enumerate(evs) if e.get("type") == END)
    s.check(of_type(evs[last_end:], "agent.message") != [], "one last (acknowledging) turn follows the limit")
    s.check(len(grader_requests(stack, model)) == 2, "no evaluation after the limit")
    (ev,) = stack.client.beta.sessions.retrieve(s.id).outcome_evaluations
    s.check((ev.result, ev.iteration) == ("max_iterations_reached", 1), f"outcome_evaluations: {ev}")


def test_a_malformed_grader_answer_is_a_clear_error(stack, model, sessions):
    stack.fake.set_scenario(model, {"turns": [{"text": "Here it is."}], "grader": {"malformed": True}})
    s = stack.session(model)
    sessions.append(s)
    echo, evs = run_outcome(s, 3, "failed")
    (err,) = of_type(evs, "session.error")
    e = err["error"]
    s.check(e["type"] == "model_request_failed_error", f"error type {e['type']!r}")
    s.check(echo["outcome_id"] in e["message"] and "verdict" in e["message"], f"error message {e['message']!r}")
    (ev,) = stack.client.beta.sessions.retrieve(s.id).outcome_evaluations
    s.check(ev.result == "failed" and "verdict" in (ev.explanation or ""), f"outcome_evaluations: {ev}")
    # The session is still usable.
    more = s.turn("Say hello.")
    s.check(text_of(of_type(more, "agent.message")[-1]) == "Here it is.", "a plain turn after the failed outcome")
