"""Delegated threads end to end, for one harness (BRIDLE_E2E_ENGINE): a coordinator agent's
runtime calls the delegation tool, Bridle runs the roster agent as a child thread of the
session (its own runtime, in the session's sandbox), and the child's final message is the
tool's result. Shown: the thread events in the session log, the child's own log and stream,
the final answer in the coordinator's `agent.message`; past the thread limit, an error the
model hears and a `thread_limit_error`."""

from __future__ import annotations

import json
import threading

import pytest

from .lib import is_idle, text_of, uniq

TOOL = "delegate_to_agent"
IN_SANDBOX = ("claude", "codex")


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind]


def coordinator_session(stack, model: str, helper_model: str):
    """A session of a coordinator whose roster is one helper agent on `helper_model`."""
    c = stack.client
    helper = c.beta.agents.create(name=uniq("helper"), model=helper_model, description="answers questions",
                                  tools=[{"type": "agent_toolset_20260401"}])
    return stack.session(model, agent_extra={"multiagent": {"type": "coordinator", "agents": [helper.id]}}), helper


def delegating(helper_name: str, message: str) -> dict:
    return {"turns": [{"tools": [{"custom": TOOL, "input": {"agent": helper_name, "message": message}}],
                       "text": "Coordinator: {{tool_output}}"}]}


