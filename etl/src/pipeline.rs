//! The run: wait for the database, migrate, take the advisory lock, then extract →
//! validate → load each new file in load order, refresh the derived tables and report,
//! with all data and `etl_files` rows committed in one transaction. Also `check`, the
//! same validation without a database.

use crate::extract::{self, ExtractError, Header, InputFile, Records};
use crate::load::{self, NewEtlFile};
use crate::refresh::{self, Changes, RefreshError};
use crate::report::{FileReport, Progress, RunReport};
use crate::rows::{Batch, Rejection};
use crate::validate::{Known, Validator};
use crate::values::DateOrder;
use coinflow_shared::dataset::{Dataset, Detected};
use coinflow_shared::db::{self, DbError};
use coinflow_shared::schema::{coin_aliases, coins, people};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Rows validated between two COPY flushes to staging.
const FLUSH_ROWS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub database_url: String,
    pub db_wait: Duration,
    pub data_dir: PathBuf,
    pub no_wait_lock: bool,
    pub force: Vec<PathBuf>,
    pub max_reject_ratio: f64,
    pub rank_tolerance: Duration,
    pub date_order: Option<DateOrder>,
}

impl RunOptions {
    pub fn new(database_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            database_url: database_url.into(),
            db_wait: Duration::from_secs(60),
            data_dir: data_dir.into(),
            no_wait_lock: false,
            force: Vec::new(),
            max_reject_ratio: 0.05,
            rank_tolerance: Duration::from_secs(60),
            date_order: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum EtlError {
    #[error("{0}")]
    Unreachable(DbError),
    #[error("another ETL run holds the advisory lock (--no-wait-lock given)")]
    Locked,
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("{0}")]
    Migration(DbError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error("data directory {0} does not exist or is not a directory")]
    NoDataDir(PathBuf),
}

impl From<DbError> for EtlError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unreachable { .. } => EtlError::Unreachable(e),
            DbError::Query(q) => EtlError::Db(q),
            DbError::Migration(_) => EtlError::Migration(e),
        }
    }
}

impl EtlError {
    /// The process exit code (SPEC §5).
    pub fn exit_code(&self) -> i32 {
        match self {
            EtlError::Unreachable(_) => 3,
            EtlError::Locked => 4,
            _ => 1,
        }
    }
}

/// A file to process, once its header is read.
struct Planned {
    file: InputFile,
    kind: PlanKind,
}

enum PlanKind {
    Dataset {
        detected: Detected,
        header: Vec<String>,
    },
    Unrecognized {
        reason: String,
        header: Option<String>,
    },
}

impl Planned {
    fn order(&self) -> ((u8, u8), &str) {
        let rank = match &self.kind {
            PlanKind::Dataset { detected, .. } => detected.dataset.load_rank(),
            PlanKind::Unrecognized { .. } => (9, 0),
        };
        (rank, self.file.name.as_str())
    }
}

fn plan(file: InputFile) -> Result<Planned, ExtractError> {
    let mut records = Records::open(&file.path)?;
    let kind = match records.header()? {
        Header::Empty => PlanKind::Unrecognized {
            reason: "empty file: no header".into(),
            header: None,
        },
        Header::NotUtf8 => PlanKind::Unrecognized {
            reason: "header is not valid UTF-8".into(),
            header: None,
        },
        Header::Cells(cells) => match extract::detect(&cells, &file.path) {
            Some(detected) => PlanKind::Dataset {
                detected,
                header: cells,
            },
            None => PlanKind::Unrecognized {
                reason: format!("header fits no dataset: {}", cells.join(",")),
                header: Some(cells.join(",")),
            },
        },
    };
    Ok(Planned { file, kind })
}

