//! `watch --fetch SPEC…`: fetch, load, archive, wait, forever (or `--cycles N` times).
//! The wait is `--interval` when given, otherwise derived from each source's monthly
//! call budget (`*_MONTHLY_CALLS`): what is left, spread over the rest of the month at
//! the calls the last cycle needed, at least a minute. Each cycle logs how much of each
//! budget is used; a source whose budget is spent is skipped until the month ends.
//!
//! The load is the caller's (the binary's normal run), passed in as a function.

use super::budget::{self, BudgetBook};
use super::cli::{requested_now, RequestedFrom};
use super::client::{Clock, HttpClient};
use super::output;
use super::{fetch, FetchError, FetchOptions, Source, Target};
use crate::report::RunReport;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The shortest derived interval.
const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// One `--fetch` value: `coingecko:markets`, `coingecko:tickers` (the requested coins),
/// `coinmarketcap:listings`, `cryptocompare:toplist[:N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Markets,
    RequestedTickers,
    Listings,
    Toplist(u32),
}

impl Spec {
    pub fn parse(raw: &str) -> Result<Spec, String> {
        let parts: Vec<&str> = raw.trim().split(':').collect();
        match parts.as_slice() {
            ["coingecko", "markets"] => Ok(Spec::Markets),
            ["coingecko", "tickers"] => Ok(Spec::RequestedTickers),
            ["coinmarketcap", "listings"] => Ok(Spec::Listings),
            ["cryptocompare", "toplist"] => Ok(Spec::Toplist(100)),
            ["cryptocompare", "toplist", n] => n
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .map(Spec::Toplist)
                .ok_or_else(|| {
                    format!("invalid --fetch {raw:?}: the toplist size must be a number above 0")
                }),
            _ => Err(format!(
                "invalid --fetch {raw:?}: expected coingecko:markets, coingecko:tickers, \
                 coinmarketcap:listings or cryptocompare:toplist[:N]"
            )),
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Spec::Markets | Spec::RequestedTickers => Source::CoinGecko,
            Spec::Listings => Source::CoinMarketCap,
            Spec::Toplist(_) => Source::CryptoCompare,
        }
    }
}

/// What `watch --fetch` needs besides the load.
pub struct WatchOptions<'a> {
    pub specs: Vec<Spec>,
    pub interval: Option<Duration>,
    pub max_age: Duration,
    pub cycles: Option<u32>,
    pub data_dir: &'a Path,
    pub database_url: Option<&'a str>,
    pub db_wait: Duration,
}

/// Runs the cycles. Returns the exit code: after `cycles` cycles 0, or
/// [`super::EXIT_INCOMPLETE`] when the last cycle failed some pages (what it fetched is
/// loaded all the same); 1 on a fatal fetch error, or the load's code when it fails
/// (`load` returns `Err(code)` then). A failed page in an earlier cycle does not stop
/// the watch: the next cycle resumes it.
pub fn watch(
    opts: &WatchOptions<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
    mut load: impl FnMut() -> Result<RunReport, u8>,
) -> u8 {
    let mut clients: BTreeMap<Source, HttpClient> = BTreeMap::new();
    let mut cycle = 0u32;
    loop {
        cycle += 1;
        let (calls, complete) = match fetch_cycle(opts, env, &clock, &mut clients) {
            Ok(cycle) => cycle,
            Err(e) => {
                log::error!("watch: {e}");
                eprintln!("coinflow-etl: {e}");
                return 1;
            }
        };
        match load() {
            Ok(report) => match output::archive_loaded(opts.data_dir, &report) {
                Ok(moved) if !moved.is_empty() => {
                    log::info!(
                        "archived {} loaded fetched file(s) under fetched/loaded/",
                        moved.len()
                    )
                }
                Ok(_) => {}
                Err(e) => log::warn!("could not archive loaded fetched files: {e}"),
            },
            Err(code) => return code,
        }
        if opts.cycles.is_some_and(|n| cycle >= n) {
            return if complete { 0 } else { super::EXIT_INCOMPLETE };
        }
        let wait = interval(opts, &calls, clock.now_utc());
        log::info!("next fetch cycle in {:.0}s", wait.as_secs_f64());
        clock.sleep(wait);
    }
}

