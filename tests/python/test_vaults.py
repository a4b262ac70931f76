"""client.beta.vaults and client.beta.vaults.credentials. Secrets are write-only."""

from __future__ import annotations

import anthropic
import pytest

from conftest import assert_api_error, parse_ts, uniq


class SecretWatch:
    """Remembers every secret we send and checks every response body we see for them."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.bodies_checked = 0

    def new(self, label: str) -> str:
        s = f"SECRET-{label}-{uniq('s')}"
        self.secrets.append(s)
        return s

    def check(self, raw) -> object:
        text = raw.http_response.text
        for s in self.secrets:
            assert s not in text, f"secret {s!r} leaked in {raw.http_request.method} {raw.http_request.url}: {text}"
        self.bodies_checked += 1
        return raw.parse()


@pytest.fixture
def watch() -> SecretWatch:
    return SecretWatch()


@pytest.fixture
def vault(client):
    return client.beta.vaults.create(display_name=uniq("vault"))


def test_vault_crud(client):
    name = uniq("vault")
    v = client.beta.vaults.create(display_name=name, metadata={"a": "1", "b": "2"})
    assert v.id.startswith("vlt_"), v.id
    assert v.type == "vault"
    assert v.display_name == name
    assert v.metadata == {"a": "1", "b": "2"}
    assert v.archived_at is None
    parse_ts(v.created_at)
    assert client.beta.vaults.retrieve(v.id).model_dump() == v.model_dump()

    u = client.beta.vaults.update(v.id, display_name=name + "-2", metadata={"a": None, "c": "3"})
    assert u.display_name == name + "-2"
    assert u.metadata == {"b": "2", "c": "3"}

    ids = [x.id for x in client.beta.vaults.list(limit=1)]
    assert v.id in ids and len(ids) == len(set(ids))

    a = client.beta.vaults.archive(v.id)
    assert a.archived_at is not None
    assert v.id not in {x.id for x in client.beta.vaults.list(limit=100)}
    assert v.id in {x.id for x in client.beta.vaults.list(limit=100, include_archived=True)}

    d = client.beta.vaults.delete(v.id)
    assert d.id == v.id and d.type == "vault_deleted"
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.vaults.retrieve(v.id)
    assert_api_error(ei.value, 404, "not_found_error")


def test_static_bearer_credential_lifecycle(client, vault, watch):
    creds = client.beta.vaults.credentials
    token = watch.new("bearer")
    c = watch.check(creds.with_raw_response.create(
        vault.id,
        display_name="GitHub MCP",
        metadata={"k": "v"},
        auth={"type": "static_bearer", "token": token, "mcp_server_url": "https://mcp.example.com/mcp"},
    ))
    assert c.id.startswith("vcrd_"), c.id
    assert c.type == "vault_credential"
    assert c.vault_id == vault.id
    assert c.display_name == "GitHub MCP"
    assert c.metadata == {"k": "v"}
    assert c.archived_at is None
    assert c.auth.type == "static_bearer"
    assert c.auth.mcp_server_url == "https://mcp.example.com/mcp"
    assert not hasattr(c.auth, "token") or getattr(c.auth, "token", None) is None

    got = watch.check(creds.with_raw_response.retrieve(c.id, vault_id=vault.id))
    assert got.model_dump() == c.model_dump()

    # Rotate the token; the new one is never echoed either.
    token2 = watch.new("bearer2")
    u = watch.check(creds.with_raw_response.update(
        c.id, vault_id=vault.id, display_name="renamed", metadata={"k": None, "x": "y"},
        auth={"type": "static_bearer", "token": token2},
    ))
    assert u.display_name == "renamed"
    assert u.metadata == {"x": "y"}
    assert u.auth.mcp_server_url == "https://mcp.example.com/mcp"  # immutable, preserved

    page = watch.check(creds.with_raw_response.list(vault.id))
    assert [x.id for x in page.data] == [c.id]

    a = watch.check(creds.with_raw_response.archive(c.id, vault_id=vault.id))
    assert a.archived_at is not None
    assert [x.id for x in creds.list(vault.id)] == []
    assert [x.id for x in watch.check(creds.with_raw_response.list(vault.id, include_archived=True)).data] == [c.id]

    d = creds.delete(c.id, vault_id=vault.id)
    assert d.id == c.id and d.type == "vault_credential_deleted"
    with pytest.raises(anthropic.NotFoundError) as ei:
        creds.retrieve(c.id, vault_id=vault.id)
    assert_api_error(ei.value, 404, "not_found_error")
    watch.check(client.beta.vaults.with_raw_response.retrieve(vault.id))
    assert watch.bodies_checked >= 7


def test_mcp_oauth_credential(client, vault, watch):
    creds = client.beta.vaults.credentials
    access = watch.new("access")
    refresh = watch.new("refresh")
    secret = watch.new("client-secret")
    c = watch.check(creds.with_raw_response.create(
        vault.id,
        auth={
            "type": "mcp_oauth",
            "access_token": access,
            "mcp_server_url": "https://oauth-mcp.example.com/sse",
            "expires_at": "2030-01-01T00:00:00Z",
            "refresh": {
                "client_id": "client-123",
                "refresh_token": refresh,
                "token_endpoint": "https://auth.example.com/token",
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": secret},
                "scope": "read write",
            },
        },
    ))
    assert c.auth.type == "mcp_oauth"
    assert c.auth.mcp_server_url == "https://oauth-mcp.example.com/sse"
    assert parse_ts(c.auth.expires_at) == parse_ts("2030-01-01T00:00:00Z")
    r = c.auth.refresh
    assert r.client_id == "client-123"
    assert r.token_endpoint == "https://auth.example.com/token"
    assert r.token_endpoint_auth.type == "client_secret_basic"
    assert r.scope == "read write"

    new_access = watch.new("access2")
    new_refresh = watch.new("refresh2")
    u = watch.check(creds.with_raw_response.update(
        c.id, vault_id=vault.id,
        auth={"type": "mcp_oauth", "access_token": new_access, "refresh": {"refresh_token": new_refresh}},
    ))
    assert u.auth.type == "mcp_oauth"
    assert u.auth.refresh.client_id == "client-123"
    watch.check(creds.with_raw_response.retrieve(c.id, vault_id=vault.id))
    watch.check(creds.with_raw_response.list(vault.id))
    watch.check(creds.with_raw_response.archive(c.id, vault_id=vault.id))


def test_environment_variable_credential(client, vault, watch):
    creds = client.beta.vaults.credentials
    value = watch.new("envvar")
    c = watch.check(creds.with_raw_response.create(
        vault.id,
        display_name="stripe",
        auth={
            "type": "environment_variable",
            "secret_name": "STRIPE_API_KEY",
            "secret_value": value,
            "networking": {"type": "limited", "allowed_hosts": ["api.stripe.com"]},
            "injection_location": {"header": True, "body": False},
        },
    ))
    assert c.auth.type == "environment_variable"
    assert c.auth.secret_name == "STRIPE_API_KEY"
    assert c.auth.networking.type == "limited"
    assert c.auth.networking.allowed_hosts == ["api.stripe.com"]
    assert c.auth.injection_location.header is True
    assert c.auth.injection_location.body is False

    value2 = watch.new("envvar2")
    u = watch.check(creds.with_raw_response.update(
        c.id, vault_id=vault.id,
        auth={"type": "environment_variable", "secret_value": value2, "networking": {"type": "unrestricted"}},
    ))
    assert u.auth.secret_name == "STRIPE_API_KEY"  # immutable
    assert u.auth.networking.type == "unrestricted"
    watch.check(creds.with_raw_response.retrieve(c.id, vault_id=vault.id))
    watch.check(creds.with_raw_response.list(vault.id))


def test_credential_defaults_for_env_var_injection(client, vault, watch):
    value = watch.new("envvar-default")
    c = watch.check(client.beta.vaults.credentials.with_raw_response.create(
        vault.id,
        auth={"type": "environment_variable", "secret_name": "TOKEN", "secret_value": value,
              "networking": {"type": "unrestricted"}},
    ))
    loc = c.auth.injection_location
    assert isinstance(loc.header, bool) and isinstance(loc.body, bool)


def test_credentials_pagination(client, vault):
    ids = [
        client.beta.vaults.credentials.create(
            vault.id, auth={"type": "static_bearer", "token": uniq("tok"),
                            "mcp_server_url": f"https://mcp{i}.example.com/"}
        ).id
        for i in range(3)
    ]
    first = client.beta.vaults.credentials.list(vault.id, limit=2)
    assert len(first.data) == 2 and first.next_page
    every = [c.id for c in client.beta.vaults.credentials.list(vault.id, limit=2)]
    assert sorted(every) == sorted(ids)


def test_credential_in_unknown_vault_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.vaults.credentials.create(
            "vlt_011CZkZDLs7fYzm1hXNPeRjv",
            auth={"type": "static_bearer", "token": "t", "mcp_server_url": "https://x.example.com"},
        )
    assert_api_error(ei.value, 404, "not_found_error")


def test_credential_of_other_vault_is_404(client, vault):
    other = client.beta.vaults.create(display_name=uniq("vault"))
    c = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": uniq("t"), "mcp_server_url": "https://x.example.com"})
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.credentials.retrieve(c.id, vault_id=other.id)


def test_secrets_never_listed_anywhere(client, raw, vault, watch):
    """Create one credential of each kind, then read every listing route raw."""
    creds = client.beta.vaults.credentials
    watch.check(creds.with_raw_response.create(
        vault.id, auth={"type": "static_bearer", "token": watch.new("a"), "mcp_server_url": "https://a.example.com"}))
    watch.check(creds.with_raw_response.create(
        vault.id, auth={"type": "mcp_oauth", "access_token": watch.new("b"), "mcp_server_url": "https://b.example.com"}))
    watch.check(creds.with_raw_response.create(
        vault.id, auth={"type": "environment_variable", "secret_name": "C", "secret_value": watch.new("c"),
                        "networking": {"type": "unrestricted"}}))
    for path in (f"/v1/vaults/{vault.id}/credentials?include_archived=true&limit=100",
                 f"/v1/vaults/{vault.id}", "/v1/vaults?include_archived=true&limit=100"):
        r = raw.get(path)
        assert r.status_code == 200, r.text
        for s in watch.secrets:
            assert s not in r.text, f"secret leaked by GET {path}"


def _env_auth(name: str = "SERVICE_TOKEN", **over) -> dict:
    auth = {"type": "environment_variable", "secret_name": name, "secret_value": uniq("v"),
            "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]}}
    auth.update(over)
    return auth


@pytest.mark.parametrize("hosts,needle", [
    ([], "between 1 and 16"),
    ([f"h{i}.example.com" for i in range(17)], "between 1 and 16"),
    (["https://api.example.com"], "allowed_hosts[0]"),
    (["api.example.com:443"], "allowed_hosts[0]"),
    (["api.example.com/v1"], "allowed_hosts[0]"),
    (["ok.example.com", "::1"], "allowed_hosts[1]"),
    (["*.*.example.com"], "allowed_hosts[0]"),
    (["*.192.0.2.1"], "allowed_hosts[0]"),
    (["api.example.com", "API.example.com"], "listed twice"),
])
def test_environment_variable_hosts_are_checked(client, vault, hosts, needle):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.vaults.credentials.create(
            vault.id, auth=_env_auth(networking={"type": "limited", "allowed_hosts": hosts}))
    assert_api_error(e.value, 400, "invalid_request_error")
    assert needle in e.value.message, e.value.message


def test_environment_variable_hosts_accepted(client, vault):
    c = client.beta.vaults.credentials.create(vault.id, auth=_env_auth(
        networking={"type": "limited", "allowed_hosts": ["api.example.com", "*.example.net", "192.0.2.1"]}))
    assert c.auth.networking.allowed_hosts == ["api.example.com", "*.example.net", "192.0.2.1"]


@pytest.mark.parametrize("name", ["PATH", "HTTPS_PROXY", "https_proxy", "SSL_CERT_FILE", "BRIDLE_X", "1ABC", "A-B"])
def test_environment_variable_names_are_checked(client, vault, name):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.vaults.credentials.create(vault.id, auth=_env_auth(name))
    assert "auth.secret_name" in e.value.message, e.value.message


def test_injection_location_update_keeps_what_it_leaves_out(client, vault):
    creds = client.beta.vaults.credentials
    with pytest.raises(anthropic.BadRequestError) as e:
        creds.create(vault.id, auth=_env_auth(injection_location={"header": False, "body": False}))
    assert "injection_location" in e.value.message
    c = creds.create(vault.id, auth=_env_auth())
    assert (c.auth.injection_location.header, c.auth.injection_location.body) == (True, False)
    u = creds.update(c.id, vault_id=vault.id, auth={"type": "environment_variable", "injection_location": {"body": True}})
    assert (u.auth.injection_location.header, u.auth.injection_location.body) == (True, True)
    u = creds.update(c.id, vault_id=vault.id, auth={"type": "environment_variable", "injection_location": {"header": False}})
    assert (u.auth.injection_location.header, u.auth.injection_location.body) == (False, True)
    with pytest.raises(anthropic.BadRequestError) as e:
        creds.update(c.id, vault_id=vault.id, auth={"type": "environment_variable", "injection_location": {"body": False}})
    assert "at least one" in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:
        creds.update(c.id, vault_id=vault.id, auth={"type": "environment_variable",
                                                   "networking": {"type": "limited", "allowed_hosts": ["a.b:1"]}})
    assert "allowed_hosts[0]" in e.value.message
    # The refused updates changed nothing.
    got = creds.retrieve(c.id, vault_id=vault.id)
    assert (got.auth.injection_location.header, got.auth.injection_location.body) == (False, True)
    assert got.auth.networking.allowed_hosts == ["api.example.com"]


def test_one_credential_per_variable_across_a_sessions_vaults(client, agent, environment):
    creds = client.beta.vaults.credentials
    a = client.beta.vaults.create(display_name=uniq("vault-a"))
    b = client.beta.vaults.create(display_name=uniq("vault-b"))
    ca = creds.create(a.id, auth=_env_auth("SHARED_NAME"))
    cb = creds.create(b.id, auth=_env_auth("SHARED_NAME"))
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[a.id, b.id])
    assert ca.id in e.value.message and cb.id in e.value.message and "SHARED_NAME" in e.value.message, e.value.message
    # Each vault alone is fine.
    client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=[a.id])
