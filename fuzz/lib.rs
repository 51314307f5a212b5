//! The pure modules under fuzzing, compiled from their own source files, and the
//! properties each fuzz target checks (`checks/`, shared with the regression tests that
//! `cargo test` runs on the inputs kept in `regressions/`).

#[path = "../shared/src/cursor.rs"]
pub mod cursor;
#[path = "../shared/src/dataset.rs"]
pub mod dataset;
#[path = "../etl/src/sanitize.rs"]
pub mod sanitize;
#[path = "../etl/src/values.rs"]
pub mod values;

#[path = "checks/etl.rs"]
pub mod etl_checks;
#[path = "checks/shared.rs"]
pub mod shared_checks;
