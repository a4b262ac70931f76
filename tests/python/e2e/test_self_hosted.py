"""Self-hosted environments end to end: the official SDK's `EnvironmentWorker` (the pinned
`anthropic` package, unmodified) runs as separate processes, each in a working directory of its
own, against a real `bridle serve`; the sessions' tool calls run there, not in Bridle sandboxes.

Run by tests/self_hosted.rs once per harness (BRIDLE_E2E_ENGINE): openai-agents, whose tools run
outside its runtime, and claude and codex, whose plugins turn their runtimes' own workspace tools
off and offer the worker's (bash, read, write, edit, glob, grep) instead. It also sets:

  BRIDLE_E2E_BIN, BRIDLE_E2E_DATA_DIR   the `bridle` binary and the server's data dir, for
                                        `bridle environments keys create|revoke`
  BRIDLE_E2E_LEASE_SECS                 the server's `self_hosted.lease_secs`
  BRIDLE_E2E_TOOL_TIMEOUT_SECS          the server's `self_hosted.tool_timeout_secs`
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import anthropic
import httpx
import pytest

from .lib import Live, is_idle, uniq

if not os.environ.get("BRIDLE_E2E_BIN"):
    pytest.skip("run through `cargo test -p bridle --test self_hosted`", allow_module_level=True)

BETA = "managed-agents-2026-04-01"
LEASE_SECS = float(os.environ.get("BRIDLE_E2E_LEASE_SECS", "3"))

WORKER = r"""
import asyncio, logging, os, sys
import anthropic
from anthropic.lib.tools.agent_toolset import beta_agent_toolset_20260401
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
# argv[5], when given: a toolset tool this worker does not offer (the SDK's own `tools=` option).
without = sys.argv[5] if len(sys.argv) > 5 else ""
tools = (lambda env: [t for t in beta_agent_toolset_20260401(env) if t.name != without]) if without else None
async def main():
    client = anthropic.AsyncAnthropic(base_url=sys.argv[1], api_key="not-used-by-the-worker", max_retries=2)
    await client.beta.environments.work.worker(
        environment_id=sys.argv[2], environment_key=sys.argv[3], workdir=os.getcwd(),
        max_idle=1.0, memory_sync_interval=None, worker_id=sys.argv[4], tools=tools,
    ).run()
