"""Event deltas end to end, for one harness (BRIDLE_E2E_ENGINE): a stream connection that asks
with `event_deltas[]=agent.message` gets `event_start` / `event_delta` frames carrying the model's
text while the runtime produces it (from the runtime's own partial output: Claude Code's
`stream_event` text deltas, codex app-server's agent-message item deltas, the Agents SDK's raw
response events), then the buffered `agent.message` with the same id. A connection that did not
ask sees exactly the frames it saw before deltas existed; deltas are never stored."""

from __future__ import annotations

import json
import threading
import time

import httpx
from anthropic.lib.sessions import accumulate_managed_agents_event

from .lib import TURN_TIMEOUT, text_of, uniq

PREVIEW_TYPES = ("event_start", "event_delta")


class RawStream:
    """A raw SSE client of a session's event stream: every frame as (event, id, data), in order,
    read by a thread. No SDK: what the server writes is what is checked."""

    def __init__(self, stack, session_id: str, deltas: list[str]):
        self.frames: list[tuple[str, str | None, dict]] = []
        self.error: BaseException | None = None
        self.cv = threading.Condition()
        params = [("event_deltas[]", d) for d in deltas]
        headers = {"x-api-key": stack.client.api_key, "anthropic-beta": "managed-agents-2026-04-01",
                   "anthropic-version": "2023-06-01", "accept": "text/event-stream"}
        self.http = httpx.Client(base_url=stack.base_url, headers=headers,
                                 timeout=httpx.Timeout(10.0, read=TURN_TIMEOUT))
        self.cm = self.http.stream("GET", f"/v1/sessions/{session_id}/events/stream", params=params)
        self.resp = self.cm.__enter__()
        assert self.resp.status_code == 200, f"stream: {self.resp.status_code} {self.resp.read()!r}"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event, eid, data = None, None, []
        try:
            for line in self.resp.iter_lines():
                if line == "":
                    if event is not None and event != "ping":
                        with self.cv:
                            self.frames.append((event, eid, json.loads("\n".join(data))))
                            self.cv.notify_all()
                    event, eid, data = None, None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    eid = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            with self.cv:
                self.error = e
                self.cv.notify_all()

    def until_idle(self) -> list[tuple[str, str | None, dict]]:
        """The frames up to the first `session.status_idle` after an `agent.message` (the turn's
        end)."""
        deadline = time.monotonic() + TURN_TIMEOUT
        with self.cv:
            while True:
                said = False
                for i, (event, _, _) in enumerate(self.frames):
                    said = said or event == "agent.message"
                    if said and event == "session.status_idle":
                        return list(self.frames[:i + 1])
                if self.error is not None:
                    raise AssertionError(f"raw stream failed: {self.error!r}; frames: {self.frames}")
                left = deadline - time.monotonic()
                assert left > 0, f"raw stream: no session.status_idle in {TURN_TIMEOUT}s; frames: {self.frames}"
                self.cv.wait(min(left, 1.0))

    def close(self) -> None:
        try:
            self.cm.__exit__(None, None, None)
        finally:
            self.http.close()


def stored(frames):
    """The stored-event frames: (type, seq, event id)."""
    return [(e, i, d.get("id")) for e, i, d in frames if e not in PREVIEW_TYPES]


def previews_of(frames, event_id: str):
    return [(e, d) for e, _, d in frames if e in PREVIEW_TYPES
            and (d.get("event_id") == event_id or (d.get("event") or {}).get("id") == event_id)]


