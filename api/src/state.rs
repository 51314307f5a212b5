//! Shared state of the running API: the connection pool, the cursor codec, the task
//! settings and the `/top` cache, plus the one way handlers reach the database.
//!
//! The pool is the API's own r2d2 manager over `PgConnection`, for two reasons:
//! - a connection is pinged (`SELECT 1`) on check-out only when it has sat idle for a
//!   while or its last use failed; a connection in steady use is handed out as is, which
//!   saves a round trip per request. A connection whose query failed for connection
//!   reasons is dropped on return, and read-only work that failed that way on a
//!   connection that skipped the ping runs once more on a fresh one.
//! - it knows whether the database is reachable: the outcome of the latest connection
//!   attempt. When every connection is busy but the database answers (pure overload), a
//!   request waits for a connection (up to [`OVERLOAD_WAIT`]) instead of failing; when the
//!   database cannot be reached, it gets 503 within [`CHECKOUT_SLICE`].
//!
//! The pool also defends itself: every connection runs its statements under
//! `statement_timeout` and `lock_timeout` (set once per connection), and work that can be
//! expensive (a `/top` ranking not in the cache, a chunk of more than [`LARGE_CHUNK`]
//! rows) takes a permit of [`AppState::cold`] first, so it never holds more than part of
//! the pool; without a free permit the request gets 503 with `Retry-After` at once
//! instead of queueing, and cheap reads always find a connection.

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::top_cache::{TopCache, VersionChecker};
use coinflow_shared::cursor::CursorCodec;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, PooledConnection, R2D2Connection};
use diesel::Connection;
use rocket::tokio::sync::{OwnedSemaphorePermit, Semaphore};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long one wait for a pooled connection lasts before the pool's health is checked.
pub const CHECKOUT_SLICE: Duration = Duration::from_millis(250);
/// The longest a request waits for a connection while the database is reachable.
pub(crate) const OVERLOAD_WAIT: Duration = Duration::from_secs(20);
/// A chunk of more rows than this is expensive work, bounded like a cold `/top`.
pub(crate) const LARGE_CHUNK: u32 = 1000;

/// A pooled connection with what the pool needs to know about its last use.
pub struct ApiConn {
    pub pg: PgConnection,
    /// Set when a query failed for connection reasons: the pool drops it on return.
    broken: bool,
    /// Set when the last use ended in any error: the next check-out pings first.
    suspect: bool,
    /// Whether the latest check-out pinged it.
    pinged: bool,
    returned: Instant,
}

/// Whether the database answered the latest connection attempt.
/// Also counts the check-outs that had to wait.
#[derive(Default)]
pub struct Reachability {
    down: AtomicBool,
    waits: AtomicU64,
}

impl Reachability {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// How many check-outs found every connection of the pool in use for a whole slice.
    pub fn checkout_waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

/// The r2d2 manager: connects, pings only stale connections, drops broken ones.
pub struct Manager {
    url: String,
    /// Run once on each new connection: the statement and lock timeouts.
    session: String,
    reachability: Arc<Reachability>,
}

impl ManageConnection for Manager {
    type Connection = ApiConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<ApiConn, r2d2::Error> {
        let connected = PgConnection::establish(&self.url).and_then(|mut pg| {
            pg.batch_execute(&self.session)
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(pg)
        });
        match connected {
            Ok(mut pg) => {
                self.reachability.down.store(false, Ordering::Relaxed);
                // The start-up check cannot run while the database is down: every new
                // connection repeats it (one query per connection, not per request).
                if let Err(e) = coinflow_shared::db::check_server_encoding(&mut pg) {
                    log::error!("{e}");
                    return Err(r2d2::Error::ConnectionError(
                        diesel::ConnectionError::BadConnection(e.to_string()),
                    ));
                }
                Ok(ApiConn {
                    pg,
                    broken: false,
                    suspect: false,
                    pinged: false,
                    returned: Instant::now(),
                })
            }
            Err(e) => {
                self.reachability.down.store(true, Ordering::Relaxed);
                Err(r2d2::Error::ConnectionError(e))
            }
        }
    }

    fn is_valid(&self, conn: &mut ApiConn) -> Result<(), r2d2::Error> {
        conn.pinged = conn.suspect || conn.returned.elapsed() >= PING_AFTER_IDLE;
        if !conn.pinged {
            return Ok(());
        }
        conn.pg
            .batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)?;
        conn.suspect = false;
        Ok(())
    }

    fn has_broken(&self, conn: &mut ApiConn) -> bool {
        // Called on every return to the pool: the moment the idle time counts from.
        conn.returned = Instant::now();
        std::thread::panicking() || conn.broken || conn.pg.is_broken()
    }
}

pub type ApiPool = r2d2::Pool<Manager>;

/// A pool of `max_size` connections to `url` with the default timeouts of [`ApiConfig`].
pub fn pool(url: &str, max_size: u32) -> (ApiPool, Arc<Reachability>) {
    configured_pool(&ApiConfig {
        pool_size: max_size,
        ..ApiConfig::new(url)
    })
}

