//! `/top`: which row counts for each coin, how coins are ranked, how `datetime` is read,
//! and the representations.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_api::routes::top::MAX_LIMIT;
use coinflow_api::state::AppState;
use coinflow_api::top_cache::{MAX_CACHED_ROWS, MAX_ENTRIES};
use coinflow_api::ApiConfig;
use coinflow_shared::testdb::TestDb;
use common::App;
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

/// A small market where the answer is known by heart.
///
/// At 2024-05-02T12:00Z, looking back one day:
/// - alpha: rank 2 (latest row 11:00; an older row at 09:00 had rank 9)
/// - beta: rank 1
/// - gamma: no rank, cap 500
/// - delta: no rank, cap 900 → before gamma
/// - eps: no rank, no cap, volume 50; zeta: no rank, no cap, volume 70 → zeta, eps
/// - stale: latest row 2024-05-01T11:59 (older than a day) → left out
/// - future: only rows after → left out
fn market_app() -> App {
    App::on(market_db(), |_| {})
}

fn market_db() -> TestDb {
    let db = TestDb::new();
    db.conn()
        .batch_execute(
            r#"
INSERT INTO coins (id, symbol, name) VALUES
  ('alpha', 'ALP', 'Alpha'), ('beta', 'BET', 'Beta'), ('gamma', 'GAM', 'Gamma, "the third"'),
  ('delta', 'DEL', 'Delta'), ('eps', 'EPS', 'Epsilon'), ('zeta', 'ZET', 'Zeta'),
  ('stale', 'STA', 'Stale'), ('future', 'FUT', 'Future');
INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source) VALUES
  ('alpha', '2024-05-02T09:00:00Z', 1.0, 100, 10, 9, 'cmc'),
  ('alpha', '2024-05-02T11:00:00Z', 2.5, 100, 10, 2, 'cmc'),
  ('beta',  '2024-05-02T12:00:00Z', 30000, 5000, 10, 1, 'cmc'),
  ('gamma', '2024-05-02T10:00:00Z', 3.0, 500, 10, NULL, NULL),
  ('delta', '2024-05-01T12:00:00Z', 4.0, 900, 10, NULL, NULL),
  ('eps',   '2024-05-02T00:00:00Z', 5.0, NULL, 50, NULL, NULL),
  ('zeta',  '2024-05-02T00:00:00Z', 6.0, NULL, 70, NULL, NULL),
  ('stale', '2024-05-01T11:59:59Z', 7.0, 99999, 10, 1, 'cmc'),
  ('future','2024-05-03T00:00:00Z', 8.0, 99999, 10, 1, 'cmc'),
  ('beta',  '2024-05-03T00:00:00Z', 31000, 5000, 10, 1, 'cmc');
INSERT INTO etl_runs (status, pid, host, data_dir) VALUES ('ok', 1, 'h', '/d');
UPDATE data_versions SET version = 1;
"#,
        )
        .unwrap();
    common::rebuild_top_slots(&mut db.conn());
    db
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn top_ranks_each_coins_latest_row_within_a_day() {
    let app = market_app();
    let reply = app.get("/top?limit=10&datetime=2024-05-02T12:00:00Z");
    assert_eq!(reply.status.code, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["as_of"], "2024-05-02T12:00:00Z");
    assert_eq!(
        ids(&body),
        ["beta", "alpha", "delta", "gamma", "zeta", "eps"]
    );
    let ranks: Vec<i64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rank"].as_i64().unwrap())
        .collect();
    assert_eq!(ranks, [1, 2, 3, 4, 5, 6], "renumbered 1..n");
    assert_eq!(
        body["data"][1],
        json!({"rank": 2, "id": "alpha", "symbol": "ALP", "name": "Alpha", "price_usd": 2.5,
               "market_cap_usd": 100.0, "volume_24h_usd": 10.0, "rank_source": "cmc"}),
        "alpha's latest row at or before the instant"
    );
    assert!(body["data"][5]["market_cap_usd"].is_null());

    let limited = app.get("/top?limit=3&datetime=2024-05-02T12:00:00Z").json();
    assert_eq!(ids(&limited), ["beta", "alpha", "delta"]);
}

