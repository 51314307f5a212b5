//! The whole public exports (`../shared/datasets/`, not part of the repository) load as
//! they are. Runs only when `COINFLOW_REAL_DATASETS` names that folder (a relative path
//! is taken from the repository root); otherwise it prints one line saying it was not
//! run, and passes. `.ci/run` sets the variable and fails when the folder is missing.
//! The same checks run on the committed fixtures in `exports.rs`.
//!
//! A plain `main` (`harness = false` in Cargo.toml) so that the "not run" line reaches
//! the terminal: the test harness would swallow it. Arguments that do not start with `-`
//! filter the checks by name, as with the harness.

mod common;
mod exports_check;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const VARIABLE: &str = "COINFLOW_REAL_DATASETS";

fn datasets_from_env() -> Result<Option<PathBuf>, String> {
    let Some(value) = std::env::var_os(VARIABLE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join(value);
    if dir.is_dir() {
        Ok(Some(dir))
    } else {
        Err(format!(
            "{VARIABLE}={} is not a directory (resolved to {})",
            dir.strip_prefix(&root).unwrap_or(&dir).display(),
            dir.display()
        ))
    }
}

type Check = fn(&Path);

const CHECKS: [(&str, Check); 5] = [
    (
        "cmc_listing_fans_out_into_coins_markets_and_rankings",
        |d| exports_check::cmc_listing_fans_out_into_coins_markets_and_rankings(d, 1326, 25),
    ),
    ("coingecko_exports_take_the_coin_from_the_file_name", |d| {
        exports_check::coingecko_exports_take_the_coin_from_the_file_name(
            d,
            &["btc", "doge", "eth", "shib", "sol", "xrp"],
        )
    }),
    (
        "kaggle_histories_load_as_candles_with_both_date_styles",
        |d| exports_check::kaggle_histories_load_as_candles_with_both_date_styles(d, 9, 20_326),
    ),
    (
        "coingecko_daily_files_reject_negative_values_and_set_aside_the_orphan",
        exports_check::coingecko_daily_files_reject_negative_values_and_set_aside_the_orphan,
    ),
    (
        "every_export_loads_with_every_row_accounted_and_a_rerun_adds_nothing",
        |d| {
            exports_check::every_export_loads_with_every_row_accounted_and_a_rerun_adds_nothing(
                d, 2_500,
            )
        },
    ),
];

fn main() -> ExitCode {
    let dir = match datasets_from_env() {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            println!(
                "real_exports: not run: {VARIABLE} is not set (set it to the folder of the public exports, e.g. ../shared/datasets, to check them)"
            );
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("real_exports: {message}");
            return ExitCode::FAILURE;
        }
    };
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = 0;
    let mut ran = 0;
    for (name, check) in CHECKS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| check(&dir))) {
            Ok(()) => println!("real_exports: {name} ... ok"),
            Err(_) => {
                println!("real_exports: {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!(
        "real_exports on {}: {} passed, {failed} failed",
        dir.display(),
        ran - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
