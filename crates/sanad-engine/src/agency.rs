//! [`Agency`]: the ledger and the registry together, with the operations an agency system
//! performs — create a programme, register a beneficiary, erase one, find a wallet by phone.
//! Each keeps personal data in the registry and only pseudonyms in the log, and orders its
//! writes so that a crash between the two stores is repaired on the next open.

use std::path::Path;
use std::sync::Arc;

use rand::RngCore as _;
use sanad_ledger::{Account, AccountKind, Actor, Command, ProgrammeKind, Rejection};
use sanad_money::{Amount, Currency, Id};

use crate::registry::{NewPerson, Registry, SHARED_PENDING_AFTER_MS, Work};
use crate::{Error, Ledger, Options};

/// The owner reference of the agency's own accounts (issuance, programme funding).
pub(crate) const AGENCY_OWNER: &str = "agency";

/// A ledger with its registry, in one data folder. A clone is another handle on the same
/// ones; [`Agency::acting_as`] gives a handle whose writes come from a principal.
#[derive(Clone, Debug)]
pub struct Agency {
    parts: Arc<Parts>,
    /// The principal this handle writes for; `None` for the store's holder.
    by: Option<Id>,
}

#[derive(Debug)]
pub(crate) struct Parts {
    ledger: Ledger,
    registry: Registry,
}

/// `prefix` and `length` random Crockford base32 characters (5 bits each, from the OS's
/// CSPRNG): unguessable, and readable out loud without ambiguous letters.
pub(crate) fn random_id(prefix: &str, length: usize) -> Id {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bytes = vec![0u8; length];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut text = prefix.to_owned();
    text.extend(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])));
    Id::parse(&text).unwrap_or_else(|_| unreachable!("prefix and alphabet are id characters"))
}

pub(crate) fn id(text: &str) -> Id {
    Id::parse(text).unwrap_or_else(|_| unreachable!("{text} is a valid id"))
}

impl Agency {
    /// Creates a ledger (log, signing key) and its registry in `dir`. `region` is the country
    /// for phone numbers written without a country code.
    ///
    /// # Errors
    /// As [`Ledger::create`] and [`Registry::open`].
    pub fn create(
        dir: &Path,
        origin: &str,
        region: Option<&str>,
        options: Options,
    ) -> Result<Self, Error> {
        let shared = options.shared_store.clone();
        let ledger = Ledger::create(dir, origin, options)?;
        let registry = Registry::open_on(dir, region, shared)?;
        Ok(Self::of(ledger, registry))
    }

    /// Opens the ledger and registry in `dir`, then finishes or undoes what a crash between
    /// the two stores may have left, as the registry's pending marks say: a registration that
    /// never reached the log is undone (it was never acknowledged); an erasure that did is
    /// completed, one that did not is dropped (it was never acknowledged either). On a
    /// registry other processes share, only marks older than
    /// [`SHARED_PENDING_AFTER_MS`](crate::registry::SHARED_PENDING_AFTER_MS): younger ones may
    /// be another process's work in progress.
    ///
    /// # Errors
    /// As [`Ledger::open`] and [`Registry::open`].
    pub fn open(dir: &Path, options: Options) -> Result<Self, Error> {
        let (shared, clock) = (options.shared_store.clone(), Arc::clone(&options.clock));
        let ledger = Ledger::open(dir, options)?;
        let registry = Registry::open_on(dir, None, shared)?;
        let now_ms = clock();
        for (person, work, at_ms) in registry.pending()? {
            if registry.is_shared() && now_ms < at_ms.saturating_add(SHARED_PENDING_AFTER_MS) {
                continue;
            }
            let logged = ledger.read(|state| state.beneficiary(&person).map(|b| b.erased));
            match (work, logged) {
                (Work::Registration, Some(false)) => registry.confirm(&person)?,
                (Work::Erasure, Some(false)) => registry.confirm(&person)?,
                (Work::Registration | Work::Erasure, _) => registry.erase(&person)?,
            }
        }
        registry.sweep_limits(now_ms)?;
        Ok(Self::of(ledger, registry))
    }

    fn of(ledger: Ledger, registry: Registry) -> Self {
        let parts = Parts { ledger, registry };
        Self { parts: Arc::new(parts), by: None }
    }

    /// A handle on the same ledger and registry whose writes come from `principal`, granted
    /// in the ledger (see [`sanad_ledger::access`]): each is refused unless the principal's
    /// role covers it, and its log entries name the principal.
    pub fn acting_as(&self, principal: Id) -> Self {
        Self { parts: Arc::clone(&self.parts), by: Some(principal) }
    }

    /// The principal this handle writes for, if any.
    pub fn principal(&self) -> Option<&Id> {
        self.by.as_ref()
    }

    /// The ledger, for queries. Writes go through [`Self::calls`], which names the principal.
    pub fn ledger(&self) -> &Ledger {
        &self.parts.ledger
    }

