//! `GET /runs` and `GET /runs/{id}`: the ETL ledger, with per-file counts.

use crate::error::ApiError;
use crate::params::{parse_int, ReqInfo};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use coinflow_shared::models::{Counts, EtlFile, EtlRun};
use coinflow_shared::schema::{etl_files, etl_runs};
use diesel::prelude::*;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

/// One input file of a run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileView {
    pub(crate) path: String,
    pub(crate) dataset: Option<String>,
    /// `loaded`, `set_aside` or `unrecognized`.
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) sha256: String,
    pub(crate) size_bytes: i64,
    pub(crate) seconds: f64,
    #[serde(flatten)]
    pub(crate) counts: Counts,
}

/// An ETL run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunView {
    pub(crate) id: i64,
    /// `running`, `ok`, `partial`, `failed` or `abandoned`.
    pub(crate) status: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) host: String,
    pub(crate) data_dir: String,
    pub(crate) message: Option<String>,
    pub(crate) totals: Counts,
    pub(crate) files: Vec<FileView>,
    /// The run's full summary (only on `/runs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) summary: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunList {
    pub(crate) data: Vec<RunView>,
}

fn view(run: EtlRun, files: Vec<EtlFile>, with_summary: bool) -> RunView {
    let mut totals = Counts::default();
    let files = files
        .into_iter()
        .map(|f| {
            totals.add(&f.counts);
            FileView {
                path: f.path,
                dataset: f.dataset,
                status: f.status.to_string(),
                reason: f.reason,
                sha256: f.sha256,
                size_bytes: f.size_bytes,
                seconds: f.seconds,
                counts: f.counts,
            }
        })
        .collect();
    RunView {
        id: run.id,
        status: run.status.to_string(),
        started_at: run.started_at,
        finished_at: run.finished_at,
        host: run.host,
        data_dir: run.data_dir,
        message: run.message,
        totals,
        files,
        summary: if with_summary { run.summary } else { None },
    }
}

fn files_of(conn: &mut PgConnection, run_ids: &[i64]) -> QueryResult<Vec<EtlFile>> {
    etl_files::table
        .filter(etl_files::run_id.eq_any(run_ids))
        .order((etl_files::run_id, etl_files::id))
        .select(EtlFile::as_select())
        .load(conn)
}

/// ETL runs, newest first.
#[utoipa::path(get, path = "/runs", tag = "runs",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "how many runs, 1..=1000, default 100")),
    responses(
        (status = 200, description = "Runs with their files and counts", body = RunList),
        (status = 400, description = "Bad limit or unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/runs")]
pub(crate) async fn list(
    state: &State<AppState>,
    info: ReqInfo,
) -> Result<Json<RunList>, ApiError> {
    info.allow(&["limit"])?;
    let limit = info
        .get("limit")
        .map(|v| parse_int("limit", v, 1..=1000))
        .transpose()?
        .unwrap_or(100);
    let data = state
        .db(move |conn| {
            let runs: Vec<EtlRun> = etl_runs::table
                .order(etl_runs::id.desc())
                .limit(limit)
                .select(EtlRun::as_select())
                .load(conn)?;
            let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
            let mut files = files_of(conn, &ids)?;
            Ok(runs
                .into_iter()
                .map(|run| {
                    let (mine, rest): (Vec<EtlFile>, Vec<EtlFile>) =
                        files.drain(..).partition(|f| f.run_id == run.id);
                    files = rest;
                    view(run, mine, false)
                })
                .collect())
        })
        .await?;
    Ok(Json(RunList { data }))
}

/// One ETL run with its summary.
#[utoipa::path(get, path = "/runs/{id}", tag = "runs",
    params(("id" = i64, Path, minimum = 1, description = "run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, description = "The id is not a number", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/runs/<id>")]
pub(crate) async fn one(
    state: &State<AppState>,
    id: &str,
    info: ReqInfo,
) -> Result<Json<RunView>, ApiError> {
    info.allow(&[])?;
    let id = parse_int("run id", id, 1..=i64::MAX)?;
    let run = state
        .db(move |conn| {
            let run: EtlRun = etl_runs::table
                .find(id)
                .select(EtlRun::as_select())
                .first(conn)
                .map_err(|e| match e {
                    diesel::result::Error::NotFound => {
                        ApiError::NotFound(format!("there is no ETL run {id}"))
                    }
                    other => other.into(),
                })?;
            let files = files_of(conn, &[id])?;
            Ok(view(run, files, true))
        })
        .await?;
    Ok(Json(run))
}
