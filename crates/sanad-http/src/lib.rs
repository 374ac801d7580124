//! # sanad-http: the thin HTTP binding
//!
//! It serves the JSON API for agency systems, the SMS and USSD webhooks and the public log over
//! an embedded sled store in one data folder; every rule lives in the library crates, and this
//! crate only maps HTTP to their calls. The `sanad-http` binary runs [`serve`] with its flags;
//! an embedder (or a benchmark) can run it in-process the same way.

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
use sanad_engine::{Agency, Options};

/// Gateway secrets (from the environment or files, never from flags).
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// Twilio's auth token.
    pub twilio: Option<String>,
    /// Africa's Talking: the secret path segment of its callback URLs.
    pub africastalking: Option<String>,
    /// Kannel's shared secret.
    pub kannel: Option<String>,
    /// RapidPro's shared secret.
    pub rapidpro: Option<String>,
    /// The signed JSON form's HMAC key.
    pub json: Option<String>,
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data folder (a new ledger is created in it on first start).
    pub data: PathBuf,
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The log's origin, used when creating the ledger.
    pub origin: String,
    /// The URL gateways are configured with, when a proxy stands in front.
    pub public_url: Option<String>,
    /// The country for national phone numbers, used when creating the ledger.
    pub region: Option<String>,
    /// Gateway secrets.
    pub secrets: Secrets,
    /// Keep the log on PostgreSQL at this URL instead of sled in `data` (which keeps the
    /// signing key, snapshots, registry and the binding's own store either way).
    pub database_url: Option<String>,
    /// Requests per second each API token may make (bursts of twice as many); 0 for no limit.
    pub token_rate: u32,
    /// Messages (SMS, or USSD sessions) one phone may send per minute; more are answered with
    /// a request to wait.
    pub sms_per_minute: usize,
}

/// What a started server tells its runner.
#[derive(Clone, Debug)]
pub struct Started {
    /// The address it listens on.
    pub address: SocketAddr,
    /// The log's verifier key.
    pub verifier_key: String,
    /// Whether the ledger was created by this start.
    pub created: bool,
    /// The first admin token's file, when this start wrote it.
    pub admin_token_file: Option<PathBuf>,
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

/// An opened binding, not yet listening: the agency, the binding's own store and the router
/// over them. [`serve`] opens one and serves its router; an embedder or a fuzzer may call the
/// router in-process instead (with `tower::ServiceExt::oneshot`), through exactly the layers a
/// listening server has.
pub struct Binding {
    state: Arc<app::AppState>,
    created: bool,
    admin_token_file: Option<PathBuf>,
}

impl Binding {
    /// Opens (or creates) the ledger in `config.data` (or on `config.database_url`) and the
    /// binding's store beside it; on a new store, grants the first admin and writes its token
    /// to `admin.token` (mode 0600). `public_url` is the URL gateways are configured with (what
    /// Twilio signs); `config.public_url`, when set, takes precedence. `config.listen` is not
    /// used.
    ///
    /// # Errors
    /// Opening or creating the stores.
    pub fn open(config: Config, public_url: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating {}", config.data.display()))?;
        // A folder with only the log's key joins a log another process keeps on PostgreSQL.
        let holds_ledger = config.data.join(sanad_engine::SNAPSHOT_FILE).exists()
            || config.data.join(sanad_engine::registry::AGENCY_KEY_FILE).exists()
            || config.data.join(sanad_log::KEY_FILE).exists();
        let metrics = Arc::new(metrics::Metrics::new());
        // With --database-url, the log and the small stores (tokens, answers) are in the
        // database, which every server on it shares.
        let (log_backend, shared) = match &config.database_url {
            Some(url) => {
                let connecting = || "connecting to PostgreSQL (--database-url)";
                let backend = sanad_postgres::PgBackend::connect(url).with_context(connecting)?;
                let kv = sanad_postgres::PgKv::connect(url).with_context(connecting)?;
                (
                    Some(Arc::new(backend) as Arc<dyn sanad_log::Backend>),
                    Some(Arc::new(kv) as Arc<dyn sanad_log::kv::KeyValue>),
                )
            }
            None => (None, None),
        };
        let options = Options {
            on_commit: Some(metrics.commit_observer()),
            log_backend,
            shared_store: shared.clone(),
            ..Options::default()
        };
        let agency = if holds_ledger {
            Agency::open(&config.data, options)
                .with_context(|| format!("opening the ledger in {}", config.data.display()))?
        } else {
            Agency::create(&config.data, &config.origin, config.region.as_deref(), options)
                .with_context(|| format!("creating a ledger in {}", config.data.display()))?
        };
        let agency = Arc::new(agency);
        let (store, imported) = store::Store::open(&config.data, shared.clone())
            .context("opening the binding's store")?;
        if imported > 0 {
            println!("copied {imported} API tokens from the folder's store into the database");
        }
        let mut admin_token_file = None;
        if !store.has_tokens()? {
            // The first admin is granted by the store's holder (this process, at first start).
            let principal = store::Store::new_principal();
            agency.grant_access(&principal, store::Role::Admin, None)?;
            let token = store.create_token(&store::TokenRecord {
                principal: principal.as_str().to_owned(),
                name: "admin".into(),
                role: store::Role::Admin,
                vendor: None,
            })?;
            let path = config.data.join("admin.token");
            write_private(&path, &format!("{token}\n"))?;
            admin_token_file = Some(path);
        }
        // With the log on PostgreSQL, the SMS answers are there too, for every server to see.
        let sms_answers: Box<dyn sanad_sms::AnswerStore> = match shared {
            Some(kv) => Box::new(store::SharedSmsAnswers(kv)),
            None => Box::new(sanad_sms::SledAnswers::open(&config.data)?),
        };
        let channel = sanad_sms::Channel::with_answers(
            Arc::clone(&agency),
            sms_answers,
            sanad_sms::replies::Replies::embedded()?,
            sanad_sms::ChannelOptions {
                messages_per_minute: config.sms_per_minute,
                ..sanad_sms::ChannelOptions::default()
            },
        );
        let public_url =
            config.public_url.as_deref().unwrap_or(public_url).trim_end_matches('/').to_owned();
        let state = Arc::new(app::AppState {
            agency,
            channel,
            store,
            secrets: config.secrets,
            public_url,
            metrics,
            token_limits: app::TokenLimits::per_second(config.token_rate),
        });
        Ok(Self { state, created: !holds_ledger, admin_token_file })
    }

