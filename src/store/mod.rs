//! Queries, one module per aggregate. Functions take a connection and validated
//! domain values, enforce the invariants that need the database, and return rows.

pub mod api_keys;
pub mod categories;
pub mod schemes;

use diesel::RunQueryDsl;

use crate::db::DbConnection;
use crate::error::AppError;

/// Compares the caller's `If-Match` version with the stored one.
pub fn check_version(expected: Option<i64>, current: i64) -> Result<(), AppError> {
    match expected {
        Some(version) if version != current => Err(AppError::version_mismatch(current)),
        _ => Ok(()),
    }
}

/// Locks one row until the transaction ends so that checks made on it stay true
/// (MySQL `SELECT … FOR UPDATE`). SQLite needs none: `BEGIN IMMEDIATE` already
/// serialises writers.
pub(crate) fn lock_row(conn: &mut DbConnection, table: LockableTable, id: i64) -> Result<(), AppError> {
    if let DbConnection::Mysql(mysql) = conn {
        diesel::sql_query(format!("SELECT id FROM {} WHERE id = ? FOR UPDATE", table.name()))
            .bind::<diesel::sql_types::BigInt, _>(id)
            .execute(mysql)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum LockableTable {
    Schemes,
    Categories,
}

impl LockableTable {
    fn name(self) -> &'static str {
        match self {
            LockableTable::Schemes => "schemes",
            LockableTable::Categories => "categories",
        }
    }
}

/// The exclusive upper bound of every code that starts with `prefix`: codes are
/// `[0-9A-Za-z]`, and `{` sorts right after `z`, so `[prefix, prefix{)` is the
/// subtree as an index range under binary collation on both backends.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    format!("{prefix}{{")
}
