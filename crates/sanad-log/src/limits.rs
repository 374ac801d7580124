//! The durable log's limits, each with its reason.

/// Most entries in one group commit: bounds the memory of one batch and the latency of the
/// callers who wait for it, while still amortising one fsync over many
/// entries.
pub const BATCH_ENTRIES_MAX: usize = 16_384;

/// Most bytes of entries in one group commit (16 MiB): sled writes a batch as one value, and a
/// value far above this slows its log and cache.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

const _: () = assert!(BATCH_ENTRIES_MAX <= u32::MAX as usize);
const _: () = assert!(BATCH_BYTES_MAX >= sanad_tlog::limits::ENTRY_SIZE_MAX + 2);

/// Commits whose entries may wait for the integrator before the next commit blocks: enough to
/// ride out a slow moment, few enough that a lagging integrator slows appends down
/// (back-pressure) instead of letting memory and the checkpoint's lag grow without bound.
pub const INTEGRATION_QUEUE_MAX: usize = 64;

/// The storage engine's page cache, in bytes.
pub const STORE_CACHE_BYTES: u64 = 16 << 20;

/// The most entry bytes stored under one key. sled writes any page bigger than a quarter of its
/// 512 KiB segment as a blob: a file of its own, created, written and later deleted, which it
/// never evicts from memory. A leaf page holds up to 17 values before it splits, so chunks this
/// size keep a whole leaf of them (about 122 KiB) under that size. At 12 KiB, every commit
/// created a blob file, and creating it cost more than a third of the commit's processor time.
pub const STORE_CHUNK_BYTES: usize = 7 << 10;

/// sled's blob size at its default 512 KiB segment (`segment_size / 4`, less the segment
/// header), and the most values a leaf page holds before it splits (it splits above 16).
const SLED_BLOB_BYTES: usize = (512 << 10) / 4 - 64;
const SLED_LEAF_VALUES_MAX: usize = 17;
/// A value's overhead in a leaf page: its key (9 bytes, less the shared prefix) and two length
/// varints, with room to spare.
const SLED_VALUE_OVERHEAD: usize = 32;
const _: () =
    assert!(SLED_LEAF_VALUES_MAX * (STORE_CHUNK_BYTES + SLED_VALUE_OVERHEAD) < SLED_BLOB_BYTES);
