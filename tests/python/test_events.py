"""client.beta.sessions.events: send and list."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import anthropic
import pytest

from conftest import assert_api_error, parse_ts


# Later, a runner may append its own events (session.status_*, session.error, ...) after a
# user.message; assertions about exact sequences therefore filter to the user events.
USER = ["user.message", "user.interrupt", "user.tool_confirmation", "user.custom_tool_result"]


def user_events(client, sid, **kw):
    return client.beta.sessions.events.list(sid, types=USER, **kw)


def msg(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def send(client, sid, *events):
    return client.beta.sessions.events.send(sid, events=list(events)).data


def test_send_user_message_is_echoed_with_id(client, session):
    raw = client.beta.sessions.events.with_raw_response.send(session.id, events=[msg("hello")])
    assert raw.http_response.status_code == 200
    body = raw.http_response.json()
    assert set(body) >= {"data"}, body
    data = raw.parse().data
    assert len(data) == 1
    e = data[0]
    assert e.id.startswith("sevt_"), e.id
    assert e.type == "user.message"
    assert [(c.type, c.text) for c in e.content] == [("text", "hello")]
    if e.processed_at is not None:
        parse_ts(e.processed_at)


def test_queued_message_is_echoed_with_null_processed_at(client, session):
    # This suite's server runs no sessions, so no turn ever starts: the first message finds
    # the session free and is processed on receipt; later ones wait behind it, queued, with
    # processed_at null (echo and log alike). Interrupts are processed on receipt.
    first, second, interrupt, third = send(
        client, session.id, msg("first"), msg("second"), {"type": "user.interrupt"}, msg("third")
    )
    assert isinstance(first.processed_at, datetime)
    assert second.processed_at is None and third.processed_at is None
    assert isinstance(interrupt.processed_at, datetime)
    (later,) = send(client, session.id, msg("later"))
    assert later.processed_at is None
    listed = {e.id: e.processed_at for e in user_events(client, session.id)}
    assert listed == {
        first.id: first.processed_at,
        second.id: None,
        interrupt.id: interrupt.processed_at,
        third.id: None,
        later.id: None,
    }
    # The wire JSON carries an explicit null (the field is required, nullable).
    raw = client.beta.sessions.events.with_raw_response.list(session.id, types=["user.message"])
    assert [e["processed_at"] is None for e in raw.http_response.json()["data"]] == [False, True, True, True]


def test_send_message_and_interrupt_batch(client, session):
    events = [msg("first"), {"type": "user.interrupt"}, msg("second")]
    data = send(client, session.id, *events)
    assert [e.type for e in data] == [e["type"] for e in events]
    ids = [e.id for e in data]
    assert all(i.startswith("sevt_") for i in ids) and len(set(ids)) == len(ids)
    assert data[2].content[0].text == "second"
    assert [e.id for e in user_events(client, session.id)] == ids


# user.tool_confirmation / user.custom_tool_result answer an agent.tool_use /
# agent.custom_tool_use event. The server checks the reference: until a runner can produce
# such events (session runner issue, with the fake model server), only the refusals can be
# driven through the API. The acceptance path is covered once agent events exist.
ANSWERS = [
    ("tool_use_id", {"type": "user.tool_confirmation", "result": "allow"}),
    ("tool_use_id", {"type": "user.tool_confirmation", "result": "deny", "deny_message": "no"}),
    ("custom_tool_use_id", {"type": "user.custom_tool_result", "content": [{"type": "text", "text": "42"}],
                            "is_error": False}),
]


@pytest.mark.parametrize("field,event", ANSWERS)
def test_answer_to_unknown_event_rejected(client, session, field, event):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, {**event, field: "sevt_011CZkZAtmR3yMPDzynEDxu7"})
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert "sevt_011CZkZAtmR3yMPDzynEDxu7" in err["message"], err


@pytest.mark.parametrize("field,event", ANSWERS)
def test_answer_to_a_non_tool_event_rejected(client, session, field, event):
    earlier = send(client, session.id, msg("not a tool use"))[0].id
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, {**event, field: earlier})
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert earlier in err["message"] and "tool_use" in err["message"], err
    assert [e.id for e in user_events(client, session.id)] == [earlier]


def test_message_content_blocks_round_trip(client, session):
    content = [
        {"type": "text", "text": "look at this"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "source": {"type": "text", "data": "plain doc", "media_type": "text/plain"},
         "title": "notes"},
    ]
    e = send(client, session.id, {"type": "user.message", "content": content})[0]
    assert [c.type for c in e.content] == ["text", "image", "document"]
    assert e.content[1].source.url == "https://example.com/cat.png"
    assert e.content[2].source.data == "plain doc"
    listed = list(user_events(client, session.id))
    assert listed[-1].id == e.id
    assert listed[-1].model_dump() == e.model_dump() or listed[-1].content == e.content


def test_unstored_api_types_filter_to_nothing(client, session):
    # Filtering on an API event type Bridle never stores is valid and matches nothing; an
    # unknown type is a 400 (see tests/api_bad_input.rs). Outcomes: tests/python/test_outcomes.py.
    send(client, session.id, msg("hello"))
    assert list(client.beta.sessions.events.list(session.id, types=["session.thread_created"])) == []


def test_types_filter_takes_every_type_the_sdk_defines(client, session):
    # The SDK's own list of session event types: each is a valid filter (those Bridle never
    # stores match nothing); a name outside it is a 400.
    from typing import get_args

    from anthropic.types.beta.sessions import BetaManagedAgentsSessionEventType

    every = list(get_args(BetaManagedAgentsSessionEventType))
    assert "session.usage" in every and "workflow_run.created" in every, every
    send(client, session.id, msg("hello"))
    got = list(client.beta.sessions.events.list(session.id, types=every))
    assert [e.type for e in got][:1] == ["user.message"], got
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.list(session.id, types=["session.thread_status_created"])
    assert_api_error(ei.value, 400, "invalid_request_error")


def test_batch_with_a_bad_event_stores_nothing(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, msg("ok"), {"type": "user.nonsense"})
    assert_api_error(ei.value, 400, "invalid_request_error")
    assert list(user_events(client, session.id)) == []


def test_unknown_event_type_rejected(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, {"type": "agent.message", "content": [{"type": "text", "text": "spoof"}]})
    assert_api_error(ei.value, 400, "invalid_request_error")


def test_list_order_types_and_pagination(client, session):
    sent = []
    for i in range(5):
        sent += send(client, session.id, msg(f"m{i}"))
        if i == 2:
            sent += send(client, session.id, {"type": "user.interrupt"})
    ids = [e.id for e in sent]

    asc = user_events(client, session.id)
    assert [e.id for e in asc.data] == ids, "default order is chronological"
    desc = user_events(client, session.id, order="desc")
    assert [e.id for e in desc.data] == list(reversed(ids))
    # Unfiltered: our events appear in the same relative order.
    unfiltered = [e.id for e in client.beta.sessions.events.list(session.id) if e.id in ids]
    assert unfiltered == ids

    only = client.beta.sessions.events.list(session.id, types=["user.interrupt"])
    assert [e.type for e in only.data] == ["user.interrupt"]
    both = client.beta.sessions.events.list(session.id, types=["user.interrupt", "user.message"])
    assert len(both.data) == 6
    assert list(client.beta.sessions.events.list(session.id, types=["agent.message"])) == []

    first = user_events(client, session.id, limit=2)
    assert [e.id for e in first.data] == ids[:2]
    assert first.next_page
    second = user_events(client, session.id, limit=2, page=first.next_page)
    assert [e.id for e in second.data] == ids[2:4]
    assert [e.id for e in user_events(client, session.id, limit=2)] == ids
    assert [e.id for e in user_events(client, session.id, limit=4, order="desc")] == list(reversed(ids))

    # Every listed event carries an id, type and processed_at timestamp.
    raw = client.beta.sessions.events.with_raw_response.list(session.id)
    for e in raw.http_response.json()["data"]:
        assert e["id"].startswith("sevt_") and e["type"]
        assert "processed_at" in e


def test_list_created_at_filters(client, session):
    before = send(client, session.id, msg("early-1"), msg("early-2"))
    time.sleep(1.1)
    cut = datetime.now(timezone.utc)
    time.sleep(1.1)
    after = send(client, session.id, msg("late-1"))
    early_ids = [e.id for e in before]
    late_ids = [e.id for e in after]

    def ids(**kw):
        return [e.id for e in user_events(client, session.id, **kw)]

    assert ids(created_at_gte=cut) == late_ids
    assert ids(created_at_gt=cut) == late_ids
    assert ids(created_at_lt=cut) == early_ids
    assert ids(created_at_lte=cut) == early_ids
    assert ids(created_at_gte=cut, order="desc") == list(reversed(late_ids))
    # As RFC 3339 strings too, e.g. "2026-01-01T00:00:00Z".
    stamp = cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ids(created_at_gte=stamp) == late_ids


def test_events_of_unknown_session(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.events.list("sesn_011CZkZAtmR3yMPDzynEDxu7")
    assert_api_error(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as ei:
        send(client, "sesn_011CZkZAtmR3yMPDzynEDxu7", msg("x"))
    assert_api_error(ei.value, 404, "not_found_error")


def test_events_are_per_session(client, agent, environment):
    s1 = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    s2 = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    a = send(client, s1.id, msg("one"))
    b = send(client, s2.id, msg("two"))
    assert [e.id for e in user_events(client, s1.id)] == [a[0].id]
    assert [e.id for e in user_events(client, s2.id)] == [b[0].id]