def test_deltas_stream_the_message_text_to_clients_that_ask(stack, model, sessions):
    reply = f"Streaming reply {uniq('w')} arrives in several pieces, word by word."
    # Several chunks with a pause between them: the runtime sees (and previews) them apart.
    stack.fake.set_scenario(model, {"turns": [{"text": reply, "chunks": 6, "chunk_delay_ms": 40}]})
    s = stack.session(model)  # its SDK stream did not ask for deltas
    sessions.append(s)
    asked = RawStream(stack, s.id, ["agent.message"])
    plain = RawStream(stack, s.id, [])
    sdk = stack.client.beta.sessions.events.stream(s.id, event_deltas=["agent.message"], timeout=TURN_TIMEOUT)
    folded: list = []
    failed: list[BaseException] = []

    def fold() -> None:
        acc = None
        try:
            for ev in sdk:
                acc = accumulate_managed_agents_event(acc, ev)
                folded.append((ev.type, acc))
                if ev.type == "session.status_idle" and any(k == "agent.message" for k, _ in folded):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            failed.append(e)

    reader = threading.Thread(target=fold, daemon=True)
    reader.start()
    try:
        evs = s.turn("Stream something.")
        got = asked.until_idle()
        base = plain.until_idle()
        reader.join(TURN_TIMEOUT)
    finally:
        asked.close()
        plain.close()
        sdk.close()

    msgs = [e for e in evs if e["type"] == "agent.message"]
    s.check(len(msgs) == 1 and text_of(msgs[0]) == reply, f"one agent.message with the reply: {msgs}")
    msg = msgs[0]

    # The opted-in connection: event_start, then deltas, then the buffered message, same id.
    frames = previews_of(got, msg["id"])
    s.check(bool(frames) and frames[0][0] == "event_start",
            f"an event_start opens the preview of {msg['id']}: {frames} (all frames: {got})")
    s.check(frames[0][1]["event"] == {"type": "agent.message", "id": msg["id"]}, f"event_start: {frames[0]}")
    deltas = [d for e, d in frames if e == "event_delta"]
    s.check(len(deltas) >= 2, f"the text arrives in several event_delta frames, got {len(deltas)}: {frames}")
    for d in deltas:
        s.check(d["delta"]["type"] == "content_delta" and d["delta"]["index"] == 0
                and d["delta"]["content"]["type"] == "text", f"an event_delta's shape: {d}")
    text = "".join(d["delta"]["content"]["text"] for d in deltas)
    s.check(text == reply, f"the deltas concatenate to {text!r}, the agent.message says {reply!r}")
    kinds = [(e, d.get("id") or d.get("event_id") or (d.get("event") or {}).get("id")) for e, _, d in got]
    last_delta = max(i for i, (e, x) in enumerate(kinds) if e == "event_delta" and x == msg["id"])
    buffered = kinds.index(("agent.message", msg["id"]))
    s.check(last_delta < buffered, f"the deltas precede the buffered agent.message: {kinds}")
    s.check(all(i is None for e, i, _ in got if e in PREVIEW_TYPES), "preview frames carry no `id:` (seq)")

    # The connection that did not ask: no preview frames, and the same stored frames.
    s.check(not [f for f in base if f[0] in PREVIEW_TYPES], f"no preview frames without event_deltas: {base}")
    s.check(stored(got) == stored(base), f"the stored frames differ:\n{stored(got)}\n{stored(base)}")
    s.check(not [e for e in s.snapshot() if e.get("type") in PREVIEW_TYPES],
            "the SDK stream without event_deltas saw preview frames")

    # Deltas are never stored.
    s.check(not [e for e in s.all_events() if e.get("type") in PREVIEW_TYPES], "a preview frame was stored")

    # The SDK's accumulator rebuilds the message from the deltas alone, before the buffered one.
    s.check(not failed, f"the SDK stream with event_deltas, or its accumulator, failed: {failed!r}")
    s.check(bool(folded), "the SDK stream with event_deltas read nothing")
    before = [acc for kind, acc in folded if kind == "event_delta"]
    s.check(bool(before), f"the SDK stream saw no event_delta: {[k for k, _ in folded]}")
    s.check(before[-1].id == msg["id"] and text_of(before[-1].to_dict(mode="json")) == reply,
            f"the accumulator's snapshot before the buffered message: {before[-1]}")
    final = [acc for kind, acc in folded if kind == "agent.message"]
    s.check(bool(final) and final[-1].id == msg["id"] and text_of(final[-1].to_dict(mode="json")) == reply,
            f"the accumulator ends with the buffered message: {final}")


def test_deltas_only_of_the_types_asked_for(stack, model, engine, sessions):
    reply = f"Thinking first {uniq('w')}, then this answer."
    stack.fake.set_scenario(model, {"turns": [{"text": reply, "thinking": "Let me think.", "chunks": 4}]})
    s = stack.session(model)
    sessions.append(s)
    thinking = RawStream(stack, s.id, ["agent.thinking"])
    try:
        evs = s.turn("Think, then answer.")
        got = thinking.until_idle()
    finally:
        thinking.close()
    starts = [d for e, _, d in got if e == "event_start"]
    s.check(not [d for e, _, d in got if e == "event_delta"], f"agent.thinking previews are start-only: {got}")
    s.check(all(d["event"]["type"] == "agent.thinking" for d in starts),
            f"a connection asking for agent.thinking gets no agent.message preview: {starts}")
    thoughts = [e for e in evs if e["type"] == "agent.thinking"]
    if engine == "claude":
        # Claude Code streams its thinking block: its preview opens before the buffered event.
        s.check(len(thoughts) == 1 and len(starts) == 1 and starts[0]["event"]["id"] == thoughts[0]["id"],
                f"the agent.thinking preview carries the buffered event's id: {starts} / {thoughts}")