/// Calls made by each source in one cycle, and its budget state after it.
struct SourceCalls {
    cycle: u64,
    used: u64,
    budget: u64,
}

fn fetch_cycle(
    opts: &WatchOptions<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    clock: &Arc<dyn Clock>,
    clients: &mut BTreeMap<Source, HttpClient>,
) -> Result<(BTreeMap<Source, SourceCalls>, bool), FetchError> {
    let now = clock.now_utc();
    let mut complete = true;
    let mut book = BudgetBook::load(opts.data_dir, now);
    let mut calls: BTreeMap<Source, SourceCalls> = BTreeMap::new();
    let progress = super::progress_bar();
    for spec in &opts.specs {
        let source = spec.source();
        let budget = source.monthly_budget(env)?;
        if book.used(source.name()) >= budget {
            log::warn!(
                "{}: this month's budget of {budget} calls is spent; skipping {spec:?} until next month",
                source.name()
            );
            continue;
        }
        let target = match spec {
            Spec::Markets => Target::CoinGeckoMarkets,
            Spec::Listings => Target::CmcListings,
            Spec::Toplist(top) => Target::CryptoCompareToplist { top: *top },
            Spec::RequestedTickers => {
                let from = RequestedFrom {
                    database_url: opts.database_url,
                    db_wait: opts.db_wait,
                    data_dir: opts.data_dir,
                };
                match requested_now(&from, opts.max_age, now) {
                    Ok(coins) => Target::CoinGeckoTickers { coins },
                    Err(FetchError::Db(e)) => {
                        log::warn!("coingecko tickers skipped this cycle: cannot read the requested coins: {e}");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let client = match clients.entry(source) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(HttpClient::new(source.client_config(env)?, clock.clone()))
            }
        };
        let report = fetch(
            client,
            opts.data_dir,
            &target,
            &FetchOptions::default(),
            &progress,
        )?;
        print!("{}", report.render());
        complete &= report.is_complete();
        book.add(source.name(), report.billed());
        let entry = calls.entry(source).or_insert(SourceCalls {
            cycle: 0,
            used: 0,
            budget,
        });
        entry.cycle += report.billed();
        entry.used = book.used(source.name());
    }
    progress.finish_and_clear();
    if let Err(e) = book.save(opts.data_dir) {
        log::warn!("could not save the call budget book: {e}");
    }
    for (source, c) in &calls {
        log::info!(
            "budget {}: {} of {} calls used in {} ({:.1} %), {} this cycle",
            source.name(),
            c.used,
            c.budget,
            book.month,
            100.0 * c.used as f64 / c.budget as f64,
            c.cycle
        );
    }
    Ok((calls, complete))
}

/// `--interval`, or the longest of the sources' derived intervals (at least a minute).
fn interval(
    opts: &WatchOptions<'_>,
    calls: &BTreeMap<Source, SourceCalls>,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    let derived = calls
        .values()
        .filter(|c| c.cycle > 0)
        .map(|c| budget::interval_for(c.budget.saturating_sub(c.used), c.cycle, now))
        .max()
        .unwrap_or(MIN_INTERVAL)
        .max(MIN_INTERVAL);
    match opts.interval {
        None => derived,
        Some(given) => {
            if given < derived {
                log::warn!(
                    "--interval {:.0}s is shorter than the {:.0}s the monthly budgets allow: \
                     fetching stops when a budget is spent",
                    given.as_secs_f64(),
                    derived.as_secs_f64()
                );
            }
            given
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_source_and_what() {
        assert_eq!(Spec::parse("coingecko:markets"), Ok(Spec::Markets));
        assert_eq!(Spec::parse("coingecko:tickers"), Ok(Spec::RequestedTickers));
        assert_eq!(
            Spec::parse("cryptocompare:toplist:50"),
            Ok(Spec::Toplist(50))
        );
        assert!(Spec::parse("cryptocompare:toplist:0").is_err());
        assert!(Spec::parse("coingecko").is_err());
        assert!(Spec::parse("kraken:markets").is_err());
    }
}
