//! Brings the derived tables up to date after a run's files are merged: reads the inputs
//! of the affected coins (in bounded batches) or people from the warehouse, runs the
//! polars transforms, and synchronises each derived table so that only rows that really
//! differ are written. Reports which served datasets changed.

use crate::rows::MarketRow;
use crate::transform;
use chrono::{DateTime, NaiveDate, Utc};
use coinflow_shared::schema::{candles, daily, market, people, rankings, tickers, trades};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use polars::prelude::*;
use std::collections::{BTreeSet, HashSet};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RefreshError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("transform failed: {0}")]
    Polars(#[from] PolarsError),
}

/// Coins per batch when reading per-coin inputs back: bounds memory on large tables.
pub(crate) const COIN_BATCH: usize = 250;

diesel::table! {
    tmp_rank (coin_id, ts) {
        coin_id -> Text,
        ts -> Timestamptz,
        rank -> Nullable<Int4>,
        rank_source -> Nullable<Text>,
    }
}

diesel::table! {
    tmp_daily (coin_id, day) {
        coin_id -> Text,
        day -> Date,
        open -> Float8,
        high -> Float8,
        low -> Float8,
        close -> Float8,
        avg_price -> Float8,
        max_market_cap_usd -> Nullable<Float8>,
        last_volume_usd -> Nullable<Float8>,
        samples -> Int4,
        source -> Text,
    }
}

diesel::table! {
    tmp_coin_exchanges (coin_id) {
        coin_id -> Text,
        exchanges -> Array<Text>,
        exchange_count -> Int4,
    }
}

diesel::table! {
    tmp_traders (person_id) {
        person_id -> Int8,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        date_added -> Nullable<Timestamptz>,
        last_trade_ts -> Nullable<Timestamptz>,
        last_trade_coin_id -> Nullable<Text>,
        last_trade_side -> Nullable<Text>,
        last_trade_quantity -> Nullable<Float8>,
        last_trade_price -> Nullable<Float8>,
        trade_count -> Int8,
    }
}

diesel::table! {
    tmp_positions (person_id, coin_id) {
        person_id -> Int8,
        coin_id -> Text,
        net_quantity -> Float8,
        trade_count -> Int8,
        avg_buy_price -> Nullable<Float8>,
        last_price_usd -> Nullable<Float8>,
        market_value_usd -> Nullable<Float8>,
    }
}

#[derive(Insertable)]
#[diesel(table_name = tmp_rank, treat_none_as_default_value = false)]
struct RankRow {
    coin_id: String,
    ts: DateTime<Utc>,
    rank: Option<i32>,
    rank_source: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = tmp_daily, table_name = daily, treat_none_as_default_value = false)]
struct DailyRow {
    coin_id: String,
    day: NaiveDate,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    avg_price: f64,
    max_market_cap_usd: Option<f64>,
    last_volume_usd: Option<f64>,
    samples: i32,
    source: String,
}

#[derive(Insertable)]
#[diesel(table_name = tmp_coin_exchanges, treat_none_as_default_value = false)]
struct CoinExchangesRow {
    coin_id: String,
    exchanges: Vec<String>,
    exchange_count: i32,
}

#[derive(Insertable)]
#[diesel(table_name = tmp_traders, treat_none_as_default_value = false)]
struct TraderRow {
    person_id: i64,
    first_name: String,
    last_name: String,
    email: String,
    date_added: Option<DateTime<Utc>>,
    last_trade_ts: Option<DateTime<Utc>>,
    last_trade_coin_id: Option<String>,
    last_trade_side: Option<String>,
    last_trade_quantity: Option<f64>,
    last_trade_price: Option<f64>,
    trade_count: i64,
}

#[derive(Insertable)]
#[diesel(table_name = tmp_positions, treat_none_as_default_value = false)]
struct PositionRow {
    person_id: i64,
    coin_id: String,
    net_quantity: f64,
    trade_count: i64,
    avg_buy_price: Option<f64>,
    last_price_usd: Option<f64>,
    market_value_usd: Option<f64>,
}

