//! The instants the warehouse holds, and how a date-time is written: one definition for
//! the ETL (which rejects a row whose timestamp falls outside the range) and the API
//! (which answers 400 for a query instant outside it instead of handing PostgreSQL a value
//! it cannot store), and one ISO-8601 grammar ([`parse_iso_datetime`]) for both.
//!
//! What each binary adds around the grammar is its own contract: CSV files also carry
//! slash dates, `Mon DD, YYYY` and unix times in seconds, milliseconds or microseconds
//! (told apart by magnitude, `coinflow-etl`'s `values`); a query parameter takes a bare
//! date as the start or the end of that day and an integer as unix seconds, as the API
//! documents.

use chrono::{DateTime, NaiveDateTime, Utc};

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

/// An ISO-8601 date-time (`T` or a space between date and time, seconds and fractions
/// optional) with an offset (`Z`, `+02:00`, `+0200`, `+02`) or, without one, in UTC; a
/// trailing ` UTC` is taken as UTC. In UTC microseconds since the epoch; `None` when `s`
/// is not such a date-time (a bare date is not: what its time is depends on the caller).
pub fn parse_iso_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix(" UTC").unwrap_or(s).trim_end();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, format) {
            return Some(dt.with_timezone(&Utc).timestamp_micros());
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_datetimes_with_and_without_offsets() {
        let at = |s: &str| parse_iso_datetime(s).map(|us| micros(us).to_rfc3339());
        let noon = Some("2024-05-02T12:00:00+00:00".to_string());
        for s in [
            "2024-05-02T12:00:00Z",
            "2024-05-02T12:00:00",
            "2024-05-02 12:00:00",
            "2024-05-02 12:00",
            "2024-05-02T12:00",
            "2024-05-02T14:00:00+02:00",
            "2024-05-02T14:00:00+0200",
            "2024-05-02 14:00:00+02",
            "2024-05-02T14:00+02:00",
            "2024-05-02 12:00:00 UTC",
            "  2024-05-02T12:00:00.000Z ",
        ] {
            assert_eq!(at(s), noon, "{s}");
        }
        assert_eq!(
            at("2024-05-02T12:00:00.123456Z"),
            Some("2024-05-02T12:00:00.123456+00:00".to_string())
        );
        for s in [
            "2024-05-02",
            "1714651200",
            "05/02/2024 12:00",
            "2024-02-30T00:00:00Z",
            "soon",
            "",
        ] {
            assert_eq!(at(s), None, "{s}");
        }
    }

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
