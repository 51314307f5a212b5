//! Live sources: fetches CoinGecko, CoinMarketCap and CryptoCompare over HTTP and writes
//! what they answer as canonical CSV files under `<data dir>/fetched/SOURCE/`, which the
//! normal run then loads through the same detection, ledger and rejects.
//!
//! [`client`] is the shared HTTP client (rate limit, retries, injectable clock);
//! [`coingecko`], [`coinmarketcap`] and [`cryptocompare`] map each provider's pages to
//! rows through [`item`]; [`output`] writes files atomically, keeps the resume state and
//! archives loaded files; [`requested`] finds the coins asked for through
//! `POST /runtasks`; [`budget`] counts calls against the monthly allowance for `watch`.
//!
//! A fetch never loads and never writes the database; it never panics on a response.
//! A page that fails after its retries ends its walk: the rows fetched so far are
//! written, the failure is reported with its page, and the next fetch resumes there.

pub(crate) mod budget;
pub mod cli;
pub mod client;
pub(crate) mod coingecko;
pub(crate) mod coinmarketcap;
pub(crate) mod cryptocompare;
pub mod item;
pub mod output;
pub mod requested;
pub mod watch;

use client::{ClientConfig, HttpClient, RequestError};
use indicatif::ProgressBar;
use item::ItemProblem;
use output::{CsvSink, ResumeState};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Exit code of a fetch that kept some pages but failed others (the run's codes are
/// 0–4; see the README).
pub const EXIT_INCOMPLETE: u8 = 5;

/// A walk never goes past this many pages (a server that always answers a full page
/// would otherwise keep it going forever).
const MAX_PAGES: u32 = 10_000;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{0}")]
    Config(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(String),
}

/// The providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    CoinGecko,
    CoinMarketCap,
    CryptoCompare,
}

impl Source {
    pub const ALL: [Source; 3] = [
        Source::CoinGecko,
        Source::CoinMarketCap,
        Source::CryptoCompare,
    ];

