//! Signed notes (c2sp.org/signed-note) with Ed25519 signatures, and the Go note package's
//! verifier-key and signer-key strings (`name+hexid+base64(0x01 || key)`).
//!
//! Ed25519 is deterministic, so a given key and text always give the same signature line: our
//! signer reproduces the Go package's example byte for byte (see the tests).

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::limits::{NOTE_SIGNATURES_MAX, NOTE_SIZE_MAX};

/// Signature type byte of plain Ed25519 note signatures (c2sp.org/signed-note).
pub const ALG_ED25519: u8 = 0x01;

/// The em dash and space that start every signature line (U+2014, bytes E2 80 94).
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// A key ID: the first 4 bytes of `SHA-256(name || 0x0A || type || public key)`, big-endian.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', alg]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Checks a key name: non-empty, no Unicode white space, no `+` (c2sp.org/signed-note).
///
/// # Errors
/// [`Error::KeyName`] saying what is wrong.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::KeyName { reason: "empty" });
    }
    if name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(Error::KeyName { reason: "contains white space or '+'" });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::KeyName { reason: "contains a control character" });
    }
    Ok(())
}

/// Signs note texts with one Ed25519 key under one key name.
pub struct NoteSigner {
    name: String,
    // Invariant: key_id == key_id(name, ALG_ED25519, key.verifying_key()).
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl NoteSigner {
    /// A signer from a key name and a 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`Error::KeyName`] for an invalid name.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    /// Parses the Go note package's signer key: `PRIVATE+KEY+<name>+<hexid>+<base64(0x01||seed)>`.
    ///
    /// # Errors
    /// [`Error::SignerKey`] for any malformed part, including a key ID that does not match.
    pub fn parse_signer_key(text: &str) -> Result<Self, Error> {
        let text = text.trim_end_matches('\n');
        let rest = text.strip_prefix("PRIVATE+KEY+").ok_or(Error::SignerKey)?;
        // The base64 part may itself contain '+', so split only twice.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::SignerKey);
        };
        let claimed_id = parse_key_id_hex(hex_id).ok_or(Error::SignerKey)?;
        let bytes =
            zeroize::Zeroizing::new(crate::BASE64.decode(b64).map_err(|_| Error::SignerKey)?);
        let [ALG_ED25519, seed @ ..] = bytes.as_slice() else {
            return Err(Error::SignerKey);
        };
        let seed: &[u8; 32] = seed.try_into().map_err(|_| Error::SignerKey)?;
        let signer = Self::from_seed(name, seed).map_err(|_| Error::SignerKey)?;
        if signer.key_id != claimed_id {
            return Err(Error::SignerKey);
        }
        Ok(signer)
    }

    /// The signer key string (secret!) in the Go note package's form.
    pub fn to_signer_key(&self) -> zeroize::Zeroizing<String> {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(33));
        bytes.push(ALG_ED25519);
        bytes.extend_from_slice(self.key.as_bytes());
        zeroize::Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            crate::BASE64.encode(bytes.as_slice())
        ))
    }

    /// The key name (for a log, its origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Signs a note text and returns its signature.
    ///
    /// # Errors
    /// [`Error::NoteText`] when `text` is not a valid note text.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, Error> {
        check_note_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: signature.to_bytes().to_vec(),
        })
    }
}

