//! One test per reject rule: the row is stored in etl_rejects with its line, first
//! failing column and reason; the file's counts reconcile.

mod common;
use common::*;

fn markets_with(bad_row: &str) -> (Fixture, RunReportLite) {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut body = String::from("coin_id,timestamp,price,market_cap,volume_24h\n");
    for day in 1..=25 {
        body.push_str(&format!(
            "bitcoin,2021-01-{day:02},{}.5,1000,10\n",
            30000 + day
        ));
    }
    body.push_str(bad_row);
    body.push('\n');
    fx.write("markets.csv", body);
    let report = fx.run();
    assert_reconciles(&report);
    let file = report
        .files
        .iter()
        .find(|f| f.path == "markets.csv")
        .expect("markets file");
    let lite = RunReportLite {
        loaded: file.loaded,
        rejected: file.rejected,
        status: file.status.to_string(),
    };
    (fx, lite)
}

struct RunReportLite {
    loaded: i64,
    rejected: i64,
    status: String,
}

fn expect_reject(bad_row: &str, column: Option<&str>, reason: &str) {
    let (fx, r) = markets_with(bad_row);
    assert_eq!(r.status, "loaded");
    assert_eq!((r.loaded, r.rejected), (25, 1), "{bad_row}");
    let rejects = fx.rejects("markets.csv");
    assert_eq!(rejects.len(), 1);
    let (line, col, why) = &rejects[0];
    assert_eq!(*line, 27, "the bad row is on line 27");
    assert_eq!(col.as_deref(), column, "{bad_row}");
    assert!(why.starts_with(reason), "{why} should start with {reason}");
}

#[test]
fn unparsable_price_is_rejected() {
    expect_reject(
        "bitcoin,2021-02-01,abc,1,1",
        Some("price"),
        "unparsable value",
    );
}

#[test]
fn unparsable_timestamp_is_rejected() {
    expect_reject(
        "bitcoin,yesterday,1,1,1",
        Some("timestamp"),
        "unparsable value",
    );
}

#[test]
fn timestamps_out_of_range_are_rejected() {
    // Before 1970 (daily rows are keyed by days since then), and unix microseconds past
    // what a timestamp can hold: rejected, not loaded as some other instant.
    for bad in [
        "bitcoin,1969-12-31,1,1,1",
        "bitcoin,9000000000000000000,1,1,1",
    ] {
        expect_reject(
            bad,
            Some("timestamp"),
            "timestamp out of range (1970-01-01 to 9999-12-31)",
        );
    }
}

#[test]
fn missing_required_price_is_rejected() {
    expect_reject(
        "bitcoin,2021-02-01,,1,1",
        Some("price"),
        "missing required value",
    );
}

#[test]
fn zero_or_negative_price_is_rejected() {
    expect_reject("bitcoin,2021-02-01,0,1,1", Some("price"), "price <= 0");
    expect_reject("bitcoin,2021-02-01,-79.1,1,1", Some("price"), "price <= 0");
}

#[test]
fn negative_market_cap_is_rejected() {
    expect_reject(
        "bitcoin,2021-02-01,1,-180005127.7,1",
        Some("market_cap"),
        "negative market cap",
    );
}

#[test]
fn negative_volume_is_rejected() {
    expect_reject(
        "bitcoin,2021-02-01,1,1,-5",
        Some("volume_24h"),
        "negative volume",
    );
}

#[test]
fn unknown_coin_is_rejected() {
    expect_reject("nocoin,2021-02-01,1,1,1", Some("coin_id"), "unknown coin");
}

#[test]
fn ambiguous_symbol_is_rejected() {
    expect_reject("RUNE,2021-02-01,1,1,1", Some("coin_id"), "ambiguous symbol");
}

#[test]
fn wrong_field_count_is_rejected() {
    expect_reject("bitcoin,2021-02-01,1,1", None, "wrong field count");
}

#[test]
fn invalid_utf8_is_a_rejected_row_not_a_crashed_run() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut body = b"coin_id,timestamp,price\n".to_vec();
    for day in 1..=25 {
        body.extend_from_slice(format!("bitcoin,2021-01-{day:02},1.5\n").as_bytes());
    }
    body.extend_from_slice(b"bit\xffcoin,2021-02-01,1.5\n");
    fx.write("markets.csv", body);
    let report = fx.run();
    assert_reconciles(&report);
    let rejects = fx.rejects("markets.csv");
    assert_eq!(
        rejects,
        vec![(27, Some("coin_id".to_string()), "invalid UTF-8".to_string())]
    );
}

