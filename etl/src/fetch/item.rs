//! One JSON item of a provider's page, turned into CSV cells. Every item becomes exactly
//! one row: a missing field or a null becomes an empty cell, a string where a number is
//! expected is passed on as written, a value of the wrong JSON type is written as its
//! JSON text. The load then judges the row like any other (a row it cannot use is a
//! reject in `etl_rejects`, whose raw line ends with the page and item), so nothing a
//! provider sends is lost or dropped here. Problems with required fields are noted, for
//! the fetch summary and a WARN line.
//!
//! It never panics on any JSON value.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// A required field that was missing, null or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemProblem {
    pub page: u32,
    /// Index of the item in its page, from 0.
    pub item: usize,
    /// JSON pointer of the field, e.g. `/quote/USD/price`.
    pub field: String,
    pub problem: String,
}

/// An item being read.
pub struct Item<'a> {
    pub page: u32,
    pub index: usize,
    value: &'a Value,
    problems: &'a mut Vec<ItemProblem>,
}

impl<'a> Item<'a> {
    pub fn new(
        page: u32,
        index: usize,
        value: &'a Value,
        problems: &'a mut Vec<ItemProblem>,
    ) -> Item<'a> {
        Item {
            page,
            index,
            value,
            problems,
        }
    }

    /// The raw value at a JSON pointer (`""` is the item itself).
    pub fn get(&self, pointer: &str) -> Option<&'a Value> {
        self.value.pointer(pointer)
    }

    fn note(&mut self, pointer: &str, problem: &str) {
        self.problems.push(ItemProblem {
            page: self.page,
            item: self.index,
            field: pointer.to_string(),
            problem: problem.to_string(),
        });
    }

    /// A text field; `required` notes a missing or empty one.
    pub fn text(&mut self, pointer: &str, required: bool) -> String {
        let cell = match self.get(pointer) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Null) | None => String::new(),
            Some(other) => {
                self.note(pointer, "not a text value");
                return other.to_string();
            }
        };
        if required && cell.is_empty() {
            let problem = if self.get(pointer).is_some() {
                "null or empty"
            } else {
                "missing"
            };
            self.note(pointer, problem);
        }
        cell
    }

    /// A numeric field; `required` notes a missing, null or non-numeric one.
    pub fn number(&mut self, pointer: &str, required: bool) -> String {
        match self.get(pointer) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => {
                let s = s.trim().to_string();
                let numeric = s.replace(',', "").parse::<f64>().is_ok_and(f64::is_finite);
                if required && !numeric {
                    self.note(pointer, "a string that is not a number");
                }
                s
            }
            Some(Value::Null) | None => {
                if required {
                    let problem = if self.get(pointer).is_some() {
                        "null"
                    } else {
                        "missing"
                    };
                    self.note(pointer, problem);
                }
                String::new()
            }
            Some(other) => {
                self.note(pointer, "not a number");
                other.to_string()
            }
        }
    }

    /// A Unix time in milliseconds (`seconds == false`) or seconds, written as ISO-8601
    /// UTC; anything else is passed on as written and noted.
    pub fn epoch(&mut self, pointer: &str, seconds: bool) -> String {
        let raw = self.number(pointer, true);
        let parsed = raw.parse::<f64>().ok().and_then(|v| {
            let ms = if seconds { v * 1000.0 } else { v };
            DateTime::<Utc>::from_timestamp_millis(ms as i64).filter(|_| ms.is_finite())
        });
        parsed.map_or(raw, iso)
    }
}

/// ISO-8601 UTC with seconds, as the canonical files write timestamps.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_strings_and_wrong_types_become_cells_and_problems() {
        let value =
            json!({"price": null, "cap": "1,200.5", "vol": "abc", "name": {"x": 1}, "n": 7});
        let mut problems = Vec::new();
        let mut item = Item::new(3, 4, &value, &mut problems);
        assert_eq!(item.number("/price", true), "");
        assert_eq!(item.number("/cap", true), "1,200.5");
        assert_eq!(item.number("/vol", true), "abc");
        assert_eq!(item.text("/name", true), r#"{"x":1}"#);
        assert_eq!(item.number("/n", true), "7");
        assert_eq!(item.number("/absent", false), "");
        assert_eq!(item.text("/absent", true), "");
        let fields: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.problem.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("/price", "null"),
                ("/vol", "a string that is not a number"),
                ("/name", "not a text value"),
                ("/absent", "missing"),
            ]
        );
        assert!(problems.iter().all(|p| p.page == 3 && p.item == 4));
    }

    #[test]
    fn epochs_become_iso_timestamps() {
        let value = json!([1733443200000u64, 1733443200, "x"]);
        let mut problems = Vec::new();
        let mut item = Item::new(1, 0, &value, &mut problems);
        assert_eq!(item.epoch("/0", false), "2024-12-06T00:00:00Z");
        assert_eq!(item.epoch("/1", true), "2024-12-06T00:00:00Z");
        assert_eq!(item.epoch("/2", true), "x");
        assert_eq!(problems.len(), 1);
    }
}
