"""Environment-variable credentials end to end, for every harness: a vault credential of type
`environment_variable` (limited to one host), and a bash tool that runs
`curl -H "Authorization: Bearer $NAME" https://…` against HTTPS servers this test starts on
loopback with its own certificate.

Run once by tests/e2e_sessions.rs (`e2e_env_credentials`), against a server whose
`egress.upstream_ca_files` trusts the certificate's CA and whose `egress.allow_internal` opens
the two loopback addresses used here (127.0.0.2 is the credential's allowed host, 127.0.0.3 is
not). The allowed server must receive the secret; the other one only the placeholder; the tool
output, the sandbox (environment, files, process arguments of every process on the host), the
event log and the server log must never hold the secret."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import threading
import uuid
from pathlib import Path

import pytest

from .lib import Live, is_idle, text_of, uniq

VAR = "E2E_API_TOKEN"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records (host address, path, Authorization header) and answers `served <path>`."""

    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        with self.lock:
            self.seen.append((self.server.server_address[0], self.path, self.headers.get("Authorization", "")))
        body = f"served {self.path}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def upstreams():
    """HTTPS servers on 127.0.0.2 and 127.0.0.3 (same port), with the runner's certificate."""
    cert, key, port = (os.environ["BRIDLE_E2E_TLS_CERT"], os.environ["BRIDLE_E2E_TLS_KEY"],
                       int(os.environ["BRIDLE_E2E_TLS_PORT"]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    servers = []
    for ip in ("127.0.0.2", "127.0.0.3"):
        srv = http.server.ThreadingHTTPServer((ip, port), Recorder)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield port
    for srv in servers:
        srv.shutdown()


def _env_vault(stack, secret: str) -> str:
    v = stack.client.beta.vaults.create(display_name=uniq("env-secrets"))
    cred = stack.client.beta.vaults.credentials.create(
        v.id, display_name="service token",
        auth={"type": "environment_variable", "secret_name": VAR, "secret_value": secret,
              "networking": {"type": "limited", "allowed_hosts": ["127.0.0.2"]}},
    )
    # The SDK reads the credential back with its public half only.
    assert cred.auth.type == "environment_variable" and cred.auth.secret_name == VAR
    assert cred.auth.injection_location.header is True and cred.auth.injection_location.body is False
    assert cred.auth.networking.type == "limited" and cred.auth.networking.allowed_hosts == ["127.0.0.2"]
    assert secret not in cred.to_json()
    return v.id


def _host_processes_hold(secret: str) -> list[str]:
    """Processes on this host whose environment or arguments hold `secret` (the sandboxes'
    included: they are host processes under other uids)."""
    found = []
    needle = secret.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for what in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{pid}/{what}").read_bytes()
            except OSError:
                continue
            if needle in data:
                found.append(f"{pid}/{what}")
    return found


def _files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    out = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                out.append(str(p))
        except OSError:
            continue
    return out


@pytest.mark.parametrize("engine_name", ["claude", "codex", "openai-agents"])
def test_env_secret_reaches_only_its_host(stack, model, sessions, upstreams, engine_name):
    port = upstreams
    secret = f"sk-env-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:8]
    env_vault = _env_vault(stack, secret)
    agent = stack.client.beta.agents.create(name=uniq("env"), model=model,
                                            tools=[{"type": "agent_toolset_20260401"}])
    s = stack.client.beta.sessions.create(agent=agent.id, environment_id=stack.environment_id(),
                                          vault_ids=[stack.llm_vault(engine_name), env_vault])
    live = Live(stack, s.id, model)
    sessions.append(live)
    command = (
        f'curl -sS -H "Authorization: Bearer ${VAR}" https://127.0.0.2:{port}/allowed-{tag}; '
        # The other host is tunnelled untouched: curl sees the server's own certificate,
        # which the sandbox does not trust (only the gateway does), hence -k.
        f'curl -sS -k -H "Authorization: Bearer ${VAR}" https://127.0.0.3:{port}/other-{tag}; '
        f'echo "env=${VAR}"; tr "\\0" "\\n" < /proc/self/environ | grep -c "^{VAR}=bridle_placeholder_"'
    )
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": command}], "text": "Done: {{tool_output}}"}]})
    evs = live.turn("Call the service.")
    use, result, msg, _ = live.expect_order(
        evs, ["agent.tool_use", "agent.tool_result", "agent.message", is_idle("end_turn")], "a bash tool turn")
    out = json.dumps(result.get("content"))
    live.check(f"served /allowed-{tag}" in out, f"the allowed host did not answer: {out}")
    live.check(f"served /other-{tag}" in out, f"the other host did not answer: {out}")
    live.check("env=bridle_placeholder_" in out, f"the tool did not see a placeholder in ${VAR}: {out}")

    with Recorder.lock:
        seen = [(ip, path, auth) for ip, path, auth in Recorder.seen if path.endswith(tag)]
    allowed = [auth for ip, path, auth in seen if path == f"/allowed-{tag}"]
    other = [auth for ip, path, auth in seen if path == f"/other-{tag}"]
    live.check(allowed == [f"Bearer {secret}"], f"the allowed host got {allowed!r}, expected the secret")
    live.check(len(other) == 1 and other[0].startswith("Bearer bridle_placeholder_") and secret not in other[0],
               f"the host outside allowed_hosts got {other!r}, expected only the placeholder")
    placeholder = other[0].removeprefix("Bearer ")
    live.check(placeholder in out, "the placeholder the tool saw is the one sent to the other host")

    # Never in the tool output, the events, the sandbox or the server log.
    live.check(secret not in out and secret not in text_of(msg), "the secret appears in the tool output")
    events = json.dumps(live.all_events())
    live.check(secret not in events, "the secret appears in the session's event log")
    procs = _host_processes_hold(secret)
    live.check(not procs, f"the secret is in the environment or arguments of processes: {procs}")
    if stack.sandbox_dir:
        files = _files_holding(Path(stack.sandbox_dir), secret)
        live.check(not files, f"the secret is in sandbox files: {files}")
    if stack.log_path:
        log = Path(stack.log_path).read_text(errors="replace")
        live.check(secret not in log, "the secret appears in the server log")
    live.check_credentials()
