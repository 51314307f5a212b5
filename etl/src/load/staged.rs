//! The staged path: a file's rows go into its dataset's temporary staging table with
//! binary COPY, then one statement per target merges them: it classifies every row
//! against the others (by input line) and against what is stored as loaded, duplicate,
//! updated or a conflicting duplicate (a reject), and writes only the first row of each
//! key (recording, for `market` and `coins`, the lowest key of a row of an earlier run
//! it updates: `coinflow_shared::version_changes`). A listings file also adds the coins
//! and aliases it names. Returns the file's
//! counts and what it changed ([`Changes`]); a file that its conflicts take over the
//! reject budget is rolled back. Writes the input tables, never a derived table.

use super::{
    over_budget, set_aside, stage, store_rejects, truncate_staging, FileJob, RunContext, RunState,
};
use crate::derive::{Changes, Count};
use crate::error::EtlError;
use crate::extract::{ExtractError, InputFile, Records};
use crate::report::FileReport;
use crate::resolve::NewCoin;
use crate::rows::Rejection;
use crate::scan::Scanned;
use crate::validate::{may_infer_coins, raw_line, reason};
use coinflow_shared::dataset::{Dataset, Shape, COINS, MARKET};
use coinflow_shared::ledger::FileStatus;
use coinflow_shared::schema::{coin_aliases, coins};
use coinflow_shared::version_changes;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use std::collections::BTreeSet;

/// How a staged table merges into its target.
struct Merge {
    stage: &'static str,
    target: &'static str,
    /// Natural key columns, and whether each may be NULL.
    keys: &'static [(&'static str, bool)],
    /// Value columns (replaced on update).
    values: &'static [&'static str],
    /// Columns stored and replaced with the values but not compared: a row that differs
    /// from the stored one only in these is a duplicate (a candle's stamp as exported).
    carried: &'static [&'static str],
    conflict: &'static str,
    /// Ascending input order is the order rows are inserted in.
    ordered_insert: bool,
    /// The served dataset that is this table (its keys are the merge's): updates of its
    /// pre-existing rows are recorded for the version bump.
    served: Option<&'static Shape>,
}

const MERGE_COINS: Merge = Merge {
    stage: "stg_coins",
    target: "coins",
    keys: &[("id", false)],
    values: &["symbol", "name", "cmc_id"],
    carried: &[],
    conflict: "(id)",
    ordered_insert: false,
    served: Some(&COINS),
};
const MERGE_MARKET: Merge = Merge {
    stage: "stg_market",
    target: "market",
    keys: &[("coin_id", false), ("ts", false)],
    values: &["price_usd", "market_cap_usd", "volume_24h_usd"],
    carried: &[],
    conflict: "(coin_id, ts)",
    ordered_insert: false,
    served: Some(&MARKET),
};
const MERGE_RANKINGS: Merge = Merge {
    stage: "stg_rankings",
    target: "rankings",
    keys: &[("coin_id", false), ("ts", false), ("source", false)],
    values: &["rank", "volume_24h_usd"],
    carried: &[],
    conflict: "(coin_id, ts, source)",
    ordered_insert: false,
    served: None,
};
/// Candles are keyed by their period, not their stamp: the same day stamped
/// `23:59:59` in one export and `23:59` in another is one candle.
const MERGE_CANDLES: Merge = Merge {
    stage: "stg_candles",
    target: "candles",
    keys: &[
        ("coin_id", false),
        ("interval", false),
        ("period_start", false),
    ],
    values: &[
        "open",
        "high",
        "low",
        "close",
        "volume_usd",
        "market_cap_usd",
    ],
    carried: &["ts"],
    conflict: "(coin_id, interval, period_start)",
    ordered_insert: false,
    served: None,
};
const MERGE_TICKERS: Merge = Merge {
    stage: "stg_tickers",
    target: "tickers",
    keys: &[
        ("coin_id", false),
        ("exchange", false),
        ("base", false),
        ("target", false),
    ],
    values: &[],
    carried: &[],
    conflict: "(coin_id, exchange, base, target)",
    ordered_insert: false,
    served: None,
};
const MERGE_PEOPLE: Merge = Merge {
    stage: "stg_people",
    target: "people",
    keys: &[("person_id", false)],
    values: &["first_name", "last_name", "email", "date_added"],
    carried: &[],
    conflict: "(person_id)",
    ordered_insert: false,
    served: None,
};
const MERGE_TRADES: Merge = Merge {
    stage: "stg_trades",
    target: "trades",
    keys: &[
        ("person_id", false),
        ("ts", false),
        ("coin_id", false),
        ("side", false),
        ("quantity", true),
        ("price", true),
    ],
    values: &[],
    carried: &[],
    conflict: "ON CONSTRAINT trades_natural_key",
    ordered_insert: true,
    served: None,
};

