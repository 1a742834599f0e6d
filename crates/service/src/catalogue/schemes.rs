//! Classification schemes (分类体系).

use crate::db::Db;
use crate::error::AppError;
use crate::store::catalogue::schemes::{self as store, NewScheme, SchemeChanges, SchemeView};

pub async fn list(db: &Db) -> Result<Vec<SchemeView>, AppError> {
    db.run(store::list).await
}

pub async fn get(db: &Db, code: String) -> Result<SchemeView, AppError> {
    db.run(move |conn| store::view(conn, &code)).await
}

pub async fn create(db: &Db, new: NewScheme) -> Result<SchemeView, AppError> {
    db.run(move |conn| store::create(conn, new)).await
}

pub async fn update(
    db: &Db,
    code: String,
    changes: SchemeChanges,
    expected: Option<i64>,
) -> Result<SchemeView, AppError> {
    db.run(move |conn| store::update(conn, &code, &changes, expected)).await
}

pub async fn delete(db: &Db, code: String, expected: Option<i64>) -> Result<(), AppError> {
    db.run(move |conn| store::delete(conn, &code, expected)).await
}
