//! Validated rows, one type per input dataset, each carrying its input line, and the one
//! declaration of each such shape ([`temp_rows!`]): the row struct, the diesel `table!`
//! of its staging table (`stg_*`), its `Insertable` derive and the table's DDL
//! ([`TempTable`]) all come from one list of fields, each with its Rust type and its SQL
//! type. `load` creates the staging tables from that DDL for each run, copies the rows
//! into them with binary COPY and merges them into the warehouse from there; `derive`
//! declares its temporary tables the same way.
//!
//! Pure: the diesel parts (the `table!`s, the `Insertable` derives, [`copy_rows!`]) are
//! left out under `cfg(coinflow_pure)`, which the fuzz crate sets (`fuzz/build.rs`) to
//! compile row validation without diesel.

use chrono::{DateTime, Utc};

/// Rows per binary COPY statement (staging, direct loads, derived tables, rejects).
pub(crate) const COPY_CHUNK: usize = 200_000;

/// Copies `rows` (a slice of insertable rows) into `table` with binary COPY,
/// [`COPY_CHUNK`] rows per statement; `?` returns the first error.
#[cfg(not(coinflow_pure))]
macro_rules! copy_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        for chunk in $rows.chunks($crate::rows::COPY_CHUNK) {
            diesel::copy_from($table)
                .from_insertable(chunk)
                .execute(&mut *$conn)?;
        }
    };
}
#[cfg(not(coinflow_pure))]
pub(crate) use copy_rows;

/// One column of a declared temporary table, for its DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnDdl {
    pub(crate) name: &'static str,
    /// Its PostgreSQL type (`text`, `int8`, `text[]`…).
    pub(crate) sql_type: &'static str,
    /// Declared without `Nullable<…>`.
    pub(crate) not_null: bool,
}

/// A temporary table declared by [`temp_rows!`]: a run's staging table, or the scratch
/// table a derived table is synchronised from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TempTable {
    pub(crate) name: &'static str,
    /// The declared columns: the row's fields, then the columns only SQL fills.
    pub(crate) columns: &'static [ColumnDdl],
    /// The warehouse table it mirrors, if any: it is then created `LIKE` that table
    /// (the migration's column types and NOT NULLs) rather than from `columns`.
    pub(crate) like: Option<&'static str>,
}

impl TempTable {
    /// A scratch copy of a warehouse table that has no row type of its own.
    pub(crate) const fn like(name: &'static str, table: &'static str) -> TempTable {
        TempTable {
            name,
            columns: &[],
            like: Some(table),
        }
    }

    /// What goes between the parentheses of its `CREATE TABLE`.
    pub(crate) fn definition(&self) -> String {
        if let Some(table) = self.like {
            return format!("LIKE {table}");
        }
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let null = if c.not_null { " NOT NULL" } else { "" };
                format!("{} {}{null}", c.name, c.sql_type)
            })
            .collect();
        columns.join(", ")
    }

    /// Its `CREATE TEMP TABLE` statement: the table is dropped when the transaction ends.
    pub(crate) fn create_sql(&self) -> String {
        format!(
            "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
            self.name,
            self.definition()
        )
    }
}

/// The PostgreSQL name of a diesel SQL type (those the declarations use).
macro_rules! pg_type {
    (Text) => {
        "text"
    };
    (Bool) => {
        "bool"
    };
    (Int4) => {
        "int4"
    };
    (Int8) => {
        "int8"
    };
    (Float8) => {
        "float8"
    };
    (Date) => {
        "date"
    };
    (Timestamptz) => {
        "timestamptz"
    };
    (Array<Text>) => {
        "text[]"
    };
}
pub(crate) use pg_type;

/// The [`ColumnDdl`] of a column named `$name` of diesel SQL type `$sql`: NOT NULL
/// unless `Nullable<…>`.
macro_rules! column_ddl {
    ($name:ident, Nullable<$sql:ident>) => {
        $crate::rows::ColumnDdl {
            name: stringify!($name),
            sql_type: $crate::rows::pg_type!($sql),
            not_null: false,
        }
    };
    ($name:ident, $($sql:tt)+) => {
        $crate::rows::ColumnDdl {
            name: stringify!($name),
            sql_type: $crate::rows::pg_type!($($sql)+),
            not_null: true,
        }
    };
}
pub(crate) use column_ddl;

/// `Some("table")`, or `None` without a table.
macro_rules! optional_name {
    () => {
        None
    };
    ($table:ident) => {
        Some(stringify!($table))
    };
}
pub(crate) use optional_name;

