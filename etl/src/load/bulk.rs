//! Bulk loading of an empty `market` (and then `daily`) without making readers wait: the
//! run builds each table anew beside the one readers use ([`Shadow`]), with only what it
//! must check while loading (NOT NULL, CHECK and unique constraints), copies the rows in,
//! builds the primary key, foreign keys, secondary indexes and triggers once from the
//! loaded rows (a fraction of maintaining them row by row), and swaps the new table in
//! just before the run commits ([`Shadows::swap_in`]). Readers keep reading the committed
//! (empty) table meanwhile; the swap takes the table's ACCESS EXCLUSIVE lock only for a
//! catalog change, under a short `lock_timeout`, retried. [`KeySpans`] proves the keys
//! copied before the primary key exists distinct. Writes only table definitions, never
//! rows.

use crate::rows::MarketRow;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The schema a run builds its new tables in. It exists only inside a run's transaction:
/// the swap moves its tables to `public` and drops it, and a failed run rolls it back.
const BUILD_SCHEMA: &str = "coinflow_bulk_load";

/// How long one attempt at the swap's lock waits: readers that arrive meanwhile queue
/// behind it, so it stays well under what a reader may wait (50 ms).
const SWAP_LOCK_TIMEOUT: &str = "20ms";

/// Attempts at the swap's lock before waiting for it without a timeout.
const SWAP_LOCK_ATTEMPTS: u32 = 200;

/// A table being built beside the committed one that readers use (same name, in
/// [`BUILD_SCHEMA`], first on the run's `search_path`, so every statement of the run that
/// names the table writes and reads the new one). Its primary key (when deferred),
/// foreign keys, secondary indexes and triggers come from the committed table's
/// definitions, exactly as the catalog holds them, and are built by [`Shadow::build`].
#[derive(Debug)]
pub(crate) struct Shadow {
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
    /// A constraint's kind (`p` primary key, `f` foreign key, `u` unique, `x`
    /// exclusion); empty for an index or a trigger.
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Spelled {
    #[diesel(sql_type = Text)]
    committed: String,
    #[diesel(sql_type = Text)]
    built: String,
}

/// Starts building `table` anew beside the committed one (which must hold no row: its
/// readers see it empty until the swap). The primary key is built at once unless
/// `defer_key`: the caller then proves the keys it copies distinct ([`KeySpans`]) and
/// builds the key ([`Shadow::restore_key`]) before anything that needs it.
pub(crate) fn shadow(
    conn: &mut PgConnection,
    table: &'static str,
    defer_key: bool,
) -> QueryResult<Shadow> {
    let qualified = format!("public.{}", quote_ident(table));
    let constraints: Vec<Definition> = diesel::sql_query(
        "SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition, contype::text AS kind \
         FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'f', 'u', 'x') \
         ORDER BY conname",
    )
    .bind::<Text, _>(&qualified)
    .load(conn)?;
    // Indexes that back no constraint, and triggers (not LIKE's to copy), named on the
    // new table: the definitions name the committed one schema-qualified.
    let others: Vec<Definition> = diesel::sql_query(
        "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition, '' AS kind \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = $1::regclass \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) \
         UNION ALL \
         SELECT tgname::text, pg_get_triggerdef(oid), '' FROM pg_trigger \
         WHERE tgrelid = $1::regclass AND NOT tgisinternal \
         ORDER BY 1",
    )
    .bind::<Text, _>(&qualified)
    .load(conn)?;
    // Spelled as pg_get_indexdef and pg_get_triggerdef spell it (quoted only if needed).
    let spelled: Spelled = diesel::sql_query(
        "SELECT format('%I.%I', 'public', $1::text) AS committed, format('%I.%I', $2::text, $1::text) AS built",
    )
    .bind::<Text, _>(table)
    .bind::<Text, _>(BUILD_SCHEMA)
    .get_result(conn)?;
    let committed_on = format!(" ON {} ", spelled.committed);
    let built_on = format!(" ON {} ", spelled.built);
    let path = search_path(conn)?;
    if !path.split(',').any(|p| p.trim() == BUILD_SCHEMA) {
        conn.batch_execute(&format!(
            "CREATE SCHEMA {BUILD_SCHEMA}; SET LOCAL search_path = {BUILD_SCHEMA}, {}",
            path
        ))?;
    }
    conn.batch_execute(&format!(
        "CREATE TABLE {BUILD_SCHEMA}.{t} (LIKE {qualified} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)",
        t = quote_ident(table)
    ))?;
    let mut shadow = Shadow {
        table,
        key: None,
        restore: Vec::new(),
    };
    for constraint in &constraints {
        let add = format!(
            "ALTER TABLE {BUILD_SCHEMA}.{} ADD CONSTRAINT {} {}",
            quote_ident(table),
            quote_ident(&constraint.name),
            constraint.definition
        );
        match constraint.kind.as_str() {
            "p" if defer_key => shadow.key = Some(add),
            // Unique and exclusion constraints decide loaded, duplicate, updated: they
            // are there from the first row, as is the key unless deferred.
            "p" | "u" | "x" => conn.batch_execute(&add)?,
            _ => shadow.restore.push(add),
        }
    }
    for other in &others {
        if !other.definition.contains(&committed_on) {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "{table}: cannot rebuild {} on the new table: {}",
                    other.name, other.definition
                )
                .into(),
            ));
        }
        shadow
            .restore
            .push(other.definition.replacen(&committed_on, &built_on, 1));
    }
    Ok(shadow)
}

