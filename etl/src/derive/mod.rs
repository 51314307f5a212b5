//! Brings the derived tables up to date after a run's files are merged. Takes what the
//! merges changed ([`Changes`]); each derived table has one file here that reads its
//! inputs back from the warehouse (per coin in bounded batches, or per person), runs its
//! pure polars transform ([`crate::transform`]) and synchronises the table so that only
//! rows that really differ are written: [`ranks`] (`market.rank` from `rankings`),
//! [`top_slots`], [`daily`], [`coin_exchanges`], [`traders`], [`positions`]. Returns the
//! `data_versions` keys that changed. Writes derived tables only, never the inputs or
//! the ledger. The transforms stay in one module of their own: they are pure, tested
//! together on small frames, and some serve two tables' inputs (the daily fold).
//!
//! A table is synchronised from a scratch copy (`tmp_<table>`) whose rows are declared
//! once, beside the code that fills them, with [`crate::rows::temp_rows!`] `like
//! <table>`: the struct, its `table!` and `Insertable` come from that one list, and the
//! copy is created `LIKE` the migrated table. The list itself cannot be derived from
//! `shared/src/schema.rs` (a `macro_rules!` cannot read another macro's `table!`, and
//! the schema is `diesel print-schema`'s output, not ours to annotate): instead the row
//! is `Insertable` into the warehouse table too, so a declared field that the schema
//! lacks, or types differently, fails to compile.

mod coin_exchanges;
mod daily;
mod positions;
mod ranks;
mod top_slots;
mod traders;

pub(crate) use daily::DailyFold;

use crate::rows::TempTable;
use chrono::{DateTime, Utc};
use coinflow_shared::dataset::Shape;
use coinflow_shared::ledger::Versioned;
use coinflow_shared::version_changes;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use polars::prelude::*;
use std::collections::BTreeSet;
use thiserror::Error;

/// Why the refresh of the derived tables failed.
#[derive(Debug, Error)]
pub enum RefreshError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("transform failed: {0}")]
    Polars(#[from] PolarsError),
}

/// Coins per batch when reading per-coin inputs back: bounds memory on large tables.
pub(crate) const COIN_BATCH: usize = 250;

/// What merges changed, as input to the refresh: what one file's merge changed, or
/// (absorbed file by file) what the whole run's did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    pub(crate) coins_changed: bool,
    pub(crate) market_coins: BTreeSet<String>,
    pub(crate) ranking_coins: BTreeSet<String>,
    pub(crate) candle_coins: BTreeSet<String>,
    pub(crate) ticker_coins: BTreeSet<String>,
    pub(crate) people_changed: bool,
    pub(crate) trades_changed: bool,
    /// `etl_rejects` changed (its served dataset is versioned too).
    pub(crate) rejects_stored: bool,
    /// Daily rows folded while markets files loaded directly (run-wide only).
    pub(crate) daily_fold: DailyFold,
}

impl Changes {
    /// Takes in what one file's merge changed; coins whose snapshots it changed leave
    /// the daily fold.
    pub(crate) fn absorb(&mut self, m: &Changes) {
        self.coins_changed |= m.coins_changed;
        self.market_coins.extend(m.market_coins.iter().cloned());
        self.daily_fold.forget(&m.market_coins);
        self.ranking_coins.extend(m.ranking_coins.iter().cloned());
        self.candle_coins.extend(m.candle_coins.iter().cloned());
        self.ticker_coins.extend(m.ticker_coins.iter().cloned());
        self.people_changed |= m.people_changed;
        self.trades_changed |= m.trades_changed;
    }
}

