//! ISO 4217 currencies with their minor units.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Codes that `iso_currency` still lists but ISO 4217 list one (2026-01-01) has withdrawn.
const WITHDRAWN: [&str; 5] = ["BGN", "CUC", "HRK", "SLL", "ZWL"];

/// An ISO 4217 currency that can carry money: it has minor units and is in current use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    // Invariant: inner has an exponent and is not in WITHDRAWN.
    inner: iso_currency::Currency,
    // Invariant: minor_units == inner.exponent().
    minor_units: u8,
}

impl Currency {
    /// Parses an alphabetic ISO 4217 code (upper case, as the standard writes it).
    ///
    /// # Errors
    /// [`Error::UnknownCurrency`] for a code ISO 4217 does not list;
    /// [`Error::UnusableCurrency`] for codes without minor units or withdrawn ones.
    pub fn parse(code: &str) -> Result<Self, Error> {
        let inner = iso_currency::Currency::from_code(code)
            .ok_or_else(|| Error::UnknownCurrency { code: code.to_owned() })?;
        if WITHDRAWN.contains(&code) {
            return Err(Error::UnusableCurrency {
                code: code.to_owned(),
                reason: "withdrawn from ISO 4217",
            });
        }
        let exponent = inner.exponent().ok_or_else(|| Error::UnusableCurrency {
            code: code.to_owned(),
            reason: "has no minor units (metal, fund or test code)",
        })?;
        let minor_units = u8::try_from(exponent).map_err(|_| Error::UnusableCurrency {
            code: code.to_owned(),
            reason: "implausible minor units",
        })?;
        Ok(Self { inner, minor_units })
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.inner.code()
    }

    /// Number of decimals of the minor unit (ISO 4217 "exponent").
    pub fn minor_units(&self) -> u32 {
        u32::from(self.minor_units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = Error;
    fn from_str(code: &str) -> Result<Self, Error> {
        Self::parse(code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217_list_one() {
        for (codes, units) in [
            ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF", 0),
            ("BHD IQD JOD KWD LYD OMR TND", 3),
            ("CLF UYW", 4),
            ("KES ETB SOS SSP SDG SYP YER AFN MGA MRU HTG EUR USD LBP", 2),
        ] {
            for code in codes.split(' ') {
                assert_eq!(Currency::parse(code).unwrap().minor_units(), units, "{code}");
            }
        }
    }

    #[test]
    fn metals_test_codes_and_withdrawn_codes_are_refused() {
        for code in ["XAU", "XAG", "XDR", "XTS", "XXX", "BGN", "HRK", "SLL", "ZWL", "CUC"] {
            assert!(matches!(Currency::parse(code), Err(Error::UnusableCurrency { .. })), "{code}");
        }
        for code in ["ABC", "jod", "", "JODD"] {
            assert!(matches!(Currency::parse(code), Err(Error::UnknownCurrency { .. })), "{code}");
        }
    }
}
