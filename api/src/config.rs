//! The API's settings, read once from the environment at start-up.

use coinflow_shared::config::{self, ConfigError};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the API needs to start. Built from the environment by [`ApiConfig::from_env`]
/// in the binary, or directly by tests.
#[derive(Clone)]
pub struct ApiConfig {
    /// `DATABASE_URL` (required).
    pub database_url: String,
    /// `API_ADDRESS`, default `0.0.0.0`.
    pub address: IpAddr,
    /// `API_PORT`, default 8000.
    pub port: u16,
    /// `CURSOR_SECRET`: the HMAC key of cursors. `None` makes the API draw a random key
    /// per process (cursors then do not survive a restart).
    pub cursor_secret: Option<Vec<u8>>,
    /// `TASK_OUTPUT_DIR`: where accepted task records are also written, if set.
    pub task_output_dir: Option<PathBuf>,
    /// `TASK_OUTPUT_MAX_FILES`: the most task files kept there (oldest go first).
    pub task_output_max_files: usize,
    /// `TASK_OUTPUT_MAX_BYTES`: the most bytes of task files kept there.
    pub task_output_max_bytes: u64,
    /// `API_WRITE_TOKEN`: when set, POSTs need `Authorization: Bearer <token>`.
    pub write_token: Option<String>,
    /// `API_POOL_SIZE`, default 16.
    pub pool_size: u32,
    /// `API_STATEMENT_TIMEOUT_MS`, default 5000: PostgreSQL cancels any API statement
    /// running longer (the request gets 503 + `Retry-After`).
    pub statement_timeout: Duration,
    /// `API_LOCK_TIMEOUT_MS`, default 1000: the longest an API statement waits for a lock.
    pub lock_timeout: Duration,
    /// `API_COLD_WORK_LIMIT`: how many expensive computations (a `/top` ranking not in
    /// the cache, a chunk of more than [`crate::state::LARGE_CHUNK`] rows) may run at
    /// once; past it, 503 at once. `None`: half the pool (see [`ApiConfig::cold_permits`]).
    pub cold_work_limit: Option<u32>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password and the secrets are secrets: show only their presence.
        let (host, port) = coinflow_shared::db::host_port(&self.database_url);
        f.debug_struct("ApiConfig")
            .field("database", &format!("{host}:{port}"))
            .field("address", &self.address)
            .field("port", &self.port)
            .field(
                "cursor_secret",
                &self.cursor_secret.as_ref().map(|_| "<set>"),
            )
            .field("task_output_dir", &self.task_output_dir)
            .field("task_output_max_files", &self.task_output_max_files)
            .field("task_output_max_bytes", &self.task_output_max_bytes)
            .field("write_token", &self.write_token.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("cold_work_limit", &self.cold_work_limit)
            .finish()
    }
}

/// Default of `TASK_OUTPUT_MAX_FILES`.
const DEFAULT_TASK_OUTPUT_MAX_FILES: usize = 10_000;
/// Default of `TASK_OUTPUT_MAX_BYTES` (1 GiB).
const DEFAULT_TASK_OUTPUT_MAX_BYTES: u64 = 1 << 30;

/// The shortest `CURSOR_SECRET` accepted, in bytes (an HMAC-SHA256 key of full strength).
pub(crate) const MIN_CURSOR_SECRET_BYTES: usize = 32;

/// Checks a `CURSOR_SECRET` value: not a documentation placeholder (`change-me…`, what
/// older `.env.example` files held), and at least [`MIN_CURSOR_SECRET_BYTES`] long.
pub(crate) fn cursor_secret(value: &str) -> Result<Vec<u8>, ConfigError> {
    let refuse = |reason: String| ConfigError::Invalid {
        name: "CURSOR_SECRET",
        // Never echo a secret: only its length.
        value: format!("<{} bytes>", value.len()),
        reason,
    };
    if value.trim().to_ascii_lowercase().starts_with("change-me") {
        return Err(refuse(
            "it is the placeholder of .env.example: set a long random string (openssl rand -hex 32) or leave it empty for a random per-process key".into(),
        ));
    }
    if value.len() < MIN_CURSOR_SECRET_BYTES {
        return Err(refuse(format!(
            "it must be at least {MIN_CURSOR_SECRET_BYTES} bytes long (openssl rand -hex 32), or empty for a random per-process key"
        )));
    }
    Ok(value.as_bytes().to_vec())
}

impl ApiConfig {
    /// Defaults for everything but the database (what tests start from).
    pub fn new(database_url: impl Into<String>) -> ApiConfig {
        ApiConfig {
            database_url: database_url.into(),
            address: IpAddr::from([0, 0, 0, 0]),
            port: 8000,
            cursor_secret: None,
            task_output_dir: None,
            task_output_max_files: DEFAULT_TASK_OUTPUT_MAX_FILES,
            task_output_max_bytes: DEFAULT_TASK_OUTPUT_MAX_BYTES,
            write_token: None,
            pool_size: 16,
            statement_timeout: Duration::from_millis(5000),
            lock_timeout: Duration::from_millis(1000),
            cold_work_limit: None,
        }
    }

