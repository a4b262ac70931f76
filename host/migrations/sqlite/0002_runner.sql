-- The session runner's durable state.
-- input_seq: the last user event (by log sequence) the runner has taken in.
-- resume: the runtime's own resume token (claude session id, codex thread id).
ALTER TABLE sessions ADD COLUMN input_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN resume TEXT;
