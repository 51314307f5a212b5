//! Loading: the only stage that writes. Staged rows go in with binary COPY into
//! temporary staging tables, are classified against what is stored (loaded, duplicate,
//! updated) and merged into the warehouse; markets files that bring only new keys skip
//! staging and are copied straight into `market`; a bulk load drops a table's foreign
//! keys and secondary indexes and rebuilds them once; derived tables are synchronised
//! from the transform's output; the ledger records runs, files and rejects. Everything a
//! run writes to data tables commits in one transaction with its `etl_files` rows.

use crate::resolve::NewCoin;
use crate::rows::{self, Batch, MarketRow, Rejection};
use chrono::{DateTime, Utc};
use coinflow_shared::dataset::Dataset;
use coinflow_shared::models::Counts;
use coinflow_shared::schema::{coin_aliases, coins, etl_files, etl_rejects, etl_runs, market};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use std::collections::{BTreeSet, HashMap};

/// Rows per binary COPY statement.
pub const COPY_CHUNK: usize = 200_000;

/// Creates the run's staging tables; they disappear when the run's transaction ends.
pub fn create_staging(conn: &mut PgConnection) -> QueryResult<()> {
    conn.batch_execute(
        "CREATE TEMP TABLE stg_coins (line int8 NOT NULL, id text NOT NULL, symbol text NOT NULL, name text NOT NULL, cmc_id int8) ON COMMIT DROP;
         CREATE TEMP TABLE stg_market (line int8 NOT NULL, coin_id text NOT NULL, ts timestamptz NOT NULL, price_usd float8 NOT NULL, market_cap_usd float8, volume_24h_usd float8) ON COMMIT DROP;
         CREATE TEMP TABLE stg_rankings (line int8 NOT NULL, coin_id text NOT NULL, ts timestamptz NOT NULL, rank int4 NOT NULL, volume_24h_usd float8, source text NOT NULL) ON COMMIT DROP;
         CREATE TEMP TABLE stg_candles (line int8 NOT NULL, coin_id text NOT NULL, ts timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, volume_usd float8, market_cap_usd float8) ON COMMIT DROP;
         CREATE TEMP TABLE stg_tickers (line int8 NOT NULL, coin_id text NOT NULL, exchange text NOT NULL, base text NOT NULL, target text NOT NULL) ON COMMIT DROP;
         CREATE TEMP TABLE stg_people (line int8 NOT NULL, person_id int8 NOT NULL, first_name text NOT NULL, last_name text NOT NULL, email text NOT NULL, date_added timestamptz) ON COMMIT DROP;
         CREATE TEMP TABLE stg_trades (line int8 NOT NULL, person_id int8 NOT NULL, ts timestamptz NOT NULL, coin_id text NOT NULL, side text NOT NULL, quantity float8, price float8) ON COMMIT DROP;",
    )
}

/// Empties the staging tables a dataset's files use, between files.
pub fn truncate_staging(conn: &mut PgConnection, dataset: Dataset) -> QueryResult<()> {
    conn.batch_execute(match dataset {
        Dataset::Coins => "TRUNCATE stg_coins",
        Dataset::Listings => "TRUNCATE stg_market, stg_rankings",
        Dataset::Markets => "TRUNCATE stg_market",
        Dataset::Rankings => "TRUNCATE stg_rankings",
        Dataset::Candles => "TRUNCATE stg_candles",
        Dataset::Tickers => "TRUNCATE stg_tickers",
        Dataset::People => "TRUNCATE stg_people",
        Dataset::Trades => "TRUNCATE stg_trades",
    })
}

/// Writes a batch to staging with binary COPY.
pub fn stage(conn: &mut PgConnection, batch: &Batch) -> QueryResult<()> {
    macro_rules! copy {
        ($table:expr, $rows:expr) => {
            for chunk in $rows.chunks(COPY_CHUNK) {
                diesel::copy_from($table)
                    .from_insertable(chunk)
                    .execute(conn)?;
            }
        };
    }
    copy!(rows::stg_coins::table, batch.coins);
    copy!(rows::stg_market::table, batch.market);
    copy!(rows::stg_rankings::table, batch.rankings);
    copy!(rows::stg_candles::table, batch.candles);
    copy!(rows::stg_tickers::table, batch.tickers);
    copy!(rows::stg_people::table, batch.people);
    copy!(rows::stg_trades::table, batch.trades);
    Ok(())
}

/// A snapshot as `market` stores it before the rank refresh.
#[derive(Insertable)]
#[diesel(table_name = market, treat_none_as_default_value = false)]
struct NewMarket<'a> {
    coin_id: &'a str,
    ts: DateTime<Utc>,
    price_usd: f64,
    market_cap_usd: Option<f64>,
    volume_24h_usd: Option<f64>,
}

