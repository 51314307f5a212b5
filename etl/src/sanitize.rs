//! Text taken from input files, made safe for where it goes: one-line log messages and
//! ledger reasons get their control characters escaped (a quoted newline in a header
//! cell must not forge a log line), and raw values kept in `etl_rejects` are cut to
//! [`MAX_RAW_BYTES`] with a marker saying how long they were. Pure functions, no I/O.

use std::borrow::Cow;

/// The most bytes of a raw value or raw line stored with a reject.
pub const MAX_RAW_BYTES: usize = 4096;

/// `text` with every control character (C0, DEL, C1, and the Unicode line and paragraph
/// separators) written as an escape: `\n`, `\r`, `\t`, `\u{…}`. Borrowed when there is
/// nothing to escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `raw` cut to at most [`MAX_RAW_BYTES`] (on a character boundary) followed by a marker
/// `…[truncated: N bytes]` naming the original length. Borrowed when short enough.
pub fn truncate_raw(raw: &str) -> Cow<'_, str> {
    if raw.len() <= MAX_RAW_BYTES {
        return Cow::Borrowed(raw);
    }
    let mut cut = MAX_RAW_BYTES;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…[truncated: {} bytes]", &raw[..cut], raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_newline_cannot_start_a_new_log_line() {
        let cell = "price\n2026-01-01 ERROR forged line\r\u{1b}[31m\u{2028}";
        let escaped = escape_controls(cell);
        assert!(
            !escaped.contains(['\n', '\r', '\u{1b}', '\u{2028}']),
            "{escaped}"
        );
        assert_eq!(
            escaped,
            "price\\n2026-01-01 ERROR forged line\\r\\u{1b}[31m\\u{2028}"
        );
        assert!(matches!(
            escape_controls("plain, ünïcode"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_raw_values_are_cut_with_a_marker_on_a_char_boundary() {
        assert!(matches!(truncate_raw("short"), Cow::Borrowed("short")));
        let long = "é".repeat(MAX_RAW_BYTES); // 2 bytes each
        let cut = truncate_raw(&long);
        assert!(cut.ends_with(&format!("…[truncated: {} bytes]", 2 * MAX_RAW_BYTES)));
        let kept = cut.split('…').next().unwrap_or_default();
        assert_eq!(kept.len(), MAX_RAW_BYTES);
        let exact = "x".repeat(MAX_RAW_BYTES);
        assert_eq!(truncate_raw(&exact), exact.as_str());
    }
}
