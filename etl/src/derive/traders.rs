//! `traders`: one row per person with their latest trade and trade count
//! ([`transform::traders`]). Recomputed whole when people or trades changed.

use super::{micros, sync_served, temp_table, to_ts, RefreshError};
use crate::rows::{copy_rows, temp_rows, Side};
use crate::transform;
use chrono::{DateTime, Utc};
use coinflow_shared::dataset::TRADERS;
use coinflow_shared::schema::{people, traders, trades};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use polars::prelude::*;

temp_rows! {
    /// A row of `traders`, written through its scratch copy `tmp_traders`.
    struct TraderRow => tmp_traders (person_id) like traders {
        person_id: i64 = Int8,
        first_name: String = Text,
        last_name: String = Text,
        email: String = Text,
        date_added: Option<DateTime<Utc>> = Nullable<Timestamptz>,
        last_trade_ts: Option<DateTime<Utc>> = Nullable<Timestamptz>,
        last_trade_coin_id: Option<String> = Nullable<Text>,
        last_trade_side: Option<String> = Nullable<Text>,
        last_trade_quantity: Option<f64> = Nullable<Float8>,
        last_trade_price: Option<f64> = Nullable<Float8>,
        trade_count: i64 = Int8,
    }
}

/// Recomputes every trader; returns how many rows changed.
pub(super) fn refresh(conn: &mut PgConnection) -> Result<i64, RefreshError> {
    type PersonIn = (i64, String, String, String, Option<DateTime<Utc>>);
    let p: Vec<PersonIn> = people::table
        .select((
            people::person_id,
            people::first_name,
            people::last_name,
            people::email,
            people::date_added,
        ))
        .load(conn)?;
    type TradeIn = (
        i64,
        i64,
        DateTime<Utc>,
        String,
        Side,
        Option<f64>,
        Option<f64>,
    );
    let t: Vec<TradeIn> = trades::table
        .select((
            trades::person_id,
            trades::id,
            trades::ts,
            trades::coin_id,
            trades::side,
            trades::quantity,
            trades::price,
        ))
        .load(conn)?;
    let people_df = df!(
        "person_id" => p.iter().map(|r| r.0).collect::<Vec<_>>(),
        "first_name" => p.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "last_name" => p.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        "email" => p.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        "date_added" => p.iter().map(|r| r.4.as_ref().map(micros)).collect::<Vec<_>>()
    )?;
    let trades_df = df!(
        "person_id" => t.iter().map(|r| r.0).collect::<Vec<_>>(),
        "seq" => t.iter().map(|r| r.1).collect::<Vec<_>>(),
        "ts" => t.iter().map(|r| micros(&r.2)).collect::<Vec<_>>(),
        "coin_id" => t.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        "side" => t.iter().map(|r| r.4.as_str()).collect::<Vec<_>>(),
        "quantity" => t.iter().map(|r| r.5).collect::<Vec<_>>(),
        "price" => t.iter().map(|r| r.6).collect::<Vec<_>>()
    )?;
    drop((p, t));
    let out = transform::traders(people_df, trades_df)?;
    let s = |name: &str| -> PolarsResult<Vec<Option<String>>> {
        Ok(out
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let i = |name: &str| -> PolarsResult<Vec<Option<i64>>> {
        Ok(out.column(name)?.i64()?.iter().collect())
    };
    let f = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(out.column(name)?.f64()?.iter().collect())
    };
    let (ids, first, last, email) = (
        i("person_id")?,
        s("first_name")?,
        s("last_name")?,
        s("email")?,
    );
    let (added, last_ts, coin, side) = (
        i("date_added")?,
        i("last_trade_ts")?,
        s("last_trade_coin_id")?,
        s("last_trade_side")?,
    );
    let (qty, price, count) = (
        f("last_trade_quantity")?,
        f("last_trade_price")?,
        i("trade_count")?,
    );
    let rows: Vec<TraderRow> = (0..out.height())
        .map(|k| TraderRow {
            person_id: ids[k].unwrap_or_default(),
            first_name: first[k].clone().unwrap_or_default(),
            last_name: last[k].clone().unwrap_or_default(),
            email: email[k].clone().unwrap_or_default(),
            date_added: to_ts(added[k]),
            last_trade_ts: to_ts(last_ts[k]),
            last_trade_coin_id: coin[k].clone(),
            last_trade_side: side[k].clone(),
            last_trade_quantity: qty[k],
            last_trade_price: price[k],
            trade_count: count[k].unwrap_or_default(),
        })
        .collect();
    temp_table(conn, &TraderRow::TABLE)?;
    copy_rows!(conn, tmp_traders::table, rows);
    Ok(sync_served(conn, &TRADERS, TraderRow::TABLE.name, None)?)
}
