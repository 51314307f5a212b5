//! Validation: turns one raw CSV record of a recognised file into typed rows, or into a
//! [`Rejection`] naming the first failing column and the reason (SPEC §3). It never
//! drops a row silently and never touches the database; coin and person look-ups go
//! through the in-memory indexes it is given.

use crate::resolve::{is_usd_quote, split_pair, CoinIndex, ListingCoin, Resolution};
use crate::rows::{
    Batch, CandleRow, CoinRow, MarketRow, PersonRow, RankingRow, Rejection, Side, TickerRow,
    TradeRow,
};
use crate::values::{self, DateOrder, Micros, ValueError};
use coinflow_shared::dataset::{CoinSource, Column, Dataset, Detected};
use csv::ByteRecord;
use std::collections::HashSet;

/// Reject reasons, as stored in `etl_rejects.reason`.
pub(crate) mod reason {
    pub(crate) const UNPARSABLE: &str = "unparsable value";
    pub(crate) const MISSING: &str = "missing required value";
    pub(crate) const PRICE_NOT_POSITIVE: &str = "price <= 0";
    pub(crate) const NEGATIVE_MARKET_CAP: &str = "negative market cap";
    pub(crate) const NEGATIVE_VOLUME: &str = "negative volume";
    pub(crate) const NEGATIVE_QUANTITY: &str = "negative quantity";
    pub(crate) const HIGH_BELOW_LOW: &str = "high < low";
    pub(crate) const UNKNOWN_COIN: &str = "unknown coin";
    pub(crate) const AMBIGUOUS_SYMBOL: &str = "ambiguous symbol";
    pub(crate) const AMBIGUOUS_DATE_ORDER: &str = "ambiguous date order";
    pub(crate) const WRONG_FIELD_COUNT: &str = "wrong field count";
    pub(crate) const INVALID_UTF8: &str = "invalid UTF-8";
    pub(crate) const RANK_NOT_POSITIVE: &str = "rank <= 0";
    pub(crate) const UNKNOWN_PERSON: &str = "unknown person";
    pub(crate) const INVALID_SIDE: &str = "invalid side";
    /// A later line with an earlier line's key and other values (the first is kept).
    pub(crate) const PAIR_NOT_IN_USD: &str =
        "exchange pair not quoted in USD or a USD stablecoin: its prices are not USD prices";
    pub(crate) const CONFLICTING_DUPLICATE: &str = "conflicting duplicate key";
    pub(crate) const UNKNOWN_INTERVAL: &str =
        "unknown candle interval (one of 1m, 5m, 15m, 30m, 1h, 4h, 1d)";
    pub(crate) const TIMESTAMP_OUT_OF_RANGE: &str =
        "timestamp out of range (1970-01-01 to 9999-12-31)";
}

/// The in-memory state validation resolves against: known coins and people (database
/// plus this run).
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    pub(crate) coins: CoinIndex,
    pub(crate) people: HashSet<i64>,
}

