//! Vouchers: restricted assistance that beneficiaries spend at enrolled vendors.
//!
//! So far this holds their codes ([`code`]); voucher programmes, issuance, redemption and
//! settlement as ledger commands come next (issue 4).

pub mod code;