/// Copies validated snapshots straight into `market` with binary COPY, skipping staging
/// and the merge. A key that is already stored, or that comes twice, fails the COPY with
/// a unique violation: the caller runs this under a savepoint and falls back to staging.
pub fn copy_market(conn: &mut PgConnection, rows: &[MarketRow]) -> QueryResult<()> {
    for chunk in rows.chunks(COPY_CHUNK) {
        let chunk: Vec<NewMarket<'_>> = chunk
            .iter()
            .map(|r| NewMarket {
                coin_id: &r.coin_id,
                ts: r.ts,
                price_usd: r.price_usd,
                market_cap_usd: r.market_cap_usd,
                volume_24h_usd: r.volume_24h_usd,
            })
            .collect();
        diesel::copy_from(market::table)
            .from_insertable(&chunk)
            .execute(conn)?;
    }
    Ok(())
}

/// Those of `coins` with no stored candle and, unless the caller knows `market` holds
/// none of their rows (`check_market` false), no stored snapshot.
pub fn coins_without_facts(
    conn: &mut PgConnection,
    coins: &[&str],
    check_market: bool,
) -> QueryResult<BTreeSet<String>> {
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        key: String,
    }
    let market = if check_market {
        "NOT EXISTS (SELECT 1 FROM market m WHERE m.coin_id = c) AND"
    } else {
        ""
    };
    let keys: Vec<Key> = diesel::sql_query(format!(
        "SELECT c AS key FROM unnest($1::text[]) AS c \
         WHERE {market} NOT EXISTS (SELECT 1 FROM candles k WHERE k.coin_id = c)"
    ))
    .bind::<diesel::sql_types::Array<Text>, _>(coins)
    .load(conn)?;
    Ok(keys.into_iter().map(|k| k.key).collect())
}

/// Whether a COPY or insert failed because a key already exists.
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// A table's foreign keys and non-unique secondary indexes, dropped for a bulk load and
/// re-created by [`Deferred::restore`] in the same transaction. Building an index once is
/// several times cheaper than maintaining it row by row, and validating a foreign key is
/// one join instead of a trigger (and a row lock on the referenced row) per loaded row.
/// Unique constraints stay: they decide loaded, duplicate, updated. The primary key is
/// dropped too only when asked ([`defer_constraints`]): the caller then proves the keys
/// it copies distinct ([`KeySpans`]) and restores the key ([`Deferred::restore_key`])
/// before anything that needs it. Dropping takes an ACCESS EXCLUSIVE lock on the table
/// until the run commits, so readers wait for a bulk load instead of reading around it.
#[derive(Debug)]
pub struct Deferred {
    table: &'static str,
    key: Option<String>,
    restore: Vec<String>,
}

#[derive(QueryableByName)]
struct Definition {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
    /// A constraint's kind (`p` primary key, `f` foreign key); empty for an index.
    #[diesel(sql_type = Text)]
    kind: String,
}

/// Drops `table`'s foreign keys and secondary indexes, and its primary key if `with_key`,
/// remembering their definitions exactly as the catalog holds them.
pub fn defer_constraints(
    conn: &mut PgConnection,
    table: &'static str,
    with_key: bool,
) -> QueryResult<Deferred> {
    let constraints: Vec<Definition> = diesel::sql_query(
        "SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition, contype::text AS kind \
         FROM pg_constraint WHERE conrelid = $1::regclass AND (contype = 'f' OR (contype = 'p' AND $2)) \
         ORDER BY conname",
    )
    .bind::<Text, _>(table)
    .bind::<Bool, _>(with_key)
    .load(conn)?;
    let indexes: Vec<Definition> = diesel::sql_query(
        "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition, '' AS kind \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = $1::regclass AND NOT i.indisunique AND NOT i.indisprimary \
         ORDER BY c.relname",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let mut deferred = Deferred {
        table,
        key: None,
        restore: Vec::new(),
    };
    for constraint in &constraints {
        conn.batch_execute(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            quote_ident(&constraint.name)
        ))?;
        let add = format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            quote_ident(&constraint.name),
            constraint.definition
        );
        if constraint.kind == "p" {
            deferred.key = Some(add);
        } else {
            deferred.restore.push(add);
        }
    }
    for index in &indexes {
        conn.batch_execute(&format!("DROP INDEX {}", quote_ident(&index.name)))?;
        deferred.restore.push(index.definition.clone());
    }
    Ok(deferred)
}

impl Deferred {
    /// Whether the primary key is dropped: keys copied in must be proven distinct.
    pub fn key_deferred(&self) -> bool {
        self.key.is_some()
    }

