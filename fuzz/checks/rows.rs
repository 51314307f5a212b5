//! Row validation's properties, for any input bytes: what the fuzz target
//! `row_validation` checks, what `etl/tests/fuzz_regressions.rs` replays the kept inputs
//! through, and what `validate`'s seeded random-records unit test asserts. Mounted at the
//! crate root beside `validate`, `rows` and `values` in both crates that run it: the ETL
//! library (as the hidden `coinflow_etl::row_checks`) and the fuzz crate.

use crate::rows::{Batch, Rejection};
use crate::validate::{Known, Validator};
use crate::values::DateOrder;
use chrono::{DateTime, Utc};
use coinflow_shared::dataset::detect;
use coinflow_shared::instant::TIMESTAMP_RANGE;
use csv::{ByteRecord, ReaderBuilder};

/// A header of each input dataset, with a file name it is recognised in.
pub(crate) const HEADERS: [(&str, &str); 8] = [
    (
        "coin_id,timestamp,price,market_cap,volume_24h",
        "markets.csv",
    ),
    ("coin,date,open,high,low,close", "btc-usd.csv"),
    ("coin_id,timestamp,rank", "rankings.csv"),
    (
        "person_id,first_name,last_name,email,date_added",
        "people.csv",
    ),
    (
        "person_id,timestamp,coin_id,side,quantity,price",
        "trades.csv",
    ),
    ("id,symbol,name,cmc_id", "coins.csv"),
    (
        "id,name,symbol,cmc_rank,last_updated,price,market_cap",
        "listings.csv",
    ),
    ("coin_id,exchange,base,target", "tickers.csv"),
];

/// What rows resolve against: three coins (two share the symbol `RUNE`) and person 1.
pub(crate) fn known() -> Known {
    let mut known = Known::default();
    known.coins.insert_known("bitcoin", "BTC", "Bitcoin");
    known.coins.insert_known("thorchain", "RUNE", "THORChain");
    known.coins.insert_known("rune-token", "RUNE", "Rune Token");
    known.people.insert(1);
    known
}

/// A validator for `header` as recognised in a file named `file`, both date columns read
/// in `order`.
pub(crate) fn validator(header: &str, file: &str, order: DateOrder) -> Validator {
    let cells: Vec<String> = header.split(',').map(str::to_string).collect();
    let names: Vec<&str> = cells.iter().map(String::as_str).collect();
    let detected = detect(&names, file)
        .unwrap_or_else(|| panic!("{file}: {header:?} is not a recognised header"));
    Validator::new(detected, cells, order, order)
}

/// The fuzz target: the first byte picks one of [`HEADERS`] and the date order, the rest
/// is read as that file's CSV records (no header line, any number of fields) and each
/// record is validated and checked ([`check_outcome`]). Reading stops at the first
/// record the CSV reader cannot frame, as the ETL's does.
pub fn row_validation(data: &[u8]) {
    let Some((&first, records)) = data.split_first() else {
        return;
    };
    let (header, file) = HEADERS[usize::from(first) % HEADERS.len()];
    let order =
        [DateOrder::MonthFirst, DateOrder::DayFirst][usize::from(first) / HEADERS.len() % 2];
    let mut validator = validator(header, file, order);
    let mut known = known();
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(records);
    let mut record = ByteRecord::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        // Line 1 is the header.
        let line = 1 + record.position().map_or(0, |p| p.line()) as i64;
        let mut batch = Batch::default();
        let outcome = validator.validate(&mut known, line, &record, &mut batch);
        check_outcome(file, &record, line, &outcome, &batch);
    }
    let _ = validator.numeric_extra_columns();
    let _ = known.fingerprint();
}

/// The properties of one validated record (`batch` started empty): a loaded record added
/// rows, and those hold only finite numbers and instants the warehouse stores (1970 to
/// 9999); a rejected one added nothing and names its line and a reason. Panics naming
/// `file` and the record otherwise; returns whether it loaded.
pub(crate) fn check_outcome(
    file: &str,
    record: &ByteRecord,
    line: i64,
    outcome: &Result<(), Rejection>,
    batch: &Batch,
) -> bool {
    match outcome {
        Ok(()) => {
            assert!(!batch.is_empty(), "{file}: {record:?} loaded nothing");
            let (numbers, instants) = values_of(batch);
            for number in numbers {
                assert!(number.is_finite(), "{file}: {record:?} loaded {number}");
            }
            for instant in instants {
                assert!(
                    TIMESTAMP_RANGE.contains(&instant.timestamp_micros()),
                    "{file}: {record:?} loaded {instant}"
                );
            }
            true
        }
        Err(rejection) => {
            assert_eq!(
                batch.len(),
                0,
                "{file}: {record:?} was rejected but added rows"
            );
            assert_eq!(rejection.line, line, "{file}: {record:?}: {rejection:?}");
            assert!(
                !rejection.reason.is_empty(),
                "{file}: {record:?}: {rejection:?}"
            );
            false
        }
    }
}

/// Every number and instant the rows of a batch hold (missing ones left out).
fn values_of(batch: &Batch) -> (Vec<f64>, Vec<DateTime<Utc>>) {
    let mut numbers: Vec<Option<f64>> = Vec::new();
    let mut instants: Vec<Option<DateTime<Utc>>> = Vec::new();
    for m in &batch.market {
        numbers.extend([Some(m.price_usd), m.market_cap_usd, m.volume_24h_usd]);
        instants.push(Some(m.ts));
    }
    for r in &batch.rankings {
        numbers.push(r.volume_24h_usd);
        instants.push(Some(r.ts));
    }
    for c in &batch.candles {
        numbers.extend([c.open, c.high, c.low, c.close].map(Some));
        numbers.extend([c.volume_usd, c.market_cap_usd]);
        instants.push(Some(c.ts));
    }
    for p in &batch.people {
        instants.push(p.date_added);
    }
    for t in &batch.trades {
        numbers.extend([t.quantity, t.price]);
        instants.push(Some(t.ts));
    }
    (
        numbers.into_iter().flatten().collect(),
        instants.into_iter().flatten().collect(),
    )
}
