//! The beneficiary registry: the only place personal data live, kept apart from the log so it
//! can be erased.
//!
//! - A beneficiary is known to the log only by a random pseudonymous id (`b-` and 20 base32
//!   characters) and a **commitment**: HMAC-SHA-256 of their record under a per-person secret.
//!   Anyone holding the record and the secret can show the log entry is about this person; once
//!   the secret is gone, nobody can.
//! - **Records** (E.164 phone, name, national id, language, Argon2id PIN hash) are stored in
//!   `registry.sled`, encrypted with ChaCha20-Poly1305 under a key derived from the person's
//!   secret.
//! - **Secrets** are one file each in `registry.secrets/` (owner-only). Erasure overwrites and
//!   deletes the file, which makes every copy of the record sled may still hold on disk (its
//!   log-structured files keep old versions until they are reclaimed) unreadable: the record is
//!   crypto-shredded, not only unlinked.
//! - **Shared** (several processes on one PostgreSQL database): records, indexes and secrets
//!   are in the database's key-value table instead ([`Registry::open_on`]), so that every
//!   process knows every beneficiary; each process's folder holds a copy of `registry.key`.
//!   Erasure deletes the secret's row: the database keeps no readable copy once it has vacuumed
//!   the table, but its write-ahead log, replicas and backups keep the deleted row until they
//!   are recycled, so crypto-shredding there is as good as the database's retention.
//! - **Duplicates** are found through a keyed-hash index: HMAC-SHA-256 of the phone or national
//!   id under the agency's secret (`registry.key`). Phone numbers are few enough to brute-force,
//!   so neither a plain nor an agency-keyed hash of one ever enters the log.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sanad_ledger::VoucherCode;
pub use sanad_log::kv::SlidingWindow;
use sanad_log::kv::{KeyValue, Prefixed, SledKv};
use sanad_money::Id;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;

/// Where the registry lives in the data folder.
pub const REGISTRY_DIR: &str = "registry.sled";
/// The agency's secret for the duplicate index.
pub const AGENCY_KEY_FILE: &str = "registry.key";
/// One secret file per person.
pub const SECRETS_DIR: &str = "registry.secrets";

/// The registry's page cache (sled's default is 1 GiB).
const REGISTRY_CACHE_BYTES: u64 = 32 << 20;

const PEOPLE: &str = "people";
const PENDING: &str = "pending";
const LOOKUP: &str = "lookup";
const META: &str = "meta";
const CODES: &str = "codes";
const VENDORS: &str = "vendors";
/// Confirmations by phone awaiting an answer: redemption → the digest of the digits sent and
/// the beneficiary.
const CONFIRMATIONS: &str = "confirmations";
/// Secrets, on a shared store only (in the folder they are files).
const SECRETS: &str = "secrets";
/// Counters of abuse limits (see [`Limit`]).
const LIMITS: &str = "limits";
const REGION: &[u8] = b"region";
/// The registry's spaces' prefix on a store it shares with other users (the database).
const SHARED_PREFIX: &str = "registry.";
/// A keyed check value of the agency key, on a shared store (see `check_agency_key`).
const KEY_CHECK: &[u8] = b"key-check";

/// On a shared store, how old a pending mark must be before opening reconciles it: younger
/// ones may be another process's work in progress (a registration is logged within moments).
pub const SHARED_PENDING_AFTER_MS: u64 = 10 * 60 * 1_000;

type HmacSha256 = Hmac<Sha256>;

/// A person's data as an operator gives them. Only `phone` is required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewPerson {
    /// The phone number as typed (international, or national in the registry's region).
    pub phone: String,
    /// Full name.
    pub name: Option<String>,
    /// National or household id.
    pub national_id: Option<String>,
    /// Preferred language (a BCP 47 tag such as `ar`, `fr`, `en`).
    pub language: Option<String>,
    /// A PIN of 4 to 8 digits; stored only as an Argon2id hash.
    pub pin: Option<Zeroizing<String>>,
}

/// A person's record as stored (decrypted). The PIN hash never leaves the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// E.164 phone number.
    pub phone: String,
    /// Full name.
    pub name: Option<String>,
    /// National or household id, as given.
    pub national_id: Option<String>,
    /// Preferred language.
    pub language: Option<String>,
    #[serde(default)]
    pin_hash: Option<String>,
}

/// Work begun in the registry that the log has yet to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A registration: the record exists, its `beneficiary.registered` may not.
    Registration = 0,
    /// An erasure: `beneficiary.erased` may be logged while the record still exists.
    Erasure = 1,
}

/// A registration: the pseudonymous id and the commitment the log will carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The pseudonymous id.
    pub id: Id,
    /// 64 lower-case hex digits.
    pub commitment: String,
}