/// Declares the rows of one temporary table once: each field with its Rust type and its
/// diesel SQL type (`Nullable<…>` for a column that may be NULL, NOT NULL otherwise).
///
/// ```text
/// temp_rows! {
///     /// doc and derives of the struct
///     #[derive(Debug)]
///     pub(crate) struct MarketRow => stg_market (line) {
///         line: i64 = Int8,
///         market_cap_usd: Option<f64> = Nullable<Float8>,
///     }
///     // optional: columns of the table that no row carries, filled by SQL
///     sql_only { period_start: Nullable<Timestamptz>, }
/// }
/// ```
///
/// gives the struct (fields with the struct's visibility), `MarketRow::TABLE` (a
/// [`TempTable`]: its name and DDL) and, unless `cfg(coinflow_pure)`, the diesel
/// `table!` `stg_market` (key `line`) with the struct's `Insertable` into it. After the
/// key, `like daily` makes the table a scratch copy of the warehouse table `daily` (in
/// scope at the call): created `LIKE` it, and the struct is `Insertable` into `daily`
/// too, so the compiler holds the declaration against `shared/src/schema.rs`.
macro_rules! temp_rows {
    (
        $(#[$meta:meta])*
        $vis:vis struct $row:ident => $table:ident ($($key:ident),+) $(like $like:ident)? {
            $($(#[$fmeta:meta])* $field:ident : $rty:ty = $sql:ident $(<$arg:ident>)?,)+
        }
        $(sql_only { $($col:ident : $csql:ident $(<$carg:ident>)?,)+ })?
    ) => {
        $(#[$meta])*
        #[cfg_attr(not(coinflow_pure), derive(diesel::Insertable))]
        #[cfg_attr(
            not(coinflow_pure),
            diesel(table_name = $table $(, table_name = $like)?, treat_none_as_default_value = false)
        )]
        $vis struct $row {
            $($(#[$fmeta])* $vis $field: $rty,)+
        }

        impl $row {
            /// The declared table these rows are copied into.
            $vis const TABLE: $crate::rows::TempTable = $crate::rows::TempTable {
                name: stringify!($table),
                columns: &[
                    $($crate::rows::column_ddl!($field, $sql $(<$arg>)?),)+
                    $($($crate::rows::column_ddl!($col, $csql $(<$carg>)?),)+)?
                ],
                like: $crate::rows::optional_name!($($like)?),
            };
        }

        #[cfg(not(coinflow_pure))]
        diesel::table! {
            $table ($($key),+) {
                $($field -> $sql $(<$arg>)?,)+
                $($($col -> $csql $(<$carg>)?,)+)?
            }
        }
    };
}
pub(crate) use temp_rows;

coinflow_shared::text_enum! {
    /// The side of a trade, as `trades.side` stores it.
    pub(crate) enum Side {
        Buy => "buy",
        Sell => "sell",
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct CoinRow => stg_coins (line) {
        line: i64 = Int8,
        id: String = Text,
        symbol: String = Text,
        name: String = Text,
        cmc_id: Option<i64> = Nullable<Int8>,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct MarketRow => stg_market (line) {
        line: i64 = Int8,
        coin_id: String = Text,
        ts: DateTime<Utc> = Timestamptz,
        price_usd: f64 = Float8,
        market_cap_usd: Option<f64> = Nullable<Float8>,
        volume_24h_usd: Option<f64> = Nullable<Float8>,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct RankingRow => stg_rankings (line) {
        line: i64 = Int8,
        coin_id: String = Text,
        ts: DateTime<Utc> = Timestamptz,
        rank: i32 = Int4,
        volume_24h_usd: Option<f64> = Nullable<Float8>,
        source: String = Text,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct CandleRow => stg_candles (line) {
        line: i64 = Int8,
        coin_id: String = Text,
        /// From the file's interval column; None: from the spacing of the coin's rows.
        interval: Option<String> = Nullable<Text>,
        ts: DateTime<Utc> = Timestamptz,
        open: f64 = Float8,
        high: f64 = Float8,
        low: f64 = Float8,
        close: f64 = Float8,
        volume_usd: Option<f64> = Nullable<Float8>,
        market_cap_usd: Option<f64> = Nullable<Float8>,
    }
    // The start of the candle's period, the key candles are stored under: set in staging
    // once the whole file is there (`load::periods::settle`), never by a row.
    sql_only {
        period_start: Nullable<Timestamptz>,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct TickerRow => stg_tickers (line) {
        line: i64 = Int8,
        coin_id: String = Text,
        exchange: String = Text,
        base: String = Text,
        target: String = Text,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct PersonRow => stg_people (line) {
        line: i64 = Int8,
        person_id: i64 = Int8,
        first_name: String = Text,
        last_name: String = Text,
        email: String = Text,
        date_added: Option<DateTime<Utc>> = Nullable<Timestamptz>,
    }
}

temp_rows! {
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct TradeRow => stg_trades (line) {
        line: i64 = Int8,
        person_id: i64 = Int8,
        ts: DateTime<Utc> = Timestamptz,
        coin_id: String = Text,
        side: Side = Text,
        quantity: Option<f64> = Nullable<Float8>,
        price: Option<f64> = Nullable<Float8>,
    }
}

/// Every staging table, in the order [`Batch`] lists its rows.
pub(crate) const STAGING: [TempTable; 7] = [
    CoinRow::TABLE,
    MarketRow::TABLE,
    RankingRow::TABLE,
    CandleRow::TABLE,
    TickerRow::TABLE,
    PersonRow::TABLE,
    TradeRow::TABLE,
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_table_is_created_from_its_declaration() {
        assert_eq!(
            CandleRow::TABLE.create_sql(),
            "CREATE TEMP TABLE stg_candles (line int8 NOT NULL, coin_id text NOT NULL, \
             interval text, ts timestamptz NOT NULL, open float8 NOT NULL, \
             high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, \
             volume_usd float8, market_cap_usd float8, period_start timestamptz) \
             ON COMMIT DROP"
        );
    }

    #[test]
    fn a_scratch_copy_is_created_like_its_table() {
        assert_eq!(
            TempTable::like("tmp_top_slots", "top_slots").create_sql(),
            "CREATE TEMP TABLE tmp_top_slots (LIKE top_slots) ON COMMIT DROP"
        );
    }
}
