//! Voucher codes: what a beneficiary reads out at a counter, or types on a feature phone.
//!
//! A code carries 60 random bits and a check symbol, in one of two forms:
//!
//! - **letters**: 12 Crockford base32 symbols, then one check symbol, written in groups of four
//!   (`7KQ2-M9XD-4HRT-W`). Case does not matter; `I` and `L` read as `1`, `O` as `0`, and `U`
//!   is never used, so nothing looks like something else.
//! - **digits**, for keypads: the same 60 bits as 19 decimal digits, then a Damm check digit
//!   (`0123 4567 8901 2345 6789`).
//!
//! Spaces and hyphens are ignored when a code is read. Both checks catch **every** change of a
//! single symbol and **every** swap of two adjacent different symbols, check symbol included:
//!
//! - letters: the check makes `Σ αⁱ·dᵢ = 0` over all 13 symbols in GF(32) (α a root of
//!   x⁵ + x² + 1). A changed symbol adds `αⁱ·e ≠ 0`; a swap adds `αⁱ·(a+b)·(1+α) ≠ 0`.
//! - digits: the Damm algorithm, whose quasigroup is weakly totally anti-symmetric.
//!
//! A code whose check fails is reported as [`CodeError::Mistyped`]: a typo, not an unknown
//! code, so the vendor asks for it again. Guessing a valid code takes 2⁶⁰ tries on average
//! per code issued; the engine rate-limits attempts on top.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base32 alphabet: digits and capitals without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Random bits in a code.
pub const CODE_BITS: u32 = 60;
const DATA_SYMBOLS: usize = 12;
const LETTER_SYMBOLS: usize = DATA_SYMBOLS + 1;
const DATA_DIGITS: usize = 19;
const DIGITS: usize = DATA_DIGITS + 1;
const _: () = assert!(DATA_SYMBOLS as u32 * 5 == CODE_BITS);
// 10^19 > 2^60: every 60-bit value has a 19-digit form.
const _: () = assert!(10_000_000_000_000_000_000u128 > 1u128 << CODE_BITS);

/// A voucher code: 60 random bits. Compare codes as values; the two written forms are
/// equivalent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoucherCode(
    // Invariant: below 2^60.
    u64,
);

/// Why a text is not a voucher code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Neither 13 letters nor 20 digits (spaces and hyphens not counted).
    #[error("a voucher code has 13 letters and digits, or 20 digits; this has {0}")]
    WrongLength(usize),
    /// A character outside the code alphabet.
    #[error("{0:?} cannot appear in a voucher code")]
    InvalidCharacter(char),
    /// The check symbol does not match: a typo rather than an unknown code.
    #[error("this voucher code has a typo; please check it and enter it again")]
    Mistyped,
}

impl VoucherCode {
    /// The code made of the low 60 bits of `random` (draw them from a CSPRNG).
    pub fn from_random(random: u64) -> Self {
        Self(random & ((1 << CODE_BITS) - 1))
    }

