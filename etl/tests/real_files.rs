//! Real files as users have them (issue 12): every row of every file is accounted for
//! (blank rows, set-aside rows, conflicting duplicates), and set-aside files retried
//! unchanged do not pile up rejects. Each test writes its own small files; the fixture
//! checks the row identity after every run.

mod common;
use common::*;

const MARKETS_HEADER: &str = "coin_id,timestamp,price,market_cap,volume_24h\n";

/// `n` valid hourly bitcoin rows from 2021-01-01.
fn bitcoin_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "bitcoin,2021-01-{:02}T{:02}:00:00Z,{}.5,1000,10\n",
                1 + i / 24,
                i % 24,
                30000 + i
            )
        })
        .collect()
}

#[test]
fn blank_rows_are_counted_apart_and_not_held_against_the_budget() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Two rows of data, then spreadsheet padding: 8 wholly blank rows (one of spaces,
    // one shorter than the header), which used to set the file aside as 80 % rejects.
    let padding = ",,,,\n".repeat(6) + " , ,  , ,\n,,\n";
    fx.write(
        "padded.csv",
        format!("{MARKETS_HEADER}{}{padding}", bitcoin_rows(2)),
    );
    // A row with some cells filled is data: validated as before.
    fx.write(
        "partial.csv",
        format!(
            "{MARKETS_HEADER}{}ethereum,,,,\n",
            bitcoin_rows(30).replace("2021-01", "2021-03")
        ),
    );
    let report = fx.run();
    let padded = file(&report, "padded.csv");
    assert_eq!(padded.status, "loaded");
    assert_eq!(
        (padded.read, padded.loaded, padded.blank, padded.rejected),
        (10, 2, 8, 0)
    );
    assert!(fx.rejects("padded.csv").is_empty());
    let partial = file(&report, "partial.csv");
    assert_eq!(
        (
            partial.read,
            partial.loaded,
            partial.blank,
            partial.rejected
        ),
        (31, 30, 0, 1)
    );
    let rejects = fx.rejects("partial.csv");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 32);
    assert_eq!(rejects[0].2, "missing required value");
    assert_eq!(
        fx.count("SELECT blank FROM etl_files WHERE path = 'padded.csv'"),
        8
    );
}

#[test]
fn the_reject_budget_counts_rows_of_data_only() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // 1 reject among 10 rows of data is 10 %, over the 5 % budget, however many blank
    // rows pad the file.
    let bad = "bitcoin,2021-06-01,-1,1,1\n";
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}{}{bad}{}",
            bitcoin_rows(9),
            ",,,,\n".repeat(100)
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!(
        (f.read, f.rejected, f.blank, f.set_aside, f.loaded),
        (110, 1, 100, 9, 0)
    );
    assert!(f
        .reason
        .as_deref()
        .unwrap_or("")
        .starts_with("1 of 10 rows rejected (10.0%)"));
}

#[test]
fn a_set_aside_file_counts_its_valid_rows_as_set_aside_and_none_as_zeroed() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Three valid rows (one with a market cap of 0), two rejects: over the budget.
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}bitcoin,2021-01-01,1,0,5\nbitcoin,2021-01-02,2,7,5\nbitcoin,2021-01-03,3,7,5\n\
             bitcoin,2021-01-04,-1,7,5\nnocoin,2021-01-05,1,7,5\n"
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!(
        (f.read, f.loaded, f.rejected, f.set_aside, f.zeroed),
        (5, 0, 2, 3, 0)
    );
    assert_eq!(report.totals.set_aside, 3);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 0);
    assert_eq!(
        fx.count("SELECT set_aside FROM etl_files WHERE path = 'markets.csv'"),
        3
    );
}

