//! Bulk loading of `market`: when a run's markets input is at least as large as what the
//! table stores, its foreign key and secondary indexes (and, when it is empty, its
//! primary key) are dropped before the files and rebuilt once after them, which costs a
//! fraction of maintaining them row by row. [`Deferred`] remembers and restores what was
//! dropped; [`KeySpans`] proves the keys copied without a primary key distinct. Writes
//! only table definitions (constraints and indexes), never rows.

use crate::rows::MarketRow;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use std::collections::HashMap;
use std::time::Instant;

/// A table's foreign keys and non-unique secondary indexes, dropped for a bulk load and
/// re-created by [`Deferred::restore`] in the same transaction. Building an index once is
/// several times cheaper than maintaining it row by row, and validating a foreign key is
/// one join instead of a trigger (and a row lock on the referenced row) per loaded row.
/// Unique constraints stay: they decide loaded, duplicate, updated. The primary key is
/// dropped too only when asked ([`defer_constraints`]): the caller then proves the keys
/// it copies distinct ([`KeySpans`]) and restores the key ([`Deferred::restore_key`])
/// before anything that needs it. Dropping takes an ACCESS EXCLUSIVE lock on the table
/// until the run commits, so readers wait for a bulk load instead of reading around it.
#[derive(Debug)]
pub(crate) struct Deferred {
    table: &'static str,
    key: Option<String>,
    restore: Vec<String>,
}

#[derive(QueryableByName)]
struct Definition {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
    /// A constraint's kind (`p` primary key, `f` foreign key); empty for an index.
    #[diesel(sql_type = Text)]
    kind: String,
}

/// Drops `table`'s foreign keys and secondary indexes, and its primary key if `with_key`,
/// remembering their definitions exactly as the catalog holds them.
pub(crate) fn defer_constraints(
    conn: &mut PgConnection,
    table: &'static str,
    with_key: bool,
) -> QueryResult<Deferred> {
    let constraints: Vec<Definition> = diesel::sql_query(
        "SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition, contype::text AS kind \
         FROM pg_constraint WHERE conrelid = $1::regclass AND (contype = 'f' OR (contype = 'p' AND $2)) \
         ORDER BY conname",
    )
    .bind::<Text, _>(table)
    .bind::<Bool, _>(with_key)
    .load(conn)?;
    let indexes: Vec<Definition> = diesel::sql_query(
        "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition, '' AS kind \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = $1::regclass AND NOT i.indisunique AND NOT i.indisprimary \
         ORDER BY c.relname",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let mut deferred = Deferred {
        table,
        key: None,
        restore: Vec::new(),
    };
    for constraint in &constraints {
        conn.batch_execute(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            quote_ident(&constraint.name)
        ))?;
        let add = format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            quote_ident(&constraint.name),
            constraint.definition
        );
        if constraint.kind == "p" {
            deferred.key = Some(add);
        } else {
            deferred.restore.push(add);
        }
    }
    for index in &indexes {
        conn.batch_execute(&format!("DROP INDEX {}", quote_ident(&index.name)))?;
        deferred.restore.push(index.definition.clone());
    }
    Ok(deferred)
}

impl Deferred {
    /// Whether the primary key is dropped: keys copied in must be proven distinct.
    pub(crate) fn key_deferred(&self) -> bool {
        self.key.is_some()
    }