#[test]
fn datetime_is_iso_a_bare_date_meaning_its_end_or_unix_seconds_and_defaults_to_the_latest() {
    let app = market_app();
    let iso = ids(&app
        .get("/top?limit=10&datetime=2024-05-02T12:00:00Z")
        .json());
    let offset = ids(&app
        .get("/top?limit=10&datetime=2024-05-02T14:00:00%2B02:00")
        .json());
    let unix = ids(&app.get("/top?limit=10&datetime=1714651200").json());
    assert_eq!(iso, offset);
    assert_eq!(iso, unix);

    // The end of 2024-05-02: beta's and delta's rows drop out of or stay in the window.
    let day = app.get("/top?limit=10&datetime=2024-05-02").json();
    assert_eq!(day["as_of"], "2024-05-02T23:59:59.999999Z");
    assert_eq!(
        ids(&day),
        ["beta", "alpha", "gamma", "zeta", "eps"],
        "delta (2024-05-01 12:00) is over a day old"
    );

    let latest = app.get("/top?limit=10").json();
    assert_eq!(latest["as_of"], "2024-05-03T00:00:00Z");
    assert_eq!(
        ids(&latest),
        ["future", "beta", "alpha", "gamma", "zeta", "eps"],
        "equal ranks: the larger cap first"
    );
}

#[test]
fn top_as_csv_has_exactly_the_original_header() {
    let app = market_app();
    for reply in [
        app.get("/top?limit=4&datetime=2024-05-02T12:00:00Z&format=csv"),
        app.get_with(
            "/top?limit=4&datetime=2024-05-02T12:00:00Z",
            "Accept",
            "text/csv",
        ),
    ] {
        assert_eq!(reply.status.code, 200);
        assert!(reply
            .header("Content-Type")
            .unwrap()
            .starts_with("text/csv"));
        assert_eq!(
            reply.body,
            "Rank,Symbol,Price USD\r\n1,BET,30000\r\n2,ALP,2.5\r\n3,DEL,4\r\n4,GAM,3\r\n"
        );
    }
    let nd = app.get("/top?limit=2&datetime=2024-05-02T12:00:00Z&format=ndjson");
    let lines: Vec<Value> = nd
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "beta");
}

#[test]
fn bad_top_requests_and_empty_history_are_problems() {
    let app = market_app();
    for uri in [
        "/top",
        "/top?limit=0",
        "/top?limit=5001",
        "/top?limit=-3",
        "/top?limit=ten",
        "/top?limit=3&datetime=not-a-date",
        "/top?limit=3&datetime=2024-02-30",
        "/top?limit=3&format=xml",
        "/top?limit=3&when=now",
    ] {
        app.get(uri).assert_problem(400);
    }
    // Instants the warehouse cannot hold (some PostgreSQL cannot either): 400, not 500.
    for uri in [
        "/top?limit=3&datetime=-300000000000",
        "/top?limit=3&datetime=9467020800000",
        "/top?limit=3&datetime=1969-12-31T23:59:59Z",
        "/read/market?from=-300000000000",
        "/read/market?to=9467020800000",
    ] {
        let p = app.get(uri).assert_problem(400);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("1970-01-01 to 9999-12-31"),
            "{uri}: {p}"
        );
    }
    assert_eq!(app.get("/top?limit=5000").status.code, 200);
    let p = app
        .get("/top?limit=3&datetime=1990-01-01")
        .assert_problem(404);
    assert!(p["detail"].as_str().unwrap().contains("1990-01-01"), "{p}");

    let empty = App::on(TestDb::new(), |_| {});
    empty.get("/top?limit=3").assert_problem(404);
}

