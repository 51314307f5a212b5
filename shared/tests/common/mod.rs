//! Support for the upgrade tests: a warehouse of the release before a migration, and
//! one-value queries.
#![allow(dead_code, clippy::expect_used)]

use coinflow_shared::db::MIGRATIONS;
use coinflow_shared::testdb::TestDb;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::MigrationHarness;

/// A migrated throwaway database reverted until migration `version` (and every later
/// one) is no longer applied: the warehouse of the release before it.
pub fn release_before(version: &str) -> (TestDb, PgConnection) {
    let db = TestDb::new();
    let mut conn = db.conn();
    while applied(&mut conn).iter().any(|v| v == version) {
        conn.revert_last_migration(MIGRATIONS).expect("revert");
    }
    (db, conn)
}

/// The versions of the applied migrations.
pub fn applied(conn: &mut PgConnection) -> Vec<String> {
    conn.applied_migrations()
        .expect("applied migrations")
        .into_iter()
        .map(|v| v.to_string())
        .collect()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct T {
    #[diesel(sql_type = Text)]
    t: String,
}

/// The value of an integer SQL expression.
pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(format!("SELECT ({sql})::int8 AS n"))
        .get_result::<N>(conn)
        .expect(sql)
        .n
}

/// The value of a SQL expression, as text.
pub fn text(conn: &mut PgConnection, sql: &str) -> String {
    diesel::sql_query(format!("SELECT ({sql})::text AS t"))
        .get_result::<T>(conn)
        .expect(sql)
        .t
}
