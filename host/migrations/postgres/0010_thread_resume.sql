-- A child thread's runtime resume token (Claude Code's session id, codex's
-- thread id): a follow-up delegation to the thread resumes its runtime from it.
ALTER TABLE session_threads ADD COLUMN resume TEXT;