def test_a_coordinator_delegates_to_a_thread(stack, engine, model, sessions):
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine} runs one resident runtime per session: coordinators are refused (test below)")
    helper_model = model + "-helper"
    stack.fake.set_scenario(helper_model, {"turns": [{"text": "The helper says 42 about {{last_user}}"}]})
    # The roster agent's name is unique: the coordinator's model calls it by name.
    s, helper = coordinator_session(stack, model, helper_model)
    sessions.append(s)
    stack.fake.set_scenario(model, delegating(helper.name, "the answer"))
    start = s.mark()
    s.message("Ask the helper.")
    end, _ = s.wait_idle(start, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    created = s.expect_order(evs, [
        "user.message", "session.status_running", "session.thread_created", "session.thread_status_running",
        "agent.thread_message_sent", "session.thread_status_idle", "agent.message", is_idle("end_turn"),
    ], "the delegation's events in the session log")
    tid = created[2]["session_thread_id"]
    s.check(tid.startswith("sthr_") and created[2]["agent_name"] == helper.name, f"thread_created: {created[2]}")
    s.check(created[4]["to_session_thread_id"] == tid and created[4]["content"][0]["text"] == "the answer",
            f"thread_message_sent: {created[4]}")
    final = text_of(of_type(evs, "agent.message")[-1])
    s.check(final.startswith("Coordinator:") and "The helper says 42 about the answer" in final,
            f"the coordinator's answer carries the helper's: {final!r}")
    s.check(not of_type(evs, "agent.custom_tool_use"), "the delegation is not a custom tool use the client answers")
    s.check(not of_type(evs, "session.error"), "no session.error")
    # The child's own log: its start, the message it received, its own run, its idle.
    threads = list(stack.client.beta.sessions.threads.list(s.id))
    s.check([t.id for t in threads][1:] == [tid], f"threads: {[t.id for t in threads]}")
    child = stack.client.beta.sessions.threads.retrieve(tid, session_id=s.id)
    s.check(child.parent_thread_id == threads[0].id and child.status == "idle", f"child thread: {child}")
    s.check(child.agent.id == helper.id, f"child agent: {child.agent}")
    log = [e.to_dict(mode="json") for e in stack.client.beta.sessions.threads.events.list(tid, session_id=s.id)]
    s.expect_order(log, [
        "session.thread_status_running", "agent.thread_message_received", "agent.message",
        "session.thread_status_idle",
    ], "the child thread's own log")
    s.check(text_of(of_type(log, "agent.message")[-1]) == "The helper says 42 about the answer",
            "the child's answer is in its log")
    s.check(not of_type(log, "agent.thread_message_sent"), "the coordinator's events stay in the session log")
    # The session log holds no child output.
    s.check(not any(e.get("id") in {x["id"] for x in log} for e in s.all_events()), "logs are disjoint")
    s.check(child.usage.input_tokens > 0 and child.stats.duration_seconds > 0,
            f"the child's own usage and stats: {child.usage} {child.stats}")
    # A delegated thread takes no client events.
    import anthropic
    with pytest.raises(anthropic.BadRequestError) as e:
        s.send({"type": "user.interrupt", "session_thread_id": tid})
    s.check("takes client events" in str(e.value), f"interrupt naming the child: {e.value}")
    # A child thread is archived on its own; the primary thread only with its session.
    archived = stack.client.beta.sessions.threads.archive(tid, session_id=s.id)
    s.check(archived.archived_at is not None and archived.status == "idle", f"archived child: {archived}")
    # An archived thread takes no follow-up.
    stack.fake.set_scenario(model, {"turns": [following_up(tid, "more")]})
    more = s.turn("Follow up.")
    final = text_of(of_type(more, "agent.message")[-1])
    s.check(f"thread `{tid}` is archived" in final, f"the model heard why: {final!r}")
    s.check_credentials()


def following_up(thread_id: str, message: str) -> dict:
    return {"tools": [{"custom": TOOL, "input": {"thread_id": thread_id, "message": message}}],
            "text": "Coordinator: {{tool_output}}"}


def test_a_follow_up_goes_on_in_the_same_thread(stack, engine, model, sessions):
    """The coordinator delegates twice to one thread: the second call names the thread the first
    result gave, the child's runtime (ended after its first turn) resumes with its context (its
    second model request carries the first exchange), the thread goes idle, running, idle again,
    and no second thread is created. A follow-up to a thread of another session is a tool error."""
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine}: coordinators are refused")
    helper_model = model + "-helper"
    stack.fake.set_scenario(helper_model, {"turns": [{"text": "First answer, about {{last_user}}"},
                                                     {"text": "Answer {{turn}}, about {{last_user}}"}]})
    s, helper = coordinator_session(stack, model, helper_model)
    sessions.append(s)
    first = {"tools": [{"custom": TOOL, "input": {"agent": helper.name, "message": "the apples"}}],
             "text": "Coordinator: {{tool_output}}"}
    stack.fake.set_scenario(model, {"turns": [first]})
    evs = s.turn("Ask the helper about apples.")
    (created,) = of_type(evs, "session.thread_created")
    tid = created["session_thread_id"]
    final = text_of(of_type(evs, "agent.message")[-1])
    s.check("First answer, about the apples" in final and tid in final,
            f"the first result names the thread: {final!r}")
    s.check(stack.client.beta.sessions.threads.retrieve(tid, session_id=s.id).status == "idle", "idle after turn 1")
    # Turn 2: the coordinator follows up on the thread its first result named.
    stack.fake.set_scenario(model, {"turns": [first, following_up(tid, "the pears")]})
    start = s.mark()
    s.message("Now ask about pears.")
    end, _ = s.wait_idle(start, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    s.check(not of_type(evs, "session.thread_created"), f"a follow-up creates no thread: {evs}")
    s.check(not of_type(evs, "session.error"), f"no session.error: {of_type(evs, 'session.error')}")
    found = s.expect_order(evs, [
        "session.thread_status_running", "agent.thread_message_sent", "session.thread_status_idle",
        "agent.message", is_idle("end_turn"),
    ], "the follow-up's events in the session log")
    s.check(all(e.get("session_thread_id", e.get("to_session_thread_id")) == tid for e in found[:3]),
            f"the follow-up's events name the thread: {found[:3]}")
    s.check(found[1]["content"][0]["text"] == "the pears", f"thread_message_sent: {found[1]}")
    final = text_of(of_type(evs, "agent.message")[-1])
    # The child's second turn is its conversation's second: the fake counts the user turns sent.
    s.check("Answer 2, about the pears" in final, f"the follow-up's answer: {final!r}")
    threads = list(stack.client.beta.sessions.threads.list(s.id))
    s.check([t.id for t in threads][1:] == [tid], f"still one child thread: {[t.id for t in threads]}")
    child = stack.client.beta.sessions.threads.retrieve(tid, session_id=s.id)
    s.check(child.status == "idle", f"the child is idle again: {child.status}")
    # The child's log: two turns, each opened by the message it received.
    log = [e.to_dict(mode="json") for e in stack.client.beta.sessions.threads.events.list(tid, session_id=s.id)]
    s.expect_order(log, [
        "session.thread_status_running", "agent.thread_message_received", "agent.message",
        "session.thread_status_idle", "session.thread_status_running", "agent.thread_message_received",
        "agent.message", "session.thread_status_idle",
    ], "the child thread's log over two turns")
    received = of_type(log, "agent.thread_message_received")
    s.check([text_of(e) for e in received] == ["the apples", "the pears"], f"received: {received}")
    # The child's model request for the pears carries the apples exchange: its context was kept.
    pears = [json.dumps(r["body"]) for r in stack.fake.requests(helper_model) if "the pears" in json.dumps(r["body"])]
    s.check(bool(pears), "the fake saw the child's second turn")
    s.check("the apples" in pears[-1] and "First answer, about the apples" in pears[-1],
            "the child's second model request carries its first exchange")
    # Another session's thread id is no thread of this one.
    other, _ = coordinator_session(stack, model, helper_model)
    sessions.append(other)
    stack.fake.set_scenario(model, {"turns": [following_up(tid, "hello")]})
    evs = other.turn("Follow up on a thread not mine.")
    final = text_of(of_type(evs, "agent.message")[-1])
    other.check(f"`{tid}` is not a thread of this session" in final, f"the model heard why: {final!r}")
    other.check(not of_type(evs, "session.thread_status_running"), "no thread ran")
    s.check_credentials()


def started_delegation(stack, model: str, sessions, helper_turn: dict, message: str):
    """A coordinator session whose delegation of `message` to a helper (answering with
    `helper_turn`) has begun: the session, the mark before its turn, and the child thread's id."""
    helper_model = model + "-helper"
    stack.fake.set_scenario(helper_model, {"turns": [helper_turn]})
    s, helper = coordinator_session(stack, model, helper_model)
    sessions.append(s)
    stack.fake.set_scenario(model, delegating(helper.name, message))
    start = s.mark()
    s.message("Go.")
    _, created = s.wait_type("session.thread_created", start)
    return s, start, created["session_thread_id"]


def test_the_thread_stream_follows_a_child(stack, engine, model, sessions):
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine}: coordinators are refused")
    s, start, tid = started_delegation(stack, model, sessions, {"text": "slow answer", "delay_ms": 3000},
                                       "take your time")
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        with stack.client.beta.sessions.threads.events.stream(tid, session_id=s.id, timeout=120.0) as stream:
            for ev in stream:
                seen.append(ev.type)
                if ev.type in ("session.thread_status_idle", "session.thread_status_terminated"):
                    break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    s.wait_idle(start, "end_turn")
    s.check(done.wait(60), f"the thread stream ended with the thread; saw {seen}")
    s.check("agent.message" in seen and seen[-1] == "session.thread_status_idle", f"thread stream: {seen}")


