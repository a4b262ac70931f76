-- Files API: a file's metadata, and its bytes in chunks (at most 1 MiB each,
-- numbered from 0), so every node sharing the database can serve them and no
-- file is ever held whole in memory.
CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    filename        TEXT NOT NULL,
    mime_type       TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    -- 1: the bytes may be downloaded (uploads, session outputs).
    downloadable    BIGINT NOT NULL,
    -- The scope (`session`) and its id; NULL for uploads.
    scope_type      TEXT,
    scope_id        TEXT,
    -- 0 while an upload is still being written (not listed, not served);
    -- an upload abandoned by a crashed node is swept later.
    complete        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX files_created ON files (created_at, id);
CREATE INDEX files_scope ON files (scope_id, created_at, id);

CREATE TABLE file_chunks (
    file_id     TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (file_id, seq)
);
