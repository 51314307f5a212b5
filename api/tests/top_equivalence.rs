//! `/top` reads the slots the ETL maintains; this proves it answers exactly what the
//! definition says (each coin's latest market row at or before the instant and not older
//! than a day, ranked by rank, then cap, then volume, then id) on an irregular history
//! loaded by the real ETL: uneven spacing, gaps over a day, tied and missing ranks,
//! instants at ts ± 1 µs and ts + 1 day ± 1 µs, before the first row, and right after a
//! second load that adds rows between, before and after the stored ones and updates some.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use coinflow_shared::testdb::TestDb;
use common::App;
use diesel::prelude::*;
use diesel::sql_types::{Double, Nullable, Text};
use std::fmt::Write;

/// Today's definition, as SQL: one backward probe per coin.
const REFERENCE_SQL: &str = "\
SELECT c.id, l.price_usd
FROM coins c
CROSS JOIN LATERAL (
    SELECT m.price_usd, m.market_cap_usd, m.volume_24h_usd, m.rank
    FROM market m
    WHERE m.coin_id = c.id AND m.ts <= $1::timestamptz AND m.ts >= $1::timestamptz - interval '1 day'
    ORDER BY m.ts DESC
    LIMIT 1
) l
ORDER BY l.rank ASC NULLS LAST, l.market_cap_usd DESC NULLS LAST,
         l.volume_24h_usd DESC NULLS LAST, c.id
LIMIT $2";

#[derive(QueryableByName, Debug, PartialEq)]
struct Ranked {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Double)]
    price_usd: f64,
}

/// A small deterministic generator (no seed file, same history every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const COINS: usize = 14;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// Each coin's snapshot instants: steps from a second to 40 hours, some exactly a day.
fn history(rng: &mut Lcg) -> Vec<Vec<DateTime<Utc>>> {
    (0..COINS)
        .map(|_| {
            let mut ts = start() + Duration::seconds(rng.next(20_000) as i64);
            let mut out = Vec::new();
            for _ in 0..40 {
                out.push(ts);
                let step = match rng.next(8) {
                    0 => 86_400,
                    1 => 86_400 + 1,
                    2 => 40 * 3600 + rng.next(3600) as i64,
                    3 => 1 + rng.next(60) as i64,
                    _ => 600 + rng.next(6 * 3600) as i64,
                };
                ts += Duration::seconds(step);
            }
            out
        })
        .collect()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Listings rows (ranked, ranks 1–4 so ties are common) for some snapshots, markets rows
/// (no rank; caps and volumes tied or missing) for the others. Rows of `later` coins'
/// second halves are held back for the second load.
fn files(rng: &mut Lcg, history: &[Vec<DateTime<Utc>>]) -> (String, String, String) {
    let mut listings = String::from("id,symbol,name,rank,price,timestamp,market_cap,volume_24h\n");
    let mut markets = String::from("coin_id,timestamp,price,market_cap,volume_24h\n");
    let mut later = String::from("coin_id,timestamp,price,market_cap,volume_24h\n");
    for (c, instants) in history.iter().enumerate() {
        let id = format!("coin-{c:02}");
        for (i, ts) in instants.iter().enumerate() {
            let price = 1.0 + (c * 100 + i) as f64;
            let cap = match rng.next(4) {
                0 => String::new(),
                1 => "5000".to_string(),
                _ => (1000 + rng.next(50) * 100).to_string(),
            };
            let volume = match rng.next(3) {
                0 => String::new(),
                _ => (10 + rng.next(5)).to_string(),
            };
            if i == 0 || rng.next(3) == 0 {
                let rank = 1 + rng.next(4);
                let cap = if cap.is_empty() { "7".into() } else { cap };
                writeln!(
                    listings,
                    "{id},C{c},Coin {c},{rank},{price},{},{cap},{volume}",
                    iso(*ts)
                )
                .unwrap();
            } else if c % 3 == 0 && i % 2 == 1 {
                // Between and after the first load's rows of this coin.
                writeln!(later, "{id},{},{price},{cap},{volume}", iso(*ts)).unwrap();
            } else {
                writeln!(markets, "{id},{},{price},{cap},{volume}", iso(*ts)).unwrap();
            }
        }
    }
    // An update of stored rows in the second load: new prices for a few first-load rows.
    for line in markets.lines().skip(1).step_by(17) {
        let mut cols: Vec<String> = line.split(',').map(str::to_string).collect();
        cols[2] = format!("{}.5", cols[2]);
        writeln!(later, "{}", cols.join(",")).unwrap();
    }
    (listings, markets, later)
}

/// The instants to compare at: around every few snapshots, at and around a day after
/// them, before the first row, and random ones over the whole span.
fn instants(rng: &mut Lcg, history: &[Vec<DateTime<Utc>>], n: usize) -> Vec<DateTime<Utc>> {
    let us = Duration::microseconds(1);
    let day = Duration::days(1);
    let mut out = vec![start() - Duration::hours(1), start()];
    let all: Vec<DateTime<Utc>> = history.iter().flatten().copied().collect();
    while out.len() < n {
        let ts = all[rng.next(all.len() as u64) as usize];
        out.extend([ts - us, ts, ts + us, ts + day - us, ts + day, ts + day + us]);
        let span =
            (all.iter().max().unwrap().timestamp() - start().timestamp()) as u64 + 3 * 86_400;
        out.push(start() + Duration::seconds(rng.next(span) as i64));
    }
    out
}

fn reference(conn: &mut PgConnection, at: DateTime<Utc>, limit: i64) -> Vec<Ranked> {
    diesel::sql_query(REFERENCE_SQL)
        .bind::<Text, _>(iso(at))
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)
        .unwrap()
}