asyncio.run(main())
"""


def cli(*args: str) -> str:
    cmd = [os.environ["BRIDLE_E2E_BIN"], *args, "--data-dir", os.environ["BRIDLE_E2E_DATA_DIR"]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                         cwd=os.environ["BRIDLE_E2E_DATA_DIR"])
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip()


class Worker:
    """One `EnvironmentWorker` process in a directory of its own."""

    def __init__(self, base_url: str, env_id: str, key: str, name: str, without: str = ""):
        self.dir = Path(tempfile.mkdtemp(prefix=f"bridle-worker-{name}-"))
        self.log = Path(tempfile.mkstemp(prefix=f"bridle-worker-{name}-", suffix=".log")[1])
        self.name = name
        args = [base_url, env_id, key, name] + ([without] if without else [])
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER, *args],
                                         cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)

    def files(self) -> set[str]:
        return {p.name for p in self.dir.iterdir() if p.is_file()}

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
def self_hosted(stack):
    """A self_hosted environment and a key for it."""
    env = stack.client.beta.environments.create(name=uniq("selfhosted"), config={"type": "self_hosted"})
    key = cli("environments", "keys", "create", env.id, "--name", "e2e")
    return env.id, key


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def session(stack, env_id: str, model: str) -> Live:
    agent = stack.client.beta.agents.create(name=uniq("agent"), model=model,
                                            tools=[{"type": "agent_toolset_20260401"}])
    s = stack.client.beta.sessions.create(agent=agent.id, environment_id=env_id,
                                          vault_ids=[stack.llm_vault()])
    return Live(stack, s.id, model)


def file_command(name: str, content: str, sleep: float = 0) -> str:
    pause = f"sleep {sleep} && " if sleep else ""
    return f"{pause}printf '%s' {content} > {name} && echo wrote-{content}"


def of_type(evs: list[dict], t: str) -> list[dict]:
    return [e for e in evs if e.get("type") == t]


def test_a_tool_call_runs_on_the_worker(stack, model, sessions, self_hosted, workers):
    env_id, key = self_hosted
    w = Worker(stack.base_url, env_id, key, "one")
    workers.append(w)
    name, content = f"sh-{uuid.uuid4().hex[:8]}.txt", uniq("remote")
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": file_command(name, content)}],
                                               "text": "Done: {{tool_output}}"}]})
    s = session(stack, env_id, model)
    sessions.append(s)
    evs = s.turn(f"Create {name}.")
    use, answer, result, msg, _ = s.expect_order(
        evs, ["agent.tool_use", "user.tool_result", "agent.tool_result", "agent.message", is_idle("end_turn")],
        "a tool call answered by the worker")
    s.check(use.get("evaluated_permission") == "allow", f"evaluated_permission {use.get('evaluated_permission')!r}")
    s.check(answer.get("tool_use_id") == use["id"], f"user.tool_result answers {answer.get('tool_use_id')}")
    s.check(f"wrote-{content}" in json.dumps(answer.get("content")), f"worker output missing: {answer}")
    s.check(f"wrote-{content}" in json.dumps(result.get("content")), f"the runtime did not get it: {result}")
    s.check(f"wrote-{content}" in json.dumps(msg), f"the model did not get it: {msg}")
    s.check((w.dir / name).read_text() == content, f"{name} is not in the worker's directory {w.dir}")
    sandbox = Path(stack.sandbox_dir or "/nonexistent")
    s.check(not any(sandbox.rglob(name)), f"{name} appeared in a Bridle sandbox under {sandbox}")
    logged = [e for e in s.all_events() if e["type"] == "user.tool_result"]
    s.check(len(logged) == 1 and logged[0]["tool_use_id"] == use["id"], f"the event log's results: {logged}")
    # The worker's lease shows in the queue.
    items = [i for i in stack.client.beta.environments.work.list(env_id) if i.data.id == s.id]
    s.check(len(items) == 1, f"one work item for the session, got {items}")


def test_workspace_tools_run_on_the_worker(stack, model, sessions, self_hosted, workers):
    """Each harness offers the worker's tools by their toolset names (claude and codex in place of
    their runtimes' own): a `bash` and a `write` call run in the worker's directory, and the
    results reach the runtime and the model."""
    env_id, key = self_hosted
    w = Worker(stack.base_url, env_id, key, "tools")
    workers.append(w)
    sh_name, sh_content = f"bash-{uuid.uuid4().hex[:8]}.txt", uniq("viabash")
    wr_name, wr_content = f"write-{uuid.uuid4().hex[:8]}.txt", uniq("viawrite")
    bash_input = {"command": file_command(sh_name, sh_content)}
    write_input = {"file_path": wr_name, "content": wr_content}
    # `custom` names the offered tool by its toolset name (claude offers `mcp__workspace__bash`).
    stack.fake.set_scenario(model, {"turns": [
        {"tools": [{"custom": "bash", "input": bash_input}], "text": "Ran: {{tool_output}}"},
        {"tools": [{"custom": "write", "input": write_input}], "text": "Wrote: {{tool_output}}"},
    ]})
    s = session(stack, env_id, model)
    sessions.append(s)
    sandbox = Path(stack.sandbox_dir or "/nonexistent")
    for tool, given, name, content, said in [("bash", bash_input, sh_name, sh_content, f"wrote-{sh_content}"),
                                             ("write", write_input, wr_name, wr_content,
                                              f"wrote {len(wr_content)} bytes to {wr_name}")]:
        evs = s.turn(f"Use {tool} for {name}.")
        use, answer, result, msg, _ = s.expect_order(
            evs, ["agent.tool_use", "user.tool_result", "agent.tool_result", "agent.message", is_idle("end_turn")],
            f"a {tool} call answered by the worker")
        s.check(use.get("name") == tool, f"the tool use is named {use.get('name')!r}, not {tool!r}")
        s.check(use.get("input") == given, f"the worker gets the input as given: {use.get('input')}")
        s.check(use.get("evaluated_permission") == "allow", f"evaluated_permission {use.get('evaluated_permission')!r}")
        s.check(answer.get("tool_use_id") == use["id"], f"user.tool_result answers {answer.get('tool_use_id')}")
        s.check(result.get("tool_use_id") == use["id"], f"agent.tool_result answers {result.get('tool_use_id')}")
        s.check(said in json.dumps(answer.get("content")), f"worker output missing: {answer}")
        s.check(said in json.dumps(result.get("content")), f"the runtime did not get it: {result}")
        s.check(said in json.dumps(msg), f"the model did not get it: {msg}")
        s.check((w.dir / name).read_text() == content, f"{name} is not in the worker's directory {w.dir}")
        s.check(not any(sandbox.rglob(name)), f"{name} appeared in a Bridle sandbox under {sandbox}")
    # The runtime's own workspace tools are not offered to the model (they would run in Bridle's
    # sandbox): only the worker's.
    offered = set()
    for req in stack.fake.requests(model):
        for t in req["body"].get("tools") or []:
            offered.add(t.get("name") or t.get("type"))
    print(f"tools offered to the model ({stack.engine}): {sorted(offered)}")
    own = {"Bash", "Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "Glob", "Grep", "LS",
           "exec_command", "write_stdin", "shell", "shell_command", "apply_patch", "local_shell"}
    s.check(not offered & own, f"the runtime's own workspace tools are offered: {sorted(offered & own)}")


def test_an_asked_call_runs_on_the_worker_once_confirmed(stack, model, sessions, self_hosted, workers):
    """`always_ask` holds a worker's tool as it holds a built-in: the tool use says `ask`, the
    session idles `requires_action`, and the worker runs the call only after the user allows it."""
    env_id, key = self_hosted
    w = Worker(stack.base_url, env_id, key, "asked")
    workers.append(w)
    name, content = f"ask-{uuid.uuid4().hex[:8]}.txt", uniq("asked")
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"custom": "bash", "input": {"command": file_command(name, content)}}],
                                               "text": "Ran: {{tool_output}}"}]})
    agent = stack.client.beta.agents.create(
        name=uniq("agent"), model=model,
        tools=[{"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}])
    created = stack.client.beta.sessions.create(agent=agent.id, environment_id=env_id, vault_ids=[stack.llm_vault()])
    s = Live(stack, created.id, model)
    sessions.append(s)
    start = s.message("Run it.")
    _, use = s.wait_type("agent.tool_use", start)
    s.check(use.get("name") == "bash" and use.get("evaluated_permission") == "ask", f"tool use {use}")
    waiting, _ = s.wait_idle(start, "requires_action")
    s.check(not (w.dir / name).exists(), "the worker ran the call before it was confirmed")
    s.send({"type": "user.tool_confirmation", "tool_use_id": use["id"], "result": "allow"})
    end, _ = s.wait_idle(waiting + 1, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    answers = of_type(evs, "user.tool_result")
    s.check(len(answers) == 1 and answers[0]["tool_use_id"] == use["id"], f"one answer for the call: {answers}")
    s.check(f"wrote-{content}" in json.dumps(of_type(evs, "agent.message")), "the model did not get the output")
    s.check((w.dir / name).read_text() == content, f"{name} is not in the worker's directory {w.dir}")


def test_a_tool_the_worker_lacks_ends_with_an_error(stack, model, sessions, self_hosted, workers):
    """A worker built without `grep` (the SDK's `tools=` option) skips a `grep` call without a
    word: after `self_hosted.tool_timeout_secs` the call ends with an error result naming the
    setting, the runtime gets it, and the turn goes on."""
    env_id, key = self_hosted
    workers.append(Worker(stack.base_url, env_id, key, "lacking", without="grep"))
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"custom": "grep", "input": {"pattern": "x"}}],
                                               "text": "Searched: {{tool_output}}"}]})
    s = session(stack, env_id, model)
    sessions.append(s)
    timeout = float(os.environ.get("BRIDLE_E2E_TOOL_TIMEOUT_SECS", "600"))
    evs = s.turn("Search.", timeout=timeout + 120)
    use, result, msg, _ = s.expect_order(
        evs, ["agent.tool_use", "agent.tool_result", "agent.message", is_idle("end_turn")], "an unanswered call ended")
    s.check(use.get("name") == "grep", f"tool use {use}")
    s.check(result.get("tool_use_id") == use["id"] and result.get("is_error") is True, f"error result: {result}")
    s.check("tool_timeout_secs" in json.dumps(result.get("content")), f"the result names the setting: {result}")
    s.check(not of_type(evs, "user.tool_result"), "the worker answered a tool it does not have")
    s.check("tool_timeout_secs" in json.dumps(msg), f"the model did not get the error: {msg}")


def test_two_workers_share_ten_sessions(stack, model, sessions, self_hosted, workers):
    env_id, key = self_hosted
    a = Worker(stack.base_url, env_id, key, "a")
    b = Worker(stack.base_url, env_id, key, "b")
    workers += [a, b]
    lives, names = [], []
    for i in range(10):
        m = f"{model}-{i}"
        name, content = f"ten-{i}-{uuid.uuid4().hex[:6]}.txt", uniq(f"s{i}")
        stack.fake.set_scenario(m, {"turns": [{"tools": [{"command": file_command(name, content, 0.5)}],
                                                "text": "Done: {{tool_output}}"}]})
        s = session(stack, env_id, m)
        sessions.append(s)
        lives.append((s, s.message(f"Create {name}.")))
        names.append(name)
    for s, start in lives:
        s.wait_idle(start, "end_turn", timeout=240)
    fa, fb = a.files(), b.files()
    for s, name in zip([s for s, _ in lives], names):
        s.check((name in fa) != (name in fb), f"{name}: in worker a {name in fa}, in worker b {name in fb}")
        answers = [e for e in s.all_events() if e["type"] == "user.tool_result"]
        s.check(len(answers) == 1, f"served once: {len(answers)} user.tool_result events")
    assert fa and fb, f"the work was not spread: worker a ran {sorted(fa)}, worker b ran {sorted(fb)}"


def test_a_killed_worker_mid_call_does_not_lose_the_turn(stack, model, sessions, self_hosted, workers):
    env_id, key = self_hosted
    first = Worker(stack.base_url, env_id, key, "doomed")
    workers.append(first)
    name, content = f"kill-{uuid.uuid4().hex[:8]}.txt", uniq("survived")
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": file_command(name, content, 6)}],
                                               "text": "Done: {{tool_output}}"}]})
    s = session(stack, env_id, model)
    sessions.append(s)
    start = s.message(f"Create {name}.")
    _, use = s.wait_type("agent.tool_use", start)
    # Mid-call: the worker holds the item (active) and runs the 6 s command.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = [i for i in stack.client.beta.environments.work.list(env_id) if i.data.id == s.id]
        if items and items[0].state == "active":
            break
        time.sleep(0.2)
    else:
        raise s.fail(f"the worker never took the session's work item; worker log:\n{first.tail()}")
    time.sleep(1.0)
    first.kill9()
    s.check(name not in first.files(), "the killed worker finished the call before it was killed")
    second = Worker(stack.base_url, env_id, key, "survivor")
    workers.append(second)
    end, _ = s.wait_idle(start, "end_turn", timeout=120)
    evs = s.snapshot(start)[: end - start + 1]
    answers = of_type(evs, "user.tool_result")
    s.check(len(answers) == 1 and answers[0]["tool_use_id"] == use["id"], f"one answer for the call: {answers}")
    s.check(f"wrote-{content}" in json.dumps(answers[0].get("content")), f"the retried call's output: {answers}")
    s.check((second.dir / name).read_text() == content, "the next worker ran the call again")


def raw_client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30.0,
                        headers={"authorization": f"Bearer {key}", "anthropic-beta": BETA})


def test_bad_credentials_and_requests(stack, model, self_hosted):
    env_id, key = self_hosted
    other = stack.client.beta.environments.create(name=uniq("other"), config={"type": "self_hosted"})
    other_key = cli("environments", "keys", "create", other.id)
    work = lambda k: anthropic.Anthropic(base_url=stack.base_url, auth_token=k, max_retries=0).beta.environments.work  # noqa: E731

    # A wrong key: 401.
    with pytest.raises(anthropic.AuthenticationError, match="invalid"):
        work("sk-bridle-env-nope").poll(env_id)
    # Another environment's key: 403, naming the environment it belongs to.
    with pytest.raises(anthropic.PermissionDeniedError, match=f"belongs to environment `{other.id}`"):
        work(other_key).poll(env_id)
    # An environment key reaches its work queue only.
    with raw_client(stack.base_url, key) as c:
        r = c.get("/v1/agents")
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", r.text
    # A revoked key: 401 at once.
    assert work(other_key).poll(other.id) is None
    key_id = [line.split()[0] for line in cli("environments", "keys", "list", "--environment", other.id).splitlines()
              if line.startswith("envkey_")][0]
    cli("environments", "keys", "revoke", key_id)
    with pytest.raises(anthropic.AuthenticationError):
        work(other_key).poll(other.id)
    # A cloud environment has no work queue.
    cloud = stack.client.beta.environments.create(name=uniq("cloud"))
    with pytest.raises(anthropic.BadRequestError, match="only self_hosted environments have a work queue"):
        stack.client.beta.environments.work.poll(cloud.id)

    # A heartbeat for a lease that expired: 412 heartbeat_precondition_failed, with the lease.
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": "echo hi"}], "text": "ok"}]})
    s = session(stack, env_id, model)
    try:
        start = s.message("Run it.")
        s.wait_type("agent.tool_use", start)
        w = work(key)
        item = None
        for _ in range(50):
            item = w.poll(env_id, block_ms=500)
            if item is not None:
                break
        assert item is not None and item.data.id == s.id, item
        assert item.secret, "a poll answers the lease's secret"
        w.ack(item.id, environment_id=env_id)
        beat = w.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat="NO_HEARTBEAT")
        assert beat.lease_extended and beat.state == "active", beat
        time.sleep(beat.ttl_seconds + 1)
        with pytest.raises(anthropic.PreconditionFailedError) as e:
            w.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat=beat.last_heartbeat)
        assert e.value.error_code == "heartbeat_precondition_failed", e.value.body
        assert "expired" in str(e.value), e.value
        assert e.value.body["error"]["details"]["current_state"]["state"] == "queued", e.value.body
        # Nothing lost: the item is back in the queue for the next worker.
        again = w.poll(env_id, block_ms=500)
        assert again is not None and again.id == item.id, again
        w.stop(again.id, environment_id=env_id, force=True)
        with pytest.raises(anthropic.ConflictError, match="already stopped"):
            w.stop(again.id, environment_id=env_id, force=True)

        # A user.tool_result for no pending call: 400, nothing stored.
        before = len(s.all_events())
        for bad in ["sevt_00000000000000000000000000", use_id_of_result(s)]:
            with pytest.raises(anthropic.BadRequestError, match="not a pending tool call"):
                s.send({"type": "user.tool_result", "tool_use_id": bad,
                        "content": [{"type": "text", "text": "forged"}]})
        assert len(s.all_events()) == before
    finally:
        s.close()


def test_file_and_repository_resources_are_refused(stack, model, sessions, self_hosted):
    """Bridle cannot place a file or a clone on a worker's machine: a clear 400 at create and at
    add, instead of a resource the agent's tools would never see."""
    env_id, _ = self_hosted
    agent = stack.client.beta.agents.create(name=uniq("agent"), model=model,
                                            tools=[{"type": "agent_toolset_20260401"}])
    with pytest.raises(anthropic.BadRequestError,
                       match=r"resources\[0\]: `file` resources are not supported in self_hosted environments"):
        stack.client.beta.sessions.create(agent=agent.id, environment_id=env_id, vault_ids=[stack.llm_vault()],
                                          resources=[{"type": "file", "file_id": "file_00000000000000000000000000"}])
    s = session(stack, env_id, model)
    sessions.append(s)
    with pytest.raises(anthropic.BadRequestError, match=f"`file` resources are not supported .* `{env_id}`"):
        stack.client.beta.sessions.resources.add(s.id, type="file", file_id="file_00000000000000000000000000")
    assert list(stack.client.beta.sessions.resources.list(s.id)) == []


def use_id_of_result(s: Live) -> str:
    """The id of a call that is not pending: the message event of the session."""
    return next(e["id"] for e in s.all_events() if e["type"] == "user.message")


def test_tool_result_outside_self_hosted_is_refused(stack, model, sessions):
    s = stack.session(model)
    sessions.append(s)
    with pytest.raises(anthropic.BadRequestError, match="only valid in self_hosted environments"):
        s.send({"type": "user.tool_result", "tool_use_id": "sevt_00000000000000000000000000",
                "content": [{"type": "text", "text": "x"}]})


def round_trips(s: Live, n: int) -> list[float]:
    """Milliseconds from each `agent.tool_use` to its `agent.tool_result`, as stored."""
    evs = s.all_events()
    at = {e["id"]: e["processed_at"] for e in evs if e["type"] == "agent.tool_use"}
    out = []
    for e in evs:
        if e["type"] == "agent.tool_result" and e["tool_use_id"] in at:
            t0 = datetime.fromisoformat(at[e["tool_use_id"]].replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(e["processed_at"].replace("Z", "+00:00"))
            out.append((t1 - t0).total_seconds() * 1000)
    assert len(out) == n, f"{len(out)} round trips measured, expected {n}"
    return out


def test_benchmark_tool_round_trip(stack, model, sessions, self_hosted, workers):
    """Not an assertion on speed: prints p50/p99 of the tool-call round trip through a worker
    on loopback beside the local sandbox's (README "Self-hosted environments")."""
    env_id, key = self_hosted
    workers.append(Worker(stack.base_url, env_id, key, "bench"))
    n = int(os.environ.get("BRIDLE_E2E_BENCH_CALLS", "30")) + 1
    script = {"turns": [{"tools": [{"command": "echo x"}] * n, "text": "done"}]}
    results = {}
    for label, make in [("worker", lambda m: session(stack, env_id, m)), ("sandbox", stack.session)]:
        m = f"{model}-{label}"
        stack.fake.set_scenario(m, script)
        s = make(m)
        sessions.append(s)
        s.turn("Go.", timeout=600)
        first, *rest = round_trips(s, n)
        ms = sorted(rest)
        results[label] = (first, statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))])
    for label, (first, p50, p99) in results.items():
        # The first call also waits for a worker to poll the new work item (or for a sandbox).
        print(f"BENCH tool round trip via {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {n - 1} calls "
              f"after the first (first: {first:.0f} ms)")
