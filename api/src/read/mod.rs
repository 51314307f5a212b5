//! Keyset-paginated chunked reads, for every served dataset and for task results.
//!
//! - [`catalog`]: what can be scanned, from the one declaration per served dataset
//!   (`coinflow_shared::dataset`), plus the task results;
//! - [`query`]: the filters and the statements of a chunk (keyset `WHERE`/`ORDER BY`,
//!   versions, `EXPLAIN`);
//! - [`stream`]: serving a chunk (plan, head, body pieces, `ETag`, next cursor);
//! - [`write`]: the row writers (binary result → JSON, NDJSON, CSV; key values → cursor
//!   text).
//!
//! Routes reach it through [`plan_from_request`] and [`serve`]; it reaches the database
//! only through `crate::state`.

pub(crate) mod catalog;
pub(crate) mod query;
pub(crate) mod stream;
pub(crate) mod write;

pub use catalog::Source;
pub(crate) use query::task_state;
pub use query::{explain, explain_with, statements, ChunkStatements, Filters};
pub(crate) use stream::{plan_from_request, serve};