    /// The agency the binding serves.
    #[must_use]
    pub fn agency(&self) -> &Arc<Agency> {
        &self.state.agency
    }

    /// Whether [`Binding::open`] created the ledger.
    #[must_use]
    pub fn created(&self) -> bool {
        self.created
    }

    /// The first admin token's file, when this opening wrote it.
    #[must_use]
    pub fn admin_token_file(&self) -> Option<&Path> {
        self.admin_token_file.as_deref()
    }

    /// Every route, behind the limits a listening server has: 4 MiB bodies, 30 s per request.
    pub fn router(&self) -> axum::Router {
        app::router(Arc::clone(&self.state))
            // 8,190 transfers of about 200 bytes each fit; nothing larger is read.
            .layer(tower_http::limit::RequestBodyLimitLayer::new(4 << 20))
            .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(30),
            ))
    }

    /// Lets the writer finish its batch and closes the ledger (writing a snapshot). Call it
    /// once every router is dropped, outside any async runtime: the blocking PostgreSQL
    /// client's runtime may not be dropped inside another.
    ///
    /// # Errors
    /// Closing the ledger.
    pub fn close(self) -> anyhow::Result<()> {
        let agency = Arc::clone(&self.state.agency);
        drop(self);
        agency.close()?;
        Ok(())
    }
}

/// Opens (or creates) the ledger in `config.data`, listens, tells `started`, and serves until
/// `shutdown` completes; then lets the requests in flight finish, the writer finish its batch,
/// and closes the ledger (writing a snapshot).
///
/// # Errors
/// Opening or creating the store, listening, or serving.
pub fn serve(
    config: Config,
    started: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let binding = Binding::open(config, &format!("http://{address}"))?;
    let router = binding.router();
    started(&Started {
        address,
        verifier_key: binding.agency().ledger().log().verifier().to_vkey(),
        created: binding.created(),
        admin_token_file: binding.admin_token_file().map(Path::to_path_buf),
    });
    let served = runtime.block_on(async {
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        anyhow::Ok(())
    });
    // The router's state is dropped with the runtime's tasks; the binding's after the runtime,
    // not on one of its threads.
    drop(runtime);
    served?;
    // Requests are done: the writer finishes its batch, and a snapshot is written.
    binding.close()
}
