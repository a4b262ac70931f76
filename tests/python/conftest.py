"""Shared fixtures for the Managed Agents API compatibility suite.

The suite drives a live `bridle serve` with the official `anthropic` SDK. It is started by
tests/api_python_sdk.rs, which sets BRIDLE_BASE_URL and BRIDLE_API_KEY. Run by hand with:

    BRIDLE_BASE_URL=http://127.0.0.1:PORT BRIDLE_API_KEY=KEY tests/.venv/bin/python -m pytest tests/python
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any

import anthropic
import httpx
import pytest

# The SDK would read these from the environment and send them along (e.g. an
# ANTHROPIC_AUTH_TOKEN becomes `Authorization: Bearer ...`): never let the shell's values in.
for _k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_BETA"):
    os.environ.pop(_k, None)

BASE_URL = os.environ.get("BRIDLE_BASE_URL", "")
API_KEY = os.environ.get("BRIDLE_API_KEY", "")
BETA = "managed-agents-2026-04-01"
MODEL = "claude-sonnet-4-6"


@pytest.fixture(autouse=True)
def _require_server() -> None:
    # A fixture, not pytest_configure: suites in subdirectories (e.g. e2e/) inherit this
    # conftest and have their own requirements. Missing settings fail, never skip.
    if not BASE_URL or not API_KEY:
        pytest.fail(
            "BRIDLE_BASE_URL and BRIDLE_API_KEY must point at a running `bridle serve` "
            "(cargo test -p bridle --test api_python_sdk sets them up)",
            pytrace=False,
        )


def uniq(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_client(**kw: Any) -> anthropic.Anthropic:
    args: dict[str, Any] = dict(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30.0)
    args.update(kw)
    return anthropic.Anthropic(**args)


@pytest.fixture(scope="session")
def client() -> anthropic.Anthropic:
    return make_client()


@pytest.fixture(scope="session")
def raw() -> httpx.Client:
    """A plain HTTP client with the right headers, to see exact bodies and headers."""
    with httpx.Client(
        base_url=BASE_URL,
        headers={"x-api-key": API_KEY, "anthropic-beta": BETA, "anthropic-version": "2023-06-01"},
        timeout=30.0,
    ) as c:
        yield c


@pytest.fixture
def environment(client: anthropic.Anthropic):
    return client.beta.environments.create(
        name=uniq("env"), config={"type": "cloud", "networking": {"type": "unrestricted"}}
    )


@pytest.fixture
def agent(client: anthropic.Anthropic):
    return client.beta.agents.create(name=uniq("agent"), model=MODEL)


@pytest.fixture
def session(client: anthropic.Anthropic, agent, environment):
    return client.beta.sessions.create(agent=agent.id, environment_id=environment.id)


# ---------------------------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------------------------


def assert_envelope(status: int, headers: Any, body: Any, want_status: int | tuple[int, ...],
                    want_type: str | tuple[str, ...] | None = None) -> dict:
    """Check Anthropic's error envelope and the request-id header. Returns the `error` object."""
    wants = want_status if isinstance(want_status, tuple) else (want_status,)
    assert status in wants, f"status {status}, wanted {wants}; body: {body!r}"
    if isinstance(body, (bytes, str)):
        body = json.loads(body)
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert body.get("type") == "error", f"envelope type must be 'error': {body!r}"
    err = body.get("error")
    assert isinstance(err, dict), f"envelope lacks an error object: {body!r}"
    assert isinstance(err.get("type"), str) and err["type"], f"error.type missing: {body!r}"
    if want_type is not None:
        types = want_type if isinstance(want_type, tuple) else (want_type,)
        assert err["type"] in types, f"error.type {err['type']!r}, wanted {types}: {body!r}"
    assert isinstance(err.get("message"), str) and err["message"].strip(), f"empty message: {body!r}"
    rid = body.get("request_id")
    assert isinstance(rid, str) and rid.startswith("req_"), f"request_id must be req_...: {body!r}"
    hdr = headers.get("request-id")
    assert hdr, f"missing request-id header (headers: {dict(headers)!r})"
    assert hdr == rid, f"request-id header {hdr!r} differs from body request_id {rid!r}"
    return err


def assert_api_error(exc: anthropic.APIStatusError, want_status: int | tuple[int, ...],
                     want_type: str | tuple[str, ...] | None = None) -> dict:
    return assert_envelope(exc.status_code, exc.response.headers, exc.body, want_status, want_type)


def assert_raw_error(resp: httpx.Response, want_status: int | tuple[int, ...],
                     want_type: str | tuple[str, ...] | None = None) -> dict:
    try:
        body = resp.json()
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"error body is not JSON ({e}): {resp.status_code} {resp.text!r}")
    return assert_envelope(resp.status_code, resp.headers, body, want_status, want_type)


def parse_ts(value: Any) -> datetime:
    """RFC 3339 timestamp (string or already-parsed datetime) → aware datetime."""
    if isinstance(value, datetime):
        dt = value
    else:
        assert isinstance(value, str) and value, f"not a timestamp: {value!r}"
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert dt.tzinfo is not None, f"timestamp without a timezone: {value!r}"
    return dt


def collect_all(page) -> list:
    """Follow next_page through the SDK's auto-pagination."""
    return list(page)
