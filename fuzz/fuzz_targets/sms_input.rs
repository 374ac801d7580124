//! Reading SMS text never panics: any text is a command or a typed refusal, a PIN never shows in
//! `Debug`, and every text measures as at least one segment in the encoding it needs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_sms::gsm::{Encoding, measure};
use sanad_sms::input::{SmsCommand, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let measured = measure(text);
    assert!(measured.segments >= 1);
    match measured.encoding {
        Encoding::Gsm7 => assert!(measured.units >= text.chars().count()),
        Encoding::Ucs2 => assert_eq!(measured.units, text.encode_utf16().count()),
    }
    if let Ok(parsed) = parse(text) {
        // The PIN's digits may also occur inside the phone or the amount: it shows in `Debug`
        // exactly as often as in those, never on its own.
        let (pin, shown) = match &parsed.command {
            SmsCommand::Balance { pin } | SmsCommand::History { pin } => (pin.expose(), String::new()),
            SmsCommand::Pay { pin, to, amount } | SmsCommand::Send { pin, to, amount } => {
                (pin.expose(), format!("{to:?} {amount:?}"))
            }
            _ => return,
        };
        let debug = format!("{parsed:?}");
        assert_eq!(debug.matches(pin).count(), shown.matches(pin).count(), "{debug}");
    }
});
