//! Chunked reads of the served datasets: `GET /read/first-chunk`, `GET /read/next-chunk`
//! and `GET /read/{dataset}`. The work is done by [`crate::read`].

use crate::error::ApiError;
use crate::params::ReqInfo;
use crate::read::{plan_from_request, serve, Source};
use crate::reply::Reply;
use crate::state::AppState;
use coinflow_shared::dataset::Served;
use rocket::State;

const READ_PARAMS: [&str; 8] = [
    "dataset", "size", "cursor", "coin", "from", "to", "run", "format",
];

fn served(name: &str) -> Result<Source, ApiError> {
    Served::from_name(name).map(Source::Served).ok_or_else(|| {
        let known: Vec<&str> = Served::ALL.iter().map(|s| s.name()).collect();
        ApiError::NotFound(format!(
            "unknown dataset {name:?}; datasets: {}",
            known.join(", ")
        ))
    })
}

/// The first chunk of a dataset (`market` unless `dataset=`).
#[utoipa::path(get, path = "/read/first-chunk", tag = "read",
    params(
        ("dataset" = Option<crate::params::DatasetName>, Query, description = "the dataset, market by default"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "rows per chunk, 1..=10000, default 10"),
        ("coin" = Option<String>, Query, min_length = 1, description = "only this coin (market, daily, coin_exchanges, positions)"),
        ("from" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "from this instant, inclusive (market, daily): ISO-8601 date-time, date (YYYY-MM-DD) or unix seconds"),
        ("to" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "up to this instant, inclusive (market, daily); a bare date means its end"),
        ("run" = Option<i64>, Query, minimum = 1, description = "only this ETL run (rejects)"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv or ndjson; else the Accept header decides"),
    ),
    responses(
        (status = 200, description = "A chunk: `{dataset, version, size, data, next_cursor, has_more}` (JSON), or rows as CSV/NDJSON; `Link: <…>; rel=\"next\"` when more follow",
            content((ChunkDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Bad query value or unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, or (size over 1000) too many expensive reads at once (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/read/first-chunk")]
pub(crate) async fn first_chunk(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
    info.allow(&["dataset", "size", "coin", "from", "to", "run", "format"])?;
    let source = served(info.non_empty("dataset")?.unwrap_or("market"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let plan = plan_from_request(&state.codec, &info, Some(source), "/read/next-chunk".into())?;
    serve(state, plan).await
}

/// The chunk after a cursor (of any dataset).
#[utoipa::path(get, path = "/read/next-chunk", tag = "read",
    params(
        ("cursor" = String, Query, min_length = 1, description = "next_cursor of the previous chunk (an HMAC-signed token: only the server makes valid ones)"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "rows per chunk, 1..=10000, default 10"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv or ndjson; else the Accept header decides"),
    ),
    responses(
        (status = 200, description = "The next chunk", content((ChunkDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Missing, garbage or tampered cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale cursor: a load committed since the cursor was issued updated or deleted a row of its dataset whose key is at or before the cursor's position (its last row), or some data version since has no record of what it changed (made by an earlier release, or more than 10 000 versions ago). Rows merely inserted since never cause a 409: those ahead of the position appear in the walk, those behind it are missed (start a new walk to see every row); updates and deletes ahead of the position are read as they are now", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, or (size over 1000) too many expensive reads at once (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/read/next-chunk")]
pub(crate) async fn next_chunk(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
    info.allow(&["cursor", "size", "format"])?;
    if info.non_empty("cursor")?.is_none() {
        return Err(ApiError::bad_request(
            "cursor is required (the next_cursor of the previous chunk)",
        ));
    }
    let plan = plan_from_request(&state.codec, &info, None, "/read/next-chunk".into())?;
    serve(state, plan).await
}

/// Any served dataset in its key order: market (coin_id, ts), daily (coin_id, day),
/// coins (id), coin_exchanges (coin_id), traders (person_id), positions (person_id,
/// coin_id), rejects (run_id, file, line).
#[utoipa::path(get, path = "/read/{dataset}", tag = "read",
    params(
        ("dataset" = crate::params::DatasetName, Path, description = "the dataset"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "rows per chunk, 1..=10000, default 10"),
        ("cursor" = Option<String>, Query, min_length = 1, description = "next_cursor of the previous chunk (an HMAC-signed token: only the server makes valid ones)"),
        ("coin" = Option<String>, Query, min_length = 1, description = "only this coin (market, daily, coin_exchanges, positions)"),
        ("from" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "from this instant, inclusive (market, daily): ISO-8601 date-time, date (YYYY-MM-DD) or unix seconds"),
        ("to" = Option<String>, Query, pattern = "^((197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?|[0-9]{1,10})$", description = "up to this instant, inclusive (market, daily); a bare date means its end"),
        ("run" = Option<i64>, Query, minimum = 1, description = "only this ETL run (rejects)"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv or ndjson; else the Accept header decides"),
    ),
    responses(
        (status = 200, description = "A chunk", content((ChunkDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Bad query value, unknown parameter, tampered cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown dataset", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale cursor: a load committed since the cursor was issued updated or deleted a row of its dataset whose key is at or before the cursor's position (its last row), or some data version since has no record of what it changed (made by an earlier release, or more than 10 000 versions ago). Rows merely inserted since never cause a 409: those ahead of the position appear in the walk, those behind it are missed (start a new walk to see every row); updates and deletes ahead of the position are read as they are now", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, or (size over 1000) too many expensive reads at once (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/read/<dataset>")]
pub(crate) async fn dataset(
    state: &State<AppState>,
    dataset: &str,
    info: ReqInfo,
) -> Result<Reply, ApiError> {
    let source = served(dataset)?;
    info.allow(&READ_PARAMS[1..])?;
    let plan = plan_from_request(
        &state.codec,
        &info,
        Some(source),
        format!("/read/{}", source.name()),
    )?;
    serve(state, plan).await
}

/// The JSON shape of a chunk (documentation only; chunks are written as a stream).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ChunkDoc {
    pub(crate) dataset: String,
    /// The dataset's data version.
    pub(crate) version: i64,
    /// The chunk size.
    pub(crate) size: u32,
    /// The rows, in key order.
    pub(crate) data: Vec<serde_json::Value>,
    /// Pass to `/read/next-chunk?cursor=`; null on the last chunk.
    pub(crate) next_cursor: Option<String>,
    pub(crate) has_more: bool,
}
