"""Sessions whose runtime cannot start: a clear `session.error` and `retries_exhausted`, never
a hang. Run once (not per harness) by tests/e2e_sessions.rs."""

from __future__ import annotations

import pytest

from .lib import is_idle


def _failed_turn(s) -> dict:
    evs = s.turn("Hello?", stop="retries_exhausted", timeout=60)
    s.expect_order(evs, ["user.message", "session.status_running", "session.error",
                         is_idle("retries_exhausted")], "a turn whose runtime cannot start")
    errs = [e for e in evs if e["type"] == "session.error"]
    s.check(len(errs) == 1, f"one session.error, got {len(errs)}")
    err = errs[0]["error"]
    s.check((err.get("retry_status") or {}).get("type") == "exhausted", f"retry_status: {err.get('retry_status')}")
    s.check(not [e for e in evs if e["type"].startswith("agent.")], "no agent events without a runtime")
    return err


def test_no_vault_and_no_default_llm(stack, model, sessions):
    s = stack.session(model, vault=False)
    sessions.append(s)
    err = _failed_turn(s)
    msg = err.get("message", "").lower()
    s.check("credential" in msg and "vault" in msg,
            f"the error should say a model credential / LLM vault is missing: {err}")
    s.check(len(stack.fake.requests(model)) == 0, "no model request without a credential")
    # The session is still usable: a second message fails the same way, it does not hang.
    err2 = _failed_turn(s)
    s.check(err2.get("message") == err.get("message"), "the same clear error on the next message")


@pytest.mark.parametrize("engine_name,program", [("claude", "claude"), ("codex", "codex")])
def test_missing_runtime(noruntime_stack, model, sessions, engine_name, program):
    stack = noruntime_stack
    s = stack.session(model, engine=engine_name)
    sessions.append(s)
    err = _failed_turn(s)
    msg = err.get("message", "")
    s.check("not installed" in msg and f"`{program}`" in msg and "bridle runtimes install" in msg,
            f"the error should name the missing runtime and the fix: {err}")
    s.check(len(stack.fake.requests(model)) == 0, "no model request without a runtime")
