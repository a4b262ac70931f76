"""client.beta.sessions, including the harness-selection rules of the LLM vault."""

from __future__ import annotations

import time

import anthropic
import pytest

from conftest import MODEL, assert_api_error, parse_ts, uniq

ROLE = "sandbox0.managed_agents.role"
ENGINE = "sandbox0.managed_agents.engine"
BASE_URL_KEY = "sandbox0.managed_agents.llm_base_url"


def llm_vault(client, engine: str | None = "claude", creds: list[dict] | None = None, extra_md=None):
    """A vault marked as the session's LLM vault, holding `creds` (default: one unbound bearer)."""
    md = {ROLE: "llm"}
    if engine is not None:
        md[ENGINE] = engine
    md.update(extra_md or {})
    v = client.beta.vaults.create(display_name=uniq("llm"), metadata=md)
    if creds is None:
        creds = [{"type": "static_bearer", "token": uniq("model-key")}]
    for auth in creds:
        client.beta.vaults.credentials.create(v.id, auth=auth)
    return v


def expect_400(fn, *words: str) -> dict:
    with pytest.raises(anthropic.BadRequestError) as ei:
        fn()
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    msg = err["message"].lower()
    for w in words:
        assert w.lower() in msg, f"error message should mention {w!r}: {err['message']!r}"
    return err


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------


def test_create_with_agent_id_string(client, agent, environment):
    raw = client.beta.sessions.with_raw_response.create(agent=agent.id, environment_id=environment.id)
    assert raw.http_response.status_code == 200
    s = raw.parse()
    assert s.id.startswith("sesn_"), s.id
    assert s.type == "session"
    assert s.status == "idle"
    assert s.environment_id == environment.id
    assert s.agent.id == agent.id
    assert s.agent.version == agent.version
    assert s.agent.name == agent.name
    assert s.agent.model.id == MODEL
    assert s.vault_ids == []
    assert s.metadata == {}
    assert s.title is None
    assert s.archived_at is None
    parse_ts(s.created_at)
    parse_ts(s.updated_at)
    body = raw.http_response.json()
    for field in ("resources", "stats", "usage", "outcome_evaluations"):
        assert field in body, f"session lacks {field!r}: {body}"


def test_create_pins_agent_version(client, agent, environment):
    v1_name = agent.name
    client.beta.agents.update(agent.id, name=uniq("v2"))
    pinned = client.beta.sessions.create(agent={"type": "agent", "id": agent.id, "version": 1},
                                         environment_id=environment.id)
    assert pinned.agent.version == 1 and pinned.agent.name == v1_name
    latest = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert latest.agent.version == 2
    ref_latest = client.beta.sessions.create(agent={"type": "agent", "id": agent.id},
                                             environment_id=environment.id)
    assert ref_latest.agent.version == 2
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent={"type": "agent", "id": agent.id, "version": 42},
                                    environment_id=environment.id)
    assert_api_error(ei.value, (400, 404))


def test_create_with_overrides(client, agent, environment):
    s = client.beta.sessions.create(
        agent={"type": "agent_with_overrides", "id": agent.id, "system": "override system",
               "model": "claude-haiku-4-5", "tools": [{"type": "agent_toolset_20260401"}]},
        environment_id=environment.id,
    )
    assert s.agent.id == agent.id
    assert s.agent.system == "override system"
    assert s.agent.model.id == "claude-haiku-4-5"
    assert [t.type for t in s.agent.tools] == ["agent_toolset_20260401"]
    # The agent itself is untouched.
    a = client.beta.agents.retrieve(agent.id)
    assert a.system is None and a.version == 1


def test_create_with_title_metadata_and_plain_vault(client, agent, environment):
    plain = client.beta.vaults.create(display_name=uniq("mcp-creds"))
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="my title",
                                    metadata={"ticket": "BR-1"}, vault_ids=[plain.id])
    assert s.title == "my title"
    assert s.metadata == {"ticket": "BR-1"}
    assert s.vault_ids == [plain.id]
    got, created = client.beta.sessions.retrieve(s.id).model_dump(), s.model_dump()
    # `stats` are computed when read: the session's age grows, its active time does not.
    got_stats, created_stats = got.pop("stats"), created.pop("stats")
    assert got_stats["active_seconds"] == created_stats["active_seconds"] == 0.0, (got_stats, created_stats)
    assert got_stats["duration_seconds"] >= created_stats["duration_seconds"] >= 0.0, (got_stats, created_stats)
    assert got == created