def test_an_interrupt_ends_the_running_thread(stack, engine, model, sessions):
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine}: coordinators are refused")
    # The helper would take minutes: only the interrupt ends its turn.
    s, start, tid = started_delegation(stack, model, sessions, {"text": "never finished", "delay_ms": 300000},
                                       "work long")
    s.send({"type": "user.interrupt"})
    s.wait_for(lambda e: e.get("type") == "session.thread_status_terminated" and e.get("session_thread_id") == tid,
               "the child thread terminated", start)
    s.wait_idle(start)
    child = stack.client.beta.sessions.threads.retrieve(tid, session_id=s.id)
    s.check(child.status == "terminated", f"child thread after the interrupt: {child.status}")
    log = [e.to_dict(mode="json") for e in stack.client.beta.sessions.threads.events.list(tid, session_id=s.id)]
    s.check(log[-1]["type"] == "session.thread_status_terminated", f"child log ends terminated: {log}")
    s.check(not of_type(log, "agent.message"), "the child never answered")
    # The session takes the next message as usual.
    stack.fake.set_scenario(model, {"turns": [{"text": "plain answer"}]})
    more = s.turn("Say something.")
    s.check(text_of(of_type(more, "agent.message")[-1]) == "plain answer", "a turn after the interrupt")
    # A follow-up to the terminated thread is a tool error naming it; the thread stays terminated.
    stack.fake.set_scenario(model, {"turns": [following_up(tid, "go on")]})
    more = s.turn("Follow up.")
    final = text_of(of_type(more, "agent.message")[-1])
    s.check(f"thread `{tid}` is terminated" in final, f"the model heard why: {final!r}")
    s.check(not of_type(more, "session.thread_status_running"), "the terminated thread did not run")


