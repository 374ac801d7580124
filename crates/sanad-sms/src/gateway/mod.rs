//! The gateways: each one's inbound request parsed and authenticated, and replies rendered in
//! its format. Framework-free: an adapter takes the request's URL, the header it signs with and
//! the raw body, so the HTTP binding (or any other server) only hands them over.
//!
//! | gateway | authenticated by | message id (idempotency key) | reply |
//! |---|---|---|---|
//! | Twilio | `X-Twilio-Signature`: HMAC-SHA1 of the URL and sorted parameters | `MessageSid` | TwiML |
//! | Africa's Talking SMS | a shared secret in the callback URL (AT signs nothing) | `id` | sent through AT's API |
//! | Africa's Talking USSD | a shared secret in the callback URL | `sessionId` and the step | `CON …` / `END …` |
//! | RapidPro / TextIt (external channel) | a shared secret in the URL | `id`, else a hash of sender, time and text | plain text |
//! | Kannel `sms-service` | a shared secret in the URL; bind Kannel to loopback | a hash of sender, time and text | plain text |
//! | plain JSON | `X-Sanad-Signature: sha256=` HMAC-SHA256 of the body | `id` | JSON |
//!
//! Every adapter authenticates **before** it reads the message, on the raw parameters, and
//! compares secrets in constant time. A forged or unsigned request is refused and changes
//! nothing.

pub mod africastalking;
pub mod json;
pub mod kannel;
pub mod rapidpro;
pub mod twilio;

use subtle::ConstantTimeEq as _;

/// Which gateway a message came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gateway {
    /// Twilio Programmable Messaging.
    Twilio,
    /// Africa's Talking SMS.
    AfricasTalking,
    /// Africa's Talking USSD.
    AfricasTalkingUssd,
    /// RapidPro or TextIt, external channel.
    RapidPro,
    /// Kannel's `sms-service`.
    Kannel,
    /// The plain JSON form.
    Json,
}

impl Gateway {
    /// A short name, part of the idempotency key.
    pub fn name(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::AfricasTalking => "africastalking",
            Self::AfricasTalkingUssd => "africastalking-ussd",
            Self::RapidPro => "rapidpro",
            Self::Kannel => "kannel",
            Self::Json => "json",
        }
    }
}

/// A message as every gateway delivers it, authenticated.
#[derive(Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The gateway.
    pub gateway: Gateway,
    /// The gateway's id for the message: a retry carries the same one.
    pub message_id: String,
    /// The sender's number as the gateway gives it (normalised to E.164 by the channel).
    pub from: String,
    /// The number or short code it was sent to, when given.
    pub to: Option<String>,
    /// The text.
    pub text: String,
}

/// Text may hold a PIN: `Debug` shows its length only.
impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("gateway", &self.gateway)
            .field("message_id", &self.message_id)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("text", &format_args!("<{} characters>", self.text.chars().count()))
            .finish()
    }
}

/// Why a request is refused. Nothing was read or changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No signature or secret, or a wrong one: answer 403.
    #[error("the request is not authenticated")]
    Unauthenticated,
    /// A field the gateway always sends is missing or malformed: answer 400.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A body larger than [`BODY_BYTES_MAX`]: answer 413.
    #[error("request body too large")]
    TooLarge,
}

/// The largest body any adapter reads: an SMS callback is a few hundred bytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// The parameters of an `application/x-www-form-urlencoded` body or query string, in order,
/// repeated names kept.
pub fn form_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The first value of `name`.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// A required, non-empty field.
pub(crate) fn required<'a>(
    pairs: &'a [(String, String)],
    name: &'static str,
) -> Result<&'a str, GatewayError> {
    field(pairs, name).filter(|value| !value.is_empty()).ok_or(GatewayError::Malformed(name))
}

/// Compares a presented secret with the expected one in constant time (for equal lengths).
pub(crate) fn secret_matches(presented: Option<&str>, expected: &[u8]) -> bool {
    match presented {
        Some(presented) if !expected.is_empty() => bool::from(presented.as_bytes().ct_eq(expected)),
        _ => false,
    }
}

pub(crate) fn check_size(body: &[u8]) -> Result<(), GatewayError> {
    if body.len() > BODY_BYTES_MAX { Err(GatewayError::TooLarge) } else { Ok(()) }
}

/// A key for a gateway that sends no message id: SHA-256 of sender, time and text, hex.
pub(crate) fn derived_id(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A secret passed in a URL's query string (`?secret=…`), for gateways that sign nothing.
pub fn query_secret(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_pairs(query.as_bytes()).into_iter().find(|(name, _)| name == "secret").map(|(_, v)| v)
}

/// Escapes text for XML character data.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
