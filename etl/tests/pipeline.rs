//! End-to-end behaviour of `coinflow_etl::run` against a real database: formats,
//! classification, idempotency, incremental loads, derived tables, locking.

mod common;
use coinflow_etl::EtlError;
use coinflow_shared::ledger::FileStatus;
use common::*;
use diesel::prelude::*;

#[test]
fn bom_crlf_and_quoted_newlines_are_read() {
    let fx = Fixture::new();
    fx.write("coins.csv", "\u{feff}id,symbol,name\r\nbitcoin,BTC,\"Bit\ncoin\"\r\nethereum,ETH,\"Ether, \"\"the\"\" coin\"\r\n");
    let report = fx.run();
    let f = file(&report, "coins.csv");
    assert_eq!((f.read, f.loaded, f.rejected), (2, 2, 0));
    assert_eq!(
        fx.text("SELECT name FROM coins WHERE id = 'bitcoin'")
            .as_deref(),
        Some("Bit\ncoin")
    );
    assert_eq!(
        fx.text("SELECT name FROM coins WHERE id = 'ethereum'")
            .as_deref(),
        Some("Ether, \"the\" coin")
    );
}

#[test]
fn empty_header_only_and_unrecognized_files_are_reported_not_fatal() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write("empty.csv", "");
    fx.write("header_only.csv", "coin_id,timestamp,price\n");
    fx.write("weird.csv", "foo,bar\n1,2\n");
    fx.write(
        "nested/deeper/markets.csv",
        "coin_id,timestamp,price\nbitcoin,2021-01-01,29000\n",
    );
    let report = fx.run();
    assert_eq!(report.status, "ok");
    assert_eq!(file(&report, "empty.csv").status, "unrecognized");
    assert_eq!(file(&report, "weird.csv").status, "unrecognized");
    assert!(file(&report, "weird.csv")
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("foo,bar"));
    let header_only = file(&report, "header_only.csv");
    assert_eq!(
        (header_only.status.as_str(), header_only.read),
        ("loaded", 0)
    );
    assert_eq!(file(&report, "nested/deeper/markets.csv").loaded, 1);
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_files WHERE status = 'unrecognized'"),
        2
    );
}

#[test]
fn duplicates_and_updates_within_a_file_and_across_runs() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "a.csv",
        "coin_id,timestamp,price\nbitcoin,2021-01-01,1\nbitcoin,2021-01-01,1\nbitcoin,2021-01-01,2\nbitcoin,2021-01-02,5\n",
    );
    // Line 4 repeats line 2's key with another price: rejected as a conflicting
    // duplicate, the first row kept (one reject of four rows: a generous budget).
    let first = fx.run_with(|o| o.max_reject_ratio = 0.5);
    let a = file(&first, "a.csv");
    assert_eq!(
        (a.read, a.loaded, a.duplicate, a.updated, a.rejected),
        (4, 2, 1, 0, 1)
    );
    assert_eq!(
        fx.rejects("a.csv"),
        vec![(
            4,
            None,
            "conflicting duplicate key (first at line 2)".to_string()
        )]
    );
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE ts = '2021-01-01'")
            .as_deref(),
        Some("1")
    );
    // A later file: one identical row, one new value for a stored key, one new key.
    fx.write("b.csv", "coin_id,timestamp,price\nbitcoin,2021-01-02,5\nbitcoin,2021-01-01,3\nbitcoin,2021-01-03,7\n");
    let second = fx.run();
    let b = file(&second, "b.csv");
    assert_eq!((b.read, b.loaded, b.duplicate, b.updated), (3, 1, 1, 1));
    assert_eq!(file(&second, "a.csv").status, "skipped");
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE ts = '2021-01-01'")
            .as_deref(),
        Some("3")
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 3);
}

#[test]
fn a_key_repeated_late_in_a_large_file_is_classified_without_doubling_rows() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // More rows than one COPY batch: the first batches are copied straight into an empty
    // market without its primary key, until the repeated key breaks the coin's order; the
    // file is rolled back, the key built, the file copied again until the repeated key
    // fails the COPY, rolled back again and classified.
    let rows = 250_000;
    let mut csv = String::from("coin_id,timestamp,price\n");
    for hour in 0..rows {
        csv.push_str(&format!(
            "bitcoin,{},{}\n",
            946_684_800 + hour * 3600,
            1 + hour
        ));
    }
    csv.push_str("bitcoin,946684800,99\n");
    fx.write("big.csv", csv);
    let schema = fx.text(&schema_of("market"));
    let report = fx.run();
    let big = file(&report, "big.csv");
    assert_eq!(
        (
            big.read,
            big.loaded,
            big.duplicate,
            big.updated,
            big.rejected
        ),
        (rows + 1, rows, 0, 0, 1)
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), rows);
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE ts = to_timestamp(946684800)")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fx.text(&schema_of("market")),
        schema,
        "the bulk load re-created market's foreign key and indexes as they were"
    );
    assert!(schema
        .as_deref()
        .is_some_and(|s| s.contains("market_ts_idx") && s.contains("FOREIGN KEY")));
}

