"""client.beta.agents and client.beta.agents.versions."""

from __future__ import annotations

import anthropic
import pytest

from conftest import MODEL, assert_api_error, parse_ts, uniq


def test_create_with_model_string(client):
    name = uniq("agent")
    raw = client.beta.agents.with_raw_response.create(name=name, model=MODEL)
    assert raw.http_response.status_code == 200
    body = raw.http_response.json()
    # The model is always returned resolved to an object, never a bare string.
    assert isinstance(body["model"], dict), body
    assert body["model"]["id"] == MODEL
    a = raw.parse()
    assert a.id.startswith("agent_"), a.id
    assert a.type == "agent"
    assert a.name == name
    assert a.version == 1
    assert a.archived_at is None
    assert a.metadata == {}
    assert a.tools == []
    assert a.mcp_servers == []
    assert a.skills == []
    assert a.system is None
    assert a.description is None
    created = parse_ts(a.created_at)
    assert parse_ts(a.updated_at) >= created


def test_create_with_model_object_and_fields(client):
    name = uniq("agent")
    tools = [
        {"type": "agent_toolset_20260401"},
        {
            "type": "custom",
            "name": "lookup_order",
            "description": "Look up an order by id",
            "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
    ]
    a = client.beta.agents.create(
        name=name,
        model={"id": "claude-opus-4-6", "speed": "fast"},
        system="You are terse.",
        description="an agent for tests",
        metadata={"team": "bridle", "tier": "1"},
        tools=tools,
    )
    assert a.model.id == "claude-opus-4-6"
    assert a.model.speed == "fast"
    assert a.system == "You are terse."
    assert a.description == "an agent for tests"
    assert a.metadata == {"team": "bridle", "tier": "1"}
    types = [t.type for t in a.tools]
    assert types == ["agent_toolset_20260401", "custom"], types
    custom = a.tools[1]
    assert custom.name == "lookup_order"
    assert custom.input_schema.type == "object"

    got = client.beta.agents.retrieve(a.id)
    assert got.model_dump() == a.model_dump()


def test_retrieve_unknown_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.agents.retrieve("agent_011CZkYpogX7uDKUyvBTophP")
    assert_api_error(ei.value, 404, "not_found_error")


def test_list_pagination_walks_every_agent_once(client):
    mine = [client.beta.agents.create(name=uniq("pg"), model=MODEL).id for _ in range(5)]

    # Manual walk with limit=2: page size respected, cursors followed until null.
    seen: list[str] = []
    page = client.beta.agents.list(limit=2)
    pages = 0
    while True:
        pages += 1
        assert len(page.data) <= 2, f"limit=2 but got {len(page.data)}"
        seen.extend(a.id for a in page.data)
        if not page.next_page:
            break
        assert pages < 1000, "pagination does not terminate"
        page = client.beta.agents.list(limit=2, page=page.next_page)
    assert len(seen) == len(set(seen)), "an agent appeared on two pages"
    for aid in mine:
        assert aid in seen, f"{aid} missing from the paginated list"
    assert pages >= 3

    # The SDK's auto-pagination sees the same set.
    auto = [a.id for a in client.beta.agents.list(limit=2)]
    assert sorted(auto) == sorted(seen)


def test_update_versions_and_retrieve_by_version(client, agent):
    v1_name = agent.name
    u = client.beta.agents.update(agent.id, version=1, name=uniq("renamed"), system="new system")
    assert u.version == 2
    assert u.system == "new system"
    assert parse_ts(u.updated_at) >= parse_ts(agent.updated_at)

    old = client.beta.agents.retrieve(agent.id, version=1)
    assert old.version == 1 and old.name == v1_name and old.system is None
    new = client.beta.agents.retrieve(agent.id, version=2)
    assert new.version == 2 and new.name == u.name
    latest = client.beta.agents.retrieve(agent.id)
    assert latest.version == 2

    versions = list(client.beta.agents.versions.list(agent.id))
    assert sorted(v.version for v in versions) == [1, 2]
    assert all(v.id == agent.id for v in versions)

    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.agents.retrieve(agent.id, version=99)
    assert_api_error(ei.value, 404)


def test_update_version_mismatch_is_409(client, agent):
    with pytest.raises(anthropic.ConflictError) as ei:
        client.beta.agents.update(agent.id, version=7, name=uniq("nope"))
    assert_api_error(ei.value, 409)
    # Nothing changed.
    again = client.beta.agents.retrieve(agent.id)
    assert again.version == 1 and again.name == agent.name


def test_update_without_version_is_unconditional(client, agent):
    u = client.beta.agents.update(agent.id, description="d1")
    assert u.version == 2 and u.description == "d1"


def test_noop_update_keeps_version(client, agent):
    same = client.beta.agents.update(agent.id, version=1, name=agent.name)
    assert same.version == 1
    same = client.beta.agents.update(agent.id)
    assert same.version == 1
    assert [v.version for v in client.beta.agents.versions.list(agent.id)] == [1]


def test_metadata_patch_and_clearing(client):
    a = client.beta.agents.create(name=uniq("md"), model=MODEL, metadata={"a": "1", "b": "2"},
                                  system="s", description="d")
    u = client.beta.agents.update(a.id, metadata={"a": None, "c": "3"}, system=None, description="")
    assert u.metadata == {"b": "2", "c": "3"}
    assert u.system in (None, "")
    assert u.description in (None, "")
    u2 = client.beta.agents.update(a.id, model="claude-haiku-4-5")
    assert u2.model.id == "claude-haiku-4-5"
    assert u2.name == a.name  # omitted fields preserved


def test_update_unknown_agent_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.agents.update("agent_011CZkYpogX7uDKUyvBTzzzz", name="x")
    assert_api_error(ei.value, 404, "not_found_error")


def test_versions_pagination(client, agent):
    for i in range(4):
        client.beta.agents.update(agent.id, name=f"{agent.name}-{i}")
    first = client.beta.agents.versions.list(agent.id, limit=2)
    assert len(first.data) == 2
    assert first.next_page
    everything = [v.version for v in client.beta.agents.versions.list(agent.id, limit=2)]
    assert sorted(everything) == [1, 2, 3, 4, 5]


def test_archive(client):
    a = client.beta.agents.create(name=uniq("arch"), model=MODEL)
    archived = client.beta.agents.archive(a.id)
    assert archived.id == a.id
    assert archived.archived_at is not None
    parse_ts(archived.archived_at)
    # Still retrievable.
    assert client.beta.agents.retrieve(a.id).archived_at is not None
    # Excluded from lists unless asked for.
    default_ids = {x.id for x in client.beta.agents.list(limit=100)}
    assert a.id not in default_ids
    all_ids = {x.id for x in client.beta.agents.list(limit=100, include_archived=True)}
    assert a.id in all_ids
    # Archive is read-only: updates are refused with a 4xx.
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.agents.update(a.id, name="after-archive")
    assert 400 <= ei.value.status_code < 500
    assert_api_error(ei.value, ei.value.status_code)
