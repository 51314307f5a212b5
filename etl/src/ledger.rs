//! The ledger: what the ETL knows of its own runs. Writes `etl_runs` (a run starts,
//! finishes or is found abandoned), `etl_files` (one row per file a run evaluated) and
//! `etl_rejects` (one copy per file content and line), bumps `data_versions` for what a
//! run changed (recording in `data_version_changes` what each bump changed), and reads back what reruns decide by (the contents already loaded, the
//! latest evaluation of a content). Everything but `start_run`, `mark_abandoned` and a
//! failed run's `finish_run` commits in the run's transaction, with its data. Never
//! writes warehouse data.

use crate::extract::{FileStat, InputFile};
use crate::report::FileReport;
use crate::rows::{Rejection, COPY_CHUNK};
use coinflow_shared::dataset::{Dataset, Served, REJECTS};
use coinflow_shared::ledger::{FileStatus, RunStatus, Versioned};
use coinflow_shared::models::Counts;
use coinflow_shared::schema::{etl_files, etl_rejects, etl_runs};
use coinflow_shared::version_changes;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use std::collections::BTreeSet;

#[derive(Insertable)]
#[diesel(table_name = etl_rejects, treat_none_as_default_value = false)]
struct NewReject<'a> {
    run_id: i64,
    file: &'a str,
    line: i64,
    column_name: Option<&'a str>,
    raw_value: Option<&'a str>,
    reason: &'a str,
    raw_line: &'a str,
}

/// Stores the rejects of one evaluation of a file, keeping one copy per (file content,
/// line): a line already stored for the same content (by an earlier run, or by a copy of
/// the file elsewhere in the directory) is not stored again, and a stored line that this
/// evaluation no longer rejects (its coin is known now, say) is removed, since its row is
/// now loaded or counted as set aside. `evaluated_before` says whether the ledger holds
/// this content already; when it does not, there is nothing to compare with. Returns
/// whether `etl_rejects` changed.
pub(crate) fn store_rejects(
    conn: &mut PgConnection,
    run_id: i64,
    file: &str,
    sha256: &str,
    rejects: &[Rejection],
    evaluated_before: bool,
) -> QueryResult<bool> {
    let mut changed = false;
    let mut stored = std::collections::HashSet::new();
    if evaluated_before {
        let lines: Vec<i64> = rejects.iter().map(|r| r.line).collect();
        #[derive(QueryableByName)]
        struct Deleted {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        // Rejects of an earlier run that go are deletes of the served `rejects`.
        let deleted: Deleted = diesel::sql_query(format!(
            "WITH d AS (DELETE FROM etl_rejects r USING etl_files f \
                        WHERE f.run_id = r.run_id AND f.path = r.file AND f.sha256 = $1 \
                          AND NOT (r.line = ANY($2)) \
                        RETURNING r.run_id, r.file, r.line, {pre} AS pre), \
             low AS ({record}) \
             SELECT count(*)::int8 AS n FROM d",
            pre = version_changes::pre_existing("r"),
            record = version_changes::record_low_key(&REJECTS, "d", "d", "d.pre"),
        ))
        .bind::<Text, _>(sha256)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&lines)
        .get_result(conn)?;
        changed |= deleted.n > 0;
        #[derive(QueryableByName)]
        struct Line {
            #[diesel(sql_type = BigInt)]
            line: i64,
        }
        let found: Vec<Line> = diesel::sql_query(
            "SELECT r.line FROM etl_rejects r JOIN etl_files f \
               ON f.run_id = r.run_id AND f.path = r.file WHERE f.sha256 = $1",
        )
        .bind::<Text, _>(sha256)
        .load(conn)?;
        stored.extend(found.into_iter().map(|l| l.line));
    }
    let fresh: Vec<&Rejection> = rejects
        .iter()
        .filter(|r| !stored.contains(&r.line))
        .collect();
    for chunk in fresh.chunks(COPY_CHUNK) {
        let rows: Vec<NewReject<'_>> = chunk
            .iter()
            .map(|r| NewReject {
                run_id,
                file,
                line: r.line,
                column_name: r.column.as_deref(),
                raw_value: r.raw_value.as_deref(),
                reason: &r.reason,
                raw_line: &r.raw_line,
            })
            .collect();
        diesel::copy_from(etl_rejects::table)
            .from_insertable(&rows)
            .execute(conn)?;
        changed = true;
    }
    Ok(changed)
}

