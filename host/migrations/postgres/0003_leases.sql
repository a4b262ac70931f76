-- Session ownership across nodes, and crash recovery.
-- lease_owner: the node whose runner owns the session (NULL: none);
-- lease_until: when that ownership lapses unless renewed (unix microseconds,
-- the database's clock); lease_epoch: bumped by every claim, and checked by
-- every write of the runner (fencing: a paused old owner cannot write after
-- another node adopted the session).
-- turn_seq: the user.message whose turn is in progress (or last started),
-- so a node that adopts a running session knows which turn to resume.
ALTER TABLE sessions ADD COLUMN lease_owner TEXT;
ALTER TABLE sessions ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN turn_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_lease ON sessions (lease_owner, lease_until);
