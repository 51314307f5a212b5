//! Properties of the ETL's pure modules, for any input bytes. Included by the fuzz crate
//! and by `etl/tests/fuzz_regressions.rs` (where `super::values` and `super::sanitize`
//! are the real modules).

use super::sanitize::{escape_controls, truncate_raw, MAX_RAW_BYTES};
use super::values::{parse_integer, parse_number, parse_timestamp, to_datetime, DateOrder};

/// Value parsing (what row validation applies to every field): never panics; a parsed
/// timestamp converts back to a date-time.
pub fn value_parsing(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_number(text);
    let _ = parse_integer(text);
    for order in [DateOrder::MonthFirst, DateOrder::DayFirst] {
        if let Ok(Some(micros)) = parse_timestamp(text, order) {
            let _ = to_datetime(micros);
        }
    }
}

/// The sanitiser: escaped text has no control characters left; cut text is bounded.
pub fn sanitize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let escaped = escape_controls(&text);
    assert!(
        !escaped
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
        "{escaped:?}"
    );
    let cut = truncate_raw(&text);
    assert!(cut.len() <= MAX_RAW_BYTES + 40, "{} bytes", cut.len());
}
