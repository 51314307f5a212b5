//! The dataset registry: which input datasets exist, how a CSV header is recognised as
//! one of them (one global alias map, then the first dataset in detection order whose
//! required columns are present), and the declarations of the datasets the API serves
//! ([`Shape`], one per served dataset: table, columns, key, filters, data versions). The
//! declarations live here, beside the schema, so that the ETL and the API read the same
//! ones; the API's chunk reader is derived from them.

use std::collections::HashMap;
use std::fmt;

/// A canonical input column, after the alias map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    Coin,
    Symbol,
    Name,
    Rank,
    Price,
    Timestamp,
    MarketCap,
    Volume24h,
    Open,
    High,
    Low,
    Close,
    CmcId,
    Exchange,
    Base,
    Target,
    PersonId,
    FirstName,
    LastName,
    Email,
    DateAdded,
    Side,
    Quantity,
    /// Who ranked a listings or rankings row (`coinmarketcap`, `cryptocompare`, …).
    RankSource,
    /// A candle's interval (`1d`, `1h`, …).
    Interval,
}

impl Column {
    pub const fn name(self) -> &'static str {
        match self {
            Column::Coin => "coin",
            Column::Symbol => "symbol",
            Column::Name => "name",
            Column::Rank => "rank",
            Column::Price => "price",
            Column::Timestamp => "timestamp",
            Column::MarketCap => "market_cap",
            Column::Volume24h => "volume_24h",
            Column::Open => "open",
            Column::High => "high",
            Column::Low => "low",
            Column::Close => "close",
            Column::CmcId => "cmc_id",
            Column::Exchange => "exchange",
            Column::Base => "base",
            Column::Target => "target",
            Column::PersonId => "person_id",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Email => "email",
            Column::DateAdded => "date_added",
            Column::Side => "side",
            Column::Quantity => "quantity",
            Column::RankSource => "rank_source",
            Column::Interval => "interval",
        }
    }
}

/// The global alias map: canonical column ← accepted header names, in priority order
/// (the first one present in a header wins). Names are compared lower-cased and trimmed.
/// Extend it when a real export needs it; never special-case a file.
const ALIASES: &[(Column, &[&str])] = &[
    (
        Column::Coin,
        &["coin", "id", "coin_id", "coinid", "slug", "currency"],
    ),
    (Column::Symbol, &["symbol", "ticker_symbol"]),
    (Column::Name, &["name", "coin_name"]),
    (Column::Rank, &["rank", "cmc_rank", "market_cap_rank"]),
    (Column::Price, &["price", "price_usd"]),
    (
        Column::Timestamp,
        &[
            "timestamp",
            "ts",
            "date",
            "snapped_at",
            "last_updated",
            "time",
            "datetime",
        ],
    ),
    (
        Column::MarketCap,
        &["market_cap", "market_cap_usd", "marketcap", "market cap"],
    ),
    (
        Column::Volume24h,
        &[
            "volume_24h",
            "volume_24h_usd",
            "24h_volume_usd",
            "totalvolume",
            "total_volume",
            "volume",
        ],
    ),
    (Column::Open, &["open"]),
    (Column::High, &["high"]),
    (Column::Low, &["low"]),
    (Column::Close, &["close"]),
    (Column::CmcId, &["cmc_id"]),
    (Column::Exchange, &["exchange", "exchange_id", "market"]),
    (Column::Base, &["base"]),
    (Column::Target, &["target"]),
    (Column::PersonId, &["person_id", "personid", "user_id"]),
    (Column::FirstName, &["first_name", "firstname"]),
    (Column::LastName, &["last_name", "lastname"]),
    (Column::Email, &["email"]),
    (Column::DateAdded, &["date_added", "created_at"]),
    (Column::Side, &["side"]),
    (Column::Quantity, &["quantity", "qty", "amount"]),
    (Column::RankSource, &["rank_source"]),
    (
        Column::Interval,
        &["interval", "timeframe", "resolution", "granularity"],
    ),
];

/// An input dataset, in detection order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    Listings,
    Candles,
    Markets,
    Rankings,
    Coins,
    Tickers,
    People,
    Trades,
}

