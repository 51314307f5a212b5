//! What handlers read from a request besides the body: the query parameters (checked
//! against the names each route accepts, so a typo is a 400 and not silently ignored),
//! the preferred representation, `If-None-Match`, `Authorization` and `Content-Type`;
//! and the parsers that turn query values into typed values or a 400.

use crate::error::ApiError;
use crate::format::Format;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use coinflow_shared::dataset::Served;
use coinflow_shared::instant::{self, TIMESTAMP_RANGE_TEXT};
use rocket::http::ContentType;
use rocket::request::{FromRequest, Outcome, Request};
use std::convert::Infallible;

/// The largest chunk a client may ask for.
pub(crate) const MAX_SIZE: u32 = 10_000;

/// The request facts handlers need, gathered by one infallible guard.
pub(crate) struct ReqInfo {
    /// Decoded query parameters, in order.
    pairs: Vec<(String, String)>,
    /// The path and query as sent (for ETags).
    pub(crate) uri: String,
    /// The representation `Accept` prefers, if it names one we serve.
    pub(crate) accepted: Option<Format>,
    pub(crate) if_none_match: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<ContentType>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ReqInfo {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let pairs = req
            .uri()
            .query()
            .map(|q| {
                q.segments()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let header = |name: &str| req.headers().get_one(name).map(str::to_string);
        Outcome::Success(ReqInfo {
            pairs,
            uri: req.uri().to_string(),
            accepted: req.accept().and_then(Format::from_accept),
            if_none_match: header("If-None-Match"),
            authorization: header("Authorization"),
            content_type: req.content_type().cloned(),
        })
    }
}

impl ReqInfo {
    /// Fails with 400 on a parameter not in `allowed`, or given twice.
    pub(crate) fn allow(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let accepted = if allowed.is_empty() {
                    "this endpoint takes no query parameters".to_string()
                } else {
                    format!("accepted: {}", allowed.join(", "))
                };
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; {accepted}"
                )));
            }
            if self.pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name:?} is given more than once"
                )));
            }
            // PostgreSQL text cannot hold NUL: refuse it here, not as a database error.
            if self.pairs[i].1.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name:?} contains a NUL character"
                )));
            }
        }
        Ok(())
    }

    /// The value of a parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter, which must not be empty when present.
    pub(crate) fn non_empty(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            Some(v) if v.trim().is_empty() => {
                Err(ApiError::bad_request(format!("{name} must not be empty")))
            }
            other => Ok(other.map(str::trim)),
        }
    }

    /// The negotiated representation.
    pub(crate) fn format(&self) -> Result<Format, ApiError> {
        Format::negotiate(self.get("format"), self.accepted)
    }
}

/// A chunk size: an integer in 1..=10 000.
pub(crate) fn parse_size(value: &str) -> Result<u32, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "size must be an integer from 1 to {MAX_SIZE}, not {value:?}"
        ))
    };
    let n: i64 = value.trim().parse().map_err(|_| bad())?;
    if (1..=i64::from(MAX_SIZE)).contains(&n) {
        u32::try_from(n).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayEnd {
    Start,
    End,
}

/// An instant given as ISO-8601 (with or without zone; no zone means UTC), a bare date
/// (its start or its end, as `day_end` says) or unix seconds.
/// An instant outside the range the warehouse holds ([`coinflow_shared::instant`]) is a 400
/// like any other bad value: PostgreSQL would refuse some of them and could hold none.
pub(crate) fn parse_instant(
    name: &str,
    value: &str,
    day_end: DayEnd,
) -> Result<DateTime<Utc>, ApiError> {
    let out_of_range = || {
        ApiError::bad_request(format!(
            "{name} must lie within {TIMESTAMP_RANGE_TEXT} (the instants the warehouse holds), not {value:?}"
        ))
    };
    match parse_any_instant(name, value, day_end) {
        Ok(at) if instant::holds(at) => Ok(at),
        Ok(_) => Err(out_of_range()),
        // Unix seconds beyond what chrono represents.
        Err(_) if is_integer(value.trim()) => Err(out_of_range()),
        Err(e) => Err(e),
    }
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn parse_any_instant(name: &str, value: &str, day_end: DayEnd) -> Result<DateTime<Utc>, ApiError> {
    let v = value.trim();
    let bad = || {
        ApiError::bad_request(format!(
            "{name} must be an ISO-8601 date-time, a date (YYYY-MM-DD) or unix seconds, not {value:?}"
        ))
    };
    if is_integer(v) {
        let secs: i64 = v.parse().map_err(|_| bad())?;
        return DateTime::from_timestamp(secs, 0).ok_or_else(bad);
    }
    if let Ok(date) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let time = match day_end {
            DayEnd::Start => NaiveTime::MIN,
            DayEnd::End => NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).ok_or_else(bad)?,
        };
        return Ok(Utc.from_utc_datetime(&date.and_time(time)));
    }
    // An unencoded `+` in a query string arrives as a space: `…T10:00:00 02:00`.
    let repaired = repair_plus(v);
    let v = repaired.as_deref().unwrap_or(v);
    instant::parse_iso_datetime(v)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)
}

