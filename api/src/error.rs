//! The one error type of the API and its wire form, `application/problem+json`
//! (RFC 9457: `type`, `title`, `status`, `detail`).
//!
//! Internals never reach a client: database and I/O failures are logged here and answered
//! with a generic 500, an unreachable database with 503 and `Retry-After`, and
//! `diesel::NotFound` with 404.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use rocket::http::{ContentType, Header, Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;
use std::io::Cursor;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying when the database is unreachable.
pub(crate) const RETRY_AFTER_SECONDS: u32 = 5;
/// Seconds a client should wait before retrying when the API is busy.
pub(crate) const BUSY_RETRY_AFTER_SECONDS: u32 = 1;
const BUSY_SLUG: &str = "busy";

/// An HTTP problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// A short summary of the kind of problem.
    pub(crate) title: String,
    /// The HTTP status code.
    pub(crate) status: u16,
    /// What went wrong with this request.
    pub(crate) detail: String,
}

impl Problem {
    pub(crate) fn new(status: Status, slug: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("/problems/{slug}"),
            title: status.reason_lossy().to_string(),
            status: status.code,
            detail: detail.into(),
        }
    }

    /// A problem for a bare status (catchers): the slug is the reason phrase in kebab case.
    pub(crate) fn for_status(status: Status, detail: impl Into<String>) -> Problem {
        let slug = status
            .reason_lossy()
            .to_lowercase()
            .replace([' ', '\''], "-");
        Problem::new(status, &slug, detail)
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    MethodNotAllowed {
        detail: String,
        allowed: Vec<Method>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    /// The database cannot be reached; the string is for the log only.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The API is too busy for this request right now (expensive work at its bound, or a
    /// statement over its time or lock limit); the string is for the log only.
    #[error("busy: {0}")]
    Busy(String),
    /// The API runs but cannot serve data yet (readiness); the string says why.
    #[error("{0}")]
    NotReady(String),
    /// A bug or an unexpected failure; the string is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest(detail.into())
    }

    pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {error}"))
    }

    pub(crate) fn status(&self) -> Status {
        match self {
            ApiError::BadRequest(_) => Status::BadRequest,
            ApiError::Unauthorized => Status::Unauthorized,
            ApiError::NotFound(_) => Status::NotFound,
            ApiError::MethodNotAllowed { .. } => Status::MethodNotAllowed,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::PayloadTooLarge(_) => Status::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            ApiError::Unprocessable(_) => Status::UnprocessableEntity,
            ApiError::Unavailable(_) | ApiError::Busy(_) | ApiError::NotReady(_) => {
                Status::ServiceUnavailable
            }
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }

    /// The problem document a client sees.
    pub(crate) fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            ApiError::BadRequest(d) => Problem::new(status, "bad-request", d),
            ApiError::Unauthorized => Problem::new(
                status,
                "unauthorized",
                "this endpoint needs an `Authorization: Bearer <token>` header with the write token",
            ),
            ApiError::NotFound(d) => Problem::new(status, "not-found", d),
            ApiError::MethodNotAllowed { detail, .. } => Problem::new(status, "method-not-allowed", detail),
            ApiError::Conflict(d) => Problem::new(status, "stale-cursor", d),
            ApiError::PayloadTooLarge(d) => Problem::new(status, "payload-too-large", d),
            ApiError::UnsupportedMediaType(d) => Problem::new(status, "unsupported-media-type", d),
            ApiError::Unprocessable(d) => Problem::new(status, "unprocessable-body", d),
            ApiError::Unavailable(_) => Problem::new(
                status,
                "database-unavailable",
                format!("the database is unreachable right now; retry in {RETRY_AFTER_SECONDS} seconds"),
            ),
            ApiError::Busy(_) => Problem::new(
                status,
                BUSY_SLUG,
                format!("the server is busy with expensive requests; retry in {BUSY_RETRY_AFTER_SECONDS} second"),
            ),
            ApiError::NotReady(d) => Problem::new(status, "not-ready", d),
            ApiError::Internal(_) => Problem::new(
                status,
                "internal-error",
                "an internal error occurred; it has been logged",
            ),
        }
    }

    fn log(&self, request: &Request<'_>) {
        match self {
            ApiError::Internal(e) => log::error!("{} {}: {e}", request.method(), request.uri()),
            ApiError::Unavailable(e) => log::warn!(
                "{} {}: database unavailable: {e}",
                request.method(),
                request.uri()
            ),
            ApiError::Busy(e) => {
                log::warn!("{} {}: busy: {e}", request.method(), request.uri())
            }
            _ => {}
        }
    }
}

