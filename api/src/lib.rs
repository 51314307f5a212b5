//! coinflow's REST API, a Rocket application over the warehouse.
//!
//! - [`rocket`] builds the application from an [`ApiConfig`]; `main.rs` only launches it,
//!   and tests drive the same application through `rocket::local`.
//!
//! The layers, each importing only those below it:
//! - [`routes`]: one module per resource (HTTP in, [`reply`] out); [`openapi`] documents
//!   them; [`catchers`] and [`fairings`] wrap them.
//! - [`read`]: keyset-paginated, streamed reads of every served dataset (declared once
//!   in `coinflow_shared::dataset`); [`tasks`]: the coin-task decision; [`top_cache`]:
//!   the `/top` answers by data version; [`task_files`]: the bounded `TASK_OUTPUT_DIR`
//!   copies of task results.
//! - [`reply`]: responses, ETags; [`format`]: JSON / CSV / NDJSON; [`rows`]: response
//!   rows and their OpenAPI schemas; [`params`]: what handlers read from a request;
//!   [`raw`]: positional reads of binary results.
//! - [`state`]: the pool and the one way handlers reach the database; [`config`]:
//!   settings; [`error`]: the one problem+json error type.

mod catchers;
pub mod config;
pub mod error;
mod fairings;
mod format;
mod openapi;
mod params;
mod raw;
pub mod read;
mod reply;
pub mod routes;
mod rows;
pub mod state;
mod task_files;
pub mod tasks;
pub mod top_cache;

pub use config::ApiConfig;

use coinflow_shared::cursor::CursorCodec;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use state::AppState;
use std::io::Read;

/// The application, ready to launch (or to hand to a local test client). Never touches the
/// database here: the pool connects lazily, so the API starts, and answers 503, while the
/// database is down.
pub fn rocket(config: ApiConfig) -> Rocket<Build> {
    let secret = config.cursor_secret.clone().unwrap_or_else(|| {
        log::warn!(
            "CURSOR_SECRET is not set: using a random key, so cursors will not survive a restart"
        );
        random_key()
    });
    let (pool, reachability) = state::configured_pool(&config);
    let top_versions = {
        let (pool, reachability) = (pool.clone(), reachability.clone());
        top_cache::VersionChecker::start(move || {
            state::with_read_conn(&pool, &reachability, top_cache::read_versions)
        })
    };
    let state = AppState {
        pool,
        reachability,
        top_cache: top_cache::TopCache::default(),
        top_versions,
        cold: std::sync::Arc::new(rocket::tokio::sync::Semaphore::new(
            config.cold_permits() as usize
        )),
        codec: CursorCodec::new(&secret),
        task_files: config.task_output_dir.clone().map(|dir| {
            std::sync::Arc::new(task_files::TaskFiles::open(
                dir,
                config.task_output_max_files,
                config.task_output_max_bytes,
            ))
        }),
        write_token: config.write_token.clone(),
    };
    // Configured from ApiConfig alone: no Rocket.toml, no ROCKET_* variables.
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", config.address))
        .merge(("port", config.port))
        .merge(("ident", "coinflow-api"))
        .merge(("cli_colors", false))
        .merge(("log_level", rocket::config::LogLevel::Critical));
    rocket::custom(figment)
        .manage(state)
        .attach(fairings::RequestLog)
        .attach(fairings::ProblemGuard)
        .mount("/", routes::all())
        .mount("/", openapi::routes())
        .register("/", catchers::all())
}

/// Refuses a database the API cannot serve correctly (today: a `server_encoding` other
/// than UTF8). A database that cannot be reached is not an error here: the API starts and
/// answers 503, and each new pooled connection repeats the check.
pub fn check_database_at_start(url: &str) -> Result<(), coinflow_shared::db::DbError> {
    use diesel::Connection;
    let url = coinflow_shared::db::with_connect_timeout(
        &coinflow_shared::db::without_gss_negotiation(url),
        START_CHECK_TIMEOUT_SECS,
    );
    match diesel::PgConnection::establish(&url) {
        Ok(mut conn) => coinflow_shared::db::check_server_encoding(&mut conn),
        Err(e) => {
            log::warn!(
                "database not reachable at start ({}); serving 503 until it is",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            Ok(())
        }
    }
}

/// How long the start-up check waits for the database before starting without it.
const START_CHECK_TIMEOUT_SECS: u64 = 3;

/// 32 random bytes from the operating system, or (should that fail) from the process's
/// randomly keyed hasher.
fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if from_os.is_err() {
        use std::hash::{BuildHasher, Hasher};
        for chunk in key.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    key
}
