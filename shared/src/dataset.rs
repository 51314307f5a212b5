//! The dataset registry: which input datasets exist, how a CSV header is recognised as
//! one of them (one global alias map, then the first dataset in detection order whose
//! required columns are present), and which datasets the API serves in which key order.

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
            Dataset::Listings | Dataset::Markets => &[MarketCap, Volume24h],
            Dataset::Candles => &[Volume24h, MarketCap],
            Dataset::Rankings => &[Volume24h],
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

/// Normalises a header cell for the alias map: BOM and surrounding spaces removed,
/// lower-cased.
pub fn normalize_header_cell(cell: &str) -> String {
    cell.trim_start_matches('\u{feff}').trim().to_lowercase()
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

/// A dataset the API serves, with its key order.
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

    /// The name used in URLs, cursors and `data_versions`.
    pub const fn name(self) -> &'static str {
        match self {
            Served::Market => "market",
            Served::Daily => "daily",
            Served::Coins => "coins",
            Served::CoinExchanges => "coin_exchanges",
            Served::Traders => "traders",
            Served::Positions => "positions",
            Served::Rejects => "rejects",
        }
    }

    pub fn from_name(name: &str) -> Option<Served> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The key order of chunked reads.
    pub const fn key_columns(self) -> &'static [&'static str] {
        match self {
            Served::Market => &["coin_id", "ts"],
            Served::Daily => &["coin_id", "day"],
            Served::Coins => &["id"],
            Served::CoinExchanges => &["coin_id"],
            Served::Traders => &["person_id"],
            Served::Positions => &["person_id", "coin_id"],
            Served::Rejects => &["run_id", "file", "line"],
        }
    }
}

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
}
