//! Chunked reads against a real database: every dataset walks completely, once, in key
//! order; cursors are checked; representations and conditional requests work.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_api::read::{explain, explain_with, statements, Filters, Source};
use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::dataset::Served;
use common::{App, Reply};
use diesel::connection::SimpleConnection;
use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The key of a JSON row of `dataset`, `|`-joined.
fn key_of(dataset: &str, row: &Value) -> String {
    let cols: &[&str] = match dataset {
        "market" => &["coin_id", "ts"],
        "daily" => &["coin_id", "day"],
        "coins" => &["id"],
        "coin_exchanges" => &["coin_id"],
        "traders" => &["person_id"],
        "positions" => &["person_id", "coin_id"],
        "rejects" => &["run_id", "file", "line"],
        "task_results" => &["taskRun", "id"],
        other => panic!("no key for {other}"),
    };
    cols.iter()
        .map(|c| text(&row[c]))
        .collect::<Vec<_>>()
        .join("|")
}

/// The expected keys, by SQL, in the same spelling.
fn expected_keys(app: &App, dataset: &str, filter_sql: &str) -> Vec<String> {
    let (expr, table, order) = match dataset {
        "market" => (
            "coin_id || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            "market",
            "coin_id, ts",
        ),
        "daily" => (
            "coin_id || '|' || to_char(day, 'YYYY-MM-DD')",
            "daily",
            "coin_id, day",
        ),
        "coins" => ("id", "coins", "id"),
        "coin_exchanges" => ("coin_id", "coin_exchanges", "coin_id"),
        "traders" => ("person_id::text", "traders", "person_id"),
        "positions" => (
            "person_id || '|' || coin_id",
            "positions",
            "person_id, coin_id",
        ),
        "rejects" => (
            "run_id || '|' || file || '|' || line",
            "etl_rejects",
            "run_id, file, line",
        ),
        other => panic!("no table for {other}"),
    };
    let where_clause = if filter_sql.is_empty() {
        String::new()
    } else {
        format!("WHERE {filter_sql}")
    };
    app.texts(&format!(
        "SELECT {expr} AS t FROM {table} {where_clause} ORDER BY {order}"
    ))
}

fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("Link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link[link.find('<')? + 1..link.find('>')?].to_string())
}

/// Follows the chunks from `first`: by `next_cursor` on `/read/next-chunk`, or by the
/// `Link` header. Returns the rows and the number of chunks, checking each chunk's shape.
fn walk(app: &App, dataset: &str, first: &str, size: usize, by_link: bool) -> (Vec<Value>, usize) {
    let mut reply = app.get(first);
    let mut rows = Vec::new();
    let mut chunks = 0;
    loop {
        assert_eq!(reply.status.code, 200, "{first}: {}", reply.body);
        let body = reply.json();
        chunks += 1;
        assert_eq!(body["dataset"], dataset);
        assert_eq!(body["size"], size);
        assert_eq!(body["version"], 1);
        let data = body["data"].as_array().expect("data is an array").clone();
        let has_more = body["has_more"].as_bool().expect("has_more");
        if has_more {
            assert_eq!(data.len(), size, "only the last chunk may be short");
            let cursor = body["next_cursor"]
                .as_str()
                .expect("a next cursor")
                .to_string();
            let link = next_link(&reply).expect("a Link header");
            assert!(link.contains(&cursor));
            rows.extend(data);
            reply = if by_link {
                app.get(&link)
            } else {
                app.get(&format!("/read/next-chunk?cursor={cursor}"))
            };
        } else {
            assert!(body["next_cursor"].is_null());
            assert!(reply.header("Link").is_none());
            rows.extend(data);
            break;
        }
        assert!(chunks < 5000, "runaway pagination");
    }
    (rows, chunks)
}

fn assert_walk(
    app: &App,
    dataset: &str,
    query: &str,
    filter_sql: &str,
    sizes: &[usize],
    min_chunks: usize,
) {
    let expected = expected_keys(app, dataset, filter_sql);
    assert!(
        !expected.is_empty(),
        "{dataset} {query}: the fixture has rows"
    );
    for (i, &size) in sizes.iter().enumerate() {
        let by_link = i % 2 == 1;
        let first = if by_link {
            format!("/read/{dataset}?size={size}{query}")
        } else {
            format!("/read/first-chunk?dataset={dataset}&size={size}{query}")
        };
        let (rows, chunks) = walk(app, dataset, &first, size, by_link);
        let got: Vec<String> = rows.iter().map(|r| key_of(dataset, r)).collect();
        assert_eq!(got.len(), expected.len(), "{first}: row count");
        assert_eq!(got, expected, "{first}: every row once, in key order");
        assert_eq!(
            chunks,
            expected.len().div_ceil(size).max(1),
            "{first}: chunk count"
        );
        if min_chunks > 0 {
            assert!(
                chunks > min_chunks,
                "{first}: only {chunks} chunks; the test wants more than {min_chunks}"
            );
        }
    }
}