#[test]
fn a_first_load_builds_the_primary_key_once_and_early_when_order_breaks() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Newest first for bitcoin, coins interleaved: each coin's timestamps are in order,
    // so the keys are distinct without the primary key.
    let mut csv = String::from("coin_id,timestamp,price\n");
    for hour in (0..2000).rev() {
        for coin in ["bitcoin", "ethereum"] {
            csv.push_str(&format!(
                "{coin},{},{}\n",
                946_684_800 + hour * 3600,
                1 + hour
            ));
        }
    }
    fx.write("a_history.csv", csv);
    // A later file fills a gap inside bitcoin's span: not a repeated key, but it cannot
    // be told from one without the key, which is built before this file loads again.
    let mut gap = String::from("coin_id,timestamp,price\n");
    gap.push_str(&format!("thorchain,{},7\n", 946_684_800));
    gap.push_str(&format!("bitcoin,{},5\n", 946_684_800 + 1800));
    fx.write("b_gap.csv", gap);
    let market = fx.text(&schema_of("market"));
    let daily = fx.text(&schema_of("daily"));
    let key_before = fx.count(MARKET_KEY_OID);
    let report = fx.run();
    assert_eq!(report.status, "ok");
    let key_built = fx.count(MARKET_KEY_OID);
    assert_ne!(
        key_built, key_before,
        "the first load dropped and built the key"
    );
    let history = file(&report, "a_history.csv");
    assert_eq!((history.read, history.loaded), (4000, 4000));
    let gap = file(&report, "b_gap.csv");
    assert_eq!(
        (gap.read, gap.loaded, gap.duplicate, gap.updated),
        (2, 2, 0, 0)
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 4002);
    assert_eq!(fx.count(DAILY_MISMATCHES), 0);
    assert_eq!(
        fx.text(&schema_of("market")),
        market,
        "market's key, foreign key and indexes"
    );
    assert_eq!(
        fx.text(&schema_of("daily")),
        daily,
        "daily's key and foreign key"
    );
    assert!(market
        .as_deref()
        .is_some_and(|s| s.contains("market_pkey PRIMARY KEY")));
    // A second load of new rows keeps the key in place (market is not empty any more).
    fx.write(
        "c_more.csv",
        "coin_id,timestamp,price\nbitcoin,2001-01-01T00:00:00Z,3\nbitcoin,946684800,2\n",
    );
    let again = fx.run();
    let more = file(&again, "c_more.csv");
    assert_eq!(
        (more.read, more.loaded, more.duplicate, more.updated),
        (2, 1, 0, 1)
    );
    assert_eq!(fx.text(&schema_of("market")), market);
    assert_eq!(
        fx.count(MARKET_KEY_OID),
        key_built,
        "the key stayed in place"
    );
    assert_eq!(fx.count(DAILY_MISMATCHES), 0);
}

/// The index behind market's primary key: a new one each time the key is built.
const MARKET_KEY_OID: &str = "SELECT 'market_pkey'::regclass::oid";

#[test]
fn repeated_keys_in_a_later_file_of_a_first_load_are_classified() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "a_history.csv",
        "coin_id,timestamp,price\nethereum,946684800,1\nethereum,946688400,2\nethereum,946692000,3\n",
    );
    // Ethereum's first two hours again, one with a new price, one unchanged, and a new
    // coin: the file breaks ethereum's order, so the key is built, the file's COPY then
    // fails on the repeated keys, and every row is classified.
    fx.write(
        "b_repeat.csv",
        "coin_id,timestamp,price\nthorchain,946684800,7\nethereum,946684800,10\nethereum,946688400,2\n",
    );
    let key_before = fx.count(MARKET_KEY_OID);
    let schema = fx.text(&schema_of("market"));
    let report = fx.run();
    assert_eq!(report.status, "ok");
    let repeat = file(&report, "b_repeat.csv");
    assert_eq!(
        (repeat.read, repeat.loaded, repeat.duplicate, repeat.updated),
        (3, 1, 1, 1)
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 4);
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'ethereum' AND ts = to_timestamp(946684800)")
            .as_deref(),
        Some("10")
    );
    assert_eq!(fx.count(DAILY_MISMATCHES), 0);
    assert_ne!(fx.count(MARKET_KEY_OID), key_before);
    assert_eq!(fx.text(&schema_of("market")), schema);
}