    /// The ledger's write calls on behalf of this handle's principal (where
    /// `self.ledger().execute` would write as the store's holder).
    pub fn calls(&self) -> crate::Calls<'_> {
        self.parts.ledger.calls_by(self.by.as_ref())
    }

    /// Grants `principal` a role (a vendor principal names its vendor account): logged as
    /// `principal.granted`, by this handle's principal. Returns the entry's log index (`None`
    /// for a retry of the same grant).
    ///
    /// # Errors
    /// [`Error::Rejected`] (`principal_exists`, `invalid_grant`, `not_permitted`, …); storage
    /// errors.
    pub fn grant_access(
        &self,
        principal: &Id,
        role: sanad_ledger::Role,
        vendor: Option<&Id>,
    ) -> Result<Option<u64>, Error> {
        let command =
            Command::GrantAccess { principal: principal.clone(), role, vendor: vendor.cloned() };
        Ok(self.calls().execute(command)??.log_index)
    }

    /// Revokes `principal`: it may cause no more entries. Returns the entry's log index.
    ///
    /// # Errors
    /// As [`Self::grant_access`].
    pub fn revoke_access(&self, principal: &Id) -> Result<Option<u64>, Error> {
        let command = Command::RevokeAccess { principal: principal.clone() };
        Ok(self.calls().execute(command)??.log_index)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.parts.registry
    }

    /// The account that money enters the system through, per currency.
    pub fn issuance_account(currency: Currency) -> Id {
        id(&format!("issuance.{}", currency.code()))
    }

    /// A beneficiary's wallet in one currency.
    pub fn wallet_of(beneficiary: &Id, currency: Currency) -> Id {
        // A beneficiary id is at most 22 characters, so this stays within 64.
        id(&format!("{}.{}", beneficiary.as_str(), currency.code()))
    }

    /// Opens an account unless it exists (with the same kind and currency).
    pub(crate) fn ensure_account(
        &self,
        account: Id,
        kind: AccountKind,
        currency: Currency,
        owner: Id,
    ) -> Result<(), Error> {
        if let Some(existing) = self.ledger().account(&account) {
            if existing.kind() == kind && existing.currency() == currency {
                return Ok(());
            }
            return Err(Rejection::AccountExists(account).into());
        }
        match self.calls().execute(Command::OpenAccount { id: account, kind, currency, owner })? {
            Ok(_) | Err(Rejection::AccountExists(_)) => Ok(()),
            Err(rejection) => Err(rejection.into()),
        }
    }

    /// Creates a programme with a new id, its funding account, and a logged issuance of
    /// `budget` into it (from the currency's issuance account), all in one linked group.
    ///
    /// # Errors
    /// [`Error::Rejected`]/[`Error::GroupRejected`] for bad input; storage errors.
    pub fn create_programme(
        &self,
        name: &str,
        kind: ProgrammeKind,
        budget: Amount,
    ) -> Result<Id, Error> {
        Ok(self.create_programme_logged(name, kind, budget)?.0)
    }

    /// [`Self::create_programme`], with the log index of the group's first entry.
    ///
    /// # Errors
    /// As [`Self::create_programme`].
    pub fn create_programme_logged(
        &self,
        name: &str,
        kind: ProgrammeKind,
        budget: Amount,
    ) -> Result<(Id, Option<u64>), Error> {
        let programme = random_id("prog-", 16);
        let group = self.programme_group(&programme, name, kind, budget)?;
        let applied = self.calls().execute_linked(group)??;
        Ok((programme, applied.log_index))
    }

    /// The linked group that creates a programme: its funding account, the programme, and
    /// (when positive) the issuance of its budget. Opens the currency's issuance account first.
    pub(crate) fn programme_group(
        &self,
        programme: &Id,
        name: &str,
        kind: ProgrammeKind,
        budget: Amount,
    ) -> Result<Vec<Command>, Error> {
        if budget.is_negative() {
            return Err(Rejection::AmountMustBePositive.into());
        }
        let currency = budget.currency();
        let issuance = Self::issuance_account(currency);
        self.ensure_account(issuance.clone(), AccountKind::External, currency, id(AGENCY_OWNER))?;
        let mut group = vec![
            Command::OpenAccount {
                id: programme.clone(),
                kind: AccountKind::ProgrammeFunding,
                currency,
                owner: id(AGENCY_OWNER),
            },
            Command::CreateProgramme {
                id: programme.clone(),
                name: name.to_owned(),
                kind,
                funding: programme.clone(),
            },
        ];
        if budget.is_positive() {
            group.push(Command::Transfer {
                id: id(&format!("{}:budget", programme.as_str())),
                from: issuance,
                to: programme.clone(),
                amount: budget,
                programme: programme.clone(),
                actor: Actor::Operator,
                reference: Some("programme budget".into()),
            });
        }
        Ok(group)
    }

    /// The time by the ledger's clock, in ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ledger().now_ms()
    }

    /// Registers a person and opens their wallet in `currency`. The registry record is written
    /// first; the log then records the pseudonym and commitment with the wallet, in one linked
    /// group. If the log refuses, the record is destroyed again.
    ///
    /// # Errors
    /// [`Error::Duplicate`] with the existing beneficiary; validation errors; storage errors.
    pub fn register(&self, person: &NewPerson, currency: Currency) -> Result<Id, Error> {
        Ok(self.register_logged(person, currency)?.0)
    }

    /// [`Self::register`], with the log index of the registration's entry.
    ///
    /// # Errors
    /// As [`Self::register`].
    pub fn register_logged(
        &self,
        person: &NewPerson,
        currency: Currency,
    ) -> Result<(Id, Option<u64>), Error> {
        let registered = self.registry().register(person)?;
        let group = vec![
            Command::RegisterBeneficiary {
                id: registered.id.clone(),
                commitment: registered.commitment.clone(),
            },
            Command::OpenAccount {
                id: Self::wallet_of(&registered.id, currency),
                kind: AccountKind::Wallet,
                currency,
                owner: registered.id.clone(),
            },
        ];
        let logged = self.calls().execute_linked(group);
        if matches!(logged, Ok(Ok(_))) {
            self.registry().confirm(&registered.id)?;
        } else {
            self.registry().erase(&registered.id)?;
        }
        let applied = logged??;
        Ok((registered.id, applied.log_index))
    }

    /// The beneficiary's wallet in `currency`, opened if they have none yet.
    ///
    /// # Errors
    /// [`Error::BeneficiaryNotFound`] for an unknown or erased beneficiary; storage errors.
    pub fn ensure_wallet(&self, beneficiary: &Id, currency: Currency) -> Result<Id, Error> {
        let known =
            self.ledger().read(|state| state.beneficiary(beneficiary).is_some_and(|b| !b.erased));
        if !known {
            return Err(Error::BeneficiaryNotFound(beneficiary.clone()));
        }
        let wallet = Self::wallet_of(beneficiary, currency);
        self.ensure_account(wallet.clone(), AccountKind::Wallet, currency, beneficiary.clone())?;
        Ok(wallet)
    }

    /// Erases a beneficiary's personal data. Their open vouchers are revoked; the erasure is
    /// logged, then the registry record and secret are destroyed; their wallets and history
    /// stay, unlinkable. Returns the log index of the erasure (`None` when it was erased before).
    ///
    /// # Errors
    /// [`Error::Rejected`] for an unknown beneficiary; storage errors.
    pub fn erase(&self, beneficiary: &Id) -> Result<Option<u64>, Error> {
        // Their open vouchers could never be authorised again (the PIN and the phone go with
        // the record): revoke them first, so that their value returns to the programmes. All of
        // them, those issued by other processes on a shared database too.
        self.ledger().sync()?;
        let open: Vec<Id> = self.ledger().read(|state| {
            state
                .vouchers()
                .filter(|(_, voucher)| {
                    voucher.beneficiary == *beneficiary && voucher.closed.is_none()
                })
                .map(|(id, _)| id.clone())
                .collect()
        });
        for voucher in open {
            match self.calls().execute(Command::RevokeVoucher { voucher })? {
                Ok(_) => {}
                Err(rejection) => return Err(rejection.into()),
            }
        }
        self.registry().begin_erasure(beneficiary)?;
        match self.calls().execute(Command::EraseBeneficiary { id: beneficiary.clone() })? {
            Ok(applied) => {
                self.registry().erase(beneficiary)?;
                Ok(applied.log_index)
            }
            Err(rejection) => {
                self.registry().confirm(beneficiary)?;
                Err(rejection.into())
            }
        }
    }

    /// The beneficiary registered with a phone number (in any format the registry accepts).
    ///
    /// # Errors
    /// [`Error::InvalidPhone`]; storage errors.
    pub fn beneficiary_by_phone(&self, phone: &str) -> Result<Option<Id>, Error> {
        let e164 = self.registry().normalise_phone(phone)?;
        self.registry().find_by_phone(&e164)
    }

    /// A beneficiary's wallets, one per currency.
    pub fn wallets(&self, beneficiary: &Id) -> Vec<Account> {
        self.ledger().read(|state| {
            state
                .accounts()
                .filter(|account| {
                    account.owner() == beneficiary && account.kind() == AccountKind::Wallet
                })
                .cloned()
                .collect()
        })
    }

    /// Closes the ledger (writing a snapshot).
    ///
    /// # Errors
    /// As [`Ledger::close`].
    pub fn close(&self) -> Result<(), Error> {
        self.ledger().close()
    }
}