impl Known {
    /// A digest of everything rows are resolved against (coins, aliases, people): a file
    /// set aside against one fingerprint is judged the same way until it changes.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for line in self.coins.fingerprint_lines() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        let mut people: Vec<i64> = self.people.iter().copied().collect();
        people.sort_unstable();
        for person in people {
            hasher.update(person.to_le_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Validates the records of one file.
pub(crate) struct Validator {
    detected: Detected,
    header: Vec<String>,
    timestamp_order: DateOrder,
    date_added_order: DateOrder,
    file_coin: Option<Resolution>,
    /// Extra (unused) named columns that may hold numbers: (index, a number seen). A
    /// column leaves the list at its first value that is not a number.
    extra_numbers: Vec<(usize, bool)>,
    /// Market caps and volumes of exactly 0 stored as missing.
    pub(crate) zeroed: u64,
    /// (line, count) of the valid rows that had such zeroes: a merge counts them only
    /// for the rows it stores.
    pub(crate) zeroed_lines: Vec<(i64, i64)>,
}

struct Fail {
    column: Option<usize>,
    reason: &'static str,
}

fn fail(column: usize, reason: &'static str) -> Fail {
    Fail {
        column: Some(column),
        reason,
    }
}

impl Validator {
    pub(crate) fn new(
        detected: Detected,
        header: Vec<String>,
        timestamp_order: DateOrder,
        date_added_order: DateOrder,
    ) -> Self {
        let extra_numbers = header
            .iter()
            .enumerate()
            .filter(|(i, name)| {
                !name.trim().is_empty() && !detected.columns.values().any(|used| used == i)
            })
            .map(|(i, _)| (i, false))
            .collect();
        Validator {
            detected,
            header,
            timestamp_order,
            date_added_order,
            file_coin: None,
            extra_numbers,
            zeroed: 0,
            zeroed_lines: Vec::new(),
        }
    }

    pub(crate) fn dataset(&self) -> Dataset {
        self.detected.dataset
    }

    /// Header cells the dataset does not use, as written.
    pub(crate) fn extra_columns(&self) -> &[String] {
        &self.detected.extra
    }

    /// The extra columns whose every value so far is a number (or missing): data the
    /// user may have expected to load.
    pub(crate) fn numeric_extra_columns(&self) -> Vec<String> {
        self.extra_numbers
            .iter()
            .filter(|(_, seen)| *seen)
            .filter_map(|(i, _)| self.header.get(*i).cloned())
            .collect()
    }

    /// Validates one record (1-based `line` of its first physical line) into `batch`.
    pub(crate) fn validate(
        &mut self,
        known: &mut Known,
        line: i64,
        record: &ByteRecord,
        batch: &mut Batch,
    ) -> Result<(), Rejection> {
        if record.len() != self.header.len() {
            let mut rejection = self.rejection(line, record, None, None);
            rejection.reason = format!(
                "{} (expected {}, found {})",
                reason::WRONG_FIELD_COUNT,
                self.header.len(),
                record.len()
            );
            return Err(rejection);
        }
        let mut fields: Vec<&str> = Vec::with_capacity(record.len());
        for (i, bytes) in record.iter().enumerate() {
            match std::str::from_utf8(bytes) {
                Ok(s) => fields.push(s.trim()),
                Err(_) => {
                    return Err(self.rejection(
                        line,
                        record,
                        None,
                        Some(fail(i, reason::INVALID_UTF8)),
                    ))
                }
            }
        }
        self.extra_numbers.retain_mut(|(i, seen)| {
            match fields.get(*i).map(|v| values::parse_number(v)) {
                Some(Ok(Some(_))) => {
                    *seen = true;
                    true
                }
                Some(Ok(None)) | None => true,
                Some(Err(_)) => false,
            }
        });
        match self.typed(known, line, &fields, batch) {
            Ok(()) => Ok(()),
            Err(f) => Err(self.rejection(line, record, Some(&fields), Some(f))),
        }
    }

    fn rejection(
        &self,
        line: i64,
        record: &ByteRecord,
        fields: Option<&[&str]>,
        f: Option<Fail>,
    ) -> Rejection {
        let column = f.as_ref().and_then(|f| f.column);
        Rejection {
            line,
            column: column.and_then(|c| self.header.get(c).cloned()),
            raw_value: column.and_then(|c| fields.and_then(|fs| fs.get(c)).map(|v| v.to_string())),
            reason: f
                .map_or(reason::WRONG_FIELD_COUNT, |f| f.reason)
                .to_string(),
            raw_line: raw_line(record),
        }
    }

    fn typed(
        &mut self,
        known: &mut Known,
        line: i64,
        f: &[&str],
        batch: &mut Batch,
    ) -> Result<(), Fail> {
        let Validator {
            detected,
            timestamp_order,
            date_added_order,
            file_coin,
            zeroed,
            zeroed_lines,
            ..
        } = self;
        let row = Fields {
            d: detected,
            f,
            ts_order: *timestamp_order,
            date_added_order: *date_added_order,
        };
        let mut coin =
            |row: &Fields<'_>, known: &mut Known| resolve_coin(detected, file_coin, row, known);
        // Zeroed values count only for rows that are kept.
        let total_zeroed = zeroed;
        let mut row_zeroed = 0u64;
        let zeroed = &mut row_zeroed;
        match detected.dataset {
            Dataset::Listings => {
                let id = row.text(Column::Coin)?;
                let symbol = row.text(Column::Symbol)?;
                let name = row.text(Column::Name)?;
                let rank = row.rank()?;
                let price = row.price(Column::Price)?;
                let ts = row.ts(Column::Timestamp)?;
                let market_cap =
                    row.amount(Column::MarketCap, reason::NEGATIVE_MARKET_CAP, zeroed)?;
                let volume = row.amount(Column::Volume24h, reason::NEGATIVE_VOLUME, zeroed)?;
                let coin_id = match known.coins.resolve_listing(id, symbol, name, None) {
                    ListingCoin::Existing(id) | ListingCoin::Aliased { coin_id: id, .. } => id,
                    ListingCoin::Created(coin) => coin.id,
                };
                let ts = values::to_datetime(ts);
                batch.rankings.push(RankingRow {
                    line,
                    coin_id: coin_id.clone(),
                    ts,
                    rank,
                    volume_24h_usd: volume,
                    source: rank_source(&row, Dataset::Listings),
                });
                batch.market.push(MarketRow {
                    line,
                    coin_id,
                    ts,
                    price_usd: price,
                    market_cap_usd: market_cap,
                    volume_24h_usd: volume,
                });
            }
            Dataset::Coins => {
                let id = row.text(Column::Coin)?;
                let symbol = row.text(Column::Symbol)?;
                let name = row.text(Column::Name)?;
                let cmc_id = row.integer(Column::CmcId, false)?;
                known.coins.insert_known(id, symbol, name);
                batch.coins.push(CoinRow {
                    line,
                    id: id.to_string(),
                    symbol: symbol.to_string(),
                    name: name.to_string(),
                    cmc_id,
                });
            }
            Dataset::Markets => {
                let ts = row.ts(Column::Timestamp)?;
                let price = row.price(Column::Price)?;
                let market_cap =
                    row.amount(Column::MarketCap, reason::NEGATIVE_MARKET_CAP, zeroed)?;
                let volume = row.amount(Column::Volume24h, reason::NEGATIVE_VOLUME, zeroed)?;
                let coin_id = coin(&row, known)?;
                batch.market.push(MarketRow {
                    line,
                    coin_id,
                    ts: values::to_datetime(ts),
                    price_usd: price,
                    market_cap_usd: market_cap,
                    volume_24h_usd: volume,
                });
            }
            Dataset::Rankings => {
                let ts = row.ts(Column::Timestamp)?;
                let rank = row.rank()?;
                let volume = row.amount(Column::Volume24h, reason::NEGATIVE_VOLUME, zeroed)?;
                let coin_id = coin(&row, known)?;
                batch.rankings.push(RankingRow {
                    line,
                    coin_id,
                    ts: values::to_datetime(ts),
                    rank,
                    volume_24h_usd: volume,
                    source: rank_source(&row, Dataset::Rankings),
                });
            }
            Dataset::Candles => {
                let ts = row.ts(Column::Timestamp)?;
                let open = row.price(Column::Open)?;
                let high = row.price(Column::High)?;
                let low = row.price(Column::Low)?;
                let close = row.price(Column::Close)?;
                if high < low {
                    return Err(fail(row.index(Column::High), reason::HIGH_BELOW_LOW));
                }
                let volume = row.amount(Column::Volume24h, reason::NEGATIVE_VOLUME, zeroed)?;
                let market_cap =
                    row.amount(Column::MarketCap, reason::NEGATIVE_MARKET_CAP, zeroed)?;
                // Without an interval column (or with the cell empty) the interval comes
                // from the spacing of the coin's rows, once the whole file is staged.
                let interval = match row.optional_text(Column::Interval) {
                    None => None,
                    Some(raw) => Some(
                        values::parse_candle_interval(raw)
                            .ok_or_else(|| {
                                fail(row.index(Column::Interval), reason::UNKNOWN_INTERVAL)
                            })?
                            .to_string(),
                    ),
                };
                let coin_id = coin(&row, known)?;
                batch.candles.push(CandleRow {
                    line,
                    coin_id,
                    interval,
                    ts: values::to_datetime(ts),
                    open,
                    high,
                    low,
                    close,
                    volume_usd: volume,
                    market_cap_usd: market_cap,
                });
            }
            Dataset::Tickers => {
                let exchange = row.text(Column::Exchange)?;
                let base = row.optional_text(Column::Base).unwrap_or_default();
                let target = row.optional_text(Column::Target).unwrap_or_default();
                let coin_id = coin(&row, known)?;
                batch.tickers.push(TickerRow {
                    line,
                    coin_id,
                    exchange: exchange.to_string(),
                    base: base.to_string(),
                    target: target.to_string(),
                });
            }
            Dataset::People => {
                let person_id = row.required_integer(Column::PersonId)?;
                let first_name = row.text(Column::FirstName)?;
                let last_name = row.text(Column::LastName)?;
                let email = row.text(Column::Email)?;
                let date_added = row.optional_ts(Column::DateAdded)?;
                known.people.insert(person_id);
                batch.people.push(PersonRow {
                    line,
                    person_id,
                    first_name: first_name.to_string(),
                    last_name: last_name.to_string(),
                    email: email.to_string(),
                    date_added: date_added.map(values::to_datetime),
                });
            }
            Dataset::Trades => {
                let person_id = row.required_integer(Column::PersonId)?;
                let ts = row.ts(Column::Timestamp)?;
                let side = match row.optional_text(Column::Side).map(str::to_ascii_lowercase) {
                    None => Side::Buy,
                    Some(s) => match s.parse() {
                        Ok(side) => side,
                        Err(_) => return Err(fail(row.index(Column::Side), reason::INVALID_SIDE)),
                    },
                };
                let quantity = match row.number(Column::Quantity, false)? {
                    Some(q) if q < 0.0 => {
                        return Err(fail(row.index(Column::Quantity), reason::NEGATIVE_QUANTITY))
                    }
                    q => q,
                };
                let price = match row.number(Column::Price, false)? {
                    Some(p) if p <= 0.0 => {
                        return Err(fail(row.index(Column::Price), reason::PRICE_NOT_POSITIVE))
                    }
                    p => p,
                };
                let coin_id = coin(&row, known)?;
                if !known.people.contains(&person_id) {
                    return Err(fail(row.index(Column::PersonId), reason::UNKNOWN_PERSON));
                }
                batch.trades.push(TradeRow {
                    line,
                    person_id,
                    ts: values::to_datetime(ts),
                    coin_id,
                    side,
                    quantity,
                    price,
                });
            }
        }
        *total_zeroed += row_zeroed;
        if row_zeroed > 0 {
            zeroed_lines.push((line, row_zeroed as i64));
        }
        Ok(())
    }
}

/// The source of a row's rank: its `rank_source` cell (trimmed, lower-cased), else the
/// dataset's name (`listings`, `rankings`) as before the column existed.
fn rank_source(row: &Fields<'_>, dataset: Dataset) -> String {
    row.optional_text(Column::RankSource)
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| dataset.name().to_string())
}

/// Whether rows of a file may bring their own coin: price histories (candles,
/// markets) that name the coin by symbol and name.
pub(crate) fn may_infer_coins(detected: &Detected) -> bool {
    matches!(detected.dataset, Dataset::Candles | Dataset::Markets)
        && detected.index(Column::Symbol).is_some()
        && detected.index(Column::Name).is_some()
}

/// The coin of a row: from the file name's symbol (resolved once per file) or from the
/// row's coin column, helped by its own symbol and name columns.
fn resolve_coin(
    detected: &Detected,
    file_coin: &mut Option<Resolution>,
    row: &Fields<'_>,
    known: &mut Known,
) -> Result<String, Fail> {
    {
        let resolution = match &detected.coin {
            Some(CoinSource::FileSymbol(symbol)) => file_coin
                .get_or_insert_with(|| known.coins.resolve(symbol, Some(symbol), None))
                .clone(),
            _ => {
                let reference = row.text(Column::Coin)?;
                let coin_index = row.index(Column::Coin);
                let own = |c: Column| {
                    row.d
                        .index(c)
                        .filter(|&i| i != coin_index)
                        .and_then(|i| row.f.get(i).copied())
                        .filter(|v| !v.is_empty())
                };
                known
                    .coins
                    .resolve(reference, own(Column::Symbol), own(Column::Name))
            }
        };
        let column = detected.index(Column::Coin);
        let resolution = match resolution {
            Resolution::Unknown => match row.raw(Column::Coin).and_then(split_pair) {
                // An exchange pair: a USD price of its base coin, volume in the quote.
                Some((base, quote)) if is_usd_quote(quote) => {
                    known.coins.resolve(base, Some(base), None)
                }
                Some(_) => {
                    return Err(Fail {
                        column,
                        reason: reason::PAIR_NOT_IN_USD,
                    })
                }
                None => Resolution::Unknown,
            },
            other => other,
        };
        match resolution {
            Resolution::Found(id) => Ok(id),
            // A price history that names its coin by symbol and name brings the coin.
            Resolution::Unknown | Resolution::AmbiguousSymbol
                if may_infer_coins(detected)
                    && row.optional_text(Column::Symbol).is_some()
                    && row.optional_text(Column::Name).is_some() =>
            {
                let symbol = row.optional_text(Column::Symbol).unwrap_or_default();
                let name = row.optional_text(Column::Name).unwrap_or_default();
                Ok(known.coins.infer(symbol, name))
            }
            Resolution::Unknown => Err(Fail {
                column,
                reason: reason::UNKNOWN_COIN,
            }),
            Resolution::AmbiguousSymbol => Err(Fail {
                column,
                reason: reason::AMBIGUOUS_SYMBOL,
            }),
        }
    }
}

/// Typed access to the fields of one record.
struct Fields<'a> {
    d: &'a Detected,
    f: &'a [&'a str],
    ts_order: DateOrder,
    date_added_order: DateOrder,
}