/// What the run's merges changed, as input to the refresh.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub coins_changed: bool,
    pub market_coins: BTreeSet<String>,
    pub ranking_coins: BTreeSet<String>,
    pub candle_coins: BTreeSet<String>,
    pub ticker_coins: BTreeSet<String>,
    pub people_changed: bool,
    pub trades_changed: bool,
    pub rejects_stored: bool,
    pub daily_fold: DailyFold,
}

impl Changes {
    pub fn absorb(&mut self, m: &crate::load::FileMerge) {
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
struct Key {
    #[diesel(sql_type = Text)]
    key: String,
}

#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// Replaces `target`'s rows in scope by those in `temp`, writing only differences.
/// Returns how many rows were inserted, changed or deleted.
pub(crate) fn sync(
    conn: &mut PgConnection,
    target: &str,
    temp: &str,
    keys: &[&str],
    values: &[&str],
    scope: Option<(&str, &[String])>,
) -> QueryResult<i64> {
    let scope_sql = match scope {
        Some((column, _)) => format!("t.{column} = ANY($1)"),
        None => "TRUE".to_string(),
    };
    let sql = sync_sql(target, temp, keys, values, &scope_sql);
    let count: Count = match scope {
        Some((_, ids)) => diesel::sql_query(sql)
            .bind::<Array<Text>, _>(ids)
            .get_result(conn)?,
        None => diesel::sql_query(sql).get_result(conn)?,
    };
    Ok(count.n)
}

/// The statement of [`sync`]: deletes the rows of `target` (aliased `t`) matching
/// `scope_sql` that `temp` lacks, inserts or updates the others where they differ, and
/// returns the number of rows written as `n`.
pub(crate) fn sync_sql(
    target: &str,
    temp: &str,
    keys: &[&str],
    values: &[&str],
    scope_sql: &str,
) -> String {
    let on: Vec<String> = keys.iter().map(|k| format!("n.{k} = t.{k}")).collect();
    let all: Vec<&str> = keys.iter().chain(values).copied().collect();
    let set: Vec<String> = values
        .iter()
        .map(|v| format!("{v} = EXCLUDED.{v}"))
        .collect();
    let row = |prefix: &str| {
        let cols: Vec<String> = values.iter().map(|v| format!("{prefix}{v}")).collect();
        format!("ROW({})", cols.join(", "))
    };
    format!(
        "WITH del AS (DELETE FROM {target} t WHERE {scope_sql} AND NOT EXISTS (SELECT 1 FROM {temp} n WHERE {on}) RETURNING 1), \
         ins AS (INSERT INTO {target} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT ({keys}) DO UPDATE SET {set} \
                 WHERE {old} IS DISTINCT FROM {new} RETURNING 1) \
         SELECT (SELECT count(*) FROM del) + (SELECT count(*) FROM ins) AS n",
        on = on.join(" AND "),
        cols = all.join(", "),
        keys = keys.join(", "),
        set = set.join(", "),
        old = row(&format!("{target}.")),
        new = row("EXCLUDED."),
    )
}

/// An empty temporary table shaped like `like`. Created once per run and truncated on
/// reuse: creating one per batch would pile up locks in the run's transaction.
pub(crate) fn temp_table(conn: &mut PgConnection, temp: &str, like: &str) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {like}) ON COMMIT DROP; TRUNCATE {temp}"
    ))
}