#[test]
fn a_conflicting_duplicate_in_one_file_is_rejected_and_the_first_row_kept() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Line 2 and line 3 are identical (a duplicate); line 4 repeats their key with
    // another price and a market cap of 0 (a conflict: its zero is not counted, as it
    // does not load); the rest are distinct keys.
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}ethereum,2021-01-01,100,7,5\nethereum,2021-01-01,100,7,5\n\
             ethereum,2021-01-01,200,0,5\n{}",
            bitcoin_rows(30)
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "loaded");
    assert_eq!(
        (
            f.read,
            f.loaded,
            f.duplicate,
            f.updated,
            f.rejected,
            f.zeroed
        ),
        (33, 31, 1, 0, 1, 0)
    );
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'ethereum'")
            .as_deref(),
        Some("100"),
        "the first row of the key is kept"
    );
    let rejects = fx.rejects("markets.csv");
    assert_eq!(
        rejects,
        vec![(
            4,
            None,
            "conflicting duplicate key (first at line 2)".to_string()
        )]
    );
    assert_eq!(
        fx.text("SELECT raw_line FROM etl_rejects WHERE line = 4")
            .as_deref(),
        Some("ethereum,2021-01-01,200,0,5")
    );
    // A later file still updates the stored row.
    fx.write(
        "later.csv",
        format!("{MARKETS_HEADER}ethereum,2021-01-01,300,7,5\n"),
    );
    let later = fx.run();
    assert_eq!(file(&later, "later.csv").updated, 1);
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'ethereum'")
            .as_deref(),
        Some("300")
    );
}

#[test]
fn conflicting_duplicates_count_against_the_budget() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Every key twice with two prices: half the rows conflict.
    let rows: String = (1..=10)
        .map(|d| {
            format!(
                "bitcoin,2021-01-{d:02},{d},7,5\nbitcoin,2021-01-{d:02},{},7,5\n",
                d + 100
            )
        })
        .collect();
    fx.write("markets.csv", format!("{MARKETS_HEADER}{rows}"));
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!((f.read, f.loaded, f.rejected, f.set_aside), (20, 0, 10, 10));
    assert_eq!(
        fx.count("SELECT count(*) FROM market"),
        0,
        "nothing of it loads"
    );
    assert_eq!(fx.rejects("markets.csv").len(), 10);
}

#[test]
fn an_unchanged_set_aside_file_is_not_judged_again_until_its_coins_change() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Half of the rows name a coin nobody knows yet.
    fx.write(
        "markets.csv",
        format!("{MARKETS_HEADER}bitcoin,2021-01-01,1,7,5\ndogecoin,2021-01-01,0.1,7,5\n"),
    );
    let first = fx.run();
    assert_eq!(file(&first, "markets.csv").status, "set_aside");
    assert_eq!(fx.rejects("markets.csv").len(), 1);

    let second = fx.run();
    let again = file(&second, "markets.csv");
    assert_eq!(again.status, "set_aside");
    assert_eq!((again.read, again.rejected, again.set_aside), (2, 1, 1));
    assert!(again
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("not read again"));
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_rejects"),
        1,
        "a re-run adds no reject rows"
    );

    // --force judges it again; its reject is still kept once.
    let forced = fx.run_with(|o| o.force = vec![fx.path().join("markets.csv")]);
    assert!(!file(&forced, "markets.csv")
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("not read again"));
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), 1);

    // A coin list that knows dogecoin: the file is judged again and loads; the stale
    // reject goes, its row being loaded now.
    fx.write("more_coins.csv", "id,symbol,name\ndogecoin,DOGE,Dogecoin\n");
    let third = fx.run();
    let loaded = file(&third, "markets.csv");
    assert_eq!(loaded.status, "loaded");
    assert_eq!((loaded.loaded, loaded.rejected), (2, 0));
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), 0);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 2);
    assert_eq!(
        fx.text(
            "SELECT low_key FROM data_version_changes WHERE dataset = 'rejects' \
             ORDER BY version DESC LIMIT 1"
        )
        .as_deref(),
        Some("{1,markets.csv,3}"),
        "a reject of an earlier run that goes is a delete readers of rejects must hear of"
    );
}

const KAGGLE_HEADER: &str = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n";