/// The latest evaluation of a file's content recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub(crate) struct Evaluation {
    pub(crate) run_id: i64,
    pub(crate) status: FileStatus,
    pub(crate) reason: Option<String>,
    pub(crate) counts: Counts,
    pub(crate) coin_list: Option<String>,
}

/// Words that mark the reason of a set-aside file that was not read again.
const NOT_READ_AGAIN: &str = "; unchanged since run";

impl Evaluation {
    /// The report of a file whose content was set aside by its latest evaluation, when the
    /// coins and people it was judged against are unchanged: judging it again would give
    /// the same verdict (and store the same rejects again), so it is not read.
    pub(crate) fn still_set_aside(&self, judged_against: &str) -> Option<FileReport> {
        if self.status != FileStatus::SetAside || self.coin_list.as_deref() != Some(judged_against)
        {
            return None;
        }
        let original = self.reason.as_deref().unwrap_or("set aside");
        let original = original.split(NOT_READ_AGAIN).next().unwrap_or(original);
        Some(FileReport {
            status: FileStatus::SetAside,
            reason: Some(format!(
                "{original}{NOT_READ_AGAIN} {} set it aside, and so are the coins, people \
                 and budget it was judged against: not read again (--force re-evaluates it)",
                self.run_id
            )),
            counts: self.counts,
            ..FileReport::default()
        })
    }
}

/// The latest evaluation of the content `sha256` (of a recognised file), if any.
pub(crate) fn last_evaluation(
    conn: &mut PgConnection,
    sha256: &str,
) -> QueryResult<Option<Evaluation>> {
    etl_files::table
        .filter(etl_files::sha256.eq(sha256))
        .filter(etl_files::dataset.is_not_null())
        .order((etl_files::run_id.desc(), etl_files::id.desc()))
        .select((
            etl_files::run_id,
            etl_files::status,
            etl_files::reason,
            Counts::as_select(),
            etl_files::coin_list,
        ))
        .first(conn)
        .optional()
}

/// Marks runs left `running` by a process that no longer holds the lock. Call with the
/// lock held: then no other run can be live.
pub(crate) fn mark_abandoned(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::update(etl_runs::table.filter(etl_runs::status.eq(RunStatus::Running)))
        .set((
            etl_runs::status.eq(RunStatus::Abandoned),
            etl_runs::finished_at.eq(diesel::dsl::now),
            etl_runs::message.eq("the process ended without finishing the run"),
        ))
        .execute(conn)
}

/// Registers a run (committed on its own, so a crash leaves a `running` row behind).
pub(crate) fn start_run(conn: &mut PgConnection, data_dir: &str) -> QueryResult<i64> {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    diesel::insert_into(etl_runs::table)
        .values((
            etl_runs::status.eq(RunStatus::Running),
            etl_runs::pid.eq(std::process::id() as i32),
            etl_runs::host.eq(host),
            etl_runs::data_dir.eq(data_dir),
        ))
        .returning(etl_runs::id)
        .get_result(conn)
}

