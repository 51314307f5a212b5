//! The API against a hostile world: a database of the wrong encoding, cursors signed with
//! a leaked key, odd spellings of the bearer scheme, tasks that would fill the disk.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_shared::cursor::{Cursor, CursorCodec};
use coinflow_shared::testdb::TestDb;
use common::{App, Reply};
use rocket::http::Header;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn a_database_that_is_not_utf8_is_refused_at_start_with_how_to_make_one() {
    let db = TestDb::with_encoding("SQL_ASCII");
    let e = coinflow_api::check_database_at_start(db.url()).expect_err("SQL_ASCII is refused");
    let message = e.to_string();
    for part in ["SQL_ASCII", "UTF8", "CREATE DATABASE", "TEMPLATE template0"] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
    let utf8 = TestDb::new();
    assert!(coinflow_api::check_database_at_start(utf8.url()).is_ok());
}

#[test]
fn requests_on_a_database_that_is_not_utf8_get_503_not_bytes() {
    let db = TestDb::with_encoding("SQL_ASCII");
    let app = App::on(db, |_| {});
    app.get("/read/coins").assert_problem(503);
}

#[test]
fn a_validly_signed_cursor_with_an_out_of_range_size_is_refused() {
    let app = App::new();
    // The key of common::App: what a leaked CURSOR_SECRET would let anyone do.
    let codec = CursorCodec::new(b"test secret");
    for size in [0, 10_001, u32::MAX] {
        let token = codec.encode(&Cursor {
            dataset: "market".into(),
            version: 1,
            size,
            filters: BTreeMap::new(),
            after: vec!["coin-001".into(), "2024-03-01T00:00:00.000000Z".into()],
        });
        let p = app
            .get(&format!("/read/next-chunk?cursor={token}"))
            .assert_problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("size"),
            "{size}: {p}"
        );
    }
}

fn post_with_auth(app: &App, authorization: &str) -> Reply {
    Reply::from(
        app.client
            .post("/runtasks")
            .header(Header::new("Content-Type", "application/json"))
            .header(Header::new("Authorization", authorization.to_string()))
            .body("{\"coins\":[\"coin-001\"]}")
            .dispatch(),
    )
}

#[test]
fn the_bearer_scheme_is_read_in_any_case_and_the_token_exactly() {
    let app = App::with(|c| c.write_token = Some("t0ken-of-the-test".into()));
    for ok in [
        "Bearer t0ken-of-the-test",
        "bearer t0ken-of-the-test",
        "BEARER t0ken-of-the-test",
    ] {
        assert_eq!(post_with_auth(&app, ok).status.code, 200, "{ok}");
    }
    for wrong in [
        "Bearer t0ken-of-the-tes",
        "Bearer t0ken-of-the-test2",
        "Bearer T0KEN-OF-THE-TEST",
        "Basic t0ken-of-the-test",
        "t0ken-of-the-test",
    ] {
        post_with_auth(&app, wrong).assert_problem(401);
    }
}

fn task_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn task(app: &App, coins: &[&str]) -> i64 {
    let body = serde_json::json!({ "coins": coins }).to_string();
    let reply = app.post("/runtasks", "application/json", body);
    assert_eq!(reply.status.code, 200, "{}", reply.body);
    reply.json()["task_run"].as_i64().unwrap()
}

#[test]
fn a_task_that_accepted_nothing_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = App::with(|c| c.task_output_dir = Some(path));
    task(&app, &["nope", "nothing"]);
    assert!(task_files(dir.path()).is_empty());
    let run = task(&app, &["coin-001"]);
    task(&app, &["coin-001", "nope"]);
    let names = task_files(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(&format!("_{run}.json")));
}

#[test]
fn task_files_beyond_the_cap_go_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = App::with(|c| {
        c.task_output_dir = Some(path);
        c.task_output_max_files = 2;
    });
    let runs: Vec<i64> = ["coin-010", "coin-011", "coin-012", "coin-013"]
        .iter()
        .map(|coin| task(&app, &[coin]))
        .collect();
    let names = task_files(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(&format!("_{}.json", runs[2])),
        "{names:?}"
    );
    assert!(
        names[1].ends_with(&format!("_{}.json", runs[3])),
        "{names:?}"
    );
}

#[test]
fn an_empty_coin_id_is_treated_the_same_in_json_and_csv() {
    let app = App::new();
    let json = app
        .post(
            "/runtasks",
            "application/json",
            r#"{"coins":["", "  ", "coin-030", "nul\u0000id"]}"#,
        )
        .json();
    let csv = app
        .post(
            "/runtasks",
            "text/csv",
            "coins\n\"\"\n\"  \"\ncoin-030\n\n\"nul\0id\"\n",
        )
        .json();
    assert_eq!(json["invalid"], serde_json::json!(["", "", "nul\u{0}id"]));
    assert_eq!(csv["invalid"], json["invalid"]);
    assert_eq!(json["accepted"][0]["id"], "coin-030");
    assert_eq!(csv["duplicates"][0]["id"], "coin-030");
}
