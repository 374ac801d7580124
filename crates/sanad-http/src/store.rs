//! What the binding keeps of its own: API tokens (hashed, with their role), the answers to
//! writes by `Idempotency-Key`, vendors' display names and disbursement reports. In
//! `<data>/http.sled`, or, when the log is on PostgreSQL, in the database (`sanad_kv`), so
//! that every server on it knows every token and answers a retry sent to any of them.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub(crate) use sanad_ledger::Role;
use sanad_log::kv::{KeyValue, Prefixed, SledKv};

use crate::problem::Problem;

/// A token's record (the token itself is never stored: only its SHA-256).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// The token's public id: the principal granted in the ledger, named by every entry the
    /// token causes.
    pub(crate) principal: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    /// For vendor tokens: the vendor's account.
    #[serde(default)]
    pub(crate) vendor: Option<String>,
}

/// A stored answer to a write.
#[derive(Serialize, Deserialize)]
struct Stored {
    body_hash: String,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// The store's key spaces.
#[derive(Clone, Copy)]
enum Space {
    /// A token's SHA-256 → its record.
    Tokens,
    /// Principal (the token's public id) → the token's hash.
    Principals,
    /// Scope and Idempotency-Key, hashed → the stored answer.
    Answers,
    /// Vendor id → display name (a shop's name; not in the log).
    Vendors,
    /// Disbursement run → its latest report.
    Reports,
}

impl Space {
    const ALL: [Self; 5] =
        [Self::Tokens, Self::Principals, Self::Answers, Self::Vendors, Self::Reports];

    fn name(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Principals => "principals",
            Self::Answers => "answers",
            Self::Vendors => "vendors",
            Self::Reports => "reports",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Runs a call of the blocking PostgreSQL client from the handlers' async threads: the client
/// drives a runtime of its own, which may not start on a runtime's worker unless the worker is
/// handed over to blocking work first. Outside a runtime (at start-up), just runs it.
fn on_database<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(call),
        Err(_) => call(),
    }
}

/// The store: its spaces in `<data>/http.sled` (a tree each), or in the database's shared
/// table under `http.` names. Every write is flushed before it is answered.
pub(crate) struct Store {
    /// Under `http.` on a shared store, where other users' spaces sit beside these.
    kv: Prefixed,
}

impl Store {
    /// The store in `dir`, or on `shared` (the database) when given. A server moving to a
    /// database brings its folder's store along: when the database holds no tokens yet and the
    /// folder has a store, everything in it is copied over first. Also returns how many tokens
    /// were copied so.
    pub(crate) fn open(
        dir: &Path,
        shared: Option<Arc<dyn KeyValue>>,
    ) -> anyhow::Result<(Self, u64)> {
        let folder = dir.join("http.sled");
        let Some(kv) = shared else {
            let local = Arc::new(SledKv::open(&folder, 8 << 20)?);
            return Ok((Self { kv: Prefixed::new(local, "") }, 0));
        };
        let store = Self { kv: Prefixed::new(kv, "http.") };
        let mut imported = 0;
        if !store.has_tokens()? && folder.exists() {
            let local = SledKv::open(&folder, 8 << 20)?;
            for space in Space::ALL {
                let name = space.name();
                let copied = sanad_log::kv::copy_space(&local, name, &store.kv, name)?;
                if matches!(space, Space::Tokens) {
                    imported = copied;
                }
            }
        }
        Ok((store, imported))
    }

    fn get(&self, space: Space, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(on_database(|| self.kv.get(space.name(), key))?)
    }

    fn insert(&self, space: Space, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        on_database(|| {
            self.kv.insert(space.name(), key, value)?;
            self.kv.flush()
        })?;
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(on_database(|| {
            let removed = self.kv.remove(space.name(), key)?;
            self.kv.flush()?;
            Ok::<_, sanad_log::Error>(removed)
        })?)
    }

    /// A new token's public id (`tok-` and 16 hex digits), the principal it is granted as.
    pub(crate) fn new_principal() -> sanad_money::Id {
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        sanad_money::Id::parse(&format!("tok-{}", hex(&bytes)))
            .unwrap_or_else(|_| unreachable!("tok- and hex digits make an id"))
    }

    /// Stores a token for a principal already granted in the ledger; returns it (shown once).
    pub(crate) fn create_token(&self, record: &TokenRecord) -> anyhow::Result<String> {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let token = format!(
            "sanad_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref())
        );
        let hash = hash_token(&token);
        self.insert(Space::Tokens, &hash, &serde_json::to_vec(record)?)?;
        self.insert(Space::Principals, record.principal.as_bytes(), &hash)?;
        Ok(token)
    }

