//! # Sanad
//!
//! Cash and voucher assistance on a signed, append-only ledger that any auditor can verify
//! offline with standard tools. This facade re-exports the workspace's crates so that
//! `use sanad::{money, tlog, log, ledger, engine, sms, audit}` is the paved path; see ARCHITECTURE.md for the map.

pub use sanad_audit as audit;
pub use sanad_engine as engine;
pub use sanad_ledger as ledger;
pub use sanad_log as log;
pub use sanad_money as money;
pub use sanad_sms as sms;
pub use sanad_tlog as tlog;
