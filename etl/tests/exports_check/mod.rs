//! The checks of the public export formats, run on a folder laid out like
//! `../shared/datasets/`: `exports.rs` runs them on the small committed fixtures,
//! `real_exports.rs` on the real folders when `COINFLOW_REAL_DATASETS` names them.
//! Expected counts are computed from the raw files with a plain CSV read, independently
//! of the ETL; the figures that only a given folder can state come in as arguments.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Links a dataset file into the fixture directory (nothing is copied).
fn link(fx: &Fixture, name: &str, source: &Path) {
    let target = fx.path().join(name);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(source, &target).expect("symlink");
}

struct Raw {
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl Raw {
    fn read(path: &Path) -> Raw {
        let mut reader = csv::Reader::from_path(path).expect("open raw file");
        let header = reader
            .headers()
            .expect("header")
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader.records().map(|r| r.expect("record")).collect();
        Raw { header, rows }
    }

    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    fn numbers(&self, name: &str) -> Vec<Option<f64>> {
        let c = self.col(name);
        self.rows
            .iter()
            .map(|r| r[c].trim().parse::<f64>().ok())
            .collect()
    }
}

fn zeros(values: &[Option<f64>], keep: &[bool]) -> i64 {
    values
        .iter()
        .zip(keep)
        .filter(|(v, k)| **k && **v == Some(0.0))
        .count() as i64
}

/// `rows` and `shared_symbols` are what the listing holds (counted by hand).
pub fn cmc_listing_fans_out_into_coins_markets_and_rankings(
    datasets: &Path,
    rows: i64,
    shared_symbols: usize,
) {
    let source = datasets.join("cmc_listing_2017/coinmarketcap_06122017.csv");
    let raw = Raw::read(&source);
    let fx = Fixture::new();
    link(&fx, "cmc/coinmarketcap_06122017.csv", &source);
    let report = fx.run();
    assert_reconciles(&report);
    let f = file(&report, "cmc/coinmarketcap_06122017.csv");
    let n = raw.rows.len() as i64;
    assert_eq!(n, rows);
    let keep = vec![true; raw.rows.len()];
    let caps = raw.numbers("market_cap_usd");
    let volumes = raw.numbers("24h_volume_usd");
    assert_eq!(
        (f.dataset.as_deref(), f.read, f.loaded, f.rejected),
        (Some("listings"), n, n, 0)
    );
    assert_eq!(f.zeroed, zeros(&caps, &keep) + zeros(&volumes, &keep));
    assert!(
        f.extra_columns.contains(&String::new()),
        "the unnamed index column is listed as extra"
    );

    let ids: HashSet<&str> = raw.rows.iter().map(|r| &r[raw.col("id")]).collect();
    assert_eq!(fx.count("SELECT count(*) FROM coins"), ids.len() as i64);
    assert_eq!(fx.count("SELECT count(*) FROM market"), n);
    assert_eq!(fx.count("SELECT count(*) FROM rankings"), n);
    let missing_caps = caps.iter().filter(|c| c.is_none_or(|v| v == 0.0)).count();
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE market_cap_usd IS NULL"),
        missing_caps as i64
    );

    // Shared symbols stay separate coins.
    let mut by_symbol: HashMap<&str, usize> = HashMap::new();
    for r in &raw.rows {
        *by_symbol.entry(&r[raw.col("symbol")]).or_default() += 1;
    }
    let shared = by_symbol.values().filter(|&&k| k > 1).count();
    assert_eq!(shared, shared_symbols);
    assert_eq!(
        fx.count(
            "SELECT count(*) FROM (SELECT symbol FROM coins GROUP BY symbol HAVING count(*) > 1) s"
        ),
        shared as i64
    );

    let btc = raw
        .rows
        .iter()
        .find(|r| &r[raw.col("id")] == "bitcoin")
        .expect("bitcoin row");
    let btc_price: f64 = btc[raw.col("price_usd")].parse().expect("price");
    assert_eq!(
        fx.float("SELECT price_usd FROM market WHERE coin_id = 'bitcoin'"),
        Some(btc_price)
    );
    assert_eq!(
        fx.text("SELECT coin_id FROM market WHERE rank = 1"),
        Some("bitcoin".into())
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM coins WHERE name IN ('Crystal Clear', 'Sphre AIR')"),
        2,
        "names are trimmed"
    );
    assert_eq!(
        fx.text("SELECT rank_source FROM market WHERE coin_id = 'bitcoin'"),
        Some("listings".into())
    );
}