#[test]
fn a_history_naming_its_coin_brings_it_and_a_listing_takes_it_over() {
    let fx = Fixture::new();
    // No coin list at all: a Kaggle-style history of a coin nobody knows.
    fx.write(
        "coin_MyToken.csv",
        format!(
            "{KAGGLE_HEADER}1,My Token,MYT,2021-01-01 23:59:59,2,1,1.5,1.8,100,1000\n\
             2,My Token,MYT,2021-01-02 23:59:59,3,1,1.8,2.5,100,1200\n"
        ),
    );
    // A file that gives only a bare symbol still needs a known coin.
    fx.write(
        "bare.csv",
        "coin,date,price\nZZZ,2021-01-01,1\nZZZ,2021-01-02,1\n",
    );
    let first = fx.run();
    let history = file(&first, "coin_MyToken.csv");
    assert_eq!((history.status.as_str(), history.loaded), ("loaded", 2));
    assert_eq!(history.inferred_coins, vec!["my-token (MYT, My Token)"]);
    assert!(first
        .render()
        .contains("coin_MyToken.csv: coin(s) inferred from its rows: my-token (MYT, My Token)"));
    assert_eq!(
        fx.text("SELECT origin || ' ' || symbol || ' ' || name FROM coins WHERE id = 'my-token'")
            .as_deref(),
        Some("inferred MYT My Token")
    );
    let bare = file(&first, "bare.csv");
    assert_eq!((bare.status.as_str(), bare.rejected), ("set_aside", 2));
    assert_eq!(fx.rejects("bare.csv")[0].2, "unknown coin");

    // A listing that knows the coin under its own slug takes the inferred identity over:
    // its slug becomes an alias, nothing is re-keyed or duplicated.
    fx.write(
        "listing.csv",
        "id,symbol,name,rank,price,timestamp\nmytoken-cmc,MYT,My Token,1,2.7,2021-01-03T00:00:00Z\n",
    );
    let second = fx.run();
    assert_eq!(file(&second, "listing.csv").loaded, 1);
    assert_eq!(fx.count("SELECT count(*) FROM coins"), 1);
    assert_eq!(
        fx.text("SELECT origin FROM coins WHERE id = 'my-token'")
            .as_deref(),
        Some("listed")
    );
    assert_eq!(
        fx.text(
            "SELECT low_key FROM data_version_changes WHERE dataset = 'coins' \
             ORDER BY version DESC LIMIT 1"
        )
        .as_deref(),
        Some("{my-token}"),
        "taking over a coin of an earlier run updates it"
    );
    assert_eq!(
        fx.text("SELECT coin_id FROM coin_aliases WHERE external_id = 'mytoken-cmc'")
            .as_deref(),
        Some("my-token")
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM candles WHERE coin_id = 'my-token'"),
        2
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE coin_id = 'my-token'"),
        1
    );
}

#[test]
fn provider_ids_of_one_coin_resolve_through_the_shipped_aliases() {
    let fx = Fixture::new();
    fx.write(
        "coins.csv",
        "id,symbol,name\nbinancecoin,BNB,Binance Coin\n",
    );
    fx.write(
        "markets.csv",
        "coin_id,timestamp,price\nbinance-coin,2021-01-01,40\n",
    );
    let report = fx.run();
    assert_eq!(file(&report, "markets.csv").loaded, 1);
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE coin_id = 'binancecoin'"),
        1
    );
}

#[test]
fn a_tick_trade_dump_is_unrecognized_and_set_aside_without_rejects() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let header = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount";
    fx.write(
        "ticks.csv",
        format!(
            "{header}\nbinance,BTCUSDT,1609459200000000,1609459200001000,bitcoin,buy,29000.5,0.01\n"
        ),
    );
    let report = fx.run();
    let f = file(&report, "ticks.csv");
    assert_eq!(f.status, "unrecognized");
    let reason = f.reason.as_deref().unwrap_or("");
    assert!(reason.contains(header), "{reason}");
    assert!(reason.contains("closest: markets"), "{reason}");
    assert_eq!(f.read, 0);
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), 0);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 0);
}

#[test]
fn an_exchange_ohlcv_dump_loads_usd_pairs_as_their_base_coin() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "Binance_1d.csv",
        "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n\
         1609459200000,2021-01-01 00:00:00,BTC/USDT,28923.63,29600,28624.57,29331.69,54182.9,1582640000.5,1314910\n\
         1609545600000,2021-01-02 00:00:00,BTCUSDT,29331.7,33300,28946.53,32178.33,129993.87,4097200000,2245922\n\
         1609545600000,2021-01-02 00:00:00,ETH/BTC,0.0254,0.0256,0.0229,0.0241,100,2.4,1000\n",
    );
    let report = fx.run_with(|o| o.max_reject_ratio = 0.5);
    let f = file(&report, "Binance_1d.csv");
    assert_eq!(f.dataset.as_deref(), Some("candles"));
    assert_eq!((f.loaded, f.rejected), (2, 1));
    assert_eq!(
        fx.float("SELECT volume_usd FROM candles WHERE coin_id = 'bitcoin' AND ts = '2021-01-01T00:00:00Z'"),
        Some(1582640000.5),
        "the volume in the quote currency"
    );
    let rejects = fx.rejects("Binance_1d.csv");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 4);
    assert!(rejects[0].2.starts_with("exchange pair not quoted in USD"));
    assert_eq!(
        f.numeric_extra_columns,
        vec!["unix", "Volume BTC", "tradecount"]
    );
}

