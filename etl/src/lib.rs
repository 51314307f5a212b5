//! coinflow's ETL: CSV exports in, a clean PostgreSQL warehouse out.
//!
//! The stages, in the order a row meets them ([`pipeline`] runs them):
//!
//! - `extract` finds input files, fingerprints them and reads their CSV records;
//!   `scan` reads a file's records through `validate` (with `values` and
//!   `resolve`) into batches of typed `rows`, or rejects;
//! - `load` writes the batches: `load::direct` copies new market snapshots straight in,
//!   `load::staged` stages and merges any file, `load::bulk` builds an empty `market`'s
//!   keys once after a first load;
//! - `derive` brings the derived tables up to date, one file per table, through the pure
//!   polars `transform`s;
//! - `ledger` records runs, files and rejects and bumps data versions; [`report`]
//!   summarises.
//!
//! Beside the run: [`generate`] makes synthetic data; [`fetch`] pulls live sources
//! (CoinGecko, CoinMarketCap, CryptoCompare) into canonical CSV files for the run;
//! [`sanitize`] makes input text safe for log lines and the ledger. The public surface
//! is what the binary, the tests and the fuzz targets use; everything else is
//! crate-private.

mod derive;
mod error;
pub mod extract;
pub mod fetch;
pub mod generate;
mod ledger;
mod load;
mod options;
mod pipeline;
pub mod report;
mod resolve;
mod rows;
pub mod sanitize;
// Row validation's properties, shared with the fuzz crate (`fuzz/checks/rows.rs`): the
// fuzz target `row_validation` runs them, `validate`'s random-records test asserts them
// and `tests/fuzz_regressions.rs` replays the kept inputs through
// `row_checks::row_validation`, the one public item. Not an API.
#[doc(hidden)]
#[path = "../../fuzz/checks/rows.rs"]
pub mod row_checks;
mod scan;
mod transform;
mod validate;
pub mod values;

pub use error::EtlError;
pub use options::{parse_duration, RunOptions};
pub use pipeline::{check, run};
pub use report::RunReport;
