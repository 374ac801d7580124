//! How the entries of a commit are stored: in *chunks* of consecutive entries, each one sled
//! value of at most [`STORE_CHUNK_BYTES`], compressed with LZ4 when that makes it smaller.
//!
//! A stored chunk is a tag byte, then:
//!
//! | tag    | what follows                                                              |
//! |--------|---------------------------------------------------------------------------|
//! | `0x00` | an entry bundle (u16 BE length, entry; repeated), as in C2SP tlog-tiles  |
//! | `0x01` | the bundle's length (u32 BE), then the bundle as one LZ4 block            |
//!
//! Why compress: sled writes each stored byte several times before and during the fsync (as a
//! delta, in page rewrites and in splits), on the writer's path, and an fsync costs more the
//! more it carries. Ledger entries are JSON with the same keys in every entry: they shrink
//! about eight times, and LZ4 takes about a tenth of a microsecond per entry to get there.
//!
//! How many entries go in a chunk: as many as should compress to about 85 % of the chunk size,
//! judged by how well the previous chunk compressed. A guess that comes out too big is halved
//! and compressed again; a single entry is stored however big it is. Entries that compression
//! would shrink by less than a quarter are stored plain, and the next chunks too without trying
//! (LZ4 is slow to give up on incompressible bytes).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use sanad_tlog::tile;

use crate::Error;
use crate::limits::STORE_CHUNK_BYTES;

const PLAIN: u8 = 0x00;
const LZ4: u8 = 0x01;

/// The most bundle bytes one chunk holds before compression. Bounds what a damaged length
/// field can make the reader allocate; far above any ratio LZ4 reaches on real entries
/// within [`STORE_CHUNK_BYTES`], and above the largest single entry.
pub const CHUNK_BUNDLE_BYTES_MAX: usize = 1 << 20;
const _: () = assert!(CHUNK_BUNDLE_BYTES_MAX >= sanad_tlog::limits::ENTRY_SIZE_MAX + 2);

/// After a chunk that compression would shrink by less than a quarter, this many chunks are
/// stored plain without trying: LZ4 spends as long failing on incompressible entries as the
/// rest of the commit's processor work.
const PLAIN_RUN: usize = 64;

/// How the next chunks are stored, learnt from the chunks before them.
#[derive(Debug)]
pub(crate) struct ChunkSizer {
    /// Bundle bytes to try compressing into one chunk.
    bundle_bytes: AtomicUsize,
    /// Chunks left to store plain before compression is tried again.
    plain_left: AtomicUsize,
}

const FIRST_GUESS: usize = 4 * STORE_CHUNK_BYTES;

impl Default for ChunkSizer {
    fn default() -> Self {
        Self { bundle_bytes: AtomicUsize::new(FIRST_GUESS), plain_left: AtomicUsize::new(0) }
    }
}

impl ChunkSizer {
    /// Splits `entries` into chunks; returns each chunk's entry count and stored bytes, in order.
    ///
    /// # Errors
    /// An entry too long for a bundle.
    pub(crate) fn chunks(&self, entries: &[&[u8]]) -> Result<Vec<(usize, Vec<u8>)>, Error> {
        let mut chunks = Vec::new();
        let mut rest = entries;
        while !rest.is_empty() {
            let (count, stored) = self.next_chunk(rest)?;
            chunks.push((count, stored));
            rest = &rest[count..];
        }
        Ok(chunks)
    }

    /// The chunk at the front of `rest`: its entry count and stored bytes.
    fn next_chunk(&self, rest: &[&[u8]]) -> Result<(usize, Vec<u8>), Error> {
        if self.plain_left.load(Ordering::Relaxed) > 0 {
            self.plain_left.fetch_sub(1, Ordering::Relaxed);
            return plain_chunk(rest);
        }
        let mut count = entries_within(rest, self.bundle_bytes.load(Ordering::Relaxed));
        loop {
            let bundle = tile::encode_bundle(rest[..count].iter().copied())?;
            let stored = compressed(&bundle);
            if stored.len() * 4 > bundle.len() * 3 {
                self.plain_left.store(PLAIN_RUN, Ordering::Relaxed);
                self.bundle_bytes.store(FIRST_GUESS, Ordering::Relaxed);
                return plain_chunk(rest);
            }
            if stored.len() <= STORE_CHUNK_BYTES || count == 1 {
                self.learn(bundle.len(), stored.len());
                return Ok((count, stored));
            }
            count /= 2;
        }
    }

