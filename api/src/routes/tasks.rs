//! Coin tasks. `POST /runtasks` (alias `POST /coins`) takes a list of coin ids; each
//! request gets the next task run from `task_run_seq`, and each id is accepted (known
//! coin, first time any task sees it: stored with its sorted unique exchanges), a
//! duplicate (seen before, in this task or an earlier one) or invalid (not a coin).
//! `GET /coins` reads the stored results back in task order, chunked like `/read`.
//!
//! The accept/duplicate decision is `INSERT … ON CONFLICT DO NOTHING RETURNING`, so two
//! concurrent tasks can never both accept a coin; inserts go in coin-id order so that
//! overlapping tasks cannot deadlock.

use crate::chunks::{plan_from_request, serve, Source};
use crate::error::ApiError;
use crate::params::ReqInfo;
use crate::raw::{Bind, RawQuery};
use crate::reply::Reply;
use crate::state::AppState;
use chrono::Utc;
use diesel::pg::PgConnection;
use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// The most ids one task may carry.
pub const MAX_IDS: usize = 10_000;
/// The largest body read (10 000 ids of generous length).
const MAX_BODY_MIB: u64 = 2;

/// A task as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// Coin ids.
    pub coins: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// Sorted, unique exchange ids the coin is listed on (empty when none are known).
    pub exchanges: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Duplicate {
    pub id: String,
    /// The task run that accepted the coin.
    pub first_task_run: i64,
}

/// The outcome of one task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskReport {
    pub task_run: i64,
    pub accepted: Vec<Accepted>,
    pub duplicates: Vec<Duplicate>,
    pub invalid: Vec<String>,
}

/// A record of `TASK_OUTPUT_DIR` files, in the original service's shape.
#[derive(Serialize)]
struct OutputRecord<'a> {
    id: &'a str,
    exchanges: &'a [String],
    #[serde(rename = "taskRun")]
    task_run: i64,
}

