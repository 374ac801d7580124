//! Checkpoints (c2sp.org/tlog-checkpoint): the note text `origin\nsize\nbase64(root)\n`,
//! optionally followed by extension lines.

use crate::Error;
use crate::hash::Hash;
use crate::note::{Note, NoteSigner, NoteVerifier, check_key_name};

/// A checkpoint's content, before or after signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    // Invariant: origin is non-empty and has no newline.
    origin: String,
    size: u64,
    root: Hash,
    // Invariant: each line is non-empty and has no newline.
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint for the tree of `size` leaves with root `root`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the origin is not a valid key name (the log's key name
    /// equals its origin, so it must be one).
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, Error> {
        check_key_name(origin)
            .map_err(|_| Error::Checkpoint { reason: "origin is not a valid key name" })?;
        Ok(Self { origin: origin.to_owned(), size, root, extensions: Vec::new() })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Extension lines (opaque; Sanad writes none).
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint's note text.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming what is malformed.
    pub fn parse_text(text: &str) -> Result<Self, Error> {
        let body =
            text.strip_suffix('\n').ok_or(Error::Checkpoint { reason: "no final newline" })?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty());
        let origin = origin.ok_or(Error::Checkpoint { reason: "empty origin" })?;
        let size = lines.next().ok_or(Error::Checkpoint { reason: "missing tree size" })?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(Error::Checkpoint { reason: "tree size is not a canonical decimal" });
        }
        let size: u64 =
            size.parse().map_err(|_| Error::Checkpoint { reason: "tree size overflows" })?;
        let root = lines.next().ok_or(Error::Checkpoint { reason: "missing root hash" })?;
        let root =
            Hash::parse_base64(root).map_err(|_| Error::Checkpoint { reason: "bad root hash" })?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(Error::Checkpoint { reason: "empty extension line" });
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }

    /// Signs the checkpoint with each of `signers` (usually one; two during a key rotation);
    /// every signer's key name must equal the origin.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when there is no signer or a key name differs from the origin.
    pub fn sign(&self, signers: &[&NoteSigner]) -> Result<SignedCheckpoint, Error> {
        if signers.is_empty() {
            return Err(Error::Checkpoint { reason: "no signer" });
        }
        let mut note = Note::new(self.to_text())?;
        for signer in signers {
            if signer.name() != self.origin {
                return Err(Error::Checkpoint {
                    reason: "signer key name differs from the origin",
                });
            }
            note.sign_with(signer)?;
        }
        Ok(SignedCheckpoint { checkpoint: self.clone(), note })
    }
}

/// A checkpoint with its signed note (what is published and stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint and verifies it with the log's key: the note must carry a
    /// valid signature of `verifier`, and the origin must equal the key name.
    ///
    /// # Errors
    /// The note's, the checkpoint's or the signature's error.
    pub fn parse_and_verify(bytes: &[u8], verifier: &NoteVerifier) -> Result<Self, Error> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::parse_text(note.text())?;
        if checkpoint.origin() != verifier.name() {
            return Err(Error::Checkpoint { reason: "origin differs from the key name" });
        }
        note.verify(std::slice::from_ref(verifier))?;
        Ok(Self { checkpoint, note })
    }

    /// Parses without verifying (for tools that only display; never trust the result).
    ///
    /// # Errors
    /// The note's or the checkpoint's parse error.
    pub fn parse_unverified(bytes: &[u8]) -> Result<Self, Error> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::parse_text(note.text())?;
        Ok(Self { checkpoint, note })
    }

    /// The checkpoint content.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The whole signed note as published.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }
}