fn micros(ts: &DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn to_ts(micros: Option<i64>) -> Option<DateTime<Utc>> {
    micros.and_then(DateTime::from_timestamp_micros)
}

#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// Replaces the rows of a served table in scope by those in `temp`, writing only
/// differences; its key and value columns come from its declaration
/// (`coinflow_shared::dataset`), the same one the API reads it by and the tests hold
/// against its migration. `scope` (a column and its values) bounds the rows replaced;
/// `temp` holds rows in scope only. Records the lowest key of a row that predates the
/// run and is changed or deleted (`coinflow_shared::version_changes`). Returns how many
/// rows were inserted, changed or deleted.
pub(crate) fn sync_served(
    conn: &mut PgConnection,
    shape: &Shape,
    temp: &str,
    scope: Option<(&str, &[String])>,
) -> QueryResult<i64> {
    let scope_sql = match scope {
        Some((column, _)) => format!("t.{column} = ANY($1)"),
        None => "TRUE".to_string(),
    };
    let values = shape.value_columns();
    let sql = sync_sql(
        shape.table,
        temp,
        shape.key,
        &values,
        &scope_sql,
        Some(shape),
    );
    let count: Count = match scope {
        Some((_, ids)) => diesel::sql_query(sql)
            .bind::<Array<Text>, _>(ids)
            .get_result(conn)?,
        None => diesel::sql_query(sql).get_result(conn)?,
    };
    Ok(count.n)
}

/// The statement of [`sync_served`]: deletes the rows of `target` (aliased `t`) matching
/// `scope_sql` that `temp` lacks, inserts or updates the others where they differ, and
/// returns the number of rows written as `n`. With `served`, also records the lowest
/// key of a row in scope that predates the run and that `temp` does not repeat exactly
/// (one that is deleted or updated).
pub(crate) fn sync_sql(
    target: &str,
    temp: &str,
    keys: &[&str],
    values: &[&str],
    scope_sql: &str,
    served: Option<&Shape>,
) -> String {
    let on: Vec<String> = keys.iter().map(|k| format!("n.{k} = t.{k}")).collect();
    let on = on.join(" AND ");
    let all: Vec<&str> = keys.iter().chain(values).copied().collect();
    let set: Vec<String> = values
        .iter()
        .map(|v| format!("{v} = EXCLUDED.{v}"))
        .collect();
    let row = |prefix: &str| {
        let cols: Vec<String> = values.iter().map(|v| format!("{prefix}{v}")).collect();
        format!("ROW({})", cols.join(", "))
    };
    let record = served
        .map(|shape| {
            let changed = format!(
                "{scope_sql} AND {} AND NOT EXISTS (SELECT 1 FROM {temp} n WHERE {on} \
                 AND {} IS NOT DISTINCT FROM {})",
                version_changes::pre_existing("t"),
                row("n."),
                row("t."),
            );
            format!(
                "low AS ({}), ",
                version_changes::record_low_key(shape, &format!("{target} t"), "t", &changed)
            )
        })
        .unwrap_or_default();
    format!(
        "WITH {record}del AS (DELETE FROM {target} t WHERE {scope_sql} AND NOT EXISTS (SELECT 1 FROM {temp} n WHERE {on}) RETURNING 1), \
         ins AS (INSERT INTO {target} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT ({keys}) DO UPDATE SET {set} \
                 WHERE {old} IS DISTINCT FROM {new} RETURNING 1) \
         SELECT (SELECT count(*) FROM del) + (SELECT count(*) FROM ins) AS n",
        cols = all.join(", "),
        keys = keys.join(", "),
        set = set.join(", "),
        old = row(&format!("{target}.")),
        new = row("EXCLUDED."),
    )
}

/// A coin and the earliest instant from which the current run's writes can change its
/// derived rows.
#[derive(QueryableByName)]
pub(crate) struct Since {
    #[diesel(sql_type = Text)]
    pub(crate) key: String,
    #[diesel(sql_type = Timestamptz)]
    pub(crate) since: DateTime<Utc>,
}

/// Per coin of `coins`, the earliest instant among the rows this transaction wrote
/// (found by their `xmin`, [`version_changes::written_now`]) in each of `sources`
/// (`(table, instant column)`); earliest first.
pub(crate) fn written_since(
    conn: &mut PgConnection,
    sources: &[(&str, &str)],
    coins: &[String],
) -> QueryResult<Vec<Since>> {
    let union: Vec<String> = sources
        .iter()
        .map(|(table, at)| {
            format!(
                "SELECT r.coin_id, r.{at} AS ts FROM {table} r WHERE {} AND r.coin_id = ANY($1)",
                version_changes::written_now("r")
            )
        })
        .collect();
    let sql = format!(
        "SELECT w.coin_id AS key, min(w.ts) AS since FROM ({}) w GROUP BY w.coin_id ORDER BY w.coin_id",
        union.join(" UNION ALL ")
    );
    let mut written: Vec<Since> = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(coins)
        .load(conn)?;
    written.sort_by_key(|s| s.since);
    Ok(written)
}

/// An empty temporary table, as declared ([`crate::rows::temp_rows!`]). Created once per
/// run and truncated on reuse: creating one per batch would pile up locks in the run's
/// transaction.
pub(crate) fn temp_table(conn: &mut PgConnection, table: &TempTable) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {name} ({definition}) ON COMMIT DROP; TRUNCATE {name}",
        name = table.name,
        definition = table.definition(),
    ))
}

