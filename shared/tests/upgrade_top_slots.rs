//! The `top_slots` migration upgrades a populated warehouse of the previous release: it
//! backfills the slots of every stored coin, and it does so without an exclusive lock on
//! the tables readers use (a reader's open transaction does not hold it up).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
use coinflow_shared::db::MIGRATIONS;
use common::*;
use diesel::connection::SimpleConnection;
use diesel_migrations::MigrationHarness;

const TOP_SLOTS_VERSION: &str = "20261206000020";

#[test]
fn the_top_slots_migration_backfills_a_populated_warehouse_while_it_is_read() {
    let (db, mut conn) = release_before(TOP_SLOTS_VERSION);
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT 'c' || i, 'C' || i, 'Coin ' || i FROM generate_series(1, 30) i;
         INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, rank, rank_source)
         SELECT 'c' || i, timestamptz '2024-01-01T00:00:00Z' + h * interval '1 hour', i + h, 1000 - i,
                CASE WHEN i % 4 = 0 THEN NULL ELSE i END, CASE WHEN i % 4 = 0 THEN NULL ELSE 'cmc' END
         FROM generate_series(1, 20) i, generate_series(0, 47) h;
         INSERT INTO candles (coin_id, ts, open, high, low, close, market_cap_usd)
         SELECT 'c' || i, timestamptz '2023-12-01T00:00:00Z' + d * interval '1 day', 1, 2, 0.5, i + d, 50
         FROM generate_series(21, 30) i, generate_series(0, 9) d;",
    )
    .unwrap();

    // A reader's transaction stays open on market and candles through the upgrade; the
    // upgrade must not need a lock that conflicts with it.
    let mut reader = db.conn();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM market; SELECT count(*) FROM candles;")
        .unwrap();
    conn.batch_execute("SET lock_timeout = '5s'").unwrap();
    // Up to this migration while the reader waits; later migrations have their own
    // upgrade tests (the candle interval one takes brief exclusive locks on candles).
    while !applied(&mut conn).iter().any(|v| v == TOP_SLOTS_VERSION) {
        conn.run_next_migration(MIGRATIONS).expect("upgrade");
    }
    reader.batch_execute("COMMIT").unwrap();
    conn.run_pending_migrations(MIGRATIONS)
        .expect("the later migrations");

    // 20 coins × 48 hourly rows, one bucket each except each coin's last row (valid for a
    // day: 25 buckets); 10 candle coins × 10 days, each valid for a day (24 or 25 buckets).
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM top_slots WHERE rank_source <> 'candles'"
        ),
        20 * (47 + 25)
    );
    assert_eq!(count(&mut conn, "SELECT count(DISTINCT (coin_id, valid_from)) FROM top_slots WHERE rank_source = 'candles'"), 100);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM (SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins)) \
             EXCEPT SELECT * FROM top_slots) d"
        ),
        0,
        "the backfill is what the ETL computes"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT version FROM data_versions WHERE dataset = 'top'"
        ),
        0
    );
}