/// Refreshes every derived table the changes touch; returns the served datasets that
/// changed (for their data versions).
pub fn refresh(
    conn: &mut PgConnection,
    changes: &Changes,
    tolerance_us: i64,
) -> Result<Vec<&'static str>, RefreshError> {
    let mut changed: Vec<&'static str> = Vec::new();
    if changes.coins_changed {
        changed.push("coins");
    }
    let rank_coins: Vec<String> = changes
        .market_coins
        .union(&changes.ranking_coins)
        .cloned()
        .collect();
    let ranks_changed = timed("market ranks", || {
        refresh_ranks(conn, &rank_coins, tolerance_us)
    })?;
    if ranks_changed > 0 || !changes.market_coins.is_empty() {
        changed.push("market");
    }
    let slot_coins: Vec<String> = changes
        .market_coins
        .iter()
        .chain(&changes.ranking_coins)
        .chain(&changes.candle_coins)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    timed("top slots", || {
        crate::slots::refresh_slots(conn, &slot_coins)
    })?;
    // Coins with candles in this run are read back: candles win over snapshots.
    let fold = &changes.daily_fold;
    let (folded, read_back): (Vec<String>, Vec<String>) = changes
        .market_coins
        .union(&changes.candle_coins)
        .cloned()
        .partition(|c| fold.covers(c) && !changes.candle_coins.contains(c));
    let daily_changed = timed("daily", || {
        Ok(refresh_daily(conn, &read_back)? + store_folded_daily(conn, fold, &folded)?)
    })?;
    if daily_changed > 0 {
        changed.push("daily");
    }
    let ticker_coins: Vec<String> = changes.ticker_coins.iter().cloned().collect();
    if timed("coin_exchanges", || {
        refresh_coin_exchanges(conn, &ticker_coins)
    })? > 0
    {
        changed.push("coin_exchanges");
    }
    if (changes.people_changed || changes.trades_changed)
        && timed("traders", || refresh_traders(conn))? > 0
    {
        changed.push("traders");
    }
    if (changes.trades_changed || !changes.market_coins.is_empty())
        && timed("positions", || refresh_positions(conn))? > 0
    {
        changed.push("positions");
    }
    if changes.rejects_stored {
        changed.push("rejects");
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

fn refresh_ranks(
    conn: &mut PgConnection,
    coins: &[String],
    tolerance_us: i64,
) -> Result<i64, RefreshError> {
    if coins.is_empty() {
        return Ok(0);
    }
    // A coin with no ranking and no ranked snapshot has nothing to join: its snapshots'
    // ranks stay null. Skipping it keeps price-only loads from reading everything back.
    let coins: Vec<String> = diesel::sql_query(
        "SELECT c AS key FROM unnest($1::text[]) AS c \
         WHERE EXISTS (SELECT 1 FROM rankings r WHERE r.coin_id = c) \
            OR EXISTS (SELECT 1 FROM market m WHERE m.coin_id = c AND m.rank IS NOT NULL)",
    )
    .bind::<Array<Text>, _>(coins)
    .load::<Key>(conn)?
    .into_iter()
    .map(|k| k.key)
    .collect();
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        let snaps: Vec<(String, DateTime<Utc>)> = market::table
            .filter(market::coin_id.eq_any(batch))
            .select((market::coin_id, market::ts))
            .load(conn)?;
        let ranks: Vec<(String, DateTime<Utc>, i32, String)> = rankings::table
            .filter(rankings::coin_id.eq_any(batch))
            .select((
                rankings::coin_id,
                rankings::ts,
                rankings::rank,
                rankings::source,
            ))
            .load(conn)?;
        let snapshots = df!(
            "coin_id" => snaps.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => snaps.iter().map(|r| micros(&r.1)).collect::<Vec<_>>()
        )?;
        drop(snaps);
        let rankings_df = df!(
            "coin_id" => ranks.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => ranks.iter().map(|r| micros(&r.1)).collect::<Vec<_>>(),
            "rank" => ranks.iter().map(|r| r.2).collect::<Vec<_>>(),
            "source" => ranks.iter().map(|r| r.3.as_str()).collect::<Vec<_>>()
        )?;
        let joined = transform::market_ranks(snapshots, rankings_df, tolerance_us)?;
        let coin = joined.column("coin_id")?.str()?;
        let ts = joined.column("ts")?.i64()?;
        let rank = joined.column("rank")?.i32()?;
        let source = joined.column("rank_source")?.str()?;
        let rows: Vec<RankRow> = (0..joined.height())
            .map(|i| RankRow {
                coin_id: coin.get(i).unwrap_or_default().to_string(),
                ts: to_ts(ts.get(i)).unwrap_or_default(),
                rank: rank.get(i),
                rank_source: source.get(i).map(str::to_string),
            })
            .collect();
        conn.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS tmp_rank (coin_id text, ts timestamptz, rank int4, rank_source text) ON COMMIT DROP; TRUNCATE tmp_rank",
        )?;
        for chunk in rows.chunks(crate::load::COPY_CHUNK) {
            diesel::copy_from(tmp_rank::table)
                .from_insertable(chunk)
                .execute(conn)?;
        }
        changed += conn_execute(
            conn,
            "UPDATE market m SET rank = r.rank, rank_source = r.rank_source FROM tmp_rank r \
             WHERE m.coin_id = r.coin_id AND m.ts = r.ts \
             AND (m.rank IS DISTINCT FROM r.rank OR m.rank_source IS DISTINCT FROM r.rank_source)",
        )?;
    }
    Ok(changed)
}

