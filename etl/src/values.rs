//! Parsing of single CSV values into typed values (SPEC §2 "Value parsing"). Pure
//! functions: no I/O, no allocation on the common paths.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// Tokens that mean "no value".
pub fn is_missing(s: &str) -> bool {
    matches!(s, "" | "-" | "NULL" | "null" | "N/A" | "NaN")
}

/// Why a value could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    Unparsable,
    AmbiguousDateOrder,
    /// A timestamp outside [`TIMESTAMP_RANGE`].
    OutOfRange,
}

/// The timestamps the warehouse takes (1970-01-01 to 9999-12-31, in UTC microseconds);
/// the API checks query instants against the same range.
pub use coinflow_shared::instant::TIMESTAMP_RANGE;

/// A number: plain, scientific notation, or with thousands separators ("46,048,752").
/// `Ok(None)` for the missing tokens.
pub fn parse_number(raw: &str) -> Result<Option<f64>, ValueError> {
    let s = raw.trim();
    if is_missing(s) {
        return Ok(None);
    }
    let value = match s.parse::<f64>() {
        Ok(v) => v,
        Err(_) if has_thousands_separators(s) => s
            .replace(',', "")
            .parse::<f64>()
            .map_err(|_| ValueError::Unparsable)?,
        Err(_) => return Err(ValueError::Unparsable),
    };
    if value.is_finite() {
        Ok(Some(value))
    } else {
        Err(ValueError::Unparsable)
    }
}

fn has_thousands_separators(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let int_part = digits.split('.').next().unwrap_or_default();
    let mut groups = int_part.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    let mut rest = groups.peekable();
    first_ok
        && rest.peek().is_some()
        && rest.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// An integer; a float with no fractional part ("5.0") is accepted.
pub fn parse_integer(raw: &str) -> Result<Option<i64>, ValueError> {
    let s = raw.trim();
    if is_missing(s) {
        return Ok(None);
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(Some(v));
    }
    match parse_number(s)? {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Some(_) => Err(ValueError::Unparsable),
        None => Ok(None),
    }
}

/// The order of slash dates in one column of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateOrder {
    #[default]
    MonthFirst,
    DayFirst,
}

/// What a slash date's first two fields allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlashKind {
    MonthFirstOnly,
    DayFirstOnly,
    Either,
    Invalid,
}

/// Tallies a column's slash dates to decide its order (day-first when it holds
/// day-first-only values and no month-first-only ones).
#[derive(Debug, Clone, Copy, Default)]
pub struct DateOrderVote {
    pub month_first_only: u64,
    pub day_first_only: u64,
}

impl DateOrderVote {
    pub fn observe(&mut self, raw: &str) {
        if let Some((a, b, _)) = slash_parts(raw.trim()) {
            match classify(a, b) {
                SlashKind::MonthFirstOnly => self.month_first_only += 1,
                SlashKind::DayFirstOnly => self.day_first_only += 1,
                _ => {}
            }
        }
    }

    pub fn order(&self) -> DateOrder {
        if self.day_first_only > 0 && self.month_first_only == 0 {
            DateOrder::DayFirst
        } else {
            DateOrder::MonthFirst
        }
    }
}

fn classify(a: u32, b: u32) -> SlashKind {
    match (a > 12, b > 12) {
        (false, true) => SlashKind::MonthFirstOnly,
        (true, false) => SlashKind::DayFirstOnly,
        (false, false) => SlashKind::Either,
        (true, true) => SlashKind::Invalid,
    }
}

/// Splits `a/b/YYYY[ time]` into (a, b, rest-with-year-and-time).
fn slash_parts(s: &str) -> Option<(u32, u32, &str)> {
    let (a, rest) = s.split_once('/')?;
    let (b, rest) = rest.split_once('/')?;
    if a.is_empty() || a.len() > 2 || b.is_empty() || b.len() > 2 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?, rest))
}

/// A timestamp in any supported form, as UTC microseconds within [`TIMESTAMP_RANGE`].
pub fn parse_timestamp(raw: &str, order: DateOrder) -> Result<Option<Micros>, ValueError> {
    match parse_any_timestamp(raw, order)? {
        Some(micros) if !TIMESTAMP_RANGE.contains(&micros) => Err(ValueError::OutOfRange),
        other => Ok(other),
    }
}

fn parse_any_timestamp(raw: &str, order: DateOrder) -> Result<Option<Micros>, ValueError> {
    let s = raw.trim();
    if is_missing(s) {
        return Ok(None);
    }
    let bytes = s.as_bytes();
    if bytes.iter().all(|b| b.is_ascii_digit()) {
        return unix(s).map(Some);
    }
    if bytes.len() >= 10 && bytes[4] == b'-' && bytes[7] == b'-' {
        return iso(s).map(Some);
    }
    if s.contains('/') {
        return slash(s, order).map(Some);
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%b %d, %Y") {
        return Ok(Some(midnight(date)));
    }
    if let Ok(seconds) = s.parse::<f64>() {
        if seconds.is_finite() && seconds > 0.0 && s.contains('.') {
            return Ok(Some((seconds * 1e6).round() as i64));
        }
    }
    Err(ValueError::Unparsable)
}