/// The registry. Share it with an `Arc`; every method is safe to call concurrently.
///
/// Its key spaces: `people` (id → sealed record); `pending` (registrations and erasures begun
/// and not yet confirmed by the log: what a crash between the two stores can leave half done,
/// see `Agency::open`); `lookup` (keyed hashes of phones and national ids → id); `meta`;
/// `codes` (`c` + HMAC(agency key, code) → voucher id, and `v` + voucher id → the code sealed
/// under a key derived from the agency key, to show it again, never logged); `vendors` (`p` +
/// HMAC(agency key, E.164) → vendor id, and `v` + vendor id → the number sealed likewise, to
/// send them notices).
pub struct Registry {
    /// Under `registry.` on a shared store, where other users' spaces sit beside these.
    kv: Prefixed,
    /// Secret files, in the folder; `None` on a shared store, which keeps them in `secrets`.
    secrets: Option<PathBuf>,
    agency_key: Zeroizing<[u8; 32]>,
}

/// A limit on how often something may happen to one subject — wrong PINs from a phone, unknown
/// voucher codes from a vendor, messages from a phone — over a sliding window
/// ([`SlidingWindow`]), counted in the registry's store: in the data folder, where a restart
/// does not reset it, or in the database, where every server behind a load balancer counts
/// against the same limit.
///
/// With `lock_ms`, reaching the limit locks the subject for exactly that long (and forgets the
/// count): wrong PINs lock a phone for half an hour, as people are told, rather than until
/// enough of them slide out of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The limit's name, apart from every other limit's.
    pub name: &'static str,
    /// How many, over how long.
    pub window: SlidingWindow,
    /// How long reaching the limit locks the subject, if it does.
    pub lock_ms: Option<u64>,
}

/// How a lock's key ends (its value: until when, in ms, eight bytes big-endian).
const LOCK_SUFFIX: &[u8] = b"#lock";

/// The key of the lock on the subject whose counters are under `key`.
fn lock_key(key: &[u8]) -> Vec<u8> {
    [key, LOCK_SUFFIX].concat()
}

/// Who or what a [`Limit`] counts.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A phone, in E.164: counted under its keyed hash, never the number.
    Phone(&'a str),
    /// A vendor.
    Vendor(&'a Id),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn storage(error: sanad_log::Error) -> Error {
    Error::Log(error)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Writes `bytes` to a new owner-only file and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io)
}

/// Reads a secret file, refusing one that others may read.
fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let io = |e| Error::io(format!("reading {}", path.display()), e);
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::SecretPermissions { path: path.to_owned(), mode });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
    unhex(text.trim())
        .map(Zeroizing::new)
        .ok_or_else(|| Error::Corrupt(format!("{} is not hex", path.display())))
}

/// Normalises a national id for the duplicate index: case, spaces and dashes do not count.
fn national_id_key(national_id: &str) -> String {
    national_id
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

fn check_pin(pin: &str) -> Result<(), Error> {
    if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidPin);
    }
    Ok(())
}

fn check_field(value: &Option<String>, field: &'static str, max: usize) -> Result<(), Error> {
    if let Some(value) = value
        && (value.trim().is_empty()
            || value.chars().count() > max
            || value.chars().any(char::is_control))
    {
        return Err(Error::InvalidField { field });
    }
    Ok(())
}

impl Registry {
    /// Opens the registry in `dir`, creating it (and the agency secret) if absent. `region` is
    /// the ISO 3166 country (e.g. `JO`) for phone numbers written without a country code; it is
    /// remembered, and given again it must match.
    ///
    /// # Errors
    /// I/O and storage errors; [`Error::SecretPermissions`]; [`Error::InvalidField`] for an
    /// unknown region.
    pub fn open(dir: &Path, region: Option<&str>) -> Result<Self, Error> {
        Self::open_on(dir, region, None)
    }

