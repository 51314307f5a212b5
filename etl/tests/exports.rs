//! The public export formats load as they are, checked on the small files committed in
//! `tests/fixtures/` (see its README for what they are and their licences). The same
//! checks run on the whole public folders in `real_exports.rs`.

mod common;
mod exports_check;

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn cmc_listing_fans_out_into_coins_markets_and_rankings() {
    // BTG and BAT are each used by two coins.
    exports_check::cmc_listing_fans_out_into_coins_markets_and_rankings(&fixtures(), 12, 2);
}

#[test]
fn coingecko_exports_take_the_coin_from_the_file_name() {
    exports_check::coingecko_exports_take_the_coin_from_the_file_name(
        &fixtures(),
        &["btc", "doge", "eth", "shib"],
    );
}

#[test]
fn kaggle_histories_load_as_candles_with_both_date_styles() {
    exports_check::kaggle_histories_load_as_candles_with_both_date_styles(&fixtures(), 3, 12);
}

#[test]
fn coingecko_daily_files_reject_negative_values_and_set_aside_the_orphan() {
    exports_check::coingecko_daily_files_reject_negative_values_and_set_aside_the_orphan(
        &fixtures(),
    );
}

#[test]
fn every_export_loads_with_every_row_accounted_and_a_rerun_adds_nothing() {
    exports_check::every_export_loads_with_every_row_accounted_and_a_rerun_adds_nothing(
        &fixtures(),
        10,
    );
}
