//! Who may change the ledger, written in the ledger itself.
//!
//! A **principal** is a credential an agency system calls with, such as an API token of the
//! HTTP binding. A logged `principal.granted` entry gives it one [`Role`] (a vendor principal
//! also names its vendor account), and `principal.revoked` takes it back. Every entry a
//! principal causes names it in its `"principal"` member, and one rule, [`State::check_permitted`],
//! decides both when the command is made and when the entry is replayed: a log whose entries go
//! beyond their principal's role does not replay, so an auditor finds every such entry.
//!
//! An entry without `principal` was made by a holder of the store itself (the `sanad` command line,
//! the SMS channel acting for a phone it authenticated, the engine's own expiries): those hold
//! the log's signing key anyway, and their `actor` says on whose behalf they acted.

use sanad_money::Id;
use serde::{Deserialize, Serialize};

use crate::state::{Inconsistency, State};
use crate::voucher::{CloseReason, VoidReason};
use crate::{AccountKind, Command, Context, Event, Rejection};

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including granting and revoking principals.
    Admin,
    /// The agency's daily work: programmes, people, vendors, money, vouchers, settlements.
    Operator,
    /// One vendor's redemptions: ask to redeem, authorise with the beneficiary's PIN, withdraw.
    Vendor,
    /// Reading only: an auditor's principal never causes an entry.
    Auditor,
}

impl Role {
    /// The snake_case name, as in log entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Vendor => "vendor",
            Self::Auditor => "auditor",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Admin, Self::Operator, Self::Vendor, Self::Auditor]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// A principal's grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Its role.
    pub role: Role,
    /// For a vendor principal: the vendor account it acts for (and no other).
    pub vendor: Option<Id>,
    /// Whether it was revoked: it may cause no more entries.
    pub revoked: bool,
}

impl State {
    /// A principal's grant, if one was logged.
    pub fn principal(&self, principal: &Id) -> Option<&Grant> {
        self.principals.get(principal)
    }

    /// Whether `by` may cause `event` now. `None` is the store's own holder and may do
    /// anything; a principal must be granted, not revoked, and its role must cover the event.
    ///
    /// # Errors
    /// [`Rejection::UnknownPrincipal`] or [`Rejection::NotPermitted`].
    pub fn check_permitted(&self, by: Option<&Id>, event: &Event) -> Result<(), Rejection> {
        let Some(principal) = by else { return Ok(()) };
        let grant = self.granted(principal)?;
        if self.role_covers(grant, event) {
            Ok(())
        } else {
            Err(Rejection::NotPermitted {
                principal: principal.clone(),
                role: grant.role,
                event: event.type_name(),
            })
        }
    }

    /// A principal's grant, if it stands (granted and not revoked).
    ///
    /// # Errors
    /// [`Rejection::UnknownPrincipal`].
    pub fn granted(&self, principal: &Id) -> Result<&Grant, Rejection> {
        self.principals
            .get(principal)
            .filter(|grant| !grant.revoked)
            .ok_or_else(|| Rejection::UnknownPrincipal(principal.clone()))
    }

    fn role_covers(&self, grant: &Grant, event: &Event) -> bool {
        match grant.role {
            Role::Admin => true,
            Role::Operator => {
                !matches!(event, Event::PrincipalGranted { .. } | Event::PrincipalRevoked { .. })
            }
            Role::Auditor => false,
            Role::Vendor => {
                let Some(own) = &grant.vendor else { return false };
                let own_redemption = |redemption: &Id| {
                    self.vouchers.redemptions.get(redemption).is_some_and(|r| r.vendor == *own)
                };
                match event {
                    Event::RedemptionRequested { vendor, .. } => vendor == own,
                    Event::RedemptionAuthorised { redemption, .. }
                    | Event::RedemptionPinFailed { redemption, .. } => own_redemption(redemption),
                    Event::RedemptionVoided { redemption, reason, .. } => {
                        matches!(reason, VoidReason::Refused | VoidReason::Locked)
                            && own_redemption(redemption)
                    }
                    // What an authorisation does to a single-use or emptied voucher.
                    Event::VoucherClosed { reason, .. } => {
                        matches!(reason, CloseReason::Used | CloseReason::Exhausted)
                    }
                    _ => false,
                }
            }
        }
    }

    fn check_grant(&self, role: Role, vendor: Option<&Id>) -> Result<(), Rejection> {
        match (role, vendor) {
            (Role::Vendor, Some(vendor)) => {
                let account = self.live_account(vendor)?;
                if account.kind() == AccountKind::Vendor {
                    Ok(())
                } else {
                    Err(Rejection::InvalidGrant("a vendor principal names a vendor account"))
                }
            }
            (Role::Vendor, None) => {
                Err(Rejection::InvalidGrant("a vendor principal names its vendor account"))
            }
            (_, Some(_)) => Err(Rejection::InvalidGrant("only a vendor principal names a vendor")),
            (_, None) => Ok(()),
        }
    }

    /// Decides a grant or revocation. A retry of the same grant, or of a revocation, is
    /// answered with no event.
    pub(crate) fn decide_access(
        &self,
        command: &Command,
        context: &Context,
    ) -> Result<Vec<Event>, Rejection> {
        let at_ms = context.now_ms;
        match command {
            Command::GrantAccess { principal, role, vendor } => {
                if let Some(existing) = self.principals.get(principal) {
                    if !existing.revoked && existing.role == *role && existing.vendor == *vendor {
                        return Ok(Vec::new());
                    }
                    return Err(Rejection::PrincipalExists(principal.clone()));
                }
                self.check_grant(*role, vendor.as_ref())?;
                Ok(vec![Event::PrincipalGranted {
                    grantee: principal.clone(),
                    role: *role,
                    vendor: vendor.clone(),
                    at_ms,
                }])
            }
            Command::RevokeAccess { principal } => match self.principals.get(principal) {
                None => Err(Rejection::UnknownPrincipal(principal.clone())),
                Some(grant) if grant.revoked => Ok(Vec::new()),
                Some(_) => Ok(vec![Event::PrincipalRevoked { grantee: principal.clone(), at_ms }]),
            },
            _ => unreachable!("decide_access is given grants and revocations only"),
        }
    }

    /// Applies a grant or revocation, with the same checks as [`State::decide_access`].
    pub(crate) fn apply_access(&mut self, event: &Event) -> Result<(), Inconsistency> {
        match event {
            Event::PrincipalGranted { grantee: principal, role, vendor, .. } => {
                if self.principals.contains_key(principal) {
                    return Err(Rejection::PrincipalExists(principal.clone()).into());
                }
                self.check_grant(*role, vendor.as_ref())?;
                let grant = Grant { role: *role, vendor: vendor.clone(), revoked: false };
                self.principals.insert(principal.clone(), grant);
            }
            Event::PrincipalRevoked { grantee: principal, .. } => {
                match self.principals.get_mut(principal) {
                    Some(grant) if !grant.revoked => grant.revoked = true,
                    _ => {
                        return Err(Inconsistency(format!(
                            "principal {principal} revoked but not granted, or revoked twice"
                        )));
                    }
                }
            }
            _ => unreachable!("apply_access is given grants and revocations only"),
        }
        Ok(())
    }
}
