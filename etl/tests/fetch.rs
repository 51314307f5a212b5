//! Live sources without the internet: a local HTTP server started by each test answers
//! with responses in the providers' documented shapes; the client runs on a manual
//! clock, so rate limit and backoff are checked on the times the server saw requests
//! arrive (virtual time, no sleeping, no wall-clock assertion).

mod common;
use chrono::{DateTime, Utc};
use coinflow_etl::fetch::client::{ClientConfig, Clock, HttpClient};
use coinflow_etl::fetch::{self, FetchOptions, FetchReport, Target};
use common::*;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Virtual time: `sleep` advances it at once.
struct ManualClock {
    elapsed: Mutex<Duration>,
    start: DateTime<Utc>,
}

impl ManualClock {
    fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            elapsed: Mutex::new(Duration::ZERO),
            start: DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
        })
    }
}

impl Clock for ManualClock {
    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().expect("clock")
    }
    fn sleep(&self, d: Duration) {
        *self.elapsed.lock().expect("clock") += d;
    }
    fn now_utc(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.elapsed()).expect("duration")
    }
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Real time the server stalls before answering (to make the client time out).
    stall: Duration,
}

fn ok(body: &str) -> Reply {
    Reply {
        status: 200,
        headers: Vec::new(),
        body: body.to_string(),
        stall: Duration::ZERO,
    }
}

fn status(code: u16) -> Reply {
    Reply {
        status: code,
        headers: Vec::new(),
        body: format!(r#"{{"error":"status {code}"}}"#),
        stall: Duration::ZERO,
    }
}

/// A request as the server saw it, with the virtual time it arrived at.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    at: Duration,
}

type Routes = Vec<(String, Vec<(String, String)>, VecDeque<Reply>)>;