fn conn_execute(conn: &mut PgConnection, sql: &str) -> QueryResult<i64> {
    diesel::sql_query(sql).execute(conn).map(|n| n as i64)
}

fn refresh_daily(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        type MarketIn = (String, DateTime<Utc>, f64, Option<f64>, Option<f64>);
        let m: Vec<MarketIn> = market::table
            .filter(market::coin_id.eq_any(batch))
            .select((
                market::coin_id,
                market::ts,
                market::price_usd,
                market::market_cap_usd,
                market::volume_24h_usd,
            ))
            .load(conn)?;
        type CandleIn = (
            String,
            DateTime<Utc>,
            f64,
            f64,
            f64,
            f64,
            Option<f64>,
            Option<f64>,
        );
        let c: Vec<CandleIn> = candles::table
            .filter(candles::coin_id.eq_any(batch))
            .select((
                candles::coin_id,
                candles::ts,
                candles::open,
                candles::high,
                candles::low,
                candles::close,
                candles::volume_usd,
                candles::market_cap_usd,
            ))
            .load(conn)?;
        let market_df = df!(
            "coin_id" => m.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => m.iter().map(|r| micros(&r.1)).collect::<Vec<_>>(),
            "price" => m.iter().map(|r| r.2).collect::<Vec<_>>(),
            "market_cap" => m.iter().map(|r| r.3).collect::<Vec<_>>(),
            "volume" => m.iter().map(|r| r.4).collect::<Vec<_>>()
        )?;
        let candles_df = df!(
            "coin_id" => c.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => c.iter().map(|r| micros(&r.1)).collect::<Vec<_>>(),
            "open" => c.iter().map(|r| r.2).collect::<Vec<_>>(),
            "high" => c.iter().map(|r| r.3).collect::<Vec<_>>(),
            "low" => c.iter().map(|r| r.4).collect::<Vec<_>>(),
            "close" => c.iter().map(|r| r.5).collect::<Vec<_>>(),
            "volume" => c.iter().map(|r| r.6).collect::<Vec<_>>(),
            "market_cap" => c.iter().map(|r| r.7).collect::<Vec<_>>()
        )?;
        drop((m, c));
        let out = transform::daily(market_df, candles_df)?;
        changed += store_daily(conn, &out, batch)?;
    }
    Ok(changed)
}

/// Whether any of `coins` has stored daily rows: one probe of daily's key per coin (a
/// filter on `coin_id = ANY(..)` would be planned as a scan while `daily` fills up).
fn has_daily_rows(conn: &mut PgConnection, coins: &[String]) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        stored: bool,
    }
    let row: Stored = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS c \
                        WHERE EXISTS (SELECT 1 FROM daily d WHERE d.coin_id = c)) AS stored",
    )
    .bind::<Array<Text>, _>(coins)
    .get_result(conn)?;
    Ok(row.stored)
}

