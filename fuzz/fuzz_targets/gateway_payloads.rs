//! Every gateway adapter reads any request without panicking; a Twilio request signed as Twilio
//! signs it is never refused as unauthenticated, and one signed with another token always is.
//! The first byte picks the adapter; the rest is split at the first two NUL bytes into the URL,
//! the header and the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_sms::gateway::{GatewayError, africastalking, form_pairs, json, kannel, rapidpro, twilio};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(3, |b| *b == 0);
    let url = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    match selector % 7 {
        0 => {
            let _ = twilio::parse(b"token", &url, Some(&header), body);
            let signed = twilio::signature(b"token", &url, &form_pairs(body));
            let read = twilio::parse(b"token", &url, Some(&signed), body);
            assert!(!matches!(read, Err(GatewayError::Unauthenticated)));
            let forged = twilio::signature(b"other", &url, &form_pairs(body));
            assert_eq!(twilio::parse(b"token", &url, Some(&forged), body).err(), Some(GatewayError::Unauthenticated));
        }
        1 => {
            let _ = africastalking::parse_sms(b"secret", &url, body);
        }
        2 => {
            if let Ok(step) = africastalking::parse_ussd(b"secret", &url, body) {
                let _ = africastalking::ussd_reply(&step.inputs.join("*"), step.inputs.len() % 2 == 0);
            }
        }
        3 => {
            let _ = kannel::parse(b"secret", &url);
        }
        4 => {
            let _ = rapidpro::parse(b"secret", &url, body);
        }
        5 => {
            let _ = json::parse(b"secret", Some(&header), body);
            let signed = json::signature(b"secret", body);
            let read = json::parse(b"secret", Some(&signed), body);
            assert!(!matches!(read, Err(GatewayError::Unauthenticated)));
        }
        _ => {
            let _ = twilio::reply(Some(&header));
            let _ = json::reply(Some(&header));
        }
    }
});
