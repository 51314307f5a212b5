//! Extraction: finds the input files (every `*.csv` under the data directory,
//! recursively, sorted by path), fingerprints them (sha256, size), reads their header
//! and yields their raw records with line numbers. It reads files and nothing else.

use crate::values::{DateOrder, DateOrderVote};
use coinflow_shared::dataset::{self, Column, Detected};
use csv::{ByteRecord, ReaderBuilder};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExtractError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse CSV in {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An input file found under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// The path relative to the data directory, `/`-separated: the file's name in the
    /// ledger and in rejects.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Every `*.csv` under `dir`, recursively, sorted by relative path; the archive of
/// loaded fetched files (`fetched/loaded/`) is not scanned.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, ExtractError> {
    let mut found = Vec::new();
    let archive = dir
        .join(crate::fetch::output::FETCHED_DIR)
        .join(crate::fetch::output::ARCHIVE_DIR);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).map_err(io_err(&current))? {
            let entry = entry.map_err(io_err(&current))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err(&path))?;
            if kind.is_dir() {
                if path != archive {
                    stack.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Fingerprints a file.
pub fn fingerprint(dir: &Path, path: &Path) -> Result<InputFile, ExtractError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    let digest = hasher.finalize();
    let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(InputFile {
        path: path.to_path_buf(),
        name: relative_name(dir, path),
        size,
        sha256,
    })
}

/// `path` relative to `dir`, with `/` separators.
pub fn relative_name(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A CSV reader over a file: records of any length (the field count is validated per
/// row), quoted newlines, CRLF, a UTF-8 BOM.
pub struct Records {
    reader: csv::Reader<BufReader<File>>,
    path: PathBuf,
    record: ByteRecord,
}

/// What a file's first record says.
#[derive(Debug, Clone)]
pub enum Header {
    Empty,
    /// The header cells as written (BOM removed), or the reason they are not text.
    Cells(Vec<String>),
    NotUtf8,
}

impl Records {
    pub fn open(path: &Path) -> Result<Records, ExtractError> {
        let file = File::open(path).map_err(io_err(path))?;
        let reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        Ok(Records {
            reader,
            path: path.to_path_buf(),
            record: ByteRecord::new(),
        })
    }

    /// Reads the header (the first record).
    pub fn header(&mut self) -> Result<Header, ExtractError> {
        match self.next_record()? {
            None => Ok(Header::Empty),
            Some((_, record)) => {
                let mut cells = Vec::with_capacity(record.len());
                for field in record.iter() {
                    match std::str::from_utf8(field) {
                        Ok(s) => cells.push(s.trim_start_matches('\u{feff}').to_string()),
                        Err(_) => return Ok(Header::NotUtf8),
                    }
                }
                if cells.len() == 1 && cells[0].trim().is_empty() {
                    return Ok(Header::Empty);
                }
                Ok(Header::Cells(cells))
            }
        }
    }

    /// The next record and the line it starts on.
    pub fn next_record(&mut self) -> Result<Option<(i64, &ByteRecord)>, ExtractError> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|source| ExtractError::Csv {
                path: self.path.clone(),
                source,
            })?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line()) as i64;
        Ok(Some((line, &self.record)))
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }
}

/// The date order of the timestamp-typed columns of a file, decided from all of the
/// column's slash dates (SPEC §2). Only files that contain a `/` are scanned.
pub fn date_orders(
    path: &Path,
    detected: &Detected,
) -> Result<(DateOrder, DateOrder), ExtractError> {
    if !contains_byte(path, b'/')? {
        return Ok((DateOrder::MonthFirst, DateOrder::MonthFirst));
    }
    let ts = detected.index(Column::Timestamp);
    let added = detected.index(Column::DateAdded);
    let (mut ts_vote, mut added_vote) = (DateOrderVote::default(), DateOrderVote::default());
    let mut records = Records::open(path)?;
    let _ = records.header()?;
    while let Some((_, record)) = records.next_record()? {
        for (index, vote) in [(ts, &mut ts_vote), (added, &mut added_vote)] {
            if let Some(value) = index
                .and_then(|i| record.get(i))
                .and_then(|b| std::str::from_utf8(b).ok())
            {
                vote.observe(value);
            }
        }
    }
    Ok((ts_vote.order(), added_vote.order()))
}

fn contains_byte(path: &Path, needle: u8) -> Result<bool, ExtractError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io_err(path))?;
        if n == 0 {
            return Ok(false);
        }
        if buffer[..n].contains(&needle) {
            return Ok(true);
        }
    }
}

/// Recognises a header; `None` when it fits no dataset.
pub fn detect(header: &[String], path: &Path) -> Option<Detected> {
    let cells: Vec<&str> = header.iter().map(String::as_str).collect();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    dataset::detect(&cells, &file_name)
}