/// daily rows that disagree with an aggregate of market computed in SQL.
const DAILY_MISMATCHES: &str = "SELECT count(*) FROM daily d FULL JOIN (
    SELECT coin_id, (ts AT TIME ZONE 'UTC')::date AS day,
           (array_agg(price_usd ORDER BY ts))[1] AS open, max(price_usd) AS high,
           min(price_usd) AS low, (array_agg(price_usd ORDER BY ts DESC))[1] AS close,
           avg(price_usd) AS avg_price, max(market_cap_usd) AS cap,
           (array_agg(volume_24h_usd ORDER BY ts DESC))[1] AS volume, count(*) AS samples
    FROM market GROUP BY 1, 2) m USING (coin_id, day)
  WHERE d.coin_id IS NULL OR m.coin_id IS NULL OR d.source <> 'market'
     OR d.open <> m.open OR d.high <> m.high OR d.low <> m.low OR d.close <> m.close
     OR abs(d.avg_price - m.avg_price) > 1e-9 * abs(m.avg_price)
     OR d.max_market_cap_usd IS DISTINCT FROM m.cap
     OR d.last_volume_usd IS DISTINCT FROM m.volume OR d.samples <> m.samples";

#[test]
fn daily_folded_while_loading_matches_daily_read_back() {
    let fx = Fixture::new();
    generate_hourly(&fx.path().join("gen"), 30, 200, 5, 5);
    for other in ["rankings.csv", "tickers.csv", "people.csv", "trades.csv"] {
        std::fs::remove_file(fx.path().join("gen").join(other)).expect("remove");
    }
    // More than one COPY batch of fresh coins: their daily rows are folded while loading.
    let first = fx.run();
    assert_eq!(first.status, "ok");
    assert_eq!(fx.count("SELECT count(*) FROM daily"), 30 * 200);
    assert_eq!(fx.count(DAILY_MISMATCHES), 0);
    // A later file for one stored coin: that coin is read back and recomputed.
    fx.write(
        "late.csv",
        "coin_id,timestamp,price,market_cap\nbitcoin,2000-01-01T12:00:00Z,1,5\nbitcoin,2000-01-01T18:00:00Z,3,\n",
    );
    let second = fx.run();
    assert_eq!(file(&second, "late.csv").loaded, 2);
    assert_eq!(fx.count(DAILY_MISMATCHES), 0);
    assert_eq!(
        fx.text("SELECT samples || ' ' || open || ' ' || close FROM daily WHERE coin_id = 'bitcoin' AND day = '2000-01-01'")
            .as_deref(),
        Some("2 1 3")
    );
}

#[test]
fn second_run_on_same_files_changes_nothing_and_new_file_loads_alone() {
    let fx = Fixture::new();
    generate_hourly(fx.path(), 6, 3, 20, 11);
    let first = fx.run();
    assert_eq!(first.status, "ok");
    assert_reconciles(&first);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 6 * 72);
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE rank IS NULL"),
        0,
        "every snapshot finds its ranking"
    );
    assert_eq!(fx.count("SELECT count(*) FROM daily"), 6 * 3);
    assert_eq!(fx.count("SELECT count(*) FROM traders"), 20);
    assert!(fx.count("SELECT count(*) FROM coin_exchanges") == 6);
    let versions = fx.text(
        "SELECT string_agg(dataset || '=' || version, ',' ORDER BY dataset) FROM data_versions",
    );
    let fingerprint = |fx: &Fixture| {
        fx.text(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM (
               SELECT m::text AS t FROM market m UNION ALL SELECT d::text FROM daily d
               UNION ALL SELECT p::text FROM positions p UNION ALL SELECT tr::text FROM traders tr
               UNION ALL SELECT c::text FROM coin_exchanges c) x",
        )
    };
    let before = fingerprint(&fx);
    let second = fx.run();
    assert!(
        second.files.iter().all(|f| f.status == "skipped"),
        "{:?}",
        second.files
    );
    assert_eq!(second.totals.read, 0);
    assert_eq!(fingerprint(&fx), before);
    assert_eq!(
        fx.text(
            "SELECT string_agg(dataset || '=' || version, ',' ORDER BY dataset) FROM data_versions"
        ),
        versions,
        "a no-op run bumps no data version"
    );
    // A new file: only it is read, and derived tables follow.
    fx.write(
        "late/markets-extra.csv",
        "coin_id,timestamp,price\nbitcoin,2024-02-01T00:00:00Z,50000\n",
    );
    let third = fx.run();
    assert_eq!(third.totals.read, 1);
    assert_eq!(file(&third, "late/markets-extra.csv").loaded, 1);
    assert_eq!(
        fx.count("SELECT count(*) FROM daily WHERE coin_id = 'bitcoin' AND day = '2024-02-01'"),
        1
    );
    assert!(third.changed_datasets.contains(&"market".to_string()));
    assert!(third.changed_datasets.contains(&"daily".to_string()));
}

