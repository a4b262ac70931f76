"""Harness selection through AI gateways, and the operator's default model endpoint, end to end.
Run once by tests/e2e_sessions.rs (`e2e_gateways`) against a server whose `default_llm` is the
fake model: every harness runs a text turn through gateway-shaped base URLs (the fake serves
its API under any `/gw/<prefix>/v1` prefix), and a session without an LLM vault runs on the
default endpoint to success."""

from __future__ import annotations

import anthropic
import pytest

from .lib import ENGINE, BASE_URL_KEY, ROLE, Live, is_idle, text_of, uniq

# Gateway-shaped base URLs, as path prefixes on the fake model: (engine, prefix).
GATEWAYS = [
    # An Anthropic-shaped proxy under a prefix with a trailing slash.
    pytest.param("claude", "/gw/anthropic-proxy/", id="claude-prefix-slash"),
    # Cloudflare AI Gateway: its Anthropic route and its OpenAI-compatible route.
    pytest.param("claude", "/gw/client/v4/accounts/acc123/ai/anthropic", id="claude-cloudflare"),
    pytest.param("codex", "/gw/client/v4/accounts/acc123/ai/v1", id="codex-cloudflare"),
    pytest.param("openai-agents", "/gw/client/v4/accounts/acc123/ai/v1", id="openai-agents-cloudflare"),
    # A prefix with a trailing slash before the OpenAI-style harnesses' /v1 root.
    pytest.param("codex", "/gw/team-a/v1/", id="codex-prefix-slash"),
    pytest.param("openai-agents", "/gw/team-a/v1/", id="openai-agents-prefix-slash"),
    # LiteLLM: Anthropic's Messages at its root, OpenAI's API under /v1.
    pytest.param("claude", "/gw/litellm", id="claude-litellm"),
    pytest.param("codex", "/gw/litellm/v1", id="codex-litellm"),
    pytest.param("openai-agents", "/gw/litellm/v1", id="openai-agents-litellm"),
    # LLMProxy bridging an Anthropic-compatible provider into an OpenAI-style harness: the
    # path names the upstream (`/anthropic/`), yet what the harness calls is `<base>/responses`.
    pytest.param("codex", "/gw/claude2codex/https://api.z.ai/anthropic/v1", id="codex-llmproxy"),
    pytest.param("openai-agents", "/gw/claude2codex/https://api.z.ai/anthropic/v1", id="openai-agents-llmproxy"),
]


def _session(stack, model: str, engine: str, base_url: str | None) -> Live:
    agent = stack.client.beta.agents.create(name=uniq("gw"), model=model,
                                            tools=[{"type": "agent_toolset_20260401"}])
    vault_ids = []
    if base_url is not None:
        v = stack.client.beta.vaults.create(display_name=uniq("gw-llm"),
                                            metadata={ROLE: "llm", ENGINE: engine, BASE_URL_KEY: base_url})
        stack.client.beta.vaults.credentials.create(
            v.id, auth={"type": "static_bearer", "token": stack.fake.token})
        vault_ids = [v.id]
    raw = stack.client.beta.sessions.with_raw_response.create(
        agent=agent.id, environment_id=stack.environment_id(), vault_ids=vault_ids)
    assert raw.headers.get("bridle-harness") == engine, (
        f"bridle-harness header {raw.headers.get('bridle-harness')!r}, expected {engine!r}")
    sid = raw.parse().id
    # Retrieve says it too, and the SDK still parses the Session object it comes with.
    got = stack.client.beta.sessions.with_raw_response.retrieve(sid)
    assert got.headers.get("bridle-harness") == engine, (
        f"bridle-harness header on retrieve {got.headers.get('bridle-harness')!r}, expected {engine!r}")
    assert got.parse().id == sid
    return Live(stack, sid, model)


def _text_turn(stack, s: Live, model: str) -> None:
    reply = f"Through the gateway, {uniq('w')}."
    stack.fake.set_scenario(model, {"turns": [{"text": reply}]})
    evs = s.turn("Say hello.")
    s.expect_order(evs, ["user.message", "session.status_running", "agent.message", is_idle("end_turn")],
                   "a text turn")
    msgs = [e for e in evs if e["type"] == "agent.message"]
    s.check(text_of(msgs[-1]) == reply, f"agent.message text {text_of(msgs[-1])!r}, expected {reply!r}")
    s.check_credentials()


@pytest.mark.parametrize("engine_name,prefix", GATEWAYS)
def test_gateway_shaped_base_url(stack, model, sessions, engine_name, prefix):
    base_url = stack.fake.base_url + prefix
    s = _session(stack, model, engine_name, base_url)
    sessions.append(s)
    _text_turn(stack, s, model)
    # The model requests went to the gateway's prefix, not to the bare API path.
    paths = [r["path"] for r in stack.fake.requests(model)]
    want = prefix.rstrip("/")
    s.check(all(p.startswith(want) for p in paths), f"model requests outside the gateway prefix {want}: {paths}")


def test_default_llm_session_runs(stack, model, sessions):
    # No LLM vault: the default harness (claude) on the operator's `default_llm`.
    s = _session(stack, model, "claude", None)
    sessions.append(s)
    _text_turn(stack, s, model)


def test_endpoint_refusals_name_the_fix(stack):
    # What each harness calls decides, not words in the middle of the path.
    agent = stack.client.beta.agents.create(name=uniq("gw"), model="fake-text")
    for engine, url in [("codex", stack.fake.base_url + "/gw/x/v1/responses"),
                        ("codex", "https://api.anthropic.com"),
                        # A query does not hide the path's end.
                        ("openai-agents", stack.fake.base_url + "/gw/x/v1/responses?api-version=1"),
                        ("openai-agents", stack.fake.base_url + "/gw/x/anthropic"),
                        ("claude", stack.fake.base_url + "/gw/x/v1")]:
        v = stack.client.beta.vaults.create(display_name=uniq("gw-llm"),
                                            metadata={ROLE: "llm", ENGINE: engine, BASE_URL_KEY: url})
        stack.client.beta.vaults.credentials.create(v.id, auth={"type": "static_bearer", "token": "t"})
        with pytest.raises(anthropic.BadRequestError) as ei:
            stack.client.beta.sessions.create(agent=agent.id, environment_id=stack.environment_id(),
                                              vault_ids=[v.id])
        assert engine in str(ei.value) or url in str(ei.value), str(ei.value)
