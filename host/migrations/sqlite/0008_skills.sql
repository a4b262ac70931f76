-- Skills API: a skill and its versions; each version's files are kept as
-- one zip archive (at most 8 MiB, the API's limit), served by download and
-- unpacked into the sandboxes of sessions whose agent uses it.
CREATE TABLE skills (
    id              TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    display_name    TEXT NOT NULL,
    -- The immutable slug every version must carry.
    name            TEXT NOT NULL,
    latest_version  TEXT NOT NULL
);
CREATE INDEX skills_created ON skills (created_at, id);

CREATE TABLE skill_versions (
    skill_id        TEXT NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    -- Microseconds since the epoch, as text: the version's id.
    id              TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    description     TEXT NOT NULL,
    archive         BLOB NOT NULL,
    PRIMARY KEY (skill_id, id)
);
CREATE INDEX skill_versions_created ON skill_versions (skill_id, created_at, id);
