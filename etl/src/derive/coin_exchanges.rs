//! `coin_exchanges`: per coin, the exchanges its tickers list
//! ([`transform::coin_exchanges`]). Takes the coins whose tickers changed.

use super::{sync_served, temp_table, RefreshError, COIN_BATCH};
use crate::rows::{copy_rows, temp_rows};
use crate::transform;
use coinflow_shared::dataset::COIN_EXCHANGES;
use coinflow_shared::schema::{coin_exchanges, tickers};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use polars::prelude::*;

temp_rows! {
    /// A row of `coin_exchanges`, written through its scratch copy `tmp_coin_exchanges`.
    struct CoinExchangesRow => tmp_coin_exchanges (coin_id) like coin_exchanges {
        coin_id: String = Text,
        exchanges: Vec<String> = Array<Text>,
        exchange_count: i32 = Int4,
    }
}

/// Recomputes the exchanges of `coins`; returns how many rows changed.
pub(super) fn refresh(conn: &mut PgConnection, coins: &[String]) -> Result<i64, RefreshError> {
    let mut changed = 0;
    for batch in coins.chunks(COIN_BATCH) {
        let t: Vec<(String, String)> = tickers::table
            .filter(tickers::coin_id.eq_any(batch))
            .select((tickers::coin_id, tickers::exchange))
            .load(conn)?;
        let df = df!(
            "coin_id" => t.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "exchange" => t.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()
        )?;
        let out = transform::coin_exchanges(df)?;
        let coin = out.column("coin_id")?.str()?;
        let exchange = out.column("exchange")?.str()?;
        let mut rows: Vec<CoinExchangesRow> = Vec::new();
        for (c, e) in coin.iter().zip(exchange.iter()) {
            let (Some(c), Some(e)) = (c, e) else { continue };
            match rows.last_mut() {
                Some(last) if last.coin_id == c => last.exchanges.push(e.to_string()),
                _ => rows.push(CoinExchangesRow {
                    coin_id: c.to_string(),
                    exchanges: vec![e.to_string()],
                    exchange_count: 0,
                }),
            }
        }
        for row in &mut rows {
            row.exchange_count = row.exchanges.len() as i32;
        }
        temp_table(conn, &CoinExchangesRow::TABLE)?;
        copy_rows!(conn, tmp_coin_exchanges::table, rows);
        changed += sync_served(
            conn,
            &COIN_EXCHANGES,
            CoinExchangesRow::TABLE.name,
            Some(("coin_id", batch)),
        )?;
    }
    Ok(changed)
}
