//! Wiring an SMS gateway into your own web server: `cargo run --example sms_gateway [ADDR]`.
//!
//! An agency that already runs a web service adds one route for its gateway's webhook: the
//! adapter authenticates the request with the gateway's own scheme before reading it
//! (Twilio's signature here), the channel runs the command once per message id, and the
//! adapter renders the reply in the gateway's format (TwiML). With `ADDR` it serves until
//! stopped; without, it serves on a free port, sends itself one signed message as Twilio
//! would, prints the reply and ends.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use sanad::engine::disburse::{DisburseOptions, disburse};
use sanad::engine::registry::NewPerson;
use sanad::engine::{Agency, Options};
use sanad::ledger::ProgrammeKind;
use sanad::money::{Amount, Currency};
use sanad::sms::gateway::{form_pairs, twilio};
use sanad::sms::replies::Replies;
use sanad::sms::{Channel, ChannelOptions};

/// What the route needs: the channel, the gateway's secret, and the URL Twilio signs (the one
/// configured in its console, as the world reaches this server).
struct Gateway {
    channel: Channel,
    auth_token: Vec<u8>,
    public_url: String,
}

async fn twilio_webhook(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let signature = headers.get(twilio::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let inbound = match twilio::parse(&gateway.auth_token, &gateway.public_url, signature, &body) {
        Ok(inbound) => inbound,
        // Unsigned or forged: refused unread, nothing changes.
        Err(error) => return (StatusCode::FORBIDDEN, error.to_string()).into_response(),
    };
    // The channel does blocking work (the ledger's fsync): off the async threads.
    let handled = tokio::task::spawn_blocking(move || gateway.channel.handle(&inbound)).await;
    match handled {
        Ok(Ok(outcome)) => {
            // `outcome.notices` are messages for other phones: hand them to your sender.
            ([("content-type", twilio::REPLY_CONTENT_TYPE)], twilio::reply(Some(&outcome.reply)))
                .into_response()
        }
        // A storage failure: 503, and Twilio retries the same message id later.
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let listen = std::env::args().nth(1);
    let reply = run(dir.path(), listen.as_deref())?;
    println!("reply: {reply}");
    Ok(())
}

/// Serves on `listen` until stopped, or, without it, answers one signed message on a free port
/// and returns the TwiML reply.
pub(crate) fn run(dir: &Path, listen: Option<&str>) -> Result<String, Box<dyn std::error::Error>> {
    let jod = Currency::parse("JOD")?;
    let agency = Agency::create(dir, "example.org/sms-demo", Some("JO"), Options::default())?;
    let programme =
        agency.create_programme("Winter cash", ProgrammeKind::Cash, Amount::parse("100", jod)?)?;
    let person = NewPerson {
        phone: "0791234567".into(),
        pin: Some("4821".to_owned().into()),
        ..NewPerson::default()
    };
    agency.register(&person, jod)?;
    let tranche = b"phone,amount\n0791234567,12.5\n";
    disburse(&agency, &programme, tranche, DisburseOptions::default(), &mut |_, _| {})?;
    let channel =
        Channel::open(Arc::new(agency), dir, Replies::embedded()?, ChannelOptions::default())?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen.unwrap_or("127.0.0.1:0")).await?;
        let address = listener.local_addr()?;
        let public_url = format!("http://{address}/sms/twilio");
        let auth_token = b"the auth token from the Twilio console".to_vec();
        let gateway = Arc::new(Gateway {
            channel,
            auth_token: auth_token.clone(),
            public_url: public_url.clone(),
        });
        let app = axum::Router::new()
            .route("/sms/twilio", axum::routing::post(twilio_webhook))
            .with_state(gateway);
        if listen.is_some() {
            println!("serving the Twilio webhook at {public_url}");
            axum::serve(listener, app).await?;
            return Ok(String::new());
        }
        tokio::spawn(async move { axum::serve(listener, app).await });
        // Twilio's side: a form, signed over the URL and its parameters.
        let form = "MessageSid=SM0001&From=%2B962791234567&To=%2B96264000000&Body=BAL+4821";
        let signature = twilio::signature(&auth_token, &public_url, &form_pairs(form.as_bytes()));
        let reply = tokio::task::spawn_blocking(move || -> Result<String, ureq::Error> {
            ureq::post(&public_url)
                .header(twilio::SIGNATURE_HEADER, &signature)
                .header("content-type", "application/x-www-form-urlencoded")
                .send(form)?
                .body_mut()
                .read_to_string()
        })
        .await??;
        Ok::<_, Box<dyn std::error::Error>>(reply)
    })
}
