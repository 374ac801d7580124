//! Dense tables for a million accounts: [`Paged`], a vector that grows a page at a time, and
//! [`AccountTable`], the accounts in the order they were opened with a map from id to number.
//!
//! Why: a hash map of whole accounts keeps every account in a bucket, and buckets come in powers
//! of two, so a million accounts could occupy two million account-sized slots (220 MB measured).
//! Here the map holds only a 4-byte number per id and the accounts sit packed in pages. The
//! number is also what the engine keys per-account data by (history), so that data needs no
//! second map of ids. Numbers follow the order of opening, which the log fixes: replaying the
//! same log gives the same numbers.

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use sanad_money::Id;

use crate::sharded::ShardedMap;
use crate::state::Account;

/// Items per page: pages are allocated whole and never moved, so growing never copies.
const PAGE_ITEMS: usize = 4_096;

/// A vector in fixed pages: pushing never reallocates what is there, and at most one page is
/// partly empty (a plain vector doubles, copying everything and leaving up to half unused).
#[derive(Clone, Debug)]
pub struct Paged<T> {
    pages: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Paged<T> {
    fn default() -> Self {
        Self { pages: Vec::new(), len: 0 }
    }
}

impl<T: PartialEq> PartialEq for Paged<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for Paged<T> {}

impl<T> Paged<T> {
    /// How many items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `item`; its position is the length before.
    pub fn push(&mut self, item: T) {
        match self.pages.last_mut() {
            Some(page) if page.len() < PAGE_ITEMS => page.push(item),
            _ => {
                let mut page = Vec::with_capacity(PAGE_ITEMS);
                page.push(item);
                self.pages.push(page);
            }
        }
        self.len += 1;
    }

    /// Removes and returns the last item.
    pub fn pop(&mut self) -> Option<T> {
        let page = self.pages.last_mut()?;
        let item = page.pop();
        if page.is_empty() {
            self.pages.pop();
        }
        self.len -= 1;
        item
    }

    /// The item at `position`.
    pub fn get(&self, position: usize) -> Option<&T> {
        self.pages.get(position / PAGE_ITEMS)?.get(position % PAGE_ITEMS)
    }

    /// The item at `position`, to change.
    pub fn get_mut(&mut self, position: usize) -> Option<&mut T> {
        self.pages.get_mut(position / PAGE_ITEMS)?.get_mut(position % PAGE_ITEMS)
    }

    /// Every item, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flatten()
    }
}

impl<T: Serialize> Serialize for Paged<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for item in self.iter() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

struct Items<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
    type Value = Paged<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Paged::default();
        while let Some(item) = seq.next_element::<T>()? {
            items.push(item);
        }
        Ok(items)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Paged<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(Items(std::marker::PhantomData))
    }
}

/// An account's number: its position in the order of opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountNumber(pub u32);

/// The accounts, numbered in the order they were opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountTable {
    // Invariant: numbers[accounts[n].id] == n for every n, and nothing else is in `numbers`.
    numbers: ShardedMap<Id, u32>,
    accounts: Paged<Account>,
}

impl AccountTable {
    pub(crate) fn number_of(&self, id: &Id) -> Option<AccountNumber> {
        self.numbers.get(id).copied().map(AccountNumber)
    }

    pub(crate) fn get(&self, id: &Id) -> Option<&Account> {
        self.accounts.get(*self.numbers.get(id)? as usize)
    }

    pub(crate) fn get_mut(&mut self, id: &Id) -> Option<&mut Account> {
        self.accounts.get_mut(*self.numbers.get(id)? as usize)
    }

    pub(crate) fn contains(&self, id: &Id) -> bool {
        self.numbers.contains_key(id)
    }

    /// Adds a newly opened account under the next number.
    pub(crate) fn push(&mut self, account: Account) -> AccountNumber {
        let number = u32::try_from(self.accounts.len()).expect("fewer than 2^32 accounts");
        let previous = self.numbers.insert(account.id().clone(), number);
        assert!(previous.is_none(), "account {} opened twice", account.id());
        self.accounts.push(account);
        AccountNumber(number)
    }

    /// Removes the account opened last, which must be `id` (a linked group's opening, undone).
    pub(crate) fn pop(&mut self, id: &Id) {
        let last = self.accounts.pop().expect("an account to remove");
        assert_eq!(last.id(), id, "only the account opened last can be removed");
        self.numbers.remove(id);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }
}

/// Serialized as the accounts in order; the numbers are rebuilt on the way back.
impl Serialize for AccountTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.accounts.serialize(serializer)
    }
}

struct Accounts;

impl<'de> Visitor<'de> for Accounts {
    type Value = AccountTable;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of accounts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The length is reserved up front (the map caps what it trusts), so the numbers'
        // tables never regrow while a million accounts load.
        let mut table = AccountTable {
            numbers: ShardedMap::with_capacity(seq.size_hint().unwrap_or(0)),
            accounts: Paged::default(),
        };
        while let Some(account) = seq.next_element::<Account>()? {
            if table.contains(account.id()) {
                return Err(serde::de::Error::custom(format!(
                    "account {} appears twice",
                    account.id()
                )));
            }
            table.push(account);
        }
        Ok(table)
    }
}

impl<'de> Deserialize<'de> for AccountTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(Accounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_pushes_pops_and_indexes_across_pages() {
        let mut paged = Paged::default();
        for n in 0..(PAGE_ITEMS * 2 + 5) {
            paged.push(n);
        }
        assert_eq!(paged.len(), PAGE_ITEMS * 2 + 5);
        assert_eq!(paged.get(PAGE_ITEMS), Some(&PAGE_ITEMS));
        assert_eq!(paged.get(PAGE_ITEMS * 2 + 5), None);
        *paged.get_mut(7).unwrap() = 70;
        assert_eq!(paged.iter().nth(7), Some(&70));
        for _ in 0..6 {
            paged.pop();
        }
        assert_eq!(paged.len(), PAGE_ITEMS * 2 - 1);
        assert_eq!(paged.pages.len(), 2, "an emptied page is let go");
        assert_eq!(paged.iter().last(), Some(&(PAGE_ITEMS * 2 - 2)));
        let bytes = serde_json::to_vec(&paged).unwrap();
        let back: Paged<usize> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, paged);
    }
}