fn unix(s: &str) -> Result<Micros, ValueError> {
    let n: i64 = s.parse().map_err(|_| ValueError::Unparsable)?;
    Ok(if n < 100_000_000_000 {
        n * 1_000_000
    } else if n < 100_000_000_000_000 {
        n * 1_000
    } else {
        n
    })
}

fn midnight(date: NaiveDate) -> Micros {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
}

/// `YYYY-MM-DD` (midnight UTC) or any ISO-8601 date-time the warehouse's one grammar
/// takes ([`coinflow_shared::instant::parse_iso_datetime`]).
fn iso(s: &str) -> Result<Micros, ValueError> {
    let date = s.strip_suffix(" UTC").unwrap_or(s).trim_end();
    if date.len() == 10 {
        return NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map(midnight)
            .map_err(|_| ValueError::Unparsable);
    }
    coinflow_shared::instant::parse_iso_datetime(s).ok_or(ValueError::Unparsable)
}

fn slash(s: &str, order: DateOrder) -> Result<Micros, ValueError> {
    let (a, b, rest) = slash_parts(s).ok_or(ValueError::Unparsable)?;
    let year_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let year: i32 = match year_len {
        4 => rest[..4].parse().map_err(|_| ValueError::Unparsable)?,
        2 => {
            2000 + rest[..2]
                .parse::<i32>()
                .map_err(|_| ValueError::Unparsable)?
        }
        _ => return Err(ValueError::Unparsable),
    };
    let (month, day) = match (classify(a, b), order) {
        (SlashKind::Invalid, _) => return Err(ValueError::Unparsable),
        (SlashKind::MonthFirstOnly, DateOrder::DayFirst)
        | (SlashKind::DayFirstOnly, DateOrder::MonthFirst) => {
            return Err(ValueError::AmbiguousDateOrder)
        }
        (_, DateOrder::MonthFirst) => (a, b),
        (_, DateOrder::DayFirst) => (b, a),
    };
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(ValueError::Unparsable)?;
    let time = parse_clock(rest[year_len..].trim_start_matches([',', ' ']))?;
    Ok(date.and_time(time).and_utc().timestamp_micros())
}

/// `h:mm:ss AM`, `HH:MM` or `HH:MM:SS`; empty is midnight.
fn parse_clock(s: &str) -> Result<NaiveTime, ValueError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(NaiveTime::MIN);
    }
    let upper = s.to_ascii_uppercase();
    for format in ["%I:%M:%S %p", "%I:%M %p", "%H:%M:%S", "%H:%M"] {
        if let Ok(t) = NaiveTime::parse_from_str(&upper, format) {
            return Ok(t);
        }
    }
    Err(ValueError::Unparsable)
}

/// Microseconds → chrono, for COPY.
pub fn to_datetime(micros: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The candle intervals the warehouse keeps, by name, with their length in seconds.
/// `candles.interval` holds one of these names; the migration that introduced it
/// defines the same set for the database (`candle_interval_length`, `candle_spacing`).
pub const CANDLE_INTERVALS: [(&str, i64); 7] = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("4h", 14_400),
    ("1d", 86_400),
];