fn served(app: &App, at: DateTime<Utc>, limit: i64) -> Option<Vec<Ranked>> {
    let reply = app.get(&format!("/top?limit={limit}&datetime={}", iso(at)));
    if reply.status.code == 404 {
        return None;
    }
    assert_eq!(reply.status.code, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(
        body["as_of"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(at)
    );
    Some(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                assert_eq!(r["rank"].as_i64(), Some(i as i64 + 1), "renumbered");
                Ranked {
                    id: r["id"].as_str().unwrap().to_string(),
                    price_usd: r["price_usd"].as_f64().unwrap(),
                }
            })
            .collect(),
    )
}

/// Compares every instant at two limits; returns how many answers had rows.
fn compare(app: &App, instants: &[DateTime<Utc>]) -> usize {
    let mut conn = app.conn();
    let mut with_rows = 0;
    for &at in instants {
        for limit in [3, 50] {
            let want = reference(&mut conn, at, limit);
            match served(app, at, limit) {
                Some(got) => {
                    assert_eq!(got, want, "at {} limit {limit}", iso(at));
                    with_rows += usize::from(!got.is_empty());
                }
                None => {
                    assert!(
                        want.is_empty(),
                        "404 at {} but the reference has rows",
                        iso(at)
                    );
                    let before: Vec<Ranked> = diesel::sql_query(
                        "SELECT coin_id AS id, price_usd FROM market WHERE ts <= $1::timestamptz",
                    )
                    .bind::<Text, _>(iso(at))
                    .load(&mut conn)
                    .unwrap();
                    assert!(before.is_empty(), "404 at {} with rows before it", iso(at));
                }
            }
        }
    }
    with_rows
}

/// A fresh database loaded by the ETL from `dir`, the API on it, and the run's options
/// (for later runs).
fn loaded(dir: &std::path::Path, what: &str) -> (App, coinflow_etl::RunOptions) {
    let db = TestDb::new();
    let mut opts = coinflow_etl::RunOptions::new(db.url(), dir);
    opts.db_wait = std::time::Duration::from_secs(5);
    coinflow_etl::run(&opts).expect(what);
    (App::on(db, |_| {}), opts)
}

#[derive(QueryableByName)]
struct Price {
    #[diesel(sql_type = Nullable<Double>)]
    p: Option<f64>,
}

