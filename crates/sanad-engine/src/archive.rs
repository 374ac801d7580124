//! The idempotency archive: the older part of the idempotency index, on disk, so that memory
//! holds only the recent ids however many transfers a ledger has made.
//!
//! When the state holds [`Options::recent_ids_max`](crate::Options) entries, the writer moves
//! them here as one **set**: an immutable file `ids/set-NNNNNNNN`, written whole to a temporary
//! name, synced and renamed into place. A set holds its entries sorted by key in blocks of
//! 124 records (about 4 KiB), and a Bloom filter (16 bits per entry, 8 probes, under 0.1 %
//! false positives; blocked, so one cache line per set is read) with the first key and a
//! checksum of each block, both loaded into memory on open. A lookup asks each set's filter,
//! newest first, and reads one block only where it says "maybe": a new id, the common case,
//! touches no disk at all.
//!
//! Why files and not sled: sets never change, and sled kept every chunk it read back in memory
//! beyond its cache limit (80 MB after four million transfers). Read with `pread`, a block
//! costs one page of the operating system's cache, which the system reclaims as it needs.
//! Why 16 bits per entry: ten million transfers make about twenty sets, and every new id asks
//! each; at 10 bits one new id in four read a block for nothing.
//!
//! The archive is derived data: the log holds every id, and a snapshot names how many sets it
//! relies on. A set that is damaged, from another format, or out of sequence clears the
//! archive, and opening then rebuilds it by replaying the log.
//!
//! Set file: `sanad-ids/v1\n`, entries (u64 BE), filter words (u64 BE), then the filter's
//! words (u64 BE each), the block index (per block: first key, u128 BE, and the first 8 bytes
//! of the SHA-256 of the block), the SHA-256 of all of that, and the records (33 bytes each:
//! key, use kind, log index, content fingerprint; big-endian).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use sanad_ledger::{IdArchive, IdUse, UseKind};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Where the archive lives in the data folder.
pub(crate) const ARCHIVE_DIR: &str = "ids";

const MAGIC: &[u8] = b"sanad-ids/v1\n";
const RECORD: usize = 33;
const BLOCK_RECORDS: usize = 124;
const INDEX_ENTRY: usize = 24;
const BLOOM_BITS_PER_ENTRY: usize = 16;
const BLOOM_PROBES: u64 = 8;
/// More entries than this in one set is not a set this engine wrote.
const SET_ENTRIES_MAX: u64 = 1 << 28;

/// A blocked Bloom filter: every probe of a key falls in one 64-byte block, so a lookup costs
/// one cache miss per set rather than seven.
struct Bloom {
    words: Vec<u64>,
}

const BLOCK_WORDS: usize = 8;

impl Bloom {
    fn words_for(entries: usize) -> usize {
        (entries * BLOOM_BITS_PER_ENTRY).div_ceil(64).max(1).div_ceil(BLOCK_WORDS) * BLOCK_WORDS
    }

    fn with_entries(entries: usize) -> Self {
        Self { words: vec![0; Self::words_for(entries)] }
    }

    /// The block and the probe bits within it: the key is already uniformly random (a SHA-256
    /// prefix), so the high bits of its low half pick the block (multiply-shift), and 9-bit
    /// slices of its high half and then of its low end the bits.
    fn probes(&self, key: u128) -> (usize, impl Iterator<Item = usize> + use<>) {
        let blocks = (self.words.len() / BLOCK_WORDS) as u128;
        let low = key as u64;
        let block = ((u128::from(low) * blocks) >> 64) as usize * BLOCK_WORDS;
        let high = (key >> 64) as u64;
        let slice = move |i: u64| match i {
            0..7 => (high >> (i * 9)) & 511,
            _ => (low >> ((i - 7) * 9)) & 511,
        };
        (block, (0..BLOOM_PROBES).map(move |i| slice(i) as usize))
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

struct Set {
    file: File,
    entries: u64,
    bloom: Bloom,
    /// Per block: its first key and a checksum of its bytes.
    blocks: Vec<(u128, [u8; 8])>,
    records_at: u64,
}

impl Set {
    fn block_sum(bytes: &[u8]) -> [u8; 8] {
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&Sha256::digest(bytes)[..8]);
        sum
    }

    fn lookup(&self, key: u128) -> Result<Option<IdUse>, String> {
        let Some(block) = self.blocks.partition_point(|(first, _)| *first <= key).checked_sub(1)
        else {
            return Ok(None);
        };
        let first_record = block * BLOCK_RECORDS;
        let records = (self.entries as usize - first_record).min(BLOCK_RECORDS);
        let mut bytes = vec![0u8; records * RECORD];
        let at = self.records_at + (first_record * RECORD) as u64;
        self.file.read_exact_at(&mut bytes, at).map_err(|e| e.to_string())?;
        if Self::block_sum(&bytes) != self.blocks[block].1 {
            return Err(format!("block {block} does not match its checksum"));
        }
        let records: Vec<&[u8]> = bytes.chunks_exact(RECORD).collect();
        let found = records.binary_search_by_key(&key, |record| {
            u128::from_be_bytes(record[..16].try_into().unwrap_or_default())
        });
        Ok(found.ok().and_then(|at| decode(records[at])).map(|(_, value)| value))
    }
}

/// Reads a set's file up to its records: `Err` says why it cannot be used.
fn read_set(path: &Path) -> Result<Set, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut header = [0u8; MAGIC.len() + 16];
    file.read_exact_at(&mut header, 0).map_err(|e| format!("no header: {e}"))?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err("not a version 1 set".into());
    }
    let number = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let (entries, words) = (number(MAGIC.len()), number(MAGIC.len() + 8));
    if entries == 0
        || entries > SET_ENTRIES_MAX
        || words != Bloom::words_for(entries as usize) as u64
    {
        return Err(format!("{entries} entries and {words} filter words do not fit"));
    }
    let blocks = (entries as usize).div_ceil(BLOCK_RECORDS);
    let described = header.len() + words as usize * 8 + blocks * INDEX_ENTRY;
    let mut head = vec![0u8; described + 32];
    file.read_exact_at(&mut head, 0).map_err(|e| format!("truncated: {e}"))?;
    let (covered, sum) = head.split_at(described);
    if Sha256::digest(covered).as_slice() != sum {
        return Err("its filter and index do not match their checksum".into());
    }
    let mut body = &covered[header.len()..];
    let bloom = Bloom {
        words: body[..words as usize * 8]
            .chunks_exact(8)
            .map(|w| u64::from_be_bytes(w.try_into().unwrap_or_default()))
            .collect(),
    };
    body = &body[words as usize * 8..];
    let blocks = body
        .chunks_exact(INDEX_ENTRY)
        .map(|entry| {
            let first = u128::from_be_bytes(entry[..16].try_into().unwrap_or_default());
            (first, entry[16..].try_into().unwrap_or_default())
        })
        .collect();
    let records_at = head.len() as u64;
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    if length != records_at + entries * RECORD as u64 {
        return Err(format!("{length} bytes where {entries} entries need more or fewer"));
    }
    Ok(Set { file, entries, bloom, blocks, records_at })
}

