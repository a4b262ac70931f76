"""`github_repository` session resources end to end, for one harness (BRIDLE_E2E_ENGINE), against
a real git server on loopback (git's own `git http-backend` behind a server that requires a
token; reachable only because the suite's server allows it in `egress.allow_internal`):

- a private repository cloned by the host at a branch and at a commit; a bash tool in the real
  runtime shows the files and `git log`;
- the agent's push reaches the server through the gateway's git route, which adds the token;
  after the server's token changes, a push fails until the token is rotated with
  `resources.update`, then succeeds;
- the token is nowhere in the sandbox (`.git/config`, environment, process arguments) nor in
  the event log or the server log;
- a wrong token, a token without access (403), an unknown repository and a missing branch are `session.error`s of the API's
  repository types, and the session still runs its turn.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from .gitserver import GitServer, git
from .lib import is_idle, uniq

PORT = os.environ.get("BRIDLE_E2E_GIT_PORT")
pytestmark = pytest.mark.skipif(not PORT, reason="BRIDLE_E2E_GIT_PORT not set (the suite's git server port)")


@pytest.fixture(scope="module")
def repo_server():
    """A git server with one private repository: `main` (two commits of a.txt) and `feature`
    (adds f.txt with a marker). Yields (server, marker, first commit's sha)."""
    root = Path(tempfile.mkdtemp(prefix="bridle-e2e-git-"))
    work = root / "work"
    work.mkdir()
    marker = uniq("feature")
    git("init", "-q", "-b", "main", cwd=work)
    (work / "a.txt").write_text("A1\n")
    git("add", "a.txt", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "a.txt").write_text("A2\n")
    git("commit", "-qam", "second", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    (work / "f.txt").write_text(f"{marker}\n")
    git("add", "f.txt", cwd=work)
    git("commit", "-qm", "feature work", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "private.git"))
    git("config", "http.receivepack", "true", cwd=root / "private.git")
    server = GitServer(root, int(PORT))
    try:
        yield server, marker, first
    finally:
        server.close()


def tool_turn(stack, s, model: str, command: str) -> tuple[str, list[dict]]:
    """One turn whose single bash call runs `command`: its output, and the turn's events."""
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": command}], "text": "Done."}]})
    evs = s.turn("Run the command.")
    _, result, _ = s.expect_order(evs, ["agent.tool_use", "agent.tool_result", is_idle("end_turn")], "a bash turn")
    return json.dumps(result.get("content")), evs


def secret_forms(*tokens: str) -> list[str]:
    """Each token, and the header value the gateway and the clone send for it."""
    out = []
    for t in tokens:
        out += [t, base64.b64encode(f"x-access-token:{t}".encode()).decode()]
    return out


def test_private_repository_cloned_pushed_and_rotated(stack, model, sessions, repo_server):
    server, marker, first = repo_server
    token, rotated = uniq("ghtok"), uniq("ghtok2")
    server.set_tokens(token)
    url = server.url("private")
    s = stack.session(model, resources=[
        {"type": "github_repository", "url": url, "authorization_token": token,
         "checkout": {"type": "branch", "name": "feature"}},
        {"type": "github_repository", "url": url, "authorization_token": token,
         "checkout": {"type": "commit", "sha": first}, "mount_path": "/workspace/at-commit"},
    ])
    sessions.append(s)
    listed = list(stack.client.beta.sessions.resources.list(s.id))
    s.check([r.mount_path for r in listed] == ["/workspace/private", "/workspace/at-commit"], f"resources: {listed}")
    s.check(all(r.type == "github_repository" and r.url == url for r in listed), f"resources: {listed}")
    shown = json.dumps([r.to_dict(mode="json") for r in listed])
    s.check(token not in shown and "sealed" not in shown, f"the token is shown: {shown}")

    out, _ = tool_turn(stack, s, model, (
        "cat /workspace/private/f.txt && git -C /workspace/private log --format=%s"
        " && git -C /workspace/private rev-parse --abbrev-ref HEAD"
        " && cat /workspace/at-commit/a.txt && git -C /workspace/at-commit rev-parse HEAD"
        " && echo OWNER=$(find /workspace/private/f.txt -printf %U) ME=$(id -u)"
    ))
    s.check(marker in out, f"the branch's file is not in the clone: {out}")
    s.check("feature work" in out and "second" in out and "first" in out, f"git log: {out}")
    s.check("A1" in out and first in out, f"the commit checkout: {out}")
    # The files belong to the sandbox's user.
    owner = re.search(r"OWNER=(\d+) ME=(\d+)", out)
    s.check(owner is not None and owner.group(1) == owner.group(2), f"the clone's owner: {out}")

    # Nothing of the token in the sandbox: the clone's git config, the environment, process args.
    out, _ = tool_turn(stack, s, model, (
        "cat /workspace/private/.git/config /workspace/at-commit/.git/config; env;"
        " for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done; echo SCANNED"
    ))
    s.check("SCANNED" in out and "/git/" in out, f"the sandbox scan did not run: {out[:500]}")
    for form in secret_forms(token):
        s.check(form not in out, "the token is visible in the sandbox")

    # The agent pushes through the gateway's git route.
    push = ("cd /workspace/private && echo {n} > {n}.txt && git add {n}.txt"
            " && git -c user.name=agent -c user.email=agent@example.invalid commit -qm {n}"
            " && git push -q origin HEAD:refs/heads/{n} 2>&1; echo PUSH_RC=$?")
    out, _ = tool_turn(stack, s, model, push.format(n="agent-one"))
    s.check("PUSH_RC=0" in out, f"the push failed: {out}")
    s.check(git("--git-dir", str(server.root / "private.git"), "log", "-1", "--format=%s", "agent-one") == "agent-one",
            "the pushed branch is not on the server")
    s.check(any(m == "POST" and p.endswith("/git-receive-pack") and ok for m, p, ok in server.requests),
            f"no authorized receive-pack reached the server: {server.requests}")

    # The server now wants another token: pushes fail until the resource's token is rotated.
    server.set_tokens(rotated)
    out, _ = tool_turn(stack, s, model, push.format(n="agent-two"))
    s.check("PUSH_RC=0" not in out, f"a push with the old token succeeded: {out}")
    updated = stack.client.beta.sessions.resources.update(listed[0].id, session_id=s.id, authorization_token=rotated)
    s.check(updated.id == listed[0].id and rotated not in json.dumps(updated.to_dict(mode="json")), f"{updated}")
    out, _ = tool_turn(stack, s, model, push.format(n="agent-three"))
    s.check("PUSH_RC=0" in out, f"the push after rotation failed: {out}")
    s.check(git("--git-dir", str(server.root / "private.git"), "log", "-1", "--format=%s", "agent-three")
            == "agent-three", "the push after rotation is not on the server")

    # Neither token in the event log, the session as shown, or the server's log.
    log = json.dumps(s.all_events()) + stack.client.beta.sessions.retrieve(s.id).to_json()
    for form in secret_forms(token, rotated):
        s.check(form not in log, "a token is in the event log or the session")
        if stack.log_path:
            s.check(form not in Path(stack.log_path).read_text(errors="replace"), "a token is in the server log")


def test_clone_failures_are_repository_errors(stack, model, sessions, repo_server):
    server, _, _ = repo_server
    token, limited = uniq("ghtok"), uniq("ghtok-limited")
    server.set_tokens(token, limited)
    server.deny(limited, "private")
    s = stack.session(model, resources=[
        {"type": "github_repository", "url": server.url("private"), "authorization_token": "wrong-token",
         "mount_path": "/workspace/wrong"},
        {"type": "github_repository", "url": server.url("private"), "authorization_token": limited,
         "mount_path": "/workspace/forbidden"},
        {"type": "github_repository", "url": server.url("nosuch"), "authorization_token": token},
        {"type": "github_repository", "url": server.url("private"), "authorization_token": token,
         "checkout": {"type": "branch", "name": "no-such-branch"}, "mount_path": "/workspace/nobranch"},
        {"type": "github_repository", "url": server.url("private"), "authorization_token": token,
         "mount_path": "/workspace/good"},
    ])
    sessions.append(s)
    # The session stays usable: the turn runs, the good repository is there.
    out, evs = tool_turn(stack, s, model, "cat /workspace/good/a.txt; ls /workspace")
    s.check("A2" in out, f"the good repository is not there: {out}")
    errors = {e["error"]["type"]: e["error"] for e in s.snapshot() if e.get("type") == "session.error"}
    want = {"repository_authentication_error", "repository_forbidden_error", "repository_not_found_error",
            "repository_checkout_error"}
    s.check(want <= set(errors), f"session.error types: {sorted(errors)}")
    for kind in want:
        e = errors[kind]
        s.check(e["retry_status"] == {"type": "retrying"} and e.get("repository_url"), f"{kind}: {e}")
    s.check(errors["repository_not_found_error"]["repository_url"] == server.url("nosuch"), f"{errors}")
    s.check(all(f not in json.dumps(s.all_events()) for f in secret_forms(token, limited)),
            "a token is in the event log")
