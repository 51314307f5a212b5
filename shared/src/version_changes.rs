//! What a data version bump changed, so that a cursor walk survives loads that do not
//! touch what it has already read (issue 13).
//!
//! **The rule.** A continuation is refused with 409 only when a load committed since the
//! cursor was issued updated or deleted a row of the cursor's dataset whose key is at or
//! before the cursor's position (its `after` key). Rows merely inserted since may appear
//! in the walk when they lie ahead of the position and are missed when they lie behind
//! it; updates and deletes ahead of the position are simply read as they are now. A
//! version with no record (bumped by an earlier release, or pruned) refuses every cursor
//! issued before it.
//!
//! **Recording** (the ETL). Every bump of a served dataset's version writes, in the
//! same transaction, one row of `data_version_changes` for the new version: the lowest
//! key of any *pre-existing* row the transaction updated or deleted, or NULL when it
//! only inserted. Pre-existing means written by an earlier transaction: the row's
//! `xmin` is older than the transaction's own id ([`pre_existing`]). Rows a run inserts
//! and then rewrites itself (the rank refresh ranking the snapshots it just loaded; a
//! second file updating a row the first one inserted) are inserts, not updates, or
//! every live append would break every walk. A row is judged at the first statement of
//! the transaction that changes it: later statements see it as the transaction's own,
//! and its key is recorded already.
//!
//! Each write statement that can change a pre-existing row of a served table records
//! at most one key, the lowest it changed, into the run's temporary table
//! [`RUN_LOW_KEYS`] ([`record_low_key`], a data-modifying `WITH` part of the statement
//! itself, so a rolled-back savepoint takes its record with it); the bump keeps the
//! lowest of them ([`bump_sql`]). Keys are compared as the key columns' real types
//! ([`typed_key`], from the dataset's declaration), so the order is PostgreSQL's, text
//! collation included, exactly as the chunk scan orders rows; they are stored as the
//! text forms cursors carry ([`Kind::key_text_sql`]).
//!
//! **Checking** (the API). A continuation whose cursor version differs from the
//! dataset's current one evaluates [`refusal_sql`] in the same statement as the chunk's
//! rows and versions, so the verdict, the rows and the version the next cursor carries
//! come from one snapshot (a bump and its record commit together).
//!
//! **Caveats.** The `xmin` test mistakes a row untouched for about two billion
//! transactions (whose raw `xmin` has wrapped around) for one the run wrote, so an
//! update of such a row is not recorded. Writes that change only unserved columns count
//! as updates (conservative). Only the last [`KEPT_VERSIONS`] records of a dataset are
//! kept.

use crate::dataset::{Kind, Shape};

/// The run's temporary table of candidate low keys: `(dataset, low_key)`, dropped at
/// commit.
pub const RUN_LOW_KEYS: &str = "run_low_keys";

/// How many versions of each dataset keep their record: a walk can go on across this
/// many loads of its dataset (about a week of loads a minute).
pub const KEPT_VERSIONS: i64 = 10_000;

/// The rule, as the API's 409 states it (and the README and the OpenAPI document).
pub const RULE: &str = "a continuation is refused with 409 only when a load committed \
since the cursor was issued updated or deleted a row of its dataset whose key is at or \
before the cursor's position (its last row); rows merely inserted since appear in the \
walk when they lie ahead of the position and are missed when they lie behind it (start \
a new walk to see every row); updates and deletes ahead of the position are read as \
they are now";

/// Why a continuation is refused, as [`refusal_sql`] says it: a load updated or deleted
/// a row at or before the position.
pub const REFUSED_BEHIND: &str = "behind";
/// Why a continuation is refused: some version since has no record (or the version
/// went back).
pub const REFUSED_UNRECORDED: &str = "unrecorded";

/// Creates [`RUN_LOW_KEYS`] for the current transaction.
pub fn create_run_table_sql() -> String {
    format!(
        "CREATE TEMP TABLE {RUN_LOW_KEYS} (dataset text NOT NULL, low_key text[] NOT NULL) \
         ON COMMIT DROP"
    )
}

/// The condition that the row of `alias`, as the statement's snapshot sees it, was
/// written by an earlier transaction than the current one (and its subtransactions).
pub fn pre_existing(alias: &str) -> String {
    format!("age({alias}.xmin) > age(pg_current_xact_id()::xid)")
}

/// The opposite of [`pre_existing`]: the row of `alias` was written by the current
/// transaction or one of its subtransactions (whose ids come later). A frozen row whose
/// raw xid has wrapped around could match too.
pub fn written_now(alias: &str) -> String {
    format!("age({alias}.xmin) <= age(pg_current_xact_id()::xid)")
}

