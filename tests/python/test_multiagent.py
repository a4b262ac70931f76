"""An agent's `multiagent` coordinator roster, and client.beta.sessions.threads (the primary
thread, its events list and stream)."""

from __future__ import annotations

import anthropic
import pytest

from conftest import MODEL, assert_api_error, uniq
from test_stream import next_user_events, sdk_reader


def new_agent(client, **kw):
    return client.beta.agents.create(name=uniq("agent"), model=MODEL, **kw)


def roster(a) -> list[tuple[str, int]]:
    return [(m.id, m.version) for m in a.multiagent.agents]


# ---------------------------------------------------------------------------------------------
# the coordinator configuration
# ---------------------------------------------------------------------------------------------


def test_coordinator_roster_is_resolved_to_pinned_versions(client):
    a = new_agent(client)
    b = new_agent(client)
    b2 = client.beta.agents.update(b.id, version=b.version, system="version two")
    assert b2.version == 2
    coord = new_agent(
        client,
        multiagent={"type": "coordinator", "agents": [a.id, {"type": "agent", "id": b.id, "version": 1}, {"type": "self"}]},
    )
    assert coord.multiagent.type == "coordinator"
    # A bare id takes the latest version; `self` is the agent itself at the version written.
    assert roster(coord) == [(a.id, 1), (b.id, 1), (coord.id, 1)]
    assert all(m.type == "agent" for m in coord.multiagent.agents)
    got = client.beta.agents.retrieve(coord.id)
    assert roster(got) == roster(coord)

    # A change makes a new version, and `self` follows it; the other entries stay pinned.
    up = client.beta.agents.update(coord.id, version=1, description="now with a description")
    assert up.version == 2
    assert roster(up) == [(a.id, 1), (b.id, 1), (coord.id, 2)]
    # Sending the same roster again changes nothing: no new version.
    same = client.beta.agents.update(
        coord.id,
        version=2,
        multiagent={"type": "coordinator", "agents": [a.id, {"type": "agent", "id": b.id, "version": 1}, {"type": "self"}]},
    )
    assert same.version == 2, same
    # null clears it.
    cleared = client.beta.agents.update(coord.id, version=2, multiagent=None)
    assert cleared.version == 3 and cleared.multiagent is None
    # The old versions keep their roster.
    assert roster(client.beta.agents.retrieve(coord.id, version=1)) == [(a.id, 1), (b.id, 1), (coord.id, 1)]


def test_coordinator_refusals_name_the_problem(client):
    a = new_agent(client)
    archived = new_agent(client)
    client.beta.agents.archive(archived.id)
    coordinator = new_agent(client, multiagent={"type": "coordinator", "agents": [a.id]})
    many = [new_agent(client).id for _ in range(2)] * 11  # 22 entries
    cases = [
        ({"type": "multiagent_20261001"}, "`multiagent_20261001`"),
        ({"type": "coordinator", "agents": [{"type": "advisor", "model": MODEL}]}, "`advisor` roster entries"),
        ({"type": "coordinator", "agents": []}, "1 to 20 entries"),
        ({"type": "coordinator", "agents": many}, "1 to 20 entries"),
        ({"type": "coordinator", "agents": [a.id, {"type": "agent", "id": a.id}]}, "listed twice"),
        ({"type": "coordinator", "agents": [{"type": "self"}, {"type": "self"}]}, "`self` is listed twice"),
        ({"type": "coordinator", "agents": [archived.id]}, "is archived"),
        ({"type": "coordinator", "agents": [coordinator.id]}, "depth limit 1"),
        ({"type": "coordinator", "agents": ["agent_011CZkYpogX7uDKUyvBTophP"]}, "not found"),
        ({"type": "coordinator", "agents": [{"type": "agent", "id": a.id, "version": 9}]}, "has no version 9"),
        ({"type": "coordinator", "agents": [a.id], "max_threads": 3}, "multiagent.max_threads: unknown field"),
    ]
    for multiagent, want in cases:
        with pytest.raises(anthropic.BadRequestError) as ei:
            new_agent(client, multiagent=multiagent)
        err = assert_api_error(ei.value, 400, "invalid_request_error")
        assert want in err["message"], (multiagent, err)
    # Updates are held to the same rules, and the agent may name itself only as `self`.
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.update(a.id, version=1, multiagent={"type": "coordinator", "agents": [a.id]})
    assert 'name it as {"type": "self"}' in assert_api_error(ei.value, 400)["message"]
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.update(a.id, version=1, multiagent={"type": "multiagent_20261001"})
    assert "`multiagent_20261001`" in assert_api_error(ei.value, 400)["message"]
    assert client.beta.agents.retrieve(a.id).version == 1, "a refused update stored nothing"


