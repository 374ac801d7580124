//! Reading what people type on a feature phone into a typed command.
//!
//! - **Keywords** in English, French and Arabic, in any case, with any spacing: `BAL` / `SOLDE`
//!   / `رصيد`. Arabic is matched without diacritics or tatweel and with every alef as `ا`, the
//!   way people type it.
//! - **Numbers** in ASCII, Arabic-Indic (`٠`–`٩`) or Eastern Arabic-Indic (`۰`–`۹`) digits, with a
//!   decimal point, a comma or the Arabic decimal separator (`٫`).
//! - **Forms** (keyword first; `PIN` is 4 to 8 digits):
//!
//! ```text
//! BAL PIN                     balance            SOLDE PIN        رصيد PIN
//! HIST PIN                    last movements     HISTORIQUE PIN   سجل PIN
//! PAY PHONE AMOUNT PIN        pay a vendor       PAYER …          ادفع …
//! SEND PHONE AMOUNT PIN       send to a person   ENVOYER …        ارسل …
//! REDEEM CODE [AMOUNT]        a vendor redeems a voucher (value), or
//! REDEEM CODE ITEM QTY …      … a commodity voucher; the beneficiary confirms by SMS
//! YES DIGITS / NO DIGITS      the beneficiary's answer      OUI/NON   نعم/لا
//! PIN OLD NEW                 change the PIN
//! HELP                        what to send       AIDE   مساعدة
//! ```
//!
//! A voucher code may be typed whole, with hyphens, or in its groups separated by spaces.
//! PINs are held in [`Secret`]s: never shown by `Debug`, wiped when dropped.

use zeroize::Zeroizing;

/// The longest message read, in characters: longer ones are refused unread (a command is a few
/// words; this is about three concatenated segments).
pub const MESSAGE_CHARS_MAX: usize = 480;

/// A language replies can be written in, as a BCP 47 tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// English.
    En,
    /// French.
    Fr,
    /// Arabic.
    Ar,
}

impl Language {
    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Fr => "fr",
            Self::Ar => "ar",
        }
    }
}

/// A secret typed by a person (a PIN): `Debug` never shows it, and it is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub(crate) fn new(text: &str) -> Self {
        Self(Zeroizing::new(text.to_owned()))
    }

    /// The digits, to check against the registry.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// A command read from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsCommand {
    /// The sender's balance.
    Balance {
        /// Their PIN.
        pin: Secret,
    },
    /// The sender's last movements.
    History {
        /// Their PIN.
        pin: Secret,
    },
    /// Pay a vendor (by the vendor's phone).
    Pay {
        /// The vendor's phone, as typed (ASCII digits, maybe `+`).
        to: String,
        /// The amount, as an ASCII decimal.
        amount: String,
        /// The sender's PIN.
        pin: Secret,
    },
    /// Send money to a person (by phone).
    Send {
        /// The recipient's phone, as typed (ASCII digits, maybe `+`).
        to: String,
        /// The amount, as an ASCII decimal.
        amount: String,
        /// The sender's PIN.
        pin: Secret,
    },
    /// A vendor redeems a voucher: an amount (value vouchers; none for all that remains) or
    /// items with quantities (commodity vouchers).
    Redeem {
        /// The code as typed (spaces and hyphens removed).
        code: String,
        /// The amount, as an ASCII decimal.
        amount: Option<String>,
        /// Items and quantities.
        items: Vec<(String, u32)>,
    },
    /// The beneficiary answers a redemption's confirmation.
    Confirm {
        /// Yes or no.
        accept: bool,
        /// The six digits of the confirmation.
        digits: Secret,
    },
    /// Change the PIN.
    ChangePin {
        /// The current PIN.
        old: Secret,
        /// The new PIN.
        new: Secret,
    },
    /// What to send.
    Help,
}

