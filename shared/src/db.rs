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

/// Connects, retrying with exponential backoff (0.25 s doubling to 5 s) until `max_wait`
/// has passed. Each failed attempt is logged.
pub fn connect_with_wait(url: &str, max_wait: Duration) -> Result<PgConnection, DbError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        match PgConnection::establish(url) {
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
    use super::host_port;

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
