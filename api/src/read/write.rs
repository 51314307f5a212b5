//! Writing served values: each field's bytes from PostgreSQL's binary result go straight
//! into JSON, NDJSON or CSV, in the column order a source declares, and key values into
//! the text form cursors carry. Takes rows ([`RawRow`]) and the declared columns; never
//! queries.
//!
//! The chunk reads are the API's hot path: decoding each row into a struct by column name
//! and serialising it through serde cost more CPU than PostgreSQL spent producing the row.
//! Here a row is never materialised. The writers produce exactly what serde would (same
//! float and timestamp forms), so the wire format is unchanged.

use crate::error::ApiError;
use crate::format::push_csv_field;
use crate::raw::{
    decode_error, float8, for_each_array_item, int4, int8, timestamp, RawRow, MICROS_PER_DAY,
    PG_EPOCH_UNIX_DAYS, PG_EPOCH_UNIX_MICROS,
};
use chrono::{NaiveDate, SecondsFormat};
use coinflow_shared::dataset::{Kind, ServedColumn};
use serde_json::ser::{CompactFormatter, Formatter};

/// (year, month, day) of a day count from 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// How many fractional digits a timestamp gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fraction {
    /// chrono's `SecondsFormat::AutoSi`: none, 3 or 6 digits, as many as needed (what
    /// serde and the CSV writer have always produced).
    Auto,
    /// Always 6 digits (cursor keys).
    Micros,
}

/// Writes a timestamp (PostgreSQL microseconds) as RFC 3339 in UTC with a `Z`.
fn push_timestamp(out: &mut Vec<u8>, pg_micros: i64, fraction: Fraction) -> Result<(), ApiError> {
    let unix = pg_micros
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .ok_or_else(|| decode_error("timestamp"))?;
    let days = unix.div_euclid(MICROS_PER_DAY);
    let in_day = unix.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        // Years chrono writes with a sign: leave them to chrono.
        let format = match fraction {
            Fraction::Auto => SecondsFormat::AutoSi,
            Fraction::Micros => SecondsFormat::Micros,
        };
        out.extend_from_slice(
            timestamp(pg_micros)?
                .to_rfc3339_opts(format, true)
                .as_bytes(),
        );
        return Ok(());
    }
    let secs = (in_day / 1_000_000) as u32;
    let micros = (in_day % 1_000_000) as u32;
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, secs / 3600, 2);
    out.push(b':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(b':');
    push_digits(out, secs % 60, 2);
    match fraction {
        Fraction::Micros => {
            out.push(b'.');
            push_digits(out, micros, 6);
        }
        Fraction::Auto if micros == 0 => {}
        Fraction::Auto if micros.is_multiple_of(1000) => {
            out.push(b'.');
            push_digits(out, micros / 1000, 3);
        }
        Fraction::Auto => {
            out.push(b'.');
            push_digits(out, micros, 6);
        }
    }
    out.push(b'Z');
    Ok(())
}

/// Writes a date (PostgreSQL days) as `YYYY-MM-DD`.
fn push_date(out: &mut Vec<u8>, pg_days: i32) -> Result<(), ApiError> {
    let days = i64::from(pg_days) + PG_EPOCH_UNIX_DAYS;
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        let date =
            NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| decode_error("date"))?;
        out.extend_from_slice(date.to_string().as_bytes());
        return Ok(());
    }
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    Ok(())
}

/// Appends `value` as a JSON string, escaped exactly as serde_json escapes.
fn push_json_str(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&value[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&value[start..]);
    out.push(b'"');
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    // CompactFormatter writes into a Vec without failing.
    let _ = CompactFormatter.write_i64(out, v);
}

