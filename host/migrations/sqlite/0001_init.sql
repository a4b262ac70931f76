-- Bridle schema v1 (SQLite). Keep in step with migrations/postgres.
-- Objects are stored as their wire JSON (`body`) beside the columns that
-- queries filter and sort on. Times are microseconds since the Unix epoch.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    archived_at BIGINT
);
CREATE INDEX agents_created ON agents (created_at, id);

CREATE TABLE agent_versions (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE environments (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    archived_at BIGINT,
    body        TEXT NOT NULL
);
CREATE INDEX environments_created ON environments (created_at, id);

CREATE TABLE vaults (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    archived_at BIGINT,
    body        TEXT NOT NULL
);
CREATE INDEX vaults_created ON vaults (created_at, id);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    vault_id    TEXT NOT NULL REFERENCES vaults (id),
    created_at  BIGINT NOT NULL,
    archived_at BIGINT,
    body        TEXT NOT NULL,
    -- The secret half of `auth`, sealed with the server key.
    sealed      TEXT NOT NULL
);
CREATE INDEX credentials_vault ON credentials (vault_id, created_at, id);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    agent_version   BIGINT NOT NULL,
    environment_id  TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    archived_at     BIGINT,
    -- Highest event sequence number in the session's log.
    last_seq        BIGINT NOT NULL DEFAULT 0,
    -- How the session's harness is wired (engine, LLM vault, credential).
    binding         TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX sessions_created ON sessions (created_at, id);
CREATE INDEX sessions_agent ON sessions (agent_id, created_at);

CREATE TABLE session_events (
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX session_events_type ON session_events (session_id, type, seq);
