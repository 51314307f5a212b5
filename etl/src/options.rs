//! What a run is asked to do: the options `run` and `check` take (SPEC §5), from the
//! command line or a test, and the parser of the duration flags. Read by every stage that
//! a flag steers; never changed by one.

use crate::values::DateOrder;
use std::path::PathBuf;
use std::time::Duration;

/// The options of one run (`coinflow-etl run`) or check (`coinflow-etl check`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub database_url: String,
    pub db_wait: Duration,
    pub data_dir: PathBuf,
    pub no_wait_lock: bool,
    pub force: Vec<PathBuf>,
    pub max_reject_ratio: f64,
    pub rank_tolerance: Duration,
    pub date_order: Option<DateOrder>,
    /// Hash every file, even one whose path and stat match a loaded file's.
    pub verify: bool,
}

impl RunOptions {
    pub fn new(database_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            database_url: database_url.into(),
            db_wait: Duration::from_secs(60),
            data_dir: data_dir.into(),
            no_wait_lock: false,
            force: Vec::new(),
            max_reject_ratio: 0.05,
            rank_tolerance: Duration::from_secs(60),
            date_order: None,
            verify: false,
        }
    }
}

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