#[test]
fn top_answers_if_none_match_until_market_changes() {
    let app = market_app();
    let first = app.get("/top?limit=3");
    let etag = first.header("ETag").unwrap().to_string();
    assert_eq!(
        app.get_with("/top?limit=3", "If-None-Match", &etag)
            .status
            .code,
        304
    );
    assert_eq!(
        app.get_with("/top?limit=4", "If-None-Match", &etag)
            .status
            .code,
        200
    );
    app.exec("UPDATE data_versions SET version = 2 WHERE dataset = 'top'");
    assert_eq!(
        app.get_with("/top?limit=3", "If-None-Match", &etag)
            .status
            .code,
        200
    );
}

#[test]
fn top_on_the_standard_fixture_matches_sql() {
    let app = App::new();
    let body = app.get("/top?limit=25").json();
    let want = app.texts(
        "WITH latest AS (
           SELECT DISTINCT ON (coin_id) coin_id, rank, market_cap_usd, volume_24h_usd FROM market
           WHERE ts <= (SELECT max(ts) FROM market) AND ts >= (SELECT max(ts) FROM market) - interval '1 day'
           ORDER BY coin_id, ts DESC)
         SELECT coin_id AS t FROM latest
         ORDER BY rank NULLS LAST, market_cap_usd DESC NULLS LAST, volume_24h_usd DESC NULLS LAST, coin_id LIMIT 25",
    );
    assert_eq!(ids(&body), want);
}

#[test]
fn top_is_cached_until_an_etl_run_changes_market_or_coins() {
    let app = market_app();
    let at = "/top?limit=10&datetime=2024-05-02T12:00:00Z";
    let before = app.get(at).json();
    assert_eq!(ids(&before)[0], "beta");
    let latest_before = app.get("/top?limit=10").json();
    let state = app.client.rocket().state::<AppState>().unwrap();
    let computed = state.top_cache.computations();

    // Rows that change without a new data version (no ETL run does that) are not seen:
    // the answer comes from the cache.
    app.exec("UPDATE market SET rank = 1 WHERE coin_id = 'gamma'");
    common::rebuild_top_slots(&mut app.conn());
    assert_eq!(app.get(at).json(), before);
    assert_eq!(app.get("/top?limit=10").json(), latest_before);
    assert_eq!(
        state.top_cache.computations(),
        computed,
        "answered from the cache"
    );

    // An ETL run that changed the slots bumps their version: the next answer is fresh.
    app.exec("UPDATE data_versions SET version = version + 1 WHERE dataset = 'top'");
    let after = app.get(at).json();
    assert_eq!(ids(&after)[..2], ["beta".to_string(), "gamma".to_string()]);
    assert!(state.top_cache.computations() > computed);

    // A new latest instant is picked up too.
    app.exec(
        "INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source)
         VALUES ('gamma', '2024-05-04T00:00:00Z', 3.5, 500, 10, 1, 'cmc')",
    );
    common::rebuild_top_slots(&mut app.conn());
    app.exec("UPDATE data_versions SET version = version + 1 WHERE dataset = 'top'");
    let latest = app.get("/top?limit=10").json();
    assert_eq!(latest["as_of"], "2024-05-04T00:00:00Z");
    assert_eq!(
        ids(&latest),
        ["future", "beta", "gamma"],
        "equal ranks: by cap"
    );

    // A run that only renamed a coin bumps coins, not market: the names follow.
    app.exec("UPDATE coins SET name = 'Gamma Renamed' WHERE id = 'gamma'");
    let name = |body: Value| body["data"][2]["name"].as_str().unwrap().to_string();
    assert_eq!(
        name(app.get("/top?limit=10").json()),
        "Gamma, \"the third\""
    );
    app.exec("UPDATE data_versions SET version = version + 1 WHERE dataset = 'coins'");
    assert_eq!(name(app.get("/top?limit=10").json()), "Gamma Renamed");
}

