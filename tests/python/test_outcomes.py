"""Outcomes at the API: `user.define_outcome` (at create or later), its checks, and the
session's `outcome_evaluations`. This suite's server runs no sessions, so an outcome stays at
its first round; the loop itself is shown per harness in tests/python/e2e/test_outcomes.py."""

from __future__ import annotations

import anthropic
import pytest

from conftest import assert_api_error

RUBRIC = {"type": "text", "content": "Five, seven and five syllables."}


def outcome(**kw) -> dict:
    ev = {"type": "user.define_outcome", "description": "Write a haiku about a pond.", "rubric": RUBRIC}
    ev.update(kw)
    return ev


def test_a_defined_outcome_is_echoed_with_its_id_and_listed_on_the_session(client, session):
    (echo,) = client.beta.sessions.events.send(session.id, events=[outcome(max_iterations=5)]).data
    assert echo.type == "user.define_outcome"
    assert echo.id.startswith("sevt_") and echo.outcome_id.startswith("outc_"), echo
    assert echo.description == "Write a haiku about a pond."
    assert (echo.rubric.type, echo.rubric.content) == ("text", RUBRIC["content"])
    assert echo.max_iterations == 5
    (logged,) = client.beta.sessions.events.list(session.id, types=["user.define_outcome"])
    assert logged.outcome_id == echo.outcome_id
    s = client.beta.sessions.retrieve(session.id)
    (ev,) = s.outcome_evaluations
    assert ev.type == "outcome_evaluation"
    assert (ev.outcome_id, ev.description, ev.iteration, ev.result) == (
        echo.outcome_id, echo.description, 0, "running")
    assert ev.explanation is None and ev.completed_at is None
    listed = [x for x in client.beta.sessions.list(limit=100) if x.id == session.id]
    assert [o.outcome_id for o in listed[0].outcome_evaluations] == [echo.outcome_id]


def test_outcomes_wait_their_turn(client, session):
    first, second = client.beta.sessions.events.send(session.id, events=[outcome(), outcome()]).data
    got = client.beta.sessions.retrieve(session.id).outcome_evaluations
    assert [(o.outcome_id, o.result) for o in got] == [(first.outcome_id, "running"), (second.outcome_id, "pending")]


def test_an_outcome_at_create(client, agent, environment):
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, initial_events=[outcome()])
    (ev,) = s.outcome_evaluations
    assert ev.outcome_id.startswith("outc_") and ev.result == "running"
    (logged,) = client.beta.sessions.events.list(s.id, types=["user.define_outcome"])
    assert logged.outcome_id == ev.outcome_id


def test_a_file_rubric_is_resolved_to_its_text(client, session):
    f = client.beta.files.upload(file=("rubric.md", b"# Rubric\n- mentions a frog\n", "text/markdown"))
    try:
        (echo,) = client.beta.sessions.events.send(
            session.id, events=[outcome(rubric={"type": "file", "file_id": f.id})]).data
        assert (echo.rubric.type, echo.rubric.content) == ("text", "# Rubric\n- mentions a frog\n")
    finally:
        client.beta.files.delete(f.id)


@pytest.mark.parametrize(
    "event, field",
    [
        ({"type": "user.define_outcome", "description": "d"}, "rubric"),
        (outcome(description="  "), "events[0].description"),
        (outcome(rubric={"type": "text", "content": ""}), "events[0].rubric.content"),
        (outcome(rubric={"type": "url", "url": "https://example.com"}), "events[0].rubric"),
        (outcome(rubric={"type": "file", "file_id": "nope"}), "events[0].rubric.file_id"),
        (outcome(rubric={"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}), "events[0].rubric.file_id"),
        (outcome(max_iterations=0), "events[0].max_iterations"),
        (outcome(max_iterations=21), "events[0].max_iterations"),
        (outcome(outcome_id="outc_mine"), "events[0].outcome_id"),
        (outcome(grader="gpt"), "grader"),
    ],
)
def test_bad_outcomes_are_a_400_naming_the_field(client, session, event, field):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[event])
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert field in err["message"], err
    assert list(client.beta.sessions.events.list(session.id, types=["user.define_outcome"])) == []
    assert client.beta.sessions.retrieve(session.id).outcome_evaluations == []


def test_a_binary_rubric_file_is_refused(client, session):
    f = client.beta.files.upload(file=("rubric.bin", b"\xff\xfe\x00rubric", "application/octet-stream"))
    with pytest.raises(anthropic.BadRequestError) as ei:
        try:
            client.beta.sessions.events.send(session.id, events=[outcome(rubric={"type": "file", "file_id": f.id})])
        finally:
            client.beta.files.delete(f.id)
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert "events[0].rubric.file_id" in err["message"] and "text" in err["message"], err


def test_a_bad_outcome_at_create_creates_nothing(client, agent, environment):
    before = {s.id for s in client.beta.sessions.list(limit=100)}
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                    initial_events=[outcome(max_iterations=50)])
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert "initial_events[0].max_iterations" in err["message"], err
    assert {s.id for s in client.beta.sessions.list(limit=100)} == before
