"""Reserved `sandbox0.managed_agents.*` metadata keys select a session's harness and mean
something on vaults only: on agents, environments, credentials and sessions they are a 400
that says where they belong, on create and on update, and nothing is stored. Bridle's own
environment keys `bridle.sandbox_disk_bytes` and `bridle.sandbox_driver` are a 400 too unless the
operator enables them (the test server does not)."""

from __future__ import annotations

import anthropic
import pytest

from conftest import MODEL, assert_api_error, uniq

KEYS = ["sandbox0.managed_agents.engine", "sandbox0.managed_agents.role", "sandbox0.managed_agents.other"]


def expect_reserved_400(fn, key: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as ei:
        fn()
    err = assert_api_error(ei.value, 400, "invalid_request_error")
    assert key in err["message"], err["message"]
    assert "only supported on vault metadata" in err["message"], err["message"]


@pytest.mark.parametrize("key", KEYS)
def test_agent_create_and_update(client, key):
    expect_reserved_400(lambda: client.beta.agents.create(name=uniq("a"), model=MODEL, metadata={key: "x"}), key)
    a = client.beta.agents.create(name=uniq("a"), model=MODEL, metadata={"team": "x"})
    expect_reserved_400(lambda: client.beta.agents.update(a.id, version=a.version, metadata={key: "x"}), key)
    assert client.beta.agents.retrieve(a.id).metadata == {"team": "x"}


@pytest.mark.parametrize("key", KEYS)
def test_environment_create_and_update(client, key):
    cfg = {"type": "cloud", "networking": {"type": "unrestricted"}}
    expect_reserved_400(lambda: client.beta.environments.create(name=uniq("e"), config=cfg, metadata={key: "x"}), key)
    e = client.beta.environments.create(name=uniq("e"), config=cfg)
    expect_reserved_400(lambda: client.beta.environments.update(e.id, metadata={key: "x"}), key)
    assert key not in client.beta.environments.retrieve(e.id).metadata


@pytest.mark.parametrize("key", KEYS)
def test_credential_create_and_update(client, key):
    v = client.beta.vaults.create(display_name=uniq("v"))
    auth = {"type": "static_bearer", "token": uniq("tok")}
    expect_reserved_400(lambda: client.beta.vaults.credentials.create(v.id, auth=auth, metadata={key: "x"}), key)
    assert client.beta.vaults.credentials.list(v.id).data == []
    c = client.beta.vaults.credentials.create(v.id, auth=auth)
    expect_reserved_400(lambda: client.beta.vaults.credentials.update(c.id, vault_id=v.id, metadata={key: "x"}), key)
    assert key not in client.beta.vaults.credentials.retrieve(c.id, vault_id=v.id).metadata


def test_deleting_a_reserved_key_is_allowed(client):
    # A patch that removes a key sets nothing: it is never refused.
    a = client.beta.agents.create(name=uniq("a"), model=MODEL)
    u = client.beta.agents.update(a.id, version=a.version, metadata={"sandbox0.managed_agents.engine": None})
    assert u.metadata == {}


def test_vaults_still_take_them(client):
    v = client.beta.vaults.create(display_name=uniq("v"), metadata={"sandbox0.managed_agents.role": "llm"})
    assert v.metadata["sandbox0.managed_agents.role"] == "llm"


def refused_naming(key: str, reason: str):
    """A check that a call is a 400 whose message names `key` and says `reason`."""

    def expect_400(fn) -> None:
        with pytest.raises(anthropic.BadRequestError) as ei:
            fn()
        err = assert_api_error(ei.value, 400, "invalid_request_error")
        assert key in err["message"], err["message"]
        assert reason in err["message"], err["message"]

    return expect_400


def test_environment_disk_quota_needs_the_operator(client):
    key = "bridle.sandbox_disk_bytes"
    cfg = {"type": "cloud", "networking": {"type": "unrestricted"}}
    expect_400 = refused_naming(key, "sessions.sandbox_disk_bytes_max is 0")
    expect_400(lambda: client.beta.environments.create(name=uniq("e"), config=cfg, metadata={key: "33554432"}))
    e = client.beta.environments.create(name=uniq("e"), config=cfg)
    expect_400(lambda: client.beta.environments.update(e.id, metadata={key: "33554432"}))
    assert key not in client.beta.environments.retrieve(e.id).metadata


def test_environment_sandbox_driver_needs_the_operator(client):
    key = "bridle.sandbox_driver"
    cfg = {"type": "cloud", "networking": {"type": "unrestricted"}}
    expect_400 = refused_naming(key, "sessions.sandbox_drivers_allowed is empty")
    expect_400(lambda: client.beta.environments.create(name=uniq("e"), config=cfg, metadata={key: "gvisor"}))
    e = client.beta.environments.create(name=uniq("e"), config=cfg)
    expect_400(lambda: client.beta.environments.update(e.id, metadata={key: "bubblewrap"}))
    assert key not in client.beta.environments.retrieve(e.id).metadata
    # Never a session's own key.
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name=uniq("a"), model=MODEL, metadata={key: "gvisor"})
    assert "only supported on environment metadata" in assert_api_error(ei.value, 400, "invalid_request_error")["message"]
