//! `daily`: one row per coin and day, from candles where a coin has them, else from
//! snapshots ([`transform::daily`]). Coins are read back in bounded batches; coins whose
//! every snapshot arrived in this run through direct loads are folded while they load
//! instead ([`DailyFold`]) and need nothing read back. Writes only rows that differ.

use super::{micros, sync_served, temp_table, RefreshError, COIN_BATCH};
use crate::rows::{copy_rows, temp_rows, MarketRow};
use crate::transform;
use crate::values::CANDLE_INTERVALS;
use chrono::{DateTime, NaiveDate, Utc};
use coinflow_shared::dataset::DAILY;
use coinflow_shared::schema::{candles, daily, market};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use polars::prelude::*;
use std::collections::{BTreeSet, HashSet};

temp_rows! {
    /// A row of `daily`, written straight into it (a first load) or through its scratch
    /// copy `tmp_daily`.
    struct DailyRow => tmp_daily (coin_id, day) like daily {
        coin_id: String = Text,
        day: NaiveDate = Date,
        open: f64 = Float8,
        high: f64 = Float8,
        low: f64 = Float8,
        close: f64 = Float8,
        avg_price: f64 = Float8,
        max_market_cap_usd: Option<f64> = Nullable<Float8>,
        last_volume_usd: Option<f64> = Nullable<Float8>,
        samples: i32 = Int4,
        source: String = Text,
    }
}

/// Recomputes the daily rows of `coins` from what the warehouse stores.
pub(super) fn refresh(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
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
            String,
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
                candles::period_start,
                candles::interval,
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
            "seconds" => c.iter().map(|r| interval_seconds(&r.2)).collect::<Vec<_>>(),
            "open" => c.iter().map(|r| r.3).collect::<Vec<_>>(),
            "high" => c.iter().map(|r| r.4).collect::<Vec<_>>(),
            "low" => c.iter().map(|r| r.5).collect::<Vec<_>>(),
            "close" => c.iter().map(|r| r.6).collect::<Vec<_>>(),
            "volume" => c.iter().map(|r| r.7).collect::<Vec<_>>(),
            "market_cap" => c.iter().map(|r| r.8).collect::<Vec<_>>()
        )?;
        drop((m, c));
        let out = transform::daily(market_df, candles_df)?;
        changed += store_daily(conn, &out, batch)?;
    }
    Ok(changed)
}

/// The length in seconds of a stored candle interval (the table's check admits only
/// those of [`CANDLE_INTERVALS`]).
fn interval_seconds(name: &str) -> i64 {
    CANDLE_INTERVALS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, seconds)| *seconds)
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
        copy_rows!(conn, daily::table, rows);
        return Ok(rows.len() as i64);
    }
    temp_table(conn, &DailyRow::TABLE)?;
    copy_rows!(conn, tmp_daily::table, rows);
    Ok(sync_served(
        conn,
        &DAILY,
        DailyRow::TABLE.name,
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
pub(crate) struct DailyFold {
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
    const MAX_PARTIAL_ROWS: usize = 3_000_000;

    /// Coins of `rows` not met before in this run.
    pub(crate) fn unseen<'a>(&self, rows: &'a [MarketRow]) -> Vec<&'a str> {
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
    pub(crate) fn add(
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
    pub(crate) fn forget(&mut self, coins: &BTreeSet<String>) {
        for coin in coins {
            self.seen.insert(coin.clone());
            self.folded.remove(coin);
        }
    }

    /// Whether `coin`'s daily rows come from the fold.
    pub(super) fn covers(&self, coin: &str) -> bool {
        !self.overflowed && self.folded.contains(coin)
    }
}

/// Stores the folded daily rows of `coins` (qualifying coins).
pub(super) fn store_folded(
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