    /// Reads a code in either form.
    ///
    /// # Errors
    /// [`CodeError`], in this order: a character outside both forms, a wrong length, a failed
    /// check.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let symbols: Vec<char> = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let values = symbols
            .iter()
            .map(|c| symbol_value(*c).ok_or(CodeError::InvalidCharacter(*c)))
            .collect::<Result<Vec<u8>, _>>()?;
        if symbols.len() == DIGITS && symbols.iter().all(char::is_ascii_digit) {
            // Digits are base32 symbols of the same value, so `values` are the digits.
            return Self::parse_digits(&values);
        }
        if symbols.len() != LETTER_SYMBOLS {
            return Err(CodeError::WrongLength(symbols.len()));
        }
        if weighted_sum(&values) != 0 {
            return Err(CodeError::Mistyped);
        }
        let value = values[..DATA_SYMBOLS].iter().fold(0u64, |n, v| n << 5 | u64::from(*v));
        Ok(Self(value))
    }

    fn parse_digits(digits: &[u8]) -> Result<Self, CodeError> {
        if damm(digits) != 0 {
            return Err(CodeError::Mistyped);
        }
        let value = digits[..DATA_DIGITS].iter().fold(0u128, |n, d| n * 10 + u128::from(*d));
        if value >> CODE_BITS != 0 {
            // A valid check on a number no code has: not a code, whatever it was meant to be.
            return Err(CodeError::Mistyped);
        }
        Ok(Self(value as u64))
    }

    /// The letters form, grouped: `7KQ2-M9XD-4HRT-W`.
    pub fn letters(&self) -> String {
        let mut values = [0u8; LETTER_SYMBOLS];
        for (position, value) in values[..DATA_SYMBOLS].iter_mut().enumerate() {
            *value = (self.0 >> (5 * (DATA_SYMBOLS - 1 - position)) & 31) as u8;
        }
        values[DATA_SYMBOLS] = check_symbol(&values[..DATA_SYMBOLS]);
        grouped(values.iter().map(|v| char::from(ALPHABET[usize::from(*v)])), '-')
    }

    /// The digits form, grouped: `0123 4567 8901 2345 6789`.
    pub fn digits(&self) -> String {
        let text = format!("{:019}", self.0);
        let mut digits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        digits.push(damm(&digits));
        grouped(digits.iter().map(|d| char::from(b'0' + d)), ' ')
    }
}

impl fmt::Display for VoucherCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}

/// Never printed whole by accident: a code is a bearer secret until redeemed.
impl fmt::Debug for VoucherCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters = self.letters();
        write!(f, "VoucherCode({}…)", &letters[..4])
    }
}

impl Serialize for VoucherCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.letters())
    }
}

impl<'de> Deserialize<'de> for VoucherCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A symbol's value in either form (digits are base32 symbols too), Crockford's aliases
/// included; `None` outside the alphabet.
fn symbol_value(symbol: char) -> Option<u8> {
    let upper = match symbol.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    };
    ALPHABET.iter().position(|a| char::from(*a) == upper).map(|p| p as u8)
}

fn grouped(symbols: impl Iterator<Item = char>, separator: char) -> String {
    let mut text = String::new();
    for (position, symbol) in symbols.enumerate() {
        if position > 0 && position % 4 == 0 {
            text.push(separator);
        }
        text.push(symbol);
    }
    text
}

/// Multiplication in GF(32) = GF(2)[x] / (x⁵ + x² + 1).
fn gf32_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0b10_0000 != 0 {
            a ^= 0b10_0101;
        }
    }
    product
}

/// α^exponent, with α = x, a generator of GF(32)'s 31 non-zero elements.
fn gf32_alpha_pow(exponent: usize) -> u8 {
    (0..exponent % 31).fold(1, |power, _| gf32_mul(power, 2))
}

/// `Σ αⁱ·dᵢ` over the symbols.
fn weighted_sum(values: &[u8]) -> u8 {
    let mut power = 1;
    let mut sum = 0;
    for value in values {
        sum ^= gf32_mul(power, *value);
        power = gf32_mul(power, 2);
    }
    sum
}

/// The check symbol that makes the weighted sum of all 13 symbols zero:
/// `d₁₂ = α⁻¹²·Σ αⁱ·dᵢ` (in characteristic 2, minus is plus).
fn check_symbol(data: &[u8]) -> u8 {
    gf32_mul(gf32_alpha_pow(31 - DATA_SYMBOLS), weighted_sum(data))
}