#[test]
fn every_dataset_walks_completely_once_in_key_order() {
    let app = App::new();
    assert_walk(&app, "market", "", "", &[7, 97, 250], 10);
    assert_walk(&app, "daily", "", "", &[50, 111], 10);
    assert_walk(&app, "coins", "", "", &[7, 13], 10);
    assert_walk(&app, "coin_exchanges", "", "", &[5, 11], 10);
    assert_walk(&app, "traders", "", "", &[13, 27], 10);
    assert_walk(&app, "positions", "", "", &[17, 50], 10);
    assert_walk(&app, "rejects", "", "", &[11, 33], 10);
}

#[test]
fn filtered_walks_visit_exactly_the_matching_rows() {
    let app = App::new();
    assert_walk(
        &app,
        "market",
        "&coin=coin-007",
        "coin_id = 'coin-007'",
        &[3, 9],
        10,
    );
    assert_walk(
        &app,
        "market",
        "&from=2024-03-02T00:00:00Z&to=2024-03-03",
        "ts >= '2024-03-02T00:00:00Z' AND ts <= '2024-03-03T23:59:59.999999Z'",
        &[100, 37],
        10,
    );
    assert_walk(
        &app,
        "market",
        "&coin=coin-003&from=1709337600&to=2024-03-03T23:00:00%2B00:00",
        "coin_id = 'coin-003' AND ts >= '2024-03-02T00:00:00Z' AND ts <= '2024-03-03T23:00:00Z'",
        &[4, 3],
        10,
    );
    assert_walk(
        &app,
        "daily",
        "&coin=coin-002",
        "coin_id = 'coin-002'",
        &[3, 2],
        10,
    );
    assert_walk(
        &app,
        "daily",
        "&from=2024-01-05&to=2024-01-25T12:00:00Z",
        "day >= '2024-01-05' AND day <= '2024-01-25'",
        &[50, 21],
        10,
    );
    assert_walk(
        &app,
        "daily",
        "&coin=coin-009&from=2024-01-10",
        "coin_id = 'coin-009' AND day >= '2024-01-10'",
        &[2],
        10,
    );
    assert_walk(
        &app,
        "positions",
        "&coin=coin-005",
        "coin_id = 'coin-005'",
        &[1, 2],
        10,
    );
    assert_walk(
        &app,
        "coin_exchanges",
        "&coin=coin-042",
        "coin_id = 'coin-042'",
        &[1, 5],
        0,
    );
    assert_walk(&app, "rejects", "&run=1", "run_id = 1", &[20, 7], 10);
    assert_walk(&app, "rejects", "&run=2", "run_id = 2", &[10], 10);
}

#[test]
fn first_chunk_defaults_to_ten_market_rows_with_joined_coin_names() {
    let app = App::new();
    let reply = app.get("/read/first-chunk");
    assert_eq!(reply.status.code, 200);
    assert!(reply
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["dataset"], "market");
    assert_eq!(body["size"], 10);
    assert_eq!(body["has_more"], true);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    let first = &data[0];
    assert_eq!(first["coin_id"], "coin-001");
    assert_eq!(first["symbol"], "C001");
    assert_eq!(first["name"], "Coin 1");
    assert_eq!(first["ts"], "2024-03-01T00:00:00Z");
    assert_eq!(first["price_usd"], 10.0);
    assert_eq!(first["rank"], 1);
    assert_eq!(first["rank_source"], "cmc");
    assert_eq!(data[9]["ts"], "2024-03-01T09:00:00Z");
    let body_keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "dataset",
        "version",
        "size",
        "data",
        "next_cursor",
        "has_more",
    ] {
        assert!(body_keys.contains(&key), "{key}");
    }
}