/// Writes daily rows (as [`transform::daily`] shapes them) for `coins`, replacing what
/// those coins had; returns how many rows changed.
fn store_daily(
    conn: &mut PgConnection,
    out: &DataFrame,
    coins: &[String],
) -> Result<i64, RefreshError> {
    let f = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(out.column(name)?.f64()?.iter().collect())
    };
    let (open, high, low, close, avg) = (
        f("open")?,
        f("high")?,
        f("low")?,
        f("close")?,
        f("avg_price")?,
    );
    let (max_cap, last_vol) = (f("max_market_cap_usd")?, f("last_volume_usd")?);
    let coin = out.column("coin_id")?.str()?;
    let day = out.column("day")?.i32()?;
    let samples = out.column("samples")?.i32()?;
    let source = out.column("source")?.str()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let rows: Vec<DailyRow> = (0..out.height())
        .map(|i| DailyRow {
            coin_id: coin.get(i).unwrap_or_default().to_string(),
            day: epoch + chrono::Days::new(day.get(i).unwrap_or_default().max(0) as u64),
            open: open[i].unwrap_or_default(),
            high: high[i].unwrap_or_default(),
            low: low[i].unwrap_or_default(),
            close: close[i].unwrap_or_default(),
            avg_price: avg[i].unwrap_or_default(),
            max_market_cap_usd: max_cap[i],
            last_volume_usd: last_vol[i],
            samples: samples.get(i).unwrap_or_default(),
            source: source.get(i).unwrap_or("market").to_string(),
        })
        .collect();
    // Coins with no daily rows yet (a first load) need no comparison: their rows go
    // straight in.
    if !has_daily_rows(conn, coins)? {
        for chunk in rows.chunks(crate::load::COPY_CHUNK) {
            diesel::copy_from(daily::table)
                .from_insertable(chunk)
                .execute(conn)?;
        }
        return Ok(rows.len() as i64);
    }
    temp_table(conn, "tmp_daily", "daily")?;
    for chunk in rows.chunks(crate::load::COPY_CHUNK) {
        diesel::copy_from(tmp_daily::table)
            .from_insertable(chunk)
            .execute(conn)?;
    }
    Ok(sync(
        conn,
        "daily",
        "tmp_daily",
        &["coin_id", "day"],
        &[
            "open",
            "high",
            "low",
            "close",
            "avg_price",
            "max_market_cap_usd",
            "last_volume_usd",
            "samples",
            "source",
        ],
        Some(("coin_id", coins)),
    )?)
}

/// Daily rows folded from snapshots while they load, for coins whose every snapshot and
/// candle arrived in this run through direct loads: their daily rows need nothing read
/// back from `market`. A coin stops qualifying when it had stored snapshots or candles
/// before the run, when this run brings candles for it, or when a staged merge touches
/// it; it is then refreshed by reading it back, like any other coin. Past
/// [`DailyFold::MAX_PARTIAL_ROWS`] partial rows the fold gives up (bounded memory) and
/// every coin is read back.
#[derive(Debug, Default, Clone)]
pub struct DailyFold {
    /// Coins met by direct loads in this run, whatever they qualified as.
    seen: BTreeSet<String>,
    /// The coins that qualify.
    folded: BTreeSet<String>,
    partials: Vec<DataFrame>,
    partial_rows: usize,
    overflowed: bool,
}

impl DailyFold {
    /// About 100 bytes a partial row: a few hundred MB at most.
    pub const MAX_PARTIAL_ROWS: usize = 3_000_000;

