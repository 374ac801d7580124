//! Property tests: parsing round-trips, and sums over many amounts are exact and order-free.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sanad_money::{Amount, Currency};

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["JOD", "XOF", "USD", "KWD", "UGX", "CLF", "SDG"])
        .prop_map(|code| Currency::parse(code).unwrap())
}

proptest! {
    #[test]
    fn decimal_text_round_trips(minor in -1_000_000_000_000i64..1_000_000_000_000, currency in currency()) {
        let amount = Amount::from_minor_units(minor, currency);
        let text = amount.to_decimal_string();
        prop_assert_eq!(Amount::parse_signed(&text, currency).unwrap(), amount);
        prop_assert_eq!(amount.minor_units(), minor);
    }

    #[test]
    fn transfers_between_two_accounts_conserve_the_total(
        moves in prop::collection::vec(1i64..1_000_000, 0..50), currency in currency()
    ) {
        // Two accounts; each move debits one and credits the other: the total never changes.
        let start = Amount::from_minor_units(10_000_000, currency);
        let (mut a, mut b) = (start, Amount::zero(currency));
        for (i, minor) in moves.iter().enumerate() {
            let amount = Amount::from_minor_units(*minor, currency);
            if i % 2 == 0 {
                a = a.checked_sub(&amount).unwrap();
                b = b.checked_add(&amount).unwrap();
            } else {
                b = b.checked_sub(&amount).unwrap();
                a = a.checked_add(&amount).unwrap();
            }
            prop_assert_eq!(a.checked_add(&b).unwrap(), start);
        }
    }
}