/// Serves queued replies per (path, query subset); the last reply of a queue repeats.
struct Server {
    base: String,
    routes: Arc<Mutex<Routes>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(clock: Arc<ManualClock>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (r, s, clock) = (r.clone(), s.clone(), clock.clone());
                // One thread per connection: a reply that stalls does not hold up the next.
                std::thread::spawn(move || serve(stream, &r, &s, clock.as_ref()));
            }
        });
        Server { base, routes, seen }
    }

    /// Queues replies for `path` with these query parameters.
    fn route(&self, path: &str, query: &[(&str, &str)], replies: Vec<Reply>) {
        let want = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.routes
            .lock()
            .expect("routes")
            .push((path.to_string(), want, replies.into()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

/// Answers one request: records it, pops the route's next reply, writes it.
fn serve(
    mut stream: std::net::TcpStream,
    r: &Mutex<Routes>,
    s: &Mutex<Vec<Seen>>,
    clock: &ManualClock,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim().split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query: HashMap<String, String> = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.lock().expect("seen").push(Seen {
        path: path.to_string(),
        query: query.clone(),
        headers,
        at: clock.elapsed(),
    });
    let reply = {
        let mut routes = r.lock().expect("routes");
        let route = routes
            .iter_mut()
            .find(|(p, want, _)| p == path && want.iter().all(|(k, v)| query.get(k) == Some(v)));
        match route {
            Some((_, _, queue)) if queue.len() > 1 => queue.pop_front(),
            Some((_, _, queue)) => queue.front().cloned(),
            None => None,
        }
        .unwrap_or_else(|| status(404))
    };
    std::thread::sleep(reply.stall);
    let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply.status,
            reply.body.len()
        );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
}

fn client(server: &Server, clock: Arc<ManualClock>, per_minute: f64) -> HttpClient {
    let mut config = ClientConfig::new("coingecko", &server.base, per_minute);
    config
        .headers
        .push(("x-cg-demo-api-key".into(), "demo-key-123".into()));
    config.max_attempts = 3;
    config.jitter_seed = 7;
    HttpClient::new(config, clock)
}

fn run_fetch(client: &mut HttpClient, dir: &Path, target: Target, per_page: u32) -> FetchReport {
    let opts = FetchOptions {
        per_page: Some(per_page),
        restart: false,
    };
    fetch::fetch(
        client,
        dir,
        &target,
        &opts,
        &indicatif::ProgressBar::hidden(),
    )
    .expect("fetch")
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One `/coins/markets` item as CoinGecko documents it.
fn cg_coin(id: &str, symbol: &str, rank: &str, price: &str) -> String {
    format!(
        r#"{{"id":"{id}","symbol":"{symbol}","name":"{}","image":"https://x/y.png","current_price":{price},"market_cap":1000000,"market_cap_rank":{rank},"fully_diluted_valuation":null,"total_volume":5000,"high_24h":1,"low_24h":1,"price_change_24h":0.1,"circulating_supply":100,"ath":2,"roi":null,"last_updated":"2026-12-06T11:59:30.000Z"}}"#,
        symbol.to_uppercase()
    )
}

/// A fixture (database and data directory), a manual clock and a server on it.
fn setup() -> (Fixture, Arc<ManualClock>, Server) {
    let clock = ManualClock::new();
    let server = Server::start(clock.clone());
    (Fixture::new(), clock, server)
}

const STAMP: &str = "20261206T120000Z";

#[test]
fn markets_walks_every_page_at_the_rate_limit_and_the_load_keeps_every_item() {
    let (fx, clock, server) = setup();
    let page1 = format!(
        "[{},{}]",
        cg_coin("bitcoin", "btc", "1", "43000.5"),
        cg_coin("ethereum", "eth", "2", r#""2,250.25""#)
    );
    // A null price (a reject at load), an extra field nobody documents (ignored).
    let page2 = format!(
        r#"[{},{{"id":"tether","symbol":"usdt","name":"Tether","current_price":1.0,"market_cap_rank":3,"total_volume":9,"market_cap":7,"last_updated":"2026-12-06T11:59:00Z","brand_new_field":{{"x":[1,2]}}}}]"#,
        cg_coin("solana", "sol", "4", "null")
    );
    // The last page is short; its coin has no market-cap rank.
    let page3 = format!("[{}]", cg_coin("tiny-coin", "tiny", "null", "0.0001"));
    for (page, body) in [("1", &page1), ("2", &page2), ("3", &page3)] {
        server.route("/coins/markets", &[("page", page)], vec![ok(body)]);
    }
    let mut client = client(&server, clock.clone(), 30.0);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);

    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.pages, report.items, report.calls), (3, 5, 3));
    let seen = server.seen();
    let pages: Vec<&str> = seen.iter().map(|s| s.query["page"].as_str()).collect();
    assert_eq!(pages, ["1", "2", "3"]);
    // 30 calls a minute: one every 2 s, measured where the server saw them.
    let times: Vec<Duration> = seen.iter().map(|s| s.at).collect();
    assert_eq!(times, [0, 2, 4].map(Duration::from_secs));
    for s in &seen {
        assert_eq!(
            s.headers.get("x-cg-demo-api-key").map(String::as_str),
            Some("demo-key-123")
        );
        assert!(
            s.query.values().all(|v| !v.contains("demo-key")),
            "key in a URL"
        );
        assert_eq!(s.query.get("per_page").map(String::as_str), Some("2"));
        assert_eq!(s.query.get("vs_currency").map(String::as_str), Some("usd"));
    }
    assert_eq!(
        report.files,
        [
            format!("fetched/coingecko/markets-{STAMP}.csv"),
            format!("fetched/coingecko/markets-{STAMP}-unranked-coins.csv"),
            format!("fetched/coingecko/markets-{STAMP}-unranked.csv"),
        ]
    );
    assert_eq!(
        read(fx.path(), &report.files[0]),
        "id,symbol,name,rank,price,market_cap,volume_24h,timestamp,rank_source,fetch_page,fetch_item\n\
         bitcoin,btc,BTC,1,43000.5,1000000,5000,2026-12-06T11:59:30.000Z,coingecko,1,0\n\
         ethereum,eth,ETH,2,\"2,250.25\",1000000,5000,2026-12-06T11:59:30.000Z,coingecko,1,1\n\
         solana,sol,SOL,4,,1000000,5000,2026-12-06T11:59:30.000Z,coingecko,2,0\n\
         tether,usdt,Tether,3,1.0,7,9,2026-12-06T11:59:00Z,coingecko,2,1\n"
    );
    assert_eq!(
        read(fx.path(), &report.files[1]),
        "id,symbol,name,fetch_page,fetch_item\ntiny-coin,tiny,TINY,3,0\n"
    );
    let problems: Vec<(u32, usize, &str)> = report
        .problems
        .iter()
        .map(|p| (p.page, p.item, p.field.as_str()))
        .collect();
    assert_eq!(problems, [(2, 0, "/current_price")]);
    assert!(!fx.path().join("fetched/coingecko/.resume.json").exists());

    // The normal run loads the fetched files; the null price is a reject naming its
    // page and item.
    let loaded = fx.run_with(|o| o.max_reject_ratio = 1.0);
    assert_reconciles(&loaded);
    let listings = file(&loaded, &report.files[0]);
    assert_eq!(
        (
            listings.dataset.as_deref(),
            listings.loaded,
            listings.rejected
        ),
        (Some("listings"), 3, 1)
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 4);
    assert_eq!(
        fx.float("SELECT price_usd FROM market WHERE coin_id = 'ethereum'"),
        Some(2250.25)
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE coin_id = 'tiny-coin' AND rank IS NULL"),
        1
    );
    assert_eq!(fx.count("SELECT count(*) FROM rankings"), 3);
    assert_eq!(
        fx.text("SELECT reason || ' ' || column_name || ' ' || raw_line FROM etl_rejects"),
        Some("missing required value price solana,sol,SOL,4,,1000000,5000,2026-12-06T11:59:30.000Z,coingecko,2,0".into())
    );
}

#[test]
fn an_empty_page_ends_the_walk() {
    let (fx, clock, server) = setup();
    let full = format!(
        "[{},{}]",
        cg_coin("bitcoin", "btc", "1", "1"),
        cg_coin("ethereum", "eth", "2", "1")
    );
    server.route("/coins/markets", &[("page", "1")], vec![ok(&full)]);
    server.route("/coins/markets", &[("page", "2")], vec![ok("[]")]);
    let mut client = client(&server, clock, 600.0);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);
    assert!(report.is_complete());
    assert_eq!((server.seen().len(), report.items), (2, 2));
    assert_eq!(
        report.files.len(),
        1,
        "no unranked coins, no unranked files"
    );
    assert_eq!(read(fx.path(), &report.files[0]).lines().count(), 3);
}

