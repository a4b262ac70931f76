"""GET /v1/sessions/{id}/events/stream: the SDK's stream, raw SSE framing, heartbeats and
Last-Event-ID resumption."""

from __future__ import annotations

import json
import os
import queue
import threading
import time

import anthropic
import httpx
import pytest

from conftest import API_KEY, BASE_URL, BETA, assert_raw_error

# The runner starts the server with BRIDLE_SSE_HEARTBEAT_SECS and tells us the value; without
# it, allow for the server's default (15 s) with margin.
HEARTBEAT_WAIT_S = 3 * float(os.environ.get("BRIDLE_HEARTBEAT_SECS", "15")) + 5


def msg(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def send(client, sid, *events):
    return client.beta.sessions.events.send(sid, events=list(events)).data


# ---------------------------------------------------------------------------------------------
# the SDK's own stream
# ---------------------------------------------------------------------------------------------


def sdk_reader(stream) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def run():
        try:
            for ev in stream:
                q.put(ev)
            q.put(StopIteration())
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            q.put(e)

    threading.Thread(target=run, daemon=True).start()
    return q


def next_user_events(q: queue.Queue, n: int, timeout: float = 15.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"stream delivered only {len(got)} of {n} events in {timeout}s: {got}")
        try:
            ev = q.get(timeout=left)
        except queue.Empty:
            continue
        if isinstance(ev, StopIteration):
            raise AssertionError(f"stream ended after {len(got)} of {n} events")
        if isinstance(ev, Exception):
            raise ev
        if ev.type.startswith("user."):
            got.append(ev)
    return got


def test_sdk_stream_delivers_events_sent_after_it_opens(client, session):
    send(client, session.id, msg("before the stream opened"))
    stream = client.beta.sessions.events.stream(session.id)
    try:
        q = sdk_reader(stream)
        sent = send(client, session.id, msg("a"), {"type": "user.interrupt"})
        sent += send(client, session.id, msg("b"))
        got = next_user_events(q, 3)
        assert [e.id for e in got] == [e.id for e in sent], "in order, and nothing from before the open"
        assert [e.type for e in got] == ["user.message", "user.interrupt", "user.message"]
        assert got[0].content[0].text == "a"
        assert got[2].content[0].text == "b"
    finally:
        stream.close()


def test_two_sdk_streams_both_receive(client, session):
    s1 = client.beta.sessions.events.stream(session.id)
    s2 = client.beta.sessions.events.stream(session.id)
    try:
        q1, q2 = sdk_reader(s1), sdk_reader(s2)
        sent = [e.id for e in send(client, session.id, msg("x"), msg("y"))]
        assert [e.id for e in next_user_events(q1, 2)] == sent
        assert [e.id for e in next_user_events(q2, 2)] == sent
    finally:
        s1.close()
        s2.close()


def test_sdk_stream_unknown_session_is_404(client):
    with pytest.raises(anthropic.NotFoundError):
        with client.beta.sessions.events.stream("sesn_011CZkZAtmR3yMPDzynEDxu7") as s:
            for _ in s:
                break


# ---------------------------------------------------------------------------------------------
# raw SSE
# ---------------------------------------------------------------------------------------------


class RawSSE:
    """Reads an SSE response on a thread and hands complete frames to the test.

    A frame is a dict with the raw field values: {"event", "id", "data", "lines"}.
    """

    def __init__(self, sid: str, last_event_id: str | None = None):
        headers = {"x-api-key": API_KEY, "anthropic-beta": BETA, "accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.client = httpx.Client(base_url=BASE_URL, timeout=httpx.Timeout(10.0, read=120.0))
        self.cm = self.client.stream("GET", f"/v1/sessions/{sid}/events/stream", headers=headers)
        self.resp = self.cm.__enter__()
        self.q: queue.Queue = queue.Queue()
        self.frames_seen: list[tuple[int, str, str]] = []  # (seq, type, event id), any type
        if self.resp.status_code == 200:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        frame: dict = {"event": None, "id": None, "data": [], "lines": []}
        try:
            for line in self.resp.iter_lines():
                if line == "":
                    if frame["lines"]:
                        frame["data"] = "\n".join(frame["data"])
                        self.q.put(frame)
                    frame = {"event": None, "id": None, "data": [], "lines": []}
                    continue
                frame["lines"].append(line)
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "event":
                    frame["event"] = value
                elif field == "data":
                    frame["data"].append(value)
                elif field == "id":
                    frame["id"] = value
            self.q.put(StopIteration())
        except Exception as e:  # noqa: BLE001
            self.q.put(e)

    def next_frame(self, timeout: float, skip_pings: bool = True, user_only: bool = True) -> dict | None:
        """The next frame (None if nothing arrived within `timeout`). Every event frame is
        checked for framing; with `user_only`, frames of non-user events (which a session
        runner may emit, e.g. session.status_running) are checked and then passed over."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                f = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if isinstance(f, StopIteration):
                raise AssertionError("the SSE stream ended unexpectedly")
            if isinstance(f, Exception):
                raise f
            if f["event"] == "ping":
                if skip_pings:
                    continue
                return f
            data = check_event_frame(f)
            self.frames_seen.append((int(f["id"]), data["type"], data["id"]))
            if user_only and not data["type"].startswith("user."):
                continue
            return f

    def events(self, n: int, timeout: float = 15.0) -> list[dict]:
        out = []
        for _ in range(n):
            f = self.next_frame(timeout)
            assert f is not None, f"expected {n} user event frames, got {len(out)}: {out}"
            out.append(f)
        return out

    def close(self):
        try:
            self.resp.close()
            self.cm.__exit__(None, None, None)
        except Exception:  # noqa: BLE001
            pass
        self.client.close()


def check_event_frame(f: dict) -> dict:
    assert f["event"], f"frame without an `event:` line (the SDKs skip those): {f['lines']}"
    data = json.loads(f["data"])
    assert data["type"] == f["event"], f"`event:` {f['event']!r} differs from data.type {data['type']!r}"
    assert data["id"].startswith("sevt_")
    assert f["id"] is not None and f["id"].strip().isdigit(), f"frame needs a numeric `id:` line: {f['lines']}"
    return data


def test_raw_framing(client, session):
    sse = RawSSE(session.id)
    try:
        assert sse.resp.status_code == 200, sse.resp.read()
        assert sse.resp.headers["content-type"].startswith("text/event-stream")
        sent = send(client, session.id, msg("one"), msg("two"), {"type": "user.interrupt"})
        frames = sse.events(3)
        datas = [check_event_frame(f) for f in frames]
        assert [d["id"] for d in datas] == [e.id for e in sent]
        seqs = [int(f["id"]) for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3, f"ids must increase: {seqs}"
        assert datas[0]["content"] == [{"type": "text", "text": "one"}]
    finally:
        sse.close()


def test_heartbeat_ping(session):
    sse = RawSSE(session.id)
    try:
        assert sse.resp.status_code == 200
        f = sse.next_frame(HEARTBEAT_WAIT_S, skip_pings=False, user_only=False)
        assert f is not None, f"no heartbeat within {HEARTBEAT_WAIT_S}s on an idle stream"
        assert f["event"] == "ping", f"first frame on an idle stream should be a ping: {f}"
    finally:
        sse.close()


def test_resume_with_last_event_id(client, session):
    sse = RawSSE(session.id)
    try:
        batch1 = send(client, session.id, msg("r1"), msg("r2"), msg("r3"))
        frames = sse.events(2)
        seen = [check_event_frame(f)["id"] for f in frames]
        assert seen == [batch1[0].id, batch1[1].id]
        last_seq = frames[-1]["id"]
    finally:
        sse.close()  # dropped mid-way: r3 was delivered to nobody

    batch2 = send(client, session.id, msg("r4"), {"type": "user.interrupt"})
    missed = [batch1[2].id] + [e.id for e in batch2]

    resumed = RawSSE(session.id, last_event_id=last_seq)
    try:
        assert resumed.resp.status_code == 200
        frames = resumed.events(len(missed))
        got = [check_event_frame(f)["id"] for f in frames]
        user_got = [i for i in got if i in set(missed) | set(seen)]
        assert user_got == missed, f"replay after Last-Event-ID {last_seq}: {got}, wanted {missed}"
        seqs = [seq for seq, _, _ in resumed.frames_seen]
        assert all(s > int(last_seq) for s in seqs), f"replayed at or before {last_seq}: {resumed.frames_seen}"
        # ... then it follows live, with no duplicates.
        live = send(client, session.id, msg("r5"))
        f = resumed.next_frame(15.0)
        assert f is not None and check_event_frame(f)["id"] == live[0].id
        extra = resumed.next_frame(1.5)
        assert extra is None, f"unexpected extra frame (duplicate?): {extra}"
        seen_ids = [i for _, _, i in resumed.frames_seen]
        assert len(seen_ids) == len(set(seen_ids)), f"duplicate frames: {resumed.frames_seen}"
        seqs = [seq for seq, _, _ in resumed.frames_seen]
        assert seqs == sorted(set(seqs)), f"frame ids must strictly increase: {seqs}"
    finally:
        resumed.close()


def test_resume_from_first_event_replays_the_rest(client, session):
    sse = RawSSE(session.id)
    try:
        sent = send(client, session.id, msg("p1"), msg("p2"), msg("p3"))
        first = sse.events(1)[0]
    finally:
        sse.close()
    again = RawSSE(session.id, last_event_id=first["id"])
    try:
        got = [check_event_frame(f)["id"] for f in again.events(2)]
        assert got == [sent[1].id, sent[2].id]
        assert again.next_frame(1.0) is None
    finally:
        again.close()


def test_raw_stream_errors(session):
    with httpx.Client(base_url=BASE_URL, timeout=10.0) as c:
        r = c.get("/v1/sessions/sesn_011CZkZAtmR3yMPDzynEDxu7/events/stream",
                  headers={"x-api-key": API_KEY, "anthropic-beta": BETA})
        assert_raw_error(r, 404, "not_found_error")
        r = c.get(f"/v1/sessions/{session.id}/events/stream", headers={"anthropic-beta": BETA})
        assert_raw_error(r, 401, "authentication_error")
        r = c.get(f"/v1/sessions/{session.id}/events/stream", headers={"x-api-key": API_KEY})
        assert_raw_error(r, 400, "invalid_request_error")
