//! # sanad-postgres: Sanad on a PostgreSQL server
//!
//! For agencies that outgrow one machine: the same signed log on a database server, with
//! replicas, backups and managed hosting. What is here so far:
//!
//! - [`migrate`]: versioned SQL files (`migrations/NNNN_name.sql`, embedded at build time),
//!   applied in order on connect, each in its own transaction, recorded in
//!   `sanad_schema_migrations`; concurrent migrators wait on one advisory lock.
//! - [`PgBackend`]: the log's [`sanad_log::Backend`] on PostgreSQL. Each commit is one
//!   transaction with synchronous commit (durable when it returns); the head row is locked
//!   and moved forward in it, so a commit at an index another writer took is refused and two
//!   writers can never both append at one index.
//! - `testing::TestServer` (feature `testing`): a throwaway server (initdb and pg_ctl into a
//!   temporary folder, on a free port), stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sanad_log::kv::KeyValue;
use sanad_log::{Backend, Commit, EntryVisitor, Error};

#[cfg(feature = "testing")]
pub mod testing;

/// The schema, one file per version, applied in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "log", include_str!("../migrations/0001_log.sql")),
    (2, "checkpoint_size", include_str!("../migrations/0002_checkpoint_size.sql")),
    (3, "kv", include_str!("../migrations/0003_kv.sql")),
];

/// Serialises migrators across processes (an arbitrary, fixed key).
const MIGRATION_LOCK: i64 = 0x5341_4e41_445f_4d49; // "SANAD_MI"

/// Rows read per query when walking entries, so that an export of millions does not hold them
/// all at once.
const ENTRY_PAGE: i64 = 8_192;

fn storage(error: postgres::Error) -> Error {
    Error::storage(error)
}

/// Applies the migrations not yet recorded, in order; returns the versions it applied.
///
/// # Errors
/// The database's error; a failed migration is rolled back whole.
pub fn migrate(client: &mut postgres::Client) -> Result<Vec<i32>, postgres::Error> {
    let mut applied = Vec::new();
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS sanad_schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    for (version, name, sql) in MIGRATIONS {
        let done = transaction
            .query_opt("SELECT 1 FROM sanad_schema_migrations WHERE version = $1", &[version])?
            .is_some();
        if done {
            continue;
        }
        transaction.batch_execute(sql)?;
        transaction.execute(
            "INSERT INTO sanad_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        applied.push(*version);
    }
    transaction.commit()?;
    Ok(applied)
}

/// The log on PostgreSQL: one connection for writes and turns, another for reads, so that
/// proofs, exports and catching up never wait behind a commit.
pub struct PgBackend {
    writes: Mutex<Writes>,
    reads: Mutex<postgres::Client>,
}

/// The writing connection and whether it holds a turn: a transaction begun with the head row
/// locked, which the next commit with entries (or `end_turn`) ends.
struct Writes {
    client: postgres::Client,
    /// The head's size when the turn began, while one is held.
    turn: Option<i64>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgBackend")
    }
}

impl PgBackend {
    /// Connects to `url` (`postgres://user@host:port/db` or key=value form), applies the
    /// migrations, and checks that commits are synchronous.
    ///
    /// # Errors
    /// [`Error::Storage`] when the server cannot be reached, a migration fails, or the server
    /// would acknowledge commits before they are durable.
    ///
    /// TLS is used when the server offers it (libpq's `sslmode=prefer`, the default) or
    /// required with `sslmode=require`; either way the server's certificate and name are
    /// verified, against the public web roots and, with `sslrootcert=FILE` (PEM), the
    /// certificate authority in that file (a managed service's own, say). libpq's
    /// `sslmode=verify-ca` and `verify-full` mean `require` here, which verifies both;
    /// `sslmode=disable` connects without TLS.
    pub fn connect(url: &str) -> Result<Self, Error> {
        let client = connect(url)?;
        let reads = connect(url)?;
        Ok(Self { writes: Mutex::new(Writes { client, turn: None }), reads: Mutex::new(reads) })
    }

