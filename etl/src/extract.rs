//! Extraction: finds the input files (every `*.csv` under the data directory,
//! recursively, sorted by path), fingerprints them (sha256, size), reads their header
//! and yields their raw records with line numbers. It reads files and nothing else.
//!
//! A record longer than [`MAX_RECORD_BYTES`] (an unmatched quote makes the rest of a file
//! one record) is not read into memory: [`Records::next_record`] reports it as
//! [`ExtractError::RecordTooLong`] and the next call continues at the line after the one
//! the record started on.

use crate::values::{DateOrder, DateOrderVote};
use coinflow_shared::dataset::{self, Column, Detected};
use csv::{ByteRecord, Position, ReaderBuilder};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// The longest CSV record read (1 MiB), in bytes of the file. Longer records are
/// rejected as `record too long`; a file's memory use stays bounded by about twice this
/// (the record plus the reader's look-ahead).
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// The CSV reader's buffer: how far it may read ahead of the record it parses.
const READ_AHEAD: usize = 1 << 20;

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
    /// A record of more than [`MAX_RECORD_BYTES`]; reading goes on at the next line.
    #[error("{path}: the record starting on line {line} is longer than {MAX_RECORD_BYTES} bytes")]
    RecordTooLong { path: PathBuf, line: i64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An input file found under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputFile {
    pub(crate) path: PathBuf,
    /// The path relative to the data directory, `/`-separated: the file's name in the
    /// ledger and in rejects.
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// The file system's view of the file taken before it was hashed, when it is settled
    /// enough to recognise the file by ([`FileStat::settled`]).
    pub(crate) stat: Option<FileStat>,
}

/// What the file system says of a file: an unchanged re-run recognises a loaded file by
/// its path and this, without re-hashing it. Times in nanoseconds since the epoch, at
/// the file system's full resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileStat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) inode: u64,
}

/// How long after its last change a file's stat is trusted: the kernel stamps mtime and
/// ctime from a coarse clock (a tick of up to ~10 ms), so a same-size rewrite in the tick
/// after the stat was taken would keep the stat. A stat younger than this is not
/// recorded, and the file is hashed again next run.
const SETTLE_NS: i64 = 2_000_000_000;

impl FileStat {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
        }
    }

    /// Whether the file last changed long enough ago ([`SETTLE_NS`]) that a later change
    /// must show in its stat.
    pub(crate) fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.mtime_ns.max(self.ctime_ns) <= now - SETTLE_NS
    }
}

/// The stat of the file at `path`.
pub(crate) fn stat(path: &Path) -> Result<FileStat, ExtractError> {
    Ok(FileStat::of(
        &std::fs::metadata(path).map_err(io_err(path))?,
    ))
}

/// The folder (under the data directory) that fetches write to.
pub const FETCHED_DIR: &str = "fetched";
/// The folder (under [`FETCHED_DIR`]) that loaded fetched files are moved to; the
/// discovery of input files skips it.
pub const ARCHIVE_DIR: &str = "loaded";

/// Every `*.csv` under `dir`, recursively, sorted by relative path; the archive of
/// loaded fetched files (`fetched/loaded/`) is not scanned.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, ExtractError> {
    let mut found = Vec::new();
    let archive = dir.join(FETCHED_DIR).join(ARCHIVE_DIR);
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
pub(crate) fn fingerprint(dir: &Path, path: &Path) -> Result<InputFile, ExtractError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    // Taken before reading: a change during the hash shows as a stat that no longer
    // matches, so the next run hashes again.
    let stat = FileStat::of(&file.metadata().map_err(io_err(path))?);
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
        stat: Some(stat).filter(FileStat::settled),
    })
}

