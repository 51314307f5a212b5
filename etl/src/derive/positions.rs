//! `positions`: per person and coin, the net quantity, average buy price and market
//! value at the coin's latest price ([`transform::positions`]). Recomputed whole when
//! trades or snapshots changed.

use super::{sync_served, temp_table, RefreshError};
use crate::rows::{copy_rows, temp_rows, Side};
use crate::transform;
use coinflow_shared::dataset::POSITIONS;
use coinflow_shared::schema::{positions, trades};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use polars::prelude::*;

temp_rows! {
    /// A row of `positions`, written through its scratch copy `tmp_positions`.
    struct PositionRow => tmp_positions (person_id, coin_id) like positions {
        person_id: i64 = Int8,
        coin_id: String = Text,
        net_quantity: f64 = Float8,
        trade_count: i64 = Int8,
        avg_buy_price: Option<f64> = Nullable<Float8>,
        last_price_usd: Option<f64> = Nullable<Float8>,
        market_value_usd: Option<f64> = Nullable<Float8>,
    }
}

#[derive(QueryableByName)]
struct LatestPrice {
    #[diesel(sql_type = Text)]
    coin_id: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    price: f64,
}

/// Recomputes every position; returns how many rows changed.
pub(super) fn refresh(conn: &mut PgConnection) -> Result<i64, RefreshError> {
    type TradeIn = (i64, String, Side, Option<f64>, Option<f64>);
    let t: Vec<TradeIn> = trades::table
        .filter(trades::quantity.is_not_null())
        .select((
            trades::person_id,
            trades::coin_id,
            trades::side,
            trades::quantity,
            trades::price,
        ))
        .load(conn)?;
    // The latest price of each traded coin, through the (coin_id, ts) primary key.
    let prices: Vec<LatestPrice> = diesel::sql_query(
        "SELECT c.coin_id, m.price_usd AS price FROM (SELECT DISTINCT coin_id FROM trades) c \
         CROSS JOIN LATERAL (SELECT price_usd FROM market WHERE market.coin_id = c.coin_id ORDER BY ts DESC LIMIT 1) m",
    )
    .load(conn)?;
    let trades_df = df!(
        "person_id" => t.iter().map(|r| r.0).collect::<Vec<_>>(),
        "coin_id" => t.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "side" => t.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        "quantity" => t.iter().map(|r| r.3).collect::<Vec<_>>(),
        "price" => t.iter().map(|r| r.4).collect::<Vec<_>>()
    )?;
    let prices_df = df!(
        "coin_id" => prices.iter().map(|r| r.coin_id.as_str()).collect::<Vec<_>>(),
        "price" => prices.iter().map(|r| r.price).collect::<Vec<_>>()
    )?;
    drop(t);
    let out = transform::positions(trades_df, prices_df)?;
    let ids: Vec<Option<i64>> = out.column("person_id")?.i64()?.iter().collect();
    let coins: Vec<Option<&str>> = out.column("coin_id")?.str()?.iter().collect();
    let counts: Vec<Option<i64>> = out.column("trade_count")?.i64()?.iter().collect();
    let f = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(out.column(name)?.f64()?.iter().collect())
    };
    let (net, avg, last, value) = (
        f("net_quantity")?,
        f("avg_buy_price")?,
        f("last_price_usd")?,
        f("market_value_usd")?,
    );
    let rows: Vec<PositionRow> = (0..out.height())
        .map(|k| PositionRow {
            person_id: ids[k].unwrap_or_default(),
            coin_id: coins[k].unwrap_or_default().to_string(),
            net_quantity: net[k].unwrap_or_default(),
            trade_count: counts[k].unwrap_or_default(),
            avg_buy_price: avg[k],
            last_price_usd: last[k],
            market_value_usd: value[k],
        })
        .collect();
    temp_table(conn, &PositionRow::TABLE)?;
    copy_rows!(conn, tmp_positions::table, rows);
    Ok(sync_served(
        conn,
        &POSITIONS,
        PositionRow::TABLE.name,
        None,
    )?)
}
