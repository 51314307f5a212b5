//! The `fetch` and `watch --fetch` command lines: arguments, their checks, and turning
//! them into a [`Target`] (asking the database for `--requested` coins).

use super::client::{Clock, HttpClient};
use super::{requested, FetchError, Source, Target};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `coinflow-etl fetch SOURCE WHAT [options]`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// coingecko, coinmarketcap or cryptocompare.
    pub source: String,
    /// coingecko: markets, history, tickers; coinmarketcap: listings; cryptocompare: toplist.
    pub what: String,
    /// Coin id(s) (CoinGecko ids): one for history, one or more for tickers.
    #[arg(long, num_args = 1..)]
    pub coin: Vec<String>,
    /// history: start, as a date (2024-01-31), an ISO-8601 time or Unix seconds.
    #[arg(long)]
    pub from: Option<String>,
    /// history: end, in the same forms (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// tickers: the coins asked for through POST /runtasks whose tickers are missing or
    /// older than --max-age.
    #[arg(long)]
    pub requested: bool,
    /// tickers --requested: how old a coin's last tickers fetch may be.
    #[arg(long, default_value = "24h", value_parser = crate::options::parse_duration)]
    pub max_age: Duration,
    /// toplist: how many coins to rank.
    #[arg(long, default_value_t = 100)]
    pub top: u32,
    /// Items per page (each provider's maximum by default).
    #[arg(long)]
    pub per_page: Option<u32>,
    /// Start from page 1 instead of resuming where a failed fetch stopped.
    #[arg(long)]
    pub restart: bool,
    /// Load the data directory right after fetching (the normal run).
    #[arg(long)]
    pub load: bool,
}

/// Parses a time argument: a date (00:00 UTC), an ISO-8601 time or Unix seconds.
pub fn parse_time(raw: &str) -> Result<i64, String> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .ok_or_else(|| format!("invalid date {raw:?}"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|_| {
            format!(
                "invalid time {raw:?}: expected 2024-01-31, 2024-01-31T12:00:00Z or Unix seconds"
            )
        })
}

fn check_coins(coins: &[String]) -> Result<(), FetchError> {
    match coins.iter().find(|c| !super::valid_coin_id(c)) {
        Some(bad) => Err(FetchError::Config(format!(
            "invalid coin id {bad:?}: CoinGecko ids are letters, digits, '-', '_' and '.'"
        ))),
        None => Ok(()),
    }
}

/// Where `--requested` finds the coins: the database and the data directory.
pub struct RequestedFrom<'a> {
    pub database_url: Option<&'a str>,
    pub db_wait: Duration,
    pub data_dir: &'a Path,
}

/// Turns the arguments into a target. `--requested` reads the database.
pub fn target(
    args: &FetchArgs,
    now: DateTime<Utc>,
    from: &RequestedFrom<'_>,
) -> Result<Target, FetchError> {
    let usage = |m: &str| Err(FetchError::Config(m.to_string()));
    let source = Source::parse(&args.source).ok_or_else(|| {
        FetchError::Config(format!(
            "unknown source {:?}: expected coingecko, coinmarketcap or cryptocompare",
            args.source
        ))
    })?;
    check_coins(&args.coin)?;
    match (source, args.what.as_str()) {
        (Source::CoinGecko, "markets") => Ok(Target::CoinGeckoMarkets),
        (Source::CoinGecko, "history") => {
            let [coin] = args.coin.as_slice() else {
                return usage("coingecko history needs exactly one --coin ID");
            };
            let Some(start) = &args.from else {
                return usage("coingecko history needs --from (and optionally --to)");
            };
            let start = parse_time(start).map_err(FetchError::Config)?;
            let end = match &args.to {
                Some(t) => parse_time(t).map_err(FetchError::Config)?,
                None => now.timestamp(),
            };
            if end <= start {
                return usage("--to must be after --from");
            }
            Ok(Target::CoinGeckoHistory {
                coin: coin.clone(),
                from: start,
                to: end,
            })
        }
        (Source::CoinGecko, "tickers") => {
            // Exactly one of the two.
            let named = !args.coin.is_empty();
            if args.requested == named {
                return usage("coingecko tickers needs either --coin ID… or --requested");
            }
            let coins = if args.requested {
                requested_now(from, args.max_age, now)?
            } else {
                args.coin.clone()
            };
            Ok(Target::CoinGeckoTickers { coins })
        }
        (Source::CoinMarketCap, "listings") => Ok(Target::CmcListings),
        (Source::CryptoCompare, "toplist") => {
            if args.top == 0 {
                return usage("--top must be at least 1");
            }
            Ok(Target::CryptoCompareToplist { top: args.top })
        }
        (source, what) => Err(FetchError::Config(format!(
            "{} has no {what:?}: expected {}",
            source.name(),
            match source {
                Source::CoinGecko => "markets, history or tickers",
                Source::CoinMarketCap => "listings",
                Source::CryptoCompare => "toplist",
            }
        ))),
    }
}

/// The requested coins that need a tickers fetch now.
pub fn requested_now(
    from: &RequestedFrom<'_>,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, FetchError> {
    let url = from.database_url.ok_or_else(|| {
        FetchError::Config("--requested reads the coin tasks: DATABASE_URL is not set".into())
    })?;
    let mut conn = coinflow_shared::db::connect_with_wait(url, from.db_wait)
        .map_err(|e| FetchError::Db(e.to_string()))?;
    let coins = requested::requested_coins(&mut conn, from.data_dir, max_age, now)?;
    let coins: Vec<String> = coins
        .into_iter()
        .filter(|c| super::valid_coin_id(c))
        .collect();
    log::info!(
        "{} requested coin(s) need their tickers fetched",
        coins.len()
    );
    Ok(coins)
}

/// A client for `source` configured from the process environment.
pub fn client_from_env(source: Source, clock: Arc<dyn Clock>) -> Result<HttpClient, FetchError> {
    let env = |k: &str| std::env::var(k).ok();
    let config = source.client_config(&env)?;
    Ok(HttpClient::new(config, clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_iso_or_unix_seconds() {
        assert_eq!(parse_time("2024-01-31"), Ok(1_706_659_200));
        assert_eq!(parse_time("2024-01-31T00:00:10Z"), Ok(1_706_659_210));
        assert_eq!(parse_time("1706659200"), Ok(1_706_659_200));
        assert!(parse_time("yesterday").is_err());
    }
}
