//! Validated rows, one type per input dataset, each carrying its input line. They are
//! written with binary COPY into per-run staging tables (declared here; created as
//! temporary tables by `load`) and merged into the warehouse from there.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// Rows per binary COPY statement (staging, direct loads, derived tables, rejects).
pub(crate) const COPY_CHUNK: usize = 200_000;

coinflow_shared::text_enum! {
    /// The side of a trade, as `trades.side` stores it.
    pub enum Side {
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
pub struct CoinRow {
    pub line: i64,
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub cmc_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_market, treat_none_as_default_value = false)]
pub struct MarketRow {
    pub line: i64,
    pub coin_id: String,
    pub ts: DateTime<Utc>,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
    pub volume_24h_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_rankings, treat_none_as_default_value = false)]
pub struct RankingRow {
    pub line: i64,
    pub coin_id: String,
    pub ts: DateTime<Utc>,
    pub rank: i32,
    pub volume_24h_usd: Option<f64>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_candles, treat_none_as_default_value = false)]
pub struct CandleRow {
    pub line: i64,
    pub coin_id: String,
    pub ts: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume_usd: Option<f64>,
    pub market_cap_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_tickers, treat_none_as_default_value = false)]
pub struct TickerRow {
    pub line: i64,
    pub coin_id: String,
    pub exchange: String,
    pub base: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_people, treat_none_as_default_value = false)]
pub struct PersonRow {
    pub line: i64,
    pub person_id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub date_added: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = stg_trades, treat_none_as_default_value = false)]
pub struct TradeRow {
    pub line: i64,
    pub person_id: i64,
    pub ts: DateTime<Utc>,
    pub coin_id: String,
    pub side: Side,
    pub quantity: Option<f64>,
    pub price: Option<f64>,
}

/// A batch of validated rows of one file, flushed to staging when full.
#[derive(Debug, Default)]
pub struct Batch {
    pub coins: Vec<CoinRow>,
    pub market: Vec<MarketRow>,
    pub rankings: Vec<RankingRow>,
    pub candles: Vec<CandleRow>,
    pub tickers: Vec<TickerRow>,
    pub people: Vec<PersonRow>,
    pub trades: Vec<TradeRow>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.coins.len()
            + self.market.len()
            + self.rankings.len()
            + self.candles.len()
            + self.tickers.len()
            + self.people.len()
            + self.trades.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A row that could not be used, with the first failing column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: i64,
    pub column: Option<String>,
    pub raw_value: Option<String>,
    pub reason: String,
    pub raw_line: String,
}