/// `names`: the `<name>-usd-max.csv` files of `coingecko_exports/`, btc and shib among them.
pub fn coingecko_exports_take_the_coin_from_the_file_name(datasets: &Path, names: &[&str]) {
    let dir = datasets.join("coingecko_exports");
    let fx = Fixture::new();
    link(
        &fx,
        "fullcoinlist.csv",
        &datasets.join("coingecko_daily_2021/fullcoinlist.csv"),
    );
    for &name in names {
        link(
            &fx,
            &format!("exports/{name}-usd-max.csv"),
            &dir.join(format!("{name}-usd-max.csv")),
        );
    }
    let report = fx.run();
    assert_reconciles(&report);
    let mut total = 0i64;
    for &name in names {
        let raw = Raw::read(&dir.join(format!("{name}-usd-max.csv")));
        let n = raw.rows.len() as i64;
        let keep = vec![true; raw.rows.len()];
        let f = file(&report, &format!("exports/{name}-usd-max.csv"));
        assert_eq!(
            (f.dataset.as_deref(), f.read, f.loaded, f.rejected),
            (Some("markets"), n, n, 0),
            "{name}"
        );
        let expected_zeroed =
            zeros(&raw.numbers("market_cap"), &keep) + zeros(&raw.numbers("total_volume"), &keep);
        assert_eq!(f.zeroed, expected_zeroed, "{name}");
        total += n;
    }
    assert_eq!(fx.count("SELECT count(*) FROM market"), total);
    // bitcoin's first day, as written in the file.
    let btc = Raw::read(&dir.join("btc-usd-max.csv"));
    let first = &btc.rows[0];
    assert_eq!(&first[0], "2013-04-28 00:00:00 UTC");
    let price: f64 = first[1].parse().expect("price");
    assert_eq!(
        fx.float("SELECT price_usd FROM market WHERE coin_id = 'bitcoin' AND ts = '2013-04-28T00:00:00Z'"), Some(price)
    );
    // shib prices are all scientific notation and stay exact.
    let shib = Raw::read(&dir.join("shib-usd-max.csv"));
    let last = shib.rows.last().expect("row");
    let shib_price: f64 = last[1].parse().expect("price");
    assert_eq!(
        fx.float(
            "SELECT price_usd FROM market WHERE coin_id = 'shiba-inu' ORDER BY ts DESC LIMIT 1"
        ),
        Some(shib_price)
    );
}

/// `files` and `rows`: how many history files the folder holds and their data rows.
pub fn kaggle_histories_load_as_candles_with_both_date_styles(
    datasets: &Path,
    files_expected: usize,
    rows: i64,
) {
    let dir = datasets.join("kaggle_coin_history_2021");
    let fx = Fixture::new();
    link(
        &fx,
        "fullcoinlist.csv",
        &datasets.join("coingecko_daily_2021/fullcoinlist.csv"),
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".csv"))
        .collect();
    files.sort();
    assert_eq!(files.len(), files_expected);
    for name in &files {
        link(&fx, &format!("kaggle/{name}"), &dir.join(name));
    }
    let report = fx.run();
    assert_reconciles(&report);
    let mut total = 0i64;
    for name in &files {
        let raw = Raw::read(&dir.join(name));
        let n = raw.rows.len() as i64;
        let keep = vec![true; raw.rows.len()];
        let f = file(&report, &format!("kaggle/{name}"));
        assert_eq!(
            (f.dataset.as_deref(), f.read, f.loaded, f.rejected),
            (Some("candles"), n, n, 0),
            "{name}"
        );
        assert_eq!(
            f.zeroed,
            zeros(&raw.numbers("Volume"), &keep) + zeros(&raw.numbers("Marketcap"), &keep),
            "{name}"
        );
        total += n;
    }
    assert_eq!(total, rows);
    assert_eq!(fx.count("SELECT count(*) FROM candles"), total);
    assert_eq!(
        fx.count("SELECT count(DISTINCT coin_id) FROM candles"),
        files_expected as i64
    );
    // Excel-resaved Ethereum: "08/08/15 23:59" is day-first (the column holds 13/08/15 …).
    let eth = Raw::read(&dir.join("coin_Ethereum.csv"));
    assert_eq!(&eth.rows[0][3], "08/08/15 23:59");
    let open: f64 = eth.rows[0][6].parse().expect("open");
    assert_eq!(
        fx.float(
            "SELECT open FROM candles WHERE coin_id = 'ethereum' AND ts = '2015-08-08T23:59:00Z'"
        ),
        Some(open)
    );
    // Candles feed the daily table.
    assert_eq!(
        fx.count("SELECT count(*) FROM daily WHERE source = 'candles'"),
        total
    );
}