/// Runs the ETL against the database. Returns the report of a finished run (status `ok`
/// or `partial`); errors map to exit codes through [`EtlError::exit_code`].
pub fn run(opts: &RunOptions) -> Result<RunReport, EtlError> {
    if !opts.data_dir.is_dir() {
        return Err(EtlError::NoDataDir(opts.data_dir.clone()));
    }
    let started = Instant::now();
    let mut conn = db::connect_with_wait(&opts.database_url, opts.db_wait)?;
    let applied = db::run_migrations(&mut conn)?;
    if applied > 0 {
        log::info!("applied {applied} migration(s)");
    }
    if !db::try_etl_lock(&mut conn)? {
        if opts.no_wait_lock {
            return Err(EtlError::Locked);
        }
        log::info!("another ETL run holds the lock; waiting for it to finish");
        db::etl_lock(&mut conn)?;
    }
    let abandoned = load::mark_abandoned(&mut conn)?;
    if abandoned > 0 {
        log::warn!("marked {abandoned} run(s) left running by an ended process as abandoned");
    }
    let data_dir = opts.data_dir.display().to_string();
    let run_id = load::start_run(&mut conn, &data_dir)?;
    log::info!("run {run_id} started on {data_dir}");
    let outcome = conn.transaction(|conn| process(conn, run_id, opts, started));
    match outcome {
        Ok(report) => {
            log::info!(
                "run {run_id} {}: {} read, {} loaded, {} duplicate, {} updated, {} rejected in {:.2}s",
                report.status,
                report.totals.read,
                report.totals.loaded,
                report.totals.duplicate,
                report.totals.updated,
                report.totals.rejected,
                report.seconds
            );
            Ok(report)
        }
        Err(e) => {
            log::error!("run {run_id} failed, nothing from it was committed: {e}");
            let message = e.to_string();
            let summary = serde_json::json!({ "error": message });
            if let Err(ledger) =
                load::finish_run(&mut conn, run_id, "failed", Some(&message), &summary)
            {
                log::error!("could not mark run {run_id} failed: {ledger}");
            }
            Err(e)
        }
    }
}

fn known_from_db(conn: &mut PgConnection) -> QueryResult<Known> {
    let mut known = Known::default();
    let all: Vec<(String, String, String)> = coins::table
        .select((coins::id, coins::symbol, coins::name))
        .load(conn)?;
    for (id, symbol, name) in &all {
        known.coins.insert_known(id, symbol, name);
    }
    let aliases: Vec<(String, String)> = coin_aliases::table
        .select((coin_aliases::external_id, coin_aliases::coin_id))
        .load(conn)?;
    for (external, coin) in &aliases {
        known.coins.insert_alias(external, coin);
    }
    known.people = people::table
        .select(people::person_id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    Ok(known)
}

fn is_forced(opts: &RunOptions, file: &InputFile) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let target = canonical(&file.path);
    opts.force
        .iter()
        .any(|f| canonical(f) == target || f.as_os_str() == file.name.as_str())
}