pub(crate) struct Archive {
    dir: PathBuf,
    sets: RwLock<Vec<Set>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Archive({} sets)", self.set_count())
    }
}

fn set_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("set-{number:08}"))
}

fn io(context: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("idempotency archive {}", context.display()), e)
}

impl Archive {
    /// Opens (or creates) the archive, loading every set's filter and block index. Sets that
    /// cannot be used clear the archive (see the module docs).
    pub(crate) fn open(data: &Path) -> Result<Self, Error> {
        let dir = data.join(ARCHIVE_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // The archive's earlier home (sled); derived data, rebuilt here by replaying the log.
        let earlier = data.join("ids.sled");
        if earlier.exists() {
            std::fs::remove_dir_all(&earlier).map_err(io(&earlier))?;
        }
        let mut names = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let name = item.map_err(io(&dir))?.file_name();
            names.extend(name.to_str().and_then(|n| n.strip_prefix("set-")?.parse::<usize>().ok()));
        }
        names.sort_unstable();
        let mut sets = Vec::with_capacity(names.len());
        for (expected, number) in names.into_iter().enumerate() {
            let usable = if number == expected {
                read_set(&set_path(&dir, number))
            } else {
                Err("out of sequence".into())
            };
            match usable {
                Ok(set) => sets.push(set),
                Err(_) => {
                    // Opening reports it: the snapshot then relies on sets the archive lacks.
                    let archive = Self { dir, sets: RwLock::new(Vec::new()) };
                    archive.clear()?;
                    return Ok(archive);
                }
            }
        }
        Ok(Self { dir, sets: RwLock::new(sets) })
    }

    pub(crate) fn set_count(&self) -> u32 {
        self.sets.read().unwrap_or_else(std::sync::PoisonError::into_inner).len() as u32
    }

    /// Writes `entries` as a new set, durably, and adds it to the lookups.
    pub(crate) fn add_set(&self, entries: &mut [(u128, IdUse)]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        entries.sort_unstable_by_key(|(key, _)| *key);
        let number = self.set_count() as usize;
        let mut bloom = Bloom::with_entries(entries.len());
        let mut records = Vec::with_capacity(entries.len() * RECORD);
        let mut blocks = Vec::with_capacity(entries.len().div_ceil(BLOCK_RECORDS));
        for block in entries.chunks(BLOCK_RECORDS) {
            let start = records.len();
            for (key, value) in block {
                encode(*key, *value, &mut records);
                bloom.insert(*key);
            }
            blocks.push((block[0].0, Set::block_sum(&records[start..])));
        }
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        head.extend_from_slice(&(bloom.words.len() as u64).to_be_bytes());
        head.extend(bloom.words.iter().flat_map(|w| w.to_be_bytes()));
        for (first, sum) in &blocks {
            head.extend_from_slice(&first.to_be_bytes());
            head.extend_from_slice(sum);
        }
        let sum = Sha256::digest(&head);
        head.extend_from_slice(&sum);
        let path = set_path(&self.dir, number);
        let temporary = path.with_extension("tmp");
        let mut file = File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&head).map_err(io(&temporary))?;
        file.write_all(&records).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        crate::replace_durably(&temporary, &path).map_err(io(&path))?;
        let set = Set {
            file: File::open(&path).map_err(io(&path))?,
            entries: entries.len() as u64,
            bloom,
            blocks,
            records_at: head.len() as u64,
        };
        self.sets.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(set);
        Ok(())
    }

    /// Forgets every set (before the index is rebuilt from the log).
    pub(crate) fn clear(&self) -> Result<(), Error> {
        let mut sets = self.sets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        sets.clear();
        for item in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = item.map_err(io(&self.dir))?.path();
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        crate::sync_dir(&self.dir).map_err(io(&self.dir))
    }
}