/// Damm's weakly totally anti-symmetric quasigroup of order 10.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// Damm's interim digit: the check digit of `digits`, or 0 when they end in a valid check.
fn damm(digits: &[u8]) -> u8 {
    digits.iter().fold(0, |interim, d| DAMM[usize::from(interim)][usize::from(*d)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic sample codes spread over the 60 bits.
    fn samples() -> impl Iterator<Item = VoucherCode> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..300)
            .map(move |_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                VoucherCode::from_random(state)
            })
            .chain([VoucherCode(0), VoucherCode((1 << CODE_BITS) - 1)])
    }

    fn compact(text: &str) -> Vec<char> {
        text.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
    }

    #[test]
    fn both_forms_read_back_in_any_case_with_any_spacing() {
        for code in samples() {
            let letters = code.letters();
            assert_eq!(letters.len(), 16, "13 symbols in groups of four: {letters}");
            assert_eq!(VoucherCode::parse(&letters), Ok(code));
            assert_eq!(VoucherCode::parse(&letters.to_lowercase()), Ok(code));
            let spaced: String = compact(&letters).iter().map(|c| format!("{c} ")).collect();
            assert_eq!(VoucherCode::parse(&spaced), Ok(code));
            let digits = code.digits();
            assert_eq!(compact(&digits).len(), 20);
            assert_eq!(VoucherCode::parse(&digits), Ok(code));
            assert_eq!(VoucherCode::parse(&digits.replace(' ', "")), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<VoucherCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn crockford_aliases_read_as_the_digits_they_look_like() {
        let code = samples().find(|c| c.letters().contains('1') && c.letters().contains('0'));
        let code = code.expect("a sample with 1 and 0");
        let aliased = code.letters().replacen('1', "l", 1).replacen('0', "O", 1);
        assert_eq!(VoucherCode::parse(&aliased), Ok(code));
    }

    /// Every single-symbol change of every sample, in both forms, is caught as a typo.
    #[test]
    fn every_single_symbol_typo_is_caught() {
        for code in samples() {
            for (text, alphabet) in [
                (compact(&code.letters()), &ALPHABET[..]),
                (compact(&code.digits()), &b"0123456789"[..]),
            ] {
                for position in 0..text.len() {
                    for replacement in alphabet.iter().map(|b| char::from(*b)) {
                        if replacement == text[position] {
                            continue;
                        }
                        let mut typo = text.clone();
                        typo[position] = replacement;
                        let typo: String = typo.into_iter().collect();
                        assert_eq!(VoucherCode::parse(&typo), Err(CodeError::Mistyped), "{typo}");
                    }
                }
            }
        }
    }

    /// Every swap of two adjacent different symbols, check symbol included, is caught.
    #[test]
    fn every_adjacent_transposition_is_caught() {
        let mut swaps = 0;
        for code in samples() {
            for text in [compact(&code.letters()), compact(&code.digits())] {
                for position in 0..text.len() - 1 {
                    if text[position] == text[position + 1] {
                        continue;
                    }
                    let mut swapped = text.clone();
                    swapped.swap(position, position + 1);
                    let swapped: String = swapped.into_iter().collect();
                    assert_eq!(VoucherCode::parse(&swapped), Err(CodeError::Mistyped), "{swapped}");
                    swaps += 1;
                }
            }
        }
        assert!(swaps > 8_000, "the samples exercise the check: {swaps} swaps");
    }

    #[test]
    fn damm_matches_its_published_example_and_gf32_is_a_field() {
        // Damm's example: the check digit of 572 is 4, and 5724 checks.
        assert_eq!(damm(&[5, 7, 2]), 4);
        assert_eq!(damm(&[5, 7, 2, 4]), 0);
        // α generates all 31 non-zero elements, and every one has an inverse.
        let powers: std::collections::BTreeSet<u8> = (0..31).map(gf32_alpha_pow).collect();
        assert_eq!(powers.len(), 31);
        assert!(!powers.contains(&0));
        for a in 1..32 {
            assert!((1..32).any(|b| gf32_mul(a, b) == 1), "{a} has an inverse");
        }
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(VoucherCode::parse("7KQ2-M9XD"), Err(CodeError::WrongLength(8)));
        assert_eq!(VoucherCode::parse("7KQ2-M9XD-4HRT-U"), Err(CodeError::InvalidCharacter('U')));
        assert_eq!(VoucherCode::parse(""), Err(CodeError::WrongLength(0)));
        // 20 digits with a valid check but above 2^60: no code has it.
        let mut digits: Vec<u8> = "9999999999999999999".bytes().map(|b| b - b'0').collect();
        digits.push(damm(&digits));
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        assert_eq!(VoucherCode::parse(&text), Err(CodeError::Mistyped));
    }

    #[test]
    fn debug_output_does_not_reveal_the_code() {
        let code = samples().next().unwrap();
        let debug = format!("{code:?}");
        assert!(!debug.contains(&code.letters()[5..]), "{debug}");
    }
}
