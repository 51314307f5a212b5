//! Coin tasks: POST /runtasks and POST /coins with JSON and CSV bodies, the accept /
//! duplicate / invalid decision (also under 50 concurrent senders), the output files,
//! GET /coins and /exchanges/stats.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{http, serve, App};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

fn exchanges_of(app: &App, coin: &str) -> Vec<String> {
    app.texts(&format!(
        "SELECT e AS t FROM coin_exchanges, unnest(exchanges) AS e WHERE coin_id = '{coin}' ORDER BY e"
    ))
}

fn accepted_ids(body: &Value) -> Vec<String> {
    body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_json_task_accepts_new_coins_and_names_duplicates_and_invalid_ids() {
    let app = App::new();
    let reply = app.post(
        "/runtasks",
        "application/json",
        json!({"coins": ["coin-001", "coin-130", "nope", "coin-001", "coin-002"]}).to_string(),
    );
    assert_eq!(reply.status.code, 200, "{}", reply.body);
    let body = reply.json();
    let run = body["task_run"].as_i64().unwrap();
    assert_eq!(accepted_ids(&body), ["coin-001", "coin-130", "coin-002"]);
    assert_eq!(
        body["accepted"][0]["exchanges"],
        json!(exchanges_of(&app, "coin-001"))
    );
    assert!(!exchanges_of(&app, "coin-001").is_empty());
    assert_eq!(
        body["accepted"][1]["exchanges"],
        json!([]),
        "a coin on no exchange"
    );
    assert_eq!(
        body["duplicates"],
        json!([{"id": "coin-001", "first_task_run": run}])
    );
    assert_eq!(body["invalid"], json!(["nope"]));

    let stored = app.texts("SELECT coin_id || ':' || task_run || ':' || array_to_string(exchanges, ';') AS t FROM task_results ORDER BY coin_id");
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored[0],
        format!(
            "coin-001:{run}:{}",
            exchanges_of(&app, "coin-001").join(";")
        )
    );
    assert_eq!(
        stored[1],
        format!(
            "coin-002:{run}:{}",
            exchanges_of(&app, "coin-002").join(";")
        )
    );

    // The alias, a CSV body with a charset, CRLF and no trailing newline.
    let second = app.post(
        "/coins",
        "text/csv; charset=utf-8",
        "coins\r\ncoin-002\r\ncoin-003\r\nquote-coin",
    );
    assert_eq!(second.status.code, 200, "{}", second.body);
    let second = second.json();
    let run2 = second["task_run"].as_i64().unwrap();
    assert!(run2 > run);
    assert_eq!(accepted_ids(&second), ["coin-003", "quote-coin"]);
    assert_eq!(
        second["duplicates"],
        json!([{"id": "coin-002", "first_task_run": run}])
    );
    assert_eq!(second["invalid"], json!([]));

    // LF with a trailing newline, a BOM, quotes, and an empty task.
    let third = app.post(
        "/runtasks",
        "text/csv;charset=UTF-8",
        "\u{feff}coins\n\"coin-004\"\ncoin-003\n",
    );
    let third = third.json();
    assert_eq!(accepted_ids(&third), ["coin-004"]);
    assert_eq!(
        third["duplicates"],
        json!([{"id": "coin-003", "first_task_run": run2}])
    );
    let empty = app.post("/runtasks", "text/csv", "coins\n").json();
    assert_eq!(empty["accepted"], json!([]));
    assert!(
        empty["task_run"].as_i64().unwrap() > third["task_run"].as_i64().unwrap(),
        "each request takes a run"
    );
}