impl SmsCommand {
    /// Whether it carries a PIN (so the message must never be stored or shown).
    pub fn carries_secret(&self) -> bool {
        !matches!(self, Self::Redeem { .. } | Self::Help)
    }
}

/// What a message says: a command and the language of its keyword, when the keyword has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The command.
    pub command: SmsCommand,
    /// The keyword's language (`None` for words shared by several, such as `PIN` or `OK`).
    pub language: Option<Language>,
}

/// Why a message is not a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Nothing but spaces.
    #[error("empty message")]
    Empty,
    /// Longer than [`MESSAGE_CHARS_MAX`].
    #[error("message too long")]
    TooLong,
    /// The first word is no keyword.
    #[error("unknown keyword")]
    UnknownKeyword,
    /// A keyword without what must follow it.
    #[error("incomplete {keyword:?} command")]
    Incomplete {
        /// The keyword's command.
        keyword: Keyword,
        /// Its language, for the reply.
        language: Option<Language>,
    },
    /// An amount that is not a decimal number.
    #[error("not an amount")]
    BadAmount {
        /// The keyword's language, for the reply.
        language: Option<Language>,
    },
    /// A PIN that is not 4 to 8 digits.
    #[error("not a PIN")]
    BadPin {
        /// The keyword's language, for the reply.
        language: Option<Language>,
    },
}

impl InputError {
    /// The language to answer in, if the message showed one.
    pub fn language(&self) -> Option<Language> {
        match self {
            Self::Incomplete { language, .. }
            | Self::BadAmount { language }
            | Self::BadPin { language } => *language,
            _ => None,
        }
    }
}

/// The commands, by keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `BAL`.
    Balance,
    /// `HIST`.
    History,
    /// `PAY`.
    Pay,
    /// `SEND`.
    Send,
    /// `REDEEM`.
    Redeem,
    /// `YES`.
    Yes,
    /// `NO`.
    No,
    /// `PIN`.
    Pin,
    /// `HELP`.
    Help,
}

/// Every keyword, normalised (upper case; Arabic without diacritics, alefs as `ا`).
const KEYWORDS: &[(&str, Keyword, Option<Language>)] = &[
    ("BAL", Keyword::Balance, Some(Language::En)),
    ("BALANCE", Keyword::Balance, Some(Language::En)),
    ("SOLDE", Keyword::Balance, Some(Language::Fr)),
    ("رصيد", Keyword::Balance, Some(Language::Ar)),
    ("HIST", Keyword::History, Some(Language::En)),
    ("HISTORY", Keyword::History, Some(Language::En)),
    ("HISTORIQUE", Keyword::History, Some(Language::Fr)),
    ("سجل", Keyword::History, Some(Language::Ar)),
    ("PAY", Keyword::Pay, Some(Language::En)),
    ("PAYER", Keyword::Pay, Some(Language::Fr)),
    ("ادفع", Keyword::Pay, Some(Language::Ar)),
    ("دفع", Keyword::Pay, Some(Language::Ar)),
    ("SEND", Keyword::Send, Some(Language::En)),
    ("ENVOYER", Keyword::Send, Some(Language::Fr)),
    ("ENVOI", Keyword::Send, Some(Language::Fr)),
    ("ارسل", Keyword::Send, Some(Language::Ar)),
    ("حول", Keyword::Send, Some(Language::Ar)),
    ("REDEEM", Keyword::Redeem, Some(Language::En)),
    ("VOUCHER", Keyword::Redeem, Some(Language::En)),
    ("BON", Keyword::Redeem, Some(Language::Fr)),
    ("قسيمة", Keyword::Redeem, Some(Language::Ar)),
    ("قسيمه", Keyword::Redeem, Some(Language::Ar)),
    ("صرف", Keyword::Redeem, Some(Language::Ar)),
    ("YES", Keyword::Yes, Some(Language::En)),
    ("Y", Keyword::Yes, Some(Language::En)),
    ("OK", Keyword::Yes, None),
    ("OUI", Keyword::Yes, Some(Language::Fr)),
    ("نعم", Keyword::Yes, Some(Language::Ar)),
    ("NO", Keyword::No, Some(Language::En)),
    ("N", Keyword::No, Some(Language::En)),
    ("NON", Keyword::No, Some(Language::Fr)),
    ("لا", Keyword::No, Some(Language::Ar)),
    ("PIN", Keyword::Pin, None),
    ("NIP", Keyword::Pin, Some(Language::Fr)),
    ("رمز", Keyword::Pin, Some(Language::Ar)),
    ("HELP", Keyword::Help, Some(Language::En)),
    ("AIDE", Keyword::Help, Some(Language::Fr)),
    ("?", Keyword::Help, None),
    ("مساعدة", Keyword::Help, Some(Language::Ar)),
    ("مساعده", Keyword::Help, Some(Language::Ar)),
];