    /// Aims the next chunk at 85 % of the chunk size, at the ratio this one compressed by.
    fn learn(&self, bundle_bytes: usize, stored_bytes: usize) {
        let aim = STORE_CHUNK_BYTES * 85 / 100;
        let next = (bundle_bytes.saturating_mul(aim) / stored_bytes.max(1))
            .clamp(STORE_CHUNK_BYTES / 2, CHUNK_BUNDLE_BYTES_MAX / 2);
        self.bundle_bytes.store(next, Ordering::Relaxed);
    }
}

/// As many entries from the front of `rest` as fit in a chunk stored plain (at least one),
/// written straight after the tag.
fn plain_chunk(rest: &[&[u8]]) -> Result<(usize, Vec<u8>), Error> {
    let count = entries_within(rest, STORE_CHUNK_BYTES - 1);
    let mut stored = Vec::with_capacity(STORE_CHUNK_BYTES);
    stored.push(PLAIN);
    for entry in &rest[..count] {
        tile::append_to_bundle(&mut stored, entry)?;
    }
    Ok((count, stored))
}

/// The bundle as a stored LZ4 chunk (tag `0x01`), compressed straight into place.
fn compressed(bundle: &[u8]) -> Vec<u8> {
    let length = u32::try_from(bundle.len()).expect("a bundle is below 4 GiB");
    let mut stored = vec![0; 5 + lz4_flex::block::get_maximum_output_size(bundle.len())];
    stored[0] = LZ4;
    stored[1..5].copy_from_slice(&length.to_be_bytes());
    let written = lz4_flex::block::compress_into(bundle, &mut stored[5..])
        .expect("the output has LZ4's worst-case size");
    stored.truncate(5 + written);
    stored
}

/// How many entries from the front of `entries` fit in `bundle_bytes` (at least one).
fn entries_within(entries: &[&[u8]], bundle_bytes: usize) -> usize {
    let mut bytes = 2 + entries[0].len();
    let mut count = 1;
    while count < entries.len() && bytes + 2 + entries[count].len() <= bundle_bytes {
        bytes += 2 + entries[count].len();
        count += 1;
    }
    count
}

/// A bundle stored as it is (tag `0x00`). For tools and tests that write storage themselves.
pub fn plain(bundle: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(bundle.len() + 1);
    stored.push(PLAIN);
    stored.extend_from_slice(bundle);
    stored
}

