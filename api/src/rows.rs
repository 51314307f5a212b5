//! Response rows: what each served dataset looks like on the wire, separate from the
//! table models in `coinflow-shared`. Chunked reads write their rows straight from the
//! database result (`crate::read::write`, columns declared in `coinflow_shared::dataset`); these types document
//! those shapes in the OpenAPI description and carry the rows of `/top` and
//! `/exchanges/stats`. Each knows its CSV form.

use crate::format::{CsvLine, Record};
use chrono::{DateTime, NaiveDate, Utc};
use coinflow_shared::schema::*;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text};
use diesel::QueryableByName;
use serde::Serialize;
use utoipa::ToSchema;

/// A price snapshot with the rank as-of joined in and the coin's symbol and name.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = market)]
pub struct MarketRow {
    pub coin_id: String,
    #[diesel(sql_type = Text)]
    pub symbol: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    pub ts: DateTime<Utc>,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
    pub volume_24h_usd: Option<f64>,
    pub rank: Option<i32>,
    pub rank_source: Option<String>,
}

impl Record for MarketRow {
    const CSV_HEADER: &'static [&'static str] = &[
        "coin_id",
        "symbol",
        "name",
        "ts",
        "price_usd",
        "market_cap_usd",
        "volume_24h_usd",
        "rank",
        "rank_source",
    ];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.coin_id)
            .text(&self.symbol)
            .text(&self.name)
            .ts(&self.ts)
            .float(self.price_usd)
            .opt_float(self.market_cap_usd)
            .opt_float(self.volume_24h_usd)
            .opt_int(self.rank.map(i64::from))
            .opt_text(self.rank_source.as_deref());
    }
}

/// One coin-day.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = daily)]
pub struct DailyRow {
    pub coin_id: String,
    pub day: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub avg_price: f64,
    pub max_market_cap_usd: Option<f64>,
    pub last_volume_usd: Option<f64>,
    pub samples: i32,
    pub source: String,
}

impl Record for DailyRow {
    const CSV_HEADER: &'static [&'static str] = &[
        "coin_id",
        "day",
        "open",
        "high",
        "low",
        "close",
        "avg_price",
        "max_market_cap_usd",
        "last_volume_usd",
        "samples",
        "source",
    ];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.coin_id)
            .date(&self.day)
            .float(self.open)
            .float(self.high)
            .float(self.low)
            .float(self.close)
            .float(self.avg_price)
            .opt_float(self.max_market_cap_usd)
            .opt_float(self.last_volume_usd)
            .int(i64::from(self.samples))
            .text(&self.source);
    }
}

/// A coin of the coin dimension.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = coins)]
pub struct CoinRow {
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub cmc_id: Option<i64>,
}

impl Record for CoinRow {
    const CSV_HEADER: &'static [&'static str] = &["id", "symbol", "name", "cmc_id"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.id)
            .text(&self.symbol)
            .text(&self.name)
            .opt_int(self.cmc_id);
    }
}

/// The exchanges a coin is listed on (CSV: `;`-separated).
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = coin_exchanges)]
pub struct CoinExchangeRow {
    pub coin_id: String,
    pub exchanges: Vec<String>,
    pub exchange_count: i32,
}

impl Record for CoinExchangeRow {
    const CSV_HEADER: &'static [&'static str] = &["coin_id", "exchanges", "exchange_count"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.coin_id)
            .list(&self.exchanges)
            .int(i64::from(self.exchange_count));
    }
}

/// A person with their most recent trade.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = traders)]
pub struct TraderRow {
    pub person_id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub date_added: Option<DateTime<Utc>>,
    pub last_trade_ts: Option<DateTime<Utc>>,
    pub last_trade_coin_id: Option<String>,
    pub last_trade_side: Option<String>,
    pub last_trade_quantity: Option<f64>,
    pub last_trade_price: Option<f64>,
    pub trade_count: i64,
}