/// A JSON number as serde_json writes an f64 (non-finite values become `null`).
fn push_json_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends one value as JSON.
fn push_json_value(out: &mut Vec<u8>, kind: Kind, b: Option<&[u8]>) -> Result<(), ApiError> {
    let Some(b) = b else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    match kind {
        Kind::Text => {
            std::str::from_utf8(b).map_err(|_| decode_error("text"))?;
            push_json_str(out, b);
        }
        Kind::Int4 => push_i64(out, i64::from(int4(b)?)),
        Kind::Int8 => push_i64(out, int8(b)?),
        Kind::Float8 => push_json_f64(out, float8(b)?),
        Kind::Timestamptz => {
            out.push(b'"');
            push_timestamp(out, int8(b)?, Fraction::Auto)?;
            out.push(b'"');
        }
        Kind::Date => {
            out.push(b'"');
            push_date(out, int4(b)?)?;
            out.push(b'"');
        }
        Kind::TextArray => {
            out.push(b'[');
            let mut first = true;
            for_each_array_item(b, |item| {
                if !first {
                    out.push(b',');
                }
                first = false;
                match item {
                    Some(item) => push_json_str(out, item),
                    None => out.extend_from_slice(b"null"),
                }
            })?;
            out.push(b']');
        }
    }
    Ok(())
}

/// Appends one value as a CSV field (empty for NULL), as the serde-era writer did: floats
/// in Rust's `Display` form, lists joined with `;`.
fn push_csv_value(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    kind: Kind,
    b: Option<&[u8]>,
) -> Result<(), ApiError> {
    let Some(b) = b else { return Ok(()) };
    scratch.clear();
    match kind {
        Kind::Text => {
            let text = std::str::from_utf8(b).map_err(|_| decode_error("text"))?;
            push_csv_field(out, text);
            return Ok(());
        }
        Kind::Int4 => push_i64(out, i64::from(int4(b)?)),
        Kind::Int8 => push_i64(out, int8(b)?),
        Kind::Float8 => {
            use std::io::Write;
            let _ = write!(out, "{}", float8(b)?);
        }
        Kind::Timestamptz => push_timestamp(out, int8(b)?, Fraction::Auto)?,
        Kind::Date => push_date(out, int4(b)?)?,
        Kind::TextArray => {
            let mut first = true;
            for_each_array_item(b, |item| {
                if !first {
                    scratch.push(b';');
                }
                first = false;
                scratch.extend_from_slice(item.unwrap_or_default());
            })?;
            let joined = std::str::from_utf8(scratch).map_err(|_| decode_error("text"))?;
            push_csv_field(out, joined);
        }
    }
    Ok(())
}