impl Dataset {
    /// Detection order (SPEC §2).
    pub const DETECTION_ORDER: [Dataset; 8] = [
        Dataset::Listings,
        Dataset::Candles,
        Dataset::Markets,
        Dataset::Rankings,
        Dataset::Coins,
        Dataset::Tickers,
        Dataset::People,
        Dataset::Trades,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Dataset::Listings => "listings",
            Dataset::Candles => "candles",
            Dataset::Markets => "markets",
            Dataset::Rankings => "rankings",
            Dataset::Coins => "coins",
            Dataset::Tickers => "tickers",
            Dataset::People => "people",
            Dataset::Trades => "trades",
        }
    }

    pub fn from_name(name: &str) -> Option<Dataset> {
        Self::DETECTION_ORDER.into_iter().find(|d| d.name() == name)
    }

    pub const fn required(self) -> &'static [Column] {
        use Column::*;
        match self {
            Dataset::Listings => &[Coin, Symbol, Name, Rank, Price, Timestamp],
            Dataset::Candles => &[Coin, Timestamp, Open, High, Low, Close],
            Dataset::Markets => &[Coin, Timestamp, Price],
            Dataset::Rankings => &[Coin, Timestamp, Rank],
            Dataset::Coins => &[Coin, Symbol, Name],
            Dataset::Tickers => &[Coin, Exchange],
            Dataset::People => &[PersonId, FirstName, LastName, Email],
            Dataset::Trades => &[PersonId, Timestamp, Coin],
        }
    }

    pub const fn optional(self) -> &'static [Column] {
        use Column::*;
        match self {
            Dataset::Listings => &[MarketCap, Volume24h, RankSource],
            Dataset::Markets => &[MarketCap, Volume24h],
            Dataset::Candles => &[Volume24h, MarketCap, Interval],
            Dataset::Rankings => &[Volume24h, RankSource],
            Dataset::Coins => &[CmcId],
            Dataset::Tickers => &[Base, Target],
            Dataset::People => &[DateAdded],
            Dataset::Trades => &[Side, Quantity, Price],
        }
    }

    /// Load order group: listings and coins first, then the per-coin facts, then
    /// people, then trades (SPEC §2). Within a group, coins load before listings so
    /// that listing slugs can be matched to the coin list.
    pub const fn load_rank(self) -> (u8, u8) {
        match self {
            Dataset::Coins => (0, 0),
            Dataset::Listings => (0, 1),
            Dataset::Candles => (1, 0),
            Dataset::Markets => (1, 1),
            Dataset::Rankings => (1, 2),
            Dataset::Tickers => (1, 3),
            Dataset::People => (2, 0),
            Dataset::Trades => (3, 0),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a file's coin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoinSource {
    /// A coin column (possibly the name or symbol column, by the fallback rule).
    Column(usize),
    /// CoinGecko's `<symbol>-usd-max.csv` export: the coin is the file name's symbol.
    FileSymbol(String),
}

/// A header recognised as a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub dataset: Dataset,
    /// Canonical column → field index. Contains every required column except a coin
    /// taken from the file name.
    pub columns: HashMap<Column, usize>,
    pub coin: Option<CoinSource>,
    /// Header cells that the dataset does not use, as written.
    pub extra: Vec<String>,
}

impl Detected {
    pub fn index(&self, column: Column) -> Option<usize> {
        self.columns.get(&column).copied()
    }
}

/// Normalises a header cell for the alias map: byte-order marks and white space around
/// it removed (in any mix: a BOM after a space is trimmed too, so normalising twice
/// changes nothing), lower-cased.
pub fn normalize_header_cell(cell: &str) -> String {
    cell.trim_matches(|c: char| c == '\u{feff}' || c.is_whitespace())
        .to_lowercase()
}

fn accepted(column: Column, dataset: Dataset) -> impl Iterator<Item = &'static str> {
    let base = ALIASES
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(&[][..], |(_, names)| *names);
    let extra: &'static [&'static str] = match (column, dataset) {
        (Column::Price, Dataset::Markets) => &["close"],
        (Column::Coin, Dataset::Trades) => &["stock"],
        // Old CoinMarketCap scrapes call the market cap `market`; elsewhere `market` is
        // an exchange (tickers).
        (Column::MarketCap, Dataset::Candles) => &["market"],
        // Exchange OHLCV dumps give the volume in each currency of the pair; the quote's
        // is the one in dollars (a pair quoted in anything else is rejected).
        (Column::Volume24h, Dataset::Candles) => &[
            "volume usd",
            "volume usdt",
            "volume usdc",
            "volume busd",
            "volume_usd",
            "volume_usdt",
        ],
        _ => &[],
    };
    base.iter().chain(extra.iter()).copied()
}

/// The symbol in a CoinGecko export file name (`btc-usd-max.csv` → `btc`).
pub fn symbol_from_file_name(file_name: &str) -> Option<String> {
    let lower = file_name.to_lowercase();
    let symbol = lower.strip_suffix("-usd-max.csv")?;
    (!symbol.is_empty()).then(|| symbol.to_string())
}

