//! The `version_changes` migration upgrades a populated warehouse of the previous
//! release while it is read: it adds the empty `data_version_changes` and touches no
//! warehouse table, so the versions bumped before it have no record (their cursors are
//! refused, conservatively) and versions bumped after it can be recorded.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
use coinflow_shared::db::MIGRATIONS;
use common::*;
use diesel::connection::SimpleConnection;
use diesel_migrations::MigrationHarness;

const VERSION_CHANGES_VERSION: &str = "20261207000060";

fn has_table(conn: &mut diesel::PgConnection) -> bool {
    count(
        conn,
        "(to_regclass('data_version_changes') IS NOT NULL)::int",
    ) == 1
}

#[test]
fn the_version_changes_migration_adds_its_table_to_a_populated_warehouse_while_it_is_read() {
    let (db, mut conn) = release_before(VERSION_CHANGES_VERSION);
    assert!(!has_table(&mut conn));
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT 'c' || i, 'C' || i, 'Coin ' || i FROM generate_series(1, 50) i;
         INSERT INTO market (coin_id, ts, price_usd)
         SELECT 'c' || i, timestamptz '2024-01-01T00:00:00Z' + h * interval '1 hour', i
         FROM generate_series(1, 50) i, generate_series(0, 99) h;
         UPDATE data_versions SET version = 3 WHERE dataset IN ('market', 'coins');",
    )
    .unwrap();

    // Readers of what the API serves (rows and versions) stay in their transaction
    // through the upgrade.
    let mut reader = db.conn();
    reader
        .batch_execute(
            "BEGIN; SELECT count(*) FROM market; SELECT version FROM data_versions WHERE dataset = 'market';",
        )
        .unwrap();
    conn.batch_execute("SET lock_timeout = '5s'").unwrap();
    conn.run_pending_migrations(MIGRATIONS).expect("upgrade");
    reader.batch_execute("COMMIT").unwrap();

    assert!(has_table(&mut conn));
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM data_version_changes"),
        0,
        "versions bumped before the upgrade have no record"
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM market"), 5000);
    assert_eq!(
        text(
            &mut conn,
            "SELECT string_agg(dataset || '=' || version, ',' ORDER BY dataset) FROM data_versions"
        ),
        "coin_exchanges=0,coins=3,daily=0,market=3,positions=0,rejects=0,top=0,traders=0"
    );
    // A record names a dataset of data_versions, once per version.
    conn.batch_execute(
        "INSERT INTO data_version_changes (dataset, version, low_key) VALUES ('market', 4, ARRAY['c7', '2024-01-01T05:00:00.000000Z']), ('market', 5, NULL)",
    )
    .unwrap();
    assert!(conn
        .batch_execute("INSERT INTO data_version_changes (dataset, version) VALUES ('nope', 1)")
        .is_err());
    assert!(conn
        .batch_execute("INSERT INTO data_version_changes (dataset, version) VALUES ('market', 5)")
        .is_err());

    // Down again removes the table and nothing else.
    while applied(&mut conn)
        .iter()
        .any(|v| v == VERSION_CHANGES_VERSION)
    {
        conn.revert_last_migration(MIGRATIONS).expect("revert");
    }
    assert!(!has_table(&mut conn));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM market"), 5000);
    assert_eq!(
        count(
            &mut conn,
            "SELECT version FROM data_versions WHERE dataset = 'market'"
        ),
        3
    );
}