/// The canonical name of a candle interval as an export writes it (`1d`, `1D`, `D`,
/// `daily`, `24h`, `1440`, `60m`, `1hour`, …; a bare number is minutes, as
/// exchange APIs write it), or None when it names no interval of [`CANDLE_INTERVALS`].
pub fn parse_candle_interval(raw: &str) -> Option<&'static str> {
    let v = raw.trim().to_ascii_lowercase().replace([' ', '_'], "");
    let seconds = match v.as_str() {
        "d" | "day" | "daily" => 86_400,
        "h" | "hour" | "hourly" => 3_600,
        "m" | "min" | "minute" => 60,
        _ => {
            let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
            let count: i64 = v[..digits].parse().ok()?;
            let unit = match &v[digits..] {
                "" | "m" | "min" | "mins" | "minute" | "minutes" => 60,
                "h" | "hr" | "hour" | "hours" => 3_600,
                "d" | "day" | "days" => 86_400,
                _ => return None,
            };
            count.checked_mul(unit)?
        }
    };
    CANDLE_INTERVALS
        .iter()
        .find(|(_, s)| *s == seconds)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Micros {
        parse_timestamp(s, DateOrder::MonthFirst)
            .expect("parses")
            .expect("present")
    }

    fn iso_micros(s: &str) -> Micros {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .timestamp_micros()
    }

    #[test]
    fn numbers_plain_scientific_and_with_thousands_separators() {
        assert_eq!(parse_number("42.5"), Ok(Some(42.5)));
        assert_eq!(parse_number("9.72e-10"), Ok(Some(9.72e-10)));
        assert_eq!(parse_number("46,048,752"), Ok(Some(46_048_752.0)));
        assert_eq!(parse_number(" 1,234.5 "), Ok(Some(1234.5)));
        for missing in ["", "-", "NULL", "null", "N/A", "NaN"] {
            assert_eq!(parse_number(missing), Ok(None), "{missing}");
        }
        assert_eq!(parse_number("12,34"), Err(ValueError::Unparsable));
        assert_eq!(parse_number("abc"), Err(ValueError::Unparsable));
        assert_eq!(parse_number("inf"), Err(ValueError::Unparsable));
        assert_eq!(
            parse_number("29022.41839530417"),
            Ok(Some(29022.41839530417))
        );
    }

    #[test]
    fn integers_accept_whole_floats_only() {
        assert_eq!(parse_integer("7"), Ok(Some(7)));
        assert_eq!(parse_integer("7.0"), Ok(Some(7)));
        assert_eq!(parse_integer("7.5"), Err(ValueError::Unparsable));
    }

    #[test]
    fn every_documented_timestamp_form() {
        let midnight = iso_micros("2021-01-01T00:00:00Z");
        assert_eq!(ts("2021-01-01"), midnight);
        assert_eq!(ts("2021-01-01T00:00:00Z"), midnight);
        assert_eq!(ts("2021-01-01T02:00:00+02:00"), midnight);
        assert_eq!(ts("2021-01-01 00:00:00 UTC"), midnight);
        assert_eq!(ts("2021-01-01 00:00:00.000"), midnight);
        assert_eq!(ts("2021-01-01T00:00:00"), midnight);
        assert_eq!(ts("Jan 01, 2021"), midnight);
        assert_eq!(ts("1609459200"), midnight);
        assert_eq!(ts("1609459200000"), midnight);
        assert_eq!(ts("1609459200000000"), midnight);
        assert_eq!(ts("1/1/2021, 12:00:00 AM"), midnight);
        assert_eq!(ts("1/1/21 00:00"), midnight);
        assert_eq!(
            ts("12/31/2021, 1:46:11 PM"),
            iso_micros("2021-12-31T13:46:11Z")
        );
        assert_eq!(
            ts("2013-04-29 23:59:59"),
            iso_micros("2013-04-29T23:59:59Z")
        );
    }

    #[test]
    fn slash_dates_follow_the_column_order() {
        let aug8 = iso_micros("2015-08-08T23:59:00Z");
        assert_eq!(
            parse_timestamp("08/08/15 23:59", DateOrder::DayFirst),
            Ok(Some(aug8))
        );
        let sep8 = iso_micros("2015-09-08T23:59:00Z");
        assert_eq!(
            parse_timestamp("08/09/15 23:59", DateOrder::DayFirst),
            Ok(Some(sep8))
        );
        assert_eq!(
            parse_timestamp("13/09/15", DateOrder::MonthFirst),
            Err(ValueError::AmbiguousDateOrder)
        );
        for out_of_range in ["1969-12-31T23:59:59Z", "9000000000000000000"] {
            assert_eq!(
                parse_timestamp(out_of_range, DateOrder::MonthFirst),
                Err(ValueError::OutOfRange),
                "{out_of_range}"
            );
        }
        assert_eq!(ts("1970-01-01"), 0);
        assert_eq!(ts("9999-12-31T23:59:59.999999Z"), *TIMESTAMP_RANGE.end());
        assert!(crate::validate::reason::TIMESTAMP_OUT_OF_RANGE
            .contains(coinflow_shared::instant::TIMESTAMP_RANGE_TEXT));
        assert_eq!(
            parse_timestamp("09/13/15", DateOrder::DayFirst),
            Err(ValueError::AmbiguousDateOrder)
        );
        assert_eq!(
            parse_timestamp("13/14/15", DateOrder::DayFirst),
            Err(ValueError::Unparsable)
        );
    }

    #[test]
    fn a_column_is_day_first_only_without_month_first_only_values() {
        let mut vote = DateOrderVote::default();
        vote.observe("08/08/15 23:59");
        vote.observe("25/08/15 23:59");
        assert_eq!(vote.order(), DateOrder::DayFirst);
        vote.observe("08/25/15 23:59");
        assert_eq!(vote.order(), DateOrder::MonthFirst);
        assert_eq!(DateOrderVote::default().order(), DateOrder::MonthFirst);
    }

    #[test]
    fn candle_intervals_are_read_as_exports_write_them() {
        for (raw, name) in [
            ("1d", "1d"),
            ("1D", "1d"),
            ("daily", "1d"),
            ("24h", "1d"),
            ("1440", "1d"),
            ("1h", "1h"),
            ("60", "1h"),
            ("60m", "1h"),
            ("Hourly", "1h"),
            ("4h", "4h"),
            ("240", "4h"),
            ("1m", "1m"),
            ("15min", "15m"),
        ] {
            assert_eq!(parse_candle_interval(raw), Some(name), "{raw}");
        }
        for raw in ["", "2h", "1w", "month", "x", "-1h", "99999999999999999999m"] {
            assert_eq!(parse_candle_interval(raw), None, "{raw}");
        }
    }
}