/// Refreshes every derived table the changes touch; returns the `data_versions` keys
/// that changed. `after_ranks` runs once the snapshots' ranks are written and before
/// anything reads them: a first load rebuilds `market`'s secondary indexes there, so
/// the rank writes maintain only its primary key.
pub(crate) fn refresh(
    conn: &mut PgConnection,
    changes: &Changes,
    tolerance_us: i64,
    after_ranks: impl FnOnce(&mut PgConnection) -> Result<(), RefreshError>,
) -> Result<Vec<Versioned>, RefreshError> {
    let mut changed: Vec<Versioned> = Vec::new();
    if changes.coins_changed {
        changed.push(Versioned::Coins);
    }
    let rank_coins: Vec<String> = changes
        .market_coins
        .union(&changes.ranking_coins)
        .cloned()
        .collect();
    let ranks_changed = timed("market ranks", || {
        ranks::refresh(conn, &rank_coins, tolerance_us)
    })?;
    if ranks_changed > 0 || !changes.market_coins.is_empty() {
        changed.push(Versioned::Market);
    }
    after_ranks(conn)?;
    let slot_coins: Vec<String> = changes
        .market_coins
        .iter()
        .chain(&changes.ranking_coins)
        .chain(&changes.candle_coins)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    timed("top slots", || top_slots::refresh(conn, &slot_coins))?;
    // Coins with candles in this run are read back: candles win over snapshots.
    let fold = &changes.daily_fold;
    let (folded, read_back): (Vec<String>, Vec<String>) = changes
        .market_coins
        .union(&changes.candle_coins)
        .cloned()
        .partition(|c| fold.covers(c) && !changes.candle_coins.contains(c));
    let daily_changed = timed("daily", || {
        Ok(daily::refresh(conn, &read_back)? + daily::store_folded(conn, fold, &folded)?)
    })?;
    if daily_changed > 0 {
        changed.push(Versioned::Daily);
    }
    let ticker_coins: Vec<String> = changes.ticker_coins.iter().cloned().collect();
    if timed("coin_exchanges", || {
        coin_exchanges::refresh(conn, &ticker_coins)
    })? > 0
    {
        changed.push(Versioned::CoinExchanges);
    }
    if (changes.people_changed || changes.trades_changed)
        && timed("traders", || traders::refresh(conn))? > 0
    {
        changed.push(Versioned::Traders);
    }
    if (changes.trades_changed || !changes.market_coins.is_empty())
        && timed("positions", || positions::refresh(conn))? > 0
    {
        changed.push(Versioned::Positions);
    }
    if changes.rejects_stored {
        changed.push(Versioned::Rejects);
    }
    Ok(changed)
}

/// Runs one table's refresh and logs how many rows it changed and how long it took.
fn timed(
    table: &str,
    refresh: impl FnOnce() -> Result<i64, RefreshError>,
) -> Result<i64, RefreshError> {
    let started = std::time::Instant::now();
    let changed = refresh()?;
    log::info!(
        "{table}: {changed} row(s) changed in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(changed)
}
