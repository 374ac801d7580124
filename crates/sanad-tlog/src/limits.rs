//! Every limit of the log formats in one place, with the reason for its value.

/// Largest entry in bytes: entry bundles prefix each entry with a big-endian u16 length
/// (c2sp.org/tlog-tiles).
pub const ENTRY_SIZE_MAX: usize = u16::MAX as usize;

/// Longest inclusion or consistency proof: a tree of at most 2^64 leaves has at most 64 levels
/// (one more for the prepended root in consistency verification is handled separately).
pub const PROOF_HASHES_MAX: usize = 64;

/// Largest signed note we parse: checkpoints are a few hundred bytes; the Go note package
/// allows 1 MB, which is generous enough for any cosigned checkpoint.
pub const NOTE_SIZE_MAX: usize = 1 << 20;

/// Most signature lines per note: the Go note package caps at 100, and the signed-note spec
/// asks verifiers to accept at least 16.
pub const NOTE_SIGNATURES_MAX: usize = 100;

const _: () = assert!(NOTE_SIGNATURES_MAX >= 16);
const _: () = assert!(ENTRY_SIZE_MAX == 65_535);