#[test]
fn high_below_low_is_rejected() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut body = String::from("coin,date,open,high,low,close\n");
    for day in 1..=25 {
        body.push_str(&format!("bitcoin,2021-01-{day:02},10,12,9,11\n"));
    }
    body.push_str("bitcoin,2021-02-01,10,8,9,11\n");
    fx.write("candles.csv", body);
    let report = fx.run();
    assert_reconciles(&report);
    assert_eq!(
        fx.rejects("candles.csv"),
        vec![(27, Some("high".into()), "high < low".into())]
    );
    assert_eq!(fx.count("SELECT count(*) FROM candles"), 25);
}

#[test]
fn ambiguous_date_order_is_rejected() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // A month-first column (01/13/21 can only be month-first) …
    let mut body = String::from("coin,date,price\n");
    for day in 13..=31 {
        body.push_str(&format!("bitcoin,01/{day}/21,1.5\n"));
    }
    for month in 1..=9 {
        body.push_str(&format!("ethereum,0{month}/05/21,2.5\n"));
    }
    // … with one day-first-only value: it contradicts the column's order.
    body.push_str("bitcoin,25/02/21,1.5\n");
    fx.write("markets.csv", body);
    let report = fx.run();
    assert_reconciles(&report);
    assert_eq!(
        fx.rejects("markets.csv"),
        vec![(30, Some("date".into()), "ambiguous date order".into())]
    );
    // Values valid in both orders follow the column: 05 is the day.
    assert_eq!(fx.count("SELECT count(*) FROM market WHERE coin_id = 'ethereum' AND extract(day FROM ts AT TIME ZONE 'UTC') = 5"), 9);
}

#[test]
fn day_first_column_is_read_day_first() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "markets.csv",
        "coin,date,price\nbitcoin,25/08/15 23:59,1.5\nbitcoin,08/09/15 23:59,2.5\n",
    );
    let report = fx.run();
    assert_reconciles(&report);
    assert_eq!(
        fx.text("SELECT max(ts) FROM market").as_deref(),
        Some("2015-09-08 23:59:00+00")
    );
}

#[test]
fn trades_negative_quantity_unknown_person_and_invalid_side_are_rejected() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "people.csv",
        "person_id,first_name,last_name,email\n1,Ada,Lovelace,ada@example.com\n",
    );
    let mut body = String::from("person_id,timestamp,coin_id,side,quantity,price\n");
    for k in 0..30 {
        body.push_str(&format!("1,2021-01-01T00:00:{k:02}Z,bitcoin,buy,1,100\n"));
    }
    body.push_str("1,2021-01-02,bitcoin,buy,-3,100\n");
    body.push_str("2,2021-01-02,bitcoin,buy,3,100\n");
    body.push_str("1,2021-01-02,bitcoin,hodl,3,100\n");
    fx.write("trades.csv", body);
    let report = fx.run_with(|o| o.max_reject_ratio = 0.2);
    assert_reconciles(&report);
    let rejects = fx.rejects("trades.csv");
    assert_eq!(
        rejects,
        vec![
            (32, Some("quantity".into()), "negative quantity".into()),
            (33, Some("person_id".into()), "unknown person".into()),
            (34, Some("side".into()), "invalid side".into()),
        ]
    );
}

#[test]
fn non_positive_rank_is_rejected() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut body = String::from("coin_id,timestamp,rank\n");
    for day in 1..=25 {
        body.push_str(&format!("bitcoin,2021-01-{day:02},1\n"));
    }
    body.push_str("ethereum,2021-01-01,0\n");
    fx.write("rankings.csv", body);
    fx.run();
    assert_eq!(
        fx.rejects("rankings.csv"),
        vec![(27, Some("rank".into()), "rank <= 0".into())]
    );
}

#[test]
fn a_file_over_the_reject_budget_is_set_aside_and_retried() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "markets.csv",
        "coin_id,timestamp,price\nbitcoin,2021-01-01,1\nbitcoin,2021-01-02,-1\nbitcoin,2021-01-03,3\n",
    );
    let report = fx.run();
    assert_eq!(report.status, "partial");
    let file = report
        .files
        .iter()
        .find(|f| f.path == "markets.csv")
        .expect("file");
    assert_eq!(file.status, "set_aside");
    assert!(file
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("reject budget"));
    assert_eq!(
        fx.count("SELECT count(*) FROM market"),
        0,
        "none of its rows load"
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_files WHERE status = 'set_aside'"),
        1
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_runs WHERE status = 'partial'"),
        1
    );
    // Retried on the next run; with a larger budget it loads.
    let again = fx.run_with(|o| o.max_reject_ratio = 0.5);
    assert_eq!(again.status, "ok");
    assert_eq!(fx.count("SELECT count(*) FROM market"), 2);
}
