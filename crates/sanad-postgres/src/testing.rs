//! A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, `pg_ctl start` on
//! a free loopback port with a Unix socket in the same folder, `pg_ctl stop` and removal when
//! dropped. It uses the server binaries found on the machine (`SANAD_PG_BIN`, `pg_config
//! --bindir`, or the newest `/usr/lib/postgresql/*/bin`); without them it fails with a message
//! saying how to install them, so a test that needs a server never passes without one.
//!
//! PostgreSQL refuses to run as root; as root, the server runs as the `postgres` user (which
//! Debian's package creates), owning its temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a throwaway server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// No server binaries on this machine.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with \
         `apt-get install -y postgresql` (.ci/run does this), or set SANAD_PG_BIN to their folder"
    )]
    NoBinaries,
    /// Running as root and there is no unprivileged user to run the server as.
    #[error("running as root, and there is no `postgres` user to run the server as")]
    NoServerUser,
    /// A step failed.
    #[error("{step} failed: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Its output or error.
        detail: String,
    },
}

fn step(step: &'static str, detail: impl std::fmt::Display) -> TestServerError {
    TestServerError::Step { step, detail: detail.to_string() }
}

/// A running throwaway server.
#[derive(Debug)]
pub struct TestServer {
    folder: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    /// Whether it serves TLS, with a certificate from its own test authority.
    tls: bool,
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// The folder holding `initdb` and `pg_ctl`.
fn server_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SANAD_PG_BIN").map(PathBuf::from) {
        return has_server(&dir).then_some(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_server(dir)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A free loopback port (the kernel's choice; another process could take it before the server
/// does, which `start` then reports).
fn free_port() -> Result<u16, TestServerError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| step("a port", e))?;
    Ok(listener.local_addr().map_err(|e| step("a port", e))?.port())
}

impl TestServer {
    /// Starts a new, empty server.
    ///
    /// # Errors
    /// [`TestServerError`], saying what to install when the binaries are missing.
    pub fn start() -> Result<Self, TestServerError> {
        Self::start_with(false)
    }

    /// Starts a new, empty server that also serves TLS, with a certificate for `localhost`
    /// and `127.0.0.1` issued by a certificate authority of its own ([`Self::ca_file`]).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn start_with_tls() -> Result<Self, TestServerError> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Self, TestServerError> {
        let bin = server_binaries().ok_or(TestServerError::NoBinaries)?;
        let run_as = if is_root() {
            let exists =
                Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success());
            if !exists {
                return Err(TestServerError::NoServerUser);
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let folder = tempfile::Builder::new()
            .prefix("sanad-pg-")
            .tempdir()
            .map_err(|e| step("a temporary folder", e))?;
        if let Some(user) = &run_as {
            let owned = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(folder.path())
                .output()
                .map_err(|e| step("chown", e))?;
            check("chown", &owned)?;
        }
        let server = Self { folder, bin, port: free_port()?, run_as, tls };
        let data = server.data();
        let initdb = server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        check("initdb", &initdb)?;
        if tls {
            server.issue_certificates()?;
        }
        server.pg_ctl_start()?;
        Ok(server)
    }

    /// The server's options: its port and socket folder, durable commits, and TLS if asked.
    fn options(&self) -> String {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.folder.path().display()
        );
        if self.tls {
            let data = self.data();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={data}/server.crt -c ssl_key_file={data}/server.key"
            ));
        }
        options
    }

    fn pg_ctl_start(&self) -> Result<(), TestServerError> {
        let log = format!("{}/server.log", self.folder.path().display());
        let data = self.data();
        let options = self.options();
        let started =
            self.run("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "start"])?;
        check("pg_ctl start", &started).map_err(|error| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            step("pg_ctl start", format!("{error}\n{log}"))
        })
    }

    /// Writes a test certificate authority (`ca.crt`, beside the data) and a server
    /// certificate and key it issued (in the data folder, owned by the server's user, the key
    /// readable by it alone, as PostgreSQL demands).
    fn issue_certificates(&self) -> Result<(), TestServerError> {
        let cert = |e: rcgen::Error| step("issuing test certificates", e);
        let ca_key = rcgen::KeyPair::generate().map_err(cert)?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert)?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Sanad test authority");
        let ca = ca.self_signed(&ca_key).map_err(cert)?;
        let key = rcgen::KeyPair::generate().map_err(cert)?;
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let server = rcgen::CertificateParams::new(names)
            .map_err(cert)?
            .signed_by(&key, &ca, &ca_key)
            .map_err(cert)?;
        let write = |path: PathBuf, text: String, mode: u32| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(&path, text).map_err(|e| step("writing a certificate", e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| step("chmod", e))?;
            if let Some(user) = &self.run_as {
                let owned = Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(&path)
                    .output()
                    .map_err(|e| step("chown", e))?;
                check("chown", &owned)?;
            }
            Ok::<(), TestServerError>(())
        };
        let data = PathBuf::from(self.data());
        write(self.ca_file(), ca.pem(), 0o644)?;
        write(data.join("server.crt"), server.pem(), 0o644)?;
        write(data.join("server.key"), key.serialize_pem(), 0o600)
    }

    /// The test authority's certificate (PEM), for `sslrootcert=`, on a server started with
    /// [`Self::start_with_tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.folder.path().join("ca.crt")
    }

    /// [`Self::start`] for a test: a server, or a failure that says loudly why none could
    /// start and what to install. A test that needs PostgreSQL never passes without it.
    ///
    /// # Panics
    /// When no server can start.
    pub fn for_test() -> Self {
        Self::start().unwrap_or_else(|error| panic!("POSTGRESQL TESTS CANNOT RUN: {error}"))
    }

    /// A connection string for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database on this server; its connection string.
    ///
    /// # Errors
    /// [`TestServerError::Step`].
    pub fn database(&self, name: &str) -> Result<String, TestServerError> {
        let admin = format!("{}?sslmode=disable", self.url());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .map_err(|e| step("connecting", e))?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| step("CREATE DATABASE", e))?;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }

    /// Stops the server at once, as a crash would (no checkpoint, no shutdown writes), and
    /// starts it again on the same folder and port: what survives is what was durable.
    ///
    /// # Errors
    /// [`TestServerError::Step`].
    pub fn crash_and_restart(&self) -> Result<(), TestServerError> {
        let data = self.data();
        let stopped = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
        check("pg_ctl stop", &stopped)?;
        self.pg_ctl_start()
    }

    fn data(&self) -> String {
        format!("{}/data", self.folder.path().display())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, TestServerError> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command.args(args).current_dir(self.folder.path());
        command
            .output()
            .map_err(|e| step("running a server binary", format!("{}: {e}", path.display())))
    }
}

fn check(what: &'static str, output: &Output) -> Result<(), TestServerError> {
    if output.status.success() {
        return Ok(());
    }
    Err(step(
        what,
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// Stops the server (at once: a test's data need no clean shutdown) before the folder goes.
impl Drop for TestServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}