/// Columns that describe another kind of record than prices of a coin: trades (a side,
/// an amount), exchanges (an exchange, a pair) and people. A header that carries one
/// that its match does not use is not that dataset, whatever else it has.
const FOREIGN: &[Column] = &[
    Column::Side,
    Column::Quantity,
    Column::Exchange,
    Column::Base,
    Column::Target,
    Column::PersonId,
    Column::FirstName,
    Column::LastName,
    Column::Email,
];

/// Header names found only in trade-by-trade dumps.
const TRADE_DUMP_ONLY: &[&str] = &["local_timestamp", "trade_id", "tradeid", "is_buyer_maker"];

/// Whether a header cell (normalised) names a column of another kind of record.
fn is_foreign(cell: &str) -> bool {
    TRADE_DUMP_ONLY.contains(&cell)
        || ALIASES
            .iter()
            .any(|(c, names)| FOREIGN.contains(c) && names.contains(&cell))
}

/// The cells of `header` (normalised) that `dataset` does not accept for any column and
/// that belong to another kind of record.
fn foreign_cells(header: &[String], dataset: Dataset) -> Vec<usize> {
    header
        .iter()
        .enumerate()
        .filter(|(_, cell)| {
            let own = dataset
                .required()
                .iter()
                .chain(dataset.optional())
                .chain([Column::Name, Column::Symbol].iter())
                .any(|&c| accepted(c, dataset).any(|n| n == cell.as_str()));
            !own && is_foreign(cell)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Why a header is recognised as no dataset: the header itself and the dataset it comes
/// closest to (most of its required columns present), with what that one lacks or what
/// in the header belongs to another kind of record.
pub fn why_unrecognized(header: &[&str]) -> String {
    let normalized: Vec<String> = header.iter().map(|h| normalize_header_cell(h)).collect();
    // Fewest required columns missing, then most present, then detection order.
    let mut best: Option<(Dataset, (usize, usize))> = None;
    for dataset in Dataset::DETECTION_ORDER {
        let columns = map_for(&normalized, dataset);
        let present = dataset
            .required()
            .iter()
            .filter(|c| {
                columns.contains_key(c)
                    || (**c == Column::Coin
                        && (columns.contains_key(&Column::Name)
                            || columns.contains_key(&Column::Symbol)))
            })
            .count();
        let rank = (dataset.required().len() - present, usize::MAX - present);
        if present > 0 && best.is_none_or(|(_, r)| rank < r) {
            best = Some((dataset, rank));
        }
    }
    let mut reason = format!("header fits no dataset: {}", header.join(","));
    if let Some((dataset, _)) = best {
        let columns = map_for(&normalized, dataset);
        let has_coin = |c: &Column| {
            *c == Column::Coin
                && (columns.contains_key(&Column::Name) || columns.contains_key(&Column::Symbol))
        };
        let missing: Vec<&str> = dataset
            .required()
            .iter()
            .filter(|c| !columns.contains_key(c) && !has_coin(c))
            .map(|c| c.name())
            .collect();
        let foreign: Vec<&str> = foreign_cells(&normalized, dataset)
            .into_iter()
            .map(|i| header[i].trim())
            .collect();
        reason.push_str(&format!(" (closest: {dataset}"));
        if !missing.is_empty() {
            reason.push_str(&format!(", which needs {}", missing.join(", ")));
        }
        if !foreign.is_empty() {
            reason.push_str(&format!(
                ", but {} belong to another kind of data (trades, exchanges or people)",
                foreign.join(", ")
            ));
        }
        reason.push(')');
    }
    reason
}

fn map_for(header: &[String], dataset: Dataset) -> HashMap<Column, usize> {
    let mut columns = HashMap::new();
    for &(column, _) in ALIASES {
        if let Some(index) =
            accepted(column, dataset).find_map(|name| header.iter().position(|h| h == name))
        {
            columns.insert(column, index);
        }
    }
    columns
}

/// Recognises a header. `file_name` is used for one thing only: a markets header without
/// a coin column in a `<symbol>-usd-max.csv` file takes its coin from that symbol.
///
/// One refinement of "first dataset whose required columns are present": a header with
/// a person column belongs to a dataset about people. Without it a trades export, which
/// carries coin, timestamp and price, would be read as price snapshots.
pub fn detect(header: &[&str], file_name: &str) -> Option<Detected> {
    let normalized: Vec<String> = header.iter().map(|h| normalize_header_cell(h)).collect();
    for dataset in Dataset::DETECTION_ORDER {
        let mut columns = map_for(&normalized, dataset);
        let about_people = dataset.required().contains(&Column::PersonId);
        if columns.contains_key(&Column::PersonId) && !about_people {
            continue;
        }
        // A price alias (close) must not also count as the candle close it came from.
        if dataset == Dataset::Markets && columns.get(&Column::Price) == columns.get(&Column::Close)
        {
            columns.remove(&Column::Close);
        }
        let mut coin = columns.get(&Column::Coin).map(|&i| CoinSource::Column(i));
        if coin.is_none() {
            let fallback = columns
                .get(&Column::Name)
                .or_else(|| columns.get(&Column::Symbol))
                .copied();
            if let Some(i) = fallback {
                columns.insert(Column::Coin, i);
                coin = Some(CoinSource::Column(i));
            } else if dataset == Dataset::Markets {
                coin = symbol_from_file_name(file_name).map(CoinSource::FileSymbol);
            }
        }
        let has = |c: &Column| match c {
            Column::Coin => coin.is_some(),
            other => columns.contains_key(other),
        };
        if !dataset.required().iter().all(has) {
            continue;
        }
        // The whole header must fit: one alias (a trade's `id`) cannot make a trade
        // dump a price history.
        if !foreign_cells(&normalized, dataset).is_empty() {
            continue;
        }
        let used: Vec<usize> = dataset
            .required()
            .iter()
            .chain(dataset.optional())
            .filter_map(|c| columns.get(c).copied())
            .collect();
        // The name and symbol columns keep their roles when the coin falls back to them.
        let keeps_roles = [Column::Name, Column::Symbol];
        let mut kept: HashMap<Column, usize> = HashMap::new();
        for (column, index) in columns {
            let role = dataset.required().contains(&column) || dataset.optional().contains(&column);
            if (role && used.contains(&index)) || keeps_roles.contains(&column) {
                kept.insert(column, index);
            }
        }
        let extra = header
            .iter()
            .enumerate()
            .filter(|(i, _)| !kept.values().any(|v| v == i))
            .map(|(_, h)| h.to_string())
            .collect();
        return Some(Detected {
            dataset,
            columns: kept,
            coin,
            extra,
        });
    }
    None
}

/// A dataset the API serves. Its shape is declared once, in [`Shape`] (see [`Served::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Served {
    Market,
    Daily,
    Coins,
    CoinExchanges,
    Traders,
    Positions,
    Rejects,
}

impl Served {
    pub const ALL: [Served; 7] = [
        Served::Market,
        Served::Daily,
        Served::Coins,
        Served::CoinExchanges,
        Served::Traders,
        Served::Positions,
        Served::Rejects,
    ];

    /// The one declaration of this dataset: its table, columns, key, filters and data
    /// versions.
    pub const fn shape(self) -> &'static Shape {
        match self {
            Served::Market => &MARKET,
            Served::Daily => &DAILY,
            Served::Coins => &COINS,
            Served::CoinExchanges => &COIN_EXCHANGES,
            Served::Traders => &TRADERS,
            Served::Positions => &POSITIONS,
            Served::Rejects => &REJECTS,
        }
    }

    /// The name used in URLs, cursors and `data_versions`.
    pub const fn name(self) -> &'static str {
        self.shape().name
    }

    pub fn from_name(name: &str) -> Option<Served> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The key order of chunked reads.
    pub const fn key_columns(self) -> &'static [&'static str] {
        self.shape().key
    }
}

