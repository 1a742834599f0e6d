//! Pending changes (生效日期): listed, read and cancelled by their owners, and applied
//! when they take effect by the job every replica runs (`jobs`).

use std::sync::Arc;

use chrono::NaiveDateTime;

use crate::db::{Clock, Db};
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::classification::pending::{self as store, PendingFilter, PendingRow, Settled};

pub async fn list(
    db: &Db,
    filter: PendingFilter,
    after: Option<(NaiveDateTime, i64)>,
    limit: i64,
    restriction: Option<Arc<Restriction>>,
) -> Result<Vec<PendingRow>, AppError> {
    db.run(move |conn| store::list(conn, &filter, after, limit, restriction.as_deref())).await
}

pub async fn get(db: &Db, id: i64, restriction: Option<Arc<Restriction>>) -> Result<PendingRow, AppError> {
    db.run(move |conn| store::get(conn, id, restriction.as_deref())).await
}

pub async fn cancel(
    db: &Db,
    id: i64,
    expected: Option<i64>,
    restriction: Option<Arc<Restriction>>,
) -> Result<PendingRow, AppError> {
    db.run(move |conn| store::cancel(conn, id, expected, restriction.as_deref())).await
}

/// Applies what is due by the clock; how each due change ended.
pub async fn apply_due(db: &Db, clock: &Clock) -> Result<Vec<(i64, Settled)>, AppError> {
    let moment = clock.now();
    db.run_long(move |conn| store::apply_due(conn, moment)).await
}
