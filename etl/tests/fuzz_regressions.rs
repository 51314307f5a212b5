//! Replays the inputs kept in `fuzz/regressions/` for the ETL's pure modules through the
//! checks of the fuzz targets (see `shared/tests/fuzz_regressions.rs`). Row validation's
//! check is compiled into the library (`coinflow_etl::row_checks`, from
//! `fuzz/checks/rows.rs`): it drives crate-private types.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod values {
    pub use coinflow_etl::values::*;
}
mod sanitize {
    pub use coinflow_etl::sanitize::*;
}
#[path = "../../fuzz/checks/etl.rs"]
mod checks;
#[path = "../../fuzz/checks/kept.rs"]
mod kept;

#[test]
fn value_parsing_regressions() {
    for (name, data) in kept::inputs("value_parsing") {
        println!("{name}");
        checks::value_parsing(&data);
    }
}

#[test]
fn sanitize_regressions() {
    for (name, data) in kept::inputs("sanitize") {
        println!("{name}");
        checks::sanitize(&data);
    }
}

#[test]
fn row_validation_regressions() {
    for (name, data) in kept::inputs("row_validation") {
        println!("{name}");
        coinflow_etl::row_checks::row_validation(&data);
    }
}
