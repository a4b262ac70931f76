"""Files and session resources end to end, for one harness (BRIDLE_E2E_ENGINE): a file uploaded
with the official SDK is mounted as a session resource, a bash tool call in the real runtime
reads it (read-only: root-owned, not writable, not chmod-able, not removable from uploads), the agent writes outputs under /mnt/session/outputs, and the session's
scoped files list and download them; unchanged outputs are not stored twice; a resource added
mid-session reaches the next turn; deleting the session deletes its outputs."""

from __future__ import annotations

import json

from .lib import is_idle, text_of, uniq

OUT = "/mnt/session/outputs"


def tool_turn(stack, s, model: str, command: str) -> dict:
    """One turn whose single bash call runs `command`; returns its tool_result."""
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": command}], "text": "Done: {{tool_output}}"}]})
    evs = s.turn("Run the command.")
    _, result, msg, _ = s.expect_order(
        evs, ["agent.tool_use", "agent.tool_result", "agent.message", is_idle("end_turn")], "a bash tool turn")
    s.check(not result.get("is_error"), f"the tool failed: {result}")
    return {"output": json.dumps(result.get("content")), "message": text_of(msg)}


def outputs(stack, session_id: str) -> dict[str, tuple[str, bytes]]:
    """The session's scoped files by filename: (id, bytes downloaded)."""
    out = {}
    for f in stack.client.beta.files.list(scope_id=session_id):
        assert f.scope is not None and f.scope.id == session_id and f.scope.type == "session", f
        assert f.downloadable, f
        out[f.filename] = (f.id, stack.client.beta.files.download(f.id).read())
    return out


def test_mounted_file_is_read_and_outputs_are_downloadable(stack, model, sessions):
    client = stack.client
    secret = uniq("input")
    upload = client.beta.files.upload(file=("input.txt", f"{secret}\n".encode(), "text/plain"))
    later = client.beta.files.upload(file=("later.txt", b"added-later\n", "text/plain"))
    try:
        s = stack.session(model, resources=[
            {"type": "file", "file_id": upload.id},
            {"type": "file", "file_id": upload.id, "mount_path": "/workspace/in/data.txt"},
        ])
        sessions.append(s)
        default = f"/mnt/session/uploads/{upload.id}"
        report = uniq("report")
        got = tool_turn(stack, s, model, (
            f"cat {default} /workspace/in/data.txt"
            f" && ( (echo x >> {default}) 2>/dev/null && echo WRITABLE || echo READONLY )"
            f" && ( (echo x >> /workspace/in/data.txt) 2>/dev/null && echo WRITABLE || echo READONLY )"
            f" && cp {default} {OUT}/copy.txt && printf '%s' {report} > {OUT}/report.txt"
            f" && mkdir -p {OUT}/sub && printf nested > {OUT}/sub/n.txt && echo wrote-outputs"
        ))
        s.check(got["output"].count(secret) == 2, f"the tool did not read the mounted file twice: {got['output']}")
        s.check("WRITABLE" not in got["output"] and got["output"].count("READONLY") == 2,
                f"a mounted file is writable: {got['output']}")
        s.check("wrote-outputs" in got["message"], f"the model did not get the tool output: {got['message']!r}")
        # Root-owned with either driver: no chmod, no removal from uploads.
        got = tool_turn(stack, s, model, (
            f"( (chmod 666 {default} || chmod 666 /workspace/in/data.txt) 2>/dev/null && echo CHMODDED || echo NOCHMOD )"
            f" && ( unlink {default} 2>/dev/null; [ -e {default} ] && echo KEPT || echo REMOVED )"
        ))
        s.check("NOCHMOD" in got["output"], f"a mounted file could be made writable: {got['output']}")
        s.check("KEPT" in got["output"], f"the uploaded file could be removed: {got['output']}")

        files = outputs(stack, s.id)
        s.check(set(files) == {"copy.txt", "report.txt", "n.txt"}, f"outputs listed: {sorted(files)}")
        s.check(files["report.txt"][1] == report.encode(), f"report.txt downloads as {files['report.txt'][1]!r}")
        s.check(files["copy.txt"][1] == f"{secret}\n".encode(), f"copy.txt downloads as {files['copy.txt'][1]!r}")
        s.check(files["n.txt"][1] == b"nested", f"sub/n.txt downloads as {files['n.txt'][1]!r}")

        # A resource added mid-session reaches the next turn; unchanged outputs are not stored
        # again, a changed one replaces its stored copy.
        client.beta.sessions.resources.add(s.id, type="file", file_id=later.id, mount_path="/workspace/later.txt")
        got = tool_turn(stack, s, model, f"cat /workspace/later.txt && printf changed > {OUT}/report.txt")
        s.check("added-later" in got["output"], f"the file added mid-session was not there: {got['output']}")
        again = outputs(stack, s.id)
        s.check(set(again) == set(files), f"outputs after the second turn: {sorted(again)}")
        s.check(again["copy.txt"][0] == files["copy.txt"][0], "an unchanged output was stored again")
        s.check(again["report.txt"][1] == b"changed", f"report.txt after its change: {again['report.txt'][1]!r}")
        s.check(again["report.txt"][0] != files["report.txt"][0], "the changed output kept its old file")

        s.close()
        client.beta.sessions.delete(s.id)
        left = list(client.beta.files.list(scope_id=s.id))
        assert left == [], f"the deleted session's outputs are still listed: {left}"
    finally:
        for f in (upload, later):
            client.beta.files.delete(f.id)


def test_message_file_source_reaches_the_runtime(stack, model, sessions):
    """A `{"type": "file"}` document source in a user.message: the runtime is told where the
    file is in the sandbox, and a tool reads it there."""
    client = stack.client
    secret = uniq("doc")
    doc = client.beta.files.upload(file=("notes.md", f"# {secret}\n".encode(), "text/markdown"))
    try:
        s = stack.session(model)
        sessions.append(s)
        path = f"/mnt/session/uploads/{doc.id}"
        stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": f"cat {path}"}],
                                                   "text": "Read: {{tool_output}}"}]})
        start = s.mark()
        s.send({"type": "user.message", "content": [
            {"type": "text", "text": "Read the attached notes."},
            {"type": "document", "source": {"type": "file", "file_id": doc.id}, "title": "Notes"}]})
        end, _ = s.wait_idle(start, "end_turn")
        evs = s.snapshot(start)[: end - start + 1]
        echo = [e for e in evs if e.get("type") == "user.message"]
        s.check(bool(echo) and echo[0]["content"][1]["source"] == {"type": "file", "file_id": doc.id},
                f"the stored message keeps its file source: {echo[:1]}")
        _, result, _ = s.expect_order(evs, ["agent.tool_use", "agent.tool_result", is_idle("end_turn")],
                                      "a tool turn reading the attached file")
        s.check(secret in json.dumps(result.get("content")), f"the tool did not read the file: {result}")
        first = json.dumps(stack.fake.requests(model)[0]["body"])
        s.check(path in first and "notes.md" in first,
                f"the runtime's first model request does not point at {path}: {first[:1500]}")
    finally:
        client.beta.files.delete(doc.id)
