//! The `candle_interval` migration upgrades a populated warehouse of the previous
//! release: stored candles get their interval (from each coin's spacing) and period
//! start, twins of one day collapse to the latest stamp, `daily` loses their doubled
//! samples, and readers of `daily` and `top_slots` are never held up.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
use coinflow_shared::db::MIGRATIONS;
use common::*;
use diesel::connection::SimpleConnection;
use diesel_migrations::MigrationHarness;

const INTERVAL_VERSION: &str = "20261206000030";

#[test]
fn the_candle_interval_migration_upgrades_a_populated_warehouse_while_it_is_read() {
    let (db, mut conn) = release_before(INTERVAL_VERSION);
    // Daily histories of 10 coins stamped at their close, the first two days of each
    // loaded twice (a resaved export: seconds cut); one coin of hourly exchange candles.
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT 'c' || i, 'C' || i, 'Coin ' || i FROM generate_series(1, 11) i;
         INSERT INTO candles (coin_id, ts, open, high, low, close, market_cap_usd, volume_usd)
         SELECT 'c' || i, timestamptz '2023-12-01T23:59:59Z' + d * interval '1 day', 1, 2, 0.5, i + d, 50, 7
         FROM generate_series(1, 10) i, generate_series(0, 9) d;
         INSERT INTO candles (coin_id, ts, open, high, low, close, market_cap_usd, volume_usd)
         SELECT 'c' || i, timestamptz '2023-12-01T23:59:00Z' + d * interval '1 day', 1, 2, 0.5, 100 + i + d, 50, 7
         FROM generate_series(1, 10) i, generate_series(0, 1) d;
         INSERT INTO candles (coin_id, ts, open, high, low, close, volume_usd)
         SELECT 'c11', timestamptz '2023-12-01T00:00:00Z' + h * interval '1 hour', 1, 2, 0.5, h, 1
         FROM generate_series(0, 47) h;
         -- daily as the previous release derived it: twin days with 2 samples.
         INSERT INTO daily (coin_id, day, open, high, low, close, avg_price, max_market_cap_usd, last_volume_usd, samples, source)
         SELECT coin_id, (ts AT TIME ZONE 'UTC')::date, min(open), max(high), min(low),
                (array_agg(close ORDER BY ts DESC))[1], avg(close), max(market_cap_usd),
                (array_agg(volume_usd ORDER BY ts DESC))[1], count(*), 'candles'
         FROM candles GROUP BY coin_id, (ts AT TIME ZONE 'UTC')::date;
         INSERT INTO top_slots SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins));",
    )
    .unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM daily WHERE samples = 2"),
        20
    );
    let top_before = count(
        &mut conn,
        "SELECT count(*) FROM top_slots WHERE coin_id <> 'c11'",
    );
    assert!(
        count(
            &mut conn,
            "SELECT count(*) FROM top_slots WHERE coin_id = 'c11'"
        ) > 0
    );
    let daily_version = count(
        &mut conn,
        "SELECT version FROM data_versions WHERE dataset = 'daily'",
    );

    // A reader keeps a transaction open on the served tables through the upgrade.
    let mut reader = db.conn();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM daily; SELECT count(*) FROM top_slots;")
        .unwrap();
    conn.batch_execute("SET lock_timeout = '5s'").unwrap();
    conn.run_pending_migrations(MIGRATIONS).expect("upgrade");
    reader.batch_execute("COMMIT").unwrap();

    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM candles WHERE interval = '1d'"
        ),
        100,
        "twins collapsed"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM candles WHERE interval = '1d' AND period_start = (ts AT TIME ZONE 'UTC')::date AT TIME ZONE 'UTC' AND ts = period_start + interval '23:59:59'"),
        100,
        "each day keeps its latest stamp, keyed at the day's start"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM candles WHERE interval = '1h' AND coin_id = 'c11'"
        ),
        48
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM daily WHERE samples = 2"),
        0
    );
    assert_eq!(
        text(&mut conn, "SELECT close || ' ' || avg_price FROM daily WHERE coin_id = 'c1' AND day = '2023-12-01'"),
        "1 1"
    );
    assert_eq!(
        text(&mut conn, "SELECT open || ' ' || close || ' ' || samples || ' ' || last_volume_usd FROM daily WHERE coin_id = 'c11' AND day = '2023-12-02'"),
        "1 47 24 24",
        "hourly candles folded, volumes summed"
    );
    assert!(
        count(
            &mut conn,
            "SELECT version FROM data_versions WHERE dataset = 'daily'"
        ) > daily_version
    );
    // /top: daily candles as before; the hourly coin's candles no longer count.
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM top_slots WHERE coin_id <> 'c11'"
        ),
        top_before
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM top_slots WHERE coin_id = 'c11'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM (SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins)) \
             EXCEPT SELECT * FROM top_slots) d"
        ),
        0,
        "the upgraded slots are what the ETL computes"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM (SELECT * FROM top_slots EXCEPT SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins))) d"),
        0
    );
    // The new key holds: a second row of a period is refused.
    assert!(conn
        .batch_execute("INSERT INTO candles (coin_id, ts, interval, period_start, open, high, low, close) VALUES ('c1', '2023-12-01T12:00:00Z', '1d', '2023-12-01T00:00:00Z', 1, 1, 1, 1)")
        .is_err());
}
