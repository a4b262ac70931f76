"""Fixtures for the end-to-end session suite.

tests/e2e_sessions.rs starts the fake model server and real `bridle serve` processes, then runs
this suite with pytest once per harness (BRIDLE_E2E_ENGINE=claude|codex). Environment:

  BRIDLE_E2E_ENGINE          claude | codex | openai-agents
  BRIDLE_BASE_URL, BRIDLE_API_KEY, BRIDLE_E2E_SERVER_LOG, BRIDLE_E2E_SANDBOX_DIR
                             the main server (default runtime idle time)
  BRIDLE_E2E_IDLE_URL, BRIDLE_E2E_IDLE_KEY, BRIDLE_E2E_IDLE_LOG, BRIDLE_E2E_IDLE_SANDBOX_DIR
                             a server that stops runtimes after 2 s idle
  BRIDLE_E2E_NORUNTIME_URL, BRIDLE_E2E_NORUNTIME_KEY, BRIDLE_E2E_NORUNTIME_LOG
                             a server whose runtimes dir is empty
  BRIDLE_E2E_FAKE_URL, BRIDLE_E2E_FAKE_TOKEN
                             the fake model server and the token it requires

Without BRIDLE_E2E_FAKE_URL (e.g. when the API suite runs `pytest tests/python`), nothing here
is collected: these tests need the stack the Rust runner builds.
"""

from __future__ import annotations

import os

import pytest

from .lib import Fake, Stack

for _k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_BETA"):
    os.environ.pop(_k, None)

if not os.environ.get("BRIDLE_E2E_FAKE_URL"):
    collect_ignore_glob = ["test_*.py"]


def _need(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        raise pytest.UsageError(f"{name} is not set; run this suite through `cargo test --test e2e_sessions`")
    return v


@pytest.fixture(scope="session")
def engine() -> str:
    return _need("BRIDLE_E2E_ENGINE")


@pytest.fixture(scope="session")
def fake() -> Fake:
    return Fake(_need("BRIDLE_E2E_FAKE_URL"), _need("BRIDLE_E2E_FAKE_TOKEN"))


@pytest.fixture(scope="session")
def stack(fake, engine) -> Stack:
    return Stack(_need("BRIDLE_BASE_URL"), _need("BRIDLE_API_KEY"), os.environ.get("BRIDLE_E2E_SERVER_LOG"),
                 os.environ.get("BRIDLE_E2E_SANDBOX_DIR"), fake, engine)


@pytest.fixture(scope="session")
def idle_stack(fake, engine) -> Stack:
    return Stack(_need("BRIDLE_E2E_IDLE_URL"), _need("BRIDLE_E2E_IDLE_KEY"), os.environ.get("BRIDLE_E2E_IDLE_LOG"),
                 os.environ.get("BRIDLE_E2E_IDLE_SANDBOX_DIR"), fake, engine)


@pytest.fixture(scope="session")
def noruntime_stack(fake) -> Stack:
    return Stack(_need("BRIDLE_E2E_NORUNTIME_URL"), _need("BRIDLE_E2E_NORUNTIME_KEY"),
                 os.environ.get("BRIDLE_E2E_NORUNTIME_LOG"), None, fake, "claude")


@pytest.fixture
def model(engine, request) -> str:
    """A model name unique to this test (fake scenarios are keyed on it)."""
    import uuid
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"e2e-{engine}-{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def sessions():
    """Sessions opened by a test; their streams are closed afterwards."""
    live: list = []
    yield live
    for s in live:
        s.close()
