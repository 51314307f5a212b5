//! The run: wait for the database, migrate, take the advisory lock, then extract →
//! validate → load each new file in load order, refresh the derived tables and report,
//! with all data and `etl_files` rows committed in one transaction. Also `check`, the
//! same validation without a database.

use crate::extract::{self, ExtractError, Header, InputFile, Records};
use crate::load::{self, NewEtlFile};
use crate::refresh::{self, Changes, RefreshError};
use crate::report::{FileReport, Progress, RunReport};
use crate::rows::{Batch, Rejection};
use crate::sanitize;
use crate::validate::{may_infer_coins, raw_line, reason, Known, Validator};
use crate::values::DateOrder;
use coinflow_shared::dataset::{Dataset, Detected};
use coinflow_shared::db::{self, DbError};
use coinflow_shared::models::Counts;
use coinflow_shared::schema::{coin_aliases, coins, market, people};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeSet;
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
    #[error("{0}")]
    Encoding(DbError),
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
            DbError::Encoding { .. } => EtlError::Encoding(e),
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
    // Index builds after a bulk load too (more for a large one, see below).
    conn.batch_execute("SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '512MB'")?;
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
    let mut bulk = defer_market_constraints(conn, &work)?;
    let mut changes = Changes::default();
    for planned in work {
        let file_started = Instant::now();
        let file = &planned.file;
        match planned.kind {
            PlanKind::Unrecognized { reason, header } => {
                log::warn!("{}: unrecognized, nothing loaded ({reason})", file.name);
                let file_report = FileReport {
                    path: file.name.clone(),
                    status: "unrecognized".into(),
                    reason: Some(reason),
                    header,
                    ..FileReport::default()
                };
                record(conn, run_id, file, None, &file_report, None)?;
                report.add(file_report);
            }
            PlanKind::Dataset { detected, header } => {
                let dataset = detected.dataset;
                let prior = load::last_evaluation(conn, &file.sha256)?;
                if let Some(unchanged) = prior
                    .as_ref()
                    .filter(|_| !is_forced(opts, file))
                    .and_then(|p| still_set_aside(p, &judged_against(&known, opts)))
                {
                    log::warn!(
                        "{}: {}",
                        file.name,
                        unchanged.reason.as_deref().unwrap_or("")
                    );
                    progress.advance(file.size, 0, started.elapsed());
                    let mut file_report = unchanged;
                    file_report.path = file.name.clone();
                    file_report.dataset = Some(dataset.name().to_string());
                    file_report.extra_columns = detected.extra.clone();
                    let coin_list = prior.and_then(|p| p.coin_list);
                    record(conn, run_id, file, Some(dataset), &file_report, coin_list)?;
                    report.add(file_report);
                    continue;
                }
                let ctx = FileContext {
                    run_id,
                    opts,
                    progress: &progress,
                    started,
                    evaluated_before: prior.is_some(),
                };
                let mut file_report = None;
                // Rows that bring their own coin need the coin stored first: staged.
                if dataset == Dataset::Markets && !may_infer_coins(&detected) {
                    file_report = load_direct(
                        conn,
                        &ctx,
                        file,
                        &detected,
                        &header,
                        &mut known,
                        &mut changes,
                        bulk.as_mut(),
                    )?;
                }
                let mut file_report = match file_report {
                    Some(r) => r,
                    None => {
                        if let Some(bulk) = bulk
                            .as_mut()
                            .filter(|_| matches!(dataset, Dataset::Markets | Dataset::Listings))
                        {
                            // A merge into `market` decides by its primary key.
                            bulk.deferred.restore_key(conn)?;
                        }
                        load_staged(conn, &ctx, file, detected, header, &mut known, &mut changes)?
                    }
                };
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
                    (file_report.status == "set_aside").then(|| judged_against(&known, opts));
                record(conn, run_id, file, Some(dataset), &file_report, coin_list)?;
                report.add(file_report);
            }
        }
    }
    progress.finish();
    // After a bulk load of `market`, `daily` changes in bulk too: its foreign key is
    // validated once after the refresh instead of row by row.
    let mut daily_deferred = None;
    if let Some(bulk) = bulk {
        let restore_started = Instant::now();
        bulk.deferred.restore(conn)?;
        log::info!(
            "market: constraints and indexes rebuilt in {:.2}s",
            restore_started.elapsed().as_secs_f64()
        );
        daily_deferred = Some(load::defer_constraints(conn, "daily", false)?);
    }
    let refresh_started = Instant::now();
    let changed = refresh::refresh(conn, &changes, opts.rank_tolerance.as_micros() as i64)?;
    if let Some(deferred) = daily_deferred {
        deferred.restore(conn)?;
    }
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
    // The API plans its reads on these statistics; autovacuum would refresh them only
    // some time after the commit.
    for table in ["market", "daily"] {
        if changed.contains(&table) {
            conn.batch_execute(&format!("ANALYZE {table}"))?;
        }
    }
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

