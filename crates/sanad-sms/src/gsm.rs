//! How long a text is on the air: GSM 03.38 (3GPP TS 23.038) and segment counting.
//!
//! A text travels as **GSM-7** when every character is in the default alphabet or its
//! extension table (each extension character costs two septets: an escape and itself), and as
//! **UCS-2** otherwise (UTF-16 code units). One SMS holds 160 septets or 70 units; a longer text
//! is split into segments of 153 septets or 67 units (a 6-octet header with an 8-bit
//! reference), never splitting an escape pair or a surrogate pair. USSD screens hold 182 GSM-7
//! characters.
//!
//! The tables are the standard's, written out here: the crates for it are tiny, little used and
//! count no segments (see `../shared/FORMATS.md` §1.8, whose verified cases the tests repeat).

/// The default alphabet, in code order (0x1B, the escape, is never a character).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: characters sent as the escape and a second septet.
const EXTENSION: [char; 10] = ['\u{c}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Septets in one SMS, and per segment of a longer one.
pub const GSM7_SINGLE: usize = 160;
/// Septets per segment of a concatenated GSM-7 message.
pub const GSM7_SEGMENT: usize = 153;
/// UTF-16 units in one UCS-2 SMS.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 units per segment of a concatenated UCS-2 message.
pub const UCS2_SEGMENT: usize = 67;
/// Characters on one USSD screen (GSM-7).
pub const USSD_SCREEN: usize = 182;
/// UTF-16 units on one USSD screen in UCS-2 (its 160 octets).
pub const USSD_SCREEN_UCS2: usize = 80;

/// How a text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 7-bit default alphabet and its extension table.
    Gsm7,
    /// UTF-16 (UCS-2 on the air).
    Ucs2,
}

/// A text's size on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    /// The encoding it needs.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// SMS segments.
    pub segments: usize,
}

/// The septets a character costs in GSM-7: 1, 2 (extension), or `None` when it has none.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c != '\u{1b}' && BASIC.contains(&c) {
        Some(1)
    } else if EXTENSION.contains(&c) {
        Some(2)
    } else {
        None
    }
}

/// Packs costs into segments of `capacity` without splitting any item: how many segments.
fn pack(costs: impl Iterator<Item = usize>, capacity: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for cost in costs {
        if used + cost > capacity {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

/// Measures a text as an SMS.
pub fn measure(text: &str) -> Measure {
    let septets: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    match septets {
        Some(costs) => {
            let units = costs.iter().sum();
            let segments =
                if units <= GSM7_SINGLE { 1 } else { pack(costs.into_iter(), GSM7_SEGMENT) };
            Measure { encoding: Encoding::Gsm7, units, segments }
        }
        None => {
            let units = text.encode_utf16().count();
            let segments = if units <= UCS2_SINGLE {
                1
            } else {
                pack(text.chars().map(char::len_utf16), UCS2_SEGMENT)
            };
            Measure { encoding: Encoding::Ucs2, units, segments }
        }
    }
}

/// Whether a text fits one USSD screen.
pub fn fits_ussd_screen(text: &str) -> bool {
    let septets: Option<usize> = text.chars().map(gsm7_septets).sum();
    match septets {
        Some(septets) => septets <= USSD_SCREEN,
        None => text.encode_utf16().count() <= USSD_SCREEN_UCS2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_the_standards() {
        assert_eq!(BASIC.len(), 128);
        let distinct: std::collections::HashSet<char> = BASIC.iter().copied().collect();
        assert_eq!(distinct.len(), 128);
        assert!(EXTENSION.iter().all(|c| !BASIC.contains(c)));
        assert_eq!(BASIC[0x1c], 'Æ');
        assert_eq!(BASIC[0x40], '¡');
        assert_eq!(BASIC[0x7f], 'à');
    }

    /// The cases `FORMATS.md` §1.8 verified with Perl's `Encode::GSM0338` and Twilio's
    /// segment calculator.
    #[test]
    fn verified_cases() {
        for text in ["Reçu: 500 KES", "Prêt à retirer"] {
            assert_eq!(measure(text).encoding, Encoding::Ucs2, "{text}");
        }
        for c in ['ç', 'ê', 'â', 'î', 'ô', 'û', 'ë', 'ï', 'œ', '«', '»'] {
            assert_eq!(gsm7_septets(c), None, "{c}");
        }
        for c in ['Ç', 'é', 'è', 'à', 'ù'] {
            assert_eq!(gsm7_septets(c), Some(1), "{c}");
        }
        assert_eq!(gsm7_septets('€'), Some(2));
        let french = measure("Votre solde est de 1 250 F CFA, merci.");
        assert_eq!(french.encoding, Encoding::Gsm7);
        assert_eq!(measure(&"a".repeat(160)).segments, 1);
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(
            measure(&"€".repeat(80)),
            Measure { encoding: Encoding::Gsm7, units: 160, segments: 1 }
        );
        assert_eq!(measure(&"€".repeat(81)).segments, 2);
        assert_eq!(measure(&"ب".repeat(70)).segments, 1);
        assert_eq!(measure(&"ب".repeat(71)).segments, 2);
    }

    #[test]
    fn segments_never_split_an_escape_or_a_surrogate_pair() {
        // 152 septets then a euro: it does not fit the first 153-septet segment whole.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(measure(&text).units, 164);
        assert_eq!(measure(&text).segments, 2);
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(measure(&text).segments, 3);
        // 66 units then an emoji (two units): the emoji starts the second segment.
        let text = format!("{}😀{}", "ب".repeat(66), "ب".repeat(66));
        assert_eq!(measure(&text).units, 134);
        assert_eq!(measure(&text).segments, 3);
        assert_eq!(measure(&"😀".repeat(35)).segments, 1);
    }
}
