//! Test support: a fresh migrated database per test, filled with realistic rows by SQL,
//! and the real Rocket application on a local client.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use coinflow_api::ApiConfig;
use coinflow_shared::testdb::TestDb;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use rocket::http::{Header, Status};
use rocket::local::blocking::{Client, LocalResponse};
use serde_json::Value;

pub struct App {
    pub client: Client,
    pub db: TestDb,
}

impl App {
    /// A database with the standard fixture and the API on it.
    pub fn new() -> App {
        App::with(|_| {})
    }

    /// Like [`App::new`], with the configuration adjusted first.
    pub fn with(adjust: impl FnOnce(&mut ApiConfig)) -> App {
        let db = TestDb::new();
        fill(&mut db.conn());
        App::on(db, adjust)
    }

    /// The API on an already prepared database.
    pub fn on(db: TestDb, adjust: impl FnOnce(&mut ApiConfig)) -> App {
        let mut config = ApiConfig::new(db.url());
        config.cursor_secret = Some(b"test secret".to_vec());
        config.pool_size = 4;
        adjust(&mut config);
        let client = Client::tracked(coinflow_api::rocket(config)).expect("valid rocket");
        App { client, db }
    }

    pub fn conn(&self) -> PgConnection {
        self.db.conn()
    }

    pub fn get(&self, uri: &str) -> Reply {
        Reply::from(self.client.get(uri.to_string()).dispatch())
    }

    pub fn get_with(&self, uri: &str, name: &'static str, value: &str) -> Reply {
        Reply::from(
            self.client
                .get(uri.to_string())
                .header(Header::new(name, value.to_string()))
                .dispatch(),
        )
    }

    pub fn post(&self, uri: &str, content_type: &str, body: impl AsRef<[u8]>) -> Reply {
        Reply::from(
            self.client
                .post(uri.to_string())
                .header(Header::new("Content-Type", content_type.to_string()))
                .body(body)
                .dispatch(),
        )
    }

    /// Runs SQL returning one text column.
    pub fn texts(&self, sql: &str) -> Vec<String> {
        texts(&mut self.conn(), sql)
    }

    pub fn exec(&self, sql: &str) {
        diesel::sql_query(sql).execute(&mut self.conn()).expect(sql);
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    t: String,
}

/// Runs SQL whose only column is text named `t`.
pub fn texts(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<TextRow>(conn)
        .expect(sql)
        .into_iter()
        .map(|r| r.t)
        .collect()
}

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl From<LocalResponse<'_>> for Reply {
    fn from(r: LocalResponse<'_>) -> Reply {
        let status = r.status();
        let headers = r
            .headers()
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        let body = r.into_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a problem document with this status, and that nothing internal leaks.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status.code, status, "body: {}", self.body);
        assert_eq!(
            self.header("Content-Type").map(|c| c
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()),
            Some("application/problem+json".to_string()),
            "{:?}",
            self.headers
        );
        let p = self.json();
        for key in ["type", "title", "status", "detail"] {
            assert!(p.get(key).is_some(), "{key} missing in {p}");
        }
        assert_eq!(p["status"], status);
        let lower = self.body.to_lowercase();
        for leak in [
            "<html",
            "select ",
            "panicked",
            "backtrace",
            "diesel",
            "postgres",
        ] {
            assert!(!lower.contains(leak), "{leak:?} leaked: {}", self.body);
        }
        p
    }
}

/// Number of coins of the fixture, of coins with market rows, …
pub const COINS: usize = 150;
pub const MARKET_COINS: usize = 30;
pub const MARKET_HOURS: usize = 100;
pub const DAILY_DAYS: usize = 40;
pub const PEOPLE: usize = 300;