/// One character as the parser reads it: digits of every script as ASCII, the Arabic decimal
/// separator and comma as ASCII, alefs as `ا`; diacritics, tatweel, the Arabic thousands
/// separator and bidirectional marks dropped (`None`).
fn normalise_char(c: char) -> Option<char> {
    match c {
        '\u{0660}'..='\u{0669}' => char::from_u32(u32::from(c) - 0x0660 + u32::from(b'0')),
        '\u{06F0}'..='\u{06F9}' => char::from_u32(u32::from(c) - 0x06F0 + u32::from(b'0')),
        '\u{066B}' => Some('.'),
        '\u{060C}' => Some(','),
        'أ' | 'إ' | 'آ' | 'ٱ' => Some('ا'),
        '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{0640}' | '\u{066C}' => None,
        '\u{200E}'
        | '\u{200F}'
        | '\u{061C}'
        | '\u{2066}'..='\u{2069}'
        | '\u{202A}'..='\u{202E}' => None,
        _ => Some(c),
    }
}

/// Text with digits of every script as ASCII (and the other normalisations of words), for
/// USSD inputs.
pub(crate) fn normalise(text: &str) -> String {
    text.chars().filter_map(normalise_char).collect::<String>().trim().to_owned()
}

/// The message as words: normalised characters, split on any white space.
fn words(text: &str) -> Vec<String> {
    normalise(text).split_whitespace().map(str::to_owned).collect()
}

fn keyword_of(word: &str) -> Option<(Keyword, Option<Language>)> {
    let word = word.trim_end_matches(['.', '!', ':', ',']).to_uppercase();
    KEYWORDS
        .iter()
        .find(|(text, _, _)| *text == word)
        .map(|(_, keyword, language)| (*keyword, *language))
}

/// An amount: digits with at most one decimal point or comma (read as a point).
pub(crate) fn amount(word: &str) -> Option<String> {
    let text = word.replace(',', ".");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let ok = !whole.is_empty()
        && whole.len() <= 15
        && digits(whole)
        && digits(fraction)
        && fraction.len() <= 4
        && !(text.contains('.') && fraction.is_empty());
    ok.then_some(text)
}

pub(crate) fn pin(word: &str) -> Option<Secret> {
    let ok = (4..=8).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| Secret::new(word))
}