    /// Forgets a revoked principal's token: it authenticates no more.
    pub(crate) fn forget_token(&self, principal: &sanad_money::Id) -> anyhow::Result<()> {
        if let Some(hash) = self.remove(Space::Principals, principal.as_str().as_bytes())? {
            self.remove(Space::Tokens, &hash)?;
        }
        Ok(())
    }

    pub(crate) fn has_tokens(&self) -> anyhow::Result<bool> {
        Ok(!on_database(|| self.kv.entries(Space::Tokens.name()))?.is_empty())
    }

    /// The record of a presented bearer token. Looked up by its hash: nothing to compare.
    pub(crate) fn token(&self, token: &str) -> Option<TokenRecord> {
        let stored = self.get(Space::Tokens, &hash_token(token)).ok()??;
        serde_json::from_slice(&stored).ok()
    }

    pub(crate) fn set_vendor_name(
        &self,
        vendor: &sanad_money::Id,
        name: &str,
    ) -> anyhow::Result<()> {
        self.insert(Space::Vendors, vendor.as_str().as_bytes(), name.as_bytes())
    }

    pub(crate) fn vendor_name(&self, vendor: &sanad_money::Id) -> Option<String> {
        let stored = self.get(Space::Vendors, vendor.as_str().as_bytes()).ok()??;
        Some(String::from_utf8_lossy(&stored).into_owned())
    }

    pub(crate) fn remember_report(&self, run: &str, report: &str) -> anyhow::Result<()> {
        self.insert(Space::Reports, run.as_bytes(), report.as_bytes())
    }

    /// A disbursement run's latest report, as JSON.
    pub(crate) fn report(&self, run: &str) -> Option<String> {
        let stored = self.get(Space::Reports, run.as_bytes()).ok()??;
        String::from_utf8(stored).ok()
    }

    /// A stored answer for `key` (scoped to the token), or a conflict when the key was used
    /// with another body.
    pub(crate) fn answer(
        &self,
        scope: &str,
        key: &str,
        body: &[u8],
    ) -> Result<Option<(StatusCode, String, Vec<u8>)>, Problem> {
        let stored = self.get(Space::Answers, &Self::key(scope, key)).map_err(Problem::internal)?;
        let Some(stored) = stored else { return Ok(None) };
        let stored: Stored = serde_json::from_slice(&stored).map_err(Problem::internal)?;
        if stored.body_hash != hex(&Sha256::digest(body)) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request body",
            ));
        }
        let status = StatusCode::from_u16(stored.status).map_err(Problem::internal)?;
        Ok(Some((status, stored.content_type, stored.body)))
    }

    pub(crate) fn remember(
        &self,
        scope: &str,
        key: &str,
        body: &[u8],
        status: StatusCode,
        content_type: &str,
        answer: &[u8],
    ) -> Result<(), Problem> {
        let stored = Stored {
            body_hash: hex(&Sha256::digest(body)),
            status: status.as_u16(),
            content_type: content_type.to_owned(),
            body: answer.to_vec(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(Problem::internal)?;
        self.insert(Space::Answers, &Self::key(scope, key), &bytes).map_err(Problem::internal)
    }

    fn key(scope: &str, key: &str) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(scope.as_bytes());
        hash.update([0]);
        hash.update(key.as_bytes());
        hash.finalize().to_vec()
    }
}

/// The SMS channel's answers by gateway message id, on the database beside the log, so that a
/// gateway's retry is answered by whichever server receives it.
pub(crate) struct SharedSmsAnswers(pub(crate) Arc<dyn KeyValue>);

const SMS_ANSWERS: &str = "sms.answers";

fn sms_storage(error: sanad_log::Error) -> sanad_sms::Error {
    sanad_sms::Error::Storage(Arc::new(error))
}

impl sanad_sms::AnswerStore for SharedSmsAnswers {
    fn answer(&self, key: &str) -> Result<Option<String>, sanad_sms::Error> {
        let stored =
            on_database(|| self.0.get(SMS_ANSWERS, key.as_bytes())).map_err(sms_storage)?;
        Ok(stored.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn remember(&self, key: &str, reply: &str) -> Result<(), sanad_sms::Error> {
        on_database(|| {
            self.0.insert(SMS_ANSWERS, key.as_bytes(), reply.as_bytes())?;
            self.0.flush()
        })
        .map_err(sms_storage)
    }
}