    /// Whether this backend's connection to the server is encrypted (TLS).
    ///
    /// # Errors
    /// The database's error.
    pub fn encrypted(&self) -> Result<bool, Error> {
        let row = self
            .reads()
            .query_opt("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .map_err(storage)?;
        Ok(row.is_some_and(|row| row.get(0)))
    }

    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reads(&self) -> MutexGuard<'_, postgres::Client> {
        self.reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Writes {
    /// Runs `work` in the turn's transaction and commits it, or, with no turn held, in a
    /// transaction of its own that first locks the head row and checks `first` against its
    /// size (when `first` is given). A failure rolls back and ends the turn.
    fn commit_with(
        &mut self,
        first: Option<i64>,
        work: impl FnOnce(&mut postgres::Client) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let turn = self.turn;
        let client = &mut self.client;
        let result = (|| {
            if turn.is_none() {
                client.batch_execute("BEGIN").map_err(storage)?;
            }
            if let Some(first) = first {
                let size: i64 = match turn {
                    Some(size) => size,
                    None => client
                        .query_one("SELECT size FROM sanad_log_head FOR UPDATE", &[])
                        .map_err(storage)?
                        .get(0),
                };
                if size != first {
                    let (index, next) = (to_u64(first)?, to_u64(size)?);
                    return Err(Error::AnotherWriter { index, next });
                }
            }
            work(client)?;
            client.batch_execute("COMMIT").map_err(storage)
        })();
        if result.is_err() {
            // Best effort: a broken connection has rolled back already.
            let _ = self.client.batch_execute("ROLLBACK");
        }
        self.turn = None;
        result
    }
}

/// A connection to `url` (TLS as [`PgBackend::connect`] says), with the migrations applied
/// and commits checked to be synchronous.
fn connect(url: &str) -> Result<postgres::Client, Error> {
    let (url, ca) = libpq_tls_options(url);
    let mut client = postgres::Client::connect(&url, tls(ca.as_deref())?).map_err(storage)?;
    migrate(&mut client).map_err(storage)?;
    let synchronous: String =
        client.query_one("SHOW synchronous_commit", &[]).map_err(storage)?.get(0);
    if synchronous == "off" {
        return Err(Error::storage(std::io::Error::other(
            "synchronous_commit is off: an acknowledged write could be lost; turn it on",
        )));
    }
    Ok(client)
}

/// A small key-value store on the database, in named key spaces (`sanad_kv`), for what the
/// bindings keep beside the ledger and several servers must share: API tokens, answers by
/// `Idempotency-Key`. Each write is its own transaction, durable when it returns.
pub struct PgKv {
    client: Mutex<postgres::Client>,
}

impl std::fmt::Debug for PgKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgKv")
    }
}

impl PgKv {
    /// Connects as [`PgBackend::connect`] does.
    ///
    /// # Errors
    /// As [`PgBackend::connect`].
    pub fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self { client: Mutex::new(connect(url)?) })
    }

    fn client(&self) -> MutexGuard<'_, postgres::Client> {
        self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Each write is a transaction of its own with synchronous commit: durable when it returns, so
/// `flush` has nothing left to do.
impl KeyValue for PgKv {
    fn is_shared(&self) -> bool {
        true
    }

    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let row = self
            .client()
            .query_opt("SELECT value FROM sanad_kv WHERE space = $1 AND key = $2", &[&space, &key])
            .map_err(storage)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.client()
            .execute(
                "INSERT INTO sanad_kv (space, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                &[&space, &key, &value],
            )
            .map_err(storage)?;
        Ok(())
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let row = self
            .client()
            .query_opt(
                "DELETE FROM sanad_kv WHERE space = $1 AND key = $2 RETURNING value",
                &[&space, &key],
            )
            .map_err(storage)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut client = self.client();
        let claimed = client
            .query_opt(
                "INSERT INTO sanad_kv (space, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (space, key) DO NOTHING RETURNING 1",
                &[&space, &key, &value],
            )
            .map_err(storage)?;
        if claimed.is_some() {
            return Ok(None);
        }
        let row = client
            .query_opt("SELECT value FROM sanad_kv WHERE space = $1 AND key = $2", &[&space, &key])
            .map_err(storage)?;
        // Held a moment ago; if removed since, still not ours.
        Ok(Some(row.map(|row| row.get(0)).unwrap_or_default()))
    }

    fn add(&self, space: &str, key: &[u8], delta: u64) -> Result<u64, Error> {
        // Eight bytes big-endian, as on sled: int8send writes them, and the hex of a bytea
        // read as a 64-bit string reads them back. One statement, so atomic.
        let delta = i64::try_from(delta).map_err(Error::storage)?;
        let row = self
            .client()
            .query_one(
                "INSERT INTO sanad_kv (space, key, value) VALUES ($1, $2, int8send($3))
                 ON CONFLICT (space, key) DO UPDATE SET value = int8send(
                     CASE WHEN length(sanad_kv.value) = 8
                          THEN ('x' || encode(sanad_kv.value, 'hex'))::bit(64)::bigint
                          ELSE 0 END + $3)
                 RETURNING value",
                &[&space, &key, &delta],
            )
            .map_err(storage)?;
        let value: Vec<u8> = row.get(0);
        Ok(sanad_log::kv::counter_value(Some(&value)))
    }

    fn entries(&self, space: &str) -> Result<Vec<sanad_log::kv::Pair>, Error> {
        let rows = self
            .client()
            .query("SELECT key, value FROM sanad_kv WHERE space = $1 ORDER BY key", &[&space])
            .map_err(storage)?;
        Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// Takes libpq's TLS options the client library does not parse out of a connection string:
/// `sslrootcert=FILE` (returned beside the rest) and `sslmode=verify-ca`/`verify-full` (which
/// become `require`: the certificate and name are always verified). Both URL (`?a=b&c=d`) and
/// key=value forms.
fn libpq_tls_options(url: &str) -> (String, Option<PathBuf>) {
    let mut ca = None;
    let mut keep = |option: &str| -> Option<String> {
        match option.split_once('=') {
            Some(("sslrootcert", file)) => {
                ca = Some(PathBuf::from(file));
                None
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => Some("sslmode=require".to_owned()),
            _ => Some(option.to_owned()),
        }
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let rewritten = match url.split_once('?') {
        Some((base, query)) if is_url => {
            let options: Vec<String> = query.split('&').filter_map(&mut keep).collect();
            if options.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", options.join("&"))
            }
        }
        _ if is_url => url.to_owned(),
        _ => url.split_whitespace().filter_map(&mut keep).collect::<Vec<_>>().join(" "),
    };
    (rewritten, ca)
}

/// The TLS client: the public web roots, plus the certificates in `ca` (PEM) when given.
fn tls(ca: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let bad = |detail: String| {
            Error::storage(std::io::Error::other(format!(
                "sslrootcert {}: {detail}",
                path.display()
            )))
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        // rustls's own PEM reader (rustls-pki-types), not the archived rustls-pemfile.
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate.map_err(|e| bad(e.to_string()))?;
            roots.add(certificate).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificate in it".into()));
        }
    }
    // The process's crypto provider: ring, the one the workspace builds rustls with.
    let config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn to_i64(value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::corrupt("an index beyond PostgreSQL's bigint"))
}

fn to_u64(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::corrupt("a negative index stored"))
}