/// The texts PostgreSQL cancels a statement with when it ran over `statement_timeout` or
/// waited for a lock over `lock_timeout` (diesel does not expose the SQLSTATE).
fn is_timeout(message: &str) -> bool {
    message.contains("canceling statement due to statement timeout")
        || message.contains("canceling statement due to lock timeout")
}

/// The texts of errors that mean "the server or the connection went away".
fn is_connection_failure(message: &str) -> bool {
    const SIGNS: [&str; 9] = [
        "terminating connection",
        "server closed the connection",
        "connection to server",
        "could not connect",
        "no connection to the server",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "connection refused",
    ];
    let lower = message.to_lowercase();
    SIGNS.iter().any(|s| lower.contains(s))
}

impl From<DieselError> for ApiError {
    fn from(e: DieselError) -> ApiError {
        match e {
            DieselError::NotFound => ApiError::NotFound("no such resource".into()),
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => ApiError::Unavailable(info.message().to_string()),
            DieselError::DatabaseError(_, ref info) if is_connection_failure(info.message()) => {
                ApiError::Unavailable(info.message().to_string())
            }
            DieselError::DatabaseError(_, ref info) if is_timeout(info.message()) => {
                ApiError::Busy(info.message().to_string())
            }
            DieselError::BrokenTransactionManager => {
                ApiError::Unavailable("broken transaction manager".into())
            }
            other => ApiError::Internal(format!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(e: diesel::r2d2::PoolError) -> ApiError {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<diesel::ConnectionError> for ApiError {
    fn from(e: diesel::ConnectionError) -> ApiError {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<rocket::tokio::task::JoinError> for ApiError {
    fn from(e: rocket::tokio::task::JoinError) -> ApiError {
        ApiError::internal("blocking task", e)
    }
}

/// `application/problem+json`.
pub(crate) fn problem_json() -> ContentType {
    ContentType::new("application", "problem+json")
}

/// The response for `problem`, with the headers its status calls for.
pub(crate) fn problem_response<'r>(problem: &Problem, allowed: &[Method]) -> Response<'r> {
    let body = serde_json::to_string(problem).unwrap_or_else(|_| "{}".into());
    let mut response = Response::build();
    response
        .status(Status::from_code(problem.status).unwrap_or(Status::InternalServerError))
        .header(problem_json())
        .sized_body(body.len(), Cursor::new(body));
    match problem.status {
        503 => {
            let seconds = if problem.kind.ends_with(BUSY_SLUG) {
                BUSY_RETRY_AFTER_SECONDS
            } else {
                RETRY_AFTER_SECONDS
            };
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        401 => {
            response.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        405 => {
            let allow: Vec<String> = allowed.iter().map(|m| m.as_str().to_string()).collect();
            response.header(Header::new("Allow", allow.join(", ")));
        }
        _ => {}
    }
    response.finalize()
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        self.log(request);
        let allowed = match &self {
            ApiError::MethodNotAllowed { allowed, .. } => allowed.clone(),
            _ => Vec::new(),
        };
        Ok(problem_response(&self.problem(), &allowed))
    }
}

impl<'r> Responder<'r, 'static> for Problem {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(problem_response(&self, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_from_diesel_is_a_404() {
        assert_eq!(
            ApiError::from(DieselError::NotFound).status(),
            Status::NotFound
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal("query", "relation \"secret_table\" does not exist");
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret_table"));
    }

    #[test]
    fn for_status_names_the_problem_after_the_reason() {
        let p = Problem::for_status(Status::UnsupportedMediaType, "x");
        assert_eq!(p.kind, "/problems/unsupported-media-type");
        assert_eq!(p.title, "Unsupported Media Type");
    }
}