fn repair_plus(v: &str) -> Option<String> {
    let (head, tail) = v.rsplit_once(' ')?;
    let zone_like = (tail.len() == 5 && tail.as_bytes().get(2) == Some(&b':'))
        || tail.len() == 4
        || tail.len() == 2;
    (head.contains('T') && zone_like && tail.bytes().all(|b| b.is_ascii_digit() || b == b':'))
        .then(|| format!("{head}+{tail}"))
}

/// A positive integer parameter within `range`.
pub(crate) fn parse_int(
    name: &str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{name} must be an integer from {} to {}, not {value:?}",
            range.start(),
            range.end()
        ))
    };
    let n: i64 = value.trim().parse().map_err(|_| bad())?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// The representations a `format` query value may name (documentation of the enum).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum FormatName {
    Json,
    Csv,
    Ndjson,
}

/// The datasets served by `/read` (documentation of the enum): their names, from the
/// served datasets' declarations.
pub(crate) struct DatasetName;

impl utoipa::PartialSchema for DatasetName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "The datasets served by `/read` (documentation of the enum).",
            ))
            .enum_values(Some(Served::ALL.iter().map(|s| s.name())))
            .into()
    }
}

impl utoipa::ToSchema for DatasetName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_outside_the_warehouse_range_and_nul_values_are_refused() {
        for bad in ["0000-01-01", "1969-12-31T23:59:59Z", "-1", "10000-01-01"] {
            assert!(
                parse_instant("from", bad, DayEnd::Start).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(parse_instant("from", "1970-01-01", DayEnd::Start).is_ok());
        assert!(parse_instant("to", "9999-12-31", DayEnd::End).is_ok());
        let info = |pairs: &[(&str, &str)]| ReqInfo {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            uri: String::new(),
            accepted: None,
            if_none_match: None,
            authorization: None,
            content_type: None,
        };
        assert!(info(&[("contains", "bin\0ance")])
            .allow(&["contains"])
            .is_err());
        assert!(info(&[("contains", "binance")])
            .allow(&["contains"])
            .is_ok());
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn sizes_outside_one_to_ten_thousand_are_refused() {
        assert_eq!(parse_size("1").ok(), Some(1));
        assert_eq!(parse_size("10000").ok(), Some(10_000));
        for bad in ["0", "-1", "10001", "abc", "", "1.5", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn instants_in_every_accepted_spelling() {
        let noon = at("2024-03-01T12:00:00Z");
        for s in [
            "2024-03-01T12:00:00Z",
            "2024-03-01T14:00:00+02:00",
            "2024-03-01T14:00:00 02:00",
            "2024-03-01T12:00:00",
            "2024-03-01 12:00:00",
            "2024-03-01T12:00",
            "1709294400",
        ] {
            assert_eq!(parse_instant("t", s, DayEnd::End).ok(), Some(noon), "{s}");
        }
        assert_eq!(
            parse_instant("t", "2024-03-01", DayEnd::End).ok(),
            Some(at("2024-03-01T23:59:59.999999Z"))
        );
        assert_eq!(
            parse_instant("t", "2024-03-01", DayEnd::Start).ok(),
            Some(at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            parse_instant("t", "9999-12-31", DayEnd::End).ok(),
            Some(at("9999-12-31T23:59:59.999999Z")),
            "the last day the warehouse holds"
        );
        assert_eq!(
            parse_instant("t", "0", DayEnd::End).ok(),
            Some(at("1970-01-01T00:00:00Z"))
        );
        for bad in [
            "yesterday",
            "2024-13-01",
            "",
            "12:00",
            "-300000000000",
            "9467020800000",
            "1969-12-31T23:59:59Z",
            "-1",
            "+10000-01-01T00:00:00Z",
        ] {
            assert!(
                parse_instant("t", bad, DayEnd::End).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
