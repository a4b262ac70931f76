"""MCP servers with vault credentials, end to end, for the suite's harness: a real MCP server
(official MCP Python SDK, streamable HTTP on loopback, `mcp_server.py`) that answers only its
bearer tokens; the agent calls its tool through the egress gateway's MCP route (for the resident
openai-agents runtime, a host-side gateway serving only that route), which adds the credential
bound to the server's URL host-side.

Needs BRIDLE_E2E_MCP_PORT (the MCP server's port) and BRIDLE_E2E_MCP_DOWN_PORT (a port nothing
listens on); the server under test allows both through `egress.allow_internal`."""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from .lib import Live, text_of, uniq
from .mcp_server import McpFixture

SERVER = "docs"


@pytest.fixture(scope="module")
def mcp() -> McpFixture:
    port = os.environ.get("BRIDLE_E2E_MCP_PORT")
    if not port:
        pytest.skip("BRIDLE_E2E_MCP_PORT is not set")
    f = McpFixture(int(port)).start()
    yield f
    f.stop()


def _down_url() -> str:
    return f"http://127.0.0.1:{os.environ['BRIDLE_E2E_MCP_DOWN_PORT']}/mcp"


def _session(stack, model: str, url: str, auth: dict | None, policy: str = "always_allow",
             networking: dict | None = None) -> Live:
    agent = stack.client.beta.agents.create(
        name=uniq("mcp"), model=model,
        mcp_servers=[{"type": "url", "name": SERVER, "url": url}],
        tools=[{"type": "agent_toolset_20260401"},
               {"type": "mcp_toolset", "mcp_server_name": SERVER,
                "default_config": {"permission_policy": {"type": policy}}}],
    )
    vault_ids = [stack.llm_vault()]
    if auth is not None:
        v = stack.client.beta.vaults.create(display_name=uniq("mcp-creds"))
        stack.client.beta.vaults.credentials.create(v.id, display_name="docs", auth=auth)
        vault_ids.append(v.id)
    env_id = stack.environment_id()
    if networking is not None:
        env_id = stack.client.beta.environments.create(
            name=uniq("env"), config={"type": "cloud", "networking": networking}).id
    s = stack.client.beta.sessions.create(agent=agent.id, environment_id=env_id, vault_ids=vault_ids)
    return Live(stack, s.id, model)


def _lookup_scenario(stack, model: str, key: str) -> None:
    stack.fake.set_scenario(model, {"turns": [
        {"tools": [{"custom": "lookup", "input": {"key": key}}], "text": "Looked up: {{tool_output}}"},
        {"text": "Still here."}]})


def _mcp_events(evs: list[dict]) -> tuple[list[dict], list[dict]]:
    return ([e for e in evs if e["type"] == "agent.mcp_tool_use"],
            [e for e in evs if e["type"] == "agent.mcp_tool_result"])


def _token_nowhere(s: Live, token: str) -> None:
    """Not in the event log, not in any process's environment or arguments (the sandbox's
    runtime and tools among them), not in the session's workspace files."""
    raw = json.dumps(s.all_events())
    s.check(token not in raw, "the MCP token appears in the session's event log")
    with s.cv:
        s.check(token not in json.dumps(s.events), "the MCP token appears on the event stream")
    needle = token.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        for part in ("environ", "cmdline"):
            try:
                data = (proc / part).read_bytes()
            except OSError:
                continue
            s.check(needle not in data, f"the MCP token is in /proc/{proc.name}/{part}")
    if s.stack.sandbox_dir:
        ws = s.stack.workspace(s.id)
        if ws.is_dir():
            for f in ws.rglob("*"):
                try:
                    if f.is_file() and needle in f.read_bytes():
                        raise s.fail(f"the MCP token is in the workspace file {f}")
                except OSError:
                    continue


def _check_authorized_call(s: Live, evs: list[dict], mcp: McpFixture, key: str) -> None:
    # The fake model calls `lookup` as each runtime offers it: Claude Code's `mcp__docs__lookup`,
    # codex's `lookup` in its `mcp__docs` namespace tool, openai-agents' plain `lookup`.
    uses, results = _mcp_events(evs)
    s.check(len(uses) >= 1, "no agent.mcp_tool_use")
    s.check(all(u.get("mcp_server_name") == SERVER for u in uses), f"mcp_server_name: {uses}")
    s.check(len(results) >= 1, "no agent.mcp_tool_result")
    want = f"value-of-{key}-{mcp.word}"
    s.check(any(want in json.dumps(r.get("content")) and not r.get("is_error") for r in results),
            f"no authorized result {want!r} in {results}")
    s.check(results[0].get("mcp_tool_use_id") == uses[0]["id"], "the result names its tool use")


