//! # sanad-money: exact money and validated ids
//!
//! An [`Amount`] is a `rust_decimal` value in one ISO 4217 [`Currency`], always held at the
//! currency's minor-unit scale (JOD 3 decimals, XOF 0, EUR 2). There are no floats anywhere, all
//! arithmetic is checked, and mixing currencies is a typed error rather than a panic. Amounts
//! are bounded so that they always fit `i64` minor units, the form they take at rest.
//!
//! The currency table is the `iso_currency` crate's copy of SIX Group's ISO 4217 list one, not a
//! hand-typed one. Codes without minor units (precious metals, SDR, test codes) and codes the
//! list has withdrawn are refused: nobody should disburse aid in them.
//!
//! This crate does no I/O.
//!
//! ```
//! use sanad_money::{Amount, Currency};
//!
//! let jod = Currency::parse("JOD").unwrap();
//! let a = Amount::parse("12.5", jod).unwrap();
//! assert_eq!(a.to_string(), "12.500 JOD");
//! assert_eq!(a.minor_units(), 12_500);
//! assert!(Amount::parse("0.0001", jod).is_err()); // JOD has 3 decimals
//! ```

// Money is never a float, and never silently wraps.
#![deny(clippy::float_arithmetic, clippy::arithmetic_side_effects)]

mod amount;
mod currency;
mod id;

pub use amount::Amount;
pub use currency::Currency;
pub use id::Id;

/// Errors of parsing and computing with money and ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not an ISO 4217 code we accept.
    #[error("unknown currency code {code:?}")]
    UnknownCurrency {
        /// The code given.
        code: String,
    },
    /// An ISO 4217 code that exists but cannot carry money here (metals, funds without minor
    /// units, withdrawn codes).
    #[error("currency {code} is not usable for transfers: {reason}")]
    UnusableCurrency {
        /// The code given.
        code: String,
        /// Why.
        reason: &'static str,
    },
    /// Not a decimal number.
    #[error("{text:?} is not a decimal amount")]
    NotADecimal {
        /// The text given.
        text: String,
    },
    /// More decimals than the currency has minor units.
    #[error("{text:?} has more than {minor_units} decimals, the minor units of {currency}")]
    TooManyDecimals {
        /// The text given.
        text: String,
        /// The currency.
        currency: Currency,
        /// Its minor units.
        minor_units: u32,
    },
    /// A negative amount where only non-negative ones are allowed.
    #[error("amount must not be negative")]
    Negative,
    /// Zero or negative where a positive amount is required.
    #[error("amount must be positive")]
    NotPositive,
    /// The amount does not fit in i64 minor units.
    #[error("amount overflows the largest representable amount")]
    Overflow,
    /// Arithmetic on two currencies.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// The left operand's currency.
        left: Currency,
        /// The right operand's currency.
        right: Currency,
    },
    /// A malformed id.
    #[error("invalid id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
}
