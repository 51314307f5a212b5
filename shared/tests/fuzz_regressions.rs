//! Replays the inputs kept in `fuzz/regressions/` (crash inputs found by
//! `scripts/fuzz.sh`, plus hand-picked edge cases) through the same checks the fuzz
//! targets run, against the real modules: a fixed crash stays fixed under `cargo test`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod dataset {
    pub use coinflow_shared::dataset::*;
}
mod cursor {
    pub use coinflow_shared::cursor::*;
}
#[path = "../../fuzz/checks/shared.rs"]
mod checks;
#[path = "../../fuzz/checks/kept.rs"]
mod kept;

#[test]
fn header_detection_regressions() {
    for (name, data) in kept::inputs("header_detection") {
        println!("{name}");
        checks::header_detection(&data);
    }
}

#[test]
fn cursor_decoding_regressions() {
    for (name, data) in kept::inputs("cursor_decoding") {
        println!("{name}");
        checks::cursor_decoding(&data);
    }
}
