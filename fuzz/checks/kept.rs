//! The inputs kept in `fuzz/regressions/<target>/`, for the regression tests that
//! `cargo test` runs (`shared/tests/fuzz_regressions.rs`, `etl/tests/fuzz_regressions.rs`).

/// Every kept input of a target, by file name; there is at least one.
pub fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let data = std::fs::read(&path).expect("a readable input");
            (path.display().to_string(), data)
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no inputs in {}", dir.display());
    found
}
