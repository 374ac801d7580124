//! # sanad-sms: the SMS and USSD channel for gateway integrators
//!
//! Most beneficiaries and many vendors have a feature phone. An integrator points an SMS gateway
//! or a USSD aggregator at Sanad; this crate turns the gateways' real inbound requests into
//! ledger commands and renders replies the gateway can send:
//!
//! - [`gateway`]: each gateway's payload parsed and authenticated (Twilio's signature, shared
//!   secrets for the others), and replies rendered in its format (TwiML, `CON`/`END`, text,
//!   JSON);
//! - [`input`]: the message text read into a typed command, in English, French or Arabic, with
//!   digits of any script;
//! - [`replies`]: replies from Fluent files, one per language, each held to a segment budget
//!   measured by [`gsm`];
//! - [`Channel`]: who sent it (the registry's keyed phone index), what it does (the `Agency`),
//!   once per gateway message id, within abuse limits;
//! - [`ussd`]: the USSD menus, a state machine over the session's inputs.

#[cfg(feature = "channel")]
pub mod channel;
pub mod gateway;
pub mod gsm;
pub mod input;
pub mod replies;
#[cfg(feature = "channel")]
pub mod ussd;

#[cfg(feature = "channel")]
pub use channel::{AnswerStore, Channel, ChannelOptions, Notice, Outcome, SledAnswers};
#[cfg(feature = "channel")]
pub use ussd::UssdAnswer;

/// Errors of the channel's setup and storage. What a sender did wrong is a reply, not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reply file that does not load.
    #[error("replies: {0}")]
    Replies(String),
    /// The channel's answer store failed.
    #[cfg(feature = "channel")]
    #[error("the SMS answer store failed")]
    Storage(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// The ledger or the registry failed (not a refusal: those are replies).
    #[cfg(feature = "channel")]
    #[error(transparent)]
    Engine(#[from] sanad_engine::Error),
}
