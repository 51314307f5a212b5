//! Health: `live` says the process answers; `ready` says it can serve data: the database
//! is reachable, every migration is applied and at least one ETL run finished (`ok` or
//! `partial`).

use crate::error::ApiError;
use crate::params::ReqInfo;
use crate::state::AppState;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `live` or `ready`.
    pub(crate) status: &'static str,
}

/// The process is alive (no database access).
#[utoipa::path(get, path = "/health/live", tag = "health", responses(
    (status = 200, description = "Alive", body = Health),
))]
#[rocket::get("/health/live")]
pub(crate) fn live(info: ReqInfo) -> Result<Json<Health>, ApiError> {
    info.allow(&[])?;
    Ok(Json(Health { status: "live" }))
}

#[derive(QueryableByName)]
struct Finished {
    #[diesel(sql_type = Bool)]
    finished: bool,
}

/// The API can serve data.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "Database unreachable, migrations pending or no finished ETL run yet",
        body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[rocket::get("/health/ready")]
pub(crate) async fn ready(
    state: &State<AppState>,
    info: ReqInfo,
) -> Result<Json<Health>, ApiError> {
    info.allow(&[])?;
    let not_ready = |why: &str| ApiError::NotReady(format!("not ready: {why}"));
    let (migrated, finished) = state
        .read(|conn| {
            let migrated = match coinflow_shared::db::migrations_applied(conn) {
                Ok(migrated) => migrated,
                // The check's own error does not say whether the connection is gone: a
                // plain statement does (and a dead connection then leaves the pool).
                Err(_) => {
                    conn.batch_execute("SELECT 1")?;
                    false
                }
            };
            if !migrated {
                return Ok((false, false));
            }
            let row: Finished = diesel::sql_query(
                "SELECT EXISTS (SELECT 1 FROM etl_runs WHERE status IN ('ok', 'partial')) AS finished",
            )
            .get_result(conn)?;
            Ok((true, row.finished))
        })
        .await?;
    if !migrated {
        return Err(not_ready("migrations are not all applied"));
    }
    if !finished {
        return Err(not_ready("no ETL run has finished yet"));
    }
    Ok(Json(Health { status: "ready" }))
}
