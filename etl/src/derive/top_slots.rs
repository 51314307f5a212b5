//! Keeps `top_slots`, the structure `/top` reads, in step with `market` and `candles`.
//!
//! Takes the coins whose market rows, ranks or candles a run may have changed. For each,
//! the earliest timestamp of a market row or candle this run's transaction wrote (its
//! `xmin` is this transaction or one of its subtransactions: only the ETL writes these
//! tables, one run at a time) says from where its slots can differ; coins are batched by
//! that instant, and the slots the database function `top_slots_of` computes from two
//! days before a batch's earliest change (the one definition of which row counts at
//! which instant, see its migration) replace the stored ones, writing only rows that
//! differ. So a day appended to a long history recomputes about a day per
//! coin, not the history. Returns how many slot rows changed, bumps the `top` data version
//! when any did (the API's `/top` cache follows it) and refreshes the planner statistics.
//! Never reads the rows into the process: the work stays in the database.

use super::{sync_sql, temp_table, written_since, Count, RefreshError, COIN_BATCH};
use crate::rows::TempTable;
use chrono::DateTime;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Text, Timestamptz};

/// The slot columns that identify a slot, and the others.
const KEYS: &[&str] = &["coin_id", "valid_from", "bucket"];
const VALUES: &[&str] = &[
    "valid_to",
    "price_usd",
    "market_cap_usd",
    "volume_24h_usd",
    "rank",
    "rank_source",
];

/// Per coin, the earliest market row or candle written by the current transaction
/// (`version_changes::written_now`; a frozen row whose raw xid has wrapped around could
/// match too, which only costs a recomputation, never a missed change).
const WRITTEN_FROM: &[(&str, &str)] = &[("market", "ts"), ("candles", "period_start")];

/// The scratch copy the recomputed slots go into: no row type, the database function
/// fills it.
const TMP_TOP_SLOTS: TempTable = TempTable::like("tmp_top_slots", "top_slots");

/// Slots from each coin's `since` on, of the coins and times bound as `$1` and `$2`.
const SLOTS_SQL: &str = "SELECT * FROM top_slots_of($1, $2)";

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Bool)]
    any: bool,
}

/// Recomputes the slots of `coins` that this run's writes can have changed; returns how
/// many slot rows were written or removed.
pub(super) fn refresh(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
    if coins.is_empty() {
        return Ok(0);
    }
    // Coins that changed at about the same time are batched together, from their
    // earliest change.
    let written = written_since(conn, WRITTEN_FROM, coins)?;
    let mut changed = 0;
    for batch in written.chunks(COIN_BATCH) {
        let ids: Vec<&str> = batch.iter().map(|s| s.key.as_str()).collect();
        let stored: Stored = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS c \
             WHERE EXISTS (SELECT 1 FROM top_slots s WHERE s.coin_id = c)) AS any",
        )
        .bind::<Array<Text>, _>(&ids)
        .get_result(conn)?;
        if !stored.any {
            // New coins (a first load): all their slots, nothing to compare with.
            // Before any instant the warehouse holds (1970 on).
            let everything = vec![DateTime::UNIX_EPOCH - chrono::Duration::days(30); ids.len()];
            changed += diesel::sql_query(format!("INSERT INTO top_slots {SLOTS_SQL}"))
                .bind::<Array<Text>, _>(&ids)
                .bind::<Array<Timestamptz>, _>(&everything)
                .execute(conn)? as i64;
            continue;
        }
        // Two days before the batch's first change: the slot of the row before it ends
        // there. One instant for the batch keeps the scope an index range of the key.
        let from = batch
            .iter()
            .map(|s| s.since)
            .min()
            .unwrap_or(DateTime::UNIX_EPOCH)
            - chrono::Duration::days(2);
        temp_table(conn, &TMP_TOP_SLOTS)?;
        diesel::sql_query(format!("INSERT INTO tmp_top_slots {SLOTS_SQL}"))
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Timestamptz>, _>(vec![from; ids.len()])
            .execute(conn)?;
        let scope = "t.coin_id = ANY($1) AND t.valid_from >= $2";
        let count: Count = diesel::sql_query(sync_sql(
            "top_slots",
            "tmp_top_slots",
            KEYS,
            VALUES,
            scope,
            None,
        ))
        .bind::<Array<Text>, _>(&ids)
        .bind::<Timestamptz, _>(from)
        .get_result(conn)?;
        changed += count.n;
    }
    if changed > 0 {
        conn.batch_execute(
            "UPDATE data_versions SET version = version + 1, updated_at = now() WHERE dataset = 'top'; \
             ANALYZE top_slots",
        )?;
    }
    Ok(changed)
}
