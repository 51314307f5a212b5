//! Input that tries to hurt: records of any size, control characters meant to forge log
//! lines, huge raw values, a database of the wrong encoding, a server that never answers.

mod common;
use coinflow_etl::extract::MAX_RECORD_BYTES;
use coinflow_etl::sanitize::MAX_RAW_BYTES;
use coinflow_etl::{EtlError, RunOptions};
use coinflow_shared::testdb::TestDb;
use common::*;

const MARKETS_HEADER: &str = "coin_id,timestamp,price,market_cap,volume_24h\n";

/// `rows` good bitcoin snapshots, one a minute from 2021-01-01.
fn good_rows(rows: usize, from_minute: usize) -> String {
    (from_minute..from_minute + rows)
        .map(|m| {
            format!(
                "bitcoin,2021-01-01T{:02}:{:02}:00Z,{}.25,1000,10\n",
                (m / 60) % 24,
                m % 60,
                30_000 + m
            )
        })
        .collect()
}

#[test]
fn an_unmatched_quote_rejects_one_record_and_reading_resumes_at_the_next_line() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Line 4 opens a quote that nothing closes: without a cap the rest of the file,
    // well over MAX_RECORD_BYTES, would be one record held in memory.
    let after = 1_400;
    let tail = good_rows(after, 10);
    assert!(tail.len() as u64 * 20 > MAX_RECORD_BYTES);
    let tail = tail.repeat(20);
    let mut body = format!("{MARKETS_HEADER}{}", good_rows(2, 0));
    body.push_str("bitcoin,\"2021-01-01T00:05:00Z,1.5,1,1\n");
    body.push_str(&tail);
    fx.write("markets.csv", &body);
    let report = fx.run();
    assert_reconciles(&report);
    let f = file(&report, "markets.csv");
    let lines = body.lines().count() as i64 - 1;
    assert_eq!((f.read, f.rejected), (lines, 1), "{f:?}");
    // The 20 copies of the tail repeat their keys: they load once, then are duplicates.
    assert_eq!(f.loaded, 2 + after as i64);
    let rejects = fx.rejects("markets.csv");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 4);
    assert!(
        rejects[0].2.starts_with("record too long"),
        "{:?}",
        rejects[0]
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 2 + after as i64);
}

#[test]
fn a_single_line_over_the_cap_is_rejected_and_the_next_line_loads() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let huge = "9".repeat(MAX_RECORD_BYTES as usize + 10);
    let body = format!(
        "{MARKETS_HEADER}{}bitcoin,2021-01-02,{huge},1,1\n{}",
        good_rows(30, 0),
        good_rows(10, 100)
    );
    fx.write("markets.csv", body);
    let report = fx.run();
    assert_reconciles(&report);
    let f = file(&report, "markets.csv");
    assert_eq!((f.read, f.loaded, f.rejected), (41, 40, 1));
    let rejects = fx.rejects("markets.csv");
    assert_eq!(
        (rejects[0].0, rejects[0].2.starts_with("record too long")),
        (32, true)
    );
}

#[test]
fn raw_values_of_rejects_are_cut_with_a_marker() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let long = "x".repeat(3 * MAX_RAW_BYTES);
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}{}bitcoin,2021-01-02,{long},1,1\n",
            good_rows(30, 0)
        ),
    );
    fx.run();
    let value = fx
        .text("SELECT raw_value FROM etl_rejects WHERE file = 'markets.csv'")
        .expect("a raw value");
    let marker = format!("…[truncated: {} bytes]", long.len());
    assert!(value.ends_with(&marker), "{}", &value[value.len() - 40..]);
    assert_eq!(value.len(), MAX_RAW_BYTES + marker.len());
    let line = fx
        .text("SELECT raw_line FROM etl_rejects WHERE file = 'markets.csv'")
        .expect("a raw line");
    assert!(line.starts_with("bitcoin,2021-01-02,xxx") && line.contains("…[truncated: "));
    assert!(line.len() < MAX_RAW_BYTES + 64);
}

#[test]
fn a_quoted_newline_in_a_header_cannot_forge_a_log_line_or_ledger_line() {
    let fx = Fixture::new();
    fx.write(
        "odd.csv",
        "\"foo\n2026-12-06 ERROR coinflow: forged\",bar\u{1b}[2J\n1,2\n",
    );
    let report = fx.run();
    let f = file(&report, "odd.csv");
    assert_eq!(f.status, "unrecognized");
    let reason = f.reason.clone().unwrap_or_default();
    assert!(!reason.contains(['\n', '\u{1b}']), "{reason:?}");
    assert!(reason.contains("foo\\n2026-12-06 ERROR"), "{reason:?}");
    let stored = fx
        .text("SELECT reason FROM etl_files WHERE path = 'odd.csv'")
        .unwrap_or_default();
    assert_eq!(stored, reason);
}

#[test]
fn a_database_that_is_not_utf8_is_refused_with_how_to_make_one() {
    let db = TestDb::with_encoding("SQL_ASCII");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RunOptions::new(db.url(), dir.path());
    opts.db_wait = std::time::Duration::from_secs(5);
    let e = coinflow_etl::run(&opts).expect_err("SQL_ASCII is refused");
    assert!(matches!(e, EtlError::Encoding(_)), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    let message = e.to_string();
    for part in [
        "SQL_ASCII",
        "UTF8",
        "CREATE DATABASE",
        "ENCODING 'UTF8' TEMPLATE template0",
    ] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
}

#[test]
fn a_server_that_accepts_but_never_answers_ends_the_wait() {
    // A listener that takes connections and says nothing: without a connect_timeout a
    // connection attempt waits for its answer forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut sockets = Vec::new();
        for stream in listener.incoming().take(4).flatten() {
            sockets.push(stream);
        }
        sockets.len()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RunOptions::new(format!("postgres://nobody@127.0.0.1:{port}/x"), dir.path());
    opts.db_wait = std::time::Duration::from_secs(2);
    let e = coinflow_etl::run(&opts).expect_err("nobody answers");
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    drop(held);
}
