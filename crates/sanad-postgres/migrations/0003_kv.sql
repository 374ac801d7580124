-- Small stores the bindings keep beside the ledger (the HTTP binding's tokens and answers by
-- Idempotency-Key, say), shared by every server on the database: one table, one key space per
-- store. Never personal data: the registry keeps those, apart.
CREATE TABLE sanad_kv (
    space text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);
