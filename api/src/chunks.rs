//! Keyset-paginated chunked reads, for every served dataset and for task results.
//!
//! A chunk is one statement (plus, for `If-None-Match` requests, a version check before
//! it): the rows after the cursor in key order, `LIMIT size + 1`, each carrying the
//! dataset's data version (an uncorrelated subquery, evaluated once, so the version and
//! the rows come from the same snapshot). Row `size` gives the next cursor and row
//! `size + 1` says whether there is more, so the `Link` header is known before the body
//! is written. A cursor from an older data version is refused with 409.
//!
//! The result is read positionally from PostgreSQL's binary format and written straight
//! into JSON, CSV or NDJSON ([`crate::raw`]); the body goes out whole when it is small
//! and in pieces of [`PIECE_BYTES`] otherwise, so no more than the chunk's result (at
//! most 10 001 rows) and one piece are held.
//!
//! The scan is `WHERE <filters> AND (key) > (last key) ORDER BY key LIMIT n`: an index
//! range scan on the primary key (or on a filter-led index), never OFFSET. For market,
//! the coin dimension is joined to the already-limited rows, with the coin side bounded
//! the same way, so chunk 100 000 costs what chunk 1 costs.

use crate::error::ApiError;
use crate::format::{csv_header, Format};
use crate::params::{parse_instant, DayEnd, ReqInfo};
use crate::raw::{col, key_text, Bind, Col, Kind, RawQuery, RawRow, RecordWriter};
use crate::reply::{etag, none_match, Reply};
use crate::state::{with_read_conn, AppState, LARGE_CHUNK};
use chrono::{DateTime, SecondsFormat, Utc};
use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::dataset::Served;
use diesel::pg::PgConnection;
use rocket::tokio::sync::{mpsc, oneshot};
use std::collections::BTreeMap;

/// The largest piece of body handed to the response stream at once; a body that fits in
/// one piece goes out with a `Content-Length`.
pub const PIECE_BYTES: usize = 256 * 1024;

/// What a chunked read scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Served(Served),
    /// The coin task results of `GET /coins`, in task order.
    TaskResults,
}

/// A column of the sort key: its SQL name and its position in the served columns.
struct KeyCol {
    column: &'static str,
    kind: Kind,
    pos: usize,
}

const fn key(column: &'static str, kind: Kind, pos: usize) -> KeyCol {
    KeyCol { column, kind, pos }
}

/// A served column: the SQL expression that yields it and its wire name and kind.
struct Field {
    sql: &'static str,
    col: Col,
}

const fn field(sql: &'static str, name: &'static str, kind: Kind) -> Field {
    Field {
        sql,
        col: col(name, kind),
    }
}

