//! Connections, the bounded wait for PostgreSQL, embedded migrations and the ETL's
//! advisory lock.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::{Duration, Instant};
use thiserror::Error;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// The advisory-lock key that serialises ETL runs ("coinflow" in ASCII, truncated).
pub const ETL_LOCK_KEY: i64 = 0x636f_696e_666c_6f77;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database at {host}:{port} unreachable after {waited:.0?}: {last_error}")]
    Unreachable {
        host: String,
        port: u16,
        waited: Duration,
        last_error: String,
    },
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error(
        "database {database:?} has server_encoding {encoding}; coinflow needs UTF8 (text would come back as bytes). Create the database with CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0 (or a cluster with initdb --encoding=UTF8 --locale=C.UTF-8) and point DATABASE_URL at it"
    )]
    Encoding { database: String, encoding: String },
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Host and port named in a connection URL, for messages (never the credentials).
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_string(), p.parse().unwrap_or(5432))
        }
        _ => (authority.to_string(), 5432),
    };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    (host.trim_matches(['[', ']']).to_string(), port)
}

/// libpq's smallest effective `connect_timeout` (it rounds lower values up to 2 s).
const MIN_CONNECT_TIMEOUT_SECS: u64 = 2;

/// `url` with a libpq `connect_timeout` of `seconds` added, unless it already names one.
/// Works on both URL (`postgres://…`) and key=value connection strings.
pub fn with_connect_timeout(url: &str, seconds: u64) -> String {
    with_param(url, "connect_timeout", &seconds.to_string())
}

/// `url` with libpq's `gssencmode=disable`, unless it already names a mode. coinflow
/// never authenticates with Kerberos; left at libpq's default (`prefer`), every
/// connection first asks the Kerberos library for credentials, and that library's
/// teardown at process exit races threads still holding it (an abort in
/// `k5_mutex_lock`, seen when a test process exits). A URL that wants GSS encryption
/// says so and keeps it.
pub fn without_gss_negotiation(url: &str) -> String {
    with_param(url, "gssencmode", "disable")
}

/// `url` with the libpq parameter `key=value` added, unless it already names `key`.
/// Works on both URL (`postgres://…`) and key=value connection strings.
fn with_param(url: &str, key: &str, value: &str) -> String {
    if url.contains(&format!("{key}=")) {
        return url.to_string();
    }
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{key}={value}")
    } else {
        format!("{url} {key}={value}")
    }
}

/// Connects, retrying with exponential backoff (0.25 s doubling to 5 s) until `max_wait`
/// has passed. Each failed attempt is logged. Each attempt carries a libpq
/// `connect_timeout` of the time left (at least 2 s, libpq's minimum), so a server that
/// accepts connections but never answers cannot stretch the wait: it ends within
/// `max_wait` plus those 2 s.
pub fn connect_with_wait(url: &str, max_wait: Duration) -> Result<PgConnection, DbError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let left = max_wait.saturating_sub(started.elapsed());
        let timeout = left.as_secs_f64().ceil() as u64;
        let attempt_url = with_connect_timeout(
            &without_gss_negotiation(url),
            timeout.max(MIN_CONNECT_TIMEOUT_SECS),
        );
        match PgConnection::establish(&attempt_url) {
            Ok(conn) => {
                if attempt > 1 {
                    log::info!(
                        "database reachable after {attempt} attempts ({:.1?})",
                        started.elapsed()
                    );
                }
                return Ok(conn);
            }
            Err(e) => {
                let waited = started.elapsed();
                let (host, port) = host_port(url);
                // libpq's message spans lines (error, then a hint): keep it on one.
                let message = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if waited + delay > max_wait {
                    return Err(DbError::Unreachable {
                        host,
                        port,
                        waited,
                        last_error: message,
                    });
                }
                log::warn!(
                    "database {host}:{port} not reachable (attempt {attempt}, retry in {delay:.2?}): {message}"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[derive(QueryableByName)]
struct Encoding {
    #[diesel(sql_type = diesel::sql_types::Text)]
    database: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    encoding: String,
}

/// Refuses a database whose `server_encoding` is not UTF8 (a plain `initdb` without a
/// locale makes SQL_ASCII ones): text would not round-trip. Both binaries call it before
/// they use a database.
pub fn check_server_encoding(conn: &mut PgConnection) -> Result<(), DbError> {
    let row: Encoding = diesel::sql_query(
        "SELECT current_database()::text AS database, current_setting('server_encoding') AS encoding",
    )
    .get_result(conn)?;
    if row.encoding.eq_ignore_ascii_case("UTF8") {
        Ok(())
    } else {
        Err(DbError::Encoding {
            database: row.database,
            encoding: row.encoding,
        })
    }
}

/// Applies every pending embedded migration; returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, DbError> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(|e| DbError::Migration(e.to_string()))
}

/// True when every embedded migration has been applied.
pub fn migrations_applied(conn: &mut PgConnection) -> Result<bool, DbError> {
    conn.has_pending_migration(MIGRATIONS)
        .map(|pending| !pending)
        .map_err(|e| DbError::Migration(e.to_string()))
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Tries the ETL advisory lock on this session without waiting.
pub fn try_etl_lock(conn: &mut PgConnection) -> Result<bool, DbError> {
    let row: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<diesel::sql_types::BigInt, _>(ETL_LOCK_KEY)
        .get_result(conn)?;
    Ok(row.locked)
}

/// Waits for the ETL advisory lock on this session.
pub fn etl_lock(conn: &mut PgConnection) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(ETL_LOCK_KEY)
        .execute(conn)?;
    Ok(())
}

/// An r2d2 pool for the API. Connections are made lazily so the API starts (and reports
/// 503) while the database is down.
pub fn pool(url: &str, max_size: u32) -> PgPool {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(2))
        .test_on_check_out(true)
        .build_unchecked(ConnectionManager::new(url))
}

#[cfg(test)]
mod tests {
    use super::{host_port, with_connect_timeout, without_gss_negotiation};

    #[test]
    fn connect_timeout_is_added_once_to_either_url_form() {
        assert_eq!(
            with_connect_timeout("postgres://u@db:5432/x", 7),
            "postgres://u@db:5432/x?connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/x?sslmode=disable", 7),
            "postgres://db/x?sslmode=disable&connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("host=db dbname=x", 7),
            "host=db dbname=x connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/x?connect_timeout=1", 7),
            "postgres://db/x?connect_timeout=1"
        );
    }

    #[test]
    fn gss_negotiation_is_disabled_unless_the_url_names_a_mode() {
        assert_eq!(
            without_gss_negotiation("postgres://db/x"),
            "postgres://db/x?gssencmode=disable"
        );
        assert_eq!(
            without_gss_negotiation("postgres://db/x?gssencmode=require"),
            "postgres://db/x?gssencmode=require"
        );
        assert_eq!(
            without_gss_negotiation("host=db dbname=x"),
            "host=db dbname=x gssencmode=disable"
        );
    }

    #[test]
    fn host_port_hides_credentials_and_defaults_the_port() {
        assert_eq!(
            host_port("postgres://u:secret@db:5433/x"),
            ("db".into(), 5433)
        );
        assert_eq!(host_port("postgres://db/x"), ("db".into(), 5432));
        assert_eq!(
            host_port("postgresql://u@127.0.0.1:6000"),
            ("127.0.0.1".into(), 6000)
        );
    }
}