impl Shadow {
    /// Whether the primary key is deferred: keys copied in must be proven distinct.
    pub(crate) fn key_deferred(&self) -> bool {
        self.key.is_some()
    }

    /// Builds the primary key if it is deferred (for a merge, which needs it, or when
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

    /// Builds everything deferred, the primary key first; a foreign key is validated
    /// against every row, so a row the load got wrong fails the run instead of
    /// committing. Building again does nothing.
    pub(crate) fn build(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        self.restore_key(conn)?;
        if self.restore.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        for statement in &self.restore {
            conn.batch_execute(statement)?;
        }
        log::info!(
            "{}: {} foreign key(s), index(es) and trigger(s) built in {:.2}s after the bulk load",
            self.table,
            self.restore.len(),
            started.elapsed().as_secs_f64()
        );
        self.restore.clear();
        Ok(())
    }
}

/// The tables a run built anew, swapped in together just before it commits.
#[derive(Debug, Default)]
pub(crate) struct Shadows(Vec<Shadow>);

impl Shadows {
    /// Builds what each table still defers (`daily`'s indexes after the refresh).
    pub(crate) fn build(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        self.0.iter_mut().try_for_each(|s| s.build(conn))
    }

    /// Replaces the committed (empty) tables with the built ones: waits for their ACCESS
    /// EXCLUSIVE locks in short attempts (each under [`SWAP_LOCK_TIMEOUT`], all tables at
    /// once, so readers queue behind an attempt only that long and no table stays
    /// locked while another is awaited), then drops them and moves the built ones into
    /// `public` (catalog changes), drops the build schema and takes it off the run's
    /// `search_path`. The last step of a run: the locks are held until it commits, right
    /// after.
    pub(crate) fn swap_in(mut self, conn: &mut PgConnection) -> QueryResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        self.build(conn)?;
        let started = Instant::now();
        let tables: Vec<String> = self.0.iter().map(|s| quote_ident(s.table)).collect();
        let lock = format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            tables
                .iter()
                .map(|t| format!("public.{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > SWAP_LOCK_ATTEMPTS {
                log::warn!(
                    "readers held {} through {SWAP_LOCK_ATTEMPTS} attempts at the swap's lock; \
                     waiting for it",
                    tables.join(", ")
                );
                conn.batch_execute(&lock)?;
                break;
            }
            let attempt = conn.transaction(|conn| {
                conn.batch_execute(&format!(
                    "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; {lock}"
                ))
            });
            match attempt {
                Ok(()) => break,
                Err(e) if is_lock_timeout(&e) => {
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempts.min(20))))
                }
                Err(e) => return Err(e),
            }
        }
        let mut swap = String::from("SET LOCAL lock_timeout = DEFAULT;");
        for table in &tables {
            swap.push_str(&format!(
                " DROP TABLE public.{table}; ALTER TABLE {BUILD_SCHEMA}.{table} SET SCHEMA public;"
            ));
        }
        let path = search_path(conn)?;
        let rest: Vec<&str> = path
            .split(',')
            .map(str::trim)
            .filter(|p| *p != BUILD_SCHEMA)
            .collect();
        swap.push_str(&format!(
            " DROP SCHEMA {BUILD_SCHEMA}; SET LOCAL search_path = {}",
            rest.join(", ")
        ));
        conn.batch_execute(&swap)?;
        log::info!(
            "{}: the built table(s) replaced the empty one(s) ({attempts} attempt(s) at the lock, {:.3}s)",
            self.0.iter().map(|s| s.table).collect::<Vec<_>>().join(", "),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The session's `search_path` as it stands in this transaction.
fn search_path(conn: &mut PgConnection) -> QueryResult<String> {
    diesel::sql_query("SELECT current_setting('search_path') AS value")
        .get_result::<Setting>(conn)
        .map(|s| s.value)
}

/// Whether a statement was cancelled by `lock_timeout` (diesel does not expose the
/// SQLSTATE, 55P03).
fn is_lock_timeout(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("lock timeout"))
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

/// A bulk load of `market` in progress: the table being built and, while its primary
/// key is deferred, the spans of the keys copied so far.
pub(crate) struct Bulk {
    pub(crate) shadow: Shadow,
    pub(crate) spans: KeySpans,
}

impl Bulk {
    /// Starts a bulk load of `market` when the table holds no row and the run brings
    /// markets input (markets and listings files, `incoming` bytes): the run builds the
    /// table anew ([`Shadow`]), its primary key, foreign key and secondary indexes built
    /// once from the loaded rows after the files, while [`KeySpans`] proves the copied
    /// keys distinct (and the key comes early when it cannot).
    ///
    /// A table that holds rows is never bulk loaded, however large the run: such a run
    /// maintains every key and index row by row, under the row locks of an ordinary
    /// insert, so the API keeps answering from the last committed data while it loads.
    pub(crate) fn begin(conn: &mut PgConnection, incoming: u64) -> QueryResult<Option<Bulk>> {
        if incoming == 0 || has_rows(conn, "market")? {
            return Ok(None);
        }
        log::info!(
            "market: bulk load of an empty table ({incoming} bytes of input): built anew beside \
             the committed one, its primary key, foreign key and secondary indexes after the files"
        );
        // Index builds sort in memory instead of spilling to disk (measured at 10 M rows:
        // the primary key in 6.2 s instead of 9.5 s).
        conn.batch_execute("SET LOCAL maintenance_work_mem = '1GB'")?;
        Ok(Some(Bulk {
            shadow: shadow(conn, "market", true)?,
            spans: KeySpans::default(),
        }))
    }

    /// Builds what `market` deferred, after the run's ranks. After a bulk load of
    /// `market`, `daily` changes in bulk too: when it holds no row either, it is built
    /// anew as well, its foreign key and indexes after the refresh
    /// ([`Shadows::build`]). Both are swapped in at the end of the run.
    pub(crate) fn finish(mut self, conn: &mut PgConnection) -> QueryResult<Shadows> {
        self.shadow.build(conn)?;
        let mut shadows = vec![self.shadow];
        // The same rule as for `market`: only a table without rows is built anew.
        if !has_rows(conn, "daily")? {
            shadows.push(shadow(conn, "daily", false)?);
        }
        Ok(Shadows(shadows))
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
