//! `GET /top`: the top coins at an instant. Each coin's latest `market` row at or before
//! the instant and not older than one day; ranked by the ranking source's rank, then
//! coins without a rank by market cap, then volume; ranks renumbered 1..n.

use crate::error::ApiError;
use crate::format::render_list;
use crate::params::{parse_instant, parse_int, DayEnd, ReqInfo};
use crate::reply::{etag, none_match, Reply};
use crate::rows::TopRow;
use crate::state::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Timestamptz};
use rocket::State;

/// The largest `limit`.
pub const MAX_LIMIT: i64 = 5000;

const TOP_SQL: &str = "\
WITH latest AS (
    SELECT DISTINCT ON (m.coin_id) m.coin_id, m.price_usd, m.market_cap_usd, m.volume_24h_usd, m.rank
    FROM market m
    WHERE m.ts <= $1 AND m.ts >= $1 - interval '1 day'
    ORDER BY m.coin_id, m.ts DESC
)
SELECT row_number() OVER (
           ORDER BY l.rank ASC NULLS LAST, l.market_cap_usd DESC NULLS LAST,
                    l.volume_24h_usd DESC NULLS LAST, l.coin_id
       ) AS rank,
       l.coin_id AS id, c.symbol, c.name, l.price_usd, l.market_cap_usd, l.volume_24h_usd
FROM latest l JOIN coins c ON c.id = l.coin_id
ORDER BY rank
LIMIT $2";

#[derive(QueryableByName)]
struct Latest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    ts: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Any {
    #[diesel(sql_type = Bool)]
    any: bool,
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
        ("limit" = u32, Query, description = "how many coins, 1..=5000"),
        ("datetime" = Option<String>, Query, description = "ISO-8601, bare date (= end of that UTC day) or unix seconds; default: the latest market timestamp"),
        ("format" = Option<String>, Query, description = "json (default), csv (header `Rank,Symbol,Price USD`) or ndjson"),
    ),
    responses(
        (status = 200, description = "The ranking", content((TopDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Missing or bad limit, bad datetime, unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No market data at or before datetime", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
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
    let if_none_match = info.if_none_match.clone();
    let seed = info.uri.clone();
    let outcome = state
        .db(move |conn| {
            conn.build_transaction()
                .read_only()
                .repeatable_read()
                .run(|conn| {
                    let version = crate::chunks::data_version(conn, "market")?;
                    let tag = etag(&["top", &version.to_string(), format.name(), &seed]);
                    if none_match(if_none_match.as_deref(), &tag) {
                        return Ok(Err(tag));
                    }
                    let as_of = match at {
                        Some(at) => at,
                        None => {
                            let latest: Latest =
                                diesel::sql_query("SELECT max(ts) AS ts FROM market")
                                    .get_result(conn)?;
                            latest.ts.ok_or_else(|| {
                                ApiError::NotFound("there is no market data yet".into())
                            })?
                        }
                    };
                    let rows: Vec<TopRow> = diesel::sql_query(TOP_SQL)
                        .bind::<Timestamptz, _>(as_of)
                        .bind::<BigInt, _>(limit)
                        .load(conn)?;
                    if rows.is_empty() {
                        let any: Any = diesel::sql_query(
                            "SELECT EXISTS (SELECT 1 FROM market WHERE ts <= $1) AS any",
                        )
                        .bind::<Timestamptz, _>(as_of)
                        .get_result(conn)?;
                        if !any.any {
                            return Err(ApiError::NotFound(format!(
                                "no market data at or before {}",
                                as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                            )));
                        }
                    }
                    Ok(Ok((as_of, rows, tag)))
                })
        })
        .await?;
    let (as_of, rows, tag) = match outcome {
        Ok(found) => found,
        Err(tag) => return Ok(Reply::not_modified(&tag)),
    };
    let mut envelope = serde_json::Map::new();
    envelope.insert(
        "as_of".into(),
        serde_json::Value::String(as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    let body = render_list(format, &rows, envelope, "data")?;
    Ok(Reply::formatted(format, body).etag(&tag))
}
