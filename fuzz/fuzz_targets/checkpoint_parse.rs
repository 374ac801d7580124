//! Checkpoint parsing (text and signed) never panics, and what parses re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_tlog::{Checkpoint, NoteVerifier, SignedCheckpoint};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(checkpoint) = Checkpoint::parse_text(text)
    {
        assert_eq!(checkpoint.to_text(), text);
    }
    let verifier =
        NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
    let _ = SignedCheckpoint::parse_and_verify(data, &verifier);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = NoteVerifier::parse(text);
        let _ = sanad_tlog::NoteSigner::parse_signer_key(text);
    }
});
