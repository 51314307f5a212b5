//! The API's connection pool: a busy pool makes requests wait while the database answers;
//! an unreachable database is answered at once; a connection that died is replaced.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use coinflow_api::error::ApiError;
use coinflow_api::state::{checkout, pool, with_read_conn, CHECKOUT_SLICE};
use coinflow_shared::testdb::TestDb;
use diesel::connection::SimpleConnection;
use std::time::Duration;

#[test]
fn an_exhausted_pool_waits_for_a_connection_while_the_database_answers() {
    let db = TestDb::new();
    let (pool, reachability) = pool(db.url(), 1);
    let held = checkout(&pool, &reachability).unwrap();
    // The only connection comes back after several check-out slices: a request waiting
    // for it gets it, instead of a 503 for an overloaded but healthy database.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(CHECKOUT_SLICE * 4);
        drop(held);
    });
    let waited = checkout(&pool, &reachability);
    holder.join().unwrap();
    let mut got = waited.expect("a connection once the holder is done");
    got.conn.pg.batch_execute("SELECT 1").unwrap();
    assert!(!reachability.is_down());
}

#[test]
fn an_unreachable_database_is_unavailable_without_waiting_for_the_overload_limit() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (pool, reachability) = pool(&format!("postgres://postgres@127.0.0.1:{port}/x"), 4);
    match checkout(&pool, &reachability) {
        Err(ApiError::Unavailable(_)) => {}
        Err(other) => panic!("expected unavailable, got {other}"),
        Ok(_) => panic!("nothing listens on port {port}"),
    }
    assert!(reachability.is_down());
}

#[test]
fn read_work_on_a_connection_that_died_runs_again_on_a_fresh_one() {
    let db = TestDb::new();
    let (pool, reachability) = pool(db.url(), 2);
    // A pooled connection, used a moment ago (so it is not pinged), killed by the server.
    let pid: i32 = with_read_conn(&pool, &reachability, |conn| {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let row: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(conn)?;
        Ok(row.pid)
    })
    .unwrap();
    db.conn()
        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut runs = 0;
    let answer = with_read_conn(&pool, &reachability, |conn| {
        runs += 1;
        conn.batch_execute("SELECT 1")?;
        Ok("served")
    });
    assert_eq!(answer.unwrap(), "served");
    assert_eq!(runs, 2, "the first run met the dead connection");
    // The dead connection left the pool; the next request is served at once.
    let again = with_read_conn(&pool, &reachability, |conn| {
        conn.batch_execute("SELECT 1")?;
        Ok(())
    });
    assert!(again.is_ok());
}
