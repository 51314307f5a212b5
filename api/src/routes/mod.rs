//! The HTTP resources, one module each.

pub mod exchanges;
pub mod health;
pub mod index;
pub mod read;
pub mod runs;
pub mod tasks;
pub mod top;

/// Every route of the API (the OpenAPI document and `/docs` are mounted separately).
pub fn all() -> Vec<rocket::Route> {
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