/// The entry bundle a stored chunk holds.
///
/// # Errors
/// [`Error::Corrupt`] for an unknown tag, a length above [`CHUNK_BUNDLE_BYTES_MAX`], or an
/// LZ4 block that does not decompress to exactly that length.
pub fn bundle_of(stored: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    match stored {
        [PLAIN, bundle @ ..] => Ok(Cow::Borrowed(bundle)),
        [LZ4, a, b, c, d, block @ ..] => {
            let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            if length > CHUNK_BUNDLE_BYTES_MAX {
                return Err(Error::corrupt(format!("a stored chunk claims {length} bytes")));
            }
            let bundle = lz4_flex::block::decompress(block, length)
                .map_err(|e| Error::corrupt(format!("a stored chunk does not decompress: {e}")))?;
            if bundle.len() != length {
                return Err(Error::corrupt("a stored chunk decompresses to another length"));
            }
            Ok(Cow::Owned(bundle))
        }
        _ => Err(Error::corrupt("a stored chunk has an unknown form")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_like(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|n| {
                format!(
                    "{{\"amount\":\"{}.{:03}\",\"from\":\"prog\",\"kind\":\"transfer.posted\",\"to\":\"w{}\",\"transfer\":\"t-{n}\"}}",
                    n % 97,
                    n % 1000,
                    n % 1000
                )
                .into_bytes()
            })
            .collect()
    }

    /// Pseudo-random bytes: they do not compress.
    fn noise(count: usize, length: usize) -> Vec<Vec<u8>> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..count)
            .map(|_| {
                (0..length)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect()
            })
            .collect()
    }

    fn round_trip(entries: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
        let slices: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let sizer = ChunkSizer::default();
        // Twice: the second time the sizer has learnt the ratio.
        sizer.chunks(&slices).unwrap();
        let chunks = sizer.chunks(&slices).unwrap();
        let mut back = Vec::new();
        for (count, stored) in &chunks {
            let bundle = bundle_of(stored).unwrap();
            let parsed = tile::parse_bundle(&bundle).unwrap();
            assert_eq!(parsed.len(), *count);
            back.extend(parsed.into_iter().map(<[u8]>::to_vec));
        }
        assert_eq!(back, entries, "every entry comes back, in order");
        chunks
    }

    #[test]
    fn ledger_entries_compress_into_full_chunks_and_come_back() {
        let entries = ledger_like(5_000);
        let chunks = round_trip(&entries);
        let plain: usize = entries.iter().map(|e| e.len() + 2).sum();
        let stored: usize = chunks.iter().map(|(_, s)| s.len()).sum();
        assert!(chunks.iter().all(|(_, s)| s[0] == LZ4 && s.len() <= STORE_CHUNK_BYTES));
        assert!(stored * 3 < plain, "stored {stored} of {plain} bytes");
        assert!(
            chunks.iter().take(chunks.len() - 1).all(|(_, s)| s.len() > STORE_CHUNK_BYTES / 2),
            "chunks are filled, not cut small"
        );
    }

    #[test]
    fn incompressible_entries_are_stored_plain_within_the_chunk_size() {
        let chunks = round_trip(&noise(500, 190));
        assert!(chunks.iter().all(|(_, s)| s[0] == PLAIN && s.len() <= STORE_CHUNK_BYTES));
    }

    #[test]
    fn compression_is_tried_again_after_a_run_of_plain_chunks() {
        let sizer = ChunkSizer::default();
        let noise = noise(1_000, 190);
        let noise: Vec<&[u8]> = noise.iter().map(Vec::as_slice).collect();
        let plain = sizer.chunks(&noise).unwrap();
        assert!(plain.iter().all(|(_, s)| s[0] == PLAIN));
        let ledger = ledger_like(20_000);
        let ledger: Vec<&[u8]> = ledger.iter().map(Vec::as_slice).collect();
        let chunks = sizer.chunks(&ledger).unwrap();
        let first_compressed = chunks.iter().position(|(_, s)| s[0] == LZ4).unwrap();
        assert!(first_compressed <= PLAIN_RUN, "tried again after {first_compressed} chunks");
        assert!(chunks[first_compressed..].iter().all(|(_, s)| s[0] == LZ4));
    }

    #[test]
    fn an_entry_larger_than_a_chunk_is_stored_alone() {
        let mut entries = ledger_like(10);
        entries.insert(5, noise(1, 60_000).remove(0));
        let chunks = round_trip(&entries);
        assert!(chunks.iter().any(|(count, s)| *count == 1 && s.len() > STORE_CHUNK_BYTES));
    }

    #[test]
    fn damaged_chunks_are_refused_not_misread() {
        let entries = ledger_like(100);
        let slices: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let (_, stored) = ChunkSizer::default().chunks(&slices).unwrap().remove(0);
        let mut bigger = stored.clone();
        bigger[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut cut = stored.clone();
        cut.truncate(stored.len() - 3);
        let mut unknown = stored;
        unknown[0] = 0x07;
        for damaged in [bigger, cut, unknown, Vec::new()] {
            assert!(matches!(bundle_of(&damaged), Err(Error::Corrupt(_))));
        }
    }
}