    /// Coins of `rows` not met before in this run.
    pub fn unseen<'a>(&self, rows: &'a [MarketRow]) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let mut met: HashSet<&str> = HashSet::new();
        let mut last = None;
        for row in rows {
            let id = row.coin_id.as_str();
            // Files are usually sorted by coin: look a coin up once per run of rows.
            if last != Some(id) && !self.seen.contains(id) && met.insert(id) {
                out.push(id);
            }
            last = Some(id);
        }
        out
    }

    /// Records which of the newly met coins qualify (`fresh`: no stored snapshot or
    /// candle, no candles in this run) and folds the batch's rows of qualifying coins.
    pub fn add(
        &mut self,
        unseen: &[&str],
        fresh: &BTreeSet<String>,
        rows: &[MarketRow],
    ) -> PolarsResult<()> {
        for id in unseen {
            self.seen.insert((*id).to_string());
        }
        self.folded.extend(fresh.iter().cloned());
        if self.overflowed {
            return Ok(());
        }
        let rows: Vec<&MarketRow> = rows
            .iter()
            .filter(|r| self.folded.contains(&r.coin_id))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let frame = df!(
            "coin_id" => rows.iter().map(|r| r.coin_id.as_str()).collect::<Vec<_>>(),
            "ts" => rows.iter().map(|r| micros(&r.ts)).collect::<Vec<_>>(),
            "price" => rows.iter().map(|r| r.price_usd).collect::<Vec<_>>(),
            "market_cap" => rows.iter().map(|r| r.market_cap_usd).collect::<Vec<_>>(),
            "volume" => rows.iter().map(|r| r.volume_24h_usd).collect::<Vec<_>>()
        )?;
        let partial = transform::daily_partials(frame)?;
        self.partial_rows += partial.height();
        self.partials.push(partial);
        if self.partial_rows > Self::MAX_PARTIAL_ROWS {
            log::info!(
                "daily: more than {} coin-days folded while loading; every coin is read back instead",
                Self::MAX_PARTIAL_ROWS
            );
            self.overflowed = true;
            self.partials.clear();
            self.partial_rows = 0;
        }
        Ok(())
    }

    /// A staged merge changed these coins' snapshots: they no longer qualify.
    pub fn forget(&mut self, coins: &BTreeSet<String>) {
        for coin in coins {
            self.seen.insert(coin.clone());
            self.folded.remove(coin);
        }
    }

    /// Whether `coin`'s daily rows come from the fold.
    fn covers(&self, coin: &str) -> bool {
        !self.overflowed && self.folded.contains(coin)
    }
}

/// Stores the folded daily rows of `coins` (qualifying coins).
fn store_folded_daily(
    conn: &mut PgConnection,
    fold: &DailyFold,
    coins: &[String],
) -> Result<i64, RefreshError> {
    if coins.is_empty() || fold.partials.is_empty() {
        return Ok(0);
    }
    let mut changed = 0;
    // One bounded batch of qualifying coins at a time: their partials are picked out of
    // every folded slice and combined, so the combined rows never exist for all coins at
    // once. Partials of coins that stopped qualifying after they were folded are left out.
    for batch in coins.chunks(COIN_BATCH * 4) {
        let ids: HashSet<&str> = batch.iter().map(String::as_str).collect();
        let mut picked: Option<DataFrame> = None;
        for slice in &fold.partials {
            let mask: BooleanChunked = slice
                .column("coin_id")?
                .str()?
                .iter()
                .map(|c| c.is_some_and(|c| ids.contains(c)))
                .collect();
            if !mask.any() {
                continue;
            }
            let part = slice.filter(&mask)?;
            match picked.as_mut() {
                Some(all) => {
                    all.vstack_mut(&part)?;
                }
                None => picked = Some(part),
            }
        }
        if let Some(partials) = picked {
            changed += store_daily(conn, &transform::daily_from_partials(partials)?, batch)?;
        }
    }
    Ok(changed)
}

