//! coinflow's ETL: CSV exports in, a clean PostgreSQL warehouse out.
//!
//! Stages (each a module): [`extract`] finds and reads files → [`validate`] turns raw
//! records into typed [`rows`] or rejects (with [`values`] and [`resolve`]) → [`load`]
//! stages them with binary COPY and merges them → [`refresh`] rebuilds the derived
//! tables through the pure polars [`transform`]s and [`slots`] the structure `/top`
//! reads → [`report`] summarises. [`pipeline`] runs the stages; [`generate`] makes
//! synthetic data; [`fetch`] pulls live sources (CoinGecko, CoinMarketCap,
//! CryptoCompare) into canonical CSV files for the run; [`sanitize`] makes input text safe
//! for log lines and the ledger.

pub mod extract;
pub mod fetch;
pub mod generate;
pub mod load;
pub mod pipeline;
pub mod refresh;
pub mod report;
pub mod resolve;
pub mod rows;
pub mod sanitize;
pub mod slots;
pub mod transform;
pub mod validate;
pub mod values;

pub use pipeline::{check, run, EtlError, RunOptions};
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
