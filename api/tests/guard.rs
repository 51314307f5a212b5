//! The pool defends itself: every statement runs under a statement and a lock timeout,
//! and expensive work (a `/top` ranking not in the cache, a large chunk) holds at most
//! `API_COLD_WORK_LIMIT` connections; past that bound the answer is 503 with
//! `Retry-After` at once, and cheap reads keep finding a connection.
//!
//! The cold work is made slow on purpose by a lock the test holds on the table it reads:
//! the rankings that got a permit wait for it, which no timing can make flaky.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_api::state::AppState;
use coinflow_api::ApiConfig;
use coinflow_shared::testdb::TestDb;
use diesel::connection::SimpleConnection;
use rocket::futures::future::join_all;
use rocket::local::asynchronous::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The tables a `/top` ranking reads: holding them locked stalls every ranking.
const LOCK_TOP_TABLES: &str =
    "BEGIN; LOCK TABLE top_slots, market, candles IN ACCESS EXCLUSIVE MODE";

fn config(db: &TestDb, adjust: impl FnOnce(&mut ApiConfig)) -> ApiConfig {
    let mut config = ApiConfig::new(db.url());
    config.cursor_secret = Some(b"test secret".to_vec());
    adjust(&mut config);
    config
}

#[test]
fn cold_top_requests_past_the_bound_get_503_at_once_while_chunk_reads_keep_their_connections() {
    const REQUESTS: usize = 64;
    const PERMITS: usize = 3;
    let db = TestDb::new();
    common::fill(&mut db.conn());
    let config = config(&db, |c| {
        c.pool_size = 8;
        c.cold_work_limit = Some(PERMITS as u32);
        // The stalled rankings must outwait the test, not time out.
        c.statement_timeout = Duration::from_secs(600);
        c.lock_timeout = Duration::from_secs(600);
    });
    let mut holder = db.conn();
    holder.batch_execute(LOCK_TOP_TABLES).unwrap();

    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::tracked(coinflow_api::rocket(config)).await.unwrap();
        let refused = AtomicUsize::new(0);
        let tops = (0..REQUESTS).map(|i| {
            let (client, refused) = (&client, &refused);
            async move {
                // Distinct instants: no request can be answered by another's ranking.
                let uri = format!("/top?limit=5&datetime={}", 1_709_251_200 + 60 * i);
                let r = client.get(uri).dispatch().await;
                let status = r.status().code;
                let retry_after = r.headers().get_one("Retry-After").map(str::to_string);
                let body = r.into_string().await.unwrap_or_default();
                if status == 503 {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                (status, retry_after, body)
            }
        });
        let reader = async {
            let mut statuses = Vec::new();
            let mut after_bound = 0;
            // Read while the burst arrives, then on while the permitted rankings stall.
            let deadline = Instant::now() + Duration::from_secs(120);
            while after_bound < 20 {
                let r = client.get("/read/coins?size=5").dispatch().await;
                statuses.push(r.status().code);
                if refused.load(Ordering::SeqCst) == REQUESTS - PERMITS {
                    after_bound += 1;
                }
                assert!(
                    Instant::now() < deadline,
                    "only {} of the cold /top requests past the bound were refused",
                    refused.load(Ordering::SeqCst)
                );
                rocket::tokio::task::yield_now().await;
            }
            let waits = client
                .rocket()
                .state::<AppState>()
                .unwrap()
                .reachability
                .checkout_waits();
            holder.batch_execute("COMMIT").unwrap();
            (statuses, waits)
        };
        let (tops, (statuses, waits)) = rocket::futures::join!(join_all(tops), reader);

        let ok = tops.iter().filter(|(s, _, _)| *s == 200).count();
        let busy: Vec<_> = tops.iter().filter(|(s, _, _)| *s == 503).collect();
        assert_eq!(
            ok, PERMITS,
            "the permitted rankings answer once the lock goes"
        );
        assert_eq!(busy.len(), REQUESTS - PERMITS);
        assert_eq!(ok + busy.len(), REQUESTS, "no other status: {tops:?}");
        for (_, retry_after, body) in busy {
            assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
            assert!(body.contains("/problems/busy"), "{body}");
        }
        assert!(statuses.len() >= 20);
        assert!(
            statuses.iter().all(|s| *s == 200),
            "chunk reads: {statuses:?}"
        );
        assert_eq!(waits, 0, "no request waited for a connection");
    });
}

