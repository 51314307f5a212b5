//! Loading: validated rows into the warehouse, under the run's transaction. Takes one
//! file at a time ([`FileJob`]) with what the run has built up so far ([`RunState`]:
//! the coins and people rows resolve against, what the merges changed, a bulk load in
//! progress), reads it through [`crate::scan`] and returns its report; rejects go to
//! the ledger as the file settles. Two paths: [`direct`] copies a markets file's rows
//! straight into `market` when they bring only new keys; [`staged`] copies any file
//! into a temporary staging table (declared with its row in [`crate::rows`], created
//! here from that declaration) and merges it with one statement that classifies every
//! row loaded, duplicate, updated or conflicting. [`bulk`] builds an empty `market`
//! anew beside the one readers use, its indexes once after a first load, and swaps it
//! in before the commit. A file over its
//! reject budget loads nothing and is set aside. Writes the input tables (`coins`,
//! `coin_aliases`, `market`, `rankings`, `candles`, `tickers`, `people`, `trades`) and,
//! through the ledger, `etl_rejects`; never a derived table: that is `derive`'s.

pub(crate) mod bulk;
pub(crate) mod direct;
pub(crate) mod periods;
pub(crate) mod staged;

use crate::derive::Changes;
use crate::extract::InputFile;
use crate::ledger;
use crate::options::RunOptions;
use crate::report::{FileReport, Progress};
use crate::rows::{self, copy_rows, Batch, Rejection};
use crate::scan::Scanner;
use crate::validate::Known;
use bulk::Bulk;
use coinflow_shared::dataset::{Dataset, Detected};
use coinflow_shared::models::Counts;
use coinflow_shared::schema::{coin_aliases, coins, people};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use std::time::Instant;

/// What every file of a run shares.
pub(crate) struct RunContext<'a> {
    pub(crate) run_id: i64,
    pub(crate) opts: &'a RunOptions,
    pub(crate) progress: &'a Progress,
    pub(crate) started: Instant,
}

impl RunContext<'_> {
    fn scanner(&self) -> Scanner<'_> {
        Scanner {
            opts: self.opts,
            progress: self.progress,
            started: self.started,
        }
    }
}

/// One recognised file to load, and whether the ledger has seen its content before.
pub(crate) struct FileJob<'a> {
    pub(crate) file: &'a InputFile,
    pub(crate) detected: Detected,
    pub(crate) header: Vec<String>,
    pub(crate) evaluated_before: bool,
}

/// What loading builds up over a run's files.
pub(crate) struct RunState {
    /// The coins and people rows resolve against, with what earlier files added.
    pub(crate) known: Known,
    /// What the merges changed so far: the refresh's input.
    pub(crate) changes: Changes,
    /// A bulk load of `market` in progress.
    pub(crate) bulk: Option<Bulk>,
}

/// The coins, aliases and people the warehouse stores: what a run's first file resolves
/// against.
pub(crate) fn known_from_db(conn: &mut PgConnection) -> QueryResult<Known> {
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

/// Creates the run's staging tables, as [`rows`] declares them; they disappear when the
/// run's transaction ends.
pub(crate) fn create_staging(conn: &mut PgConnection) -> QueryResult<()> {
    let statements: Vec<String> = rows::STAGING.iter().map(|t| t.create_sql()).collect();
    conn.batch_execute(&statements.join(";\n"))
}

/// Empties the staging tables a dataset's files use, between files.
pub(crate) fn truncate_staging(conn: &mut PgConnection, dataset: Dataset) -> QueryResult<()> {
    conn.batch_execute(match dataset {
        Dataset::Coins => "TRUNCATE stg_coins",
        Dataset::Listings => "TRUNCATE stg_market, stg_rankings",
        Dataset::Markets => "TRUNCATE stg_market",
        Dataset::Rankings => "TRUNCATE stg_rankings",
        Dataset::Candles => "TRUNCATE stg_candles",
        Dataset::Tickers => "TRUNCATE stg_tickers",
        Dataset::People => "TRUNCATE stg_people",
        Dataset::Trades => "TRUNCATE stg_trades",
    })
}

/// Writes a batch to staging with binary COPY.
pub(crate) fn stage(conn: &mut PgConnection, batch: &Batch) -> QueryResult<()> {
    copy_rows!(conn, rows::stg_coins::table, batch.coins);
    copy_rows!(conn, rows::stg_market::table, batch.market);
    copy_rows!(conn, rows::stg_rankings::table, batch.rankings);
    copy_rows!(conn, rows::stg_candles::table, batch.candles);
    copy_rows!(conn, rows::stg_tickers::table, batch.tickers);
    copy_rows!(conn, rows::stg_people::table, batch.people);
    copy_rows!(conn, rows::stg_trades::table, batch.trades);
    Ok(())
}

/// Stores a file's rejects in the ledger (and there replaces those of an earlier
/// evaluation of the same content).
fn store_rejects(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    job: &FileJob<'_>,
    rejects: &[Rejection],
    changes: &mut Changes,
) -> QueryResult<()> {
    if !rejects.is_empty() || job.evaluated_before {
        changes.rejects_stored |= ledger::store_rejects(
            conn,
            ctx.run_id,
            &job.file.name,
            &job.file.sha256,
            rejects,
            job.evaluated_before,
        )?;
    }
    Ok(())
}

/// A file over its reject budget: none of its rows load; `valid` rows passed every check
/// and are counted as set aside.
fn set_aside(file: &InputFile, mut report: FileReport, valid: i64, reason: String) -> FileReport {
    log::error!("{}: set aside, nothing loaded: {reason}", file.name);
    report.set_aside(valid, reason);
    report
}

/// The reject budget: rejected rows over the rows that are data (blank rows are not).
pub(crate) fn over_budget(counts: &Counts, ratio: f64) -> Option<String> {
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