def test_create_unknown_agent_or_environment(client, agent, environment):
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent="agent_011CZkYpogX7uDKUyvBTophP", environment_id=environment.id)
    assert_api_error(ei.value, (400, 404))
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id="env_011CZkZ9X2dpNyB7HsEFoRfW")
    assert_api_error(ei.value, (400, 404))
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                    vault_ids=["vlt_011CZkZDLs7fYzm1hXNPeRjv"])
    assert_api_error(ei.value, (400, 404))


def test_create_with_archived_agent_is_rejected(client, environment):
    a = client.beta.agents.create(name=uniq("agent"), model=MODEL)
    client.beta.agents.archive(a.id)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=environment.id)
    assert_api_error(ei.value, (400, 409))


# ---------------------------------------------------------------------------------------------
# harness selection (seed: agent-harnesses.txt)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine,base_url", [
    ("claude", "https://api.anthropic.com"),
    ("codex", "https://api.openai.com/v1"),
    ("openai-agents", "https://api.openai.com/v1"),
])
def test_llm_vault_with_known_engine(client, agent, environment, engine, base_url):
    v = llm_vault(client, engine, extra_md={BASE_URL_KEY: base_url})
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[v.id])
    assert s.vault_ids == [v.id]
    assert s.status == "idle"


def test_llm_base_url_must_fit_the_engine(client, agent, environment):
    # design: the plugin is asked whether the base URL fits its API shape (Claude Code appends
    # /v1/messages itself, so an OpenAI-style .../v1 base URL cannot be right for claude).
    v = llm_vault(client, "claude", extra_md={BASE_URL_KEY: "https://api.example.com/v1"})
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "https://api.example.com/v1")


def test_llm_vault_without_engine_defaults(client, agent, environment):
    v = llm_vault(client, engine=None)
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[v.id])
    assert s.vault_ids == [v.id]


def test_no_llm_vault_always_succeeds(client, agent, environment):
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert s.status == "idle"
    plain = client.beta.vaults.create(display_name=uniq("plain"), metadata={"purpose": "mcp"})
    s2 = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[plain.id])
    assert s2.vault_ids == [plain.id]


def test_llm_vault_plus_ordinary_vault(client, agent, environment):
    v = llm_vault(client, "codex")
    plain = client.beta.vaults.create(display_name=uniq("plain"))
    client.beta.vaults.credentials.create(
        plain.id, auth={"type": "static_bearer", "token": uniq("t"), "mcp_server_url": "https://mcp.example.com"})
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[plain.id, v.id])
    assert sorted(s.vault_ids) == sorted([plain.id, v.id])


def test_harness_header_shows_selection(client, agent, environment):
    """Create and retrieve name the selected harness in the `bridle-harness` header, also
    for a session without an LLM vault (the operator's default endpoint, engine claude)."""
    raw = client.beta.sessions.with_raw_response.create(agent=agent.id, environment_id=environment.id)
    assert raw.headers["bridle-harness"] == "claude"
    s = raw.parse()
    assert s.vault_ids == []
    assert client.beta.sessions.with_raw_response.retrieve(s.id).headers["bridle-harness"] == "claude"
    v = llm_vault(client, "codex")
    raw = client.beta.sessions.with_raw_response.create(agent=agent.id, environment_id=environment.id,
                                                        vault_ids=[v.id])
    assert raw.headers["bridle-harness"] == "codex"
    assert client.beta.sessions.with_raw_response.retrieve(raw.parse().id).headers["bridle-harness"] == "codex"


def test_two_llm_vaults_rejected(client, agent, environment):
    a, b = llm_vault(client, "claude"), llm_vault(client, "codex")
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[a.id, b.id]), "vault")


def test_unknown_engine_rejected(client, agent, environment):
    v = llm_vault(client, "gpt-pilot-9000")
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "gpt-pilot-9000")


def test_llm_vault_without_credentials_rejected(client, agent, environment):
    v = llm_vault(client, "claude", creds=[])
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "credential")


def test_llm_vault_with_two_bearers_rejected(client, agent, environment):
    v = llm_vault(client, "claude", creds=[{"type": "static_bearer", "token": uniq("a")},
                                           {"type": "static_bearer", "token": uniq("b")}])
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "credential")


