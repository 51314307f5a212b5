//! Where fetched data lands: canonical CSV files under `<data dir>/fetched/SOURCE/`,
//! written under a temporary name (which the ETL's `*.csv` scan ignores) and renamed
//! into place, so a load never sees half a file; the resume state of paged walks; and
//! the archive `fetched/loaded/` that loaded files move to.
//!
//! It writes files and nothing else: no HTTP, no database.

use crate::report::RunReport;
use chrono::{DateTime, Utc};
use coinflow_shared::ledger::FileStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::extract::{ARCHIVE_DIR, FETCHED_DIR};
/// The two columns every fetched row ends with: where in the response it came from.
pub const ORIGIN_COLUMNS: [&str; 2] = ["fetch_page", "fetch_item"];

/// The columns of a listings file (one row: coin, market snapshot and rank).
/// `rank_source` names the provider whose rank the row carries.
pub const LISTINGS_HEADER: [&str; 9] = [
    "id",
    "symbol",
    "name",
    "rank",
    "price",
    "market_cap",
    "volume_24h",
    "timestamp",
    "rank_source",
];

/// The UTC stamp in fetched file names: `20261206T201500Z`.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses a [`stamp`].
pub fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

/// Rows for one CSV file, kept in memory until the fetch ends (a few MB at most).
#[derive(Debug, Clone)]
pub struct CsvSink {
    /// File name without directory and extension, e.g. `markets-20261206T201500Z`.
    pub stem: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Write the file even without rows (a fetch that found nothing is still a fact).
    pub keep_empty: bool,
}

impl CsvSink {
    pub fn new(stem: impl Into<String>, header: &[&'static str]) -> CsvSink {
        let mut header = header.to_vec();
        header.extend(ORIGIN_COLUMNS);
        CsvSink {
            stem: stem.into(),
            header,
            rows: Vec::new(),
            keep_empty: false,
        }
    }

    /// Adds a row: `cells` in header order, then the page and item it came from.
    pub fn push(&mut self, mut cells: Vec<String>, page: u32, item: usize) {
        cells.push(page.to_string());
        cells.push(item.to_string());
        self.rows.push(cells);
    }
}

/// The directory of a source's fetched files.
pub fn source_dir(data_dir: &Path, source: &str) -> PathBuf {
    data_dir.join(FETCHED_DIR).join(source)
}

/// Writes `sink` as `<dir>/<stem>.csv` atomically (never replacing an existing file:
/// a second fetch within the same second gets `-2`, `-3`, …). Returns the path, or
/// `None` for an empty sink that need not be kept.
pub fn write_csv(dir: &Path, sink: &CsvSink) -> io::Result<Option<PathBuf>> {
    if sink.rows.is_empty() && !sink.keep_empty {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)?;
    // Never reuse a name, pending or archived: each fetch keeps its own file.
    let archive = match (dir.parent(), dir.file_name()) {
        (Some(fetched), Some(source)) => Some(fetched.join(ARCHIVE_DIR).join(source)),
        _ => None,
    };
    let taken = |name: &str| {
        dir.join(name).exists() || archive.as_ref().is_some_and(|a| a.join(name).exists())
    };
    let mut name = format!("{}.csv", sink.stem);
    let mut n = 2;
    while taken(&name) {
        name = format!("{}-{n}.csv", sink.stem);
        n += 1;
    }
    let target = dir.join(name);
    let temp = dir.join(format!(".{}.csv.part", sink.stem));
    {
        let file = std::fs::File::create(&temp)?;
        let mut writer = csv::Writer::from_writer(io::BufWriter::new(file));
        writer.write_record(&sink.header).map_err(csv_io)?;
        for row in &sink.rows {
            writer.write_record(row).map_err(csv_io)?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        file.into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?
            .sync_all()?;
    }
    std::fs::rename(&temp, &target)?;
    Ok(Some(target))
}

fn csv_io(e: csv::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes bytes to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.part"));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

/// Where paged walks stopped: walk key (`markets`, `tickers:bitcoin`, …) → the next page
/// to fetch. Kept in `fetched/SOURCE/.resume.json`; a walk that finishes is removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeState {
    pub walks: BTreeMap<String, u32>,
}

impl ResumeState {
    fn path(data_dir: &Path, source: &str) -> PathBuf {
        source_dir(data_dir, source).join(".resume.json")
    }

    /// The saved state; a missing or unreadable file is an empty state (logged).
    pub fn load(data_dir: &Path, source: &str) -> ResumeState {
        let path = Self::path(data_dir, source);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::warn!(
                    "ignoring unreadable resume state {}: {e}; walks start at page 1",
                    path.display()
                );
                ResumeState::default()
            }),
            Err(_) => ResumeState::default(),
        }
    }

    pub fn save(&self, data_dir: &Path, source: &str) -> io::Result<()> {
        let path = Self::path(data_dir, source);
        if self.walks.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&path, &json)
    }
}

/// True for a path (relative to the data directory, `/`-separated) inside the archive.
pub fn is_archived(name: &str) -> bool {
    name.starts_with(&format!("{FETCHED_DIR}/{ARCHIVE_DIR}/"))
}

/// Moves the fetched files that `report` loaded (or found already loaded) to
/// `fetched/loaded/`, keeping their sub-path. Files set aside or unrecognized stay, so
/// the next run retries them. Returns the moved files' new paths.
pub fn archive_loaded(data_dir: &Path, report: &RunReport) -> io::Result<Vec<PathBuf>> {
    let prefix = format!("{FETCHED_DIR}/");
    let mut moved = Vec::new();
    for file in &report.files {
        let done = matches!(file.status, FileStatus::Loaded | FileStatus::Skipped);
        let Some(rest) = file.path.strip_prefix(&prefix) else {
            continue;
        };
        if !done || is_archived(&file.path) {
            continue;
        }
        let from = data_dir.join(&file.path);
        if !from.is_file() {
            continue;
        }
        let mut to = data_dir.join(FETCHED_DIR).join(ARCHIVE_DIR).join(rest);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // An archived file is never replaced (a name reused by hand keeps both).
        let original = to.clone();
        let mut n = 2;
        while to.exists() {
            let stem = original
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            to = original.with_file_name(format!("{stem}-archived-{n}.csv"));
            n += 1;
        }
        std::fs::rename(&from, &to)?;
        moved.push(to);
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let at = parse_stamp("20261206T201500Z");
        assert_eq!(at.map(stamp).as_deref(), Some("20261206T201500Z"));
        assert_eq!(parse_stamp("2026-12-06"), None);
    }

    #[test]
    fn a_name_already_archived_is_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join(FETCHED_DIR).join("coingecko");
        let archived = dir
            .path()
            .join(FETCHED_DIR)
            .join(ARCHIVE_DIR)
            .join("coingecko");
        std::fs::create_dir_all(&archived).expect("mkdir");
        std::fs::write(archived.join("markets-x.csv"), "old").expect("write");
        let mut sink = CsvSink::new("markets-x", &["id"]);
        sink.push(vec!["bitcoin".into()], 1, 0);
        let written = write_csv(&source, &sink).expect("written");
        assert_eq!(written, Some(source.join("markets-x-2.csv")));
        assert_eq!(
            std::fs::read_to_string(archived.join("markets-x.csv"))
                .ok()
                .as_deref(),
            Some("old")
        );
    }

    #[test]
    fn archived_paths_are_recognised() {
        assert!(is_archived("fetched/loaded/coingecko/markets-x.csv"));
        assert!(!is_archived("fetched/coingecko/markets-x.csv"));
        assert!(!is_archived("loaded/x.csv"));
    }
}
