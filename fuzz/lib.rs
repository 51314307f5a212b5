//! The pure modules under fuzzing, compiled from their own source files, and the
//! properties each fuzz target checks (`checks/`, shared with the regression tests that
//! `cargo test` runs on the inputs kept in `regressions/`). `build.rs` sets
//! `cfg(coinflow_pure)`: the modules leave their diesel parts out.

// The modules name shared items as `coinflow_shared::…`: here that is this crate.
extern crate self as coinflow_shared;

#[path = "../shared/src/cursor.rs"]
pub mod cursor;
#[path = "../shared/src/dataset.rs"]
pub mod dataset;
#[path = "../shared/src/instant.rs"]
pub mod instant;
// `text_enum!`, for the trade side of `rows`.
#[path = "../shared/src/ledger.rs"]
pub mod ledger;
#[path = "../etl/src/sanitize.rs"]
pub mod sanitize;
#[path = "../etl/src/values.rs"]
pub mod values;

// Row validation (`Validator`) and the modules it stands on, as the ETL crate mounts them
// at its root; here only validation runs, so much of what the pipeline uses stays unused.
#[allow(dead_code, unused_imports)]
#[path = "../etl/src/resolve.rs"]
mod resolve;
#[allow(dead_code, unused_imports)]
#[path = "../etl/src/rows.rs"]
mod rows;
#[allow(dead_code)]
#[path = "../etl/src/validate.rs"]
mod validate;

#[path = "checks/etl.rs"]
pub mod etl_checks;
#[path = "checks/rows.rs"]
pub mod row_checks;
#[path = "checks/shared.rs"]
pub mod shared_checks;
