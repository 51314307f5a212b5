//! coinflow's ETL: CSV exports in, a clean PostgreSQL warehouse out.
//!
//! The stages, in the order a row meets them ([`pipeline`] runs them):
//!
//! - `extract` finds input files, fingerprints them and reads their CSV records;
//!   `scan` reads a file's records through `validate` (with `values` and
//!   `resolve`) into batches of typed `rows`, or rejects;
//! - `load` writes the batches: `load::direct` copies new market snapshots straight in,
//!   `load::staged` stages and merges any file, `load::bulk` drops and rebuilds
//!   `market`'s constraints around a large load;
//! - `derive` brings the derived tables up to date, one file per table, through the pure
//!   polars `transform`s;
//! - `ledger` records runs, files and rejects and bumps data versions; [`report`]
//!   summarises.
//!
//! Beside the run: [`generate`] makes synthetic data; [`fetch`] pulls live sources
//! (CoinGecko, CoinMarketCap, CryptoCompare) into canonical CSV files for the run;
//! [`sanitize`] makes input text safe for log lines and the ledger. The public surface
//! is what the binary, the tests and the fuzz targets use; everything else is
//! crate-private.

mod derive;
mod error;
pub mod extract;
pub mod fetch;
pub mod generate;
mod ledger;
mod load;
mod options;
mod pipeline;
pub mod report;
mod resolve;
mod rows;
pub mod sanitize;
mod scan;
mod transform;
mod validate;
pub mod values;

pub use error::EtlError;
pub use options::RunOptions;
pub use pipeline::{check, run};
pub use report::RunReport;

/// Parses a duration such as `60s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}: expected e.g. 60s, 500ms, 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("invalid duration unit {other:?} in {raw:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {raw:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_with_units() {
        let parse = parse_duration;
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert!(parse("soon").is_err());
        assert!(parse("5 parsecs").is_err());
    }
}
