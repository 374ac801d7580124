//! The idempotency archive: the older part of the idempotency index, on disk, so that memory
//! holds only the recent ids however many transfers a ledger has made.
//!
//! When the state holds [`Options::recent_ids_max`](crate::Options) entries, the writer moves
//! them here as one **set**: sorted by key and stored in sled in chunks of at most 12 KiB (key
//! `c` + set number + first key of the chunk), with a Bloom filter (10 bits per entry, 7
//! probes, about 2 % false positives) kept in memory and stored beside them (`b` + set + chunk
//! number; blocked, so one cache line per set is read). A lookup asks each set's filter and
//! reads one chunk only where it says "maybe":
//! a new id — the common case — touches no disk at all. The archive is derived data: the log
//! holds every id, and a snapshot names how many sets it relies on.

use std::path::Path;
use std::sync::RwLock;

use sanad_ledger::{IdArchive, IdUse, UseKind};

use crate::Error;

/// Where the archive lives in the data folder.
pub(crate) const ARCHIVE_DIR: &str = "ids.sled";

const RECORD: usize = 33;
const CHUNK_RECORDS: usize = 12 * 1024 / RECORD;
const BLOOM_BITS_PER_ENTRY: usize = 10;
const BLOOM_PROBES: u64 = 7;
const BLOOM_CHUNK_WORDS: usize = 12 * 1024 / 8;

/// A blocked Bloom filter: every probe of a key falls in one 64-byte block, so a lookup costs
/// one cache miss per set rather than seven.
struct Bloom {
    words: Vec<u64>,
}

const BLOCK_WORDS: usize = 8;

impl Bloom {
    fn with_entries(entries: usize) -> Self {
        let words = (entries * BLOOM_BITS_PER_ENTRY).div_ceil(64).max(1);
        Self { words: vec![0; words.div_ceil(BLOCK_WORDS) * BLOCK_WORDS] }
    }

    /// The block and the probe bits within it: the key is already uniformly random (a SHA-256
    /// prefix), so its low half picks the block and 9-bit slices of its high half the bits.
    fn probes(&self, key: u128) -> (usize, impl Iterator<Item = usize> + use<>) {
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        let block = ((key as u64) % blocks) as usize * BLOCK_WORDS;
        let bits = (key >> 64) as u64;
        (block, (0..BLOOM_PROBES).map(move |i| ((bits >> (i * 9)) & 511) as usize))
    }

    fn insert(&mut self, key: u128) {
        let (block, bits) = self.probes(key);
        for bit in bits {
            self.words[block + bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, key: u128) -> bool {
        let (block, mut bits) = self.probes(key);
        bits.all(|bit| self.words[block + bit / 64] & (1 << (bit % 64)) != 0)
    }
}

struct Set {
    number: u32,
    bloom: Bloom,
}

pub(crate) struct Archive {
    db: sled::Db,
    sets: RwLock<Vec<Set>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Archive({} sets)", self.set_count())
    }
}

fn storage(error: sled::Error) -> Error {
    Error::storage(error)
}

fn chunk_key(set: u32, first: u128) -> [u8; 21] {
    let mut key = [0u8; 21];
    key[0] = b'c';
    key[1..5].copy_from_slice(&set.to_be_bytes());
    key[5..].copy_from_slice(&first.to_be_bytes());
    key
}

fn bloom_key(set: u32, chunk: u32) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'b';
    key[1..5].copy_from_slice(&set.to_be_bytes());
    key[5..].copy_from_slice(&chunk.to_be_bytes());
    key
}

fn meta_key(set: u32) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[0] = b'm';
    key[1..].copy_from_slice(&set.to_be_bytes());
    key
}

fn encode(key: u128, value: IdUse, out: &mut Vec<u8>) {
    out.extend_from_slice(&key.to_be_bytes());
    out.push(value.kind.code());
    out.extend_from_slice(&value.index.to_be_bytes());
    out.extend_from_slice(&value.content.to_be_bytes());
}

fn decode(record: &[u8]) -> Option<(u128, IdUse)> {
    let key = u128::from_be_bytes(record.get(..16)?.try_into().ok()?);
    let kind = UseKind::from_code(*record.get(16)?)?;
    let index = u64::from_be_bytes(record.get(17..25)?.try_into().ok()?);
    let content = u64::from_be_bytes(record.get(25..33)?.try_into().ok()?);
    Some((key, IdUse { kind, index, content }))
}