pub(crate) fn is_phone(word: &str) -> bool {
    let digits = word.strip_prefix('+').unwrap_or(word);
    (6..=16).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Takes the voucher code from the front of `rest`: 13 symbols (letters form) or 20 digits,
/// typed whole, with hyphens, or in groups.
fn take_code(rest: &mut std::collections::VecDeque<String>) -> String {
    let mut code = String::new();
    while let Some(word) = rest.front() {
        let all_digits = code.bytes().all(|b| b.is_ascii_digit());
        let done = code.len() >= 20
            || (code.len() >= 13 && !all_digits)
            // Thirteen digits that check as a letters-form code (a code may be all digits).
            || (code.len() == 13 && sanad_ledger::VoucherCode::parse(&code).is_ok());
        if done {
            break;
        }
        code.push_str(&word.replace('-', ""));
        rest.pop_front();
    }
    code
}

/// Reads a message.
///
/// # Errors
/// The [`InputError`] saying why it is not a command.
pub fn parse(text: &str) -> Result<Parsed, InputError> {
    if text.chars().count() > MESSAGE_CHARS_MAX {
        return Err(InputError::TooLong);
    }
    let mut rest: std::collections::VecDeque<String> = words(text).into();
    let first = rest.pop_front().ok_or(InputError::Empty)?;
    let (keyword, language) = keyword_of(&first).ok_or(InputError::UnknownKeyword)?;
    let incomplete = InputError::Incomplete { keyword, language };
    let mut next = || rest.pop_front().ok_or(incomplete.clone());
    let secret = |word: String| pin(&word).ok_or(InputError::BadPin { language });
    let command = match keyword {
        Keyword::Balance => SmsCommand::Balance { pin: secret(next()?)? },
        Keyword::History => SmsCommand::History { pin: secret(next()?)? },
        Keyword::Pay | Keyword::Send => {
            let to = next()?;
            if !is_phone(&to) {
                return Err(incomplete);
            }
            let amount = amount(&next()?).ok_or(InputError::BadAmount { language })?;
            let pin = secret(next()?)?;
            if keyword == Keyword::Pay {
                SmsCommand::Pay { to, amount, pin }
            } else {
                SmsCommand::Send { to, amount, pin }
            }
        }
        Keyword::Yes | Keyword::No => {
            let digits = next()?;
            let ok = digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return Err(incomplete);
            }
            SmsCommand::Confirm { accept: keyword == Keyword::Yes, digits: Secret::new(&digits) }
        }
        Keyword::Pin => SmsCommand::ChangePin { old: secret(next()?)?, new: secret(next()?)? },
        Keyword::Help => SmsCommand::Help,
        Keyword::Redeem => {
            let code = take_code(&mut rest);
            if code.is_empty() {
                return Err(incomplete);
            }
            let words: Vec<String> = rest.into_iter().collect();
            match words.as_slice() {
                [] => SmsCommand::Redeem { code, amount: None, items: Vec::new() },
                [single] => SmsCommand::Redeem {
                    code,
                    amount: Some(amount(single).ok_or(InputError::BadAmount { language })?),
                    items: Vec::new(),
                },
                pairs if pairs.len() % 2 == 0 => {
                    let items = pairs
                        .chunks(2)
                        .map(|pair| {
                            let quantity = pair[1].parse::<u32>().ok().filter(|q| *q > 0)?;
                            Some((pair[0].to_lowercase(), quantity))
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or(InputError::BadAmount { language })?;
                    SmsCommand::Redeem { code, amount: None, items }
                }
                _ => return Err(InputError::BadAmount { language }),
            }
        }
    };
    Ok(Parsed { command, language })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> SmsCommand {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).command
    }

    fn secret(text: &str) -> Secret {
        Secret(Zeroizing::new(text.into()))
    }

    #[test]
    fn keywords_in_three_languages_any_case_and_spacing() {
        for text in
            ["BAL 1234", "bal 1234", "  Bal\t1234 ", "SOLDE 1234", "solde. 1234", "رصيد 1234"]
        {
            assert_eq!(command(text), SmsCommand::Balance { pin: secret("1234") }, "{text}");
        }
        assert_eq!(parse("solde 1234").unwrap().language, Some(Language::Fr));
        assert_eq!(parse("رصيد ١٢٣٤").unwrap().language, Some(Language::Ar));
        assert_eq!(parse("PIN 1234 5678").unwrap().language, None);
        // Arabic with a hamza, diacritics and tatweel is the same word.
        assert_eq!(command("أرسل +962791234567 5 1234"), command("ارسل +962791234567 5 1234"));
        assert_eq!(command("رَصِـيد 1234"), SmsCommand::Balance { pin: secret("1234") });
    }

    #[test]
    fn numbers_in_three_scripts_with_a_point_or_a_comma() {
        let expected =
            SmsCommand::Pay { to: "0791234567".into(), amount: "12.5".into(), pin: secret("4821") };
        for text in [
            "PAY 0791234567 12.5 4821",
            "pay 0791234567 12,5 4821",
            "ادفع ٠٧٩١٢٣٤٥٦٧ ١٢٫٥ ٤٨٢١",
            "ادفع ۰۷۹۱۲۳۴۵۶۷ ۱۲٫۵ ۴۸۲۱",
            "PAYER 0791234567 12,5 4821",
        ] {
            assert_eq!(command(text), expected, "{text}");
        }
        assert!(matches!(parse("PAY 0791234567 12.5.1 4821"), Err(InputError::BadAmount { .. })));
        assert!(matches!(parse("PAY 0791234567 12. 4821"), Err(InputError::BadAmount { .. })));
        assert!(matches!(parse("PAY 0791234567 12 48"), Err(InputError::BadPin { .. })));
        assert!(matches!(
            parse("PAY 0791234567"),
            Err(InputError::Incomplete { keyword: Keyword::Pay, .. })
        ));
    }

    #[test]
    fn codes_whole_hyphenated_or_in_groups_with_an_amount_or_items() {
        let code = sanad_ledger::VoucherCode::from_random(0x0ABC_DEF0_1234_5678);
        let letters = code.letters();
        let plain = letters.replace('-', "");
        let grouped = letters.replace('-', " ");
        for typed in [letters.clone(), plain.clone(), grouped, letters.to_lowercase()] {
            let text = format!("REDEEM {typed} 12,5");
            let SmsCommand::Redeem { code: read, amount, items } = command(&text) else { panic!() };
            assert_eq!(read.to_uppercase(), plain, "{text}");
            assert_eq!(amount.as_deref(), Some("12.5"));
            assert!(items.is_empty());
        }
        let digits = code.digits();
        let SmsCommand::Redeem { code: read, amount, .. } = command(&format!("bon {digits}"))
        else {
            panic!()
        };
        assert_eq!(read, digits.replace(' ', ""));
        assert_eq!(amount, None);
        let SmsCommand::Redeem { items, .. } = command(&format!("REDEEM {plain} Rice 3 oil 1"))
        else {
            panic!()
        };
        assert_eq!(items, vec![("rice".to_owned(), 3), ("oil".to_owned(), 1)]);
        assert!(matches!(
            parse(&format!("REDEEM {plain} rice")),
            Err(InputError::BadAmount { .. })
        ));
        assert!(matches!(
            parse(&format!("REDEEM {plain} rice 0")),
            Err(InputError::BadAmount { .. })
        ));
    }

    #[test]
    fn answers_pins_help_and_refusals() {
        assert_eq!(
            command("YES 123456"),
            SmsCommand::Confirm { accept: true, digits: secret("123456") }
        );
        assert_eq!(
            command("non 123456"),
            SmsCommand::Confirm { accept: false, digits: secret("123456") }
        );
        assert_eq!(
            command("نعم ١٢٣٤٥٦"),
            SmsCommand::Confirm { accept: true, digits: secret("123456") }
        );
        assert_eq!(
            command("PIN 1234 987654"),
            SmsCommand::ChangePin { old: secret("1234"), new: secret("987654") }
        );
        assert_eq!(command("aide"), SmsCommand::Help);
        assert_eq!(parse(""), Err(InputError::Empty));
        assert_eq!(parse("hello"), Err(InputError::UnknownKeyword));
        assert_eq!(parse(&"a".repeat(MESSAGE_CHARS_MAX + 1)), Err(InputError::TooLong));
        // A PIN never shows in Debug output.
        let debug = format!("{:?}", parse("BAL 4821").unwrap());
        assert!(!debug.contains("4821"), "{debug}");
    }
}
