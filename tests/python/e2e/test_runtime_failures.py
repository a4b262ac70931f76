"""Failures that are not retries, for one harness (BRIDLE_E2E_ENGINE):

* the model refuses the vault's credential: the runtime gives up for good, the session ends
  with `session.error {retry_status: terminal}` then `session.status_terminated`, and accepts
  no further events;
* the runtime process dies mid-turn (not a sandbox limit): a clear `session.error`, the turn
  ends with `retries_exhausted`, and the next message starts the runtime again;
* the runtime dies while a tool call waits on the user (confirmation or custom tool): the
  `session.error` names the call that can no longer be answered, a late answer is a 400.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import anthropic
import pytest

from .lib import TURN_TIMEOUT, Live, is_idle, text_of, uniq


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind]


# ---------------------------------------------------------------------------------------------
# the terminal path: refused credentials
# ---------------------------------------------------------------------------------------------


def test_refused_credential_terminates_the_session(stack, model, sessions):
    # The provider refuses the vault's key (revoked, say): 401 on every request. `should_retry:
    # false` is the provider's `x-should-retry` header, which keeps Claude Code from backing off
    # for minutes before it gives up.
    stack.fake.set_scenario(model, {"fail_always": {"status": 401, "should_retry": False}})
    s = stack.session(model)
    sessions.append(s)
    start = s.message("Hello?")
    # Runtimes retry a 401 a few times at most; the bound covers claude's backoff.
    end, last = _wait_terminal(s, start)
    evs = s.snapshot(start)[: end - start + 1]
    s.check(last["type"] == "session.status_terminated",
            f"refused credentials should terminate the session, the turn ended with {last}")
    terminal = [e for e in of_type(evs, "session.error")
                if ((e.get("error") or {}).get("retry_status") or {}).get("type") == "terminal"]
    s.check(len(terminal) == 1, f"one session.error with retry_status terminal, got {len(terminal)}")
    s.expect_order(evs, ["user.message", "session.status_running", lambda e: e in terminal,
                         "session.status_terminated"], "the terminal path")
    err = terminal[0]["error"]
    s.check(bool(err.get("type")) and bool((err.get("message") or "").strip()),
            f"the terminal error has a type and a message: {err}")
    s.check(not of_type(evs, "agent.message"), "no agent.message when the model refused every request")
    got = stack.client.beta.sessions.retrieve(s.id)
    s.check(got.status == "terminated", f"session status after the terminal error: {got.status}")
    # A terminated session takes no new work, with a clear error in the envelope.
    try:
        s.send({"type": "user.message", "content": [{"type": "text", "text": "again?"}]})
    except anthropic.APIStatusError as e:
        body = e.response.json()
        s.check(e.status_code in (400, 409), f"status for a message to a terminated session: {e.status_code}")
        s.check(body.get("type") == "error" and "terminated" in body["error"]["message"],
                f"error envelope for a message to a terminated session: {body}")
    else:
        raise s.fail("a terminated session accepted a user.message")


def _wait_terminal(s: Live, start: int) -> tuple[int, dict]:
    """The first terminated or idle status from `start` (wait_for treats both as failures of
    the turn, so this scans the stream itself)."""
    deadline = time.monotonic() + 150
    while True:
        evs = s.snapshot(start)
        for i, e in enumerate(evs):
            if e.get("type") in ("session.status_terminated", "session.status_idle"):
                return start + i, e
        if time.monotonic() > deadline:
            raise s.fail("timed out waiting for session.status_terminated")
        if s.error is not None:
            raise s.fail(f"stream failed while waiting for session.status_terminated: {s.error!r}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# a runtime crash mid-turn
# ---------------------------------------------------------------------------------------------


def processes():
    """(pid, /proc status text, command line with spaces) of every process we can read."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(d.name), status, cmd


def status_field(status: str, name: str) -> int:
    """The first number of a `Name:` line of /proc/PID/status (-1 when absent)."""
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{name}:")), -1)


def resident_runtime_pids(server_pid: int) -> list[int]:
    """The server's child processes running the resident openai-agents runtime."""
    return [pid for pid, status, cmd in processes()
            if status_field(status, "PPid") == server_pid and "bridle_agents_runtime" in cmd]