/// Rows of one file by outcome, plus the keys whose stored rows changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct MergeCounts {
    loaded: i64,
    duplicate: i64,
    updated: i64,
    /// Later lines of the file that repeat an earlier line's key with other values, each
    /// with that first line: the first is kept, these become rejects.
    conflicts: Vec<(i64, i64)>,
    /// Zeroed market caps and volumes in the loaded and updated rows.
    zeroed: i64,
    /// Coins (or, for people and trades, person ids as text) with new or changed rows.
    changed_keys: BTreeSet<String>,
}

#[derive(QueryableByName)]
struct ClassCount {
    #[diesel(sql_type = Text)]
    class: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    keys: Vec<String>,
    /// For the `conflict` class: the lines and the first line of their key.
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    lines: Vec<i64>,
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    firsts: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    zeroed: i64,
}

fn row_of(prefix: &str, columns: &[&str]) -> String {
    let list: Vec<String> = columns.iter().map(|c| format!("{prefix}{c}")).collect();
    format!("ROW({})", list.join(", "))
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    keys: Vec<String>,
}

/// Why the optimistic insert did not settle a file.
enum FastPath {
    /// Some staged key already exists, in the target or earlier in the file.
    Conflicts,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for FastPath {
    fn from(e: diesel::result::Error) -> Self {
        FastPath::Db(e)
    }
}

/// Merges a staged file. Most files bring only new keys: they are inserted in one pass
/// under a savepoint, with no sorting. When any staged key conflicts (a duplicate or an
/// update, in the file or against the target), the savepoint is rolled back and the
/// file goes through the full classification.
fn merge(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    staged: &Staged<'_>,
) -> QueryResult<MergeCounts> {
    if staged.rows == 0 {
        return Ok(MergeCounts::default());
    }
    match conn.transaction(|conn| insert_new_only(conn, m, change_key, staged.rows)) {
        Ok(mut counts) => {
            counts.zeroed = staged.zeroed.iter().map(|(_, n)| n).sum();
            Ok(counts)
        }
        Err(FastPath::Conflicts) => merge_classified(conn, m, change_key, staged.zeroed),
        Err(FastPath::Db(e)) => Err(e),
    }
}

/// What a file staged: its rows, and (line, count) of the rows that had market caps or
/// volumes of 0 stored as missing (`zeroed` counts them only where they load).
#[derive(Debug, Clone, Copy)]
struct Staged<'a> {
    rows: u64,
    zeroed: &'a [(i64, i64)],
}

fn insert_new_only(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    staged: u64,
) -> Result<MergeCounts, FastPath> {
    let columns: Vec<&str> = m
        .keys
        .iter()
        .map(|(k, _)| *k)
        .chain(m.values.iter().copied())
        .chain(m.carried.iter().copied())
        .collect();
    let columns = columns.join(", ");
    let order = if m.ordered_insert {
        " ORDER BY line"
    } else {
        ""
    };
    let sql = format!(
        "WITH ins AS (INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage}{order} \
                      ON CONFLICT {conflict} DO NOTHING RETURNING {change_key}::text AS key) \
         SELECT (SELECT count(*) FROM ins)::int8 AS n, \
                (SELECT coalesce(array_agg(key), '{{}}') FROM (SELECT DISTINCT key FROM ins) d) AS keys",
        target = m.target,
        stage = m.stage,
        conflict = m.conflict,
    );
    let inserted: Inserted = diesel::sql_query(sql).get_result(conn)?;
    if inserted.n as u64 != staged {
        return Err(FastPath::Conflicts);
    }
    Ok(MergeCounts {
        loaded: inserted.n,
        changed_keys: inserted.keys.into_iter().collect(),
        ..MergeCounts::default()
    })
}

