//! Twilio Programmable Messaging: form-encoded webhooks signed with `X-Twilio-Signature`,
//! answered with TwiML.
//!
//! The signature is base64(HMAC-SHA1(auth token, URL ‖ for each parameter sorted by name (and
//! value, for repeated names): name ‖ value)), over the full URL Twilio was configured with —
//! scheme, host, path and query — and the parameters as received, not URL-encoded. Behind a TLS
//! terminator or proxy the URL the server sees differs: the channel is given the public URL.
//! As Twilio's own libraries do, the URL is also tried with and without its default port.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

use super::{Gateway, GatewayError, Inbound, check_size, field, form_pairs, required, xml_escape};

/// The header Twilio signs with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The signature Twilio computes for `url` and the form parameters.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha1> as hmac::Mac>::new_from_slice(auth_token)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL with its default port added, or removed when it has one.
fn port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default => Some(format!("{scheme}://{host}{path}")),
        Some(_) => None,
        None => Some(format!("{scheme}://{authority}:{default}{path}")),
    }
}

/// Whether `presented` is Twilio's signature of the request, in constant time.
pub fn verify(auth_token: &[u8], url: &str, params: &[(String, String)], presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let matches = |url: &str| {
        let expected = signature(auth_token, url, params);
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    };
    !auth_token.is_empty()
        && (matches(url) || port_variant(url).is_some_and(|other| matches(&other)))
}

/// An inbound SMS webhook: the public `url` Twilio posts to, the `X-Twilio-Signature` header,
/// and the form body. Authenticated before anything is read.
///
/// # Errors
/// [`GatewayError::Unauthenticated`] without a valid signature; [`GatewayError::Malformed`]
/// without `MessageSid`, `From` or `Body`.
pub fn parse(
    auth_token: &[u8],
    url: &str,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<Inbound, GatewayError> {
    check_size(body)?;
    let params = form_pairs(body);
    let presented = signature_header.ok_or(GatewayError::Unauthenticated)?;
    if !verify(auth_token, url, &params, presented) {
        return Err(GatewayError::Unauthenticated);
    }
    let message_id = required(&params, "MessageSid")?.to_owned();
    let from = required(&params, "From")?.to_owned();
    let text = field(&params, "Body").ok_or(GatewayError::Malformed("Body"))?.to_owned();
    Ok(Inbound {
        gateway: Gateway::Twilio,
        message_id,
        from,
        to: field(&params, "To").map(str::to_owned),
        text,
    })
}

/// The TwiML answer: the reply as one message, or none.
pub fn reply(text: Option<&str>) -> String {
    match text {
        Some(text) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(text)
        ),
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
    }
}

/// The content type of [`reply`].
pub const REPLY_CONTENT_TYPE: &str = "text/xml";

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    /// The known answer from twilio-python 9.13.0 `RequestValidator.compute_signature`.
    #[test]
    fn twilios_own_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(signature(b"12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify(b"12345", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        // The same with the default port written out, as a proxy may pass it on.
        assert!(verify(
            b"12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(b"12346", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify(b"", url, &params, &signature(b"", url, &params)));
    }

    #[test]
    fn a_real_inbound_sms_parses_once_signed_and_never_unsigned() {
        let body = "ToCountry=JO&ToState=&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0\
            &ToCity=&FromZip=&SmsSid=SM0123456789abcdef0123456789abcdef&FromState=&SmsStatus=received\
            &FromCity=&Body=BAL+4821&FromCountry=JO&To=%2B96264000000&MessagingServiceSid=MG0123\
            &ToZip=&NumSegments=1&MessageSid=SM0123456789abcdef0123456789abcdef\
            &AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B962791234567&ApiVersion=2010-04-01";
        let url = "https://sanad.example.org/v1/sms/twilio";
        let signed = signature(b"secret-token", url, &form_pairs(body.as_bytes()));
        let inbound = parse(b"secret-token", url, Some(&signed), body.as_bytes()).unwrap();
        assert_eq!(inbound.message_id, "SM0123456789abcdef0123456789abcdef");
        assert_eq!(inbound.from, "+962791234567");
        assert_eq!(inbound.text, "BAL 4821");
        assert!(!format!("{inbound:?}").contains("4821"));
        assert_eq!(
            parse(b"secret-token", url, None, body.as_bytes()),
            Err(GatewayError::Unauthenticated)
        );
        let tampered = body.replace("BAL+4821", "BAL+4822");
        assert_eq!(
            parse(b"secret-token", url, Some(&signed), tampered.as_bytes()),
            Err(GatewayError::Unauthenticated)
        );
        let elsewhere = "https://sanad.example.org/v1/sms/twilio?x=1";
        assert_eq!(
            parse(b"secret-token", elsewhere, Some(&signed), body.as_bytes()),
            Err(GatewayError::Unauthenticated)
        );
    }

    #[test]
    fn twiml_escapes_the_reply() {
        assert_eq!(
            reply(Some("A & B <ok>")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>A &amp; B &lt;ok&gt;</Message></Response>"
        );
        assert_eq!(reply(None), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
    }
}
