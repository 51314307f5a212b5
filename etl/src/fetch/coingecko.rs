//! CoinGecko: `/coins/markets` (every coin, 250 a page), `/coins/{id}/market_chart/range`
//! (a coin's history) and `/coins/{id}/tickers` (every exchange listing a coin, 100 a
//! page), mapped to canonical rows. A coin with a market-cap rank becomes a listings
//! row (coin, market snapshot and rank at once); one whose rank is null (CoinGecko ranks
//! only coins with a market cap) becomes a coins row plus a markets row, so it is kept
//! without a rank instead of being rejected.

use super::item::Item;
use super::output::{CsvSink, LISTINGS_HEADER};
use super::{page_items, PageEnd, Source, Walker};
use serde_json::Value;
use std::collections::HashMap;

const MARKETS_PER_PAGE: u32 = 250;
const TICKERS_PER_PAGE: u32 = 100;
/// The columns of a markets file (price snapshots).
const MARKETS_HEADER: [&str; 5] = ["coin_id", "timestamp", "price", "market_cap", "volume_24h"];

/// Every page of `/coins/markets`: `markets-STAMP.csv` (listings) for ranked coins,
/// `markets-STAMP-unranked-coins.csv` and `markets-STAMP-unranked.csv` for the others.
pub(crate) fn markets(w: &mut Walker<'_>, stamp: &str, per_page: Option<u32>) -> Vec<CsvSink> {
    let per_page = per_page
        .unwrap_or(MARKETS_PER_PAGE)
        .clamp(1, MARKETS_PER_PAGE);
    let mut ranked = CsvSink::new(format!("markets-{stamp}"), &LISTINGS_HEADER);
    let mut coins = CsvSink::new(
        format!("markets-{stamp}-unranked-coins"),
        &["id", "symbol", "name"],
    );
    let mut unranked = CsvSink::new(format!("markets-{stamp}-unranked"), &MARKETS_HEADER);
    w.walk(&format!("markets@{per_page}"), |client, page, problems| {
        let body = client.get_json(
            "/coins/markets",
            &[
                ("vs_currency", "usd".to_string()),
                ("order", "market_cap_desc".to_string()),
                ("per_page", per_page.to_string()),
                ("page", page.to_string()),
            ],
        )?;
        let items = page_items(&body, "")?;
        for (i, value) in items.iter().enumerate() {
            let mut item = Item::new(page, i, value, problems);
            let id = item.text("/id", true);
            let symbol = item.text("/symbol", true);
            let name = item.text("/name", true);
            let unranked_coin = matches!(item.get("/market_cap_rank"), Some(Value::Null));
            let price = item.number("/current_price", true);
            let market_cap = item.number("/market_cap", false);
            let volume = item.number("/total_volume", false);
            let ts = item.text("/last_updated", true);
            if unranked_coin {
                coins.push(vec![id.clone(), symbol, name], page, i);
                unranked.push(vec![id, ts, price, market_cap, volume], page, i);
            } else {
                let rank = item.number("/market_cap_rank", true);
                ranked.push(
                    vec![
                        id,
                        symbol,
                        name,
                        rank,
                        price,
                        market_cap,
                        volume,
                        ts,
                        Source::CoinGecko.name().to_string(),
                    ],
                    page,
                    i,
                );
            }
        }
        Ok((end_of(items.len(), per_page), items.len()))
    });
    vec![ranked, coins, unranked]
}

/// `/coins/{id}/market_chart/range` from `from` to `to` (Unix seconds) as a markets
/// file `history-ID-STAMP.csv`: one row per price point, with the market cap and volume
/// of the same instant.
pub(crate) fn history(
    w: &mut Walker<'_>,
    stamp: &str,
    coin: &str,
    from: i64,
    to: i64,
) -> Vec<CsvSink> {
    let mut sink = CsvSink::new(format!("history-{coin}-{stamp}"), &MARKETS_HEADER);
    w.walk(&format!("history:{coin}"), |client, page, problems| {
        let body = client.get_json(
            &format!("/coins/{coin}/market_chart/range"),
            &[
                ("vs_currency", "usd".to_string()),
                ("from", from.to_string()),
                ("to", to.to_string()),
            ],
        )?;
        let prices = page_items(&body, "/prices")?;
        let by_time = |pointer: &str| -> HashMap<String, Value> {
            body.pointer(pointer)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|pair| Some((pair.get(0)?.to_string(), pair.get(1)?.clone())))
                .collect()
        };
        let caps = by_time("/market_caps");
        let volumes = by_time("/total_volumes");
        for (i, value) in prices.iter().enumerate() {
            let at = value.get(0).map(Value::to_string).unwrap_or_default();
            let extra = serde_json::json!({
                "cap": caps.get(&at).cloned().unwrap_or(Value::Null),
                "volume": volumes.get(&at).cloned().unwrap_or(Value::Null),
            });
            let mut item = Item::new(page, i, value, problems);
            let ts = item.epoch("/0", false);
            let price = item.number("/1", true);
            let mut extra = Item::new(page, i, &extra, problems);
            let cap = extra.number("/cap", false);
            let volume = extra.number("/volume", false);
            sink.push(vec![coin.to_string(), ts, price, cap, volume], page, i);
        }
        Ok((PageEnd::Last, prices.len()))
    });
    vec![sink]
}

/// Every page of `/coins/{id}/tickers` for each coin, one file per coin:
/// `tickers-ID-STAMP.csv` (written even when the coin has no tickers: its age is what
/// `--requested` reads), or `tickers-ID-STAMP-partial.csv` when a page failed.
pub(crate) fn tickers(
    w: &mut Walker<'_>,
    stamp: &str,
    coins: &[String],
    per_page: Option<u32>,
) -> Vec<CsvSink> {
    let per_page = per_page.unwrap_or(TICKERS_PER_PAGE).max(1);
    let mut sinks = Vec::new();
    for coin in coins {
        let mut sink = CsvSink::new(
            format!("tickers-{coin}-{stamp}"),
            &["coin_id", "exchange", "base", "target"],
        );
        let complete = w.walk(&format!("tickers:{coin}"), |client, page, problems| {
            let body = client.get_json(
                &format!("/coins/{coin}/tickers"),
                &[("page", page.to_string())],
            )?;
            let items = page_items(&body, "/tickers")?;
            for (i, value) in items.iter().enumerate() {
                let mut item = Item::new(page, i, value, problems);
                let exchange = item.text("/market/identifier", true);
                let base = item.text("/base", false);
                let target = item.text("/target", false);
                sink.push(vec![coin.clone(), exchange, base, target], page, i);
            }
            Ok((end_of(items.len(), per_page), items.len()))
        });
        if complete {
            sink.keep_empty = true;
        } else {
            sink.stem.push_str("-partial");
        }
        sinks.push(sink);
    }
    sinks
}

/// A page shorter than a full one is the last.
pub(crate) fn end_of(items: usize, per_page: u32) -> PageEnd {
    if items < per_page as usize {
        PageEnd::Last
    } else {
        PageEnd::More
    }
}
