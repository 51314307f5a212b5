//! `market.rank` and `market.rank_source`: each snapshot takes its coin's latest ranking
//! at or before it within the tolerance, from the most preferred source that has one
//! ([`transform::market_ranks`], [`transform::RANK_SOURCE_PREFERENCE`]). Takes the coins
//! whose snapshots or rankings changed; writes only the snapshots whose rank differs.

use super::{micros, to_ts, Key, RefreshError, COIN_BATCH};
use crate::rows::copy_rows;
use crate::transform;
use chrono::{DateTime, Utc};
use coinflow_shared::schema::{market, rankings};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use polars::prelude::*;

diesel::table! {
    tmp_rank (coin_id, ts) {
        coin_id -> Text,
        ts -> Timestamptz,
        rank -> Nullable<Int4>,
        rank_source -> Nullable<Text>,
    }
}

#[derive(Insertable)]
#[diesel(table_name = tmp_rank, treat_none_as_default_value = false)]
struct RankRow {
    coin_id: String,
    ts: DateTime<Utc>,
    rank: Option<i32>,
    rank_source: Option<String>,
}

/// Re-ranks the snapshots of `coins`; returns how many snapshots changed.
pub(super) fn refresh(
    conn: &mut PgConnection,
    coins: &[String],
    tolerance_us: i64,
) -> Result<i64, RefreshError> {
    if coins.is_empty() {
        return Ok(0);
    }
    // A coin with no ranking and no ranked snapshot has nothing to join: its snapshots'
    // ranks stay null. Skipping it keeps price-only loads from reading everything back.
    let coins: Vec<String> = diesel::sql_query(
        "SELECT c AS key FROM unnest($1::text[]) AS c \
         WHERE EXISTS (SELECT 1 FROM rankings r WHERE r.coin_id = c) \
            OR EXISTS (SELECT 1 FROM market m WHERE m.coin_id = c AND m.rank IS NOT NULL)",
    )
    .bind::<Array<Text>, _>(coins)
    .load::<Key>(conn)?
    .into_iter()
    .map(|k| k.key)
    .collect();
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        let snaps: Vec<(String, DateTime<Utc>)> = market::table
            .filter(market::coin_id.eq_any(batch))
            .select((market::coin_id, market::ts))
            .load(conn)?;
        let ranks: Vec<(String, DateTime<Utc>, i32, String)> = rankings::table
            .filter(rankings::coin_id.eq_any(batch))
            .select((
                rankings::coin_id,
                rankings::ts,
                rankings::rank,
                rankings::source,
            ))
            .load(conn)?;
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
            .map(|i| RankRow {
                coin_id: coin.get(i).unwrap_or_default().to_string(),
                ts: to_ts(ts.get(i)).unwrap_or_default(),
                rank: rank.get(i),
                rank_source: source.get(i).map(str::to_string),
            })
            .collect();
        conn.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS tmp_rank (coin_id text, ts timestamptz, rank int4, rank_source text) ON COMMIT DROP; TRUNCATE tmp_rank",
        )?;
        copy_rows!(conn, tmp_rank::table, rows);
        changed += conn_execute(
            conn,
            "UPDATE market m SET rank = r.rank, rank_source = r.rank_source FROM tmp_rank r \
             WHERE m.coin_id = r.coin_id AND m.ts = r.ts \
             AND (m.rank IS DISTINCT FROM r.rank OR m.rank_source IS DISTINCT FROM r.rank_source)",
        )?;
    }
    Ok(changed)
}

fn conn_execute(conn: &mut PgConnection, sql: &str) -> QueryResult<i64> {
    diesel::sql_query(sql).execute(conn).map(|n| n as i64)
}
