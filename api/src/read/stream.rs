//! Serving one chunk: a plan from the request (or its cursor), the statement run on a
//! blocking thread, the head (status, `ETag`, `Link`, next cursor) sent as soon as the
//! rows are read, and the body written straight from PostgreSQL's binary result into
//! JSON, CSV or NDJSON ([`super::write`]).
//!
//! A chunk is one statement (plus, for `If-None-Match` requests, a version check before
//! it): the rows after the cursor in key order, `LIMIT size + 1`, each carrying the
//! dataset's data version (an uncorrelated subquery, evaluated once, so the version and
//! the rows come from the same snapshot). Row `size` gives the next cursor and row
//! `size + 1` says whether there is more, so the `Link` header is known before the body
//! is written. A cursor from an older data version is refused with 409 only when a load
//! since then updated or deleted a row at or before its position (or left no record of
//! what it changed): the verdict (`coinflow_shared::version_changes::refusal_sql`) rides
//! in the same statement as the rows and versions, so all three come from one snapshot,
//! and the next cursor carries the version the chunk was read at.
//!
//! The body goes out whole when it is small and in pieces of [`PIECE_BYTES`] otherwise,
//! so no more than the chunk's result (at most 10 001 rows) and one piece are held.

use super::catalog::Source;
use super::query::{statements, task_state, ChunkStatements, Filters};
use super::write::{key_text, RecordWriter};
use crate::error::ApiError;
use crate::format::{csv_header, Format};
use crate::params::ReqInfo;
use crate::raw::RawRow;
use crate::reply::{etag, none_match, Reply, PIECE_BYTES};
use crate::state::{with_read_conn, AppState, LARGE_CHUNK};
use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::version_changes;
use diesel::pg::PgConnection;
use rocket::tokio::sync::{mpsc, oneshot};

/// One chunk to serve.
pub(crate) struct ChunkPlan {
    pub(crate) source: Source,
    pub(crate) filters: Filters,
    /// The sort key of the last row served; `None` for the first chunk.
    pub(crate) after: Option<Vec<String>>,
    pub(crate) size: u32,
    /// The data version the cursor was issued at, when continuing.
    pub(crate) cursor_version: Option<i64>,
    pub(crate) format: Format,
    pub(crate) if_none_match: Option<String>,
    /// What, besides the data, determines the bytes (the request URI and format).
    pub(crate) etag_seed: String,
    /// The path the `Link: rel="next"` header points at.
    pub(crate) next_path: String,
    /// An explicit `format=` to carry into the next link.
    pub(crate) format_param: Option<String>,
}

impl ChunkPlan {
    /// A plan continuing from `token`, which must be a cursor of `expected` (any served
    /// dataset when `None`).
    pub(crate) fn resume(
        codec: &CursorCodec,
        token: &str,
        expected: Option<Source>,
    ) -> Result<(Source, Cursor, Filters), ApiError> {
        let cursor = codec
            .decode(token)
            .map_err(|e| ApiError::bad_request(format!("invalid cursor: {e}")))?;
        // Signed by this server, but a leaked key must not buy unbounded chunks.
        if !(1..=crate::params::MAX_SIZE).contains(&cursor.size) {
            return Err(ApiError::bad_request(format!(
                "the cursor's size {} is outside 1..{}",
                cursor.size,
                crate::params::MAX_SIZE
            )));
        }
        let source = Source::from_name(&cursor.dataset)
            .ok_or_else(|| ApiError::bad_request("the cursor names an unknown dataset"))?;
        match expected {
            Some(e) if e != source => {
                return Err(ApiError::bad_request(format!(
                    "this cursor belongs to {}, not {}",
                    source.name(),
                    e.name()
                )))
            }
            None if source == Source::TaskResults => {
                return Err(ApiError::bad_request("this cursor belongs to GET /coins"));
            }
            _ => {}
        }
        let filters = Filters::from_map(&cursor.filters)?;
        Ok((source, cursor, filters))
    }
}

/// What decides a chunk's bytes besides the request: the source's data versions, and
/// (continuing a served dataset) the verdict on the cursor read with them.
struct Versions {
    /// The source's own data version (what cursors carry; 0 for task results).
    own: i64,
    /// Every version the bytes depend on, for the ETag.
    state: String,
    /// Why the cursor may not go on (`coinflow_shared::version_changes::refusal_sql`);
    /// `None` when it may, or when nothing is continued.
    refusal: Option<String>,
}