#[test]
fn as_of_join_edges_through_the_warehouse() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "markets.csv",
        "coin_id,timestamp,price\n\
         bitcoin,2021-01-01T00:00:00Z,1\n\
         bitcoin,2021-01-01T01:00:00Z,1\n\
         bitcoin,2021-01-01T02:00:00Z,1\n\
         bitcoin,2021-01-01T03:00:00Z,1\n",
    );
    fx.write(
        "rankings.csv",
        "coin_id,timestamp,rank\n\
         bitcoin,2021-01-01T00:00:00Z,1\n\
         bitcoin,2021-01-01T00:59:30Z,2\n\
         bitcoin,2021-01-01T01:58:00Z,3\n\
         bitcoin,2021-01-01T03:00:01Z,4\n",
    );
    fx.run();
    let rank = |hour: u32| {
        fx.text(&format!(
            "SELECT rank FROM market WHERE ts = '2021-01-01T0{hour}:00:00Z'"
        ))
    };
    assert_eq!(rank(0).as_deref(), Some("1"), "exact match");
    assert_eq!(
        rank(1).as_deref(),
        Some("2"),
        "30 s earlier: inside the tolerance"
    );
    assert_eq!(rank(2), None, "2 minutes earlier: outside the tolerance");
    assert_eq!(rank(3), None, "a ranking after the snapshot is not used");
    assert_eq!(
        fx.text("SELECT rank_source FROM market WHERE ts = '2021-01-01T00:00:00Z'")
            .as_deref(),
        Some("rankings")
    );
    // A wider tolerance on a later ranking file re-ranks stored snapshots.
    fx.write(
        "rankings2.csv",
        "coin_id,timestamp,rank\nbitcoin,2021-01-01T01:59:59Z,9\n",
    );
    fx.run();
    assert_eq!(rank(2).as_deref(), Some("9"));
    // A later run's snapshot takes a ranking an earlier run stored, within the tolerance;
    // a ranking of an earlier run's snapshot that arrives later ranks it; and a run that
    // only appends snapshots leaves the ranks of older ones as they were.
    fx.write(
        "markets2.csv",
        "coin_id,timestamp,price
bitcoin,2021-01-01T03:00:30Z,1
bitcoin,2021-01-01T05:00:00Z,1
",
    );
    fx.run();
    assert_eq!(
        fx.text("SELECT rank FROM market WHERE ts = '2021-01-01T03:00:30Z'")
            .as_deref(),
        Some("4"),
        "a snapshot of this run, ranked by a stored ranking"
    );
    fx.write(
        "rankings3.csv",
        "coin_id,timestamp,rank
bitcoin,2021-01-01T04:59:50Z,7
",
    );
    fx.run();
    assert_eq!(
        fx.text("SELECT rank FROM market WHERE ts = '2021-01-01T05:00:00Z'")
            .as_deref(),
        Some("7"),
        "a stored snapshot, ranked by a ranking of this run"
    );
    fx.write(
        "markets3.csv",
        "coin_id,timestamp,price
bitcoin,2021-01-01T06:00:00Z,1
",
    );
    fx.run();
    assert_eq!(
        fx.text("SELECT string_agg(coalesce(rank::text, '-'), ',' ORDER BY ts) FROM market")
            .as_deref(),
        Some("1,2,9,-,4,7,-")
    );
}

#[test]
fn traders_keep_the_latest_trade_and_people_without_trades() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write("markets.csv", "coin_id,timestamp,price\nbitcoin,2021-01-01,100\nbitcoin,2021-01-05,200\nethereum,2021-01-01,10\n");
    fx.write(
        "people.csv",
        "person_id,first_name,last_name,email,date_added\n1,Ada,Lovelace,ada@x.org,2020-01-01\n2,Alan,Turing,alan@x.org,\n",
    );
    fx.write(
        "trades.csv",
        "person_id,timestamp,coin_id,side,quantity,price\n\
         1,2021-01-03,ethereum,buy,5,10\n\
         1,2021-01-01,bitcoin,buy,2,100\n\
         1,2021-01-03,bitcoin,sell,1,150\n",
    );
    fx.run();
    assert_eq!(fx.count("SELECT count(*) FROM traders"), 2);
    // Two trades share the latest timestamp: the later input line wins.
    assert_eq!(
        fx.text("SELECT last_trade_coin_id FROM traders WHERE person_id = 1")
            .as_deref(),
        Some("bitcoin")
    );
    assert_eq!(
        fx.text("SELECT last_trade_side FROM traders WHERE person_id = 1")
            .as_deref(),
        Some("sell")
    );
    assert_eq!(
        fx.text("SELECT last_trade_coin_id FROM traders WHERE person_id = 2"),
        None
    );
    assert_eq!(
        fx.count("SELECT trade_count FROM traders WHERE person_id = 2"),
        0
    );
    assert_eq!(
        fx.text("SELECT net_quantity FROM positions WHERE person_id = 1 AND coin_id = 'bitcoin'")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fx.text(
            "SELECT market_value_usd FROM positions WHERE person_id = 1 AND coin_id = 'bitcoin'"
        )
        .as_deref(),
        Some("200"),
        "valued at the latest price"
    );
}

