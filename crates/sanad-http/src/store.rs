//! What the binding keeps of its own, in `<data>/http.sled`: API tokens (hashed, with their
//! role) and the answers to writes by `Idempotency-Key`.

use std::path::Path;

use axum::http::StatusCode;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub(crate) use sanad_ledger::Role;

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

pub(crate) struct Store {
    tokens: sled::Tree,
    // Principal (the token's public id) → the token's hash.
    principals: sled::Tree,
    answers: sled::Tree,
    // Vendor id → display name (a shop's name; not in the log).
    vendors: sled::Tree,
    // Disbursement run → its latest report.
    reports: sled::Tree,
    db: sled::Db,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = sled::Config::new().path(dir.join("http.sled")).cache_capacity(8 << 20).open()?;
        Ok(Self {
            tokens: db.open_tree("tokens")?,
            principals: db.open_tree("principals")?,
            answers: db.open_tree("answers")?,
            vendors: db.open_tree("vendors")?,
            reports: db.open_tree("reports")?,
            db,
        })
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
        self.tokens.insert(&hash, serde_json::to_vec(record)?)?;
        self.principals.insert(record.principal.as_bytes(), hash)?;
        self.db.flush()?;
        Ok(token)
    }

    /// Forgets a revoked principal's token: it authenticates no more.
    pub(crate) fn forget_token(&self, principal: &sanad_money::Id) -> anyhow::Result<()> {
        if let Some(hash) = self.principals.remove(principal.as_str())? {
            self.tokens.remove(hash)?;
        }
        self.db.flush()?;
        Ok(())
    }

    pub(crate) fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The record of a presented bearer token. Looked up by its hash: nothing to compare.
    pub(crate) fn token(&self, token: &str) -> Option<TokenRecord> {
        let stored = self.tokens.get(hash_token(token)).ok()??;
        serde_json::from_slice(&stored).ok()
    }

    pub(crate) fn set_vendor_name(
        &self,
        vendor: &sanad_money::Id,
        name: &str,
    ) -> anyhow::Result<()> {
        self.vendors.insert(vendor.as_str(), name.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub(crate) fn vendor_name(&self, vendor: &sanad_money::Id) -> Option<String> {
        let stored = self.vendors.get(vendor.as_str()).ok()??;
        Some(String::from_utf8_lossy(&stored).into_owned())
    }

    pub(crate) fn remember_report(&self, run: &str, report: &str) -> anyhow::Result<()> {
        self.reports.insert(run, report.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// A disbursement run's latest report, as JSON.
    pub(crate) fn report(&self, run: &str) -> Option<String> {
        let stored = self.reports.get(run).ok()??;
        String::from_utf8(stored.to_vec()).ok()
    }

    /// A stored answer for `key` (scoped to the token), or a conflict when the key was used
    /// with another body.
    pub(crate) fn answer(
        &self,
        scope: &str,
        key: &str,
        body: &[u8],
    ) -> Result<Option<(StatusCode, String, Vec<u8>)>, Problem> {
        let stored = self.answers.get(Self::key(scope, key)).map_err(Problem::internal)?;
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
        self.answers.insert(Self::key(scope, key), bytes).map_err(Problem::internal)?;
        self.db.flush().map_err(Problem::internal)?;
        Ok(())
    }

    fn key(scope: &str, key: &str) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(scope.as_bytes());
        hash.update([0]);
        hash.update(key.as_bytes());
        hash.finalize().to_vec()
    }
}
