//! The optional copies of task results under `TASK_OUTPUT_DIR`: one JSON file per task
//! that accepted something (`output_file_<utc timestamp>_<task_run>.json`), written
//! atomically, with the directory bounded by a count and a byte cap: once either is
//! exceeded the oldest files go first. The files of earlier processes count too (the
//! directory is scanned once at start). Files whose names do not look like task files are
//! never touched.

use crate::tasks::TaskReport;
use chrono::Utc;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

const PREFIX: &str = "output_file_";
const SUFFIX: &str = ".json";

/// A record in the original service's shape.
#[derive(Serialize)]
struct OutputRecord<'a> {
    id: &'a str,
    exchanges: &'a [String],
    #[serde(rename = "taskRun")]
    task_run: i64,
}

/// The task files this process knows of, oldest first, and their total size.
#[derive(Default)]
struct Kept {
    files: VecDeque<(String, u64)>,
    bytes: u64,
}

/// The bounded directory of task files.
pub(crate) struct TaskFiles {
    dir: PathBuf,
    max_files: usize,
    max_bytes: u64,
    kept: Mutex<Kept>,
}

/// Whether `name` is a task file: the timestamp in the name is fixed-width UTC, so the
/// names sort by age.
fn is_task_file(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

impl TaskFiles {
    /// Takes stock of the task files already in `dir` (and trims them to the caps).
    pub(crate) fn open(dir: PathBuf, max_files: usize, max_bytes: u64) -> TaskFiles {
        let mut found: Vec<(String, u64)> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let meta = e.metadata().ok()?;
                    (meta.is_file() && is_task_file(&name)).then_some((name, meta.len()))
                })
                .collect(),
            Err(e) => {
                log::warn!(
                    "TASK_OUTPUT_DIR {} cannot be listed ({e}); task files will still be tried",
                    dir.display()
                );
                Vec::new()
            }
        };
        found.sort();
        let bytes = found.iter().map(|(_, size)| size).sum();
        let files = TaskFiles {
            dir,
            max_files,
            max_bytes,
            kept: Mutex::new(Kept {
                files: found.into(),
                bytes,
            }),
        };
        files.trim();
        files
    }

    /// Writes the accepted records of `report`, then removes the oldest files beyond the
    /// caps. A task that accepted nothing writes nothing (`Ok(None)`).
    pub(crate) fn write(&self, report: &TaskReport) -> std::io::Result<Option<PathBuf>> {
        if report.accepted.is_empty() {
            return Ok(None);
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let name = format!("{PREFIX}{stamp}_{}{SUFFIX}", report.task_run);
        let records: Vec<OutputRecord<'_>> = report
            .accepted
            .iter()
            .map(|a| OutputRecord {
                id: &a.id,
                exchanges: &a.exchanges,
                task_run: report.task_run,
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&records)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let target = self.dir.join(&name);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &target).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        if let Ok(mut kept) = self.kept.lock() {
            kept.files.push_back((name, bytes.len() as u64));
            kept.bytes += bytes.len() as u64;
        }
        self.trim();
        Ok(Some(target))
    }

    /// Removes the oldest task files while the count or the bytes exceed the caps (the
    /// newest file always stays).
    fn trim(&self) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        while kept.files.len() > 1
            && (kept.files.len() > self.max_files || kept.bytes > self.max_bytes)
        {
            let Some((name, size)) = kept.files.pop_front() else {
                break;
            };
            kept.bytes = kept.bytes.saturating_sub(size);
            match std::fs::remove_file(self.dir.join(&name)) {
                Ok(()) => log::debug!("task file {name} removed (over the cap)"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("task file {name} over the cap cannot be removed: {e}"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tasks::Accepted;
    use std::path::Path;

    fn report(run: i64, accepted: &[&str]) -> TaskReport {
        TaskReport {
            task_run: run,
            accepted: accepted
                .iter()
                .map(|id| Accepted {
                    id: id.to_string(),
                    exchanges: vec!["binance".into()],
                })
                .collect(),
            duplicates: Vec::new(),
            invalid: vec!["nope".into()],
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_task_that_accepted_nothing_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::open(dir.path().into(), 10, 1 << 20);
        assert_eq!(files.write(&report(1, &[])).unwrap(), None);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn the_oldest_files_go_first_beyond_the_count_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a task file").unwrap();
        let files = TaskFiles::open(dir.path().into(), 3, 1 << 20);
        for run in 1..=5 {
            files.write(&report(run, &["bitcoin"])).unwrap();
        }
        let kept = names(dir.path());
        assert_eq!(kept.len(), 4, "{kept:?}");
        assert_eq!(kept[0], "notes.txt", "other files are left alone");
        for (name, run) in kept[1..].iter().zip(3..) {
            assert!(name.ends_with(&format!("_{run}.json")), "{kept:?}");
        }
    }

    #[test]
    fn the_byte_cap_counts_files_left_by_an_earlier_process() {
        let dir = tempfile::tempdir().unwrap();
        let first = TaskFiles::open(dir.path().into(), 100, 1 << 20);
        first.write(&report(1, &["bitcoin"])).unwrap();
        first.write(&report(2, &["ethereum"])).unwrap();
        let size = std::fs::metadata(dir.path().join(&names(dir.path())[0]))
            .unwrap()
            .len();
        // Room for two files of this size: the next write pushes the oldest out.
        let second = TaskFiles::open(dir.path().into(), 100, 2 * size + 1);
        assert_eq!(names(dir.path()).len(), 2);
        second.write(&report(3, &["cardano"])).unwrap();
        let kept = names(dir.path());
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].ends_with("_2.json") && kept[1].ends_with("_3.json"));
    }
}
