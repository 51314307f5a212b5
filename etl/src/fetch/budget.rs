//! The monthly call budget of each source: calls made this month are counted in
//! `fetched/.budget.json` (so a restarted `watch` keeps counting), and the interval
//! between fetch cycles is derived from what is left: the remaining calls spread
//! evenly over the rest of the month.
//!
//! It reads and writes that one file and nothing else.

use super::output::FETCHED_DIR;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Calls made per source in one calendar month (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetBook {
    /// `2026-12`.
    pub month: String,
    pub calls: BTreeMap<String, u64>,
}

fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FETCHED_DIR).join(".budget.json")
}

impl BudgetBook {
    /// This month's book; a book of another month (or none, or an unreadable one)
    /// starts the month at zero.
    pub fn load(data_dir: &Path, now: DateTime<Utc>) -> BudgetBook {
        let month = month_of(now);
        let saved = std::fs::read(path(data_dir))
            .ok()
            .and_then(|b| serde_json::from_slice::<BudgetBook>(&b).ok());
        match saved {
            Some(book) if book.month == month => book,
            _ => BudgetBook {
                month,
                calls: BTreeMap::new(),
            },
        }
    }

    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let target = path(data_dir);
        let dir = data_dir.join(FETCHED_DIR);
        std::fs::create_dir_all(&dir)?;
        let temp = dir.join(".budget.json.part");
        std::fs::write(
            &temp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&temp, target)
    }

    pub fn used(&self, source: &str) -> u64 {
        self.calls.get(source).copied().unwrap_or(0)
    }

    pub fn add(&mut self, source: &str, calls: u64) {
        *self.calls.entry(source.to_string()).or_insert(0) += calls;
    }
}

/// Time left until the next month starts (UTC).
pub fn rest_of_month(now: DateTime<Utc>) -> Duration {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next = Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (next - now).to_std().unwrap_or(Duration::ZERO)
}

/// The wait between cycles that makes `calls_per_cycle` calls a cycle last until the
/// month ends with `left` calls: the rest of the month when not even one cycle fits.
pub fn interval_for(left: u64, calls_per_cycle: u64, now: DateTime<Utc>) -> Duration {
    let rest = rest_of_month(now);
    if calls_per_cycle == 0 {
        return Duration::ZERO;
    }
    let cycles = left / calls_per_cycle;
    if cycles == 0 {
        return rest;
    }
    rest / u32::try_from(cycles).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn the_interval_spreads_what_is_left_over_the_rest_of_the_month() {
        let now = at("2026-12-22T00:00:00Z");
        assert_eq!(rest_of_month(now), Duration::from_secs(10 * 86_400));
        // 1 000 calls left, 10 a cycle: 100 cycles in 10 days, one every 2.4 h.
        assert_eq!(interval_for(1_000, 10, now), Duration::from_secs(8_640));
        // Not even one cycle left: wait for the next month.
        assert_eq!(interval_for(5, 10, now), Duration::from_secs(10 * 86_400));
    }

    #[test]
    fn a_new_month_starts_the_book_at_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut book = BudgetBook::load(dir.path(), at("2026-11-30T23:00:00Z"));
        book.add("coingecko", 70);
        book.add("coingecko", 5);
        assert!(book.save(dir.path()).is_ok());
        let same = BudgetBook::load(dir.path(), at("2026-11-30T23:59:00Z"));
        assert_eq!(same.used("coingecko"), 75);
        let next = BudgetBook::load(dir.path(), at("2026-12-01T00:01:00Z"));
        assert_eq!(next.used("coingecko"), 0);
        assert_eq!(next.month, "2026-12");
    }
}