    /// How many expensive computations may run at once: the configured limit (at most the
    /// pool), else half the pool, at least one.
    pub(crate) fn cold_permits(&self) -> u32 {
        self.cold_work_limit
            .unwrap_or(self.pool_size / 2)
            .clamp(1, self.pool_size.max(1))
    }

    /// Reads `DATABASE_URL`, `API_ADDRESS`, `API_PORT`, `CURSOR_SECRET`,
    /// `TASK_OUTPUT_DIR`, `TASK_OUTPUT_MAX_FILES`, `TASK_OUTPUT_MAX_BYTES`,
    /// `API_WRITE_TOKEN`, `API_POOL_SIZE`, `API_STATEMENT_TIMEOUT_MS`,
    /// `API_LOCK_TIMEOUT_MS` and `API_COLD_WORK_LIMIT`.
    pub fn from_env() -> Result<ApiConfig, ConfigError> {
        let mut cfg = ApiConfig::new(config::database_url()?);
        cfg.address = config::parsed_or("API_ADDRESS", cfg.address)?;
        cfg.port = config::parsed_or("API_PORT", cfg.port)?;
        cfg.pool_size = config::parsed_or("API_POOL_SIZE", cfg.pool_size)?;
        if cfg.pool_size == 0 {
            return Err(ConfigError::Invalid {
                name: "API_POOL_SIZE",
                value: "0".into(),
                reason: "the pool needs at least one connection".into(),
            });
        }
        cfg.statement_timeout = millis("API_STATEMENT_TIMEOUT_MS", cfg.statement_timeout)?;
        cfg.lock_timeout = millis("API_LOCK_TIMEOUT_MS", cfg.lock_timeout)?;
        let cold = config::parsed_or("API_COLD_WORK_LIMIT", cfg.cold_permits())?;
        cfg.cold_work_limit = Some(cold);
        if cold == 0 || cold > cfg.pool_size {
            return Err(ConfigError::Invalid {
                name: "API_COLD_WORK_LIMIT",
                value: cold.to_string(),
                reason: format!(
                    "must be from 1 to API_POOL_SIZE ({}), so cheap reads always find a connection",
                    cfg.pool_size
                ),
            });
        }
        cfg.cursor_secret = config::optional("CURSOR_SECRET")
            .map(|secret| cursor_secret(&secret))
            .transpose()?;
        cfg.task_output_dir = config::optional("TASK_OUTPUT_DIR").map(PathBuf::from);
        cfg.task_output_max_files =
            config::parsed_or("TASK_OUTPUT_MAX_FILES", cfg.task_output_max_files)?;
        cfg.task_output_max_bytes =
            config::parsed_or("TASK_OUTPUT_MAX_BYTES", cfg.task_output_max_bytes)?;
        if cfg.task_output_max_files == 0 || cfg.task_output_max_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "TASK_OUTPUT_MAX_FILES",
                value: format!(
                    "{} files, {} bytes",
                    cfg.task_output_max_files, cfg.task_output_max_bytes
                ),
                reason: "TASK_OUTPUT_MAX_FILES and TASK_OUTPUT_MAX_BYTES must be above 0 (unset TASK_OUTPUT_DIR to write no files)".into(),
            });
        }
        cfg.write_token = config::optional("API_WRITE_TOKEN");
        Ok(cfg)
    }
}

/// A positive number of milliseconds from `name`, or `default`.
fn millis(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    let ms: u64 = config::parsed_or(name, u64::try_from(default.as_millis()).unwrap_or(u64::MAX))?;
    if ms == 0 {
        // PostgreSQL reads 0 as "no limit", the opposite of what a zero suggests.
        return Err(ConfigError::Invalid {
            name,
            value: "0".into(),
            reason: "must be at least 1 millisecond".into(),
        });
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::cursor_secret;

    #[test]
    fn the_placeholder_and_short_secrets_are_refused_by_name() {
        for bad in [
            "change-me-to-a-long-random-string",
            "change-me",
            "short",
            &"x".repeat(31),
        ] {
            let e = cursor_secret(bad).expect_err(bad).to_string();
            assert!(e.contains("CURSOR_SECRET"), "{e}");
            assert!(!e.contains(bad), "the secret is echoed: {e}");
        }
        assert!(cursor_secret("change-me-to-a-long-random-string")
            .expect_err("placeholder")
            .to_string()
            .contains("placeholder"));
        assert_eq!(cursor_secret(&"k".repeat(32)).ok(), Some(vec![b'k'; 32]));
    }
}
