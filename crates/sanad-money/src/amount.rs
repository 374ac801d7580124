//! Amounts: a decimal at the currency's minor-unit scale.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Currency, Error};

/// An exact amount of money in one currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amount {
    // Invariant: value.scale() == currency.minor_units(), and the value in minor units fits i64.
    value: Decimal,
    currency: Currency,
}

impl Amount {
    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::from_minor_units(0, currency)
    }

    /// The amount of `minor` minor units (cents, fils, ...) of `currency`.
    pub fn from_minor_units(minor: i64, currency: Currency) -> Self {
        Self { value: Decimal::new(minor, currency.minor_units()), currency }
    }

    /// Parses a non-negative decimal amount (`"12.5"`, `"0.250"`, `"100"`).
    ///
    /// The text is a plain decimal: digits with an optional `.` and fraction, nothing else (no
    /// sign, exponent, grouping or spaces). Fewer decimals than the currency's minor units are
    /// padded; more are refused unless the extra ones are zeros.
    ///
    /// # Errors
    /// [`Error::NotADecimal`], [`Error::TooManyDecimals`], [`Error::Negative`],
    /// [`Error::Overflow`].
    pub fn parse(text: &str, currency: Currency) -> Result<Self, Error> {
        let amount = Self::parse_signed(text, currency)?;
        if amount.is_negative() {
            return Err(Error::Negative);
        }
        Ok(amount)
    }

    /// Parses a strictly positive amount, as every transfer needs.
    ///
    /// # Errors
    /// As [`Amount::parse`], and [`Error::NotPositive`] for zero.
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Self, Error> {
        let amount = Self::parse(text, currency)?;
        if amount.is_zero() {
            return Err(Error::NotPositive);
        }
        Ok(amount)
    }

    /// Parses an amount that may be negative (`"-3.50"`), for balances and adjustments.
    ///
    /// # Errors
    /// As [`Amount::parse`] except for the sign.
    pub fn parse_signed(text: &str, currency: Currency) -> Result<Self, Error> {
        let not_a_decimal = || Error::NotADecimal { text: text.to_owned() };
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || unsigned.ends_with('.') {
            return Err(not_a_decimal());
        }
        let significant = fraction.trim_end_matches('0');
        if significant.len() > currency.minor_units() as usize {
            return Err(Error::TooManyDecimals {
                text: text.to_owned(),
                currency,
                minor_units: currency.minor_units(),
            });
        }
        // Too many digits for Decimal (about 28) is an overflow, not a malformed number.
        let mut value: Decimal = text.parse().map_err(|_| Error::Overflow)?;
        value.rescale(currency.minor_units());
        Self::checked_new(value, currency)
    }

    fn checked_new(mut value: Decimal, currency: Currency) -> Result<Self, Error> {
        value.rescale(currency.minor_units());
        let minor = value.mantissa();
        if minor.unsigned_abs() > u128::from(i64::MAX.unsigned_abs()) {
            return Err(Error::Overflow);
        }
        Ok(Self { value, currency })
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The decimal value (at the currency's scale).
    pub fn value(&self) -> Decimal {
        self.value
    }

    /// The amount in minor units, the form it takes at rest.
    pub fn minor_units(&self) -> i64 {
        // Invariant: checked_new bounds the mantissa to i64 and the scale is the minor units.
        i64::try_from(self.value.mantissa()).unwrap_or_else(|_| unreachable!("bounded to i64"))
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.value.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.value.is_sign_negative() && !self.value.is_zero()
    }

    /// Whether the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.value.is_sign_positive() && !self.value.is_zero()
    }

    fn same_currency(&self, other: &Self) -> Result<(), Error> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::CurrencyMismatch { left: self.currency, right: other.currency })
        }
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`Error::CurrencyMismatch`] or [`Error::Overflow`].
    pub fn checked_add(&self, other: &Self) -> Result<Self, Error> {
        self.same_currency(other)?;
        let sum = self.minor_units().checked_add(other.minor_units()).ok_or(Error::Overflow)?;
        Ok(Self::from_minor_units(sum, self.currency))
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`Error::CurrencyMismatch`] or [`Error::Overflow`].
    pub fn checked_sub(&self, other: &Self) -> Result<Self, Error> {
        self.same_currency(other)?;
        let difference =
            self.minor_units().checked_sub(other.minor_units()).ok_or(Error::Overflow)?;
        Ok(Self::from_minor_units(difference, self.currency))
    }

    /// `-self`.
    ///
    /// # Errors
    /// [`Error::Overflow`] for the one amount without a negation, `i64::MIN` minor units.
    pub fn checked_neg(&self) -> Result<Self, Error> {
        let negated = self.minor_units().checked_neg().ok_or(Error::Overflow)?;
        Ok(Self::from_minor_units(negated, self.currency))
    }

    /// Compares two amounts of the same currency.
    ///
    /// # Errors
    /// [`Error::CurrencyMismatch`].
    pub fn checked_cmp(&self, other: &Self) -> Result<std::cmp::Ordering, Error> {
        self.same_currency(other)?;
        Ok(self.minor_units().cmp(&other.minor_units()))
    }

    /// The decimal text without the currency, at full scale (`"12.500"`), as amounts travel in
    /// JSON and CSV.
    pub fn to_decimal_string(&self) -> String {
        // From the minor units: every log entry of a transfer writes one, and the general
        // decimal formatter cost a sixth of encoding the entry. The same text as `Decimal`'s
        // `Display` (tested below).
        let minor = self.minor_units();
        let scale = self.currency.minor_units() as usize;
        let digits = minor.unsigned_abs().to_string();
        let mut text = String::with_capacity(digits.len().saturating_add(scale).saturating_add(3));
        if minor < 0 {
            text.push('-');
        }
        if digits.len() > scale {
            let (whole, fraction) = digits.split_at(digits.len().saturating_sub(scale));
            text.push_str(whole);
            if scale > 0 {
                text.push('.');
                text.push_str(fraction);
            }
        } else {
            text.push_str("0.");
            text.extend(std::iter::repeat_n('0', scale.saturating_sub(digits.len())));
            text.push_str(&digits);
        }
        text
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.currency)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({} {})", self.value, self.currency)
    }
}