// The served datasets' declarations.
//
// A served dataset is one table read in its primary-key order: each declaration says
// which table, which columns go out (wire name, where the value comes from, what it
// holds, whether it may be NULL), the key, the filters it takes and the data versions
// its bytes depend on. The API's chunk reader derives its statements, cursors, CSV
// headers and versions from these alone, and tests hold them against the migrations
// (`information_schema.columns`) and the OpenAPI row schemas. Adding a served dataset
// means: its migration, a declaration here with a `Served` variant, and its row schema
// in the API's OpenAPI document.

/// What a served value holds, which decides how it is bound, decoded and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int4,
    Int8,
    Float8,
    Timestamptz,
    Date,
    TextArray,
}

impl Kind {
    /// PostgreSQL's name of the type (`information_schema.columns.udt_name`).
    pub const fn udt_name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int4 => "int4",
            Kind::Int8 => "int8",
            Kind::Float8 => "float8",
            Kind::Timestamptz => "timestamptz",
            Kind::Date => "date",
            Kind::TextArray => "_text",
        }
    }

    /// The SQL type a value of this kind is cast to.
    pub const fn sql_type(self) -> &'static str {
        match self {
            Kind::TextArray => "text[]",
            other => other.udt_name(),
        }
    }

    /// SQL giving the text form cursors carry for a key value `expr` of this kind (the
    /// API's key writer makes the same text): text as is, integers in decimal, instants
    /// as RFC 3339 in UTC with six fractional digits, dates as `YYYY-MM-DD`.
    pub fn key_text_sql(self, expr: &str) -> String {
        match self {
            Kind::Text => expr.to_string(),
            Kind::Timestamptz => {
                format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            Kind::Date => format!("to_char({expr}, 'YYYY-MM-DD')"),
            Kind::Int4 | Kind::Int8 | Kind::Float8 | Kind::TextArray => format!("({expr})::text"),
        }
    }
}

