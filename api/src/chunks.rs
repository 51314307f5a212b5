//! Keyset-paginated chunked reads, for every served dataset and for task results.
//!
//! A chunk is read in one read-only REPEATABLE READ transaction on a blocking thread:
//! 1. the dataset's data version (a cursor from an older version is refused with 409);
//! 2. the key query: the sort keys of rows `size` and `size + 1` after the cursor, which
//!    give the next cursor and `has_more` before any row is sent (so the `Link` header can
//!    lead the body);
//! 3. the row query, streamed row by row (libpq single-row mode) into the response
//!    through a small channel, in JSON, CSV or NDJSON. The chunk is never held in memory.
//!
//! Both queries are `WHERE <filters> AND (key) > (last key) ORDER BY key LIMIT n`: an index
//! range scan on the primary key (or on a filter-led index), never OFFSET, so chunk
//! 100 000 costs what chunk 1 costs.

use crate::error::ApiError;
use crate::format::{csv_header, write_row, Format, Record};
use crate::params::{parse_instant, DayEnd, ReqInfo};
use crate::reply::{etag, none_match, Reply};
use crate::rows::*;
use chrono::{DateTime, SecondsFormat, Utc};
use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::dataset::Served;
use coinflow_shared::db::PgPool;
use diesel::pg::{Pg, PgConnection, PgRowByRowLoadingMode};
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Nullable, Text};
use rocket::tokio::sync::{mpsc, oneshot};
use std::collections::BTreeMap;

/// Bytes gathered before a piece is handed to the response stream.
const PIECE_BYTES: usize = 32 * 1024;

/// What a chunked read scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Served(Served),
    /// The coin task results of `GET /coins`, in task order.
    TaskResults,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Ts,
    Date,
}

struct KeyCol {
    column: &'static str,
    kind: Kind,
}

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

    /// The row query's select list and FROM clause; the scanned table is `t`.
    fn select_from(self) -> (&'static str, String) {
        match self {
            Source::Served(Served::Market) => (
                "t.coin_id, c.symbol, c.name, t.ts, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source",
                "market t JOIN coins c ON c.id = t.coin_id".to_string(),
            ),
            Source::TaskResults => ("t.coin_id AS id, t.exchanges, t.task_run", "task_results t".to_string()),
            other => ("t.*", format!("{} t", other.table())),
        }
    }

    /// The sort key, which is also the primary key (task results: `(task_run, coin_id)`).
    fn key(self) -> &'static [KeyCol] {
        use Kind::*;
        match self {
            Source::Served(Served::Market) => &[
                KeyCol {
                    column: "coin_id",
                    kind: Text,
                },
                KeyCol {
                    column: "ts",
                    kind: Ts,
                },
            ],
            Source::Served(Served::Daily) => &[
                KeyCol {
                    column: "coin_id",
                    kind: Text,
                },
                KeyCol {
                    column: "day",
                    kind: Date,
                },
            ],
            Source::Served(Served::Coins) => &[KeyCol {
                column: "id",
                kind: Text,
            }],
            Source::Served(Served::CoinExchanges) => &[KeyCol {
                column: "coin_id",
                kind: Text,
            }],
            Source::Served(Served::Traders) => &[KeyCol {
                column: "person_id",
                kind: Int,
            }],
            Source::Served(Served::Positions) => &[
                KeyCol {
                    column: "person_id",
                    kind: Int,
                },
                KeyCol {
                    column: "coin_id",
                    kind: Text,
                },
            ],
            Source::Served(Served::Rejects) => &[
                KeyCol {
                    column: "run_id",
                    kind: Int,
                },
                KeyCol {
                    column: "file",
                    kind: Text,
                },
                KeyCol {
                    column: "line",
                    kind: Int,
                },
            ],
            Source::TaskResults => &[
                KeyCol {
                    column: "task_run",
                    kind: Int,
                },
                KeyCol {
                    column: "coin_id",
                    kind: Text,
                },
            ],
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

/// A SQL statement with its parameters, all bound as text and cast in the SQL.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub binds: Vec<String>,
}

impl Statement {
    fn param(&mut self, value: String, kind: Kind) -> String {
        self.binds.push(value);
        let n = self.binds.len();
        match kind {
            Kind::Text => format!("${n}"),
            Kind::Int => format!("${n}::int8"),
            Kind::Ts => format!("${n}::timestamptz"),
            Kind::Date => format!("${n}::date"),
        }
    }

