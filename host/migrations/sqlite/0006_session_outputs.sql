-- A session's output files (collected from `/mnt/session/outputs`): the path
-- under that directory a file came from and the SHA-256 of its bytes, so an
-- unchanged file is not stored again. NULL for uploads.
ALTER TABLE files ADD COLUMN output_path TEXT;
ALTER TABLE files ADD COLUMN sha256 TEXT;
CREATE INDEX files_output ON files (scope_id, output_path);
