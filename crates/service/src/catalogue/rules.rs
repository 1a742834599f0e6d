//! Classification rules (分类规则) of a scheme.

use crate::db::Db;
use crate::error::AppError;
use crate::store::catalogue::rules::{self as store, NewRule, RuleChanges, RuleView};

pub async fn list(db: &Db, scheme: String) -> Result<Vec<RuleView>, AppError> {
    db.run(move |conn| store::list(conn, &scheme)).await
}

pub async fn get(db: &Db, scheme: String, id: i64) -> Result<RuleView, AppError> {
    db.run(move |conn| store::get(conn, &scheme, id)).await
}

pub async fn create(db: &Db, scheme: String, new: NewRule) -> Result<RuleView, AppError> {
    db.run(move |conn| store::create(conn, &scheme, &new)).await
}

pub async fn update(
    db: &Db,
    scheme: String,
    id: i64,
    changes: RuleChanges,
    expected: Option<i64>,
) -> Result<RuleView, AppError> {
    db.run(move |conn| store::update(conn, &scheme, id, &changes, expected)).await
}

pub async fn delete(db: &Db, scheme: String, id: i64, expected: Option<i64>) -> Result<(), AppError> {
    db.run(move |conn| store::delete(conn, &scheme, id, expected)).await
}