/// A served column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedColumn {
    /// The name on the wire (JSON key, CSV header).
    pub name: &'static str,
    /// The column of the dataset's table it reads; `None` for a value of a joined table.
    pub column: Option<&'static str>,
    /// The SQL that yields it when it is not the bare column `t.<column>`.
    pub expr: Option<&'static str>,
    pub kind: Kind,
    pub nullable: bool,
}

impl ServedColumn {
    /// The table column `name`, served as is, never NULL.
    pub const fn new(name: &'static str, kind: Kind) -> ServedColumn {
        ServedColumn {
            name,
            column: Some(name),
            expr: None,
            kind,
            nullable: false,
        }
    }

    /// A value of a joined table, from `expr`, never NULL.
    pub const fn joined(name: &'static str, expr: &'static str, kind: Kind) -> ServedColumn {
        ServedColumn {
            name,
            column: None,
            expr: Some(expr),
            kind,
            nullable: false,
        }
    }

    /// The same, possibly NULL.
    pub const fn nullable(self) -> ServedColumn {
        ServedColumn {
            nullable: true,
            ..self
        }
    }

    /// The same, computed by `expr` from the column.
    pub const fn computed(self, expr: &'static str) -> ServedColumn {
        ServedColumn {
            expr: Some(expr),
            ..self
        }
    }

    /// The same, read from table column `column` (served under its own wire name).
    pub const fn from_column(self, column: &'static str) -> ServedColumn {
        ServedColumn {
            column: Some(column),
            ..self
        }
    }
}

/// A filter a dataset takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `coin=`: on the table's `coin_id`.
    Coin,
    /// `from=` / `to=`: on this column (a timestamp, or a date that overlaps the range).
    TimeRange(&'static str),
    /// `run=`: on the table's `run_id`.
    Run,
}

/// A table joined to the rows already cut to the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// `<table> <alias> ON <condition>`.
    pub clause: &'static str,
    /// The joined column bounded like the scan's leading `coin_id`.
    pub bound: &'static str,
}

/// A key of `data_versions`: a served dataset (or the `/top` structure) whose version a
/// run bumps when it changes the rows behind it, and which readers' ETags and cursors
/// carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Versioned {
    Market,
    Daily,
    Coins,
    CoinExchanges,
    Traders,
    Positions,
    Rejects,
    Top,
}

impl Versioned {
    /// Every key, in declaration order.
    pub const ALL: [Versioned; 8] = [
        Versioned::Market,
        Versioned::Daily,
        Versioned::Coins,
        Versioned::CoinExchanges,
        Versioned::Traders,
        Versioned::Positions,
        Versioned::Rejects,
        Versioned::Top,
    ];

    /// The key's name in `data_versions` (and in a run report's `changed_datasets`).
    pub const fn name(self) -> &'static str {
        match self {
            Versioned::Market => "market",
            Versioned::Daily => "daily",
            Versioned::Coins => "coins",
            Versioned::CoinExchanges => "coin_exchanges",
            Versioned::Traders => "traders",
            Versioned::Positions => "positions",
            Versioned::Rejects => "rejects",
            Versioned::Top => "top",
        }
    }
}