def test_runtime_crash_mid_turn_is_reported_and_recovered(stack, engine, model, sessions):
    after = f"Back after the crash, {uniq('w')}."
    if engine == "openai-agents":
        # Sandbox as tool: the runtime is one resident process outside any sandbox; kill it
        # while the model is still streaming the reply.
        slow = " ".join(f"word{i}" for i in range(1, 41))
        stack.fake.set_scenario(model, {"turns": [{"text": slow, "chunk_delay_ms": 500}, {"text": after}]})
    else:
        # Agent in sandbox: the agent's own bash tool kills the runtime process (the shell's
        # parent) with SIGKILL; nothing here touches a sandbox limit.
        stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": "kill -9 $PPID"}], "text": "unreachable"},
                                                  {"text": after}]})
    s = stack.session(model)
    sessions.append(s)
    start = s.message("Do the thing.")
    if engine == "openai-agents":
        s.wait_type("session.status_running", start)
        server_pid = int(os.environ["BRIDLE_E2E_SERVER_PID"])
        deadline = time.monotonic() + 30
        while len(stack.fake.requests(model)) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a few deltas into the reply
        pids = resident_runtime_pids(server_pid)
        s.check(len(pids) == 1, f"expected one resident openai-agents runtime under pid {server_pid}, got {pids}")
        os.kill(pids[0], signal.SIGKILL)
    end, idle = s.wait_idle(start, "retries_exhausted", timeout=TURN_TIMEOUT)
    evs = s.snapshot(start)[: end - start + 1]
    errs = of_type(evs, "session.error")
    s.check(len(errs) == 1, f"one session.error for the crash, got {len(errs)}")
    err = errs[0]["error"]
    s.check(err.get("type") == "unknown_error", f"crash error type {err.get('type')!r}")
    s.check((err.get("retry_status") or {}).get("type") == "exhausted", f"retry_status {err.get('retry_status')}")
    msg = err.get("message") or ""
    s.check("exited" in msg and "limit" not in msg,
            f"the crash error should say the runtime died mid-turn (and name no limit): {msg!r}")
    s.check(stack.client.beta.sessions.retrieve(s.id).status == "idle", "the session is idle after the crash")
    # The next message starts the runtime again and is answered. (The crashed turn may or may
    # not be in the runtime's history, so the fake answers every turn the same from here.)
    stack.fake.set_scenario(model, {"turns": [{"text": after}]})
    evs2 = s.turn("Are you back?")
    msgs = of_type(evs2, "agent.message")
    s.check(bool(msgs) and text_of(msgs[-1]) == after, "the session did not recover after the crash")


# ---------------------------------------------------------------------------------------------
# a runtime that dies while a tool call waits on the user
# ---------------------------------------------------------------------------------------------

