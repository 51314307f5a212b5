//! coinflow's database home, shared by the ETL and the API.
//!
//! - [`schema`]: the diesel schema of the warehouse: `diesel print-schema` of
//!   `migrations/` (`scripts/check-schema.sh` checks it).
//! - [`models`]: row types, `Thing` for reads and `NewThing` for writes.
//! - [`db`]: connecting, waiting for PostgreSQL, embedded migrations, advisory locks.
//! - [`config`]: settings from the environment (and `.env`).
//! - [`logging`]: log4rs set-up from the committed YAML file.
//! - [`dataset`]: the registry of input datasets and served datasets.
//! - [`ledger`]: run and file statuses and `data_versions` keys, stored as text.
//! - [`instant`]: the range of instants the warehouse holds (ETL and API alike).
//! - [`version_changes`]: what a data version bump changed (`data_version_changes`),
//!   recorded by the ETL and checked by the API's cursors.
//! - `testdb` (feature `testdb`, tests only): a throwaway, migrated database per test.

pub mod config;
pub mod cursor;
pub mod dataset;
pub mod db;
pub mod instant;
pub mod ledger;
pub mod logging;
pub mod models;
pub mod schema;
#[cfg(feature = "testdb")]
pub mod testdb;
pub mod version_changes;
