//! The HTTP client every provider shares: one GET of a JSON document at a time, spaced
//! by the source's rate limit (calls per minute), retried with exponential backoff and
//! jitter on 5xx, timeouts and broken bodies, waiting as long as a 429's `Retry-After`
//! asks (up to a bound), and giving up after a bounded number of attempts. Time comes
//! from an injectable [`Clock`], so tests neither sleep nor measure wall-clock time.
//!
//! It must never put an API key in a URL or a log line: keys travel only in the headers
//! of [`ClientConfig::headers`], and every text that may be logged is scrubbed of them.

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Where the client gets time from: the system in production, a manual clock in tests.
pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary origin (spacing and backoff are measured on it).
    fn elapsed(&self) -> Duration;
    /// Waits `d` (a test clock just advances).
    fn sleep(&self, d: Duration);
    /// The wall-clock time, for file names and the observation time of fetched ranks.
    fn now_utc(&self) -> DateTime<Utc>;
}

/// The real clock.
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// How one source is called.
#[derive(Clone)]
pub struct ClientConfig {
    /// `coingecko`, `coinmarketcap` or `cryptocompare` (for log lines).
    pub source: String,
    /// Scheme, host and path prefix, without a trailing slash.
    pub base_url: String,
    /// Headers sent with every call; the values may be secrets and are never logged.
    pub headers: Vec<(String, String)>,
    /// Calls per minute: successive calls start at least `60 s / calls_per_minute` apart.
    pub calls_per_minute: f64,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each further one.
    pub backoff_base: Duration,
    /// Upper bound of one backoff.
    pub backoff_max: Duration,
    /// A 429 asking for a longer wait than this fails the call instead of waiting.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP exchange, body included.
    pub timeout: Duration,
    /// Seed of the jitter (fixed in tests, time-derived otherwise).
    pub jitter_seed: u64,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ClientConfig")
            .field("source", &self.source)
            .field("base_url", &self.base_url)
            .field("headers", &header_names)
            .field("calls_per_minute", &self.calls_per_minute)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for a source: 5 attempts, backoff 1 s doubling up to 60 s, a Retry-After
    /// of at most 5 minutes, a 30 s timeout.
    pub fn new(source: &str, base_url: &str, calls_per_minute: f64) -> ClientConfig {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        ClientConfig {
            source: source.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            headers: Vec::new(),
            calls_per_minute,
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            jitter_seed: seed,
        }
    }

    /// The minimum spacing between the starts of two calls.
    pub fn spacing(&self) -> Duration {
        if self.calls_per_minute > 0.0 && self.calls_per_minute.is_finite() {
            Duration::from_secs_f64(60.0 / self.calls_per_minute)
        } else {
            Duration::ZERO
        }
    }
}

/// Why a call did not return a document.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RequestError {
    /// A status that retrying cannot fix (400, 401, 403, 404, …).
    #[error("HTTP {status}: {detail}")]
    Rejected { status: u16, detail: String },
    /// Every attempt failed with a retryable error.
    #[error("gave up after {attempts} attempts, last: {last}")]
    GaveUp { attempts: u32, last: String },
    /// A 429 asked for a wait longer than `max_retry_after`.
    #[error("rate limited: the server asks to wait {wait_secs} s, more than the {max_secs} s allowed; try again later")]
    WaitTooLong { wait_secs: u64, max_secs: u64 },
}

/// The outcome of one attempt.
enum Attempt {
    Done(Value),
    Retry { why: String, wait: Option<Duration> },
    Fail(RequestError),
}

/// A rate-limited, retrying JSON client for one source.
pub struct HttpClient {
    config: ClientConfig,
    agent: ureq::Agent,
    clock: Arc<dyn Clock>,
    rng: rand::rngs::StdRng,
    next_start: Option<Duration>,
    calls: u64,
}

