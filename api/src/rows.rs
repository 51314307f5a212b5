//! Response rows, separate from the table models in `coinflow-shared`. Chunked reads
//! write their rows straight from the database result (`crate::read::write`, columns
//! declared in `coinflow_shared::dataset`): the row types of the served datasets and of
//! the task results only document those shapes in the OpenAPI description (a test holds
//! them against the declarations). The rows of `/top` and `/exchanges/stats` are real
//! values and know their CSV form.

use crate::format::{CsvLine, Record};
use chrono::{DateTime, NaiveDate, Utc};

use diesel::sql_types::{BigInt, Double, Text};
use diesel::QueryableByName;
use serde::Serialize;
use utoipa::ToSchema;

/// A price snapshot with the rank as-of joined in and the coin's symbol and name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MarketRow {
    pub(crate) coin_id: String,
    pub(crate) symbol: String,
    pub(crate) name: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) price_usd: f64,
    pub(crate) market_cap_usd: Option<f64>,
    pub(crate) volume_24h_usd: Option<f64>,
    pub(crate) rank: Option<i32>,
    pub(crate) rank_source: Option<String>,
}

/// One coin-day.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DailyRow {
    pub(crate) coin_id: String,
    pub(crate) day: NaiveDate,
    pub(crate) open: f64,
    pub(crate) high: f64,
    pub(crate) low: f64,
    pub(crate) close: f64,
    pub(crate) avg_price: f64,
    pub(crate) max_market_cap_usd: Option<f64>,
    pub(crate) last_volume_usd: Option<f64>,
    pub(crate) samples: i32,
    pub(crate) source: String,
}

/// A coin of the coin dimension.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoinRow {
    pub(crate) id: String,
    pub(crate) symbol: String,
    pub(crate) name: String,
    pub(crate) cmc_id: Option<i64>,
}

/// The exchanges a coin is listed on (CSV: `;`-separated).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoinExchangeRow {
    pub(crate) coin_id: String,
    pub(crate) exchanges: Vec<String>,
    pub(crate) exchange_count: i32,
}

/// A person with their most recent trade.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TraderRow {
    pub(crate) person_id: i64,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) email: String,
    pub(crate) date_added: Option<DateTime<Utc>>,
    pub(crate) last_trade_ts: Option<DateTime<Utc>>,
    pub(crate) last_trade_coin_id: Option<String>,
    pub(crate) last_trade_side: Option<String>,
    pub(crate) last_trade_quantity: Option<f64>,
    pub(crate) last_trade_price: Option<f64>,
    pub(crate) trade_count: i64,
}

/// A person's net position in one coin.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PositionRow {
    pub(crate) person_id: i64,
    pub(crate) coin_id: String,
    pub(crate) net_quantity: f64,
    pub(crate) trade_count: i64,
    pub(crate) avg_buy_price: Option<f64>,
    pub(crate) last_price_usd: Option<f64>,
    pub(crate) market_value_usd: Option<f64>,
}

/// An input row the ETL rejected.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RejectRow {
    pub(crate) run_id: i64,
    pub(crate) file: String,
    pub(crate) line: i64,
    pub(crate) column_name: Option<String>,
    pub(crate) raw_value: Option<String>,
    pub(crate) reason: String,
    pub(crate) raw_line: String,
}

/// A coin task result, in the original service's shape.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskRow {
    pub(crate) id: String,
    pub(crate) exchanges: Vec<String>,
    #[serde(rename = "taskRun")]
    pub(crate) task_run: i64,
}

/// One line of `/top`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopRow {
    pub(crate) rank: i64,
    pub(crate) id: String,
    pub(crate) symbol: String,
    pub(crate) name: String,
    pub(crate) price_usd: f64,
    pub(crate) market_cap_usd: Option<f64>,
    pub(crate) volume_24h_usd: Option<f64>,
    /// Where the row comes from: the ranking source of a ranked snapshot (e.g. `cmc`),
    /// `market` for an unranked snapshot, `candles` for a daily candle's close.
    pub(crate) rank_source: String,
}

impl Record for TopRow {
    const CSV_HEADER: &'static [&'static str] = &["Rank", "Symbol", "Price USD"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.int(self.rank).text(&self.symbol).float(self.price_usd);
    }
}

/// Per exchange: how many distinct coins tasks asked for, and the median task run.
#[derive(Debug, Serialize, QueryableByName, ToSchema)]
pub(crate) struct ExchangeStatRow {
    #[diesel(sql_type = Text)]
    pub(crate) exchange: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) coins: i64,
    #[diesel(sql_type = Double)]
    pub(crate) median_task_run: f64,
}

impl Record for ExchangeStatRow {
    const CSV_HEADER: &'static [&'static str] = &["exchange", "coins", "median_task_run"];
    fn csv(&self, l: &mut CsvLine<'_>) {
        l.text(&self.exchange)
            .int(self.coins)
            .float(self.median_task_run);
    }
}