/// The standard fixture: realistic rows in every served table, two ETL runs, data
/// version 1 everywhere.
pub fn fill(conn: &mut PgConnection) {
    let sql = format!(
        r#"
INSERT INTO etl_runs (id, started_at, finished_at, status, pid, host, data_dir, message, summary) VALUES
  (1, '2024-03-01T00:00:00Z', '2024-03-01T00:00:42Z', 'ok', 4242, 'etl-host', '/data', NULL,
   '{{"files": 2, "rows": 4200}}'),
  (2, '2024-03-05T00:00:00Z', '2024-03-05T00:00:13Z', 'partial', 4343, 'etl-host', '/data',
   'one file set aside', '{{"files": 3, "rows": 900}}');
SELECT setval('etl_runs_id_seq', 2);
INSERT INTO etl_files (run_id, path, sha256, dataset, size_bytes, status, reason, rows_read, loaded, duplicate, updated, rejected, set_aside, zeroed, seconds) VALUES
  (1, 'data/markets/btc.csv', repeat('a', 64), 'markets', 120000, 'loaded', NULL, 3000, 2990, 5, 0, 5, 0, 12, 0.8),
  (1, 'data/coins.csv', repeat('b', 64), 'coins', 9000, 'loaded', NULL, 151, 151, 0, 0, 0, 0, 0, 0.1),
  (2, 'data/late.csv', repeat('c', 64), 'markets', 3000, 'loaded', NULL, 100, 90, 0, 10, 0, 0, 0, 0.2),
  (2, 'data/broken.csv', repeat('d', 64), 'markets', 5000, 'set_aside', 'over the reject budget: 40 of 100 rows', 100, 0, 0, 0, 40, 60, 0, 0.1),
  (2, 'data/notes.csv', repeat('e', 64), NULL, 100, 'unrecognized', 'header fits no dataset: foo,bar', 0, 0, 0, 0, 0, 0, 0, 0.0);

INSERT INTO coins (id, symbol, name, cmc_id)
SELECT format('coin-%s', lpad(i::text, 3, '0')), format('C%s', lpad(i::text, 3, '0')), format('Coin %s', i),
       CASE WHEN i % 3 = 0 THEN NULL ELSE 1000 + i END
FROM generate_series(1, {coins_minus_one}) AS i;
INSERT INTO coins (id, symbol, name, cmc_id) VALUES ('quote-coin', 'Q,T', 'Quote "the" coin, ltd', 7);

INSERT INTO market (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source)
SELECT format('coin-%s', lpad(c::text, 3, '0')),
       timestamptz '2024-03-01T00:00:00Z' + h * interval '1 hour',
       c * 10 + h * 0.01,
       CASE WHEN (c + h) % 7 = 0 THEN NULL ELSE (1000 - c) * 1e6 + h END,
       CASE WHEN (c + h) % 11 = 0 THEN NULL ELSE c * 1e5 END,
       CASE WHEN c % 5 = 0 THEN NULL ELSE c END,
       CASE WHEN c % 5 = 0 THEN NULL ELSE 'cmc' END
FROM generate_series(1, {market_coins}) AS c, generate_series(0, {hours_minus_one}) AS h;

INSERT INTO daily (coin_id, day, open, high, low, close, avg_price, max_market_cap_usd, last_volume_usd, samples, source)
SELECT format('coin-%s', lpad(c::text, 3, '0')), date '2024-01-01' + d,
       c + d, c + d + 2, c + d - 1, c + d + 1, c + d + 0.5,
       CASE WHEN d % 9 = 0 THEN NULL ELSE c * 1e6 END, c * 1e4, 24,
       CASE WHEN d % 2 = 0 THEN 'candles' ELSE 'market' END
FROM generate_series(1, {market_coins}) AS c, generate_series(0, {days_minus_one}) AS d;

INSERT INTO coin_exchanges (coin_id, exchanges, exchange_count)
SELECT id, ex, cardinality(ex) FROM (
  SELECT format('coin-%s', lpad(c::text, 3, '0')) AS id,
         ARRAY(SELECT e FROM unnest(ARRAY['binance', 'bitfinex', 'coinbase', 'huobi', 'kraken']) WITH ORDINALITY AS x(e, n)
               WHERE (c + n) % 3 <> 0 ORDER BY e) AS ex
  FROM generate_series(1, 120) AS c
) s;

INSERT INTO people (person_id, first_name, last_name, email, date_added)
SELECT p, format('First%s', p), format('Last%s', p), format('p%s@example.com', p),
       timestamptz '2023-01-01T00:00:00Z' + p * interval '1 day'
FROM generate_series(1, {people}) AS p;

INSERT INTO traders (person_id, first_name, last_name, email, date_added, last_trade_ts, last_trade_coin_id,
                     last_trade_side, last_trade_quantity, last_trade_price, trade_count)
SELECT p, format('First%s', p), format('Last%s', p), format('p%s@example.com', p),
       timestamptz '2023-01-01T00:00:00Z' + p * interval '1 day',
       CASE WHEN p % 10 = 0 THEN NULL ELSE timestamptz '2024-03-02T00:00:00Z' + p * interval '1 minute' END,
       CASE WHEN p % 10 = 0 THEN NULL ELSE format('coin-%s', lpad((p % 30 + 1)::text, 3, '0')) END,
       CASE WHEN p % 10 = 0 THEN NULL WHEN p % 2 = 0 THEN 'sell' ELSE 'buy' END,
       CASE WHEN p % 10 = 0 THEN NULL ELSE p * 0.5 END,
       CASE WHEN p % 10 = 0 THEN NULL ELSE 100 + p END,
       CASE WHEN p % 10 = 0 THEN 0 ELSE p % 7 + 1 END
FROM generate_series(1, {people}) AS p;

INSERT INTO positions (person_id, coin_id, net_quantity, trade_count, avg_buy_price, last_price_usd, market_value_usd)
SELECT p, format('coin-%s', lpad(((p * k) % 30 + 1)::text, 3, '0')), p * 0.1 * k, k, 10.0 + k, 20.0, p * 2.0 * k
FROM generate_series(1, {people}) AS p, generate_series(1, 3) AS k
WHERE k <= p % 3 + 1
ON CONFLICT DO NOTHING;

INSERT INTO etl_rejects (run_id, file, line, column_name, raw_value, reason, raw_line)
SELECT 1, CASE WHEN l % 2 = 0 THEN 'data/a.csv' ELSE 'data/b,"odd".csv' END, l + 1, 'price', '-1',
       'price <= 0', format('coin-001,2024-03-01,%s', -l)
FROM generate_series(1, 250) AS l;
INSERT INTO etl_rejects (run_id, file, line, column_name, raw_value, reason, raw_line)
SELECT 2, 'data/broken.csv', l + 1, NULL, NULL, 'wrong field count', format('x,y,"multi
line",%s', l)
FROM generate_series(1, 120) AS l;

UPDATE data_versions SET version = 1;
ANALYZE;
"#,
        coins_minus_one = COINS - 1,
        market_coins = MARKET_COINS,
        hours_minus_one = MARKET_HOURS - 1,
        days_minus_one = DAILY_DAYS - 1,
        people = PEOPLE,
    );
    conn.batch_execute(&sql).expect("fixture loads");
    rebuild_top_slots(conn);
}

/// Recomputes `top_slots` from market and candles, as an ETL run does after changing them.
pub fn rebuild_top_slots(conn: &mut PgConnection) {
    conn.batch_execute(
        "DELETE FROM top_slots; \
         INSERT INTO top_slots SELECT * FROM top_slots_of(ARRAY(SELECT id FROM coins), ARRAY(SELECT '-infinity'::timestamptz FROM coins))",
    )
    .expect("top slots");
}

/// Serves the real application over TCP on a free local port (its own runtime, in a
/// background thread that lives as long as the test process); returns the port.
pub fn serve(mut config: ApiConfig) -> u16 {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    config.address = std::net::IpAddr::from([127, 0, 0, 1]);
    config.port = port;
    std::thread::spawn(move || {
        let rt = rocket::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let _ = coinflow_api::rocket(config).launch().await;
        });
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the API did not start listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    port
}

/// One HTTP/1.1 exchange over a fresh connection: (status, headers, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        request.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}
