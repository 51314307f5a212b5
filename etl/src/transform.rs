//! Transform: computes the derived serving tables from loaded rows with polars' lazy
//! API (SPEC §4). Every function here is pure: it takes DataFrames and returns
//! DataFrames, does no I/O, and is called on bounded slices (a batch of coins, or the
//! people and trades) by `refresh`.
//!
//! Timestamps are `i64` microseconds since the epoch (UTC) and days are `i32` days since
//! the epoch, so no temporal dtypes are needed.

use polars::prelude::*;

pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The ranking sources a snapshot prefers, best first; any other source (a file without
/// a `rank_source` column is `listings` or `rankings`) comes after these, by name.
pub(crate) const RANK_SOURCE_PREFERENCE: [&str; 3] =
    ["coinmarketcap", "coingecko", "cryptocompare"];

/// Sort key of a ranking source in [`RANK_SOURCE_PREFERENCE`] order.
pub(crate) fn rank_source_order(source: &str) -> (usize, &str) {
    let known = RANK_SOURCE_PREFERENCE.iter().position(|s| *s == source);
    (known.unwrap_or(RANK_SOURCE_PREFERENCE.len()), source)
}

/// As-of join of price snapshots with the rankings: for each snapshot (`coin_id`, `ts`)
/// and each source, the latest ranking of the same coin and source at or before `ts` and
/// at most `tolerance_us` older; of the sources that have one, the first in
/// [`rank_source_order`] ranks the snapshot (preference wins over recency). Input:
/// snapshots(coin_id, ts), rankings(coin_id, ts, rank, source). Output: (coin_id, ts,
/// rank, rank_source), one row per snapshot, rank null where nothing matched.
pub(crate) fn market_ranks(
    snapshots: DataFrame,
    rankings: DataFrame,
    tolerance_us: i64,
) -> PolarsResult<DataFrame> {
    let mut sources: Vec<String> = rankings
        .column("source")?
        .str()?
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    sources.sort_by(|a, b| rank_source_order(a).cmp(&rank_source_order(b)));
    let sort = SortMultipleOptions::default();
    let mut out = snapshots.lazy().sort(["ts"], sort.clone()).with_columns([
        lit(NULL).cast(DataType::Int32).alias("rank"),
        lit(NULL).cast(DataType::String).alias("rank_source"),
    ]);
    for source in sources {
        let right = rankings
            .clone()
            .lazy()
            .filter(col("source").eq(lit(source.clone())))
            .select([
                col("coin_id"),
                col("ts").alias("rank_ts"),
                col("rank").alias("source_rank"),
            ])
            .sort(["rank_ts"], sort.clone());
        let options = AsOfOptions {
            strategy: AsofStrategy::Backward,
            tolerance: Some(Scalar::from(tolerance_us)),
            tolerance_str: None,
            left_by: Some(vec!["coin_id".into()]),
            right_by: Some(vec!["coin_id".into()]),
            allow_eq: true,
            check_sortedness: false,
        };
        let fill = col("rank").is_null().and(col("source_rank").is_not_null());
        out = out
            .join_builder()
            .with(right)
            .left_on([col("ts")])
            .right_on([col("rank_ts")])
            .how(JoinType::AsOf(Box::new(options)))
            .finish()
            .with_columns([
                when(fill.clone())
                    .then(col("source_rank"))
                    .otherwise(col("rank"))
                    .alias("rank"),
                when(fill)
                    .then(lit(source))
                    .otherwise(col("rank_source"))
                    .alias("rank_source"),
            ])
            .select([col("coin_id"), col("ts"), col("rank"), col("rank_source")]);
    }
    out.select([col("coin_id"), col("ts"), col("rank"), col("rank_source")])
        .sort(["coin_id", "ts"], sort)
        .collect()
}

/// Daily rollup per coin and UTC day. Input: market(coin_id, ts, price, market_cap,
/// volume) and candles(coin_id, ts, seconds, open, high, low, close, volume, market_cap),
/// a candle's `ts` being the start of its period and `seconds` its interval's length.
/// Output: (coin_id, day, open, high, low, close, avg_price, max_market_cap_usd,
/// last_volume_usd, samples, source); candles win over snapshots for the same coin-day.
/// A coin-day takes its 1d candle where it has one, else folds the candles of the
/// coarsest interval it has (hourly candles beside 4h ones: the 4h ones), so periods
/// never overlap: open of the first, close of the last, high and low over all, the
/// volume summed (a day's volume), `samples` the candles folded.
pub(crate) fn daily(market: DataFrame, candles: DataFrame) -> PolarsResult<DataFrame> {
    let sort = SortMultipleOptions::default();
    let day = (col("ts") - col("ts") % lit(MICROS_PER_DAY)) / lit(MICROS_PER_DAY);
    let from_market = market
        .lazy()
        .sort(["coin_id", "ts"], sort.clone())
        .with_column(day.clone().cast(DataType::Int32).alias("day"))
        .group_by_stable([col("coin_id"), col("day")])
        .agg([
            col("price").first().alias("open"),
            col("price").max().alias("high"),
            col("price").min().alias("low"),
            col("price").last().alias("close"),
            col("price").mean().alias("avg_price"),
            col("market_cap").max().alias("max_market_cap_usd"),
            col("volume").last().alias("last_volume_usd"),
            len().cast(DataType::Int32).alias("samples"),
        ])
        .with_columns([lit("market").alias("source"), lit(1i32).alias("priority")]);
    let from_candles = candles
        .lazy()
        .sort(["coin_id", "ts"], sort.clone())
        .with_column(day.cast(DataType::Int32).alias("day"))
        .filter(col("seconds").eq(col("seconds").max().over([col("coin_id"), col("day")])?))
        .group_by_stable([col("coin_id"), col("day")])
        .agg([
            col("open").first().alias("open"),
            col("high").max().alias("high"),
            col("low").min().alias("low"),
            col("close").last().alias("close"),
            col("close").mean().alias("avg_price"),
            col("market_cap").max().alias("max_market_cap_usd"),
            when(col("volume").is_not_null().any(false))
                .then(col("volume").sum())
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("last_volume_usd"),
            len().cast(DataType::Int32).alias("samples"),
        ])
        .with_columns([lit("candles").alias("source"), lit(0i32).alias("priority")]);
    concat([from_candles, from_market], UnionArgs::default())?
        .sort(["coin_id", "day", "priority"], sort.clone())
        .group_by_stable([col("coin_id"), col("day")])
        .agg([
            col("open").first(),
            col("high").first(),
            col("low").first(),
            col("close").first(),
            col("avg_price").first(),
            col("max_market_cap_usd").first(),
            col("last_volume_usd").first(),
            col("samples").first(),
            col("source").first(),
        ])
        .sort(["coin_id", "day"], sort)
        .collect()
}

/// The snapshot half of [`daily`] in two steps, for snapshots that are folded while
/// they load instead of being read back: [`daily_partials`] folds any slice of
/// snapshots (coin_id, ts, price, market_cap, volume) into one partial row per coin-day,
/// and [`daily_from_partials`] combines the partials of every slice into daily rows
/// shaped like [`daily`]'s. A coin-day split over several slices (or files) comes out
/// as if its snapshots had been aggregated together.
pub(crate) fn daily_partials(market: DataFrame) -> PolarsResult<DataFrame> {
    let day = (col("ts") - col("ts") % lit(MICROS_PER_DAY)) / lit(MICROS_PER_DAY);
    market
        .lazy()
        .sort(["coin_id", "ts"], SortMultipleOptions::default())
        .with_column(day.cast(DataType::Int32).alias("day"))
        .group_by_stable([col("coin_id"), col("day")])
        .agg([
            col("ts").first().alias("first_ts"),
            col("ts").last().alias("last_ts"),
            col("price").first().alias("open"),
            col("price").max().alias("high"),
            col("price").min().alias("low"),
            col("price").last().alias("close"),
            col("price").sum().alias("price_sum"),
            col("market_cap").max().alias("max_market_cap_usd"),
            col("volume").last().alias("last_volume_usd"),
            len().cast(DataType::Int32).alias("samples"),
        ])
        .collect()
}

/// Combines [`daily_partials`] outputs (concatenated) into daily rows: the open of the
/// partial that starts first, the close and last volume of the one that ends last.
pub(crate) fn daily_from_partials(partials: DataFrame) -> PolarsResult<DataFrame> {
    let by_end = |c: &str| {
        col(c)
            .sort_by([col("last_ts")], SortMultipleOptions::default())
            .last()
    };
    partials
        .lazy()
        .sort(
            ["coin_id", "day", "first_ts"],
            SortMultipleOptions::default(),
        )
        .group_by_stable([col("coin_id"), col("day")])
        .agg([
            col("open").first(),
            col("high").max(),
            col("low").min(),
            by_end("close"),
            (col("price_sum").sum() / col("samples").sum().cast(DataType::Float64))
                .alias("avg_price"),
            col("max_market_cap_usd").max(),
            by_end("last_volume_usd"),
            col("samples").sum().cast(DataType::Int32),
        ])
        .with_column(lit("market").alias("source"))
        .sort(["coin_id", "day"], SortMultipleOptions::default())
        .collect()
}

/// Sorted unique exchange ids per coin. Input: tickers(coin_id, exchange). Output:
/// (coin_id, exchange) unique, sorted by both; the caller folds it into lists.
pub(crate) fn coin_exchanges(tickers: DataFrame) -> PolarsResult<DataFrame> {
    tickers
        .lazy()
        .select([col("coin_id"), col("exchange")])
        .unique(None, UniqueKeepStrategy::First)
        .sort(["coin_id", "exchange"], SortMultipleOptions::default())
        .collect()
}

/// Every person with their most recent trade: the latest `ts`, ties broken by input
/// order (`seq`); people without trades are kept. Input: people(person_id, first_name,
/// last_name, email, date_added) and trades(person_id, seq, ts, coin_id, side,
/// quantity, price). Output: people's columns plus last_trade_* and trade_count.
pub(crate) fn traders(people: DataFrame, trades: DataFrame) -> PolarsResult<DataFrame> {
    let sort = SortMultipleOptions::default();
    let latest = trades
        .lazy()
        .sort(["person_id", "ts", "seq"], sort.clone())
        .group_by_stable([col("person_id")])
        .agg([
            col("ts").last().alias("last_trade_ts"),
            col("coin_id").last().alias("last_trade_coin_id"),
            col("side").last().alias("last_trade_side"),
            col("quantity").last().alias("last_trade_quantity"),
            col("price").last().alias("last_trade_price"),
            len().cast(DataType::Int64).alias("trade_count"),
        ]);
    people
        .lazy()
        .left_join(latest, col("person_id"), col("person_id"))
        .with_column(col("trade_count").fill_null(lit(0i64)))
        .sort(["person_id"], sort)
        .collect()
}

/// Per person and coin, from trades that carry a quantity: net quantity (sells
/// subtract), trade count, average buy price (quantity-weighted, over buys with a
/// price) and the market value at the coin's latest known price. Input:
/// trades(person_id, coin_id, side, quantity, price), prices(coin_id, price).
pub(crate) fn positions(trades: DataFrame, prices: DataFrame) -> PolarsResult<DataFrame> {
    let sort = SortMultipleOptions::default();
    let is_buy = col("side").eq(lit("buy"));
    let priced_buy = is_buy.clone().and(col("price").is_not_null());
    trades
        .lazy()
        .filter(col("quantity").is_not_null())
        .with_columns([
            when(is_buy)
                .then(col("quantity"))
                .otherwise(-col("quantity"))
                .alias("signed"),
            when(priced_buy.clone())
                .then(col("quantity") * col("price"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("buy_cost"),
            when(priced_buy)
                .then(col("quantity"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("buy_quantity"),
        ])
        .group_by_stable([col("person_id"), col("coin_id")])
        .agg([
            col("signed").sum().alias("net_quantity"),
            len().cast(DataType::Int64).alias("trade_count"),
            col("buy_cost").sum().alias("buy_cost"),
            col("buy_quantity").sum().alias("buy_quantity"),
        ])
        .left_join(
            prices
                .lazy()
                .select([col("coin_id"), col("price").alias("last_price_usd")]),
            col("coin_id"),
            col("coin_id"),
        )
        .with_columns([
            when(col("buy_quantity").gt(lit(0.0)))
                .then(col("buy_cost") / col("buy_quantity"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("avg_buy_price"),
            (col("net_quantity") * col("last_price_usd")).alias("market_value_usd"),
        ])
        .select([
            col("person_id"),
            col("coin_id"),
            col("net_quantity"),
            col("trade_count"),
            col("avg_buy_price"),
            col("last_price_usd"),
            col("market_value_usd"),
        ])
        .sort(["person_id", "coin_id"], sort)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn ranks_for(snap_ts: &[i64], rank_ts: &[i64], tolerance: i64) -> Vec<Option<i32>> {
        let snapshots =
            df!("coin_id" => vec!["btc"; snap_ts.len()], "ts" => snap_ts.to_vec()).expect("df");
        let ranks: Vec<i32> = (1..=rank_ts.len() as i32).collect();
        let rankings = df!(
            "coin_id" => vec!["btc"; rank_ts.len()],
            "ts" => rank_ts.to_vec(),
            "rank" => ranks,
            "source" => vec!["rankings"; rank_ts.len()]
        )
        .expect("df");
        let out = market_ranks(snapshots, rankings, tolerance).expect("join");
        out.column("rank")
            .expect("rank")
            .i32()
            .expect("i32")
            .iter()
            .collect()
    }

    #[test]
    fn as_of_join_edges() {
        // exact match
        assert_eq!(ranks_for(&[100 * S], &[100 * S], 60 * S), vec![Some(1)]);
        // inside the tolerance, the latest earlier ranking wins
        assert_eq!(
            ranks_for(&[100 * S], &[50 * S, 90 * S], 60 * S),
            vec![Some(2)]
        );
        // outside the tolerance
        assert_eq!(ranks_for(&[100 * S], &[30 * S], 60 * S), vec![None]);
        // a ranking after the snapshot is never used
        assert_eq!(ranks_for(&[100 * S], &[101 * S], 60 * S), vec![None]);
    }

    #[test]
    fn the_preferred_source_ranks_a_snapshot_even_when_another_is_more_recent() {
        let snapshots =
            df!("coin_id" => ["a", "a", "a"], "ts" => [100 * S, 200 * S, 300 * S]).expect("df");
        let rankings = df!(
            "coin_id" => ["a", "a", "a", "a", "a"],
            "ts" => [90 * S, 95 * S, 195 * S, 190 * S, 295 * S],
            "rank" => [1i32, 2, 3, 4, 5],
            "source" => ["cryptocompare", "coinmarketcap", "cryptocompare", "rankings", "zeta"]
        )
        .expect("df");
        let out = market_ranks(snapshots, rankings, 60 * S).expect("join");
        let rank: Vec<Option<i32>> = out
            .column("rank")
            .expect("rank")
            .i32()
            .expect("i32")
            .iter()
            .collect();
        let source: Vec<Option<&str>> = out
            .column("rank_source")
            .expect("rank_source")
            .str()
            .expect("str")
            .iter()
            .collect();
        assert_eq!(rank, vec![Some(2), Some(3), Some(5)]);
        assert_eq!(
            source,
            vec![Some("coinmarketcap"), Some("cryptocompare"), Some("zeta")]
        );
        let mut names = vec![
            "zeta",
            "rankings",
            "cryptocompare",
            "listings",
            "coinmarketcap",
            "coingecko",
        ];
        names.sort_by(|a, b| rank_source_order(a).cmp(&rank_source_order(b)));
        assert_eq!(
            names,
            [
                "coinmarketcap",
                "coingecko",
                "cryptocompare",
                "listings",
                "rankings",
                "zeta"
            ]
        );
    }

    #[test]
    fn as_of_join_never_crosses_coins() {
        let snapshots = df!("coin_id" => ["a", "b"], "ts" => [100 * S, 100 * S]).expect("df");
        let rankings =
            df!("coin_id" => ["a"], "ts" => [99 * S], "rank" => [7i32], "source" => ["r"])
                .expect("df");
        let out = market_ranks(snapshots, rankings, 60 * S).expect("join");
        let ranks: Vec<Option<i32>> = out
            .column("rank")
            .expect("rank")
            .i32()
            .expect("i32")
            .iter()
            .collect();
        assert_eq!(ranks, vec![Some(7), None]);
    }

    #[test]
    fn daily_rollup_prefers_candles_and_aggregates_snapshots() {
        let day = MICROS_PER_DAY;
        let market = df!(
            "coin_id" => ["a", "a", "a", "b"],
            "ts" => [day, day + 10, day + 20, day],
            "price" => [10.0, 30.0, 20.0, 5.0],
            "market_cap" => [Some(1.0), Some(3.0), None, None],
            "volume" => [Some(7.0), None, Some(9.0), None]
        )
        .expect("df");
        let candles = df!(
            "coin_id" => ["b"],
            "ts" => [day],
            "seconds" => [86_400i64],
            "open" => [1.0], "high" => [2.0], "low" => [0.5], "close" => [1.5],
            "volume" => [Some(100.0)], "market_cap" => [None::<f64>]
        )
        .expect("df");
        let out = daily(market, candles).expect("daily");
        assert_eq!(out.height(), 2);
        let get = |name: &str| {
            out.column(name)
                .expect(name)
                .f64()
                .expect("f64")
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(get("open"), vec![Some(10.0), Some(1.0)]);
        assert_eq!(get("high"), vec![Some(30.0), Some(2.0)]);
        assert_eq!(get("close"), vec![Some(20.0), Some(1.5)]);
        assert_eq!(get("avg_price"), vec![Some(20.0), Some(1.5)]);
        assert_eq!(get("max_market_cap_usd"), vec![Some(3.0), None]);
        assert_eq!(get("last_volume_usd"), vec![Some(9.0), Some(100.0)]);
        let sources: Vec<Option<&str>> = out
            .column("source")
            .expect("source")
            .str()
            .expect("str")
            .iter()
            .collect();
        assert_eq!(sources, vec![Some("market"), Some("candles")]);
    }

    #[test]
    fn daily_takes_the_1d_candle_where_there_is_one_and_folds_finer_ones_otherwise() {
        let (day, hour) = (MICROS_PER_DAY, MICROS_PER_DAY / 24);
        // Day 1: a 1d candle and two hourly ones; day 2: three hourly and one 4h candle
        // (the 4h one is the coarsest there); day 3: two hourly candles only.
        let candles = df!(
            "coin_id" => ["a"; 9],
            "ts" => [day, day, day + hour, 2 * day, 2 * day + hour, 2 * day + 2 * hour, 2 * day, 3 * day, 3 * day + hour],
            "seconds" => [86_400i64, 3_600, 3_600, 3_600, 3_600, 3_600, 14_400, 3_600, 3_600],
            "open" => [1.0, 50.0, 51.0, 60.0, 61.0, 62.0, 70.0, 2.0, 3.0],
            "high" => [9.0, 99.0, 99.0, 99.0, 99.0, 99.0, 79.0, 4.0, 8.0],
            "low" => [0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 69.0, 1.0, 2.0],
            "close" => [5.0, 52.0, 53.0, 63.0, 64.0, 65.0, 75.0, 3.0, 6.0],
            "volume" => [Some(100.0), Some(1.0), Some(1.0), Some(1.0), None, Some(1.0), Some(40.0), Some(10.0), None],
            "market_cap" => [None::<f64>; 9]
        )
        .expect("df");
        let market = df!(
            "coin_id" => Vec::<&str>::new(), "ts" => Vec::<i64>::new(),
            "price" => Vec::<f64>::new(), "market_cap" => Vec::<Option<f64>>::new(),
            "volume" => Vec::<Option<f64>>::new()
        )
        .expect("df");
        let out = daily(market, candles).expect("daily");
        let get = |name: &str| {
            out.column(name)
                .expect(name)
                .f64()
                .expect("f64")
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(get("open"), vec![Some(1.0), Some(70.0), Some(2.0)]);
        assert_eq!(get("high"), vec![Some(9.0), Some(79.0), Some(8.0)]);
        assert_eq!(get("low"), vec![Some(0.5), Some(69.0), Some(1.0)]);
        assert_eq!(get("close"), vec![Some(5.0), Some(75.0), Some(6.0)]);
        assert_eq!(get("avg_price"), vec![Some(5.0), Some(75.0), Some(4.5)]);
        assert_eq!(
            get("last_volume_usd"),
            vec![Some(100.0), Some(40.0), Some(10.0)]
        );
        let samples: Vec<Option<i32>> = out
            .column("samples")
            .expect("samples")
            .i32()
            .expect("i32")
            .iter()
            .collect();
        assert_eq!(samples, vec![Some(1), Some(1), Some(2)]);
    }

    #[test]
    fn daily_folded_in_slices_equals_daily_over_everything() {
        let day = MICROS_PER_DAY;
        // Two coins over two days, snapshots out of order, a coin-day split across
        // slices with interleaved timestamps, and null caps and volumes.
        let coin = ["a", "a", "b", "a", "a", "b", "a", "b"];
        let ts = [
            day + 50,
            day + 10,
            day,
            2 * day + 5,
            day + 30,
            day + 7,
            day + 40,
            2 * day,
        ];
        let price = [5.0, 1.0, 7.0, 9.0, 3.0, 8.0, 4.0, 6.0];
        let cap = [
            Some(1.0),
            None,
            Some(2.0),
            None,
            Some(4.0),
            None,
            Some(3.0),
            None,
        ];
        let volume = [
            Some(1.0),
            Some(2.0),
            None,
            Some(3.0),
            Some(4.0),
            Some(5.0),
            None,
            None,
        ];
        let frame = |range: std::ops::Range<usize>| {
            df!(
                "coin_id" => &coin[range.clone()],
                "ts" => &ts[range.clone()],
                "price" => &price[range.clone()],
                "market_cap" => &cap[range.clone()],
                "volume" => &volume[range]
            )
            .expect("df")
        };
        let no_candles = df!(
            "coin_id" => Vec::<&str>::new(), "ts" => Vec::<i64>::new(),
            "seconds" => Vec::<i64>::new(), "open" => Vec::<f64>::new(), "high" => Vec::<f64>::new(),
            "low" => Vec::<f64>::new(), "close" => Vec::<f64>::new(),
            "volume" => Vec::<Option<f64>>::new(), "market_cap" => Vec::<Option<f64>>::new()
        )
        .expect("df");
        let whole = daily(frame(0..8), no_candles).expect("daily");
        let mut partials = daily_partials(frame(0..3)).expect("partials");
        partials
            .vstack_mut(&daily_partials(frame(3..5)).expect("partials"))
            .expect("vstack");
        partials
            .vstack_mut(&daily_partials(frame(5..8)).expect("partials"))
            .expect("vstack");
        let folded = daily_from_partials(partials).expect("fold");
        assert_eq!(folded.height(), 4);
        for name in [
            "coin_id",
            "day",
            "open",
            "high",
            "low",
            "close",
            "avg_price",
            "max_market_cap_usd",
            "last_volume_usd",
            "samples",
            "source",
        ] {
            let a = whole.column(name).expect(name);
            let b = folded.column(name).expect(name);
            assert!(
                a.equals_missing(b),
                "{name}: {a:?} from everything, {b:?} folded"
            );
        }
    }

    #[test]
    fn traders_take_the_latest_trade_and_keep_people_without_trades() {
        let people = df!(
            "person_id" => [1i64, 2],
            "first_name" => ["Ada", "Bo"],
            "last_name" => ["L", "M"],
            "email" => ["a@x", "b@x"],
            "date_added" => [None::<i64>, None]
        )
        .expect("df");
        let trades = df!(
            "person_id" => [1i64, 1, 1],
            "seq" => [1i64, 2, 3],
            "ts" => [300i64, 100, 300],
            "coin_id" => ["late-first", "early", "late-second"],
            "side" => ["buy", "buy", "sell"],
            "quantity" => [Some(1.0), Some(2.0), Some(3.0)],
            "price" => [None::<f64>, None, None]
        )
        .expect("df");
        let out = traders(people, trades).expect("traders");
        let coins: Vec<Option<&str>> = out
            .column("last_trade_coin_id")
            .expect("c")
            .str()
            .expect("str")
            .iter()
            .collect();
        assert_eq!(coins, vec![Some("late-second"), None]);
        let counts: Vec<Option<i64>> = out
            .column("trade_count")
            .expect("n")
            .i64()
            .expect("i64")
            .iter()
            .collect();
        assert_eq!(counts, vec![Some(3), Some(0)]);
    }

    #[test]
    fn positions_net_sells_and_value_at_the_latest_price() {
        let trades = df!(
            "person_id" => [1i64, 1, 1, 1],
            "coin_id" => ["a", "a", "a", "b"],
            "side" => ["buy", "buy", "sell", "buy"],
            "quantity" => [Some(2.0), Some(2.0), Some(1.0), None],
            "price" => [Some(10.0), Some(20.0), Some(30.0), Some(1.0)]
        )
        .expect("df");
        let prices = df!("coin_id" => ["a"], "price" => [50.0]).expect("df");
        let out = positions(trades, prices).expect("positions");
        assert_eq!(out.height(), 1);
        let f = |name: &str| out.column(name).expect(name).f64().expect("f64").get(0);
        assert_eq!(f("net_quantity"), Some(3.0));
        assert_eq!(f("avg_buy_price"), Some(15.0));
        assert_eq!(f("market_value_usd"), Some(150.0));
    }
}
