-- Delegated session threads: a roster agent a coordinator's primary thread
-- runs as a child thread of the session, with a log of its own. (The primary
-- thread needs no row: it is the session.)
CREATE TABLE session_threads (
    id               TEXT PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- Creation order within the session (the primary thread is 1).
    position         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    status           TEXT NOT NULL,
    -- The thread's last event seq in session_thread_events.
    last_seq         BIGINT NOT NULL DEFAULT 0,
    -- The thread as the API returns it (JSON).
    body             TEXT NOT NULL,
    UNIQUE (session_id, position)
);

CREATE TABLE session_thread_events (
    thread_id    TEXT NOT NULL REFERENCES session_threads (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
