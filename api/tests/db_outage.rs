//! The database goes away under the running API and comes back: requests get 503 with
//! `Retry-After` meanwhile, and the API serves again without a restart.
//!
//! Needs its own PostgreSQL cluster (it must stop the server): `initdb` and `pg_ctl` from
//! `PG_BINDIR` or `PATH`, run as the `postgres` user when the tests run as root. The shared
//! server of `DATABASE_URL` is never touched.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{http, serve};
use diesel::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn tool(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return Path::new(&dir).join(name);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found in PG_BINDIR or PATH: this test starts its own PostgreSQL cluster"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn new() -> Cluster {
        let dir = std::env::temp_dir().join(format!("coinflow-api-outage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = running_as_root();
        if as_postgres {
            // initdb refuses root: the cluster belongs to the postgres user.
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cluster = Cluster {
            data: dir.join("data"),
            dir,
            port,
            as_postgres,
        };
        cluster.run(
            &tool("initdb"),
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.start();
        cluster
    }

    fn run(&self, program: &Path, args: &[&str]) {
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args)
                .output()
                .unwrap()
        } else {
            Command::new(program).args(args).output().unwrap()
        };
        assert!(
            output.status.success(),
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            &tool("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self) {
        self.run(
            &tool("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = tool("pg_ctl");
        let args = [
            "-D",
            self.data.to_str().unwrap_or_default(),
            "-m",
            "immediate",
            "stop",
        ];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&pg_ctl)
                .args(args)
                .output()
        } else {
            Command::new(&pg_ctl).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn get(port: u16, path: &str) -> (u16, String, String) {
    http(port, "GET", path, None, b"")
}

#[test]
fn the_api_answers_503_while_the_database_is_down_and_recovers_without_a_restart() {
    let cluster = Cluster::new();
    {
        let mut conn = PgConnection::establish(&cluster.url()).unwrap();
        coinflow_shared::db::run_migrations(&mut conn).unwrap();
        common::fill(&mut conn);
    }
    let mut config = coinflow_api::ApiConfig::new(cluster.url());
    config.cursor_secret = Some(b"outage".to_vec());
    let port = serve(config);

    let (status, _, body) = get(port, "/read/first-chunk?size=5");
    assert_eq!(status, 200, "{body}");
    let cursor = serde_json::from_str::<serde_json::Value>(&body).unwrap()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(port, "/health/ready").0, 200);

    cluster.stop();

    for path in [
        "/read/first-chunk",
        &format!("/read/next-chunk?cursor={cursor}"),
        "/top?limit=3",
        "/health/ready",
    ] {
        let (status, head, body) = get(port, path);
        assert_eq!(status, 503, "{path}: {body}");
        assert!(head.to_lowercase().contains("retry-after: 5"), "{head}");
        assert!(
            head.to_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(!body.to_lowercase().contains("postgres"), "{body}");
    }
    let (status, _, _) = http(
        port,
        "POST",
        "/runtasks",
        Some("application/json"),
        b"{\"coins\":[\"coin-001\"]}",
    );
    assert_eq!(status, 503);
    assert_eq!(get(port, "/health/live").0, 200);

    cluster.start();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = get(port, "/read/first-chunk?size=5");
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} 30 s after the database came back: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Pooled connections from before the outage are replaced, not reused broken.
    for _ in 0..20 {
        let (status, _, body) = get(port, &format!("/read/next-chunk?cursor={cursor}"));
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(get(port, "/health/ready").0, 200);
    let (status, _, body) = http(
        port,
        "POST",
        "/runtasks",
        Some("application/json"),
        b"{\"coins\":[\"coin-001\"]}",
    );
    assert_eq!(status, 200, "{body}");
}
