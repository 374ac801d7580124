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

/// The most entry bytes stored under one key: below sled's blob size, so that sled's page cache
/// can evict them (see the `store` module).
pub const STORE_CHUNK_BYTES: usize = 12 << 10;