def test_past_the_thread_limit_the_model_hears_an_error(stack, engine, model, sessions):
    """The e2e server allows 2 threads per session (BRIDLE_SESSIONS__THREADS_PER_SESSION)."""
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine}: coordinators are refused")
    helper_model = model + "-helper"
    stack.fake.set_scenario(helper_model, {"turns": [{"text": "ok"}]})
    s, helper = coordinator_session(stack, model, helper_model)
    sessions.append(s)
    stack.fake.set_scenario(model, delegating(helper.name, "again"))
    for _ in range(2):
        s.turn("Delegate.")
    start = s.mark()
    s.message("Once more.")
    end, _ = s.wait_idle(start, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    (err,) = of_type(evs, "session.error")
    s.check(err["error"]["type"] == "thread_limit_error" and "threads_per_session" in err["error"]["message"],
            f"limit error: {err}")
    s.check(not of_type(evs, "session.thread_created"), "no thread past the limit")
    final = text_of(of_type(evs, "agent.message")[-1])
    s.check("refused" in final and "threads_per_session" in final, f"the model heard the refusal: {final!r}")
    s.check(len(list(stack.client.beta.sessions.threads.list(s.id))) == 3, "the primary and two child threads")


def test_a_coordinator_on_a_resident_harness_is_refused(stack, engine, model):
    if engine in IN_SANDBOX:
        pytest.skip(f"{engine} runs delegated threads")
    import anthropic
    helper = stack.client.beta.agents.create(name=uniq("helper"), model=model)
    lead = stack.client.beta.agents.create(name=uniq("lead"), model=model,
                                           multiagent={"type": "coordinator", "agents": [helper.id]})
    with pytest.raises(anthropic.BadRequestError) as e:
        stack.client.beta.sessions.create(agent=lead.id, environment_id=stack.environment_id(),
                                          vault_ids=[stack.llm_vault()])
    assert "resident runtime" in str(e.value)


def test_a_coordinator_delegates_to_another_harness(stack, engine, model, sessions):
    """A coordinator on this harness, its roster agent on the other in-sandbox harness
    (`bridle.engine`), each with its own LLM vault: the child runs in the same sandbox
    through its own model route, its events in its thread's stream and log, its answer in
    the coordinator's `agent.message`."""
    if engine not in IN_SANDBOX:
        pytest.skip(f"{engine}: coordinators are refused")
    import anthropic
    other = "codex" if engine == "claude" else "claude"
    c = stack.client
    helper_model = model + "-x"
    stack.fake.set_scenario(helper_model, {"turns": [{"text": f"The {other} helper says 7 about {{{{last_user}}}}"}]})
    helper = c.beta.agents.create(name=uniq("xhelper"), model=helper_model, description="answers questions",
                                  tools=[{"type": "agent_toolset_20260401"}], metadata={"bridle.engine": other})
    lead = c.beta.agents.create(name=uniq("lead"), model=model, tools=[{"type": "agent_toolset_20260401"}],
                                multiagent={"type": "coordinator", "agents": [helper.id]})
    env_id = stack.environment_id()
    own_vault = stack.llm_vault(engine)
    # Without an LLM vault for the helper's harness: a 400 naming the agent and the harness.
    with pytest.raises(anthropic.BadRequestError) as e:
        c.beta.sessions.create(agent=lead.id, environment_id=env_id, vault_ids=[own_vault])
    s_err = str(e.value)
    assert helper.name in s_err and f"`{other}` harness" in s_err, s_err
    created = c.beta.sessions.create(agent=lead.id, environment_id=env_id,
                                     vault_ids=[own_vault, stack.llm_vault(other)])
    from .lib import Live
    s = Live(stack, created.id, model)
    sessions.append(s)
    stack.fake.set_scenario(model, delegating(helper.name, "the sum"))
    start = s.mark()
    s.message("Ask the other harness.")
    end, _ = s.wait_idle(start, "end_turn")
    evs = s.snapshot(start)[: end - start + 1]
    s.check(not of_type(evs, "session.error"), f"no session.error: {of_type(evs, 'session.error')}")
    found = s.expect_order(evs, [
        "session.thread_created", "agent.thread_message_sent", "session.thread_status_idle", "agent.message",
        is_idle("end_turn"),
    ], "the cross-harness delegation in the session log")
    tid = found[0]["session_thread_id"]
    s.check(found[0]["agent_name"] == helper.name, f"thread_created: {found[0]}")
    final = text_of(of_type(evs, "agent.message")[-1])
    s.check(f"The {other} helper says 7 about the sum" in final, f"the coordinator's answer: {final!r}")
    # The child's run, in its own log and on its thread stream (replayed from its first event).
    log = [e.to_dict(mode="json") for e in c.beta.sessions.threads.events.list(tid, session_id=s.id)]
    s.expect_order(log, ["agent.thread_message_received", "agent.message", "session.thread_status_idle"],
                   "the child thread's own log")
    s.check(text_of(of_type(log, "agent.message")[-1]) == f"The {other} helper says 7 about the sum",
            "the child's answer is in its log")
    seen: list[str] = []
    with c.beta.sessions.threads.events.stream(tid, session_id=s.id, timeout=60.0,
                                               extra_headers={"Last-Event-ID": "0"}) as stream:
        for ev in stream:
            seen.append(ev.type)
            if ev.type in ("session.thread_status_idle", "session.thread_status_terminated"):
                break
    s.check("agent.message" in seen and seen[-1] == "session.thread_status_idle", f"thread stream: {seen}")
    # Each harness reached its own API shape with the vault token, through its own route.
    helper_reqs = stack.fake.requests(helper_model)
    want = "/responses" if other == "codex" else "/v1/messages"
    s.check(helper_reqs and all(r["authorized"] and r["path"].rstrip("/").endswith(want) for r in helper_reqs),
            f"the helper's model requests: {[(r['path'], r['authorized']) for r in helper_reqs]}")
    s.check_credentials()
