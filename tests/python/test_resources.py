"""Session resources through the official SDK: `resources` at session create and
`client.beta.sessions.resources` (list, add, retrieve, update, delete); and the session's own
files (scope) going with the session.

Mounting into a sandbox, and outputs, are shown end to end in tests/python/e2e/test_files.py.
Every test deletes the files it uploads (tests/api_python_sdk.rs checks none is left)."""

from __future__ import annotations

import anthropic
import pytest

import os

from conftest import assert_api_error, parse_ts, uniq

# A file scoped to another (made-up) session, seeded by tests/api_python_sdk.rs: no other
# session may mount it. The last test that uses it deletes it.
FOREIGN_FILE = os.environ.get("BRIDLE_FOREIGN_FILE", "")


@pytest.fixture
def uploaded(client: anthropic.Anthropic):
    files: list = []

    def make(name: str = "input.csv", data: bytes = b"a,b\n1,2\n"):
        f = client.beta.files.upload(file=(name, data, "text/csv"))
        files.append(f.id)
        return f

    yield make
    for i in files:
        try:
            client.beta.files.delete(i)
        except anthropic.NotFoundError:
            pass


def test_resources_at_create_and_through_the_api(client, agent, environment, uploaded):
    a, b, c = uploaded("a.csv"), uploaded("b.txt", b"bee"), uploaded("c.md", b"# c")
    s = client.beta.sessions.create(
        agent=agent.id, environment_id=environment.id,
        resources=[{"type": "file", "file_id": a.id},
                   {"type": "file", "file_id": b.id, "mount_path": "/workspace/data/b.txt"}],
    )
    try:
        assert [r.type for r in s.resources] == ["file", "file"]
        ra, rb = s.resources
        assert ra.id.startswith("sesrsc_") and ra.file_id == a.id
        assert ra.mount_path == f"/mnt/session/uploads/{a.id}", "the default mount path"
        assert rb.mount_path == "/workspace/data/b.txt"
        parse_ts(ra.created_at), parse_ts(ra.updated_at)

        listed = list(client.beta.sessions.resources.list(s.id))
        assert [r.id for r in listed] == [ra.id, rb.id]
        got = client.beta.sessions.resources.retrieve(rb.id, session_id=s.id)
        assert (got.type, got.file_id, got.mount_path) == ("file", b.id, "/workspace/data/b.txt")

        added = client.beta.sessions.resources.add(s.id, type="file", file_id=c.id, mount_path="/workspace/c.md")
        assert added.id.startswith("sesrsc_") and added.file_id == c.id and added.mount_path == "/workspace/c.md"
        assert [r.id for r in client.beta.sessions.retrieve(s.id).resources] == [ra.id, rb.id, added.id]

        # Pages of one follow next_page to the end.
        paged = [r.id for r in client.beta.sessions.resources.list(s.id, limit=1)]
        assert paged == [ra.id, rb.id, added.id]

        # Only github_repository resources take a token.
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.sessions.resources.update(ra.id, session_id=s.id, authorization_token="tok")
        assert "github_repository" in assert_api_error(ei.value, 400, "invalid_request_error")["message"]

        gone = client.beta.sessions.resources.delete(ra.id, session_id=s.id)
        assert (gone.id, gone.type) == (ra.id, "session_resource_deleted")
        assert [r.id for r in client.beta.sessions.resources.list(s.id)] == [rb.id, added.id]
        with pytest.raises(anthropic.NotFoundError) as ei:
            client.beta.sessions.resources.retrieve(ra.id, session_id=s.id)
        assert_api_error(ei.value, 404, "not_found_error")
        # The freed path can be taken again.
        again = client.beta.sessions.resources.add(s.id, type="file", file_id=a.id)
        assert again.mount_path == f"/mnt/session/uploads/{a.id}"
    finally:
        client.beta.sessions.delete(s.id)


def test_bad_resources_are_refused_and_store_nothing(client, agent, environment, uploaded):
    f = uploaded()
    before = {x.id for x in client.beta.sessions.list(limit=100)}
    assert FOREIGN_FILE, "BRIDLE_FOREIGN_FILE must be set (tests/api_python_sdk.rs sets it)"
    scoped = FOREIGN_FILE
    bad = [
        ([{"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}], "not found"),
        ([{"type": "file", "file_id": scoped}], "cannot be used by another session"),
        ([{"type": "file", "file_id": f.id, "mount_path": "/etc/passwd"}], "outside the allowed directories"),
        ([{"type": "file", "file_id": f.id, "mount_path": "/workspace/../../etc/passwd"}], "no `..`"),
        ([{"type": "file", "file_id": f.id, "mount_path": "/workspace/x"},
          {"type": "file", "file_id": f.id, "mount_path": "/workspace/x"}], "collides"),
        ([{"type": "memory_store", "memory_store_id": "memstore_01abc"}], "memory stores"),
    ]
    for resources, want in bad:
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title=uniq("bad"),
                                        resources=resources)
        msg = assert_api_error(ei.value, 400, "invalid_request_error")["message"]
        assert want in msg, (resources, msg)
    assert {x.id for x in client.beta.sessions.list(limit=100)} == before, "a refused create stored a session"

    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id,
                                    resources=[{"type": "file", "file_id": f.id, "mount_path": "/workspace/in.csv"}])
    try:
        for kw, want in [
            (dict(file_id="file_011CNha8iCJcU1wXNR6q4V8w"), "not found"),
            (dict(file_id=scoped), "cannot be used by another session"),
            (dict(file_id=f.id, mount_path="/workspace/in.csv"), "collides"),
            (dict(file_id=f.id, mount_path="/workspace/in.csv/inner"), "collides"),
            (dict(file_id=f.id, mount_path="/tmp/x"), "outside the allowed directories"),
        ]:
            with pytest.raises(anthropic.BadRequestError) as ei:
                client.beta.sessions.resources.add(s.id, type="file", **kw)
            msg = assert_api_error(ei.value, 400, "invalid_request_error")["message"]
            assert want in msg, (kw, msg)
        assert len(list(client.beta.sessions.resources.list(s.id))) == 1, "a refused add stored a resource"
    finally:
        client.beta.sessions.delete(s.id)
        client.beta.files.delete(FOREIGN_FILE)


def test_deleting_a_session_deletes_its_scoped_files(client, agent, environment):
    """Outputs are scoped to their session and go with it (here: the session's own list is
    empty afterwards; e2e/test_files.py shows it with real outputs)."""
    s = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.delete(s.id)
    assert list(client.beta.files.list(scope_id=s.id)) == []
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.list(s.id)
