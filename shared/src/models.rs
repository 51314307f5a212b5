//! Row types: `Thing` for reads. (The ETL writes through binary COPY into staging tables
//! of its own; see `coinflow-etl`'s `load` module.)

use crate::schema::*;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = coins, check_for_backend(diesel::pg::Pg))]
pub struct Coin {
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub cmc_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = market, check_for_backend(diesel::pg::Pg))]
pub struct Market {
    pub coin_id: String,
    pub ts: DateTime<Utc>,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
    pub volume_24h_usd: Option<f64>,
    pub rank: Option<i32>,
    pub rank_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = daily, check_for_backend(diesel::pg::Pg))]
pub struct Daily {
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

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = coin_exchanges, check_for_backend(diesel::pg::Pg))]
pub struct CoinExchange {
    pub coin_id: String,
    pub exchanges: Vec<String>,
    pub exchange_count: i32,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = traders, check_for_backend(diesel::pg::Pg))]
pub struct Trader {
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

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = positions, check_for_backend(diesel::pg::Pg))]
pub struct Position {
    pub person_id: i64,
    pub coin_id: String,
    pub net_quantity: f64,
    pub trade_count: i64,
    pub avg_buy_price: Option<f64>,
    pub last_price_usd: Option<f64>,
    pub market_value_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = etl_runs, check_for_backend(diesel::pg::Pg))]
pub struct EtlRun {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub pid: i32,
    pub host: String,
    pub data_dir: String,
    pub message: Option<String>,
    pub summary: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = etl_files, check_for_backend(diesel::pg::Pg))]
pub struct EtlFile {
    pub id: i64,
    pub run_id: i64,
    pub path: String,
    pub sha256: String,
    pub dataset: Option<String>,
    pub size_bytes: i64,
    pub status: String,
    pub reason: Option<String>,
    pub rows_read: i64,
    pub loaded: i64,
    pub duplicate: i64,
    pub updated: i64,
    pub rejected: i64,
    pub zeroed: i64,
    pub seconds: f64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = etl_rejects, check_for_backend(diesel::pg::Pg))]
pub struct EtlReject {
    pub run_id: i64,
    pub file: String,
    pub line: i64,
    pub column_name: Option<String>,
    pub raw_value: Option<String>,
    pub reason: String,
    pub raw_line: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = task_results, check_for_backend(diesel::pg::Pg))]
pub struct TaskResult {
    pub coin_id: String,
    pub exchanges: Vec<String>,
    pub task_run: i64,
    pub created_at: DateTime<Utc>,
}
