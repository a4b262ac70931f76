-- Memory stores API: stores, their live memories (one row per memory, its
-- current content) and every memory's versions. Versions outlive their
-- memory; deleting a store deletes all three.
CREATE TABLE memory_stores (
    id              TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    archived_at     BIGINT,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    -- The metadata map as JSON.
    metadata        TEXT NOT NULL
);
CREATE INDEX memory_stores_created ON memory_stores (created_at, id);

CREATE TABLE memories (
    id                  TEXT PRIMARY KEY,
    store_id            TEXT NOT NULL REFERENCES memory_stores (id) ON DELETE CASCADE,
    -- Lists walk paths in byte order (prefixes are byte ranges).
    path                TEXT NOT NULL,
    content             TEXT NOT NULL,
    content_sha256      TEXT NOT NULL,
    content_size_bytes  BIGINT NOT NULL,
    version_id          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (store_id, path)
);

CREATE TABLE memory_versions (
    id                  TEXT PRIMARY KEY,
    store_id            TEXT NOT NULL REFERENCES memory_stores (id) ON DELETE CASCADE,
    memory_id           TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    -- created, modified or deleted.
    operation           TEXT NOT NULL,
    -- NULL once redacted (and content, sha and size on deleted versions).
    path                TEXT,
    content             TEXT,
    content_sha256      TEXT,
    content_size_bytes  BIGINT,
    -- Who wrote it: api_actor / session_actor and the key's or session's id.
    actor_type          TEXT,
    actor_id            TEXT,
    redacted_at         BIGINT,
    redacted_by_type    TEXT,
    redacted_by_id      TEXT
);
CREATE INDEX memory_versions_store ON memory_versions (store_id, created_at, id);
CREATE INDEX memory_versions_memory ON memory_versions (memory_id, created_at, id);