#[test]
fn a_market_column_is_the_market_cap_of_candles_and_numeric_extras_are_listed() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.write(
        "old_scrape.csv",
        "SNo,coin,Date,Open,High,Low,Close,Volume,market,note\n\
         1,bitcoin,2016-01-01,430.72,436.25,427.52,434.33,36278900,6529300000,a\n\
         2,bitcoin,2016-01-02,434.62,436.06,431.87,433.44,30096600,6517390000,b\n",
    );
    let report = fx.run();
    let f = file(&report, "old_scrape.csv");
    assert_eq!((f.dataset.as_deref(), f.loaded), (Some("candles"), 2));
    assert_eq!(
        fx.float("SELECT market_cap_usd FROM candles WHERE ts = '2016-01-01'"),
        Some(6529300000.0)
    );
    assert_eq!(f.extra_columns, vec!["SNo", "note"]);
    assert_eq!(f.numeric_extra_columns, vec!["SNo"], "note holds text");
    assert!(report
        .render()
        .contains("old_scrape.csv: numeric column(s) not loaded: SNo"));
}

/// OHLCV rows of `coin` at the given stamps, with a close of `close + i`.
fn ohlcv(coin: &str, stamps: &[String], close: f64) -> String {
    stamps
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            format!(
                "{coin},{ts},1,{h},0.5,{c},100,5000\n",
                h = close + 10.0,
                c = close + i as f64
            )
        })
        .collect()
}

const CANDLES_HEADER: &str = "coin,date,open,high,low,close,volume,market_cap\n";

#[test]
fn one_day_from_two_exports_stamped_differently_is_one_candle_and_one_daily_row() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // A Kaggle-style history stamps each day at its close…
    let closes: Vec<String> = (13..=15).map(|d| format!("2016-01-{d} 23:59:59")).collect();
    fx.write(
        "history.csv",
        format!("{CANDLES_HEADER}{}", ohlcv("bitcoin", &closes, 400.0)),
    );
    let first = fx.run();
    assert_eq!(file(&first, "history.csv").loaded, 3);
    // …and its Excel-resaved successor cuts the seconds and writes the date its way; the
    // last day's close was revised.
    let resaved: Vec<String> = (13..=15).map(|d| format!("01/{d}/16 23:59")).collect();
    let mut successor = ohlcv("bitcoin", &resaved, 400.0);
    successor = successor.replace(",402,100", ",402.5,100");
    fx.write(
        "history_resaved.csv",
        format!("{CANDLES_HEADER}{successor}"),
    );
    let second = fx.run();
    let f = file(&second, "history_resaved.csv");
    assert_eq!((f.loaded, f.duplicate, f.updated, f.rejected), (0, 2, 1, 0));
    assert_eq!(fx.count("SELECT count(*) FROM candles"), 3, "no twins");
    assert_eq!(
        fx.count("SELECT count(*) FROM candles WHERE interval = '1d' AND period_start = '2016-01-13T00:00:00Z'"),
        1,
        "a close stamp floors to the start of its day"
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM daily WHERE coin_id = 'bitcoin'"),
        3
    );
    assert_eq!(fx.count("SELECT max(samples) FROM daily"), 1);
    assert_eq!(
        fx.float("SELECT close FROM daily WHERE day = '2016-01-15'"),
        Some(402.5),
        "the later export updates the period"
    );
}

#[test]
fn a_stamp_on_the_boundary_opens_its_period() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Exchanges and CoinGecko stamp a day at its opening midnight.
    let opens: Vec<String> = (1..=3).map(|d| format!("2021-02-0{d} 00:00:00")).collect();
    fx.write(
        "opens.csv",
        format!("{CANDLES_HEADER}{}", ohlcv("ethereum", &opens, 1300.0)),
    );
    let report = fx.run();
    assert_eq!(file(&report, "opens.csv").loaded, 3);
    assert_eq!(
        fx.text("SELECT string_agg(to_char(period_start AT TIME ZONE 'UTC', 'MM-DD HH24:MI') || ' ' || interval, ',' ORDER BY period_start) FROM candles").as_deref(),
        Some("02-01 00:00 1d,02-02 00:00 1d,02-03 00:00 1d")
    );
}