/// A data-modifying statement (for a `WITH` part) that records the lowest key of the
/// rows of `from` (a `FROM` item aliased `alias`, with `shape`'s key columns under their
/// own names) that satisfy `condition`.
pub fn record_low_key(shape: &Shape, from: &str, alias: &str, condition: &str) -> String {
    let keys = key_kinds(shape);
    let texts: Vec<String> = keys
        .iter()
        .map(|(c, k)| k.key_text_sql(&format!("{alias}.{c}")))
        .collect();
    let order: Vec<String> = keys.iter().map(|(c, _)| format!("{alias}.{c}")).collect();
    format!(
        "INSERT INTO {RUN_LOW_KEYS} (dataset, low_key) SELECT '{name}', ARRAY[{texts}] \
         FROM {from} WHERE {condition} ORDER BY {order} LIMIT 1",
        name = shape.name,
        texts = texts.join(", "),
        order = order.join(", "),
    )
}

/// The key held in the text array `array` as a row of the key columns' real types.
pub fn typed_key(shape: &Shape, array: &str) -> String {
    let cols: Vec<String> = key_kinds(shape)
        .iter()
        .enumerate()
        .map(|(i, (_, k))| format!("({array}[{}])::{}", i + 1, k.sql_type()))
        .collect();
    format!("ROW({})", cols.join(", "))
}

/// Bumps `shape`'s data version and records what the current transaction changed of it
/// (the lowest of the keys recorded in [`RUN_LOW_KEYS`], or NULL), dropping the records
/// older than [`KEPT_VERSIONS`].
pub fn bump_sql(shape: &Shape) -> String {
    let order = typed_key(shape, "p.low_key");
    format!(
        "WITH v AS (UPDATE data_versions SET version = version + 1, updated_at = now() \
                    WHERE dataset = '{name}' RETURNING version), \
         pruned AS (DELETE FROM data_version_changes c USING v \
                    WHERE c.dataset = '{name}' AND c.version <= v.version - {KEPT_VERSIONS}) \
         INSERT INTO data_version_changes (dataset, version, low_key) \
         SELECT '{name}', v.version, \
                (SELECT p.low_key FROM {RUN_LOW_KEYS} p WHERE p.dataset = '{name}' \
                 ORDER BY {order} LIMIT 1) \
         FROM v",
        name = shape.name,
    )
}

/// A scalar SQL expression: NULL when a cursor of `shape` issued at data version
/// `version` (SQL of an int8) and positioned at `after` (one typed SQL value per key
/// column, in key order) may continue at the current version; else why not
/// ([`REFUSED_UNRECORDED`]: some version since has no record, or the version went back;
/// [`REFUSED_BEHIND`]: a load since updated or deleted a row at or before the
/// position).
pub fn refusal_sql(shape: &Shape, version: &str, after: &[String]) -> String {
    let name = shape.name;
    let since = format!(
        "FROM data_version_changes c WHERE c.dataset = '{name}' \
         AND c.version > {version} AND c.version <= v.version"
    );
    format!(
        "(SELECT CASE \
            WHEN v.version = {version} THEN NULL \
            WHEN v.version < {version} OR (SELECT count(*) {since}) <> v.version - {version} \
              THEN '{REFUSED_UNRECORDED}' \
            WHEN EXISTS (SELECT 1 {since} AND (c.low_key IS NULL OR {low} > ROW({after})) IS NOT TRUE) \
              THEN '{REFUSED_BEHIND}' \
          END FROM data_versions v WHERE v.dataset = '{name}')",
        low = typed_key(shape, "c.low_key"),
        after = after.join(", "),
    )
}

/// The key columns of `shape` and their kinds.
fn key_kinds(shape: &Shape) -> Vec<(&'static str, Kind)> {
    shape
        .key
        .iter()
        .map(|c| (*c, shape.column(c).map_or(Kind::Text, |col| col.kind)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{MARKET, REJECTS};

    #[test]
    fn keys_are_recorded_as_cursor_text_and_compared_as_their_types() {
        let record = record_low_key(&MARKET, "u", "u", "u.pre");
        assert!(
            record.contains(
                "ARRAY[u.coin_id, to_char(u.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')]"
            ),
            "{record}"
        );
        assert!(
            record.ends_with("ORDER BY u.coin_id, u.ts LIMIT 1"),
            "{record}"
        );
        assert_eq!(
            typed_key(&REJECTS, "k"),
            "ROW((k[1])::int8, (k[2])::text, (k[3])::int8)"
        );
    }
}