    /// Re-creates the primary key if it is dropped (for a merge, which needs it, or when
    /// the copied keys can no longer be proven distinct).
    pub fn restore_key(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        if let Some(statement) = self.key.take() {
            let started = std::time::Instant::now();
            conn.batch_execute(&statement)?;
            log::info!(
                "{}: primary key built in {:.2}s",
                self.table,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Re-creates everything [`defer_constraints`] dropped, the primary key first; a
    /// foreign key is validated against every row, so a row the load got wrong fails the
    /// run instead of committing.
    pub fn restore(mut self, conn: &mut PgConnection) -> QueryResult<()> {
        self.restore_key(conn)?;
        for statement in &self.restore {
            conn.batch_execute(statement)?;
        }
        log::info!(
            "{}: {} foreign key(s) and index(es) re-created after the bulk load",
            self.table,
            self.restore.len()
        );
        Ok(())
    }
}

/// Per coin, the span of timestamps copied into `market` while its primary key is
/// dropped. A row whose timestamp lies outside its coin's span cannot repeat a key copied
/// before, so while every row extends its coin's span (each coin's rows sorted by time,
/// in either direction, as exports and histories are) the copied keys are distinct
/// without an index to check them. A file's spans are kept apart until it loads.
#[derive(Debug, Default)]
pub struct KeySpans {
    spans: HashMap<String, (i64, i64)>,
}

impl KeySpans {
    /// Extends `file`'s spans (which lie on top of these) by `rows`; false at the first
    /// row whose timestamp falls inside its coin's span: it may repeat a key.
    pub fn extend(&self, file: &mut KeySpans, rows: &[MarketRow]) -> bool {
        // Rows usually come coin by coin: the span of the current coin is kept at hand.
        let mut current: Option<(&str, i64, i64)> = None;
        for row in rows {
            let ts = row.ts.timestamp_micros();
            let coin = row.coin_id.as_str();
            match current {
                Some((c, ref mut lo, ref mut hi)) if c == coin => {
                    if ts < *lo {
                        *lo = ts;
                    } else if ts > *hi {
                        *hi = ts;
                    } else {
                        return false;
                    }
                }
                _ => {
                    if let Some((c, lo, hi)) = current {
                        file.put(c, (lo, hi));
                    }
                    let (lo, hi) = match file.spans.get(coin).or_else(|| self.spans.get(coin)) {
                        Some(&(lo, hi)) if ts < lo => (ts, hi),
                        Some(&(lo, hi)) if ts > hi => (lo, ts),
                        Some(_) => return false,
                        None => (ts, ts),
                    };
                    current = Some((coin, lo, hi));
                }
            }
        }
        if let Some((c, lo, hi)) = current {
            file.put(c, (lo, hi));
        }
        true
    }

    fn put(&mut self, coin: &str, span: (i64, i64)) {
        match self.spans.get_mut(coin) {
            Some(stored) => *stored = span,
            None => {
                self.spans.insert(coin.to_string(), span);
            }
        }
    }

    /// Takes in the spans of a file that loaded.
    pub fn absorb(&mut self, file: KeySpans) {
        self.spans.extend(file.spans);
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The on-disk size of a table's rows (heap only), for choosing a bulk load.
pub fn heap_bytes(conn: &mut PgConnection, table: &str) -> QueryResult<u64> {
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let size: Size = diesel::sql_query("SELECT pg_relation_size($1::regclass) AS bytes")
        .bind::<Text, _>(table)
        .get_result(conn)?;
    Ok(size.bytes.max(0) as u64)
}

/// How a staged table merges into its target.
struct Merge {
    stage: &'static str,
    target: &'static str,
    /// Natural key columns, and whether each may be NULL.
    keys: &'static [(&'static str, bool)],
    /// Value columns (replaced on update).
    values: &'static [&'static str],
    conflict: &'static str,
    /// Ascending input order is the order rows are inserted in.
    ordered_insert: bool,
}

const MERGE_COINS: Merge = Merge {
    stage: "stg_coins",
    target: "coins",
    keys: &[("id", false)],
    values: &["symbol", "name", "cmc_id"],
    conflict: "(id)",
    ordered_insert: false,
};
const MERGE_MARKET: Merge = Merge {
    stage: "stg_market",
    target: "market",
    keys: &[("coin_id", false), ("ts", false)],
    values: &["price_usd", "market_cap_usd", "volume_24h_usd"],
    conflict: "(coin_id, ts)",
    ordered_insert: false,
};
const MERGE_RANKINGS: Merge = Merge {
    stage: "stg_rankings",
    target: "rankings",
    keys: &[("coin_id", false), ("ts", false)],
    values: &["rank", "volume_24h_usd", "source"],
    conflict: "(coin_id, ts)",
    ordered_insert: false,
};
const MERGE_CANDLES: Merge = Merge {
    stage: "stg_candles",
    target: "candles",
    keys: &[("coin_id", false), ("ts", false)],
    values: &[
        "open",
        "high",
        "low",
        "close",
        "volume_usd",
        "market_cap_usd",
    ],
    conflict: "(coin_id, ts)",
    ordered_insert: false,
};
const MERGE_TICKERS: Merge = Merge {
    stage: "stg_tickers",
    target: "tickers",
    keys: &[
        ("coin_id", false),
        ("exchange", false),
        ("base", false),
        ("target", false),
    ],
    values: &[],
    conflict: "(coin_id, exchange, base, target)",
    ordered_insert: false,
};
const MERGE_PEOPLE: Merge = Merge {
    stage: "stg_people",
    target: "people",
    keys: &[("person_id", false)],
    values: &["first_name", "last_name", "email", "date_added"],
    conflict: "(person_id)",
    ordered_insert: false,
};
const MERGE_TRADES: Merge = Merge {
    stage: "stg_trades",
    target: "trades",
    keys: &[
        ("person_id", false),
        ("ts", false),
        ("coin_id", false),
        ("side", false),
        ("quantity", true),
        ("price", true),
    ],
    values: &[],
    conflict: "ON CONSTRAINT trades_natural_key",
    ordered_insert: true,
};

/// Rows of one file by outcome, plus the keys whose stored rows changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeCounts {
    pub loaded: i64,
    pub duplicate: i64,
    pub updated: i64,
    /// Later lines of the file that repeat an earlier line's key with other values, each
    /// with that first line: the first is kept, these become rejects.
    pub conflicts: Vec<(i64, i64)>,
    /// Zeroed market caps and volumes in the loaded and updated rows.
    pub zeroed: i64,
    /// Coins (or, for people and trades, person ids as text) with new or changed rows.
    pub changed_keys: BTreeSet<String>,
}

#[derive(QueryableByName)]
struct ClassCount {
    #[diesel(sql_type = Text)]
    class: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    keys: Vec<String>,
    /// For the `conflict` class: the lines and the first line of their key.
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    lines: Vec<i64>,
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    firsts: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    zeroed: i64,
}

fn row_of(prefix: &str, columns: &[&str]) -> String {
    let list: Vec<String> = columns.iter().map(|c| format!("{prefix}{c}")).collect();
    format!("ROW({})", list.join(", "))
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    keys: Vec<String>,
}

/// Why the optimistic insert did not settle a file.
enum FastPath {
    /// Some staged key already exists, in the target or earlier in the file.
    Conflicts,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for FastPath {
    fn from(e: diesel::result::Error) -> Self {
        FastPath::Db(e)
    }
}

/// Merges a staged file. Most files bring only new keys: they are inserted in one pass
/// under a savepoint, with no sorting. When any staged key conflicts (a duplicate or an
/// update, in the file or against the target), the savepoint is rolled back and the
/// file goes through the full classification.
fn merge(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    staged: &Staged<'_>,
) -> QueryResult<MergeCounts> {
    if staged.rows == 0 {
        return Ok(MergeCounts::default());
    }
    match conn.transaction(|conn| insert_new_only(conn, m, change_key, staged.rows)) {
        Ok(mut counts) => {
            counts.zeroed = staged.zeroed.iter().map(|(_, n)| n).sum();
            Ok(counts)
        }
        Err(FastPath::Conflicts) => merge_classified(conn, m, change_key, staged.zeroed),
        Err(FastPath::Db(e)) => Err(e),
    }
}

/// What a file staged: its rows, and (line, count) of the rows that had market caps or
/// volumes of 0 stored as missing (`zeroed` counts them only where they load).
#[derive(Debug, Clone, Copy)]
pub struct Staged<'a> {
    pub rows: u64,
    pub zeroed: &'a [(i64, i64)],
}

fn insert_new_only(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    staged: u64,
) -> Result<MergeCounts, FastPath> {
    let columns: Vec<&str> = m
        .keys
        .iter()
        .map(|(k, _)| *k)
        .chain(m.values.iter().copied())
        .collect();
    let columns = columns.join(", ");
    let order = if m.ordered_insert {
        " ORDER BY line"
    } else {
        ""
    };
    let sql = format!(
        "WITH ins AS (INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage}{order} \
                      ON CONFLICT {conflict} DO NOTHING RETURNING {change_key}::text AS key) \
         SELECT (SELECT count(*) FROM ins)::int8 AS n, \
                (SELECT coalesce(array_agg(key), '{{}}') FROM (SELECT DISTINCT key FROM ins) d) AS keys",
        target = m.target,
        stage = m.stage,
        conflict = m.conflict,
    );
    let inserted: Inserted = diesel::sql_query(sql).get_result(conn)?;
    if inserted.n as u64 != staged {
        return Err(FastPath::Conflicts);
    }
    Ok(MergeCounts {
        loaded: inserted.n,
        changed_keys: inserted.keys.into_iter().collect(),
        ..MergeCounts::default()
    })
}

/// Classifies the staged rows against each other (by input line) and against the target,
/// and upserts the first row of each key, in one statement: every part of it sees the
/// target as it was before the upsert. A later line with the key of an earlier one is a
/// duplicate when its values are the same, else a conflict (a reject for the caller).
fn merge_classified(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    zeroed: &[(i64, i64)],
) -> QueryResult<MergeCounts> {
    let keys: Vec<&str> = m.keys.iter().map(|(k, _)| *k).collect();
    let partition = keys.join(", ");
    let join: Vec<String> = m
        .keys
        .iter()
        .map(|(k, nullable)| {
            if *nullable {
                format!("t.{k} IS NOT DISTINCT FROM s.{k}")
            } else {
                format!("t.{k} = s.{k}")
            }
        })
        .collect();
    let first_key = keys[0];
    let (value_cols, class_expr) = if m.values.is_empty() {
        (
            ", first_value(line) OVER w AS first_line".to_string(),
            format!(
                "CASE WHEN s.rn > 1 THEN 'duplicate' WHEN t.{first_key} IS NULL THEN 'loaded' ELSE 'duplicate' END"
            ),
        )
    } else {
        let v = row_of("", m.values);
        (
            format!(
                ", {v} AS v, first_value({v}) OVER w AS first_v, first_value(line) OVER w AS first_line"
            ),
            format!(
                "CASE WHEN s.rn > 1 THEN CASE WHEN s.v IS NOT DISTINCT FROM s.first_v THEN 'duplicate' ELSE 'conflict' END \
                 WHEN t.{first_key} IS NULL THEN 'loaded' \
                 WHEN {} IS NOT DISTINCT FROM s.v THEN 'duplicate' ELSE 'updated' END",
                row_of("t.", m.values)
            ),
        )
    };
    let all: Vec<&str> = keys.iter().chain(m.values.iter()).copied().collect();
    let columns = all.join(", ");
    let source = if m.ordered_insert {
        format!("SELECT {columns} FROM {} ORDER BY line", m.stage)
    } else {
        format!(
            "SELECT DISTINCT ON ({partition}) {columns} FROM {} ORDER BY {partition}, line",
            m.stage
        )
    };
    let action = if m.values.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = m
            .values
            .iter()
            .map(|v| format!("{v} = EXCLUDED.{v}"))
            .collect();
        format!(
            "DO UPDATE SET {} WHERE {} IS DISTINCT FROM {}",
            set.join(", "),
            row_of(&format!("{}.", m.target), m.values),
            row_of("EXCLUDED.", m.values)
        )
    };
    let sql = format!(
        "WITH s AS (SELECT line, {partition}, row_number() OVER w AS rn{value_cols} FROM {stage} \
                    WINDOW w AS (PARTITION BY {partition} ORDER BY line)), \
         classes AS (SELECT s.{change_key}::text AS key, s.line, s.first_line, {class_expr} AS class, \
                            coalesce(z.n, 0) AS zeros \
                     FROM s LEFT JOIN {target} t ON s.rn = 1 AND {join} \
                     LEFT JOIN unnest($1::int8[], $2::int8[]) AS z(line, n) ON z.line = s.line), \
         upsert AS (INSERT INTO {target} ({columns}) {source} ON CONFLICT {conflict} {action} RETURNING 1), \
         changed AS (SELECT DISTINCT key FROM classes WHERE class IN ('loaded', 'updated')) \
         SELECT class, count(*)::int8 AS n, \
                (SELECT coalesce(array_agg(key), '{{}}') FROM changed) AS keys, \
                coalesce(array_agg(line ORDER BY line) FILTER (WHERE class = 'conflict'), '{{}}') AS lines, \
                coalesce(array_agg(first_line ORDER BY line) FILTER (WHERE class = 'conflict'), '{{}}') AS firsts, \
                sum(zeros)::int8 AS zeroed \
         FROM classes GROUP BY class",
        stage = m.stage,
        target = m.target,
        conflict = m.conflict,
        join = join.join(" AND "),
    );
    // Fresh statistics let the planner probe the target's index for a small file instead
    // of scanning the whole (growing) target once per file.
    conn.batch_execute(&format!("ANALYZE {}", m.stage))?;
    let mut counts = MergeCounts::default();
    let (lines, zeros): (Vec<i64>, Vec<i64>) = zeroed.iter().copied().unzip();
    let classes = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&lines)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&zeros)
        .load::<ClassCount>(conn)?;
    for c in classes {
        let n = c.n;
        // Zeroes count where values are stored: loaded and updated rows.
        match c.class.as_str() {
            "loaded" => {
                counts.loaded += n;
                counts.zeroed += c.zeroed;
            }
            "updated" => {
                counts.updated += n;
                counts.zeroed += c.zeroed;
            }
            "conflict" => counts.conflicts.extend(c.lines.into_iter().zip(c.firsts)),
            _ => counts.duplicate += n,
        }
        counts.changed_keys.extend(c.keys);
    }
    Ok(counts)
}