    /// The name used on the command line, in folder names and in the budget.
    pub fn name(self) -> &'static str {
        match self {
            Source::CoinGecko => "coingecko",
            Source::CoinMarketCap => "coinmarketcap",
            Source::CryptoCompare => "cryptocompare",
        }
    }

    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The prefix of the source's environment variables.
    fn env_prefix(self) -> &'static str {
        match self {
            Source::CoinGecko => "COINGECKO",
            Source::CoinMarketCap => "CMC",
            Source::CryptoCompare => "CRYPTOCOMPARE",
        }
    }

    /// `*_MONTHLY_CALLS`, defaulting to the free plan's monthly allowance.
    pub fn monthly_budget(self, env: &dyn Fn(&str) -> Option<String>) -> Result<u64, FetchError> {
        let default = match self {
            Source::CoinGecko => 10_000,
            Source::CoinMarketCap => 10_000,
            Source::CryptoCompare => 20_000,
        };
        let var = format!("{}_MONTHLY_CALLS", self.env_prefix());
        match set(env, &var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    FetchError::Config(format!("{var} must be a whole number above 0, not {v:?}"))
                }),
        }
    }

    /// The client settings from the environment: key (in the provider's header), base
    /// URL, calls per minute. A source that cannot work without a key fails here,
    /// naming the variable.
    pub fn client_config(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, FetchError> {
        let prefix = self.env_prefix();
        let var = |suffix: &str| {
            let name = format!("{prefix}_{suffix}");
            env(&name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let key = var("API_KEY");
        let (base, per_minute, header) = match self {
            Source::CoinGecko => {
                let plan = var("API_PLAN").unwrap_or_else(|| "demo".into());
                let (base, header) = match plan.as_str() {
                    "demo" => ("https://api.coingecko.com/api/v3", "x-cg-demo-api-key"),
                    "pro" => ("https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key"),
                    other => {
                        return Err(FetchError::Config(format!(
                            "COINGECKO_API_PLAN must be demo or pro, not {other:?}"
                        )))
                    }
                };
                // The keyless public API allows far fewer calls than the demo plan.
                let per_minute = if key.is_some() { 30.0 } else { 5.0 };
                (base, per_minute, header.to_string())
            }
            Source::CoinMarketCap => {
                if key.is_none() {
                    return Err(FetchError::Config(
                        "CMC_API_KEY is not set: CoinMarketCap answers no call without a key"
                            .into(),
                    ));
                }
                (
                    "https://pro-api.coinmarketcap.com",
                    30.0,
                    "X-CMC_PRO_API_KEY".to_string(),
                )
            }
            Source::CryptoCompare => (
                "https://min-api.cryptocompare.com",
                60.0,
                "authorization".to_string(),
            ),
        };
        let base_url = var("BASE_URL").unwrap_or_else(|| base.to_string());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(FetchError::Config(format!(
                "{prefix}_BASE_URL must start with http:// or https://, not {base_url:?}"
            )));
        }
        let per_minute = match var("CALLS_PER_MINUTE") {
            None => per_minute,
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| {
                    FetchError::Config(format!(
                        "{prefix}_CALLS_PER_MINUTE must be a number above 0, not {v:?}"
                    ))
                })?,
        };
        let mut config = ClientConfig::new(self.name(), &base_url, per_minute);
        if let Some(key) = key {
            let value = match self {
                Source::CryptoCompare => format!("Apikey {key}"),
                _ => key,
            };
            config.headers.push((header, value));
        }
        if let Some(v) = set(env, "FETCH_MAX_ATTEMPTS") {
            config.max_attempts = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| (1..=20).contains(&n))
                .ok_or_else(|| {
                    FetchError::Config(format!("FETCH_MAX_ATTEMPTS must be 1 to 20, not {v:?}"))
                })?;
        }
        if let Some(v) = set(env, "FETCH_TIMEOUT") {
            config.timeout = crate::options::parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    FetchError::Config(format!(
                        "FETCH_TIMEOUT must be a duration such as 30s, not {v:?}"
                    ))
                })?;
        }
        Ok(config)
    }
}

/// A variable's value; empty counts as unset (`.env.example` leaves keys empty).
fn set(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// CoinGecko `/coins/markets`, every page.
    CoinGeckoMarkets,
    /// CoinGecko `/coins/{id}/market_chart/range` (Unix seconds).
    CoinGeckoHistory { coin: String, from: i64, to: i64 },
    /// CoinGecko `/coins/{id}/tickers`, every page of each coin.
    CoinGeckoTickers { coins: Vec<String> },
    /// CoinMarketCap `/v1/cryptocurrency/listings/latest`, every page.
    CmcListings,
    /// CryptoCompare `/data/top/totalvolfull`: the `top` coins by 24 h volume.
    CryptoCompareToplist { top: u32 },
}

impl Target {
    pub fn source(&self) -> Source {
        match self {
            Target::CoinGeckoMarkets
            | Target::CoinGeckoHistory { .. }
            | Target::CoinGeckoTickers { .. } => Source::CoinGecko,
            Target::CmcListings => Source::CoinMarketCap,
            Target::CryptoCompareToplist { .. } => Source::CryptoCompare,
        }
    }

    pub fn what(&self) -> &'static str {
        match self {
            Target::CoinGeckoMarkets => "markets",
            Target::CoinGeckoHistory { .. } => "history",
            Target::CoinGeckoTickers { .. } => "tickers",
            Target::CmcListings => "listings",
            Target::CryptoCompareToplist { .. } => "toplist",
        }
    }
}

/// Options of one fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Items per page (each provider's maximum by default; tests use small pages).
    pub per_page: Option<u32>,
    /// Start every walk at page 1, ignoring the saved resume state.
    pub restart: bool,
}

/// A page that failed after its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageFailure {
    /// The walk: `markets`, `tickers:bitcoin`, …
    pub walk: String,
    pub page: u32,
    pub error: String,
}

