//! The service around the data: root, health, runs, errors from every layer (catchers,
//! 405, 500, an unreachable database), OpenAPI and the offline docs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_shared::testdb::{with_database, TestDb};
use common::{App, Reply};
use diesel::prelude::*;
use serde_json::{json, Value};

#[test]
fn root_says_ok_and_health_is_live_and_ready() {
    let app = App::new();
    let root = app.get("/");
    assert_eq!(root.status.code, 200);
    assert_eq!(root.json(), json!({"status": "OK"}));
    assert_eq!(app.get("/health/live").json(), json!({"status": "live"}));
    assert_eq!(app.get("/health/ready").json(), json!({"status": "ready"}));
}

#[test]
fn ready_needs_a_finished_etl_run() {
    let app = App::on(TestDb::new(), |_| {});
    let p = app.get("/health/ready").assert_problem(503);
    assert!(p["detail"].as_str().unwrap().contains("ETL"), "{p}");
    app.exec("INSERT INTO etl_runs (status, pid, host, data_dir) VALUES ('running', 1, 'h', '/d'), ('failed', 2, 'h', '/d')");
    app.get("/health/ready").assert_problem(503);
    app.exec("INSERT INTO etl_runs (status, pid, host, data_dir) VALUES ('partial', 3, 'h', '/d')");
    assert_eq!(app.get("/health/ready").status.code, 200);
}

/// A database with no migrations at all.
struct BareDb {
    admin: String,
    name: String,
    url: String,
}

impl BareDb {
    fn new() -> BareDb {
        let server = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let admin = with_database(&server, "postgres");
        let name = format!(
            "coinflow_bare_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_subsec_nanos()
        );
        let mut conn = PgConnection::establish(&admin).unwrap();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .unwrap();
        let url = with_database(&server, &name);
        BareDb { admin, name, url }
    }
}

impl Drop for BareDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

#[test]
fn ready_is_503_on_a_database_without_migrations() {
    let bare = BareDb::new();
    let client = rocket::local::blocking::Client::tracked(coinflow_api::rocket(
        coinflow_api::ApiConfig::new(bare.url.clone()),
    ))
    .unwrap();
    let reply = Reply::from(client.get("/health/ready").dispatch());
    let p = reply.assert_problem(503);
    assert!(p["detail"].as_str().unwrap().contains("migrations"), "{p}");
    assert!(reply.header("Retry-After").is_some());
}

