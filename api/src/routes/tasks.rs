//! Coin tasks. `POST /runtasks` (alias `POST /coins`) takes a list of coin ids; each
//! request gets the next task run from `task_run_seq`, and each id is accepted (known
//! coin, first time any task sees it: stored with its sorted unique exchanges), a
//! duplicate (seen before, in this task or an earlier one) or invalid (not a coin).
//! `GET /coins` reads the stored results back in task order, chunked like `/read`.
//!
//! This module reads and checks the requests (token, content type, body) and answers;
//! the decision itself is `crate::tasks`'s.

use crate::error::ApiError;
use crate::params::ReqInfo;
use crate::read::{plan_from_request, serve, Source};
use crate::reply::Reply;
use crate::state::AppState;
use crate::tasks::{decide, TaskReport};
use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most ids one task may carry.
pub(crate) const MAX_IDS: usize = 10_000;
/// The largest body read (10 000 ids of generous length).
const MAX_BODY_MIB: u64 = 2;

/// A task as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskBody {
    /// Coin ids (at most 10 000; more is a 413). An empty id is listed as invalid.
    #[schema(max_items = 10000)]
    pub(crate) coins: Vec<String>,
}

/// A task as CSV (documentation only): the header line `coins` (any case), then one coin
/// id per line, bare or quoted; LF or CRLF; blank lines are skipped; a quoted empty id
/// `""` is listed as invalid, like `""` in JSON.
#[derive(ToSchema)]
#[schema(
    value_type = String,
    pattern = r#"^[Cc][Oo][Ii][Nn][Ss](\r?\n[^\r\n",]*)*(\r?\n)?$"#,
    example = "coins\nbitcoin\nethereum\n"
)]
#[allow(dead_code)]
pub(crate) struct CsvTaskBody(String);

