//! Keeps `top_slots`, the structure `/top` reads, in step with `market` and `candles`.
//!
//! Takes the coins whose market rows, ranks or candles a run changed; for each batch of
//! them, the slots the database function `top_slots_of` computes (the one definition of
//! which row counts at which instant, see its migration) replace the stored ones, writing
//! only rows that differ. Returns how many slot rows changed, bumps the `top` data version
//! when any did (the API's `/top` cache follows it) and refreshes the planner statistics.
//! Never reads the rows back into the process: the work stays in the database.

use crate::refresh::{sync, temp_table, RefreshError, COIN_BATCH};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Text};

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

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Bool)]
    any: bool,
}

/// Recomputes the slots of `coins`; returns how many slot rows were written or removed.
pub fn refresh_slots(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        let stored: Stored = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS c \
             WHERE EXISTS (SELECT 1 FROM top_slots s WHERE s.coin_id = c)) AS any",
        )
        .bind::<Array<Text>, _>(batch)
        .get_result(conn)?;
        if !stored.any {
            // New coins (a first load): nothing to compare with.
            changed += diesel::sql_query("INSERT INTO top_slots SELECT * FROM top_slots_of($1)")
                .bind::<Array<Text>, _>(batch)
                .execute(conn)? as i64;
            continue;
        }
        temp_table(conn, "tmp_top_slots", "top_slots")?;
        diesel::sql_query("INSERT INTO tmp_top_slots SELECT * FROM top_slots_of($1)")
            .bind::<Array<Text>, _>(batch)
            .execute(conn)?;
        changed += sync(
            conn,
            "top_slots",
            "tmp_top_slots",
            KEYS,
            VALUES,
            Some(("coin_id", batch)),
        )?;
    }
    if changed > 0 {
        conn.batch_execute(
            "UPDATE data_versions SET version = version + 1, updated_at = now() WHERE dataset = 'top'; \
             ANALYZE top_slots",
        )?;
    }
    Ok(changed)
}
