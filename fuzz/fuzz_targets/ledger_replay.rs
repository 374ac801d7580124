//! Replaying untrusted log entries (what an auditor does) never panics: each entry decodes to
//! an event and its principal and re-encodes to the same bytes, or is refused; a log of
//! newline-separated entries replays or names the first entry that does not apply, and a
//! replayed state conserves money.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_ledger::{Event, State};

fuzz_target!(|data: &[u8]| {
    if let Ok((event, principal)) = Event::decode_entry(data) {
        assert_eq!(event.to_entry_by(principal.as_ref()), data);
    }
    let mut state = State::default();
    for (index, entry) in data.split(|b| *b == b'\n').enumerate() {
        if state.replay_entry(index as u64, entry).is_err() {
            break;
        }
    }
    assert!(state.totals().values().all(|total| *total == 0));
});
