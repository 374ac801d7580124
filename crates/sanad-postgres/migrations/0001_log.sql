-- The signed log: its head (one row), its entries, and its full tiles of level 1 and above.
-- Level-0 tiles are the entries' leaf hashes and are never stored; partial tiles are rebuilt
-- on open from the entries and the full tiles below them.
CREATE TABLE sanad_log_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    origin text NOT NULL,
    -- The number of durable entries: the next entry's index. A commit moves it forward under
    -- a row lock, so two writers can never append at one index.
    size bigint NOT NULL CHECK (size >= 0),
    -- The latest signed checkpoint (C2SP tlog-checkpoint); its tree size may trail `size`.
    checkpoint bytea NOT NULL
);

CREATE TABLE sanad_log_entries (
    n bigint PRIMARY KEY CHECK (n >= 0),
    entry bytea NOT NULL CHECK (length(entry) <= 65535)
);

CREATE TABLE sanad_log_tiles (
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 7),
    n bigint NOT NULL CHECK (n >= 0),
    hashes bytea NOT NULL CHECK (length(hashes) = 8192),
    PRIMARY KEY (level, n)
);