/// A bulk load of `market` in progress: what was dropped for it and, while the primary
/// key is dropped, the spans of the keys copied so far.
struct Bulk {
    deferred: load::Deferred,
    spans: load::KeySpans,
}

/// A run whose markets input (markets and listings files) is at least as large as the
/// `market` table's rows on disk loads in bulk: the table's foreign key and secondary
/// indexes are dropped first and rebuilt after the files ([`load::Deferred`]). When
/// `market` is empty, its primary key goes too: it is built once from the loaded rows,
/// which costs a fraction of maintaining it row by row, while [`load::KeySpans`] proves
/// the copied keys distinct (and the key comes back early when it cannot). Smaller runs
/// maintain everything row by row, which costs less than rebuilding it and keeps the
/// table readable while the run loads.
fn defer_market_constraints(
    conn: &mut PgConnection,
    work: &[Planned],
) -> QueryResult<Option<Bulk>> {
    let incoming: u64 = work
        .iter()
        .filter(|p| {
            matches!(&p.kind, PlanKind::Dataset { detected, .. }
                if matches!(detected.dataset, Dataset::Markets | Dataset::Listings))
        })
        .map(|p| p.file.size)
        .sum();
    if incoming == 0 {
        return Ok(None);
    }
    let stored = load::heap_bytes(conn, "market")?;
    if incoming < stored {
        return Ok(None);
    }
    let empty = market::table
        .select(market::coin_id)
        .first::<String>(conn)
        .optional()?
        .is_none();
    log::info!(
        "market: bulk load ({incoming} bytes of input, {stored} bytes stored): its {} \
         rebuilt after the files",
        if empty {
            "primary key, foreign key and secondary indexes are"
        } else {
            "foreign key and secondary indexes are"
        }
    );
    // Index builds sort in memory instead of spilling to disk (measured at 10 M rows:
    // the primary key in 6.2 s instead of 9.5 s).
    conn.batch_execute("SET LOCAL maintenance_work_mem = '1GB'")?;
    Ok(Some(Bulk {
        deferred: load::defer_constraints(conn, "market", empty)?,
        spans: load::KeySpans::default(),
    }))
}

/// What every file of a run shares, and whether the ledger has seen the file's content.
struct FileContext<'a> {
    run_id: i64,
    opts: &'a RunOptions,
    progress: &'a Progress,
    started: Instant,
    evaluated_before: bool,
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

/// Words that mark the reason of a set-aside file that was not read again.
const NOT_READ_AGAIN: &str = "; unchanged since run";

/// The report of a file whose content was set aside by its latest evaluation, when the
/// coins and people it was judged against are unchanged: judging it again would give
/// the same verdict (and store the same rejects again), so it is not read.
fn still_set_aside(prior: &load::Evaluation, judged_against: &str) -> Option<FileReport> {
    if prior.status != "set_aside" || prior.coin_list.as_deref() != Some(judged_against) {
        return None;
    }
    let original = prior.reason.as_deref().unwrap_or("set aside");
    let original = original.split(NOT_READ_AGAIN).next().unwrap_or(original);
    Some(FileReport {
        status: "set_aside".into(),
        reason: Some(format!(
            "{original}{NOT_READ_AGAIN} {} set it aside, and so are the coins, people and \
             budget it was judged against: not read again (--force re-evaluates it)",
            prior.run_id
        )),
        counts: prior.counts,
        ..FileReport::default()
    })
}

/// Why a direct load did not settle its file.
enum DirectAbort {
    /// A key already exists (stored, or earlier in the file): stage and merge instead.
    Conflict,
    /// `market`'s primary key is dropped and a row may repeat a key: build the key, then
    /// load the file again.
    KeyUnproven,
    /// Too many rejects: the file is set aside.
    OverBudget(Box<Scanned>, String),
    Failed(EtlError),
}

impl From<diesel::result::Error> for DirectAbort {
    fn from(e: diesel::result::Error) -> Self {
        DirectAbort::Failed(e.into())
    }
}