#[test]
fn listings_fan_out_and_slugs_become_aliases() {
    let fx = Fixture::new();
    fx.write(
        "coins.csv",
        "id,symbol,name\nbinancecoin,BNB,Binance Coin\n",
    );
    fx.write(
        "listing.csv",
        ",id,name,symbol,rank,price_usd,market_cap_usd,24h_volume_usd,last_updated\n\
         0,bitcoin,Bitcoin,BTC,1,13000.5,217000000000.0,9000000000.0,1512549589\n\
         1,binance-coin,Binance Coin,BNB,2,300,,0,1512549589\n\
         2,crystal-clear,Crystal Clear ,CCT,3,\"1,234.5\",5,6,1512549589\n",
    );
    let report = fx.run();
    assert_reconciles(&report);
    let f = file(&report, "listing.csv");
    assert_eq!((f.read, f.loaded, f.zeroed), (3, 3, 1));
    assert_eq!(
        fx.count("SELECT count(*) FROM coins"),
        3,
        "no twin for binance-coin"
    );
    assert_eq!(
        fx.text("SELECT coin_id FROM coin_aliases WHERE external_id = 'binance-coin'")
            .as_deref(),
        Some("binancecoin")
    );
    assert_eq!(
        fx.text("SELECT name FROM coins WHERE id = 'crystal-clear'")
            .as_deref(),
        Some("Crystal Clear")
    );
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'crystal-clear'")
            .as_deref(),
        Some("1234.5")
    );
    assert_eq!(fx.count("SELECT count(*) FROM rankings"), 3);
    assert_eq!(
        fx.text("SELECT rank FROM market WHERE coin_id = 'binancecoin'")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        fx.text("SELECT volume_24h_usd FROM market WHERE coin_id = 'binancecoin'"),
        None,
        "0 is stored as missing"
    );
}

#[test]
fn another_run_holding_the_lock_means_exit_4_with_no_wait_lock() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut holder = fx.db.conn();
    assert!(coinflow_shared::db::try_etl_lock(&mut holder).expect("lock"));
    let err = coinflow_etl::run(&{
        let mut o = fx.options();
        o.no_wait_lock = true;
        o
    })
    .expect_err("locked");
    assert!(matches!(err, EtlError::Locked));
    assert_eq!(err.exit_code(), 4);
    diesel::sql_query("SELECT pg_advisory_unlock_all()")
        .execute(&mut holder)
        .expect("unlock");
    assert_eq!(fx.run().status, "ok");
}

#[test]
fn unreachable_database_is_exit_3_naming_host_and_port() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.database_url = "postgres://nobody:secret@127.0.0.1:1/none".into();
    opts.db_wait = std::time::Duration::from_millis(600);
    let err = coinflow_etl::run(&opts).expect_err("unreachable");
    assert_eq!(err.exit_code(), 3);
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[test]
fn runs_left_running_are_marked_abandoned() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let mut conn = fx.db.conn();
    diesel::sql_query(
        "INSERT INTO etl_runs (status, pid, host, data_dir) VALUES ('running', 1, 'h', 'd')",
    )
    .execute(&mut conn)
    .expect("insert");
    fx.run();
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_runs WHERE status = 'abandoned'"),
        1
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_runs WHERE status = 'ok'"),
        1
    );
}

#[test]
fn check_needs_no_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("coins.csv"), COINS).expect("write");
    std::fs::write(
        dir.path().join("m.csv"),
        "coin_id,timestamp,price\nbitcoin,2021-01-01,1\nnocoin,2021-01-01,1\n",
    )
    .expect("write");
    let mut opts = coinflow_etl::RunOptions::new("postgres://127.0.0.1:1/none", dir.path());
    opts.max_reject_ratio = 0.6;
    let report = coinflow_etl::check(dir.path(), &opts).expect("check");
    let m = file(&report, "m.csv");
    assert_eq!((m.read, m.loaded, m.rejected), (2, 1, 1));
}

/// A run larger than what `market` stores loads around the readers: no ACCESS EXCLUSIVE
/// lock on a table the API reads, and a reader that gives up on any lock after 50 ms
/// reads the committed rows throughout (issue: reads never wait for a load).
/// `rows` hourly snapshots from hour `from` for bitcoin and ethereum.
fn hourly(from: i64, rows: i64) -> String {
    let mut csv = String::from("coin_id,timestamp,price,market_cap\n");
    for coin in ["bitcoin", "ethereum"] {
        for hour in from..from + rows {
            csv.push_str(&format!(
                "{coin},{},{},{}\n",
                946_684_800 + hour * 3600,
                1 + hour,
                10 * hour
            ));
        }
    }
    csv
}

/// What a reader saw while a run loaded: reads that answered, samples of another
/// session's ACCESS EXCLUSIVE locks on warehouse tables, reads that waited too long.
struct Watched {
    reads: u64,
    exclusive: i64,
    failed: Vec<String>,
}