#[test]
fn bad_task_requests_get_the_right_problem() {
    let app = App::new();
    let many =
        json!({"coins": (0..10_001).map(|i| format!("c{i}")).collect::<Vec<_>>()}).to_string();
    let huge = format!("{{\"coins\": [\"{}\"]}}", "x".repeat(3 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("text/plain", b"bitcoin".to_vec(), 415),
        ("application/xml", b"<coins/>".to_vec(), 415),
        ("text/csv; charset=latin1", b"coins\nbitcoin".to_vec(), 415),
        ("application/json", b"{\"coins\": [".to_vec(), 400),
        ("application/json", b"not json".to_vec(), 400),
        ("application/json", b"".to_vec(), 400),
        ("application/json", b"{\"coins\": 5}".to_vec(), 422),
        (
            "application/json",
            b"{\"ids\": [\"coin-001\"]}".to_vec(),
            422,
        ),
        ("application/json", b"{\"coins\": [1, 2]}".to_vec(), 422),
        (
            "application/json",
            b"{\"coins\": [\"a\"], \"extra\": 1}".to_vec(),
            422,
        ),
        ("text/csv", b"".to_vec(), 400),
        ("text/csv", b"name\ncoin-001\n".to_vec(), 400),
        ("text/csv", b"coins\ncoin-001,coin-002\n".to_vec(), 400),
        ("text/csv", b"coins\n\xff\xfe\n".to_vec(), 400),
        ("application/json", many.into_bytes(), 413),
        ("application/json", huge.into_bytes(), 413),
    ];
    for (ct, body, status) in cases {
        let reply = app.post("/runtasks", ct, &body);
        reply.assert_problem(status);
    }
    let no_type = common::Reply::from(
        app.client
            .post("/runtasks")
            .body("{\"coins\":[]}")
            .dispatch(),
    );
    no_type.assert_problem(415);
    app.post("/runtasks?verbose=1", "application/json", "{\"coins\":[]}")
        .assert_problem(400);
    assert_eq!(
        app.texts("SELECT coin_id AS t FROM task_results"),
        Vec::<String>::new(),
        "nothing stored"
    );
}

#[test]
fn a_write_token_guards_posts_but_not_reads() {
    let app = App::with(|c| c.write_token = Some("s3cret".into()));
    let body = "{\"coins\":[\"coin-001\"]}";
    let none = app.post("/runtasks", "application/json", body);
    none.assert_problem(401);
    assert_eq!(none.header("WWW-Authenticate"), Some("Bearer"));
    let wrong = common::Reply::from(
        app.client
            .post("/coins")
            .header(rocket::http::ContentType::JSON)
            .header(rocket::http::Header::new("Authorization", "Bearer nope"))
            .body(body)
            .dispatch(),
    );
    wrong.assert_problem(401);
    let right = common::Reply::from(
        app.client
            .post("/runtasks")
            .header(rocket::http::ContentType::JSON)
            .header(rocket::http::Header::new("Authorization", "Bearer s3cret"))
            .body(body)
            .dispatch(),
    );
    assert_eq!(right.status.code, 200, "{}", right.body);
    assert_eq!(app.get("/coins").status.code, 200);
}

#[test]
fn accepted_records_are_written_atomically_to_the_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = App::with(|c| c.task_output_dir = Some(path));
    let body = app
        .post(
            "/runtasks",
            "application/json",
            "{\"coins\":[\"coin-001\",\"coin-121\",\"x\"]}",
        )
        .json();
    let run = body["task_run"].as_i64().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 1, "one file, no temporary left: {names:?}");
    let name = &names[0];
    assert!(
        name.starts_with("output_file_") && name.ends_with(&format!("_{run}.json")),
        "{name}"
    );
    let stamp = &name["output_file_".len()..name.len() - format!("_{run}.json").len()];
    assert!(
        stamp.ends_with('Z') && stamp.contains('T'),
        "a UTC timestamp: {stamp}"
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap();
    assert_eq!(
        written,
        json!([
            {"id": "coin-001", "exchanges": exchanges_of(&app, "coin-001"), "taskRun": run},
            {"id": "coin-121", "exchanges": [], "taskRun": run},
        ])
    );
}

#[test]
fn get_coins_lists_results_in_task_order_in_chunks() {
    let app = App::new();
    let mut expected = Vec::new();
    for batch in [
        vec!["coin-050", "coin-010", "coin-030"],
        vec!["coin-010", "coin-005", "coin-099", "nope"],
        vec!["coin-001"],
        vec!["coin-070", "coin-060", "coin-080", "coin-090", "coin-100"],
    ] {
        let body = app
            .post(
                "/runtasks",
                "application/json",
                json!({ "coins": batch }).to_string(),
            )
            .json();
        let run = body["task_run"].as_i64().unwrap();
        let mut ids = accepted_ids(&body);
        ids.sort();
        expected.extend(ids.into_iter().map(|id| format!("{run}|{id}")));
    }
    let first = app.get("/coins?size=2");
    let etag = first.header("ETag").unwrap().to_string();
    let mut body = first.json();
    let mut got = Vec::new();
    let mut chunks = 1;
    loop {
        assert_eq!(
            body.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<HashSet<_>>(),
            ["coins", "next_cursor", "has_more"]
                .iter()
                .map(|s| s.to_string())
                .collect::<HashSet<_>>()
        );
        for c in body["coins"].as_array().unwrap() {
            assert_eq!(
                c["exchanges"],
                json!(exchanges_of(&app, c["id"].as_str().unwrap()))
            );
            got.push(format!("{}|{}", c["taskRun"], c["id"].as_str().unwrap()));
        }
        if body["has_more"] == false {
            assert!(body["next_cursor"].is_null());
            break;
        }
        let cursor = body["next_cursor"].as_str().unwrap().to_string();
        body = app.get(&format!("/coins?size=2&cursor={cursor}")).json();
        chunks += 1;
    }
    assert_eq!(got, expected);
    assert_eq!(chunks, expected.len().div_ceil(2));

    assert_eq!(
        app.get_with("/coins?size=2", "If-None-Match", &etag)
            .status
            .code,
        304
    );
    app.post(
        "/runtasks",
        "application/json",
        "{\"coins\":[\"coin-002\"]}",
    );
    assert_eq!(
        app.get_with("/coins?size=2", "If-None-Match", &etag)
            .status
            .code,
        200,
        "a new result changes the ETag"
    );

    let csv = app.get("/coins?size=3&format=csv");
    assert!(
        csv.body.starts_with("id,exchanges,taskRun\r\n"),
        "{}",
        csv.body
    );
    app.get("/coins?size=0").assert_problem(400);
    app.get("/coins?coin=coin-001").assert_problem(400);
    let market_cursor = app.get("/read/market?size=1").json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    app.get(&format!("/coins?cursor={market_cursor}"))
        .assert_problem(400);
}