#[derive(Serialize, Deserialize)]
struct AmountWire {
    amount: String,
    currency: Currency,
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        AmountWire { amount: self.to_decimal_string(), currency: self.currency }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = AmountWire::deserialize(deserializer)?;
        Self::parse_signed(&wire.amount, wire.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decimal_text_is_what_the_decimal_type_prints(
            minor in prop_oneof![any::<i64>(), -100_000i64..100_000, Just(i64::MIN), Just(0)],
            code in prop::sample::select(vec!["JOD", "USD", "XOF", "KWD", "CLF", "JPY"]),
        ) {
            let amount = Amount::from_minor_units(minor, c(code));
            prop_assert_eq!(amount.to_decimal_string(), amount.value().to_string());
        }
    }

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn parsing_pads_to_minor_units() {
        assert_eq!(Amount::parse("12.5", c("JOD")).unwrap().to_decimal_string(), "12.500");
        assert_eq!(Amount::parse("500", c("XOF")).unwrap().to_decimal_string(), "500");
        assert_eq!(Amount::parse("0.1", c("USD")).unwrap().minor_units(), 10);
        assert_eq!(
            Amount::parse("7.50", c("XOF")),
            Err(Error::TooManyDecimals { text: "7.50".into(), currency: c("XOF"), minor_units: 0 })
        );
        assert_eq!(Amount::parse("7.00", c("XOF")).unwrap().minor_units(), 7);
    }

    #[test]
    fn parsing_rejects_in_precedence_order() {
        let usd = c("USD");
        for bad in ["", "-", ".5", "5.", "1e3", "1,5", " 1", "1 ", "+1", "1_000", "--1", "0x10"] {
            assert!(matches!(Amount::parse(bad, usd), Err(Error::NotADecimal { .. })), "{bad:?}");
        }
        assert!(matches!(Amount::parse("1.001", usd), Err(Error::TooManyDecimals { .. })));
        assert_eq!(Amount::parse("-1", usd), Err(Error::Negative));
        assert_eq!(Amount::parse_positive("0.00", usd), Err(Error::NotPositive));
        assert_eq!(Amount::parse("92233720368547758.08", usd), Err(Error::Overflow));
        assert_eq!(Amount::parse("99999999999999999999999999999999", usd), Err(Error::Overflow));
        assert!(Amount::parse("92233720368547758.07", usd).is_ok());
        assert_eq!(Amount::parse_signed("-3.5", usd).unwrap().minor_units(), -350);
    }

    #[test]
    fn arithmetic_is_checked_and_currency_safe() {
        let (usd, eur) = (c("USD"), c("EUR"));
        let a = Amount::from_minor_units(i64::MAX, usd);
        assert_eq!(a.checked_add(&Amount::from_minor_units(1, usd)), Err(Error::Overflow));
        assert_eq!(
            Amount::zero(usd).checked_add(&Amount::zero(eur)),
            Err(Error::CurrencyMismatch { left: usd, right: eur })
        );
        let b = Amount::parse("10.25", usd).unwrap();
        assert_eq!(b.checked_sub(&b).unwrap(), Amount::zero(usd));
        assert_eq!(b.checked_neg().unwrap().checked_neg().unwrap(), b);
        assert_eq!(Amount::from_minor_units(i64::MIN, usd).checked_neg(), Err(Error::Overflow));
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let a = Amount::parse("12.5", c("JOD")).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"amount":"12.500","currency":"JOD"}"#);
        assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Amount>(r#"{"amount":"1.0001","currency":"JOD"}"#).is_err());
    }
}
