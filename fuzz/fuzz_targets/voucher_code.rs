//! Voucher codes as typed at a counter or sent by SMS: reading never panics, and a code that
//! reads back is the same code in both written forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_ledger::VoucherCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = VoucherCode::parse(text) {
        assert_eq!(VoucherCode::parse(&code.letters()), Ok(code));
        assert_eq!(VoucherCode::parse(&code.digits()), Ok(code));
    }
});