impl<'a> Fields<'a> {
    fn index(&self, column: Column) -> usize {
        self.d.index(column).unwrap_or(usize::MAX)
    }

    fn raw(&self, column: Column) -> Option<&'a str> {
        self.d.index(column).and_then(|i| self.f.get(i).copied())
    }

    fn text(&self, column: Column) -> Result<&'a str, Fail> {
        match self.raw(column) {
            Some(v) if !values::is_missing(v) => Ok(v),
            _ => Err(fail(self.index(column), reason::MISSING)),
        }
    }

    fn optional_text(&self, column: Column) -> Option<&'a str> {
        self.raw(column).filter(|v| !values::is_missing(v))
    }

    fn number(&self, column: Column, required: bool) -> Result<Option<f64>, Fail> {
        let Some(raw) = self.raw(column) else {
            return if required {
                Err(fail(self.index(column), reason::MISSING))
            } else {
                Ok(None)
            };
        };
        match values::parse_number(raw) {
            Ok(None) if required => Err(fail(self.index(column), reason::MISSING)),
            Ok(v) => Ok(v),
            Err(_) => Err(fail(self.index(column), reason::UNPARSABLE)),
        }
    }

    fn price(&self, column: Column) -> Result<f64, Fail> {
        match self.number(column, true)? {
            Some(p) if p > 0.0 => Ok(p),
            _ => Err(fail(self.index(column), reason::PRICE_NOT_POSITIVE)),
        }
    }

    /// A market cap or volume: negative is rejected, exactly 0 is stored as missing.
    fn amount(
        &self,
        column: Column,
        negative: &'static str,
        zeroed: &mut u64,
    ) -> Result<Option<f64>, Fail> {
        match self.number(column, false)? {
            Some(v) if v < 0.0 => Err(fail(self.index(column), negative)),
            Some(0.0) => {
                *zeroed += 1;
                Ok(None)
            }
            v => Ok(v),
        }
    }

    fn integer(&self, column: Column, required: bool) -> Result<Option<i64>, Fail> {
        let Some(raw) = self.raw(column) else {
            return if required {
                Err(fail(self.index(column), reason::MISSING))
            } else {
                Ok(None)
            };
        };
        match values::parse_integer(raw) {
            Ok(None) if required => Err(fail(self.index(column), reason::MISSING)),
            Ok(v) => Ok(v),
            Err(_) => Err(fail(self.index(column), reason::UNPARSABLE)),
        }
    }

    fn required_integer(&self, column: Column) -> Result<i64, Fail> {
        self.integer(column, true)?
            .ok_or_else(|| fail(self.index(column), reason::MISSING))
    }

    fn rank(&self) -> Result<i32, Fail> {
        let rank = self.required_integer(Column::Rank)?;
        if rank <= 0 {
            return Err(fail(self.index(Column::Rank), reason::RANK_NOT_POSITIVE));
        }
        i32::try_from(rank).map_err(|_| fail(self.index(Column::Rank), reason::UNPARSABLE))
    }

    fn timestamp(
        &self,
        column: Column,
        order: DateOrder,
        required: bool,
    ) -> Result<Option<Micros>, Fail> {
        let raw = self.raw(column).unwrap_or_default();
        match values::parse_timestamp(raw, order) {
            Ok(None) if required => Err(fail(self.index(column), reason::MISSING)),
            Ok(v) => Ok(v),
            Err(ValueError::AmbiguousDateOrder) => {
                Err(fail(self.index(column), reason::AMBIGUOUS_DATE_ORDER))
            }
            Err(ValueError::Unparsable) => Err(fail(self.index(column), reason::UNPARSABLE)),
            Err(ValueError::OutOfRange) => {
                Err(fail(self.index(column), reason::TIMESTAMP_OUT_OF_RANGE))
            }
        }
    }

    fn ts(&self, column: Column) -> Result<Micros, Fail> {
        self.timestamp(column, self.ts_order, true)?
            .ok_or_else(|| fail(self.index(column), reason::MISSING))
    }

    fn optional_ts(&self, column: Column) -> Result<Option<Micros>, Fail> {
        self.timestamp(column, self.date_added_order, false)
    }
}

