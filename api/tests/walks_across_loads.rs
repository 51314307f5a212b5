//! Cursor walks across ETL loads (issue 13): a continuation is refused with 409 only
//! when a load since the cursor was issued updated or deleted a row at or before the
//! cursor's position; rows inserted since appear ahead of it and are missed behind it.
//! The warehouse is loaded by the real ETL, which records what each version changed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::testdb::TestDb;
use common::{App, Reply};
use serde_json::Value;
use std::collections::HashSet;

const COINS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];

/// A listings file of every coin at the given hours of 2024-01-01, as a live markets
/// fetch writes one: price, rank, cap and volume per coin.
fn listing(hours: std::ops::Range<u32>) -> String {
    let mut out = String::from("id,symbol,name,rank,price,market_cap,volume_24h,timestamp\n");
    for hour in hours {
        for (i, id) in COINS.iter().enumerate() {
            out.push_str(&format!(
                "{id},{},{id} coin,{},{}.5,1000000,5000,2024-01-01T{hour:02}:00:00Z\n",
                id.to_uppercase(),
                i + 1,
                10 * (i + 1) + hour as usize
            ));
        }
    }
    out
}

/// A warehouse the ETL loaded (every coin at hours 0..10), the API on it, and the
/// directory later loads add files to.
struct Live {
    app: App,
    dir: tempfile::TempDir,
    opts: coinflow_etl::RunOptions,
}

impl Live {
    fn new() -> Live {
        let db = TestDb::new();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = coinflow_etl::RunOptions::new(db.url(), dir.path());
        opts.db_wait = std::time::Duration::from_secs(5);
        let live = Live {
            app: App::on(db, |_| {}),
            dir,
            opts,
        };
        live.load("listings-0.csv", &listing(0..10));
        live
    }

    /// Adds a file and runs the ETL on the directory.
    fn load(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).unwrap();
        let report = coinflow_etl::run(&self.opts).expect("the load runs");
        assert_eq!(report.status, "ok", "{report:?}");
    }

    /// Loads a markets file that sets the price of one stored snapshot.
    fn set_price(&self, coin: &str, hour: u32, price: f64) {
        self.load(
            "fix.csv",
            &format!("coin_id,timestamp,price\n{coin},2024-01-01T{hour:02}:00:00Z,{price}\n"),
        );
    }

    fn market_version(&self) -> i64 {
        self.app
            .texts("SELECT version::text AS t FROM data_versions WHERE dataset = 'market'")[0]
            .parse()
            .unwrap()
    }
}

/// `coin|ts` of a market row.
fn key(row: &Value) -> String {
    format!(
        "{}|{}",
        row["coin_id"].as_str().unwrap(),
        row["ts"].as_str().unwrap()
    )
}

/// The row of `rows` with key `k`.
fn row<'a>(rows: &'a [Value], k: &str) -> &'a Value {
    rows.iter()
        .find(|r| key(r) == k)
        .unwrap_or_else(|| panic!("{k} not read"))
}

/// One chunk: its rows and next cursor; asserts a 200.
fn chunk(app: &App, uri: &str) -> (Vec<Value>, Option<String>, i64) {
    let reply = app.get(uri);
    assert_eq!(reply.status.code, 200, "{uri}: {}", reply.body);
    let body = reply.json();
    (
        body["data"].as_array().unwrap().clone(),
        body["next_cursor"].as_str().map(str::to_string),
        body["version"].as_i64().unwrap(),
    )
}

fn next(cursor: &str) -> String {
    format!("/read/next-chunk?cursor={cursor}")
}

/// Starts a walk of market in chunks of 7 and takes three: the position is then in
/// charlie, behind delta, echo and foxtrot. Returns the rows read and the cursor.
fn walk_into_charlie(app: &App) -> (Vec<Value>, String) {
    let (mut rows, mut cursor, _) = chunk(app, "/read/market?size=7");
    for _ in 0..2 {
        let (more, c, _) = chunk(app, &next(cursor.as_deref().unwrap()));
        rows.extend(more);
        cursor = c;
    }
    assert_eq!(key(rows.last().unwrap()), "charlie|2024-01-01T00:00:00Z");
    (rows, cursor.unwrap())
}

/// Follows `cursor` to the end, asserting a 200 each time; the rows and the versions the
/// chunks carried.
fn walk_on(app: &App, cursor: String) -> (Vec<Value>, Vec<i64>) {
    let (mut rows, mut versions) = (Vec::new(), Vec::new());
    let mut cursor = Some(cursor);
    while let Some(c) = cursor {
        let (more, next_cursor, version) = chunk(app, &next(&c));
        rows.extend(more);
        versions.push(version);
        cursor = next_cursor;
        assert!(versions.len() < 100, "runaway walk");
    }
    (rows, versions)
}