const MARKET_FIELDS: &[Field] = &[
    field("t.coin_id", "coin_id", Kind::Text),
    // Symbols are stored as each source writes them (`btc`, `BTC`) and served in upper
    // case, as the original service's top list did.
    field("upper(c.symbol)", "symbol", Kind::Text),
    field("c.name", "name", Kind::Text),
    field("t.ts", "ts", Kind::Timestamptz),
    field("t.price_usd", "price_usd", Kind::Float8),
    field("t.market_cap_usd", "market_cap_usd", Kind::Float8),
    field("t.volume_24h_usd", "volume_24h_usd", Kind::Float8),
    field("t.rank", "rank", Kind::Int4),
    field("t.rank_source", "rank_source", Kind::Text),
];
const DAILY_FIELDS: &[Field] = &[
    field("t.coin_id", "coin_id", Kind::Text),
    field("t.day", "day", Kind::Date),
    field("t.open", "open", Kind::Float8),
    field("t.high", "high", Kind::Float8),
    field("t.low", "low", Kind::Float8),
    field("t.close", "close", Kind::Float8),
    field("t.avg_price", "avg_price", Kind::Float8),
    field("t.max_market_cap_usd", "max_market_cap_usd", Kind::Float8),
    field("t.last_volume_usd", "last_volume_usd", Kind::Float8),
    field("t.samples", "samples", Kind::Int4),
    field("t.source", "source", Kind::Text),
];
const COIN_FIELDS: &[Field] = &[
    field("t.id", "id", Kind::Text),
    field("upper(t.symbol)", "symbol", Kind::Text),
    field("t.name", "name", Kind::Text),
    field("t.cmc_id", "cmc_id", Kind::Int8),
];
const COIN_EXCHANGE_FIELDS: &[Field] = &[
    field("t.coin_id", "coin_id", Kind::Text),
    field("t.exchanges", "exchanges", Kind::TextArray),
    field("t.exchange_count", "exchange_count", Kind::Int4),
];
const TRADER_FIELDS: &[Field] = &[
    field("t.person_id", "person_id", Kind::Int8),
    field("t.first_name", "first_name", Kind::Text),
    field("t.last_name", "last_name", Kind::Text),
    field("t.email", "email", Kind::Text),
    field("t.date_added", "date_added", Kind::Timestamptz),
    field("t.last_trade_ts", "last_trade_ts", Kind::Timestamptz),
    field("t.last_trade_coin_id", "last_trade_coin_id", Kind::Text),
    field("t.last_trade_side", "last_trade_side", Kind::Text),
    field("t.last_trade_quantity", "last_trade_quantity", Kind::Float8),
    field("t.last_trade_price", "last_trade_price", Kind::Float8),
    field("t.trade_count", "trade_count", Kind::Int8),
];
const POSITION_FIELDS: &[Field] = &[
    field("t.person_id", "person_id", Kind::Int8),
    field("t.coin_id", "coin_id", Kind::Text),
    field("t.net_quantity", "net_quantity", Kind::Float8),
    field("t.trade_count", "trade_count", Kind::Int8),
    field("t.avg_buy_price", "avg_buy_price", Kind::Float8),
    field("t.last_price_usd", "last_price_usd", Kind::Float8),
    field("t.market_value_usd", "market_value_usd", Kind::Float8),
];
const REJECT_FIELDS: &[Field] = &[
    field("t.run_id", "run_id", Kind::Int8),
    field("t.file", "file", Kind::Text),
    field("t.line", "line", Kind::Int8),
    field("t.column_name", "column_name", Kind::Text),
    field("t.raw_value", "raw_value", Kind::Text),
    field("t.reason", "reason", Kind::Text),
    field("t.raw_line", "raw_line", Kind::Text),
];
const TASK_FIELDS: &[Field] = &[
    field("t.coin_id", "id", Kind::Text),
    field("t.exchanges", "exchanges", Kind::TextArray),
    field("t.task_run", "taskRun", Kind::Int8),
];

const MARKET_KEY: &[KeyCol] = &[
    key("coin_id", Kind::Text, 0),
    key("ts", Kind::Timestamptz, 3),
];
const DAILY_KEY: &[KeyCol] = &[key("coin_id", Kind::Text, 0), key("day", Kind::Date, 1)];
const COIN_KEY: &[KeyCol] = &[key("id", Kind::Text, 0)];
const COIN_EXCHANGE_KEY: &[KeyCol] = &[key("coin_id", Kind::Text, 0)];
const TRADER_KEY: &[KeyCol] = &[key("person_id", Kind::Int8, 0)];
const POSITION_KEY: &[KeyCol] = &[
    key("person_id", Kind::Int8, 0),
    key("coin_id", Kind::Text, 1),
];
const REJECT_KEY: &[KeyCol] = &[
    key("run_id", Kind::Int8, 0),
    key("file", Kind::Text, 1),
    key("line", Kind::Int8, 2),
];
/// Task order; the served columns name them `taskRun` and `id`.
const TASK_KEY: &[KeyCol] = &[
    key("task_run", Kind::Int8, 2),
    key("coin_id", Kind::Text, 0),
];

impl Source {
    pub const TASK_RESULTS: &'static str = "task_results";

    pub fn name(self) -> &'static str {
        match self {
            Source::Served(s) => s.name(),
            Source::TaskResults => Self::TASK_RESULTS,
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        if name == Self::TASK_RESULTS {
            return Some(Source::TaskResults);
        }
        Served::from_name(name).map(Source::Served)
    }