impl Watched {
    /// The reader overlapped the load and no read waited out its `lock_timeout`.
    fn assert_never_waited(&self) {
        assert!(self.reads > 0, "the reader overlapped the load");
        assert!(
            self.failed.is_empty(),
            "reads waited for a lock: {:?}",
            self.failed
        );
    }
}

/// Runs `fx`'s ETL while another session reads `market`, `daily`, `coins` and
/// `top_slots` with a 50 ms `lock_timeout` and samples `pg_locks`, until the run ends.
fn run_while_reading(fx: &Fixture) -> (coinflow_etl::RunReport, Watched) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = Arc::clone(&done);
        let url = fx.db.url().to_string();
        std::thread::spawn(move || {
            #[derive(QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut conn = diesel::PgConnection::establish(&url).expect("watcher connects");
            diesel::sql_query("SET lock_timeout = '50ms'")
                .execute(&mut conn)
                .expect("lock_timeout");
            let mut seen = Watched {
                reads: 0,
                exclusive: 0,
                failed: Vec::new(),
            };
            while !done.load(Ordering::SeqCst) {
                seen.exclusive += diesel::sql_query(
                    "SELECT count(*)::int8 AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                     WHERE l.mode = 'AccessExclusiveLock' AND c.relpersistence = 'p' \
                     AND c.relnamespace = 'public'::regnamespace AND l.pid <> pg_backend_pid()",
                )
                .get_result::<N>(&mut conn)
                .expect("pg_locks")
                .n;
                for table in ["market", "daily", "coins", "top_slots"] {
                    match diesel::sql_query(format!("SELECT count(*)::int8 AS n FROM {table}"))
                        .get_result::<N>(&mut conn)
                    {
                        Ok(_) => seen.reads += 1,
                        Err(e) => seen.failed.push(format!("{table}: {e}")),
                    }
                }
            }
            seen
        })
    };
    let report = fx.run();
    done.store(true, Ordering::SeqCst);
    (report, watcher.join().expect("watcher"))
}

#[test]
fn a_large_run_into_a_populated_warehouse_never_locks_readers_out() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write("first.csv", hourly(0, 5_000));
    fx.run();
    let schema = fx.text(&schema_of("market"));
    // Eight times what market stores: the size that used to drop its constraints.
    fx.write("second.csv", hourly(5_000, 40_000));

    let (report, seen) = run_while_reading(&fx);

    assert_eq!(file(&report, "second.csv").loaded, 80_000);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 90_000);
    seen.assert_never_waited();
    assert_eq!(
        seen.exclusive, 0,
        "the run held an ACCESS EXCLUSIVE lock on a warehouse table"
    );
    assert_eq!(
        fx.text(&schema_of("market")),
        schema,
        "market's constraints stayed in place"
    );
}

#[test]
fn a_first_load_builds_market_and_daily_anew_and_readers_never_wait_for_it() {
    let fx = Fixture::new();
    let market = fx.text(&schema_of("market"));
    let daily = fx.text(&schema_of("daily"));
    fx.write("coins.csv", COINS);
    fx.write("history.csv", hourly(0, 40_000));

    let (report, seen) = run_while_reading(&fx);

    assert_reconciles(&report);
    assert_eq!(file(&report, "history.csv").loaded, 80_000);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 80_000);
    assert!(
        fx.count("SELECT count(*) FROM daily") > 3_000,
        "daily was built"
    );
    // The old bulk load dropped the empty table's constraints under an ACCESS EXCLUSIVE
    // lock held to the commit: these reads waited out their 50 ms.
    seen.assert_never_waited();
    assert_eq!(
        fx.text(&schema_of("market")),
        market,
        "the built market has the committed one's keys, indexes and names"
    );
    assert_eq!(fx.text(&schema_of("daily")), daily, "and so has daily");
    assert_eq!(
        fx.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'coinflow_bulk_load'"),
        0,
        "the build schema is gone"
    );
    assert_eq!(
        fx.count(
            "SELECT count(*) FROM pg_class WHERE relname IN ('market', 'daily') AND relkind = 'r'"
        ),
        2,
        "one table each"
    );
    // The next run writes the swapped-in tables as any other.
    fx.write("more.csv", hourly(40_000, 10));
    let report = fx.run();
    assert_eq!(file(&report, "more.csv").loaded, 20);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 80_020);
}