fn refresh_coin_exchanges(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        let t: Vec<(String, String)> = tickers::table
            .filter(tickers::coin_id.eq_any(batch))
            .select((tickers::coin_id, tickers::exchange))
            .load(conn)?;
        let df = df!(
            "coin_id" => t.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "exchange" => t.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()
        )?;
        let out = transform::coin_exchanges(df)?;
        let coin = out.column("coin_id")?.str()?;
        let exchange = out.column("exchange")?.str()?;
        let mut rows: Vec<CoinExchangesRow> = Vec::new();
        for (c, e) in coin.iter().zip(exchange.iter()) {
            let (Some(c), Some(e)) = (c, e) else { continue };
            match rows.last_mut() {
                Some(last) if last.coin_id == c => last.exchanges.push(e.to_string()),
                _ => rows.push(CoinExchangesRow {
                    coin_id: c.to_string(),
                    exchanges: vec![e.to_string()],
                    exchange_count: 0,
                }),
            }
        }
        for row in &mut rows {
            row.exchange_count = row.exchanges.len() as i32;
        }
        temp_table(conn, "tmp_coin_exchanges", "coin_exchanges")?;
        diesel::copy_from(tmp_coin_exchanges::table)
            .from_insertable(&rows)
            .execute(conn)?;
        changed += sync(
            conn,
            "coin_exchanges",
            "tmp_coin_exchanges",
            &["coin_id"],
            &["exchanges", "exchange_count"],
            Some(("coin_id", batch)),
        )?;
    }
    Ok(changed)
}