fn check_token(state: &AppState, info: &ReqInfo) -> Result<(), ApiError> {
    let Some(expected) = &state.write_token else {
        return Ok(());
    };
    let given = info
        .authorization
        .as_deref()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

struct Decision {
    id: String,
    exchanges: Vec<String>,
    accepted: bool,
}

/// Takes the task run and decides every id in one statement: the ids that are coins are
/// inserted unless a task already has them. `$1`: the unique ids. Each row carries the
/// task run; a task without a known coin gets one row of NULLs besides it.
pub const DECIDE_SQL: &str = "\
WITH run AS MATERIALIZED (SELECT nextval('task_run_seq') AS run),
req AS (SELECT DISTINCT unnest($1::text[]) AS id),
known AS (
    SELECT c.id,
           ARRAY(SELECT DISTINCT e FROM unnest(ce.exchanges) AS e ORDER BY e) AS exchanges
    FROM req
    JOIN coins c ON c.id = req.id
    LEFT JOIN coin_exchanges ce ON ce.coin_id = c.id
),
ins AS (
    INSERT INTO task_results (coin_id, exchanges, task_run)
    SELECT id, exchanges, (SELECT run FROM run) FROM known ORDER BY id
    ON CONFLICT (coin_id) DO NOTHING
    RETURNING coin_id
)
SELECT r.run, k.id, k.exchanges, (i.coin_id IS NOT NULL) AS accepted
FROM run r LEFT JOIN (known k LEFT JOIN ins i ON i.coin_id = k.id) ON true";

/// The task that accepted each of `$1`.
pub const FIRST_RUNS_SQL: &str =
    "SELECT coin_id, task_run FROM task_results WHERE coin_id = ANY($1::text[])";

/// Runs one task against the database.
fn decide(conn: &mut PgConnection, ids: &[String]) -> Result<TaskReport, ApiError> {
    let unique: Vec<String> = {
        let mut seen = HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    };
    let mut run = None;
    let mut decisions = Vec::new();
    RawQuery::new(DECIDE_SQL)
        .bind(Bind::TextArray(unique))
        .for_each_row(conn, |row| {
            run = row.int8(0)?;
            if let Some(id) = row.text(1)? {
                decisions.push(Decision {
                    id,
                    exchanges: row.text_array(2)?.unwrap_or_default(),
                    accepted: row.bool(3)?.unwrap_or(false),
                });
            }
            Ok(())
        })?;
    let run = run.ok_or_else(|| ApiError::Internal("the task took no task run".into()))?;
    let decided: HashMap<&str, &Decision> = decisions.iter().map(|d| (d.id.as_str(), d)).collect();
    // A statement after the insert sees every row a concurrent task committed first.
    let earlier: Vec<String> = decisions
        .iter()
        .filter(|d| !d.accepted)
        .map(|d| d.id.clone())
        .collect();
    let first_runs: HashMap<String, i64> = if earlier.is_empty() {
        HashMap::new()
    } else {
        RawQuery::new(FIRST_RUNS_SQL)
            .bind(Bind::TextArray(earlier))
            .map_rows(conn, |row| Ok((row.text(0)?, row.int8(1)?)))?
            .into_iter()
            .filter_map(|(coin, run)| Some((coin?, run?)))
            .collect()
    };

    let mut report = TaskReport {
        task_run: run,
        accepted: Vec::new(),
        duplicates: Vec::new(),
        invalid: Vec::new(),
    };
    let mut seen_here = HashSet::new();
    for id in ids {
        match decided.get(id.as_str()) {
            None => report.invalid.push(id.clone()),
            Some(d) => {
                let first_here = seen_here.insert(id.as_str());
                if d.accepted && first_here {
                    report.accepted.push(Accepted {
                        id: id.clone(),
                        exchanges: d.exchanges.clone(),
                    });
                } else {
                    let first_task_run = if d.accepted {
                        run
                    } else {
                        first_runs.get(id).copied().unwrap_or(run)
                    };
                    report.duplicates.push(Duplicate {
                        id: id.clone(),
                        first_task_run,
                    });
                }
            }
        }
    }
    Ok(report)
}

/// Writes the accepted records to `dir/output_file_<utc timestamp>_<task_run>.json`
/// atomically: a temporary file in the same directory, synced, then renamed.
fn write_output(dir: &Path, report: &TaskReport) -> std::io::Result<PathBuf> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let name = format!("output_file_{stamp}_{}.json", report.task_run);
    let records: Vec<OutputRecord<'_>> = report
        .accepted
        .iter()
        .map(|a| OutputRecord {
            id: &a.id,
            exchanges: &a.exchanges,
            task_run: report.task_run,
        })
        .collect();
    let bytes = serde_json::to_vec_pretty(&records)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(&name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(target)
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
    if let Some(dir) = state.task_output_dir.clone() {
        let (result, report) =
            rocket::tokio::task::spawn_blocking(move || (write_output(&dir, &report), report))
                .await?;
        match result {
            Ok(path) => log::debug!("task run {} written to {}", report.task_run, path.display()),
            // The results are stored; only the extra copy failed. An operator must act.
            Err(e) => log::error!(
                "task run {}: could not write the output file: {e}",
                report.task_run
            ),
        }
        return Ok(Json(report));
    }
    Ok(Json(report))
}

/// Runs a coin task.
#[utoipa::path(post, path = "/runtasks", tag = "tasks",
    request_body(content(
        (TaskBody = "application/json", example = json!({"coins": ["bitcoin", "ethereum"]})),
        (String = "text/csv", example = "coins\nbitcoin\nethereum\n"),
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
pub async fn run_tasks(
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
        (String = "text/csv"),
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
pub async fn post_coins(
    state: &State<AppState>,
    info: ReqInfo,
    body: Data<'_>,
) -> Result<Json<TaskReport>, ApiError> {
    run_task(state, info, body).await
}

/// The JSON shape of `GET /coins`.
#[derive(Serialize, ToSchema)]
pub struct TaskResultsDoc {
    pub coins: Vec<crate::rows::TaskRow>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Stored task results, in task order, chunked.
#[utoipa::path(get, path = "/coins", tag = "tasks",
    params(
        ("size" = Option<u32>, Query, description = "results per chunk, 1..=10000, default 10"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous chunk"),
        ("format" = Option<String>, Query, description = "json (default), csv or ndjson"),
    ),
    responses(
        (status = 200, description = "`{coins:[{id, exchanges, taskRun}], next_cursor, has_more}`", content((TaskResultsDoc = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Bad size or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[rocket::get("/coins")]
pub async fn task_results(state: &State<AppState>, info: ReqInfo) -> Result<Reply, ApiError> {
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
