//! The in-process `/top` cache and the batched reader of the data versions it is keyed
//! by. `/top` answers only change when an ETL run changes `top_slots` or `coins` (names
//! and symbols):
//! - per request, one cheap statement reads the data versions of top and coins (shared
//!   by the requests waiting at the same moment, see [`VersionChecker`]); the
//!   cache holds answers of one pair of versions only and starts over when either moves,
//!   so an ETL run is never answered from before it (a request that read versions older
//!   than the cache's is computed without the cache);
//! - an answer is keyed by the resolved instant and the limit; the default instant (the
//!   latest `ts`) is itself cached per versions;
//! - concurrent requests for a missing answer wait for one computation (a `OnceCell` per
//!   key), and a failed computation (database gone) is not cached;
//! - the cache is bounded: at most [`MAX_ENTRIES`] answers and [`MAX_CACHED_ROWS`] rows
//!   (by limit), the least recently used going first;
//! - each answer keeps its rendered bodies, one per format.
//!
//! It computes no ranking and holds no connection: the ranking is `crate::routes::top`'s,
//! and the version checker reads through the function it is started with.

use crate::error::ApiError;
use crate::format::{render_list, Format};
use crate::raw::RawQuery;
use crate::rows::TopRow;
use chrono::{DateTime, SecondsFormat, Utc};
use rocket::tokio::sync::{oneshot, OnceCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

/// The most answers cached at once.
pub const MAX_ENTRIES: usize = 512;
/// The most rows (counted by limit) cached at once.
pub const MAX_CACHED_ROWS: i64 = 250_000;

const VERSIONS_SQL: &str = "SELECT \
(SELECT version FROM data_versions WHERE dataset = 'top') AS top, \
(SELECT version FROM data_versions WHERE dataset = 'coins') AS coins";

/// The data versions a `/top` answer depends on: (top, coins). The ETL bumps `top` when
/// it changed `top_slots`, which follows every change of market or candles that matters
/// to a ranking.
pub(crate) type Versions = (i64, i64);

/// One computed `/top` answer.
pub(crate) struct Answer {
    as_of: DateTime<Utc>,
    /// The ranking, or why there is none (404).
    rows: Result<Vec<TopRow>, String>,
    /// The rendered bodies, by format.
    bodies: [OnceLock<Arc<[u8]>>; 3],
}

impl Answer {
    pub(crate) fn new(as_of: DateTime<Utc>, rows: Result<Vec<TopRow>, String>) -> Answer {
        Answer {
            as_of,
            rows,
            bodies: Default::default(),
        }
    }

    pub(crate) fn body(&self, format: Format) -> Result<Arc<[u8]>, ApiError> {
        let rows = self
            .rows
            .as_ref()
            .map_err(|why| ApiError::NotFound(why.clone()))?;
        let slot = &self.bodies[match format {
            Format::Json => 0,
            Format::Csv => 1,
            Format::Ndjson => 2,
        }];
        if let Some(body) = slot.get() {
            return Ok(body.clone());
        }
        let mut envelope = serde_json::Map::new();
        envelope.insert(
            "as_of".into(),
            serde_json::Value::String(self.as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
        let body: Arc<[u8]> = render_list(format, rows, envelope, "data")?.into();
        Ok(slot.get_or_init(|| body).clone())
    }
}

pub(crate) type Cell<T> = Arc<OnceCell<T>>;

struct Entry {
    cell: Cell<Arc<Answer>>,
    last_used: u64,
    limit: i64,
}

/// The answers of one pair of data versions.
#[derive(Default)]
struct Generation {
    versions: Versions,
    latest: Cell<Option<DateTime<Utc>>>,
    entries: HashMap<(i64, i64), Entry>,
    rows: i64,
    clock: u64,
}

/// The in-process `/top` cache (see the module documentation).
#[derive(Default)]
pub struct TopCache {
    current: Mutex<Option<Generation>>,
    /// Rankings computed so far (each a cache miss).
    computed: AtomicU64,
}

impl TopCache {
    /// The generation for `versions`, started afresh when they are newer than the cached
    /// one; `None` when they are older (a request overtaken by an ETL run: no caching).
    fn with_generation<T>(
        &self,
        versions: Versions,
        f: impl FnOnce(&mut Generation) -> T,
    ) -> Option<T> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_mut() {
            Some(g) if g.versions == versions => {}
            Some(g) if g.versions.0 > versions.0 || g.versions.1 > versions.1 => return None,
            _ => {
                *current = Some(Generation {
                    versions,
                    ..Generation::default()
                })
            }
        }
        current.as_mut().map(f)
    }

    /// The cell that holds the latest market instant at `versions`.
    pub(crate) fn latest(&self, versions: Versions) -> Cell<Option<DateTime<Utc>>> {
        self.with_generation(versions, |g| g.latest.clone())
            .unwrap_or_default()
    }

    /// The cell that holds the answer for (`as_of`, `limit`) at `versions`.
    pub(crate) fn answer(
        &self,
        versions: Versions,
        as_of: DateTime<Utc>,
        limit: i64,
    ) -> Cell<Arc<Answer>> {
        self.with_generation(versions, |g| {
            g.clock += 1;
            let now = g.clock;
            let key = (as_of.timestamp_micros(), limit);
            if let Some(entry) = g.entries.get_mut(&key) {
                entry.last_used = now;
                return entry.cell.clone();
            }
            while !g.entries.is_empty()
                && (g.entries.len() >= MAX_ENTRIES || g.rows + limit > MAX_CACHED_ROWS)
            {
                let oldest = g
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| *k);
                if let Some(evicted) = oldest.and_then(|k| g.entries.remove(&k)) {
                    g.rows -= evicted.limit;
                }
            }
            let cell = Cell::default();
            g.entries.insert(
                key,
                Entry {
                    cell: cell.clone(),
                    last_used: now,
                    limit,
                },
            );
            g.rows += limit;
            cell
        })
        .unwrap_or_default()
    }

    /// How many answers are cached (for tests).
    pub fn len(&self) -> usize {
        self.current
            .lock()
            .map(|g| g.as_ref().map_or(0, |g| g.entries.len()))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one ranking computed for this cache (a miss).
    pub(crate) fn count_computation(&self) {
        self.computed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many rankings this cache has had computed (misses), for tests.
    pub fn computations(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

/// Reads the data versions for `/top` requests, one statement for every request waiting
/// at that moment: a request registers, and the checker thread takes all registered
/// requests, runs the statement once and answers each. Every request is answered by a
/// read that started after it registered, so no request sees versions from before its
/// arrival; under load the database gets one version statement per batch instead of one
/// per request (fewer round trips and wake-ups).
pub(crate) struct VersionChecker {
    shared: Arc<CheckerShared>,
}

struct CheckerShared {
    waiting: Mutex<Vec<oneshot::Sender<Result<Versions, CheckError>>>>,
    wake: Condvar,
}

/// A failed check, shareable between the requests of a batch.
#[derive(Clone)]
struct CheckError {
    unavailable: bool,
    message: String,
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> ApiError {
        if e.unavailable {
            ApiError::Unavailable(e.message)
        } else {
            ApiError::Internal(e.message)
        }
    }
}

impl VersionChecker {
    /// Starts the checker thread, which reads the versions with `read` (a database read
    /// such as [`read_versions`] on a pooled connection). It ends soon after the checker
    /// is dropped.
    pub(crate) fn start(
        read: impl Fn() -> Result<Versions, ApiError> + Send + 'static,
    ) -> VersionChecker {
        let shared = Arc::new(CheckerShared {
            waiting: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("top-versions".into())
            .spawn(move || check_loop(&weak, &read));
        if let Err(e) = spawned {
            log::error!("could not start the /top version checker: {e}");
        }
        VersionChecker { shared }
    }

    /// The current data versions, read after this call began.
    pub(crate) async fn versions(&self) -> Result<Versions, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        self.shared.wake.notify_one();
        rx.await
            .map_err(|_| ApiError::Internal("the /top version checker is gone".into()))?
            .map_err(ApiError::from)
    }
}

fn check_loop(shared: &Weak<CheckerShared>, read: &impl Fn() -> Result<Versions, ApiError>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let batch = {
            let mut waiting = strong.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.is_empty() {
                // Wake now and then to notice that the application is gone.
                waiting = strong
                    .wake
                    .wait_timeout(waiting, std::time::Duration::from_secs(1))
                    .map(|(w, _)| w)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            std::mem::take(&mut *waiting)
        };
        drop(strong);
        if batch.is_empty() {
            continue;
        }
        let result = read().map_err(|e| CheckError {
            unavailable: matches!(e, ApiError::Unavailable(_)),
            message: e.to_string(),
        });
        for tx in batch {
            let _ = tx.send(result.clone());
        }
    }
}

/// The current data versions of top and coins.
pub(crate) fn read_versions(conn: &mut diesel::PgConnection) -> Result<Versions, ApiError> {
    let rows = RawQuery::new(VERSIONS_SQL).map_rows(conn, |row| {
        Ok((row.int8(0)?.unwrap_or(0), row.int8(1)?.unwrap_or(0)))
    })?;
    Ok(rows.first().copied().unwrap_or_default())
}