#[test]
fn the_chunk_queries_are_index_range_scans_without_offset() {
    let app = App::new();
    let mut conn = app.conn();
    // A realistic market: the planner then prefers the primary key on its own.
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT format('big-%s', c), 'B', 'Big' FROM generate_series(1, 200) c;
         INSERT INTO market (coin_id, ts, price_usd)
         SELECT format('big-%s', c), timestamptz '2020-01-01' + h * interval '1 hour', 1
         FROM generate_series(1, 200) c, generate_series(1, 1000) h;
         ANALYZE market;",
    )
    .unwrap();
    let codec = CursorCodec::new(b"x");
    let _ = codec;
    let day = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let market_cases = [
        Filters::default(),
        Filters {
            coin: Some("big-50".into()),
            ..Filters::default()
        },
        Filters {
            coin: Some("big-50".into()),
            from: Some(day("2020-01-10T00:00:00Z")),
            to: Some(day("2020-01-20T00:00:00Z")),
            run: None,
        },
    ];
    let after = vec![
        "big-50".to_string(),
        "2020-01-12T00:00:00.000000Z".to_string(),
    ];
    for filters in &market_cases {
        // A continuation: the verdict on the cursor rides along.
        let st = statements(
            Source::Served(Served::Market),
            filters,
            Some(&after),
            100,
            Some(0),
        )
        .unwrap();
        {
            let st = &st.rows;
            assert!(!st.sql.to_uppercase().contains("OFFSET"), "{}", st.sql);
            let plan = explain(&mut conn, st).unwrap().join("\n");
            assert!(
                plan.contains("Index Scan using market_pkey")
                    || plan.contains("Index Only Scan using market_pkey"),
                "{filters:?}\n{plan}"
            );
            assert!(!plan.contains("Seq Scan on market"), "{plan}");
            assert!(!plan.contains("Sort"), "the index gives the order:\n{plan}");
        }
    }

    // Every dataset's statements can run on an index in key order (the fixture's small
    // tables would otherwise be read sequentially, which is right for them).
    conn.batch_execute(
        "SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off;",
    )
    .unwrap();
    let cases: Vec<(Served, Filters, Vec<&str>)> = vec![
        (
            Served::Daily,
            Filters::default(),
            vec!["coin-001", "2024-01-03"],
        ),
        (
            Served::Daily,
            Filters {
                coin: Some("coin-002".into()),
                ..Filters::default()
            },
            vec!["coin-002", "2024-01-03"],
        ),
        (Served::Coins, Filters::default(), vec!["coin-010"]),
        (Served::CoinExchanges, Filters::default(), vec!["coin-010"]),
        (Served::Traders, Filters::default(), vec!["17"]),
        (
            Served::Positions,
            Filters::default(),
            vec!["17", "coin-003"],
        ),
        (
            Served::Positions,
            Filters {
                coin: Some("coin-005".into()),
                ..Filters::default()
            },
            vec!["17", "coin-005"],
        ),
        (
            Served::Rejects,
            Filters::default(),
            vec!["1", "data/a.csv", "10"],
        ),
        (
            Served::Rejects,
            Filters {
                run: Some(1),
                ..Filters::default()
            },
            vec!["1", "data/a.csv", "10"],
        ),
    ];
    for (served, filters, after) in cases {
        let after: Vec<String> = after.into_iter().map(String::from).collect();
        let st = statements(Source::Served(served), &filters, Some(&after), 50, Some(0)).unwrap();
        {
            let st = &st.rows;
            assert!(!st.sql.to_uppercase().contains("OFFSET"), "{}", st.sql);
            let plan = explain(&mut conn, st).unwrap().join("\n");
            assert!(
                plan.contains("Index Scan") || plan.contains("Index Only Scan"),
                "{served:?} {filters:?}\n{plan}"
            );
            assert!(
                plan.contains("Index Cond"),
                "a range on the index, not a filter:\n{plan}"
            );
            assert!(!plan.contains("Sort"), "{served:?} {filters:?}\n{plan}");
        }
    }
}

