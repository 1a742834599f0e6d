//! Data cleansing (数据清理): duplicate groups, merging duplicates, the data-quality report.

use crate::db::Db;
use crate::domain::duplicates::DuplicateKey;
use crate::error::AppError;
use crate::store::archive::customer_filters::Filters;
use crate::store::archive::data_quality::{self, Finding};
use crate::store::archive::duplicates::{self, Group, GroupPosition};
use crate::store::archive::merge::{self, MergeOutcome, MergeRequest};
use crate::store::reporting::counts;

/// Up to `limit` groups of customers that share one of `keys`, after `after`.
pub async fn duplicate_groups(
    db: &Db,
    keys: Vec<DuplicateKey>,
    filters: Filters,
    after: Option<GroupPosition>,
    limit: i64,
) -> Result<Vec<Group>, AppError> {
    db.run_long(move |conn| duplicates::groups(conn, &keys, &filters, after.as_ref(), limit)).await
}

pub async fn merge(db: &Db, request: MergeRequest) -> Result<MergeOutcome, AppError> {
    db.run(move |conn| merge::merge(conn, &request)).await
}

/// The population and every finding of the data-quality checks.
pub async fn quality_report(db: &Db, dormant_days: i64) -> Result<(i64, Vec<Finding>), AppError> {
    db.run_long(move |conn| Ok((counts::population(conn)?, data_quality::report(conn, dormant_days)?))).await
}
