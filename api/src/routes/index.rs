//! `GET /`: a liveness answer in the original service's shape.

use crate::error::ApiError;
use crate::params::ReqInfo;
use rocket::serde::json::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusOk {
    /// Always `OK`.
    pub(crate) status: &'static str,
}

/// The API is up.
#[utoipa::path(get, path = "/", tag = "health", responses(
    (status = 200, description = "The API is up", body = StatusOk, example = json!({"status": "OK"})),
    (status = 400, description = "Unknown query parameter", body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[rocket::get("/")]
pub(crate) fn index(info: ReqInfo) -> Result<Json<StatusOk>, ApiError> {
    info.allow(&[])?;
    Ok(Json(StatusOk { status: "OK" }))
}
