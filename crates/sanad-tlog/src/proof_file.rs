//! Proof files (c2sp.org/tlog-proof): a self-contained, offline-verifiable receipt that an entry
//! is in the log, made of its index, its inclusion path and a signed checkpoint.

use base64::Engine as _;

use crate::Error;
use crate::checkpoint::SignedCheckpoint;
use crate::hash::{Hash, leaf_hash};
use crate::limits::PROOF_HASHES_MAX;
use crate::note::NoteVerifier;
use crate::proof::verify_inclusion;

/// The first line of every proof file.
pub const PROOF_FILE_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed proof file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofFile {
    /// Opaque, unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    /// The entry's leaf index.
    pub index: u64,
    /// The inclusion path, leaf sibling first.
    pub path: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: Vec<u8>,
}

impl ProofFile {
    /// The file's text.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = format!("{PROOF_FILE_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", crate::BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.path {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint);
        bytes
    }

    /// Parses a proof file (without verifying it).
    ///
    /// # Errors
    /// [`Error::ProofFile`] naming the malformed part.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason| Error::ProofFile { reason };
        let split = bytes.windows(2).position(|w| w == b"\n\n").ok_or(bad("no blank line"))?;
        let head = std::str::from_utf8(&bytes[..split]).map_err(|_| bad("not UTF-8"))?;
        let checkpoint = bytes[split + 2..].to_vec();
        let mut lines = head.split('\n');
        if lines.next() != Some(PROOF_FILE_HEADER) {
            return Err(bad("missing c2sp.org/tlog-proof@v1 header"));
        }
        let mut line = lines.next().ok_or(bad("missing index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(crate::BASE64.decode(b64).map_err(|_| bad("bad extra base64"))?);
            line = lines.next().ok_or(bad("missing index line"))?;
        }
        let index_text = line.strip_prefix("index ").ok_or(bad("missing index line"))?;
        let canonical = !index_text.is_empty()
            && index_text.bytes().all(|b| b.is_ascii_digit())
            && (index_text == "0" || !index_text.starts_with('0'));
        if !canonical {
            return Err(bad("index is not a canonical decimal"));
        }
        let index = index_text.parse().map_err(|_| bad("index overflows"))?;
        let path = lines
            .map(|l| Hash::parse_base64(l).map_err(|_| bad("bad hash line")))
            .collect::<Result<Vec<_>, _>>()?;
        if path.len() > PROOF_HASHES_MAX {
            return Err(bad("too many hashes"));
        }
        Ok(Self { extra, index, path, checkpoint })
    }

    /// Verifies that `entry` is included in the log of `verifier` at this file's index:
    /// the checkpoint must be signed by the log's key and the path must lead to its root.
    /// Returns the verified checkpoint.
    ///
    /// # Errors
    /// The checkpoint's error, or [`Error::Inclusion`].
    pub fn verify(&self, entry: &[u8], verifier: &NoteVerifier) -> Result<SignedCheckpoint, Error> {
        let checkpoint = SignedCheckpoint::parse_and_verify(&self.checkpoint, verifier)?;
        let tree = checkpoint.checkpoint();
        verify_inclusion(&leaf_hash(entry), self.index, tree.size(), &self.path, &tree.root())?;
        Ok(checkpoint)
    }
}