    fn table(self) -> &'static str {
        match self {
            Source::Served(Served::Market) => "market",
            Source::Served(Served::Daily) => "daily",
            Source::Served(Served::Coins) => "coins",
            Source::Served(Served::CoinExchanges) => "coin_exchanges",
            Source::Served(Served::Traders) => "traders",
            Source::Served(Served::Positions) => "positions",
            Source::Served(Served::Rejects) => "etl_rejects",
            Source::TaskResults => "task_results",
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Source::Served(Served::Market) => MARKET_FIELDS,
            Source::Served(Served::Daily) => DAILY_FIELDS,
            Source::Served(Served::Coins) => COIN_FIELDS,
            Source::Served(Served::CoinExchanges) => COIN_EXCHANGE_FIELDS,
            Source::Served(Served::Traders) => TRADER_FIELDS,
            Source::Served(Served::Positions) => POSITION_FIELDS,
            Source::Served(Served::Rejects) => REJECT_FIELDS,
            Source::TaskResults => TASK_FIELDS,
        }
    }

    /// The served columns, in order (JSON keys, CSV header).
    pub fn columns(self) -> Vec<Col> {
        self.fields().iter().map(|f| f.col).collect()
    }

    /// The datasets whose data versions decide this source's bytes: its own first (the
    /// one cursors carry), then any it joins (market rows carry coin names).
    fn versioned_by(self) -> &'static [&'static str] {
        match self {
            Source::Served(Served::Market) => &["market", "coins"],
            Source::Served(Served::Daily) => &["daily"],
            Source::Served(Served::Coins) => &["coins"],
            Source::Served(Served::CoinExchanges) => &["coin_exchanges"],
            Source::Served(Served::Traders) => &["traders"],
            Source::Served(Served::Positions) => &["positions"],
            Source::Served(Served::Rejects) => &["rejects"],
            Source::TaskResults => &[],
        }
    }

    /// The sort key, which is also the primary key (task results: `(task_run, coin_id)`).
    fn key(self) -> &'static [KeyCol] {
        match self {
            Source::Served(Served::Market) => MARKET_KEY,
            Source::Served(Served::Daily) => DAILY_KEY,
            Source::Served(Served::Coins) => COIN_KEY,
            Source::Served(Served::CoinExchanges) => COIN_EXCHANGE_KEY,
            Source::Served(Served::Traders) => TRADER_KEY,
            Source::Served(Served::Positions) => POSITION_KEY,
            Source::Served(Served::Rejects) => REJECT_KEY,
            Source::TaskResults => TASK_KEY,
        }
    }

    fn takes_coin(self) -> bool {
        matches!(
            self,
            Source::Served(
                Served::Market | Served::Daily | Served::CoinExchanges | Served::Positions
            )
        )
    }

    fn takes_time_range(self) -> bool {
        matches!(self, Source::Served(Served::Market | Served::Daily))
    }

    fn takes_run(self) -> bool {
        matches!(self, Source::Served(Served::Rejects))
    }

    /// The filter parameter names this source accepts.
    pub fn filter_names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.takes_coin() {
            names.push("coin");
        }
        if self.takes_time_range() {
            names.extend(["from", "to"]);
        }
        if self.takes_run() {
            names.push("run");
        }
        names
    }
}

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
    pub fn from_request(source: Source, info: &ReqInfo) -> Result<Filters, ApiError> {
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
                if !source.takes_time_range() {
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

    fn to_map(&self) -> BTreeMap<String, String> {
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

    fn from_map(map: &BTreeMap<String, String>) -> Result<Filters, ApiError> {
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
    let time_column = match source {
        Source::Served(Served::Daily) => Some(("day", Kind::Date)),
        Source::Served(Served::Market) => Some(("ts", Kind::Timestamptz)),
        _ => None,
    };
    if let Some((column, kind)) = time_column {
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
    /// One row: the data versions the source depends on (`None` for task results, whose
    /// state comes from [`task_state`]).
    pub versions: Option<RawQuery>,
    /// The rows after the cursor, `size + 1` at most: the versions first, then the
    /// served columns.
    pub rows: RawQuery,
}

fn version_columns(source: Source) -> Vec<String> {
    source
        .versioned_by()
        .iter()
        .map(|d| format!("(SELECT version FROM data_versions WHERE dataset = '{d}') AS v_{d}"))
        .collect()
}

/// The statements that read one chunk of `size` rows after `after`.
pub fn statements(
    source: Source,
    filters: &Filters,
    after: Option<&[String]>,
    size: u32,
) -> Result<ChunkStatements, ApiError> {
    let mut params = Params::default();
    let (where_clause, order, coin_bound) = where_and_order(source, filters, after, &mut params)?;
    let limit = params.param((u64::from(size) + 1).to_string(), Kind::Int8);
    let mut select = version_columns(source);
    select.extend(source.fields().iter().map(|f| f.sql.to_string()));
    let select = select.join(", ");
    let sql = match source {
        // The coin dimension joins the rows already cut to the chunk; its side is bounded
        // by the cursor's coin too, so no plan walks the coins from the first one.
        Source::Served(Served::Market) => format!(
            "SELECT {select} FROM (SELECT t.coin_id, t.ts, t.price_usd, t.market_cap_usd, \
             t.volume_24h_usd, t.rank, t.rank_source FROM market t{where_clause} \
             ORDER BY {order} LIMIT {limit}) t JOIN coins c ON c.id = t.coin_id{} ORDER BY {order}",
            coin_bound
                .map(|b| format!(" AND c.id {b}"))
                .unwrap_or_default()
        ),
        _ => format!(
            "SELECT {select} FROM {} t{where_clause} ORDER BY {order} LIMIT {limit}",
            source.table()
        ),
    };
    let versions = match source {
        Source::TaskResults => None,
        _ => Some(RawQuery::new(format!(
            "SELECT {}",
            version_columns(source).join(", ")
        ))),
    };
    Ok(ChunkStatements {
        versions,
        rows: RawQuery {
            sql,
            binds: params.binds,
        },
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

/// The data version of a served dataset (0 before any ETL run).
pub fn data_version(conn: &mut PgConnection, dataset: &str) -> Result<i64, ApiError> {
    let versions = RawQuery::new("SELECT version FROM data_versions WHERE dataset = $1")
        .bind(Bind::Text(dataset.to_string()))
        .map_rows(conn, |row| row.int8(0))?;
    Ok(versions.into_iter().flatten().next().unwrap_or(0))
}

/// A fingerprint of the task results: the latest task run that stored a result and the
/// number of results. Task-result ETags come from it.
pub fn task_state(conn: &mut PgConnection) -> Result<String, ApiError> {
    let state = RawQuery::new("SELECT COALESCE(max(task_run), 0), count(*) FROM task_results")
        .map_rows(conn, |row| {
            Ok((row.int8(0)?.unwrap_or(0), row.int8(1)?.unwrap_or(0)))
        })?;
    let (last_run, results) = state.first().copied().unwrap_or((0, 0));
    Ok(format!("tasks:{last_run}:{results}"))
}

/// One chunk to serve.
pub struct ChunkPlan {
    pub source: Source,
    pub filters: Filters,
    /// The sort key of the last row served; `None` for the first chunk.
    pub after: Option<Vec<String>>,
    pub size: u32,
    /// The data version the cursor was issued at, when continuing.
    pub cursor_version: Option<i64>,
    pub format: Format,
    pub if_none_match: Option<String>,
    /// What, besides the data, determines the bytes (the request URI and format).
    pub etag_seed: String,
    /// The path the `Link: rel="next"` header points at.
    pub next_path: String,
    /// An explicit `format=` to carry into the next link.
    pub format_param: Option<String>,
}

impl ChunkPlan {
    /// A plan continuing from `token`, which must be a cursor of `expected` (any served
    /// dataset when `None`).
    pub fn resume(
        codec: &CursorCodec,
        token: &str,
        expected: Option<Source>,
    ) -> Result<(Source, Cursor, Filters), ApiError> {
        let cursor = codec
            .decode(token)
            .map_err(|e| ApiError::bad_request(format!("invalid cursor: {e}")))?;
        // Signed by this server, but a leaked key must not buy unbounded chunks.
        if !(1..=crate::params::MAX_SIZE).contains(&cursor.size) {
            return Err(ApiError::bad_request(format!(
                "the cursor's size {} is outside 1..{}",
                cursor.size,
                crate::params::MAX_SIZE
            )));
        }
        let source = Source::from_name(&cursor.dataset)
            .ok_or_else(|| ApiError::bad_request("the cursor names an unknown dataset"))?;
        match expected {
            Some(e) if e != source => {
                return Err(ApiError::bad_request(format!(
                    "this cursor belongs to {}, not {}",
                    source.name(),
                    e.name()
                )))
            }
            None if source == Source::TaskResults => {
                return Err(ApiError::bad_request("this cursor belongs to GET /coins"));
            }
            _ => {}
        }
        let filters = Filters::from_map(&cursor.filters)?;
        Ok((source, cursor, filters))
    }
}

/// What decides a chunk's bytes besides the request: the source's data versions.
struct Versions {
    /// The source's own data version (what cursors carry; 0 for task results).
    own: i64,
    /// Every version the bytes depend on, for the ETag.
    state: String,
}

impl Versions {
    fn of(versions: &[i64]) -> Versions {
        Versions {
            own: versions.first().copied().unwrap_or(0),
            state: versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(":"),
        }
    }

    /// The versions riding on the first `n` columns of a row.
    fn from_row(row: &RawRow<'_>, n: usize) -> Result<Versions, ApiError> {
        let v = (0..n)
            .map(|i| row.int8(i).map(|v| v.unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Versions::of(&v))
    }
}

/// The current versions of a source, read on their own.
fn read_versions(
    conn: &mut PgConnection,
    st: &ChunkStatements,
    width: usize,
) -> Result<Versions, ApiError> {
    match &st.versions {
        None => Ok(Versions {
            own: 0,
            state: task_state(conn)?,
        }),
        Some(q) => {
            let rows = q.map_rows(conn, |row| Versions::from_row(row, width))?;
            rows.into_iter()
                .next()
                .ok_or_else(|| ApiError::Internal("the version query returned no row".into()))
        }
    }
}

/// A chunk's body, ready or coming.
enum Body {
    Whole(Vec<u8>),
    Stream(mpsc::Receiver<Vec<u8>>),
}

struct Head {
    etag: String,
    version: i64,
    next_cursor: Option<String>,
    /// `None`: not modified.
    body: Option<Body>,
}

/// Serves one chunk: the head once the rows are read, the body whole or in pieces.
pub async fn serve(state: &AppState, plan: ChunkPlan) -> Result<Reply, ApiError> {
    let (head_tx, head_rx) = oneshot::channel::<Result<Head, ApiError>>();
    let format = plan.format;
    let next_path = plan.next_path.clone();
    let format_param = plan.format_param.clone();
    let pool = state.pool.clone();
    let reachability = state.reachability.clone();
    let codec = state.codec.clone();
    let permit = if plan.size > LARGE_CHUNK {
        Some(state.cold_permit()?)
    } else {
        None
    };
    rocket::tokio::task::spawn_blocking(move || {
        // Held until the last row is written.
        let _permit = permit;
        let mut head_tx = Some(head_tx);
        let result = with_read_conn(&pool, &reachability, |conn| {
            answer(conn, &codec, &plan, &mut head_tx)
        });
        if let Err(e) = result {
            match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(e));
                }
                // Headers are out: the body is cut short, which the client sees as a
                // truncated response.
                None => log::error!("chunk of {} ended early: {e}", plan.source.name()),
            }
        }
    });
    let head = head_rx
        .await
        .map_err(|_| ApiError::Internal("the chunk task ended without an answer".into()))??;
    let mut reply = match head.body {
        None => return Ok(Reply::not_modified(&head.etag)),
        Some(Body::Whole(bytes)) => Reply::formatted(format, bytes),
        Some(Body::Stream(rx)) => Reply::stream(format.content_type(), rx),
    };
    reply = reply
        .etag(&head.etag)
        .header("X-Data-Version", head.version.to_string());
    if let Some(cursor) = head.next_cursor {
        let format_part = format_param
            .map(|f| format!("&format={f}"))
            .unwrap_or_default();
        reply = reply
            .header(
                "Link",
                format!("<{next_path}?cursor={cursor}{format_part}>; rel=\"next\""),
            )
            .header("X-Next-Cursor", cursor);
    }
    Ok(reply)
}

fn send_head(head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>, head: Head) {
    if let Some(tx) = head_tx.take() {
        let _ = tx.send(Ok(head));
    }
}

/// The blocking half of [`serve`]: reads the chunk and answers `head_tx`. Safe to run
/// again on another connection as long as it failed before the head went out.
fn answer(
    conn: &mut PgConnection,
    codec: &CursorCodec,
    plan: &ChunkPlan,
    head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>,
) -> Result<(), ApiError> {
    let st = statements(plan.source, &plan.filters, plan.after.as_deref(), plan.size)?;
    let width = plan.source.versioned_by().len();
    // Task results have no version column; a conditional request is answered from the
    // versions alone, without reading rows.
    let mut known = None;
    if plan.source == Source::TaskResults || plan.if_none_match.is_some() {
        let versions = read_versions(conn, &st, width)?;
        let tag = chunk_etag(plan, &versions);
        if none_match(plan.if_none_match.as_deref(), &tag) {
            send_head(
                head_tx,
                Head {
                    etag: tag,
                    version: versions.own,
                    next_cursor: None,
                    body: None,
                },
            );
            return Ok(());
        }
        known = Some(versions);
    }
    let answered = st.rows.with_rows(conn, |rows| {
        let Some(first) = rows.first() else {
            return Ok(false);
        };
        // The versions of the rows' own snapshot.
        let versions = match (width, known.take()) {
            (0, Some(known)) => known,
            _ => Versions::from_row(first, width)?,
        };
        write_chunk(codec, plan, &versions, rows, width, head_tx)?;
        Ok(true)
    })?;
    if !answered {
        let versions = match known {
            Some(v) => v,
            None => read_versions(conn, &st, width)?,
        };
        write_chunk(codec, plan, &versions, &[], width, head_tx)?;
    }
    Ok(())
}

fn chunk_etag(plan: &ChunkPlan, versions: &Versions) -> String {
    etag(&[
        plan.source.name(),
        &versions.state,
        plan.format.name(),
        &plan.etag_seed,
    ])
}

/// Checks the cursor's version, then sends the head and writes the rows (the first
/// `size` of `rows`; one more only says that more follow).
fn write_chunk(
    codec: &CursorCodec,
    plan: &ChunkPlan,
    versions: &Versions,
    rows: &[RawRow<'_>],
    width: usize,
    head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>,
) -> Result<(), ApiError> {
    if let Some(seen) = plan.cursor_version {
        if seen != versions.own && plan.source != Source::TaskResults {
            return Err(ApiError::Conflict(format!(
                "dataset {} changed since this cursor was issued (data version {seen}, now {}); \
                 start again from the first chunk",
                plan.source.name(),
                versions.own
            )));
        }
    }
    let tag = chunk_etag(plan, versions);
    if none_match(plan.if_none_match.as_deref(), &tag) {
        send_head(
            head_tx,
            Head {
                etag: tag,
                version: versions.own,
                next_cursor: None,
                body: None,
            },
        );
        return Ok(());
    }
    let size = plan.size as usize;
    let next_cursor = match rows.get(size.wrapping_sub(1)) {
        Some(last) if rows.len() > size => {
            let after = plan
                .source
                .key()
                .iter()
                .map(|k| last.bytes(width + k.pos, |b| key_text(k.kind, b)))
                .collect::<Result<Vec<_>, _>>()?;
            Some(codec.encode(&Cursor {
                dataset: plan.source.name().to_string(),
                version: versions.own,
                size: plan.size,
                filters: plan.filters.to_map(),
                after,
            }))
        }
        _ => None,
    };
    let (prefix, suffix) = envelope(plan, versions.own, next_cursor.as_deref())?;
    let columns = plan.source.columns();
    let mut writer = RecordWriter::new(&columns, width);
    let mut buf = prefix;
    buf.reserve(PIECE_BYTES.min(256 * rows.len().max(1)));
    let mut stream: Option<mpsc::Sender<Vec<u8>>> = None;
    let mut head = Some(Head {
        etag: tag,
        version: versions.own,
        next_cursor,
        body: None,
    });
    for (i, row) in rows.iter().take(size).enumerate() {
        match plan.format {
            Format::Json => {
                if i > 0 {
                    buf.push(b',');
                }
                writer.json(&mut buf, row)?;
            }
            Format::Ndjson => {
                writer.json(&mut buf, row)?;
                buf.push(b'\n');
            }
            Format::Csv => writer.csv(&mut buf, row)?,
        }
        if buf.len() >= PIECE_BYTES {
            let piece = std::mem::replace(&mut buf, Vec::with_capacity(PIECE_BYTES + 4096));
            let tx = match &stream {
                Some(tx) => tx,
                None => {
                    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
                    if let Some(mut h) = head.take() {
                        h.body = Some(Body::Stream(rx));
                        send_head(head_tx, h);
                    }
                    stream.insert(tx)
                }
            };
            if tx.blocking_send(piece).is_err() {
                // The client went away.
                return Ok(());
            }
        }
    }
    buf.extend_from_slice(&suffix);
    match (stream, head) {
        (Some(tx), _) => {
            let _ = tx.blocking_send(buf);
        }
        (None, Some(mut h)) => {
            h.body = Some(Body::Whole(buf));
            send_head(head_tx, h);
        }
        (None, None) => {}
    }
    Ok(())
}

/// The bytes around the rows: the JSON envelope, or the CSV header.
fn envelope(
    plan: &ChunkPlan,
    version: i64,
    next_cursor: Option<&str>,
) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    Ok(match plan.format {
        Format::Json => {
            let prefix = match plan.source {
                Source::TaskResults => "{\"coins\":[".to_string(),
                Source::Served(s) => format!(
                    "{{\"dataset\":{},\"version\":{version},\"size\":{},\"data\":[",
                    json(&s.name())?,
                    plan.size
                ),
            };
            let suffix = format!(
                "],\"next_cursor\":{},\"has_more\":{}}}",
                json(&next_cursor)?,
                next_cursor.is_some()
            );
            (prefix.into_bytes(), suffix.into_bytes())
        }
        Format::Csv => {
            let mut header = Vec::new();
            let names: Vec<&str> = plan.source.columns().iter().map(|c| c.name).collect();
            csv_header(&mut header, &names);
            (header, Vec::new())
        }
        Format::Ndjson => (Vec::new(), Vec::new()),
    })
}

/// Serialises a small value for the hand-written JSON envelope.
fn json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::internal("encode envelope", e))
}

/// Parses a chunk request that starts a scan (no cursor) or continues one.
pub fn plan_from_request(
    codec: &CursorCodec,
    info: &ReqInfo,
    source: Option<Source>,
    next_path: String,
) -> Result<ChunkPlan, ApiError> {
    let format = info.format()?;
    let format_param = info.get("format").map(|f| f.trim().to_ascii_lowercase());
    let size_param = info
        .get("size")
        .map(crate::params::parse_size)
        .transpose()?;
    if let Some(token) = info.get("cursor") {
        let (resumed, cursor, filters) = ChunkPlan::resume(codec, token, source)?;
        if let Some(size) = size_param {
            if size != cursor.size {
                return Err(ApiError::bad_request(format!(
                    "the cursor fixes size {}; leave size out or give the same",
                    cursor.size
                )));
            }
        }
        let given = Filters::from_request(resumed, info)?;
        if given != Filters::default() && given != filters {
            return Err(ApiError::bad_request(
                "the cursor fixes the filters; leave them out or give the same",
            ));
        }
        return Ok(ChunkPlan {
            source: resumed,
            filters,
            after: Some(cursor.after),
            size: cursor.size,
            cursor_version: Some(cursor.version),
            format,
            if_none_match: info.if_none_match.clone(),
            etag_seed: info.uri.clone(),
            next_path,
            format_param,
        });
    }
    let source = source.ok_or_else(|| ApiError::bad_request("cursor is required"))?;
    Ok(ChunkPlan {
        source,
        filters: Filters::from_request(source, info)?,
        after: None,
        size: size_param.unwrap_or(10),
        cursor_version: None,
        format,
        if_none_match: info.if_none_match.clone(),
        etag_seed: info.uri.clone(),
        next_path,
        format_param,
    })
}