    fn query(&self) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let mut query = diesel::sql_query(self.sql.clone()).into_boxed::<Pg>();
        for value in &self.binds {
            query = query.bind::<Text, _>(value.clone());
        }
        query
    }
}

/// The WHERE clause (with its parameters pushed on `st`) and the ORDER BY list.
fn where_and_order(
    source: Source,
    filters: &Filters,
    after: Option<&[String]>,
    st: &mut Statement,
) -> Result<(String, String, String), ApiError> {
    let keys = source.key();
    let mut conds = Vec::new();
    let mut fixed: Vec<&str> = Vec::new();
    if let Some(coin) = &filters.coin {
        conds.push(format!(
            "t.coin_id = {}",
            st.param(coin.clone(), Kind::Text)
        ));
        fixed.push("coin_id");
    }
    if let Some(run) = filters.run {
        conds.push(format!(
            "t.run_id = {}",
            st.param(run.to_string(), Kind::Int)
        ));
        fixed.push("run_id");
    }
    let time_column = match source {
        Source::Served(Served::Daily) => Some(("day", Kind::Date)),
        Source::Served(Served::Market) => Some(("ts", Kind::Ts)),
        _ => None,
    };
    if let Some((column, kind)) = time_column {
        let text = |at: DateTime<Utc>| match kind {
            // A coin-day is in range when the day overlaps [from, to].
            Kind::Date => at.date_naive().format("%Y-%m-%d").to_string(),
            _ => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        if let Some(from) = filters.from {
            conds.push(format!("t.{column} >= {}", st.param(text(from), kind)));
        }
        if let Some(to) = filters.to {
            conds.push(format!("t.{column} <= {}", st.param(text(to), kind)));
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
        let (cols, params): (Vec<String>, Vec<String>) = keys
            .iter()
            .zip(after)
            .filter(|(k, _)| !fixed.contains(&k.column))
            .map(|(k, v)| (format!("t.{}", k.column), st.param(v.clone(), k.kind)))
            .unzip();
        match cols.len() {
            0 => conds.push("FALSE".to_string()),
            1 => conds.push(format!("{} > {}", cols[0], params[0])),
            _ => conds.push(format!("({}) > ({})", cols.join(", "), params.join(", "))),
        }
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let order = keys
        .iter()
        .map(|k| format!("t.{}", k.column))
        .collect::<Vec<_>>()
        .join(", ");
    // The same order without the pinned columns: what a consumer of the scan's output
    // can rely on without knowing the filters (else it would sort again).
    let free_order = keys
        .iter()
        .filter(|k| !fixed.contains(&k.column))
        .map(|k| format!("t.{}", k.column))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((where_clause, order, free_order))
}

/// The key query and the row query of one chunk (exposed for EXPLAIN checks and benches).
pub fn statements(
    source: Source,
    filters: &Filters,
    after: Option<&[String]>,
    size: u32,
) -> Result<(Statement, Statement), ApiError> {
    let mut keys_st = Statement {
        sql: String::new(),
        binds: Vec::new(),
    };
    let (where_clause, order, free_order) = where_and_order(source, filters, after, &mut keys_st)?;
    let window_order = if free_order.is_empty() {
        String::new()
    } else {
        format!("ORDER BY {free_order}")
    };
    let mut rows_st = keys_st.clone();

    let key_cols = source.key();
    let as_text = |k: &KeyCol| match k.kind {
        Kind::Text => format!("t.{}", k.column),
        Kind::Int => format!("t.{}::text", k.column),
        Kind::Ts => format!(
            "to_char(t.{} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            k.column
        ),
        Kind::Date => format!("to_char(t.{}, 'YYYY-MM-DD')", k.column),
    };
    let mut texts: Vec<String> = key_cols.iter().map(as_text).collect();
    texts.resize(3, "NULL::text".to_string());
    let plain = key_cols
        .iter()
        .map(|k| format!("t.{}", k.column))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = keys_st.param((u64::from(size) + 1).to_string(), Kind::Int);
    let from_row = keys_st.param(size.to_string(), Kind::Int);
    keys_st.sql = format!(
        "SELECT w.k1, w.k2, w.k3, w.i FROM (\
         SELECT {} AS k1, {} AS k2, {} AS k3, row_number() OVER ({window_order}) AS i \
         FROM (SELECT {plain} FROM {} t {where_clause} ORDER BY {order} LIMIT {limit}) t\
         ) w WHERE w.i >= {from_row}",
        texts[0],
        texts[1],
        texts[2],
        source.table(),
    );

    let (select, from) = source.select_from();
    let limit = rows_st.param(size.to_string(), Kind::Int);
    rows_st.sql =
        format!("SELECT {select} FROM {from} {where_clause} ORDER BY {order} LIMIT {limit}");
    Ok((keys_st, rows_st))
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    k1: String,
    #[diesel(sql_type = Nullable<Text>)]
    k2: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    k3: Option<String>,
    /// The row's position after the cursor.
    #[diesel(sql_type = BigInt)]
    i: i64,
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

#[derive(QueryableByName)]
struct TaskStateRow {
    #[diesel(sql_type = BigInt)]
    last_run: i64,
    #[diesel(sql_type = BigInt)]
    results: i64,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// `EXPLAIN` of a statement, one plan line per element.
pub fn explain(conn: &mut PgConnection, st: &Statement) -> Result<Vec<String>, ApiError> {
    let explained = Statement {
        sql: format!("EXPLAIN {}", st.sql),
        binds: st.binds.clone(),
    };
    let lines: Vec<PlanLine> = explained.query().load(conn)?;
    Ok(lines.into_iter().map(|l| l.line).collect())
}

/// The data version of a served dataset (0 before any ETL run).
pub fn data_version(conn: &mut PgConnection, dataset: &str) -> Result<i64, ApiError> {
    let row: Option<VersionRow> =
        diesel::sql_query("SELECT version FROM data_versions WHERE dataset = $1")
            .bind::<Text, _>(dataset)
            .get_result(conn)
            .optional()?;
    Ok(row.map_or(0, |r| r.version))
}

/// A fingerprint of the task results: the latest task run that stored a result and the
/// number of results. Task-result ETags come from it.
pub fn task_state(conn: &mut PgConnection) -> Result<String, ApiError> {
    let row: TaskStateRow = diesel::sql_query(
        "SELECT COALESCE(max(task_run), 0) AS last_run, count(*) AS results FROM task_results",
    )
    .get_result(conn)?;
    Ok(format!("tasks:{}:{}", row.last_run, row.results))
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

struct Head {
    etag: String,
    version: i64,
    next_cursor: Option<String>,
    not_modified: bool,
}

/// Serves one chunk: headers as soon as the key query has run, rows streamed after.
pub async fn serve(pool: &PgPool, codec: &CursorCodec, plan: ChunkPlan) -> Result<Reply, ApiError> {
    let (head_tx, head_rx) = oneshot::channel::<Result<Head, ApiError>>();
    let (body_tx, body_rx) = mpsc::channel::<Vec<u8>>(4);
    let format = plan.format;
    let next_path = plan.next_path.clone();
    let format_param = plan.format_param.clone();
    let pool = pool.clone();
    let codec = codec.clone();
    rocket::tokio::task::spawn_blocking(move || produce(&pool, &codec, plan, head_tx, body_tx));
    let head = head_rx
        .await
        .map_err(|_| ApiError::Internal("the chunk task ended without an answer".into()))??;
    if head.not_modified {
        return Ok(Reply::not_modified(&head.etag));
    }
    let mut reply = Reply::stream(format.content_type(), body_rx)
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

/// The blocking half of [`serve`]: answers `head_tx` once (head or error), then streams.
fn produce(
    pool: &PgPool,
    codec: &CursorCodec,
    plan: ChunkPlan,
    head_tx: oneshot::Sender<Result<Head, ApiError>>,
    body_tx: mpsc::Sender<Vec<u8>>,
) {
    let mut head_tx = Some(head_tx);
    let result = (|| -> Result<(), ApiError> {
        let mut conn = pool.get()?;
        conn.build_transaction().read_only().repeatable_read().run(|conn| {
            let (version, state) = match plan.source {
                Source::TaskResults => (0, task_state(conn)?),
                Source::Served(s) => {
                    let v = data_version(conn, s.name())?;
                    (v, v.to_string())
                }
            };
            if let Some(seen) = plan.cursor_version {
                if seen != version && plan.source != Source::TaskResults {
                    return Err(ApiError::Conflict(format!(
                        "dataset {} changed since this cursor was issued (data version {seen}, now {version}); \
                         start again from the first chunk",
                        plan.source.name()
                    )));
                }
            }
            let tag = etag(&[plan.source.name(), &state, plan.format.name(), &plan.etag_seed]);
            if none_match(plan.if_none_match.as_deref(), &tag) {
                if let Some(tx) = head_tx.take() {
                    let _ = tx.send(Ok(Head {
                        etag: tag,
                        version,
                        next_cursor: None,
                        not_modified: true,
                    }));
                }
                return Ok(());
            }
            let (keys_st, rows_st) = statements(plan.source, &plan.filters, plan.after.as_deref(), plan.size)?;
            // Rows `size` and `size + 1`: the next chunk exists when the latter does, and
            // continues after the former.
            let keys: Vec<KeyRow> = keys_st.query().load(conn)?;
            let size = i64::from(plan.size);
            let last = keys.iter().find(|k| k.i == size);
            let more = keys.iter().any(|k| k.i == size + 1);
            let next_cursor = last.filter(|_| more).map(|k| {
                let after = [Some(k.k1.clone()), k.k2.clone(), k.k3.clone()]
                    .into_iter()
                    .flatten()
                    .collect();
                codec.encode(&Cursor {
                    dataset: plan.source.name().to_string(),
                    version,
                    size: plan.size,
                    filters: plan.filters.to_map(),
                    after,
                })
            });
            let (prefix, suffix) = envelope(&plan, version, next_cursor.as_deref())?;
            if let Some(tx) = head_tx.take() {
                let _ = tx.send(Ok(Head {
                    etag: tag,
                    version,
                    next_cursor,
                    not_modified: false,
                }));
            }
            let out = Output {
                format: plan.format,
                tx: &body_tx,
                prefix,
                suffix,
            };
            match plan.source {
                Source::Served(Served::Market) => stream_rows::<MarketRow>(conn, &rows_st, out),
                Source::Served(Served::Daily) => stream_rows::<DailyRow>(conn, &rows_st, out),
                Source::Served(Served::Coins) => stream_rows::<CoinRow>(conn, &rows_st, out),
                Source::Served(Served::CoinExchanges) => stream_rows::<CoinExchangeRow>(conn, &rows_st, out),
                Source::Served(Served::Traders) => stream_rows::<TraderRow>(conn, &rows_st, out),
                Source::Served(Served::Positions) => stream_rows::<PositionRow>(conn, &rows_st, out),
                Source::Served(Served::Rejects) => stream_rows::<RejectRow>(conn, &rows_st, out),
                Source::TaskResults => stream_rows::<TaskRow>(conn, &rows_st, out),
            }
        })
    })();
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
            let columns = match plan.source {
                Source::Served(Served::Market) => MarketRow::CSV_HEADER,
                Source::Served(Served::Daily) => DailyRow::CSV_HEADER,
                Source::Served(Served::Coins) => CoinRow::CSV_HEADER,
                Source::Served(Served::CoinExchanges) => CoinExchangeRow::CSV_HEADER,
                Source::Served(Served::Traders) => TraderRow::CSV_HEADER,
                Source::Served(Served::Positions) => PositionRow::CSV_HEADER,
                Source::Served(Served::Rejects) => RejectRow::CSV_HEADER,
                Source::TaskResults => TaskRow::CSV_HEADER,
            };
            csv_header(&mut header, columns);
            (header, Vec::new())
        }
        Format::Ndjson => (Vec::new(), Vec::new()),
    })
}

/// Serialises a small value for the hand-written JSON envelope.
fn json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::internal("encode envelope", e))
}

struct Output<'a> {
    format: Format,
    tx: &'a mpsc::Sender<Vec<u8>>,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

fn stream_rows<R>(conn: &mut PgConnection, st: &Statement, out: Output<'_>) -> Result<(), ApiError>
where
    R: Record + QueryableByName<Pg> + 'static,
{
    let mut buf = out.prefix;
    buf.reserve(PIECE_BYTES + 4096);
    let mut first = true;
    // A client that goes away stops the encoding, but the rows are still drained so the
    // connection goes back to the pool in a clean state.
    let mut gone = false;
    for row in st.query().load_iter::<R, PgRowByRowLoadingMode>(conn)? {
        let row = row?;
        if gone {
            continue;
        }
        if out.format == Format::Json && !first {
            buf.push(b',');
        }
        first = false;
        write_row(&mut buf, out.format, &row)?;
        if buf.len() >= PIECE_BYTES {
            let piece = std::mem::replace(&mut buf, Vec::with_capacity(PIECE_BYTES + 4096));
            gone = out.tx.blocking_send(piece).is_err();
        }
    }
    if !gone {
        buf.extend_from_slice(&out.suffix);
        let _ = out.tx.blocking_send(buf);
    }
    Ok(())
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