/// Loads a markets file by copying its rows straight into `market` under a savepoint:
/// most files bring only new keys, and for them staging and merging would write every
/// row twice. Returns `None`, with nothing of the file kept, when some key already
/// exists: the caller then stages and classifies the file ([`load_staged`]). During a
/// bulk load without the primary key, a row that may repeat a key rolls the file back,
/// builds the key and loads the file again.
#[allow(clippy::too_many_arguments)]
fn load_direct(
    conn: &mut PgConnection,
    ctx: &FileContext<'_>,
    file: &InputFile,
    detected: &Detected,
    header: &[String],
    known: &mut Known,
    changes: &mut Changes,
    mut bulk: Option<&mut Bulk>,
) -> Result<Option<FileReport>, EtlError> {
    loop {
        // The spans of the keys copied so far, while `market` has no primary key.
        let unkeyed = match &bulk {
            Some(b) if b.deferred.key_deferred() => Some(&b.spans),
            _ => None,
        };
        let mut file_spans = load::KeySpans::default();
        let mut coins: BTreeSet<String> = BTreeSet::new();
        let mut copied = 0i64;
        // The fold keeps this file's rows only if the file loads.
        let mut fold = changes.daily_fold.clone();
        let candle_coins = &changes.candle_coins;
        let outcome = conn.transaction(|conn| {
            let mut abort: Option<DirectAbort> = None;
            let scanned = scan_file(
                file,
                detected.clone(),
                header.to_vec(),
                known,
                ctx.opts,
                ctx.progress,
                ctx.started,
                |batch| {
                    let rows = &batch.market;
                    if let Some(spans) = unkeyed {
                        if !spans.extend(&mut file_spans, rows) {
                            abort = Some(DirectAbort::KeyUnproven);
                            return false;
                        }
                    }
                    let unseen = fold.unseen(rows);
                    let stored = (|| -> Result<(), EtlError> {
                        let mut fresh = BTreeSet::new();
                        if !unseen.is_empty() {
                            // Without the primary key, `market` holds rows of met coins only.
                            fresh = load::coins_without_facts(conn, &unseen, unkeyed.is_none())?;
                            fresh.retain(|c| !candle_coins.contains(c));
                        }
                        fold.add(&unseen, &fresh, rows)
                            .map_err(|e| EtlError::Refresh(e.into()))?;
                        load::copy_market(conn, rows)?;
                        Ok(())
                    })();
                    match stored {
                        Ok(()) => {
                            coins.extend(unseen.iter().map(|c| c.to_string()));
                            copied += rows.len() as i64;
                            true
                        }
                        Err(EtlError::Db(e)) if load::is_unique_violation(&e) => {
                            abort = Some(DirectAbort::Conflict);
                            false
                        }
                        Err(e) => {
                            abort = Some(DirectAbort::Failed(e));
                            false
                        }
                    }
                },
            )
            .map_err(|e| DirectAbort::Failed(e.into()))?;
            if let Some(abort) = abort {
                return Err(abort);
            }
            match over_budget(&scanned.report.counts, ctx.opts.max_reject_ratio) {
                Some(reason) => Err(DirectAbort::OverBudget(Box::new(scanned), reason)),
                None => Ok(scanned),
            }
        });
        let mut file_report = match outcome {
            Ok(scanned) => {
                store_rejects(conn, ctx, file, &scanned.rejects, changes)?;
                let mut r = scanned.report;
                r.loaded = copied;
                r.status = "loaded".into();
                changes.market_coins.extend(coins);
                changes.daily_fold = fold;
                if let Some(bulk) = bulk.as_mut() {
                    bulk.spans.absorb(file_spans);
                }
                r
            }
            Err(DirectAbort::OverBudget(scanned, reason)) => {
                store_rejects(conn, ctx, file, &scanned.rejects, changes)?;
                let valid = scanned.valid;
                set_aside(file, scanned.report, valid, reason)
            }
            Err(DirectAbort::Conflict) => {
                log::info!(
                    "{}: some keys are already stored or repeated; classifying every row",
                    file.name
                );
                ctx.progress.rewind(file.size);
                return Ok(None);
            }
            Err(DirectAbort::KeyUnproven) => {
                log::info!(
                    "{}: a row may repeat a key (its coin's timestamps are not in order); \
                     building market's primary key before loading the file again",
                    file.name
                );
                ctx.progress.rewind(file.size);
                if let Some(bulk) = bulk.as_mut() {
                    bulk.deferred.restore_key(conn)?;
                }
                continue;
            }
            Err(DirectAbort::Failed(e)) => return Err(e),
        };
        file_report.path = file.name.clone();
        return Ok(Some(file_report));
    }
}

