//! Reading a file through validation: records come from [`crate::extract::Records`],
//! each is judged by a [`Validator`] and becomes a typed row in a [`Batch`] or a
//! [`Rejection`]; full batches go to the caller's `flush` (a load path's COPY, or
//! nothing for `check`). Takes an input file and the coins and people rows resolve
//! against; returns the file's partial report, its rejects and how many rows passed.
//! Never touches the database: what a batch becomes is the caller's business.

use crate::extract::{self, ExtractError, InputFile, Records};
use crate::options::RunOptions;
use crate::report::{FileReport, Progress};
use crate::rows::{Batch, Rejection};
use crate::sanitize;
use crate::validate::{Known, Validator};
use coinflow_shared::dataset::Detected;
use coinflow_shared::models::Counts;
use std::borrow::Cow;
use std::time::Instant;

/// Rows validated between two COPY flushes to staging.
const FLUSH_ROWS: usize = 100_000;

/// A file after validation: its partial report (read, rejected, blank, zeroed), its
/// rejects and how many rows passed validation.
pub(crate) struct Scanned {
    pub(crate) report: FileReport,
    pub(crate) rejects: Vec<Rejection>,
    pub(crate) valid: i64,
    /// (line, count) of valid rows with zeroes stored as missing.
    pub(crate) zeroed_lines: Vec<(i64, i64)>,
}

/// What every file of a run reads with: the run's options (the date order), its progress
/// and when it started.
#[derive(Clone, Copy)]
pub(crate) struct Scanner<'a> {
    pub(crate) opts: &'a RunOptions,
    pub(crate) progress: &'a Progress,
    pub(crate) started: Instant,
}

/// Validates every record of a file, handing full batches to `flush`. When `flush`
/// returns false (it could not keep the rows), reading stops there and the result
/// describes only the part read: the caller discards it.
///
/// Reading and validating run on a thread of their own, one batch ahead of `flush`, so
/// parsing the next rows overlaps with the database storing the last ones.
impl Scanner<'_> {
    pub(crate) fn scan(
        &self,
        file: &InputFile,
        detected: Detected,
        header: Vec<String>,
        known: &mut Known,
        mut flush: impl FnMut(&Batch) -> bool,
    ) -> Result<Scanned, ExtractError> {
        let (progress, run_started) = (self.progress, self.started);
        let (ts_order, added_order) = match self.opts.date_order {
            Some(order) => (order, order),
            None => extract::date_orders(&file.path, &detected)?,
        };
        let validator = Validator::new(detected, header, ts_order, added_order);
        let (batches, received) = std::sync::mpsc::sync_channel::<Batch>(1);
        std::thread::scope(|scope| {
            let reader = scope
                .spawn(move || read_file(file, validator, known, progress, run_started, batches));
            while let Ok(batch) = received.recv() {
                if !flush(&batch) {
                    break;
                }
            }
            // The reader's next send fails once nobody receives: it stops there.
            drop(received);
            match reader.join() {
                Ok(scanned) => scanned,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// The reading half of [`Scanner::scan`]: validates records and sends full batches until
/// the file ends or the receiver is gone.
fn read_file(
    file: &InputFile,
    mut validator: Validator,
    known: &mut Known,
    progress: &Progress,
    run_started: Instant,
    batches: std::sync::mpsc::SyncSender<Batch>,
) -> Result<Scanned, ExtractError> {
    let extra = validator.extra_columns().to_vec();
    let dataset = validator.dataset();
    let mut records = Records::open(&file.path)?;
    let _ = records.header()?;
    let mut batch = Batch::default();
    let mut rejects = Vec::new();
    let mut read = 0i64;
    let mut blank = 0i64;
    let mut valid = 0i64;
    let mut reported_bytes = 0u64;
    let mut stopped = false;
    loop {
        let next = records.next_record();
        let (line, record) = match next {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(ExtractError::Csv { source, path }) => {
                // A record the CSV reader cannot frame (e.g. an unterminated quote at
                // the end of the file): everything from there on is one rejected row.
                read += 1;
                let line = source.position().map_or(0, |p| p.line() as i64);
                rejects.push(Rejection {
                    line,
                    column: None,
                    raw_value: None,
                    reason: format!("malformed CSV: {source}"),
                    raw_line: String::new(),
                });
                log::warn!("{}: malformed CSV at line {line}", path.display());
                break;
            }
            Err(ExtractError::RecordTooLong { line, .. }) => {
                read += 1;
                rejects.push(Rejection {
                    line,
                    column: None,
                    raw_value: None,
                    reason: format!("record too long (over {} bytes)", extract::MAX_RECORD_BYTES),
                    raw_line: String::new(),
                });
                log::warn!(
                    "{}: the record of line {line} is over {} bytes: rejected, reading on at line {}",
                    file.name,
                    extract::MAX_RECORD_BYTES,
                    line + 1
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        read += 1;
        if is_blank(record) {
            blank += 1;
        } else {
            match validator.validate(known, line, record, &mut batch) {
                Ok(()) => valid += 1,
                Err(mut rejection) => {
                    // Kept in memory until the file is stored, and in etl_rejects after:
                    // bounded.
                    if let Cow::Owned(cut) = sanitize::truncate_raw(&rejection.raw_line) {
                        rejection.raw_line = cut;
                    }
                    if let Some(Cow::Owned(cut)) =
                        rejection.raw_value.as_deref().map(sanitize::truncate_raw)
                    {
                        rejection.raw_value = Some(cut);
                    }
                    rejects.push(rejection);
                }
            }
        }
        if batch.len() >= FLUSH_ROWS {
            if batches.send(std::mem::take(&mut batch)).is_err() {
                stopped = true;
                break;
            }
            let bytes = records.bytes_read();
            progress.advance(
                bytes - reported_bytes,
                FLUSH_ROWS as u64,
                run_started.elapsed(),
            );
            reported_bytes = bytes;
        }
    }
    if !stopped && !batch.is_empty() {
        // A failed send means the receiver stopped: the result is discarded anyway.
        let _ = batches.send(batch);
    }
    progress.advance(
        file.size.saturating_sub(reported_bytes),
        0,
        run_started.elapsed(),
    );
    let report = FileReport {
        path: file.name.clone(),
        dataset: Some(dataset.name().to_string()),
        counts: Counts {
            read,
            rejected: rejects.len() as i64,
            blank,
            zeroed: validator.zeroed as i64,
            ..Counts::default()
        },
        extra_columns: extra,
        numeric_extra_columns: validator.numeric_extra_columns(),
        ..FileReport::default()
    };
    Ok(Scanned {
        report,
        rejects,
        valid,
        zeroed_lines: std::mem::take(&mut validator.zeroed_lines),
    })
}

/// A row whose every cell is empty (spreadsheet padding): not data.
fn is_blank(record: &csv::ByteRecord) -> bool {
    record
        .iter()
        .all(|field| field.iter().all(u8::is_ascii_whitespace))
}
