//! The HTTP resources, one module each.

pub(crate) mod exchanges;
pub(crate) mod health;
pub(crate) mod index;
pub(crate) mod read;
pub(crate) mod runs;
pub(crate) mod tasks;
pub mod top;

/// Every route of the API (the OpenAPI document and `/docs` are mounted separately).
pub(crate) fn all() -> Vec<rocket::Route> {
    rocket::routes![
        index::index,
        health::live,
        health::ready,
        read::first_chunk,
        read::next_chunk,
        read::dataset,
        top::top,
        tasks::run_tasks,
        tasks::post_coins,
        tasks::task_results,
        exchanges::stats,
        runs::list,
        runs::one,
    ]
}
