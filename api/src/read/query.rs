//! Building the statements of a chunk: the filters a request may give (checked against
//! what its source's declaration takes), the keyset `WHERE (key) > (last key) ORDER BY
//! key LIMIT n` (an index range scan on the primary key, or on a filter-led index, never
//! OFFSET), the data versions riding along (and, continuing a cursor, the verdict on it:
//! `coinflow_shared::version_changes::refusal_sql`), and `EXPLAIN` of them. Every value
//! travels as a parameter; the SQL text depends only on the source, which filters are
//! present and whether a cursor is continued, so the statements stay prepared per
//! connection. Runs nothing but `EXPLAIN` and the
//! task-results fingerprint.
//!
//! For a source that joins another table (market joins the coin dimension), the join is
//! made to the already-limited rows, with the joined side bounded the same way, so chunk
//! 100 000 costs what chunk 1 costs.

use super::catalog::Source;
use crate::error::ApiError;
use crate::params::{parse_instant, DayEnd, ReqInfo};
use crate::raw::{Bind, RawQuery};
use chrono::{DateTime, SecondsFormat, Utc};
use coinflow_shared::dataset::Kind;
use coinflow_shared::version_changes;
use diesel::pg::PgConnection;
use std::collections::BTreeMap;

/// The filters of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub coin: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub run: Option<i64>,
}