impl Versions {
    /// The versions riding on the first `n` columns of a row, and the verdict after
    /// them when `verdict`.
    fn from_row(row: &RawRow<'_>, n: usize, verdict: bool) -> Result<Versions, ApiError> {
        let v = (0..n)
            .map(|i| row.int8(i).map(|v| v.unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Versions {
            own: v.first().copied().unwrap_or(0),
            state: v.iter().map(i64::to_string).collect::<Vec<_>>().join(":"),
            refusal: if verdict { row.text(n)? } else { None },
        })
    }
}

/// The current versions of a source, read on their own.
fn read_versions(
    conn: &mut PgConnection,
    st: &ChunkStatements,
    width: usize,
) -> Result<Versions, ApiError> {
    match &st.versions {
        None => Ok(Versions {
            own: 0,
            state: task_state(conn)?,
            refusal: None,
        }),
        Some(q) => {
            let rows = q.map_rows(conn, |row| Versions::from_row(row, width, st.verdict))?;
            rows.into_iter()
                .next()
                .ok_or_else(|| ApiError::Internal("the version query returned no row".into()))
        }
    }
}

/// A chunk's body, ready or coming.
enum Body {
    Whole(Vec<u8>),
    Stream(mpsc::Receiver<Vec<u8>>),
}

struct Head {
    etag: String,
    version: i64,
    next_cursor: Option<String>,
    /// `None`: not modified.
    body: Option<Body>,
}

/// Serves one chunk: the head once the rows are read, the body whole or in pieces.
pub(crate) async fn serve(state: &AppState, plan: ChunkPlan) -> Result<Reply, ApiError> {
    let (head_tx, head_rx) = oneshot::channel::<Result<Head, ApiError>>();
    let format = plan.format;
    let next_path = plan.next_path.clone();
    let format_param = plan.format_param.clone();
    let pool = state.pool.clone();
    let reachability = state.reachability.clone();
    let codec = state.codec.clone();
    let permit = if plan.size > LARGE_CHUNK {
        Some(state.cold_permit()?)
    } else {
        None
    };
    rocket::tokio::task::spawn_blocking(move || {
        // Held until the last row is written.
        let _permit = permit;
        let mut head_tx = Some(head_tx);
        let result = with_read_conn(&pool, &reachability, |conn| {
            answer(conn, &codec, &plan, &mut head_tx)
        });
        if let Err(e) = result {
            match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(e));
                }
                // Headers are out: the body is cut short, which the client sees as a
                // truncated response.
                None => log::error!("chunk of {} ended early: {e}", plan.source.name()),
            }
        }
    });
    let head = head_rx
        .await
        .map_err(|_| ApiError::Internal("the chunk task ended without an answer".into()))??;
    let mut reply = match head.body {
        None => return Ok(Reply::not_modified(&head.etag)),
        Some(Body::Whole(bytes)) => Reply::formatted(format, bytes),
        Some(Body::Stream(rx)) => Reply::stream(format.content_type(), rx),
    };
    reply = reply
        .etag(&head.etag)
        .header("X-Data-Version", head.version.to_string());
    if let Some(cursor) = head.next_cursor {
        let format_part = format_param
            .map(|f| format!("&format={f}"))
            .unwrap_or_default();
        reply = reply
            .header(
                "Link",
                format!("<{next_path}?cursor={cursor}{format_part}>; rel=\"next\""),
            )
            .header("X-Next-Cursor", cursor);
    }
    Ok(reply)
}

fn send_head(head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>, head: Head) {
    if let Some(tx) = head_tx.take() {
        let _ = tx.send(Ok(head));
    }
}