impl Archive {
    /// Opens (or creates) the archive, loading every set's filter.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(ARCHIVE_DIR);
        let config = sled::Config::new().path(&path).cache_capacity(8 << 20).flush_every_ms(None);
        let db = sanad_log::open_sled(&config, &path)?;
        let mut sets = Vec::new();
        for item in db.scan_prefix(b"m") {
            let (key, value) = item.map_err(storage)?;
            let number = u32::from_be_bytes(
                key.get(1..5)
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| Error::Corrupt("archive set key".into()))?,
            );
            let words = u64::from_be_bytes(
                value
                    .get(..8)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| Error::Corrupt("archive set metadata".into()))?,
            ) as usize;
            let mut bloom = Vec::with_capacity(words);
            for chunk in db.scan_prefix(&bloom_key(number, 0)[..5]) {
                let (_, bytes) = chunk.map_err(storage)?;
                bloom.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|w| u64::from_be_bytes(w.try_into().unwrap_or_default())),
                );
            }
            if bloom.len() != words || !words.is_multiple_of(BLOCK_WORDS) {
                return Err(Error::Corrupt(format!("archive set {number}: filter incomplete")));
            }
            sets.push(Set { number, bloom: Bloom { words: bloom } });
        }
        sets.sort_by_key(|set| set.number);
        Ok(Self { db, sets: RwLock::new(sets) })
    }

    pub(crate) fn set_count(&self) -> u32 {
        self.sets.read().unwrap_or_else(std::sync::PoisonError::into_inner).len() as u32
    }

    /// Writes `entries` as a new set, durably, and adds it to the lookups.
    pub(crate) fn add_set(&self, entries: &mut [(u128, IdUse)]) -> Result<(), Error> {
        entries.sort_unstable_by_key(|(key, _)| *key);
        let number = self.set_count();
        let mut bloom = Bloom::with_entries(entries.len());
        let mut batch = sled::Batch::default();
        for chunk in entries.chunks(CHUNK_RECORDS) {
            let mut bytes = Vec::with_capacity(chunk.len() * RECORD);
            for (key, value) in chunk {
                encode(*key, *value, &mut bytes);
                bloom.insert(*key);
            }
            batch.insert(&chunk_key(number, chunk[0].0)[..], bytes);
        }
        for (n, words) in bloom.words.chunks(BLOOM_CHUNK_WORDS).enumerate() {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            batch.insert(&bloom_key(number, n as u32)[..], bytes);
        }
        batch.insert(&meta_key(number)[..], &(bloom.words.len() as u64).to_be_bytes()[..]);
        self.db.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Set { number, bloom });
        Ok(())
    }

    /// Forgets every set (before the index is rebuilt from the log).
    pub(crate) fn clear(&self) -> Result<(), Error> {
        self.db.clear().map_err(storage)?;
        self.db.flush().map_err(storage)?;
        self.sets.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(())
    }

    fn lookup(&self, set: u32, key: u128) -> Result<Option<IdUse>, Error> {
        let start = chunk_key(set, 0);
        let Some(item) = self.db.range(start..=chunk_key(set, key)).next_back() else {
            return Ok(None);
        };
        let (_, bytes) = item.map_err(storage)?;
        let records: Vec<&[u8]> = bytes.chunks_exact(RECORD).collect();
        let found = records.binary_search_by_key(&key, |record| {
            u128::from_be_bytes(record[..16].try_into().unwrap_or_default())
        });
        Ok(found.ok().and_then(|at| decode(records[at])).map(|(_, value)| value))
    }
}

impl IdArchive for Archive {
    fn get(&self, key: u128) -> Option<IdUse> {
        let sets = self.sets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for set in sets.iter().rev() {
            if set.bloom.may_contain(key) {
                // A storage error here cannot be answered as "unknown": that would let an id
                // be used twice. The engine stops on it, as on any storage failure.
                match self.lookup(set.number, key) {
                    Ok(Some(found)) => return Some(found),
                    Ok(None) => {}
                    Err(error) => panic!("the idempotency archive cannot be read: {error}"),
                }
            }
        }
        None
    }
}
