//! `sanad-http`: the thin HTTP binding. It serves the JSON API for agency systems, the SMS and
//! USSD webhooks, and the public log, over an embedded sled store in one data folder; every
//! rule lives in the library crates.
//!
//! ```text
//! sanad-http [--data DIR] [--listen ADDR:PORT] [--origin ORIGIN] [--public-url URL]
//!            [--region CC]
//! ```
//!
//! Each flag is also an environment variable (`SANAD_DATA`, `SANAD_LISTEN`, `SANAD_ORIGIN`,
//! `SANAD_PUBLIC_URL`, `SANAD_REGION`). Gateway secrets come from the environment only:
//! `SANAD_TWILIO_AUTH_TOKEN`, `SANAD_AT_SECRET`, `SANAD_KANNEL_SECRET`, `SANAD_RAPIDPRO_SECRET`,
//! `SANAD_JSON_SECRET` (or `…_FILE` naming a file that holds it). On first start it creates the
//! store and the signing key, prints the verifier key, and writes a first admin token to
//! `<data>/admin.token` (mode 0600).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sanad_http::{Config, Secrets};

#[derive(Parser)]
#[command(name = "sanad-http", version, about = "Serve a Sanad ledger over HTTP")]
struct Flags {
    /// The data folder (created with a new ledger on first start).
    #[arg(long, env = "SANAD_DATA", default_value = "./sanad-data")]
    data: PathBuf,
    /// Where to listen.
    #[arg(long, env = "SANAD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The log's origin (its name and its key's), used when creating the ledger.
    #[arg(long, env = "SANAD_ORIGIN", default_value = "sanad.localhost/ledger")]
    origin: String,
    /// The URL gateways are configured with (Twilio signs it), when a proxy or TLS terminator
    /// stands in front: `https://aid.example.org`.
    #[arg(long, env = "SANAD_PUBLIC_URL")]
    public_url: Option<String>,
    /// The country for phone numbers written without a country code (ISO 3166, e.g. JO),
    /// used when creating the ledger.
    #[arg(long, env = "SANAD_REGION")]
    region: Option<String>,
    /// Keep the log on PostgreSQL (`postgres://user@host/db`) instead of sled in the data
    /// folder, which keeps the signing key, snapshots and registry.
    #[arg(long, env = "SANAD_DATABASE_URL")]
    database_url: Option<String>,
    /// Requests per second each API token may make, in bursts of up to twice as many (0: no
    /// limit). A token over it is answered 429 with Retry-After.
    #[arg(long, env = "SANAD_TOKEN_RATE", default_value_t = 200)]
    token_rate: u32,
    /// Messages (SMS, or USSD sessions) one phone may send per minute; more are answered with
    /// a request to wait. Counted in the registry, so every server on one database shares it.
    #[arg(long, env = "SANAD_SMS_PER_MINUTE", default_value_t = 12)]
    sms_per_minute: usize,
}

/// A secret from `NAME`, or from the file `NAME_FILE` names.
fn secret(name: &str) -> anyhow::Result<Option<String>> {
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(value));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            Ok(Some(text.trim().to_owned()))
        }
        Err(_) => Ok(None),
    }
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = Config {
        data: flags.data.clone(),
        listen: flags.listen,
        origin: flags.origin,
        public_url: flags.public_url,
        region: flags.region,
        secrets: Secrets {
            twilio: secret("SANAD_TWILIO_AUTH_TOKEN")?,
            africastalking: secret("SANAD_AT_SECRET")?,
            kannel: secret("SANAD_KANNEL_SECRET")?,
            rapidpro: secret("SANAD_RAPIDPRO_SECRET")?,
            json: secret("SANAD_JSON_SECRET")?,
        },
        database_url: flags.database_url,
        token_rate: flags.token_rate,
        sms_per_minute: flags.sms_per_minute,
    };
    // What the first lines say is relied on by scripts: the verifier key, then the address.
    let announce = |started: &sanad_http::Started| {
        if started.created {
            println!("created a ledger in {}", flags.data.display());
        }
        println!("verifier key: {}", started.verifier_key);
        if let Some(path) = &started.admin_token_file {
            println!(
                "first admin token written to {} (readable by its owner only)",
                path.display()
            );
        }
        println!("listening on http://{}", started.address);
    };
    sanad_http::serve(config, announce, shutdown())?;
    println!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