/// Classifies the staged rows against each other (by input line) and against the target,
/// and upserts the first row of each key, in one statement: every part of it sees the
/// target as it was before the upsert. A later line with the key of an earlier one is a
/// duplicate when its values are the same, else a conflict (a reject for the caller).
fn merge_classified(
    conn: &mut PgConnection,
    m: &Merge,
    change_key: &str,
    zeroed: &[(i64, i64)],
) -> QueryResult<MergeCounts> {
    let keys: Vec<&str> = m.keys.iter().map(|(k, _)| *k).collect();
    let partition = keys.join(", ");
    let join: Vec<String> = m
        .keys
        .iter()
        .map(|(k, nullable)| {
            if *nullable {
                format!("t.{k} IS NOT DISTINCT FROM s.{k}")
            } else {
                format!("t.{k} = s.{k}")
            }
        })
        .collect();
    let first_key = keys[0];
    let (value_cols, class_expr) = if m.values.is_empty() {
        (
            ", first_value(line) OVER w AS first_line".to_string(),
            format!(
                "CASE WHEN s.rn > 1 THEN 'duplicate' WHEN t.{first_key} IS NULL THEN 'loaded' ELSE 'duplicate' END"
            ),
        )
    } else {
        let v = row_of("", m.values);
        (
            format!(
                ", {v} AS v, first_value({v}) OVER w AS first_v, first_value(line) OVER w AS first_line"
            ),
            format!(
                "CASE WHEN s.rn > 1 THEN CASE WHEN s.v IS NOT DISTINCT FROM s.first_v THEN 'duplicate' ELSE 'conflict' END \
                 WHEN t.{first_key} IS NULL THEN 'loaded' \
                 WHEN {} IS NOT DISTINCT FROM s.v THEN 'duplicate' ELSE 'updated' END",
                row_of("t.", m.values)
            ),
        )
    };
    let all: Vec<&str> = keys
        .iter()
        .chain(m.values.iter())
        .chain(m.carried.iter())
        .copied()
        .collect();
    let columns = all.join(", ");
    let source = if m.ordered_insert {
        format!("SELECT {columns} FROM {} ORDER BY line", m.stage)
    } else {
        format!(
            "SELECT DISTINCT ON ({partition}) {columns} FROM {} ORDER BY {partition}, line",
            m.stage
        )
    };
    let action = if m.values.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = m
            .values
            .iter()
            .chain(m.carried.iter())
            .map(|v| format!("{v} = EXCLUDED.{v}"))
            .collect();
        format!(
            "DO UPDATE SET {} WHERE {} IS DISTINCT FROM {}",
            set.join(", "),
            row_of(&format!("{}.", m.target), m.values),
            row_of("EXCLUDED.", m.values)
        )
    };
    // For a served table: each row's key and whether its stored row predates the run,
    // and a record of the lowest such key the merge updates.
    let (served_cols, record) = match m.served {
        Some(shape) => (
            format!(
                ", {}, {} AS pre",
                keys.iter()
                    .map(|k| format!("s.{k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                version_changes::pre_existing("t")
            ),
            format!(
                "low AS ({}), ",
                version_changes::record_low_key(
                    shape,
                    "classes x",
                    "x",
                    "x.class = 'updated' AND x.pre"
                )
            ),
        ),
        None => (String::new(), String::new()),
    };
    let sql = format!(
        "WITH s AS (SELECT line, {partition}, row_number() OVER w AS rn{value_cols} FROM {stage} \
                    WINDOW w AS (PARTITION BY {partition} ORDER BY line)), \
         classes AS (SELECT s.{change_key}::text AS key, s.line, s.first_line, {class_expr} AS class, \
                            coalesce(z.n, 0) AS zeros{served_cols} \
                     FROM s LEFT JOIN {target} t ON s.rn = 1 AND {join} \
                     LEFT JOIN unnest($1::int8[], $2::int8[]) AS z(line, n) ON z.line = s.line), \
         upsert AS (INSERT INTO {target} ({columns}) {source} ON CONFLICT {conflict} {action} RETURNING 1), \
         {record}\
         changed AS (SELECT DISTINCT key FROM classes WHERE class IN ('loaded', 'updated')) \
         SELECT class, count(*)::int8 AS n, \
                (SELECT coalesce(array_agg(key), '{{}}') FROM changed) AS keys, \
                coalesce(array_agg(line ORDER BY line) FILTER (WHERE class = 'conflict'), '{{}}') AS lines, \
                coalesce(array_agg(first_line ORDER BY line) FILTER (WHERE class = 'conflict'), '{{}}') AS firsts, \
                sum(zeros)::int8 AS zeroed \
         FROM classes GROUP BY class",
        stage = m.stage,
        target = m.target,
        conflict = m.conflict,
        join = join.join(" AND "),
    );
    // Fresh statistics let the planner probe the target's index for a small file instead
    // of scanning the whole (growing) target once per file.
    conn.batch_execute(&format!("ANALYZE {}", m.stage))?;
    let mut counts = MergeCounts::default();
    let (lines, zeros): (Vec<i64>, Vec<i64>) = zeroed.iter().copied().unzip();
    let classes = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&lines)
        .bind::<diesel::sql_types::Array<BigInt>, _>(&zeros)
        .load::<ClassCount>(conn)?;
    for c in classes {
        let n = c.n;
        // Zeroes count where values are stored: loaded and updated rows.
        match c.class.as_str() {
            "loaded" => {
                counts.loaded += n;
                counts.zeroed += c.zeroed;
            }
            "updated" => {
                counts.updated += n;
                counts.zeroed += c.zeroed;
            }
            "conflict" => counts.conflicts.extend(c.lines.into_iter().zip(c.firsts)),
            _ => counts.duplicate += n,
        }
        counts.changed_keys.extend(c.keys);
    }
    Ok(counts)
}

