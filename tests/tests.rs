//! End-to-end tests of the `sanad` facade: one test binary, one module per feature.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agency_crash;
mod campaign;
mod crash;
mod examples;
mod full_disk;
mod ledger_crash;
mod tidy;
