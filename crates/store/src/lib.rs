//! custclass's store: the queries, one module per aggregate, above the database layer
//! (`custclass-db`) and the domain (`custclass-domain`) and below the HTTP layer.
//! Functions take a connection and validated domain values, enforce the invariants
//! that need the database, and return rows. It owns every table's reads and writes;
//! `classification` is the one write path of a customer's category, and `audit`
//! recomputes what that path derives.

// The layers below under the names the modules use.
use custclass_db as db;
use custclass_db::{error, insert_many, insert_rows, native, shutdown};
use custclass_domain as domain;

pub mod access;
pub mod archive;
pub mod audit;
pub mod catalogue;
pub mod classification;
pub mod exchange;
pub mod feed;
pub mod reporting;

use diesel::RunQueryDsl;

use crate::db::DbConnection;
use crate::error::AppError;

/// Every customer id from the lowest to the highest in ranges of `size` (both ends
/// included): the batches of a run, the reads of a ranking.
pub(crate) fn customer_id_ranges(conn: &mut DbConnection, size: i64) -> Result<Vec<(i64, i64)>, AppError> {
    use crate::db::schema::customers;
    use diesel::QueryDsl;
    let (low, high): (Option<i64>, Option<i64>) =
        customers::table.select((diesel::dsl::min(customers::id), diesel::dsl::max(customers::id))).first(conn)?;
    let (Some(low), Some(high)) = (low, high) else { return Ok(Vec::new()) };
    Ok((0..)
        .map(|i| low + i * size)
        .take_while(|start| *start <= high)
        .map(|start| (start, start + size - 1))
        .collect())
}

#[derive(diesel::QueryableByName)]
struct Middle {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    id: Option<i64>,
}

/// The customer id halfway between the smallest and the largest: where a read that
/// shares itself out over two connections splits the archive.
pub(crate) fn middle_customer_id(conn: &mut DbConnection) -> Result<i64, AppError> {
    let middle: Middle = diesel::sql_query("SELECT (MIN(id) + MAX(id)) DIV 2 AS id FROM customers").get_result(conn)?;
    Ok(middle.id.unwrap_or(0))
}

/// `first` on `conn` and `second` on `spare` at once, or without a spare both on `conn`,
/// one after the other: a read that shares itself out over two connections.
pub(crate) fn side_by_side<A, B: Send>(
    conn: &mut DbConnection,
    spare: Option<&mut DbConnection>,
    first: impl FnOnce(&mut DbConnection) -> Result<A, AppError>,
    second: impl FnOnce(&mut DbConnection) -> Result<B, AppError> + Send,
) -> Result<(A, B), AppError> {
    let Some(spare) = spare else {
        let done = first(conn)?;
        return Ok((done, second(conn)?));
    };
    std::thread::scope(|scope| {
        let other = scope.spawn(move || second(spare));
        let done = first(conn);
        let other = other.join().map_err(|_| AppError::internal("a read on the second connection panicked"))?;
        Ok((done?, other?))
    })
}

/// Ids as an SQL list (`1,2,3`) for `IN (…)`: they come from the database, never from
/// a request, and a literal list lets MariaDB range-scan where 1,000 placeholders cost more.
pub(crate) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// A row that carries an optimistic-locking version.
pub(crate) trait Versioned {
    fn id(&self) -> i64;
    fn version(&self) -> i64;
}

/// The one way a write takes the row it changes: read it (to learn its id), lock
/// it, read it again, and check the caller's `If-Match` against that second read.
/// On MySQL (READ COMMITTED) only a read after the lock sees the latest commit; a
/// version read before it may be stale, and a stale tag would pass. SQLite's
/// `BEGIN IMMEDIATE` already holds the write lock, so the first read is current.
pub(crate) fn lock_current<R: Versioned>(
    conn: &mut DbConnection,
    table: LockableTable,
    expected: Option<i64>,
    mut read: impl FnMut(&mut DbConnection) -> Result<R, AppError>,
) -> Result<R, AppError> {
    let mut row = read(conn)?;
    if matches!(conn, DbConnection::Mysql(_)) {
        lock_row(conn, table, row.id())?;
        row = read(conn)?;
    }
    check_version(expected, row.version())?;
    Ok(row)
}

/// Compares the caller's `If-Match` version with the stored one.
pub fn check_version(expected: Option<i64>, current: i64) -> Result<(), AppError> {
    match expected {
        Some(version) if version != current => Err(AppError::version_mismatch(current)),
        _ => Ok(()),
    }
}

/// Locks rows until the transaction ends so that checks made on them stay true
/// (MySQL `SELECT … FOR UPDATE` / `LOCK IN SHARE MODE`; ids in ascending order, so
/// that two transactions lock in the same order). SQLite needs none: `BEGIN
/// IMMEDIATE` already serialises writers.
pub(crate) fn lock_rows(
    conn: &mut DbConnection,
    table: LockableTable,
    ids: &[i64],
    mode: LockMode,
) -> Result<(), AppError> {
    if let DbConnection::Mysql(mysql) = conn {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(1000) {
            let list = id_list(chunk);
            let clause = match mode {
                LockMode::Exclusive => "FOR UPDATE",
                LockMode::Shared => "LOCK IN SHARE MODE",
            };
            diesel::sql_query(format!("SELECT id FROM {} WHERE id IN ({list}) ORDER BY id {clause}", table.name()))
                .execute(mysql)?;
        }
    }
    Ok(())
}

pub(crate) fn lock_row(conn: &mut DbConnection, table: LockableTable, id: i64) -> Result<(), AppError> {
    lock_rows(conn, table, &[id], LockMode::Exclusive)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum LockMode {
    Exclusive,
    /// Others may take a shared lock too, but no exclusive one.
    Shared,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum LockableTable {
    Schemes,
    Categories,
    Customers,
    Rules,
}

impl LockableTable {
    fn name(self) -> &'static str {
        match self {
            LockableTable::Schemes => "schemes",
            LockableTable::Categories => "categories",
            LockableTable::Customers => "customers",
            LockableTable::Rules => "rules",
        }
    }
}

/// The exclusive upper bound of every code that starts with `prefix`: codes are
/// `[0-9A-Za-z]`, and `{` sorts right after `z`, so `[prefix, prefix{)` is the
/// subtree as an index range under binary collation on both backends.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    format!("{prefix}{{")
}

macro_rules! versioned {
    ($($row:ty),* $(,)?) => {$(
        impl Versioned for $row {
            fn id(&self) -> i64 {
                self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
        }
    )*};
}

versioned!(
    catalogue::schemes::SchemeRow,
    catalogue::category_rows::CategoryRow,
    archive::customer_rows::CustomerRow,
    catalogue::rules::RuleRow
);