    /// [`Self::open`], with the records, indexes and secrets on `shared` (a database every
    /// process on it shares) when given; `dir` then holds only the agency secret.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on(
        dir: &Path,
        region: Option<&str>,
        shared: Option<Arc<dyn KeyValue>>,
    ) -> Result<Self, Error> {
        let key_path = dir.join(AGENCY_KEY_FILE);
        let shared = shared.map(|kv| Prefixed::new(kv, SHARED_PREFIX));
        if let Some(kv) = &shared
            && !key_path.exists()
            && kv.get(META, KEY_CHECK).map_err(storage)?.is_some()
        {
            return Err(Error::Corrupt(format!(
                "the database's registry was made with another {AGENCY_KEY_FILE}: copy it into {} from the first process's folder",
                dir.display()
            )));
        }
        if !key_path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(key.as_mut());
            write_private(&key_path, hex(key.as_ref()).as_bytes())?;
        }
        let key = read_private(&key_path)?;
        let agency_key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt(format!("{} is not a 32-byte key", key_path.display())))?;
        let agency_key = Zeroizing::new(agency_key);
        let registry = match shared {
            Some(kv) => Self { kv, secrets: None, agency_key },
            None => {
                let secrets = dir.join(SECRETS_DIR);
                fs::create_dir_all(&secrets)
                    .and_then(|()| fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700)))
                    .map_err(|e| Error::io(format!("creating {}", secrets.display()), e))?;
                let kv = SledKv::open(&dir.join(REGISTRY_DIR), REGISTRY_CACHE_BYTES)?;
                Self { kv: Prefixed::new(Arc::new(kv), ""), secrets: Some(secrets), agency_key }
            }
        };
        if registry.is_shared() {
            registry.check_agency_key()?;
        }
        if let Some(region) = region {
            let region = region.to_ascii_uppercase();
            region
                .parse::<phonenumber::country::Id>()
                .map_err(|_| Error::InvalidField { field: "region" })?;
            match registry.region()? {
                Some(stored) if stored != region => {
                    return Err(Error::InvalidField { field: "region" });
                }
                Some(_) => {}
                None => {
                    registry.insert(META, REGION, region.as_bytes())?;
                    registry.flush()?;
                }
            }
        }
        Ok(registry)
    }

    /// On a shared store, checks that this process's agency key is the one the registry was
    /// made with (the first process records a keyed check value): with another key, the
    /// duplicate index would find nobody and voucher codes would not open.
    fn check_agency_key(&self) -> Result<(), Error> {
        let check = mac(self.agency_key.as_ref(), &[b"sanad.registry.key-check/v1"]);
        match self.claim(META, KEY_CHECK, &check)? {
            None => self.flush(),
            Some(stored) if stored == check => Ok(()),
            Some(_) => Err(Error::Corrupt(format!(
                "this folder's {AGENCY_KEY_FILE} is not the one the database's registry was made with; copy the first process's"
            ))),
        }
    }

    /// Whether other processes share the registry (on a database).
    pub fn is_shared(&self) -> bool {
        self.kv.is_shared()
    }

    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.get(space, key).map_err(storage)
    }

    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.kv.insert(space, key, value).map_err(storage)
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.remove(space, key).map_err(storage)
    }

    /// `None` when claimed; else what the key holds.
    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.claim(space, key, value).map_err(storage)
    }

    fn flush(&self) -> Result<(), Error> {
        self.kv.flush().map_err(storage)
    }

    /// Stores a new person's secret: an owner-only file, or a row on a shared store.
    fn put_secret(&self, id: &Id, secret: &[u8]) -> Result<(), Error> {
        match &self.secrets {
            Some(dir) => write_private(&dir.join(id.as_str()), hex(secret).as_bytes()),
            None => self.insert(SECRETS, id.as_str().as_bytes(), secret),
        }
    }

    /// A person's secret, `None` once erased.
    fn secret(&self, id: &Id) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        match &self.secrets {
            Some(dir) => {
                let path = dir.join(id.as_str());
                if !path.exists() {
                    return Ok(None);
                }
                read_private(&path).map(Some)
            }
            None => Ok(self.get(SECRETS, id.as_str().as_bytes())?.map(Zeroizing::new)),
        }
    }

    /// Destroys a person's secret: the file overwritten, synced and removed, or the row
    /// deleted.
    fn shred_secret(&self, id: &Id) -> Result<(), Error> {
        let Some(dir) = &self.secrets else {
            self.remove(SECRETS, id.as_str().as_bytes())?;
            return Ok(());
        };
        let path = dir.join(id.as_str());
        if path.exists() {
            let io = |e| Error::io(format!("erasing {}", path.display()), e);
            let length = fs::metadata(&path).map_err(io)?.len();
            let mut file = OpenOptions::new().write(true).open(&path).map_err(io)?;
            file.write_all(&vec![0u8; usize::try_from(length).unwrap_or(0)])
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            fs::remove_file(&path).map_err(io)?;
            crate::sync_dir(dir).map_err(io)?;
        }
        Ok(())
    }

    /// Copies this registry, kept in a folder, into `to`, a store every process on a database
    /// shares and that holds no registry yet, as [`Self::open_on`] with it expects: records,
    /// indexes, voucher codes, vendors' phones, pending marks, the region, and each person's
    /// secret. Returns how many people were copied. The folder's copy is left as it was.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when this registry is shared already or `to` holds one; storage
    /// errors.
    pub fn copy_to_shared(&self, to: Arc<dyn KeyValue>) -> Result<u64, Error> {
        if self.secrets.is_none() {
            return Err(Error::Corrupt("this registry is on a shared store already".into()));
        }
        let to = Prefixed::new(to, SHARED_PREFIX);
        for space in [PEOPLE, META] {
            if !to.entries(space).map_err(storage)?.is_empty() {
                return Err(Error::Corrupt("the database holds a registry already".into()));
            }
        }
        for space in [PENDING, LOOKUP, META, CODES, VENDORS] {
            sanad_log::kv::copy_space(&self.kv, space, &to, space).map_err(storage)?;
        }
        // Secrets before records: a record without its secret reads as erased.
        let people = self.kv.entries(PEOPLE).map_err(storage)?;
        for (key, _) in &people {
            let id = Id::parse(&String::from_utf8_lossy(key))
                .map_err(|e| Error::Corrupt(format!("registry record: {e}")))?;
            if let Some(secret) = self.secret(&id)? {
                to.insert(SECRETS, key, &secret).map_err(storage)?;
            }
        }
        let copied = sanad_log::kv::copy_space(&self.kv, PEOPLE, &to, PEOPLE).map_err(storage)?;
        Ok(copied)
    }

    /// Records that the digits whose digest is `expected` were sent to `beneficiary` to confirm
    /// `redemption`, durably: the answer may reach another process, or this one restarted.
    ///
    /// # Errors
    /// Storage errors.
    pub fn put_confirmation(
        &self,
        redemption: &Id,
        beneficiary: &Id,
        expected: &[u8; 32],
    ) -> Result<(), Error> {
        let mut value = expected.to_vec();
        value.extend_from_slice(beneficiary.as_str().as_bytes());
        self.insert(CONFIRMATIONS, redemption.as_str().as_bytes(), &value)?;
        self.flush()
    }

    /// Every confirmation awaiting an answer: (redemption, beneficiary, digest of the digits).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for a malformed record.
    pub fn confirmations(&self) -> Result<Vec<(Id, Id, [u8; 32])>, Error> {
        let entries = self.kv.entries(CONFIRMATIONS).map_err(storage)?;
        entries
            .into_iter()
            .map(|(key, value)| {
                let redemption = Id::parse(&String::from_utf8_lossy(&key))
                    .map_err(|_| Error::Corrupt("a pending confirmation".into()))?;
                let (beneficiary, expected) = parse_confirmation(&value)?;
                Ok((redemption, beneficiary, expected))
            })
            .collect()
    }

    /// The confirmation awaiting an answer for `redemption`: (beneficiary, digest).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for a malformed record.
    pub fn confirmation(&self, redemption: &Id) -> Result<Option<(Id, [u8; 32])>, Error> {
        let value = self.get(CONFIRMATIONS, redemption.as_str().as_bytes())?;
        value.map(|value| parse_confirmation(&value)).transpose()
    }

    /// Forgets the confirmation of `redemption` (answered, or ended otherwise).
    ///
    /// # Errors
    /// Storage errors.
    pub fn forget_confirmation(&self, redemption: &Id) -> Result<(), Error> {
        self.remove(CONFIRMATIONS, redemption.as_str().as_bytes())?;
        self.flush()
    }

    /// The region for national-format phone numbers, if one was set.
    ///
    /// # Errors
    /// Storage errors.
    pub fn region(&self) -> Result<Option<String>, Error> {
        Ok(self.get(META, REGION)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Parses and validates a phone number, returning its E.164 form.
    ///
    /// # Errors
    /// [`Error::InvalidPhone`] naming the problem.
    pub fn normalise_phone(&self, raw: &str) -> Result<String, Error> {
        let region = self.region()?.and_then(|r| r.parse::<phonenumber::country::Id>().ok());
        let trimmed = raw.trim();
        let international = trimmed.strip_prefix("00").map(|rest| format!("+{rest}"));
        let text = international.as_deref().unwrap_or(trimmed);
        let invalid = |reason: &str| Error::InvalidPhone(format!("{raw:?}: {reason}"));
        if !text.starts_with('+') && region.is_none() {
            return Err(invalid("no country code, and no region set for national numbers"));
        }
        let number = phonenumber::parse(region, text).map_err(|e| invalid(&e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid("not a valid number"));
        }
        Ok(number.format().mode(phonenumber::Mode::E164).to_string())
    }

    fn limit_key(&self, limit: &Limit, subject: Subject<'_>) -> Vec<u8> {
        let mut key = limit.name.as_bytes().to_vec();
        key.push(0);
        match subject {
            Subject::Phone(e164) => key.extend_from_slice(&self.phone_key(e164)),
            Subject::Vendor(vendor) => {
                key.push(b'v');
                key.extend_from_slice(vendor.as_str().as_bytes());
            }
        }
        key
    }

    /// `None` when `subject` is within `limit` at `now_ms`; else how many ms until it is.
    ///
    /// # Errors
    /// Storage errors.
    pub fn limit_wait(
        &self,
        limit: &Limit,
        subject: Subject<'_>,
        now_ms: u64,
    ) -> Result<Option<u64>, Error> {
        let key = self.limit_key(limit, subject);
        if limit.lock_ms.is_some() {
            let until = self.get(LIMITS, &lock_key(&key))?;
            let until = sanad_log::kv::counter_value(until.as_deref());
            if until > now_ms {
                return Ok(Some(until - now_ms));
            }
        }
        limit.window.check(&self.kv, LIMITS, &key, now_ms).map_err(storage)
    }

    /// Counts one event against `limit` for `subject`; returns the count within the window
    /// (with `lock_ms`, the count that reached the limit and locked the subject).
    ///
    /// # Errors
    /// Storage errors.
    pub fn count_against(
        &self,
        limit: &Limit,
        subject: Subject<'_>,
        now_ms: u64,
    ) -> Result<u64, Error> {
        let key = self.limit_key(limit, subject);
        let count = limit.window.count(&self.kv, LIMITS, &key, now_ms).map_err(storage)?;
        if let Some(lock_ms) = limit.lock_ms
            && count >= limit.window.limit
        {
            let until = now_ms.saturating_add(lock_ms);
            self.insert(LIMITS, &lock_key(&key), &until.to_be_bytes())?;
            limit.window.clear(&self.kv, LIMITS, &key, now_ms).map_err(storage)?;
        }
        Ok(count)
    }

    /// Forgets what `limit` counted for `subject` (not a lock: that runs its time).
    ///
    /// # Errors
    /// Storage errors.
    pub fn clear_limit(
        &self,
        limit: &Limit,
        subject: Subject<'_>,
        now_ms: u64,
    ) -> Result<(), Error> {
        let key = self.limit_key(limit, subject);
        limit.window.clear(&self.kv, LIMITS, &key, now_ms).map_err(storage)
    }

    /// Removes the counters and locks no limit needs at `now_ms` any more (of subjects not
    /// seen for two windows, an erased person's phone among them); returns how many.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sweep_limits(&self, now_ms: u64) -> Result<usize, Error> {
        let mut removed = 0;
        for (key, value) in self.kv.entries(LIMITS).map_err(storage)? {
            let stale = if key.ends_with(LOCK_SUFFIX) {
                sanad_log::kv::counter_value(Some(&value)) <= now_ms
            } else {
                SlidingWindow::is_stale(&key, now_ms)
            };
            if stale {
                self.remove(LIMITS, &key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes every limit's counters and locks of the phone `e164` (its keyed hash), as its
    /// owner is erased.
    fn forget_limits_of(&self, e164: &str) -> Result<(), Error> {
        let phone = self.phone_key(e164);
        for (key, _) in self.kv.entries(LIMITS).map_err(storage)? {
            let subject = key.iter().position(|b| *b == 0).map(|at| &key[at + 1..]);
            if subject.is_some_and(|subject| subject.starts_with(&phone)) {
                self.remove(LIMITS, &key)?;
            }
        }
        Ok(())
    }

    fn phone_key(&self, e164: &str) -> Vec<u8> {
        let mut key = b"p".to_vec();
        key.extend_from_slice(&mac(
            self.agency_key.as_ref(),
            &[b"sanad.phone/v1\n", e164.as_bytes()],
        ));
        key
    }

    fn national_id_key(&self, national_id: &str) -> Vec<u8> {
        let normalised = national_id_key(national_id);
        let mut key = b"n".to_vec();
        key.extend_from_slice(&mac(
            self.agency_key.as_ref(),
            &[b"sanad.national-id/v1\n", normalised.as_bytes()],
        ));
        key
    }

    fn find(&self, key: &[u8]) -> Result<Option<Id>, Error> {
        match self.get(LOOKUP, key)? {
            Some(bytes) => Id::parse(&String::from_utf8_lossy(&bytes))
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("registry index: {e}"))),
            None => Ok(None),
        }
    }

    /// The beneficiary registered with this (E.164) phone number.
    ///
    /// # Errors
    /// Storage errors.
    pub fn find_by_phone(&self, e164: &str) -> Result<Option<Id>, Error> {
        self.find(&self.phone_key(e164))
    }

    /// The beneficiary registered with this national id.
    ///
    /// # Errors
    /// Storage errors.
    pub fn find_by_national_id(&self, national_id: &str) -> Result<Option<Id>, Error> {
        self.find(&self.national_id_key(national_id))
    }

    fn cipher(secret: &[u8]) -> ChaCha20Poly1305 {
        let key = Zeroizing::new(mac(secret, &[b"sanad.registry.encrypt/v1"]));
        ChaCha20Poly1305::new(key.as_ref().into())
    }

    fn commitment(secret: &[u8], person: &Person) -> String {
        let field = |value: &Option<String>| value.clone().unwrap_or_default();
        let record = format!(
            "sanad.commitment/v1\nphone {}\nname {}\nnational-id {}\n",
            person.phone,
            field(&person.name),
            field(&person.national_id)
        );
        hex(&mac(secret, &[record.as_bytes()]))
    }

    fn store(&self, id: &Id, secret: &[u8], person: &Person) -> Result<(), Error> {
        let mut plain = Zeroizing::new(Vec::new());
        ciborium::into_writer(person, &mut *plain)
            .map_err(|e| Error::Corrupt(format!("cannot encode a record: {e}")))?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = Self::cipher(secret)
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| Error::Corrupt("record encryption failed".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        self.insert(PEOPLE, id.as_str().as_bytes(), &stored)
    }

    /// Registers a person. The record, the index entries and the secret are durable when this
    /// returns; the caller then logs the registration (see [`crate::Agency::register`]).
    ///
    /// # Errors
    /// [`Error::Duplicate`] with the existing beneficiary when the phone or national id is
    /// registered already; [`Error::InvalidPhone`], [`Error::InvalidPin`],
    /// [`Error::InvalidField`]; storage errors.
    pub fn register(&self, new: &NewPerson) -> Result<Registered, Error> {
        let phone = self.normalise_phone(&new.phone)?;
        check_field(&new.name, "name", 200)?;
        check_field(&new.national_id, "national_id", 64)?;
        check_field(&new.language, "language", 35)?;
        if let Some(existing) = self.find_by_phone(&phone)? {
            return Err(Error::Duplicate { field: "phone", existing });
        }
        if let Some(national_id) = &new.national_id
            && let Some(existing) = self.find_by_national_id(national_id)?
        {
            return Err(Error::Duplicate { field: "national_id", existing });
        }
        let pin_hash = new.pin.as_ref().map(|pin| hash_pin(pin)).transpose()?;
        let person = Person {
            phone,
            name: new.name.clone(),
            national_id: new.national_id.clone(),
            language: new.language.clone(),
            pin_hash,
        };
        let id = new_beneficiary_id();
        // Marked first, durably, so that a crash after any of what follows is found and undone.
        self.mark(&id, Work::Registration)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        self.put_secret(&id, secret.as_ref())?;
        self.store(&id, secret.as_ref(), &person)?;
        // Claim the index entries atomically against a concurrent registration of the same
        // phone or id: the first one wins, the other is a duplicate.
        let mut claims = vec![self.phone_key(&person.phone)];
        if let Some(national_id) = &person.national_id {
            claims.push(self.national_id_key(national_id));
        }
        for (n, key) in claims.iter().enumerate() {
            if let Some(current) = self.claim(LOOKUP, key, id.as_str().as_bytes())? {
                for key in &claims[..n] {
                    self.remove(LOOKUP, key)?;
                }
                self.destroy(&id)?;
                self.remove(PENDING, id.as_str().as_bytes())?;
                let existing = Id::parse(&String::from_utf8_lossy(&current))
                    .map_err(|e| Error::Corrupt(format!("registry index: {e}")))?;
                let field = if n == 0 { "phone" } else { "national_id" };
                return Err(Error::Duplicate { field, existing });
            }
        }
        self.flush()?;
        Ok(Registered { commitment: Self::commitment(secret.as_ref(), &person), id })
    }

    /// A person's record with their commitment, or `None` when unknown or erased.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when a record does not decrypt.
    pub fn person(&self, id: &Id) -> Result<Option<(Person, String)>, Error> {
        let Some(stored) = self.get(PEOPLE, id.as_str().as_bytes())? else {
            return Ok(None);
        };
        let Some(secret) = self.secret(id)? else { return Ok(None) };
        let (nonce, sealed) = stored.split_at(12.min(stored.len()));
        let plain = Zeroizing::new(
            Self::cipher(&secret)
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| Error::Corrupt(format!("the record of {id} does not decrypt")))?,
        );
        let person: Person = ciborium::from_reader(plain.as_slice())
            .map_err(|e| Error::Corrupt(format!("the record of {id}: {e}")))?;
        let commitment = Self::commitment(&secret, &person);
        Ok(Some((person, commitment)))
    }

    fn code_key(&self, code: VoucherCode) -> Vec<u8> {
        let mut key = b"c".to_vec();
        let letters = code.letters();
        key.extend_from_slice(&mac(
            self.agency_key.as_ref(),
            &[b"sanad.voucher-code/v1\n", letters.as_bytes()],
        ));
        key
    }

    fn code_cipher(&self) -> ChaCha20Poly1305 {
        self.agency_cipher(b"sanad.voucher-code.seal/v1")
    }

    fn agency_cipher(&self, label: &[u8]) -> ChaCha20Poly1305 {
        let key = Zeroizing::new(mac(self.agency_key.as_ref(), &[label]));
        ChaCha20Poly1305::new(key.as_ref().into())
    }

    fn vendor_phone_key(&self, e164: &str) -> Vec<u8> {
        let mut key = b"p".to_vec();
        key.extend_from_slice(&mac(
            self.agency_key.as_ref(),
            &[b"sanad.vendor-phone/v1\n", e164.as_bytes()],
        ));
        key
    }

    /// Records a vendor's phone (in any format [`Self::normalise_phone`] accepts), durably;
    /// returns it in E.164.
    ///
    /// # Errors
    /// [`Error::InvalidPhone`]; [`Error::Duplicate`] when another vendor has it; storage
    /// errors.
    pub fn register_vendor_phone(&self, vendor: &Id, phone: &str) -> Result<String, Error> {
        let e164 = self.normalise_phone(phone)?;
        let claimed =
            self.claim(VENDORS, &self.vendor_phone_key(&e164), vendor.as_str().as_bytes())?;
        if let Some(current) = claimed {
            let existing = Id::parse(&String::from_utf8_lossy(&current))
                .map_err(|e| Error::Corrupt(format!("vendor index: {e}")))?;
            if existing != *vendor {
                return Err(Error::Duplicate { field: "phone", existing });
            }
        }
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .agency_cipher(b"sanad.vendor-phone.seal/v1")
            .encrypt(Nonce::from_slice(&nonce), e164.as_bytes())
            .map_err(|_| Error::Corrupt("vendor phone encryption failed".into()))?;
        let mut value = nonce.to_vec();
        value.extend_from_slice(&sealed);
        let mut key = b"v".to_vec();
        key.extend_from_slice(vendor.as_str().as_bytes());
        self.insert(VENDORS, &key, &value)?;
        self.flush()?;
        Ok(e164)
    }

    /// The vendor with this (E.164) phone.
    ///
    /// # Errors
    /// Storage errors.
    pub fn find_vendor_by_phone(&self, e164: &str) -> Result<Option<Id>, Error> {
        match self.get(VENDORS, &self.vendor_phone_key(e164))? {
            Some(bytes) => Id::parse(&String::from_utf8_lossy(&bytes))
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("vendor index: {e}"))),
            None => Ok(None),
        }
    }

    /// A vendor's phone, E.164.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when it does not decrypt.
    pub fn vendor_phone(&self, vendor: &Id) -> Result<Option<String>, Error> {
        let mut key = b"v".to_vec();
        key.extend_from_slice(vendor.as_str().as_bytes());
        let Some(stored) = self.get(VENDORS, &key)? else { return Ok(None) };
        let (nonce, sealed) = stored.split_at(12.min(stored.len()));
        let plain = self
            .agency_cipher(b"sanad.vendor-phone.seal/v1")
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| Error::Corrupt(format!("the phone of {vendor} does not decrypt")))?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }

    /// Records codes for vouchers, durably, with one flush. For each: `true` when recorded,
    /// `false` (nothing written) when the code belongs to another voucher already: draw
    /// another.
    ///
    /// # Errors
    /// Storage errors.
    pub fn store_voucher_codes(&self, codes: &[(Id, VoucherCode)]) -> Result<Vec<bool>, Error> {
        let mut stored = Vec::with_capacity(codes.len());
        for (voucher, code) in codes {
            let claimed = self.claim(CODES, &self.code_key(*code), voucher.as_str().as_bytes())?;
            if claimed.is_some() {
                stored.push(false);
                continue;
            }
            let mut nonce = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let letters = Zeroizing::new(code.letters());
            let sealed = self
                .code_cipher()
                .encrypt(Nonce::from_slice(&nonce), letters.as_bytes())
                .map_err(|_| Error::Corrupt("voucher code encryption failed".into()))?;
            let mut value = nonce.to_vec();
            value.extend_from_slice(&sealed);
            let mut key = b"v".to_vec();
            key.extend_from_slice(voucher.as_str().as_bytes());
            self.insert(CODES, &key, &value)?;
            stored.push(true);
        }
        self.flush()?;
        Ok(stored)
    }

    /// The voucher a code belongs to.
    ///
    /// # Errors
    /// Storage errors.
    pub fn voucher_by_code(&self, code: VoucherCode) -> Result<Option<Id>, Error> {
        match self.get(CODES, &self.code_key(code))? {
            Some(bytes) => Id::parse(&String::from_utf8_lossy(&bytes))
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("voucher code index: {e}"))),
            None => Ok(None),
        }
    }

    /// A voucher's code, to show or send it again.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when it does not decrypt.
    pub fn code_of(&self, voucher: &Id) -> Result<Option<VoucherCode>, Error> {
        let mut key = b"v".to_vec();
        key.extend_from_slice(voucher.as_str().as_bytes());
        let Some(stored) = self.get(CODES, &key)? else { return Ok(None) };
        let (nonce, sealed) = stored.split_at(12.min(stored.len()));
        let letters = Zeroizing::new(
            self.code_cipher()
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| Error::Corrupt(format!("the code of {voucher} does not decrypt")))?,
        );
        let text = String::from_utf8_lossy(&letters);
        VoucherCode::parse(&text)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("the code of {voucher}: {e}")))
    }

    /// Forgets a voucher's code (a voucher that never reached the log).
    ///
    /// # Errors
    /// Storage errors.
    pub fn forget_voucher_code(&self, voucher: &Id) -> Result<(), Error> {
        if let Some(code) = self.code_of(voucher)? {
            self.remove(CODES, &self.code_key(code))?;
        }
        let mut key = b"v".to_vec();
        key.extend_from_slice(voucher.as_str().as_bytes());
        self.remove(CODES, &key)?;
        self.flush()?;
        Ok(())
    }

    /// Checks a PIN; `false` for a wrong PIN or a person without one.
    ///
    /// # Errors
    /// [`Error::BeneficiaryNotFound`]; storage errors.
    pub fn verify_pin(&self, id: &Id, pin: &str) -> Result<bool, Error> {
        let (person, _) = self.person(id)?.ok_or_else(|| Error::BeneficiaryNotFound(id.clone()))?;
        let Some(hash) = person.pin_hash else { return Ok(false) };
        let hash =
            PasswordHash::new(&hash).map_err(|e| Error::Corrupt(format!("PIN hash: {e}")))?;
        Ok(argon2::Argon2::default().verify_password(pin.as_bytes(), &hash).is_ok())
    }

    /// Sets or changes a PIN.
    ///
    /// # Errors
    /// [`Error::InvalidPin`]; [`Error::BeneficiaryNotFound`]; storage errors.
    pub fn set_pin(&self, id: &Id, pin: &str) -> Result<(), Error> {
        let (mut person, _) =
            self.person(id)?.ok_or_else(|| Error::BeneficiaryNotFound(id.clone()))?;
        person.pin_hash = Some(hash_pin(pin)?);
        let secret = self.secret(id)?.ok_or_else(|| Error::BeneficiaryNotFound(id.clone()))?;
        self.store(id, &secret, &person)?;
        self.flush()?;
        Ok(())
    }

    /// Erases a person: their index entries, their record and their secret. Erasing someone
    /// already erased does nothing.
    ///
    /// # Errors
    /// Storage and I/O errors.
    pub fn erase(&self, id: &Id) -> Result<(), Error> {
        if let Some((person, _)) = self.person(id)? {
            self.remove(LOOKUP, &self.phone_key(&person.phone))?;
            if let Some(national_id) = &person.national_id {
                self.remove(LOOKUP, &self.national_id_key(national_id))?;
            }
            self.forget_limits_of(&person.phone)?;
        }
        self.destroy(id)?;
        self.remove(PENDING, id.as_str().as_bytes())?;
        self.flush()?;
        Ok(())
    }

    /// Removes the record and shreds the secret.
    fn destroy(&self, id: &Id) -> Result<(), Error> {
        self.remove(PEOPLE, id.as_str().as_bytes())?;
        self.shred_secret(id)
    }

    /// Marks work on `id` as begun, with when (so that processes sharing the registry can
    /// tell another's work in progress from what a crash left).
    fn mark(&self, id: &Id, work: Work) -> Result<(), Error> {
        let mut value = vec![work as u8];
        value.extend_from_slice(&now_ms().to_be_bytes());
        self.insert(PENDING, id.as_str().as_bytes(), &value)?;
        self.flush()
    }

    /// The log has recorded the registration or erasure of `id`: nothing is pending for it.
    /// (Not flushed: if the removal is lost, the next open finds the work done in the log.)
    ///
    /// # Errors
    /// Storage errors.
    pub fn confirm(&self, id: &Id) -> Result<(), Error> {
        self.remove(PENDING, id.as_str().as_bytes())?;
        Ok(())
    }

    /// Marks `id` as being erased, before the erasure is logged.
    ///
    /// # Errors
    /// Storage errors.
    pub fn begin_erasure(&self, id: &Id) -> Result<(), Error> {
        self.mark(id, Work::Erasure)
    }

    /// Registrations and erasures begun and not confirmed (to reconcile with the log on
    /// open), with when they were begun (ms since 1970; 0 for marks from before that was
    /// recorded).
    ///
    /// # Errors
    /// Storage errors.
    pub fn pending(&self) -> Result<Vec<(Id, Work, u64)>, Error> {
        let entries = self.kv.entries(PENDING).map_err(storage)?;
        entries
            .into_iter()
            .map(|(key, value)| {
                let id = Id::parse(&String::from_utf8_lossy(&key))
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                let work = match value.first() {
                    Some(0) => Work::Registration,
                    Some(1) => Work::Erasure,
                    _ => return Err(Error::Corrupt(format!("pending work for {id}"))),
                };
                let at_ms = value
                    .get(1..9)
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                    .map_or(0, u64::from_be_bytes);
                Ok((id, work, at_ms))
            })
            .collect()
    }
}

/// A stored confirmation: the digest (32 bytes), then the beneficiary's id.
fn parse_confirmation(value: &[u8]) -> Result<(Id, [u8; 32]), Error> {
    let bad = || Error::Corrupt("a pending confirmation".into());
    let (expected, beneficiary) = value.split_at_checked(32).ok_or_else(bad)?;
    let beneficiary = Id::parse(&String::from_utf8_lossy(beneficiary)).map_err(|_| bad())?;
    Ok((beneficiary, <[u8; 32]>::try_from(expected).map_err(|_| bad())?))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

fn hash_pin(pin: &str) -> Result<String, Error> {
    check_pin(pin)?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Corrupt(format!("PIN hashing failed: {e}")))
}

/// `b-` and 20 Crockford base32 characters: 100 random bits, unguessable and unlinkable.
fn new_beneficiary_id() -> Id {
    crate::agency::random_id("b-", 20)
}
