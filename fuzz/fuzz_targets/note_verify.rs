//! Signed-note parsing and verification never panic; a parsed note re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_tlog::{Note, NoteSigner};

fuzz_target!(|data: &[u8]| {
    let Ok(note) = Note::parse(data) else { return };
    // Round trip: what parses is exactly what re-encodes.
    assert_eq!(note.to_bytes(), data);
    let signer = NoteSigner::from_seed("fuzz.example/log", &[1; 32]).unwrap();
    let _ = note.verify(&[signer.verifier()]);
    for signature in note.signatures() {
        let _ = sanad_tlog::NoteVerifier::parse(&signature.name);
    }
});