/// The blocking half of [`serve`]: reads the chunk and answers `head_tx`. Safe to run
/// again on another connection as long as it failed before the head went out.
fn answer(
    conn: &mut PgConnection,
    codec: &CursorCodec,
    plan: &ChunkPlan,
    head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>,
) -> Result<(), ApiError> {
    let st = statements(
        plan.source,
        &plan.filters,
        plan.after.as_deref(),
        plan.size,
        plan.cursor_version,
    )?;
    let width = plan.source.versioned_by().len();
    let leading = st.leading(plan.source);
    // Task results have no version column; a conditional request is answered from the
    // versions alone, without reading rows.
    let mut known = None;
    if plan.source == Source::TaskResults || plan.if_none_match.is_some() {
        let versions = read_versions(conn, &st, width)?;
        if answered_not_modified(plan, &versions, head_tx) {
            return Ok(());
        }
        known = Some(versions);
    }
    let answered = st.rows.with_rows(conn, |rows| {
        let Some(first) = rows.first() else {
            return Ok(false);
        };
        // The versions of the rows' own snapshot.
        let versions = match (width, known.take()) {
            (0, Some(known)) => known,
            _ => Versions::from_row(first, width, st.verdict)?,
        };
        write_chunk(codec, plan, &versions, rows, leading, head_tx)?;
        Ok(true)
    })?;
    if !answered {
        let versions = match known {
            Some(v) => v,
            None => read_versions(conn, &st, width)?,
        };
        write_chunk(codec, plan, &versions, &[], leading, head_tx)?;
    }
    Ok(())
}

fn chunk_etag(plan: &ChunkPlan, versions: &Versions) -> String {
    etag(&[
        plan.source.name(),
        &versions.state,
        plan.format.name(),
        &plan.etag_seed,
    ])
}

/// Sends a 304 head when the request's `If-None-Match` matches the chunk at `versions`.
fn answered_not_modified(
    plan: &ChunkPlan,
    versions: &Versions,
    head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>,
) -> bool {
    let tag = chunk_etag(plan, versions);
    if !none_match(plan.if_none_match.as_deref(), &tag) {
        return false;
    }
    send_head(
        head_tx,
        Head {
            etag: tag,
            version: versions.own,
            next_cursor: None,
            body: None,
        },
    );
    true
}

/// Checks the cursor (see [`refused`]), then sends the head and writes the rows (the
/// first `size` of `rows`, whose served columns follow `leading` others; one more row
/// only says that more follow).
fn write_chunk(
    codec: &CursorCodec,
    plan: &ChunkPlan,
    versions: &Versions,
    rows: &[RawRow<'_>],
    leading: usize,
    head_tx: &mut Option<oneshot::Sender<Result<Head, ApiError>>>,
) -> Result<(), ApiError> {
    if let Some(conflict) = refused(plan, versions) {
        return Err(conflict);
    }
    if answered_not_modified(plan, versions, head_tx) {
        return Ok(());
    }
    let tag = chunk_etag(plan, versions);
    let size = plan.size as usize;
    let next_cursor = match rows.get(size.wrapping_sub(1)) {
        Some(last) if rows.len() > size => {
            let after = plan
                .source
                .key()
                .iter()
                .map(|k| last.bytes(leading + k.pos, |b| key_text(k.kind, b)))
                .collect::<Result<Vec<_>, _>>()?;
            Some(codec.encode(&Cursor {
                dataset: plan.source.name().to_string(),
                version: versions.own,
                size: plan.size,
                filters: plan.filters.to_map(),
                after,
            }))
        }
        _ => None,
    };
    let (prefix, suffix) = envelope(plan, versions.own, next_cursor.as_deref())?;
    let mut writer = RecordWriter::new(plan.source.columns(), leading);
    let mut buf = prefix;
    buf.reserve(PIECE_BYTES.min(256 * rows.len().max(1)));
    let mut stream: Option<mpsc::Sender<Vec<u8>>> = None;
    let mut head = Some(Head {
        etag: tag,
        version: versions.own,
        next_cursor,
        body: None,
    });
    for (i, row) in rows.iter().take(size).enumerate() {
        match plan.format {
            Format::Json => {
                if i > 0 {
                    buf.push(b',');
                }
                writer.json(&mut buf, row)?;
            }
            Format::Ndjson => {
                writer.json(&mut buf, row)?;
                buf.push(b'\n');
            }
            Format::Csv => writer.csv(&mut buf, row)?,
        }
        if buf.len() >= PIECE_BYTES {
            let piece = std::mem::replace(&mut buf, Vec::with_capacity(PIECE_BYTES + 4096));
            let tx = match &stream {
                Some(tx) => tx,
                None => {
                    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
                    if let Some(mut h) = head.take() {
                        h.body = Some(Body::Stream(rx));
                        send_head(head_tx, h);
                    }
                    stream.insert(tx)
                }
            };
            if tx.blocking_send(piece).is_err() {
                // The client went away.
                return Ok(());
            }
        }
    }
    buf.extend_from_slice(&suffix);
    match (stream, head) {
        (Some(tx), _) => {
            let _ = tx.blocking_send(buf);
        }
        (None, Some(mut h)) => {
            h.body = Some(Body::Whole(buf));
            send_head(head_tx, h);
        }
        (None, None) => {}
    }
    Ok(())
}

/// The 409 for a continuation the cursor's data version no longer allows: the dataset's
/// version moved since the cursor was issued and the verdict read with the rows says
/// that a load since updated or deleted a row at or before the cursor's position, or
/// that some version since has no record of what it changed
/// (`coinflow_shared::version_changes`). Task results have no versions.
fn refused(plan: &ChunkPlan, versions: &Versions) -> Option<ApiError> {
    let seen = plan.cursor_version?;
    if seen == versions.own || plan.source == Source::TaskResults {
        return None;
    }
    let why = match versions.refusal.as_deref()? {
        version_changes::REFUSED_BEHIND => {
            "a load since then updated or deleted rows at or before the cursor's position"
                .to_string()
        }
        _ => format!(
            "some version since then has no record of what it changed (made by an earlier \
             release, or older than the last {} versions), which counts as a change at or \
             before the cursor's position",
            version_changes::KEPT_VERSIONS
        ),
    };
    Some(ApiError::Conflict(format!(
        "dataset {} changed since this cursor was issued (data version {seen}, now {}): {why}. \
         Start again from the first chunk. The rule: {}.",
        plan.source.name(),
        versions.own,
        version_changes::RULE
    )))
}

/// The bytes around the rows: the JSON envelope, or the CSV header.
fn envelope(
    plan: &ChunkPlan,
    version: i64,
    next_cursor: Option<&str>,
) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    Ok(match plan.format {
        Format::Json => {
            let prefix = match plan.source {
                Source::TaskResults => "{\"coins\":[".to_string(),
                Source::Served(s) => format!(
                    "{{\"dataset\":{},\"version\":{version},\"size\":{},\"data\":[",
                    json(&s.name())?,
                    plan.size
                ),
            };
            let suffix = format!(
                "],\"next_cursor\":{},\"has_more\":{}}}",
                json(&next_cursor)?,
                next_cursor.is_some()
            );
            (prefix.into_bytes(), suffix.into_bytes())
        }
        Format::Csv => {
            let mut header = Vec::new();
            let names: Vec<&str> = plan.source.columns().iter().map(|c| c.name).collect();
            csv_header(&mut header, &names);
            (header, Vec::new())
        }
        Format::Ndjson => (Vec::new(), Vec::new()),
    })
}