fn process(
    conn: &mut PgConnection,
    run_id: i64,
    opts: &RunOptions,
    started: Instant,
) -> Result<RunReport, EtlError> {
    let mut report = RunReport {
        run_id: Some(run_id),
        ..RunReport::default()
    };
    // Merges sort whole files (by key and line): let them sort in memory where they can.
    conn.batch_execute("SET LOCAL work_mem = '256MB'")?;
    let loaded = load::loaded_hashes(conn)?;
    let mut work = Vec::new();
    for path in extract::discover(&opts.data_dir)? {
        let file = extract::fingerprint(&opts.data_dir, &path)?;
        if loaded.contains(&file.sha256) && !is_forced(opts, &file) {
            log::info!("{}: unchanged since it was loaded, skipped", file.name);
            report.add(FileReport {
                path: file.name,
                status: "skipped".into(),
                reason: Some("unchanged since it was loaded".into()),
                ..FileReport::default()
            });
            continue;
        }
        work.push(plan(file)?);
    }
    work.sort_by(|a, b| a.order().cmp(&b.order()));
    let progress = Progress::new(work.iter().map(|p| p.file.size).sum());
    let mut known = known_from_db(conn)?;
    load::create_staging(conn)?;
    let mut changes = Changes::default();
    for planned in work {
        let file_started = Instant::now();
        let file = &planned.file;
        match planned.kind {
            PlanKind::Unrecognized { reason, header } => {
                log::warn!("{}: unrecognized, nothing loaded ({reason})", file.name);
                load::record_file(
                    conn,
                    &ledger_row(
                        run_id,
                        file,
                        None,
                        "unrecognized",
                        Some(&reason),
                        &FileReport::default(),
                    ),
                )?;
                report.add(FileReport {
                    path: file.name.clone(),
                    status: "unrecognized".into(),
                    reason: Some(reason),
                    header,
                    ..FileReport::default()
                });
            }
            PlanKind::Dataset { detected, header } => {
                let dataset = detected.dataset;
                let snapshot = matches!(
                    dataset,
                    Dataset::Coins | Dataset::Listings | Dataset::People
                )
                .then(|| known.clone());
                let mut stage_error = None;
                let scanned = scan_file(
                    file,
                    detected,
                    header,
                    &mut known,
                    opts,
                    &progress,
                    started,
                    |batch| {
                        if stage_error.is_none() {
                            if let Err(e) = load::stage(conn, batch) {
                                stage_error = Some(e);
                            }
                        }
                    },
                )?;
                if let Some(e) = stage_error {
                    return Err(e.into());
                }
                let mut file_report = scanned.report;
                if !scanned.rejects.is_empty() {
                    load::store_rejects(conn, run_id, &file.name, &scanned.rejects)?;
                    changes.rejects_stored = true;
                }
                if let Some(reason) = over_budget(&file_report, opts.max_reject_ratio) {
                    load::truncate_staging(conn, dataset)?;
                    if let Some(snapshot) = snapshot {
                        known = snapshot;
                    }
                    log::error!("{}: set aside, nothing loaded: {reason}", file.name);
                    file_report.status = "set_aside".into();
                    file_report.reason = Some(reason);
                } else {
                    let (new_coins, aliases) = known.coins.take_pending();
                    let merged = load::merge_file(
                        conn,
                        dataset,
                        file_report.read - file_report.rejected,
                        &new_coins,
                        &aliases,
                    )?;
                    load::truncate_staging(conn, dataset)?;
                    changes.absorb(&merged);
                    file_report.loaded = merged.counts.loaded;
                    file_report.duplicate = merged.counts.duplicate;
                    file_report.updated = merged.counts.updated;
                    file_report.status = "loaded".into();
                }
                file_report.seconds = file_started.elapsed().as_secs_f64();
                file_report.rows_per_sec = rate(file_report.read, file_report.seconds);
                log::info!(
                    "{}: {} {}, {} read, {} loaded, {} duplicate, {} updated, {} rejected, {} zeroed in {:.2}s",
                    file.name,
                    dataset,
                    file_report.status,
                    file_report.read,
                    file_report.loaded,
                    file_report.duplicate,
                    file_report.updated,
                    file_report.rejected,
                    file_report.zeroed,
                    file_report.seconds
                );
                let status = file_report.status.clone();
                let reason = file_report.reason.clone();
                load::record_file(
                    conn,
                    &ledger_row(
                        run_id,
                        file,
                        Some(dataset),
                        &status,
                        reason.as_deref(),
                        &file_report,
                    ),
                )?;
                report.add(file_report);
            }
        }
    }
    progress.finish();
    let refresh_started = Instant::now();
    let changed = refresh::refresh(conn, &changes, opts.rank_tolerance.as_micros() as i64)?;
    log::info!(
        "derived tables refreshed in {:.2}s; changed: {}",
        refresh_started.elapsed().as_secs_f64(),
        if changed.is_empty() {
            "none".to_string()
        } else {
            changed.join(", ")
        }
    );
    load::bump_versions(conn, &changed)?;
    report.changed_datasets = changed.iter().map(|s| s.to_string()).collect();
    report.status = if report.has_set_aside() {
        "partial"
    } else {
        "ok"
    }
    .into();
    report.seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::to_value(&report).unwrap_or_default();
    load::finish_run(conn, run_id, &report.status, None, &summary)?;
    Ok(report)
}

