-- Self-hosted environments: the keys their workers authenticate with (only
-- the SHA-256 of each is stored) and the work queue. Keep in step with the
-- other backend's folder.

CREATE TABLE environment_keys (
    id              TEXT PRIMARY KEY,
    environment_id  TEXT NOT NULL,
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    hint            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX environment_keys_env ON environment_keys (environment_id, created_at, id);

-- One row per work item. `state` is the stored state; a lease that ran out
-- makes an item queued again (model/work.rs decides, on read). `version`
-- guards every change (compare and set), so two nodes never both claim one.
CREATE TABLE work_items (
    id                  TEXT PRIMARY KEY,
    environment_id      TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    state               TEXT NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    queued_at           BIGINT NOT NULL,
    polled_at           BIGINT,
    acknowledged_at     BIGINT,
    started_at          BIGINT,
    latest_heartbeat_at BIGINT,
    lease_until         BIGINT,
    ttl_secs            BIGINT NOT NULL,
    stop_requested_at   BIGINT,
    stopped_at          BIGINT,
    worker_id           TEXT,
    token_hash          TEXT,
    claims              BIGINT NOT NULL,
    metadata            TEXT NOT NULL
);
CREATE INDEX work_items_env ON work_items (environment_id, created_at, id);
CREATE INDEX work_items_session ON work_items (session_id, state);
CREATE INDEX work_items_token ON work_items (token_hash);

-- Who polled an environment lately (`work/stats` counts them).
CREATE TABLE work_pollers (
    environment_id  TEXT NOT NULL,
    worker_id       TEXT NOT NULL,
    polled_at       BIGINT NOT NULL,
    PRIMARY KEY (environment_id, worker_id)
);
