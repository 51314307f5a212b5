//! `kill -9` in the middle of a large load leaves the data tables and `etl_files`
//! exactly as they were before the run; the next run marks the killed run abandoned and
//! completes.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SNAPSHOT: &str = "SELECT md5(coalesce(string_agg(t, '|' ORDER BY t), '')) FROM (
    SELECT m::text AS t FROM market m UNION ALL SELECT r::text FROM rankings r
    UNION ALL SELECT c::text FROM coins c UNION ALL SELECT d::text FROM daily d
    UNION ALL SELECT f.path || f.sha256 || f.status FROM etl_files f
    UNION ALL SELECT v.dataset || v.version FROM data_versions v) x";

#[test]
fn kill_9_mid_load_leaves_everything_as_before_and_the_next_run_completes() {
    let fx = Fixture::new();
    // A first, small run so that "before" is not empty; `market` stays empty, so the big
    // load is a first load, which drops market's primary key too.
    fx.write("base/coins.csv", COINS);
    fx.run();
    assert_eq!(fx.count("SELECT count(*) FROM market"), 0);
    let before = fx.text(SNAPSHOT);
    let schema_before = fx.text(&schema_of("market"));
    let runs_before = fx.count("SELECT count(*) FROM etl_runs");

    generate_hourly(&fx.path().join("big"), 150, 120, 10, 3);

    let mut child = Command::new(env!("CARGO_BIN_EXE_coinflow-etl"))
        .args(["run", "--data-dir"])
        .arg(fx.path())
        .env("DATABASE_URL", fx.db.url())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the ETL");

    // Wait until the big markets file is being copied (a bulk load into an empty market:
    // its primary key, foreign key and secondary indexes are dropped at this point), then
    // kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    let copying = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query ILIKE 'COPY%market%'",
        fx.db.name()
    );
    loop {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the ETL finished before it could be killed"
        );
        if fx.count(&copying) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ETL never reached the COPY stage"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // The server notices the lost client and rolls its transaction back.
    let others = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        fx.db.name()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while fx.count(&others) > 0 {
        assert!(
            Instant::now() < deadline,
            "the killed run's backend never went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        fx.text(SNAPSHOT),
        before,
        "data and etl_files are exactly as before the run"
    );
    assert_eq!(
        fx.text(&schema_of("market")),
        schema_before,
        "market's indexes and constraints are back"
    );
    assert!(schema_before
        .as_deref()
        .is_some_and(|s| s.contains("market_pkey PRIMARY KEY") && s.contains("FOREIGN KEY")));
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_runs WHERE status = 'running'"),
        1
    );

    let report = fx.run();
    assert_eq!(report.status, "ok");
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_runs WHERE status = 'abandoned'"),
        1
    );
    assert_eq!(fx.count("SELECT count(*) FROM etl_runs"), runs_before + 2);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 150 * 120 * 24);
}
