#!/usr/bin/env python3
"""Bridle's resident runtime for the `openai-agents` harness.

One process serves every session of the harness. The host frames stdio:
each line in and out is ``{"session": <id>, "msg": {...}}``. The messages
are described in the Rust crate docs (``plugins/openai-agents/src/lib.rs``);
in short:

  in:  start, input, tool_result, mcp_approval, interrupt, close
  out: model_request_start, model_request_end, message, reasoning,
       tool_call, custom_tool_call, mcp_tool_call, mcp_tool_result, retry,
       checkpoint, turn_end, interrupted, error, log

The agent loop runs here, outside any sandbox. Its tools (bash, read, write,
edit, glob, grep) do not run here: each call is sent out as a ``tool_call``
and awaited until the matching ``tool_result`` comes back (the host runs it
in the session's sandbox). The agent's custom tools work the same way, sent
as ``custom_tool_call``: the client of the session runs them.

The agent's MCP servers are reached with the SDK's ``MCPServerStreamableHttp``
through the host's MCP route for this session: a unix socket (``mcp_socket``
in ``start``) that only this runtime's uid may open, where the host adds the
vault credential and applies the environment's network rules. Each MCP tool
call is announced as ``mcp_tool_call`` and runs once the plugin answers
``mcp_approval`` (its permission policy, or the user's confirmation); its
result goes out as ``mcp_tool_result``.

No retry is hidden: the OpenAI client is built with ``max_retries=0``, and
the runner's ``ModelRetrySettings`` policy reports every decision it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI

from agents import (
    Agent,
    FunctionTool,
    ItemHelpers,
    ModelRetrySettings,
    ModelSettings,
    OpenAIResponsesModel,
    RetryDecision,
    RunConfig,
    Runner,
    retry_policies,
    set_tracing_disabled,
)
from agents.exceptions import MaxTurnsExceeded
from agents.mcp import MCPServerStreamableHttp
from agents.mcp._compat import MCP_HTTPX

set_tracing_disabled(True)
logging.getLogger("openai.agents").setLevel(logging.WARNING)

# The host puts the session's real key in each `start` message (this runtime runs outside every
# sandbox and calls the upstream itself); the placeholder is only a fallback that no upstream takes.
PLACEHOLDER_KEY = os.environ.get("OPENAI_API_KEY", "sk-bridle-placeholder")
RETRY_STATUSES = [408, 409, 429, 500, 502, 503, 504, 529]
BACKOFF = {"initial_delay": 0.5, "max_delay": 8.0, "multiplier": 2.0, "jitter": False}


def send(session: str, msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"session": session, "msg": msg}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_S = {"type": "string"}
TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "bash": (
        "Run a shell command in the workspace and return its output.",
        _schema({"command": _S, "timeout_ms": {"type": "integer"}}, ["command"]),
    ),
    "read": (
        "Read a file (optionally a [start, end] line range).",
        _schema({"file_path": _S, "view_range": {"type": "array", "items": {"type": "integer"}}}, ["file_path"]),
    ),
    "write": ("Write a file, replacing its contents.", _schema({"file_path": _S, "content": _S}, ["file_path", "content"])),
    "edit": (
        "Replace old_string with new_string in a file.",
        _schema(
            {"file_path": _S, "old_string": _S, "new_string": _S, "replace_all": {"type": "boolean"}},
            ["file_path", "old_string", "new_string"],
        ),
    ),
    "glob": ("List files matching a glob pattern.", _schema({"pattern": _S, "path": _S}, ["pattern"])),
    "grep": ("Search file contents for a regular expression.", _schema({"pattern": _S, "path": _S}, ["pattern"])),
}

_base_policy = retry_policies.any(
    retry_policies.provider_suggested(),
    retry_policies.network_error(),
    retry_policies.http_status(RETRY_STATUSES),
)


def _backoff_delay(attempt: int) -> float:
    return min(BACKOFF["initial_delay"] * (BACKOFF["multiplier"] ** max(attempt - 1, 0)), BACKOFF["max_delay"])


def reporting_policy(sid: str) -> Any:
    """The retry policy, wrapped so every decision is reported as a `retry`
    message. A plain closure: the SDK deep-copies model settings, and a bound
    method would drag the whole session along."""

    async def policy(ctx: Any) -> RetryDecision:
        decision = _base_policy(ctx)
        if asyncio.iscoroutine(decision) or isinstance(decision, asyncio.Future):
            decision = await decision
        if not isinstance(decision, RetryDecision):
            decision = RetryDecision(retry=bool(decision))
        n = ctx.normalized
        delay = decision.delay
        if decision.retry and delay is None:
            # The delay the runner would pick, made explicit so the report is exact.
            delay = n.retry_after if n.retry_after is not None else _backoff_delay(ctx.attempt)
        send(
            sid,
            {
                "type": "retry",
                "retry": decision.retry,
                "attempt": ctx.attempt,
                "max_retries": ctx.max_retries,
                "status": n.status_code,
                "code": n.error_code,
                "network": bool(n.is_network_error or n.is_timeout),
                "message": n.message or str(ctx.error),
                "delay_ms": int(delay * 1000) if decision.retry and delay is not None else None,
            },
        )
        if decision.retry:
            return RetryDecision(retry=True, delay=delay, reason=decision.reason)
        return decision

    return policy


class Session:
    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.model = ""
        self.base_url = ""
        self.api_key = ""
        self.system: str | None = None
        self.tool_names: list[str] = []
        self.custom_tools: list[dict[str, Any]] = []
        self.max_retries = 5
        self.max_turns = 100
        self.history: list[Any] = []
        self.resume_response_id: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.result: Any = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.interrupting = False
        self.client: AsyncOpenAI | None = None
        # [{"name", "url", "enabled_tools": [..] | None, "disabled_tools": [..]}]
        self.mcp_servers: list[dict[str, Any]] = []
        self.mcp_socket: str | None = None

    def configure(self, msg: dict[str, Any]) -> None:
        base_url = str(msg.get("base_url") or "")
        # The host adds the session's key to `start` (the plugin never sees it).
        api_key = str(msg.get("api_key") or PLACEHOLDER_KEY)
        if self.client is None or base_url != self.base_url or api_key != self.api_key:
            # max_retries=0: every retry goes through the runner's policy.
            self.client = AsyncOpenAI(base_url=base_url or None, api_key=api_key, max_retries=0)
        self.base_url = base_url
        self.api_key = api_key
        self.model = str(msg.get("model") or "")
        self.system = msg.get("system") or None
        self.tool_names = [t for t in msg.get("tools", []) if t in TOOLS]
        self.custom_tools = []
        for t in msg.get("custom_tools") or []:
            name = t.get("name") if isinstance(t, dict) else None
            if not isinstance(name, str) or not name or name in self.tool_names:
                send(self.sid, {"type": "log", "level": "warn", "message": f"custom tool {name!r} skipped"})
                continue
            self.custom_tools.append(t)
        self.mcp_servers = [m for m in msg.get("mcp_servers") or [] if isinstance(m, dict) and m.get("name")]
        self.mcp_socket = msg.get("mcp_socket") or None
        self.max_retries = int(msg.get("max_retries", 5))
        self.max_turns = int(msg.get("max_turns", 100))
        resume = msg.get("resume") or {}
        if not self.history and isinstance(resume, dict):
            self.resume_response_id = resume.get("last_response_id")

    # -- tools --------------------------------------------------------------

    def _tool(self, name: str) -> FunctionTool:
        description, schema = TOOLS[name]
        return self._remote_tool(name, description, schema, "tool_call")

    def _custom_tool(self, spec: dict[str, Any]) -> FunctionTool:
        schema = spec.get("input_schema")
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        return self._remote_tool(str(spec["name"]), str(spec.get("description") or ""), schema, "custom_tool_call")

    def _remote_tool(self, name: str, description: str, schema: dict[str, Any], kind: str) -> FunctionTool:
        """A function tool that runs elsewhere: the call goes out as `kind`
        and the turn waits for the matching `tool_result`."""

        async def invoke(ctx: Any, args_json: str) -> str:
            try:
                args = json.loads(args_json or "{}")
            except json.JSONDecodeError:
                args = {"_raw": args_json}
            if not isinstance(args, dict):
                args = {"_raw": args}
            call_id = getattr(ctx, "tool_call_id", None) or f"call_{id(args)}"
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[call_id] = fut
            send(self.sid, {"type": kind, "call_id": call_id, "name": name, "input": args})
            try:
                res = await fut
            finally:
                self.pending.pop(call_id, None)
            output = str(res.get("output", ""))
            return f"Error: {output}" if res.get("is_error") else output

        return FunctionTool(
            name=name,
            description=description,
            params_json_schema=schema,
            on_invoke_tool=invoke,
            strict_json_schema=False,
        )

    async def _mcp_tools(self, stack: contextlib.AsyncExitStack) -> list[FunctionTool]:
        """Connect to the agent's MCP servers for this turn (closed with `stack`, in this task:
        the SDK's streams must close where they opened) and offer their enabled tools. A server
        that cannot be reached offers none; the host reports why as a `session.error`."""
        tools: list[FunctionTool] = []
        if not self.mcp_servers:
            return tools
        if not self.mcp_socket:
            send(self.sid, {"type": "log", "level": "warn", "message": "MCP servers without a route from the host"})
            return tools
        factory = _uds_client_factory(self.mcp_socket)
        for spec in self.mcp_servers:
            name = str(spec["name"])
            server = MCPServerStreamableHttp(
                params={"url": str(spec.get("url") or ""), "httpx_client_factory": factory, "timeout": 30},
                name=name,
                client_session_timeout_seconds=60,
            )
            try:
                await stack.enter_async_context(server)
                listed = await server.list_tools()
            except Exception as e:  # noqa: BLE001 - an unreachable server must not end the turn
                send(self.sid, {"type": "log", "level": "warn", "message": f"MCP server `{name}`: {_reason(e)}"})
                continue
            enabled = spec.get("enabled_tools")
            disabled = set(spec.get("disabled_tools") or [])
            for t in listed:
                if t.name in disabled or (isinstance(enabled, list) and t.name not in enabled):
                    continue
                tools.append(self._mcp_tool(name, server, t))
        return tools

    def _mcp_tool(self, server_name: str, server: MCPServerStreamableHttp, tool: Any) -> FunctionTool:
        """A function tool for one MCP tool: announced as `mcp_tool_call`, run after the
        plugin's `mcp_approval`, its result sent as `mcp_tool_result`."""
        schema = getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None)
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        name = str(tool.name)

        async def invoke(ctx: Any, args_json: str) -> str:
            try:
                args = json.loads(args_json or "{}")
            except json.JSONDecodeError:
                args = {}
            if not isinstance(args, dict):
                args = {}
            call_id = getattr(ctx, "tool_call_id", None) or f"call_{id(args)}"
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[call_id] = fut
            send(self.sid, {"type": "mcp_tool_call", "call_id": call_id, "server": server_name, "name": name, "input": args})
            try:
                answer = await fut
            finally:
                self.pending.pop(call_id, None)
            if answer.get("allow") is not True:
                return str(answer.get("output") or "The user denied this tool call.")
            try:
                result = await server.call_tool(name, args)
                content = _mcp_content(getattr(result, "content", None) or [])
                is_error = bool(getattr(result, "is_error", None) or getattr(result, "isError", None))
            except Exception as e:  # noqa: BLE001 - the model hears of the failure
                content = [{"type": "text", "text": f"MCP tool `{name}` failed: {type(e).__name__}: {e}"}]
                is_error = True
            send(self.sid, {"type": "mcp_tool_result", "call_id": call_id, "content": content, "is_error": is_error})
            text = "\n".join(b["text"] for b in content if b.get("type") == "text")
            return f"Error: {text}" if is_error else text

        return FunctionTool(
            name=name,
            description=str(getattr(tool, "description", None) or ""),
            params_json_schema=schema,
            on_invoke_tool=invoke,
            strict_json_schema=False,
        )

    def tool_result(self, msg: dict[str, Any]) -> None:
        fut = self.pending.get(str(msg.get("call_id")))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    # -- turns --------------------------------------------------------------

    def start_turn(self, content: list[dict[str, Any]]) -> None:
        if self.task is not None and not self.task.done():
            send(self.sid, {"type": "error", "kind": "busy", "message": "a turn is already running"})
            return
        self.interrupting = False
        self.task = asyncio.create_task(self.run_turn(content))

    def interrupt(self) -> None:
        if self.task is None or self.task.done():
            return
        self.interrupting = True
        for fut in list(self.pending.values()):
            if not fut.done():
                fut.set_result({"output": "interrupted by the user", "is_error": True})
        if self.result is not None:
            self.result.cancel()
        else:
            self.task.cancel()

    async def run_turn(self, content: list[dict[str, Any]]) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            await self._run_turn(content, stack)
        finally:
            try:
                await stack.aclose()
            except Exception as e:  # noqa: BLE001 - closing an MCP connection must not outlive the turn
                send(self.sid, {"type": "log", "level": "warn", "message": f"closing MCP connections: {e}"})

    async def _run_turn(self, content: list[dict[str, Any]], stack: contextlib.AsyncExitStack) -> None:
        sid = self.sid
        assert self.client is not None
        user = {"role": "user", "content": content}
        try:
            mcp_tools = await self._mcp_tools(stack)
        except asyncio.CancelledError:
            send(sid, {"type": "interrupted"})
            return
        except Exception as e:  # noqa: BLE001 - the turn goes on without MCP tools
            send(sid, {"type": "log", "level": "warn", "message": f"MCP servers unavailable: {type(e).__name__}: {e}"})
            mcp_tools = []
        agent = Agent(
            name="bridle",
            instructions=self.system,
            tools=[self._tool(n) for n in self.tool_names]
            + [self._custom_tool(t) for t in self.custom_tools]
            + mcp_tools,
            model=OpenAIResponsesModel(model=self.model, openai_client=self.client),
            model_settings=ModelSettings(
                retry=ModelRetrySettings(max_retries=self.max_retries, backoff=BACKOFF, policy=reporting_policy(self.sid))
            ),
        )
        previous = None
        if self.history:
            items = self.history + [user]
        else:
            # Resident state lost (runtime restart): continue server-side.
            previous, self.resume_response_id = self.resume_response_id, None
            items = [user]
        try:
            self.result = Runner.run_streamed(
                agent,
                items,
                max_turns=self.max_turns,
                previous_response_id=previous,
                # A call to a tool that is not offered (say, of an MCP server that could not be
                # reached) is an error the model hears, as in the other runtimes, not a failed turn.
                run_config=RunConfig(tool_not_found_behavior="return_error_to_model"),
            )
            # Messages already sent from their raw `output_item.done` (by item id).
            sent: set[str] = set()
            async for ev in self.result.stream_events():
                if ev.type == "raw_response_event":
                    kind = getattr(ev.data, "type", "")
                    if kind == "response.created":
                        send(sid, {"type": "model_request_start"})
                    elif kind == "response.output_text.delta":
                        # The model's text as it streams: the plugin previews it.
                        send(sid, {"type": "text_delta", "item_id": ev.data.item_id, "text": ev.data.delta})
                    elif kind == "response.output_item.done" and getattr(ev.data.item, "type", "") == "message":
                        # The finished message, before its response completes
                        # (the run item event comes only after).
                        text = ItemHelpers.extract_text(ev.data.item)
                        item_id = getattr(ev.data.item, "id", None)
                        if text and item_id:
                            sent.add(item_id)
                            send(sid, {"type": "message", "item_id": item_id, "text": text})
                    elif kind in ("response.completed", "response.incomplete"):
                        send(sid, {"type": "model_request_end", "usage": _usage(ev.data.response)})
                elif ev.type == "run_item_stream_event":
                    if ev.name == "message_output_created":
                        item_id = getattr(ev.item.raw_item, "id", None)
                        text = ItemHelpers.text_message_output(ev.item)
                        if text and item_id not in sent:
                            send(sid, {"type": "message", "item_id": item_id, "text": text})
                    elif ev.name == "reasoning_item_created":
                        send(sid, {"type": "reasoning"})
            if self.interrupting:
                # Partial output of an interrupted run is dropped: it may end
                # in a function call without its output.
                self.history = items
                send(sid, {"type": "interrupted"})
                return
            self.history = self.result.to_input_list()
            if self.result.last_response_id:
                send(sid, {"type": "checkpoint", "state": {"last_response_id": self.result.last_response_id}})
            send(sid, {"type": "turn_end", "final_output": str(self.result.final_output or "")})
        except asyncio.CancelledError:
            send(sid, {"type": "interrupted"})
        except MaxTurnsExceeded as e:
            send(sid, {"type": "error", "kind": "max_turns", "message": str(e)})
        except APIStatusError as e:
            send(sid, {"type": "error", "kind": "api", "status": e.status_code, "code": _code(e), "message": _msg(e)})
        except (APIConnectionError, APITimeoutError) as e:
            send(sid, {"type": "error", "kind": "network", "message": str(e)})
        except Exception as e:  # noqa: BLE001 - any failure ends the turn, never the runtime
            if self.interrupting:
                send(sid, {"type": "interrupted"})
            else:
                send(sid, {"type": "error", "kind": "other", "message": f"{type(e).__name__}: {e}"})
        finally:
            self.result = None


