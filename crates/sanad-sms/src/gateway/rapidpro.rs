//! RapidPro and TextIt, external channel: the mobile-originated request courier's `external`
//! handler accepts, GET or POST, with `from` (or `sender`), `text` and optionally `date` (or
//! `time`) in RFC 3339 and `id`. The answer is the reply as plain text (configure the channel's
//! response to be sent back), or nothing.
//!
//! Nothing is signed on this path: the URL carries a secret (`…?secret=…`, over TLS). Without
//! an `id`, the idempotency key is a hash of the sender, the date and the text.

use super::{
    Gateway, GatewayError, Inbound, check_size, field, form_pairs, query_secret, secret_matches,
};

/// A message from the query string or the form body (both are read; the body wins).
///
/// # Errors
/// [`GatewayError::Unauthenticated`] without the right secret; [`GatewayError::Malformed`]
/// without a sender.
pub fn parse(secret: &[u8], url: &str, body: &[u8]) -> Result<Inbound, GatewayError> {
    check_size(body)?;
    if !secret_matches(query_secret(url).as_deref(), secret) {
        return Err(GatewayError::Unauthenticated);
    }
    let mut params = form_pairs(body);
    if let Some((_, query)) = url.split_once('?') {
        params.extend(form_pairs(query.as_bytes()));
    }
    let from = field(&params, "from")
        .or_else(|| field(&params, "sender"))
        .filter(|from| !from.is_empty())
        .ok_or(GatewayError::Malformed("from"))?
        .to_owned();
    let text = field(&params, "text").unwrap_or_default().to_owned();
    let date = field(&params, "date").or_else(|| field(&params, "time")).unwrap_or_default();
    let message_id = match field(&params, "id").filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => super::derived_id(&[&from, date, &text]),
    };
    Ok(Inbound { gateway: Gateway::RapidPro, message_id, from, to: None, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_channel_requests_get_and_post() {
        let url = "https://sanad.example.org/v1/sms/rapidpro?secret=r&from=%2B221771234567&text=AIDE&date=2026-11-29T10:00:00Z";
        let inbound = parse(b"r", url, b"").unwrap();
        assert_eq!((inbound.from.as_str(), inbound.text.as_str()), ("+221771234567", "AIDE"));
        let posted = parse(
            b"r",
            "https://sanad.example.org/v1/sms/rapidpro?secret=r",
            b"sender=%2B221771234567&text=AIDE&id=42",
        )
        .unwrap();
        assert_eq!(posted.message_id, "42");
        assert_eq!(
            parse(b"r", "https://sanad.example.org/v1/sms/rapidpro", b"from=1&text=x"),
            Err(GatewayError::Unauthenticated)
        );
    }
}