ASK_BASH = [{"type": "agent_toolset_20260401",
             "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]


def sandboxed_runtime_pids(workspace: Path, program: str) -> list[int]:
    """The `program` processes (the agent runtime) of the sandbox whose workspace is
    `workspace`: each sandbox runs as its own host uid, which owns its workspace. The sandbox's
    init and bubblewrap are left alone."""
    uid = workspace.stat().st_uid
    out = []
    for pid, status, cmd in processes():
        argv0 = cmd.split(" ")[0]
        if status_field(status, "Uid") == uid and program in argv0 \
                and not argv0.endswith(("bwrap", "bridle-sandbox-init")):
            out.append(pid)
    return out


def gvisor_runtime_processes(sandbox_dir: Path, workspace: Path, program: str) -> list[tuple[str, str, int]]:
    """The `program` processes of the gVisor sandbox whose workspace is `workspace`, as
    (runsc root, sandbox id, pid inside): on gVisor the agent runs on gVisor's kernel, not as
    host processes, so `runsc ps` (UID PID PPID C TTY STIME TIME CMD) of each sandbox of the
    server's runsc roots finds them, by the sandbox's uid (which owns its workspace)."""
    uid = str(workspace.stat().st_uid)
    found = []
    for root in sandbox_dir.glob("runsc-*"):
        ids = subprocess.run(["runsc", f"--root={root}", "list", "-quiet"],
                             capture_output=True, text=True).stdout.split()
        for sid in ids:
            table = subprocess.run(["runsc", f"--root={root}", "ps", sid], capture_output=True, text=True).stdout
            for row in table.splitlines()[1:]:
                cols = row.split()
                if len(cols) >= 8 and cols[0] == uid and program in cols[7]:
                    found.append((str(root), sid, int(cols[1])))
    return found


def kill_sandboxed_runtime(stack, session_id: str, program: str) -> bool:
    """SIGKILL the runtime processes in a session's sandbox; whether there were any."""
    workspace = stack.workspace(session_id)
    if os.environ.get("BRIDLE_E2E_SANDBOX_DRIVER") == "gvisor":
        procs = gvisor_runtime_processes(Path(stack.sandbox_dir), workspace, program)
        for root, sid, pid in procs:
            subprocess.run(["runsc", f"--root={root}", "kill", f"--pid={pid}", sid, "KILL"], capture_output=True)
        return bool(procs)
    pids = sandboxed_runtime_pids(workspace, program)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # a child that went with its parent
    return bool(pids)


WEATHER = {"type": "custom", "name": "get_weather", "description": "Get the current weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.mark.parametrize("waits_on", ["confirmation", "custom_tool"])
def test_runtime_killed_while_a_tool_call_waits(stack, engine, model, sessions, waits_on):
    """The runtime holding a call that waits on the user (an `always_ask` confirmation, or a
    custom tool) dies (SIGKILL): the turn ends in the open (a session.error naming the call,
    then `retries_exhausted`), a late answer is refused with a 400, and the next message is
    answered."""
    after = f"Fresh start, {uniq('w')}."
    if waits_on == "confirmation":
        call, tools, kind = {"command": "echo never-confirmed"}, ASK_BASH, "agent.tool_use"
        answer_type, id_field, extra = "user.tool_confirmation", "tool_use_id", {"result": "allow"}
    else:
        call, tools, kind = ({"custom": "get_weather", "input": {"city": "Paris"}},
                             [{"type": "agent_toolset_20260401"}, WEATHER], "agent.custom_tool_use")
        answer_type, id_field = "user.custom_tool_result", "custom_tool_use_id"
        extra = {"content": [{"type": "text", "text": "sunny"}]}
    stack.fake.set_scenario(model, {"turns": [{"tools": [call], "text": "unreachable"}]})
    s = stack.session(model, tools=tools)
    sessions.append(s)
    start = s.message("Go on.")
    _, use = s.wait_type(kind, start)
    i, idle = s.wait_idle(start, "requires_action")
    s.check((idle.get("stop_reason") or {}).get("event_ids") == [use["id"]], f"waiting on {idle}")
    if engine == "openai-agents":
        pids = resident_runtime_pids(int(os.environ["BRIDLE_E2E_SERVER_PID"]))
        s.check(len(pids) == 1, f"expected one resident openai-agents runtime, got {pids}")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    else:
        s.check(kill_sandboxed_runtime(stack, s.id, engine),
                f"no runtime process found in the sandbox of {stack.workspace(s.id)}")
    end, _ = s.wait_idle(i + 1, "retries_exhausted", timeout=TURN_TIMEOUT)
    evs = s.snapshot(i + 1)[: end - i]
    errs = of_type(evs, "session.error")
    s.check(len(errs) == 1, f"one session.error for the lost call, got {len(errs)}")
    err = errs[0]["error"]
    s.check(err.get("type") == "unknown_error", f"error type {err.get('type')!r}")
    s.check((err.get("retry_status") or {}).get("type") == "exhausted", f"retry_status {err.get('retry_status')}")
    msg = err.get("message") or ""
    s.check(use["id"] in msg and "can no longer be answered" in msg,
            f"the error should name the call that can no longer be answered: {msg!r}")
    s.check(stack.client.beta.sessions.retrieve(s.id).status == "idle", "the session is idle after the crash")
    # The answer comes too late: a 400 in the error envelope, nothing stored.
    try:
        s.send({"type": answer_type, id_field: use["id"], **extra})
    except anthropic.BadRequestError as e:
        body = e.response.json()
        s.check(body.get("type") == "error" and body["error"].get("type") == "invalid_request_error"
                and "not waiting" in body["error"].get("message", ""), f"late answer's error envelope: {body}")
    else:
        raise s.fail("an answer for a call whose runtime died was accepted")
    # The next message starts the runtime again and is answered.
    stack.fake.set_scenario(model, {"turns": [{"text": after}]})
    evs2 = s.turn("Are you there?")
    msgs = of_type(evs2, "agent.message")
    s.check(bool(msgs) and text_of(msgs[-1]) == after, "the session did not recover after the lost call")
