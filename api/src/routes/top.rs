//! `GET /top`: the top coins at an instant. Each coin's latest `market` row at or before
//! the instant and not older than one day, or for a coin without one, its latest daily
//! candle whose day ENDED by the instant and not longer than a day ago (close as price);
//! ranked by the ranking source's rank, then coins without a rank by market cap, then
//! volume; ranks renumbered 1..n.
//!
//! A ranking reads `top_slots`, which the ETL maintains (see [`TOP_SQL`]): about `limit`
//! index entries per request, at any instant. Answers are cached in the process
//! (`crate::top_cache`, keyed by the data versions of top and coins); a ranking not in
//! the cache takes a permit of the API's bound on expensive work first (503 when none is
//! free).

use crate::error::ApiError;
use crate::params::{parse_instant, parse_int, DayEnd, ReqInfo};
use crate::raw::{Bind, RawQuery};
use crate::reply::{etag, none_match, Reply};
use crate::rows::TopRow;
use crate::state::AppState;
use crate::top_cache::Answer;
use chrono::{DateTime, SecondsFormat, Utc};
use rocket::State;
use std::sync::Arc;

/// The largest `limit`.
pub const MAX_LIMIT: i64 = 5000;
/// The default instant: the latest market snapshot, or when there is none, the end of the
/// latest daily candle.
const LATEST_SQL: &str = "SELECT coalesce((SELECT max(ts) FROM market), \
(SELECT max(period_start) + interval '1 day' FROM candles WHERE interval = '1d')) AS ts";

/// `$1`: the instant, `$2`: the limit, `$3`: the instant's hour bucket. `top_slots` holds
/// each coin's validity intervals (see its migration), once per hour bucket they
/// overlap: the coins valid at the instant are those of its bucket whose interval holds
/// it, and the index walks the bucket in rank order, so this reads about `limit` index
/// entries however many coins there are.
pub(crate) const TOP_SQL: &str = "\
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
OR EXISTS (SELECT 1 FROM candles WHERE interval = '1d' AND period_start <= $1::timestamptz - interval '1 day')";

/// The hour bucket of `top_slots` that holds `at` (hours since the Unix epoch).
pub(crate) fn bucket(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// The JSON shape of `/top`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TopDoc {
    /// The instant the ranking is for.
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) data: Vec<TopRow>,
}

/// Top `limit` coins at `datetime`.
#[utoipa::path(get, path = "/top", tag = "top",
    params(
        ("limit" = u32, Query, minimum = 1, maximum = 5000, description = "how many coins, 1..=5000"),
        ("datetime" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "ISO-8601, bare date (= end of that UTC day) or unix seconds; default: the latest market timestamp"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv (header `Rank,Symbol,Price USD`) or ndjson"),
    ),
    responses(
        (status = 200, description = "The ranking", content((TopDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Missing or bad limit, bad datetime, unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No market data at or before datetime", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, or too many rankings being computed (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/top")]
pub(crate) async fn top(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
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
            state.top_cache.count_computation();
            let rows = state.read(move |conn| rank(conn, as_of, limit)).await?;
            drop(permit);
            Ok::<_, ApiError>(Arc::new(Answer::new(as_of, rows)))
        })
        .await?
        .clone();
    Ok(Reply::shared(format, answer.body(format)?).etag(&tag))
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
