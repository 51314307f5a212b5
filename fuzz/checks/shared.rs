//! Properties of the shared crate's pure modules, for any input bytes. Included by the
//! fuzz crate and by `shared/tests/fuzz_regressions.rs` (where `super::dataset` and
//! `super::cursor` are the real modules).

use super::cursor::{Cursor, CursorCodec};
use super::dataset::{detect, normalize_header_cell, symbol_from_file_name, CoinSource, Column};

/// Header detection: the first line is a file name, the rest header cells split on
/// commas. Never panics; every column it maps lies inside the header.
pub fn header_detection(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file_name, header) = text.split_once('\n').unwrap_or(("", text));
    let cells: Vec<&str> = header.split(',').collect();
    for cell in &cells {
        let normalized = normalize_header_cell(cell);
        assert_eq!(
            normalized,
            normalize_header_cell(&normalized),
            "normalising twice changes {cell:?}"
        );
    }
    let _ = symbol_from_file_name(file_name);
    if let Some(detected) = detect(&cells, file_name) {
        for (column, &index) in &detected.columns {
            assert!(
                index < cells.len(),
                "{column:?} mapped to {index} of {} cells",
                cells.len()
            );
        }
        if let Some(CoinSource::Column(i)) = detected.coin {
            assert!(i < cells.len());
        }
        let _ = detected.index(Column::Coin);
    }
}

/// Cursor decoding: any string decodes to an error or to a cursor that survives a
/// round trip; never panics.
pub fn cursor_decoding(data: &[u8]) {
    let codec = CursorCodec::new(b"fuzzing key of thirty-two bytes!");
    let token = String::from_utf8_lossy(data);
    if let Ok(cursor) = codec.decode(&token) {
        let again: Cursor = codec
            .decode(&codec.encode(&cursor))
            .expect("a re-encoded cursor decodes");
        assert_eq!(again, cursor);
    }
}