fn check_token(state: &AppState, info: &ReqInfo) -> Result<(), ApiError> {
    let Some(expected) = &state.write_token else {
        return Ok(());
    };
    match info.authorization.as_deref().and_then(bearer_token) {
        Some(token) if tokens_match(token, expected) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme name is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares SHA-256 digests byte by byte without an early exit, so that neither the
/// position of the first difference nor the token's length shows in the timing.
fn tokens_match(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Csv,
}

fn body_kind(content_type: Option<&ContentType>) -> Result<BodyKind, ApiError> {
    let refuse = |what: String| {
        ApiError::UnsupportedMediaType(format!(
            "send the task as application/json {{\"coins\":[…]}} or text/csv (a `coins` header line, one id per line); got {what}"
        ))
    };
    let Some(ct) = content_type else {
        return Err(refuse("no Content-Type".into()));
    };
    let kind = match (
        ct.top().as_str().to_ascii_lowercase().as_str(),
        ct.sub().as_str().to_ascii_lowercase().as_str(),
    ) {
        ("application", "json") => BodyKind::Json,
        ("text", "csv") => BodyKind::Csv,
        _ => return Err(refuse(ct.to_string())),
    };
    if let Some(charset) = ct.param("charset") {
        let charset = charset.trim_matches('"').to_ascii_lowercase();
        if !matches!(charset.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
            return Err(refuse(format!("charset {charset} (only UTF-8 is read)")));
        }
    }
    Ok(kind)
}

/// The ids of a JSON body: syntax errors are 400, a wrong shape 422.
fn parse_json(bytes: &[u8]) -> Result<Vec<String>, ApiError> {
    match serde_json::from_slice::<TaskBody>(bytes) {
        Ok(body) => Ok(body.coins),
        Err(e) if e.is_data() => Err(ApiError::Unprocessable(format!(
            "the JSON body must be {{\"coins\": [\"<coin id>\", …]}}: {e}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// The ids of a CSV body: a `coins` header line, then one id per line (LF or CRLF,
/// trailing newline optional, blank lines ignored, RFC 4180 quotes allowed).
fn parse_csv(bytes: &[u8]) -> Result<Vec<String>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("the CSV body is not valid UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header = lines.next().unwrap_or_default();
    if unquote(header.trim()).map(|h| h.trim().eq_ignore_ascii_case("coins")) != Some(true) {
        return Err(ApiError::bad_request(format!(
            "the CSV body must start with the header line `coins`, not {:?}",
            header.chars().take(80).collect::<String>()
        )));
    }
    let mut ids = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let id = unquote(line).ok_or_else(|| {
            ApiError::bad_request(format!(
                "CSV line {}: one coin id per line, got {line:?}",
                n + 2
            ))
        })?;
        ids.push(id);
    }
    Ok(ids)
}

/// One CSV field: bare (no comma or quote) or quoted with doubled inner quotes.
fn unquote(field: &str) -> Option<String> {
    if let Some(inner) = field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            // Inside quotes a quote only appears doubled.
            if c == '"' && chars.next() != Some('"') {
                return None;
            }
            out.push(c);
        }
        return Some(out);
    }
    (!field.contains([',', '"'])).then(|| field.to_string())
}

async fn run_task(
    state: &AppState,
    info: ReqInfo,
    body: Data<'_>,
) -> Result<Json<TaskReport>, ApiError> {
    info.allow(&[])?;
    check_token(state, &info)?;
    let kind = body_kind(info.content_type.as_ref())?;
    let bytes = body
        .open(MAX_BODY_MIB.mebibytes())
        .into_bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body is larger than {MAX_BODY_MIB} MiB; send at most {MAX_IDS} ids per task"
        )));
    }
    let ids = match kind {
        BodyKind::Json => parse_json(&bytes)?,
        BodyKind::Csv => parse_csv(&bytes)?,
    };
    if ids.len() > MAX_IDS {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} ids in one task; the limit is {MAX_IDS}",
            ids.len()
        )));
    }
    let ids: Vec<String> = ids.into_iter().map(|id| id.trim().to_string()).collect();
    let report = state.db(move |conn| decide(conn, &ids)).await?;
    log::info!(
        "task run {}: {} accepted, {} duplicate, {} invalid",
        report.task_run,
        report.accepted.len(),
        report.duplicates.len(),
        report.invalid.len()
    );
    let Some(files) = state.task_files.clone() else {
        return Ok(Json(report));
    };
    let (result, report) =
        rocket::tokio::task::spawn_blocking(move || (files.write(&report), report)).await?;
    match result {
        Ok(Some(path)) => log::debug!("task run {} written to {}", report.task_run, path.display()),
        Ok(None) => {}
        // The results are stored; only the extra copy failed. An operator must act.
        Err(e) => log::error!(
            "task run {}: could not write the output file: {e}",
            report.task_run
        ),
    }
    Ok(Json(report))
}