def test_mcp_static_bearer(stack, model, sessions, mcp):
    token, tag = mcp.new_token(), uniq("t")
    url = mcp.url_for(tag)
    s = _session(stack, model, url, {"type": "static_bearer", "token": token, "mcp_server_url": url})
    sessions.append(s)
    key = uniq("k")
    _lookup_scenario(stack, model, key)
    evs = s.turn("Look the key up.")
    _check_authorized_call(s, evs, mcp, key)
    seen = mcp.auth_seen(tag)
    s.check(seen and all(a == f"Bearer {token}" for a in seen),
            f"the MCP server saw requests without the token: {[a and a[:14] for a in seen]}")
    _token_nowhere(s, token)


def test_mcp_oauth_expired_token_is_refreshed_once(stack, model, sessions, mcp):
    refresh_token = uniq("rt")
    fresh = mcp.grant(refresh_token)
    stale, tag = "expired-" + uniq("at"), uniq("t")
    url = mcp.url_for(tag)
    s = _session(stack, model, url, {
        "type": "mcp_oauth", "mcp_server_url": url, "access_token": stale,
        "expires_at": "2020-01-01T00:00:00Z",
        "refresh": {"client_id": "bridle-e2e", "refresh_token": refresh_token, "token_endpoint": mcp.token_url,
                    "token_endpoint_auth": {"type": "none"}}})
    sessions.append(s)
    key = uniq("k")
    _lookup_scenario(stack, model, key)
    evs = s.turn("Look the key up.")
    _check_authorized_call(s, evs, mcp, key)
    calls = [c for c in mcp.token_calls if c.get("refresh_token") == refresh_token]
    s.check(len(calls) == 1, f"the token endpoint was asked {len(calls)} times, expected once")
    s.check(calls[0].get("grant_type") == "refresh_token" and calls[0].get("client_id") == "bridle-e2e",
            f"refresh grant {calls[0]}")
    seen = mcp.auth_seen(tag)
    s.check(seen and all(a == f"Bearer {fresh}" for a in seen), "the MCP server saw other than the fresh token")
    _token_nowhere(s, fresh)
    _token_nowhere(s, refresh_token)


