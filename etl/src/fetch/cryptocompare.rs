//! CryptoCompare: `/data/top/totalvolfull`, the top coins by 24 h volume across
//! exchanges, as a rankings file `toplist-STAMP.csv`. The rank is the position in that
//! list (page × page size + index + 1); the coin is named by its symbol, with the full
//! name beside it, and resolved by the load like any rankings row (symbol, then name);
//! the observation time is the time of the fetch. CryptoCompare reports errors with
//! HTTP 200 and `"Response": "Error"`: such a page fails with its message.

use super::coingecko::end_of;
use super::item::{iso, Item};
use super::output::CsvSink;
use super::{page_items, PageEnd, PageError, Source, Walker};
use serde_json::Value;

/// CryptoCompare's largest page.
const PER_PAGE: u32 = 100;

pub(crate) fn toplist(
    w: &mut Walker<'_>,
    stamp: &str,
    top: u32,
    per_page: Option<u32>,
) -> Vec<CsvSink> {
    let per_page = per_page.unwrap_or(PER_PAGE).clamp(1, PER_PAGE);
    let top = top.max(1);
    let mut sink = CsvSink::new(
        format!("toplist-{stamp}"),
        &[
            "coin_id",
            "symbol",
            "name",
            "timestamp",
            "rank",
            "volume_24h",
            "rank_source",
        ],
    );
    w.walk(&format!("toplist@{per_page}"), |client, page, problems| {
        let observed = iso(client.clock().now_utc());
        let body = client.get_json(
            "/data/top/totalvolfull",
            &[
                ("limit", per_page.to_string()),
                ("page", (page - 1).to_string()),
                ("tsym", "USD".to_string()),
            ],
        )?;
        if body.get("Response").and_then(Value::as_str) == Some("Error") {
            let message = body
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(PageError::Provider(format!(
                "CryptoCompare error: {message}"
            )));
        }
        let items = page_items(&body, "/Data")?;
        let first_rank = u64::from(page - 1) * u64::from(per_page) + 1;
        let mut kept = 0;
        for (i, value) in items.iter().enumerate() {
            let rank = first_rank + i as u64;
            if rank > u64::from(top) {
                break;
            }
            let mut item = Item::new(page, i, value, problems);
            let symbol = item.text("/CoinInfo/Name", true);
            let name = item.text("/CoinInfo/FullName", false);
            let volume = item.number("/RAW/USD/VOLUME24HOURTO", false);
            sink.push(
                vec![
                    symbol.clone(),
                    symbol,
                    name,
                    observed.clone(),
                    rank.to_string(),
                    volume,
                    Source::CryptoCompare.name().to_string(),
                ],
                page,
                i,
            );
            kept += 1;
        }
        let end = if first_rank + u64::from(per_page) > u64::from(top) {
            PageEnd::Last
        } else {
            end_of(items.len(), per_page)
        };
        Ok((end, kept))
    });
    vec![sink]
}