#[test]
fn hourly_exchange_candles_live_beside_daily_ones_and_daily_folds_them_only_where_no_day_exists() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let days: Vec<String> = (1..=2).map(|d| format!("2021-01-0{d} 23:59:59")).collect();
    fx.write(
        "daily.csv",
        format!("{CANDLES_HEADER}{}", ohlcv("bitcoin", &days, 29000.0)),
    );
    // Hourly exchange candles for 2021-01-02 and 2021-01-03 (open stamps); the first day
    // also has a daily candle, the second has only these.
    let mut hourly =
        String::from("unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n");
    for h in 0..48 {
        hourly.push_str(&format!(
            "0,2021-01-{:02} {:02}:00:00,BTC/USDT,{o},{hi},{lo},{c},1,10,5\n",
            2 + h / 24,
            h % 24,
            o = 30000 + h,
            hi = 30100 + h,
            lo = 29900 + h,
            c = 30001 + h
        ));
    }
    fx.write("Binance_BTCUSDT_1h.csv", hourly);
    let report = fx.run();
    assert_eq!(file(&report, "Binance_BTCUSDT_1h.csv").loaded, 48);
    assert_eq!(
        fx.text("SELECT string_agg(interval || ':' || n, ',' ORDER BY interval) FROM (SELECT interval, count(*) n FROM candles GROUP BY interval) c").as_deref(),
        Some("1d:2,1h:48")
    );
    assert_eq!(
        fx.text("SELECT string_agg(day || ' ' || samples || ' ' || close || ' ' || last_volume_usd, ',' ORDER BY day) FROM daily").as_deref(),
        Some("2021-01-01 1 29000 100,2021-01-02 1 29001 100,2021-01-03 24 30048 240"),
        "1d candles where a day has one; 24 hourly ones folded (volumes summed) where not"
    );
    // /top takes daily candles only: two days ended, each valid for a day.
    assert_eq!(
        fx.count("SELECT count(DISTINCT valid_from) FROM top_slots WHERE rank_source = 'candles'"),
        2
    );
}

#[test]
fn irregular_spacing_is_rejected_and_an_interval_column_decides_for_itself() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Every 7 hours: no interval of the set fits.
    let stamps: Vec<String> = (0..4)
        .map(|i| format!("2021-03-01 {:02}:00:00", 7 * i))
        .collect();
    fx.write(
        "odd.csv",
        format!("{CANDLES_HEADER}{}", ohlcv("bitcoin", &stamps, 50000.0)),
    );
    // The same spacing with an interval column is what the column says; a value naming
    // no interval is a reject of its own.
    fx.write(
        "with_interval.csv",
        "coin,interval,date,open,high,low,close\n\
         ethereum,4h,2021-03-01 00:00:00,1,2,1,1.5\n\
         ethereum,4H,2021-03-01 07:00:00,1,2,1,1.6\n\
         ethereum,1d,2021-03-01 00:00:00,1,2,1,1.7\n\
         ethereum,daily,2021-03-02 00:00:00,1,2,1,1.8\n\
         ethereum,2w,2021-03-03 00:00:00,1,2,1,1.9\n",
    );
    let report = fx.run_with(|o| o.max_reject_ratio = 0.5);
    let odd = file(&report, "odd.csv");
    assert_eq!(odd.status, "set_aside");
    assert_eq!(odd.rejected, 4);
    let rejects = fx.rejects("odd.csv");
    assert_eq!(rejects.len(), 4);
    assert!(
        rejects[0].2.starts_with("irregular candle spacing"),
        "{}",
        rejects[0].2
    );
    let with = file(&report, "with_interval.csv");
    assert_eq!((with.loaded, with.rejected), (4, 1));
    assert_eq!(
        fx.rejects("with_interval.csv")[0].2,
        "unknown candle interval (one of 1m, 5m, 15m, 30m, 1h, 4h, 1d)"
    );
    assert_eq!(
        fx.text("SELECT string_agg(interval || ' ' || to_char(period_start AT TIME ZONE 'UTC', 'DD HH24'), ',' ORDER BY interval, period_start) FROM candles").as_deref(),
        Some("1d 01 00,1d 02 00,4h 01 00,4h 01 04")
    );
}
