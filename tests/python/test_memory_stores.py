"""The memory stores API through the official SDK (`client.beta.memory_stores`, `.memories`,
`.memory_versions`): stores (create, list, retrieve, update, archive, delete); memories (create,
retrieve, update with rename and a `content_sha256` precondition, delete, list by prefix and
depth with `memory_prefix` roll-ups, paged); versions (list with filters, retrieve, redact);
what an archived store refuses; bad input as 400s in the error envelope."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import anthropic
import pytest

from conftest import assert_api_error, assert_raw_error, parse_ts, uniq

MAX_CONTENT = 102_400


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def ms(client: anthropic.Anthropic):
    return client.beta.memory_stores


@pytest.fixture
def store(ms):
    s = ms.create(name=uniq("store"))
    yield s
    try:
        ms.delete(s.id)
    except anthropic.NotFoundError:
        pass


def test_store_crud(ms):
    name = uniq("Store Name")
    s = ms.create(name=name, description="notes about the user", metadata={"user": "u1", "team": "t"})
    assert s.id.startswith("memstore_"), s.id
    assert s.type == "memory_store"
    assert (s.name, s.description, s.metadata) == (name, "notes about the user", {"user": "u1", "team": "t"})
    assert s.archived_at is None
    parse_ts(s.created_at)
    assert ms.retrieve(s.id).model_dump() == s.model_dump()

    plain = ms.create(name=uniq("plain"))
    assert plain.description == "" and plain.metadata == {}

    u = ms.update(s.id, name=name + "-2", description="", metadata={"team": None, "x": "y"})
    assert (u.name, u.description, u.metadata) == (name + "-2", "", {"user": "u1", "x": "y"})
    assert parse_ts(u.updated_at) >= parse_ts(s.updated_at)
    # Fields left out keep their values.
    assert ms.update(s.id, description="kept name").name == name + "-2"

    ids = [x.id for x in ms.list(limit=1)]
    assert s.id in ids and plain.id in ids and len(ids) == len(set(ids))

    a = ms.archive(s.id)
    assert a.archived_at is not None
    assert ms.archive(s.id).archived_at == a.archived_at, "archiving again changes nothing"
    assert s.id not in [x.id for x in ms.list()]
    assert s.id in [x.id for x in ms.list(include_archived=True)]
    with pytest.raises(anthropic.ConflictError) as e:
        ms.update(s.id, name="no")
    assert "archived" in assert_api_error(e.value, 409, "invalid_request_error")["message"]

    d = ms.delete(s.id)
    assert (d.id, d.type) == (s.id, "memory_store_deleted")
    with pytest.raises(anthropic.NotFoundError) as e:
        ms.retrieve(s.id)
    assert_api_error(e.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        ms.delete(s.id)
    ms.delete(plain.id)


def test_store_list_time_filters(ms, store):
    before = parse_ts(store.created_at) - timedelta(seconds=1)
    after = parse_ts(store.created_at) + timedelta(seconds=1)
    assert store.id in [x.id for x in ms.list(created_at_gte=before, created_at_lte=after)]
    assert store.id not in [x.id for x in ms.list(created_at_gte=after)]
    assert store.id not in [x.id for x in ms.list(created_at_lte=before)]


def test_memory_crud_rename_and_precondition(ms, store):
    mem = ms.memories
    m = mem.create(store.id, path="/projects/foo/notes.md", content="hello")
    assert m.id.startswith("mem_") and m.type == "memory"
    assert m.memory_store_id == store.id
    assert m.memory_version_id.startswith("memver_")
    assert m.content is None, "create defaults to view=basic"
    assert (m.content_sha256, m.content_size_bytes) == (sha("hello"), 5)

    full = mem.retrieve(m.id, memory_store_id=store.id)
    assert full.content == "hello", "retrieve defaults to view=full"
    assert mem.retrieve(m.id, memory_store_id=store.id, view="basic").content is None
    assert mem.create(store.id, path="/e.md", content="", view="full").content == ""

    # Same path again: 409.
    with pytest.raises(anthropic.ConflictError) as e:
        mem.create(store.id, path="/projects/foo/notes.md", content="again")
    assert "/projects/foo/notes.md" in assert_api_error(e.value, 409)["message"]

    # Content change with a matching precondition.
    u = mem.update(m.id, memory_store_id=store.id, content="hello, world",
                   precondition={"type": "content_sha256", "content_sha256": sha("hello")}, view="full")
    assert (u.id, u.content, u.content_sha256) == (m.id, "hello, world", sha("hello, world"))
    assert u.memory_version_id != m.memory_version_id

    # A stale precondition: 409 and nothing changes.
    with pytest.raises(anthropic.ConflictError) as e:
        mem.update(m.id, memory_store_id=store.id, content="lost",
                   precondition={"type": "content_sha256", "content_sha256": sha("hello")})
    assert "precondition" in assert_api_error(e.value, 409, "invalid_request_error")["message"]
    assert mem.retrieve(m.id, memory_store_id=store.id).content == "hello, world"

    # Rename keeps the id; the old path is free again, a taken one is a 409.
    r = mem.update(m.id, memory_store_id=store.id, path="/archive/notes.md")
    assert (r.id, r.path, r.content_sha256) == (m.id, "/archive/notes.md", sha("hello, world"))
    other = mem.create(store.id, path="/projects/foo/notes.md", content="new")
    with pytest.raises(anthropic.ConflictError):
        mem.update(other.id, memory_store_id=store.id, path="/archive/notes.md")

    # An update that changes nothing adds no version.
    same = mem.update(m.id, memory_store_id=store.id, content="hello, world")
    assert same.memory_version_id == r.memory_version_id

    # Delete with a stale digest: 409; with the right one: gone.
    with pytest.raises(anthropic.ConflictError):
        mem.delete(m.id, memory_store_id=store.id, expected_content_sha256=sha("nope"))
    d = mem.delete(m.id, memory_store_id=store.id, expected_content_sha256=sha("hello, world"))
    assert (d.id, d.type) == (m.id, "memory_deleted")
    with pytest.raises(anthropic.NotFoundError) as e:
        mem.retrieve(m.id, memory_store_id=store.id)
    assert_api_error(e.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        mem.delete(m.id, memory_store_id=store.id)
    # The path is free again.
    mem.create(store.id, path="/archive/notes.md", content="reborn")


def test_list_prefix_depth_and_pages(ms, store):
    mem = ms.memories
    paths = ["/a-b.md", "/a.md", "/a/x.md", "/a/y/z.md", "/b.md", "/notes/todo.md", "/notes-archive/todo.md",
             "/notes/deep/er.md"]
    for p in paths:
        mem.create(store.id, path=p, content=f"content of {p}")

    everything = list(mem.list(store.id))
    assert [i.path for i in everything] == sorted(paths, key=lambda p: p.encode())
    assert all(i.type == "memory" and i.content is None for i in everything)

    top = list(mem.list(store.id, depth=1))
    assert [(i.type, i.path) for i in top] == [
        ("memory", "/a-b.md"), ("memory", "/a.md"), ("memory_prefix", "/a/"), ("memory", "/b.md"),
        ("memory_prefix", "/notes-archive/"), ("memory_prefix", "/notes/"),
    ]
    # Pages of 1 to 4 items give the same list, each item once.
    for limit in (1, 2, 3, 4, 6, 7):
        paged = list(mem.list(store.id, depth=1, limit=limit))
        assert [(i.type, i.path) for i in paged] == [(i.type, i.path) for i in top], limit
    first = mem.list(store.id, depth=1, limit=6)
    assert len(first.data) == 6 and not first.has_next_page(), "an exactly full last page has no next page"

    # path_prefix matches whole segments.
    notes = list(mem.list(store.id, path_prefix="/notes/"))
    assert [i.path for i in notes] == ["/notes/deep/er.md", "/notes/todo.md"]
    drill = list(mem.list(store.id, path_prefix="/notes/", depth=1))
    assert [(i.type, i.path) for i in drill] == [("memory_prefix", "/notes/deep/"), ("memory", "/notes/todo.md")]

    full = list(mem.list(store.id, path_prefix="/a/", view="full"))
    assert [(i.path, i.content) for i in full] == [("/a/x.md", "content of /a/x.md"), ("/a/y/z.md", "content of /a/y/z.md")]
    # view=full holds at most 20 per page.
    assert len(mem.list(store.id, view="full", limit=100).data) <= 20

    # A page token from another listing is refused.
    page = mem.list(store.id, depth=1, limit=1)
    with pytest.raises(anthropic.BadRequestError) as e:
        mem.list(store.id, depth=0, limit=1, page=page.next_page)
    assert "page" in assert_api_error(e.value, 400)["message"]


def test_versions_filters_and_redact(ms, store, client):
    mem, ver = ms.memories, ms.memory_versions
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    m = mem.create(store.id, path="/v.md", content="one")
    mem.update(m.id, memory_store_id=store.id, content="two")
    mem.update(m.id, memory_store_id=store.id, path="/w.md")
    other = mem.create(store.id, path="/other.md", content="x")
    mem.delete(m.id, memory_store_id=store.id)

    mine = list(ver.list(store.id, memory_id=m.id))
    assert [v.operation for v in mine] == ["deleted", "modified", "modified", "created"], "newest first"
    assert all(v.type == "memory_version" and v.memory_id == m.id and v.memory_store_id == store.id for v in mine)
    deleted, renamed, edited, created = mine
    assert (deleted.path, deleted.content, deleted.content_sha256, deleted.content_size_bytes) == ("/w.md", None, None, None)
    assert (renamed.path, renamed.content_sha256) == ("/w.md", sha("two"))
    assert (created.path, created.content_size_bytes, created.content) == ("/v.md", 3, None), "list defaults to basic"
    actor = created.created_by
    assert actor is not None and actor.type == "api_actor" and actor.api_key_id.startswith("apikey_"), actor

    assert ver.retrieve(created.id, memory_store_id=store.id).content == "one", "retrieve defaults to full"
    assert [v.id for v in ver.list(store.id, operation="created")] == [other.memory_version_id, created.id]
    assert [v.content for v in ver.list(store.id, memory_id=m.id, operation="modified", view="full")] == ["two", "two"]
    assert len(list(ver.list(store.id, api_key_id=actor.api_key_id))) == 5
    assert list(ver.list(store.id, api_key_id="apikey_someoneelse")) == []
    assert list(ver.list(store.id, session_id="sesn_none")) == []
    assert len(list(ver.list(store.id, created_at_gte=start, created_at_lte=datetime.now(timezone.utc)))) == 5
    assert list(ver.list(store.id, created_at_gte=datetime.now(timezone.utc) + timedelta(seconds=5))) == []
    paged = list(ver.list(store.id, limit=2))
    assert len(paged) == 5 and len({v.id for v in paged}) == 5

    with pytest.raises(anthropic.BadRequestError) as e:
        ver.list(store.id, service_account_id="svac_1")
    assert "service_account_id" in assert_api_error(e.value, 400, "invalid_request_error")["message"]

    r = ver.redact(edited.id, memory_store_id=store.id)
    assert r.id == edited.id and r.redacted_at is not None
    assert (r.content, r.path, r.content_sha256, r.content_size_bytes) == (None, None, None, None)
    assert r.redacted_by is not None and r.redacted_by.type == "api_actor"
    assert r.created_by == edited.created_by, "redacting keeps the author"
    again = ver.retrieve(edited.id, memory_store_id=store.id)
    assert again.redacted_at is not None and again.content is None and again.path is None

    # The version a live memory shows cannot be redacted while it does.
    with pytest.raises(anthropic.ConflictError):
        ver.redact(other.memory_version_id, memory_store_id=store.id)


def test_archived_store_refusals(ms, store):
    mem, ver = ms.memories, ms.memory_versions
    m = mem.create(store.id, path="/keep.md", content="v1")
    mem.update(m.id, memory_store_id=store.id, content="v2")
    first = [v for v in ver.list(store.id, memory_id=m.id) if v.operation == "created"][0]
    gone = mem.create(store.id, path="/gone.md", content="bye")
    ms.archive(store.id)

    for call in (
        lambda: mem.create(store.id, path="/new.md", content="x"),
        lambda: mem.update(m.id, memory_store_id=store.id, content="v3"),
        lambda: mem.update(m.id, memory_store_id=store.id, path="/moved.md"),
        lambda: ms.update(store.id, description="x"),
    ):
        with pytest.raises(anthropic.ConflictError) as e:
            call()
        assert "archived" in assert_api_error(e.value, 409, "invalid_request_error")["message"]
    # Reads, deletes and redaction still work.
    assert mem.retrieve(m.id, memory_store_id=store.id).content == "v2"
    assert [i.path for i in mem.list(store.id)] == ["/gone.md", "/keep.md"]
    mem.delete(gone.id, memory_store_id=store.id)
    assert ver.redact(first.id, memory_store_id=store.id).redacted_at is not None
    ms.delete(store.id)
    with pytest.raises(anthropic.NotFoundError):
        ver.retrieve(first.id, memory_store_id=store.id)


@pytest.mark.parametrize("path", ["notes.md", "/a//b", "/a/", "/a/../b", "/./a", "/a\x00b", "/a\u200bb",
                                  "/a\u2028b", "/cafe\u0301.md", "/" + "a" * 1024, "/a" * 21])
def test_bad_paths_are_400(ms, store, path):
    with pytest.raises(anthropic.BadRequestError) as e:
        ms.memories.create(store.id, path=path, content="x")
    assert "path" in assert_api_error(e.value, 400, "invalid_request_error")["message"]


def test_bad_input_is_400(ms, store, raw):
    mem = ms.memories
    assert mem.create(store.id, path="/max.md", content="x" * MAX_CONTENT).content_size_bytes == MAX_CONTENT
    with pytest.raises(anthropic.BadRequestError) as e:
        mem.create(store.id, path="/big.md", content="x" * (MAX_CONTENT + 1))
    assert "content" in assert_api_error(e.value, 400, "invalid_request_error")["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        mem.create(store.id, path="/n.md", content="x", extra_body={"bogus": 1})
    assert "bogus" in assert_api_error(e.value, 400)["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        ms.create(name=uniq("s"), extra_body={"colour": "blue"})
    assert "colour" in assert_api_error(e.value, 400)["message"]
    for kw in ({"name": ""}, {"name": "a\nb"}, {"name": "x" * 256}, {"name": "ok", "description": "d" * 1025}):
        with pytest.raises(anthropic.BadRequestError):
            ms.create(**kw)
    with pytest.raises(anthropic.BadRequestError) as e:
        mem.list(store.id, path_prefix="/notes")
    assert "path_prefix" in assert_api_error(e.value, 400)["message"]
    with pytest.raises(anthropic.BadRequestError):
        mem.list(store.id, view="everything")
    with pytest.raises(anthropic.BadRequestError):
        mem.list(store.id, depth=-1)
    m = mem.create(store.id, path="/p.md", content="x")
    with pytest.raises(anthropic.BadRequestError) as e:
        mem.update(m.id, memory_store_id=store.id, content="y",
                   precondition={"type": "content_sha256", "content_sha256": "ABC"})
    assert "content_sha256" in assert_api_error(e.value, 400)["message"]
    with pytest.raises(anthropic.BadRequestError):
        mem.update(m.id, memory_store_id=store.id, content="y", precondition={"type": "etag", "etag": "1"})
    with pytest.raises(anthropic.BadRequestError):
        ver_list = ms.memory_versions.list(store.id, operation="renamed")
        list(ver_list)
    with pytest.raises(anthropic.NotFoundError) as e:
        mem.retrieve("mem_nope", memory_store_id=store.id)
    assert_api_error(e.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        ms.retrieve("vlt_wrongkind")
    # The memory stores beta is accepted alone, as the SDK sends it; no beta at all is a 400.
    headers = {"anthropic-beta": "agent-memory-2026-07-22"}
    assert raw.get(f"/v1/memory_stores/{store.id}", headers=headers).status_code == 200
    resp = raw.get(f"/v1/memory_stores/{store.id}", headers={"anthropic-beta": "something-else"})
    assert "agent-memory-2026-07-22" in assert_raw_error(resp, 400, "invalid_request_error")["message"]


def test_concurrent_writers_one_wins(ms, store):
    """Racing creates at one path and racing conditional updates: exactly one of each wins, the
    others get a 409 (never a 500 from the database's unique index)."""
    from concurrent.futures import ThreadPoolExecutor

    mem = ms.memories

    def outcome(call) -> str:
        try:
            call()
            return "ok"
        except anthropic.ConflictError as e:
            assert_api_error(e, 409, "invalid_request_error")
            return "conflict"

    with ThreadPoolExecutor(max_workers=8) as pool:
        creates = list(pool.map(lambda i: outcome(lambda: mem.create(store.id, path="/race.md", content=str(i))),
                                range(8)))
    assert sorted(creates) == ["conflict"] * 7 + ["ok"], creates
    [m] = list(mem.list(store.id))
    digest = m.content_sha256
    pre = {"type": "content_sha256", "content_sha256": digest}
    with ThreadPoolExecutor(max_workers=8) as pool:
        updates = list(pool.map(
            lambda i: outcome(lambda: mem.update(m.id, memory_store_id=store.id, content=f"w{i}", precondition=pre)),
            range(8)))
    assert sorted(updates) == ["conflict"] * 7 + ["ok"], updates
    assert len(list(ms.memory_versions.list(store.id, memory_id=m.id))) == 2


def test_stores_are_isolated(ms, store):
    """A memory or version is reachable only through its own store."""
    other = ms.create(name=uniq("other"))
    try:
        m = ms.memories.create(store.id, path="/same.md", content="a")
        # The same path in another store is another memory.
        n = ms.memories.create(other.id, path="/same.md", content="b")
        assert n.id != m.id
        for call in (
            lambda: ms.memories.retrieve(m.id, memory_store_id=other.id),
            lambda: ms.memories.update(m.id, memory_store_id=other.id, content="x"),
            lambda: ms.memories.delete(m.id, memory_store_id=other.id),
            lambda: ms.memory_versions.retrieve(m.memory_version_id, memory_store_id=other.id),
            lambda: ms.memory_versions.redact(m.memory_version_id, memory_store_id=other.id),
        ):
            with pytest.raises(anthropic.NotFoundError) as e:
                call()
            assert_api_error(e.value, 404, "not_found_error")
        assert [v.memory_id for v in ms.memory_versions.list(other.id)] == [n.id]
        assert ms.memories.retrieve(m.id, memory_store_id=store.id).content == "a"
        # Deleting a store takes its memories and versions, and no one else's.
        ms.delete(other.id)
        with pytest.raises(anthropic.NotFoundError):
            ms.memories.list(other.id)
        assert [i.id for i in ms.memories.list(store.id)] == [m.id]
    finally:
        try:
            ms.delete(other.id)
        except anthropic.NotFoundError:
            pass


def test_roll_up_across_read_batches(ms, store):
    """More memories below one directory than the server reads at a time (200): the directory is
    still one `memory_prefix`, and what follows it is listed."""
    mem = ms.memories
    for i in range(210):
        mem.create(store.id, path=f"/bulk/{i:03}.md", content="")
    mem.create(store.id, path="/after.md", content="")
    mem.create(store.id, path="/zz.md", content="")
    assert [(i.type, i.path) for i in mem.list(store.id, depth=1)] == [
        ("memory", "/after.md"), ("memory_prefix", "/bulk/"), ("memory", "/zz.md")]
    assert len(list(mem.list(store.id, path_prefix="/bulk/", limit=100))) == 210