/// What merging one file changed, per target table.
#[derive(Debug, Default, Clone)]
pub struct FileMerge {
    /// The file's own row counts (a listings row counts once, by its market part).
    pub counts: MergeCounts,
    pub coins_changed: bool,
    pub market_coins: BTreeSet<String>,
    pub ranking_coins: BTreeSet<String>,
    pub candle_coins: BTreeSet<String>,
    pub ticker_coins: BTreeSet<String>,
    pub people_changed: bool,
    pub trades_changed: bool,
}

/// Merges a staged file of `staged` rows into the warehouse; `new_coins` and `aliases`
/// are what a listings file added to the coin dimension.
pub fn merge_file(
    conn: &mut PgConnection,
    dataset: Dataset,
    staged: Staged<'_>,
    new_coins: &[NewCoin],
    aliases: &[(String, String)],
) -> QueryResult<FileMerge> {
    let mut out = FileMerge::default();
    if !new_coins.is_empty() {
        let rows: Vec<_> = new_coins
            .iter()
            .map(|c| {
                (
                    coins::id.eq(&c.id),
                    coins::symbol.eq(&c.symbol),
                    coins::name.eq(&c.name),
                    coins::cmc_id.eq(c.cmc_id),
                    coins::origin.eq(if c.inferred { "inferred" } else { "listed" }),
                )
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            diesel::insert_into(coins::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        out.coins_changed = true;
    }
    if !aliases.is_empty() {
        let rows: Vec<_> = aliases
            .iter()
            .map(|(external, coin)| {
                (
                    coin_aliases::source.eq(crate::resolve::LISTINGS_ALIAS_SOURCE),
                    coin_aliases::external_id.eq(external),
                    coin_aliases::coin_id.eq(coin),
                )
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            diesel::insert_into(coin_aliases::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        // A listing that knows an inferred coin takes it over: same id and history,
        // the listing's id recorded as its alias.
        let known: Vec<&String> = aliases.iter().map(|(_, coin)| coin).collect();
        out.coins_changed |= diesel::update(
            coins::table
                .filter(coins::id.eq_any(known))
                .filter(coins::origin.eq("inferred")),
        )
        .set(coins::origin.eq("listed"))
        .execute(conn)?
            > 0;
    }
    match dataset {
        Dataset::Coins => {
            out.counts = merge(conn, &MERGE_COINS, "id", &staged)?;
            out.coins_changed |= out.counts.loaded + out.counts.updated > 0;
        }
        Dataset::Listings => {
            out.counts = merge(conn, &MERGE_MARKET, "coin_id", &staged)?;
            out.market_coins = out.counts.changed_keys.clone();
            // The rankings part of the rows: counted (and zeroed) by the market part.
            let rankings = Staged {
                zeroed: &[],
                ..staged
            };
            out.ranking_coins = merge(conn, &MERGE_RANKINGS, "coin_id", &rankings)?.changed_keys;
        }
        Dataset::Markets => {
            out.counts = merge(conn, &MERGE_MARKET, "coin_id", &staged)?;
            out.market_coins = out.counts.changed_keys.clone();
        }
        Dataset::Rankings => {
            out.counts = merge(conn, &MERGE_RANKINGS, "coin_id", &staged)?;
            out.ranking_coins = out.counts.changed_keys.clone();
        }
        Dataset::Candles => {
            out.counts = merge(conn, &MERGE_CANDLES, "coin_id", &staged)?;
            out.candle_coins = out.counts.changed_keys.clone();
        }
        Dataset::Tickers => {
            out.counts = merge(conn, &MERGE_TICKERS, "coin_id", &staged)?;
            out.ticker_coins = out.counts.changed_keys.clone();
        }
        Dataset::People => {
            out.counts = merge(conn, &MERGE_PEOPLE, "person_id", &staged)?;
            out.people_changed = out.counts.loaded + out.counts.updated > 0;
        }
        Dataset::Trades => {
            out.counts = merge(conn, &MERGE_TRADES, "person_id", &staged)?;
            out.trades_changed = out.counts.loaded + out.counts.updated > 0;
        }
    }
    Ok(out)
}

#[derive(Insertable)]
#[diesel(table_name = etl_rejects, treat_none_as_default_value = false)]
struct NewReject<'a> {
    run_id: i64,
    file: &'a str,
    line: i64,
    column_name: Option<&'a str>,
    raw_value: Option<&'a str>,
    reason: &'a str,
    raw_line: &'a str,
}

/// Stores the rejects of one evaluation of a file, keeping one copy per (file content,
/// line): a line already stored for the same content (by an earlier run, or by a copy of
/// the file elsewhere in the directory) is not stored again, and a stored line that this
/// evaluation no longer rejects (its coin is known now, say) is removed, since its row is
/// now loaded or counted as set aside. `evaluated_before` says whether the ledger holds
/// this content already; when it does not, there is nothing to compare with. Returns
/// whether `etl_rejects` changed.
pub fn store_rejects(
    conn: &mut PgConnection,
    run_id: i64,
    file: &str,
    sha256: &str,
    rejects: &[Rejection],
    evaluated_before: bool,
) -> QueryResult<bool> {
    let mut changed = false;
    let mut stored = std::collections::HashSet::new();
    if evaluated_before {
        let lines: Vec<i64> = rejects.iter().map(|r| r.line).collect();
        changed |= diesel::sql_query(
            "DELETE FROM etl_rejects r USING etl_files f \
             WHERE f.run_id = r.run_id AND f.path = r.file AND f.sha256 = $1 \
               AND NOT (r.line = ANY($2))",
        )
        .bind::<Text, _>(sha256)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&lines)
        .execute(conn)?
            > 0;
        #[derive(QueryableByName)]
        struct Line {
            #[diesel(sql_type = BigInt)]
            line: i64,
        }
        let found: Vec<Line> = diesel::sql_query(
            "SELECT r.line FROM etl_rejects r JOIN etl_files f \
               ON f.run_id = r.run_id AND f.path = r.file WHERE f.sha256 = $1",
        )
        .bind::<Text, _>(sha256)
        .load(conn)?;
        stored.extend(found.into_iter().map(|l| l.line));
    }
    let fresh: Vec<&Rejection> = rejects
        .iter()
        .filter(|r| !stored.contains(&r.line))
        .collect();
    for chunk in fresh.chunks(COPY_CHUNK) {
        let rows: Vec<NewReject<'_>> = chunk
            .iter()
            .map(|r| NewReject {
                run_id,
                file,
                line: r.line,
                column_name: r.column.as_deref(),
                raw_value: r.raw_value.as_deref(),
                reason: &r.reason,
                raw_line: &r.raw_line,
            })
            .collect();
        diesel::copy_from(etl_rejects::table)
            .from_insertable(&rows)
            .execute(conn)?;
        changed = true;
    }
    Ok(changed)
}

/// The latest evaluation of a file's content recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Evaluation {
    pub run_id: i64,
    pub status: String,
    pub reason: Option<String>,
    pub counts: Counts,
    pub coin_list: Option<String>,
}

/// The latest evaluation of the content `sha256` (of a recognised file), if any.
pub fn last_evaluation(conn: &mut PgConnection, sha256: &str) -> QueryResult<Option<Evaluation>> {
    etl_files::table
        .filter(etl_files::sha256.eq(sha256))
        .filter(etl_files::dataset.is_not_null())
        .order((etl_files::run_id.desc(), etl_files::id.desc()))
        .select((
            etl_files::run_id,
            etl_files::status,
            etl_files::reason,
            Counts::as_select(),
            etl_files::coin_list,
        ))
        .first(conn)
        .optional()
}

/// Marks runs left `running` by a process that no longer holds the lock. Call with the
/// lock held: then no other run can be live.
pub fn mark_abandoned(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::update(etl_runs::table.filter(etl_runs::status.eq("running")))
        .set((
            etl_runs::status.eq("abandoned"),
            etl_runs::finished_at.eq(diesel::dsl::now),
            etl_runs::message.eq("the process ended without finishing the run"),
        ))
        .execute(conn)
}

/// Registers a run (committed on its own, so a crash leaves a `running` row behind).
pub fn start_run(conn: &mut PgConnection, data_dir: &str) -> QueryResult<i64> {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    diesel::insert_into(etl_runs::table)
        .values((
            etl_runs::status.eq("running"),
            etl_runs::pid.eq(std::process::id() as i32),
            etl_runs::host.eq(host),
            etl_runs::data_dir.eq(data_dir),
        ))
        .returning(etl_runs::id)
        .get_result(conn)
}

pub fn finish_run(
    conn: &mut PgConnection,
    run_id: i64,
    status: &str,
    message: Option<&str>,
    summary: &serde_json::Value,
) -> QueryResult<()> {
    // now() would be the transaction's start: the run's data commits with this update.
    let clock = diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(
        "clock_timestamp()",
    );
    diesel::update(etl_runs::table.find(run_id))
        .set((
            etl_runs::status.eq(status),
            etl_runs::finished_at.eq(clock),
            etl_runs::message.eq(message),
            etl_runs::summary.eq(summary),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The sha256 of every file already loaded.
pub fn loaded_hashes(conn: &mut PgConnection) -> QueryResult<BTreeSet<String>> {
    etl_files::table
        .filter(etl_files::status.eq("loaded"))
        .select(etl_files::sha256)
        .distinct()
        .load::<String>(conn)
        .map(|v| v.into_iter().collect())
}

/// A file's ledger row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = etl_files, treat_none_as_default_value = false)]
pub struct NewEtlFile {
    pub run_id: i64,
    pub path: String,
    pub sha256: String,
    pub dataset: Option<String>,
    pub size_bytes: i64,
    pub status: String,
    pub reason: Option<String>,
    #[diesel(embed)]
    pub counts: Counts,
    pub seconds: f64,
    /// For a set-aside file: [`crate::validate::Known::fingerprint`] of what it was
    /// judged against.
    pub coin_list: Option<String>,
}

pub fn record_file(conn: &mut PgConnection, file: &NewEtlFile) -> QueryResult<()> {
    diesel::insert_into(etl_files::table)
        .values(file)
        .execute(conn)
        .map(|_| ())
}

/// Bumps the data version of each served dataset a run changed.
pub fn bump_versions(conn: &mut PgConnection, datasets: &[&str]) -> QueryResult<()> {
    use coinflow_shared::schema::data_versions::dsl as dv;
    if datasets.is_empty() {
        return Ok(());
    }
    diesel::update(dv::data_versions.filter(dv::dataset.eq_any(datasets)))
        .set((
            dv::version.eq(dv::version + 1),
            dv::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[(&str, i64)]) -> Vec<MarketRow> {
        keys.iter()
            .enumerate()
            .map(|(i, (coin, hour))| MarketRow {
                line: i as i64 + 2,
                coin_id: coin.to_string(),
                ts: DateTime::from_timestamp(1_700_000_000 + hour * 3600, 0).unwrap_or_default(),
                price_usd: 1.0,
                market_cap_usd: None,
                volume_24h_usd: None,
            })
            .collect()
    }

    #[test]
    fn key_spans_accept_each_coin_in_order_either_way() {
        let run = KeySpans::default();
        let mut file = KeySpans::default();
        // Coin by coin ascending, then interleaved and descending for another coin.
        assert!(run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("a", 2), ("b", 9)])));
        assert!(run.extend(&mut file, &rows(&[("b", 8), ("c", 0), ("b", 7), ("c", 1)])));
        // A later file extends a coin's span below or above it.
        let mut run = run;
        run.absorb(file);
        let mut next = KeySpans::default();
        assert!(run.extend(&mut next, &rows(&[("a", -1), ("a", 3), ("b", 10)])));
    }

    #[test]
    fn key_spans_refuse_a_timestamp_inside_its_coins_span() {
        let run = KeySpans::default();
        // The repeated key itself, within one batch.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("a", 1)])));
        // A gap filled later is refused too: it cannot be told from a repeat.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 5), ("a", 3)])));
        // A coin that comes back within one batch, inside its span.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 2), ("b", 0), ("a", 1)])));
        // Across batches of a file, after switching coins.
        let mut file = KeySpans::default();
        assert!(run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("b", 0)])));
        assert!(!run.extend(&mut file, &rows(&[("a", 0)])));
        // Across files: only spans of files that loaded count.
        let mut run = KeySpans::default();
        let mut loaded = KeySpans::default();
        assert!(run.extend(&mut loaded, &rows(&[("a", 0), ("a", 1)])));
        run.absorb(loaded);
        let mut next = KeySpans::default();
        assert!(!run.extend(&mut next, &rows(&[("a", 1)])));
        let mut discarded = KeySpans::default();
        assert!(run.extend(&mut discarded, &rows(&[("b", 0)])));
        let mut next = KeySpans::default();
        assert!(run.extend(&mut next, &rows(&[("b", 0)])));
    }
}
