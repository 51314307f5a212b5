//! Replays the inputs kept in `fuzz/regressions/` for the ETL's pure modules through the
//! checks of the fuzz targets (see `shared/tests/fuzz_regressions.rs`).

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
