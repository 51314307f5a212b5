//! How a run fails: one error type for every stage, and the exit code each failure
//! maps to (SPEC §5). Stages keep their own error types (`ExtractError`,
//! `RefreshError`); this one wraps them at the run's edge.

use crate::derive::RefreshError;
use crate::extract::ExtractError;
use coinflow_shared::db::DbError;
use std::path::PathBuf;
use thiserror::Error;

/// Why a run (or a check) stopped; nothing of a failed run is committed.
#[derive(Debug, Error)]
pub enum EtlError {
    #[error("{0}")]
    Unreachable(DbError),
    #[error("another ETL run holds the advisory lock (--no-wait-lock given)")]
    Locked,
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("{0}")]
    Migration(DbError),
    #[error("{0}")]
    Encoding(DbError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error("data directory {0} does not exist or is not a directory")]
    NoDataDir(PathBuf),
}

impl From<DbError> for EtlError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unreachable { .. } => EtlError::Unreachable(e),
            DbError::Query(q) => EtlError::Db(q),
            DbError::Migration(_) => EtlError::Migration(e),
            DbError::Encoding { .. } => EtlError::Encoding(e),
        }
    }
}

impl EtlError {
    /// The process exit code (SPEC §5).
    pub fn exit_code(&self) -> i32 {
        match self {
            EtlError::Unreachable(_) => 3,
            EtlError::Locked => 4,
            _ => 1,
        }
    }
}