/// What merging one file did: its counts, and what it changed per target table.
#[derive(Debug, Default, Clone)]
struct FileMerge {
    /// The file's own row counts (a listings row counts once, by its market part).
    counts: MergeCounts,
    changes: Changes,
}

/// Merges a staged file of `staged` rows into the warehouse; `new_coins` and `aliases`
/// are what a listings file added to the coin dimension.
fn merge_file(
    conn: &mut PgConnection,
    dataset: Dataset,
    staged: Staged<'_>,
    new_coins: &[NewCoin],
    aliases: &[(String, String)],
) -> QueryResult<FileMerge> {
    let mut out = FileMerge::default();
    if !new_coins.is_empty() {
        let rows: Vec<_> = new_coins
            .iter()
            .map(|c| {
                (
                    coins::id.eq(&c.id),
                    coins::symbol.eq(&c.symbol),
                    coins::name.eq(&c.name),
                    coins::cmc_id.eq(c.cmc_id),
                    coins::origin.eq(if c.inferred { "inferred" } else { "listed" }),
                )
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            diesel::insert_into(coins::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        out.changes.coins_changed = true;
    }
    if !aliases.is_empty() {
        let rows: Vec<_> = aliases
            .iter()
            .map(|(external, coin)| {
                (
                    coin_aliases::source.eq(crate::resolve::LISTINGS_ALIAS_SOURCE),
                    coin_aliases::external_id.eq(external),
                    coin_aliases::coin_id.eq(coin),
                )
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            diesel::insert_into(coin_aliases::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        // A listing that knows an inferred coin takes it over: same id and history,
        // the listing's id recorded as its alias.
        let known: Vec<&String> = aliases.iter().map(|(_, coin)| coin).collect();
        // `o` is the row before the update: whether it predates the run.
        let listed: Count = diesel::sql_query(format!(
            "WITH u AS (UPDATE coins t SET origin = 'listed' FROM coins o \
                        WHERE o.id = t.id AND t.id = ANY($1) AND t.origin = 'inferred' \
                        RETURNING t.id, {pre} AS pre), \
             low AS ({record}) \
             SELECT count(*)::int8 AS n FROM u",
            pre = version_changes::pre_existing("o"),
            record = version_changes::record_low_key(&COINS, "u", "u", "u.pre"),
        ))
        .bind::<diesel::sql_types::Array<Text>, _>(&known)
        .get_result(conn)?;
        out.changes.coins_changed |= listed.n > 0;
    }
    match dataset {
        Dataset::Coins => {
            out.counts = merge(conn, &MERGE_COINS, "id", &staged)?;
            out.changes.coins_changed |= out.counts.loaded + out.counts.updated > 0;
        }
        Dataset::Listings => {
            out.counts = merge(conn, &MERGE_MARKET, "coin_id", &staged)?;
            out.changes.market_coins = out.counts.changed_keys.clone();
            // The rankings part of the rows: counted (and zeroed) by the market part.
            let rankings = Staged {
                zeroed: &[],
                ..staged
            };
            out.changes.ranking_coins =
                merge(conn, &MERGE_RANKINGS, "coin_id", &rankings)?.changed_keys;
        }
        Dataset::Markets => {
            out.counts = merge(conn, &MERGE_MARKET, "coin_id", &staged)?;
            out.changes.market_coins = out.counts.changed_keys.clone();
        }
        Dataset::Rankings => {
            out.counts = merge(conn, &MERGE_RANKINGS, "coin_id", &staged)?;
            out.changes.ranking_coins = out.counts.changed_keys.clone();
        }
        Dataset::Candles => {
            out.counts = merge(conn, &MERGE_CANDLES, "coin_id", &staged)?;
            out.changes.candle_coins = out.counts.changed_keys.clone();
        }
        Dataset::Tickers => {
            out.counts = merge(conn, &MERGE_TICKERS, "coin_id", &staged)?;
            out.changes.ticker_coins = out.counts.changed_keys.clone();
        }
        Dataset::People => {
            out.counts = merge(conn, &MERGE_PEOPLE, "person_id", &staged)?;
            out.changes.people_changed = out.counts.loaded + out.counts.updated > 0;
        }
        Dataset::Trades => {
            out.counts = merge(conn, &MERGE_TRADES, "person_id", &staged)?;
            out.changes.trades_changed = out.counts.loaded + out.counts.updated > 0;
        }
    }
    Ok(out)
}

/// Loads a file through its staging table: binary COPY, then one merge statement that
/// classifies every row as loaded, duplicate or updated, or as a conflicting duplicate
/// of an earlier line (a reject). Rejects take the file over its budget before the merge
/// (then nothing is merged) or with the merge's conflicts (then the merge is rolled back).
pub(crate) fn load(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    job: &FileJob<'_>,
    state: &mut RunState,
) -> Result<FileReport, EtlError> {
    let file = job.file;
    let RunState { known, changes, .. } = state;
    let dataset = job.detected.dataset;
    let snapshot = (matches!(
        dataset,
        Dataset::Coins | Dataset::Listings | Dataset::People
    ) || may_infer_coins(&job.detected))
    .then(|| known.clone());
    let mut stage_error = None;
    let (detected, header) = (job.detected.clone(), job.header.clone());
    let scanned = ctx.scanner().scan(file, detected, header, known, |batch| {
        match stage(conn, batch) {
            Ok(()) => true,
            Err(e) => {
                stage_error = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = stage_error {
        return Err(e.into());
    }
    let Scanned {
        report: mut file_report,
        mut rejects,
        mut valid,
        zeroed_lines,
    } = scanned;
    if dataset == Dataset::Candles {
        let irregular = super::periods::settle(conn)?;
        if !irregular.is_empty() {
            let coins: BTreeSet<&str> = irregular.iter().map(|(_, c)| c.as_str()).collect();
            log::warn!(
                "{}: {} row(s) of {} rejected: {}",
                file.name,
                irregular.len(),
                coins.into_iter().collect::<Vec<_>>().join(", "),
                super::periods::IRREGULAR_SPACING
            );
            let lines: Vec<(i64, String)> = irregular
                .into_iter()
                .map(|(line, _)| (line, super::periods::IRREGULAR_SPACING.to_string()))
                .collect();
            let mut spaced = rejections_at(file, &lines)?;
            valid -= spaced.len() as i64;
            rejects.append(&mut spaced);
            rejects.sort_by_key(|r| r.line);
            file_report.counts.rejected = rejects.len() as i64;
        }
    }
    if let Some(reason) = over_budget(&file_report.counts, ctx.opts.max_reject_ratio) {
        store_rejects(conn, ctx, job, &rejects, changes)?;
        truncate_staging(conn, dataset)?;
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
        let staged = Staged {
            rows: valid as u64,
            zeroed: &zeroed_lines,
        };
        let merged = merge_file(conn, dataset, staged, &new_coins, &aliases)?;
        let conflicts = conflict_rejections(file, &merged.counts.conflicts)?;
        budget.rejected += conflicts.len() as i64;
        match over_budget(&budget, ctx.opts.max_reject_ratio) {
            Some(reason) => Err(StagedAbort::OverBudget(Box::new(merged), conflicts, reason)),
            None => Ok((merged, conflicts)),
        }
    });
    truncate_staging(conn, dataset)?;
    match merged {
        Ok((merged, conflicts)) => {
            rejects.extend(conflicts);
            store_rejects(conn, ctx, job, &rejects, changes)?;
            changes.absorb(&merged.changes);
            file_report.rejected = rejects.len() as i64;
            file_report.loaded = merged.counts.loaded;
            file_report.duplicate = merged.counts.duplicate;
            file_report.updated = merged.counts.updated;
            file_report.zeroed = merged.counts.zeroed;
            file_report.status = FileStatus::Loaded;
            if !inferred.is_empty() {
                log::info!("{}: inferred coin(s) {}", file.name, inferred.join(", "));
            }
            file_report.inferred_coins = inferred;
            Ok(file_report)
        }
        Err(StagedAbort::OverBudget(merged, conflicts, reason)) => {
            rejects.extend(conflicts);
            store_rejects(conn, ctx, job, &rejects, changes)?;
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
    OverBudget(Box<FileMerge>, Vec<Rejection>, String),
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
    let lines: Vec<(i64, String)> = conflicts
        .iter()
        .map(|(line, first)| {
            (
                *line,
                format!("{} (first at line {first})", reason::CONFLICTING_DUPLICATE),
            )
        })
        .collect();
    rejections_at(file, &lines)
}

/// Rejects for rows that passed validation but not a check on the whole staged file
/// (`(line, reason)` pairs), with their lines as read from the file.
fn rejections_at(
    file: &InputFile,
    lines: &[(i64, String)],
) -> Result<Vec<Rejection>, ExtractError> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let reasons: std::collections::HashMap<i64, &String> =
        lines.iter().map(|(line, reason)| (*line, reason)).collect();
    let mut out = Vec::with_capacity(reasons.len());
    let mut records = Records::open(&file.path)?;
    let _ = records.header()?;
    while out.len() < reasons.len() {
        let Some((line, record)) = records.next_record()? else {
            break;
        };
        if let Some(reason) = reasons.get(&line) {
            out.push(Rejection {
                line,
                column: None,
                raw_value: None,
                reason: (*reason).clone(),
                raw_line: raw_line(record),
            });
        }
    }
    Ok(out)
}
