//! What a run is asked to do: the options `run` and `check` take (SPEC §5), from the
//! command line or a test. Read by every stage that a flag steers; never changed by one.

use crate::values::DateOrder;
use std::path::PathBuf;
use std::time::Duration;

/// The options of one run (`coinflow-etl run`) or check (`coinflow-etl check`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub database_url: String,
    pub db_wait: Duration,
    pub data_dir: PathBuf,
    pub no_wait_lock: bool,
    pub force: Vec<PathBuf>,
    pub max_reject_ratio: f64,
    pub rank_tolerance: Duration,
    pub date_order: Option<DateOrder>,
}

impl RunOptions {
    pub fn new(database_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            database_url: database_url.into(),
            db_wait: Duration::from_secs(60),
            data_dir: data_dir.into(),
            no_wait_lock: false,
            force: Vec::new(),
            max_reject_ratio: 0.05,
            rank_tolerance: Duration::from_secs(60),
            date_order: None,
        }
    }
}
