//! The run, orchestrated: wait for the database, migrate, take the advisory lock, plan
//! the new files in load order, hand each to the load path that fits it (or to the
//! ledger's earlier verdict), refresh the derived tables and report, with all data and
//! `etl_files` rows committed in one transaction. Also `check`, the same validation
//! without a database. Decides what happens in which order; the stages do the work.

use crate::derive::{self, Changes};
use crate::error::EtlError;
use crate::extract::{self, ExtractError, Header, InputFile, Records};
use crate::ledger;
use crate::load::bulk::{Bulk, Shadows};
use crate::load::{self, FileJob, RunContext, RunState};
use crate::options::RunOptions;
use crate::report::{FileReport, Progress, RunReport};
use crate::sanitize;
use crate::scan::Scanner;
use crate::validate::{may_infer_coins, Known};
use coinflow_shared::dataset::{Dataset, Detected};
use coinflow_shared::db;
use coinflow_shared::ledger::{FileStatus, RunStatus, Versioned};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

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
    let header = match records.header() {
        Err(ExtractError::RecordTooLong { .. }) => {
            let reason = format!(
                "the header record is longer than {} bytes",
                extract::MAX_RECORD_BYTES
            );
            let kind = PlanKind::Unrecognized {
                reason,
                header: None,
            };
            return Ok(Planned { file, kind });
        }
        other => other?,
    };
    let kind = match header {
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
            None => {
                // Header cells go into log lines and the ledger: one line each.
                let reason = coinflow_shared::dataset::why_unrecognized(
                    &cells.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                PlanKind::Unrecognized {
                    reason: sanitize::escape_controls(&reason).into_owned(),
                    header: Some(sanitize::escape_controls(&cells.join(",")).into_owned()),
                }
            }
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
    db::check_server_encoding(&mut conn)?;
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
    let abandoned = ledger::mark_abandoned(&mut conn)?;
    if abandoned > 0 {
        log::warn!("marked {abandoned} run(s) left running by an ended process as abandoned");
    }
    let data_dir = opts.data_dir.display().to_string();
    let run_id = ledger::start_run(&mut conn, &data_dir)?;
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
            if let Err(ledger) = ledger::finish_run(
                &mut conn,
                run_id,
                RunStatus::Failed,
                Some(&message),
                &summary,
            ) {
                log::error!("could not mark run {run_id} failed: {ledger}");
            }
            Err(e)
        }
    }
}

fn is_forced(opts: &RunOptions, path: &Path, name: &str) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let target = canonical(path);
    opts.force
        .iter()
        .any(|f| canonical(f) == target || f.as_os_str() == name)
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
    // Index builds after a bulk load too (more for a large one, see `Bulk`).
    conn.batch_execute("SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '512MB'")?;
    let work = plan_new_files(conn, opts, &mut report)?;
    let progress = Progress::new(work.iter().map(|p| p.file.size).sum());
    let ctx = RunContext {
        run_id,
        opts,
        progress: &progress,
        started,
    };
    let known = load::known_from_db(conn)?;
    load::create_staging(conn)?;
    // What the run changes of rows that existed before it, for the version bumps.
    conn.batch_execute(&coinflow_shared::version_changes::create_run_table_sql())?;
    let bulk = Bulk::begin(conn, markets_input(&work))?;
    let mut state = RunState {
        known,
        changes: Changes::default(),
        bulk,
    };
    for planned in work {
        let file_report = process_file(conn, &ctx, planned, &mut state)?;
        report.add(file_report);
    }
    progress.finish();
    let (changed, shadows) = refresh_derived(conn, opts, state)?;
    report.changed_datasets = changed.iter().map(|v| v.name().to_string()).collect();
    report.status = report.finished_status();
    report.seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::to_value(&report).unwrap_or_default();
    ledger::finish_run(conn, run_id, report.status, None, &summary)?;
    // Last before the commit: tables built anew replace the empty ones readers used.
    shadows.swap_in(conn)?;
    Ok(report)
}