fn rate(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

fn over_budget(report: &FileReport, ratio: f64) -> Option<String> {
    (report.read > 0 && report.rejected as f64 > ratio * report.read as f64).then(|| {
        format!(
            "{} of {} rows rejected ({:.1}%), over the {:.1}% reject budget",
            report.rejected,
            report.read,
            100.0 * report.rejected as f64 / report.read as f64,
            100.0 * ratio
        )
    })
}

fn ledger_row(
    run_id: i64,
    file: &InputFile,
    dataset: Option<Dataset>,
    status: &str,
    reason: Option<&str>,
    r: &FileReport,
) -> NewEtlFile {
    NewEtlFile {
        run_id,
        path: file.name.clone(),
        sha256: file.sha256.clone(),
        dataset: dataset.map(|d| d.name().to_string()),
        size_bytes: file.size as i64,
        status: status.to_string(),
        reason: reason.map(str::to_string),
        rows_read: r.read as i64,
        loaded: r.loaded as i64,
        duplicate: r.duplicate as i64,
        updated: r.updated as i64,
        rejected: r.rejected as i64,
        zeroed: r.zeroed as i64,
        seconds: r.seconds,
    }
}

/// A file after validation: its partial report (read, rejected, zeroed) and rejects.
struct Scanned {
    report: FileReport,
    rejects: Vec<Rejection>,
}

/// Validates every record of a file, handing full batches to `flush`.
#[allow(clippy::too_many_arguments)]
fn scan_file(
    file: &InputFile,
    detected: Detected,
    header: Vec<String>,
    known: &mut Known,
    opts: &RunOptions,
    progress: &Progress,
    run_started: Instant,
    mut flush: impl FnMut(&Batch),
) -> Result<Scanned, ExtractError> {
    let extra = detected.extra.clone();
    let dataset = detected.dataset;
    let (ts_order, added_order) = match opts.date_order {
        Some(order) => (order, order),
        None => extract::date_orders(&file.path, &detected)?,
    };
    let mut validator = Validator::new(detected, header, ts_order, added_order);
    let mut records = Records::open(&file.path)?;
    let _ = records.header()?;
    let mut batch = Batch::default();
    let mut rejects = Vec::new();
    let mut read = 0u64;
    let mut reported_bytes = 0u64;
    loop {
        let next = records.next_record();
        let (line, record) = match next {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(ExtractError::Csv { source, path }) => {
                // A record the CSV reader cannot frame (e.g. an unterminated quote at
                // the end of the file): everything from there on is one rejected row.
                read += 1;
                let line = source.position().map_or(0, |p| p.line() as i64);
                rejects.push(Rejection {
                    line,
                    column: None,
                    raw_value: None,
                    reason: format!("malformed CSV: {source}"),
                    raw_line: String::new(),
                });
                log::warn!("{}: malformed CSV at line {line}", path.display());
                break;
            }
            Err(e) => return Err(e),
        };
        read += 1;
        if let Err(rejection) = validator.validate(known, line, record, &mut batch) {
            rejects.push(rejection);
        }
        if batch.len() >= FLUSH_ROWS {
            flush(&batch);
            batch.clear();
            let bytes = records.bytes_read();
            progress.advance(
                bytes - reported_bytes,
                FLUSH_ROWS as u64,
                run_started.elapsed(),
            );
            reported_bytes = bytes;
        }
    }
    if !batch.is_empty() {
        flush(&batch);
    }
    progress.advance(
        file.size.saturating_sub(reported_bytes),
        0,
        run_started.elapsed(),
    );
    let report = FileReport {
        path: file.name.clone(),
        dataset: Some(dataset.name().to_string()),
        read,
        rejected: rejects.len() as u64,
        zeroed: validator.zeroed,
        extra_columns: extra,
        ..FileReport::default()
    };
    Ok(Scanned { report, rejects })
}

/// Validates a directory without a database: coins resolve against the directory's own
/// coin lists and listings. Valid rows count as loaded.
pub fn check(dir: &Path, opts: &RunOptions) -> Result<RunReport, EtlError> {
    if !dir.is_dir() {
        return Err(EtlError::NoDataDir(dir.to_path_buf()));
    }
    let started = Instant::now();
    let mut report = RunReport::default();
    let mut work = Vec::new();
    for path in extract::discover(dir)? {
        work.push(plan(extract::fingerprint(dir, &path)?)?);
    }
    work.sort_by(|a, b| a.order().cmp(&b.order()));
    let progress = Progress::new(work.iter().map(|p| p.file.size).sum());
    let mut known = Known::default();
    for planned in work {
        let file_started = Instant::now();
        match planned.kind {
            PlanKind::Unrecognized { reason, header } => report.add(FileReport {
                path: planned.file.name.clone(),
                status: "unrecognized".into(),
                reason: Some(reason),
                header,
                ..FileReport::default()
            }),
            PlanKind::Dataset { detected, header } => {
                let snapshot = known.clone();
                let scanned = scan_file(
                    &planned.file,
                    detected,
                    header,
                    &mut known,
                    opts,
                    &progress,
                    started,
                    |_| {},
                )?;
                let mut r = scanned.report;
                for reject in scanned.rejects.iter().take(20) {
                    log::warn!(
                        "{}:{}: {} ({}={:?})",
                        r.path,
                        reject.line,
                        reject.reason,
                        reject.column.as_deref().unwrap_or("-"),
                        reject.raw_value.as_deref().unwrap_or("")
                    );
                }
                if let Some(reason) = over_budget(&r, opts.max_reject_ratio) {
                    known = snapshot;
                    r.status = "set_aside".into();
                    r.reason = Some(reason);
                } else {
                    let _ = known.coins.take_pending();
                    r.status = "loaded".into();
                    r.loaded = r.read - r.rejected;
                }
                r.seconds = file_started.elapsed().as_secs_f64();
                r.rows_per_sec = rate(r.read, r.seconds);
                report.add(r);
            }
        }
    }
    progress.finish();
    report.status = if report.has_set_aside() {
        "partial"
    } else {
        "ok"
    }
    .into();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