/// `path` relative to `dir`, with `/` separators.
pub(crate) fn relative_name(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The file under the CSV reader, refusing to hand out bytes beyond a limit (the current
/// record's start plus the cap and the look-ahead): the parser then fails with an I/O
/// error instead of growing its record without bound, and `tripped` says why.
struct Capped {
    inner: BufReader<File>,
    offset: u64,
    limit: Arc<AtomicU64>,
    tripped: Arc<AtomicBool>,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let limit = self.limit.load(Ordering::Relaxed);
        if self.offset >= limit && !buf.is_empty() {
            self.tripped.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("record too long"));
        }
        let room = usize::try_from(limit - self.offset).unwrap_or(usize::MAX);
        let take = buf.len().min(room);
        let n = self.inner.read(&mut buf[..take])?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Seek for Capped {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.offset = self.inner.seek(pos)?;
        Ok(self.offset)
    }
}

/// A CSV reader over a file: records of any field count (validated per row), quoted
/// newlines, CRLF, a UTF-8 BOM; records up to [`MAX_RECORD_BYTES`].
pub(crate) struct Records {
    reader: csv::Reader<Capped>,
    path: PathBuf,
    record: ByteRecord,
    limit: Arc<AtomicU64>,
    tripped: Arc<AtomicBool>,
}

/// What a file's first record says.
#[derive(Debug, Clone)]
pub(crate) enum Header {
    Empty,
    /// The header cells as written (BOM removed), or the reason they are not text.
    Cells(Vec<String>),
    NotUtf8,
}

impl Records {
    pub(crate) fn open(path: &Path) -> Result<Records, ExtractError> {
        let file = File::open(path).map_err(io_err(path))?;
        let limit = Arc::new(AtomicU64::new(0));
        let tripped = Arc::new(AtomicBool::new(false));
        let capped = Capped {
            inner: BufReader::with_capacity(1 << 20, file),
            offset: 0,
            limit: limit.clone(),
            tripped: tripped.clone(),
        };
        let reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(READ_AHEAD)
            .from_reader(capped);
        Ok(Records {
            reader,
            path: path.to_path_buf(),
            record: ByteRecord::new(),
            limit,
            tripped,
        })
    }

    /// Reads the header (the first record).
    pub(crate) fn header(&mut self) -> Result<Header, ExtractError> {
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

    /// The next record and the line it starts on. A record longer than
    /// [`MAX_RECORD_BYTES`] is an [`ExtractError::RecordTooLong`]; the call after it goes
    /// on with the line after the one that record started on.
    pub(crate) fn next_record(&mut self) -> Result<Option<(i64, &ByteRecord)>, ExtractError> {
        let start = self.reader.position().clone();
        self.limit.store(
            start.byte() + MAX_RECORD_BYTES + READ_AHEAD as u64,
            Ordering::Relaxed,
        );
        let read = self.reader.read_byte_record(&mut self.record);
        if self.tripped.swap(false, Ordering::Relaxed) {
            self.skip_line_of(&start)?;
            return Err(self.too_long(&start));
        }
        let more = read.map_err(|source| ExtractError::Csv {
            path: self.path.clone(),
            source,
        })?;
        if !more {
            return Ok(None);
        }
        if self.reader.position().byte() - start.byte() > MAX_RECORD_BYTES {
            // Parsed within the look-ahead, but over the cap all the same (and perhaps
            // an unmatched quote that ran to the end of the file).
            self.skip_line_of(&start)?;
            return Err(self.too_long(&start));
        }
        let line = self.record.position().map_or(0, |p| p.line()) as i64;
        Ok(Some((line, &self.record)))
    }

    fn too_long(&self, start: &Position) -> ExtractError {
        ExtractError::RecordTooLong {
            path: self.path.clone(),
            line: start.line() as i64,
        }
    }

    /// Puts the reader at the start of the line after `start`'s line (or at the end of
    /// the file), found by scanning the raw bytes a buffer at a time.
    fn skip_line_of(&mut self, start: &Position) -> Result<(), ExtractError> {
        let mut file = File::open(&self.path).map_err(io_err(&self.path))?;
        let end = file.metadata().map_err(io_err(&self.path))?.len();
        file.seek(SeekFrom::Start(start.byte()))
            .map_err(io_err(&self.path))?;
        let mut buffer = vec![0u8; 1 << 16];
        let mut offset = start.byte();
        let next = loop {
            let n = file.read(&mut buffer).map_err(io_err(&self.path))?;
            if n == 0 {
                break end;
            }
            if let Some(i) = buffer[..n].iter().position(|&b| b == b'\n') {
                break offset + i as u64 + 1;
            }
            offset += n as u64;
        };
        let mut pos = Position::new();
        pos.set_byte(next)
            .set_line(start.line() + 1)
            .set_record(start.record() + 1);
        self.limit.store(u64::MAX, Ordering::Relaxed);
        self.reader
            .seek_raw(SeekFrom::Start(next), pos)
            .map_err(|source| ExtractError::Csv {
                path: self.path.clone(),
                source,
            })
    }

    /// Bytes consumed so far (for progress).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }
}

/// The date order of the timestamp-typed columns of a file, decided from all of the
/// column's slash dates (SPEC §2). Only files that contain a `/` are scanned.
pub(crate) fn date_orders(
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
    loop {
        let record = match records.next_record() {
            Ok(Some((_, record))) => record,
            Ok(None) => break,
            // Rejected when the file is read; it casts no vote.
            Err(ExtractError::RecordTooLong { .. }) => continue,
            Err(e) => return Err(e),
        };
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
pub(crate) fn detect(header: &[String], path: &Path) -> Option<Detected> {
    let cells: Vec<&str> = header.iter().map(String::as_str).collect();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    dataset::detect(&cells, &file_name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every record of `content` as (line, first field) or the line of a too-long one.
    fn read_all(content: &[u8]) -> Vec<Result<(i64, String), i64>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, content).unwrap();
        let mut records = Records::open(&path).unwrap();
        let mut out = Vec::new();
        loop {
            match records.next_record() {
                Ok(Some((line, r))) => {
                    out.push(Ok((line, String::from_utf8_lossy(&r[0]).to_string())))
                }
                Ok(None) => break,
                Err(ExtractError::RecordTooLong { line, .. }) => out.push(Err(line)),
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    #[test]
    fn an_unmatched_quote_costs_one_record_and_reading_goes_on_at_the_next_line() {
        let filler = "b,2\n".repeat(MAX_RECORD_BYTES as usize / 2);
        let content = format!("h,v\na,1\n\"open,3\n{filler}");
        let got = read_all(content.as_bytes());
        assert_eq!(got[..3], [Ok((1, "h".into())), Ok((2, "a".into())), Err(3)]);
        assert_eq!(got[3], Ok((4, "b".into())));
        assert_eq!(got.len(), 3 + MAX_RECORD_BYTES as usize / 2);
        assert_eq!(got.last(), Some(&Ok((got.len() as i64, "b".into()))));
    }

    #[test]
    fn an_unmatched_quote_within_the_look_ahead_also_resumes_at_the_next_line() {
        // Less than the cap plus the look-ahead after the quote: the parser reaches the
        // end of the file without tripping the limit.
        let filler = "b,2\n".repeat(MAX_RECORD_BYTES as usize * 3 / 8);
        let content = format!("h,v\n\"open,3\n{filler}");
        let got = read_all(content.as_bytes());
        assert_eq!(got[..3], [Ok((1, "h".into())), Err(2), Ok((3, "b".into()))]);
        assert_eq!(got.len(), 2 + MAX_RECORD_BYTES as usize * 3 / 8);
    }

    #[test]
    fn a_long_line_at_the_end_without_a_newline_ends_the_file() {
        let long = "x".repeat(3 * MAX_RECORD_BYTES as usize);
        let got = read_all(format!("h\nok\n{long}").as_bytes());
        assert_eq!(got, [Ok((1, "h".into())), Ok((2, "ok".into())), Err(3)]);
    }

    #[test]
    fn a_record_just_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let at = "y".repeat(MAX_RECORD_BYTES as usize - 1); // plus its newline
        let over = "z".repeat(MAX_RECORD_BYTES as usize + 1);
        let got = read_all(format!("{at}\n{over}\nend\n").as_bytes());
        assert_eq!(got, [Ok((1, at)), Err(2), Ok((3, "end".into()))]);
    }
}