#[test]
fn exchange_stats_are_computed_from_the_task_results_at_request_time() {
    let app = App::new();
    let empty = app.get("/exchanges/stats").json();
    assert_eq!(empty, json!({"data": []}));
    for batch in [
        vec!["coin-001", "coin-002"],
        vec!["coin-003"],
        vec!["coin-004", "coin-005", "coin-001"],
    ] {
        app.post(
            "/runtasks",
            "application/json",
            json!({ "coins": batch }).to_string(),
        );
    }
    // The same statistics, by hand.
    let runs: HashMap<String, i64> = app
        .texts("SELECT coin_id || '=' || task_run AS t FROM task_results")
        .into_iter()
        .map(|s| {
            let (c, r) = s.split_once('=').unwrap();
            (c.to_string(), r.parse().unwrap())
        })
        .collect();
    let mut by_exchange: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (coin, run) in &runs {
        for e in exchanges_of(&app, coin) {
            by_exchange.entry(e).or_default().push(*run);
        }
    }
    let median = |v: &mut Vec<i64>| {
        v.sort();
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
        }
    };
    let expected: Vec<Value> = by_exchange
        .iter_mut()
        .map(|(e, runs)| json!({"exchange": e, "coins": runs.len(), "median_task_run": median(runs)}))
        .collect();
    assert!(expected.len() >= 3);
    let got = app.get("/exchanges/stats").json();
    assert_eq!(got["data"], json!(expected));

    let filtered = app.get("/exchanges/stats?contains=KRA").json();
    let names: Vec<&str> = filtered["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["exchange"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kraken"]);
    assert_eq!(
        app.get("/exchanges/stats?contains=zzz").json(),
        json!({"data": []})
    );
    let csv = app.get("/exchanges/stats?format=csv");
    assert!(
        csv.body.starts_with("exchange,coins,median_task_run\r\n"),
        "{}",
        csv.body
    );
    app.get("/exchanges/stats?exchange=kraken")
        .assert_problem(400);
}

#[test]
fn fifty_concurrent_senders_never_accept_a_coin_twice() {
    let app = App::new();
    let mut config = coinflow_api::ApiConfig::new(app.db.url());
    config.cursor_secret = Some(b"x".to_vec());
    let port = serve(config);
    let senders = 50;
    let per_sender = 20;
    let handles: Vec<_> = (0..senders)
        .map(|s| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for r in 0..per_sender {
                    // 4 ids from a pool of 120 coins (heavy overlap), sometimes one invalid.
                    let mut ids: Vec<String> = (0..4)
                        .map(|k| format!("coin-{:03}", (s * 7 + r * 13 + k * 31) % 120 + 1))
                        .collect();
                    if r % 5 == 0 {
                        ids.push(format!("ghost-{s}"));
                    }
                    let body = json!({ "coins": ids }).to_string();
                    let started = std::time::Instant::now();
                    let (status, _, text) = http(
                        port,
                        "POST",
                        "/runtasks",
                        Some("application/json"),
                        body.as_bytes(),
                    );
                    let elapsed = started.elapsed();
                    assert_eq!(status, 200, "{text}");
                    out.push((elapsed, serde_json::from_str::<Value>(&text).unwrap()));
                }
                out
            })
        })
        .collect();
    let results: Vec<(std::time::Duration, Value)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let mut accepted_in: HashMap<String, i64> = HashMap::new();
    let mut runs = HashSet::new();
    for (_, body) in &results {
        let run = body["task_run"].as_i64().unwrap();
        assert!(runs.insert(run), "task run {run} handed out twice");
        for a in body["accepted"].as_array().unwrap() {
            let id = a["id"].as_str().unwrap().to_string();
            assert!(
                accepted_in.insert(id.clone(), run).is_none(),
                "{id} accepted twice"
            );
        }
    }
    for (_, body) in &results {
        for d in body["duplicates"].as_array().unwrap() {
            let id = d["id"].as_str().unwrap();
            assert_eq!(
                Some(&d["first_task_run"].as_i64().unwrap()),
                accepted_in.get(id),
                "{id}"
            );
        }
        for i in body["invalid"].as_array().unwrap() {
            assert!(i.as_str().unwrap().starts_with("ghost-"));
        }
    }
    let stored =
        app.texts("SELECT coin_id || '=' || task_run AS t FROM task_results ORDER BY coin_id");
    assert_eq!(stored.len(), accepted_in.len());
    for s in stored {
        let (coin, run) = s.split_once('=').unwrap();
        assert_eq!(accepted_in.get(coin), Some(&run.parse().unwrap()));
    }

    let mut times: Vec<f64> = results
        .iter()
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        times[((times.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    eprintln!(
        "POST /runtasks, {senders} concurrent senders, {} requests: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        pct(0.50),
        pct(0.99),
        times[times.len() - 1]
    );
    // Timing is reported, not asserted: performance is judged by bench/, not by tests.
}