/// Writes rows of a fixed column layout; the row's first `offset` columns are not part of
/// the served record (e.g. the data version riding along).
pub(crate) struct RecordWriter<'c> {
    cols: &'c [ServedColumn],
    offset: usize,
    /// `"name":` for each column, prepared once.
    keys: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<'c> RecordWriter<'c> {
    pub(crate) fn new(cols: &'c [ServedColumn], offset: usize) -> RecordWriter<'c> {
        let keys = cols
            .iter()
            .map(|c| {
                let mut key = Vec::with_capacity(c.name.len() + 3);
                push_json_str(&mut key, c.name.as_bytes());
                key.push(b':');
                key
            })
            .collect();
        RecordWriter {
            cols,
            offset,
            keys,
            scratch: Vec::new(),
        }
    }

    /// The row as a JSON object.
    pub(crate) fn json(&mut self, out: &mut Vec<u8>, row: &RawRow<'_>) -> Result<(), ApiError> {
        out.push(b'{');
        for (i, (col, key)) in self.cols.iter().zip(&self.keys).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            row.bytes(self.offset + i, |b| push_json_value(out, col.kind, b))?;
        }
        out.push(b'}');
        Ok(())
    }

    /// The row as a CSV record (CRLF-terminated).
    pub(crate) fn csv(&mut self, out: &mut Vec<u8>, row: &RawRow<'_>) -> Result<(), ApiError> {
        for (i, col) in self.cols.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let scratch = &mut self.scratch;
            row.bytes(self.offset + i, |b| {
                push_csv_value(out, scratch, col.kind, b)
            })?;
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// The text form of a key value, as cursors carry it (and the SQL casts back): text as
/// is, integers in decimal, timestamps as RFC 3339 with 6 fractional digits, dates as
/// `YYYY-MM-DD`.
pub(crate) fn key_text(kind: Kind, b: Option<&[u8]>) -> Result<String, ApiError> {
    let b = b.ok_or_else(|| decode_error("NULL key"))?;
    let mut out = Vec::with_capacity(32);
    match kind {
        Kind::Text => out.extend_from_slice(b),
        Kind::Int4 => push_i64(&mut out, i64::from(int4(b)?)),
        Kind::Int8 => push_i64(&mut out, int8(b)?),
        Kind::Timestamptz => push_timestamp(&mut out, int8(b)?, Fraction::Micros)?,
        Kind::Date => push_date(&mut out, int4(b)?)?,
        Kind::Float8 | Kind::TextArray => return Err(decode_error("key column")),
    }
    String::from_utf8(out).map_err(|_| decode_error("text key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn ts(pg_micros: i64, fraction: Fraction) -> String {
        let mut out = Vec::new();
        push_timestamp(&mut out, pg_micros, fraction).unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }

    fn pg_micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|d| d.timestamp_micros() - PG_EPOCH_UNIX_MICROS)
            .unwrap_or(i64::MIN)
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        for text in [
            "2024-05-02T11:00:00Z",
            "2024-02-29T23:59:59.5Z",
            "2000-01-01T00:00:00.000001Z",
            "1999-12-31T23:59:59.123Z",
            "1969-07-20T20:17:40.123456Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let micros = pg_micros(text);
            let expected = timestamp(micros)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default();
            assert_eq!(ts(micros, Fraction::Auto), expected, "{text}");
            let expected = timestamp(micros)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Micros, true))
                .unwrap_or_default();
            assert_eq!(ts(micros, Fraction::Micros), expected, "{text}");
        }
        // Beyond year 9999 chrono decides the form.
        let far = pg_micros("9999-12-31T23:59:59Z") + 2_000_000;
        assert_eq!(
            ts(far, Fraction::Auto),
            timestamp(far)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        );
    }

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        for days in [-10_957, -1, 0, 1, 8_887, 2_932_896] {
            let mut out = Vec::new();
            push_date(&mut out, days).unwrap_or_default();
            let expected = NaiveDate::from_ymd_opt(2000, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::Duration::days(i64::from(days))))
                .map(|d| d.to_string())
                .unwrap_or_default();
            assert_eq!(String::from_utf8(out).unwrap_or_default(), expected);
        }
    }

    #[test]
    fn strings_and_floats_are_written_as_serde_json_writes_them() {
        for s in [
            "plain",
            "quote \" back \\ slash",
            "ctl \u{1} \u{1f} \n\r\t\u{8}\u{c}",
            "é ✓ \u{7f}",
        ] {
            let mut out = Vec::new();
            push_json_str(&mut out, s.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                serde_json::to_string(s).unwrap_or_default()
            );
        }
        for v in [
            0.0,
            -0.0,
            1.0,
            30000.0,
            0.1,
            1e21,
            1.5e-7,
            123456789.125,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
        ] {
            let mut out = Vec::new();
            push_json_f64(&mut out, v);
            assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                serde_json::to_string(&v).unwrap_or_default()
            );
        }
    }

    #[test]
    fn binary_text_arrays_are_read() {
        // ndim 1, no nulls, oid 25, 2 elements from 1: "ab", "c"; then one with a NULL.
        let mut b = Vec::new();
        for w in [1i32, 0, 25, 2, 1, 2] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(b"c");
        let mut out = Vec::new();
        push_json_value(&mut out, Kind::TextArray, Some(&b)).unwrap_or_default();
        assert_eq!(out, b"[\"ab\",\"c\"]");
        let mut csv = Vec::new();
        push_csv_value(&mut csv, &mut Vec::new(), Kind::TextArray, Some(&b)).unwrap_or_default();
        assert_eq!(csv, b"ab;c");
        let empty = [0u8; 12];
        let mut out = Vec::new();
        push_json_value(&mut out, Kind::TextArray, Some(&empty)).unwrap_or_default();
        assert_eq!(out, b"[]");
        assert!(push_json_value(&mut Vec::new(), Kind::TextArray, Some(&b[..10])).is_err());
    }
}
