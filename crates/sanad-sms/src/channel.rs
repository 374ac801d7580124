//! The channel: an authenticated message in, a reply (and notices to other phones) out.
//!
//! 1. **Once per message.** The gateway's message id is the idempotency key: the first delivery
//!    executes, and its reply is stored durably (never the message: it may hold a PIN) before
//!    it is returned; a retried delivery gets the same reply and executes nothing. Money moved
//!    by a message carries an id derived from the key, so even a lost reply store cannot pay
//!    twice.
//! 2. **Who.** The sender's number, normalised to E.164, is looked up through the registry's
//!    keyed indexes (beneficiaries, then vendors). An unknown sender gets a polite reply and
//!    nothing changes.
//! 3. **Limits.** Messages per phone per minute; wrong PINs per phone, which lock the phone's
//!    PIN for a while. (Wrong PINs on a voucher are counted in the ledger, per voucher.)
//! 4. **Language.** The keyword's language when it has one, else the person's preference, else
//!    the deployment's default.
//!
//! Notices are messages for other phones (the vendor paid, the beneficiary asked to confirm a
//! redemption): the integrator sends them through the gateway's API. They are returned once,
//! with the first delivery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sanad_engine::registry::{Limit, SlidingWindow, Subject};
use sanad_engine::{Agency, Error as EngineError};
use sanad_ledger::{Actor, Command, Event, ItemQuantity, Rejection};
use sanad_money::{Amount, Currency, Id};
use sha2::Digest as _;

use crate::Error;
use crate::gateway::Inbound;
use crate::input::{InputError, Parsed, Secret, SmsCommand, parse};
use crate::replies::{Arg, Replies};

/// Limits and defaults of a channel.
#[derive(Clone)]
pub struct ChannelOptions {
    /// Messages one phone may send per minute; more are answered with a request to wait.
    pub messages_per_minute: usize,
    /// Wrong PINs in a row from one phone before its PIN is locked.
    pub pin_failures: u32,
    /// How long a phone's PIN stays locked, in ms.
    pub pin_lock_ms: u64,
    /// Movements listed by `HIST`.
    pub history_items: usize,
    /// The language when neither the message nor the person says (a BCP 47 tag).
    pub default_language: String,
    /// The clock, in ms since the Unix epoch.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// USSD sessions open at once; a new one beyond it is told the service is busy, so that a
    /// flood of sessions cannot grow the channel's memory without bound.
    pub ussd_sessions_max: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            messages_per_minute: 12,
            pin_failures: 5,
            pin_lock_ms: 30 * 60_000,
            history_items: 3,
            default_language: crate::replies::FALLBACK.to_owned(),
            clock: Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            ussd_sessions_max: 50_000,
        }
    }
}

impl std::fmt::Debug for ChannelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelOptions")
            .field("messages_per_minute", &self.messages_per_minute)
            .field("pin_failures", &self.pin_failures)
            .field("pin_lock_ms", &self.pin_lock_ms)
            .field("default_language", &self.default_language)
            .finish()
    }
}

/// A message for another phone, for the integrator to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    /// The number, E.164.
    pub to: String,
    /// The text (may hold confirmation digits: do not log it).
    pub text: String,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice").field("to", &self.to).finish_non_exhaustive()
    }
}

/// What handling a message produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reply to the sender.
    pub reply: String,
    /// Messages for other phones (only on the first delivery).
    pub notices: Vec<Notice>,
    /// Whether this was a retried delivery, answered from the store.
    pub replayed: bool,
}

/// Where a channel keeps its replies by gateway message id, so that a gateway's retry of a
/// delivery is answered, not acted on again: in the data folder ([`SledAnswers`]), or where
/// every server that takes deliveries can see them (the HTTP binding keeps them in PostgreSQL
/// beside the log).
pub trait AnswerStore: Send + Sync {
    /// The reply stored for `key`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn answer(&self, key: &str) -> Result<Option<String>, Error>;

    /// Stores `reply` for `key`, durably before it returns.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn remember(&self, key: &str, reply: &str) -> Result<(), Error>;
}

/// Answers in `<data>/sms.sled`.
pub struct SledAnswers {
    answers: sled::Tree,
    db: sled::Db,
}

fn storage(error: sled::Error) -> Error {
    Error::Storage(Arc::new(error))
}

