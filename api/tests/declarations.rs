//! The one declaration per served dataset (and the task results' one) held against what
//! else describes the same rows: the migrations (`information_schema.columns` and the
//! indexes of each table) and the OpenAPI row schemas.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use coinflow_api::read::Source;
use coinflow_shared::dataset::{Kind, Served};
use coinflow_shared::testdb::TestDb;
use common::App;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(QueryableByName, Debug)]
struct TableColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct IndexColumns {
    #[diesel(sql_type = Array<Text>)]
    columns: Vec<String>,
}

fn table_columns(conn: &mut PgConnection, table: &str) -> Vec<TableColumn> {
    diesel::sql_query(
        "SELECT column_name::text AS name, udt_name::text AS udt_name, is_nullable::text AS is_nullable \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind::<Text, _>(table)
    .load(conn)
    .unwrap()
}

/// The leading columns of every index of `table`, in index order.
fn index_columns(conn: &mut PgConnection, table: &str) -> Vec<Vec<String>> {
    diesel::sql_query(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) AS columns \
         FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1::regclass GROUP BY i.indexrelid",
    )
    .bind::<Text, _>(table)
    .load::<IndexColumns>(conn)
    .unwrap()
    .into_iter()
    .map(|i| i.columns)
    .collect()
}

#[test]
fn every_declaration_matches_its_tables_columns_and_key_index() {
    let db = TestDb::new();
    let mut conn = db.conn();
    for source in Source::all() {
        let shape = source.shape();
        let columns = table_columns(&mut conn, shape.table);
        assert!(
            !columns.is_empty(),
            "{}: no table {}",
            shape.name,
            shape.table
        );
        for declared in shape.columns {
            let Some(column) = declared.column else {
                continue;
            };
            let found = columns
                .iter()
                .find(|c| c.name == column)
                .unwrap_or_else(|| panic!("{}: no column {column} in {}", shape.name, shape.table));
            assert_eq!(
                found.udt_name,
                declared.kind.udt_name(),
                "{}.{column}: the migration's type and the declared kind differ",
                shape.table
            );
            assert_eq!(
                found.is_nullable == "YES",
                declared.nullable,
                "{}.{column}: the migration's nullability and the declaration differ",
                shape.table
            );
        }
        let in_table: BTreeSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let accounted: BTreeSet<&str> = shape
            .columns
            .iter()
            .filter_map(|c| c.column)
            .chain(shape.unserved.iter().copied())
            .collect();
        assert_eq!(
            in_table, accounted,
            "{}: every column of {} is either served or declared unserved",
            shape.name, shape.table
        );
        let key: Vec<String> = shape.key.iter().map(|k| k.to_string()).collect();
        assert!(
            index_columns(&mut conn, shape.table).contains(&key),
            "{}: no index of {} on the key {key:?}",
            shape.name,
            shape.table
        );
    }
}

/// The OpenAPI component that documents each source's rows.
fn row_schema_name(source: Source) -> &'static str {
    match source {
        Source::Served(Served::Market) => "MarketRow",
        Source::Served(Served::Daily) => "DailyRow",
        Source::Served(Served::Coins) => "CoinRow",
        Source::Served(Served::CoinExchanges) => "CoinExchangeRow",
        Source::Served(Served::Traders) => "TraderRow",
        Source::Served(Served::Positions) => "PositionRow",
        Source::Served(Served::Rejects) => "RejectRow",
        Source::TaskResults => "TaskRow",
    }
}

/// The JSON Schema type and format a kind is documented with.
fn documented(kind: Kind) -> (&'static str, Option<&'static str>) {
    match kind {
        Kind::Text => ("string", None),
        Kind::Int4 => ("integer", Some("int32")),
        Kind::Int8 => ("integer", Some("int64")),
        Kind::Float8 => ("number", Some("double")),
        Kind::Timestamptz => ("string", Some("date-time")),
        Kind::Date => ("string", Some("date")),
        Kind::TextArray => ("array", None),
    }
}

/// A property's type without `null`, and whether `null` is allowed.
fn property_type(property: &Value) -> (String, bool) {
    match &property["type"] {
        Value::String(t) => (t.clone(), property["nullable"] == Value::Bool(true)),
        Value::Array(types) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = named.iter().copied().filter(|t| *t != "null").collect();
            (non_null.join(","), named.contains(&"null"))
        }
        other => (other.to_string(), false),
    }
}

#[test]
fn the_openapi_row_schemas_match_the_declarations() {
    let app = App::new();
    let doc: Value = app.get("/openapi.json").json();
    let schemas = &doc["components"]["schemas"];
    for source in Source::all() {
        let shape = source.shape();
        let name = row_schema_name(source);
        let schema = &schemas[name];
        let properties = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"));
        let documented_names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let declared_names: BTreeSet<&str> = shape.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            documented_names, declared_names,
            "{name}: the column names differ"
        );
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for column in shape.columns {
            let property = &properties[column.name];
            let (ty, nullable) = property_type(property);
            let (expected_ty, expected_format) = documented(column.kind);
            assert_eq!(ty, expected_ty, "{name}.{}: type", column.name);
            assert_eq!(
                property["format"].as_str(),
                expected_format,
                "{name}.{}: format",
                column.name
            );
            if column.kind == Kind::TextArray {
                assert_eq!(
                    property["items"]["type"], "string",
                    "{name}.{}",
                    column.name
                );
            }
            assert_eq!(
                nullable, column.nullable,
                "{name}.{}: nullable",
                column.name
            );
            assert_eq!(
                required.contains(column.name),
                !column.nullable,
                "{name}.{}: required",
                column.name
            );
        }
    }
}

#[test]
fn the_openapi_dataset_names_are_the_served_datasets() {
    let app = App::new();
    let doc: Value = app.get("/openapi.json").json();
    let documented: Vec<&str> = doc["components"]["schemas"]["DatasetName"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let served: Vec<&str> = Served::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(documented, served);
}
