//! Client-chosen ids (transfer ids, idempotency keys, programme ids).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest id, in bytes: long enough for a UUID with a prefix, short enough to index cheaply.
pub(crate) const ID_LENGTH_MAX: usize = 64;

/// An id chosen by a client: 1 to 64 characters from `A-Z a-z 0-9 - _ . :`. The restricted
/// alphabet keeps ids safe in URLs, CSV files, SMS and log entries without escaping, and keeps
/// personal data (names, phone numbers with `+`) from being used as ids by accident.
///
/// Shared, immutable text: a clone is a reference count, so the same id held by a command, an
/// event, a record and an index costs one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(
    // Invariant: 1..=ID_LENGTH_MAX bytes, all in the allowed alphabet.
    std::sync::Arc<str>,
);

impl Id {
    /// Parses an id.
    ///
    /// # Errors
    /// [`Error::InvalidId`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidId { id: text.to_owned(), reason };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > ID_LENGTH_MAX {
            return Err(invalid("longer than 64 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            return Err(invalid("only A-Z a-z 0-9 - _ . : are allowed"));
        }
        Ok(Self(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_safe_alphabet_only() {
        assert!(Id::parse("tr-2026:0001_a.b").is_ok());
        assert!(Id::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "+962790000000", "ü", &"a".repeat(65), "a/b"] {
            assert!(Id::parse(bad).is_err(), "{bad:?}");
        }
    }
}