#[test]
fn slots_answer_exactly_what_the_definition_says_before_and_after_a_second_load() {
    let mut rng = Lcg(0x5eed);
    let history = history(&mut rng);
    let (listings, markets, later) = files(&mut rng, &history);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("listings.csv"), listings).unwrap();
    std::fs::write(dir.path().join("markets.csv"), markets).unwrap();
    let (app, opts) = loaded(dir.path(), "first load");

    let first = instants(&mut rng, &history, 180);
    let answered = compare(&app, &first);
    assert!(
        answered > first.len(),
        "most instants have coins: {answered}"
    );

    std::fs::write(dir.path().join("markets-later.csv"), later).unwrap();
    let report = coinflow_etl::run(&opts).expect("second load");
    assert!(
        report.totals.loaded > 0 && report.totals.updated > 0,
        "{report:?}"
    );
    let updated: Price =
        diesel::sql_query("SELECT max(price_usd - floor(price_usd)) AS p FROM market")
            .get_result(&mut app.conn())
            .unwrap();
    assert_eq!(updated.p, Some(0.5), "the second load updated prices");
    // What the run maintained incrementally is what a full recomputation gives.
    let differing: Price = diesel::sql_query(
        "SELECT count(*)::float8 AS p FROM ( \
           (SELECT * FROM top_slots EXCEPT ALL SELECT * FROM top_slots_of( \
              ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins))) \
           UNION ALL \
           (SELECT * FROM top_slots_of( \
              ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins)) \
            EXCEPT ALL SELECT * FROM top_slots)) d",
    )
    .get_result(&mut app.conn())
    .unwrap();
    assert_eq!(
        differing.p,
        Some(0.0),
        "incremental slots differ from a full recomputation"
    );
    let second = instants(&mut rng, &history, 180);
    compare(&app, &second);
    // The first instants again: the second load changed answers there too.
    compare(&app, &first);
}

#[test]
fn daily_candles_loaded_by_the_etl_answer_top_and_a_later_snapshot_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("coins.csv"),
        "id,symbol,name\nkaggle-coin,kag,Kaggle Coin\nother,OTH,Other\n",
    )
    .unwrap();
    let mut candles = String::from("coin_id,date,open,high,low,close,volume,market_cap\n");
    for day in 1..=5 {
        writeln!(
            candles,
            "kaggle-coin,2019-12-0{day},1,2,0.5,{},100,{}",
            10 + day,
            1000 + day
        )
        .unwrap();
        writeln!(
            candles,
            "other,2019-12-0{day},1,2,0.5,{},100,{}",
            20 + day,
            9000 + day
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("candles.csv"), candles).unwrap();
    let (app, opts) = loaded(dir.path(), "candles load");

    let body = app.get("/top?limit=5&datetime=2019-12-04").json();
    let rows: Vec<(&str, f64, &str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["price_usd"].as_f64().unwrap(),
                r["rank_source"].as_str().unwrap(),
                r["symbol"].as_str().unwrap(),
            )
        })
        .collect();
    // The candles of 12-03 ended at 12-04 00:00; those of 12-04 have not ended.
    assert_eq!(
        rows,
        [
            ("other", 23.0, "candles", "OTH"),
            ("kaggle-coin", 13.0, "candles", "KAG"),
        ]
    );

    // A later run brings a snapshot of one coin: it takes over from its candle.
    std::fs::write(
        dir.path().join("markets.csv"),
        "coin_id,timestamp,price,market_cap\nother,2019-12-04T06:00:00Z,99,50\n",
    )
    .unwrap();
    coinflow_etl::run(&opts).expect("markets load");
    let body = app.get("/top?limit=5&datetime=2019-12-04").json();
    assert_eq!(body["data"][0]["id"], "kaggle-coin", "by cap: 1003 over 50");
    assert_eq!(body["data"][1]["price_usd"], 99.0);
    assert_eq!(body["data"][1]["rank_source"], "market");
}