pub fn coingecko_daily_files_reject_negative_values_and_set_aside_the_orphan(datasets: &Path) {
    let dir = datasets.join("coingecko_daily_2021");
    let fx = Fixture::new();
    link(&fx, "fullcoinlist.csv", &dir.join("fullcoinlist.csv"));
    let coins = ["bitcoin", "hybrix", "x8-project", "qredo", "shiba-inu"];
    for c in coins {
        link(
            &fx,
            &format!("coins/{c}.csv"),
            &dir.join(format!("coins/{c}.csv")),
        );
    }
    let report = fx.run();
    assert_eq!(
        report.status, "partial",
        "qredo is not in the coin list: its file is set aside"
    );
    assert_reconciles(&report);
    let mut expected_reasons: HashMap<&str, i64> = HashMap::new();
    let mut loaded_rows = 0i64;
    for c in coins {
        let raw = Raw::read(&dir.join(format!("coins/{c}.csv")));
        let prices = raw.numbers("price");
        let caps = raw.numbers("marketCap");
        let volumes = raw.numbers("totalVolume");
        let f = file(&report, &format!("coins/{c}.csv"));
        assert_eq!(f.read, raw.rows.len() as i64);
        if c == "qredo" {
            assert_eq!((f.status.as_str(), f.rejected), ("set_aside", f.read));
            *expected_reasons.entry("unknown coin").or_default() += raw.rows.len() as i64;
            continue;
        }
        let mut keep = Vec::new();
        for i in 0..raw.rows.len() {
            let reason = if prices[i].is_none_or(|p| p <= 0.0) {
                Some("price <= 0")
            } else if caps[i].is_some_and(|v| v < 0.0) {
                Some("negative market cap")
            } else if volumes[i].is_some_and(|v| v < 0.0) {
                Some("negative volume")
            } else {
                None
            };
            if let Some(reason) = reason {
                *expected_reasons.entry(reason).or_default() += 1;
            }
            keep.push(reason.is_none());
        }
        let kept = keep.iter().filter(|k| **k).count() as i64;
        assert_eq!((f.loaded, f.rejected), (kept, f.read - kept), "{c}");
        assert_eq!(
            f.zeroed,
            zeros(&caps, &keep) + zeros(&volumes, &keep),
            "{c}"
        );
        loaded_rows += kept;
    }
    assert!(
        expected_reasons.get("price <= 0").copied().unwrap_or(0) > 0,
        "hybrix has negative prices"
    );
    for (reason, n) in &expected_reasons {
        assert_eq!(
            fx.count(&format!(
                "SELECT count(*) FROM etl_rejects WHERE reason = '{reason}'"
            )),
            *n,
            "{reason}"
        );
    }
    assert_eq!(fx.count("SELECT count(*) FROM market"), loaded_rows);
    // bitcoin on 2021-01-01, as written in the file.
    let btc = Raw::read(&dir.join("coins/bitcoin.csv"));
    let price: f64 = btc.rows[0][btc.col("price")].parse().expect("price");
    assert_eq!(
        fx.float("SELECT price_usd FROM market WHERE coin_id = 'bitcoin' AND ts = '2021-01-01T00:00:00Z'"), Some(price)
    );
    // The extra intraday point of 2021-12-31 is its own snapshot and a second daily sample.
    assert_eq!(
        fx.count("SELECT samples FROM daily WHERE coin_id = 'bitcoin' AND day = '2021-12-31'"),
        2
    );
}

/// Every CSV file under `datasets` at once: each is recognised, every row is accounted
/// for (the fixture checks read = loaded + duplicate + updated + rejected + blank +
/// set_aside for every file, in the report and in `etl_files`, and the rejects kept),
/// and a re-run of the unchanged folder loads nothing and stores no reject twice.
pub fn every_export_loads_with_every_row_accounted_and_a_rerun_adds_nothing(
    datasets: &Path,
    min_files: usize,
) {
    let fx = Fixture::new();
    let mut stack = vec![datasets.to_path_buf()];
    let mut linked = 0;
    let mut rows = 0i64;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "csv") {
                let name = path.strip_prefix(datasets).expect("under root");
                link(&fx, &name.to_string_lossy(), &path);
                linked += 1;
                rows += Raw::read(&path).rows.len() as i64;
            }
        }
    }
    assert!(linked >= min_files, "{linked} files");
    let first = fx.run();
    assert_reconciles(&first);
    assert_eq!(first.files.len(), linked);
    let unrecognized: Vec<&str> = first
        .files
        .iter()
        .filter(|f| f.status == "unrecognized")
        .map(|f| f.path.as_str())
        .collect();
    assert!(unrecognized.is_empty(), "{unrecognized:?}");
    assert_eq!(first.totals.read, rows, "{:?}", first.totals);
    let rejects = fx.count("SELECT count(*) FROM etl_rejects");
    assert_eq!(rejects, first.totals.rejected);
    // Unchanged files: the loaded ones are skipped, the set-aside ones are not judged
    // again, and no reject is stored twice.
    let second = fx.run();
    assert!(second
        .files
        .iter()
        .all(|f| f.status == "skipped" || f.status == "set_aside"));
    assert_eq!(second.totals.loaded, 0);
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), rejects);
}
