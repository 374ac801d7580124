//! A live log over HTTP or HTTPS (feature `live`): the tlog-tiles files fetched from a log's
//! URL prefix, such as a Sanad server's `/log`. Full tiles are immutable; a partial tile is
//! asked for at the width the checkpoint read first gives it, which a server keeps serving
//! while the log grows.

use crate::{AuditError, TileSource};

/// A live log: `<base>/checkpoint`, `<base>/tile/...`.
pub struct LiveLog {
    base: String,
    agent: ureq::Agent,
}

impl LiveLog {
    /// The log at `url`; a server's root URL (no path) means its `/log` prefix, where the
    /// Sanad server publishes it.
    pub fn new(url: &str) -> Self {
        let trimmed = url.trim_end_matches('/');
        let has_path = trimmed.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
        let base = if has_path { trimmed.to_owned() } else { format!("{trimmed}/log") };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Self { base, agent }
    }
}

impl TileSource for LiveLog {
    fn read(&self, relative: &str) -> Result<Vec<u8>, AuditError> {
        let url = format!("{}/{relative}", self.base);
        let fetch_error = |reason: String| AuditError::Fetch { url: url.clone(), reason };
        let mut response = self.agent.get(&url).call().map_err(|e| fetch_error(e.to_string()))?;
        response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| fetch_error(e.to_string()))
    }
}
