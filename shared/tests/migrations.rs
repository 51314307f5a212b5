//! The embedded migrations apply on an empty database and `down.sql` really reverts them.
#![allow(clippy::expect_used)]

use coinflow_shared::db::MIGRATIONS;
use coinflow_shared::testdb::TestDb;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_migrations::MigrationHarness;

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn user_relations(conn: &mut PgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*)::int8 AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
         WHERE s.nspname = 'public' AND c.relname NOT LIKE '\\_\\_diesel%'",
    )
    .get_result::<N>(conn)
    .expect("count relations")
    .n
}

#[test]
fn migrations_apply_and_revert_completely() {
    let db = TestDb::new();
    let mut conn = db.conn();
    assert!(coinflow_shared::db::migrations_applied(&mut conn).expect("check"));
    assert!(
        user_relations(&mut conn) > 20,
        "tables, indexes and sequences exist"
    );
    conn.revert_all_migrations(MIGRATIONS).expect("revert");
    assert_eq!(
        user_relations(&mut conn),
        0,
        "down.sql leaves nothing behind"
    );
    conn.run_pending_migrations(MIGRATIONS).expect("re-apply");
    assert!(coinflow_shared::db::migrations_applied(&mut conn).expect("check"));
}
