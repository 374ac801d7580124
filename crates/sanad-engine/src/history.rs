//! Account history: for each account the log indexes of the entries that touched it. (Where a
//! transfer id's entry is, the idempotency index in the state says.)
//!
//! Kept in memory, compactly: an account's indexes only grow, so they are stored as LEB128
//! deltas (one or two bytes each for a busy account, about three for a quiet one), with a mark
//! every [`MARK_EVERY`] entries so that a page deep in a long history starts near its cursor.
//! Ten million transfers cost about 50 MB. The lists are derived from the log, updated by the
//! writer as it commits, and saved with each snapshot (so opening does not re-read the log).
//! The entries themselves are read from the log when a page is asked for.

use sanad_ledger::{AccountNumber, Event, State};
use serde::{Deserialize, Serialize};

/// Entries between marks.
const MARK_EVERY: u64 = 256;

/// One account's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct History {
    last: u64,
    count: u64,
    #[serde(with = "serde_bytes")]
    deltas: Vec<u8>,
    // (index of an entry, offset of the delta after it), every MARK_EVERY entries; boxed, as
    // most accounts never have one.
    #[allow(clippy::box_collection, reason = "one pointer per account instead of an empty Vec")]
    marks: Option<Box<Vec<(u64, usize)>>>,
}

impl History {
    fn push(&mut self, index: u64) {
        debug_assert!(self.count == 0 || index > self.last, "history indexes only grow");
        let mut delta = index - self.last;
        loop {
            let byte = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                self.deltas.push(byte);
                break;
            }
            self.deltas.push(byte | 0x80);
        }
        self.last = index;
        self.count += 1;
        if self.count.is_multiple_of(MARK_EVERY) {
            self.marks.get_or_insert_with(Box::default).push((index, self.deltas.len()));
        }
    }

    /// Up to `limit` indexes after `after` (exclusive), oldest first.
    fn page(&self, after: Option<u64>, limit: usize) -> Vec<u64> {
        let (mut value, mut offset) = match after {
            Some(after) => {
                let marks = self.marks.as_deref().map_or(&[][..], Vec::as_slice);
                let before = marks.partition_point(|(index, _)| *index <= after);
                before.checked_sub(1).map_or((0, 0), |mark| marks[mark])
            }
            None => (0, 0),
        };
        let mut found = Vec::with_capacity(limit.min(1024));
        while offset < self.deltas.len() && found.len() < limit {
            value += self.delta_at(&mut offset);
            if after.is_none_or(|after| value > after) {
                found.push(value);
            }
        }
        found
    }

    /// The LEB128 delta at `offset`, which moves past it.
    fn delta_at(&self, offset: &mut usize) -> u64 {
        let (mut delta, mut shift) = (0u64, 0);
        while let Some(byte) = self.deltas.get(*offset) {
            *offset += 1;
            delta |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        delta
    }

    /// The last `n` indexes, oldest first: decoded from the last mark with at least `n`
    /// entries after it, not from the start.
    fn last(&self, n: usize) -> Vec<u64> {
        let count = self.count as usize;
        let marks = self.marks.as_deref().map_or(&[][..], Vec::as_slice);
        // Mark j was taken at entry (j + 1) * MARK_EVERY.
        let start = (count.saturating_sub(n) / MARK_EVERY as usize)
            .checked_sub(1)
            .and_then(|j| marks.get(j))
            .map(|(index, offset)| (Some(*index), *offset));
        let (mut value, mut offset) = match start {
            Some((Some(index), offset)) => (index, offset),
            _ => (0, 0),
        };
        let mut tail = std::collections::VecDeque::with_capacity(n.min(1024) + 1);
        while offset < self.deltas.len() {
            value += self.delta_at(&mut offset);
            tail.push_back(value);
            if tail.len() > n {
                tail.pop_front();
            }
        }
        tail.into()
    }
}

/// Every account's history, by account number (see [`sanad_ledger::AccountNumber`]): a
/// dense table, as every account has at least its opening in its history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Histories {
    // Invariant: accounts[n] is the history of account number n.
    accounts: sanad_ledger::Paged<History>,
}

impl Histories {
    /// Records that entry `index`, applied to `state`, touched the accounts it names.
    pub(crate) fn record(&mut self, index: u64, state: &State, event: &Event) {
        for account in state.accounts_of(event).into_iter().flatten() {
            let AccountNumber(number) =
                state.account_number(account).expect("an event names accounts that were opened");
            let number = number as usize;
            match self.accounts.get_mut(number) {
                Some(history) => history.push(index),
                None => {
                    // An account's first entry is its opening, so it comes next in order.
                    assert_eq!(number, self.accounts.len(), "histories follow the opening order");
                    let mut history = History::default();
                    history.push(index);
                    self.accounts.push(history);
                }
            }
        }
    }

    /// How many accounts have a history.
    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }

    /// An account's last `n` entries, oldest first.
    pub(crate) fn last(&self, account: AccountNumber, n: usize) -> Vec<u64> {
        self.accounts.get(account.0 as usize).map(|history| history.last(n)).unwrap_or_default()
    }

    pub(crate) fn page(
        &self,
        account: AccountNumber,
        after: Option<u64>,
        limit: usize,
    ) -> Vec<u64> {
        self.accounts
            .get(account.0 as usize)
            .map(|history| history.page(after, limit))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_any_cursor_match_the_plain_list() {
        let mut history = History::default();
        let mut plain = Vec::new();
        let mut index = 0u64;
        for step in 0..2_000u64 {
            // Gaps from 1 to about 2^21, so deltas take one to three bytes.
            index += 1 + (step * step * 7919) % 2_000_000;
            history.push(index);
            plain.push(index);
        }
        assert_eq!(history.page(None, usize::MAX), plain);
        for cursor in [0, plain[0], plain[255], plain[256], plain[1_000] + 1, plain[1_999]] {
            let expected: Vec<u64> =
                plain.iter().copied().filter(|i| *i > cursor).take(37).collect();
            assert_eq!(history.page(Some(cursor), 37), expected, "after {cursor}");
        }
        assert!(history.deltas.len() < 3 * plain.len());
        for n in [0, 1, 3, 255, 256, 257, 600, 2_000, 5_000] {
            let from = plain.len().saturating_sub(n);
            assert_eq!(history.last(n), plain[from..], "last {n}");
        }
    }
}