/// What one fetch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchReport {
    pub source: String,
    pub what: String,
    /// Files written, relative to the data directory.
    pub files: Vec<String>,
    pub pages: u32,
    pub items: u64,
    pub calls: u64,
    /// Credits the provider billed beyond one per call (CoinMarketCap bills one credit
    /// per 200 coins listed); `calls + extra_credits` is what the monthly budget counts.
    pub extra_credits: u64,
    /// Walks that started where an earlier fetch stopped: (walk, first page).
    pub resumed: Vec<(String, u32)>,
    pub problems: Vec<ItemProblem>,
    pub failures: Vec<PageFailure>,
}

impl FetchReport {
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// What this fetch spent of the source's monthly budget.
    pub fn billed(&self) -> u64 {
        self.calls + self.extra_credits
    }

    /// A few lines for the terminal and the log.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {} page(s), {} item(s), {} call(s), {} file(s), {} item problem(s)\n",
            self.source,
            self.what,
            self.pages,
            self.items,
            self.calls,
            self.files.len(),
            self.problems.len()
        );
        for file in &self.files {
            out.push_str(&format!("  wrote {file}\n"));
        }
        for (walk, page) in &self.resumed {
            out.push_str(&format!("  resumed {walk} at page {page}\n"));
        }
        for f in &self.failures {
            out.push_str(&format!(
                "  FAILED {} page {}: {} (re-run to resume at that page)\n",
                f.walk, f.page, f.error
            ));
        }
        out
    }
}

/// How a page handler ended.
pub(crate) enum PageEnd {
    More,
    Last,
}

/// Why a page failed.
pub(crate) enum PageError {
    Request(RequestError),
    /// The provider answered, but not with a page (an error envelope, a wrong shape).
    Provider(String),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Request(e) => write!(f, "{e}"),
            PageError::Provider(e) => write!(f, "{e}"),
        }
    }
}

impl From<RequestError> for PageError {
    fn from(e: RequestError) -> Self {
        PageError::Request(e)
    }
}

/// The shared machinery of one fetch: client, resume state, report, progress.
pub(crate) struct Walker<'a> {
    pub client: &'a mut HttpClient,
    pub resume: ResumeState,
    pub report: FetchReport,
    pub progress: &'a ProgressBar,
    pub restart: bool,
}

impl Walker<'_> {
    /// Fetches the pages of walk `key`, from where a previous fetch stopped (or page 1),
    /// until `page` says it was the last. Each call of `page` gets the client, the page
    /// number and the problem list, and returns how it ended plus the items it read.
    /// Returns false when a page failed (recorded, and saved for the resume).
    pub fn walk(
        &mut self,
        key: &str,
        mut page: impl FnMut(
            &mut HttpClient,
            u32,
            &mut Vec<ItemProblem>,
        ) -> Result<(PageEnd, usize), PageError>,
    ) -> bool {
        let first = match self.resume.walks.get(key) {
            Some(&p) if !self.restart && p > 1 => {
                self.report.resumed.push((key.to_string(), p));
                log::info!("{} {key}: resuming at page {p}", self.report.source);
                p
            }
            _ => 1,
        };
        let mut n = first;
        loop {
            self.progress
                .set_message(format!("{} {key}: page {n}", self.report.source));
            match page(self.client, n, &mut self.report.problems) {
                Ok((end, items)) => {
                    self.report.pages += 1;
                    self.report.items += items as u64;
                    self.progress.inc(1);
                    let stop = n >= first.saturating_add(MAX_PAGES);
                    if stop {
                        log::warn!(
                            "{} {key}: stopping after {MAX_PAGES} pages that were all full",
                            self.report.source
                        );
                    }
                    if matches!(end, PageEnd::Last) || stop {
                        self.resume.walks.remove(key);
                        return true;
                    }
                    n += 1;
                }
                Err(e) => {
                    let error = e.to_string();
                    log::error!("{} {key}: page {n} failed: {error}", self.report.source);
                    self.report.failures.push(PageFailure {
                        walk: key.to_string(),
                        page: n,
                        error,
                    });
                    self.resume.walks.insert(key.to_string(), n);
                    return false;
                }
            }
        }
    }
}