    /// Re-creates the primary key if it is dropped (for a merge, which needs it, or when
    /// the copied keys can no longer be proven distinct).
    pub(crate) fn restore_key(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        if let Some(statement) = self.key.take() {
            let started = Instant::now();
            conn.batch_execute(&statement)?;
            log::info!(
                "{}: primary key built in {:.2}s",
                self.table,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Re-creates everything [`defer_constraints`] dropped, the primary key first; a
    /// foreign key is validated against every row, so a row the load got wrong fails the
    /// run instead of committing.
    pub(crate) fn restore(mut self, conn: &mut PgConnection) -> QueryResult<()> {
        self.restore_key(conn)?;
        for statement in &self.restore {
            conn.batch_execute(statement)?;
        }
        log::info!(
            "{}: {} foreign key(s) and index(es) re-created after the bulk load",
            self.table,
            self.restore.len()
        );
        Ok(())
    }
}

/// Per coin, the span of timestamps copied into `market` while its primary key is
/// dropped. A row whose timestamp lies outside its coin's span cannot repeat a key copied
/// before, so while every row extends its coin's span (each coin's rows sorted by time,
/// in either direction, as exports and histories are) the copied keys are distinct
/// without an index to check them. A file's spans are kept apart until it loads.
#[derive(Debug, Default)]
pub(crate) struct KeySpans {
    spans: HashMap<String, (i64, i64)>,
}

impl KeySpans {
    /// Extends `file`'s spans (which lie on top of these) by `rows`; false at the first
    /// row whose timestamp falls inside its coin's span: it may repeat a key.
    pub(crate) fn extend(&self, file: &mut KeySpans, rows: &[MarketRow]) -> bool {
        // Rows usually come coin by coin: the span of the current coin is kept at hand.
        let mut current: Option<(&str, i64, i64)> = None;
        for row in rows {
            let ts = row.ts.timestamp_micros();
            let coin = row.coin_id.as_str();
            match current {
                Some((c, ref mut lo, ref mut hi)) if c == coin => {
                    if ts < *lo {
                        *lo = ts;
                    } else if ts > *hi {
                        *hi = ts;
                    } else {
                        return false;
                    }
                }
                _ => {
                    if let Some((c, lo, hi)) = current {
                        file.put(c, (lo, hi));
                    }
                    let (lo, hi) = match file.spans.get(coin).or_else(|| self.spans.get(coin)) {
                        Some(&(lo, hi)) if ts < lo => (ts, hi),
                        Some(&(lo, hi)) if ts > hi => (lo, ts),
                        Some(_) => return false,
                        None => (ts, ts),
                    };
                    current = Some((coin, lo, hi));
                }
            }
        }
        if let Some((c, lo, hi)) = current {
            file.put(c, (lo, hi));
        }
        true
    }

    fn put(&mut self, coin: &str, span: (i64, i64)) {
        match self.spans.get_mut(coin) {
            Some(stored) => *stored = span,
            None => {
                self.spans.insert(coin.to_string(), span);
            }
        }
    }

    /// Takes in the spans of a file that loaded.
    pub(crate) fn absorb(&mut self, file: KeySpans) {
        self.spans.extend(file.spans);
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `table` (one of the warehouse's, named by the code) holds any row visible to
/// this transaction.
fn has_rows(conn: &mut PgConnection, table: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::sql::<Bool>(&format!(
        "EXISTS (SELECT 1 FROM {})",
        quote_ident(table)
    )))
    .get_result(conn)
}

/// A bulk load of `market` in progress: what was dropped for it and, while the primary
/// key is dropped, the spans of the keys copied so far.
pub(crate) struct Bulk {
    pub(crate) deferred: Deferred,
    pub(crate) spans: KeySpans,
}

impl Bulk {
    /// Starts a bulk load of `market` when the table holds no row and the run brings
    /// markets input (markets and listings files, `incoming` bytes): its primary key,
    /// foreign key and secondary indexes are dropped first and built once from the loaded
    /// rows after the files ([`Deferred`]), which costs a fraction of maintaining them row
    /// by row, while [`KeySpans`] proves the copied keys distinct (and the key comes back
    /// early when it cannot).
    ///
    /// A table that holds rows is never bulk loaded, however large the run: dropping a
    /// constraint takes an ACCESS EXCLUSIVE lock until the run commits, and readers of
    /// the committed rows would wait for the whole load. Such a run maintains every key
    /// and index row by row, under the row locks of an ordinary insert, so the API keeps
    /// answering from the last committed data while it loads.
    pub(crate) fn begin(conn: &mut PgConnection, incoming: u64) -> QueryResult<Option<Bulk>> {
        if incoming == 0 || has_rows(conn, "market")? {
            return Ok(None);
        }
        log::info!(
            "market: bulk load of an empty table ({incoming} bytes of input): its primary \
             key, foreign key and secondary indexes are built after the files"
        );
        // Index builds sort in memory instead of spilling to disk (measured at 10 M rows:
        // the primary key in 6.2 s instead of 9.5 s).
        conn.batch_execute("SET LOCAL maintenance_work_mem = '1GB'")?;
        Ok(Some(Bulk {
            deferred: defer_constraints(conn, "market", true)?,
            spans: KeySpans::default(),
        }))
    }

    /// Rebuilds what was dropped from `market`, after the run's files. After a bulk load
    /// of `market`, `daily` changes in bulk too: when it holds no row either, its foreign
    /// key and indexes are dropped here and come back (validated once) when the caller
    /// restores the returned [`Deferred`] after the refresh, instead of row by row.
    pub(crate) fn finish(self, conn: &mut PgConnection) -> QueryResult<Option<Deferred>> {
        let restore_started = Instant::now();
        self.deferred.restore(conn)?;
        log::info!(
            "market: constraints and indexes rebuilt in {:.2}s",
            restore_started.elapsed().as_secs_f64()
        );
        // The same rule as for `market`: only a table without rows to read loses its
        // constraints.
        if has_rows(conn, "daily")? {
            return Ok(None);
        }
        defer_constraints(conn, "daily", false).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn rows(keys: &[(&str, i64)]) -> Vec<MarketRow> {
        keys.iter()
            .enumerate()
            .map(|(i, (coin, hour))| MarketRow {
                line: i as i64 + 2,
                coin_id: coin.to_string(),
                ts: DateTime::from_timestamp(1_700_000_000 + hour * 3600, 0).unwrap_or_default(),
                price_usd: 1.0,
                market_cap_usd: None,
                volume_24h_usd: None,
            })
            .collect()
    }

    #[test]
    fn key_spans_accept_each_coin_in_order_either_way() {
        let run = KeySpans::default();
        let mut file = KeySpans::default();
        // Coin by coin ascending, then interleaved and descending for another coin.
        assert!(run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("a", 2), ("b", 9)])));
        assert!(run.extend(&mut file, &rows(&[("b", 8), ("c", 0), ("b", 7), ("c", 1)])));
        // A later file extends a coin's span below or above it.
        let mut run = run;
        run.absorb(file);
        let mut next = KeySpans::default();
        assert!(run.extend(&mut next, &rows(&[("a", -1), ("a", 3), ("b", 10)])));
    }

    #[test]
    fn key_spans_refuse_a_timestamp_inside_its_coins_span() {
        let run = KeySpans::default();
        // The repeated key itself, within one batch.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("a", 1)])));
        // A gap filled later is refused too: it cannot be told from a repeat.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 5), ("a", 3)])));
        // A coin that comes back within one batch, inside its span.
        let mut file = KeySpans::default();
        assert!(!run.extend(&mut file, &rows(&[("a", 0), ("a", 2), ("b", 0), ("a", 1)])));
        // Across batches of a file, after switching coins.
        let mut file = KeySpans::default();
        assert!(run.extend(&mut file, &rows(&[("a", 0), ("a", 1), ("b", 0)])));
        assert!(!run.extend(&mut file, &rows(&[("a", 0)])));
        // Across files: only spans of files that loaded count.
        let mut run = KeySpans::default();
        let mut loaded = KeySpans::default();
        assert!(run.extend(&mut loaded, &rows(&[("a", 0), ("a", 1)])));
        run.absorb(loaded);
        let mut next = KeySpans::default();
        assert!(!run.extend(&mut next, &rows(&[("a", 1)])));
        let mut discarded = KeySpans::default();
        assert!(run.extend(&mut discarded, &rows(&[("b", 0)])));
        let mut next = KeySpans::default();
        assert!(run.extend(&mut next, &rows(&[("b", 0)])));
    }
}
