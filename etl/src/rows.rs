//! Validated rows, one type per input dataset, each carrying its input line. They are
//! written with binary COPY into per-run staging tables (declared here; created as
//! temporary tables by `load`) and merged into the warehouse from there.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// Rows per binary COPY statement (staging, direct loads, derived tables, rejects).
pub(crate) const COPY_CHUNK: usize = 200_000;

/// Copies `rows` (a slice of insertable rows) into `table` with binary COPY,
/// [`COPY_CHUNK`] rows per statement; `?` returns the first error.
macro_rules! copy_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        for chunk in $rows.chunks($crate::rows::COPY_CHUNK) {
            diesel::copy_from($table)
                .from_insertable(chunk)
                .execute(&mut *$conn)?;
        }
    };
}
pub(crate) use copy_rows;

coinflow_shared::text_enum! {
    /// The side of a trade, as `trades.side` stores it.
    pub(crate) enum Side {
        Buy => "buy",
        Sell => "sell",
    }
}

diesel::table! {
    stg_coins (line) {
        line -> Int8,
        id -> Text,
        symbol -> Text,
        name -> Text,
        cmc_id -> Nullable<Int8>,
    }
}

diesel::table! {
    stg_market (line) {
        line -> Int8,
        coin_id -> Text,
        ts -> Timestamptz,
        price_usd -> Float8,
        market_cap_usd -> Nullable<Float8>,
        volume_24h_usd -> Nullable<Float8>,
    }
}

diesel::table! {
    stg_rankings (line) {
        line -> Int8,
        coin_id -> Text,
        ts -> Timestamptz,
        rank -> Int4,
        volume_24h_usd -> Nullable<Float8>,
        source -> Text,
    }
}

diesel::table! {
    stg_candles (line) {
        line -> Int8,
        coin_id -> Text,
        interval -> Nullable<Text>,
        ts -> Timestamptz,
        open -> Float8,
        high -> Float8,
        low -> Float8,
        close -> Float8,
        volume_usd -> Nullable<Float8>,
        market_cap_usd -> Nullable<Float8>,
    }
}

diesel::table! {
    stg_tickers (line) {
        line -> Int8,
        coin_id -> Text,
        exchange -> Text,
        base -> Text,
        target -> Text,
    }
}

diesel::table! {
    stg_people (line) {
        line -> Int8,
        person_id -> Int8,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        date_added -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    stg_trades (line) {
        line -> Int8,
        person_id -> Int8,
        ts -> Timestamptz,
        coin_id -> Text,
        side -> Text,
        quantity -> Nullable<Float8>,
        price -> Nullable<Float8>,
    }
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_coins, treat_none_as_default_value = false)]
pub(crate) struct CoinRow {
    pub(crate) line: i64,
    pub(crate) id: String,
    pub(crate) symbol: String,
    pub(crate) name: String,
    pub(crate) cmc_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_market, treat_none_as_default_value = false)]
pub(crate) struct MarketRow {
    pub(crate) line: i64,
    pub(crate) coin_id: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) price_usd: f64,
    pub(crate) market_cap_usd: Option<f64>,
    pub(crate) volume_24h_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_rankings, treat_none_as_default_value = false)]
pub(crate) struct RankingRow {
    pub(crate) line: i64,
    pub(crate) coin_id: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) rank: i32,
    pub(crate) volume_24h_usd: Option<f64>,
    pub(crate) source: String,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_candles, treat_none_as_default_value = false)]
pub(crate) struct CandleRow {
    pub(crate) line: i64,
    pub(crate) coin_id: String,
    /// From the file's interval column; None: from the spacing of the coin's rows.
    pub(crate) interval: Option<String>,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) open: f64,
    pub(crate) high: f64,
    pub(crate) low: f64,
    pub(crate) close: f64,
    pub(crate) volume_usd: Option<f64>,
    pub(crate) market_cap_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_tickers, treat_none_as_default_value = false)]
pub(crate) struct TickerRow {
    pub(crate) line: i64,
    pub(crate) coin_id: String,
    pub(crate) exchange: String,
    pub(crate) base: String,
    pub(crate) target: String,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_people, treat_none_as_default_value = false)]
pub(crate) struct PersonRow {
    pub(crate) line: i64,
    pub(crate) person_id: i64,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) email: String,
    pub(crate) date_added: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_trades, treat_none_as_default_value = false)]
pub(crate) struct TradeRow {
    pub(crate) line: i64,
    pub(crate) person_id: i64,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) coin_id: String,
    pub(crate) side: Side,
    pub(crate) quantity: Option<f64>,
    pub(crate) price: Option<f64>,
}

/// A batch of validated rows of one file, flushed to staging when full.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) coins: Vec<CoinRow>,
    pub(crate) market: Vec<MarketRow>,
    pub(crate) rankings: Vec<RankingRow>,
    pub(crate) candles: Vec<CandleRow>,
    pub(crate) tickers: Vec<TickerRow>,
    pub(crate) people: Vec<PersonRow>,
    pub(crate) trades: Vec<TradeRow>,
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        self.coins.len()
            + self.market.len()
            + self.rankings.len()
            + self.candles.len()
            + self.tickers.len()
            + self.people.len()
            + self.trades.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A row that could not be used, with the first failing column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) line: i64,
    pub(crate) column: Option<String>,
    pub(crate) raw_value: Option<String>,
    pub(crate) reason: String,
    pub(crate) raw_line: String,
}
