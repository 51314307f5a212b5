//! The `rankings_source` migration upgrades a populated warehouse of the previous
//! release: every stored ranking is kept, the key becomes (coin_id, ts, source), and the
//! tables the API reads are not locked against readers while it runs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
use coinflow_shared::db::MIGRATIONS;
use common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::MigrationHarness;

const RANKINGS_SOURCE_VERSION: &str = "20261206000040";

#[derive(QueryableByName)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

fn primary_key(conn: &mut PgConnection) -> String {
    diesel::sql_query(
        "SELECT pg_get_constraintdef(oid) AS s FROM pg_constraint \
         WHERE conrelid = 'rankings'::regclass AND contype = 'p'",
    )
    .get_result::<S>(conn)
    .expect("primary key")
    .s
}

#[test]
fn the_rankings_source_migration_rekeys_a_populated_warehouse_while_it_is_read() {
    let (db, mut conn) = release_before(RANKINGS_SOURCE_VERSION);
    assert_eq!(primary_key(&mut conn), "PRIMARY KEY (coin_id, ts)");
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT 'c' || i, 'C' || i, 'Coin ' || i FROM generate_series(1, 50) i;
         INSERT INTO market (coin_id, ts, price_usd, rank, rank_source)
         SELECT 'c' || i, timestamptz '2024-01-01T00:00:00Z' + h * interval '1 hour', i, i, 'rankings'
         FROM generate_series(1, 50) i, generate_series(0, 99) h;
         INSERT INTO rankings (coin_id, ts, rank, source)
         SELECT 'c' || i, timestamptz '2024-01-01T00:00:00Z' + h * interval '1 hour', i,
                CASE WHEN h % 2 = 0 THEN 'rankings' ELSE 'listings' END
         FROM generate_series(1, 50) i, generate_series(0, 99) h;",
    )
    .unwrap();

    // A reader of what the API serves stays in its transaction through the upgrade.
    let mut reader = db.conn();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM market; SELECT count(*) FROM top_slots;")
        .unwrap();
    conn.batch_execute("SET lock_timeout = '5s'").unwrap();
    conn.run_pending_migrations(MIGRATIONS).expect("upgrade");
    reader.batch_execute("COMMIT").unwrap();

    assert_eq!(primary_key(&mut conn), "PRIMARY KEY (coin_id, ts, source)");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM rankings"), 5000);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'rankings'"
        ),
        1,
        "the old key's index is gone, no second index is left behind"
    );
    // A second source of a stored coin and instant is a new row now.
    conn.batch_execute(
        "INSERT INTO rankings (coin_id, ts, rank, source) VALUES ('c1', '2024-01-01T00:00:00Z', 4, 'cryptocompare')",
    )
    .unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM rankings WHERE coin_id = 'c1' AND ts = '2024-01-01T00:00:00Z'"
        ),
        2
    );

    // Down again keeps the preferred source of each coin and instant.
    conn.batch_execute(
        "INSERT INTO rankings (coin_id, ts, rank, source) VALUES ('c1', '2024-01-01T00:00:00Z', 3, 'coinmarketcap')",
    )
    .unwrap();
    while applied(&mut conn)
        .iter()
        .any(|v| v == RANKINGS_SOURCE_VERSION)
    {
        conn.revert_last_migration(MIGRATIONS).expect("revert");
    }
    assert_eq!(primary_key(&mut conn), "PRIMARY KEY (coin_id, ts)");
    assert_eq!(
        count(
            &mut conn,
            "SELECT rank FROM rankings WHERE coin_id = 'c1' AND ts = '2024-01-01T00:00:00Z'"
        ),
        3
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM rankings"), 5000);
}