/// The record as a CSV line (fields re-quoted where needed; invalid UTF-8 replaced).
pub(crate) fn raw_line(record: &ByteRecord) -> String {
    let mut out = String::new();
    for (i, field) in record.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = String::from_utf8_lossy(field);
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row_checks::{check_outcome, known, validator, HEADERS};
    use coinflow_shared::dataset::detect;

    const MARKETS: &str = HEADERS[0].0;
    const CANDLES: &str = HEADERS[1].0;
    const RANKINGS: &str = HEADERS[2].0;
    const PEOPLE: &str = HEADERS[3].0;
    const TRADES: &str = HEADERS[4].0;

    /// Validates `row` as line 2 of a file `file` with `header`, in month-first order.
    fn check(header: &str, file: &str, row: &str) -> (Batch, Result<(), Rejection>) {
        check_in(header, file, row, DateOrder::MonthFirst)
    }

    fn check_in(
        header: &str,
        file: &str,
        row: &str,
        order: DateOrder,
    ) -> (Batch, Result<(), Rejection>) {
        let mut validator = validator(header, file, order);
        let record = ByteRecord::from(row.split(',').collect::<Vec<_>>());
        let mut batch = Batch::default();
        let outcome = validator.validate(&mut known(), 2, &record, &mut batch);
        (batch, outcome)
    }

    /// The (column, reason) a row is rejected with.
    fn rejected(header: &str, file: &str, row: &str) -> (Option<String>, String) {
        match check(header, file, row).1 {
            Err(r) => (r.column, r.reason),
            Ok(()) => panic!("{row} should be rejected"),
        }
    }

    fn because(column: &str, reason: &str) -> (Option<String>, String) {
        (Some(column.to_string()), reason.to_string())
    }

    #[test]
    fn a_valid_snapshot_becomes_a_market_row() {
        let (batch, outcome) = check(MARKETS, "markets.csv", "BTC,2021-02-01,30000.5,0,10");
        assert_eq!(outcome, Ok(()));
        let row = &batch.market[0];
        assert_eq!((row.line, row.coin_id.as_str()), (2, "bitcoin"));
        assert_eq!(row.price_usd, 30000.5);
        // A market cap of exactly 0 is stored as missing.
        assert_eq!((row.market_cap_usd, row.volume_24h_usd), (None, Some(10.0)));
    }

    #[test]
    fn missing_required_value_is_rejected() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,2021-02-01,,1,1"),
            because("price", reason::MISSING)
        );
        assert_eq!(
            rejected(MARKETS, "markets.csv", ",2021-02-01,1,1,1"),
            because("coin_id", reason::MISSING)
        );
    }

    #[test]
    fn unparsable_number_is_rejected() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,2021-02-01,abc,1,1"),
            because("price", reason::UNPARSABLE)
        );
    }

    #[test]
    fn unparsable_timestamp_is_rejected() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,yesterday,1,1,1"),
            because("timestamp", reason::UNPARSABLE)
        );
    }

    #[test]
    fn timestamp_before_1970_is_out_of_range() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,1969-12-31,1,1,1"),
            because("timestamp", reason::TIMESTAMP_OUT_OF_RANGE)
        );
    }

    #[test]
    fn slash_dates_follow_the_date_order() {
        let (month_first, _) = check(MARKETS, "markets.csv", "bitcoin,02/01/2021,1,1,1");
        let (day_first, _) = check_in(
            MARKETS,
            "markets.csv",
            "bitcoin,02/01/2021,1,1,1",
            DateOrder::DayFirst,
        );
        assert_eq!(
            month_first.market[0].ts.to_rfc3339(),
            "2021-02-01T00:00:00+00:00"
        );
        assert_eq!(
            day_first.market[0].ts.to_rfc3339(),
            "2021-01-02T00:00:00+00:00"
        );
    }

    #[test]
    fn price_must_be_positive() {
        for price in ["0", "-79.1"] {
            assert_eq!(
                rejected(
                    MARKETS,
                    "markets.csv",
                    &format!("bitcoin,2021-02-01,{price},1,1")
                ),
                because("price", reason::PRICE_NOT_POSITIVE)
            );
        }
    }

    #[test]
    fn negative_market_cap_and_volume_are_rejected() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,2021-02-01,1,-1,1"),
            because("market_cap", reason::NEGATIVE_MARKET_CAP)
        );
        assert_eq!(
            rejected(MARKETS, "markets.csv", "bitcoin,2021-02-01,1,1,-5"),
            because("volume_24h", reason::NEGATIVE_VOLUME)
        );
    }

    #[test]
    fn coins_resolve_by_id_or_symbol() {
        assert_eq!(
            rejected(MARKETS, "markets.csv", "nocoin,2021-02-01,1,1,1"),
            because("coin_id", reason::UNKNOWN_COIN)
        );
        assert_eq!(
            rejected(MARKETS, "markets.csv", "RUNE,2021-02-01,1,1,1"),
            because("coin_id", reason::AMBIGUOUS_SYMBOL)
        );
    }

    #[test]
    fn wrong_field_count_is_rejected_whole() {
        let (_, outcome) = check(MARKETS, "markets.csv", "bitcoin,2021-02-01,1,1");
        let rejection = outcome.expect_err("four fields of five");
        assert_eq!(rejection.column, None);
        assert_eq!(
            rejection.reason,
            format!("{} (expected 5, found 4)", reason::WRONG_FIELD_COUNT)
        );
        assert_eq!(rejection.raw_line, "bitcoin,2021-02-01,1,1");
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let cells: Vec<String> = MARKETS.split(',').map(str::to_string).collect();
        let names: Vec<&str> = cells.iter().map(String::as_str).collect();
        let detected = detect(&names, "markets.csv").expect("markets");
        let mut validator = Validator::new(
            detected,
            cells,
            DateOrder::MonthFirst,
            DateOrder::MonthFirst,
        );
        let record = ByteRecord::from(vec![&b"bitcoin"[..], b"2021-02-01", b"\xff", b"1", b"1"]);
        let outcome = validator.validate(&mut known(), 2, &record, &mut Batch::default());
        let rejection = outcome.expect_err("a price that is not UTF-8");
        assert_eq!(
            (rejection.column.as_deref(), rejection.reason.as_str()),
            (Some("price"), reason::INVALID_UTF8)
        );
    }

    #[test]
    fn high_below_low_is_rejected() {
        assert_eq!(
            rejected(CANDLES, "candles.csv", "bitcoin,2021-02-01,2,1,3,2").1,
            reason::HIGH_BELOW_LOW
        );
    }

    #[test]
    fn rank_must_be_positive() {
        assert_eq!(
            rejected(RANKINGS, "rankings.csv", "bitcoin,2021-02-01,0"),
            because("rank", reason::RANK_NOT_POSITIVE)
        );
    }

    #[test]
    fn trades_need_a_known_person_and_a_side() {
        assert_eq!(
            rejected(TRADES, "trades.csv", "2,2021-02-01,bitcoin,buy,1,1"),
            because("person_id", reason::UNKNOWN_PERSON)
        );
        assert_eq!(
            rejected(TRADES, "trades.csv", "1,2021-02-01,bitcoin,hold,1,1"),
            because("side", reason::INVALID_SIDE)
        );
        assert_eq!(
            rejected(TRADES, "trades.csv", "1,2021-02-01,bitcoin,sell,-1,1"),
            because("quantity", reason::NEGATIVE_QUANTITY)
        );
    }

    #[test]
    fn a_trade_side_is_read_in_any_case_and_defaults_to_buy() {
        let (batch, outcome) = check(TRADES, "trades.csv", "1,2021-02-01,bitcoin,SELL,1,1");
        assert_eq!((outcome, batch.trades[0].side), (Ok(()), Side::Sell));
        let (batch, outcome) = check(TRADES, "trades.csv", "1,2021-02-01,bitcoin,,1,1");
        assert_eq!((outcome, batch.trades[0].side), (Ok(()), Side::Buy));
    }

    #[test]
    fn people_date_added_is_optional() {
        let (batch, outcome) = check(PEOPLE, "people.csv", "2,Alan,Turing,alan@x.org,");
        assert_eq!(outcome, Ok(()));
        assert_eq!(batch.people[0].date_added, None);
        assert_eq!(
            rejected(PEOPLE, "people.csv", "x,Alan,Turing,alan@x.org,").0,
            Some("person_id".to_string())
        );
    }

    #[test]
    fn a_coin_list_row_is_known_to_later_rows() {
        let cells: Vec<String> = ["id", "symbol", "name"].map(str::to_string).to_vec();
        let detected = detect(&["id", "symbol", "name"], "coins.csv").expect("coins");
        let mut validator = Validator::new(
            detected,
            cells,
            DateOrder::MonthFirst,
            DateOrder::MonthFirst,
        );
        let mut known = Known::default();
        let record = ByteRecord::from(vec!["solana", "SOL", "Solana"]);
        let mut batch = Batch::default();
        assert_eq!(
            validator.validate(&mut known, 2, &record, &mut batch),
            Ok(())
        );
        assert_eq!(batch.coins[0].id, "solana");
        assert!(matches!(
            known.coins.resolve("SOL", None, None),
            Resolution::Found(id) if id == "solana"
        ));
    }

    /// Seeded random records of hostile cells, for every dataset's header in both date
    /// orders, through the fuzz target's properties (`crate::row_checks`): validation never
    /// panics, a row is either loaded (only finite numbers, instants the warehouse holds)
    /// or rejected with a reason and its line, and a rejected row adds nothing.
    #[test]
    fn random_hostile_records_load_or_reject_cleanly() {
        use rand::{Rng, SeedableRng};
        const CELLS: &[&str] = &[
            "",
            " ",
            "bitcoin",
            "BTC",
            "thorchain",
            "RUNE",
            "1",
            "0",
            "-0",
            "-1",
            "1.5",
            "1e308",
            "1e309",
            "-1e309",
            "NaN",
            "inf",
            "-inf",
            "1,000",
            "1.000,5",
            "null",
            "N/A",
            "-",
            "2021-02-01",
            "2021-02-01T00:00:00Z",
            "02/01/2021",
            "13/13/2021",
            "1612137600",
            "1612137600000",
            "99999999999999999999",
            "-300000000000",
            "9999-12-31T23:59:59.999999Z",
            "10000-01-01",
            "buy",
            "SELL",
            "x@y.z",
            "\u{feff}1",
            "\u{0}",
            "\"",
            "é",
            "1d",
            "7h",
            "  2  ",
            "0x10",
            "+5",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261206);
        let (mut loaded, mut rejected) = (0, 0);
        for (header, file) in HEADERS {
            let width = header.split(',').count();
            for order in [DateOrder::MonthFirst, DateOrder::DayFirst] {
                let mut validator = validator(header, file, order);
                let mut known = known();
                for line in 2..1_500 {
                    // Mostly the header's width, sometimes one cell short or long.
                    let width = match rng.random_range(0..10) {
                        0 => width.saturating_sub(1),
                        1 => width + 1,
                        _ => width,
                    };
                    let row: Vec<&str> = (0..width)
                        .map(|_| CELLS[rng.random_range(0..CELLS.len())])
                        .collect();
                    let record = ByteRecord::from(row);
                    let mut batch = Batch::default();
                    let outcome = validator.validate(&mut known, line, &record, &mut batch);
                    if check_outcome(file, &record, line, &outcome, &batch) {
                        loaded += 1;
                    } else {
                        rejected += 1;
                    }
                }
            }
        }
        // Both outcomes were exercised, not only rejects.
        assert!(
            loaded > 100 && rejected > 100,
            "loaded {loaded}, rejected {rejected}"
        );
    }
}
