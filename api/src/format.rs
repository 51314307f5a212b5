//! Representations: JSON (default), CSV (RFC 4180: quoted when needed, CRLF, header row)
//! and NDJSON, chosen by `format=` or else by the `Accept` header. Rows know how to
//! write themselves in each; writers append to a byte buffer so that responses can be
//! streamed in pieces.

use crate::error::ApiError;
use rocket::http::{Accept, ContentType};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Ndjson,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    pub(crate) fn content_type(self) -> ContentType {
        match self {
            Format::Json => ContentType::JSON,
            Format::Csv => ContentType::new("text", "csv")
                .with_params([("charset", "utf-8"), ("header", "present")]),
            Format::Ndjson => ContentType::new("application", "x-ndjson"),
        }
    }

    fn from_param(value: &str) -> Result<Format, ApiError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            other => Err(ApiError::bad_request(format!(
                "format must be json, csv or ndjson, not {other:?}"
            ))),
        }
    }

    /// The format an `Accept` header prefers among those we serve; `None` when it names
    /// none of them (the caller then falls back to JSON).
    pub(crate) fn from_accept(accept: &Accept) -> Option<Format> {
        let mut ranked: Vec<_> = accept.iter().collect();
        // Stable sort: equal weights keep the client's order.
        ranked.sort_by(|a, b| b.weight_or(1.0).total_cmp(&a.weight_or(1.0)));
        ranked
            .into_iter()
            .filter(|q| q.weight_or(1.0) > 0.0)
            .find_map(|q| {
                let m = q.media_type();
                match (m.top().as_str(), m.sub().as_str()) {
                    ("text", "csv") => Some(Format::Csv),
                    ("application", "x-ndjson" | "ndjson" | "jsonl" | "x-jsonlines") => {
                        Some(Format::Ndjson)
                    }
                    ("application", "json" | "*") | ("*", "*") => Some(Format::Json),
                    _ => None,
                }
            })
    }

    /// `format=` wins over `Accept`; JSON when neither says anything we serve.
    pub(crate) fn negotiate(
        param: Option<&str>,
        accepted: Option<Format>,
    ) -> Result<Format, ApiError> {
        match param {
            Some(value) => Format::from_param(value),
            None => Ok(accepted.unwrap_or(Format::Json)),
        }
    }
}

/// Appends one CSV field, quoted when it holds a comma, a quote, CR or LF (quotes doubled).
pub(crate) fn push_csv_field(out: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push(b'"');
        for b in value.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// One CSV record being written: fields are separated, quoted when they hold a comma, a
/// quote, CR or LF (quotes doubled), and the record ends with CRLF.
pub(crate) struct CsvLine<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CsvLine<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> CsvLine<'a> {
        CsvLine { out, first: true }
    }

    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        push_csv_field(self.out, value);
        self
    }

    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        self.text(&value.to_string())
    }

    pub(crate) fn float(&mut self, value: f64) -> &mut Self {
        self.text(&value.to_string())
    }

    pub(crate) fn end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A row that can be written as JSON (serde), NDJSON or CSV.
pub(crate) trait Record: Serialize {
    /// The CSV header row.
    const CSV_HEADER: &'static [&'static str];
    /// Writes this row's CSV fields, in header order.
    fn csv(&self, line: &mut CsvLine<'_>);
}

/// Appends the CSV header row.
pub(crate) fn csv_header(out: &mut Vec<u8>, header: &[&str]) {
    let mut line = CsvLine::new(out);
    for h in header {
        line.text(h);
    }
    line.end();
}

/// Appends one row in `format` (JSON rows are bare objects; the caller adds separators).
pub(crate) fn write_row<R: Record>(
    out: &mut Vec<u8>,
    format: Format,
    row: &R,
) -> Result<(), ApiError> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, row).map_err(|e| ApiError::internal("encode row", e))
        }
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, row)
                .map_err(|e| ApiError::internal("encode row", e))?;
            out.push(b'\n');
            Ok(())
        }
        Format::Csv => {
            let mut line = CsvLine::new(out);
            row.csv(&mut line);
            line.end();
            Ok(())
        }
    }
}

/// A whole list of rows: CSV with header, NDJSON lines, or for JSON the object
/// `envelope` with the rows under `key`.
pub(crate) fn render_list<R: Record>(
    format: Format,
    rows: &[R],
    envelope: serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(64 * rows.len().max(1));
    match format {
        Format::Json => {
            let mut object = envelope;
            let data =
                serde_json::to_value(rows).map_err(|e| ApiError::internal("encode rows", e))?;
            object.insert(key.to_string(), data);
            serde_json::to_writer(&mut out, &object)
                .map_err(|e| ApiError::internal("encode rows", e))?;
        }
        Format::Csv | Format::Ndjson => {
            if format == Format::Csv {
                csv_header(&mut out, R::CSV_HEADER);
            }
            for row in rows {
                write_row(&mut out, format, row)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[&str]) -> String {
        let mut out = Vec::new();
        let mut l = CsvLine::new(&mut out);
        for f in fields {
            l.text(f);
        }
        l.end();
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn csv_quotes_only_what_rfc_4180_requires() {
        assert_eq!(line(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            line(&["x,y", "say \"hi\"", "two\nlines"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
        assert_eq!(line(&["", ""]), ",\r\n");
    }

    #[test]
    fn the_format_parameter_beats_accept() {
        assert_eq!(
            Format::negotiate(Some("csv"), Some(Format::Ndjson)).ok(),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::negotiate(None, Some(Format::Ndjson)).ok(),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::negotiate(None, None).ok(), Some(Format::Json));
        assert!(Format::negotiate(Some("xml"), None).is_err());
    }

    #[test]
    fn accept_is_read_by_weight() {
        let accept: Accept = "application/json;q=0.5, text/csv"
            .parse()
            .unwrap_or(Accept::JSON);
        assert_eq!(Format::from_accept(&accept), Some(Format::Csv));
        let browser: Accept = "text/html,application/xhtml+xml,*/*;q=0.8"
            .parse()
            .unwrap_or(Accept::HTML);
        assert_eq!(Format::from_accept(&browser), Some(Format::Json));
        assert_eq!(Format::from_accept(&Accept::HTML), None);
    }
}