#[test]
fn a_429_waits_as_long_as_retry_after_asks() {
    let (fx, clock, server) = setup();
    let mut limited = status(429);
    limited.headers.push(("Retry-After", "7".into()));
    let body = format!("[{}]", cg_coin("bitcoin", "btc", "1", "1"));
    server.route("/coins/markets", &[("page", "1")], vec![limited, ok(&body)]);
    let mut client = client(&server, clock, 600.0);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);
    assert!(report.is_complete());
    let times: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times, [Duration::ZERO, Duration::from_secs(7)]);
    assert_eq!(report.calls, 2);
}

#[test]
fn a_429_asking_for_too_long_a_wait_fails_the_page_without_waiting() {
    let (fx, clock, server) = setup();
    let mut limited = status(429);
    limited.headers.push(("Retry-After", "86400".into()));
    server.route("/coins/markets", &[("page", "1")], vec![limited]);
    let mut client = client(&server, clock.clone(), 600.0);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].error.contains("86400"),
        "{:?}",
        report.failures
    );
    assert!(clock.elapsed() < Duration::from_secs(60));
}

#[test]
fn server_errors_back_off_exponentially_with_jitter_then_succeed() {
    let (fx, clock, server) = setup();
    let body = format!("[{}]", cg_coin("bitcoin", "btc", "1", "1"));
    server.route(
        "/coins/markets",
        &[("page", "1")],
        vec![status(500), status(503), ok(&body)],
    );
    let mut client = client(&server, clock, 6000.0);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);
    assert!(report.is_complete(), "{report:?}");
    let times: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), 3);
    // Backoff 1 s then 2 s, each with its upper half jittered: [0.5, 1] and [1, 2].
    let first = times[1] - times[0];
    let second = times[2] - times[1];
    assert!(
        (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first),
        "{first:?}"
    );
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second),
        "{second:?}"
    );
    assert_eq!(read(fx.path(), &report.files[0]).lines().count(), 2);
}

