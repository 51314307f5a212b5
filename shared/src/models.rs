//! Row types: `Thing` for reads. (The ETL writes through binary COPY into staging tables
//! of its own; see `coinflow-etl`'s `load` module.)

use crate::ledger::{FileStatus, RunStatus};
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
    /// `listed` (from a coin list or listings) or `inferred` (from a history's rows).
    pub origin: String,
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
    pub status: RunStatus,
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
    pub status: FileStatus,
    pub reason: Option<String>,
    #[diesel(embed)]
    pub counts: Counts,
    pub seconds: f64,
    pub created_at: DateTime<Utc>,
    pub coin_list: Option<String>,
}

/// What became of the rows of one file (or of a whole run): the ETL's summary, its
/// `etl_files` ledger and the API's `/runs` all use this one type. Every row read is
/// counted in exactly one of loaded, duplicate, updated, rejected, blank and set_aside
/// ([`Counts::unaccounted`]); `zeroed` counts loaded rows that had a 0 stored as
/// missing, a subset of them.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Queryable,
    Selectable,
    Insertable,
    Serialize,
    utoipa::ToSchema,
)]
#[diesel(table_name = etl_files, check_for_backend(diesel::pg::Pg))]
pub struct Counts {
    /// Records read after the header.
    #[diesel(column_name = rows_read)]
    pub read: i64,
    /// Rows stored under a key that was not stored before.
    pub loaded: i64,
    /// Rows equal to what was stored (or to an earlier line of the same file).
    pub duplicate: i64,
    /// Rows that replaced stored values (a later file wins).
    pub updated: i64,
    /// Rows kept in `etl_rejects` instead of loading.
    pub rejected: i64,
    /// Rows whose every cell is empty: not data, not held against the reject budget.
    pub blank: i64,
    /// Valid rows of a file that was set aside (over its reject budget).
    pub set_aside: i64,
    /// Market caps and volumes of exactly 0 stored as missing, in loaded rows.
    pub zeroed: i64,
}

impl Counts {
    /// Rows read that no outcome counts (negative: counted twice); 0 when the counts
    /// account for every row.
    pub fn unaccounted(&self) -> i64 {
        self.read
            - (self.loaded
                + self.duplicate
                + self.updated
                + self.rejected
                + self.blank
                + self.set_aside)
    }

    /// The share of rejected rows among the rows that are data (blank rows are not).
    pub fn reject_ratio(&self) -> f64 {
        let data = self.read - self.blank;
        if data > 0 {
            self.rejected as f64 / data as f64
        } else {
            0.0
        }
    }

    /// Adds another file's counts (for run totals).
    pub fn add(&mut self, other: &Counts) {
        self.read += other.read;
        self.loaded += other.loaded;
        self.duplicate += other.duplicate;
        self.updated += other.updated;
        self.rejected += other.rejected;
        self.blank += other.blank;
        self.set_aside += other.set_aside;
        self.zeroed += other.zeroed;
    }
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
