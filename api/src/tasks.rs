//! Coin tasks, the decision: each task takes the next task run from `task_run_seq`, and
//! each id is accepted (known coin, first time any task sees it: stored with its sorted
//! unique exchanges), a duplicate (seen before, in this task or an earlier one) or
//! invalid (not a coin). Takes ids, returns a [`TaskReport`]; knows nothing of HTTP.
//!
//! The accept/duplicate decision is `INSERT … ON CONFLICT DO NOTHING RETURNING`, so two
//! concurrent tasks can never both accept a coin; inserts go in coin-id order so that
//! overlapping tasks cannot deadlock. Tasks that share a coin are ordered by an advisory
//! lock taken before the task run (see [`TAKE_RUN_SQL`]), so the lowest task run that asks
//! for a coin is the one that stores it.

use crate::error::ApiError;
use crate::raw::{Bind, RawQuery};
use diesel::pg::PgConnection;
use diesel::Connection;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

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

/// What became of one known coin of a task.
pub struct Decision {
    id: String,
    exchanges: Vec<String>,
    accepted: bool,
}

/// How many advisory locks coin ids hash into (see [`TAKE_RUN_SQL`]): few enough that a
/// task of 10 000 ids stays far below the server's lock table, many enough that small
/// tasks on different coins rarely wait for each other.
pub(crate) const ID_LOCK_BUCKETS: u32 = 64;

/// Takes the task run, after the transaction-level locks of the ids' buckets (`$1`: the
/// bucket numbers, sorted, as text). Two tasks that share a coin share its bucket: the
/// second waits until the first has committed its inserts, and only then takes its own
/// run. So a coin is stored under the lowest task run that asked for it, and no task
/// reports as "first" a run later than its own. Sorted buckets cannot deadlock; the
/// materialised CTE takes every lock before `nextval` runs. The locks' first key is
/// "task" in ASCII (1952543595); the ETL's one-key lock lives in another space.
pub(crate) const TAKE_RUN_SQL: &str = "\
WITH locks AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(1952543595, b::int4)) AS n FROM unnest($1::text[]) AS b
)
SELECT nextval('task_run_seq') AS run FROM locks";

/// Decides every id of a task that holds its run and locks. `$1`: the unique ids, `$2`:
/// the task run. The ids that are coins are inserted unless a task already has them.
pub(crate) const DECIDE_SQL: &str = "\
WITH req AS (SELECT DISTINCT unnest($1::text[]) AS id),
known AS (
    SELECT c.id,
           ARRAY(SELECT DISTINCT e FROM unnest(ce.exchanges) AS e ORDER BY e) AS exchanges
    FROM req
    JOIN coins c ON c.id = req.id
    LEFT JOIN coin_exchanges ce ON ce.coin_id = c.id
),
ins AS (
    INSERT INTO task_results (coin_id, exchanges, task_run)
    SELECT id, exchanges, $2::int8 FROM known ORDER BY id
    ON CONFLICT (coin_id) DO NOTHING
    RETURNING coin_id
)
SELECT k.id, k.exchanges, (i.coin_id IS NOT NULL) AS accepted
FROM known k LEFT JOIN ins i ON i.coin_id = k.id";

/// The task that accepted each of `$1`.
pub(crate) const FIRST_RUNS_SQL: &str =
    "SELECT coin_id, task_run FROM task_results WHERE coin_id = ANY($1::text[])";

/// The lock bucket of a coin id: FNV-1a, stable across processes and versions.
fn lock_bucket(id: &str) -> u32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(ID_LOCK_BUCKETS)) as u32
}

/// Step one of a task, inside its transaction: locks the buckets of `unique` and takes
/// the task run. Public so that tests can hold a task between its two steps.
pub fn take_task_run(conn: &mut PgConnection, unique: &[String]) -> Result<i64, ApiError> {
    let buckets: std::collections::BTreeSet<u32> =
        unique.iter().map(|id| lock_bucket(id)).collect();
    let mut run = None;
    RawQuery::new(TAKE_RUN_SQL)
        .bind(Bind::TextArray(
            buckets.iter().map(u32::to_string).collect(),
        ))
        .for_each_row(conn, |row| {
            run = row.int8(0)?;
            Ok(())
        })?;
    run.ok_or_else(|| ApiError::Internal("the task took no task run".into()))
}

/// Step two, in the same transaction: inserts the known coins of `unique` under `run`.
pub fn decide_in_run(
    conn: &mut PgConnection,
    run: i64,
    unique: &[String],
) -> Result<Vec<Decision>, ApiError> {
    RawQuery::new(DECIDE_SQL)
        .bind(Bind::TextArray(unique.to_vec()))
        .bind(Bind::Int8(run))
        .map_rows(conn, |row| {
            Ok(Decision {
                id: row.text(0)?.unwrap_or_default(),
                exchanges: row.text_array(1)?.unwrap_or_default(),
                accepted: row.bool(2)?.unwrap_or(false),
            })
        })
}

/// Runs one task against the database.
pub fn decide(conn: &mut PgConnection, ids: &[String]) -> Result<TaskReport, ApiError> {
    let unique: Vec<String> = {
        let mut seen = HashSet::new();
        ids.iter()
            // No coin id holds NUL (PostgreSQL text cannot): such an id is invalid as is.
            .filter(|id| !id.contains('\0'))
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    };
    let (run, decisions) = conn.transaction(|conn| {
        let run = take_task_run(conn, &unique)?;
        decide_in_run(conn, run, &unique).map(|d| (run, d))
    })?;
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