def test_llm_vault_with_bound_bearer_rejected(client, agent, environment):
    v = llm_vault(client, "claude", creds=[{"type": "static_bearer", "token": uniq("a"),
                                            "mcp_server_url": "https://mcp.example.com/"}])
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "mcp_server_url")


def test_llm_vault_with_wrong_credential_kind_rejected(client, agent, environment):
    v = llm_vault(client, "codex", creds=[{"type": "environment_variable", "secret_name": "OPENAI_API_KEY",
                                           "secret_value": uniq("v"), "networking": {"type": "unrestricted"}}])
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]), "static_bearer")


def test_llm_vault_archived_credentials_do_not_count(client, agent, environment):
    v = llm_vault(client, "claude")
    extra = client.beta.vaults.credentials.create(v.id, auth={"type": "static_bearer", "token": uniq("old")})
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   vault_ids=[v.id]))
    client.beta.vaults.credentials.archive(extra.id, vault_id=v.id)
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[v.id])
    assert s.vault_ids == [v.id]


@pytest.mark.parametrize("key", [ENGINE, ROLE, BASE_URL_KEY, "sandbox0.managed_agents.anything"])
def test_reserved_session_metadata_rejected(client, agent, environment, key):
    expect_400(lambda: client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                                   metadata={key: "codex"}), key)


def test_reserved_session_metadata_rejected_on_update(client, session):
    expect_400(lambda: client.beta.sessions.update(session.id, metadata={ENGINE: "codex"}), ENGINE)


# ---------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------


def test_list_filters_order_and_pagination(client, environment):
    a = client.beta.agents.create(name=uniq("lister"), model=MODEL)
    b = client.beta.agents.create(name=uniq("other"), model=MODEL)
    made = []
    for i in range(3):
        made.append(client.beta.sessions.create(agent=a.id, environment_id=environment.id, title=f"s{i}").id)
        time.sleep(0.02)  # distinct created_at even at millisecond precision
    client.beta.sessions.create(agent=b.id, environment_id=environment.id)

    desc = client.beta.sessions.list(agent_id=a.id)
    assert [s.id for s in desc.data] == list(reversed(made)), "default order is newest first"
    asc = client.beta.sessions.list(agent_id=a.id, order="asc")
    assert [s.id for s in asc.data] == made
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, order="desc").data] == list(reversed(made))

    # Bidirectional pagination.
    p1 = client.beta.sessions.list(agent_id=a.id, order="asc", limit=2)
    assert [s.id for s in p1.data] == made[:2]
    assert p1.next_page, "a second page exists"
    assert p1.prev_page is None, "the first page has no previous page"
    p2 = client.beta.sessions.list(agent_id=a.id, order="asc", limit=2, page=p1.next_page)
    assert [s.id for s in p2.data] == made[2:]
    assert not p2.next_page
    assert p2.prev_page, "the second page links back"
    back = client.beta.sessions.list(agent_id=a.id, order="asc", limit=2, page=p2.prev_page)
    assert [s.id for s in back.data] == made[:2]
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, order="asc", limit=1)] == made

    # statuses[]: fresh sessions are idle.
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, statuses=["idle"], order="asc")] == made
    assert list(client.beta.sessions.list(agent_id=a.id, statuses=["running", "terminated"])) == []

    # agent_version
    assert len(list(client.beta.sessions.list(agent_id=a.id, agent_version=1))) == 3
    assert list(client.beta.sessions.list(agent_id=a.id, agent_version=2)) == []

    # include_archived
    client.beta.sessions.archive(made[0])
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, order="asc")] == made[1:]
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, order="asc", include_archived=True)] == made

    # created_at filters
    third = client.beta.sessions.retrieve(made[2])
    got = [s.id for s in client.beta.sessions.list(agent_id=a.id, created_at_gte=third.created_at,
                                                   include_archived=True)]
    assert got == [made[2]]
    got = [s.id for s in client.beta.sessions.list(agent_id=a.id, created_at_lt=third.created_at,
                                                   include_archived=True, order="asc")]
    assert got == made[:2]


def test_page_cursor_with_other_order_rejected(client, environment, agent):
    for _ in range(2):
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    p1 = client.beta.sessions.list(agent_id=agent.id, order="asc", limit=1)
    assert p1.next_page
    # "A cursor encodes the order of the request that produced it; reusing it with a different
    # order returns 400."
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.list(agent_id=agent.id, order="desc", limit=1, page=p1.next_page)
    assert_api_error(ei.value, 400, "invalid_request_error")