fn refresh_traders(conn: &mut PgConnection) -> Result<i64, RefreshError> {
    type PersonIn = (i64, String, String, String, Option<DateTime<Utc>>);
    let p: Vec<PersonIn> = people::table
        .select((
            people::person_id,
            people::first_name,
            people::last_name,
            people::email,
            people::date_added,
        ))
        .load(conn)?;
    type TradeIn = (
        i64,
        i64,
        DateTime<Utc>,
        String,
        String,
        Option<f64>,
        Option<f64>,
    );
    let t: Vec<TradeIn> = trades::table
        .select((
            trades::person_id,
            trades::id,
            trades::ts,
            trades::coin_id,
            trades::side,
            trades::quantity,
            trades::price,
        ))
        .load(conn)?;
    let people_df = df!(
        "person_id" => p.iter().map(|r| r.0).collect::<Vec<_>>(),
        "first_name" => p.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "last_name" => p.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        "email" => p.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        "date_added" => p.iter().map(|r| r.4.as_ref().map(micros)).collect::<Vec<_>>()
    )?;
    let trades_df = df!(
        "person_id" => t.iter().map(|r| r.0).collect::<Vec<_>>(),
        "seq" => t.iter().map(|r| r.1).collect::<Vec<_>>(),
        "ts" => t.iter().map(|r| micros(&r.2)).collect::<Vec<_>>(),
        "coin_id" => t.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        "side" => t.iter().map(|r| r.4.as_str()).collect::<Vec<_>>(),
        "quantity" => t.iter().map(|r| r.5).collect::<Vec<_>>(),
        "price" => t.iter().map(|r| r.6).collect::<Vec<_>>()
    )?;
    drop((p, t));
    let out = transform::traders(people_df, trades_df)?;
    let s = |name: &str| -> PolarsResult<Vec<Option<String>>> {
        Ok(out
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let i = |name: &str| -> PolarsResult<Vec<Option<i64>>> {
        Ok(out.column(name)?.i64()?.iter().collect())
    };
    let f = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(out.column(name)?.f64()?.iter().collect())
    };
    let (ids, first, last, email) = (
        i("person_id")?,
        s("first_name")?,
        s("last_name")?,
        s("email")?,
    );
    let (added, last_ts, coin, side) = (
        i("date_added")?,
        i("last_trade_ts")?,
        s("last_trade_coin_id")?,
        s("last_trade_side")?,
    );
    let (qty, price, count) = (
        f("last_trade_quantity")?,
        f("last_trade_price")?,
        i("trade_count")?,
    );
    let rows: Vec<TraderRow> = (0..out.height())
        .map(|k| TraderRow {
            person_id: ids[k].unwrap_or_default(),
            first_name: first[k].clone().unwrap_or_default(),
            last_name: last[k].clone().unwrap_or_default(),
            email: email[k].clone().unwrap_or_default(),
            date_added: to_ts(added[k]),
            last_trade_ts: to_ts(last_ts[k]),
            last_trade_coin_id: coin[k].clone(),
            last_trade_side: side[k].clone(),
            last_trade_quantity: qty[k],
            last_trade_price: price[k],
            trade_count: count[k].unwrap_or_default(),
        })
        .collect();
    temp_table(conn, "tmp_traders", "traders")?;
    for chunk in rows.chunks(crate::load::COPY_CHUNK) {
        diesel::copy_from(tmp_traders::table)
            .from_insertable(chunk)
            .execute(conn)?;
    }
    Ok(sync(
        conn,
        "traders",
        "tmp_traders",
        &["person_id"],
        &[
            "first_name",
            "last_name",
            "email",
            "date_added",
            "last_trade_ts",
            "last_trade_coin_id",
            "last_trade_side",
            "last_trade_quantity",
            "last_trade_price",
            "trade_count",
        ],
        None,
    )?)
}

#[derive(QueryableByName)]
struct LatestPrice {
    #[diesel(sql_type = Text)]
    coin_id: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    price: f64,
}

fn refresh_positions(conn: &mut PgConnection) -> Result<i64, RefreshError> {
    type TradeIn = (i64, String, String, Option<f64>, Option<f64>);
    let t: Vec<TradeIn> = trades::table
        .filter(trades::quantity.is_not_null())
        .select((
            trades::person_id,
            trades::coin_id,
            trades::side,
            trades::quantity,
            trades::price,
        ))
        .load(conn)?;
    // The latest price of each traded coin, through the (coin_id, ts) primary key.
    let prices: Vec<LatestPrice> = diesel::sql_query(
        "SELECT c.coin_id, m.price_usd AS price FROM (SELECT DISTINCT coin_id FROM trades) c \
         CROSS JOIN LATERAL (SELECT price_usd FROM market WHERE market.coin_id = c.coin_id ORDER BY ts DESC LIMIT 1) m",
    )
    .load(conn)?;
    let trades_df = df!(
        "person_id" => t.iter().map(|r| r.0).collect::<Vec<_>>(),
        "coin_id" => t.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "side" => t.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        "quantity" => t.iter().map(|r| r.3).collect::<Vec<_>>(),
        "price" => t.iter().map(|r| r.4).collect::<Vec<_>>()
    )?;
    let prices_df = df!(
        "coin_id" => prices.iter().map(|r| r.coin_id.as_str()).collect::<Vec<_>>(),
        "price" => prices.iter().map(|r| r.price).collect::<Vec<_>>()
    )?;
    drop(t);
    let out = transform::positions(trades_df, prices_df)?;
    let ids: Vec<Option<i64>> = out.column("person_id")?.i64()?.iter().collect();
    let coins: Vec<Option<&str>> = out.column("coin_id")?.str()?.iter().collect();
    let counts: Vec<Option<i64>> = out.column("trade_count")?.i64()?.iter().collect();
    let f = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(out.column(name)?.f64()?.iter().collect())
    };
    let (net, avg, last, value) = (
        f("net_quantity")?,
        f("avg_buy_price")?,
        f("last_price_usd")?,
        f("market_value_usd")?,
    );
    let rows: Vec<PositionRow> = (0..out.height())
        .map(|k| PositionRow {
            person_id: ids[k].unwrap_or_default(),
            coin_id: coins[k].unwrap_or_default().to_string(),
            net_quantity: net[k].unwrap_or_default(),
            trade_count: counts[k].unwrap_or_default(),
            avg_buy_price: avg[k],
            last_price_usd: last[k],
            market_value_usd: value[k],
        })
        .collect();
    temp_table(conn, "tmp_positions", "positions")?;
    for chunk in rows.chunks(crate::load::COPY_CHUNK) {
        diesel::copy_from(tmp_positions::table)
            .from_insertable(chunk)
            .execute(conn)?;
    }
    Ok(sync(
        conn,
        "positions",
        "tmp_positions",
        &["person_id", "coin_id"],
        &[
            "net_quantity",
            "trade_count",
            "avg_buy_price",
            "last_price_usd",
            "market_value_usd",
        ],
        None,
    )?)
}
