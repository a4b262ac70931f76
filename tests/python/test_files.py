"""The Files API through the official SDK (`client.beta.files`): upload, metadata, list with
pagination and the scope filter, download, delete; the size limit, and bad uploads.

tests/api_python_sdk.rs starts the server with `files.max_bytes` = BRIDLE_FILES_MAX_BYTES, seeds
session-scoped files (as a session's outputs will be) for BRIDLE_SCOPED_SESSION, and after this
suite checks that the database holds no file row and no chunk row: every test here deletes
what it stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from urllib.parse import urlparse

import anthropic
import httpx
import pytest

from conftest import API_KEY, BASE_URL, BETA, assert_api_error, assert_raw_error, parse_ts

MAX_BYTES = int(os.environ.get("BRIDLE_FILES_MAX_BYTES", "0"))
SCOPED_SESSION = os.environ.get("BRIDLE_SCOPED_SESSION", "")
# What tests/api_python_sdk.rs seeds under SCOPED_SESSION: (filename, content, downloadable).
SCOPED_FILES = [("out-1.txt", b"first output\n", True), ("out-2.txt", b"second output\n", True),
                ("log.txt", b"not for download\n", False)]
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _require_settings() -> None:
    if MAX_BYTES <= 0 or not SCOPED_SESSION:
        pytest.fail("BRIDLE_FILES_MAX_BYTES and BRIDLE_SCOPED_SESSION must be set (tests/api_python_sdk.rs "
                    "sets them)", pytrace=False)


def pattern(n: int) -> bytes:
    """n bytes that differ block to block, so a chunk out of place shows."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


@pytest.fixture
def stored(client: anthropic.Anthropic):
    """Ids to delete at the end of a test (the suite must leave no file behind)."""
    ids: list[str] = []
    yield ids
    for i in ids:
        try:
            client.beta.files.delete(i)
        except anthropic.NotFoundError:
            pass


def upload(client: anthropic.Anthropic, stored: list[str], name: str, data: bytes, ctype: str | None = None):
    f = client.beta.files.upload(file=(name, data, ctype) if ctype else (name, data))
    stored.append(f.id)
    return f


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "bridleBoundary7") -> tuple[bytes, str]:
    """A multipart/form-data body written by hand, for part names and filenames a client
    library would clean up. Each part is (name, filename or None, content)."""
    body = b""
    for name, filename, content in parts:
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: text/plain\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def split_part(body: bytes) -> tuple[bytes, bytes]:
    """A one-part multipart body with empty content, split where the content goes."""
    at = body.index(b"\r\n\r\n") + 4
    return body[:at], body[at:]


def post_raw(body: bytes, content_type: str, headers: dict | None = None) -> httpx.Response:
    h = {"x-api-key": API_KEY, "content-type": content_type, **(headers or {})}
    return httpx.post(BASE_URL + "/v1/files", content=body, headers=h, timeout=60)


def file_count(client: anthropic.Anthropic) -> int:
    return len(list(client.beta.files.list(limit=1000)))