# ---------------------------------------------------------------------------------------------
# retrieve / update / archive / delete
# ---------------------------------------------------------------------------------------------


def test_update_title_and_metadata(client, agent, environment):
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="t0",
                                    metadata={"a": "1", "b": "2"})
    u = client.beta.sessions.update(s.id, title="t1", metadata={"a": None, "c": "3"})
    assert u.title == "t1"
    assert u.metadata == {"b": "2", "c": "3"}
    assert parse_ts(u.updated_at) >= parse_ts(s.updated_at)
    r = client.beta.sessions.retrieve(s.id)
    assert r.title == "t1" and r.metadata == {"b": "2", "c": "3"}


def test_update_vault_ids_rejected(client, session):
    v = client.beta.vaults.create(display_name=uniq("v"))
    # "Not yet supported; requests setting this field are rejected."
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.update(session.id, vault_ids=[v.id])
    assert_api_error(ei.value, 400, "invalid_request_error")


def test_archive_then_send_is_409(client, session):
    a = client.beta.sessions.archive(session.id)
    assert a.id == session.id and a.archived_at is not None
    parse_ts(a.archived_at)
    with pytest.raises(anthropic.ConflictError) as ei:
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}])
    assert_api_error(ei.value, 409)
    # History stays readable.
    assert client.beta.sessions.retrieve(session.id).archived_at is not None
    client.beta.sessions.events.list(session.id)


def test_delete(client, session):
    # (An idle session: a user.message would start the runner, and a running session cannot
    # be deleted.)
    d = client.beta.sessions.delete(session.id)
    assert d.id == session.id and d.type == "session_deleted"
    for call in (
        lambda: client.beta.sessions.retrieve(session.id),
        lambda: client.beta.sessions.events.list(session.id),
        lambda: client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]),
        lambda: client.beta.sessions.update(session.id, title="x"),
        lambda: client.beta.sessions.delete(session.id),
    ):
        with pytest.raises(anthropic.NotFoundError) as ei:
            call()
        assert_api_error(ei.value, 404, "not_found_error")
    assert session.id not in {s.id for s in client.beta.sessions.list(include_archived=True, limit=100)}


def test_unknown_session_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.retrieve("sesn_011CZkZAtmR3yMPDzynEDxu7")
    assert_api_error(ei.value, 404, "not_found_error")


def test_create_with_initial_user_message(client, agent, environment):
    s = client.beta.sessions.create(
        agent=agent.id, environment_id=environment.id,
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "start here"}]}],
    )
    evs = list(client.beta.sessions.events.list(s.id, types=["user.message"]))
    assert len(evs) == 1 and evs[0].content[0].text == "start here"
    assert evs[0].id.startswith("sevt_")


def test_one_mcp_server_url_bound_twice_is_rejected(client, agent, environment):
    # The same URL (another spelling of its host and default port) in two vaults: the choice of
    # credential would be left to chance, so the session is refused naming both credentials.
    ids = []
    vaults = []
    for url in ["https://mcp.example.com/mcp", "https://MCP.example.com:443/mcp/"]:
        v = client.beta.vaults.create(display_name=uniq("mcp"))
        c = client.beta.vaults.credentials.create(
            v.id, auth={"type": "static_bearer", "token": "t", "mcp_server_url": url})
        ids.append(c.id)
        vaults.append(v.id)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=vaults)
    assert ids[0] in str(ei.value) and ids[1] in str(ei.value), str(ei.value)
    # One binding per URL is fine; so is a deeper path under it.
    v = client.beta.vaults.create(display_name=uniq("mcp"))
    client.beta.vaults.credentials.create(
        v.id, auth={"type": "static_bearer", "token": "t", "mcp_server_url": "https://mcp.example.com/mcp/v2"})
    client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[vaults[0], v.id])


def test_mcp_server_names_and_urls_are_checked(client):
    for server, needle in [({"type": "url", "name": "a b", "url": "https://mcp.example.com"}, "name"),
                           ({"type": "url", "name": "ok", "url": "https://u:p@mcp.example.com"}, "vault"),
                           ({"type": "url", "name": "ok", "url": "mcp.example.com"}, "url")]:
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.agents.create(
                name=uniq("a"), model=MODEL, mcp_servers=[server],
                tools=[{"type": "mcp_toolset", "mcp_server_name": server["name"]}])
        assert needle in str(ei.value), str(ei.value)