class _TokenEndpoint:
    """A token endpoint on a loopback port the server's `egress.allow_internal` does not open:
    it records every call and would grant a token."""

    def __init__(self):
        calls = self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                calls.append(self.path)
                body = json.dumps({"access_token": "granted-" + uniq("at"), "token_type": "Bearer",
                                   "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_mcp_oauth_token_endpoint_obeys_the_address_policy(stack, model, sessions, mcp):
    """The refresh is made host-side, under the egress address policy: a token endpoint on an
    internal address the operator did not allow is never called, and the session hears why."""
    endpoint = _TokenEndpoint()
    try:
        url = mcp.url_for(uniq("t"))
        s = _session(stack, model, url, {
            "type": "mcp_oauth", "mcp_server_url": url, "access_token": "expired-" + uniq("at"),
            "expires_at": "2020-01-01T00:00:00Z",
            "refresh": {"client_id": "bridle-e2e", "refresh_token": uniq("rt"), "token_endpoint": endpoint.url,
                        "token_endpoint_auth": {"type": "none"}}})
        sessions.append(s)
        _lookup_scenario(stack, model, "k")
        evs = s.turn("Look the key up.")
        _expect_mcp_error(s, evs, "mcp_authentication_failed_error", "egress.allow_internal")
        s.check(not endpoint.calls, f"the token endpoint on a refused address was called: {endpoint.calls}")
        _still_usable(s, stack, model)
    finally:
        endpoint.stop()


@pytest.mark.parametrize("answer", ["allow", "deny"])
def test_mcp_always_ask(stack, model, sessions, mcp, answer, engine):
    token, tag = mcp.new_token(), uniq("t")
    url = mcp.url_for(tag)
    s = _session(stack, model, url, {"type": "static_bearer", "token": token, "mcp_server_url": url},
                 policy="always_ask")
    sessions.append(s)
    key = uniq("k")
    _lookup_scenario(stack, model, key)
    start = s.message("Look the key up.")
    _, use = s.wait_type("agent.mcp_tool_use", start)
    s.check(use.get("evaluated_permission") == "ask", f"evaluated_permission {use.get('evaluated_permission')!r}")
    i, idle = s.wait_idle(start)
    stop = idle.get("stop_reason") or {}
    s.check(stop.get("type") == "requires_action" and stop.get("event_ids") == [use["id"]],
            f"expected requires_action for {use['id']}, got {stop}")
    s.check(not [e for e in s.snapshot(start) if e["type"] == "agent.mcp_tool_result"],
            "the MCP tool ran before it was confirmed")
    s.send({"type": "user.tool_confirmation", "tool_use_id": use["id"], "result": answer})
    end, _ = s.wait_idle(i + 1, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    _, results = _mcp_events(evs)
    want = f"value-of-{key}-{mcp.word}"
    got = json.dumps([r.get("content") for r in results]) + json.dumps([text_of(e) for e in evs
                                                                        if e["type"] == "agent.message"])
    if answer == "allow":
        _check_authorized_call(s, evs, mcp, key)
    else:
        s.check(want not in got, "the denied MCP call's result came back")
        s.check(all(r.get("is_error") for r in results), f"a denied MCP call has no successful result: {results}")


def _expect_mcp_error(s: Live, evs: list[dict], error_type: str, needle: str = "") -> dict:
    errs = [e["error"] for e in evs if e["type"] == "session.error"]
    hit = [e for e in errs if e.get("type") == error_type]
    s.check(bool(hit), f"no session.error {error_type}; errors: {errs}")
    s.check(hit[0].get("mcp_server_name") == SERVER, f"the error names {hit[0].get('mcp_server_name')!r}")
    s.check(needle in hit[0].get("message", ""), f"error message {hit[0].get('message')!r} lacks {needle!r}")
    return hit[0]


def _still_usable(s: Live, stack, model: str) -> None:
    got = stack.client.beta.sessions.retrieve(s.id)
    s.check(got.status == "idle", f"session status {got.status!r} after the MCP failure")
    evs = s.turn("Are you still there?")
    msgs = [e for e in evs if e["type"] == "agent.message"]
    s.check(msgs and "Still here." in text_of(msgs[-1]), "the session did not answer its next message")


def test_mcp_server_down(stack, model, sessions, mcp):
    s = _session(stack, model, _down_url(), {"type": "static_bearer", "token": mcp.new_token(),
                                             "mcp_server_url": _down_url()})
    sessions.append(s)
    _lookup_scenario(stack, model, "k")
    evs = s.turn("Look the key up.")
    _expect_mcp_error(s, evs, "mcp_connection_failed_error")
    _still_usable(s, stack, model)


def test_mcp_token_rejected(stack, model, sessions, mcp):
    bad = "not-accepted-" + uniq("t")
    url = mcp.url_for(uniq("t"))
    s = _session(stack, model, url, {"type": "static_bearer", "token": bad, "mcp_server_url": url})
    sessions.append(s)
    _lookup_scenario(stack, model, "k")
    evs = s.turn("Look the key up.")
    _expect_mcp_error(s, evs, "mcp_authentication_failed_error")
    _, results = _mcp_events(evs)
    s.check(not any(mcp.word in json.dumps(r.get("content")) for r in results), "a rejected call got a result")
    _token_nowhere(s, bad)
    _still_usable(s, stack, model)


def test_mcp_refused_when_limited_networking_disallows_mcp(stack, model, sessions, mcp):
    token, tag = mcp.new_token(), uniq("t")
    url = mcp.url_for(tag)
    s = _session(stack, model, url, {"type": "static_bearer", "token": token, "mcp_server_url": url},
                 networking={"type": "limited", "allow_mcp_servers": False})
    sessions.append(s)
    _lookup_scenario(stack, model, "k")
    evs = s.turn("Look the key up.")
    _expect_mcp_error(s, evs, "mcp_connection_failed_error", "allow_mcp_servers")
    s.check(not mcp.auth_seen(tag),
            "the MCP server was reached although networking refuses it")
    _still_usable(s, stack, model)