/// The directory's files that this run reads, planned and in load order; files the
/// ledger has loaded with the same content (and not forced) are reported skipped. A file
/// whose path and stat (size, mtime, ctime, inode) match a loaded file's is not hashed
/// (unless `--verify`); a file that hashes to loaded content gets its new stat recorded.
fn plan_new_files(
    conn: &mut PgConnection,
    opts: &RunOptions,
    report: &mut RunReport,
) -> Result<Vec<Planned>, EtlError> {
    let loaded = ledger::loaded_hashes(conn)?;
    let stats = if opts.verify {
        BTreeSet::new()
    } else {
        ledger::loaded_stats(conn)?
    };
    let mut work = Vec::new();
    for path in extract::discover(&opts.data_dir)? {
        let name = extract::relative_name(&opts.data_dir, &path);
        let forced = is_forced(opts, &path, &name);
        if !forced && stats.contains(&(name.clone(), extract::stat(&path)?)) {
            report.add(skipped(name, "path, size, mtime and inode"));
            continue;
        }
        let file = extract::fingerprint(&opts.data_dir, &path)?;
        report.hashed += 1;
        if loaded.contains(&file.sha256) && !forced {
            ledger::record_stat(conn, &file)?;
            report.add(skipped(file.name, "sha256"));
            continue;
        }
        work.push(plan(file)?);
    }
    work.sort_by(|a, b| a.order().cmp(&b.order()));
    Ok(work)
}

/// The report of a file unchanged since it was loaded, recognised by `by`.
fn skipped(name: String, by: &str) -> FileReport {
    log::info!("{name}: unchanged since it was loaded ({by}), skipped");
    FileReport {
        path: name,
        status: FileStatus::Skipped,
        reason: Some("unchanged since it was loaded".into()),
        ..FileReport::default()
    }
}

/// The bytes of the run's markets input (markets and listings files): what decides a
/// bulk load of `market`.
fn markets_input(work: &[Planned]) -> u64 {
    work.iter()
        .filter(|p| {
            matches!(&p.kind, PlanKind::Dataset { detected, .. }
                if matches!(detected.dataset, Dataset::Markets | Dataset::Listings))
        })
        .map(|p| p.file.size)
        .sum()
}

/// One planned file: unrecognized, still set aside by the ledger's latest verdict, or
/// loaded; recorded in the ledger either way.
fn process_file(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    planned: Planned,
    state: &mut RunState,
) -> Result<FileReport, EtlError> {
    let file = &planned.file;
    let (dataset, file_report, coin_list) = match planned.kind {
        PlanKind::Unrecognized { reason, header } => {
            log::warn!("{}: unrecognized, nothing loaded ({reason})", file.name);
            let file_report = FileReport {
                path: file.name.clone(),
                status: FileStatus::Unrecognized,
                reason: Some(reason),
                header,
                ..FileReport::default()
            };
            (None, file_report, None)
        }
        PlanKind::Dataset { detected, header } => {
            let dataset = detected.dataset;
            let (file_report, coin_list) = evaluate(conn, ctx, file, detected, header, state)?;
            (Some(dataset), file_report, coin_list)
        }
    };
    ledger::record_file(conn, ctx.run_id, file, dataset, &file_report, coin_list)?;
    Ok(file_report)
}

/// A recognised file's verdict: the ledger's earlier one when nothing it depends on
/// changed, else what loading it gives. Returns the report and, for a file set aside,
/// what it was judged against.
fn evaluate(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    file: &InputFile,
    detected: Detected,
    header: Vec<String>,
    state: &mut RunState,
) -> Result<(FileReport, Option<String>), EtlError> {
    let file_started = Instant::now();
    let dataset = detected.dataset;
    let opts = ctx.opts;
    let prior = ledger::last_evaluation(conn, &file.sha256)?;
    if let Some(unchanged) = prior
        .as_ref()
        .filter(|_| !is_forced(opts, &file.path, &file.name))
        .and_then(|p| p.still_set_aside(&judged_against(&state.known, opts)))
    {
        log::warn!(
            "{}: {}",
            file.name,
            unchanged.reason.as_deref().unwrap_or("")
        );
        ctx.progress.advance(file.size, 0, ctx.started.elapsed());
        let mut file_report = unchanged;
        file_report.path = file.name.clone();
        file_report.dataset = Some(dataset.name().to_string());
        file_report.extra_columns = detected.extra.clone();
        return Ok((file_report, prior.and_then(|p| p.coin_list)));
    }
    let job = FileJob {
        file,
        detected,
        header,
        evaluated_before: prior.is_some(),
    };
    let mut file_report = load_file(conn, ctx, &job, state)?;
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
    if file_report.unaccounted() != 0 {
        log::error!(
            "{}: {} row(s) of {} read are in no counter: {:?}",
            file.name,
            file_report.unaccounted(),
            file_report.read,
            file_report.counts
        );
    }
    let coin_list =
        (file_report.status == FileStatus::SetAside).then(|| judged_against(&state.known, opts));
    Ok((file_report, coin_list))
}