#[test]
fn concurrent_cold_top_requests_compute_the_ranking_once() {
    let db = market_db();
    let mut config = ApiConfig::new(db.url());
    config.pool_size = 4;
    let runtime = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = rocket::local::asynchronous::Client::untracked(coinflow_api::rocket(config))
            .await
            .unwrap();
        let requests = (0..16).map(|_| async {
            let response = client
                .get("/top?limit=5&datetime=2024-05-02T12:00:00Z")
                .dispatch()
                .await;
            (
                response.status().code,
                response.into_string().await.unwrap_or_default(),
            )
        });
        let answers = rocket::futures::future::join_all(requests).await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body, &answers[0].1);
        }
        let state = client.rocket().state::<AppState>().unwrap();
        assert_eq!(state.top_cache.computations(), 1);
        assert_eq!(state.top_cache.len(), 1);
    });
}

#[test]
fn the_top_cache_is_bounded() {
    let app = market_app();
    let state = app.client.rocket().state::<AppState>().unwrap();
    // Every limit is its own answer; the row budget keeps the cache from growing on.
    for limit in (MAX_LIMIT - 60)..=MAX_LIMIT {
        assert_eq!(
            app.get(&format!("/top?limit={limit}&datetime=2024-05-02T12:00:00Z"))
                .status
                .code,
            200
        );
    }
    let cached = state.top_cache.len();
    assert!(cached >= 1);
    assert!(
        (cached as i64) * (MAX_LIMIT - 60) <= MAX_CACHED_ROWS,
        "{cached} answers cached"
    );
    assert!(cached <= MAX_ENTRIES);
}

#[test]
fn symbols_are_served_in_upper_case_whatever_case_they_were_stored_in() {
    let db = market_db();
    db.conn()
        .batch_execute("UPDATE coins SET symbol = lower(symbol) WHERE id IN ('alpha', 'beta')")
        .unwrap();
    let app = App::on(db, |_| {});
    let body = app.get("/top?limit=2&datetime=2024-05-02T12:00:00Z").json();
    let symbols: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["BET", "ALP"]);
    let csv = app.get("/top?limit=2&datetime=2024-05-02T12:00:00Z&format=csv");
    assert_eq!(
        csv.body,
        "Rank,Symbol,Price USD\r\n1,BET,30000\r\n2,ALP,2.5\r\n"
    );
    let coins = app.get("/read/coins?size=2").json();
    assert_eq!(coins["data"][0]["symbol"], "ALP");
    let market = app.get("/read/market?coin=beta&size=1").json();
    assert_eq!(market["data"][0]["symbol"], "BET");
    // Stored as given.
    assert_eq!(
        common::texts(
            &mut app.conn(),
            "SELECT symbol AS t FROM coins WHERE id = 'alpha'"
        ),
        ["alp"]
    );
}

/// Daily candles (Kaggle-style, stamped at the start of their day) for coins that have
/// no market row near the instant.
fn candles_app() -> App {
    let db = TestDb::new();
    db.conn()
        .batch_execute(
            r#"
INSERT INTO coins (id, symbol, name) VALUES
  ('kag', 'kag', 'Kaggle Coin'), ('mkt', 'MKT', 'Market Coin'), ('both', 'BTH', 'Both');
INSERT INTO candles (coin_id, ts, period_start, open, high, low, close, volume_usd, market_cap_usd)
SELECT 'kag', timestamptz '2019-12-01T00:00:00Z' + d * interval '1 day',
       timestamptz '2019-12-01T00:00:00Z' + d * interval '1 day', 1, 2, 0.5, 10 + d, 100, 1000 + d
FROM generate_series(0, 4) d;
INSERT INTO candles (coin_id, ts, period_start, open, high, low, close, volume_usd, market_cap_usd) VALUES
  ('both', '2019-12-03T23:59:59Z', '2019-12-03T00:00:00Z', 1, 2, 0.5, 7, 10, 9000),
  ('mkt', '2019-12-03T00:00:00Z', '2019-12-03T00:00:00Z', 1, 2, 0.5, 99, 10, 99999);
-- Hourly candles count for daily, not for /top.
INSERT INTO candles (coin_id, interval, ts, period_start, open, high, low, close) VALUES
  ('kag', '1h', '2019-12-10T05:00:00Z', '2019-12-10T05:00:00Z', 1, 2, 0.5, 1);
INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source) VALUES
  ('mkt', '2019-12-04T12:00:00Z', 5, 500, 1, NULL, NULL),
  ('both', '2019-12-02T00:00:00Z', 6, 600, 1, 1, 'cmc');
INSERT INTO etl_runs (status, pid, host, data_dir) VALUES ('ok', 1, 'h', '/d');
"#,
        )
        .unwrap();
    common::rebuild_top_slots(&mut db.conn());
    App::on(db, |_| {})
}

