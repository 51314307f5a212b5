//! `GET /exchanges/stats`: per exchange, the distinct coins tasks asked for and the median
//! task run, computed from the task results at request time.

use crate::error::ApiError;
use crate::format::render_list;
use crate::params::ReqInfo;
use crate::reply::{etag, none_match, Reply};
use crate::rows::ExchangeStatRow;
use crate::state::AppState;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use rocket::State;

const STATS_SQL: &str = "\
SELECT e.exchange,
       count(DISTINCT t.coin_id) AS coins,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.task_run) AS median_task_run
FROM task_results t
CROSS JOIN LATERAL unnest(t.exchanges) AS e(exchange)
WHERE $1::text IS NULL OR strpos(lower(e.exchange), lower($1::text)) > 0
GROUP BY e.exchange
ORDER BY e.exchange";

/// The JSON shape of `/exchanges/stats`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ExchangeStatsDoc {
    pub(crate) data: Vec<ExchangeStatRow>,
}

/// Exchange statistics over the task results.
#[utoipa::path(get, path = "/exchanges/stats", tag = "tasks",
    params(
        ("contains" = Option<String>, Query, description = "only exchange ids containing this text (case-insensitive)"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv or ndjson; else the Accept header decides"),
    ),
    responses(
        (status = 200, description = "`{data:[{exchange, coins, median_task_run}]}` by exchange id", content((ExchangeStatsDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Unknown parameter or bad format", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/exchanges/stats")]
pub(crate) async fn stats(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
    info.allow(&["contains", "format"])?;
    let format = info.format()?;
    let contains = info
        .get("contains")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let if_none_match = info.if_none_match.clone();
    let seed = info.uri.clone();
    let outcome = state
        .db(move |conn| {
            conn.build_transaction()
                .read_only()
                .repeatable_read()
                .run(|conn| {
                    let tasks = crate::read::task_state(conn)?;
                    let tag = etag(&["exchange-stats", &tasks, format.name(), &seed]);
                    if none_match(if_none_match.as_deref(), &tag) {
                        return Ok(Err(tag));
                    }
                    let rows: Vec<ExchangeStatRow> = diesel::sql_query(STATS_SQL)
                        .bind::<Nullable<Text>, _>(contains)
                        .load(conn)?;
                    Ok::<_, ApiError>(Ok((rows, tag)))
                })
        })
        .await?;
    match outcome {
        Err(tag) => Ok(Reply::not_modified(&tag)),
        Ok((rows, tag)) => {
            let body = render_list(format, &rows, serde_json::Map::new(), "data")?;
            Ok(Reply::formatted(format, body).etag(&tag))
        }
    }
}