/// Runs a coin task.
#[utoipa::path(post, path = "/runtasks", tag = "tasks",
    request_body(content(
        (TaskBody = "application/json", example = json!({"coins": ["bitcoin", "ethereum"]})),
        (CsvTaskBody = "text/csv"),
    )),
    responses(
        (status = 200, description = "What became of each id", body = TaskReport),
        (status = 400, description = "Unparsable body", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "API_WRITE_TOKEN is set and the bearer token is missing or wrong", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 10 000 ids", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor CSV", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::post("/runtasks", data = "<body>")]
pub(crate) async fn run_tasks(
    state: &State<AppState>,
    info: ReqInfo,
    body: Data<'_>,
) -> Result<Json<TaskReport>, ApiError> {
    run_task(state, info, body).await
}

/// Runs a coin task (alias of `POST /runtasks`).
#[utoipa::path(post, path = "/coins", tag = "tasks",
    request_body(content(
        (TaskBody = "application/json"),
        (CsvTaskBody = "text/csv"),
    )),
    responses(
        (status = 200, description = "What became of each id", body = TaskReport),
        (status = 400, description = "Unparsable body", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 10 000 ids", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor CSV", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::post("/coins", data = "<body>")]
pub(crate) async fn post_coins(
    state: &State<AppState>,
    info: ReqInfo,
    body: Data<'_>,
) -> Result<Json<TaskReport>, ApiError> {
    run_task(state, info, body).await
}

/// The JSON shape of `GET /coins`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TaskResultsDoc {
    pub(crate) coins: Vec<crate::rows::TaskRow>,
    pub(crate) next_cursor: Option<String>,
    pub(crate) has_more: bool,
}

/// Stored task results, in task order, chunked.
#[utoipa::path(get, path = "/coins", tag = "tasks",
    params(
        ("size" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "results per chunk, 1..=10000, default 10"),
        ("cursor" = Option<String>, Query, min_length = 1, description = "next_cursor of the previous chunk (an HMAC-signed token: only the server makes valid ones)"),
        ("format" = Option<crate::params::FormatName>, Query, description = "json (default), csv or ndjson; else the Accept header decides"),
    ),
    responses(
        (status = 200, description = "`{coins:[{id, exchanges, taskRun}], next_cursor, has_more}`", content((TaskResultsDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Bad size or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/coins")]
pub(crate) async fn task_results(
    state: &State<AppState>,
    info: ReqInfo,
) -> Result<Reply, ApiError> {
    info.allow(&["size", "cursor", "format"])?;
    let plan = plan_from_request(
        &state.codec,
        &info,
        Some(Source::TaskResults),
        "/coins".into(),
    )?;
    serve(state, plan).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_bodies_in_every_line_ending() {
        let want = vec!["bitcoin".to_string(), "ethereum".to_string()];
        for body in [
            "coins\nbitcoin\nethereum",
            "coins\nbitcoin\nethereum\n",
            "coins\r\nbitcoin\r\nethereum\r\n",
            "\u{feff}Coins\r\n\"bitcoin\"\r\nethereum",
            "coins\n\nbitcoin\n\nethereum\n\n",
        ] {
            assert_eq!(
                parse_csv(body.as_bytes()).ok(),
                Some(want.clone()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn csv_without_the_header_or_with_two_columns_is_refused() {
        assert!(parse_csv(b"bitcoin\nethereum").is_err());
        assert!(parse_csv(b"coins\nbitcoin,ethereum").is_err());
        assert!(parse_csv(b"id\nbitcoin").is_err());
        assert!(parse_csv(b"coins\n\xff\xfe").is_err());
    }

    #[test]
    fn json_syntax_errors_and_shape_errors_differ() {
        assert!(matches!(parse_json(b"{\"coins\":[\"a\"]}"), Ok(v) if v == ["a"]));
        assert!(matches!(
            parse_json(b"{\"coins\":["),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json(b"not json"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json(b"{\"coins\":\"a\"}"),
            Err(ApiError::Unprocessable(_))
        ));
        assert!(matches!(
            parse_json(b"{\"ids\":[]}"),
            Err(ApiError::Unprocessable(_))
        ));
        assert!(matches!(
            parse_json(b"[1,2]"),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "bEaReR   t0k ",
            "Bearer\tt0k",
        ] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn tokens_match_only_when_equal_whatever_their_lengths() {
        assert!(tokens_match("s3cret", "s3cret"));
        for other in ["s3cre", "s3cret!", "S3cret", "", "s3cret s3cret"] {
            assert!(!tokens_match(other, "s3cret"), "{other:?}");
        }
    }

    #[test]
    fn content_types_with_charsets() {
        let ct = |s: &str| s.parse::<ContentType>().ok();
        assert_eq!(
            body_kind(ct("application/json").as_ref()).ok(),
            Some(BodyKind::Json)
        );
        assert_eq!(
            body_kind(ct("text/csv; charset=utf-8").as_ref()).ok(),
            Some(BodyKind::Csv)
        );
        assert_eq!(
            body_kind(ct("text/csv;charset=\"UTF-8\"").as_ref()).ok(),
            Some(BodyKind::Csv)
        );
        assert!(body_kind(ct("text/plain").as_ref()).is_err());
        assert!(body_kind(ct("text/csv; charset=latin1").as_ref()).is_err());
        assert!(body_kind(None).is_err());
    }
}
