//! The period of each staged candle: its interval (from the file's interval column, else
//! from the spacing of its coin's rows in the file) and the start of that period in UTC,
//! the key candles are stored under. Runs on a candles file's staging table once the
//! whole file is staged (spacing needs every row of a coin), before the merge. The rules
//! are the database's (`candle_spacing`, `candle_period_start`, defined with the interval
//! column's migration), so the ETL and the upgrade of stored rows cannot disagree.
//! Writes only the staging table.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// Why the rows of a coin whose spacing gives no interval are rejected.
pub(crate) const IRREGULAR_SPACING: &str = "irregular candle spacing: most gaps between this coin's rows in the file fit none of 1m, 5m, 15m, 30m, 1h, 4h, 1d (an interval column says which)";

#[derive(QueryableByName)]
struct Irregular {
    #[diesel(sql_type = BigInt)]
    line: i64,
    #[diesel(sql_type = Text)]
    coin_id: String,
}

/// Gives every staged candle its interval and period start. Returns the lines (with
/// their coin) of the candles whose coin's spacing is irregular: they are removed from
/// staging, for the caller to reject.
pub(crate) fn settle(conn: &mut PgConnection) -> QueryResult<Vec<(i64, String)>> {
    conn.batch_execute(
        "WITH spacing AS (
             SELECT coin_id, candle_spacing(array_agg(ts)) AS interval
             FROM stg_candles WHERE interval IS NULL GROUP BY coin_id
         )
         UPDATE stg_candles s
         SET interval = p.interval, period_start = candle_period_start(s.ts, p.interval)
         FROM spacing p
         WHERE s.interval IS NULL AND s.coin_id = p.coin_id AND p.interval IS NOT NULL;
         UPDATE stg_candles SET period_start = candle_period_start(ts, interval)
         WHERE period_start IS NULL AND interval IS NOT NULL;",
    )?;
    let irregular: Vec<Irregular> =
        diesel::sql_query("DELETE FROM stg_candles WHERE interval IS NULL RETURNING line, coin_id")
            .load(conn)?;
    Ok(irregular.into_iter().map(|r| (r.line, r.coin_id)).collect())
}