#[test]
fn a_timed_out_call_backs_off_and_is_retried() {
    let (fx, clock, server) = setup();
    let body = format!("[{}]", cg_coin("bitcoin", "btc", "1", "1"));
    let mut stalled = ok(&body);
    // Far longer than the timeout: the client gives up on it, never the server.
    stalled.stall = Duration::from_secs(60);
    server.route("/coins/markets", &[("page", "1")], vec![stalled, ok(&body)]);
    let mut config = ClientConfig::new("coingecko", &server.base, 6000.0);
    config.timeout = Duration::from_secs(1);
    config.jitter_seed = 7;
    let mut client = HttpClient::new(config, clock);
    let report = run_fetch(&mut client, fx.path(), Target::CoinGeckoMarkets, 2);
    assert!(report.is_complete(), "{report:?}");
    let times: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert!(times.len() >= 2, "{times:?}");
    let wait = times[1] - times[0];
    assert!(
        (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(read(fx.path(), &report.files[0]).lines().count(), 2);
}

#[test]
fn truncated_json_fails_its_page_after_bounded_retries_keeps_the_rest_and_resumes() {
    let (fx, clock, server) = setup();
    let full = format!(
        "[{},{}]",
        cg_coin("bitcoin", "btc", "1", "1"),
        cg_coin("ethereum", "eth", "2", "2")
    );
    let cut = &full[..full.len() / 2];
    server.route("/coins/markets", &[("page", "1")], vec![ok(&full)]);
    server.route("/coins/markets", &[("page", "2")], vec![ok(cut)]);
    let mut first = client(&server, clock.clone(), 600.0);
    let report = run_fetch(&mut first, fx.path(), Target::CoinGeckoMarkets, 2);

    // Page 1, then page 2 three times (max_attempts = 3), then the walk stops.
    assert_eq!(server.seen().len(), 4);
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    assert_eq!((failure.walk.as_str(), failure.page), ("markets@2", 2));
    assert!(
        failure.error.contains("gave up after 3 attempts")
            && failure.error.contains("invalid JSON")
    );
    assert_eq!(
        read(fx.path(), &report.files[0]).lines().count(),
        3,
        "page 1 kept"
    );
    let state = read(fx.path(), "fetched/coingecko/.resume.json");
    assert!(state.contains(r#""markets@2": 2"#), "{state}");

    // The server recovers; a new fetch starts at page 2.
    let last = format!("[{}]", cg_coin("tether", "usdt", "3", "1"));
    server
        .routes
        .lock()
        .expect("routes")
        .retain(|(_, q, _)| q[0].1 != "2");
    server.route("/coins/markets", &[("page", "2")], vec![ok(&last)]);
    clock.sleep(Duration::from_secs(1));
    let mut second = client(&server, clock.clone(), 600.0);
    let resumed = run_fetch(&mut second, fx.path(), Target::CoinGeckoMarkets, 2);
    assert!(resumed.is_complete());
    assert_eq!(resumed.resumed, [("markets@2".to_string(), 2)]);
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4].query["page"], "2");
    assert!(read(fx.path(), &resumed.files[0]).contains("tether,usdt,USDT,3"));
    assert!(!fx.path().join("fetched/coingecko/.resume.json").exists());
    let loaded = fx.run();
    assert_eq!(loaded.totals.loaded, 3);
}

#[test]
fn history_joins_caps_and_volumes_by_time_into_a_markets_file() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let clock = ManualClock::new();
    let server = Server::start(clock.clone());
    server.route(
        "/coins/bitcoin/market_chart/range",
        &[("from", "1704067200"), ("to", "1704240000")],
        vec![ok(
            r#"{"prices":[[1704067200000,42000.5],[1704153600000,null]],"market_caps":[[1704067200000,8.2e11],[1704153600000,8.3e11]],"total_volumes":[[1704067200000,2.1e10]]}"#,
        )],
    );
    let mut client = client(&server, clock, 600.0);
    let target = Target::CoinGeckoHistory {
        coin: "bitcoin".into(),
        from: 1_704_067_200,
        to: 1_704_240_000,
    };
    let report = run_fetch(&mut client, fx.path(), target, 100);
    assert!(report.is_complete());
    assert_eq!(
        read(fx.path(), &report.files[0]),
        "coin_id,timestamp,price,market_cap,volume_24h,fetch_page,fetch_item\n\
         bitcoin,2024-01-01T00:00:00Z,42000.5,820000000000.0,21000000000.0,1,0\n\
         bitcoin,2024-01-02T00:00:00Z,,830000000000.0,,1,1\n"
    );
    let loaded = fx.run_with(|o| o.max_reject_ratio = 1.0);
    let history = file(&loaded, &report.files[0]);
    assert_eq!(
        (history.dataset.as_deref(), history.loaded, history.rejected),
        (Some("markets"), 1, 1)
    );
}

#[test]
fn tickers_follow_each_coins_pages_to_the_end() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    let clock = ManualClock::new();
    let server = Server::start(clock.clone());
    let ticker = |base: &str, target: &str, exchange: &str| {
        format!(
            r#"{{"base":"{base}","target":"{target}","market":{{"name":"{exchange}","identifier":"{exchange}","has_trading_incentive":false}},"last":1,"volume":2,"trust_score":"green"}}"#
        )
    };
    let page =
        |items: &[String]| format!(r#"{{"name":"Bitcoin","tickers":[{}]}}"#, items.join(","));
    server.route(
        "/coins/bitcoin/tickers",
        &[("page", "1")],
        vec![ok(&page(&[
            ticker("BTC", "USDT", "binance"),
            ticker("BTC", "USD", "kraken"),
        ]))],
    );
    server.route(
        "/coins/bitcoin/tickers",
        &[("page", "2")],
        vec![ok(&page(&[ticker("BTC", "EUR", "kraken")]))],
    );
    server.route(
        "/coins/ethereum/tickers",
        &[("page", "1")],
        vec![ok(&page(&[]))],
    );
    let mut client = client(&server, clock, 600.0);
    let target = Target::CoinGeckoTickers {
        coins: vec!["bitcoin".into(), "ethereum".into()],
    };
    let report = run_fetch(&mut client, fx.path(), target, 2);
    assert!(report.is_complete());
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/coins/bitcoin/tickers",
            "/coins/bitcoin/tickers",
            "/coins/ethereum/tickers"
        ]
    );
    assert_eq!(
        report.files,
        [
            format!("fetched/coingecko/tickers-bitcoin-{STAMP}.csv"),
            format!("fetched/coingecko/tickers-ethereum-{STAMP}.csv"),
        ]
    );
    assert_eq!(
        read(fx.path(), &report.files[1]),
        "coin_id,exchange,base,target,fetch_page,fetch_item\n"
    );
    fx.run();
    assert_eq!(
        fx.text("SELECT string_agg(exchange || ':' || target, ',' ORDER BY exchange, target) FROM tickers WHERE coin_id = 'bitcoin'"),
        Some("binance:USDT,kraken:EUR,kraken:USD".into())
    );
}

