"""client.beta.environments."""

from __future__ import annotations

import anthropic
import pytest

from conftest import MODEL, assert_api_error, parse_ts, uniq


def test_create_unrestricted_with_packages(client):
    # Every manager list may be given empty (clearing it); see below for non-empty ones.
    name = uniq("env")
    e = client.beta.environments.create(
        name=name,
        description="python box",
        metadata={"owner": "tests"},
        config={
            "type": "cloud",
            "networking": {"type": "unrestricted"},
            "packages": {"pip": [], "apt": [], "npm": []},
        },
    )
    assert e.id.startswith("env_"), e.id
    assert e.type == "environment"
    assert e.name == name
    assert e.description == "python box"
    assert e.metadata == {"owner": "tests"}
    assert e.archived_at is None
    parse_ts(e.created_at)
    parse_ts(e.updated_at)
    assert e.config.type == "cloud"
    assert e.config.networking.type == "unrestricted"
    p = e.config.packages
    # Every package manager list is present in the response.
    assert p.pip == [] and p.apt == [] and p.npm == []
    assert p.cargo == [] and p.gem == [] and p.go == []

    got = client.beta.environments.retrieve(e.id)
    assert got.model_dump() == e.model_dump()


def test_packages_this_server_cannot_install_are_refused(client):
    # Stored packages that are never installed would be silent acceptance: a 400 naming the manager.
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(
            name=uniq("env"), config={"type": "cloud", "packages": {"go": ["golang.org/x/tools/cmd/stringer"]}}
        )
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert "config.packages.go" in err["message"], err
    e = client.beta.environments.create(name=uniq("env"))
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.update(e.id, config={"type": "cloud", "packages": {"gem": ["rake"]}})
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert "config.packages.gem" in err["message"], err


def test_pip_and_npm_packages_are_stored_and_echoed(client):
    # Installed into a layer when a session starts (tests/python/e2e/test_packages.py).
    e = client.beta.environments.create(
        name=uniq("env"), config={"type": "cloud", "packages": {"pip": ["requests==2.31.0"], "npm": ["left-pad@1.3.0"]}}
    )
    assert e.config.packages.pip == ["requests==2.31.0"]
    assert e.config.packages.npm == ["left-pad@1.3.0"]
    assert client.beta.environments.retrieve(e.id).model_dump() == e.model_dump()


def test_create_limited_networking(client):
    e = client.beta.environments.create(
        name=uniq("env"),
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["example.com", "packages.example.org"],
                           "allow_package_managers": True},
        },
    )
    n = e.config.networking
    assert n.type == "limited"
    assert n.allowed_hosts == ["example.com", "packages.example.org"]
    assert n.allow_package_managers is True
    assert n.allow_mcp_servers is False  # documented default


def test_create_without_config_defaults_to_cloud(client):
    e = client.beta.environments.create(name=uniq("env"))
    assert e.config.type == "cloud"
    assert e.description is None
    assert e.metadata == {}


def test_list_and_pagination(client):
    mine = [client.beta.environments.create(name=uniq("envp")).id for _ in range(3)]
    first = client.beta.environments.list(limit=1)
    assert len(first.data) == 1
    assert first.next_page, "more environments exist, next_page must be set"
    ids = [e.id for e in client.beta.environments.list(limit=1)]
    assert len(ids) == len(set(ids))
    for i in mine:
        assert i in ids


def test_update(client):
    e = client.beta.environments.create(
        name=uniq("env"),
        metadata={"keep": "1", "drop": "2", "blank": "3"},
        config={"type": "cloud", "networking": {"type": "unrestricted"}},
    )
    new_name = uniq("env-renamed")
    u = client.beta.environments.update(
        e.id,
        name=new_name,
        description="now described",
        metadata={"drop": None, "blank": "", "new": "x"},
        config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["example.org"]}},
    )
    assert u.id == e.id
    assert u.name == new_name
    assert u.description == "now described"
    # "Set a value to null or empty string to delete the key."
    assert u.metadata == {"keep": "1", "new": "x"}
    assert u.config.networking.type == "limited"
    assert u.config.networking.allowed_hosts == ["example.org"]
    # Omitted config fields are preserved.
    assert u.config.packages.type == "packages"
    assert parse_ts(u.updated_at) >= parse_ts(e.updated_at)
    assert client.beta.environments.retrieve(e.id).model_dump() == u.model_dump()


def test_archive(client):
    e = client.beta.environments.create(name=uniq("env"))
    a = client.beta.environments.archive(e.id)
    assert a.archived_at is not None
    parse_ts(a.archived_at)
    assert e.id not in {x.id for x in client.beta.environments.list(limit=100)}
    assert e.id in {x.id for x in client.beta.environments.list(limit=100, include_archived=True)}
    # "Archived environments cannot be used to create new sessions."
    agent = client.beta.agents.create(name=uniq("agent"), model=MODEL)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=e.id)
    assert_api_error(ei.value, (400, 409))


def test_delete(client):
    e = client.beta.environments.create(name=uniq("env"))
    d = client.beta.environments.delete(e.id)
    assert d.id == e.id
    assert d.type == "environment_deleted"
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.environments.retrieve(e.id)
    assert_api_error(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.delete(e.id)
    assert e.id not in {x.id for x in client.beta.environments.list(limit=100, include_archived=True)}


def test_unknown_environment_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.environments.retrieve("env_011CZkZ9X2dpNyB7HsEFoRfW")
    assert_api_error(ei.value, 404, "not_found_error")