impl Backend for PgBackend {
    fn origin(&self) -> Result<Option<String>, Error> {
        let row =
            self.reads().query_opt("SELECT origin FROM sanad_log_head", &[]).map_err(storage)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn initialise(&self, origin: &str, checkpoint: &[u8]) -> Result<(), Error> {
        self.writes()
            .client
            .execute(
                "INSERT INTO sanad_log_head (origin, size, checkpoint) VALUES ($1, 0, $2)",
                &[&origin, &checkpoint],
            )
            .map_err(storage)?;
        Ok(())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, Error> {
        let row = self
            .reads()
            .query_opt("SELECT checkpoint FROM sanad_log_head", &[])
            .map_err(storage)?;
        row.map(|row| row.get(0)).ok_or_else(|| Error::corrupt("no checkpoint stored"))
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// Read under the head row's lock, so that it waits for a commit in flight to end: a
    /// writer killed mid-commit leaves its transaction on the server until the server sees the
    /// connection gone, and that transaction may still commit. A process taking over must see
    /// the size after it, or its first commit would land at an index the dead one took.
    fn stored_size(&self) -> Result<u64, Error> {
        let mut writes = self.writes();
        if let Some(size) = writes.turn {
            return to_u64(size);
        }
        let mut transaction = writes.client.transaction().map_err(storage)?;
        let row = transaction
            .query_opt("SELECT size FROM sanad_log_head FOR UPDATE", &[])
            .map_err(storage)?;
        transaction.commit().map_err(storage)?;
        row.map_or(Ok(0), |row| to_u64(row.get(0)))
    }

    fn committed_size(&self) -> Result<u64, Error> {
        let row =
            self.reads().query_opt("SELECT size FROM sanad_log_head", &[]).map_err(storage)?;
        row.map_or(Ok(0), |row| to_u64(row.get(0)))
    }

    /// Begins a transaction and locks the head row in it: another process's turn ends first
    /// (and a killed writer's commit in flight lands or is rolled back first).
    fn begin_turn(&self) -> Result<u64, Error> {
        let mut writes = self.writes();
        assert!(writes.turn.is_none(), "a turn begins only after the last one ended");
        let began = (|| {
            writes.client.batch_execute("BEGIN").map_err(storage)?;
            let row = writes
                .client
                .query_one("SELECT size FROM sanad_log_head FOR UPDATE", &[])
                .map_err(storage)?;
            Ok::<i64, Error>(row.get(0))
        })();
        match began {
            Ok(size) => {
                writes.turn = Some(size);
                to_u64(size)
            }
            Err(error) => {
                let _ = writes.client.batch_execute("ROLLBACK");
                Err(error)
            }
        }
    }

    fn end_turn(&self) -> Result<(), Error> {
        let mut writes = self.writes();
        if writes.turn.take().is_some() {
            writes.client.batch_execute("ROLLBACK").map_err(storage)?;
        }
        Ok(())
    }

    fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), Error> {
        let (mut next, end) = (to_i64(start)?, to_i64(end)?);
        while next < end {
            let rows = self
                .reads()
                .query(
                    "SELECT n, entry FROM sanad_log_entries WHERE n >= $1 AND n < $2
                     ORDER BY n LIMIT $3",
                    &[&next, &end, &ENTRY_PAGE],
                )
                .map_err(storage)?;
            if rows.is_empty() {
                return Err(Error::corrupt(format!("entries from {next} are missing")));
            }
            for row in rows {
                let n: i64 = row.get(0);
                if n != next {
                    return Err(Error::corrupt(format!("entry {next} is missing")));
                }
                let entry: &[u8] = row.get(1);
                visit(to_u64(n)?, entry)?;
                next += 1;
            }
        }
        Ok(())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, Error> {
        let row = self
            .reads()
            .query_opt(
                "SELECT hashes FROM sanad_log_tiles WHERE level = $1 AND n = $2",
                &[&i16::from(level), &to_i64(index)?],
            )
            .map_err(storage)?;
        Ok(row.map(|row| row.get(0)))
    }

    /// One transaction: the turn's, or, for a commit outside a turn, one that locks the head
    /// and checks that entries start at its size. Entries go in with one statement, tiles
    /// once (two writers may both complete one, with the same hashes), and the checkpoint only
    /// when it is newer than the stored one. Durable on return.
    fn commit(&self, commit: &Commit<'_>) -> Result<(), Error> {
        let first = to_i64(commit.first_index)?;
        let count = to_i64(commit.entries.len() as u64)?;
        let mut writes = self.writes();
        if count == 0 && writes.turn.is_some() {
            // An integration written on its own while this connection holds a turn would end
            // the turn; the log writes those only outside turns.
            return Err(Error::corrupt("an integration committed inside a turn"));
        }
        let expected = (count > 0).then_some(first);
        writes.commit_with(expected, |client| {
            if count > 0 {
                let indexes: Vec<i64> = (first..first + count).collect();
                let entries: Vec<&[u8]> = commit.entries.to_vec();
                client
                    .execute(
                        "INSERT INTO sanad_log_entries (n, entry)
                         SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                        &[&indexes, &entries],
                    )
                    .map_err(storage)?;
                client
                    .execute("UPDATE sanad_log_head SET size = $1", &[&(first + count)])
                    .map_err(storage)?;
            }
            for tile in commit.tiles {
                let hashes = sanad_tlog::tile::tile_bytes(&tile.hashes);
                client
                    .execute(
                        "INSERT INTO sanad_log_tiles (level, n, hashes) VALUES ($1, $2, $3)
                         ON CONFLICT (level, n) DO NOTHING",
                        &[&i16::from(tile.id.level), &to_i64(tile.id.index)?, &hashes],
                    )
                    .map_err(storage)?;
            }
            if let Some(checkpoint) = commit.checkpoint {
                let size = to_i64(checkpoint.checkpoint().size())?;
                client
                    .execute(
                        "UPDATE sanad_log_head SET checkpoint = $1, checkpoint_size = $2
                         WHERE checkpoint_size < $2",
                        &[&checkpoint.to_bytes(), &size],
                    )
                    .map_err(storage)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_options_are_taken_from_both_forms() {
        let url = "postgres://u@db.example:5432/aid?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=sanad";
        let (rewritten, ca) = libpq_tls_options(url);
        assert_eq!(
            rewritten,
            "postgres://u@db.example:5432/aid?sslmode=require&application_name=sanad"
        );
        assert_eq!(ca, Some(PathBuf::from("/etc/ca.pem")));
        let (rewritten, ca) = libpq_tls_options("postgresql://u@h/db?sslrootcert=ca.pem");
        assert_eq!(
            (rewritten.as_str(), ca),
            ("postgresql://u@h/db", Some(PathBuf::from("ca.pem")))
        );
        let (rewritten, ca) =
            libpq_tls_options("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=aid");
        assert_eq!(rewritten, "host=h user=u sslmode=require dbname=aid");
        assert_eq!(ca, Some(PathBuf::from("/ca.pem")));
        let plain = "postgres://u@h/db?sslmode=disable";
        assert_eq!(libpq_tls_options(plain), (plain.to_owned(), None));
    }
}
