//! The direct path: a markets file whose rows bring their own coin ids is copied
//! straight into `market` with binary COPY under a savepoint, skipping staging and the
//! merge. Most files bring only new keys, and for them staging and merging would write
//! every row twice. A key that already exists rolls the file back and hands it to the
//! staged path; while a bulk load defers `market`'s primary key, the copied keys
//! are proven distinct by [`KeySpans`] instead. Also folds the file's snapshots into the
//! daily rows ([`crate::derive::DailyFold`]) while they pass. Writes `market` only.

use super::bulk::KeySpans;
use super::{over_budget, set_aside, store_rejects, FileJob, RunContext, RunState};
use crate::error::EtlError;
use crate::report::FileReport;
use crate::rows::{MarketRow, COPY_CHUNK};
use crate::scan::Scanned;
use chrono::{DateTime, Utc};
use coinflow_shared::ledger::FileStatus;
use coinflow_shared::schema::market;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::collections::BTreeSet;

/// A snapshot as `market` stores it before the rank refresh.
#[derive(Insertable)]
#[diesel(table_name = market, treat_none_as_default_value = false)]
struct NewMarket<'a> {
    coin_id: &'a str,
    ts: DateTime<Utc>,
    price_usd: f64,
    market_cap_usd: Option<f64>,
    volume_24h_usd: Option<f64>,
}

/// Copies validated snapshots straight into `market` with binary COPY, skipping staging
/// and the merge. A key that is already stored, or that comes twice, fails the COPY with
/// a unique violation: the caller runs this under a savepoint and falls back to staging.
fn copy_market(conn: &mut PgConnection, rows: &[MarketRow]) -> QueryResult<()> {
    for chunk in rows.chunks(COPY_CHUNK) {
        let chunk: Vec<NewMarket<'_>> = chunk
            .iter()
            .map(|r| NewMarket {
                coin_id: &r.coin_id,
                ts: r.ts,
                price_usd: r.price_usd,
                market_cap_usd: r.market_cap_usd,
                volume_24h_usd: r.volume_24h_usd,
            })
            .collect();
        diesel::copy_from(market::table)
            .from_insertable(&chunk)
            .execute(conn)?;
    }
    Ok(())
}

/// Those of `coins` with no stored candle and, unless the caller knows `market` holds
/// none of their rows (`check_market` false), no stored snapshot.
fn coins_without_facts(
    conn: &mut PgConnection,
    coins: &[&str],
    check_market: bool,
) -> QueryResult<BTreeSet<String>> {
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        key: String,
    }
    let market = if check_market {
        "NOT EXISTS (SELECT 1 FROM market m WHERE m.coin_id = c) AND"
    } else {
        ""
    };
    let keys: Vec<Key> = diesel::sql_query(format!(
        "SELECT c AS key FROM unnest($1::text[]) AS c \
         WHERE {market} NOT EXISTS (SELECT 1 FROM candles k WHERE k.coin_id = c)"
    ))
    .bind::<diesel::sql_types::Array<Text>, _>(coins)
    .load(conn)?;
    Ok(keys.into_iter().map(|k| k.key).collect())
}

/// Whether a COPY or insert failed because a key already exists.
fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Why a direct load did not settle its file.
enum DirectAbort {
    /// A key already exists (stored, or earlier in the file): stage and merge instead.
    Conflict,
    /// `market`'s primary key is deferred and a row may repeat a key: build the key, then
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
/// exists: the caller then stages and classifies the file ([`super::staged::load`]). During a
/// bulk load without the primary key, a row that may repeat a key rolls the file back,
/// builds the key and loads the file again.
pub(crate) fn load(
    conn: &mut PgConnection,
    ctx: &RunContext<'_>,
    job: &FileJob<'_>,
    state: &mut RunState,
) -> Result<Option<FileReport>, EtlError> {
    let RunState {
        known,
        changes,
        bulk,
    } = state;
    let file = job.file;
    loop {
        // The spans of the keys copied so far, while `market` has no primary key.
        let unkeyed = match &*bulk {
            Some(b) if b.shadow.key_deferred() => Some(&b.spans),
            _ => None,
        };
        let mut file_spans = KeySpans::default();
        let mut coins: BTreeSet<String> = BTreeSet::new();
        let mut copied = 0i64;
        // The fold keeps this file's rows only if the file loads.
        let mut fold = changes.daily_fold.clone();
        let candle_coins = &changes.candle_coins;
        let outcome = conn.transaction(|conn| {
            let mut abort: Option<DirectAbort> = None;
            let scanned = ctx
                .scanner()
                .scan(
                    file,
                    job.detected.clone(),
                    job.header.clone(),
                    known,
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
                                fresh = coins_without_facts(conn, &unseen, unkeyed.is_none())?;
                                fresh.retain(|c| !candle_coins.contains(c));
                            }
                            fold.add(&unseen, &fresh, rows)
                                .map_err(|e| EtlError::Refresh(e.into()))?;
                            copy_market(conn, rows)?;
                            Ok(())
                        })();
                        match stored {
                            Ok(()) => {
                                coins.extend(unseen.iter().map(|c| c.to_string()));
                                copied += rows.len() as i64;
                                true
                            }
                            Err(EtlError::Db(e)) if is_unique_violation(&e) => {
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
                store_rejects(conn, ctx, job, &scanned.rejects, changes)?;
                let mut r = scanned.report;
                r.loaded = copied;
                r.status = FileStatus::Loaded;
                changes.market_coins.extend(coins);
                changes.daily_fold = fold;
                if let Some(bulk) = bulk.as_mut() {
                    bulk.spans.absorb(file_spans);
                }
                r
            }
            Err(DirectAbort::OverBudget(scanned, reason)) => {
                store_rejects(conn, ctx, job, &scanned.rejects, changes)?;
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
                    bulk.shadow.restore_key(conn)?;
                }
                continue;
            }
            Err(DirectAbort::Failed(e)) => return Err(e),
        };
        file_report.path = file.name.clone();
        return Ok(Some(file_report));
    }
}