#[test]
fn a_cursor_from_an_older_data_version_is_a_409_and_other_datasets_keep_going() {
    let app = App::new();
    let market = app.get("/read/first-chunk?size=5").json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let daily = app.get("/read/daily?size=5").json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    // An ETL run that changed nothing bumps nothing: cursors keep working.
    assert_eq!(
        app.get(&format!("/read/next-chunk?cursor={market}"))
            .status
            .code,
        200
    );

    app.exec("UPDATE data_versions SET version = version + 1 WHERE dataset = 'market'");

    let p = app
        .get(&format!("/read/next-chunk?cursor={market}"))
        .assert_problem(409);
    assert!(p["detail"].as_str().unwrap().contains("changed"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("first chunk"), "{p}");
    app.get(&format!("/read/market?cursor={market}"))
        .assert_problem(409);
    let daily_next = app.get(&format!("/read/next-chunk?cursor={daily}"));
    assert_eq!(daily_next.status.code, 200, "{}", daily_next.body);
    let fresh = app.get("/read/first-chunk?size=5").json();
    assert_eq!(fresh["version"], 2);
    let again = fresh["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&format!("/read/next-chunk?cursor={again}"))
            .status
            .code,
        200
    );
}

#[test]
fn tampered_foreign_and_garbage_cursors_are_400() {
    let app = App::new();
    let cursor = app.get("/read/first-chunk?size=2").json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let forged = CursorCodec::new(b"someone else's key").encode(&Cursor {
        dataset: "market".into(),
        version: 1,
        size: 2,
        filters: Default::default(),
        after: vec!["coin-001".into(), "2024-03-01T01:00:00.000000Z".into()],
    });
    for bad in [
        format!("{}.{tag}", flip(payload, 5)),
        format!("{payload}.{}", flip(tag, 3)),
        forged,
        "not-a-cursor".to_string(),
        "a.b".to_string(),
        "%F0%9F%A6%80".to_string(),
        "x".repeat(5000),
    ] {
        let p = app
            .get(&format!("/read/next-chunk?cursor={bad}"))
            .assert_problem(400);
        assert!(p["detail"].as_str().unwrap().contains("cursor"), "{p}");
    }
    app.get("/read/next-chunk").assert_problem(400);
    app.get("/read/next-chunk?cursor=").assert_problem(400);
    // A market cursor on another dataset's path.
    app.get(&format!("/read/daily?cursor={cursor}"))
        .assert_problem(400);
    // The cursor fixes size and filters.
    app.get(&format!("/read/market?cursor={cursor}&size=3"))
        .assert_problem(400);
    app.get(&format!("/read/market?cursor={cursor}&coin=coin-002"))
        .assert_problem(400);
    assert_eq!(
        app.get(&format!("/read/market?cursor={cursor}&size=2"))
            .status
            .code,
        200
    );
}

#[test]
fn bad_sizes_and_bad_parameters_are_400_problems() {
    let app = App::new();
    for size in [
        "0",
        "-1",
        "10001",
        "abc",
        "1.5",
        "",
        "1e3",
        "99999999999999999999",
    ] {
        let p = app
            .get(&format!("/read/first-chunk?size={size}"))
            .assert_problem(400);
        assert!(p["detail"].as_str().unwrap().contains("size"), "{p}");
        app.get(&format!("/read/coins?size={size}"))
            .assert_problem(400);
    }
    let max = app.get("/read/market?size=10000");
    assert_eq!(max.status.code, 200);
    assert_eq!(max.json()["data"].as_array().unwrap().len(), 3000);
    assert_eq!(max.json()["has_more"], false);

    for uri in [
        "/read/first-chunk?colour=red",
        "/read/market?size=5&size=6",
        "/read/traders?coin=coin-001",
        "/read/coins?from=2024-01-01",
        "/read/market?run=1",
        "/read/rejects?run=abc",
        "/read/market?from=yesterday",
        "/read/market?from=2024-03-05&to=2024-03-01",
        "/read/market?coin=",
        "/read/first-chunk?dataset=nope",
        "/read/first-chunk?format=xml",
        "/read/next-chunk?cursor=x&coin=y",
        "/?x=1",
    ] {
        app.get(uri).assert_problem(400);
    }
    let p = app.get("/read/nope").assert_problem(404);
    assert!(
        p["detail"].as_str().unwrap().contains("market"),
        "lists the datasets: {p}"
    );
}

#[test]
fn csv_and_ndjson_carry_the_same_rows_as_json() {
    let app = App::new();
    let json = app.get("/read/coins?size=200").json();
    let ids: Vec<String> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| text(&r["id"]))
        .collect();
    assert_eq!(ids.len(), 150);

    for csv in [
        app.get("/read/coins?size=200&format=csv"),
        app.get_with("/read/coins?size=200", "Accept", "text/csv"),
    ] {
        assert_eq!(csv.status.code, 200);
        assert!(
            csv.header("Content-Type").unwrap().starts_with("text/csv"),
            "{:?}",
            csv.headers
        );
        assert!(
            csv.body.starts_with("id,symbol,name,cmc_id\r\n"),
            "{}",
            &csv.body[..60]
        );
        assert!(csv.body.ends_with("\r\n"));
        let lines: Vec<&str> = csv.body.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 151);
        assert_eq!(lines[1], "coin-001,C001,Coin 1,1001");
        assert_eq!(
            lines[3], "coin-003,C003,Coin 3,",
            "missing values are empty fields"
        );
        assert_eq!(
            lines[150], "quote-coin,\"Q,T\",\"Quote \"\"the\"\" coin, ltd\",7",
            "RFC 4180 quoting"
        );
        let csv_ids: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(csv_ids, ids);
    }

    for nd in [
        app.get("/read/coins?size=200&format=ndjson"),
        app.get_with("/read/coins?size=200", "Accept", "application/x-ndjson"),
        app.get_with(
            "/read/coins?size=200",
            "Accept",
            "text/html;q=0.9, application/x-ndjson",
        ),
    ] {
        assert_eq!(nd.status.code, 200);
        assert_eq!(nd.header("Content-Type"), Some("application/x-ndjson"));
        let rows: Vec<Value> = nd
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows, json["data"].as_array().unwrap().clone());
    }
    // format= beats Accept.
    let forced = app.get_with("/read/coins?size=3&format=json", "Accept", "text/csv");
    assert!(forced
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));

    // A multi-line field survives a CSV round trip.
    let rejects = app.get("/read/rejects?run=2&size=2&format=csv");
    assert!(
        rejects.body.contains("\"x,y,\"\"multi\nline\"\",1\""),
        "{}",
        rejects.body
    );
    assert!(
        rejects.header("Link").unwrap().contains("format=csv"),
        "the next link keeps the format"
    );

    // Arrays in CSV are one ;-separated field.
    let ex = app.get("/read/coin_exchanges?size=1&format=csv");
    let line = ex.body.split("\r\n").nth(1).unwrap().to_string();
    let want = app.texts("SELECT coin_id || ',' || array_to_string(exchanges, ';') || ',' || exchange_count AS t FROM coin_exchanges ORDER BY coin_id LIMIT 1");
    assert_eq!(line, want[0]);
}

