//! Reporting: the per-file and per-run summary (like pgloader's), its JSON form for
//! `--summary`, and live progress on a terminal.

use coinflow_shared::ledger::{FileStatus, RunStatus};
use coinflow_shared::models::Counts;
use serde::Serialize;
use std::io::IsTerminal;
use std::time::Duration;

/// One input file's outcome. Its counts are reached through it (`report.loaded`):
/// they are what a file report is about.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileReport {
    pub path: String,
    pub dataset: Option<String>,
    pub status: FileStatus,
    pub reason: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub seconds: f64,
    pub rows_per_sec: f64,
    pub extra_columns: Vec<String>,
    /// Extra columns that hold numbers: kept nowhere, listed so the user sees them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub numeric_extra_columns: Vec<String>,
    /// Coins this file's rows named by symbol and name that no coin list knew, created
    /// as `id (SYMBOL, Name)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inferred_coins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl FileReport {
    /// Marks the file set aside (over its reject budget): none of its rows load; `valid`
    /// rows passed every check and count as set aside.
    pub(crate) fn set_aside(&mut self, valid: i64, reason: String) {
        self.status = FileStatus::SetAside;
        self.reason = Some(reason);
        self.set_aside = valid;
        self.zeroed = 0;
    }
}

impl std::ops::Deref for FileReport {
    type Target = Counts;

    fn deref(&self) -> &Counts {
        &self.counts
    }
}

impl std::ops::DerefMut for FileReport {
    fn deref_mut(&mut self) -> &mut Counts {
        &mut self.counts
    }
}

/// Totals over all files of a run.
pub type Totals = Counts;

/// A whole run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunReport {
    pub run_id: Option<i64>,
    pub status: RunStatus,
    pub files: Vec<FileReport>,
    pub totals: Totals,
    pub seconds: f64,
    /// Served datasets whose data version this run bumped.
    pub changed_datasets: Vec<String>,
    /// Input files this run hashed (sha256); a file recognised by its path and stat is
    /// not hashed.
    pub hashed: u64,
}

impl RunReport {
    pub fn add(&mut self, file: FileReport) {
        self.totals.add(&file.counts);
        self.files.push(file);
    }

    pub fn has_set_aside(&self) -> bool {
        self.files.iter().any(|f| f.status == FileStatus::SetAside)
    }

    /// The status of a run whose files all settled: `partial` when one was set aside.
    pub(crate) fn finished_status(&self) -> RunStatus {
        if self.has_set_aside() {
            RunStatus::Partial
        } else {
            RunStatus::Ok
        }
    }

    /// The pgloader-style table.
    pub fn render(&self) -> String {
        let width = self
            .files
            .iter()
            .map(|f| f.path.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        let mut out = String::new();
        let header = format!(
            "{:<width$}  {:<9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8} {:>11}\n",
            "file",
            "dataset",
            "read",
            "loaded",
            "duplicate",
            "updated",
            "rejected",
            "blank",
            "set_aside",
            "zeroed",
            "seconds",
            "rows/s"
        );
        out.push_str(&header);
        out.push_str(&"-".repeat(header.len().saturating_sub(1)));
        out.push('\n');
        for f in &self.files {
            let name = if f.path.len() > width {
                format!("…{}", &f.path[f.path.len() - (width - 1)..])
            } else {
                f.path.clone()
            };
            let dataset = match f.status {
                FileStatus::Loaded => f.dataset.clone().unwrap_or_default(),
                other => other.to_string(),
            };
            out.push_str(&format!(
                "{:<width$}  {:<9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8.2} {:>11.0}\n",
                name,
                dataset,
                f.read,
                f.loaded,
                f.duplicate,
                f.updated,
                f.rejected,
                f.blank,
                f.set_aside,
                f.zeroed,
                f.seconds,
                f.rows_per_sec
            ));
        }
        out.push_str(&"-".repeat(header.len().saturating_sub(1)));
        out.push('\n');
        let t = &self.totals;
        let rate = if self.seconds > 0.0 {
            t.read as f64 / self.seconds
        } else {
            0.0
        };
        out.push_str(&format!(
            "{:<width$}  {:<9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8.2} {:>11.0}\n",
            "total",
            "",
            t.read,
            t.loaded,
            t.duplicate,
            t.updated,
            t.rejected,
            t.blank,
            t.set_aside,
            t.zeroed,
            self.seconds,
            rate
        ));
        for f in self
            .files
            .iter()
            .filter(|f| matches!(f.status, FileStatus::SetAside | FileStatus::Unrecognized))
        {
            out.push_str(&format!(
                "{}: {} ({})\n",
                f.status.as_str().replace('_', " "),
                f.path,
                f.reason.as_deref().unwrap_or("")
            ));
        }
        for f in self
            .files
            .iter()
            .filter(|f| !f.numeric_extra_columns.is_empty())
        {
            out.push_str(&format!(
                "{}: numeric column(s) not loaded: {}\n",
                f.path,
                f.numeric_extra_columns.join(", ")
            ));
        }
        for f in self.files.iter().filter(|f| !f.inferred_coins.is_empty()) {
            out.push_str(&format!(
                "{}: coin(s) inferred from its rows: {}\n",
                f.path,
                f.inferred_coins.join(", ")
            ));
        }
        let skipped = self
            .files
            .iter()
            .filter(|f| f.status == FileStatus::Skipped)
            .count();
        if skipped > 0 {
            out.push_str(&format!(
                "{skipped} file(s) unchanged since they were loaded: skipped\n"
            ));
        }
        out.push_str(&format!(
            "run {}: {}\n",
            self.run_id.map_or("-".to_string(), |id| id.to_string()),
            self.status
        ));
        out
    }
}

/// Live progress over the bytes of the files to process: a bar with rows/s, bytes and
/// ETA on a terminal, nothing otherwise (plain log lines carry the news).
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(total_bytes: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    pub(crate) fn advance(&self, bytes: u64, rows: u64, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            let secs = elapsed.as_secs_f64();
            if secs > 0.0 {
                bar.set_message(format!("{:.0} rows/s", rows as f64 / secs));
            }
        }
    }

    /// Takes back bytes counted for a file that is read again.
    pub(crate) fn rewind(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.dec(bytes);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