impl fmt::Display for Versioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The declaration of a served dataset (see the comment above [`Kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The name used in URLs, cursors and the first of its data versions.
    pub name: &'static str,
    pub table: &'static str,
    /// The served columns, in order.
    pub columns: &'static [ServedColumn],
    /// The sort key, which is also the primary key (table columns).
    pub key: &'static [&'static str],
    pub filters: &'static [Filter],
    /// The `data_versions` keys its bytes depend on: its own first (the one cursors
    /// carry), then any it joins.
    pub versioned_by: &'static [Versioned],
    pub join: Option<Join>,
    /// Columns of the table that are deliberately not served.
    pub unserved: &'static [&'static str],
}

impl Shape {
    /// Whether the dataset takes `filter`.
    pub fn takes(&self, filter: Filter) -> bool {
        self.filters.contains(&filter)
    }

    /// The column and kind of the `from=`/`to=` filter, when it takes one.
    pub fn time_range(&self) -> Option<(&'static str, Kind)> {
        self.filters.iter().find_map(|f| match f {
            Filter::TimeRange(column) => self.column(column).map(|c| (*column, c.kind)),
            _ => None,
        })
    }

    /// The served column that reads table column `column`.
    pub fn column(&self, column: &str) -> Option<&'static ServedColumn> {
        self.columns.iter().find(|c| c.column == Some(column))
    }

    /// Every column of the table: the served ones in order, then the unserved.
    pub fn table_columns(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter_map(|c| c.column)
            .chain(self.unserved.iter().copied())
            .collect()
    }

    /// The table's columns outside its key (what a writer compares and updates).
    pub fn value_columns(&self) -> Vec<&'static str> {
        self.table_columns()
            .into_iter()
            .filter(|c| !self.key.contains(c))
            .collect()
    }
}

use Kind::{Date, Float8, Int4, Int8, Text, TextArray, Timestamptz};

const fn col(name: &'static str, kind: Kind) -> ServedColumn {
    ServedColumn::new(name, kind)
}

/// Price snapshots with the coin's symbol and name joined in.
pub const MARKET: Shape = Shape {
    name: "market",
    table: "market",
    columns: &[
        col("coin_id", Text),
        // Symbols are stored as each source writes them (`btc`, `BTC`) and served in
        // upper case, as the original service's top list did.
        ServedColumn::joined("symbol", "upper(c.symbol)", Text),
        ServedColumn::joined("name", "c.name", Text),
        col("ts", Timestamptz),
        col("price_usd", Float8),
        col("market_cap_usd", Float8).nullable(),
        col("volume_24h_usd", Float8).nullable(),
        col("rank", Int4).nullable(),
        col("rank_source", Text).nullable(),
    ],
    key: &["coin_id", "ts"],
    filters: &[Filter::Coin, Filter::TimeRange("ts")],
    versioned_by: &[Versioned::Market, Versioned::Coins],
    join: Some(Join {
        clause: "coins c ON c.id = t.coin_id",
        bound: "c.id",
    }),
    unserved: &[],
};

/// One row per coin-day.
pub const DAILY: Shape = Shape {
    name: "daily",
    table: "daily",
    columns: &[
        col("coin_id", Text),
        col("day", Date),
        col("open", Float8),
        col("high", Float8),
        col("low", Float8),
        col("close", Float8),
        col("avg_price", Float8),
        col("max_market_cap_usd", Float8).nullable(),
        col("last_volume_usd", Float8).nullable(),
        col("samples", Int4),
        col("source", Text),
    ],
    key: &["coin_id", "day"],
    filters: &[Filter::Coin, Filter::TimeRange("day")],
    versioned_by: &[Versioned::Daily],
    join: None,
    unserved: &[],
};

/// The coin dimension.
pub const COINS: Shape = Shape {
    name: "coins",
    table: "coins",
    columns: &[
        col("id", Text),
        col("symbol", Text).computed("upper(t.symbol)"),
        col("name", Text),
        col("cmc_id", Int8).nullable(),
    ],
    key: &["id"],
    filters: &[],
    versioned_by: &[Versioned::Coins],
    join: None,
    // How the ETL came to know the coin (a listing, or a file's own symbol).
    unserved: &["origin"],
};

/// The exchanges each coin is listed on.
pub const COIN_EXCHANGES: Shape = Shape {
    name: "coin_exchanges",
    table: "coin_exchanges",
    columns: &[
        col("coin_id", Text),
        col("exchanges", TextArray),
        col("exchange_count", Int4),
    ],
    key: &["coin_id"],
    filters: &[Filter::Coin],
    versioned_by: &[Versioned::CoinExchanges],
    join: None,
    unserved: &[],
};

/// One row per person, with their latest trade.
pub const TRADERS: Shape = Shape {
    name: "traders",
    table: "traders",
    columns: &[
        col("person_id", Int8),
        col("first_name", Text),
        col("last_name", Text),
        col("email", Text),
        col("date_added", Timestamptz).nullable(),
        col("last_trade_ts", Timestamptz).nullable(),
        col("last_trade_coin_id", Text).nullable(),
        col("last_trade_side", Text).nullable(),
        col("last_trade_quantity", Float8).nullable(),
        col("last_trade_price", Float8).nullable(),
        col("trade_count", Int8),
    ],
    key: &["person_id"],
    filters: &[],
    versioned_by: &[Versioned::Traders],
    join: None,
    unserved: &[],
};

/// One row per person and coin traded.
pub const POSITIONS: Shape = Shape {
    name: "positions",
    table: "positions",
    columns: &[
        col("person_id", Int8),
        col("coin_id", Text),
        col("net_quantity", Float8),
        col("trade_count", Int8),
        col("avg_buy_price", Float8).nullable(),
        col("last_price_usd", Float8).nullable(),
        col("market_value_usd", Float8).nullable(),
    ],
    key: &["person_id", "coin_id"],
    filters: &[Filter::Coin],
    versioned_by: &[Versioned::Positions],
    join: None,
    unserved: &[],
};

/// The rows the ETL rejected, by run, file and line.
pub const REJECTS: Shape = Shape {
    name: "rejects",
    table: "etl_rejects",
    columns: &[
        col("run_id", Int8),
        col("file", Text),
        col("line", Int8),
        col("column_name", Text).nullable(),
        col("raw_value", Text).nullable(),
        col("reason", Text),
        col("raw_line", Text),
    ],
    key: &["run_id", "file", "line"],
    filters: &[Filter::Run],
    versioned_by: &[Versioned::Rejects],
    join: None,
    unserved: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_str(header: &str, file: &str) -> Option<Detected> {
        let cells: Vec<&str> = header.split(',').collect();
        detect(&cells, file)
    }

    #[test]
    fn cmc_listing_header_is_listings_with_the_unnamed_index_as_extra() {
        let d = detect_str(
            ",24h_volume_usd,available_supply,id,last_updated,market_cap_usd,max_supply,name,percent_change_1h,percent_change_24h,percent_change_7d,price_btc,price_usd,rank,symbol,total_supply",
            "coinmarketcap_06122017.csv",
        )
        .expect("recognised");
        assert_eq!(d.dataset, Dataset::Listings);
        assert_eq!(d.index(Column::Coin), Some(3));
        assert_eq!(d.index(Column::Price), Some(12));
        assert_eq!(d.index(Column::Timestamp), Some(4));
        assert_eq!(d.index(Column::Volume24h), Some(1));
        assert!(d.extra.contains(&String::new()));
        assert!(d.extra.contains(&"price_btc".to_string()));
    }

    #[test]
    fn kaggle_history_is_candles_with_coin_from_the_name_column() {
        let d = detect_str(
            "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap",
            "coin_Aave.csv",
        )
        .expect("recognised");
        assert_eq!(d.dataset, Dataset::Candles);
        assert_eq!(d.coin, Some(CoinSource::Column(1)));
        assert_eq!(d.index(Column::Symbol), Some(2));
        assert_eq!(d.index(Column::MarketCap), Some(9));
        assert_eq!(d.extra, vec!["SNo".to_string()]);
    }

    #[test]
    fn coingecko_daily_file_is_markets() {
        let d = detect_str(
            "timestamp,readableTimestamp,coinId,price,marketCap,totalVolume",
            "aave.csv",
        )
        .expect("recognised");
        assert_eq!(d.dataset, Dataset::Markets);
        assert_eq!(d.index(Column::Coin), Some(2));
        assert_eq!(d.extra, vec!["readableTimestamp".to_string()]);
    }

    #[test]
    fn coingecko_export_takes_its_coin_from_the_file_name() {
        let d = detect_str(
            "snapped_at,price,market_cap,total_volume",
            "btc-usd-max.csv",
        )
        .expect("recognised");
        assert_eq!(d.dataset, Dataset::Markets);
        assert_eq!(d.coin, Some(CoinSource::FileSymbol("btc".into())));
        assert!(detect_str("snapped_at,price,market_cap,total_volume", "prices.csv").is_none());
    }

    #[test]
    fn a_tick_trade_header_is_no_dataset_and_says_what_it_is_closest_to() {
        let header = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount";
        assert_eq!(detect_str(header, "trades_2021.csv"), None);
        let cells: Vec<&str> = header.split(',').collect();
        let why = why_unrecognized(&cells);
        assert!(
            why.starts_with(&format!("header fits no dataset: {header}")),
            "{why}"
        );
        assert!(why.contains("closest: markets"), "{why}");
        assert!(
            why.contains("exchange, local_timestamp, side, amount"),
            "{why}"
        );
    }

    #[test]
    fn market_is_a_market_cap_for_candles_and_an_exchange_for_tickers() {
        let d = detect_str("Date,Open,High,Low,Close,Volume,market,coin", "old.csv")
            .expect("recognised");
        assert_eq!(d.dataset, Dataset::Candles);
        assert_eq!(d.index(Column::MarketCap), Some(6));
        assert!(d.extra.is_empty(), "{:?}", d.extra);
        let t = detect_str("coin_id,market,base,target", "t.csv").expect("recognised");
        assert_eq!(t.dataset, Dataset::Tickers);
        assert_eq!(t.index(Column::Exchange), Some(1));
    }

    #[test]
    fn an_exchange_ohlcv_dump_is_candles_with_the_quote_volume() {
        let d = detect_str(
            "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount",
            "Binance_BTCUSDT_d.csv",
        )
        .expect("recognised");
        assert_eq!(d.dataset, Dataset::Candles);
        assert_eq!(d.index(Column::Coin), Some(2));
        assert_eq!(d.index(Column::Timestamp), Some(1));
        assert_eq!(d.index(Column::Volume24h), Some(8));
        assert_eq!(d.extra, vec!["unix", "Volume BTC", "tradecount"]);
    }

    #[test]
    fn an_interval_column_is_read_for_candles() {
        for (header, index) in [
            ("coin,date,open,high,low,close,interval", 6),
            ("symbol,timeframe,date,open,high,low,close", 1),
            ("coin,date,open,high,low,close,Resolution", 6),
        ] {
            let d = detect_str(header, "c.csv").expect("recognised");
            assert_eq!(d.dataset, Dataset::Candles, "{header}");
            assert_eq!(d.index(Column::Interval), Some(index), "{header}");
            assert!(d.extra.is_empty(), "{header}: {:?}", d.extra);
        }
    }

    #[test]
    fn close_is_a_price_only_for_markets() {
        let d = detect_str("coin,date,close", "x.csv").expect("recognised");
        assert_eq!(d.dataset, Dataset::Markets);
        assert_eq!(d.index(Column::Price), Some(2));
    }

    #[test]
    fn coin_list_people_trades_tickers_and_unknown_headers() {
        assert_eq!(
            detect_str(" ID , Symbol ,NAME", "l.csv").map(|d| d.dataset),
            Some(Dataset::Coins)
        );
        assert_eq!(
            detect_str("person_id,first_name,last_name,email,date_added", "p.csv")
                .map(|d| d.dataset),
            Some(Dataset::People)
        );
        assert_eq!(
            detect_str("person_id,timestamp,stock,side,quantity,price", "t.csv").map(|d| d.dataset),
            Some(Dataset::Trades)
        );
        assert_eq!(
            detect_str("person_id,timestamp,coin_id,side,quantity,price", "t.csv")
                .map(|d| d.dataset),
            Some(Dataset::Trades),
            "a trades file with a price is not a markets file"
        );
        assert_eq!(
            detect_str("coin_id,exchange_id,base,target", "t.csv").map(|d| d.dataset),
            Some(Dataset::Tickers)
        );
        assert_eq!(detect_str("foo,bar", "x.csv"), None);
        assert_eq!(
            detect_str("\u{feff}id,symbol,name", "x.csv").map(|d| d.dataset),
            Some(Dataset::Coins)
        );
    }

    #[test]
    fn a_header_cell_loses_every_bom_and_space_around_it_at_once() {
        for cell in [
            "\u{feff}\n\u{feff} snapped_at ",
            " \u{feff}Snapped_At\u{feff}\t",
        ] {
            assert_eq!(normalize_header_cell(cell), "snapped_at", "{cell:?}");
        }
        assert_eq!(
            normalize_header_cell("market\u{feff} cap"),
            "market\u{feff} cap"
        );
    }

    #[test]
    fn a_tables_columns_are_its_key_and_its_values() {
        assert_eq!(
            COINS.table_columns(),
            ["id", "symbol", "name", "cmc_id", "origin"]
        );
        assert_eq!(
            COINS.value_columns(),
            ["symbol", "name", "cmc_id", "origin"]
        );
        assert_eq!(POSITIONS.key, ["person_id", "coin_id"]);
        assert!(!POSITIONS.value_columns().contains(&"coin_id"));
    }

    #[test]
    fn every_served_key_column_is_a_served_table_column() {
        for served in Served::ALL {
            let shape = served.shape();
            for key in shape.key {
                assert!(shape.column(key).is_some(), "{}: key {key}", shape.name);
            }
            assert_eq!(
                shape.versioned_by.first().map(|v| v.name()),
                Some(shape.name)
            );
            assert_eq!(Served::from_name(served.name()), Some(served));
        }
    }
}