#[test]
fn etags_answer_if_none_match_with_304_until_the_data_changes() {
    let app = App::new();
    let first = app.get("/read/first-chunk");
    let etag = first.header("ETag").expect("an ETag").to_string();
    let again = app.get_with("/read/first-chunk", "If-None-Match", &etag);
    assert_eq!(again.status.code, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("ETag"), Some(etag.as_str()));
    assert_eq!(
        app.get_with("/read/first-chunk?size=11", "If-None-Match", &etag)
            .status
            .code,
        200
    );
    assert_eq!(
        app.get_with("/read/first-chunk?format=csv", "If-None-Match", &etag)
            .status
            .code,
        200
    );
    assert_eq!(
        app.get_with(
            "/read/first-chunk",
            "If-None-Match",
            &format!("\"nope\", W/{etag}")
        )
        .status
        .code,
        304
    );

    app.exec("UPDATE data_versions SET version = 5 WHERE dataset = 'market'");
    let changed = app.get_with("/read/first-chunk", "If-None-Match", &etag);
    assert_eq!(changed.status.code, 200);
    assert_ne!(changed.header("ETag"), Some(etag.as_str()));
    assert_eq!(changed.header("X-Data-Version"), Some("5"));
}

/// `(rows, loops)` of the first plan line that reads `what` (EXPLAIN ANALYZE text).
fn actual(plan: &[String], what: &str) -> Option<(u64, u64)> {
    let line = plan.iter().find(|l| l.contains(what))?;
    let after = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((after("rows=")?, after("loops=")?))
}

