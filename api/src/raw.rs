//! Statements whose results are read positionally, straight from PostgreSQL's binary
//! result: [`RawQuery`] (a statement and its parameters) and [`RawRow`] (one row, read by
//! position), plus the decoders of the binary forms (integers, floats, timestamps, text
//! arrays). Writing values out as JSON or CSV is `crate::read::write`'s job; nothing here
//! formats for the wire.
//!
//! [`RawQuery`] lets diesel keep the statement prepared per connection (its SQL is the
//! cache key), unlike `sql_query`, which is parsed and planned from scratch each time.

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use diesel::connection::{DefaultLoadingMode, LoadConnection};
use diesel::pg::{Pg, PgConnection, PgValue};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::row::{Field, Row};
use diesel::sql_types::{Array, BigInt, Text, Untyped};
use diesel::QueryResult;

/// A bound parameter. The SQL refers to them as `$1`, `$2`, … in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    Int8(i64),
    TextArray(Vec<String>),
}

/// A statement with its parameters, run with the extended protocol and kept prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuery {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl RawQuery {
    pub(crate) fn new(sql: impl Into<String>) -> RawQuery {
        RawQuery {
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    pub(crate) fn bind(mut self, value: Bind) -> RawQuery {
        self.binds.push(value);
        self
    }

    /// Runs the statement and hands each row to `each`, in order. The whole result is
    /// fetched at once (one round trip; a chunk is at most 10 001 rows).
    pub(crate) fn for_each_row<F>(
        &self,
        conn: &mut PgConnection,
        mut each: F,
    ) -> Result<(), ApiError>
    where
        F: FnMut(&RawRow<'_>) -> Result<(), ApiError>,
    {
        let cursor = <PgConnection as LoadConnection<DefaultLoadingMode>>::load(conn, self)?;
        for row in cursor {
            let row = row?;
            each(&RawRow(&row))?;
        }
        Ok(())
    }

    /// Runs the statement and hands all its rows to `f` at once (random access; the
    /// result is one PostgreSQL result in memory).
    pub(crate) fn with_rows<T, F>(&self, conn: &mut PgConnection, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&[RawRow<'_>]) -> Result<T, ApiError>,
    {
        let rows = <PgConnection as LoadConnection<DefaultLoadingMode>>::load(conn, self)?
            .collect::<QueryResult<Vec<_>>>()?;
        let raw: Vec<RawRow<'_>> = rows.iter().map(|r| RawRow(r as &dyn RowAccess)).collect();
        f(&raw)
    }

    /// Runs the statement and collects what `map` makes of each row.
    pub(crate) fn map_rows<T, F>(
        &self,
        conn: &mut PgConnection,
        mut map: F,
    ) -> Result<Vec<T>, ApiError>
    where
        F: FnMut(&RawRow<'_>) -> Result<T, ApiError>,
    {
        let mut out = Vec::new();
        self.for_each_row(conn, |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }
}

impl QueryId for RawQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for RawQuery {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for RawQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Safe to cache: the SQL text is the cache key and the statements are a small,
        // fixed family (values always travel as parameters).
        out.push_sql(&self.sql);
        for bind in &self.binds {
            match bind {
                Bind::Text(v) => out.push_bind_param_value_only::<Text, _>(v)?,
                Bind::Int8(v) => out.push_bind_param_value_only::<BigInt, _>(v)?,
                Bind::TextArray(v) => out.push_bind_param_value_only::<Array<Text>, _>(v)?,
            }
        }
        Ok(())
    }
}

/// One row of a result, read by position.
pub(crate) struct RawRow<'r>(&'r dyn RowAccess);

/// Object-safe access to a row's raw values.
pub(crate) trait RowAccess {
    fn with_value(&self, idx: usize, f: &mut dyn FnMut(Option<PgValue<'_>>));
}

impl<'a, R: Row<'a, Pg>> RowAccess for R {
    fn with_value(&self, idx: usize, f: &mut dyn FnMut(Option<PgValue<'_>>)) {
        let field = self.get(idx);
        f(field.as_ref().and_then(|field| field.value()))
    }
}

pub(crate) fn decode_error(what: &str) -> ApiError {
    ApiError::Internal(format!("unexpected {what} in a result"))
}

impl RawRow<'_> {
    /// Calls `f` with the raw bytes of column `idx` (`None` for NULL).
    pub(crate) fn bytes<T>(&self, idx: usize, f: impl FnOnce(Option<&[u8]>) -> T) -> T {
        let mut f = Some(f);
        let mut out = None;
        self.0.with_value(idx, &mut |v| {
            if let Some(f) = f.take() {
                out = Some(f(v.as_ref().map(|v| v.as_bytes())));
            }
        });
        match out {
            Some(out) => out,
            // `with_value` always calls back; this only satisfies the type checker.
            None => unreachable_callback(),
        }
    }

    pub(crate) fn text(&self, idx: usize) -> Result<Option<String>, ApiError> {
        self.bytes(idx, |b| match b {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_string()))
                .map_err(|_| decode_error("text")),
        })
    }

    pub(crate) fn int8(&self, idx: usize) -> Result<Option<i64>, ApiError> {
        self.bytes(idx, |b| b.map(int8).transpose())
    }

    pub(crate) fn float8(&self, idx: usize) -> Result<Option<f64>, ApiError> {
        self.bytes(idx, |b| b.map(float8).transpose())
    }

    pub(crate) fn bool(&self, idx: usize) -> Result<Option<bool>, ApiError> {
        self.bytes(idx, |b| match b {
            None => Ok(None),
            Some([v]) => Ok(Some(*v != 0)),
            Some(_) => Err(decode_error("bool")),
        })
    }

    pub(crate) fn timestamptz(&self, idx: usize) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.bytes(idx, |b| b.map(|b| timestamp(int8(b)?)).transpose())
    }

    pub(crate) fn text_array(&self, idx: usize) -> Result<Option<Vec<String>>, ApiError> {
        self.bytes(idx, |b| match b {
            None => Ok(None),
            Some(b) => {
                let mut items = Vec::new();
                for_each_array_item(b, |item| {
                    items.push(String::from_utf8_lossy(item.unwrap_or_default()).into_owned());
                })?;
                Ok(Some(items))
            }
        })
    }
}

pub(crate) fn int4(b: &[u8]) -> Result<i32, ApiError> {
    <[u8; 4]>::try_from(b)
        .map(i32::from_be_bytes)
        .map_err(|_| decode_error("int4"))
}

pub(crate) fn int8(b: &[u8]) -> Result<i64, ApiError> {
    <[u8; 8]>::try_from(b)
        .map(i64::from_be_bytes)
        .map_err(|_| decode_error("int8"))
}

pub(crate) fn float8(b: &[u8]) -> Result<f64, ApiError> {
    <[u8; 8]>::try_from(b)
        .map(f64::from_be_bytes)
        .map_err(|_| decode_error("float8"))
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub(crate) const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub(crate) const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

pub(crate) fn timestamp(pg_micros: i64) -> Result<DateTime<Utc>, ApiError> {
    pg_micros
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| decode_error("timestamp"))
}

/// Calls `each` with every element of a one-dimensional binary array (`None` for NULL).
pub(crate) fn for_each_array_item(
    b: &[u8],
    mut each: impl FnMut(Option<&[u8]>),
) -> Result<(), ApiError> {
    let bad = || decode_error("array");
    let word =
        |at: usize| -> Result<i32, ApiError> { b.get(at..at + 4).ok_or_else(bad).and_then(int4) };
    let ndim = word(0)?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        return Err(ApiError::Internal(
            "multi-dimensional arrays are not served".into(),
        ));
    }
    let count = usize::try_from(word(12)?).map_err(|_| bad())?;
    let mut at = 20;
    for _ in 0..count {
        let len = word(at)?;
        at += 4;
        if len < 0 {
            each(None);
            continue;
        }
        let len = len as usize;
        each(Some(b.get(at..at + len).ok_or_else(bad)?));
        at += len;
    }
    Ok(())
}

#[cold]
fn unreachable_callback() -> ! {
    panic!("RowAccess::with_value did not call back")
}