impl Record for TraderRow {
    const CSV_HEADER: &'static [&'static str] = &[
        "person_id",
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
    ];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.int(self.person_id)
            .text(&self.first_name)
            .text(&self.last_name)
            .text(&self.email)
            .opt_ts(self.date_added.as_ref())
            .opt_ts(self.last_trade_ts.as_ref())
            .opt_text(self.last_trade_coin_id.as_deref())
            .opt_text(self.last_trade_side.as_deref())
            .opt_float(self.last_trade_quantity)
            .opt_float(self.last_trade_price)
            .int(self.trade_count);
    }
}

/// A person's net position in one coin.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = positions)]
pub struct PositionRow {
    pub person_id: i64,
    pub coin_id: String,
    pub net_quantity: f64,
    pub trade_count: i64,
    pub avg_buy_price: Option<f64>,
    pub last_price_usd: Option<f64>,
    pub market_value_usd: Option<f64>,
}

impl Record for PositionRow {
    const CSV_HEADER: &'static [&'static str] = &[
        "person_id",
        "coin_id",
        "net_quantity",
        "trade_count",
        "avg_buy_price",
        "last_price_usd",
        "market_value_usd",
    ];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.int(self.person_id)
            .text(&self.coin_id)
            .float(self.net_quantity)
            .int(self.trade_count)
            .opt_float(self.avg_buy_price)
            .opt_float(self.last_price_usd)
            .opt_float(self.market_value_usd);
    }
}

/// An input row the ETL rejected.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
#[diesel(table_name = etl_rejects)]
pub struct RejectRow {
    pub run_id: i64,
    pub file: String,
    pub line: i64,
    pub column_name: Option<String>,
    pub raw_value: Option<String>,
    pub reason: String,
    pub raw_line: String,
}

impl Record for RejectRow {
    const CSV_HEADER: &'static [&'static str] = &[
        "run_id",
        "file",
        "line",
        "column_name",
        "raw_value",
        "reason",
        "raw_line",
    ];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.int(self.run_id)
            .text(&self.file)
            .int(self.line)
            .opt_text(self.column_name.as_deref())
            .opt_text(self.raw_value.as_deref())
            .text(&self.reason)
            .text(&self.raw_line);
    }
}

/// A coin task result, in the original service's shape.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
pub struct TaskRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Array<Text>)]
    pub exchanges: Vec<String>,
    #[diesel(sql_type = BigInt)]
    #[serde(rename = "taskRun")]
    pub task_run: i64,
}

impl Record for TaskRow {
    const CSV_HEADER: &'static [&'static str] = &["id", "exchanges", "taskRun"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.id).list(&self.exchanges).int(self.task_run);
    }
}

/// One line of `/top`.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
pub struct TopRow {
    #[diesel(sql_type = BigInt)]
    pub rank: i64,
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub symbol: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Double)]
    pub price_usd: f64,
    #[diesel(sql_type = Nullable<Double>)]
    pub market_cap_usd: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub volume_24h_usd: Option<f64>,
    /// Where the row comes from: the ranking source of a ranked snapshot (e.g. `cmc`),
    /// `market` for an unranked snapshot, `candles` for a daily candle's close.
    #[diesel(sql_type = Text)]
    pub rank_source: String,
}

impl Record for TopRow {
    const CSV_HEADER: &'static [&'static str] = &["Rank", "Symbol", "Price USD"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.int(self.rank).text(&self.symbol).float(self.price_usd);
    }
}

/// Per exchange: how many distinct coins tasks asked for, and the median task run.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
pub struct ExchangeStatRow {
    #[diesel(sql_type = Text)]
    pub exchange: String,
    #[diesel(sql_type = BigInt)]
    pub coins: i64,
    #[diesel(sql_type = Double)]
    pub median_task_run: f64,
}

impl Record for ExchangeStatRow {
    const CSV_HEADER: &'static [&'static str] = &["exchange", "coins", "median_task_run"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.exchange)
            .int(self.coins)
            .float(self.median_task_run);
    }
}