impl HttpClient {
    pub fn new(config: ClientConfig, clock: Arc<dyn Clock>) -> HttpClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The APIs do not redirect; following one could carry a key header elsewhere.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("coinflow-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let rng = rand::rngs::StdRng::seed_from_u64(config.jitter_seed);
        HttpClient {
            config,
            agent,
            clock,
            rng,
            next_start: None,
            calls: 0,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// HTTP requests sent so far (every attempt counts: providers bill them all).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// GETs `path` (relative to the base URL) with `query` and parses the body as JSON.
    pub fn get_json(
        &mut self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, RequestError> {
        let url = format!("{}{}", self.config.base_url, path);
        let what = describe(path, query);
        let mut attempt = 1;
        loop {
            self.wait_turn();
            let (why, asked) = match self.attempt(&url, query) {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { why, wait } => (why, wait),
            };
            if attempt >= self.config.max_attempts {
                return Err(RequestError::GaveUp {
                    attempts: attempt,
                    last: why,
                });
            }
            let wait = match asked {
                Some(asked) if asked > self.config.max_retry_after => {
                    return Err(RequestError::WaitTooLong {
                        wait_secs: asked.as_secs(),
                        max_secs: self.config.max_retry_after.as_secs(),
                    })
                }
                Some(asked) => asked,
                None => self.backoff(attempt),
            };
            log::warn!(
                "{} {what}: attempt {attempt} of {} failed ({why}); retrying in {:.1}s",
                self.config.source,
                self.config.max_attempts,
                wait.as_secs_f64()
            );
            self.clock.sleep(wait);
            attempt += 1;
        }
    }

    /// Sleeps until the rate limit allows the next call, and books it.
    fn wait_turn(&mut self) {
        let now = self.clock.elapsed();
        let start = match self.next_start {
            Some(next) if next > now => {
                self.clock.sleep(next - now);
                next
            }
            _ => now,
        };
        self.next_start = Some(start + self.config.spacing());
    }

    /// Exponential backoff with "equal jitter": half the doubled delay, plus a random
    /// share of the other half, so retries of many clients spread out.
    fn backoff(&mut self, attempt: u32) -> Duration {
        backoff_delay(&self.config, attempt, self.rng.random::<f64>())
    }

    fn attempt(&mut self, url: &str, query: &[(&str, String)]) -> Attempt {
        self.calls += 1;
        let mut request = self.agent.get(url).header("Accept", "application/json");
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in query {
            request = request.query(*name, value.as_str());
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => return Attempt::retry(self.scrub(&format!("transport error: {e}")), None),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now_utc()));
        let body = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string();
        match status {
            200..=299 => match body {
                Err(e) => Attempt::retry(self.scrub(&format!("body not read: {e}")), None),
                Ok(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(v) => Attempt::Done(v),
                    Err(e) => Attempt::retry(format!("invalid JSON: {e}"), None),
                },
            },
            429 => Attempt::retry("HTTP 429 Too Many Requests".to_string(), retry_after),
            408 | 500..=599 => Attempt::retry(format!("HTTP {status}"), retry_after),
            _ => {
                let detail = body.unwrap_or_default();
                let mut detail = self.scrub(detail.trim());
                if detail.len() > 300 {
                    let cut = (0..=300).rev().find(|&i| detail.is_char_boundary(i));
                    detail.truncate(cut.unwrap_or(0));
                    detail.push('…');
                }
                let hint = match status {
                    401 | 403 => " (check the source's API key and plan)",
                    _ => "",
                };
                Attempt::Fail(RequestError::Rejected {
                    status,
                    detail: format!("{detail}{hint}"),
                })
            }
        }
    }

    /// Removes header values (API keys) from a text about to be logged or reported.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, value) in &self.config.headers {
            if value.len() >= 4 {
                out = out.replace(value.as_str(), "***");
            }
        }
        out
    }
}

impl Attempt {
    fn retry(why: String, wait: Option<Duration>) -> Attempt {
        Attempt::Retry { why, wait }
    }
}

/// The backoff before attempt `attempt + 1`: `min(max, base · 2^(attempt-1))`, of which
/// the upper half is scaled by `jitter` (in 0..1).
pub fn backoff_delay(config: &ClientConfig, attempt: u32, jitter: f64) -> Duration {
    let doubled = config
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(config.backoff_max);
    let half = capped / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3); `None` when unreadable.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// `path?query` for log lines (the query never holds a key).
fn describe(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T20:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Dec 2026 20:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Dec 2026 19:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_is_capped() {
        let config = ClientConfig::new("test", "http://x", 60.0);
        assert_eq!(backoff_delay(&config, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(&config, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&config, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(&config, 3, 0.5), Duration::from_secs(3));
        assert_eq!(backoff_delay(&config, 30, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn spacing_follows_calls_per_minute() {
        assert_eq!(
            ClientConfig::new("t", "http://x", 30.0).spacing(),
            Duration::from_secs(2)
        );
        assert_eq!(
            ClientConfig::new("t", "http://x", 0.0).spacing(),
            Duration::ZERO
        );
    }

    #[test]
    fn debug_output_names_headers_but_not_their_values() {
        let mut config = ClientConfig::new("t", "http://x/", 30.0);
        config
            .headers
            .push(("x-cg-demo-api-key".into(), "sekrit-key".into()));
        let shown = format!("{config:?}");
        assert!(shown.contains("x-cg-demo-api-key"));
        assert!(!shown.contains("sekrit-key"));
        assert_eq!(config.base_url, "http://x");
    }
}
