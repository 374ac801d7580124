//! Africa's Talking: the incoming-SMS callback and the USSD callback, both form posts.
//!
//! Africa's Talking signs nothing, so the callback URL carries a secret the integrator chose
//! (`…?secret=…`, over TLS), checked in constant time; allow-list AT's addresses too. SMS
//! replies go back through AT's send API (with the message's `linkId` for premium codes), not
//! in the HTTP answer. A USSD step is answered in the body: `CON …` keeps the session open,
//! `END …` closes it.

use super::{
    Gateway, GatewayError, Inbound, check_size, field, form_pairs, query_secret, required,
    secret_matches,
};

/// An incoming SMS (`from`, `to`, `text`, `date`, `id`, `linkId`).
///
/// # Errors
/// [`GatewayError::Unauthenticated`] without the right secret in `url`;
/// [`GatewayError::Malformed`] without `id` or `from`.
pub fn parse_sms(secret: &[u8], url: &str, body: &[u8]) -> Result<Inbound, GatewayError> {
    check_size(body)?;
    if !secret_matches(query_secret(url).as_deref(), secret) {
        return Err(GatewayError::Unauthenticated);
    }
    let params = form_pairs(body);
    Ok(Inbound {
        gateway: Gateway::AfricasTalking,
        message_id: required(&params, "id")?.to_owned(),
        from: required(&params, "from")?.to_owned(),
        to: field(&params, "to").map(str::to_owned),
        text: field(&params, "text").unwrap_or_default().to_owned(),
    })
}

/// One USSD step as Africa's Talking sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct UssdStep {
    /// The session.
    pub session_id: String,
    /// The code dialled, such as `*384*1234#`.
    pub service_code: String,
    /// The caller's number.
    pub phone: String,
    /// Every input of the session so far, in order (`text` split at `*`; empty on the first
    /// step). May hold a PIN: never log it.
    pub inputs: Vec<String>,
}

/// Inputs may hold a PIN: `Debug` shows how many there are only.
impl std::fmt::Debug for UssdStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UssdStep")
            .field("session_id", &self.session_id)
            .field("service_code", &self.service_code)
            .field("phone", &self.phone)
            .field("inputs", &format_args!("<{} inputs>", self.inputs.len()))
            .finish()
    }
}

/// A USSD step (`sessionId`, `serviceCode`, `phoneNumber`, `networkCode`, `text`).
///
/// # Errors
/// As [`parse_sms`], for `sessionId` and `phoneNumber`.
pub fn parse_ussd(secret: &[u8], url: &str, body: &[u8]) -> Result<UssdStep, GatewayError> {
    check_size(body)?;
    if !secret_matches(query_secret(url).as_deref(), secret) {
        return Err(GatewayError::Unauthenticated);
    }
    let params = form_pairs(body);
    let text = field(&params, "text").unwrap_or_default();
    let inputs =
        if text.is_empty() { Vec::new() } else { text.split('*').map(str::to_owned).collect() };
    Ok(UssdStep {
        session_id: required(&params, "sessionId")?.to_owned(),
        service_code: field(&params, "serviceCode").unwrap_or_default().to_owned(),
        phone: required(&params, "phoneNumber")?.to_owned(),
        inputs,
    })
}

/// A USSD answer: `CON` and the screen while the session goes on, `END` and it at the end.
pub fn ussd_reply(screen: &str, end: bool) -> String {
    format!("{} {screen}", if end { "END" } else { "CON" })
}

/// The content type of [`ussd_reply`].
pub const USSD_CONTENT_TYPE: &str = "text/plain";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_and_ussd_callbacks_as_africas_talking_sends_them() {
        let url = "https://sanad.example.org/v1/sms/africastalking?secret=s3cret";
        let body = b"from=%2B254711XXXYYY&to=12345&text=SOLDE+4821&date=2026-11-29+10%3A00%3A00\
            &id=ATXid_0123456789&linkId=SampleLinkId123";
        let inbound = parse_sms(b"s3cret", url, body).unwrap();
        assert_eq!(
            (inbound.message_id.as_str(), inbound.from.as_str()),
            ("ATXid_0123456789", "+254711XXXYYY")
        );
        assert_eq!(inbound.text, "SOLDE 4821");
        let wrong = "https://sanad.example.org/v1/sms/africastalking?secret=guess";
        assert_eq!(parse_sms(b"s3cret", wrong, body), Err(GatewayError::Unauthenticated));
        assert_eq!(
            parse_sms(b"s3cret", "https://sanad.example.org/v1/sms/africastalking", body),
            Err(GatewayError::Unauthenticated)
        );

        let url = "https://sanad.example.org/v1/ussd/africastalking?secret=s3cret";
        let first = parse_ussd(b"s3cret", url, b"sessionId=ATUid_1&serviceCode=*384*1234%23&phoneNumber=%2B254711000000&networkCode=63902&text=").unwrap();
        assert!(first.inputs.is_empty());
        assert_eq!(first.service_code, "*384*1234#");
        let later = parse_ussd(b"s3cret", url, b"sessionId=ATUid_1&serviceCode=*384*1234%23&phoneNumber=%2B254711000000&networkCode=63902&text=1*4821").unwrap();
        assert_eq!(later.inputs, vec!["1", "4821"]);
        assert!(!format!("{later:?}").contains("4821"));
        assert_eq!(ussd_reply("1 Balance", false), "CON 1 Balance");
        assert_eq!(ussd_reply("Done", true), "END Done");
    }
}