def _reason(e: BaseException) -> str:
    """The first leaf of an exception group (the MCP client's task groups wrap the cause)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


def _uds_client_factory(path: str) -> Any:
    """An HTTP client factory for the MCP SDK that connects to the host's MCP route over its
    unix socket (the URL's host is not dialled)."""

    def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> Any:
        return MCP_HTTPX.AsyncClient(
            headers=headers,
            timeout=timeout,
            auth=auth,
            follow_redirects=False,
            transport=MCP_HTTPX.AsyncHTTPTransport(uds=path),
        )

    return factory


def _mcp_content(blocks: Any) -> list[dict[str, Any]]:
    """MCP content blocks → Managed Agents blocks (text and images; others are dropped)."""
    out: list[dict[str, Any]] = []
    for b in blocks:
        kind = getattr(b, "type", None)
        if kind == "text":
            out.append({"type": "text", "text": str(getattr(b, "text", ""))})
        elif kind == "image":
            mime = getattr(b, "mime_type", None) or getattr(b, "mimeType", None)
            out.append({"type": "image", "source": {"type": "base64", "media_type": mime, "data": getattr(b, "data", "")}})
    return out


def _usage(response: Any) -> dict[str, int]:
    u = getattr(response, "usage", None)
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
    details = getattr(u, "input_tokens_details", None)
    return {
        "input_tokens": int(getattr(u, "input_tokens", 0) or 0),
        "output_tokens": int(getattr(u, "output_tokens", 0) or 0),
        "cached_tokens": int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0,
    }


def _code(e: APIStatusError) -> str | None:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error", body) if isinstance(body, dict) else {}
    if isinstance(err, dict):
        return err.get("code") or err.get("type")
    return None


def _msg(e: APIStatusError) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error", body) if isinstance(body, dict) else {}
    if isinstance(err, dict) and err.get("message"):
        return f"{e.status_code}: {err['message']}"
    return str(e)


def _content(blocks: Any) -> list[dict[str, Any]]:
    """Managed Agents content blocks → Responses input content."""
    out: list[dict[str, Any]] = []
    for b in blocks if isinstance(blocks, list) else []:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text":
            out.append({"type": "input_text", "text": str(b.get("text", ""))})
        elif b.get("type") == "image" and isinstance(b.get("url"), str):
            out.append({"type": "input_image", "image_url": b["url"], "detail": "auto"})
    return out


SESSIONS: dict[str, Session] = {}


def handle(line: str) -> None:
    try:
        frame = json.loads(line)
        sid = str(frame["session"])
        msg = frame["msg"]
        kind = msg["type"]
    except (ValueError, KeyError, TypeError):
        sys.stderr.write(f"bridle-agents-runtime: bad frame skipped: {line[:200]}\n")
        return
    session = SESSIONS.get(sid)
    if kind == "start":
        session = session or SESSIONS.setdefault(sid, Session(sid))
        session.configure(msg)
        return
    if session is None:
        send(sid, {"type": "error", "kind": "protocol", "message": f"`{kind}` before `start`"})
        return
    if kind == "input":
        session.start_turn(_content(msg.get("content")))
    elif kind in ("tool_result", "mcp_approval"):
        session.tool_result(msg)
    elif kind == "interrupt":
        session.interrupt()
    elif kind == "close":
        session.interrupt()
        SESSIONS.pop(sid, None)
    else:
        send(sid, {"type": "log", "level": "warn", "message": f"unknown message `{kind}` ignored"})


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        text = line.decode("utf-8", errors="replace").strip()
        if text:
            handle(text)
    # stdin closed: let running turns finish their current step, then exit.
    tasks = [s.task for s in SESSIONS.values() if s.task is not None and not s.task.done()]
    for s in SESSIONS.values():
        s.interrupt()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
