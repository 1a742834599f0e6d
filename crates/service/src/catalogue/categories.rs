//! Categories (客户分类) in a scheme's coded tree, and moving their customers elsewhere.

use std::sync::Arc;

use crate::db::Db;
use crate::domain::restriction::Restriction;
use crate::error::AppError;
use crate::store::catalogue::categories::{self as store, CategoryChanges, CategoryView, NewCategory};
use crate::store::classification::reassign::{self, ReassignOutcome, Reassignment};
use crate::store::reporting::category_views;

/// Every category of the scheme with its counts; a restricted key sees its subtree.
pub async fn list(
    db: &Db,
    scheme: String,
    restriction: Option<Arc<Restriction>>,
) -> Result<Vec<CategoryView>, AppError> {
    db.run(move |conn| category_views::list(conn, &scheme, restriction.as_ref())).await
}

pub async fn get(
    db: &Db,
    scheme: String,
    code: String,
    restriction: Option<Arc<Restriction>>,
) -> Result<CategoryView, AppError> {
    db.run(move |conn| category_views::get(conn, &scheme, &code, restriction.as_ref())).await
}

pub async fn create(db: &Db, scheme: String, new: NewCategory) -> Result<CategoryView, AppError> {
    db.run(move |conn| store::create(conn, &scheme, new)).await
}

pub async fn update(
    db: &Db,
    scheme: String,
    code: String,
    changes: CategoryChanges,
    expected: Option<i64>,
) -> Result<CategoryView, AppError> {
    db.run(move |conn| store::update(conn, &scheme, &code, &changes, expected)).await
}

pub async fn delete(db: &Db, scheme: String, code: String, expected: Option<i64>) -> Result<(), AppError> {
    db.run(move |conn| store::delete(conn, &scheme, &code, expected)).await
}

/// Moves a category's customers (and optionally its subtree's) to another category:
/// many statements, so it may take long.
pub async fn reassign(db: &Db, request: Reassignment) -> Result<ReassignOutcome, AppError> {
    db.run_long(move |conn| reassign::reassign(conn, &request)).await
}