/// The items of a page that must be a JSON array (at `pointer`, `""` for the body).
pub(crate) fn page_items<'v>(body: &'v Value, pointer: &str) -> Result<&'v Vec<Value>, PageError> {
    match body.pointer(pointer) {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(PageError::Provider(format!(
            "expected a JSON array at {:?}, got {}",
            if pointer.is_empty() { "/" } else { pointer },
            json_kind(other)
        ))),
        None => Err(PageError::Provider(format!(
            "no {pointer:?} in the response"
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs one fetch: walks the target's pages and writes its CSV files (also when a page
/// failed: what was fetched is kept) and the resume state. Errors are only for what
/// stops the fetch as a whole (the files cannot be written).
pub fn fetch(
    client: &mut HttpClient,
    data_dir: &Path,
    target: &Target,
    opts: &FetchOptions,
    progress: &ProgressBar,
) -> Result<FetchReport, FetchError> {
    let source = target.source();
    let stamp = output::stamp(client.clock().now_utc());
    let calls_before = client.calls();
    let mut walker = Walker {
        client,
        resume: if opts.restart {
            ResumeState::default()
        } else {
            ResumeState::load(data_dir, source.name())
        },
        report: FetchReport {
            source: source.name().to_string(),
            what: target.what().to_string(),
            ..FetchReport::default()
        },
        progress,
        restart: opts.restart,
    };
    let sinks: Vec<CsvSink> = match target {
        Target::CoinGeckoMarkets => coingecko::markets(&mut walker, &stamp, opts.per_page),
        Target::CoinGeckoHistory { coin, from, to } => {
            coingecko::history(&mut walker, &stamp, coin, *from, *to)
        }
        Target::CoinGeckoTickers { coins } => {
            coingecko::tickers(&mut walker, &stamp, coins, opts.per_page)
        }
        Target::CmcListings => coinmarketcap::listings(&mut walker, &stamp, opts.per_page),
        Target::CryptoCompareToplist { top } => {
            cryptocompare::toplist(&mut walker, &stamp, *top, opts.per_page)
        }
    };
    let dir = output::source_dir(data_dir, source.name());
    let mut report = walker.report;
    for sink in &sinks {
        let written = output::write_csv(&dir, sink).map_err(|e| FetchError::Io {
            path: dir.join(format!("{}.csv", sink.stem)),
            source: e,
        })?;
        if let Some(path) = written {
            let name = path
                .strip_prefix(data_dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            report.files.push(name);
        }
    }
    walker
        .resume
        .save(data_dir, source.name())
        .map_err(|e| FetchError::Io {
            path: output::source_dir(data_dir, source.name()).join(".resume.json"),
            source: e,
        })?;
    report.calls = walker.client.calls() - calls_before;
    for p in report.problems.iter().take(20) {
        log::warn!(
            "{} {}: page {} item {}: {} is {}",
            report.source,
            report.what,
            p.page,
            p.item,
            p.field,
            p.problem
        );
    }
    if report.problems.len() > 20 {
        log::warn!(
            "{} {}: {} more item problem(s); the load rejects the rows it cannot use",
            report.source,
            report.what,
            report.problems.len() - 20
        );
    }
    log::info!(
        "{} {}: {} page(s), {} item(s), {} call(s), {} file(s), {} failed page(s)",
        report.source,
        report.what,
        report.pages,
        report.items,
        report.calls,
        report.files.len(),
        report.failures.len()
    );
    Ok(report)
}

/// A coin id as CoinGecko spells them (used in paths and file names, so checked).
pub fn valid_coin_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

/// A progress spinner on a terminal, nothing otherwise.
pub fn progress_bar() -> ProgressBar {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn coingecko_key_goes_in_the_plan_header() {
        let demo = Source::CoinGecko
            .client_config(&env(&[("COINGECKO_API_KEY", "k1")]))
            .map(|c| (c.headers, c.base_url, c.calls_per_minute));
        assert_eq!(
            demo.ok(),
            Some((
                vec![("x-cg-demo-api-key".to_string(), "k1".to_string())],
                "https://api.coingecko.com/api/v3".to_string(),
                30.0
            ))
        );
        let pro = Source::CoinGecko
            .client_config(&env(&[
                ("COINGECKO_API_KEY", "k2"),
                ("COINGECKO_API_PLAN", "pro"),
            ]))
            .map(|c| (c.headers, c.base_url));
        assert_eq!(
            pro.ok(),
            Some((
                vec![("x-cg-pro-api-key".to_string(), "k2".to_string())],
                "https://pro-api.coingecko.com/api/v3".to_string()
            ))
        );
        let keyless = Source::CoinGecko
            .client_config(&env(&[
                ("COINGECKO_API_KEY", ""),
                ("COINGECKO_MONTHLY_CALLS", ""),
            ]))
            .map(|c| (c.headers.len(), c.calls_per_minute));
        assert_eq!(keyless.ok(), Some((0, 5.0)));
        let budget = Source::CoinGecko.monthly_budget(&env(&[("COINGECKO_MONTHLY_CALLS", "")]));
        assert_eq!(budget.ok(), Some(10_000));
    }

    #[test]
    fn coinmarketcap_needs_its_key_and_cryptocompare_uses_apikey_authorization() {
        let cmc = Source::CoinMarketCap.client_config(&env(&[]));
        assert!(matches!(cmc, Err(FetchError::Config(m)) if m.contains("CMC_API_KEY")));
        let cmc = Source::CoinMarketCap
            .client_config(&env(&[
                ("CMC_API_KEY", "abc"),
                ("CMC_BASE_URL", "http://127.0.0.1:9/"),
            ]))
            .map(|c| (c.headers, c.base_url));
        assert_eq!(
            cmc.ok(),
            Some((
                vec![("X-CMC_PRO_API_KEY".to_string(), "abc".to_string())],
                "http://127.0.0.1:9".to_string()
            ))
        );
        let cc = Source::CryptoCompare
            .client_config(&env(&[("CRYPTOCOMPARE_API_KEY", "xyz")]))
            .map(|c| c.headers);
        assert_eq!(
            cc.ok(),
            Some(vec![(
                "authorization".to_string(),
                "Apikey xyz".to_string()
            )])
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        let bad = |vars: &[(&str, &str)], name: &str| {
            let r = Source::CoinGecko.client_config(&env(vars));
            matches!(r, Err(FetchError::Config(m)) if m.contains(name))
        };
        assert!(bad(
            &[("COINGECKO_CALLS_PER_MINUTE", "fast")],
            "COINGECKO_CALLS_PER_MINUTE"
        ));
        assert!(bad(
            &[("COINGECKO_BASE_URL", "ftp://x")],
            "COINGECKO_BASE_URL"
        ));
        assert!(bad(&[("COINGECKO_API_PLAN", "gold")], "COINGECKO_API_PLAN"));
        assert!(bad(&[("FETCH_MAX_ATTEMPTS", "0")], "FETCH_MAX_ATTEMPTS"));
        let budget =
            Source::CryptoCompare.monthly_budget(&env(&[("CRYPTOCOMPARE_MONTHLY_CALLS", "-3")]));
        assert!(
            matches!(budget, Err(FetchError::Config(m)) if m.contains("CRYPTOCOMPARE_MONTHLY_CALLS"))
        );
    }

    #[test]
    fn coin_ids_are_checked_before_they_reach_a_path() {
        assert!(valid_coin_id("bitcoin"));
        assert!(valid_coin_id("usd-coin"));
        assert!(!valid_coin_id("../etc"));
        assert!(!valid_coin_id("a/b"));
        assert!(!valid_coin_id(""));
    }
}
