//! The coins asked for through `POST /runtasks` (stored in `task_results`) whose tickers
//! need fetching: those with no complete tickers fetch on record, or only ones older
//! than the allowed age. A fetch's age is the stamp in its file name
//! (`tickers-ID-STAMP.csv`), found in the ledger (`etl_files`, loaded files) and on disk
//! (pending files and the `fetched/loaded/` archive); a `-partial` file does not count.
//!
//! It only reads the database.

use super::output::{self, ARCHIVE_DIR, FETCHED_DIR};
use super::{FetchError, Source};
use chrono::{DateTime, Utc};
use coinflow_shared::ledger::FileStatus;
use coinflow_shared::schema::{etl_files, task_results};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The coin and fetch time in the name of a complete tickers file, if it is one.
pub fn ticker_file(name: &str) -> Option<(String, DateTime<Utc>)> {
    let file = name.rsplit('/').next()?;
    let stem = file.strip_prefix("tickers-")?.strip_suffix(".csv")?;
    // A second fetch in the same second got `-2`, `-3`, …
    let stem = match stem.rsplit_once('-') {
        Some((head, n))
            if !n.is_empty() && n.len() < 5 && n.chars().all(|c| c.is_ascii_digit()) =>
        {
            head
        }
        _ => stem,
    };
    let (coin, stamp) = stem.rsplit_once('-')?;
    let at = output::parse_stamp(stamp)?;
    (!coin.is_empty()).then(|| (coin.to_string(), at))
}

/// The newest complete tickers fetch of each coin, from the names given.
pub fn newest_fetches<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, DateTime<Utc>> {
    let mut newest: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (coin, at) in names.into_iter().filter_map(ticker_file) {
        let entry = newest.entry(coin).or_insert(at);
        if at > *entry {
            *entry = at;
        }
    }
    newest
}

/// The requested coins (in task order) without a tickers fetch younger than `max_age`.
pub fn requested_coins(
    conn: &mut PgConnection,
    data_dir: &Path,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, FetchError> {
    let db = |e: diesel::result::Error| FetchError::Db(e.to_string());
    let requested: Vec<String> = task_results::table
        .select(task_results::coin_id)
        .order((task_results::task_run, task_results::coin_id))
        .load(conn)
        .map_err(db)?;
    let prefix = format!("{FETCHED_DIR}/{}/tickers-%", Source::CoinGecko.name());
    let mut names: Vec<String> = etl_files::table
        .filter(etl_files::status.eq(FileStatus::Loaded))
        .filter(etl_files::path.like(prefix))
        .select(etl_files::path)
        .load(conn)
        .map_err(db)?;
    let source = Source::CoinGecko.name();
    for dir in [
        output::source_dir(data_dir, source),
        data_dir.join(FETCHED_DIR).join(ARCHIVE_DIR).join(source),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            names.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    let newest = newest_fetches(names.iter().map(String::as_str));
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    Ok(requested
        .into_iter()
        .filter(|coin| newest.get(coin).is_none_or(|at| now - *at > max_age))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_file_names_give_coin_and_time() {
        let at = output::parse_stamp("20261206T201500Z");
        assert_eq!(
            ticker_file("fetched/coingecko/tickers-usd-coin-20261206T201500Z.csv"),
            at.map(|t| ("usd-coin".to_string(), t))
        );
        assert_eq!(
            ticker_file("tickers-bitcoin-20261206T201500Z-2.csv"),
            at.map(|t| ("bitcoin".to_string(), t))
        );
        assert_eq!(
            ticker_file("tickers-bitcoin-20261206T201500Z-partial.csv"),
            None
        );
        assert_eq!(ticker_file("markets-20261206T201500Z.csv"), None);
    }

    #[test]
    fn the_newest_fetch_of_each_coin_wins() {
        let newest = newest_fetches([
            "tickers-bitcoin-20261201T000000Z.csv",
            "tickers-bitcoin-20261205T000000Z.csv",
            "tickers-bitcoin-20261203T000000Z.csv",
            "tickers-ethereum-20261101T000000Z.csv",
        ]);
        assert_eq!(
            newest.get("bitcoin").copied(),
            output::parse_stamp("20261205T000000Z")
        );
        assert_eq!(newest.len(), 2);
    }
}
