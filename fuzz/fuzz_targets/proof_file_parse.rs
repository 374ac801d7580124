//! tlog-proof files: parsing never panics, what parses re-encodes identically, and
//! verification of arbitrary files never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_tlog::NoteVerifier;
use sanad_tlog::proof_file::ProofFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = ProofFile::parse(data) else { return };
    assert_eq!(file.to_text(), data);
    let verifier =
        NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
    let _ = file.verify(b"entry", &verifier);
});
