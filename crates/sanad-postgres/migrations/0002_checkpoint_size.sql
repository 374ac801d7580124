-- Several processes may write one log: each signs checkpoints of the tree it has seen, and
-- the stored checkpoint must only move forward. Its tree size is kept beside it so that a
-- commit can compare. Rows from version 1 start at 0 and take the next checkpoint written,
-- which covers at least as many entries as the one stored.
ALTER TABLE sanad_log_head ADD COLUMN checkpoint_size bigint NOT NULL DEFAULT 0
    CHECK (checkpoint_size >= 0 AND checkpoint_size <= size);
