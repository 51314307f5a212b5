//! Test support: fixture directories and queries against a per-test database.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use coinflow_etl::{RunOptions, RunReport};
use coinflow_shared::testdb::TestDb;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use std::path::{Path, PathBuf};

pub struct Fixture {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            db: TestDb::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write fixture");
        path
    }

    pub fn options(&self) -> RunOptions {
        let mut opts = RunOptions::new(self.db.url(), self.dir.path());
        opts.db_wait = std::time::Duration::from_secs(5);
        opts
    }

    pub fn run(&self) -> RunReport {
        let report = coinflow_etl::run(&self.options()).expect("run succeeds");
        self.assert_rows_accounted(&report);
        report
    }

    pub fn run_with(&self, f: impl FnOnce(&mut RunOptions)) -> RunReport {
        let mut opts = self.options();
        f(&mut opts);
        let report = coinflow_etl::run(&opts).expect("run succeeds");
        self.assert_rows_accounted(&report);
        report
    }

    /// Every row read is in exactly one counter (read = loaded + duplicate + updated +
    /// rejected + blank + set_aside), in the report and in every `etl_files` row of the
    /// database; `zeroed` only for loaded files; and the latest evaluation of each file
    /// content counts as many rejects as `etl_rejects` keeps for it (one per line).
    pub fn assert_rows_accounted(&self, report: &RunReport) {
        let mut totals = coinflow_shared::models::Counts::default();
        for f in &report.files {
            assert_eq!(f.unaccounted(), 0, "{}: {:?}", f.path, f.counts);
            if f.status != "loaded" {
                assert_eq!(f.zeroed, 0, "{}: zeroed rows that did not load", f.path);
            }
            totals.add(&f.counts);
        }
        assert_eq!(report.totals, totals, "the totals are the sum of the files");
        assert_eq!(
            self.count(
                "SELECT count(*) FROM etl_files WHERE rows_read <> \
                 loaded + duplicate + updated + rejected + blank + set_aside \
                 OR (status <> 'loaded' AND zeroed <> 0)"
            ),
            0,
            "etl_files rows whose counts do not add up"
        );
        assert_eq!(
            self.count(
                "SELECT count(*) FROM etl_files f WHERE status <> 'unrecognized' \
                 AND run_id = (SELECT max(run_id) FROM etl_files g WHERE g.sha256 = f.sha256) \
                 AND rejected <> (SELECT count(*) FROM etl_rejects r WHERE EXISTS (SELECT 1 FROM etl_files g \
                     WHERE g.run_id = r.run_id AND g.path = r.file AND g.sha256 = f.sha256))"
            ),
            0,
            "files whose rejected count differs from the rejects kept for them"
        );
    }

    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn();
        diesel::sql_query(format!("SELECT ({sql})::int8 AS n"))
            .get_result::<N>(&mut conn)
            .expect("count query")
            .n
    }

    pub fn text(&self, sql: &str) -> Option<String> {
        #[derive(QueryableByName)]
        struct T {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            t: Option<String>,
        }
        let mut conn = self.db.conn();
        diesel::sql_query(format!("SELECT ({sql})::text AS t"))
            .get_result::<T>(&mut conn)
            .expect("text query")
            .t
    }

    /// A float8 value, parsed back exactly (PostgreSQL prints the shortest round-trip form).
    pub fn float(&self, sql: &str) -> Option<f64> {
        self.text(sql).map(|t| t.parse().expect("a float"))
    }

    /// (line, column, reason) of every reject of a file, by line.
    pub fn rejects(&self, path: &str) -> Vec<(i64, Option<String>, String)> {
        use coinflow_shared::schema::etl_rejects::dsl::*;
        let mut conn = self.db.conn();
        etl_rejects
            .filter(file.eq(path))
            .order(line)
            .select((line, column_name, reason))
            .load(&mut conn)
            .expect("rejects")
    }
}

pub const COINS: &str = "id,symbol,name\nbitcoin,BTC,Bitcoin\nethereum,ETH,Ethereum\nthorchain,RUNE,THORChain\nrune-token,RUNE,Rune Token\n";

/// A table's indexes and constraints, as the catalog describes them (a bulk load drops
/// and re-creates some of them): a query for [`Fixture::text`].
pub fn schema_of(table: &str) -> String {
    format!(
        "SELECT string_agg(d, '|' ORDER BY d) FROM (
            SELECT indexdef AS d FROM pg_indexes WHERE tablename = '{table}'
            UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = '{table}'::regclass) x"
    )
}

/// `coinflow-etl generate` output (hourly snapshots, no deliberate errors) in `out`.
pub fn generate_hourly(out: &Path, coins: usize, days: u32, people: usize, seed: u64) {
    coinflow_etl::generate::generate(&coinflow_etl::generate::GenerateOptions {
        coins,
        days,
        people,
        seed,
        out: out.to_path_buf(),
        interval_minutes: 60,
        with_errors: false,
    })
    .expect("generate");
}

/// Every file's counts add up to its rows read (read = loaded + duplicate + updated +
/// rejected + blank + set_aside), whatever its status.
pub fn assert_reconciles(report: &RunReport) {
    for f in &report.files {
        assert_eq!(
            f.unaccounted(),
            0,
            "counts of {} do not add up: {f:?}",
            f.path
        );
    }
}

/// The report of one file of a run.
pub fn file<'a>(report: &'a RunReport, path: &str) -> &'a coinflow_etl::report::FileReport {
    report
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no report for {path}"))
}
