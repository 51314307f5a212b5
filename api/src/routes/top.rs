//! `GET /top`: the top coins at an instant. Each coin's latest `market` row at or before
//! the instant and not older than one day, or for a coin without one, its latest daily
//! candle whose day ENDED by the instant and not longer than a day ago (close as price);
//! ranked by the ranking source's rank, then coins without a rank by market cap, then
//! volume; ranks renumbered 1..n.
//!
//! A ranking reads `top_slots`, which the ETL maintains (see [`TOP_SQL`]): about `limit`
//! index entries per request, at any instant. Answers are also cached in the process
//! ([`TopCache`]), since they only change when an ETL run changes the slots or `coins`
//! (names and symbols):
//! - per request, one cheap statement reads the data versions of top and coins (shared
//!   by the requests waiting at the same moment, see [`VersionChecker`]); the
//!   cache holds answers of one pair of versions only and starts over when either moves,
//!   so an ETL run is never answered from before it (a request that read versions older
//!   than the cache's is computed without the cache);
//! - an answer is keyed by the resolved instant and the limit; the default instant (the
//!   latest `ts`) is itself cached per versions;
//! - concurrent requests for a missing answer wait for one computation (a `OnceCell` per
//!   key), and a failed computation (database gone) is not cached; a computation takes a
//!   permit of the API's bound on expensive work first (503 when none is free);
//! - the cache is bounded: at most [`MAX_ENTRIES`] answers and [`MAX_CACHED_ROWS`] rows
//!   (by limit), the least recently used going first;
//! - each answer keeps its rendered bodies, one per format.

use crate::error::ApiError;
use crate::format::{render_list, Format};
use crate::params::{parse_instant, parse_int, DayEnd, ReqInfo};
use crate::raw::{Bind, RawQuery};
use crate::reply::{etag, none_match, Reply};
use crate::rows::TopRow;
use crate::state::{with_read_conn, ApiPool, AppState, Reachability};
use chrono::{DateTime, SecondsFormat, Utc};
use rocket::tokio::sync::{oneshot, OnceCell};
use rocket::State;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

/// The largest `limit`.
pub const MAX_LIMIT: i64 = 5000;
/// The most answers cached at once.
pub const MAX_ENTRIES: usize = 512;
/// The most rows (counted by limit) cached at once.
pub const MAX_CACHED_ROWS: i64 = 250_000;

const VERSIONS_SQL: &str = "SELECT \
(SELECT version FROM data_versions WHERE dataset = 'top') AS top, \
(SELECT version FROM data_versions WHERE dataset = 'coins') AS coins";

/// The default instant: the latest market snapshot, or when there is none, the end of the
/// latest daily candle.
const LATEST_SQL: &str = "SELECT coalesce((SELECT max(ts) FROM market), \
(SELECT (date_trunc('day', max(ts) AT TIME ZONE 'UTC') + interval '24:00:00') AT TIME ZONE 'UTC' FROM candles)) AS ts";

/// `$1`: the instant, `$2`: the limit, `$3`: the instant's hour bucket. `top_slots` holds
/// each coin's validity intervals (see its migration), once per hour bucket they
/// overlap: the coins valid at the instant are those of its bucket whose interval holds
/// it, and the index walks the bucket in rank order, so this reads about `limit` index
/// entries however many coins there are.
pub const TOP_SQL: &str = "\
SELECT row_number() OVER (
           ORDER BY s.rank ASC NULLS LAST, s.market_cap_usd DESC NULLS LAST,
                    s.volume_24h_usd DESC NULLS LAST, s.coin_id
       ) AS rank,
       c.id, upper(c.symbol), c.name, s.price_usd, s.market_cap_usd, s.volume_24h_usd,
       s.rank_source