#[test]
fn rankings_of_two_sources_for_one_coin_and_instant_are_both_kept_and_the_preferred_ranks() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "markets.csv",
        "coin_id,timestamp,price\nbitcoin,2021-01-01T00:00:00Z,1\nbitcoin,2021-01-01T01:00:00Z,1\n",
    );
    // One file, two sources of the same coin and instant: two keys, no conflict.
    fx.write(
        "ranks.csv",
        "coin_id,timestamp,rank,volume_24h,rank_source\n\
         bitcoin,2021-01-01T00:00:00Z,5,100,cryptocompare\n\
         bitcoin,2021-01-01T00:00:00Z,2,,coinmarketcap\n\
         bitcoin,2021-01-01T01:00:00Z,7,100,cryptocompare\n",
    );
    // A file without the column keeps its dataset's name as the source.
    fx.write(
        "plain.csv",
        "coin_id,timestamp,rank\nbitcoin,2021-01-01T00:00:00Z,9\n",
    );
    let report = fx.run();
    assert_reconciles(&report);
    let f = file(&report, "ranks.csv");
    assert_eq!((f.read, f.loaded, f.rejected), (3, 3, 0));
    assert_eq!(file(&report, "plain.csv").loaded, 1);
    assert_eq!(
        fx.text("SELECT string_agg(source || ':' || rank, ',' ORDER BY source) FROM rankings WHERE ts = '2021-01-01T00:00:00Z'")
            .as_deref(),
        Some("coinmarketcap:2,cryptocompare:5,rankings:9")
    );
    let ranked = |hour: u32| {
        fx.text(&format!(
            "SELECT rank || ' ' || rank_source FROM market WHERE ts = '2021-01-01T0{hour}:00:00Z'"
        ))
    };
    assert_eq!(ranked(0).as_deref(), Some("2 coinmarketcap"), "preferred");
    assert_eq!(
        ranked(1).as_deref(),
        Some("7 cryptocompare"),
        "the only one"
    );
    assert_eq!(
        fx.text("SELECT string_agg(DISTINCT rank_source, ',') FROM top_slots WHERE valid_from = '2021-01-01T00:00:00Z'")
            .as_deref(),
        Some("coinmarketcap"),
        "/top serves the source market holds"
    );

    // Re-loading one source classifies within that source only.
    fx.write(
        "again.csv",
        "coin_id,timestamp,rank,volume_24h,rank_source\n\
         bitcoin,2021-01-01T00:00:00Z,5,100,cryptocompare\n\
         bitcoin,2021-01-01T00:00:00Z,6,,rankings\n",
    );
    let report = fx.run();
    let f = file(&report, "again.csv");
    assert_eq!((f.loaded, f.duplicate, f.updated), (0, 1, 1));
    assert_eq!(fx.count("SELECT count(*) FROM rankings"), 4);
    assert_eq!(ranked(0).as_deref(), Some("2 coinmarketcap"));
    // The preferred source changes its rank: the snapshot follows.
    fx.write(
        "cmc.csv",
        "coin_id,timestamp,rank,rank_source\nbitcoin,2021-01-01T00:00:00Z,3,CoinMarketCap\n",
    );
    let report = fx.run();
    assert_eq!(file(&report, "cmc.csv").updated, 1);
    assert_eq!(ranked(0).as_deref(), Some("3 coinmarketcap"));
    assert_eq!(
        fx.text("SELECT rank || ' ' || rank_source FROM top_slots WHERE valid_from = '2021-01-01T00:00:00Z' LIMIT 1")
            .as_deref(),
        Some("3 coinmarketcap")
    );
}

/// Waits until files written now are older than the window in which the ETL does not
/// trust a file's stat (2 s).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(2100));
}

#[test]
fn an_unchanged_file_is_recognised_by_its_stat_without_hashing() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let markets = fx.write(
        "markets.csv",
        "coin_id,timestamp,price\nbitcoin,2021-01-01T00:00:00Z,1\n",
    );
    settle();
    let first = fx.run();
    assert_eq!(first.hashed, 2);
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_files WHERE mtime_ns IS NOT NULL AND inode IS NOT NULL AND ctime_ns IS NOT NULL"),
        2
    );
    let again = fx.run();
    assert_eq!(
        again.hashed, 0,
        "path, size, mtime and inode match: no hash"
    );
    assert!(again.files.iter().all(|f| f.status == FileStatus::Skipped));

    // `--verify` hashes everything; unchanged content is still skipped.
    let verified = fx.run_with(|o| o.verify = true);
    assert_eq!(verified.hashed, 2);
    assert!(verified
        .files
        .iter()
        .all(|f| f.status == FileStatus::Skipped));

    // Rewritten in place with the same size: same inode, new mtime → hashed and loaded.
    let before = std::fs::metadata(&markets).expect("file system");
    std::fs::write(
        &markets,
        "coin_id,timestamp,price\nbitcoin,2021-01-01T00:00:00Z,2\n",
    )
    .expect("file system");
    let after = std::fs::metadata(&markets).expect("file system");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.len(), before.ino()), (after.len(), after.ino()));
    settle();
    let rewritten = fx.run();
    assert_eq!(rewritten.hashed, 1);
    assert_eq!(file(&rewritten, "markets.csv").updated, 1);
    assert_eq!(
        fx.text("SELECT price_usd FROM market").as_deref(),
        Some("2")
    );

    // Touched: hashed once, the content matches (skipped), the new stat is recorded, and
    // the run after that is fast again.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&markets)
        .expect("file system")
        .set_modified(old)
        .expect("file system");
    settle();
    let touched = fx.run();
    assert_eq!(touched.hashed, 1);
    assert_eq!(file(&touched, "markets.csv").status, FileStatus::Skipped);
    let next = fx.run();
    assert_eq!(next.hashed, 0, "the touched file's new stat was recorded");

    // A file changed within the last 2 s is hashed and its stat not recorded.
    fx.write(
        "late.csv",
        "coin_id,timestamp,price\nethereum,2021-01-01T00:00:00Z,3\n",
    );
    let fresh = fx.run();
    assert_eq!(fresh.hashed, 1);
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_files WHERE path = 'late.csv' AND mtime_ns IS NULL"),
        1
    );
    assert_eq!(fx.run().hashed, 1, "not trusted yet: hashed again");
}

