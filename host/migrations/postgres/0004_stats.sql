-- Session stats: time spent in `running` (microseconds, closed spans) and
-- when the current running span began (0: not running).
ALTER TABLE sessions ADD COLUMN active_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN running_since BIGINT NOT NULL DEFAULT 0;