#[test]
fn requested_tickers_skip_coins_fetched_within_the_max_age() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    fx.run();
    let mut conn = fx.db.conn();
    use diesel::RunQueryDsl;
    diesel::sql_query(
        "INSERT INTO task_results (coin_id, exchanges, task_run) VALUES \
         ('ethereum', '{}', 1), ('bitcoin', '{}', 1), ('thorchain', '{}', 2)",
    )
    .execute(&mut conn)
    .expect("tasks");
    // bitcoin was fetched an hour ago (archived), thorchain two days ago.
    fx.write(
        "fetched/loaded/coingecko/tickers-bitcoin-20261206T110000Z.csv",
        "coin_id,exchange\n",
    );
    fx.write(
        "fetched/coingecko/tickers-thorchain-20261204T120000Z.csv",
        "coin_id,exchange\n",
    );
    let now = ManualClock::new().now_utc();
    let coins =
        fetch::requested::requested_coins(&mut conn, fx.path(), Duration::from_secs(86_400), now)
            .expect("requested");
    assert_eq!(coins, ["ethereum", "thorchain"]);
}

#[test]
fn coinmarketcap_listings_and_cryptocompare_toplist_load_as_listings_and_rankings() {
    let (fx, clock, server) = setup();
    let cmc_coin = |id: u32, slug: &str, symbol: &str, name: &str, rank: u32, price: &str| {
        format!(
            r#"{{"id":{id},"name":"{name}","symbol":"{symbol}","slug":"{slug}","cmc_rank":{rank},"num_market_pairs":500,"circulating_supply":1,"last_updated":"2026-12-06T11:58:00.000Z","quote":{{"USD":{{"price":{price},"volume_24h":100,"market_cap":1000,"percent_change_24h":1.5,"last_updated":"2026-12-06T11:58:00.000Z"}}}}}}"#
        )
    };
    server.route(
        "/v1/cryptocurrency/listings/latest",
        &[("start", "1")],
        vec![ok(&format!(
            r#"{{"status":{{"timestamp":"2026-12-06T11:59:00.000Z","error_code":0,"error_message":null,"elapsed":10,"credit_count":3}},"data":[{},{}]}}"#,
            cmc_coin(1, "bitcoin", "BTC", "Bitcoin", 1, "43000"),
            cmc_coin(1027, "ethereum", "ETH", "Ethereum", 2, "2300")
        ))],
    );
    server.route(
        "/v1/cryptocurrency/listings/latest",
        &[("start", "3")],
        vec![ok(
            r#"{"status":{"error_code":0,"error_message":null},"data":[]}"#,
        )],
    );
    let mut cmc = client(&server, clock.clone(), 600.0);
    let listings = run_fetch(&mut cmc, fx.path(), Target::CmcListings, 2);
    // (CoinMarketCap may also send status.total_count; then a full last page ends the
    // walk: see cmc_total_count_ends_the_walk_on_a_full_last_page.)
    assert!(listings.is_complete());
    // Two calls; the first billed 3 credits, the empty page one: 4 of the budget.
    assert_eq!((listings.calls, listings.billed()), (2, 4));
    let seen = server.seen();
    assert_eq!(
        seen.iter()
            .map(|s| s.query["start"].as_str())
            .collect::<Vec<_>>(),
        ["1", "3"]
    );
    assert_eq!(
        seen[0].query.get("convert").map(String::as_str),
        Some("USD")
    );

    let cc_coin = |symbol: &str, name: &str, volume: &str| {
        format!(
            r#"{{"CoinInfo":{{"Id":"1182","Name":"{symbol}","FullName":"{name}","Internal":"{symbol}"}},"RAW":{{"USD":{{"TYPE":"5","PRICE":1,"VOLUME24HOURTO":{volume},"MKTCAP":5,"LASTUPDATE":1765022340}}}},"DISPLAY":{{}}}}"#
        )
    };
    server.route(
        "/data/top/totalvolfull",
        &[("page", "0")],
        vec![ok(&format!(
            r#"{{"Message":"Success","Type":100,"MetaData":{{"Count":3}},"SponsoredData":[],"Data":[{},{}],"RateLimit":{{}},"HasWarning":false}}"#,
            cc_coin("ETH", "Ethereum", "9000000"),
            cc_coin("BTC", "Bitcoin", "\"8,000,000\"")
        ))],
    );
    server.route(
        "/data/top/totalvolfull",
        &[("page", "1")],
        vec![ok(&format!(
            r#"{{"Message":"Success","Type":100,"Data":[{},{}]}}"#,
            cc_coin("DOGE", "Dogecoin", "1"),
            cc_coin("XRP", "XRP", "1")
        ))],
    );
    let mut cc = client(&server, clock, 600.0);
    let toplist = run_fetch(
        &mut cc,
        fx.path(),
        Target::CryptoCompareToplist { top: 3 },
        2,
    );
    assert!(toplist.is_complete());
    // Ranks 1–3: two from page 0, one from page 1; a fourth is not asked for.
    assert_eq!(toplist.items, 3);
    let csv = read(fx.path(), &toplist.files[0]);
    assert_eq!(
        csv.lines().nth(1),
        Some("ETH,ETH,Ethereum,2026-12-06T12:00:00Z,1,9000000,cryptocompare,1,0")
    );
    assert_eq!(csv.lines().count(), 4);

    // DOGE is known to no listing: a reject (unknown coin), not a new coin.
    let loaded = fx.run_with(|o| o.max_reject_ratio = 1.0);
    assert_reconciles(&loaded);
    assert_eq!(fx.count("SELECT count(*) FROM coins"), 2);
    assert_eq!(
        fx.text("SELECT string_agg(coin_id || ':' || rank || ':' || source, ',' ORDER BY ts, rank) FROM rankings"),
        Some("bitcoin:1:coinmarketcap,ethereum:2:coinmarketcap,ethereum:1:cryptocompare,bitcoin:2:cryptocompare".into())
    );
    assert_eq!(
        fx.rejects(&toplist.files[0]),
        [(4, Some("coin_id".to_string()), "unknown coin".to_string())]
    );
}