/// Records how a run ended, with its summary (the run report, or its error).
pub(crate) fn finish_run(
    conn: &mut PgConnection,
    run_id: i64,
    status: RunStatus,
    message: Option<&str>,
    summary: &serde_json::Value,
) -> QueryResult<()> {
    // now() would be the transaction's start: the run's data commits with this update.
    let clock = diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(
        "clock_timestamp()",
    );
    diesel::update(etl_runs::table.find(run_id))
        .set((
            etl_runs::status.eq(status),
            etl_runs::finished_at.eq(clock),
            etl_runs::message.eq(message),
            etl_runs::summary.eq(summary),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The sha256 of every file already loaded.
pub(crate) fn loaded_hashes(conn: &mut PgConnection) -> QueryResult<BTreeSet<String>> {
    etl_files::table
        .filter(etl_files::status.eq(FileStatus::Loaded))
        .select(etl_files::sha256)
        .distinct()
        .load::<String>(conn)
        .map(|v| v.into_iter().collect())
}

/// Path and stat of every loaded file whose stat was recorded: a file that matches one
/// is unchanged since it was loaded.
pub(crate) fn loaded_stats(conn: &mut PgConnection) -> QueryResult<BTreeSet<(String, FileStat)>> {
    /// Path, size, mtime, ctime, inode.
    type StatRow = (String, i64, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<StatRow> = etl_files::table
        .filter(etl_files::status.eq(FileStatus::Loaded))
        .filter(etl_files::mtime_ns.is_not_null())
        .select((
            etl_files::path,
            etl_files::size_bytes,
            etl_files::mtime_ns,
            etl_files::ctime_ns,
            etl_files::inode,
        ))
        .distinct()
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(path, size, mtime_ns, ctime_ns, inode)| {
            Some((
                path,
                FileStat {
                    size: size as u64,
                    mtime_ns: mtime_ns?,
                    ctime_ns: ctime_ns?,
                    inode: inode? as u64,
                },
            ))
        })
        .collect())
}

/// A file that hashed to loaded content but whose stat differs (touched, copied back,
/// rewritten with the same bytes): its new stat goes on the loaded rows of the same path
/// and content, so the next run recognises it without hashing. Returns the rows updated.
pub(crate) fn record_stat(conn: &mut PgConnection, file: &InputFile) -> QueryResult<usize> {
    let Some(stat) = file.stat else {
        return Ok(0);
    };
    diesel::update(
        etl_files::table
            .filter(etl_files::status.eq(FileStatus::Loaded))
            .filter(etl_files::path.eq(&file.name))
            .filter(etl_files::sha256.eq(&file.sha256)),
    )
    .set((
        etl_files::mtime_ns.eq(stat.mtime_ns),
        etl_files::ctime_ns.eq(stat.ctime_ns),
        etl_files::inode.eq(stat.inode as i64),
    ))
    .execute(conn)
}

/// A file's ledger row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = etl_files, treat_none_as_default_value = false)]
struct NewEtlFile<'a> {
    run_id: i64,
    path: &'a str,
    sha256: &'a str,
    dataset: Option<&'static str>,
    size_bytes: i64,
    status: FileStatus,
    reason: Option<&'a str>,
    #[diesel(embed)]
    counts: Counts,
    seconds: f64,
    /// For a set-aside file: [`crate::validate::Known::fingerprint`] of what it was
    /// judged against.
    coin_list: Option<String>,
    mtime_ns: Option<i64>,
    ctime_ns: Option<i64>,
    inode: Option<i64>,
}

/// Records a file's outcome in the ledger (`etl_files`).
pub(crate) fn record_file(
    conn: &mut PgConnection,
    run_id: i64,
    file: &InputFile,
    dataset: Option<Dataset>,
    r: &FileReport,
    coin_list: Option<String>,
) -> QueryResult<()> {
    diesel::insert_into(etl_files::table)
        .values(&NewEtlFile {
            run_id,
            path: &file.name,
            sha256: &file.sha256,
            dataset: dataset.map(Dataset::name),
            size_bytes: file.size as i64,
            status: r.status,
            reason: r.reason.as_deref(),
            counts: r.counts,
            seconds: r.seconds,
            coin_list,
            mtime_ns: file.stat.map(|s| s.mtime_ns),
            ctime_ns: file.stat.map(|s| s.ctime_ns),
            inode: file.stat.map(|s| s.inode as i64),
        })
        .execute(conn)
        .map(|_| ())
}

/// Bumps the data version of each served dataset a run changed, recording with each new
/// version the lowest key of a pre-existing row the run updated or deleted
/// (`coinflow_shared::version_changes`).
pub(crate) fn bump_versions(conn: &mut PgConnection, datasets: &[Versioned]) -> QueryResult<()> {
    use coinflow_shared::schema::data_versions::dsl as dv;
    for dataset in datasets {
        match Served::from_name(dataset.name()) {
            Some(served) => {
                diesel::sql_query(version_changes::bump_sql(served.shape())).execute(conn)?;
            }
            None => {
                diesel::update(dv::data_versions.filter(dv::dataset.eq(dataset.name())))
                    .set((
                        dv::version.eq(dv::version + 1),
                        dv::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}