def test_upload_retrieve_list_download_delete(client, stored):
    # 3.5 MiB: four chunks in the database, the last one partial.
    data = pattern(3 * MIB + MIB // 2)
    f = upload(client, stored, "report.csv", data, "text/csv")
    assert f.type == "file"
    assert f.id.startswith("file_")
    assert f.filename == "report.csv"
    assert f.mime_type == "text/csv"
    assert f.size_bytes == len(data)
    assert f.downloadable is True
    assert f.scope is None
    assert f.expires_at is None
    parse_ts(f.created_at)

    again = client.beta.files.retrieve_metadata(f.id)
    assert again.model_dump() == f.model_dump()
    assert f.id in [x.id for x in client.beta.files.list(limit=1000)]

    resp = client.beta.files.download(f.id)
    assert resp.read() == data
    assert resp.http_response.headers["content-type"] == "text/csv"
    assert resp.http_response.headers["content-length"] == str(len(data))
    assert 'filename="report.csv"' in resp.http_response.headers["content-disposition"]

    deleted = client.beta.files.delete(f.id)
    assert deleted.id == f.id and deleted.type == "file_deleted"
    for call in (client.beta.files.retrieve_metadata, client.beta.files.download, client.beta.files.delete):
        with pytest.raises(anthropic.NotFoundError) as ei:
            call(f.id)
        assert_api_error(ei.value, 404, "not_found_error")
    assert f.id not in [x.id for x in client.beta.files.list(limit=1000)]


def test_download_streams_large_file_exactly(client, stored):
    # Several chunks plus a tail, read back through the streaming response.
    data = pattern(5 * MIB + 12345)
    f = upload(client, stored, "big.bin", data, "application/octet-stream")
    got = bytearray()
    with client.beta.files.with_streaming_response.download(f.id) as resp:
        for piece in resp.iter_bytes():
            got += piece
    assert bytes(got) == data


def test_empty_file_and_mime_types(client, stored):
    empty = upload(client, stored, "empty.txt", b"", "text/plain")
    assert empty.size_bytes == 0
    assert client.beta.files.download(empty.id).read() == b""
    # No useful content type: guessed from the extension, else octet-stream.
    for name, want in [("data.json", "application/json"), ("picture.png", "image/png"),
                       ("noextension", "application/octet-stream")]:
        r = httpx.post(BASE_URL + "/v1/files", headers={"x-api-key": API_KEY},
                       files={"file": (name, b"{}", "application/octet-stream")})
        assert r.status_code == 200, r.text
        stored.append(r.json()["id"])
        assert r.json()["mime_type"] == want, (name, r.json())


def test_filenames_keep_the_last_path_component(client, stored):
    body, ctype = multipart([("file", "some/dir/notes.txt", b"hello")])
    r = post_raw(body, ctype)
    assert r.status_code == 200, r.text
    stored.append(r.json()["id"])
    assert r.json()["filename"] == "notes.txt"
    body, ctype = multipart([("file", "", b"hello")])
    r = post_raw(body, ctype)
    assert r.status_code == 200, r.text
    stored.append(r.json()["id"])
    assert r.json()["filename"].startswith("unnamed"), r.json()


def test_list_pages_newest_first(client, stored):
    ids = [upload(client, stored, f"page-{i}.txt", f"file {i}".encode(), "text/plain").id for i in range(5)]
    mine = set(ids)
    first = client.beta.files.list(limit=2)
    assert len(first.data) == 2
    assert first.next_page and first.next_page.startswith("page_"), first
    # Auto-pagination walks every page; ours come newest first.
    walked = [f.id for f in client.beta.files.list(limit=2) if f.id in mine]
    assert walked == list(reversed(ids))

    # The older list shape rides along: has_more, first_id, last_id, after_id / before_id.
    raw = httpx.get(BASE_URL + "/v1/files", params={"limit": 2}, headers={"x-api-key": API_KEY}).json()
    assert raw["has_more"] is True
    assert raw["first_id"] == raw["data"][0]["id"] and raw["last_id"] == raw["data"][-1]["id"]
    after = httpx.get(BASE_URL + "/v1/files", params={"limit": 2, "after_id": ids[3]},
                      headers={"x-api-key": API_KEY}).json()
    assert [f["id"] for f in after["data"]] == [ids[2], ids[1]], after
    before = httpx.get(BASE_URL + "/v1/files", params={"limit": 2, "before_id": ids[1]},
                       headers={"x-api-key": API_KEY}).json()
    assert [f["id"] for f in before["data"]] == [ids[3], ids[2]], before

    # ids: exactly those files, one page.
    some = client.beta.files.list(ids=[ids[0], ids[4], "file_01NOTTHERE"])
    assert sorted(f.id for f in some.data) == sorted([ids[0], ids[4]])
    assert some.next_page is None
    # Page tokens from another list, or mixed parameters, are clear 400s.
    for params in [{"page": "page_notatoken"}, {"page": "nope"}, {"limit": 1001}, {"limit": 0},
                   {"ids[]": ids[0], "limit": 2}, {"after_id": ids[0], "before_id": ids[1]}, {"order": "asc"}]:
        r = httpx.get(BASE_URL + "/v1/files", params=params, headers={"x-api-key": API_KEY})
        assert_raw_error(r, 400, "invalid_request_error")


def test_scope_id_lists_a_sessions_files(client):
    scoped = client.beta.files.list(scope_id=SCOPED_SESSION)
    by_name = {f.filename: f for f in scoped.data}
    assert sorted(by_name) == sorted(n for n, _, _ in SCOPED_FILES), scoped
    for name, content, downloadable in SCOPED_FILES:
        f = by_name[name]
        assert f.scope is not None and f.scope.type == "session" and f.scope.id == SCOPED_SESSION
        assert f.downloadable is downloadable
        assert f.size_bytes == len(content)
        if downloadable:
            assert client.beta.files.download(f.id).read() == content
        else:
            # As the API does: the metadata is there, the bytes are not served.
            with pytest.raises(anthropic.BadRequestError) as ei:
                client.beta.files.download(f.id)
            err = assert_api_error(ei.value, 400, "invalid_request_error")
            assert ei.value.error_code == "file_not_downloadable", err
    # Uploads have no scope, so no scope_id lists them; another session has no files.
    assert client.beta.files.list(scope_id="sesn_01NOSUCHSESSION").data == []
    # Deleting a scoped file takes its bytes too (the suite ends with an empty database).
    for f in scoped.data:
        client.beta.files.delete(f.id)
    assert client.beta.files.list(scope_id=SCOPED_SESSION).data == []


def test_too_large_is_413_and_stores_nothing(client, stored):
    before = file_count(client)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.files.upload(file=("huge.bin", pattern(MAX_BYTES + 1), "application/octet-stream"))
    err = assert_api_error(ei.value, 413, "request_too_large")
    assert "files.max_bytes" in err["message"], err
    assert file_count(client) == before
    # Exactly the limit is fine.
    f = upload(client, stored, "max.bin", pattern(MAX_BYTES), "application/octet-stream")
    assert f.size_bytes == MAX_BYTES


@pytest.mark.parametrize("parts, want", [
    ([], "no `file` part"),
    ([("document", "a.txt", b"x")], "unknown multipart part `document`"),
    ([("file", "a.txt", b"x"), ("file", "b.txt", b"y")], "more than one `file` part"),
    ([("file", "a.txt", b"x"), ("expires_in_seconds", None, b"3600")], "expires_in_seconds"),
    ([("file", "a\tb.txt", b"x")], "control characters"),
    ([("file", "n" * 256 + ".txt", b"x")], "the limit is 255"),
])
def test_bad_uploads_are_400_and_store_nothing(client, parts, want):
    before = file_count(client)
    body, ctype = multipart(parts)
    r = post_raw(body, ctype)
    err = assert_raw_error(r, 400, "invalid_request_error")
    assert want in err["message"], err
    assert file_count(client) == before


def test_not_multipart_is_400(client):
    for body, ctype in [(json.dumps({"file": "x"}).encode(), "application/json"),
                        (b"--x\r\nbroken", "multipart/form-data")]:
        r = post_raw(body, ctype)
        err = assert_raw_error(r, 400, "invalid_request_error")
        assert "multipart" in err["message"], err


def test_beta_header_is_optional_on_files_only(client, stored):
    # The SDK sends a beta header here only when asked; both forms work.
    f = client.beta.files.upload(file=("b.txt", b"beta", "text/plain"), betas=["files-api-2025-04-14"])
    stored.append(f.id)
    r = httpx.get(BASE_URL + f"/v1/files/{f.id}", headers={"x-api-key": API_KEY})
    assert r.status_code == 200, r.text
    r = httpx.get(BASE_URL + f"/v1/files/{f.id}", headers={"x-api-key": API_KEY, "anthropic-beta": BETA})
    assert r.status_code == 200, r.text
    # ...while the Managed Agents routes still require theirs.
    r = httpx.get(BASE_URL + "/v1/agents", headers={"x-api-key": API_KEY})
    assert_raw_error(r, 400, "invalid_request_error")
    # And the API key is required everywhere.
    r = httpx.get(BASE_URL + "/v1/files")
    assert_raw_error(r, 401, "authentication_error")


def test_unknown_ids_are_404(client):
    for bad in ["file_01NOTTHERE", "agent_01WRONGKIND"]:
        with pytest.raises(anthropic.NotFoundError) as ei:
            client.beta.files.retrieve_metadata(bad)
        assert_api_error(ei.value, 404, "not_found_error")


def test_interrupted_upload_is_not_kept(client):
    """A client that goes away mid-upload leaves no file (and, as the suite's final database
    check shows, no chunk) behind."""
    before = file_count(client)
    url = urlparse(BASE_URL)
    body_start, tail = split_part(multipart([("file", "cut.bin", b"")])[0])
    announced = len(body_start) + 5 * MIB + len(tail)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {url.netloc}\r\nx-api-key: {API_KEY}\r\n"
                      f"content-type: multipart/form-data; boundary=bridleBoundary7\r\n"
                      f"content-length: {announced}\r\n\r\n").encode() + body_start)
        sock.sendall(pattern(3 * MIB))  # three full chunks stored, then the client is gone
        time.sleep(0.5)
    deadline = time.time() + 10
    while file_count(client) != before and time.time() < deadline:
        time.sleep(0.1)
    assert file_count(client) == before