#[test]
fn runs_list_the_ledger_with_file_counts() {
    let app = App::new();
    let list = app.get("/runs").json();
    let runs = list["data"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["id"], 2, "newest first");
    assert_eq!(runs[0]["status"], "partial");
    assert_eq!(runs[0]["message"], "one file set aside");
    assert_eq!(runs[0]["files"].as_array().unwrap().len(), 3);
    assert_eq!(runs[0]["totals"]["rejected"], 40);
    assert_eq!(runs[0]["totals"]["read"], 200);
    assert!(
        runs[0].get("summary").is_none(),
        "the list leaves the summary out"
    );
    let set_aside = &runs[0]["files"][1];
    assert_eq!(set_aside["path"], "data/broken.csv");
    assert_eq!(set_aside["status"], "set_aside");
    assert_eq!(
        set_aside["reason"],
        "over the reject budget: 40 of 100 rows"
    );
    assert_eq!(runs[1]["totals"]["loaded"], 3141);
    assert_eq!(
        app.get("/runs?limit=1").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let one = app.get("/runs/1").json();
    assert_eq!(one["id"], 1);
    assert_eq!(one["status"], "ok");
    assert_eq!(one["summary"], json!({"files": 2, "rows": 4200}));
    assert_eq!(one["files"][0]["path"], "data/markets/btc.csv");
    assert_eq!(one["files"][0]["zeroed"], 12);
    assert_eq!(one["started_at"], "2024-03-01T00:00:00Z");

    app.get("/runs/999999999").assert_problem(404);
    app.get("/runs/abc").assert_problem(400);
    app.get("/runs/0").assert_problem(400);
    app.get("/runs?limit=0").assert_problem(400);
    app.get("/runs?status=ok").assert_problem(400);
}

#[test]
fn unknown_routes_and_wrong_methods_are_problems() {
    let app = App::new();
    app.get("/no/such/route").assert_problem(404);
    app.get("/read/market/extra").assert_problem(404);
    for (method, uri) in [
        (rocket::http::Method::Delete, "/top?limit=1"),
        (rocket::http::Method::Post, "/read/first-chunk"),
        (rocket::http::Method::Put, "/runtasks"),
        (rocket::http::Method::Patch, "/runs/1"),
    ] {
        let reply = Reply::from(app.client.req(method, uri).dispatch());
        let p = reply.assert_problem(405);
        assert!(
            p["detail"].as_str().unwrap().contains(method.as_str()),
            "{p}"
        );
        assert!(reply.header("Allow").is_some(), "{:?}", reply.headers);
    }
    let allow = Reply::from(app.client.delete("/coins").dispatch());
    assert_eq!(allow.header("Allow"), Some("GET, HEAD, POST"));
}

#[test]
fn an_internal_error_is_a_logged_500_that_leaks_nothing() {
    let app = App::new();
    app.exec("DROP TABLE daily");
    let p = app.get("/read/daily").assert_problem(500);
    assert_eq!(
        p["detail"],
        "an internal error occurred; it has been logged"
    );
    assert!(!app.get("/read/daily").body.contains("relation"));
}

#[test]
fn an_unreachable_database_is_503_with_retry_after_and_live_stays_up() {
    // Nothing listens on port 1.
    let client = rocket::local::blocking::Client::tracked(coinflow_api::rocket(
        coinflow_api::ApiConfig::new("postgres://coinflow:secret@127.0.0.1:1/coinflow"),
    ))
    .unwrap();
    for uri in [
        "/read/first-chunk",
        "/read/coins?size=3",
        "/top?limit=3",
        "/coins",
        "/exchanges/stats",
        "/runs",
        "/runs/1",
        "/health/ready",
    ] {
        let reply = Reply::from(client.get(uri).dispatch());
        let p = reply.assert_problem(503);
        assert_eq!(reply.header("Retry-After"), Some("5"), "{uri}");
        assert!(
            !reply.body.contains("secret") && !reply.body.contains("127.0.0.1"),
            "{p}"
        );
    }
    let post = Reply::from(
        client
            .post("/runtasks")
            .header(rocket::http::ContentType::JSON)
            .body("{\"coins\":[\"bitcoin\"]}")
            .dispatch(),
    );
    post.assert_problem(503);
    assert_eq!(
        Reply::from(client.get("/health/live").dispatch())
            .status
            .code,
        200
    );
    // Validation happens before the database is needed.
    Reply::from(client.get("/read/first-chunk?size=0").dispatch()).assert_problem(400);
}

/// The OpenAPI path of a Rocket route path: `<name>` → `{name}`.
fn openapi_path(route: &str) -> String {
    route
        .split('/')
        .map(|s| {
            if s.starts_with('<') && s.ends_with('>') {
                format!(
                    "{{{}}}",
                    s.trim_start_matches('<')
                        .trim_end_matches('>')
                        .trim_end_matches("..")
                )
            } else {
                s.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn openapi_describes_every_route_and_docs_work_offline() {
    let app = App::new();
    let reply = app.get("/openapi.json");
    assert_eq!(reply.status.code, 200);
    let doc: Value = reply.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "coinflow API");
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for route in app.client.rocket().routes() {
        let path = route.uri.path().to_string();
        let key = if path.starts_with("/docs") {
            "/docs".to_string()
        } else {
            openapi_path(&path)
        };
        let method = route.method.as_str().to_lowercase();
        let entry = paths
            .get(&key)
            .unwrap_or_else(|| panic!("{key} ({path}) missing from the OpenAPI paths"));
        assert!(
            entry.get(&method).is_some(),
            "{method} {key} is not documented"
        );
        checked += 1;
    }
    assert!(checked >= 15, "{checked} routes");
    for (path, method) in [
        ("/read/{dataset}", "get"),
        ("/runtasks", "post"),
        ("/coins", "post"),
        ("/coins", "get"),
        ("/top", "get"),
    ] {
        assert!(
            paths[path][method]["responses"].as_object().unwrap().len() >= 2,
            "{method} {path}"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }

    let redirect = app.get("/docs");
    let page = if redirect.status.code == 200 {
        redirect
    } else {
        app.get(redirect.header("Location").unwrap())
    };
    assert_eq!(page.status.code, 200);
    assert!(page.header("Content-Type").unwrap().contains("html"));
    assert!(
        page.body.contains("swagger"),
        "{}",
        &page.body[..200.min(page.body.len())]
    );
    let config = app.get("/docs/swagger-initializer.js");
    assert_eq!(config.status.code, 200);
    assert!(config.body.contains("/openapi.json"));
    let bundle = app.get("/docs/swagger-ui-bundle.js");
    assert_eq!(bundle.status.code, 200, "the UI's assets are compiled in");
    assert!(bundle.body.len() > 100_000);
    app.get("/docs/no-such-asset.js").assert_problem(404);
}