/// Serialises a small value for the hand-written JSON envelope.
fn json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::internal("encode envelope", e))
}

/// Parses a chunk request that starts a scan (no cursor) or continues one.
pub(crate) fn plan_from_request(
    codec: &CursorCodec,
    info: &ReqInfo,
    source: Option<Source>,
    next_path: String,
) -> Result<ChunkPlan, ApiError> {
    let format = info.format()?;
    let format_param = info.get("format").map(|f| f.trim().to_ascii_lowercase());
    let size_param = info
        .get("size")
        .map(crate::params::parse_size)
        .transpose()?;
    if let Some(token) = info.get("cursor") {
        let (resumed, cursor, filters) = ChunkPlan::resume(codec, token, source)?;
        if let Some(size) = size_param {
            if size != cursor.size {
                return Err(ApiError::bad_request(format!(
                    "the cursor fixes size {}; leave size out or give the same",
                    cursor.size
                )));
            }
        }
        let given = Filters::from_request(resumed, info)?;
        if given != Filters::default() && given != filters {
            return Err(ApiError::bad_request(
                "the cursor fixes the filters; leave them out or give the same",
            ));
        }
        return Ok(ChunkPlan {
            source: resumed,
            filters,
            after: Some(cursor.after),
            size: cursor.size,
            cursor_version: Some(cursor.version),
            format,
            if_none_match: info.if_none_match.clone(),
            etag_seed: info.uri.clone(),
            next_path,
            format_param,
        });
    }
    let source = source.ok_or_else(|| ApiError::bad_request("cursor is required"))?;
    Ok(ChunkPlan {
        source,
        filters: Filters::from_request(source, info)?,
        after: None,
        size: size_param.unwrap_or(10),
        cursor_version: None,
        format,
        if_none_match: info.if_none_match.clone(),
        etag_seed: info.uri.clone(),
        next_path,
        format_param,
    })
}
