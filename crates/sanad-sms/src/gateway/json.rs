//! The plain JSON form, for any gateway without an adapter: a POST of
//! `{"id": "…", "from": "+…", "to": "…", "text": "…"}` signed with HMAC-SHA256 of the raw body
//! under a shared secret, in `X-Sanad-Signature: sha256=<lower-case hex>` (the scheme GitHub's
//! webhooks use). The answer is `{"reply": "…"}` (or `{"reply": null}`).

use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use super::{Gateway, GatewayError, Inbound, check_size};

/// The header the JSON form is signed in.
pub const SIGNATURE_HEADER: &str = "X-Sanad-Signature";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    id: String,
    from: String,
    #[serde(default)]
    to: Option<String>,
    text: String,
}

/// `sha256=` and the hex HMAC-SHA256 of `body`: what a sender puts in the header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A signed JSON message.
///
/// # Errors
/// [`GatewayError::Unauthenticated`] without a valid signature; [`GatewayError::Malformed`]
/// for a body that is not the message object.
pub fn parse(
    secret: &[u8],
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<Inbound, GatewayError> {
    use subtle::ConstantTimeEq as _;
    check_size(body)?;
    let presented = signature_header.ok_or(GatewayError::Unauthenticated)?;
    let expected = signature(secret, body);
    if secret.is_empty() || !bool::from(expected.as_bytes().ct_eq(presented.trim().as_bytes())) {
        return Err(GatewayError::Unauthenticated);
    }
    let message: Message =
        serde_json::from_slice(body).map_err(|_| GatewayError::Malformed("body"))?;
    if message.id.is_empty() || message.from.is_empty() {
        return Err(GatewayError::Malformed("id"));
    }
    Ok(Inbound {
        gateway: Gateway::Json,
        message_id: message.id,
        from: message.from,
        to: message.to,
        text: message.text,
    })
}

/// The answer body.
pub fn reply(text: Option<&str>) -> String {
    serde_json::json!({ "reply": text }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_json_in_and_out() {
        let body = br#"{"id":"m-1","from":"+962791234567","text":"BAL 4821"}"#;
        let signed = signature(b"k", body);
        assert!(signed.starts_with("sha256=") && signed.len() == 71);
        assert_eq!(parse(b"k", Some(&signed), body).unwrap().text, "BAL 4821");
        assert_eq!(parse(b"k", None, body), Err(GatewayError::Unauthenticated));
        assert_eq!(parse(b"x", Some(&signed), body), Err(GatewayError::Unauthenticated));
        let odd = br#"{"id":"m-1","from":"+1","text":"x","extra":1}"#;
        assert_eq!(
            parse(b"k", Some(&signature(b"k", odd)), odd),
            Err(GatewayError::Malformed("body"))
        );
        assert_eq!(reply(Some("ok")), r#"{"reply":"ok"}"#);
        assert_eq!(reply(None), r#"{"reply":null}"#);
    }
}