def test_a_coordinator_session_starts_with_its_primary_thread_only(client, environment):
    a = new_agent(client)
    coord = new_agent(client, multiagent={"type": "coordinator", "agents": [a.id]})
    s = client.beta.sessions.create(agent=coord.id, environment_id=environment.id)
    threads = list(client.beta.sessions.threads.list(s.id))
    assert [t.id for t in threads] == ["sthr_" + s.id.removeprefix("sesn_")], threads
    assert threads[0].parent_thread_id is None


def test_a_coordinator_with_a_tool_named_like_the_delegation_tool_is_refused(client, environment):
    a = new_agent(client)
    tool = {"type": "custom", "name": "delegate_to_agent", "description": "mine", "input_schema": {"type": "object"}}
    coord = new_agent(client, tools=[tool], multiagent={"type": "coordinator", "agents": [a.id]})
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=coord.id, environment_id=environment.id)
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert coord.id in err["message"] and "`delegate_to_agent`" in err["message"], err


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------


def test_a_session_has_its_primary_thread(client, session):
    page = client.beta.sessions.threads.list(session.id)
    threads = list(page)
    assert len(threads) == 1, threads
    t = threads[0]
    assert t.type == "session_thread"
    assert t.id.startswith("sthr_"), t.id
    assert t.session_id == session.id
    assert t.parent_thread_id is None
    assert t.status == session.status == "idle"
    assert t.agent.id == session.agent.id and t.agent.version == session.agent.version
    assert t.agent.execution_identity.type == "service_account"
    assert t.archived_at is None
    assert client.beta.sessions.threads.retrieve(t.id, session_id=session.id).id == t.id
    # The status filter.
    assert [x.id for x in client.beta.sessions.threads.list(session.id, statuses=["idle", "running"])] == [t.id]
    assert list(client.beta.sessions.threads.list(session.id, statuses=["terminated"])) == []


def test_thread_routes_refuse_what_is_not_there(client, session, agent, environment):
    other = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    mine = list(client.beta.sessions.threads.list(session.id))[0].id
    theirs = list(client.beta.sessions.threads.list(other.id))[0].id
    assert mine != theirs
    for sid, tid in [(session.id, theirs), (session.id, "sthr_011CZkZAtmR3yMPDzynEDxu7"), (session.id, session.id)]:
        with pytest.raises(anthropic.NotFoundError) as ei:
            client.beta.sessions.threads.retrieve(tid, session_id=sid)
        assert_api_error(ei.value, 404, "not_found_error")
        with pytest.raises(anthropic.NotFoundError):
            client.beta.sessions.threads.events.list(tid, session_id=sid)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.list("sesn_011CZkZAtmR3yMPDzynEDxu7")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.threads.list(session.id, statuses=["sleeping"])
    assert "`sleeping`" in assert_api_error(ei.value, 400)["message"]
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.threads.archive(mine, session_id=session.id)
    assert "archived with its session" in assert_api_error(ei.value, 400)["message"]
    # An event addressed to a thread the session does not have.
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt", "session_thread_id": theirs}])
    assert f"no thread `{theirs}`" in assert_api_error(ei.value, 400)["message"]
    sent = client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt", "session_thread_id": mine}])
    assert sent.data[0].type == "user.interrupt"


def test_primary_thread_events_are_the_session_log(client, session):
    tid = list(client.beta.sessions.threads.list(session.id))[0].id
    msg = {"type": "user.message", "content": [{"type": "text", "text": "hello thread"}]}
    sent = client.beta.sessions.events.send(session.id, events=[msg, {"type": "user.interrupt"}]).data
    listed = list(client.beta.sessions.threads.events.list(tid, session_id=session.id))
    assert [e.id for e in listed] == [e.id for e in client.beta.sessions.events.list(session.id)]
    assert [e.id for e in sent] == [e.id for e in listed if e.type.startswith("user.")]
    # Pages walk the same log.
    first = client.beta.sessions.threads.events.list(tid, session_id=session.id, limit=1)
    assert len(first.data) == 1 and first.data[0].id == listed[0].id
    if len(listed) > 1:
        assert first.next_page


def test_primary_thread_stream_follows_the_session(client, session):
    tid = list(client.beta.sessions.threads.list(session.id))[0].id
    stream = client.beta.sessions.threads.events.stream(tid, session_id=session.id)
    try:
        q = sdk_reader(stream)
        msg = {"type": "user.message", "content": [{"type": "text", "text": "on the thread stream"}]}
        sent = client.beta.sessions.events.send(session.id, events=[msg, {"type": "user.interrupt"}]).data
        got = next_user_events(q, 2)
        assert [e.id for e in got] == [e.id for e in sent]
    finally:
        stream.close()
    with pytest.raises(anthropic.NotFoundError):
        with client.beta.sessions.threads.events.stream("sthr_011CZkZAtmR3yMPDzynEDxu7", session_id=session.id) as s:
            next(iter(s))
