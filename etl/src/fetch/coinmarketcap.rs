//! CoinMarketCap: `/v1/cryptocurrency/listings/latest`, every page (`start`/`limit`),
//! with the USD quote, as a listings file `listings-STAMP.csv`: the CMC slug is the coin
//! (the load records it as an alias when a coin with the same symbol and name is known),
//! `cmc_rank` the rank, the quote's `last_updated` the snapshot time; the numeric CMC id
//! is kept in the `cmc_id` column. An answer whose `status.error_code` is not 0 fails
//! the page with CoinMarketCap's message. The credits it reports (`status.credit_count`)
//! are what its monthly budget counts.

use super::coingecko::end_of;
use super::item::Item;
use super::output::{CsvSink, LISTINGS_HEADER};
use super::{page_items, PageEnd, PageError, Source, Walker};
use serde_json::Value;

/// CoinMarketCap's largest page.
const PER_PAGE: u32 = 5000;

pub(crate) fn listings(w: &mut Walker<'_>, stamp: &str, per_page: Option<u32>) -> Vec<CsvSink> {
    let per_page = per_page.unwrap_or(PER_PAGE).clamp(1, PER_PAGE);
    let mut sink = CsvSink::new(
        format!("listings-{stamp}"),
        &[&LISTINGS_HEADER[..], &["cmc_id"]].concat(),
    );
    let mut credits = 0u64;
    w.walk(&format!("listings@{per_page}"), |client, page, problems| {
        let start = u64::from(page - 1) * u64::from(per_page) + 1;
        let body = client.get_json(
            "/v1/cryptocurrency/listings/latest",
            &[
                ("start", start.to_string()),
                ("limit", per_page.to_string()),
                ("convert", "USD".to_string()),
            ],
        )?;
        match body.pointer("/status/error_code") {
            None | Some(Value::Null) => {}
            Some(code) if code.as_i64() == Some(0) || code.as_str() == Some("0") => {}
            Some(code) => {
                let message = body
                    .pointer("/status/error_message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message");
                return Err(PageError::Provider(format!(
                    "CoinMarketCap error {code}: {message}"
                )));
            }
        }
        let items = page_items(&body, "/data")?;
        for (i, value) in items.iter().enumerate() {
            let mut item = Item::new(page, i, value, problems);
            let slug = item.text("/slug", true);
            let symbol = item.text("/symbol", true);
            let name = item.text("/name", true);
            let rank = item.number("/cmc_rank", true);
            let price = item.number("/quote/USD/price", true);
            let market_cap = item.number("/quote/USD/market_cap", false);
            let volume = item.number("/quote/USD/volume_24h", false);
            let ts = match item.get("/quote/USD/last_updated") {
                Some(Value::String(_)) => item.text("/quote/USD/last_updated", true),
                _ => item.text("/last_updated", true),
            };
            let cmc_id = item.number("/id", false);
            sink.push(
                vec![
                    slug,
                    symbol,
                    name,
                    rank,
                    price,
                    market_cap,
                    volume,
                    ts,
                    Source::CoinMarketCap.name().to_string(),
                    cmc_id,
                ],
                page,
                i,
            );
        }
        // CoinMarketCap says what the call cost; one credit per 200 coins otherwise.
        credits += body
            .pointer("/status/credit_count")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| (items.len() as u64).div_ceil(200).max(1));
        // `status.total_count`, when sent, ends the walk without asking past the end.
        let total = body.pointer("/status/total_count").and_then(Value::as_u64);
        let end = match total {
            Some(total) if start - 1 + items.len() as u64 >= total => PageEnd::Last,
            _ => end_of(items.len(), per_page),
        };
        Ok((end, items.len()))
    });
    w.report.extra_credits += credits.saturating_sub(u64::from(w.report.pages));
    vec![sink]
}
