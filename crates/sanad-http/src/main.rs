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

mod api;
mod app;
mod extract;
mod metrics;
mod problem;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sanad_engine::{Agency, Options};

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
    /// PostgreSQL instead of embedded sled (not available yet).
    #[arg(long, env = "SANAD_DATABASE_URL")]
    database_url: Option<String>,
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

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if flags.database_url.is_some() {
        anyhow::bail!(
            "the PostgreSQL backend is not available yet: run on the embedded store (no --database-url)"
        );
    }
    std::fs::create_dir_all(&flags.data)
        .with_context(|| format!("creating {}", flags.data.display()))?;
    let holds_ledger = flags.data.join(sanad_engine::SNAPSHOT_FILE).exists()
        || flags.data.join(sanad_engine::registry::AGENCY_KEY_FILE).exists();
    let metrics = Arc::new(metrics::Metrics::new());
    let options = Options { on_commit: Some(metrics.commit_observer()), ..Options::default() };
    let agency = if holds_ledger {
        Agency::open(&flags.data, options)
            .with_context(|| format!("opening the ledger in {}", flags.data.display()))?
    } else {
        let agency = Agency::create(&flags.data, &flags.origin, flags.region.as_deref(), options)
            .with_context(|| format!("creating a ledger in {}", flags.data.display()))?;
        println!("created a ledger in {}", flags.data.display());
        agency
    };
    let agency = Arc::new(agency);
    println!("verifier key: {}", agency.ledger().log().verifier().to_vkey());
    let store = store::Store::open(&flags.data)?;
    if !store.has_tokens() {
        // The first admin is granted by the store's holder (this process, at first start).
        let principal = store::Store::new_principal();
        agency.grant_access(&principal, store::Role::Admin, None)?;
        let token = store.create_token(&store::TokenRecord {
            principal: principal.as_str().to_owned(),
            name: "admin".into(),
            role: store::Role::Admin,
            vendor: None,
        })?;
        let path = flags.data.join("admin.token");
        write_private(&path, &format!("{token}\n"))?;
        println!("first admin token written to {} (readable by its owner only)", path.display());
    }
    let channel = sanad_sms::Channel::open(
        Arc::clone(&agency),
        &flags.data,
        sanad_sms::replies::Replies::embedded()?,
        sanad_sms::ChannelOptions::default(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(flags.listen))
        .with_context(|| format!("listening on {}", flags.listen))?;
    let address = listener.local_addr()?;
    let public_url = flags
        .public_url
        .unwrap_or_else(|| format!("http://{address}"))
        .trim_end_matches('/')
        .to_owned();
    let state = Arc::new(app::AppState {
        agency: Arc::clone(&agency),
        channel,
        store,
        secrets: app::Secrets {
            twilio: secret("SANAD_TWILIO_AUTH_TOKEN")?,
            africastalking: secret("SANAD_AT_SECRET")?,
            kannel: secret("SANAD_KANNEL_SECRET")?,
            rapidpro: secret("SANAD_RAPIDPRO_SECRET")?,
            json: secret("SANAD_JSON_SECRET")?,
        },
        public_url,
        metrics,
    });
    let router = app::router(state)
        // 8,190 transfers of about 200 bytes each fit; nothing larger is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(4 << 20))
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    runtime.block_on(async {
        println!("listening on http://{address}");
        axum::serve(listener, router).with_graceful_shutdown(shutdown()).await?;
        anyhow::Ok(())
    })?;
    // Requests are done: the writer finishes its batch, and a snapshot is written.
    agency.close()?;
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