#[test]
fn a_deep_market_chunk_reads_coins_from_the_cursor_not_from_the_first_coin() {
    let app = App::new();
    let mut conn = app.conn();
    // 3 000 coins of 40 rows: a cursor in coin 2 900 is deep in both tables.
    conn.batch_execute(
        "INSERT INTO coins (id, symbol, name) SELECT format('deep-%s', lpad(c::text, 4, '0')), 'D', 'Deep' FROM generate_series(1, 3000) c;
         INSERT INTO market (coin_id, ts, price_usd)
         SELECT format('deep-%s', lpad(c::text, 4, '0')), timestamptz '2020-01-01' + h * interval '1 hour', 1
         FROM generate_series(1, 3000) c, generate_series(1, 40) h;
         ANALYZE market; ANALYZE coins;",
    )
    .unwrap();
    let after = vec![
        "deep-2900".to_string(),
        "2020-01-02T10:00:00.000000Z".to_string(),
    ];
    for size in [10u32, 100, 1000] {
        let st = statements(
            Source::Served(Served::Market),
            &Filters::default(),
            Some(&after),
            size,
            None,
        )
        .unwrap();
        let plan = explain_with(&mut conn, &st.rows, "ANALYZE, TIMING OFF, COSTS OFF").unwrap();
        let text = plan.join("\n");
        assert!(!text.contains("Seq Scan on market"), "{text}");
        assert!(!text.contains("Seq Scan on coins"), "{text}");
        assert!(!text.contains("Sort"), "the index gives the order:\n{text}");
        assert!(
            text.contains("Index Scan using market_pkey")
                && text.contains("Index Cond: (ROW(coin_id, ts) > ROW("),
            "a range scan of market from the cursor:\n{text}"
        );
        // The coin side reads the chunk's few coins, not the 2 900 before the cursor.
        let coin_rows = plan
            .iter()
            .filter(|l| l.contains("on coins c"))
            .map(|l| actual(std::slice::from_ref(l), "on coins c").unwrap_or((u64::MAX, 1)))
            .map(|(rows, loops)| rows.saturating_mul(loops))
            .sum::<u64>();
        let coins_in_chunk = u64::from(size) / 40 + 2;
        assert!(
            coin_rows <= coins_in_chunk,
            "{coin_rows} coin rows read for a chunk spanning at most {coins_in_chunk} coins:\n{text}"
        );
        let (market_rows, _) = actual(&plan, "on market t").unwrap();
        assert!(market_rows <= u64::from(size) + 1, "{text}");
    }

    // And the API serves that chunk: the rows right after the cursor, with coin names.
    let codec = CursorCodec::new(b"test secret");
    let version =
        app.texts("SELECT version::text AS t FROM data_versions WHERE dataset = 'market'");
    let token = codec.encode(&Cursor {
        dataset: "market".into(),
        version: version[0].parse().unwrap(),
        size: 5,
        filters: Default::default(),
        after: after.clone(),
    });
    let body = app.get(&format!("/read/next-chunk?cursor={token}")).json();
    let keys: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", text(&r["coin_id"]), text(&r["ts"])))
        .collect();
    assert_eq!(
        keys,
        [
            "deep-2900 2020-01-02T11:00:00Z",
            "deep-2900 2020-01-02T12:00:00Z",
            "deep-2900 2020-01-02T13:00:00Z",
            "deep-2900 2020-01-02T14:00:00Z",
            "deep-2900 2020-01-02T15:00:00Z",
        ]
    );
    assert_eq!(body["data"][0]["name"], "Deep");
}

#[test]
fn a_large_chunk_streams_in_pieces_and_a_small_one_goes_out_whole() {
    let db = coinflow_shared::testdb::TestDb::new();
    common::fill(&mut db.conn());
    let mut config = coinflow_api::ApiConfig::new(db.url());
    config.cursor_secret = Some(b"stream".to_vec());
    let port = common::serve(config);

    // More market rows than one chunk of 10 000: as NDJSON about 2 MB, far more than
    // one piece.
    db.conn()
        .batch_execute(
            "INSERT INTO market (coin_id, ts, price_usd)
             SELECT 'coin-001', timestamptz '2030-01-01' + h * interval '1 minute', 1
             FROM generate_series(1, 10000) h",
        )
        .unwrap();
    let (status, head, body) = common::http(
        port,
        "GET",
        "/read/market?size=10000&format=ndjson",
        None,
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let head = head.to_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("link: </read/market?cursor="), "{head}");
    let keys: Vec<String> = body
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            format!("{}|{}", text(&row["coin_id"]), text(&row["ts"]))
        })
        .collect();
    assert_eq!(keys.len(), 10_000);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order");

    let (status, head, body) =
        common::http(port, "GET", "/read/market?size=100&format=csv", None, b"");
    assert_eq!(status, 200, "{body}");
    let head = head.to_lowercase();
    assert!(head.contains("content-length:"), "{head}");
    assert_eq!(body.lines().count(), 101, "header and 100 rows");
}