#[test]
fn coins_with_only_candles_near_the_instant_rank_by_their_latest_ended_candle() {
    let app = candles_app();
    let body = app.get("/top?limit=10&datetime=2019-12-04").json();
    let rows: Vec<(String, f64, String)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["price_usd"].as_f64().unwrap(),
                r["rank_source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // both: its market row (12-02) is over a day old, its candle of 12-03 ended at 12-04
    // 00:00; kag: the candle of 12-03 (close 12), not that of 12-04, which has not ended;
    // mkt: its market row wins over its candle.
    assert_eq!(
        rows,
        [
            ("both".to_string(), 7.0, "candles".to_string()),
            ("kag".to_string(), 12.0, "candles".to_string()),
            ("mkt".to_string(), 5.0, "market".to_string()),
        ]
    );
    assert_eq!(body["data"][1]["market_cap_usd"], 1002.0);
    assert_eq!(body["data"][1]["symbol"], "KAG");

    // One microsecond before the 12-04 candle's day ends, it still does not count.
    let before_end = app
        .get("/top?limit=10&datetime=2019-12-04T23:59:59.999999Z")
        .json();
    assert_eq!(before_end["data"][1]["price_usd"], 12.0);
    let at_end = app
        .get("/top?limit=10&datetime=2019-12-05T00:00:00Z")
        .json();
    assert_eq!(at_end["data"][1]["id"], "kag");
    assert_eq!(at_end["data"][1]["price_usd"], 13.0);

    // Before any candle ended and any snapshot: 404; a day after the last candle
    // ended (12-06 00:00) and every snapshot: 200 with an empty list.
    app.get("/top?limit=10&datetime=2019-12-01T12:00:00Z")
        .assert_problem(404);
    let after = app.get("/top?limit=10&datetime=2019-12-07T00:00:01Z");
    assert_eq!(after.status.code, 200, "{}", after.body);
    assert_eq!(after.json()["data"], json!([]));
    let last_moment = app
        .get("/top?limit=10&datetime=2019-12-07T00:00:00Z")
        .json();
    assert_eq!(ids(&last_moment), ["kag"], "not older than one period");
}

#[test]
fn candles_alone_give_the_default_instant() {
    let db = TestDb::new();
    db.conn()
        .batch_execute(
            "INSERT INTO coins (id, symbol, name) VALUES ('kag', 'KAG', 'Kaggle Coin');
             INSERT INTO candles (coin_id, ts, period_start, open, high, low, close) VALUES
               ('kag', '2019-12-01T00:00:00Z', '2019-12-01T00:00:00Z', 1, 2, 0.5, 1.5);",
        )
        .unwrap();
    common::rebuild_top_slots(&mut db.conn());
    let app = App::on(db, |_| {});
    let body = app.get("/top?limit=3").json();
    assert_eq!(body["as_of"], "2019-12-02T00:00:00Z");
    assert_eq!(ids(&body), ["kag"]);
}
