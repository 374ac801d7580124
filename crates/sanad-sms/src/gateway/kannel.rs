//! Kannel's `sms-service`: a GET (or POST) to the service's `get-url` with the message in the
//! query, answered with the reply as `text/plain` (Kannel sends the body back to the sender).
//!
//! Configure, with `mo-recode = true` in the smsbox group so that UCS-2 messages arrive as
//! UTF-8 (without it they arrive as raw UTF-16BE bytes):
//!
//! ```text
//! group = sms-service
//! keyword = default
//! get-url = "http://127.0.0.1:8080/v1/sms/kannel?secret=SECRET&from=%q&to=%Q&time=%T&smsc=%i&charset=%C&text=%a"
//! max-messages = 1
//! ```
//!
//! Without `mo-recode`, a UCS-2 message (Arabic) arrives as raw UTF-16BE bytes with
//! `charset=UTF-16BE`: the adapter decodes those too, when the URL passes `charset=%C`.
//!
//! Kannel signs nothing: keep it and Sanad on one host or a private network, and give the URL
//! a secret. It sends no message id either, so the idempotency key is a hash of the sender,
//! Kannel's receive time (`%T`, seconds) and the text.

use super::{
    Gateway, GatewayError, Inbound, check_size, field, form_pairs, required, secret_matches,
};

/// A message from Kannel's query string (`from`, `to`, `time`, `text`, `secret`).
///
/// # Errors
/// [`GatewayError::Unauthenticated`] without the right secret; [`GatewayError::Malformed`]
/// without `from` or `time`.
pub fn parse(secret: &[u8], query: &str) -> Result<Inbound, GatewayError> {
    check_size(query.as_bytes())?;
    let params = form_pairs(query.as_bytes());
    if !secret_matches(field(&params, "secret"), secret) {
        return Err(GatewayError::Unauthenticated);
    }
    let from = required(&params, "from")?.to_owned();
    let time = required(&params, "time")?;
    let utf16 = field(&params, "charset").is_some_and(|c| c.eq_ignore_ascii_case("UTF-16BE"));
    let text = if utf16 {
        utf16_text(query).ok_or(GatewayError::Malformed("text"))?
    } else {
        field(&params, "text").unwrap_or_default().to_owned()
    };
    Ok(Inbound {
        gateway: Gateway::Kannel,
        message_id: super::derived_id(&[&from, time, &text]),
        from,
        to: field(&params, "to").map(str::to_owned),
        text,
    })
}

/// The `text` parameter's raw bytes read as UTF-16BE (Kannel without `mo-recode`).
fn utf16_text(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix("text="))?;
    let plus_as_space = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> =
        bytes.chunks(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
    String::from_utf16(&units).ok()
}

/// The content type of the answer: the reply text itself.
pub const REPLY_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kannel_request_with_its_escapes_filled_in() {
        let query = "secret=k&from=%2B96279123456&to=%2B96264000000&time=1764410400&smsc=zain&text=%D8%B1%D8%B5%D9%8A%D8%AF+4821";
        let inbound = parse(b"k", query).unwrap();
        assert_eq!(inbound.text, "رصيد 4821");
        assert_eq!(inbound.message_id.len(), 32);
        assert_eq!(
            parse(b"k", query).unwrap().message_id,
            inbound.message_id,
            "a retry is the same message"
        );
        assert_eq!(parse(b"other", query), Err(GatewayError::Unauthenticated));
        assert_eq!(
            parse(b"k", "secret=k&from=%2B96279123456&text=x"),
            Err(GatewayError::Malformed("time"))
        );
        // "رصيد 4821" as Kannel passes UCS-2 without mo-recode: UTF-16BE, percent-encoded.
        let raw = "secret=k&from=%2B96279123456&time=1&charset=UTF-16BE&coding=2\
            &text=%06%31%06%35%06%4A%06%2F%00%20%00%34%00%38%00%32%00%31";
        assert_eq!(parse(b"k", raw).unwrap().text, "رصيد 4821");
        let odd = "secret=k&from=%2B96279123456&time=1&charset=UTF-16BE&text=%06";
        assert_eq!(parse(b"k", odd), Err(GatewayError::Malformed("text")));
    }
}