/// Loads a file through its staging table: binary COPY, then one merge statement that
/// classifies every row as loaded, duplicate or updated, or as a conflicting duplicate
/// of an earlier line (a reject). Rejects take the file over its budget before the merge
/// (then nothing is merged) or with the merge's conflicts (then the merge is rolled back).
fn load_staged(
    conn: &mut PgConnection,
    ctx: &FileContext<'_>,
    file: &InputFile,
    detected: Detected,
    header: Vec<String>,
    known: &mut Known,
    changes: &mut Changes,
) -> Result<FileReport, EtlError> {
    let dataset = detected.dataset;
    let snapshot = (matches!(
        dataset,
        Dataset::Coins | Dataset::Listings | Dataset::People
    ) || may_infer_coins(&detected))
    .then(|| known.clone());
    let mut stage_error = None;
    let scanned = scan_file(
        file,
        detected,
        header,
        known,
        ctx.opts,
        ctx.progress,
        ctx.started,
        |batch| match load::stage(conn, batch) {
            Ok(()) => true,
            Err(e) => {
                stage_error = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = stage_error {
        return Err(e.into());
    }
    let Scanned {
        report: mut file_report,
        mut rejects,
        valid,
        zeroed_lines,
    } = scanned;
    if let Some(reason) = over_budget(&file_report.counts, ctx.opts.max_reject_ratio) {
        store_rejects(conn, ctx, file, &rejects, changes)?;
        load::truncate_staging(conn, dataset)?;
        if let Some(snapshot) = snapshot {
            *known = snapshot;
        }
        return Ok(set_aside(file, file_report, valid, reason));
    }
    let (new_coins, aliases) = known.coins.take_pending();
    let inferred: Vec<String> = new_coins
        .iter()
        .filter(|c| c.inferred)
        .map(|c| format!("{} ({}, {})", c.id, c.symbol, c.name))
        .collect();
    // The merge finds the file's conflicting duplicates, which are rejects too: when
    // they take the file over its budget, the merge is rolled back.
    let mut budget = file_report.counts;
    let merged = conn.transaction(|conn| {
        let staged = load::Staged {
            rows: valid as u64,
            zeroed: &zeroed_lines,
        };
        let merged = load::merge_file(conn, dataset, staged, &new_coins, &aliases)?;
        let conflicts = conflict_rejections(file, &merged.counts.conflicts)?;
        budget.rejected += conflicts.len() as i64;
        match over_budget(&budget, ctx.opts.max_reject_ratio) {
            Some(reason) => Err(StagedAbort::OverBudget(Box::new(merged), conflicts, reason)),
            None => Ok((merged, conflicts)),
        }
    });
    load::truncate_staging(conn, dataset)?;
    match merged {
        Ok((merged, conflicts)) => {
            rejects.extend(conflicts);
            store_rejects(conn, ctx, file, &rejects, changes)?;
            changes.absorb(&merged);
            file_report.rejected = rejects.len() as i64;
            file_report.loaded = merged.counts.loaded;
            file_report.duplicate = merged.counts.duplicate;
            file_report.updated = merged.counts.updated;
            file_report.zeroed = merged.counts.zeroed;
            file_report.status = "loaded".into();
            if !inferred.is_empty() {
                log::info!("{}: inferred coin(s) {}", file.name, inferred.join(", "));
            }
            file_report.inferred_coins = inferred;
            Ok(file_report)
        }
        Err(StagedAbort::OverBudget(merged, conflicts, reason)) => {
            rejects.extend(conflicts);
            store_rejects(conn, ctx, file, &rejects, changes)?;
            if let Some(snapshot) = snapshot {
                *known = snapshot;
            }
            file_report.rejected = rejects.len() as i64;
            let kept = merged.counts.loaded + merged.counts.duplicate + merged.counts.updated;
            Ok(set_aside(file, file_report, kept, reason))
        }
        Err(StagedAbort::Failed(e)) => Err(e),
    }
}

/// Why the merge of a staged file was rolled back.
enum StagedAbort {
    /// Its conflicting duplicates took it over the reject budget.
    OverBudget(Box<load::FileMerge>, Vec<Rejection>, String),
    Failed(EtlError),
}

impl From<diesel::result::Error> for StagedAbort {
    fn from(e: diesel::result::Error) -> Self {
        StagedAbort::Failed(e.into())
    }
}

impl From<ExtractError> for StagedAbort {
    fn from(e: ExtractError) -> Self {
        StagedAbort::Failed(e.into())
    }
}

/// The rejects of later lines that repeat an earlier line's key with other values
/// (`(line, first line)` pairs from the merge), with their lines as read from the file.
fn conflict_rejections(
    file: &InputFile,
    conflicts: &[(i64, i64)],
) -> Result<Vec<Rejection>, ExtractError> {
    if conflicts.is_empty() {
        return Ok(Vec::new());
    }
    let firsts: std::collections::HashMap<i64, i64> = conflicts.iter().copied().collect();
    let mut out = Vec::with_capacity(conflicts.len());
    let mut records = Records::open(&file.path)?;
    let _ = records.header()?;
    while out.len() < firsts.len() {
        let Some((line, record)) = records.next_record()? else {
            break;
        };
        if let Some(first) = firsts.get(&line) {
            out.push(Rejection {
                line,
                column: None,
                raw_value: None,
                reason: format!("{} (first at line {first})", reason::CONFLICTING_DUPLICATE),
                raw_line: raw_line(record),
            });
        }
    }
    Ok(out)
}

fn store_rejects(
    conn: &mut PgConnection,
    ctx: &FileContext<'_>,
    file: &InputFile,
    rejects: &[Rejection],
    changes: &mut Changes,
) -> QueryResult<()> {
    if !rejects.is_empty() || ctx.evaluated_before {
        changes.rejects_stored |= load::store_rejects(
            conn,
            ctx.run_id,
            &file.name,
            &file.sha256,
            rejects,
            ctx.evaluated_before,
        )?;
    }
    Ok(())
}

/// A file over its reject budget: none of its rows load; `valid` rows passed every check
/// and are counted as set aside.
fn set_aside(file: &InputFile, mut report: FileReport, valid: i64, reason: String) -> FileReport {
    log::error!("{}: set aside, nothing loaded: {reason}", file.name);
    report.status = "set_aside".into();
    report.reason = Some(reason);
    report.set_aside = valid;
    report.zeroed = 0;
    report
}

fn rate(rows: i64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

/// The reject budget: rejected rows over the rows that are data (blank rows are not).
fn over_budget(counts: &Counts, ratio: f64) -> Option<String> {
    let data = counts.read - counts.blank;
    (data > 0 && counts.reject_ratio() > ratio).then(|| {
        format!(
            "{} of {} rows rejected ({:.1}%), over the {:.1}% reject budget",
            counts.rejected,
            data,
            100.0 * counts.reject_ratio(),
            100.0 * ratio
        )
    })
}

/// Records a file's outcome in the ledger (`etl_files`).
fn record(
    conn: &mut PgConnection,
    run_id: i64,
    file: &InputFile,
    dataset: Option<Dataset>,
    r: &FileReport,
    coin_list: Option<String>,
) -> QueryResult<()> {
    load::record_file(
        conn,
        &NewEtlFile {
            run_id,
            path: file.name.clone(),
            sha256: file.sha256.clone(),
            dataset: dataset.map(|d| d.name().to_string()),
            size_bytes: file.size as i64,
            status: r.status.clone(),
            reason: r.reason.clone(),
            counts: r.counts,
            seconds: r.seconds,
            coin_list,
        },
    )
}

/// A file after validation: its partial report (read, rejected, blank, zeroed), its
/// rejects and how many rows passed validation.
struct Scanned {
    report: FileReport,
    rejects: Vec<Rejection>,
    valid: i64,
    /// (line, count) of valid rows with zeroes stored as missing.
    zeroed_lines: Vec<(i64, i64)>,
}

/// Validates every record of a file, handing full batches to `flush`. When `flush`
/// returns false (it could not keep the rows), reading stops there and the result
/// describes only the part read: the caller discards it.
///
/// Reading and validating run on a thread of their own, one batch ahead of `flush`, so
/// parsing the next rows overlaps with the database storing the last ones.
#[allow(clippy::too_many_arguments)]
fn scan_file(
    file: &InputFile,
    detected: Detected,
    header: Vec<String>,
    known: &mut Known,
    opts: &RunOptions,
    progress: &Progress,
    run_started: Instant,
    mut flush: impl FnMut(&Batch) -> bool,
) -> Result<Scanned, ExtractError> {
    let (ts_order, added_order) = match opts.date_order {
        Some(order) => (order, order),
        None => extract::date_orders(&file.path, &detected)?,
    };
    let validator = Validator::new(detected, header, ts_order, added_order);
    let (batches, received) = std::sync::mpsc::sync_channel::<Batch>(1);
    std::thread::scope(|scope| {
        let reader =
            scope.spawn(move || read_file(file, validator, known, progress, run_started, batches));
        while let Ok(batch) = received.recv() {
            if !flush(&batch) {
                break;
            }
        }
        // The reader's next send fails once nobody receives: it stops there.
        drop(received);
        match reader.join() {
            Ok(scanned) => scanned,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The reading half of [`scan_file`]: validates records and sends full batches until
/// the file ends or the receiver is gone.
fn read_file(
    file: &InputFile,
    mut validator: Validator,
    known: &mut Known,
    progress: &Progress,
    run_started: Instant,
    batches: std::sync::mpsc::SyncSender<Batch>,
) -> Result<Scanned, ExtractError> {
    let extra = validator.extra_columns().to_vec();
    let dataset = validator.dataset();
    let mut records = Records::open(&file.path)?;
    let _ = records.header()?;
    let mut batch = Batch::default();
    let mut rejects = Vec::new();
    let mut read = 0i64;
    let mut blank = 0i64;
    let mut valid = 0i64;
    let mut reported_bytes = 0u64;
    let mut stopped = false;
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
            Err(ExtractError::RecordTooLong { line, .. }) => {
                read += 1;
                rejects.push(Rejection {
                    line,
                    column: None,
                    raw_value: None,
                    reason: format!("record too long (over {} bytes)", extract::MAX_RECORD_BYTES),
                    raw_line: String::new(),
                });
                log::warn!(
                    "{}: the record of line {line} is over {} bytes: rejected, reading on at line {}",
                    file.name,
                    extract::MAX_RECORD_BYTES,
                    line + 1
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        read += 1;
        if is_blank(record) {
            blank += 1;
        } else {
            match validator.validate(known, line, record, &mut batch) {
                Ok(()) => valid += 1,
                Err(mut rejection) => {
                    // Kept in memory until the file is stored, and in etl_rejects after:
                    // bounded.
                    if let Cow::Owned(cut) = sanitize::truncate_raw(&rejection.raw_line) {
                        rejection.raw_line = cut;
                    }
                    if let Some(Cow::Owned(cut)) =
                        rejection.raw_value.as_deref().map(sanitize::truncate_raw)
                    {
                        rejection.raw_value = Some(cut);
                    }
                    rejects.push(rejection);
                }
            }
        }
        if batch.len() >= FLUSH_ROWS {
            if batches.send(std::mem::take(&mut batch)).is_err() {
                stopped = true;
                break;
            }
            let bytes = records.bytes_read();
            progress.advance(
                bytes - reported_bytes,
                FLUSH_ROWS as u64,
                run_started.elapsed(),
            );
            reported_bytes = bytes;
        }
    }
    if !stopped && !batch.is_empty() {
        // A failed send means the receiver stopped: the result is discarded anyway.
        let _ = batches.send(batch);
    }
    progress.advance(
        file.size.saturating_sub(reported_bytes),
        0,
        run_started.elapsed(),
    );
    let report = FileReport {
        path: file.name.clone(),
        dataset: Some(dataset.name().to_string()),
        counts: Counts {
            read,
            rejected: rejects.len() as i64,
            blank,
            zeroed: validator.zeroed as i64,
            ..Counts::default()
        },
        extra_columns: extra,
        numeric_extra_columns: validator.numeric_extra_columns(),
        ..FileReport::default()
    };
    Ok(Scanned {
        report,
        rejects,
        valid,
        zeroed_lines: std::mem::take(&mut validator.zeroed_lines),
    })
}

/// A row whose every cell is empty (spreadsheet padding): not data.
fn is_blank(record: &csv::ByteRecord) -> bool {
    record
        .iter()
        .all(|field| field.iter().all(u8::is_ascii_whitespace))
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
                    |_| true,
                )?;
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
                if let Some(reason) = over_budget(&r.counts, opts.max_reject_ratio) {
                    known = snapshot;
                    r.status = "set_aside".into();
                    r.reason = Some(reason);
                    r.set_aside = valid;
                    r.zeroed = 0;
                } else {
                    let _ = known.coins.take_pending();
                    r.status = "loaded".into();
                    r.loaded = valid;
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
