"""A real git server for the repository tests: git's own `git http-backend` (CGI) behind a small
threaded HTTP server on loopback that requires a token (HTTP Basic, any user name, the token as
password; GitHub's form; a valid token can be denied one repository: 403). Repositories live under `root` as bare `<name>.git` directories."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def git(*args: str, cwd: str | Path | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def backend_path() -> str:
    return str(Path(git("--exec-path")) / "git-http-backend")


class GitServer:
    def __init__(self, root: Path, port: int):
        self.root = root
        self.tokens: set[str] = set()
        self.denied: set[tuple[str, str]] = set()  # (token, repository name): a valid token without access
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, authorized)
        self.lock = threading.Lock()
        backend = backend_path()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def password(self) -> str | None:
                h = self.headers.get("Authorization", "")
                if not h.startswith("Basic "):
                    return None
                try:
                    return base64.b64decode(h[6:]).decode().partition(":")[2]
                except Exception:  # noqa: BLE001
                    return None

            def authorized(self) -> bool:
                password = self.password()
                with server.lock:
                    return password in server.tokens

            def forbidden(self, path: str) -> bool:
                name = path.lstrip("/").split("/")[0].removesuffix(".git")
                with server.lock:
                    return (self.password(), name) in server.denied

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def handle_git(self) -> None:
                ok = self.authorized()
                path, _, query = self.path.partition("?")
                with server.lock:
                    server.requests.append((self.command, path, ok))
                data = self.body()
                if not ok:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.forbidden(path):
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                env = {"GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                       "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(data)), "REMOTE_USER": "agent", "REMOTE_ADDR": "127.0.0.1",
                       "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                out = subprocess.run([backend], input=data, env=env, capture_output=True).stdout
                head, _, rest = out.partition(b"\r\n\r\n")
                if not rest and b"\n\n" in out:
                    head, _, rest = out.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    k, _, v = line.partition(":")
                    if k.lower() == "status":
                        status = int(v.strip().split()[0])
                    elif k:
                        headers.append((k, v.strip()))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                self.wfile.write(rest)

            do_GET = handle_git
            do_POST = handle_git

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}.git"

    def set_tokens(self, *tokens: str) -> None:
        with self.lock:
            self.tokens = set(tokens)

    def deny(self, token: str, name: str) -> None:
        """`token` stays valid but is refused (403) on repository `name`."""
        with self.lock:
            self.denied.add((token, name))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