impl SledAnswers {
    /// Opens the store in `dir` (the data folder).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(ANSWERS_DIR);
        let db = sled::Config::new().path(&path).cache_capacity(8 << 20).open().map_err(storage)?;
        let answers = db.open_tree("answers").map_err(storage)?;
        Ok(Self { answers, db })
    }
}

impl AnswerStore for SledAnswers {
    fn answer(&self, key: &str) -> Result<Option<String>, Error> {
        let stored = self.answers.get(key).map_err(storage)?;
        Ok(stored.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn remember(&self, key: &str, reply: &str) -> Result<(), Error> {
        self.answers.insert(key, reply.as_bytes()).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}

/// The SMS channel over an agency.
pub struct Channel {
    agency: Arc<Agency>,
    replies: Replies,
    answers: Box<dyn AnswerStore>,
    options: ChannelOptions,
    // USSD sessions: id → when they started (AT times sessions out too; this is ours).
    pub(crate) sessions: Mutex<HashMap<String, u64>>,
    // One lock per stripe of message keys: two deliveries of one message never run at once.
    stripes: Vec<Mutex<()>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("options", &self.options).finish_non_exhaustive()
    }
}

/// Where a channel keeps its answers, in the data folder.
pub const ANSWERS_DIR: &str = "sms.sled";

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A reply: a message id and its values.
pub(crate) struct Say {
    id: &'static str,
    args: Vec<(&'static str, Arg)>,
}

pub(crate) fn say(id: &'static str) -> Say {
    Say { id, args: Vec::new() }
}

fn say_with(id: &'static str, args: Vec<(&'static str, Arg)>) -> Say {
    Say { id, args }
}

fn text(value: impl std::fmt::Display) -> Arg {
    Arg::Text(value.to_string())
}

/// A phone shown to someone else: country code and the first two and last two digits.
fn masked(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().collect();
    if digits.len() < 8 {
        return e164.to_owned();
    }
    let (head, tail) = (&digits[..6], &digits[digits.len() - 2..]);
    let hidden = "*".repeat(digits.len() - 8);
    format!("{}{hidden}{}", head.iter().collect::<String>(), tail.iter().collect::<String>())
}

/// Month and day (UTC) of a time in ms, as `MM-DD`.
fn month_day(at_ms: u64) -> String {
    let seconds = i64::try_from(at_ms / 1_000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(at) => format!("{:02}-{:02}", u8::from(at.month()), at.day()),
        Err(_) => String::new(),
    }
}

impl Channel {
    /// Opens a channel over `agency`, keeping its answers in `dir` (the data folder).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn open(
        agency: Arc<Agency>,
        dir: &Path,
        replies: Replies,
        options: ChannelOptions,
    ) -> Result<Self, Error> {
        let answers = Box::new(SledAnswers::open(dir)?);
        Ok(Self::with_answers(agency, answers, replies, options))
    }

    /// Opens a channel over `agency` that keeps its answers in `answers`.
    pub fn with_answers(
        agency: Arc<Agency>,
        answers: Box<dyn AnswerStore>,
        replies: Replies,
        options: ChannelOptions,
    ) -> Self {
        Self {
            agency,
            replies,
            answers,
            options,
            sessions: Mutex::new(HashMap::new()),
            stripes: (0..64).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The replies in use.
    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    /// The agency underneath.
    pub fn agency(&self) -> &Agency {
        &self.agency
    }

    /// USSD sessions open at once, at most (see [`ChannelOptions::ussd_sessions_max`]).
    pub(crate) fn ussd_sessions_max(&self) -> usize {
        self.options.ussd_sessions_max
    }

    pub(crate) fn now_ms(&self) -> u64 {
        (self.options.clock)()
    }

    /// Handles an authenticated message, once per gateway message id.
    ///
    /// # Errors
    /// Storage failures (the gateway should retry); everything the sender did wrong is a reply.
    pub fn handle(&self, inbound: &Inbound) -> Result<Outcome, Error> {
        let key = message_key(inbound.gateway.name(), &inbound.message_id);
        self.once(&key, || self.execute(inbound, &key))
    }

    /// Runs `work` once for `key`: a later call with the same key gets the stored reply.
    pub(crate) fn once(
        &self,
        key: &str,
        work: impl FnOnce() -> Result<(String, Vec<Notice>), Error>,
    ) -> Result<Outcome, Error> {
        let stripe =
            key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        let _serial = lock(&self.stripes[stripe % self.stripes.len()]);
        if let Some(reply) = self.answers.answer(key)? {
            return Ok(Outcome { reply, notices: Vec::new(), replayed: true });
        }
        let (reply, notices) = work()?;
        self.answers.remember(key, &reply)?;
        Ok(Outcome { reply, notices, replayed: false })
    }

    pub(crate) fn render(&self, language: &str, said: &Say) -> String {
        self.replies.render(language, said.id, &said.args)
    }

    /// Counts a message from `phone`; `false` when it is over the per-minute limit. Counted in
    /// the registry's store ([`Limit`]), so that every server on one database counts against
    /// one limit.
    pub(crate) fn within_rate(&self, phone: &str, now_ms: u64) -> Result<bool, Error> {
        let limit = Limit {
            name: "sms-messages",
            window: SlidingWindow {
                limit: u64::try_from(self.options.messages_per_minute).unwrap_or(u64::MAX),
                window_ms: 60_000,
            },
            lock_ms: None,
        };
        let registry = self.agency.registry();
        if registry.limit_wait(&limit, Subject::Phone(phone), now_ms)?.is_some() {
            return Ok(false);
        }
        registry.count_against(&limit, Subject::Phone(phone), now_ms)?;
        Ok(true)
    }

    /// Wrong PINs from one phone: `pin_failures` of them (within a day, and none right in
    /// between) lock it for `pin_lock_ms`. In the registry's store, like the message limit.
    fn wrong_pins(&self) -> Limit {
        Limit {
            name: "sms-wrong-pins",
            window: SlidingWindow {
                limit: u64::from(self.options.pin_failures.max(1)),
                window_ms: 86_400_000,
            },
            lock_ms: Some(self.options.pin_lock_ms),
        }
    }

    pub(crate) fn language_of(&self, parsed: Option<&Parsed>, person: Option<&Id>) -> String {
        if let Some(language) = parsed.and_then(|p| p.language) {
            return self.replies.pick(Some(language.tag())).to_owned();
        }
        let preferred = person
            .and_then(|id| self.agency.registry().person(id).ok().flatten())
            .and_then(|(person, _)| person.language);
        match preferred {
            Some(tag) => self.replies.pick(Some(&tag)).to_owned(),
            None => self.replies.pick(Some(&self.options.default_language)).to_owned(),
        }
    }

    fn execute(&self, inbound: &Inbound, key: &str) -> Result<(String, Vec<Notice>), Error> {
        let now_ms = self.now_ms();
        let default = self.replies.pick(Some(&self.options.default_language)).to_owned();
        let Ok(phone) = self.agency.registry().normalise_phone(&inbound.from) else {
            return Ok((self.render(&default, &say("unknown-sender")), Vec::new()));
        };
        let parsed = parse(&inbound.text);
        if !self.within_rate(&phone, now_ms)? {
            let language = self.language_of(parsed.as_ref().ok(), None);
            return Ok((self.render(&language, &say("rate-limited")), Vec::new()));
        }
        let registry = self.agency.registry();
        let beneficiary = registry.find_by_phone(&phone).map_err(Error::Engine)?;
        let vendor = match &beneficiary {
            Some(_) => None,
            None => registry.find_vendor_by_phone(&phone).map_err(Error::Engine)?,
        };
        let language = self.language_of(parsed.as_ref().ok(), beneficiary.as_ref());
        if beneficiary.is_none() && vendor.is_none() {
            return Ok((self.render(&language, &say("unknown-sender")), Vec::new()));
        }
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                let said = match error {
                    InputError::BadAmount { .. } => say("bad-amount"),
                    InputError::BadPin { .. } => say("bad-pin"),
                    InputError::Incomplete { .. } => say("help"),
                    _ => say("unknown-command"),
                };
                return Ok((self.render(&language, &said), Vec::new()));
            }
        };
        let sender = Sender { phone, beneficiary, vendor, language };
        let mut notices = Vec::new();
        let said = self.run(&sender, parsed.command, key, &mut notices)?;
        Ok((self.render(&sender.language, &said), notices))
    }

    pub(crate) fn run(
        &self,
        sender: &Sender,
        command: SmsCommand,
        key: &str,
        notices: &mut Vec<Notice>,
    ) -> Result<Say, Error> {
        let operation = derived_id("sms-", key);
        match (command, &sender.beneficiary, &sender.vendor) {
            (SmsCommand::Help, _, _) => Ok(say("help")),
            (SmsCommand::Balance { pin }, Some(person), _) => {
                if let Some(said) = self.check_pin(&sender.phone, person, &pin)? {
                    return Ok(said);
                }
                Ok(say_with("balance", vec![("balance", text(self.balances(person)))]))
            }
            (SmsCommand::History { pin }, Some(person), _) => {
                if let Some(said) = self.check_pin(&sender.phone, person, &pin)? {
                    return Ok(said);
                }
                self.history(person)
            }
            (SmsCommand::ChangePin { old, new }, Some(person), _) => {
                if let Some(said) = self.check_pin(&sender.phone, person, &old)? {
                    return Ok(said);
                }
                match self.agency.registry().set_pin(person, new.expose()) {
                    Ok(()) => Ok(say("pin-changed")),
                    Err(EngineError::InvalidPin) => Ok(say("bad-pin")),
                    Err(error) => Err(Error::Engine(error)),
                }
            }
            (SmsCommand::Pay { to, amount, pin }, Some(person), _) => {
                if let Some(said) = self.check_pin(&sender.phone, person, &pin)? {
                    return Ok(said);
                }
                self.pay(sender, person, &to, &amount, &operation, false, notices)
            }
            (SmsCommand::Send { to, amount, pin }, Some(person), _) => {
                if let Some(said) = self.check_pin(&sender.phone, person, &pin)? {
                    return Ok(said);
                }
                self.pay(sender, person, &to, &amount, &operation, true, notices)
            }
            (SmsCommand::Confirm { accept, digits }, Some(person), _) => {
                self.confirm(person, &digits, accept, notices)
            }
            (SmsCommand::Redeem { code, amount, items }, _, Some(vendor)) => {
                let redemption = derived_id("rd-", key);
                self.redeem(vendor, &code, amount.as_deref(), &items, redemption, notices)
            }
            // A vendor sending a beneficiary's command, or the other way round.
            _ => Ok(say("unknown-command")),
        }
    }

    /// Checks a PIN against the registry, counting wrong ones per phone: `None` when right,
    /// else what to answer.
    fn check_pin(&self, phone: &str, person: &Id, pin: &Secret) -> Result<Option<Say>, Error> {
        let now_ms = self.now_ms();
        let (registry, limit, subject) =
            (self.agency.registry(), self.wrong_pins(), Subject::Phone(phone));
        let locked =
            |wait_ms: u64| say_with("locked", vec![("minutes", text(wait_ms.div_ceil(60_000)))]);
        if let Some(wait_ms) = registry.limit_wait(&limit, subject, now_ms)? {
            return Ok(Some(locked(wait_ms)));
        }
        // A store that cannot be read is an error, not a wrong PIN counted against the phone.
        let right = match registry.verify_pin(person, pin.expose()) {
            Ok(right) => right,
            Err(EngineError::BeneficiaryNotFound(_)) => false,
            Err(error) => return Err(Error::Engine(error)),
        };
        if right {
            registry.clear_limit(&limit, subject, now_ms)?;
            return Ok(None);
        }
        let wrong = registry.count_against(&limit, subject, now_ms)?;
        if wrong >= limit.window.limit {
            // This one reached the limit, and counting it locked the phone.
            return Ok(Some(locked(self.options.pin_lock_ms)));
        }
        let left = limit.window.limit.saturating_sub(wrong);
        Ok(Some(say_with(
            "wrong-pin",
            vec![("left", Arg::Count(i64::try_from(left).unwrap_or(i64::MAX)))],
        )))
    }

    fn balances(&self, person: &Id) -> String {
        let wallets = self.agency.wallets(person);
        if wallets.is_empty() {
            return "0".to_owned();
        }
        wallets.iter().map(|w| w.available().to_string()).collect::<Vec<_>>().join(", ")
    }

    fn history(&self, person: &Id) -> Result<Say, Error> {
        let Some(wallet) = self.agency.wallets(person).into_iter().next() else {
            return Ok(say("history-empty"));
        };
        let recent = self
            .agency
            .ledger()
            .recent_history(wallet.id(), self.options.history_items * 4)
            .map_err(Error::Engine)?;
        let mut lines: Vec<String> = recent
            .iter()
            .rev()
            .filter_map(|(_, event)| self.movement(wallet.id(), event))
            .take(self.options.history_items)
            .collect();
        if lines.is_empty() {
            return Ok(say("history-empty"));
        }
        lines.reverse();
        Ok(say_with("history", vec![("lines", text(lines.join(", ")))]))
    }

    /// A movement of `wallet` as `+12.500 11-28`, if the event moved its money.
    fn movement(&self, wallet: &Id, event: &Event) -> Option<String> {
        let (from, to, amount) = match event {
            Event::TransferPosted { from, to, amount, .. } => (from.clone(), to.clone(), *amount),
            Event::PendingPosted { pending, amount, .. } => {
                let record =
                    self.agency.ledger().read(|s| s.pending(pending).map(|p| p.record.clone()))?;
                (record.from, record.to, *amount)
            }
            Event::TransferReversed { reverses, .. } => {
                (reverses.to.clone(), reverses.from.clone(), reverses.amount)
            }
            _ => return None,
        };
        let sign = if to == *wallet {
            '+'
        } else if from == *wallet {
            '-'
        } else {
            return None;
        };
        Some(format!("{sign}{} {}", amount.to_decimal_string(), month_day(event.at_ms())))
    }

    /// The programme the wallet's money came from most recently: what its spending is counted
    /// under.
    fn funding_programme(&self, wallet: &Id) -> Result<Option<Id>, Error> {
        let recent = self.agency.ledger().recent_history(wallet, 64).map_err(Error::Engine)?;
        Ok(recent.iter().rev().find_map(|(_, event)| match event {
            Event::TransferPosted { to, programme, .. } if to == wallet => Some(programme.clone()),
            _ => None,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn pay(
        &self,
        sender: &Sender,
        person: &Id,
        to: &str,
        amount: &str,
        operation: &Id,
        to_person: bool,
        notices: &mut Vec<Notice>,
    ) -> Result<Say, Error> {
        let registry = self.agency.registry();
        let Ok(recipient_phone) = registry.normalise_phone(to) else {
            return Ok(say_with("recipient-unknown", vec![("to", text(to))]));
        };
        let (recipient, recipient_person, currency) = if to_person {
            let Some(other) = registry.find_by_phone(&recipient_phone).map_err(Error::Engine)?
            else {
                return Ok(say_with("recipient-unknown", vec![("to", text(&recipient_phone))]));
            };
            let currency = match self.agency.wallets(person).first() {
                Some(wallet) => wallet.currency(),
                None => return Ok(say_with("insufficient", vec![("balance", text("0"))])),
            };
            let wallet = self.agency.ensure_wallet(&other, currency).map_err(Error::Engine)?;
            (wallet, Some(other), currency)
        } else {
            let Some(vendor) =
                registry.find_vendor_by_phone(&recipient_phone).map_err(Error::Engine)?
            else {
                return Ok(say_with("not-a-vendor", vec![("to", text(&recipient_phone))]));
            };
            let Some(account) = self.agency.ledger().account(&vendor) else {
                return Ok(say_with("not-a-vendor", vec![("to", text(&recipient_phone))]));
            };
            (vendor, None, account.currency())
        };
        let Ok(amount) = Amount::parse_positive(amount, currency) else {
            return Ok(say("bad-amount"));
        };
        let wallet = Agency::wallet_of(person, currency);
        let Some(programme) = self.funding_programme(&wallet)? else {
            return Ok(say_with("insufficient", vec![("balance", text(Amount::zero(currency)))]));
        };
        let command = Command::Transfer {
            id: operation.clone(),
            from: wallet.clone(),
            to: recipient.clone(),
            amount,
            programme,
            actor: Actor::Beneficiary,
            reference: Some("sms".into()),
        };
        let applied = match self.agency.ledger().execute(command).map_err(Error::Engine)? {
            Ok(applied) => applied,
            Err(rejection) => return Ok(self.refusal(&rejection, Some((&wallet, currency)))),
        };
        let balance = self.available(&wallet, currency);
        let reference = applied.log_index.map_or_else(String::new, |i| i.to_string());
        let recipient_balance = self.available(&recipient, currency);
        let language = match &recipient_person {
            Some(other) => self.language_of(None, Some(other)),
            None => self.replies.pick(Some(&self.options.default_language)).to_owned(),
        };
        let args = vec![
            ("amount", text(amount)),
            ("from", text(masked(&sender.phone))),
            ("balance", text(recipient_balance)),
        ];
        notices.push(Notice {
            to: recipient_phone.clone(),
            text: self.render(&language, &say_with("received", args)),
        });
        let id = if to_person { "sent" } else { "paid" };
        Ok(say_with(
            id,
            vec![
                ("amount", text(amount)),
                ("to", text(&recipient_phone)),
                ("balance", text(balance)),
                ("ref", text(reference)),
            ],
        ))
    }

    fn available(&self, account: &Id, currency: Currency) -> Amount {
        self.agency
            .ledger()
            .account(account)
            .map_or_else(|| Amount::zero(currency), |a| a.available())
    }

    /// The reply for a ledger rejection; `wallet` is the sender's, for a balance to show.
    fn refusal(&self, rejection: &Rejection, wallet: Option<(&Id, Currency)>) -> Say {
        match rejection {
            Rejection::InsufficientFunds(_) => {
                let balance = wallet.map_or_else(
                    || "0".to_owned(),
                    |(wallet, currency)| self.available(wallet, currency).to_string(),
                );
                say_with("insufficient", vec![("balance", text(balance))])
            }
            Rejection::VoucherExpired(_) => say("voucher-expired"),
            Rejection::VoucherExhausted(_) => say("voucher-used"),
            Rejection::VoucherRevoked(_) => say("voucher-revoked"),
            Rejection::VoucherLocked { .. } => say("voucher-locked"),
            Rejection::RedemptionPending(_) => say("voucher-busy"),
            Rejection::VendorNotEligible(_) => say("voucher-not-here"),
            Rejection::AmountExceedsVoucher(available) => {
                say_with("voucher-exceeded", vec![("available", text(available))])
            }
            Rejection::PartialRedemptionNotAllowed => say("voucher-whole"),
            Rejection::ItemUnknown(_)
            | Rejection::ItemExceedsVoucher(_)
            | Rejection::ItemNotPriced(_)
            | Rejection::InvalidVoucherRequest(_) => say("voucher-item"),
            Rejection::RedemptionNotPending(_) | Rejection::RedemptionNotFound(_) => {
                say("no-pending")
            }
            other => say_with("refused", vec![("code", text(other.code()))]),
        }
    }

    fn redeem(
        &self,
        vendor: &Id,
        code: &str,
        amount: Option<&str>,
        items: &[(String, u32)],
        redemption: Id,
        notices: &mut Vec<Notice>,
    ) -> Result<Say, Error> {
        let Some(account) = self.agency.ledger().account(vendor) else {
            return Ok(say("unknown-command"));
        };
        let currency = account.currency();
        let amount = match amount.map(|a| Amount::parse_positive(a, currency)) {
            Some(Ok(amount)) => Some(amount),
            Some(Err(_)) => return Ok(say("bad-amount")),
            None => None,
        };
        let Some(items) = items
            .iter()
            .map(|(item, quantity)| {
                Some(ItemQuantity { item: Id::parse(item).ok()?, quantity: *quantity })
            })
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(say("voucher-item"));
        };
        let request =
            match self.agency.request_redemption(code, vendor, amount, items, Some(redemption)) {
                Ok(request) => request,
                Err(error) => return self.voucher_error(error),
            };
        let (phone, digits) = match self.agency.confirmation_for(&request.id) {
            Ok(found) => found,
            Err(error) => return self.voucher_error(error),
        };
        let beneficiary = self
            .agency
            .ledger()
            .read(|state| state.voucher(&request.voucher).map(|v| v.beneficiary.clone()));
        let language = self.language_of(None, beneficiary.as_ref());
        let ask = say_with(
            "redeem-confirm",
            vec![("amount", text(request.amount)), ("digits", text(&digits))],
        );
        notices.push(Notice { to: phone, text: self.render(&language, &ask) });
        let reference = request.log_index.map_or_else(String::new, |i| i.to_string());
        Ok(say_with(
            "redeem-waiting",
            vec![("amount", text(request.amount)), ("ref", text(reference))],
        ))
    }

    fn voucher_error(&self, error: EngineError) -> Result<Say, Error> {
        Ok(match error {
            EngineError::VoucherCode(sanad_ledger::CodeError::Mistyped) => say("code-typo"),
            EngineError::VoucherCode(_) | EngineError::UnknownVoucherCode => say("code-unknown"),
            EngineError::TooManyGuesses { retry_after_ms } => say_with(
                "too-many-guesses",
                vec![("minutes", text(retry_after_ms.div_ceil(60_000)))],
            ),
            EngineError::WrongPin { attempts_left, locked_until_ms: None } => {
                say_with("wrong-pin", vec![("left", Arg::Count(i64::from(attempts_left)))])
            }
            EngineError::WrongPin { locked_until_ms: Some(_), .. } => say("voucher-locked"),
            EngineError::NoPendingConfirmation => say("no-pending"),
            EngineError::Rejected(rejection) => self.refusal(&rejection, None),
            other => return Err(Error::Engine(other)),
        })
    }

    fn confirm(
        &self,
        person: &Id,
        digits: &Secret,
        accept: bool,
        notices: &mut Vec<Notice>,
    ) -> Result<Say, Error> {
        let answered = self.agency.answer_confirmation_from(person, digits.expose(), accept);
        let (redemption, index) = match answered {
            Ok(answered) => answered,
            Err(error) => return self.voucher_error(error),
        };
        let Some((record, available)) = self.agency.ledger().read(|state| {
            let record = state.redemption(&redemption)?.clone();
            let available = state.voucher(&record.voucher)?.available();
            Some((record, available))
        }) else {
            return Ok(say("failed"));
        };
        let reference = index.map_or_else(String::new, |i| i.to_string());
        let vendor_phone =
            self.agency.registry().vendor_phone(&record.vendor).map_err(Error::Engine)?;
        let vendor_language = self.replies.pick(Some(&self.options.default_language)).to_owned();
        let (to_vendor, to_beneficiary) = if accept {
            (
                say_with(
                    "redeem-done",
                    vec![("amount", text(record.amount)), ("ref", text(&reference))],
                ),
                say_with(
                    "redeem-done-beneficiary",
                    vec![("amount", text(record.amount)), ("available", text(available))],
                ),
            )
        } else {
            (
                say_with(
                    "redeem-refused",
                    vec![("amount", text(record.amount)), ("ref", text(&reference))],
                ),
                say("redeem-refused-beneficiary"),
            )
        };
        if let Some(phone) = vendor_phone {
            notices.push(Notice { to: phone, text: self.render(&vendor_language, &to_vendor) });
        }
        Ok(to_beneficiary)
    }
}

/// Who sent a message.
pub(crate) struct Sender {
    pub(crate) phone: String,
    pub(crate) beneficiary: Option<Id>,
    pub(crate) vendor: Option<Id>,
    pub(crate) language: String,
}

/// The store's key for a message: the gateway and its id (hashed when long).
pub(crate) fn message_key(gateway: &str, message_id: &str) -> String {
    if message_id.len() <= 96 {
        format!("{gateway}:{message_id}")
    } else {
        let hash = sha2::Sha256::digest(message_id.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{gateway}:#{hex}")
    }
}

/// A ledger id for what a message does: `prefix` and 24 hex digits of SHA-256 of its key.
fn derived_id(prefix: &str, key: &str) -> Id {
    let hash = sha2::Sha256::digest(key.as_bytes());
    let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    Id::parse(&format!("{prefix}{hex}")).unwrap_or_else(|_| unreachable!("hex is an id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_masks() {
        assert_eq!(month_day(0), "01-01");
        assert_eq!(month_day(1_764_410_400_000), "11-29");
        assert_eq!(month_day(951_782_400_000), "02-29");
        assert_eq!(masked("+962791234567"), "+96279*****67");
        assert_eq!(message_key("twilio", "SM1"), "twilio:SM1");
        assert!(message_key("json", &"x".repeat(200)).len() < 60);
    }
}