impl IdArchive for Archive {
    fn get(&self, key: u128) -> Option<IdUse> {
        let sets = self.sets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (number, set) in sets.iter().enumerate().rev() {
            if set.bloom.may_contain(key) {
                // A failed read cannot be answered as "unknown": that would let an id be used
                // twice. The engine stops on it, as on any storage failure.
                match set.lookup(key) {
                    Ok(Some(found)) => return Some(found),
                    Ok(None) => {}
                    Err(error) => {
                        panic!("the idempotency archive's set {number} cannot be read: {error}")
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform 128-bit keys, as SHA-256 prefixes are (splitmix64, twice).
    fn keys(seed: u64, count: usize) -> Vec<u128> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..count).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect()
    }

    #[test]
    fn the_filter_never_forgets_and_rarely_says_maybe_for_nothing() {
        let members = keys(1, 200_000);
        let mut bloom = Bloom::with_entries(members.len());
        for key in &members {
            bloom.insert(*key);
        }
        assert!(members.iter().all(|key| bloom.may_contain(*key)));
        let strangers = keys(2, 1_000_000);
        let false_positives = strangers.iter().filter(|key| bloom.may_contain(**key)).count();
        // Twenty sets asked per new id: at most about 2 % of new ids should touch the disk.
        assert!(false_positives < 1_000, "{false_positives} false positives in a million");
    }

    fn entries(seed: u64, count: usize) -> Vec<(u128, IdUse)> {
        let use_at = |index| IdUse { kind: UseKind::from_code(0).unwrap(), index, content: 7 };
        keys(seed, count).into_iter().zip(0..).map(|(key, n)| (key, use_at(n))).collect()
    }

    #[test]
    fn every_entry_is_found_after_reopening_and_strangers_are_not() {
        let dir = tempfile::tempdir().unwrap();
        // Sizes that end a block exactly, leave one record over, or fit in one block.
        let mut sets =
            [entries(3, BLOCK_RECORDS * 40), entries(4, BLOCK_RECORDS * 3 + 1), entries(5, 7)];
        {
            let archive = Archive::open(dir.path()).unwrap();
            for set in &mut sets {
                archive.add_set(set).unwrap();
            }
        }
        let archive = Archive::open(dir.path()).unwrap();
        assert_eq!(archive.set_count(), 3);
        for (key, value) in sets.iter().flatten() {
            assert_eq!(archive.get(*key), Some(*value));
        }
        assert!(keys(6, 10_000).into_iter().all(|key| archive.get(key).is_none()));
    }

    #[test]
    fn a_damaged_or_missing_set_clears_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = entries(7, 1_000);
        let mut second = entries(8, 1_000);
        let write = |sets: &mut [&mut Vec<(u128, IdUse)>]| {
            let archive = Archive::open(dir.path()).unwrap();
            archive.clear().unwrap();
            for set in sets {
                archive.add_set(set).unwrap();
            }
        };
        let path = |n| set_path(&dir.path().join(ARCHIVE_DIR), n);
        // A flipped bit in a filter.
        write(&mut [&mut first, &mut second]);
        let mut bytes = std::fs::read(path(1)).unwrap();
        bytes[MAGIC.len() + 20] ^= 1;
        std::fs::write(path(1), &bytes).unwrap();
        assert_eq!(Archive::open(dir.path()).unwrap().set_count(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join(ARCHIVE_DIR)).unwrap().count(), 0);
        // A gap in the sequence.
        write(&mut [&mut first, &mut second]);
        std::fs::remove_file(path(0)).unwrap();
        assert_eq!(Archive::open(dir.path()).unwrap().set_count(), 0);
        // A truncated record area.
        write(&mut [&mut first]);
        let length = std::fs::metadata(path(0)).unwrap().len();
        File::options().write(true).open(path(0)).unwrap().set_len(length - 1).unwrap();
        assert_eq!(Archive::open(dir.path()).unwrap().set_count(), 0);
    }

    #[test]
    #[should_panic(expected = "cannot be read")]
    fn a_damaged_block_stops_the_lookup_rather_than_answering_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = entries(9, 500);
        let archive = Archive::open(dir.path()).unwrap();
        archive.add_set(&mut set).unwrap();
        let path = set_path(&dir.path().join(ARCHIVE_DIR), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        // The set's last entry sits in the damaged block.
        let last_key = set.iter().map(|(key, _)| *key).max().unwrap();
        archive.get(last_key);
    }
}
