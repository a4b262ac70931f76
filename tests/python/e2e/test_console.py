"""The console (`/console`) in a real browser: Debian's Chromium, headless, driven by Playwright.

tests/e2e_sessions.rs (`e2e_console`) starts the fake model and a `bridle serve` with the claude
harness, installs Chromium when it is missing, and runs this file. A person's path through the
console: sign in, find the session, watch a tool call and the answer arrive live, approve an
`always_ask` confirmation, watch a reply stream in, send a message, interrupt. Screenshots are
saved under BRIDLE_E2E_ARTIFACTS (default `target/e2e-artifacts/console`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from .lib import uniq

ASK_BASH = [{"type": "agent_toolset_20260401",
             "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]
# Playwright's own waits; a turn against the fake model takes a few seconds.
TURN_MS = 90_000


def artifacts() -> Path:
    default = Path(__file__).resolve().parents[3] / "target" / "e2e-artifacts" / "console"
    out = Path(os.environ.get("BRIDLE_E2E_ARTIFACTS", default))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (tests/e2e_sessions.rs installs Debian's `chromium`)"
    with sync_playwright() as p:
        # Root in a container: Chromium's own sandbox needs user namespaces it may not get.
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # A refused request is logged by the browser itself ("Failed to load resource"); the tests
    # check what the page shows for those. Anything else logged as an error is a defect.
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    yield pg
    ctx.close()
    assert not problems, "the console logged errors:\n" + "\n".join(problems)


def sign_in(page, stack) -> None:
    """Sign in with the keyboard only: the key field has focus, Enter submits."""
    page.goto(f"{stack.base_url}/console")
    key = page.get_by_label("API key")
    key.wait_for()
    assert page.evaluate("document.activeElement.id") == "api-key", "the key field should have focus"
    page.keyboard.type(stack.api_key)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Sessions").wait_for()


def test_a_wrong_key_is_refused_and_nothing_is_kept(stack, page):
    page.goto(f"{stack.base_url}/console/")
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="not accepted").wait_for()
    assert page.evaluate("sessionStorage.length") == 0, "a refused key stays in session storage"


def test_watch_approve_stream_send_and_interrupt(stack, model, sessions, page):
    tag = uuid.uuid4().hex[:8]
    streamed = " ".join(f"s{i}-{tag}" for i in range(1, 16))
    slow = " ".join(f"w{i}" for i in range(1, 61))
    stack.fake.set_scenario(model, {"turns": [
        {"tools": [{"command": f"echo console-{tag}"}], "text": "Tool said: {{tool_output}}"},
        {"text": streamed, "chunk_delay_ms": 300},
        {"text": slow, "chunk_delay_ms": 500},
    ]})
    title = uniq("console")
    s = stack.session(model, tools=ASK_BASH, title=title)
    sessions.append(s)

    sign_in(page, stack)
    row = page.locator(f'tr[data-session="{s.id}"]')
    row.wait_for()
    assert title in row.inner_text()
    row.get_by_role("link", name=s.id).click()
    page.get_by_role("heading", name=title).wait_for()
    page.locator("#stream-state", has_text="live").wait_for(timeout=TURN_MS)

    # 1. A message from the console; the bash call waits on the user; Allow runs it.
    page.get_by_label("Message").fill("Run the tool.")
    page.get_by_role("button", name="Send").click()
    page.locator("li.user", has_text="Run the tool.").wait_for(timeout=TURN_MS)
    call = page.locator("li.tool", has_text=f"echo console-{tag}")
    call.wait_for(timeout=TURN_MS)
    allow = call.get_by_role("button", name="Allow")
    allow.wait_for(timeout=TURN_MS)
    call.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts() / "session-requires-action.png"))
    allow.click()
    call.locator(".result", has_text=f"console-{tag}").wait_for(timeout=TURN_MS)
    call.get_by_text("You chose: allow").wait_for()
    page.locator("li.agent", has_text=f"Tool said: console-{tag}").wait_for(timeout=TURN_MS)
    page.locator("#session-status", has_text="idle").wait_for(timeout=TURN_MS)

    # A dropped connection: the page reconnects with Last-Event-ID and shows nothing twice.
    resumed: list[str | None] = []
    page.on("request", lambda r: resumed.append(r.headers.get("last-event-id"))
            if "/events/stream" in r.url else None)
    page.context.set_offline(True)
    page.locator("#stream-state", has_text="offline").wait_for(timeout=TURN_MS)
    page.context.set_offline(False)
    page.locator("#stream-state", has_text="live").wait_for(timeout=TURN_MS)
    assert resumed and resumed[-1] not in (None, "0"), f"the reconnect sent Last-Event-ID {resumed}"
    assert page.locator("li.user").count() == 1, "events were shown twice after the reconnect"
    assert page.locator("li.tool").count() == 1, "the tool call was shown twice after the reconnect"

    # 2. A reply that streams: the draft grows before the final message replaces it.
    page.get_by_label("Message").fill("Tell me more.")
    page.get_by_role("button", name="Send").click()
    draft = page.locator("li.draft")
    draft.wait_for(timeout=TURN_MS)
    page.locator(f'li.agent:not(.draft):has-text("s15-{tag}")').wait_for(timeout=TURN_MS)
    assert draft.count() == 0, "the streamed draft stayed after the final message"
    page.screenshot(path=str(artifacts() / "session.png"), full_page=True)

    # 3. A slow reply, interrupted from the console.
    mark = s.mark()
    page.get_by_label("Message").fill("Count slowly.")
    page.get_by_role("button", name="Send").click()
    page.locator("li.draft").wait_for(timeout=TURN_MS)
    page.get_by_role("button", name="Interrupt").click()
    page.locator("li.status", has_text="Interrupt sent").wait_for(timeout=TURN_MS)
    end, _ = s.wait_idle(mark, "end_turn", timeout=60)

    # What the console sent is what the API stored.
    evs = s.snapshot(0)
    confirmations = [e for e in evs if e["type"] == "user.tool_confirmation"]
    assert [c["result"] for c in confirmations] == ["allow"], confirmations
    sent = [e["content"][0]["text"] for e in evs if e["type"] == "user.message"]
    assert sent == ["Run the tool.", "Tell me more.", "Count slowly."], sent
    assert any(e["type"] == "user.interrupt" for e in evs[mark:]), "the interrupt never reached the session"
    done = [e for e in evs[mark:] if e["type"] == "agent.message" and "w60" in str(e.get("content"))]
    assert not done, "the slow reply ran to its end despite the interrupt"


WEATHER = {"type": "custom", "name": "get_weather", "description": "Get the current weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_answer_a_custom_tool_call(stack, model, sessions, page):
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"custom": "get_weather", "input": {"city": "Paris"}}],
                                               "text": "The tool said: {{tool_output}}"}]})
    s = stack.session(model, tools=[{"type": "agent_toolset_20260401"}, WEATHER])
    sessions.append(s)
    sign_in(page, stack)
    page.goto(f"{stack.base_url}/console/#/sessions/{s.id}")
    page.locator("#stream-state", has_text="live").wait_for(timeout=TURN_MS)
    page.get_by_label("Message").fill("What is the weather in Paris?")
    page.get_by_role("button", name="Send").click()
    call = page.locator("li.tool", has_text="get_weather")
    box = call.get_by_label("Result for get_weather")
    box.wait_for(timeout=TURN_MS)
    forecast = f"sunny-{uuid.uuid4().hex[:6]}"
    box.fill(forecast)
    call.get_by_role("button", name="Send result").click()
    page.locator("li.agent", has_text=f"The tool said: {forecast}").wait_for(timeout=TURN_MS)
    results = [e for e in s.snapshot(0) if e["type"] == "user.custom_tool_result"]
    assert len(results) == 1 and results[0]["content"][0]["text"] == forecast, results


def test_read_only_views_never_show_a_secret(stack, page):
    vault_id = stack.llm_vault()
    sign_in(page, stack)
    page.goto(f"{stack.base_url}/console/#/vaults/{vault_id}")
    page.get_by_role("heading", name="Credentials").wait_for()
    page.get_by_text("static_bearer").wait_for()
    assert stack.fake.token not in page.content(), "the vault's token is on the page"
    page.goto(f"{stack.base_url}/console/#/agents")
    page.get_by_role("heading", name="Agents").wait_for()
    page.goto(f"{stack.base_url}/console/#/environments")
    page.get_by_role("heading", name="Environments").wait_for()


def test_phone_width_fits_the_screen(stack, model, sessions, browser):
    sessions.append(stack.session(model, title=uniq("phone")))
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    try:
        sign_in(page, stack)
        page.locator("table#sessions tbody tr").first.wait_for(timeout=TURN_MS)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(artifacts() / "sessions-phone.png"), full_page=True)
        assert overflow <= 1, f"the sessions page is {overflow}px wider than a phone screen"
    finally:
        ctx.close()