def test_other_writes_go_on_during_an_upload(client, stored):
    """An upload in progress holds no database lock: on SQLite, a write transaction open for
    the whole upload would make every other write fail once its busy timeout ran out. Here an
    upload is held open, half sent, while other writes are made; then it completes."""
    url = urlparse(BASE_URL)
    data = pattern(3 * MIB)
    body_start, tail = split_part(multipart([("file", "slow.bin", b"")])[0])
    announced = len(body_start) + len(data) + len(tail)
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {url.netloc}\r\nx-api-key: {API_KEY}\r\n"
                      f"content-type: multipart/form-data; boundary=bridleBoundary7\r\n"
                      f"content-length: {announced}\r\nconnection: close\r\n\r\n").encode() + body_start)
        sock.sendall(data[: 2 * MIB])  # two chunks stored; the upload waits for the rest
        time.sleep(0.5)
        # Writes elsewhere (each would wait on a held SQLite write lock, then fail).
        agent = client.beta.agents.create(name="during-upload", model="claude-sonnet-4-6")
        client.beta.agents.archive(agent.id)
        other = upload(client, stored, "meanwhile.txt", b"meanwhile", "text/plain")
        assert client.beta.files.download(other.id).read() == b"meanwhile"
        sock.sendall(data[2 * MIB:] + tail)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status_line, answer[:500]
    body = rest.split(b"\r\n\r\n", 1)[1]
    meta = json.loads(body)
    stored.append(meta["id"])
    assert meta["size_bytes"] == len(data)
    assert client.beta.files.download(meta["id"]).read() == data