fn stale(reply: &Reply) -> String {
    let p = reply.assert_problem(409);
    assert_eq!(p["type"], "/problems/stale-cursor");
    p["detail"].as_str().unwrap().to_string()
}

#[test]
fn a_walk_of_market_goes_on_across_live_appends_and_sees_the_rows_ahead_of_it() {
    let live = Live::new();
    let app = &live.app;
    let (read, cursor) = walk_into_charlie(app);
    let issued = live.market_version();

    // A live fetch appends a snapshot of every coin (the run ranks them too), twice.
    live.load("listings-1.csv", &listing(10..11));
    let (mut more, cursor, version) = chunk(app, &next(&cursor));
    assert!(
        version > issued,
        "the load bumped market: {version} > {issued}"
    );
    live.load("listings-2.csv", &listing(11..12));
    let (rest, versions) = walk_on(app, cursor.unwrap());
    more.extend(rest);
    assert!(
        versions.iter().all(|v| *v > version),
        "later chunks carry the version they were read at: {versions:?}"
    );

    let walked: Vec<String> = read.iter().chain(&more).map(key).collect();
    let unique: HashSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "no row twice");
    // Every row ahead of the position as it is now, appended ones included; the rows
    // appended behind it (alpha, bravo and charlie's first snapshots) are missed.
    let ahead = app.texts(
        "SELECT coin_id || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS t \
         FROM market WHERE (coin_id, ts) > ('charlie', '2024-01-01T00:00:00Z') ORDER BY coin_id, ts",
    );
    let after_position: Vec<String> = more.iter().map(key).collect();
    assert_eq!(after_position, ahead);
    for appended in ["delta|2024-01-01T10:00:00Z", "foxtrot|2024-01-01T11:00:00Z"] {
        assert!(walked.contains(&appended.to_string()), "{appended}");
    }
    assert!(walked.contains(&"charlie|2024-01-01T11:00:00Z".to_string()));
    assert!(!walked.contains(&"alpha|2024-01-01T10:00:00Z".to_string()));
    // The appended rows were ranked by their run: the walk reads them ranked.
    assert_eq!(row(&more, "delta|2024-01-01T11:00:00Z")["rank"], 4);
}

#[test]
fn an_update_behind_the_position_is_a_409_that_states_the_rule() {
    let live = Live::new();
    let (_, cursor) = walk_into_charlie(&live.app);
    live.set_price("bravo", 3, 123.0);
    let detail = stale(&live.app.get(&next(&cursor)));
    for words in [
        "changed since this cursor was issued",
        "updated or deleted rows at or before the cursor's position",
        "Start again from the first chunk",
        "rows merely inserted since appear in the walk when they lie ahead of the position",
    ] {
        assert!(detail.contains(words), "{words:?} not in {detail}");
    }
    // A new walk goes through.
    let (rows, _) = walk_on(
        &live.app,
        chunk(&live.app, "/read/market?size=25").1.unwrap(),
    );
    assert_eq!(rows.len(), 60 - 25);
}

#[test]
fn an_update_ahead_of_the_position_is_read_as_it_is_now() {
    let live = Live::new();
    let (read, cursor) = walk_into_charlie(&live.app);
    live.set_price("foxtrot", 5, 4242.0);
    let (rest, _) = walk_on(&live.app, cursor);
    assert_eq!(read.len() + rest.len(), 60);
    assert_eq!(
        row(&rest, "foxtrot|2024-01-01T05:00:00Z")["price_usd"],
        4242.0
    );
}

#[test]
fn a_version_without_a_record_of_its_changes_is_a_409() {
    let live = Live::new();
    let app = &live.app;
    let (_, cursor) = walk_into_charlie(app);
    let issued = live.market_version();
    // A bump the way an earlier release made it: no record of what it changed. A later
    // recorded append does not make up for it.
    app.exec("UPDATE data_versions SET version = version + 1 WHERE dataset = 'market'");
    live.load("listings-1.csv", &listing(10..11));
    let detail = stale(&app.get(&next(&cursor)));
    assert!(
        detail.contains("has no record of what it changed"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("data version {issued}")),
        "{detail}"
    );

    // A cursor from a version the warehouse has not reached (a restored database).
    let codec = CursorCodec::new(b"test secret");
    let ahead = codec.encode(&Cursor {
        dataset: "market".into(),
        version: live.market_version() + 3,
        size: 7,
        filters: Default::default(),
        after: vec!["charlie".into(), "2024-01-01T00:00:00.000000Z".into()],
    });
    stale(&app.get(&next(&ahead)));

    // Walks started after the unrecorded bump go on across recorded appends.
    let (_, cursor, _) = chunk(app, "/read/market?size=20");
    live.load("listings-2.csv", &listing(11..12));
    let (rest, _) = walk_on(app, cursor.unwrap());
    assert!(rest
        .iter()
        .any(|r| key(r) == "foxtrot|2024-01-01T11:00:00Z"));
}
