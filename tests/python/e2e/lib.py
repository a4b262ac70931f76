"""Helpers for the end-to-end session suite: the fake model server's control API, session
setup through the official SDK, and a live event stream with bounded waits.

Every failure message carries the session's events so far and the tail of the server log."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx

ROLE = "sandbox0.managed_agents.role"
ENGINE = "sandbox0.managed_agents.engine"
BASE_URL_KEY = "sandbox0.managed_agents.llm_base_url"

# Waits. A turn against the fake model takes a few seconds; the bounds are generous for two
# cores shared by several runtimes, and each wait names what it waited for when it fails.
TURN_TIMEOUT = float(os.environ.get("BRIDLE_E2E_TURN_TIMEOUT", "90"))


def uniq(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# Colour codes, raw or (in runtime stderr relayed through the log) escaped as text.
ANSI = re.compile(r"(\x1b|\\x1b)\[[0-9;]*m")


def log_tail(path: str | None, lines: int = 80, only: str | None = None) -> str:
    """The server log's last `lines` lines (colour codes stripped); with `only`, just the lines
    mentioning it, and runtime stderr lines, warnings and errors that name no session."""
    if not path:
        return "(no server log path given)"
    try:
        text = ANSI.sub("", Path(path).read_text(errors="replace"))
    except OSError as e:
        return f"(cannot read server log {path}: {e})"
    rows = text.splitlines()
    if only:
        rows = [r for r in rows if only in r
                or (("runtime_stderr" in r or " WARN " in r or " ERROR " in r) and "sesn_" not in r)]
    return "\n".join(r[:600] for r in rows[-lines:])


class Fake:
    """The fake model server's control API (scenarios by model name, the request log)."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self.openai_base_url = self.base_url + "/v1"
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, timeout=30.0)

    def set_scenario(self, model: str, scenario: dict) -> None:
        r = self.http.post("/_fake/scenario", json={"model": model, **scenario})
        assert r.status_code < 300, f"fake: cannot set scenario {model}: {r.status_code} {r.text}"

    def requests(self, model: str) -> list[dict]:
        """Model calls (POST /v1/messages, /v1/responses) recorded for `model`."""
        r = self.http.get("/_fake/requests", params={"model": model})
        assert r.status_code == 200, f"fake: cannot read requests: {r.status_code} {r.text}"
        out = []
        for req in r.json():
            # Gateway-shaped base URLs put the API under a prefix (`/gw/<prefix>/v1/...`).
            path = req["path"].rstrip("/")
            if req["method"] == "POST" and path.endswith(("/v1/messages", "/v1/responses", "/responses")):
                out.append(req)
        return out


class Stack:
    """One `bridle serve` and what a test needs to drive sessions on it."""

    def __init__(self, base_url: str, api_key: str, log_path: str | None, sandbox_dir: str | None,
                 fake: Fake, engine: str):
        self.base_url = base_url
        self.api_key = api_key
        self.log_path = log_path
        self.sandbox_dir = sandbox_dir
        self.fake = fake
        self.engine = engine
        self.client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=60.0)
        self._env_id: str | None = None

    def environment_id(self) -> str:
        if self._env_id is None:
            self._env_id = self.client.beta.environments.create(name=uniq("env")).id
        return self._env_id

    def llm_base_url(self, engine: str) -> str:
        return self.fake.base_url if engine == "claude" else self.fake.openai_base_url

    def llm_vault(self, engine: str | None = None, token: str | None = None) -> str:
        engine = engine or self.engine
        v = self.client.beta.vaults.create(
            display_name=uniq("llm"),
            metadata={ROLE: "llm", ENGINE: engine, BASE_URL_KEY: self.llm_base_url(engine)},
        )
        self.client.beta.vaults.credentials.create(
            v.id, display_name="model key",
            auth={"type": "static_bearer", "token": token or self.fake.token},
        )
        return v.id

    def session(self, model: str, tools: list[dict] | None = None, vault: bool = True,
                engine: str | None = None, agent_extra: dict | None = None,
                environment_id: str | None = None, **create: Any) -> "Live":
        agent = self.client.beta.agents.create(
            name=uniq("agent"), model=model,
            tools=tools if tools is not None else [{"type": "agent_toolset_20260401"}],
            **(agent_extra or {}),
        )
        vault_ids = [self.llm_vault(engine)] if vault else []
        s = self.client.beta.sessions.create(agent=agent.id, environment_id=environment_id or self.environment_id(),
                                             vault_ids=vault_ids, **create)
        return Live(self, s.id, model)

    def workspace(self, session_id: str) -> Path:
        """The session's workspace on the host: with the disk quota on (the driver keeps its
        images in `disks/`), inside the session's volume, mounted while its sandbox runs; else
        (or for a workspace older than the quota) the plain directory."""
        assert self.sandbox_dir, "no sandbox dir given to this suite"
        root = Path(self.sandbox_dir)
        plain = root / "workspaces" / session_id
        if plain.is_dir() or not (root / "disks").is_dir():
            return plain
        return root / "volumes" / session_id / "workspace"