/// A listings file of `coins` (id, symbol, name) at the given hours of 2024-01-01, ranked
/// in the order given, priced `base` + the hour.
fn listing_at(coins: &[(&str, &str, &str)], hours: std::ops::Range<u32>, base: f64) -> String {
    let mut out = String::from("id,symbol,name,rank,price,market_cap,volume_24h,timestamp\n");
    for hour in hours {
        for (rank, (id, symbol, name)) in coins.iter().enumerate() {
            out.push_str(&format!(
                "{id},{symbol},{name},{},{},1000000,5000,2024-01-01T{hour:02}:00:00Z\n",
                rank + 1,
                base + f64::from(hour)
            ));
        }
    }
    out
}

#[test]
fn each_version_records_the_lowest_key_of_a_pre_existing_row_it_changed() {
    let fx = Fixture::new();
    let coins = [
        ("alpha", "ALP", "Alpha"),
        ("bravo", "BRV", "Bravo"),
        ("charlie", "CHR", "Charlie"),
    ];
    let changes = |fx: &Fixture| {
        fx.text(
            "SELECT string_agg(dataset || ' ' || version || ' ' || coalesce(low_key::text, '-'), \
             ' | ' ORDER BY dataset, version) FROM data_version_changes",
        )
        .unwrap_or_default()
    };
    fx.write("listings-1.csv", listing_at(&coins, 0..5, 10.0));
    fx.run();
    assert_eq!(
        changes(&fx),
        "coins 1 - | daily 1 - | market 1 -",
        "a first load only inserts"
    );

    // A live append for every coin, ranked by the run (its rank refresh rewrites the rows
    // it just inserted), and a second file of the run correcting a row the first inserted.
    fx.write("listings-2.csv", listing_at(&coins, 5..6, 10.0));
    fx.write(
        "fix.csv",
        "coin_id,timestamp,price\nalpha,2024-01-01T05:00:00Z,99\n",
    );
    let report = fx.run();
    assert_eq!(file(&report, "fix.csv").updated, 1);
    assert_eq!(
        fx.count(
            "SELECT count(*) FROM market WHERE ts = '2024-01-01T05:00:00Z' AND rank IS NOT NULL"
        ),
        3
    );
    assert_eq!(
        changes(&fx),
        "coins 1 - | daily 1 - | daily 2 {alpha,2024-01-01} | market 1 - | market 2 -",
        "appends are no updates of market; the coin-days they extend are updates of daily"
    );

    // Updates of stored prices and of a coin's name.
    fx.write(
        "prices.csv",
        "coin_id,timestamp,price\ncharlie,2024-01-01T01:00:00Z,7\nbravo,2024-01-01T02:00:00Z,8\n",
    );
    fx.write(
        "coins.csv",
        "id,symbol,name\nalpha,ALP,Alpha\nbravo,BRV,Bravo\ncharlie,CHR,Charlie Two\n",
    );
    let report = fx.run();
    assert_eq!(file(&report, "prices.csv").updated, 2);
    // A preferred source re-ranks one stored snapshot.
    fx.write(
        "cmc.csv",
        "coin_id,timestamp,rank,rank_source\ncharlie,2024-01-01T03:00:00Z,1,coinmarketcap\n",
    );
    fx.run();
    assert_eq!(
        fx.text("SELECT rank_source FROM market WHERE coin_id = 'charlie' AND ts = '2024-01-01T03:00:00Z'")
            .as_deref(),
        Some("coinmarketcap")
    );
    assert_eq!(
        changes(&fx),
        "coins 1 - | coins 2 {charlie} | \
         daily 1 - | daily 2 {alpha,2024-01-01} | daily 3 {bravo,2024-01-01} | \
         market 1 - | market 2 - | market 3 {bravo,2024-01-01T02:00:00.000000Z} | \
         market 4 {charlie,2024-01-01T03:00:00.000000Z}"
    );
}
