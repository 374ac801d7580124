//! Key rotation entries: a signed note, stored as a log entry, by which the log's retiring key
//! hands the log over to its new key (see docs/design/log-entries.md).
//!
//! ```text
//! sanad.key-rotation/v1
//! <origin>
//! old <verifier key of the retiring key>
//! new <verifier key of the new key>
//!
//! — <origin> <signature by the old key>
//! — <origin> <signature by the new key>
//! ```

use crate::Error;
use crate::note::{Note, NoteSigner, NoteVerifier};

/// The first line of every key rotation entry. Entries that start with [`ROTATION_PREFIX`] are
/// reserved for the log itself.
pub const ROTATION_HEADER: &str = "sanad.key-rotation/v1";

/// The byte prefix reserved for log-level entries: ordinary appends may not start with it.
pub const ROTATION_PREFIX: &[u8] = b"sanad.key-rotation/";

/// A verified hand-over from one key to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// The retiring key.
    pub old: NoteVerifier,
    /// The new key.
    pub new: NoteVerifier,
}

impl KeyRotation {
    /// The entry bytes handing the log from `old` to `new`, signed by both.
    ///
    /// # Errors
    /// [`Error::KeyName`] when the two keys have different names (the name is the origin).
    pub fn sign(old: &NoteSigner, new: &NoteSigner) -> Result<Vec<u8>, Error> {
        if old.name() != new.name() {
            return Err(Error::KeyName { reason: "a rotation keeps the log's origin as key name" });
        }
        let text = format!(
            "{ROTATION_HEADER}\n{}\nold {}\nnew {}\n",
            old.name(),
            old.verifier().to_vkey(),
            new.verifier().to_vkey()
        );
        let mut note = Note::new(text)?;
        note.sign_with(old)?;
        note.sign_with(new)?;
        Ok(note.to_bytes())
    }

    /// Whether `entry` claims to be a rotation entry (starts with the reserved prefix).
    pub fn is_rotation_entry(entry: &[u8]) -> bool {
        entry.starts_with(ROTATION_PREFIX)
    }

    /// Parses a rotation entry and checks both signatures: the old key's (the hand-over) and
    /// the new key's (proof that its holder accepted).
    ///
    /// # Errors
    /// [`Error::Rotation`] when the entry is malformed or a signature does not hold.
    pub fn parse_and_verify(entry: &[u8]) -> Result<Self, Error> {
        let bad = |reason| Error::Rotation { reason };
        let note = Note::parse(entry)?;
        let mut lines = note.text().strip_suffix('\n').ok_or(bad("no final newline"))?.split('\n');
        if lines.next() != Some(ROTATION_HEADER) {
            return Err(bad("unknown header"));
        }
        let origin = lines.next().ok_or(bad("missing origin"))?;
        let old =
            lines.next().and_then(|l| l.strip_prefix("old ")).ok_or(bad("missing old key"))?;
        let new =
            lines.next().and_then(|l| l.strip_prefix("new ")).ok_or(bad("missing new key"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extra line"));
        }
        let old = NoteVerifier::parse(old)?;
        let new = NoteVerifier::parse(new)?;
        if old.name() != origin || new.name() != origin {
            return Err(bad("key names differ from the origin"));
        }
        if old.key_id() == new.key_id() {
            return Err(bad("old and new keys are the same"));
        }
        let verifiers = [old.clone(), new.clone()];
        let verified = note.verify(&verifiers).map_err(|_| bad("a signature does not verify"))?;
        if verified.len() != 2 {
            return Err(bad("both the old and the new key must sign"));
        }
        Ok(Self { old, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_needs_both_signatures() {
        let old = NoteSigner::from_seed("example.org/log", &[1; 32]).unwrap();
        let new = NoteSigner::from_seed("example.org/log", &[2; 32]).unwrap();
        let entry = KeyRotation::sign(&old, &new).unwrap();
        assert!(KeyRotation::is_rotation_entry(&entry));
        let rotation = KeyRotation::parse_and_verify(&entry).unwrap();
        assert_eq!((rotation.old, rotation.new), (old.verifier(), new.verifier()));

        // Drop the new key's signature line: no longer a valid hand-over.
        let text = String::from_utf8(entry).unwrap();
        let cut = text.trim_end_matches('\n').rfind('\n').unwrap();
        assert!(KeyRotation::parse_and_verify(&text.as_bytes()[..=cut]).is_err());
        // A hand-over to another origin is refused.
        let other = NoteSigner::from_seed("example.org/other", &[3; 32]).unwrap();
        assert!(KeyRotation::sign(&old, &other).is_err());
    }
}