def describe(ev: dict) -> str:
    """One line per event for failure messages."""
    t = ev.get("type", "?")
    extra = ""
    if t == "session.status_idle":
        extra = json.dumps(ev.get("stop_reason"))
    elif t == "session.error":
        extra = json.dumps(ev.get("error"))[:300]
    elif t in ("agent.message", "user.message"):
        extra = repr("".join(b.get("text", "") for b in ev.get("content") or [])[:120])
    elif t in ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use"):
        extra = f"{ev.get('name')} {json.dumps(ev.get('input'))[:150]} perm={ev.get('evaluated_permission')}"
    elif t == "agent.tool_result":
        extra = f"is_error={ev.get('is_error')} {json.dumps(ev.get('content'))[:150]}"
    elif t == "user.tool_confirmation":
        extra = f"{ev.get('tool_use_id')} {ev.get('result')}"
    elif t == "user.custom_tool_result":
        extra = f"{ev.get('custom_tool_use_id')} is_error={ev.get('is_error')} {json.dumps(ev.get('content'))[:150]}"
    return f"  {ev.get('id', '?')} {t} {extra}".rstrip()


class Live:
    """A session with its SDK event stream open. Events are collected by a reader thread."""

    def __init__(self, stack: Stack, session_id: str, model: str):
        self.stack = stack
        self.client = stack.client
        self.id = session_id
        self.model = model
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self.cv = threading.Condition()
        self.stream = None
        self.open_stream()

    # -- the stream -----------------------------------------------------------------------------

    def open_stream(self) -> None:
        """Open `sessions.events.stream` (it returns once the server answered) and read it."""
        stream = self.client.beta.sessions.events.stream(self.id, timeout=120.0)
        self.stream = stream

        def run() -> None:
            try:
                for ev in stream:
                    d = ev.to_dict(mode="json")
                    with self.cv:
                        self.events.append(d)
                        self.cv.notify_all()
                with self.cv:
                    self.error = EOFError("the event stream ended")
                    self.cv.notify_all()
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                with self.cv:
                    if self.stream is stream:
                        self.error = e
                    self.cv.notify_all()

        threading.Thread(target=run, daemon=True, name=f"stream-{self.id}").start()

    def close(self) -> None:
        s, self.stream = self.stream, None
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass

    def mark(self) -> int:
        with self.cv:
            return len(self.events)

    # -- sending -------------------------------------------------------------------------------

    def send(self, *events: dict) -> list:
        return self.client.beta.sessions.events.send(self.id, events=list(events)).data

    def message(self, text: str) -> int:
        """Send a user.message; returns the stream index to look for its results from."""
        start = self.mark()
        self.send({"type": "user.message", "content": [{"type": "text", "text": text}]})
        return start

    # -- waiting -------------------------------------------------------------------------------

    def fail(self, what: str) -> AssertionError:
        with self.cv:
            evs = list(self.events)
        lines = "\n".join(describe(e) for e in evs) or "  (none)"
        return AssertionError(
            f"{what}\nsession {self.id} (engine {self.stack.engine}, model {self.model}); "
            f"events seen on the stream:\n{lines}\n--- server log (this session, warnings, errors) ---\n"
            f"{log_tail(self.stack.log_path, 60, self.id)}"
        )

    def wait_for(self, pred: Callable[[dict], bool], what: str, start: int = 0,
                 timeout: float = TURN_TIMEOUT) -> tuple[int, dict]:
        deadline = time.monotonic() + timeout
        i = start
        with self.cv:
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    if pred(ev):
                        return i, ev
                    if ev.get("type") == "session.status_terminated" or is_idle("retries_exhausted")(ev):
                        raise self.fail(f"the turn failed ({ev.get('type')}) while waiting for {what}")
                    i += 1
                if self.error is not None:
                    raise self.fail(f"stream failed while waiting for {what}: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.fail(f"timed out after {timeout:.0f}s waiting for {what}")
                self.cv.wait(min(left, 1.0))

    def wait_type(self, kind: str, start: int = 0, timeout: float = TURN_TIMEOUT) -> tuple[int, dict]:
        return self.wait_for(lambda e: e.get("type") == kind, kind, start, timeout)

    def wait_idle(self, start: int, stop: str | None = None, timeout: float = TURN_TIMEOUT) -> tuple[int, dict]:
        """The first `session.status_idle` (or `status_terminated`) from `start`. With `stop`,
        it must have that stop reason."""
        i, ev = self.wait_for(
            lambda e: e.get("type") in ("session.status_idle", "session.status_terminated"),
            "session.status_idle" + (f" {{{stop}}}" if stop else ""), start, timeout)
        if stop is not None:
            got = (ev.get("stop_reason") or {}).get("type") if ev["type"] == "session.status_idle" else ev["type"]
            if got != stop:
                raise self.fail(f"the turn ended with {got!r}, expected {stop!r}: {ev}")
        return i, ev

    def turn(self, text: str, stop: str = "end_turn", timeout: float = TURN_TIMEOUT) -> list[dict]:
        """Send a message and wait for the turn to end with `stop`; returns the turn's events
        (from the message's echo to the idle status, inclusive)."""
        start = self.message(text)
        end, _ = self.wait_idle(start, stop, timeout)
        with self.cv:
            return list(self.events[start:end + 1])

    def snapshot(self, start: int = 0) -> list[dict]:
        with self.cv:
            return list(self.events[start:])

    # -- assertions ----------------------------------------------------------------------------

    def check(self, cond: bool, what: str) -> None:
        if not cond:
            raise self.fail(what)

    def expect_order(self, events: list[dict], kinds: list[str | Callable[[dict], bool]], what: str) -> list[dict]:
        """`kinds` occur in `events` in this order (not necessarily adjacent). Returns them."""
        found = []
        i = 0
        for k in kinds:
            pred = k if callable(k) else (lambda e, k=k: e.get("type") == k)
            while i < len(events) and not pred(events[i]):
                i += 1
            if i == len(events):
                raise self.fail(f"{what}: expected {kinds} in order; missing {k if not callable(k) else 'a match'} "
                                f"after {[f.get('type') for f in found]}")
            found.append(events[i])
            i += 1
        return found

    def all_events(self) -> list[dict]:
        """The session's stored event log, through the SDK's list (auto-paginated)."""
        return [e.to_dict(mode="json") for e in self.client.beta.sessions.events.list(self.id, limit=100)]

    def check_credentials(self, min_requests: int = 1) -> None:
        """Every model request for this session's model carried the vault token, and the token
        appears nowhere in the session's events (stored log, raw JSON)."""
        reqs = self.stack.fake.requests(self.model)
        self.check(len(reqs) >= min_requests,
                   f"the fake saw {len(reqs)} model requests for {self.model}, expected >= {min_requests}")
        bad = [(r["seq"], r["path"], r["status"]) for r in reqs if not r["authorized"]]
        self.check(not bad, f"model requests without the vault token: {bad}")
        headers = {"x-api-key": self.client.api_key, "anthropic-beta": "managed-agents-2026-04-01",
                   "anthropic-version": "2023-06-01"}
        params: dict[str, Any] = {"limit": 100}
        pages = 0
        while True:
            raw = httpx.get(f"{self.stack.base_url}/v1/sessions/{self.id}/events", params=params,
                            headers=headers, timeout=30.0)
            self.check(raw.status_code == 200, f"listing events: {raw.status_code} {raw.text[:300]}")
            self.check(self.stack.fake.token not in raw.text, "the vault token appears in the session's event log")
            nxt = raw.json().get("next_page")
            pages += 1
            if not nxt or pages > 50:
                break
            params = {"limit": 100, "page": nxt}
        with self.cv:
            streamed = json.dumps(self.events)
        self.check(self.stack.fake.token not in streamed, "the vault token appears on the event stream")


def text_of(ev: dict) -> str:
    return "".join(b.get("text", "") for b in ev.get("content") or [] if isinstance(b, dict))


def is_idle(stop: str) -> Callable[[dict], bool]:
    return lambda e: e.get("type") == "session.status_idle" and (e.get("stop_reason") or {}).get("type") == stop