/// Chooses a recognised file's load path: a markets file whose rows name their coins
/// tries the direct path first; everything else, and a direct load that met a stored
/// or repeated key, goes through staging.
fn load_file(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    job: &FileJob<'_>,
    state: &mut RunState,
) -> Result<FileReport, EtlError> {
    let dataset = job.detected.dataset;
    // Rows that bring their own coin need the coin stored first: staged.
    if dataset == Dataset::Markets && !may_infer_coins(&job.detected) {
        if let Some(file_report) = load::direct::load(conn, ctx, job, state)? {
            return Ok(file_report);
        }
    }
    if let Some(bulk) = state
        .bulk
        .as_mut()
        .filter(|_| matches!(dataset, Dataset::Markets | Dataset::Listings))
    {
        // A merge into `market` decides by its primary key.
        bulk.shadow.restore_key(conn)?;
    }
    load::staged::load(conn, ctx, job, state)
}

/// After the files: builds what a bulk load deferred, refreshes the derived tables,
/// bumps the data versions of what changed and refreshes the statistics the API plans
/// its reads on. Returns the `data_versions` keys that changed and the tables built anew.
fn refresh_derived(
    conn: &mut PgConnection,
    opts: &RunOptions,
    state: RunState,
) -> Result<(Vec<Versioned>, Shadows), EtlError> {
    let refresh_started = Instant::now();
    // After a first load the ranks are written with only market's primary key in place
    // (they look snapshots up by it); its other indexes and foreign key are built once
    // the ranks are in, instead of being maintained for every rank written.
    let mut bulk = state.bulk;
    if let Some(bulk) = bulk.as_mut() {
        bulk.shadow.restore_key(conn)?;
    }
    let mut shadows = Shadows::default();
    let changed = derive::refresh(
        conn,
        &state.changes,
        opts.rank_tolerance.as_micros() as i64,
        |conn| {
            if let Some(bulk) = bulk.take() {
                shadows = bulk.finish(conn)?;
            }
            Ok(())
        },
    )?;
    shadows.build(conn)?;
    log::info!(
        "derived tables refreshed in {:.2}s; changed: {}",
        refresh_started.elapsed().as_secs_f64(),
        if changed.is_empty() {
            "none".to_string()
        } else {
            changed
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    ledger::bump_versions(conn, &changed)?;
    // The API plans its reads on these statistics; autovacuum would refresh them only
    // some time after the commit.
    for table in [Versioned::Market, Versioned::Daily] {
        if changed.contains(&table) {
            conn.batch_execute(&format!("ANALYZE {table}"))?;
        }
    }
    Ok((changed, shadows))
}

/// What a file's verdict depends on besides its content: the coins and people its rows
/// resolve against, the reject budget and the date order option.
fn judged_against(known: &Known, opts: &RunOptions) -> String {
    format!(
        "{} budget={} dates={:?}",
        known.fingerprint(),
        opts.max_reject_ratio,
        opts.date_order
    )
}

fn rate(rows: i64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
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
                status: FileStatus::Unrecognized,
                reason: Some(reason),
                header,
                ..FileReport::default()
            }),
            PlanKind::Dataset { detected, header } => {
                let snapshot = known.clone();
                let scanner = Scanner {
                    opts,
                    progress: &progress,
                    started,
                };
                let scanned =
                    scanner.scan(&planned.file, detected, header, &mut known, |_| true)?;
                let valid = scanned.valid;
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
                if let Some(reason) = load::over_budget(&r.counts, opts.max_reject_ratio) {
                    known = snapshot;
                    r.set_aside(valid, reason);
                } else {
                    let _ = known.coins.take_pending();
                    r.status = FileStatus::Loaded;
                    r.loaded = valid;
                }
                r.seconds = file_started.elapsed().as_secs_f64();
                r.rows_per_sec = rate(r.read, r.seconds);
                report.add(r);
            }
        }
    }
    progress.finish();
    report.status = report.finished_status();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
