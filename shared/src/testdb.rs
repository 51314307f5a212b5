//! A throwaway, migrated database per test. The server comes from `DATABASE_URL` (what
//! `scripts/test.sh` provisions); each `TestDb` creates its own database there, applies
//! the embedded migrations and drops the database when it goes out of scope.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let root = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl TestDb {
    /// Creates and migrates a fresh database. Panics (this is test support) when
    /// `DATABASE_URL` is unset or the server refuses.
    pub fn new() -> TestDb {
        TestDb::create("", true)
    }

    /// An empty, unmigrated database with another server encoding (e.g. `SQL_ASCII`,
    /// what a plain `initdb` without a locale makes), for the binaries to refuse.
    pub fn with_encoding(encoding: &str) -> TestDb {
        TestDb::create(&format!(" ENCODING '{encoding}' TEMPLATE template0"), false)
    }

    #[allow(clippy::expect_used)]
    fn create(options: &str, migrate: bool) -> TestDb {
        crate::config::load_dotenv();
        let server = crate::db::without_gss_negotiation(&std::env::var("DATABASE_URL").expect(
            "DATABASE_URL must point at a PostgreSQL server for tests (scripts/test.sh sets it)",
        ));
        let admin_url = with_database(&server, "postgres");
        let name = format!(
            "coinflow_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_subsec_nanos()
        );
        let mut admin = PgConnection::establish(&admin_url).expect("connect to the test server");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"{options}"))
            .execute(&mut admin)
            .expect("create the test database");
        let url = with_database(&server, &name);
        if migrate {
            let mut conn = PgConnection::establish(&url).expect("connect to the test database");
            crate::db::run_migrations(&mut conn).expect("migrate the test database");
        }
        TestDb {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    #[allow(clippy::expect_used)]
    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test database")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_swaps_only_the_name() {
        assert_eq!(
            with_database("postgres://u@h:1/a", "b"),
            "postgres://u@h:1/b"
        );
        assert_eq!(with_database("postgres://u@h:1", "b"), "postgres://u@h:1/b");
        assert_eq!(
            with_database("postgres://h/a?sslmode=disable", "b"),
            "postgres://h/b?sslmode=disable"
        );
    }
}
