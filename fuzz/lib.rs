//! The pure modules under fuzzing, compiled from their own source files, and the
//! properties each fuzz target checks (`checks/`, shared with the regression tests that
//! `cargo test` runs on the inputs kept in `regressions/`).

// The modules name shared items as `coinflow_shared::…`: here that is this crate.
extern crate self as coinflow_shared;

#[path = "../shared/src/cursor.rs"]
pub mod cursor;
#[path = "../shared/src/dataset.rs"]
pub mod dataset;
#[path = "../shared/src/instant.rs"]
pub mod instant;
#[path = "../etl/src/sanitize.rs"]
pub mod sanitize;
#[path = "../etl/src/values.rs"]
pub mod values;

#[path = "checks/etl.rs"]
pub mod etl_checks;
#[path = "checks/shared.rs"]
pub mod shared_checks;