#[test]
fn large_chunks_are_bounded_like_cold_rankings_and_small_ones_are_not() {
    let db = TestDb::new();
    common::fill(&mut db.conn());
    let config = config(&db, |c| {
        c.pool_size = 4;
        c.cold_work_limit = Some(1);
    });
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::tracked(coinflow_api::rocket(config)).await.unwrap();
        let state = client.rocket().state::<AppState>().unwrap();
        // Every permit taken, as by a ranking in progress.
        let held = state.cold_permit().unwrap();
        let large = client.get("/read/market?size=5000").dispatch().await;
        assert_eq!(large.status().code, 503);
        assert_eq!(large.headers().get_one("Retry-After"), Some("1"));
        let small = client.get("/read/market?size=1000").dispatch().await;
        assert_eq!(small.status().code, 200);
        let cached_miss = client
            .get("/top?limit=3&datetime=2024-03-02")
            .dispatch()
            .await;
        assert_eq!(cached_miss.status().code, 503);
        drop(held);
        let large = client.get("/read/market?size=5000").dispatch().await;
        assert_eq!(large.status().code, 200);
        assert!(large
            .into_string()
            .await
            .unwrap_or_default()
            .contains("coin-030"));
        // The reader gives its permit back once its task has written the last row.
        let deadline = Instant::now() + Duration::from_secs(30);
        while state.cold.available_permits() == 0 {
            assert!(Instant::now() < deadline, "the chunk kept its permit");
            rocket::tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let top = client
            .get("/top?limit=3&datetime=2024-03-02")
            .dispatch()
            .await;
        assert_eq!(top.status().code, 200);
        // Now cached: answered without a permit even while every permit is taken.
        let _held = state.cold_permit().unwrap();
        let again = client
            .get("/top?limit=3&datetime=2024-03-02")
            .dispatch()
            .await;
        assert_eq!(again.status().code, 200);
    });
}

#[test]
fn statements_over_the_lock_timeout_answer_503_not_500() {
    let db = TestDb::new();
    common::fill(&mut db.conn());
    let config = config(&db, |c| c.lock_timeout = Duration::from_millis(100));
    let mut holder = db.conn();
    holder.batch_execute(LOCK_TOP_TABLES).unwrap();
    let client = rocket::local::blocking::Client::tracked(coinflow_api::rocket(config)).unwrap();
    for uri in ["/top?limit=3&datetime=2024-03-02", "/read/market?size=10"] {
        let r = client.get(uri).dispatch();
        assert_eq!(r.status().code, 503, "{uri}");
        assert_eq!(r.headers().get_one("Retry-After"), Some("1"), "{uri}");
        let body = r.into_string().unwrap_or_default();
        assert!(body.contains("/problems/busy"), "{uri}: {body}");
        assert!(!body.contains("canceling"), "internals leak: {body}");
    }
    // Cheap reads of other tables are unaffected.
    assert_eq!(
        client.get("/read/coins?size=5").dispatch().status().code,
        200
    );
    holder.batch_execute("COMMIT").unwrap();
    let top = client.get("/top?limit=3&datetime=2024-03-02").dispatch();
    assert_eq!(top.status().code, 200);
}

#[test]
fn every_api_connection_carries_the_configured_timeouts() {
    let db = TestDb::new();
    let config = config(&db, |c| {
        c.statement_timeout = Duration::from_millis(4321);
        c.lock_timeout = Duration::from_millis(123);
    });
    let (pool, reachability) = coinflow_api::state::configured_pool(&config);
    let settings = coinflow_api::state::with_read_conn(&pool, &reachability, |conn| {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            s: String,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout') AS s",
        )
        .load(conn)?;
        Ok(rows.into_iter().map(|r| r.s).collect::<Vec<_>>())
    })
    .unwrap();
    assert_eq!(settings, ["4321ms 123ms"]);
}
