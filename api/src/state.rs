//! Shared state of the running API: the connection pool, the cursor codec and the task
//! settings, plus the one way handlers reach the database.

use crate::error::ApiError;
use coinflow_shared::cursor::CursorCodec;
use coinflow_shared::db::PgPool;
use diesel::pg::PgConnection;
use std::path::PathBuf;

/// Managed by Rocket; handlers take `&State<AppState>`.
pub struct AppState {
    pub pool: PgPool,
    pub codec: CursorCodec,
    pub task_output_dir: Option<PathBuf>,
    pub write_token: Option<String>,
}

impl AppState {
    /// Runs `work` with a pooled connection on the blocking thread pool (diesel is
    /// synchronous). Pool exhaustion and connection failures become 503.
    pub async fn db<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        rocket::tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await?
    }
}