impl Filters {
    /// The filters in a request's query, checked against what `source` accepts.
    pub(crate) fn from_request(source: Source, info: &ReqInfo) -> Result<Filters, ApiError> {
        let refuse = |name: &str| {
            ApiError::bad_request(format!(
                "dataset {} cannot be filtered by {name}; its filters: {}",
                source.name(),
                match source.filter_names() {
                    v if v.is_empty() => "none".to_string(),
                    v => v.join(", "),
                }
            ))
        };
        let mut filters = Filters::default();
        if let Some(coin) = info.non_empty("coin")? {
            if !source.takes_coin() {
                return Err(refuse("coin"));
            }
            filters.coin = Some(coin.to_string());
        }
        for (name, end) in [("from", DayEnd::Start), ("to", DayEnd::End)] {
            if let Some(value) = info.get(name) {
                if source.time_range().is_none() {
                    return Err(refuse(name));
                }
                let at = parse_instant(name, value, end)?;
                if name == "from" {
                    filters.from = Some(at);
                } else {
                    filters.to = Some(at);
                }
            }
        }
        if let Some(run) = info.get("run") {
            if !source.takes_run() {
                return Err(refuse("run"));
            }
            filters.run = Some(crate::params::parse_int("run", run, 1..=i64::MAX)?);
        }
        if let (Some(from), Some(to)) = (filters.from, filters.to) {
            if from > to {
                return Err(ApiError::bad_request("from must not be later than to"));
            }
        }
        Ok(filters)
    }

    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(c) = &self.coin {
            map.insert("coin".into(), c.clone());
        }
        if let Some(f) = self.from {
            map.insert(
                "from".into(),
                f.to_rfc3339_opts(SecondsFormat::Micros, true),
            );
        }
        if let Some(t) = self.to {
            map.insert("to".into(), t.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
        if let Some(r) = self.run {
            map.insert("run".into(), r.to_string());
        }
        map
    }

    pub(crate) fn from_map(map: &BTreeMap<String, String>) -> Result<Filters, ApiError> {
        let bad = || ApiError::bad_request("the cursor carries filters this server does not know");
        let mut filters = Filters::default();
        for (name, value) in map {
            match name.as_str() {
                "coin" => filters.coin = Some(value.clone()),
                "from" => {
                    filters.from =
                        Some(parse_instant("from", value, DayEnd::Start).map_err(|_| bad())?)
                }
                "to" => {
                    filters.to = Some(parse_instant("to", value, DayEnd::End).map_err(|_| bad())?)
                }
                "run" => filters.run = Some(value.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        Ok(filters)
    }
}

/// Numbers a statement's parameters; every value is bound as text and cast in the SQL.
#[derive(Default)]
struct Params {
    binds: Vec<Bind>,
}

impl Params {
    fn param(&mut self, value: String, kind: Kind) -> String {
        self.binds.push(Bind::Text(value));
        let n = self.binds.len();
        match kind {
            Kind::Text => format!("${n}"),
            Kind::Int4 | Kind::Int8 => format!("${n}::int8"),
            Kind::Float8 => format!("${n}::float8"),
            Kind::Timestamptz => format!("${n}::timestamptz"),
            Kind::Date => format!("${n}::date"),
            Kind::TextArray => format!("${n}::text[]"),
        }
    }
}

/// The WHERE clause (its parameters pushed on `params`), the ORDER BY list and, for a
/// scan led by `coin_id`, the condition that bounds the coin dimension the same way.
fn where_and_order(
    source: Source,
    filters: &Filters,
    after: Option<&[String]>,
    params: &mut Params,
) -> Result<(String, String, Option<String>), ApiError> {
    let keys = source.key();
    let mut conds = Vec::new();
    let mut fixed: Vec<&str> = Vec::new();
    let mut coin_bound = None;
    if let Some(coin) = &filters.coin {
        let p = params.param(coin.clone(), Kind::Text);
        conds.push(format!("t.coin_id = {p}"));
        coin_bound = Some(format!("= {p}"));
        fixed.push("coin_id");
    }
    if let Some(run) = filters.run {
        conds.push(format!(
            "t.run_id = {}",
            params.param(run.to_string(), Kind::Int8)
        ));
        fixed.push("run_id");
    }
    if let Some((column, kind)) = source.time_range() {
        let text = |at: DateTime<Utc>| match kind {
            // A coin-day is in range when the day overlaps [from, to].
            Kind::Date => at.date_naive().format("%Y-%m-%d").to_string(),
            _ => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        if let Some(from) = filters.from {
            conds.push(format!("t.{column} >= {}", params.param(text(from), kind)));
        }
        if let Some(to) = filters.to {
            conds.push(format!("t.{column} <= {}", params.param(text(to), kind)));
        }
    }
    if let Some(after) = after {
        if after.len() != keys.len() {
            return Err(ApiError::bad_request(
                "the cursor does not fit this dataset",
            ));
        }
        // Key columns pinned by an equality filter drop out of the comparison, which
        // leaves a plain range on the rest of the index.
        let (cols, values): (Vec<String>, Vec<String>) = keys
            .iter()
            .zip(after)
            .filter(|(k, _)| !fixed.contains(&k.column))
            .map(|(k, v)| (format!("t.{}", k.column), params.param(v.clone(), k.kind)))
            .unzip();
        if coin_bound.is_none() && cols.first().map(String::as_str) == Some("t.coin_id") {
            coin_bound = values.first().map(|p| format!(">= {p}"));
        }
        match cols.len() {
            0 => conds.push("FALSE".to_string()),
            1 => conds.push(format!("{} > {}", cols[0], values[0])),
            _ => conds.push(format!("({}) > ({})", cols.join(", "), values.join(", "))),
        }
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let order = keys
        .iter()
        .map(|k| format!("t.{}", k.column))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((where_clause, order, coin_bound))
}

/// The statements of one chunk (exposed for EXPLAIN checks and the benchmark scripts).
#[derive(Debug, Clone)]
pub struct ChunkStatements {
    /// One row: the data versions the source depends on, then the verdict on the cursor
    /// when continuing (`None` for task results, whose state comes from [`task_state`]).
    pub versions: Option<RawQuery>,
    /// The rows after the cursor, `size + 1` at most: the versions first, then the
    /// verdict on the cursor when continuing, then the served columns.
    pub rows: RawQuery,
    /// Whether the verdict on the cursor follows the versions (a continuation of a
    /// served dataset): NULL when it may go on, else why not
    /// (`coinflow_shared::version_changes::refusal_sql`).
    pub verdict: bool,
}

impl ChunkStatements {
    /// How many columns come before the served ones.
    pub(crate) fn leading(&self, source: Source) -> usize {
        source.versioned_by().len() + usize::from(self.verdict)
    }
}

fn version_columns(source: Source) -> Vec<String> {
    source
        .versioned_by()
        .iter()
        .map(|d| {
            let d = d.name();
            format!("(SELECT version FROM data_versions WHERE dataset = '{d}') AS v_{d}")
        })
        .collect()
}

/// The verdict column on a cursor issued at data version `issued` and positioned at
/// `after`, for a served source (its parameters pushed on `params`).
fn verdict_column(
    source: Source,
    after: Option<&[String]>,
    issued: Option<i64>,
    params: &mut Params,
) -> Option<String> {
    let (Source::Served(served), Some(after), Some(issued)) = (source, after, issued) else {
        return None;
    };
    let version = params.param(issued.to_string(), Kind::Int8);
    let position: Vec<String> = source
        .key()
        .iter()
        .zip(after)
        .map(|(k, v)| params.param(v.clone(), k.kind))
        .collect();
    Some(format!(
        "{} AS verdict",
        version_changes::refusal_sql(served.shape(), &version, &position)
    ))
}

/// The statements that read one chunk of `size` rows after `after`; `issued` is the data
/// version of the cursor being continued, whose verdict then rides along.
pub fn statements(
    source: Source,
    filters: &Filters,
    after: Option<&[String]>,
    size: u32,
    issued: Option<i64>,
) -> Result<ChunkStatements, ApiError> {
    let mut params = Params::default();
    let (where_clause, order, coin_bound) = where_and_order(source, filters, after, &mut params)?;
    let limit = params.param((u64::from(size) + 1).to_string(), Kind::Int8);
    let shape = source.shape();
    let mut select = version_columns(source);
    let verdict = verdict_column(source, after, issued, &mut params);
    select.extend(verdict.clone());
    select.extend(shape.columns.iter().map(|c| match (c.expr, c.column) {
        (Some(expr), _) => expr.to_string(),
        (None, Some(column)) => format!("t.{column}"),
        (None, None) => "NULL".to_string(),
    }));
    let select = select.join(", ");
    let sql = match shape.join {
        // The joined table meets the rows already cut to the chunk; its side is bounded
        // by the cursor's coin too, so no plan walks the coins from the first one.
        Some(join) => format!(
            "SELECT {select} FROM (SELECT {} FROM {} t{where_clause} \
             ORDER BY {order} LIMIT {limit}) t JOIN {}{} ORDER BY {order}",
            shape
                .columns
                .iter()
                .filter_map(|c| c.column.map(|column| format!("t.{column}")))
                .collect::<Vec<_>>()
                .join(", "),
            shape.table,
            join.clause,
            coin_bound
                .map(|b| format!(" AND {} {b}", join.bound))
                .unwrap_or_default()
        ),
        None => format!(
            "SELECT {select} FROM {} t{where_clause} ORDER BY {order} LIMIT {limit}",
            shape.table
        ),
    };
    let versions = match source {
        Source::TaskResults => None,
        _ => {
            let mut own = Params::default();
            let mut columns = version_columns(source);
            columns.extend(verdict_column(source, after, issued, &mut own));
            Some(RawQuery {
                sql: format!("SELECT {}", columns.join(", ")),
                binds: own.binds,
            })
        }
    };
    Ok(ChunkStatements {
        versions,
        rows: RawQuery {
            sql,
            binds: params.binds,
        },
        verdict: verdict.is_some(),
    })
}

/// `EXPLAIN` of a statement, one plan line per element.
pub fn explain(conn: &mut PgConnection, st: &RawQuery) -> Result<Vec<String>, ApiError> {
    explain_with(conn, st, "")
}

/// `EXPLAIN (<options>)` of a statement (e.g. `ANALYZE, TIMING OFF`), one line each.
pub fn explain_with(
    conn: &mut PgConnection,
    st: &RawQuery,
    options: &str,
) -> Result<Vec<String>, ApiError> {
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("({options}) ")
    };
    let explained = RawQuery {
        sql: format!("EXPLAIN {options}{}", st.sql),
        binds: st.binds.clone(),
    };
    explained.map_rows(conn, |row| Ok(row.text(0)?.unwrap_or_default()))
}

/// A fingerprint of the task results: the latest task run that stored a result and the
/// number of results. Task-result ETags come from it.
pub(crate) fn task_state(conn: &mut PgConnection) -> Result<String, ApiError> {
    let state = RawQuery::new("SELECT COALESCE(max(task_run), 0), count(*) FROM task_results")
        .map_rows(conn, |row| {
            Ok((row.int8(0)?.unwrap_or(0), row.int8(1)?.unwrap_or(0)))
        })?;
    let (last_run, results) = state.first().copied().unwrap_or((0, 0));
    Ok(format!("tasks:{last_run}:{results}"))
}