FROM (
    SELECT t.coin_id, t.price_usd, t.market_cap_usd, t.volume_24h_usd, t.rank, t.rank_source
    FROM top_slots t
    WHERE t.bucket = $3::int8 AND t.valid_from <= $1::timestamptz AND t.valid_to > $1::timestamptz
    ORDER BY t.rank ASC NULLS LAST, t.market_cap_usd DESC NULLS LAST,
             t.volume_24h_usd DESC NULLS LAST, t.coin_id
    LIMIT $2::int8
) s
JOIN coins c ON c.id = s.coin_id
ORDER BY rank";

/// Whether any source holds data at or before `$1` (else 404): a market snapshot, or a
/// daily candle whose day has ended.
const ANY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM market WHERE ts <= $1::timestamptz) \
OR EXISTS (SELECT 1 FROM candles WHERE (date_trunc('day', ts AT TIME ZONE 'UTC') + interval '24:00:00') AT TIME ZONE 'UTC' <= $1::timestamptz)";

/// The hour bucket of `top_slots` that holds `at` (hours since the Unix epoch).
pub fn bucket(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// The data versions a `/top` answer depends on: (top, coins). The ETL bumps `top` when
/// it changed `top_slots`, which follows every change of market or candles that matters
/// to a ranking.
pub type Versions = (i64, i64);

/// One computed `/top` answer.
pub struct Answer {
    as_of: DateTime<Utc>,
    /// The ranking, or why there is none (404).
    rows: Result<Vec<TopRow>, String>,
    /// The rendered bodies, by format.
    bodies: [OnceLock<Arc<[u8]>>; 3],
}

impl Answer {
    fn body(&self, format: Format) -> Result<Arc<[u8]>, ApiError> {
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

type Cell<T> = Arc<OnceCell<T>>;

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
    fn latest(&self, versions: Versions) -> Cell<Option<DateTime<Utc>>> {
        self.with_generation(versions, |g| g.latest.clone())
            .unwrap_or_default()
    }

    /// The cell that holds the answer for (`as_of`, `limit`) at `versions`.
    fn answer(&self, versions: Versions, as_of: DateTime<Utc>, limit: i64) -> Cell<Arc<Answer>> {
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
pub struct VersionChecker {
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
    /// Starts the checker thread on `pool`. It ends soon after the checker is dropped.
    pub fn start(pool: ApiPool, reachability: Arc<Reachability>) -> VersionChecker {
        let shared = Arc::new(CheckerShared {
            waiting: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("top-versions".into())
            .spawn(move || check_loop(&weak, &pool, &reachability));
        if let Err(e) = spawned {
            log::error!("could not start the /top version checker: {e}");
        }
        VersionChecker { shared }
    }

    /// The current data versions, read after this call began.
    pub async fn versions(&self) -> Result<Versions, ApiError> {
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

fn check_loop(shared: &Weak<CheckerShared>, pool: &ApiPool, reachability: &Reachability) {
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
        let result = with_read_conn(pool, reachability, read_versions).map_err(|e| CheckError {
            unavailable: matches!(e, ApiError::Unavailable(_)),
            message: e.to_string(),
        });
        for tx in batch {
            let _ = tx.send(result.clone());
        }
    }
}

/// The JSON shape of `/top`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TopDoc {
    /// The instant the ranking is for.
    pub as_of: DateTime<Utc>,
    pub data: Vec<TopRow>,
}

/// Top `limit` coins at `datetime`.
#[utoipa::path(get, path = "/top", tag = "top",
    params(
        ("limit" = u32, Query, minimum = 1, maximum = 5000, description = "how many coins, 1..=5000"),
        ("datetime" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "ISO-8601, bare date (= end of that UTC day) or unix seconds; default: the latest market timestamp"),
        ("format" = Option<crate::openapi::FormatName>, Query, description = "json (default), csv (header `Rank,Symbol,Price USD`) or ndjson"),
    ),
    responses(
        (status = 200, description = "The ranking", content((TopDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Missing or bad limit, bad datetime, unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No market data at or before datetime", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, or too many rankings being computed (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/top")]
pub async fn top(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
    info.allow(&["limit", "datetime", "format"])?;
    let format = info.format()?;
    let limit = match info.get("limit") {
        Some(v) => parse_int("limit", v, 1..=MAX_LIMIT)?,
        None => {
            return Err(ApiError::bad_request(format!(
                "limit is required (1 to {MAX_LIMIT})"
            )))
        }
    };
    let at = info
        .get("datetime")
        .map(|v| parse_instant("datetime", v, DayEnd::End))
        .transpose()?;

    let versions = state.top_versions.versions().await?;
    let tag = etag(&[
        "top",
        &format!("{}:{}", versions.0, versions.1),
        format.name(),
        &info.uri,
    ]);
    if none_match(info.if_none_match.as_deref(), &tag) {
        return Ok(Reply::not_modified(&tag));
    }
    let as_of = match at {
        Some(at) => at,
        None => state
            .top_cache
            .latest(versions)
            .get_or_try_init(|| state.read(read_latest))
            .await?
            .ok_or_else(|| ApiError::NotFound("there is no market or candle data yet".into()))?,
    };
    let answer = state
        .top_cache
        .answer(versions, as_of, limit)
        .get_or_try_init(|| async {
            // A ranking not in the cache is the expensive work the pool is guarded from.
            let permit = state.cold_permit()?;
            state.top_cache.computed.fetch_add(1, Ordering::Relaxed);
            let rows = state.read(move |conn| rank(conn, as_of, limit)).await?;
            drop(permit);
            Ok::<_, ApiError>(Arc::new(Answer {
                as_of,
                rows,
                bodies: Default::default(),
            }))
        })
        .await?
        .clone();
    Ok(Reply::shared(format, answer.body(format)?).etag(&tag))
}

fn read_versions(conn: &mut diesel::PgConnection) -> Result<Versions, ApiError> {
    let rows = RawQuery::new(VERSIONS_SQL).map_rows(conn, |row| {
        Ok((row.int8(0)?.unwrap_or(0), row.int8(1)?.unwrap_or(0)))
    })?;
    Ok(rows.first().copied().unwrap_or_default())
}

fn read_latest(conn: &mut diesel::PgConnection) -> Result<Option<DateTime<Utc>>, ApiError> {
    let rows = RawQuery::new(LATEST_SQL).map_rows(conn, |row| row.timestamptz(0))?;
    Ok(rows.into_iter().flatten().next())
}

/// The ranking at `as_of`, or why there is none.
fn rank(
    conn: &mut diesel::PgConnection,
    as_of: DateTime<Utc>,
    limit: i64,
) -> Result<Result<Vec<TopRow>, String>, ApiError> {
    let at = Bind::Text(as_of.to_rfc3339_opts(SecondsFormat::Micros, true));
    let rows = RawQuery::new(TOP_SQL)
        .bind(at.clone())
        .bind(Bind::Int8(limit))
        .bind(Bind::Int8(bucket(as_of)))
        .map_rows(conn, |row| {
            let missing = || ApiError::Internal("NULL in a /top row".into());
            Ok(TopRow {
                rank: row.int8(0)?.ok_or_else(missing)?,
                id: row.text(1)?.ok_or_else(missing)?,
                symbol: row.text(2)?.ok_or_else(missing)?,
                name: row.text(3)?.ok_or_else(missing)?,
                price_usd: row.float8(4)?.ok_or_else(missing)?,
                market_cap_usd: row.float8(5)?,
                volume_24h_usd: row.float8(6)?,
                rank_source: row.text(7)?.ok_or_else(missing)?,
            })
        })?;
    if rows.is_empty() {
        let any = RawQuery::new(ANY_SQL)
            .bind(at)
            .map_rows(conn, |row| row.bool(0))?;
        if any.first().copied().flatten() != Some(true) {
            return Ok(Err(format!(
                "no market data or ended daily candle at or before {}",
                as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )));
        }
    }
    Ok(Ok(rows))
}
