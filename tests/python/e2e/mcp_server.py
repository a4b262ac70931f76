"""A real MCP server for the end-to-end suite, built with the official MCP Python SDK
(`mcp.server.mcpserver.MCPServer`, streamable HTTP), served on loopback in a thread of the test
process. It answers only requests carrying `Authorization: Bearer <token>` for a token it
accepts, and records the Authorization header of every request it saw. The same server offers
an OAuth token endpoint (`/oauth/token`, refresh-token grant) for the `mcp_oauth` tests.

Its tool: `lookup(key)` returns `value-of-<key>-<secret word>`; the secret word is in no
prompt, so a result that carries it came from this server."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid

import uvicorn
from mcp.server.mcpserver import MCPServer

MCP_PATH = "/mcp"


class McpFixture:
    def __init__(self, port: int):
        self.port = port
        self.word = uuid.uuid4().hex[:8]
        self.accepted: set[str] = set()
        # (tag, method, path, authorization); a test's URLs carry its own tag (`url_for`).
        self.seen: list[tuple[str, str, str, str | None]] = []
        # refresh token -> (new access token, new refresh token)
        self.grants: dict[str, tuple[str, str]] = {}
        self.token_calls: list[dict] = []
        self.lock = threading.Lock()
        server = MCPServer(name="bridle-e2e")

        @server.tool()
        def lookup(key: str) -> str:
            """Look a key up in the test's store."""
            return f"value-of-{key}-{self.word}"

        self.app = server.streamable_http_app(streamable_http_path=MCP_PATH, stateless_http=True,
                                              json_response=True)
        self.base = f"http://127.0.0.1:{port}"
        self.token_url = f"http://127.0.0.1:{port}/oauth/token"
        self._server: uvicorn.Server | None = None

    # -- tokens -----------------------------------------------------------------------------------

    def new_token(self) -> str:
        t = f"mcp-tok-{uuid.uuid4().hex}"
        with self.lock:
            self.accepted.add(t)
        return t

    def grant(self, refresh_token: str) -> str:
        """The token endpoint answers `refresh_token` with a new accepted access token."""
        access = f"mcp-refreshed-{uuid.uuid4().hex}"
        with self.lock:
            self.grants[refresh_token] = (access, f"rt-{uuid.uuid4().hex}")
        return access

    def url_for(self, tag: str) -> str:
        """The MCP endpoint as one test reaches it (`/t/<tag>/mcp`), so that what the server saw
        is told apart per test."""
        return f"{self.base}/t/{tag}{MCP_PATH}"

    def auth_seen(self, tag: str) -> list[str | None]:
        with self.lock:
            return [a for (t, _, _, a) in self.seen if t == tag]

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        auth = headers.get("authorization")
        path = scope.get("path", "")
        if path == "/oauth/token":
            return await self._token(receive, send)
        tag = ""
        if path.startswith("/t/"):
            _, _, tag, *rest = path.split("/")
            path = "/" + "/".join(rest)
            scope = dict(scope, path=path, raw_path=path.encode())
        with self.lock:
            self.seen.append((tag, scope.get("method", ""), path, auth))
            ok = auth is not None and auth.startswith("Bearer ") and auth[7:] in self.accepted
        if not ok:
            return await _respond(send, 401, {"error": "invalid_token"},
                                  [(b"www-authenticate", b'Bearer error="invalid_token"')])
        return await self.app(scope, receive, send)

    async def _token(self, receive, send):
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with self.lock:
            self.token_calls.append(form)
            grant = self.grants.get(form.get("refresh_token", "")) if form.get("grant_type") == "refresh_token" else None
            if grant is not None:
                self.accepted.add(grant[0])
        if grant is None:
            return await _respond(send, 400, {"error": "invalid_grant"})
        return await _respond(send, 200, {"access_token": grant[0], "token_type": "Bearer", "expires_in": 3600,
                                          "refresh_token": grant[1]})

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "McpFixture":
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True, name="mcp-server").start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MCP test server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


async def _respond(send, status: int, body: dict, extra: list | None = None) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
                + (extra or [])})
    await send({"type": "http.response.body", "body": raw})