#[test]
fn provider_error_envelopes_fail_the_page_with_their_message() {
    let (fx, clock, server) = setup();
    server.route(
        "/data/top/totalvolfull",
        &[],
        vec![ok(r#"{"Response":"Error","Message":"You are over your rate limit please upgrade your account!","HasWarning":false,"Type":99,"Data":{}}"#)],
    );
    let mut cc = client(&server, clock, 600.0);
    let report = run_fetch(
        &mut cc,
        fx.path(),
        Target::CryptoCompareToplist { top: 10 },
        10,
    );
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].error.contains("over your rate limit"));
    assert!(report.files.is_empty());
}

#[test]
fn watch_fetches_loads_archives_and_counts_the_budget() {
    let (fx, clock, server) = setup();
    let body = format!("[{}]", cg_coin("bitcoin", "btc", "1", "1"));
    server.route("/coins/markets", &[], vec![ok(&body)]);
    let base = server.base.clone();
    let env = move |k: &str| match k {
        "COINGECKO_BASE_URL" => Some(base.clone()),
        "COINGECKO_CALLS_PER_MINUTE" => Some("600".into()),
        "COINGECKO_MONTHLY_CALLS" => Some("100".into()),
        _ => None,
    };
    let opts = fetch::watch::WatchOptions {
        specs: vec![fetch::watch::Spec::Markets],
        interval: None,
        max_age: Duration::from_secs(86_400),
        cycles: Some(2),
        data_dir: fx.path(),
        database_url: Some(fx.db.url()),
        db_wait: Duration::from_secs(5),
    };
    let mut loads = Vec::new();
    let code = fetch::watch::watch(&opts, &env, clock.clone(), || {
        let report = coinflow_etl::run(&fx.options()).map_err(|_| 1u8)?;
        loads.push(report.files.len());
        Ok(report)
    });
    assert_eq!(code, 0);
    // Each cycle's load saw only its own fetch: the first file was archived.
    assert_eq!(loads, [1, 1]);
    let archived = std::fs::read_dir(fx.path().join("fetched/loaded/coingecko"))
        .expect("archive")
        .count();
    assert_eq!(archived, 2);
    assert_eq!(
        std::fs::read_dir(fx.path().join("fetched/coingecko"))
            .expect("dir")
            .filter(|e| e
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "csv")))
            .count(),
        0
    );
    let book = read(fx.path(), "fetched/.budget.json");
    assert!(book.contains(r#""coingecko": 2"#), "{book}");
    // 98 calls left at 1 a cycle over the rest of December: the second fetch came
    // (25.5 days / 99 cycles) after the first, on the virtual clock.
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    let expected = Duration::from_secs(((25 * 86_400 + 12 * 3_600) / 99) as u64);
    assert!(
        gap.abs_diff(expected) < Duration::from_secs(2),
        "{gap:?} vs {expected:?}"
    );
    assert_eq!(fx.count("SELECT count(*) FROM market"), 1);
}

#[test]
fn a_watch_whose_last_cycle_failed_a_page_exits_5() {
    let (fx, clock, server) = setup();
    // A 404 is not retried: the page fails at once.
    server.route("/coins/markets", &[], vec![status(404)]);
    let base = server.base.clone();
    let env = move |k: &str| match k {
        "COINGECKO_BASE_URL" => Some(base.clone()),
        "COINGECKO_CALLS_PER_MINUTE" => Some("600".into()),
        _ => None,
    };
    let opts = fetch::watch::WatchOptions {
        specs: vec![fetch::watch::Spec::Markets],
        interval: None,
        max_age: Duration::from_secs(86_400),
        cycles: Some(1),
        data_dir: fx.path(),
        database_url: Some(fx.db.url()),
        db_wait: Duration::from_secs(5),
    };
    let mut loads = 0;
    let code = fetch::watch::watch(&opts, &env, clock, || {
        loads += 1;
        coinflow_etl::run(&fx.options()).map_err(|_| 1u8)
    });
    assert_eq!(code, fetch::EXIT_INCOMPLETE);
    // What the cycle fetched (nothing here) was still loaded before the watch ended.
    assert_eq!(loads, 1);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn the_fetch_command_exits_5_names_the_failed_page_and_never_prints_the_key() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let server = Server::start(clock);
    let full = format!(
        "[{},{}]",
        cg_coin("bitcoin", "btc", "1", "1"),
        cg_coin("ethereum", "eth", "2", "2")
    );
    server.route("/coins/markets", &[("page", "1")], vec![ok(&full)]);
    server.route("/coins/markets", &[("page", "2")], vec![status(502)]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coinflow-etl"))
        .args([
            "fetch",
            "coingecko",
            "markets",
            "--per-page",
            "2",
            "--data-dir",
        ])
        .arg(fx.path())
        .env("COINGECKO_BASE_URL", &server.base)
        .env("COINGECKO_API_KEY", "pro-secret-456")
        .env("COINGECKO_API_PLAN", "pro")
        .env("COINGECKO_CALLS_PER_MINUTE", "6000")
        .env("FETCH_MAX_ATTEMPTS", "1")
        .env("LOG_LEVEL", "info")
        .output()
        .expect("run coinflow-etl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAILED markets@2 page 2: gave up after 1 attempts, last: HTTP 502"),
        "{stdout}"
    );
    assert!(!stdout.contains("pro-secret") && !stderr.contains("pro-secret"));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers.get("x-cg-pro-api-key").map(String::as_str),
        Some("pro-secret-456")
    );
    let files: Vec<_> = std::fs::read_dir(fx.path().join("fetched/coingecko"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn fetch_with_load_loads_the_files_and_archives_them_and_a_redirect_is_refused() {
    let (fx, _clock, server) = setup();
    let body = format!("[{}]", cg_coin("bitcoin", "btc", "1", "43000"));
    server.route("/coins/markets", &[], vec![ok(&body)]);
    let mut moved = status(301);
    moved
        .headers
        .push(("Location", format!("{}/elsewhere", server.base)));
    server.route("/coins/bitcoin/tickers", &[], vec![moved]);
    let etl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coinflow-etl"))
            .args(args)
            .arg("--data-dir")
            .arg(fx.path())
            .env("DATABASE_URL", fx.db.url())
            .env("COINGECKO_BASE_URL", &server.base)
            .env("COINGECKO_API_KEY", "")
            .env("COINGECKO_CALLS_PER_MINUTE", "6000")
            .output()
            .expect("run coinflow-etl")
    };
    let out = etl(&["fetch", "coingecko", "markets", "--load"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM market WHERE coin_id = 'bitcoin'"),
        1
    );
    let archived: Vec<String> = std::fs::read_dir(fx.path().join("fetched/loaded/coingecko"))
        .expect("archive")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(archived.len(), 1);
    assert!(archived[0].starts_with("markets-"), "{archived:?}");
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM etl_files WHERE status = 'loaded' AND path = 'fetched/coingecko/{}'",
            archived[0]
        )),
        1
    );
    // A redirect is not followed (a key header must not travel elsewhere).
    let out = etl(&["fetch", "coingecko", "tickers", "--coin", "bitcoin"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP 301"));
    assert!(server.seen().iter().all(|s| s.path != "/elsewhere"));
}

#[test]
fn cmc_total_count_ends_the_walk_on_a_full_last_page() {
    let (fx, clock, server) = setup();
    let coin = |id: u32, slug: &str| {
        format!(
            r#"{{"id":{id},"name":"{slug}","symbol":"{slug}","slug":"{slug}","cmc_rank":{id},"quote":{{"USD":{{"price":1,"last_updated":"2026-12-06T11:58:00.000Z"}}}}}}"#
        )
    };
    server.route(
        "/v1/cryptocurrency/listings/latest",
        &[("start", "1")],
        vec![ok(&format!(
            r#"{{"status":{{"error_code":0,"total_count":2,"credit_count":1}},"data":[{},{}]}}"#,
            coin(1, "aa"),
            coin(2, "bb")
        ))],
    );
    let mut cmc = client(&server, clock, 600.0);
    let report = run_fetch(&mut cmc, fx.path(), Target::CmcListings, 2);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((server.seen().len(), report.items), (1, 2));
}
