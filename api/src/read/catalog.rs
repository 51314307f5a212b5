//! What a chunked read can scan: every served dataset, as declared once in
//! `coinflow_shared::dataset` ([`Shape`]), and the coin task results of `GET /coins`,
//! declared here in the same form. Everything else of the read path (statements, cursors,
//! CSV headers, versions) is derived from these declarations; nothing here touches the
//! database.

use coinflow_shared::dataset::{Filter, Kind, Served, ServedColumn, Shape};
use coinflow_shared::ledger::Versioned;

/// What a chunked read scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Served(Served),
    /// The coin task results of `GET /coins`, in task order.
    TaskResults,
}

/// The task results as `GET /coins` serves them: in task order, under the original
/// service's names (`id`, `taskRun`). They have no data version.
const TASK_RESULTS: Shape = Shape {
    name: "task_results",
    table: "task_results",
    columns: &[
        ServedColumn::new("id", Kind::Text).from_column("coin_id"),
        ServedColumn::new("exchanges", Kind::TextArray),
        ServedColumn::new("taskRun", Kind::Int8).from_column("task_run"),
    ],
    key: &["task_run", "coin_id"],
    filters: &[],
    versioned_by: &[],
    join: None,
    unserved: &["created_at"],
};

/// A column of the sort key: its table column, its kind and its position in the served
/// columns.
pub(crate) struct KeyCol {
    pub(crate) column: &'static str,
    pub(crate) kind: Kind,
    pub(crate) pos: usize,
}

impl Source {
    /// Every source: the served datasets, then the task results.
    pub fn all() -> impl Iterator<Item = Source> {
        Served::ALL
            .into_iter()
            .map(Source::Served)
            .chain([Source::TaskResults])
    }

    /// The declaration of what it scans.
    pub fn shape(self) -> &'static Shape {
        match self {
            Source::Served(s) => s.shape(),
            Source::TaskResults => &TASK_RESULTS,
        }
    }

    pub fn name(self) -> &'static str {
        self.shape().name
    }

    pub(crate) fn from_name(name: &str) -> Option<Source> {
        if name == TASK_RESULTS.name {
            return Some(Source::TaskResults);
        }
        Served::from_name(name).map(Source::Served)
    }

    /// The served columns, in order (JSON keys, CSV header).
    pub(crate) fn columns(self) -> &'static [ServedColumn] {
        self.shape().columns
    }

    /// The datasets whose data versions decide this source's bytes.
    pub(crate) fn versioned_by(self) -> &'static [Versioned] {
        self.shape().versioned_by
    }

    /// The sort key, which is also the primary key.
    pub(crate) fn key(self) -> Vec<KeyCol> {
        let shape = self.shape();
        shape
            .key
            .iter()
            .filter_map(|column| {
                let pos = shape
                    .columns
                    .iter()
                    .position(|c| c.column == Some(*column))?;
                Some(KeyCol {
                    column,
                    kind: shape.columns[pos].kind,
                    pos,
                })
            })
            .collect()
    }

    pub(crate) fn takes_coin(self) -> bool {
        self.shape().takes(Filter::Coin)
    }

    /// The column and kind `from=`/`to=` apply to.
    pub(crate) fn time_range(self) -> Option<(&'static str, Kind)> {
        self.shape().time_range()
    }

    pub(crate) fn takes_run(self) -> bool {
        self.shape().takes(Filter::Run)
    }

    /// The filter parameter names this source accepts.
    pub(crate) fn filter_names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.takes_coin() {
            names.push("coin");
        }
        if self.time_range().is_some() {
            names.extend(["from", "to"]);
        }
        if self.takes_run() {
            names.push("run");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_column_is_served() {
        for source in Source::all() {
            assert_eq!(source.key().len(), source.shape().key.len(), "{source:?}");
            assert_eq!(Source::from_name(source.name()), Some(source));
        }
    }
}