fn parse_key_id_hex(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Verifies Ed25519 note signatures of one key name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    // Invariant: key_id == key_id(name, ALG_ED25519, key).
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key string `<name>+<8 hex key ID>+<base64(0x01 || public key)>`.
    ///
    /// # Errors
    /// [`Error::VerifierKey`] for any malformed part, including a key ID that does not match.
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let vkey = vkey.trim();
        // The base64 part may itself contain '+', so split only twice.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::VerifierKey { reason: "expected name+keyid+key" });
        };
        check_key_name(name).map_err(|_| Error::VerifierKey { reason: "bad key name" })?;
        let claimed_id =
            parse_key_id_hex(hex_id).ok_or(Error::VerifierKey { reason: "bad key ID" })?;
        let bytes =
            crate::BASE64.decode(b64).map_err(|_| Error::VerifierKey { reason: "bad base64" })?;
        let [ALG_ED25519, public @ ..] = bytes.as_slice() else {
            return Err(Error::VerifierKey { reason: "unsupported key type" });
        };
        let public: &[u8; 32] =
            public.try_into().map_err(|_| Error::VerifierKey { reason: "bad key length" })?;
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| Error::VerifierKey { reason: "not an Ed25519 public key" })?;
        if key_id(name, ALG_ED25519, public) != claimed_id {
            return Err(Error::VerifierKey { reason: "key ID does not match the key" });
        }
        Ok(Self { name: name.to_owned(), key_id: claimed_id, key })
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        let mut bytes = Vec::with_capacity(33);
        bytes.push(ALG_ED25519);
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, crate::BASE64.encode(bytes))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn matches(&self, signature: &NoteSignature) -> bool {
        self.name == signature.name && self.key_id == signature.key_id
    }

    fn verify_signature(&self, text: &str, signature: &NoteSignature) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature.signature.as_slice()) else {
            return false;
        };
        self.key.verify_strict(text.as_bytes(), &Signature::from_bytes(&bytes)).is_ok()
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: u32,
    /// The signature bytes after the key ID (64 bytes for Ed25519; other types differ).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line `— <name> <base64(key ID || signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, crate::BASE64.encode(bytes))
    }

    fn parse_line(line: &str) -> Result<Self, Error> {
        let bad = Error::NoteSignatureLine;
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or(Error::NoteSignatureLine)?;
        check_key_name(name).map_err(|_| Error::NoteSignatureLine)?;
        let bytes = crate::BASE64.decode(b64).map_err(|_| Error::NoteSignatureLine)?;
        if bytes.len() < 5 {
            return Err(Error::NoteSignatureLine);
        }
        let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Ok(Self { name: name.to_owned(), key_id, signature: bytes[4..].to_vec() })
    }
}

/// A parsed signed note: its text (with the final newline) and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// Checks a note text: valid UTF-8 (guaranteed by `&str`), ends in a newline, no control
/// characters but newline.
fn check_note_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::NoteText { reason: "does not end with a newline" });
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(Error::NoteText { reason: "contains a control character" });
    }
    if text.len() > NOTE_SIZE_MAX {
        return Err(Error::NoteText { reason: "too large" });
    }
    Ok(())
}

impl Note {
    /// A note with the given text and no signatures yet.
    ///
    /// # Errors
    /// [`Error::NoteText`] when the text is not a valid note text.
    pub fn new(text: String) -> Result<Self, Error> {
        check_note_text(&text)?;
        Ok(Self { text, signatures: Vec::new() })
    }

    /// Signs the text with `signer` and adds the signature line.
    ///
    /// # Errors
    /// Only if the text is invalid, which [`Note::new`] already excludes.
    pub fn sign_with(&mut self, signer: &NoteSigner) -> Result<(), Error> {
        let signature = signer.sign(&self.text)?;
        self.signatures.push(signature);
        Ok(())
    }

    /// Parses a whole signed note. Does not verify any signature.
    ///
    /// # Errors
    /// [`Error::NoteText`], [`Error::NoteSignatureLine`] or [`Error::NoteTooManySignatures`].
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > NOTE_SIZE_MAX {
            return Err(Error::NoteText { reason: "too large" });
        }
        let note =
            std::str::from_utf8(bytes).map_err(|_| Error::NoteText { reason: "not UTF-8" })?;
        if note.chars().any(|c| c != '\n' && c.is_control()) {
            return Err(Error::NoteText { reason: "contains a control character" });
        }
        let split = note.rfind("\n\n").ok_or(Error::NoteText { reason: "no signature block" })?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        if block.is_empty() || !block.ends_with('\n') {
            return Err(Error::NoteSignatureLine);
        }
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > NOTE_SIGNATURES_MAX {
            return Err(Error::NoteTooManySignatures { got: lines.len() });
        }
        let signatures =
            lines.into_iter().map(NoteSignature::parse_line).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The text that the signatures cover, with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The whole note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
        }
        out.into_bytes()
    }

    /// Verifies the note against known keys, as the Go note package's `Open` does: signatures
    /// of unknown keys are ignored, every signature of a known key must verify, and at least
    /// one must. Returns the verifiers whose signatures held.
    ///
    /// # Errors
    /// [`Error::NoteSignatureInvalid`] when a known key's signature fails;
    /// [`Error::NoteUnverified`] when no known key signed the note.
    pub fn verify<'v>(
        &self,
        verifiers: &'v [NoteVerifier],
    ) -> Result<Vec<&'v NoteVerifier>, Error> {
        let mut verified = Vec::new();
        for signature in &self.signatures {
            let Some(verifier) = verifiers.iter().find(|v| v.matches(signature)) else {
                continue;
            };
            if !verifier.verify_signature(&self.text, signature) {
                return Err(Error::NoteSignatureInvalid { name: signature.name.clone() });
            }
            if !verified.contains(&verifier) {
                verified.push(verifier);
            }
        }
        if verified.is_empty() {
            return Err(Error::NoteUnverified);
        }
        Ok(verified)
    }
}
