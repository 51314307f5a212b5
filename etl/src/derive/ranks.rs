//! `market.rank` and `market.rank_source`: each snapshot takes its coin's latest ranking
//! at or before it within the tolerance, from the most preferred source that has one
//! ([`transform::market_ranks`], [`transform::RANK_SOURCE_PREFERENCE`]). Takes the coins
//! whose snapshots or rankings changed; writes only the snapshots whose rank differs, and
//! records the lowest of them that predates the run (re-ranking the snapshots the run
//! just loaded is no update for cursors: `coinflow_shared::version_changes`).

use super::{micros, temp_table, to_ts, written_since, Count, RefreshError, COIN_BATCH};
use crate::rows::{copy_rows, temp_rows};
use crate::transform;
use chrono::{DateTime, Utc};
use coinflow_shared::dataset::MARKET;
use coinflow_shared::version_changes;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Int4, Text, Timestamptz};
use polars::prelude::*;
use std::collections::HashSet;

temp_rows! {
    /// A snapshot's rank, as the update of `market` reads it from `tmp_rank`.
    struct RankRow => tmp_rank (coin_id, ts) {
        coin_id: String = Text,
        ts: DateTime<Utc> = Timestamptz,
        rank: Option<i32> = Nullable<Int4>,
        rank_source: Option<String> = Nullable<Text>,
        /// The snapshot predates the run (its rank change is an update of the served row).
        pre: bool = Bool,
    }
}

/// Per coin, the earliest snapshot or ranking the current transaction wrote (the same
/// `xmin` test as `top_slots`): a snapshot before it keeps its rank, since the rankings
/// that can rank it (at most the tolerance older than the snapshot) are all older still
/// and unchanged. The ETL never deletes a ranking, so writes are the only changes.
const WRITTEN_FROM: &[(&str, &str)] = &[("market", "ts"), ("rankings", "ts")];

/// The snapshots of a batch of coins from each coin's `since` on, and whether each
/// predates the run.
fn snapshots_sql() -> String {
    format!(
        "SELECT m.coin_id AS key, m.ts, {} AS pre FROM market m \
         JOIN unnest($1::text[], $2::timestamptz[]) AS w(coin_id, since) \
           ON m.coin_id = w.coin_id AND m.ts >= w.since",
        version_changes::pre_existing("m")
    )
}

/// The rankings that can rank those snapshots: from `since` minus the tolerance on.
const RANKINGS_SQL: &str = "\
SELECT r.coin_id AS key, r.ts, r.rank, r.source FROM rankings r
JOIN unnest($1::text[], $2::timestamptz[]) AS w(coin_id, since)
  ON r.coin_id = w.coin_id AND r.ts >= w.since - make_interval(secs => $3::float8 / 1e6)";

#[derive(QueryableByName)]
struct Snapshot {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Timestamptz)]
    ts: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    pre: bool,
}

#[derive(QueryableByName)]
struct Ranking {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Timestamptz)]
    ts: DateTime<Utc>,
    #[diesel(sql_type = Int4)]
    rank: i32,
    #[diesel(sql_type = Text)]
    source: String,
}

/// Re-ranks the snapshots of `coins` from each coin's earliest written snapshot or
/// ranking on (so an appended day re-ranks about a day, not the history); returns how
/// many snapshots changed.
pub(super) fn refresh(
    conn: &mut PgConnection,
    coins: &[String],
    tolerance_us: i64,
) -> Result<i64, RefreshError> {
    if coins.is_empty() {
        return Ok(0);
    }
    // Coins that changed at about the same time are batched together, from their
    // earliest change.
    let written = written_since(conn, WRITTEN_FROM, coins)?;
    let mut changed = 0;
    for batch in written.chunks(COIN_BATCH) {
        let ids: Vec<&str> = batch.iter().map(|s| s.key.as_str()).collect();
        let since: Vec<DateTime<Utc>> = batch.iter().map(|s| s.since).collect();
        let ranks: Vec<Ranking> = diesel::sql_query(RANKINGS_SQL)
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Timestamptz>, _>(&since)
            .bind::<BigInt, _>(tolerance_us)
            .load(conn)?;
        // A coin with no ranking in reach has nothing to join: its snapshots keep a null
        // rank, unless one was ranked before (a ranking replaced by a later file).
        let snaps: Vec<Snapshot> = diesel::sql_query(snapshots_sql())
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Timestamptz>, _>(&since)
            .load(conn)?;
        // Snapshots loaded before the run; a run's appends usually have none in reach.
        let pre: HashSet<(String, i64)> = snaps
            .iter()
            .filter(|s| s.pre)
            .map(|s| (s.key.clone(), micros(&s.ts)))
            .collect();
        let snaps: Vec<(String, DateTime<Utc>)> =
            snaps.into_iter().map(|s| (s.key, s.ts)).collect();
        let ranks: Vec<(String, DateTime<Utc>, i32, String)> = ranks
            .into_iter()
            .map(|r| (r.key, r.ts, r.rank, r.source))
            .collect();
        let snapshots = df!(
            "coin_id" => snaps.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => snaps.iter().map(|r| micros(&r.1)).collect::<Vec<_>>()
        )?;
        drop(snaps);
        let rankings_df = df!(
            "coin_id" => ranks.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "ts" => ranks.iter().map(|r| micros(&r.1)).collect::<Vec<_>>(),
            "rank" => ranks.iter().map(|r| r.2).collect::<Vec<_>>(),
            "source" => ranks.iter().map(|r| r.3.as_str()).collect::<Vec<_>>()
        )?;
        let joined = transform::market_ranks(snapshots, rankings_df, tolerance_us)?;
        let coin = joined.column("coin_id")?.str()?;
        let ts = joined.column("ts")?.i64()?;
        let rank = joined.column("rank")?.i32()?;
        let source = joined.column("rank_source")?.str()?;
        let rows: Vec<RankRow> = (0..joined.height())
            .map(|i| {
                let coin_id = coin.get(i).unwrap_or_default().to_string();
                let at = ts.get(i);
                RankRow {
                    pre: at.is_some_and(|at| pre.contains(&(coin_id.clone(), at))),
                    coin_id,
                    ts: to_ts(at).unwrap_or_default(),
                    rank: rank.get(i),
                    rank_source: source.get(i).map(str::to_string),
                }
            })
            .collect();
        temp_table(conn, &RankRow::TABLE)?;
        copy_rows!(conn, tmp_rank::table, rows);
        let updated: Count = diesel::sql_query(update_sql()).get_result(conn)?;
        changed += updated.n;
    }
    Ok(changed)
}

/// Writes the ranks of `tmp_rank` that differ and records the lowest snapshot that
/// predates the run among them (`coinflow_shared::version_changes`).
fn update_sql() -> String {
    format!(
        "WITH u AS (UPDATE market m SET rank = r.rank, rank_source = r.rank_source FROM tmp_rank r \
                    WHERE m.coin_id = r.coin_id AND m.ts = r.ts \
                    AND (m.rank IS DISTINCT FROM r.rank OR m.rank_source IS DISTINCT FROM r.rank_source) \
                    RETURNING m.coin_id, m.ts, r.pre), \
         low AS ({}) \
         SELECT count(*)::int8 AS n FROM u",
        version_changes::record_low_key(&MARKET, "u", "u", "u.pre")
    )
}
