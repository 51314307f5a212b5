//! The instants the warehouse holds: one definition for the ETL (which rejects a row whose
//! timestamp falls outside it) and the API (which answers 400 for a query instant outside
//! it instead of handing PostgreSQL a value it cannot store).

use chrono::{DateTime, Utc};

/// The timestamps the warehouse takes, in UTC microseconds since the Unix epoch:
/// 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z. Daily rows are keyed by days since
/// 1970, and chrono (which the load hands timestamps to) cannot represent every value a
/// unix-microseconds field can hold; PostgreSQL's own range is wider on both sides.
pub const TIMESTAMP_RANGE: std::ops::RangeInclusive<i64> = 0..=253_402_300_799_999_999;

/// [`TIMESTAMP_RANGE`] in words, for messages.
pub const TIMESTAMP_RANGE_TEXT: &str = "1970-01-01 to 9999-12-31";

/// Whether `at` lies within [`TIMESTAMP_RANGE`].
pub fn holds(at: DateTime<Utc>) -> bool {
    TIMESTAMP_RANGE.contains(&at.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(us).unwrap_or_default()
    }

    #[test]
    fn the_range_runs_from_the_epoch_to_the_end_of_9999() {
        let last = micros(253_402_300_799_999_999);
        assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999+00:00");
        assert!(holds(micros(0)));
        assert!(holds(last));
        assert!(!holds(micros(-1)));
        assert!(!holds(micros(253_402_300_800_000_000)));
        assert!(TIMESTAMP_RANGE_TEXT.starts_with("1970-01-01"));
    }
}