/// The API's pool. Connections are made lazily so the API starts (and reports 503) while
/// the database is down.
pub fn configured_pool(config: &ApiConfig) -> (ApiPool, Arc<Reachability>) {
    let reachability = Arc::new(Reachability::default());
    let manager = Manager {
        url: coinflow_shared::db::without_gss_negotiation(&config.database_url),
        session: format!(
            "SET statement_timeout = {}; SET lock_timeout = {}",
            config.statement_timeout.as_millis(),
            config.lock_timeout.as_millis()
        ),
        reachability: reachability.clone(),
    };
    let pool = r2d2::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(0))
        .connection_timeout(CHECKOUT_SLICE)
        .test_on_check_out(true)
        .build_unchecked(manager);
    (pool, reachability)
}

/// Managed by Rocket; handlers take `&State<AppState>`.
pub struct AppState {
    pub(crate) pool: ApiPool,
    pub reachability: Arc<Reachability>,
    pub(crate) codec: CursorCodec,
    /// `TASK_OUTPUT_DIR`, bounded; shared with the blocking threads that write to it.
    pub(crate) task_files: Option<Arc<crate::task_files::TaskFiles>>,
    pub(crate) write_token: Option<String>,
    pub top_cache: TopCache,
    pub(crate) top_versions: VersionChecker,
    /// Permits for expensive work (see the module documentation).
    pub cold: Arc<Semaphore>,
}

/// A checked-out connection and whether it skipped the ping.
pub struct Checkout {
    pub conn: PooledConnection<Manager>,
    unverified: bool,
}

/// Waits for a connection: while the database is reachable and the pool is merely busy,
/// up to [`OVERLOAD_WAIT`]; when the latest connection attempt failed, or no connection
/// could be made at all within one slice, it answers 503 at once.
pub fn checkout(pool: &ApiPool, reachability: &Reachability) -> Result<Checkout, ApiError> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        match pool.get_timeout(CHECKOUT_SLICE) {
            Ok(conn) => {
                let unverified = !conn.pinged;
                return Ok(Checkout { conn, unverified });
            }
            Err(e) => {
                let state = pool.state();
                // Waiting because every connection is in use (not because one is slow
                // to open) is what the cold-work bound exists to prevent.
                if !waited && state.idle_connections == 0 && state.connections >= pool.max_size() {
                    waited = true;
                    reachability.waits.fetch_add(1, Ordering::Relaxed);
                }
                let live = pool.state().connections;
                if reachability.is_down() || live == 0 || started.elapsed() >= OVERLOAD_WAIT {
                    return Err(ApiError::Unavailable(format!(
                        "{e} ({live} live connections, waited {:.1?})",
                        started.elapsed()
                    )));
                }
            }
        }
    }
}

/// Runs `work` on a checked-out connection and records how it ended: a connection
/// failure drops the connection, any other error makes the next check-out ping it.
fn run_on<T>(
    checkout: &mut Checkout,
    work: &mut impl FnMut(&mut PgConnection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let result = work(&mut checkout.conn.pg);
    match &result {
        Ok(_) => {}
        Err(ApiError::Unavailable(_)) => checkout.conn.broken = true,
        Err(_) => checkout.conn.suspect = true,
    }
    result
}

/// Runs read-only `work` on a pooled connection (blocking). When it fails because the
/// connection was dead and the connection had skipped its ping, it runs once more on
/// another connection: the work must be safe to repeat.
pub fn with_read_conn<T>(
    pool: &ApiPool,
    reachability: &Reachability,
    mut work: impl FnMut(&mut PgConnection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut checkout = checkout(pool, reachability)?;
    let unverified = checkout.unverified;
    match run_on(&mut checkout, &mut work) {
        Err(ApiError::Unavailable(e)) if unverified => {
            log::info!("a pooled connection was dead ({e}); retrying on a fresh one");
            drop(checkout);
            let mut fresh = self::checkout(pool, reachability)?;
            run_on(&mut fresh, &mut work)
        }
        other => other,
    }
}

impl AppState {
    /// A permit for expensive work, or 503 at once when all are taken. Hold it until the
    /// work is done.
    pub fn cold_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.cold
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("every permit for expensive work is taken".into()))
    }

    /// Runs `work` with a pooled connection on the blocking thread pool (diesel is
    /// synchronous), once: for work that writes. An unreachable database becomes 503.
    pub(crate) async fn db<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let reachability = self.reachability.clone();
        rocket::tokio::task::spawn_blocking(move || {
            let mut checkout = checkout(&pool, &reachability)?;
            let mut work = Some(work);
            run_on(&mut checkout, &mut |conn| match work.take() {
                Some(work) => work(conn),
                None => Err(ApiError::Internal("work ran twice".into())),
            })
        })
        .await?
    }

    /// Like [`AppState::db`] for read-only work, which may run a second time on a fresh
    /// connection when a pooled one turns out dead (see [`with_read_conn`]).
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnMut(&mut PgConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let reachability = self.reachability.clone();
        rocket::tokio::task::spawn_blocking(move || with_read_conn(&pool, &reachability, work))
            .await?
    }
}
